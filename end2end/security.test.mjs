// The connector as an attacker sees it: Eve has a valid account of her own and
// everything Ada's writes reveal (record ids, Ada's client id, session ids). Each test
// is one hole that must stay closed. Runs on D1 and, in the PostgreSQL tier, again on
// PostgreSQL.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import { startApp, TEST_VARS } from './support/app.mjs';
import { startCallbackServer } from './support/callback-server.mjs';
import { claimsOf, client, guestToken, newId, openSocket, pokeSocket, socketTicket, subjectOf, CLIENT_KEY_HEADER } from './support/sync.mjs';

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

async function sendAsAda(room, body) {
  const a = client(app.url, ada);
  const { mutation, response } = a.send(room, 'Ada', body);
  const pushed = await response;
  assert.equal(pushed.json.results[0].status, 'confirmed', pushed.text);
  return { a, mutation, result: pushed.json.results[0] };
}

test('only the author edits or deletes a message, whatever name the attacker signs in with', async () => {
  const room = newId('room');
  const { a, mutation } = await sendAsAda(room, 'mine');
  // Eve, and Eve signed in under Ada's very name: a name is a label, not who she is.
  const eveAsAda = await guestToken(app.url, 'Ada');
  assert.notEqual(subjectOf(eveAsAda), a.subject, 'a second sign-in as "Ada" is another subject');
  for (const token of [eve, eveAsAda]) {
    const e = client(app.url, token);
    const write = (name, args) => ({ id: newId('outbox'), name, args: { roomId: room, ...args }, record_id: mutation.record_id });
    const attempts = [
      write('editMessage', { authorId: e.subject, body: 'defaced' }), // her own subject: the row is not hers
      write('editMessage', { authorId: a.subject, body: 'defaced' }), // Ada's subject: not who she is
      write('deleteMessage', { authorId: e.subject }),
      write('deleteMessage', { authorId: a.subject }),
      // A new message that claims to be Ada's.
      { id: newId('outbox'), name: 'sendMessage', args: { roomId: room, authorId: a.subject, authorName: 'Ada', body: 'forged' }, record_id: newId('messages') },
    ];
    const pushed = await e.push(attempts);
    assert.equal(pushed.status, 200, pushed.text);
    assert.deepEqual(pushed.json.results.map((r) => r.status), Array(5).fill('rejected'), pushed.text);
  }
  const rows = (await a.query('roomMessages', { roomId: room })).json.rows;
  assert.deepEqual(rows.map((row) => [row.author_id, row.author_name, row.body]), [[a.subject, 'Ada', 'mine']]);

  // The author herself may, under any display name she goes by now.
  const renamed = client(app.url, await guestToken(app.url, 'Ada Lovelace', ada), a.client_key);
  assert.equal(renamed.subject, a.subject, 'a rename keeps the subject');
  const write = (name, args) => ({ id: newId('outbox'), name, args: { roomId: room, authorId: a.subject, ...args }, record_id: mutation.record_id });
  const own = await renamed.push([write('editMessage', { body: 'edited' })]);
  assert.equal(own.json.results[0].status, 'confirmed', own.text);
  const removed = await renamed.push([write('deleteMessage', {})]);
  assert.equal(removed.json.results[0].status, 'confirmed', removed.text);
});

/** A token signed with the test secret: what a second app sharing the secret would make. */
function forgedToken(claims, secret = TEST_VARS.AUTH_SECRET) {
  const encode = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const input = `${encode({ alg: 'HS256', typ: 'JWT' })}.${encode(claims)}`;
  return `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`;
}

