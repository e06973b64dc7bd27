import { defineConfig } from 'vitest/config';

// Two projects. `unit` needs Node alone (`npm run test:unit`): no nginx, Apache, systemd tools, C compiler or
// network interface beyond loopback. `integration` (test/integration) runs the real peers and tools that
// scripts/test-deps.sh installs; `npm test` runs unit, then integration.
export default defineConfig({
  test: {
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Integration tests start nginx and server processes; two cores are all the machine has.
    maxWorkers: 2,
    projects: [
      { extends: true, test: { name: 'unit', include: ['test/**/*.test.ts'], exclude: ['test/integration/**'] } },
      { extends: true, test: { name: 'integration', include: ['test/integration/**/*.test.ts'] } },
    ],
  },
});
