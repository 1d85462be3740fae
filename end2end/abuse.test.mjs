// The connector under abuse: one valid account (or none) and as many client keys as
// it likes. Each test is one bound that must hold: on values, on request rates per
// address and per user, on fan-out, on what a refused or anonymous caller leaves and
// learns. Runs on D1 and, in the PostgreSQL tier, again on PostgreSQL.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startApp, TEST_VARS } from './support/app.mjs';
import { client, guestToken, newId, pokeSocket, CLIENT_KEY_HEADER, PROTOCOL_VERSION, newClientKey, clientIdForKey } from './support/sync.mjs';

let app;
let ada;
let eve;

before(async () => {
  app = await startApp();
  [ada, eve] = await Promise.all([guestToken(app.url, 'Ada'), guestToken(app.url, 'Eve')]);
});
after(async () => app?.stop());

const roomMessages = (roomId) => ({ name: 'roomMessages', args: { roomId } });
const count = async (sql) => Number((await app.sql(sql))[0][0]);
// Requests from made-up addresses (Cloudflare sets cf-connecting-ip; wrangler keeps
// one a request already carries), so one test's flood spends no other test's limit.
const octet = () => 1 + Math.floor(Math.random() * 250);
const address = () => `10.${octet()}.${octet()}.${octet()}`;

test('a routed value is at most 256 bytes and any value 64 KB: 400 invalid_args, nothing stored', async () => {
  const a = client(app.url, ada);
  const huge = 'r'.repeat(100_000);
  const read = await a.query('roomMessages', { roomId: huge });
  assert.equal(read.status, 400, read.text.slice(0, 300));
  assert.equal(read.json.error, 'invalid_args');
  assert.match(read.json.reason, /room_id.*100000 bytes.*256/);
  assert.ok(read.json.reason.length < 500);
  const pulled = await a.pull(0, [roomMessages(huge)]);
  assert.equal(pulled.status, 400, pulled.text.slice(0, 300));
  assert.equal(pulled.json.error, 'invalid_args');
  // 256 bytes is still a room.
  assert.equal((await a.query('roomMessages', { roomId: 'r'.repeat(256) })).status, 200);

  const room = newId('room');
  const write = (args) => ({ id: newId('outbox'), name: 'sendMessage', args: { roomId: room, authorId: a.subject, authorName: 'Ada', body: 'hi', ...args }, record_id: newId('messages') });
  const pushed = await a.push([write({ body: 'x'.repeat(64 * 1024 + 1) }), write({ roomId: 'r'.repeat(300) }), write({})]);
  assert.equal(pushed.status, 200, pushed.text.slice(0, 300));
  const [long, farRoom, fine] = pushed.json.results;
  assert.equal(long.status, 'rejected');
  assert.match(long.reason, /body/);
  assert.equal(farRoom.status, 'rejected');
  assert.match(farRoom.reason, /room_id/);
  assert.equal(fine.status, 'confirmed', pushed.text.slice(0, 300));
  assert.equal(await count(`SELECT count(*) FROM messages WHERE room_id = '${room}'`), 1);
});

test('a stored rejection does not echo its input: reasons are cut', async () => {
  const a = client(app.url, ada);
  const mutation = { id: newId('outbox'), name: 'sendMessage', args: { roomId: newId('room'), ['k'.repeat(20_000)]: 1 }, record_id: newId('messages') };
  const pushed = await a.push([mutation]);
  assert.equal(pushed.status, 200, pushed.text.slice(0, 300));
  assert.equal(pushed.json.results[0].status, 'rejected');
  assert.ok(pushed.json.results[0].reason.length <= 401, `a reason of ${pushed.json.results[0].reason.length} characters`);
});

