// No history leaked: a pull hands out each record's latest image only, compaction
// removes superseded images and deletes from the upstream change log, and a client
// whose cursor is older than the compaction is told to resync. The horizon is 0 s
// here, so every change is old enough once the cron handler runs. Runs on D1 and, in
// the PostgreSQL tier, on PostgreSQL.
import { test, before, after } from './support/playwright.mjs';
import assert from 'node:assert/strict';
import { startApp } from './support/app.mjs';
import { client, guestToken, newId } from './support/sync.mjs';

let app;
let ada;

before(async () => {
  app = await startApp({ vars: { SYNC_COMPACTION_HORIZON_S: '0' } });
  ada = await guestToken(app.url, 'Ada');
});
after(async () => app?.stop());

const roomMessages = (roomId) => ({ name: 'roomMessages', args: { roomId } });

async function write(a, room, name, args, recordId) {
  const mutation = { id: newId('outbox'), name, args: { roomId: room, authorId: a.subject, ...(name === 'sendMessage' ? { authorName: 'Ada' } : {}), ...args }, record_id: recordId ?? newId('messages') };
  const pushed = await a.push([mutation]);
  assert.equal(pushed.json?.results?.[0]?.status, 'confirmed', pushed.text);
  return mutation.record_id;
}

test('a newcomer never receives edited or deleted text, before or after compaction', async () => {
  const room = newId('room');
  const a = client(app.url, ada);
  const kept = await write(a, room, 'sendMessage', { body: 'draft with a typo' });
  const gone = await write(a, room, 'sendMessage', { body: 'my password is hunter2' });
  await write(a, room, 'editMessage', { body: 'final text' }, kept);
  await write(a, room, 'deleteMessage', {}, gone);

  // Before compaction: the pull sends only each record's latest image.
  const newcomer = client(app.url, await guestToken(app.url, 'Newcomer'));
  const early = await newcomer.pull(0, [roomMessages(room)]);
  assert.equal(early.status, 200, early.text);
  assert.doesNotMatch(early.text, /typo|hunter2/);
  assert.deepEqual(early.json.changes.map((c) => [c.record_id, c.kind]), [[kept, 'upsert'], [gone, 'delete']]);

  const { through, removed } = await app.compact();
  assert.ok(through >= 4, `compacted through ${through}`);
  assert.ok(removed >= 3, `${removed} removed`);
  // The upstream log itself no longer holds the old texts, nor the deleted record.
  const log = (await app.sql(`SELECT record_id, row_json FROM sync_changes WHERE record_id IN ('${kept}', '${gone}')`));
  assert.equal(log.length, 1, JSON.stringify(log));
  assert.equal(log[0][0], kept);
  assert.match(log[0][1], /final text/);

  // A cursor older than the compaction must resync; the snapshot and a pull from its
  // cursor are current.
  const stale = await newcomer.pull(0, [roomMessages(room)]);
  assert.equal(stale.status, 410, stale.text);
  assert.equal(stale.json.error, 'resync_required');
  const snapshot = await newcomer.query('roomMessages', { roomId: room });
  assert.deepEqual(snapshot.json.rows.map((row) => row.body), ['final text']);
  assert.ok(snapshot.json.cursor >= through);
  const fresh = await newcomer.pull(snapshot.json.cursor, [roomMessages(room)]);
  assert.equal(fresh.status, 200, fresh.text);
  assert.deepEqual(fresh.json.changes, []);

  // Writes go on after compaction, and their sequence numbers keep growing.
  const later = await write(a, room, 'sendMessage', { body: 'after compaction' });
  const next = await newcomer.pull(snapshot.json.cursor, [roomMessages(room)]);
  assert.deepEqual(next.json.changes.map((c) => c.record_id), [later]);
  assert.ok(next.json.changes[0].seq > through);
  // Compacting again removes nothing new that a client still needs.
  const again = await app.compact();
  assert.ok(again.through >= next.json.changes[0].seq);
  const current = await newcomer.query('roomMessages', { roomId: room });
  assert.deepEqual(current.json.rows.map((row) => row.body).sort(), ['after compaction', 'final text']);
});

test('a browser whose cursor is older than the compaction re-bootstraps and keeps its pending writes', async () => {
  const { launchBrowser, watchErrors } = await import('./support/app.mjs');
  const browser = await launchBrowser();
  try {
    const room = newId('room').slice(-8);
    const a = client(app.url, ada);
    const doomed = await write(a, room, 'sendMessage', { body: 'about to be deleted' });
    const edited = await write(a, room, 'sendMessage', { body: 'before the edit' });
    const page = await browser.context.newPage();
    const errors = watchErrors(page);
    await page.goto(`${app.url}/room/${room}`);
    await page.getByTestId('app-status').filter({ hasText: 'interactive' }).waitFor();
    await page.getByTestId('sync-status').filter({ hasText: 'online' }).waitFor({ timeout: 15_000 });
    await page.locator('[data-testid="message"][data-status="confirmed"]').filter({ hasText: 'about to be deleted' }).waitFor();

    await browser.context.setOffline(true);
    await page.getByTestId('composer-input').fill('written while away');
    await page.getByTestId('composer-send').click();
    await page.locator('[data-testid="message"][data-status="pending"]').filter({ hasText: 'written while away' }).waitFor();
    // Meanwhile, upstream: a delete and an edit, then compaction removes the delete.
    await write(a, room, 'deleteMessage', {}, doomed);
    await write(a, room, 'editMessage', { body: 'after the edit' }, edited);
    const { through } = await app.compact();
    assert.ok(through > 0);

    await browser.context.setOffline(false);
    await page.locator('[data-testid="message"][data-status="confirmed"]').filter({ hasText: 'written while away' })
      .waitFor({ timeout: 30_000 });
    await page.getByTestId('message').filter({ hasText: 'after the edit' }).waitFor({ timeout: 15_000 });
    await page.getByTestId('message').filter({ hasText: 'about to be deleted' }).waitFor({ state: 'detached', timeout: 15_000 });
    const shown = (await page.getByTestId('message-body').allTextContents()).sort();
    const upstream = (await a.query('roomMessages', { roomId: room })).json.rows.map((row) => row.body).sort();
    assert.deepEqual(shown, upstream);
    assert.deepEqual(upstream, ['after the edit', 'written while away']);
    assert.equal(await page.getByTestId('rejected-message').count(), 0, 'nothing rolled back');
    assert.deepEqual(errors.filter((error) => !/ERR_INTERNET_DISCONNECTED|Failed to fetch|410/.test(error)), []);
  } finally {
    await browser.close();
  }
});
