// The todo example, end to end: two real browsers on one list, through the engine's
// public API only (its own model, callbacks, worker and migrations).
import { test, before, after } from '../../../end2end/support/playwright.mjs';
import assert from 'node:assert/strict';
import { startApp, launchBrowser, watchErrors } from '../../../end2end/support/app.mjs';
import { newId } from '../../../end2end/support/sync.mjs';

let app;
let alice;
let bob;

before(async () => {
  app = await startApp({ app: 'todo' });
  [alice, bob] = await Promise.all([launchBrowser(), launchBrowser()]);
});

after(async () => {
  await alice?.close();
  await bob?.close();
  await app?.stop();
});

async function openList(browser, list) {
  const page = await browser.context.newPage();
  const errors = watchErrors(page);
  await page.goto(`${app.url}/list/${list}`);
  await page.locator('[data-testid="sync-status"][data-state="online"]').waitFor({ timeout: 20_000 });
  return { page, errors };
}

async function add(page, title) {
  await page.getByTestId('new-todo').fill(title);
  await page.getByTestId('add-todo').click();
}

const item = (page, title) => page.locator(`[data-testid="todo"][data-title="${title}"]`);
const titles = (page) => page.getByTestId('todo-title').evaluateAll((inputs) => inputs.map((input) => input.value));
const settled = (page, title) =>
  page.locator(`[data-testid="todo"][data-status="confirmed"][data-title="${title}"]`).waitFor({ timeout: 15_000 });

async function until(check, what, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    last = await check();
    if (last) return last;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`timed out waiting for ${what} (last: ${JSON.stringify(last)})`);
}

test('two browsers share a list: add, tick, rename and delete show up on the other side', async () => {
  const list = newId('list').slice(-8);
  const a = await openList(alice, list);
  const b = await openList(bob, list);

  await add(a.page, 'milk');
  await settled(a.page, 'milk');
  await settled(b.page, 'milk');

  // B ticks it: A sees it done.
  await item(b.page, 'milk').getByTestId('todo-done').check();
  await until(async () => item(a.page, 'milk').getByTestId('todo-done').isChecked(), 'A to see milk done');

  // A renames it: B sees the new title, once.
  await item(a.page, 'milk').getByTestId('todo-title').fill('oat milk');
  await item(a.page, 'milk').getByTestId('todo-title').press('Enter');
  await settled(b.page, 'oat milk');
  assert.deepEqual(await titles(b.page), ['oat milk']);
  assert.equal(await item(b.page, 'oat milk').getByTestId('todo-done').isChecked(), true, 'the rename kept done');

  // B deletes it: gone on A.
  await item(b.page, 'oat milk').getByTestId('todo-delete').click();
  await until(async () => (await titles(a.page)).length === 0, 'A to see the item deleted');
  assert.deepEqual(await titles(b.page), []);

  // Another list is another topic: nothing from this one shows there.
  const elsewhere = await openList(bob, newId('list').slice(-8));
  await add(a.page, 'bread');
  await settled(b.page, 'bread');
  assert.deepEqual(await titles(elsewhere.page), []);
  assert.deepEqual(a.errors, []);
  assert.deepEqual(b.errors, []);
  for (const page of [a.page, b.page, elsewhere.page]) await page.close();
});

test('offline edits stay local, then sync once the browser is back online', async () => {
  const list = newId('list').slice(-8);
  const a = await openList(alice, list);
  const b = await openList(bob, list);
  await add(a.page, 'eggs');
  await settled(b.page, 'eggs');

  await alice.context.setOffline(true);
  // The network's loss shows at once, before any write fails.
  await a.page.locator('[data-testid="sync-status"][data-state="offline"]').waitFor({ timeout: 5_000 });
  await add(a.page, 'flour');
  await item(a.page, 'eggs').getByTestId('todo-done').check();
  await item(a.page, 'flour').waitFor();
  assert.equal(await item(a.page, 'flour').getAttribute('data-status'), 'pending', 'queued while offline');
  await a.page.locator('[data-testid="sync-status"][data-state="offline"]').waitFor({ timeout: 15_000 });
  // Nothing reached B meanwhile.
  await new Promise((resolve) => setTimeout(resolve, 500));
  assert.deepEqual(await titles(b.page), ['eggs']);
  assert.equal(await item(b.page, 'eggs').getByTestId('todo-done').isChecked(), false);

  await alice.context.setOffline(false);
  await settled(a.page, 'flour');
  await settled(b.page, 'flour');
  await until(async () => item(b.page, 'eggs').getByTestId('todo-done').isChecked(), 'B to see eggs done');
  assert.deepEqual(await titles(b.page), ['eggs', 'flour'], 'each offline write applied once, in order');
  await a.page.locator('[data-testid="sync-status"][data-state="online"]').waitFor({ timeout: 15_000 });
  for (const page of [a.page, b.page]) await page.close();
});

