// The connector against the real thing: wrangler dev (workerd) + local D1 (or
// PostgreSQL through Hyperdrive, in the PostgreSQL tier), with the chat app's own
// callbacks in the worker (in-process) or a separate callback server.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { startApp, TEST_VARS } from './support/app.mjs';
import { startCallbackServer } from './support/callback-server.mjs';
import { client, guestToken, newId, subjectOf, withoutImage } from './support/sync.mjs';

/** POSTs `count` chunks of `size` bytes with no content-length. */
async function chunkedPost(url, count, size) {
  const chunk = new TextEncoder().encode('y'.repeat(size));
  let sent = 0;
  const body = new ReadableStream({ pull(controller) { if (sent++ < count) controller.enqueue(chunk); else controller.close(); } });
  const response = await fetch(url, { method: 'POST', body, duplex: 'half', headers: { 'content-type': 'application/json' } });
  const text = await response.text();
  return { status: response.status, text, json: JSON.parse(text) };
}

const roomMessages = (roomId) => ({ name: 'roomMessages', args: { roomId } });

describe('with the chat app callbacks (default)', () => {
  let app;
  let ada;
  let bob;

  before(async () => {
    app = await startApp();
    ada = await guestToken(app.url, 'Ada');
    bob = await guestToken(app.url, 'Bob');
  });
  after(async () => app?.stop());

  test('guest tokens are issued for valid names only', async () => {
    for (const name of ['', ' ', 'x'.repeat(41)]) {
      const response = await fetch(`${app.url}/api/auth/guest`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name }) });
      assert.equal(response.status, 400);
      assert.equal((await response.json()).error, 'invalid_name');
    }
  });

  test('query, push and pull: the happy path', async () => {
    const room = newId('room');
    const a = client(app.url, ada);
    const empty = await a.query('roomMessages', { roomId: room });
    assert.equal(empty.status, 200, empty.text);
    assert.deepEqual(empty.json.rows, []);
    assert.equal(empty.json.topic, `roomMessages{"roomId":"${room}"}`);
    const start = empty.json.cursor;

    const before = Date.now();
    const { mutation, response } = a.send(room, 'Ada', '  hello upstream  ');
    const pushed = await response;
    assert.equal(pushed.status, 200, pushed.text);
    assert.equal(pushed.json.results.length, 1);
    const [result] = pushed.json.results;
    assert.equal(result.id, mutation.id);
    assert.equal(result.status, 'confirmed', JSON.stringify(result));
    assert.equal(result.row.body, 'hello upstream');
    assert.equal(result.row.id, mutation.record_id);
    assert.equal(result.row.room_id, room);
    assert.equal(result.row.last_modified_by, a.client_id);
    assert.ok(result.row.created_at >= before - 1000, 'stamped by the server clock');
    assert.ok(result.seq > start);

    const b = client(app.url, bob);
    const read = await b.query('roomMessages', { roomId: room });
    assert.deepEqual(read.json.rows, [result.row]);
    assert.ok(read.json.cursor >= result.seq);

    const pulled = await b.pull(start, [roomMessages(room)]);
    assert.equal(pulled.status, 200, pulled.text);
    assert.equal(pulled.json.changes.length, 1);
    assert.equal(pulled.json.changes[0].seq, result.seq);
    assert.deepEqual(pulled.json.changes[0].row, result.row);
    assert.equal(pulled.json.has_more, false);

    // Another room sees nothing of it, but its cursor still moves past it.
    const other = await b.pull(start, [roomMessages(newId('room'))]);
    assert.deepEqual(other.json.changes, []);
    assert.ok(other.json.cursor >= result.seq);
  });

  test('a query joined late starts at its snapshot: a pull does not read its changes again', async () => {
    const [first, late] = [newId('room'), newId('room')];
    const reader = client(app.url, bob);
    const joined = await reader.query('roomMessages', { roomId: first });
    const stands = joined.json.cursor;
    // 30 messages in the other room, before the reader joins it.
    const writer = client(app.url, ada);
    const mutations = Array.from({ length: 30 }, (_, i) => ({
      id: newId('outbox'), name: 'sendMessage', args: { roomId: late, authorId: writer.subject, authorName: 'Ada', body: `early ${i}` }, record_id: newId('message'),
    }));
    assert.equal((await writer.push(mutations)).status, 200);
    const snapshot = await reader.query('roomMessages', { roomId: late });
    assert.equal(snapshot.json.rows.length, 30);
    const since = snapshot.json.cursor;
    assert.ok(since > stands);

    // Without the late query's own cursor, the pull from the first room's cursor reads
    // the 30 again; with it, none.
    const again = await reader.pull(stands, [roomMessages(first), roomMessages(late)]);
    assert.equal(again.json.changes.length, 30);
    const fromSnapshot = await reader.pull(stands, [roomMessages(first), { ...roomMessages(late), cursor: since }]);
    assert.equal(fromSnapshot.status, 200, fromSnapshot.text);
    assert.deepEqual(fromSnapshot.json.changes, []);
    assert.ok(fromSnapshot.json.cursor >= since);

    // What happens after the snapshot is read, in either room.
    const later = (await writer.send(late, 'Ada', 'after joining').response).json.results[0];
    const inFirst = (await writer.send(first, 'Ada', 'in the first room').response).json.results[0];
    const next = await reader.pull(stands, [roomMessages(first), { ...roomMessages(late), cursor: since }]);
    assert.deepEqual(next.json.changes.map((c) => c.seq), [later.seq, inFirst.seq]);

    // A query's cursor beyond the log's head is refused.
    const beyond = await reader.pull(stands, [{ ...roomMessages(late), cursor: next.json.cursor + 1000 }]);
    assert.equal(beyond.status, 400, beyond.text);
    assert.equal(beyond.json.error, 'invalid_cursor');
  });

  test('a retried push is applied once and answered the same, without the stored image', async () => {
    const room = newId('room');
    const a = client(app.url, ada);
    const { mutation, response } = a.send(room, 'Ada', 'only once');
    const first = await response;
    const again = await a.push([mutation]);
    const third = await a.push([mutation, mutation]);
    assert.ok(first.json.results[0].row, 'the first answer carries the image');
    assert.deepEqual(again.json.results, withoutImage(first.json.results));
    assert.deepEqual(third.json.results, withoutImage([first.json.results[0], first.json.results[0]]));
    const read = await a.query('roomMessages', { roomId: room });
    assert.equal(read.json.rows.length, 1);
    const pulled = await a.pull(0, [roomMessages(room)]);
    assert.equal(pulled.json.changes.length, 1);
  });

  test('the same batch pushed twice at once applies each write once', async () => {
    const room = newId('room');
    const a = client(app.url, ada);
    const mutations = ['one', 'two', 'three'].map((body) => ({
      id: newId('outbox'), name: 'sendMessage', args: { roomId: room, authorId: a.subject, authorName: 'Ada', body }, record_id: newId('messages'),
    }));
    const [first, second] = await Promise.all([a.push(mutations), a.push(mutations)]);
    assert.equal(first.status, 200, first.text);
    assert.equal(second.status, 200, second.text);
    // Whichever came second was answered from the stored answers.
    assert.deepEqual(withoutImage(second.json.results), withoutImage(first.json.results));
    assert.deepEqual(first.json.results.map((r) => r.status), ['confirmed', 'confirmed', 'confirmed']);
    // One push, one server time: ties are ordered by record id (newest first: the
    // greater id first).
    const byId = [...mutations].sort((x, y) => (x.record_id < y.record_id ? 1 : -1)).map((m) => m.args.body);
    const read = await a.query('roomMessages', { roomId: room });
    assert.deepEqual(read.json.rows.map((row) => row.body), byId);
    const pulled = await a.pull(0, [roomMessages(room)]);
    assert.equal(pulled.json.changes.length, 3);
  });

  test('writes in one push build on each other: insert, edit, then delete the same record', async () => {
    const room = newId('room');
    const a = client(app.url, ada);
    const record = newId('messages');
    const send = { id: newId('outbox'), name: 'sendMessage', args: { roomId: room, authorId: a.subject, authorName: 'Ada', body: 'draft' }, record_id: record };
    const edit = { id: newId('outbox'), name: 'editMessage', args: { roomId: room, authorId: a.subject, body: 'final' }, record_id: record };
    const pushed = await a.push([send, edit]);
    assert.equal(pushed.status, 200, pushed.text);
    assert.deepEqual(pushed.json.results.map((r) => r.status), ['confirmed', 'confirmed']);
    assert.equal(pushed.json.results[1].row.body, 'final');
    assert.ok(pushed.json.results[1].seq > pushed.json.results[0].seq);
    // An edit of a record that does not exist is rejected, and the rest still applies.
    const ghost = { id: newId('outbox'), name: 'editMessage', args: { roomId: room, authorId: a.subject, body: 'boo' }, record_id: newId('messages') };
    const remove = { id: newId('outbox'), name: 'deleteMessage', args: { roomId: room, authorId: a.subject }, record_id: record };
    const second = await a.push([ghost, remove]);
    assert.deepEqual(second.json.results.map((r) => r.status), ['rejected', 'confirmed']);
    const read = await a.query('roomMessages', { roomId: room });
    assert.deepEqual(read.json.rows, []);
  });

  test('the app callback rejects per operation; rejected writes never reach the upstream', async () => {
    const room = newId('room');
    const a = client(app.url, ada);
    const good = { id: newId('outbox'), name: 'sendMessage', args: { roomId: room, authorId: a.subject, authorName: 'Ada', body: 'fine' }, record_id: newId('messages') };
    const empty = { id: newId('outbox'), name: 'sendMessage', args: { roomId: room, authorId: a.subject, authorName: 'Ada', body: '   ' }, record_id: newId('messages') };
    const long = { id: newId('outbox'), name: 'sendMessage', args: { roomId: room, authorId: a.subject, authorName: 'Ada', body: 'x'.repeat(2001) }, record_id: newId('messages') };
    const impostor = { id: newId('outbox'), name: 'sendMessage', args: { roomId: room, authorId: client(app.url, bob).subject, authorName: 'Bob', body: 'hi' }, record_id: newId('messages') };
    const pushed = await a.push([good, empty, long, impostor]);
    assert.equal(pushed.status, 200, pushed.text);
    const [r1, r2, r3, r4] = pushed.json.results;
    assert.equal(r1.status, 'confirmed');
    assert.equal(r2.status, 'rejected');
    assert.match(r2.reason, /empty/);
    assert.match(r3.reason, /at most 2000/);
    assert.match(r4.reason, /only post as yourself/);
    const read = await a.query('roomMessages', { roomId: room });
    assert.deepEqual(read.json.rows.map((row) => row.id), [good.record_id]);
  });

  test('without a valid token, reads and writes need a sign-in and nothing is decided or stored', async () => {
    const room = newId('room');
    const anonymous = client(app.url, undefined);
    const read = await anonymous.query('roomMessages', { roomId: room });
    assert.equal(read.status, 401);
    assert.equal(read.json.error, 'needs_auth');
    assert.match(read.json.reason, /sign in/);
    // Written while Ada's sign-in had lapsed: the browser still knows her subject.
    const mutation = { id: newId('outbox'), name: 'sendMessage', args: { roomId: room, authorId: subjectOf(ada), authorName: 'Ada', body: 'hi' }, record_id: newId('messages') };
    const pushed = await anonymous.push([mutation]);
    assert.equal(pushed.status, 401, pushed.text);
    assert.equal(pushed.json.error, 'needs_auth');
    const forged = client(app.url, `${ada.slice(0, -2)}xx`);
    const forgedRead = await forged.query('roomMessages', { roomId: room });
    assert.equal(forgedRead.status, 401);
    assert.match(forgedRead.json.reason, /sign in again/);
    // The same write, once signed in, is applied: the 401 recorded nothing.
    const signedIn = client(app.url, ada, anonymous.client_key);
    const retried = await signedIn.push([mutation]);
    assert.equal(retried.status, 200, retried.text);
    assert.equal(retried.json.results[0].status, 'confirmed');
  });

  test('bad input gets a 4xx with a JSON reason', async () => {
    const a = client(app.url, ada);
    const cases = [
      [await a.call('query', '{"protocol_version": 1,'), 400, 'malformed_json'],
      [await a.query('allMessages', {}), 400, 'unknown_query'],
      [await a.query('roomMessages', {}), 400, 'invalid_args'],
      [await a.query('roomMessages', { roomId: 'r', extra: 1 }), 400, 'invalid_args'],
      [await a.query('roomMessages', { roomId: 7 }), 400, 'invalid_args'],
      [await a.call('query', { protocol_version: 99, name: 'roomMessages', args: { roomId: 'r' } }), 400, 'protocol_version'],
      [await a.call('query', JSON.stringify({ protocol_version: 1, client_id: 'client_x', session_id: a.session_id, name: 'roomMessages', args: { roomId: 'r' } })), 400, 'invalid_id'],
      [await a.call('query', JSON.stringify({ protocol_version: 1, client_id: a.session_id, session_id: a.client_id, name: 'roomMessages', args: { roomId: 'r' } })), 400, 'invalid_id'],
      [await a.push([{ id: 'not-an-outbox-id', name: 'sendMessage', args: {}, record_id: 'm' }]), 400, 'invalid_id'],
      [await a.call('push', 'x'.repeat(300 * 1024)), 413, 'payload_too_large'],
      // The same, sent chunked (no declared length); and the worker keeps serving after it.
      [await chunkedPost(`${app.url}/sync/push`, 6, 64 * 1024), 413, 'payload_too_large'],
      [await chunkedPost(`${app.url}/api/auth/guest`, 40, 64 * 1024), 413, 'payload_too_large'],
      [await a.pull(0, [{ name: 'roomMessages', args: {} }]), 400, 'invalid_args'],
      [await a.call('nothing', {}), 404, 'not_found'],
    ];
    for (const [response, status, code] of cases) {
      assert.equal(response.status, status, response.text);
      assert.equal(response.json?.error, code, response.text);
      assert.equal(typeof response.json.reason, 'string');
      assert.ok(response.json.reason.length > 0);
    }
    // An unknown mutator is the mutation's own answer, not the batch's.
    const pushed = await a.push([{ id: newId('outbox'), name: 'dropTables', args: {}, record_id: newId('messages') }]);
    assert.equal(pushed.status, 200);
    assert.match(pushed.json.results[0].reason, /unknown mutator/);
  });

  test('the callback routes refuse a wrong engine secret', async () => {
    for (const secret of [undefined, 'wrong']) {
      const response = await fetch(`${app.url}/api/callbacks/query`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(secret ? { 'x-sync-engine-secret': secret } : {}) },
        body: '{}',
      });
      // 403, not 401: a 401 from a callback means "the user must sign in again".
      assert.equal(response.status, 403);
      assert.equal((await response.json()).error, 'wrong_engine_secret');
    }
  });
});