test("sign-in makes the subject: renewals keep it, nobody picks it, another app's tokens are refused", async () => {
  const first = claimsOf(ada);
  assert.match(first.sub, /^user_[0-9A-HJKMNP-TV-Z]{26}$/);
  assert.equal(first.name, 'Ada');
  assert.equal(first.aud, 'chat');
  // A renewal with the previous token keeps the subject; without it, a new one.
  assert.equal(subjectOf(await guestToken(app.url, 'Ada', ada)), first.sub);
  assert.notEqual(subjectOf(await guestToken(app.url, 'Ada')), first.sub);
  // A subject cannot be asked for: unknown fields are refused, a forged previous
  // token is ignored.
  const asking = await fetch(`${app.url}/api/auth/guest`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'Eve', sub: first.sub }),
  });
  assert.equal(asking.status, 400, await asking.text());
  const now = Math.floor(Date.now() / 1000);
  const forged = forgedToken({ ...first, name: 'Eve' }, 'not-the-secret-but-32-bytes-long!!');
  assert.notEqual(subjectOf(await guestToken(app.url, 'Eve', forged)), first.sub);

  // A token another app made with the same secret (aud "todo") is not a sign-in here.
  const foreign = forgedToken({ sub: first.sub, name: 'Ada', aud: 'todo', iat: now, exp: now + 600 });
  const room = newId('room');
  const read = await client(app.url, foreign).query('roomMessages', { roomId: room });
  assert.equal(read.status, 401, read.text);
  assert.equal(read.json.error, 'needs_auth');
  assert.match(read.json.reason, /another app/);
  assert.notEqual(subjectOf(await guestToken(app.url, 'Ada', foreign)), first.sub, 'nor renewed into one');
  // The same claims for this app, signed with the secret, are (the control).
  const own = forgedToken({ sub: first.sub, name: 'Ada', aud: 'chat', iat: now, exp: now + 600 });
  assert.equal((await client(app.url, own).query('roomMessages', { roomId: room })).status, 200);
});

test('sign-in takes JSON from this origin only, and its cookie is Secure and HttpOnly', async () => {
  const post = (headers, body = JSON.stringify({ name: 'Ada' })) => fetch(`${app.url}/api/auth/guest`, { method: 'POST', headers, body });
  // What a cross-site form can send: a text/plain or form body.
  for (const type of [undefined, 'text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x']) {
    const response = await post(type ? { 'content-type': type } : {});
    assert.equal(response.status, 415, `${type}: ${response.status}`);
    assert.equal((await response.json()).error, 'unsupported_media_type');
    assert.equal(response.headers.get('set-cookie'), null);
  }
  // Another site's page.
  const crossSite = await post({ 'content-type': 'application/json', origin: 'https://evil.example' });
  assert.equal(crossSite.status, 403);
  assert.equal((await crossSite.json()).error, 'cross_origin');
  assert.equal(crossSite.headers.get('set-cookie'), null);
  // This site's own page.
  const sameSite = await post({ 'content-type': 'application/json; charset=utf-8', origin: app.url });
  assert.equal(sameSite.status, 200, await sameSite.text());
  const cookie = sameSite.headers.get('set-cookie');
  for (const attribute of ['HttpOnly', 'Secure', 'SameSite=Lax', 'Path=/']) assert.ok(cookie.includes(attribute), cookie);
});

test('messages written before subjects existed stay readable and nobody edits them', async () => {
  const room = newId('room');
  const legacy = newId('messages');
  // A row as the first schema wrote it: no author_id column in the INSERT.
  await app.sql(
    `INSERT INTO messages (id, room_id, author_name, body, created_at, last_modified_by) ` +
      `VALUES ('${legacy}', '${room}', 'Ada', 'from before', 1, 'client_01HYS7J9GZ8P6VA3K3Z4X5M2K1')`,
  );
  const a = client(app.url, ada);
  const rows = (await a.query('roomMessages', { roomId: room })).json.rows;
  assert.deepEqual(rows.map((row) => [row.author_id, row.author_name, row.body]), [['', 'Ada', 'from before']]);
  const tries = [
    { id: newId('outbox'), name: 'editMessage', args: { roomId: room, authorId: '', body: 'mine now' }, record_id: legacy },
    { id: newId('outbox'), name: 'editMessage', args: { roomId: room, authorId: a.subject, body: 'mine now' }, record_id: legacy },
    { id: newId('outbox'), name: 'deleteMessage', args: { roomId: room, authorId: a.subject }, record_id: legacy },
  ];
  const pushed = await a.push(tries);
  assert.deepEqual(pushed.json.results.map((r) => r.status), ['rejected', 'rejected', 'rejected'], pushed.text);
  assert.equal((await a.query('roomMessages', { roomId: room })).json.rows[0].body, 'from before');
});

