// Revocation in the browser: when the app stops letting a user read one room, the
// tab on that room shows why and receives nothing more of it, while the user's other
// room (another tab, the same local store and pulls) keeps syncing. The app's query
// rule here is a callback server the test controls.
import { test, before, after } from './support/playwright.mjs';
import assert from 'node:assert/strict';
import { startApp, launchBrowser, watchErrors } from './support/app.mjs';
import { startCallbackServer } from './support/callback-server.mjs';
import { client, guestToken, newId, subjectOf } from './support/sync.mjs';

let app;
let callbacks;
let browser;
// `${subject} ${room}` pairs the app no longer allows.
const closed = new Set();

before(async () => {
  callbacks = await startCallbackServer();
  callbacks.answer((kind, body, headers) => {
    const token = headers.authorization?.slice('Bearer '.length);
    const room = body?.args?.roomId;
    return token && closed.has(`${subjectOf(token)} ${room}`)
      ? { json: { allow: false, reason: `room ${room} is closed to you` } }
      : { json: { allow: true } };
  });
  app = await startApp({ vars: { SYNC_QUERY_CALLBACK_URL: `${callbacks.url}/query` } });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await app?.stop();
  await callbacks?.close();
});

async function openRoom(room) {
  const page = await browser.context.newPage();
  const errors = watchErrors(page);
  await page.goto(`${app.url}/room/${room}`);
  await page.getByTestId('app-status').filter({ hasText: 'interactive' }).waitFor();
  await page.getByTestId('sync-status').filter({ hasText: 'online' }).waitFor({ timeout: 15_000 });
  return { page, errors };
}

const shown = (page, text) => page.getByTestId('message').filter({ hasText: text }).waitFor({ timeout: 10_000 });

test('a room the app closes shows why and gets nothing more; the other room syncs on', async () => {
  const [roomA, roomB] = [newId('room').slice(-8), newId('room').slice(-8)];
  const a = await openRoom(roomA);
  const b = await openRoom(roomB);
  const writer = client(app.url, await guestToken(app.url, 'Writer'));
  const send = async (room, body) => {
    const pushed = await writer.send(room, 'Writer', body).response;
    assert.equal(pushed.json.results[0].status, 'confirmed', pushed.text);
  };
  await send(roomA, 'hello A');
  await send(roomB, 'hello B');
  await shown(a.page, 'hello A');
  await shown(b.page, 'hello B');

  // The app closes room A to this browser's user.
  const subject = await a.page.evaluate(() => JSON.parse(localStorage.getItem('sync-chat:token')).subject);
  closed.add(`${subject} ${roomA}`);
  // The engine learns of it at the browser's next pull (pokes that carry rows need
  // none, for at most the 30 s authorization window). A write to B too large to ride
  // in a poke makes the browser pull both rooms: A is refused, B served.
  const big = Array.from({ length: 40 }, (_, i) => ({
    id: newId('outbox'),
    name: 'sendMessage',
    args: { roomId: roomB, authorId: writer.subject, authorName: 'Writer', body: `big ${i} ${'b'.repeat(1990)}` },
    record_id: newId('messages'),
  }));
  assert.equal((await writer.push(big)).status, 200);
  await shown(b.page, 'big 39');
  await a.page.getByTestId('query-error').filter({ hasText: `room ${roomA} is closed to you` }).waitFor({ timeout: 10_000 });
  assert.equal(await b.page.getByTestId('query-error').count(), 0, 'room B shows no error');

  // Room A's writes reach the browser no more; room B's do.
  await send(roomA, 'secret in A');
  await send(roomB, 'B goes on');
  await shown(b.page, 'B goes on');
  await a.page.waitForTimeout(1_000);
  assert.equal(await a.page.getByTestId('message').filter({ hasText: 'secret in A' }).count(), 0);
  const local = await b.page.evaluate(() => document.body.innerText);
  assert.ok(!local.includes('secret in A'));
  assert.deepEqual(a.errors, []);
  assert.deepEqual(b.errors, []);
});
