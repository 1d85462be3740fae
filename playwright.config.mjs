// The browser suites of both example apps (`*.spec.mjs`), on @playwright/test with
// Debian's Chromium (no browser download). Build first (`cargo xtask build`, both
// apps: `cargo xtask test e2e` does it), then e.g.:
//   npx playwright test                         every browser scenario
//   npx playwright test --grep "offline"        one scenario by name
//   npx playwright test end2end/chat.spec.mjs   one file
//   npx playwright show-report target/playwright-report
// Each file starts its own app (wrangler dev on a free port, fresh state) in its
// `before` hook. With SYNC_E2E_POSTGRES_URL set the apps run on PostgreSQL.
import { defineConfig } from '@playwright/test';

export default defineConfig({
  testDir: '.',
  testMatch: ['end2end/*.spec.mjs', 'examples/*/end2end/*.spec.mjs'],
  // One app per file, started in beforeAll; files one after another (2 cores).
  workers: 1,
  fullyParallel: false,
  // One retry with CI set (`cargo xtask test` sets it), as Playwright's template
  // does: a scenario that fails twice fails the run; one that passes on its retry
  // is reported `flaky`, and `cargo xtask test` names each failed attempt at the end.
  retries: process.env.CI ? 1 : 0,
  timeout: 240_000,
  outputDir: 'target/playwright-results',
  reporter: [['list'], ['html', { outputFolder: 'target/playwright-report', open: 'never' }]],
  use: {
    // For Playwright's own browser fixture; the suites' browsers come from
    // end2end/support/app.mjs (launchBrowser), with the same executable.
    launchOptions: { executablePath: process.env.SYNC_CHROMIUM || '/usr/bin/chromium' },
    trace: 'retain-on-failure',
  },
});
