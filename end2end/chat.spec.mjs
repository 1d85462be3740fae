// The chat through the real client SDK: page -> SQLite Web Worker (OPFS) -> connector
// -> D1 -> pokes -> the other browser.
import { test, before, after } from './support/playwright.mjs';
import assert from 'node:assert/strict';
import { startApp, launchBrowser, watchErrors } from './support/app.mjs';
import { client, guestToken, newId } from './support/sync.mjs';

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

async function openRoom(browser, room) {
  const page = await browser.context.newPage();
  const errors = watchErrors(page);
  // The poke sockets the page's SQLite worker opens.
  const sockets = [];
  page.on('websocket', (socket) => sockets.push(socket.url()));
  await page.goto(`${app.url}/room/${room}`);
  await page.getByTestId('app-status').filter({ hasText: 'interactive' }).waitFor();
  await page.getByTestId('sync-status').filter({ hasText: 'online' }).waitFor({ timeout: 15_000 });
  return { page, errors, sockets };
}

async function send(page, text) {
  await page.getByTestId('composer-input').fill(text);
  await page.getByTestId('composer-send').click();
}

const bodies = (page) => page.getByTestId('message-body').allTextContents();
const confirmed = (page, text) =>
  page.locator('[data-testid="message"][data-status="confirmed"]').filter({ hasText: text }).waitFor({ timeout: 15_000 });
const role = (page, name) => page.locator(`[data-testid="tab-role"][data-role="${name}"]`).waitFor({ timeout: 15_000 });


test('two browsers in one room: A sends, B sees it without a reload, and the metrics count it', async () => {
  const room = newId('room').slice(-8);
  const a = await openRoom(alice, room);
  const b = await openRoom(bob, room);

  await send(a.page, 'hello bob');
  await a.page.getByTestId('message').filter({ hasText: 'hello bob' }).waitFor();
  await confirmed(a.page, 'hello bob');

  const theirs = b.page.getByTestId('message').filter({ hasText: 'hello bob' });
  await theirs.waitFor({ timeout: 10_000 });
  assert.equal(await theirs.getAttribute('data-status'), 'confirmed');
  assert.equal(await theirs.getByTestId('message-author').textContent(), await a.page.getByTestId('name-input').inputValue());
  assert.deepEqual(await bodies(b.page), ['hello bob']);
  // The socket that brought it opened with a one-time ticket: no key in its URL.
  assert.ok(b.sockets.length >= 1, 'the worker opened a poke socket');
  for (const url of b.sockets) {
    assert.deepEqual([...new URL(url).searchParams.keys()], ['ticket'], url);
    assert.match(new URL(url).searchParams.get('ticket'), /^session_[0-9A-Z]{26}\.[0-9a-f]{32}$/);
  }
  // The write path was timed: one local write, one upstream write, one state update.
  for (const id of ['local-state-update', 'local-db-write', 'upstream-db-write']) {
    assert.equal(await a.page.getByTestId(`metric-${id}-n`).textContent(), '1', id);
    assert.ok(Number(await a.page.getByTestId(`metric-${id}-max`).textContent()) >= 0, id);
  }
  // B only received: its own write path is untouched.
  assert.equal(await b.page.getByTestId('metric-local-db-write-n').textContent(), '0');
  // Enter in the field sends too (the form submits; Send itself is a plain button).
  await a.page.getByTestId('composer-input').fill('sent with enter');
  await a.page.getByTestId('composer-input').press('Enter');
  await confirmed(a.page, 'sent with enter');
  await b.page.getByTestId('message').filter({ hasText: 'sent with enter' }).waitFor({ timeout: 10_000 });
  assert.equal(await a.page.getByTestId('composer-input').inputValue(), '', 'the field is cleared');
  await send(a.page, 'and again');
  await confirmed(a.page, 'and again');
  assert.equal(await a.page.getByTestId('metric-upstream-db-write-n').textContent(), '3');
  assert.deepEqual(a.errors, []);
  assert.deepEqual(b.errors, []);
  await a.page.close();
  await b.page.close();
});

test('B in another room does not see it', async () => {
  const room = newId('room').slice(-8);
  const other = newId('room').slice(-8);
  const a = await openRoom(alice, room);
  const b = await openRoom(bob, other);
  const watcher = await openRoom(bob, room);
  await send(a.page, 'only for this room');
  await confirmed(a.page, 'only for this room');
  // A browser in the same room got it, so the poke went out...
  await watcher.page.getByTestId('message').filter({ hasText: 'only for this room' }).waitFor({ timeout: 10_000 });
  // ...and the other room, in that same browser, shows only its own.
  await send(b.page, 'elsewhere');
  await confirmed(b.page, 'elsewhere');
  assert.deepEqual(await bodies(b.page), ['elsewhere']);
  for (const page of [a.page, b.page, watcher.page]) await page.close();
});

