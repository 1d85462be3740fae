// Helpers for browser suites that drive the engine's devtools panel
// (`<SyncDevtools/>`, feature `devtools` of serverless-sync-client): open it, switch
// tabs, read what it shows, run the read-only SQL console, take screenshots.
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { expect } from '@playwright/test';
import { ARTIFACTS } from './app.mjs';

export const panel = (page) => page.getByTestId('sync-devtools');

/** Opens the panel with its keyboard shortcut (Alt+Shift+D) unless it is open. */
export async function openDevtools(page) {
  if (await panel(page).isVisible()) return;
  await page.keyboard.press('Alt+Shift+KeyD');
  await expect(panel(page)).toBeVisible();
}

/** Switches to a tab: status, outbox, queries, timeline, data, timings. */
export async function showTab(page, name) {
  await page.getByTestId(`devtools-tab-${name}`).click();
  await expect(page.getByTestId(`devtools-tab-${name}`)).toHaveAttribute('aria-selected', 'true');
}

/** An outbox row of the panel whose mutator args mention `text`. */
export const outboxItem = (page, text) => page.getByTestId('devtools-outbox-item').filter({ hasText: text });

/** A live query's row in the Queries tab. */
export const queryRow = (page, name) => page.locator(`[data-testid="devtools-query"][data-name="${name}"]`);

/** Runs `sql` in the Data tab's console; resolves to the result's cells (or throws its error). */
export async function runSql(page, sql) {
  await showTab(page, 'data');
  await page.getByTestId('devtools-sql').fill(sql);
  const button = page.getByTestId('devtools-sql-run');
  // Each answer is marked with its run: wait for this one's, not the last one's.
  const run = Number(await button.getAttribute('data-runs')) + 1;
  await button.click();
  const result = page.locator(`[data-testid="devtools-sql-result"][data-run="${run}"]`);
  const error = page.locator(`[data-testid="devtools-sql-error"][data-run="${run}"]`);
  await expect(result.or(error)).toBeVisible();
  if (await error.isVisible()) return { error: await error.textContent() };
  return { rows: await result.locator('tbody tr').evaluateAll((rows) => rows.map((row) => [...row.cells].map((cell) => cell.textContent))) };
}

/** Screenshots of the open panel at desktop and phone widths, in end2end/artifacts. */
export async function screenshotDevtools(page, name) {
  await mkdir(ARTIFACTS, { recursive: true });
  const paths = [];
  for (const [label, size] of [['desktop', { width: 1280, height: 800 }], ['phone', { width: 390, height: 844 }]]) {
    await page.setViewportSize(size);
    await expect(panel(page)).toBeVisible();
    const path = join(ARTIFACTS, `devtools-${name}-${label}.png`);
    await page.screenshot({ path });
    paths.push(path);
  }
  return paths;
}