test('a pull of 50 subscriptions, each at its own cursor, is served', async () => {
  const a = client(app.url, ada);
  const rooms = Array.from({ length: 50 }, () => newId('room'));
  // 50 writes first, so that 50 distinct cursors exist (a chain of one condition per
  // cursor once went past D1's expression depth of 100).
  const mutations = rooms.map((roomId) => ({ id: newId('outbox'), name: 'sendMessage', args: { roomId, authorId: a.subject, authorName: 'Ada', body: 'first' }, record_id: newId('messages') }));
  const pushed = await a.push(mutations);
  assert.equal(pushed.status, 200, pushed.text.slice(0, 300));
  const head = pushed.json.results.at(-1).seq;
  const subscriptions = rooms.map((roomId, i) => ({ ...roomMessages(roomId), cursor: head - 50 + i }));
  assert.equal(new Set(subscriptions.map((s) => s.cursor)).size, 50);
  const pulled = await a.pull(0, subscriptions);
  assert.equal(pulled.status, 200, pulled.text.slice(0, 300));
  assert.equal((pulled.json.refused ?? []).length, 0);
  assert.ok(pulled.json.cursor >= head);
  // Each room's write is handed out to the subscription whose cursor is below it.
  const pulledRooms = new Set(pulled.json.changes.map((change) => change.row?.room_id));
  assert.deepEqual(rooms.filter((room) => pulledRooms.has(room)).length, 50);
});

test('an anonymous push or pull that names nothing is a 401 and learns nothing', async () => {
  const anonymous = client(app.url, null);
  const pushed = await anonymous.push([]);
  assert.equal(pushed.status, 401, pushed.text);
  assert.equal(pushed.json.error, 'needs_auth');
  assert.equal(pushed.json.cursor, undefined);
  const pulled = await anonymous.pull(0, []);
  assert.equal(pulled.status, 401, pulled.text);
  assert.equal(pulled.json.error, 'needs_auth');
  // A forged sign-in is no sign-in.
  const forged = client(app.url, `${ada.slice(0, -4)}AAAA`);
  assert.equal((await forged.pull(0, [])).status, 401);
  // Signed in, the same empty pull answers the head.
  const signedIn = await client(app.url, ada).pull(0, []);
  assert.equal(signedIn.status, 200, signedIn.text);
  assert.equal(typeof signedIn.json.cursor, 'number');
});

test('/api/health shows memory figures to the operator only', async () => {
  const anyone = await (await fetch(`${app.url}/api/health`)).json();
  assert.equal(anyone.ok, true);
  assert.equal(anyone.wasm_memory_bytes, undefined);
  const operator = await (await fetch(`${app.url}/api/health`, { headers: { 'x-sync-engine-secret': TEST_VARS.SYNC_ENGINE_SECRET } })).json();
  assert.ok(operator.wasm_memory_bytes > 0, JSON.stringify(operator));
  const guessing = await (await fetch(`${app.url}/api/health`, { headers: { 'x-sync-engine-secret': 'guess' } })).json();
  assert.equal(guessing.wasm_memory_bytes, undefined);
});

test("one user's many keys hold at most 16 live watchers of a room: a write costs the attacker's count, not theirs", async () => {
  const room = newId('room');
  const keys = 20;
  const sockets = [];
  try {
    for (let i = 0; i < keys; i++) {
      const e = client(app.url, eve);
      assert.equal((await e.query('roomMessages', { roomId: room })).status, 200);
      sockets.push(await pokeSocket(app.url, e));
    }
    const watcher = client(app.url, ada);
    assert.equal((await watcher.query('roomMessages', { roomId: room })).status, 200);
    const adaSocket = await pokeSocket(app.url, watcher);
    sockets.push(adaSocket);
    const { response } = client(app.url, ada).send(room, 'Ada', 'hello');
    assert.equal((await response).json.results[0].status, 'confirmed');
    const poke = await adaSocket.next();
    assert.equal(poke.type, 'poke', 'the honest watcher is poked');
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    const pokedEve = sockets.slice(0, keys).filter((socket) => socket.all.some((message) => message.type === 'poke')).length;
    assert.equal(pokedEve, 16, `Eve's sessions poked: ${pokedEve} of ${keys}`);
  } finally {
    for (const socket of sockets) socket.close();
  }
});

test('a session holds at most 4 sockets: a new one closes the excess', async () => {
  const a = client(app.url, ada);
  assert.equal((await a.query('roomMessages', { roomId: newId('room') })).status, 200);
  const sockets = [];
  try {
    for (let i = 0; i < 6; i++) sockets.push(await pokeSocket(app.url, a));
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    // The two oldest are being closed by the server (CLOSING or CLOSED), the rest stay open.
    assert.deepEqual(sockets.map((socket) => socket.socket.readyState !== WebSocket.OPEN), [true, true, false, false, false, false]);
    for (const socket of sockets) socket.close();
    const closed = await Promise.all(sockets.slice(0, 2).map((socket) => socket.closed));
    assert.deepEqual(closed.map((c) => c.code), [4008, 4008], JSON.stringify(closed));
    assert.match(closed[0].reason, /too many sockets/);
  } finally {
    for (const socket of sockets) socket.close();
  }
});