test('a message the app refuses is rolled back, the reason is shown, and it never reaches the server', async () => {
  const room = newId('room').slice(-8);
  const a = await openRoom(alice, room);
  const b = await openRoom(bob, room);
  const tooLong = 'x'.repeat(2001);
  await send(a.page, tooLong);
  const refusal = a.page.getByTestId('rejected-message');
  await refusal.waitFor();
  assert.match(await refusal.getByTestId('rejection-reason').textContent(), /at most 2000/);
  assert.deepEqual(await bodies(a.page), []);
  // A message sent after it arrives; the refused one never does.
  await send(a.page, 'a fine message');
  await confirmed(a.page, 'a fine message');
  await b.page.getByTestId('message').filter({ hasText: 'a fine message' }).waitFor({ timeout: 10_000 });
  assert.deepEqual(await bodies(b.page), ['a fine message']);
  // Upstream (D1) holds only the accepted one.
  const reader = client(app.url, await guestToken(app.url, 'Reader'));
  const { status, json } = await reader.query('roomMessages', { roomId: room });
  assert.equal(status, 200);
  assert.deepEqual(json.rows.map((row) => row.body), ['a fine message']);
  await a.page.close();
  await b.page.close();
});

/**
 * Records, in order, when a message body enters or leaves the page's DOM, when the
 * page hands a write to the SQLite worker, and every message the worker sends back.
 * A row shown before the worker's first message after the write was shown by the
 * page alone: without that, it could only show after the worker reported it.
 */
async function recordOrder(page) {
  await page.addInitScript(() => {
    window.__order = [];
    const Original = window.Worker;
    window.Worker = class extends Original {
      constructor(...args) {
        super(...args);
        this.addEventListener('message', () => window.__order.push('worker message'));
      }

      postMessage(data, ...rest) {
        if (typeof data === 'string' && data.includes('"type":"mutate"')) window.__order.push('write sent');
        return super.postMessage(data, ...rest);
      }
    };
    const bodiesOf = (nodes) => [...nodes].flatMap((node) =>
      node instanceof Element
        ? (node.matches('[data-testid="message-body"]') ? [node] : [...node.querySelectorAll('[data-testid="message-body"]')])
        : []);
    document.addEventListener('DOMContentLoaded', () => {
      new MutationObserver((records) => {
        for (const r of records) {
          for (const body of bodiesOf(r.addedNodes)) window.__order.push(`shown ${body.textContent}`);
          for (const body of bodiesOf(r.removedNodes)) window.__order.push(`removed ${body.textContent}`);
        }
      }).observe(document.body, { childList: true, subtree: true });
    });
  });
}

/** Asserts that `body` entered the DOM before the worker said anything after the write. */
function assertShownBeforeTheWorker(order, body) {
  const sent = order.indexOf('write sent');
  assert.ok(sent >= 0, 'the write went to the worker');
  const workerSpoke = order.indexOf('worker message', sent);
  const shown = order.indexOf(`shown ${body}`);
  assert.ok(shown >= 0, `shown: ${order.join(' | ').slice(0, 300)}`);
  assert.ok(workerSpoke === -1 || shown < workerSpoke, `shown after the worker answered: ${order.join(' | ').slice(0, 300)}`);
}

test('a sent message shows before the worker stores it; one the app refuses is taken back', async () => {
  const room = newId('room').slice(-8);
  const page = await alice.context.newPage();
  const errors = watchErrors(page);
  await recordOrder(page);
  await page.goto(`${app.url}/room/${room}`);
  await page.getByTestId('app-status').filter({ hasText: 'interactive' }).waitFor();
  await page.getByTestId('sync-status').filter({ hasText: 'online' }).waitFor({ timeout: 15_000 });

  await page.evaluate(() => { window.__order.length = 0; });
  await send(page, 'shown at once');
  await confirmed(page, 'shown at once');
  assertShownBeforeTheWorker(await page.evaluate(() => window.__order), 'shown at once');

  // Refused by the app's callback (over 2000 characters): shown at once too, then
  // taken back when the server says no.
  await page.evaluate(() => { window.__order.length = 0; });
  const tooLong = 'y'.repeat(2001);
  await send(page, tooLong);
  await page.getByTestId('rejected-message').waitFor({ timeout: 15_000 });
  await page.waitForFunction((body) => window.__order.includes(`removed ${body}`), tooLong, { timeout: 15_000 });
  assertShownBeforeTheWorker(await page.evaluate(() => window.__order), tooLong);
  assert.deepEqual(await bodies(page), ['shown at once']);
  assert.deepEqual(errors, []);
  await page.close();
});