test('a worker whose AUTH_SECRET is shorter than 32 bytes signs nobody in', async () => {
  const weak = await startApp({ vars: { AUTH_SECRET: 'short-secret' } });
  try {
    const response = await fetch(`${weak.url}/api/auth/guest`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'Ada' }),
    });
    assert.equal(response.status, 503);
    const body = await response.json();
    assert.equal(body.error, 'not_configured');
    assert.match(body.reason, /AUTH_SECRET must hold at least 32 bytes/);
    // Nor accepts a token signed with it.
    const now = Math.floor(Date.now() / 1000);
    const token = forgedToken({ sub: 'user_01HYS7J9GZ8P6VA3K3Z4X5M2K1', name: 'Ada', aud: 'chat', iat: now, exp: now + 600 }, 'short-secret');
    const read = await client(weak.url, token).query('roomMessages', { roomId: newId('room') });
    assert.equal(read.status, 503, read.text);
  } finally {
    await weak.stop();
  }
});

test("a client id is the key holder's: nobody else pulls, pushes, replays or listens as it", async () => {
  const room = newId('room');
  const { a, mutation } = await sendAsAda(room, 'private outcome');
  assert.equal((await a.query('roomMessages', { roomId: room })).status, 200);
  // Eve learns Ada's client id from any change Ada wrote, and guesses the session.
  const pulled = await client(app.url, eve).pull(0, [roomMessages(room)]);
  assert.equal(pulled.json.changes[0].client_id, a.client_id);

  const asAda = { protocol_version: 1, client_id: a.client_id, session_id: a.session_id };
  const e = client(app.url, eve);
  for (const key of [undefined, e.client_key]) {
    const headers = key ? { [CLIENT_KEY_HEADER]: key } : { [CLIENT_KEY_HEADER]: '' };
    const expected = key ? 403 : 401;
    const pull = await e.call('pull', JSON.stringify({ ...asAda, cursor: 0, subscriptions: [roomMessages(room)] }), headers);
    assert.equal(pull.status, expected, pull.text);
    // A replay of Ada's mutation id under her client id: no stored outcome comes back.
    const replay = await e.call('push', JSON.stringify({ ...asAda, mutations: [mutation] }), headers);
    assert.equal(replay.status, expected, replay.text);
    assert.ok(!replay.text.includes('private outcome'), replay.text);
    // Without any credentials at all, as the issue found it.
    const bare = await fetch(`${app.url}/sync/push`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ...asAda, mutations: [mutation] }),
    });
    assert.equal(bare.status, 401);
    await assert.rejects(pokeSocket(app.url, { ...asAda, client_key: key ?? '', token: eve }), 'the socket refuses a wrong key');
  }
  // Ada, with her key, still may.
  assert.equal((await a.pull(0, [roomMessages(room)])).status, 200);
  const socket = await pokeSocket(app.url, a);
  socket.close();
});

test('the client key never travels in a URL: a socket opens once per ticket, for its own client and user', async () => {
  const room = newId('room');
  const a = client(app.url, ada);
  assert.equal((await a.query('roomMessages', { roomId: room })).status, 200);
  const granted = await socketTicket(app.url, a);
  assert.equal(granted.status, 200, granted.text);
  const { ticket } = granted.json;
  assert.ok(ticket.startsWith(`${a.session_id}.`), ticket);
  assert.ok(!ticket.includes(a.client_key), 'the ticket does not hold the key');
  const socket = await openSocket(app.url, ticket);
  try {
    // Spent: the same URL (say, from an access log) opens nothing.
    await assert.rejects(openSocket(app.url, ticket), 'a ticket opens one socket');
    // Nor does a made-up one, or the old URL with the key in it.
    await assert.rejects(openSocket(app.url, `${a.session_id}.${'0'.repeat(32)}`));
    const old = `${app.url.replace('http', 'ws')}/sync/socket?client_id=${a.client_id}&session_id=${a.session_id}&client_key=${a.client_key}`;
    await assert.rejects(new Promise((resolve, reject) => {
      const ws = new WebSocket(old);
      ws.addEventListener('open', () => { ws.close(); resolve(); });
      ws.addEventListener('error', () => reject(new Error('refused')));
    }));
    // A ticket needs a sign-in, and the session's own user: Eve holding Ada's key
    // (stolen) and signed in as herself gets none for Ada's session.
    const anonymous = await socketTicket(app.url, { ...a, token: undefined });
    assert.equal(anonymous.status, 401, anonymous.text);
    assert.equal(anonymous.json.error, 'needs_auth');
    const stolen = await socketTicket(app.url, { ...a, token: eve });
    assert.equal(stolen.status, 403, stolen.text);
    assert.equal(stolen.json.error, 'session_mismatch');
    // The socket Ada opened works.
    const { result } = await sendAsAda(room, 'for the socket');
    const poke = await socket.next();
    assert.equal(poke.cursor, result.seq);
  } finally {
    socket.close();
  }
});

