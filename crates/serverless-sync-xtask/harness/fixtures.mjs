// Playwright fixtures for an app's browser suites: `test` knows the app it runs
// (started once per worker: wrangler dev on a free port with fresh state) and two
// users' browsers (`alice`, `bob`: each a Chromium profile of its own, so its own
// OPFS store). A suite in `examples/<name>/` names its app once,
// `test.use({ appName: '<name>' })` (the root's app needs nothing), and asks
// for what it needs: `test('...', async ({ app, alice, bob }) => ...)`. `expect` is
// Playwright's: `await expect(locator).toHaveText(...)` waits until it holds.
import { test as base, expect } from '@playwright/test';
import { startApp, launchBrowser } from './app.mjs';

async function browserFixture({}, use) {
  const browser = await launchBrowser();
  await use(browser);
  await browser.close();
}

export const test = base.extend({
  /** Which app the suite drives: the root's (null) or one under `examples/<name>/`. */
  appName: [null, { scope: 'worker', option: true }],
  app: [async ({ appName }, use) => {
    const app = await startApp({ app: appName });
    await use(app);
    await app.stop();
  }, { scope: 'worker' }],
  alice: [browserFixture, { scope: 'worker' }],
  bob: [browserFixture, { scope: 'worker' }],
  /** A browser of its own for one test (a fresh profile: no token, no store). */
  stranger: browserFixture,
});

export { expect };