/** Sends cheap requests, `concurrency` at a time, until one is answered 429 (or 30 s pass). */
async function floodUntilLimited(one, concurrency = 50) {
  const statuses = [];
  let limited = null;
  const started = Date.now();
  while (!limited && Date.now() - started < 30_000) {
    await Promise.all(Array.from({ length: concurrency }, async () => {
      const response = await one();
      statuses.push(response.status);
      if (response.status === 429) {
        limited = { retryAfter: response.headers.get('retry-after'), body: await response.json() };
      } else {
        await response.arrayBuffer();
      }
    }));
  }
  return { statuses, limited, ms: Date.now() - started };
}

test('fresh client keys from one address are limited per address, on every route', async () => {
  const flooder = `198.51.100.${octet()}`;
  // Each request under a new key, as a hostile script would: the per-client limit never counts twice.
  const { statuses, limited, ms } = await floodUntilLimited(() => {
    const key = newClientKey();
    return fetch(`${app.url}/sync/query`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'cf-connecting-ip': flooder, [CLIENT_KEY_HEADER]: key },
      body: JSON.stringify({ protocol_version: PROTOCOL_VERSION, client_id: clientIdForKey(key), session_id: newId('session'), name: 'noSuchQuery', args: {} }),
    });
  });
  assert.ok(limited, `no 429 among ${statuses.length} requests in ${ms} ms`);
  assert.equal(limited.body.error, 'rate_limited');
  assert.match(limited.body.reason, /this address/);
  assert.equal(limited.retryAfter, '10');
  // The same address is limited on the page, the sign-in and the health check too.
  for (const [path, init] of [
    ['/', {}],
    ['/api/health', {}],
    ['/api/auth/guest', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'Mal' }) }],
  ]) {
    const response = await fetch(`${app.url}${path}`, { ...init, headers: { ...(init.headers ?? {}), 'cf-connecting-ip': flooder } });
    assert.equal(response.status, 429, path);
    await response.arrayBuffer();
  }
  // Another address is not.
  const other = await fetch(`${app.url}/api/health`, { headers: { 'cf-connecting-ip': address() } });
  assert.equal(other.status, 200);
});

/**
 * Waits, if need be, so that the next `needMs` fall in one window of a `periodS` rate
 * limit: wrangler's local limiter counts in fixed windows aligned to the epoch, and
 * a run that straddles two is counted half in each (it was never limited, 1 run in 40).
 */
async function inOneWindow(periodS, needMs) {
  const left = periodS * 1000 - (Date.now() % (periodS * 1000));
  if (left < needMs) await new Promise((resolve) => setTimeout(resolve, left + 50));
}

test("a user starts watching at most 300 queries a minute, whatever keys it uses", async () => {
  const oscar = await guestToken(app.url, 'Oscar');
  await inOneWindow(60, 15_000);
  const statuses = [];
  let limited = null;
  for (let i = 0; i < 8 && !limited; i++) {
    const o = client(app.url, oscar);
    const subscriptions = Array.from({ length: 50 }, () => roomMessages(newId('room')));
    const pulled = await o.call('pull', { cursor: 0, subscriptions }, { 'cf-connecting-ip': address() });
    statuses.push(pulled.status);
    if (pulled.status === 429) limited = pulled;
  }
  assert.deepEqual(statuses.slice(0, 6), [200, 200, 200, 200, 200, 200], 'the first 300 watches go through');
  assert.ok(limited, `statuses ${statuses}`);
  assert.match(limited.json.reason, /new queries/);
  // Another user is not affected.
  assert.equal((await client(app.url, ada).pull(0, [])).status, 200);
});

test("a query asked again by the same session is no new watch: a page that reopens a room is never limited", async () => {
  const olga = await guestToken(app.url, 'Olga');
  const o = client(app.url, olga);
  const room = newId('room');
  const statuses = [];
  // More than the 300 new watches a minute, all of one topic (one session, one address).
  for (let i = 0; i < 320; i += 20) {
    const answers = await Promise.all(Array.from({ length: 20 }, () => o.call('query', { name: 'roomMessages', args: { roomId: room } }, { 'cf-connecting-ip': '10.77.0.1' })));
    statuses.push(...answers.map((answer) => answer.status));
  }
  assert.deepEqual([...new Set(statuses)], [200], `statuses: ${statuses.filter((status) => status !== 200).join(', ')}`);
  // Nor is her pull of that room.
  assert.equal((await o.pull(0, [roomMessages(room)])).status, 200);
});

