// Pushes on the session's socket: the session object runs them through the same
// route as POST /sync/push, so they are answered as over HTTP, applied once, and
// refused for the same reasons; a socket carries its own session's pushes only.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startApp } from './support/app.mjs';
import { client, guestToken, newClientKey, newId, pokeSocket, PROTOCOL_VERSION } from './support/sync.mjs';

let app;
let token;

before(async () => {
  app = await startApp();
  token = await guestToken(app.url, 'Ada');
});
after(async () => app?.stop({ keepState: false }));

/** A socket whose answers to pushes are kept apart from its pokes. */
async function pushSocket(identity) {
  const socket = await pokeSocket(app.url, identity);
  let lastId = 0;
  return {
    socket,
    /** Sends `message` (a push, with `id` filled in) and resolves with its answer. */
    async push(message, timeoutMs = 10_000) {
      lastId += 1;
      const id = message.id ?? lastId;
      socket.socket.send(typeof message === 'string' ? message : JSON.stringify({ type: 'push', ...message, id }));
      return answerTo(id, timeoutMs);
    },
    async answerTo(id, timeoutMs = 10_000) {
      return answerTo(id, timeoutMs);
    },
    /** The next poke (answers to pushes are skipped). */
    async nextPoke() {
      for (;;) {
        const message = await socket.next();
        if (message.type !== 'pushed') return message;
      }
    },
    close: () => socket.close(),
  };
  async function answerTo(id, timeoutMs) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = socket.all.find((m) => m.type === 'pushed' && m.id === id);
      if (found) return found;
      if (Date.now() > deadline) throw new Error(`no answer to push ${id}; got ${JSON.stringify(socket.all)}`);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }
}

const bodyOf = (identity, mutations) => ({
  protocol_version: PROTOCOL_VERSION,
  client_id: identity.client_id,
  session_id: identity.session_id,
  mutations,
});

/** What a push on the socket carries for `identity`: its sign-in, its key, the body. */
const carried = (identity, request) => ({ authorization: `Bearer ${identity.token}`, client_key: identity.client_key, request });

const sendMessage = (identity, roomId, body) => ({
  id: newId('outbox'),
  name: 'sendMessage',
  args: { roomId, authorId: identity.subject, authorName: 'Ada', body },
  record_id: newId('messages'),
});

async function changesOf(recordId) {
  const rows = await app.sql(`SELECT count(*) FROM sync_changes WHERE record_id = '${recordId}'`);
  return Number(rows[0][0]);
}

test('a push on the socket is answered as over HTTP and applied once, whichever way it is sent again', async () => {
  const ada = client(app.url, token);
  const room = newId('room');
  assert.equal((await ada.query('roomMessages', { roomId: room })).status, 200);
  const socket = await pushSocket(ada);
  try {
    const mutation = sendMessage(ada, room, 'over the socket');
    const answer = await socket.push(carried(ada, bodyOf(ada, [mutation])));
    assert.equal(answer.status, 200, JSON.stringify(answer));
    const [result] = answer.body.results;
    assert.equal(result.id, mutation.id);
    assert.equal(result.status, 'confirmed');
    assert.equal(result.row.body, 'over the socket');
    assert.equal(await changesOf(mutation.record_id), 1);
    // Sent again on the socket, then over HTTP: the stored answer, no second change.
    const again = await socket.push(carried(ada, bodyOf(ada, [mutation])));
    assert.equal(again.status, 200);
    assert.equal(again.body.results[0].seq, result.seq);
    const overHttp = await ada.push([mutation]);
    assert.equal(overHttp.status, 200);
    assert.equal(overHttp.json.results[0].seq, result.seq);
    assert.equal(await changesOf(mutation.record_id), 1);
    // The pokes follow the answer on the same socket: the writer's own session watches the room.
    const poke = await socket.nextPoke();
    assert.equal(poke.type, 'poke');
    assert.equal(poke.cursor, result.seq);
  } finally {
    socket.close();
  }
});

