// In CI every test runs: a missing tool or privilege that a test would skip on a laptop fails it there instead.
// .ci/run exports CI=true, as most CI services do.

/** True in CI: a test that cannot run must fail, not skip. */
export const REQUIRE_ALL = process.env.CI !== undefined && !['', '0', 'false'].includes(process.env.CI.toLowerCase());
