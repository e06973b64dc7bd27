// --metrics, in a worker: what the app registered with prom-client, and (--metrics-process) Node's default
// process metrics, as prom-client's JSON (registry.getMetricsAsJSON), sent to the master on its asking
// (app-metrics.ts aggregates them over the workers). The app's registry is the default registry of the
// prom-client that the app's own require('prom-client') resolves to, from the app's file: its own node_modules
// first, node-uwsgi's otherwise; the same module instance as the app's (Node's module cache), whichever copy and
// version it is, and whether the app imported it (ESM) or required it.
import { createRequire } from 'node:module';
import type { Registry } from 'prom-client';

/** prom-client's JSON for one registry (MetricObjectWithValues[]): passed as data, never interpreted here. */
export type MetricsJson = unknown[];

export interface WorkerMetricsSnapshot {
  app: MetricsJson;
  process: MetricsJson;
}

export interface WorkerMetrics {
  collect(): Promise<WorkerMetricsSnapshot>;
}

/** `appFile`: the app's module (the loader's `file`); `processMetrics`: --metrics-process. */
export async function createWorkerMetrics(appFile: string, processMetrics: boolean): Promise<WorkerMetrics> {
  let processRegistry: Registry | undefined;
  if (processMetrics) {
    const prom = await import('prom-client');
    processRegistry = new prom.Registry();
    prom.collectDefaultMetrics({ register: processRegistry });
  }
  return {
    async collect() {
      const app = appRegistry(appFile);
      return {
        app: app === undefined ? [] : await app.getMetricsAsJSON(),
        process: processRegistry === undefined ? [] : await processRegistry.getMetricsAsJSON(),
      };
    },
  };
}

/** The default registry of the app's prom-client, or undefined when the app cannot resolve one. Resolved at each
 * collection: an app may require prom-client late; a resolution is a lookup in require's caches. */
function appRegistry(appFile: string): Registry | undefined {
  try {
    const require = createRequire(appFile);
    return (require(require.resolve('prom-client')) as { register?: Registry }).register;
  } catch {
    return undefined;
  }
}
