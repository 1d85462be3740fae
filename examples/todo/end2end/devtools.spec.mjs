// The engine's devtools panel in the todo app: each tab checked against what the
// test did (an offline write in the outbox until it syncs, a refused write with its
// reason, a query's row count, the console's count, the poke that brought the other
// browser's write, the timings), and screenshots at two widths.
import { test, expect } from '../../../end2end/support/fixtures.mjs';
import { newId } from '../../../end2end/support/sync.mjs';
import { openDevtools, showTab, outboxItem, queryRow, runSql, screenshotDevtools, panel } from '../../../end2end/support/devtools.mjs';

test.use({ appName: 'todo' });

const status = (page) => page.getByTestId('sync-status');
const titles = (page) => page.getByTestId('todo-title');
const confirmedItem = (page, title) => page.locator(`[data-testid="todo"][data-status="confirmed"][data-title="${title}"]`);

async function openList(app, browser, list, query = '') {
  const page = await browser.context.newPage();
  await page.goto(`${app.url}/list/${list}${query}`);
  await expect(status(page)).toHaveAttribute('data-state', 'online', { timeout: 20_000 });
  return page;
}

async function add(page, title) {
  await page.getByTestId('new-todo').fill(title);
  await page.getByTestId('add-todo').click();
}

test('the devtools show the outbox, queries, timeline, data and timings of what happened', async ({ app, alice, bob }) => {
  const list = newId('list').slice(-8);
  // `?devtools` opens the panel at once.
  const a = await openList(app, alice, list, '?devtools');
  const b = await openList(app, bob, list);
  await expect(panel(a)).toBeVisible();
  await expect(panel(b), 'closed unless asked for').toBeHidden();

  // Status: this tab leads, online, on OPFS, a schema version.
  await expect(a.getByTestId('devtools-online')).toHaveText('online');
  await expect(a.getByTestId('devtools-leader')).toHaveText('yes');
  await expect(a.getByTestId('devtools-storage')).toHaveText('opfs');
  await expect(a.getByTestId('devtools-schema')).not.toBeEmpty();

  // A write made offline waits in the outbox, and leaves it once back online.
  await add(a, 'eggs');
  await expect(confirmedItem(a, 'eggs')).toBeVisible({ timeout: 15_000 });
  await alice.context.setOffline(true);
  await expect(status(a)).toHaveAttribute('data-state', 'offline', { timeout: 5_000 });
  await add(a, 'written offline');
  await showTab(a, 'outbox');
  const offline = outboxItem(a, 'written offline');
  await expect(offline).toBeVisible();
  await expect(offline).toHaveAttribute('data-state', /local|sending|retrying/);
  await expect(offline).toContainText('addTodo');
  await showTab(a, 'status');
  await expect(a.getByTestId('devtools-outbox-count')).toHaveText('1');
  await expect(a.getByTestId('devtools-online')).toHaveText('offline');
  await alice.context.setOffline(false);
  await expect(confirmedItem(a, 'written offline')).toBeVisible({ timeout: 30_000 });
  await showTab(a, 'outbox');
  await expect(a.getByTestId('devtools-outbox-empty')).toBeVisible({ timeout: 10_000 });

  // A write the rules refuse shows with the reason the server gave.
  await add(a, 'x'.repeat(201));
  const refused = a.locator('[data-testid="devtools-outbox-item"][data-state="rejected"]');
  await expect(refused).toBeVisible({ timeout: 15_000 });
  await expect(refused.getByTestId('devtools-outbox-state')).toContainText('at most 200 characters');

  // Queries: the list's live query holds as many rows as the page shows.
  await showTab(a, 'queries');
  const listQuery = queryRow(a, 'listTodos');
  await expect(listQuery).toBeVisible();
  await expect(titles(a)).toHaveCount(2);
  await expect(listQuery.getByTestId('devtools-query-rows')).toHaveText('2');
  await expect(listQuery).toContainText(list);

  // Another browser's write arrives by a poke carrying its rows: the timeline says so,
  // and the query says what refreshed it.
  await add(b, 'from bob');
  await expect(confirmedItem(a, 'from bob')).toBeVisible({ timeout: 15_000 });
  await expect(listQuery.getByTestId('devtools-query-rows')).toHaveText('3');
  // Nothing left to fetch: the poke brought the query up to the server's head.
  await showTab(a, 'status');
  await expect(a.getByTestId('devtools-behind')).toHaveText('0 changes');
  await showTab(a, 'timeline');
  await a.getByTestId('devtools-timeline-filter').fill('poke');
  const pokes = a.locator('[data-testid="devtools-event"][data-kind="poke"]');
  await expect(pokes.filter({ hasText: /changes? carried/ }).first()).toBeVisible();
  await expect(a.locator('[data-testid="devtools-event"][data-kind="push"]'), 'the filter hides the rest').toHaveCount(0);
  await a.getByTestId('devtools-timeline-filter').fill('');
  await expect(a.locator('[data-testid="devtools-event"][data-kind="push"]').first()).toBeVisible();

  // Data: the tables with their counts, and the console agrees with the page.
  await showTab(a, 'data');
  await expect(a.locator('[data-testid="devtools-table"][data-name="todos"]').getByTestId('devtools-table-rows')).toHaveText('3');
  expect(await runSql(a, 'SELECT count(*) FROM todos')).toEqual({ rows: [['3']] });
  const refusedSql = await runSql(a, 'DELETE FROM todos');
  expect(refusedSql.error).toContain('only a single SELECT');
  expect(await runSql(a, 'SELECT count(*) FROM todos'), 'nothing was deleted').toEqual({ rows: [['3']] });

  // Timings: local writes and the other browser's send -> render were measured.
  await showTab(a, 'timings');
  for (const name of ['local-db-write', 'send-to-render']) {
    await expect(a.locator(`[data-testid="devtools-timing"][data-name="${name}"]`)).not.toHaveAttribute('data-count', '0');
  }

  await showTab(a, 'timeline');
  await screenshotDevtools(a, 'todo');
  // Alt+Shift+D closes it; the page underneath is untouched.
  await a.setViewportSize({ width: 1280, height: 800 });
  await a.keyboard.press('Alt+Shift+KeyD');
  await expect(panel(a)).toBeHidden();
  await openDevtools(a);
  await expect(titles(a)).toHaveCount(3);
  for (const page of [a, b]) await page.close();
});

test('a query the app refuses shows its reason in the Queries tab', async ({ app, alice }) => {
  const page = await alice.context.newPage();
  await page.goto(`${app.url}/list/locked-${newId('list').slice(-8)}?devtools`);
  await showTab(page, 'queries');
  const refused = queryRow(page, 'listTodos');
  await expect(refused.getByTestId('devtools-query-error')).toContainText('is locked', { timeout: 20_000 });
  await page.close();
});