test('a server whose tables lag the model says so on the page, not "online", and serves once migrated', async () => {
  // A worker of its own: this isolate has not found the tables matching yet.
  const lagging = await startApp({ app: 'todo' });
  try {
    // On PostgreSQL the worker migrates on its first connection (the health check's
    // does not count as the tables found matching).
    assert.equal((await fetch(`${lagging.url}/api/health`)).status, 200);
    await lagging.sql('ALTER TABLE todos RENAME COLUMN title TO name');
    const page = await alice.context.newPage();
    await page.goto(`${lagging.url}/list/${newId('list').slice(-8)}`);
    const status = page.locator('[data-testid="sync-status"][data-state="server_not_ready"]');
    await status.waitFor({ timeout: 20_000 });
    assert.match(await status.textContent(), /server not ready.*todos lacks column\(s\) title/);
    await add(page, 'while broken');
    await page.locator('[data-testid="todo"][data-status="pending"][data-title="while broken"]').waitFor();

    await lagging.sql('ALTER TABLE todos RENAME COLUMN name TO title');
    await page.locator('[data-testid="sync-status"][data-state="online"]').waitFor({ timeout: 30_000 });
    await settled(page, 'while broken');
    await page.close();
  } finally {
    await lagging.stop();
  }
});

test('a write the rules refuse is rolled back with its reason, and never reaches the other browser', async () => {
  const list = newId('list').slice(-8);
  const a = await openList(alice, list);
  const b = await openList(bob, list);
  await add(a.page, 'keep me');
  await settled(b.page, 'keep me');

  const tooLong = 'x'.repeat(201);
  await add(a.page, tooLong);
  await a.page.getByTestId('refusal').filter({ hasText: 'at most 200 characters' }).waitFor({ timeout: 15_000 });
  await until(async () => (await titles(a.page)).length === 1, 'the refused item to be rolled back');

  // A rename the rules refuse: the old title comes back.
  await item(a.page, 'keep me').getByTestId('todo-title').fill(tooLong);
  await a.page.getByTestId('todo-title').press('Enter');
  await a.page.getByTestId('refusal').nth(1).waitFor({ timeout: 15_000 });
  await until(async () => JSON.stringify(await titles(a.page)) === '["keep me"]', 'the refused rename to be rolled back');

  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.deepEqual(await titles(b.page), ['keep me']);
  assert.deepEqual(await b.page.getByTestId('refusal').count(), 0);
  for (const page of [a.page, b.page]) await page.close();
});

test('a query the callback denies shows its own error on the list', async () => {
  const browser = await launchBrowser();
  try {
    const page = await browser.context.newPage();
    await page.goto(`${app.url}/list/locked-${newId('list').slice(-8)}`);
    const error = page.getByTestId('query-error');
    await error.waitFor({ timeout: 20_000 });
    assert.match(await error.textContent(), /is locked/);
    assert.deepEqual(await titles(page), []);
  } finally {
    await browser.close();
  }
});

test('a forged or stale token is renewed without asking: the list works', async () => {
  const browser = await launchBrowser();
  try {
    const page = await browser.context.newPage();
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
    await page.locator('[data-testid="todo"][data-status="confirmed"][data-title="after renewal"]')
      .waitFor({ timeout: 20_000 });
    assert.equal(await page.getByTestId('query-error').count(), 0);
  } finally {
    await browser.close();
  }
});