describe('with a separate callback server', () => {
  let app;
  let callbacks;
  let token;

  before(async () => {
    callbacks = await startCallbackServer();
    app = await startApp({
      vars: {
        SYNC_QUERY_CALLBACK_URL: `${callbacks.url}/query`,
        SYNC_MUTATION_CALLBACK_URL: `${callbacks.url}/mutation`,
        SYNC_CALLBACK_TIMEOUT_MS: '500',
      },
    });
    token = await guestToken(app.url, 'Ada');
  });
  after(async () => {
    await app?.stop();
    await callbacks?.close();
  });

  test('the connector sends the seed headers and bodies', async () => {
    callbacks.answer((kind, body) => (kind === 'query'
      ? { json: { allow: true } }
      : { json: { operations: body.operations.map((op) => ({ allow: true, id: op.id })) } }));
    const a = client(app.url, token);
    const room = newId('room');
    callbacks.received.length = 0;
    assert.equal((await a.query('roomMessages', { roomId: ` ${room} ` })).status, 200);
    const { mutation, response } = a.send(room, 'Ada', 'hi');
    assert.equal((await response).json.results[0].status, 'confirmed');
    const [query, push] = callbacks.received;
    for (const call of [query, push]) {
      assert.equal(call.headers.authorization, `Bearer ${token}`);
      assert.equal(call.headers['x-sync-engine-secret'], TEST_VARS.SYNC_ENGINE_SECRET);
      assert.equal(call.headers['content-type'], 'application/json; charset=utf-8');
    }
    assert.deepEqual(query.body, {
      args: { roomId: room },
      client_id: a.client_id,
      operation_name: 'roomMessages',
      operation_kind: 'query',
      session_id: a.session_id,
    });
    assert.deepEqual(push.body, {
      client_id: a.client_id,
      operation_kind: 'mutation',
      operations: [{
        args: { authorId: a.subject, authorName: 'Ada', body: 'hi', roomId: room },
        collection: 'messages',
        id: mutation.id,
        mutation_kind: 'insert',
        operation_name: 'sendMessage',
        record_id: mutation.record_id,
      }],
      session_id: a.session_id,
    });
  });

  test('allow one, reject one, and reject the batch', async () => {
    const a = client(app.url, token);
    const room = newId('room');
    const m = (body) => ({ id: newId('outbox'), name: 'sendMessage', args: { roomId: room, authorId: a.subject, authorName: 'Ada', body }, record_id: newId('messages') });
    const [yes, no] = [m('yes'), m('no')];
    callbacks.answer(() => ({ json: { operations: [{ allow: true, id: yes.id }, { allow: false, id: no.id, reason: 'not today' }] } }));
    const mixed = await a.push([yes, no]);
    assert.deepEqual(mixed.json.results.map((r) => [r.status, r.reason]), [['confirmed', undefined], ['rejected', 'not today']]);
    const batch = m('batch');
    callbacks.answer(() => ({ json: { allow: false, reason: 'mutation operation is not allowlisted' } }));
    const denied = await a.push([batch]);
    assert.deepEqual(denied.json.results.map((r) => r.reason), ['mutation operation is not allowlisted']);
    callbacks.answer(() => ({ json: { allow: true } }));
    const rows = (await a.query('roomMessages', { roomId: room })).json.rows;
    assert.deepEqual(rows.map((row) => row.body), ['yes']);
  });

  test('a callback that denies refuses; one that is down, slow or answers garbage decides nothing and is retried', async () => {
    const a = client(app.url, token);
    const room = newId('room');
    callbacks.answer((kind) => (kind === 'query'
      ? { json: { allow: false, reason: 'query operation is not allowlisted' } }
      : { json: { allow: false, reason: 'mutation operation is not allowlisted' } }));
    const denied = await a.query('roomMessages', { roomId: room });
    assert.equal(denied.status, 403, denied.text);
    assert.match(denied.json.reason, /not allowlisted/);
    const refused = await a.send(room, 'Ada', 'refused').response;
    assert.equal(refused.json.results[0].status, 'rejected');

    // Only the app says no: a callback that cannot answer is not a "no".
    const scenarios = [
      ['errors', () => ({ status: 500, json: { allow: true } }), /HTTP 500/],
      ['is slow', () => ({ delayMs: 1500, json: { allow: true } }), /no answer within 500 ms/],
      ['answers garbage', () => ({ text: 'allow=true' }), /not the documented JSON/],
      ['answers an array', () => ({ json: [true] }), /not the documented JSON/],
    ];
    const queued = [];
    for (const [label, behaviour, reason] of scenarios) {
      callbacks.answer(behaviour);
      const read = await a.query('roomMessages', { roomId: room });
      assert.equal(read.status, 503, `${label}: ${read.text}`);
      assert.equal(read.json.error, 'callback_unavailable', label);
      assert.match(read.json.reason, reason, label);
      const { mutation, response } = a.send(room, 'Ada', `while it ${label}`);
      const pushed = await response;
      assert.equal(pushed.status, 503, `${label}: ${pushed.text}`);
      assert.equal(pushed.json.error, 'callback_unavailable', label);
      assert.equal(pushed.headers.get('retry-after'), '2', label);
      queued.push(mutation);
    }
    // Recovered: every write kept by the client goes through, once.
    callbacks.answer((kind, body) => (kind === 'query'
      ? { json: { allow: true } }
      : { json: { operations: body.operations.map((op) => ({ allow: true, id: op.id })) } }));
    const retried = await a.push(queued);
    assert.deepEqual(retried.json.results.map((r) => r.status), queued.map(() => 'confirmed'), retried.text);
    const again = await a.push(queued);
    assert.deepEqual(again.json.results.map((r) => r.seq), retried.json.results.map((r) => r.seq), 'applied once');
    const rows = (await a.query('roomMessages', { roomId: room })).json.rows.map((row) => row.body);
    assert.deepEqual(rows.sort(), scenarios.map(([label]) => `while it ${label}`).sort());
  });
});