test('a cursor beyond the head is refused and does not silence the session', async () => {
  const room = newId('room');
  const { result } = await sendAsAda(room, 'first');
  const watcher = client(app.url, ada);
  assert.equal((await watcher.query('roomMessages', { roomId: room })).status, 200);
  for (const cursor of [result.seq + 1000, 2 ** 53, 2 ** 60]) {
    const pulled = await watcher.pull(cursor, [roomMessages(room)]);
    assert.equal(pulled.status, 400, `${cursor}: ${pulled.text}`);
    assert.equal(pulled.json.error, 'invalid_cursor');
  }
  // The session still gets poked for the next write.
  const socket = await pokeSocket(app.url, watcher);
  try {
    const { result: next } = await sendAsAda(room, 'second');
    const poke = await socket.next();
    assert.deepEqual([poke.type, poke.cursor], ['poke', next.seq]);
    assert.deepEqual((poke.changes ?? []).map((c) => c.row.body), ['second']);
  } finally {
    socket.close();
  }
});

test('a caller without a sign-in leaves nothing upstream, and may be accepted later', async () => {
  const room = newId('room');
  const anonymous = client(app.url, null);
  const junk = Array.from({ length: 100 }, (_, i) => ({
    id: newId('outbox'), name: 'sendMessage', args: { roomId: room, authorId: subjectOf(ada), authorName: 'Ada', body: `junk ${i}` }, record_id: newId('messages'),
  }));
  const invalid = Array.from({ length: 20 }, () => ({ id: newId('outbox'), name: 'dropTables', args: {}, record_id: newId('messages') }));
  const before = await count('SELECT count(*) FROM sync_mutations');
  // Writes the model accepts need the app's say: without a sign-in, a 401 needs_auth.
  const pushed = await anonymous.push(junk);
  assert.equal(pushed.status, 401, pushed.text);
  assert.equal(pushed.json.error, 'needs_auth');
  // Writes the model refuses are answered without asking the app, and not stored.
  const refused = await anonymous.push(invalid);
  assert.equal(refused.status, 200, refused.text);
  assert.ok(refused.json.results.every((r) => r.status === 'rejected'), refused.text);
  assert.equal(await count('SELECT count(*) FROM sync_mutations'), before, 'no stored answer for a refused caller');
  assert.equal(await count(`SELECT count(*) FROM messages WHERE room_id = '${room}'`), 0);
  // Nothing was remembered: once signed in, the same writes go through.
  const signedIn = client(app.url, ada, anonymous.client_key);
  const later = await signedIn.push(junk.slice(0, 3));
  assert.deepEqual(later.json.results.map((r) => r.status), ['confirmed', 'confirmed', 'confirmed'], later.text);
});

