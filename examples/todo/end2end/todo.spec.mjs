// The todo example, end to end: two real browsers on one list, through the engine's
// public API only (its own model, callbacks, worker and migrations). Playwright
// fixtures (end2end/support/fixtures.mjs) start the app once and give each user a
// browser of their own; `expect(locator)` waits until what it checks holds.
import { test, expect } from '../../../end2end/support/fixtures.mjs';
import { startApp } from '../../../end2end/support/app.mjs';
import { newId } from '../../../end2end/support/sync.mjs';

test.use({ appName: 'todo' });

async function openList(app, browser, list) {
  const page = await browser.context.newPage();
  const errors = [];
  page.on('pageerror', (error) => errors.push(`pageerror: ${error.message}`));
  page.on('console', (message) => message.type() === 'error' && errors.push(`console: ${message.text()}`));
  await page.goto(`${app.url}/list/${list}`);
  await expect(status(page)).toHaveAttribute('data-state', 'online', { timeout: 20_000 });
  return { page, errors };
}

const status = (page) => page.getByTestId('sync-status');

async function add(page, title) {
  await page.getByTestId('new-todo').fill(title);
  await page.getByTestId('add-todo').click();
}

const item = (page, title) => page.locator(`[data-testid="todo"][data-title="${title}"]`);
const titles = (page) => page.getByTestId('todo-title');
const settled = (page, title) =>
  expect(page.locator(`[data-testid="todo"][data-status="confirmed"][data-title="${title}"]`)).toBeVisible({ timeout: 15_000 });
/** The titles a page shows now, in order (inputs: their values). */
const titleValues = (page) => titles(page).evaluateAll((inputs) => inputs.map((input) => input.value));
/** Waits until the page shows these titles, in order. */
const expectTitles = (page, expected) => expect.poll(() => titleValues(page)).toEqual(expected);

test('two browsers share a list: add, tick, rename and delete show up on the other side', async ({ app, alice, bob }) => {
  const list = newId('list').slice(-8);
  const a = await openList(app, alice, list);
  const b = await openList(app, bob, list);
  // The count waits (a Transition over the query as a resource) until the list is known.
  const count = (page) => page.getByTestId('todo-count');
  await expect(count(a.page)).toHaveText('0 open of 0');

  await add(a.page, 'milk');
  await settled(a.page, 'milk');
  await settled(b.page, 'milk');
  await expect(count(b.page)).toHaveText('1 open of 1');

  // B ticks it: A sees it done.
  await item(b.page, 'milk').getByTestId('todo-done').check();
  await expect(item(a.page, 'milk').getByTestId('todo-done')).toBeChecked();
  await expect(count(a.page)).toHaveText('0 open of 1');

  // A renames it: B sees the new title, once.
  await item(a.page, 'milk').getByTestId('todo-title').fill('oat milk');
  await item(a.page, 'milk').getByTestId('todo-title').press('Enter');
  await settled(b.page, 'oat milk');
  await expectTitles(b.page, ['oat milk']);
  await expect(item(b.page, 'oat milk').getByTestId('todo-done'), 'the rename kept done').toBeChecked();

  // B deletes it: gone on A.
  await item(b.page, 'oat milk').getByTestId('todo-delete').click();
  await expect(titles(a.page)).toHaveCount(0);
  await expect(titles(b.page)).toHaveCount(0);

  // Another list is another topic: nothing from this one shows there.
  const elsewhere = await openList(app, bob, newId('list').slice(-8));
  await add(a.page, 'bread');
  await settled(b.page, 'bread');
  await expect(titles(elsewhere.page)).toHaveCount(0);
  expect(a.errors).toEqual([]);
  expect(b.errors).toEqual([]);
  for (const page of [a.page, b.page, elsewhere.page]) await page.close();
});

test('offline edits stay local, then sync once the browser is back online', async ({ app, alice, bob }) => {
  const list = newId('list').slice(-8);
  const a = await openList(app, alice, list);
  const b = await openList(app, bob, list);
  await add(a.page, 'eggs');
  await settled(b.page, 'eggs');

  await alice.context.setOffline(true);
  // The network's loss shows at once, before any write fails.
  await expect(status(a.page)).toHaveAttribute('data-state', 'offline', { timeout: 5_000 });
  await add(a.page, 'flour');
  await item(a.page, 'eggs').getByTestId('todo-done').check();
  await expect(item(a.page, 'flour'), 'queued while offline').toHaveAttribute('data-status', 'pending');
  await expect(status(a.page)).toHaveAttribute('data-state', 'offline');
  // Nothing reached B meanwhile.
  await a.page.waitForTimeout(500);
  expect(await titleValues(b.page)).toEqual(['eggs']);
  await expect(item(b.page, 'eggs').getByTestId('todo-done')).not.toBeChecked();

  await alice.context.setOffline(false);
  await settled(a.page, 'flour');
  await settled(b.page, 'flour');
  await expect(item(b.page, 'eggs').getByTestId('todo-done')).toBeChecked();
  // Each offline write applied once, in order.
  await expectTitles(b.page, ['eggs', 'flour']);
  await expect(status(a.page)).toHaveAttribute('data-state', 'online', { timeout: 15_000 });
  for (const page of [a.page, b.page]) await page.close();
});