test("one user's fresh client keys share the user's limit", async () => {
  const mallory = await guestToken(app.url, 'Mallory');
  const { statuses, limited, ms } = await floodUntilLimited(() => {
    const key = newClientKey();
    return fetch(`${app.url}/sync/query`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${mallory}`, 'cf-connecting-ip': address(), [CLIENT_KEY_HEADER]: key },
      body: JSON.stringify({ protocol_version: PROTOCOL_VERSION, client_id: clientIdForKey(key), session_id: newId('session'), name: 'noSuchQuery', args: {} }),
    });
  });
  assert.ok(limited, `no 429 among ${statuses.length} requests in ${ms} ms`);
  assert.match(limited.body.reason, /this user/);
  assert.ok(statuses.filter((status) => status !== 429).length >= 1200, 'the limit let the first 1200 through');
  // Ada is not affected.
  assert.equal((await client(app.url, ada).pull(0, [])).status, 200);
});

test("a room's answer comes in pages that follow on exactly; its page renders the newest messages only", async () => {
  const a = client(app.url, ada);
  const room = newId('room');
  const total = 2_500;
  const sent = [];
  for (let batch = 0; batch < total / 100; batch++) {
    const mutations = Array.from({ length: 100 }, (_, i) => ({
      id: newId('outbox'), name: 'sendMessage',
      args: { roomId: room, authorId: a.subject, authorName: 'Ada', body: `message ${batch * 100 + i}` },
      record_id: newId('messages'),
    }));
    const pushed = await a.push(mutations);
    assert.ok(pushed.json.results.every((r) => r.status === 'confirmed'), pushed.text.slice(0, 300));
    sent.push(...mutations.map((m) => m.record_id));
  }
  // The room's window is its newest 200: the first answer stops there and says
  // rows follow.
  const window = await a.query('roomMessages', { roomId: room });
  assert.equal(window.status, 200);
  assert.equal(window.json.rows.length, 200);
  assert.equal(window.json.more, undefined, 'the window ends with this page');
  assert.equal(window.json.complete, false, 'rows follow the window');
  // Widened to the whole room, the answer comes in pages.
  const first = await a.call('query', { name: 'roomMessages', args: { roomId: room }, window: total });
  assert.equal(first.status, 200);
  assert.ok(first.json.rows.length < total, `one answer of ${first.json.rows.length} rows`);
  assert.ok(first.json.more, 'more rows follow');
  const rows = [...first.json.rows];
  let page = first;
  while (page.json.more) {
    page = await a.call('query', { name: 'roomMessages', args: { roomId: room }, after: page.json.more, window: total });
    assert.equal(page.status, 200, page.text.slice(0, 300));
    rows.push(...page.json.rows);
  }
  assert.equal(rows.length, total);
  assert.equal(page.json.complete, true, 'the last page reaches the end');
  assert.equal(new Set(rows.map((row) => row.id)).size, total, 'no row twice');
  const order = rows.map((row) => [row.created_at, row.id]);
  const sorted = [...order].sort((x, y) => y[0] - x[0] || (x[1] < y[1] ? 1 : x[1] > y[1] ? -1 : 0));
  assert.deepEqual(order, sorted, 'in the query order: newest first');
  // A continuation that is not one is a 400.
  const forged = await a.call('query', { name: 'roomMessages', args: { roomId: room }, after: { after: ['x'], served: 0 } });
  assert.equal(forged.status, 400);
  assert.equal(forged.json.error, 'invalid_continuation');

  const html = await (await fetch(`${app.url}/room/${room}`, { headers: { cookie: `sync_token=${ada}` } })).text();
  const rendered = html.match(/data-testid="message-body"[^>]*>([^<]*)</g) ?? [];
  assert.equal(rendered.length, 200, `${rendered.length} messages rendered on the server: the room's window`);
  assert.ok(html.includes(`message ${total - 1}<`), 'the newest is among them');
  assert.ok(!html.includes('>message 0<'), 'the oldest is not');
});
