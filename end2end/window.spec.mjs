// Large rooms: a room's messages are synced as a window (its newest 200), widened on
// demand, kept in sync for what each browser shows, and evicted when no longer used;
// pending writes never are.
import { test, before, after } from './support/playwright.mjs';
import assert from 'node:assert/strict';
import { startApp, launchBrowser, watchErrors } from './support/app.mjs';
import { client, newId } from './support/sync.mjs';
import { openDevtools, runSql } from './support/devtools.mjs';

let app;
let alice;
let bob;

before(async () => {
  app = await startApp();
  [alice, bob] = await Promise.all([launchBrowser(), launchBrowser()]);
});

after(async () => {
  await alice?.close();
  await bob?.close();
  await app?.stop();
});

async function openRoom(browser, room, query = '') {
  const page = await browser.context.newPage();
  const errors = watchErrors(page);
  await page.goto(`${app.url}/room/${room}${query}`);
  await page.getByTestId('app-status').filter({ hasText: 'interactive' }).waitFor();
  await page.getByTestId('sync-status').filter({ hasText: 'online' }).waitFor({ timeout: 15_000 });
  return { page, errors };
}

/** The line numbers of seeded bodies (`line N`, an edit `line N, ...`), ascending. */
const numbers = (texts) => texts.map((t) => Number(/^line (\d+)/.exec(t)?.[1])).filter((n) => !Number.isNaN(n)).sort((x, y) => x - y);
const range = (from, to) => Array.from({ length: to - from }, (_, i) => from + i);
const bodies = (page) => page.getByTestId('message-body').allTextContents();
const line = (page, text) => page.getByTestId('message').filter({ hasText: text });
const shownCount = (page, n) =>
  page.waitForFunction((n) => document.querySelectorAll('[data-testid="message"]').length === n, n, { timeout: 30_000 });

/** Runs a read-only SELECT on the page's local database (the devtools' console). */
async function local(page, sql) {
  await openDevtools(page);
  const answer = await runSql(page, sql);
  await page.getByTestId('devtools-close').click();
  return answer;
}

/** The browser's own sign-in (its guest cookie), as a Node client: writes as that user. */
async function asBrowserUser(browser) {
  // A page signs the browser in (as a guest) on its first visit.
  const warmup = await openRoom(browser, newId('room').slice(-8));
  await warmup.page.close();
  const cookie = (await browser.context.cookies()).find((c) => c.name === 'sync_token');
  assert.ok(cookie, 'the page signed in as a guest');
  return client(app.url, cookie.value);
}

async function seed(writer, room, total) {
  for (let batch = 0; batch < total / 100; batch += 1) {
    const mutations = Array.from({ length: 100 }, (_, i) => ({
      id: newId('outbox'), name: 'sendMessage',
      args: { roomId: room, authorId: writer.subject, authorName: 'Seeder', body: `line ${batch * 100 + i}` },
      record_id: newId('message'),
    }));
    const pushed = await writer.push(mutations);
    assert.equal(pushed.status, 200, pushed.text);
  }
}

test('a room of 5 000: an old message edited far back reaches the other browser when it scrolls there; a delete inside the window lets the next one in', async () => {
  const room = newId('room').slice(-8);
  // Alice's messages are seeded under her browser's sign-in: she may edit and delete
  // them in the page.
  const writer = await asBrowserUser(alice);
  await seed(writer, room, 5_000);
  const a = await openRoom(alice, room);
  const b = await openRoom(bob, room);
  await shownCount(a.page, 200);
  await shownCount(b.page, 200);
  // The newest 200 (one push stamps its 100 messages with one time, so a window's
  // edges fall between pushes here, and inside a push the order is the ids').
  assert.deepEqual(numbers(await bodies(b.page)), range(4800, 5000));
  // Only the window is in Bob's browser, not the room.
  assert.deepEqual(await local(b.page, `SELECT count(*) FROM messages WHERE room_id = '${room}'`), { rows: [['200']] });

  // Alice goes back three pages and edits a message there.
  for (const n of [400, 600, 800]) {
    await a.page.getByTestId('show-earlier').click();
    await shownCount(a.page, n);
  }
  await line(a.page, 'line 4250').getByTestId('message-edit').click();
  await a.page.getByTestId('message-edit-input').fill('line 4250, edited far back');
  await a.page.getByTestId('message-edit-input').press('Enter');
  await line(a.page, 'edited far back').and(a.page.locator('[data-status="confirmed"]')).waitFor({ timeout: 15_000 });
  // Bob does not show it (it is outside his window) until he scrolls there.
  assert.equal(await line(b.page, 'line 4250').count(), 0);
  for (const n of [400, 600, 800]) {
    await b.page.getByTestId('show-earlier').click();
    await shownCount(b.page, n);
  }
  await line(b.page, 'line 4250, edited far back').waitFor({ timeout: 15_000 });
  assert.ok(!(await bodies(b.page)).includes('line 4250'), 'the edit, not the old text');

  // A delete inside Bob's window: his window keeps 800 rows, the next older (one of
  // the push before) comes in.
  await line(a.page, 'line 4999').getByTestId('message-delete').click();
  await line(b.page, 'line 4999').waitFor({ state: 'detached', timeout: 15_000 });
  await b.page.waitForFunction(() => [...document.querySelectorAll('[data-testid="message-body"]')].some((e) => /^line 41\d\d$/.test(e.textContent)), null, { timeout: 15_000 });
  await shownCount(b.page, 800);
  const shown = numbers(await bodies(b.page));
  assert.equal(shown.length, 800);
  assert.deepEqual(shown.filter((n) => n >= 4200), range(4200, 4999));
  assert.equal(shown.filter((n) => n < 4200 && n >= 4100).length, 1);
  assert.deepEqual(a.errors, []);
  assert.deepEqual(b.errors, []);
  await a.page.close();
  await b.page.close();
});