test('a push on the socket is refused for what an HTTP push is refused for, and leaves nothing behind', async () => {
  const ada = client(app.url, token);
  const room = newId('room');
  assert.equal((await ada.query('roomMessages', { roomId: room })).status, 200);
  const socket = await pushSocket(ada);
  try {
    const cases = [
      // Another client's key: the key proves the client id, on the socket as in a header.
      ['a key that is not the client\'s', { client_key: newClientKey() }, 403],
      // No sign-in: the app's callback needs one for this write.
      ['no sign-in', { authorization: undefined }, 401],
      // A forged token.
      ['a forged sign-in', { authorization: 'Bearer not.a.token' }, 401],
    ];
    for (const [what, change, status] of cases) {
      const mutation = sendMessage(ada, room, `refused: ${what}`);
      const message = { ...carried(ada, bodyOf(ada, [mutation])), ...change };
      const answer = await socket.push(message);
      if (answer.status === 200) {
        // The app's callback refused the write itself: rejected, stored as such.
        assert.equal(answer.body.results[0].status, 'rejected', `${what}: ${JSON.stringify(answer)}`);
      } else {
        assert.equal(answer.status, status, `${what}: ${JSON.stringify(answer)}`);
        assert.ok(answer.body.error && answer.body.reason, `${what}: a JSON reason`);
      }
      assert.equal(await changesOf(mutation.record_id), 0, what);
    }
    // Another session's push on this socket: refused, whoever's it is.
    const other = client(app.url, token);
    assert.equal((await other.query('roomMessages', { roomId: room })).status, 200);
    const foreign = sendMessage(other, room, 'not this socket\'s');
    const answer = await socket.push(carried(other, bodyOf(other, [foreign])));
    assert.equal(answer.status, 403);
    assert.equal(answer.body.error, 'session_mismatch');
    // Another client naming this session: refused too.
    const thief = client(app.url, token);
    const stolen = sendMessage(thief, room, 'a stolen session');
    const claimed = await socket.push({
      authorization: `Bearer ${token}`,
      client_key: thief.client_key,
      request: { ...bodyOf(thief, [stolen]), session_id: ada.session_id },
    });
    assert.equal(claimed.status, 403);
    assert.equal(claimed.body.error, 'session_mismatch');
    assert.equal(await changesOf(foreign.record_id), 0);
    assert.equal(await changesOf(stolen.record_id), 0);
    // Unreadable and oversized messages get a JSON reason (id 0 when it cannot be read),
    // and the socket still carries the next push.
    socket.socket.socket.send('{"type":"push", nonsense');
    const unreadable = await socket.answerTo(0);
    assert.equal(unreadable.status, 400);
    assert.equal(unreadable.body.error, 'malformed_json');
    const huge = await socket.push({
      authorization: `Bearer ${token}`,
      client_key: ada.client_key,
      request: { ...bodyOf(ada, []), padding: 'x'.repeat(300 * 1024) },
    });
    assert.equal(huge.status, 413);
    const mutation = sendMessage(ada, room, 'still carried');
    const fine = await socket.push(carried(ada, bodyOf(ada, [mutation])));
    assert.equal(fine.status, 200);
    assert.equal(fine.body.results[0].status, 'confirmed');
  } finally {
    socket.close();
  }
});

test('a push on the socket leaves one request line, with no token, key or row in the logs', async () => {
  const ada = client(app.url, token);
  const room = newId('room');
  assert.equal((await ada.query('roomMessages', { roomId: room })).status, 200);
  const socket = await pushSocket(ada);
  try {
    const secretBody = `never logged ${newId('x')}`;
    const mutation = sendMessage(ada, room, secretBody);
    const answer = await socket.push(carried(ada, bodyOf(ada, [mutation])));
    assert.equal(answer.status, 200);
    const deadline = Date.now() + 5_000;
    let line;
    while (!line && Date.now() < deadline) {
      line = app.logs.join('').split('\n')
        .filter((l) => l.includes('{"event":"request"') && l.includes('"method":"WS"'))
        .map((l) => JSON.parse(l.slice(l.indexOf('{"event"'))))
        .find((entry) => entry.route === '/sync/push' && entry.mutations === 1 && entry.status === 200);
      if (!line) await new Promise((resolve) => setTimeout(resolve, 50));
    }
    assert.ok(line, 'a request line for the push on the socket');
    assert.equal(line.changes, 1);
    const output = app.logs.join('');
    for (const secret of [token, ada.client_key, secretBody]) assert.ok(!output.includes(secret), 'nothing secret in the logs');
  } finally {
    socket.close();
  }
});

test('a flood of pushes on one socket is bounded: a few run at once, the rest are answered 429 at once', async () => {
  const ada = client(app.url, token);
  assert.equal((await ada.query('roomMessages', { roomId: newId('room') })).status, 200);
  const socket = await pushSocket(ada);
  try {
    // Sent without waiting for answers (an honest client waits for each).
    const total = 2500;
    const request = bodyOf(ada, []);
    for (let id = 1; id <= total; id += 1) {
      socket.socket.socket.send(JSON.stringify({ type: 'push', id, ...carried(ada, request) }));
    }
    const answers = [];
    for (let id = 1; id <= total; id += 1) answers.push(await socket.answerTo(id, 60_000));
    const count = (status) => answers.filter((answer) => answer.status === status).length;
    // Answered, not dropped, and nothing but run or limited.
    assert.equal(answers.length, total);
    assert.deepEqual([...new Set(answers.map((answer) => answer.status))].sort(), [200, 429], `statuses ${[...new Set(answers.map((a) => a.status))]}`);
    assert.ok(count(200) >= 1 && count(429) > total / 2, `${count(200)} run, ${count(429)} limited`);
    const limited = answers.find((answer) => answer.status === 429);
    assert.equal(limited.body.error, 'rate_limited');
    // The socket still carries a push sent the honest way.
    const after = await socket.push(carried(ada, request), 30_000);
    assert.equal(after.status, 200);
  } finally {
    socket.close();
  }
});
