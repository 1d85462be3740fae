// The browser suites (`end2end/*.spec.mjs`) on @playwright/test with Debian's
// Chromium (no browser download). `cargo xtask test e2e` builds first; then, e.g.:
//   npx playwright test --grep "offline"        one scenario by name
//   npx playwright show-report target/playwright-report
import { defineConfig } from '@playwright/test';

export default defineConfig({
  testDir: '.',
  testMatch: ['end2end/*.spec.mjs'],
  // One app per worker, started once; files one after another.
  workers: 1,
  fullyParallel: false,
  retries: 0,
  timeout: 240_000,
  outputDir: 'target/playwright-results',
  reporter: [['list'], ['html', { outputFolder: 'target/playwright-report', open: 'never' }]],
  use: {
    launchOptions: { executablePath: process.env.SYNC_CHROMIUM || '/usr/bin/chromium' },
    trace: 'retain-on-failure',
  },
});