test('a long room opens with its newest 200 messages and shows earlier ones on demand', async () => {
  const room = newId('room').slice(-8);
  const writer = client(app.url, await guestToken(app.url, 'Loader'));
  for (let batch = 0; batch < 6; batch += 1) {
    const mutations = Array.from({ length: 100 }, (_, i) => ({
      id: newId('outbox'), name: 'sendMessage', args: { roomId: room, authorId: writer.subject, authorName: 'Loader', body: `line ${batch * 100 + i}` }, record_id: newId('message'),
    }));
    assert.equal((await writer.push(mutations)).status, 200);
  }
  const a = await openRoom(alice, room);
  const count = a.page.getByTestId('message-count');
  const shownCount = (n) => a.page.waitForFunction((n) => document.querySelectorAll('[data-testid="message"]').length === n, n, { timeout: 30_000 });
  await shownCount(200);
  await a.page.waitForFunction(() => document.querySelector('[data-testid="message-count"]')?.dataset.more === 'true');
  assert.match(await count.textContent(), /newest 200 messages/);
  // The newest: the last three pushes' 200 (a push stamps its messages with one
  // time, so inside one the ids order them).
  const lineNumbers = async () => (await bodies(a.page)).map((b) => Number(b.slice(5))).filter((n) => !Number.isNaN(n));
  assert.deepEqual((await lineNumbers()).sort((x, y) => x - y), Array.from({ length: 200 }, (_, i) => 400 + i));
  await send(a.page, 'and one more');
  await confirmed(a.page, 'and one more');
  const shown = await bodies(a.page);
  assert.equal(shown.length, 200, 'the window keeps its size: the oldest shown leaves it');
  assert.equal(shown[199], 'and one more');
  await a.page.getByTestId('show-earlier').click();
  await shownCount(400);
  assert.equal((await lineNumbers()).filter((n) => n < 400).length, 199, 'the earlier 200, one of them shown before');
  await a.page.getByTestId('show-earlier').click();
  await shownCount(600);
  await a.page.getByTestId('show-earlier').click();
  await shownCount(601);
  assert.equal(await a.page.getByTestId('show-earlier').count(), 0);
  await a.page.waitForFunction(() => document.querySelector('[data-testid="message-count"]')?.dataset.more === 'false');
  assert.match(await count.textContent(), /^601 messages/);
  assert.deepEqual(a.errors, []);
  await a.page.close();
});

