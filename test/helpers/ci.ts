// In CI every test runs: a missing tool or privilege that a test would skip on a laptop fails it there instead.
// .ci/run exports CI=true, as most CI services do.

/** True in CI: a test that cannot run must fail, not skip. */
export const REQUIRE_ALL = process.env.CI !== undefined && !['', '0', 'false'].includes(process.env.CI.toLowerCase());

/** The environment for an outside tool a test runs (curl): scripts/asan.sh preloads the sanitizers' runtimes into
 * every process for node-uwsgi's sake, and curl under them hangs or exits 1. */
export function toolEnv(): NodeJS.ProcessEnv {
  const { LD_PRELOAD, ...env } = process.env;
  const kept = (LD_PRELOAD ?? '').split(':').filter((lib) => lib !== '' && !/lib(asan|ubsan)\.so/.test(lib));
  return kept.length > 0 ? { ...env, LD_PRELOAD: kept.join(':') } : env;
}