test('a callback server that is down is a 503 with a clear reason, not a denial', async () => {
  // A port held by a listener that drops every connection: nothing else (wrangler's
  // own inspector, say) can take it while the test runs.
  const dead = createServer((socket) => socket.destroy());
  await new Promise((resolve) => dead.listen(0, '127.0.0.1', resolve));
  const deadPort = dead.address().port;
  const app = await startApp({
    vars: {
      SYNC_QUERY_CALLBACK_URL: `http://127.0.0.1:${deadPort}/query`,
      SYNC_MUTATION_CALLBACK_URL: `http://127.0.0.1:${deadPort}/mutation`,
    },
  });
  try {
    const a = client(app.url, await guestToken(app.url, 'Ada'));
    const read = await a.query('roomMessages', { roomId: 'r' });
    assert.equal(read.status, 503);
    assert.equal(read.headers.get('retry-after'), '2');
    assert.match(read.json.reason, /unreachable/);
    // Where the callback lives is the server's log's business, not the client's.
    assert.ok(!read.json.reason.includes(String(deadPort)), read.json.reason);
  } finally {
    await app.stop();
    dead.close();
  }
});

test('a restart of wrangler keeps data and cursors', async () => {
  let app = await startApp();
  const { state } = app;
  try {
    const token = await guestToken(app.url, 'Ada');
    const a = client(app.url, token);
    const room = newId('room');
    const { response } = a.send(room, 'Ada', 'survives');
    const confirmed = (await response).json.results[0];
    const before = await a.query('roomMessages', { roomId: room });
    await app.stop({ keepState: true });
    app = await startApp({ persistTo: state });
    const again = client(app.url, token);
    const after = await again.query('roomMessages', { roomId: room });
    assert.deepEqual(after.json.rows, before.json.rows);
    assert.equal(after.json.cursor, before.json.cursor);
    const pulled = await again.pull(confirmed.seq - 1, [roomMessages(room)]);
    assert.equal(pulled.json.changes[0].seq, confirmed.seq);
  } finally {
    await app.stop({ keepState: false });
  }
});
