// Every shipped example loads through the real loader, is detected as the README says, and answers a request.
import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { loadApp } from '../src/app-loader/index.js';
import { createHandler } from '../src/handler.js';
import { nginxVars, startTestServer } from './helpers/serve.js';

const dir = fileURLToPath(new URL('../examples/', import.meta.url));
const EXPECTED: Record<string, string> = {
  'hello-wsgi.js': 'wsgi',
  'hello-cjs.cjs': 'wsgi',
  'hello-node.js': 'node',
  'hello-fetch.js': 'fetch',
  'hello-fetch-response.js': 'fetch',
  'express-app.js': 'node',
  'koa-app.js': 'node',
  'fastify-app.js': 'node',
  'hono-app.js': 'fetch',
};

describe('examples/', () => {
  it('has exactly the examples this test knows', () => {
    expect(readdirSync(dir).filter((f) => /\.[cm]?js$/.test(f)).sort()).toEqual(Object.keys(EXPECTED).sort());
  });

  it.each(Object.entries(EXPECTED))('%s is served as a %s app', async (file, kind) => {
    const loaded = await loadApp(`./${file}`, { cwd: dir, interface: 'auto' });
    expect(loaded.interface).toBe(kind);
    const server = await startTestServer(createHandler(loaded));
    try {
      const res = await server.request(nginxVars({ REQUEST_URI: '/', PATH_INFO: '/', HTTPS: 'on' }));
      expect(res.status).toBe(200);
      expect(res.body.toString()).toMatch(/^Hello from /);
    } finally {
      await server.close();
    }
  });
});