test('one client flooding the connector is told to wait (429 + Retry-After)', async () => {
  // A user of its own: the flood spends that user's limit too.
  const mallory = await guestToken(app.url, 'Mallory');
  const flooder = client(app.url, mallory);
  const statuses = [];
  let retryAfter = null;
  // Cheap requests (an unknown query fails right after the limiter), so the flood
  // outruns the limit on any machine.
  const one = async () => {
    const response = await fetch(`${app.url}/sync/query`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${mallory}`, [CLIENT_KEY_HEADER]: flooder.client_key },
      body: JSON.stringify({ protocol_version: 1, client_id: flooder.client_id, session_id: flooder.session_id, name: 'noSuchQuery', args: {} }),
    });
    statuses.push(response.status);
    if (response.status === 429) {
      retryAfter = response.headers.get('retry-after');
      assert.equal((await response.json()).error, 'rate_limited');
    } else {
      await response.arrayBuffer();
    }
  };
  // 25 at a time until refused: the app allows 1200 per 10 s window, and a window this
  // loop covers whole sees more than that. (It gives up after 30 s.)
  const started = Date.now();
  while (!statuses.includes(429) && Date.now() - started < 30_000) {
    await Promise.all(Array.from({ length: 25 }, one));
  }
  assert.ok(statuses.includes(429), `no 429 among ${statuses.length} requests in ${Date.now() - started} ms`);
  assert.ok(statuses.filter((status) => status !== 429).length >= 1200, 'the limit let the first 1200 through');
  assert.equal(retryAfter, '10');
  // Another client is not affected.
  assert.equal((await client(app.url, ada).pull(0, [])).status, 200);
});

test('every error is JSON with a bounded reason; names cannot hide characters', async () => {
  const wrongMethod = await fetch(`${app.url}/sync/push`);
  assert.equal(wrongMethod.status, 405);
  assert.equal((await wrongMethod.json()).error, 'method_not_allowed');

  const a = client(app.url, ada);
  const long = `client_${'x'.repeat(6000)}`;
  const response = await a.call('pull', JSON.stringify({ protocol_version: 1, client_id: long, session_id: a.session_id, cursor: 0, subscriptions: [] }));
  assert.equal(response.status, 400);
  assert.ok(response.json.reason.length < 500, `reason of ${response.json.reason.length} characters`);

  for (const name of ['Ada\u202Enimda', 'A\u200Bda', '\u2066Ada\u2069', 'Ada\uFEFF']) {
    const guest = await fetch(`${app.url}/api/auth/guest`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name }),
    });
    assert.equal(guest.status, 400, JSON.stringify(name));
    assert.equal((await guest.json()).error, 'invalid_name');
  }
});

test('server-rendered reads reach the query callback as distinct clients', async () => {
  const callbacks = await startCallbackServer();
  const other = await startApp({ vars: { SYNC_QUERY_CALLBACK_URL: `${callbacks.url}/query` } });
  try {
    const token = await guestToken(other.url, 'Ada');
    for (let i = 0; i < 2; i += 1) {
      const page = await fetch(`${other.url}/room/render-${i}`, { headers: { cookie: `sync_token=${token}` } });
      assert.equal(page.status, 200);
      await page.text();
    }
    const renders = callbacks.received.filter((call) => call.kind === 'query').map((call) => call.body);
    assert.equal(renders.length, 2);
    const [first, second] = renders;
    assert.notEqual(first.client_id, second.client_id);
    assert.notEqual(first.session_id, second.session_id);
    for (const call of renders) assert.doesNotMatch(call.client_id, /^client_0+$/);
  } finally {
    await other.stop();
    await callbacks.close();
  }
});

test("a refused query or pull stops that topic's pokes at once; the pull serves the rest", async () => {
  const callbacks = await startCallbackServer();
  // The app's rule, changed by the test: rooms the reader may no longer read.
  const closed = new Set();
  callbacks.answer((kind, body, headers) => {
    const subject = headers.authorization ? subjectOf(headers.authorization.slice('Bearer '.length)) : null;
    const room = body?.args?.roomId;
    return closed.has(`${subject} ${room}`)
      ? { json: { allow: false, reason: `room ${room} is closed to you` } }
      : { json: { allow: true } };
  });
  const other = await startApp({ vars: { SYNC_QUERY_CALLBACK_URL: `${callbacks.url}/query` } });
  try {
    const [readerToken, writerToken] = [await guestToken(other.url, 'Reader'), await guestToken(other.url, 'Writer')];
    const reader = client(other.url, readerToken);
    const writer = client(other.url, writerToken);
    const [roomA, roomB] = [newId('room'), newId('room')];
    const sent = async (room, body) => {
      const pushed = await writer.send(room, 'Writer', body).response;
      assert.equal(pushed.json.results[0].status, 'confirmed', pushed.text);
      return pushed.json.results[0].seq;
    };
    for (const room of [roomA, roomB]) assert.equal((await reader.query('roomMessages', { roomId: room })).status, 200);
    const socket = await pokeSocket(other.url, reader);
    try {
      const first = await sent(roomA, 'before');
      const poke = await socket.next();
      assert.deepEqual([poke.cursor, (poke.changes ?? []).map((c) => c.row.body)], [first, ['before']]);

      // The app closes room A to the reader; the reader's next pull names both rooms.
      closed.add(`${reader.subject} ${roomA}`);
      const pulled = await reader.pull(first, [roomMessages(roomA), roomMessages(roomB)]);
      assert.equal(pulled.status, 200, pulled.text);
      assert.deepEqual(pulled.json.refused.map((r) => [r.name, r.args, r.reason]), [
        ['roomMessages', { roomId: roomA }, `room ${roomA} is closed to you`],
      ]);
      // Room A's writes reach the reader no more: no rows, not even a cursor.
      for (let i = 0; i < 3; i += 1) await sent(roomA, `secret ${i}`);
      await assert.rejects(socket.next(1_000), /no poke/, 'no poke for a refused topic');
      // Room B goes on as before.
      const inB = await sent(roomB, 'still open');
      const pokeB = await socket.next();
      assert.equal(pokeB.cursor, inB);
      assert.deepEqual((pokeB.changes ?? []).map((c) => c.row.body), ['still open']);
      assert.ok(!JSON.stringify(socket.all).includes('secret'), JSON.stringify(socket.all));
      const later = await reader.pull(pulled.json.cursor, [roomMessages(roomB)]);
      assert.deepEqual(later.json.changes.map((c) => c.row.body), ['still open']);

      // A refused query unwatches too: the reader had room A again through a new "yes"
      // for a moment, then asks once more and is told no.
      closed.delete(`${reader.subject} ${roomA}`);
      assert.equal((await reader.query('roomMessages', { roomId: roomA })).status, 200);
      const reopened = await sent(roomA, 'open again');
      const pokeA = await socket.next();
      assert.deepEqual([pokeA.cursor, (pokeA.changes ?? []).map((c) => c.row.body)], [reopened, ['open again']]);
      closed.add(`${reader.subject} ${roomA}`);
      const denied = await reader.query('roomMessages', { roomId: roomA });
      assert.equal(denied.status, 403, denied.text);
      assert.equal(denied.json.error, 'query_denied');
      await sent(roomA, 'secret again');
      await assert.rejects(socket.next(1_000), /no poke/, 'no poke after a refused query');
    } finally {
      socket.close();
    }
  } finally {
    await other.stop();
    await callbacks.close();
  }
});

test('a pull hands out each record as it stands at the head: no page ends between a message and its delete or edit', async () => {
  const [quiet, busy] = [newId('room'), newId('room')];
  const a = client(app.url, ada);
  const message = (room, body, record = newId('messages')) => ({
    id: newId('outbox'), name: 'sendMessage', args: { roomId: room, authorId: a.subject, authorName: 'Ada', body }, record_id: record,
  });
  const [secretMessage, typoMessage] = [message(quiet, 'my password is hunter2'), message(quiet, 'typo here')];
  const first = await a.push([secretMessage, typoMessage]);
  const start = first.json.results[0].seq - 1;
  const [secretRecord, typoRecord] = [secretMessage.record_id, typoMessage.record_id];
  // A busy room: more changes than one pull page, after the secret and before its
  // removal, so an old cursor's first page would end between the two.
  for (let batch = 0; batch < 6; batch += 1) {
    const pushed = await a.push(Array.from({ length: 100 }, (_, i) => message(busy, `noise ${batch * 100 + i}`)));
    assert.equal(pushed.status, 200, pushed.text);
  }
  const write = (name, args, record) => ({ id: newId('outbox'), name, args: { roomId: quiet, authorId: a.subject, ...args }, record_id: record });
  const fixed = await a.push([write('deleteMessage', {}, secretRecord), write('editMessage', { body: 'fixed text' }, typoRecord)]);
  assert.deepEqual(fixed.json.results.map((r) => r.status), ['confirmed', 'confirmed'], fixed.text);

  // Eve (who may read both rooms) pulls from the old cursor, page by page.
  const e = client(app.url, eve);
  let cursor = start;
  const received = [];
  for (let pages = 0; pages < 10; pages += 1) {
    const page = await e.pull(cursor, [roomMessages(busy), roomMessages(quiet)]);
    assert.equal(page.status, 200, page.text);
    received.push(...page.json.changes);
    cursor = page.json.cursor;
    if (!page.json.has_more) break;
  }
  const text = JSON.stringify(received);
  assert.ok(!text.includes('hunter2'), 'the deleted text was handed out');
  assert.ok(!text.includes('typo here'), 'the replaced text was handed out');
  const final = received.filter((c) => c.record_id === typoRecord).at(-1);
  assert.equal(final.row.body, 'fixed text');
  const gone = received.filter((c) => c.record_id === secretRecord).at(-1);
  assert.ok(!gone?.row, 'the deleted record comes as a delete, or not at all');
  assert.equal(received.filter((c) => c.row?.body?.startsWith('noise')).length, 600);
});

test("a record moved to another room reaches the old room's readers as a delete, never its new text", async () => {
  const [from, to] = [newId('room'), newId('room')];
  const { result, mutation } = await sendAsAda(from, 'about to move');
  const e = client(app.url, eve);
  const before = await e.query('roomMessages', { roomId: from });
  assert.deepEqual(before.json.rows.map((r) => r.body), ['about to move']);
  const socket = await pokeSocket(app.url, e);
  try {
    // Moved by a direct write (no shipped mutator moves a message): the capture
    // triggers log it under both rooms.
    await app.sql(`UPDATE messages SET room_id = '${to}', body = 'moved: the new text' WHERE id = '${mutation.record_id}'`);
    const poke = await socket.next(10_000);
    assert.ok(poke.cursor > result.seq, JSON.stringify(poke));
    for (const change of poke.changes ?? []) {
      assert.equal(change.row ?? null, null, `a poke to the old room carried ${JSON.stringify(change)}`);
    }
    const pulled = await e.pull(before.json.cursor, [roomMessages(from)]);
    assert.equal(pulled.status, 200, pulled.text);
    const moved = pulled.json.changes.filter((c) => c.record_id === mutation.record_id);
    assert.deepEqual(moved.map((c) => [c.kind, c.row ?? null]), [['delete', null]], pulled.text);
    assert.ok(!pulled.text.includes('the new text'));
    // The new room's readers get the record as it is now.
    const there = await client(app.url, ada).pull(before.json.cursor, [roomMessages(to)]);
    assert.deepEqual(there.json.changes.map((c) => c.row?.body), ['moved: the new text']);
  } finally {
    socket.close();
  }
});

test('a replayed mutation is answered from its stored answer without the stored text', async () => {
  const room = newId('room');
  const { a, mutation } = await sendAsAda(room, 'soon deleted');
  const remove = { id: newId('outbox'), name: 'deleteMessage', args: { roomId: room, authorId: a.subject }, record_id: mutation.record_id };
  assert.equal((await a.push([remove])).json.results[0].status, 'confirmed');
  // The send again (its answer lost, say): applied once, told so, and no text comes back.
  const replay = await a.push([mutation]);
  assert.equal(replay.status, 200, replay.text);
  assert.equal(replay.json.results[0].status, 'confirmed');
  assert.ok(!replay.json.results[0].row, replay.text);
  assert.ok(!replay.text.includes('soon deleted'), replay.text);
  assert.deepEqual((await a.query('roomMessages', { roomId: room })).json.rows, []);
});

test('a private room: only its creator and those who joined with its invite read, pull or write', async () => {
  const a = client(app.url, ada);
  const e = client(app.url, eve);
  const alphabet = '0123456789abcdefghjkmnpqrstvwxyz';
  const freshRoom = () => Array.from(randomBytes(26), (byte) => alphabet[byte % 32]).join('');
  const room = freshRoom();
  const code = randomBytes(16).toString('hex');
  const op = (c, name, args, record_id = newId('messages')) => ({ id: newId('outbox'), name, args, record_id });
  const created = await a.push([
    op(a, 'createRoom', { roomId: room, creatorId: a.subject, inviteCode: code }, room),
    op(a, 'sendMessage', { roomId: room, authorId: a.subject, authorName: 'Ada', body: 'private words' }),
  ]);
  assert.deepEqual(created.json.results.map((r) => r.status), ['confirmed', 'confirmed'], created.text);

  // Eve, with the room's id: no read, no pull, no write, no listening.
  const read = await e.query('roomMessages', { roomId: room });
  assert.equal(read.status, 403, read.text);
  assert.match(read.json.reason, /is private/);
  assert.equal((await e.query('room', { roomId: room })).status, 403, 'nor the invite code');
  const pulled = await e.pull(0, [roomMessages(room)]);
  assert.equal(pulled.json.refused.length, 1, pulled.text);
  assert.ok(!pulled.text.includes('private words'));
  const attempts = await e.push([
    op(e, 'sendMessage', { roomId: room, authorId: e.subject, authorName: 'Eve', body: 'hi' }),
    op(e, 'joinRoom', { roomId: room, userId: e.subject, inviteCode: 'wrong'.repeat(4) }, `${room}:${e.subject}`),
    op(e, 'joinRoom', { roomId: room, userId: a.subject, inviteCode: code }, `${room}:${a.subject}`),
    op(e, 'joinRoom', { roomId: room, userId: e.subject, inviteCode: code }, newId('member')),
    op(e, 'createRoom', { roomId: room, creatorId: e.subject, inviteCode: code }, room),
    op(e, 'createRoom', { roomId: 'lobby', creatorId: e.subject, inviteCode: code }, 'lobby'),
  ]);
  assert.deepEqual(attempts.json.results.map((r) => r.status), Array(6).fill('rejected'), attempts.text);
  assert.equal(await count(`SELECT count(*) FROM room_members WHERE room_id = '${room}'`), 0);

  // With the invite she joins, then reads and writes like Ada.
  const joined = await e.push([op(e, 'joinRoom', { roomId: room, userId: e.subject, inviteCode: code }, `${room}:${e.subject}`)]);
  assert.equal(joined.json.results[0].status, 'confirmed', joined.text);
  const now = await e.query('roomMessages', { roomId: room });
  assert.deepEqual(now.json.rows.map((r) => r.body), ['private words']);
  assert.equal((await e.query('room', { roomId: room })).json.rows[0].invite_code, code);
  const sent = await e.push([op(e, 'sendMessage', { roomId: room, authorId: e.subject, authorName: 'Eve', body: 'in at last' })]);
  assert.equal(sent.json.results[0].status, 'confirmed', sent.text);
});

test("a write's answer carries the record only to a writer the app lets read it", async () => {
  const callbacks = await startCallbackServer();
  // Reads: Bob may not read the suggestion box; writes go by the chat's own rules.
  callbacks.answer((kind, body, headers) => {
    const token = headers.authorization?.slice('Bearer '.length);
    return token && claimsOf(token).name === 'Bob'
      ? { json: { allow: false, reason: 'suggestions are read by the staff' } }
      : { json: { allow: true } };
  });
  const other = await startApp({ vars: { SYNC_QUERY_CALLBACK_URL: `${callbacks.url}/query` } });
  try {
    const room = newId('room');
    const bob = client(other.url, await guestToken(other.url, 'Bob'));
    const staff = client(other.url, await guestToken(other.url, 'Staff'));
    const pushed = await bob.send(room, 'Bob', 'a secret suggestion').response;
    const [answer] = pushed.json.results;
    assert.equal(answer.status, 'confirmed', pushed.text);
    assert.ok(answer.seq > 0);
    assert.equal(answer.row, null, 'no image for a writer who may not read it');
    assert.equal((await bob.query('roomMessages', { roomId: room })).status, 403);
    // A reader sees it; so does a writer who may read (the control).
    assert.deepEqual((await staff.query('roomMessages', { roomId: room })).json.rows.map((r) => r.body), ['a secret suggestion']);
    const own = await staff.send(room, 'Staff', 'noted').response;
    assert.equal(own.json.results[0].row.body, 'noted');
  } finally {
    await other.stop();
    await callbacks.close();
  }
});