test('the author edits and deletes her own message; the other browser follows, and gets no such buttons', async () => {
  const room = newId('room').slice(-8);
  const a = await openRoom(alice, room);
  const b = await openRoom(bob, room);
  // Bob goes by Alice's very name: names are labels, the buttons follow the subject.
  const aliceName = await a.page.getByTestId('name-input').inputValue();
  await b.page.getByTestId('name-input').fill(aliceName);
  await b.page.getByTestId('name-input').dispatchEvent('change');
  await send(b.page, 'same name, other person');
  await confirmed(b.page, 'same name, other person');
  await send(a.page, 'first draft');
  await confirmed(a.page, 'first draft');
  await b.page.getByTestId('message').filter({ hasText: 'first draft' }).waitFor({ timeout: 10_000 });
  await a.page.getByTestId('message').filter({ hasText: 'same name, other person' }).waitFor({ timeout: 10_000 });
  // Only the author is offered edit and delete: one message each.
  assert.equal(await a.page.getByTestId('message-edit').count(), 1);
  assert.equal(await b.page.getByTestId('message-edit').count(), 1);
  assert.equal(await b.page.getByTestId('message-delete').count(), 1);
  const line = (page, text) => page.getByTestId('message').filter({ hasText: text });
  assert.equal(await line(b.page, 'first draft').getByTestId('message-edit').count(), 0);
  assert.equal(await line(a.page, 'same name, other person').getByTestId('message-edit').count(), 0);
  // Both show the same name; the tags after it tell them apart.
  const author = async (text) => [
    await line(a.page, text).getByTestId('message-author').textContent(),
    await line(a.page, text).getByTestId('message-author-tag').textContent(),
  ];
  const [mine, theirs] = [await author('first draft'), await author('same name, other person')];
  assert.equal(mine[0], aliceName);
  assert.equal(theirs[0], aliceName);
  assert.match(mine[1], /^#[0-9A-Z]{4}$/);
  assert.notEqual(mine[1], theirs[1]);
  await b.page.getByTestId('message-delete').click();
  await a.page.getByTestId('message').filter({ hasText: 'same name, other person' }).waitFor({ state: 'detached', timeout: 10_000 });

  await a.page.getByTestId('message-edit').click();
  await a.page.getByTestId('message-edit-input').fill('final text');
  await a.page.getByTestId('message-edit-input').press('Enter');
  await confirmed(a.page, 'final text');
  await b.page.getByTestId('message').filter({ hasText: 'final text' }).waitFor({ timeout: 10_000 });
  assert.deepEqual(await bodies(b.page), ['final text']);

  await a.page.getByTestId('message-delete').click();
  await b.page.getByTestId('message').filter({ hasText: 'final text' }).waitFor({ state: 'detached', timeout: 10_000 });
  assert.deepEqual(await bodies(a.page), []);
  assert.deepEqual(a.errors, []);
  assert.deepEqual(b.errors, []);
  await a.page.close();
  await b.page.close();
});

test('messages are there after a reload', async () => {
  const room = newId('room').slice(-8);
  const a = await openRoom(alice, room);
  await send(a.page, 'still here');
  await a.page.locator('[data-testid="message"][data-status="confirmed"]').filter({ hasText: 'still here' }).waitFor();
  await a.page.reload();
  await a.page.getByTestId('app-status').filter({ hasText: 'interactive' }).waitFor();
  await a.page.getByTestId('message').filter({ hasText: 'still here' }).waitFor();
  assert.deepEqual(a.errors, []);
  await a.page.close();
});

test('two tabs share one store; closing the leader tab leaves the other working', async () => {
  const room = newId('room').slice(-8);
  const first = await openRoom(alice, room);
  await role(first.page, 'leader');
  const second = await openRoom(alice, room);
  await role(second.page, 'follower');
  // The follower uses the leader's database, so it is on OPFS too.
  await second.page.getByTestId('storage').filter({ hasText: 'OPFS' }).waitFor();

  await send(second.page, 'from the second tab');
  await first.page.getByTestId('message').filter({ hasText: 'from the second tab' }).waitFor({ timeout: 10_000 });
  await confirmed(second.page, 'from the second tab');
  await send(first.page, 'from the first tab');
  await confirmed(second.page, 'from the first tab');

  // The leader goes away: the second tab takes over the same database and carries on.
  await first.page.close();
  await role(second.page, 'leader');
  await second.page.getByTestId('storage').filter({ hasText: 'OPFS' }).waitFor();
  await send(second.page, 'after the leader left');
  await confirmed(second.page, 'after the leader left');
  assert.deepEqual(await bodies(second.page), ['from the second tab', 'from the first tab', 'after the leader left']);

  // Everything reached the server exactly once.
  const b = await openRoom(bob, room);
  await b.page.getByTestId('message').filter({ hasText: 'after the leader left' }).waitFor({ timeout: 10_000 });
  assert.deepEqual(await bodies(b.page), ['from the second tab', 'from the first tab', 'after the leader left']);
  assert.deepEqual(second.errors, []);
  await second.page.close();
  await b.page.close();
});

test('offline: sends queue, survive a reload, and go out in order once online', async () => {
  const room = newId('room').slice(-8);
  const a = await openRoom(alice, room);
  const b = await openRoom(bob, room);
  await a.page.locator('[data-testid="offline-ready"][data-ready="true"]').waitFor({ timeout: 15_000 });

  await alice.context.setOffline(true);
  // The network's loss shows at once, before any write fails.
  await a.page.getByTestId('sync-status').filter({ hasText: 'offline, 0 pending' }).waitFor({ timeout: 5_000 });
  const texts = ['first offline', 'second offline', 'third offline'];
  for (const text of texts) await send(a.page, text);
  for (const text of texts) {
    await a.page.locator('[data-testid="message"][data-status="pending"]').filter({ hasText: text }).waitFor();
  }
  await a.page.getByTestId('sync-status').filter({ hasText: 'offline, 3 pending' }).waitFor({ timeout: 15_000 });

  // A reload with no network: the page comes from the Service Worker's cache, the
  // messages from the local database, still pending.
  await a.page.reload();
  await a.page.getByTestId('app-status').filter({ hasText: 'interactive' }).waitFor();
  for (const text of texts) {
    await a.page.locator('[data-testid="message"][data-status="pending"]').filter({ hasText: text }).waitFor();
  }
  assert.deepEqual(await bodies(b.page), []);

  await alice.context.setOffline(false);
  for (const text of texts) await confirmed(a.page, text);
  assert.deepEqual(await bodies(a.page), texts);
  await b.page.getByTestId('message').filter({ hasText: 'third offline' }).waitFor({ timeout: 15_000 });
  assert.deepEqual(await bodies(b.page), texts);
  await a.page.close();
  await b.page.close();
});