test('a room no longer shown is evicted after its time to live; a write still pending survives it', async () => {
  const [left, other] = [newId('room').slice(-8), newId('room').slice(-8)];
  const writer = await asBrowserUser(bob);
  await seed(writer, left, 300);
  // Queries live one second once no view shows them.
  const b = await openRoom(bob, left, '?sync_ttl_ms=1000');
  await shownCount(b.page, 200);
  await b.page.context().setOffline(true);
  await b.page.getByTestId('composer-input').fill('written offline');
  await b.page.getByTestId('composer-send').click();
  await line(b.page, 'written offline').and(b.page.locator('[data-status="pending"]')).waitFor();
  // To another room, in the page (no reload): the first one is no longer shown.
  await b.page.getByTestId('room-input').fill(other);
  await b.page.getByTestId('room-join').click();
  await b.page.getByTestId('room-id').filter({ hasText: other }).waitFor();
  // Past its time to live, the left room's rows are gone but the pending write.
  await b.page.waitForTimeout(2_500);
  assert.deepEqual(await local(b.page, `SELECT body FROM messages WHERE room_id = '${left}'`), { rows: [['written offline']] });
  // Back online and back in the room: the pending write goes out, the window is
  // fetched again, and it shows both.
  await b.page.context().setOffline(false);
  await b.page.getByTestId('room-input').fill(left);
  await b.page.getByTestId('room-join').click();
  await line(b.page, 'written offline').and(b.page.locator('[data-status="confirmed"]')).waitFor({ timeout: 20_000 });
  await shownCount(b.page, 200);
  const shown = await bodies(b.page);
  assert.equal(shown[199], 'written offline', 'the newest, at the bottom');
  const older = numbers(shown.slice(0, 199));
  assert.deepEqual(older.filter((n) => n >= 200), range(200, 300));
  assert.equal(older.filter((n) => n < 200 && n >= 100).length, 99);
  assert.deepEqual(b.errors, []);
  await b.page.close();
});

test('a room no longer shown is unwatched: later writes there send this browser nothing, the room it shows still reaches it', async () => {
  const [left, shown] = [newId('room').slice(-8), newId('room').slice(-8)];
  const writer = await asBrowserUser(alice);
  const page = await bob.context.newPage();
  const errors = watchErrors(page);
  // Every frame the page's SQLite worker receives on its session socket.
  const frames = [];
  page.on('websocket', (socket) => socket.on('framereceived', (frame) => frames.push(String(frame.payload))));
  await page.goto(`${app.url}/room/${left}?sync_ttl_ms=1000`);
  await page.getByTestId('sync-status').filter({ hasText: 'online' }).waitFor({ timeout: 15_000 });
  // Watched while shown (its query watched it): a write there shows, by poke or by
  // the query's first answer, whichever comes first.
  assert.equal((await writer.send(left, 'Ada', 'while shown').response).status, 200);
  await line(page, 'while shown').waitFor({ timeout: 15_000 });
  // To another room, in the page; past its time to live the left room is evicted
  // and its session told (and says so).
  await page.getByTestId('room-input').fill(shown);
  await page.getByTestId('room-join').click();
  await page.getByTestId('room-id').filter({ hasText: shown }).waitFor();
  const deadline = Date.now() + 15_000;
  while (!frames.some((frame) => frame.startsWith('{"type":"unwatched"') && frame.includes(left))) {
    assert.ok(Date.now() < deadline, `no unwatch answer for ${left}: ${frames.slice(-3).join(' | ')}`);
    await page.waitForTimeout(200);
  }
  const mark = frames.length;
  assert.equal((await writer.send(left, 'Ada', 'after leaving').response).status, 200);
  assert.equal((await writer.send(shown, 'Ada', 'in the shown room').response).status, 200);
  await line(page, 'in the shown room').waitFor({ timeout: 15_000 });
  // Time for a poke of the left room to arrive, if one were sent.
  await page.waitForTimeout(1_500);
  const later = frames.slice(mark);
  assert.ok(later.some((frame) => frame.includes(shown)), 'the shown room is still poked');
  const pokes = later.filter((frame) => !frame.startsWith('{"type":"unwatched"'));
  assert.deepEqual(pokes.filter((frame) => frame.includes(left)), [], 'no poke for the left room');
  assert.deepEqual(errors, []);
  await page.close();
});
