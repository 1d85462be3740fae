// The engine's devtools panel in the chat, opened with its shortcut: each tab checked
// against what the test did, screenshots at two widths.
import { test, expect } from './support/fixtures.mjs';
import { newId } from './support/sync.mjs';
import { openDevtools, showTab, outboxItem, queryRow, runSql, screenshotDevtools, panel } from './support/devtools.mjs';

async function openRoom(app, browser, room) {
  const page = await browser.context.newPage();
  await page.goto(`${app.url}/room/${room}`);
  await expect(page.getByTestId('app-status')).toHaveText(/interactive/);
  await expect(page.getByTestId('sync-status')).toHaveText(/online/, { timeout: 15_000 });
  return page;
}

async function send(page, text) {
  await page.getByTestId('composer-input').fill(text);
  await page.getByTestId('composer-send').click();
}

const confirmed = (page, text) =>
  expect(page.locator('[data-testid="message"][data-status="confirmed"]').filter({ hasText: text })).toBeVisible({ timeout: 15_000 });

test('the chat devtools show what the sync engine did', async ({ app, alice, bob }) => {
  const room = newId('room').slice(-8);
  const a = await openRoom(app, alice, room);
  const b = await openRoom(app, bob, room);
  await expect(panel(a), 'closed until asked for').toBeHidden();
  await openDevtools(a);
  await expect(a.getByTestId('devtools-online')).toHaveText('online');
  await expect(a.getByTestId('devtools-needs-auth')).toHaveText('no');

  // Offline: the message waits in the outbox; back online it leaves.
  await alice.context.setOffline(true);
  await expect(a.getByTestId('devtools-online')).toHaveText('offline', { timeout: 5_000 });
  await send(a, 'sent while offline');
  await showTab(a, 'outbox');
  await expect(outboxItem(a, 'sent while offline')).toContainText('sendMessage');
  await alice.context.setOffline(false);
  await confirmed(a, 'sent while offline');
  await expect(a.getByTestId('devtools-outbox-empty')).toBeVisible({ timeout: 10_000 });

  // Refused by the app's callback (over 2000 characters): rejected, with the reason.
  await send(a, 'y'.repeat(2001));
  await expect(a.locator('[data-testid="devtools-outbox-item"][data-state="rejected"]')).toBeVisible({ timeout: 15_000 });
  await expect(a.getByTestId('rejected-message')).toBeVisible();
  const reason = (await a.getByTestId('rejected-message').textContent()).trim();
  expect(reason.length).toBeGreaterThan(0);

  // Bob's message reaches Alice by a poke; her query and console agree with the page.
  await send(b, 'hello from bob');
  await confirmed(a, 'hello from bob');
  const shown = await a.getByTestId('message').count();
  await showTab(a, 'queries');
  await expect(queryRow(a, 'roomMessages').getByTestId('devtools-query-rows')).toHaveText(String(shown));
  await showTab(a, 'timeline');
  await a.getByTestId('devtools-timeline-filter').fill('poke');
  await expect(a.locator('[data-testid="devtools-event"][data-kind="poke"]').filter({ hasText: /changes? carried/ }).first()).toBeVisible();
  expect(await runSql(a, `SELECT count(*) FROM messages WHERE room_id = '${room}'`)).toEqual({ rows: [[String(shown)]] });
  expect((await runSql(a, 'UPDATE messages SET body = 1')).error).toContain('only a single SELECT');

  await showTab(a, 'timings');
  await expect(a.locator('[data-testid="devtools-timing"][data-name="send-to-render"]')).not.toHaveAttribute('data-count', '0');
  await showTab(a, 'status');
  await screenshotDevtools(a, 'chat');
  for (const page of [a, b]) await page.close();
});