test('a server whose tables lag the model says so on the page, not "online", and serves once migrated', async ({ alice }) => {
  // A worker of its own: this isolate has not found the tables matching yet.
  const lagging = await startApp({ app: 'todo' });
  try {
    // On PostgreSQL the worker migrates on its first connection (the health check's
    // does not count as the tables found matching).
    expect((await fetch(`${lagging.url}/api/health`)).status).toBe(200);
    await lagging.sql('ALTER TABLE todos RENAME COLUMN title TO name');
    const page = await alice.context.newPage();
    await page.goto(`${lagging.url}/list/${newId('list').slice(-8)}`);
    await expect(status(page)).toHaveAttribute('data-state', 'server_not_ready', { timeout: 20_000 });
    await expect(status(page)).toHaveText(/server not ready.*todos lacks column\(s\) title/);
    // Nothing known of the list yet: the count shows its fallback.
    await expect(page.getByTestId('todo-count')).toHaveAttribute('data-known', 'false');
    await add(page, 'while broken');
    await expect(page.getByTestId('todo-count')).toHaveText('1 open of 1');
    await expect(item(page, 'while broken')).toHaveAttribute('data-status', 'pending');

    await lagging.sql('ALTER TABLE todos RENAME COLUMN name TO title');
    await expect(status(page)).toHaveAttribute('data-state', 'online', { timeout: 30_000 });
    await settled(page, 'while broken');
    await page.close();
  } finally {
    await lagging.stop();
  }
});

test('a write the rules refuse is rolled back with its reason, and never reaches the other browser', async ({ app, alice, bob }) => {
  const list = newId('list').slice(-8);
  const a = await openList(app, alice, list);
  const b = await openList(app, bob, list);
  await add(a.page, 'keep me');
  await settled(b.page, 'keep me');

  const tooLong = 'x'.repeat(201);
  await add(a.page, tooLong);
  await expect(a.page.getByTestId('refusal').filter({ hasText: 'at most 200 characters' })).toBeVisible({ timeout: 15_000 });
  await expect(titles(a.page), 'the refused item is rolled back').toHaveCount(1);

  // A rename the rules refuse: the old title comes back.
  await item(a.page, 'keep me').getByTestId('todo-title').fill(tooLong);
  await a.page.getByTestId('todo-title').press('Enter');
  await expect(a.page.getByTestId('refusal')).toHaveCount(2, { timeout: 15_000 });
  // The refused rename is rolled back.
  await expectTitles(a.page, ['keep me']);

  await b.page.waitForTimeout(300);
  expect(await titleValues(b.page)).toEqual(['keep me']);
  await expect(b.page.getByTestId('refusal')).toHaveCount(0);
  for (const page of [a.page, b.page]) await page.close();
});

test('a query the callback denies shows its own error on the list', async ({ app, stranger }) => {
  const page = await stranger.context.newPage();
  await page.goto(`${app.url}/list/locked-${newId('list').slice(-8)}`);
  await expect(page.getByTestId('query-error')).toHaveText(/is locked/, { timeout: 20_000 });
  await expect(titles(page)).toHaveCount(0);
});

test('a forged or stale token is renewed without asking: the list works', async ({ app, stranger }) => {
  const page = await stranger.context.newPage();
  // A cached token the server will not accept (wrong signature), for the cached name.
  await page.addInitScript(() => {
    localStorage.setItem('todo:name', 'Mallory');
    localStorage.setItem('sync-todo:token', JSON.stringify({
      token: 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJNYWxsb3J5In0.forged', name: 'Mallory', expires_at: 4102444800,
    }));
  });
  const list = newId('list').slice(-8);
  await page.goto(`${app.url}/list/${list}`);
  await add(page, 'after renewal');
  await expect(item(page, 'after renewal')).toHaveAttribute('data-status', 'confirmed', { timeout: 20_000 });
  await expect(page.getByTestId('query-error')).toHaveCount(0);
});
