// The browser suites run on @playwright/test (`npx playwright test`, config in
// playwright.config.mjs). Suites start their app and browsers once per file
// (`before` / `after` = test.beforeAll / test.afterAll): the app on a free port with
// a fresh state folder, each browser a Chromium profile of its own (a user's OPFS
// store). Playwright traces those browsers too (they come from the same
// playwright-core): the config keeps the trace of every failed test.
import { test } from '@playwright/test';

export { test };
/** Once per file, before its first test (node:test's `before`). */
export const before = (fn) => test.beforeAll(async () => fn());
/** Once per file, after its last test (node:test's `after`). */
export const after = (fn) => test.afterAll(async () => fn());
