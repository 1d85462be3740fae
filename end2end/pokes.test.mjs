// Durable Objects: sessions are bound to their client, subscriptions route pokes to
// exactly the sessions watching a room, and both survive a restart.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startApp } from './support/app.mjs';
import { client, guestToken, newId, pokeSocket } from './support/sync.mjs';

let app;
let token;

before(async () => {
  app = await startApp();
  token = await guestToken(app.url, 'Ada');
});
after(async () => app?.stop({ keepState: false }));

test('a client watching room A is poked for a write in A and not for one in B', async () => {
  const [roomA, roomB] = [newId('room'), newId('room')];
  const inA = client(app.url, token);
  const inB = client(app.url, token);
  assert.equal((await inA.query('roomMessages', { roomId: roomA })).status, 200);
  assert.equal((await inB.query('roomMessages', { roomId: roomB })).status, 200);
  const socketA = await pokeSocket(app.url, inA);
  const socketB = await pokeSocket(app.url, inB);
  try {
    const writer = client(app.url, token);
    const before = (await inA.query('roomMessages', { roomId: roomA })).json.cursor;
    const inRoomA = (await writer.send(roomA, 'Ada', 'for A').response).json.results[0];
    const pokeA = await socketA.next();
    assert.equal(pokeA.type, 'poke');
    assert.equal(pokeA.cursor, inRoomA.seq);
    // The poke carries the change itself: exactly what a pull hands out for it.
    const pulledFirst = await inA.pull(before, [{ name: 'roomMessages', args: { roomId: roomA } }]);
    assert.deepEqual(pokeA.changes, pulledFirst.json.changes);
    assert.deepEqual(pokeA.changes.map((c) => c.row.body), ['for A']);

    const inRoomB = (await writer.send(roomB, 'Ada', 'for B').response).json.results[0];
    // B's first poke is for B's write: the one in A never reached it.
    const pokeB = await socketB.next();
    assert.equal(pokeB.cursor, inRoomB.seq);
    assert.deepEqual(pokeB.changes.map((c) => c.row.body), ['for B']);
    // And A hears nothing of B's: its next poke is its own room's next write.
    const again = (await writer.send(roomA, 'Ada', 'for A again').response).json.results[0];
    const pokeAgain = await socketA.next();
    assert.equal(pokeAgain.cursor, again.seq);
    assert.ok((pokeAgain.changes ?? []).every((c) => c.row.body === 'for A again'));

    // A poke means "pull": the pull from the old cursor brings exactly the new rows.
    const pulled = await inA.pull(inRoomA.seq, [{ name: 'roomMessages', args: { roomId: roomA } }]);
    assert.deepEqual(pulled.json.changes.map((c) => c.row.body), ['for A again']);
  } finally {
    socketA.close();
    socketB.close();
  }
});

test('a session is bound to its first client', async () => {
  const owner = client(app.url, token);
  assert.equal((await owner.query('roomMessages', { roomId: newId('room') })).status, 200);
  const thief = client(app.url, token);
  const stolen = { ...thief, session_id: owner.session_id };
  const body = { protocol_version: 1, client_id: thief.client_id, session_id: owner.session_id };
  // (A pull that names no topic touches no session object, so it names none.)
  const watching = [{ name: 'roomMessages', args: { roomId: 'r' } }];
  for (const [path, extra] of [['query', { name: 'roomMessages', args: { roomId: 'r' } }], ['pull', { cursor: 0, subscriptions: watching }], ['push', { mutations: [] }]]) {
    const response = await thief.call(path, JSON.stringify({ ...body, ...extra }));
    assert.equal(response.status, 403, `${path}: ${response.text}`);
    assert.equal(response.json.error, 'session_mismatch');
  }
  await assert.rejects(pokeSocket(app.url, stolen));
  const plain = await fetch(`${app.url}/sync/socket?client_id=${owner.client_id}&session_id=${owner.session_id}`);
  assert.equal(plain.status, 426);
  assert.equal((await plain.json()).error, 'upgrade_required');
});

test('sessions and subscriptions survive a restart', async () => {
  const room = newId('room');
  const watcher = client(app.url, token);
  assert.equal((await watcher.query('roomMessages', { roomId: room })).status, 200);
  const { state } = app;
  await app.stop({ keepState: true });
  app = await startApp({ persistTo: state });
  // The subscription is remembered: connecting the socket is enough to be poked.
  const socket = await pokeSocket(app.url, watcher);
  try {
    const writer = client(app.url, await guestToken(app.url, 'Ada'));
    const sent = (await writer.send(room, 'Ada', 'after restart').response).json.results[0];
    const poke = await socket.next();
    assert.deepEqual([poke.type, poke.cursor], ['poke', sent.seq]);
    assert.deepEqual((poke.changes ?? []).map((c) => c.row.body), ['after restart']);
  } finally {
    socket.close();
  }
  // And the session still belongs to its client.
  const thief = client(app.url, token);
  const response = await thief.call('pull', JSON.stringify({ protocol_version: 1, client_id: thief.client_id, session_id: watcher.session_id, cursor: 0, subscriptions: [{ name: 'roomMessages', args: { roomId: room } }] }));
  assert.equal(response.status, 403);
});

test('1000 writes to a watched room from 4 writers: each reaches a listener inside a poke, at once and once per cursor; a puller misses none', async () => {
  const room = newId('room');
  const subscription = [{ name: 'roomMessages', args: { roomId: room } }];
  // One watcher only listens; the other pulls on every poke, like a browser.
  const listener = client(app.url, token);
  const puller = client(app.url, token);
  let startedAt = Infinity;
  for (const watcher of [listener, puller]) {
    const answer = await watcher.query('roomMessages', { roomId: room });
    assert.equal(answer.status, 200);
    startedAt = Math.min(startedAt, answer.json.cursor);
  }
  const heard = await pokeSocket(app.url, listener);
  const pulling = await pokeSocket(app.url, puller);
  let pulledThrough = 0;
  const received = new Map();
  let pulls = 0;
  let stop = false;
  const pullLoop = (async () => {
    while (!stop) {
      let poke;
      try {
        poke = await pulling.next(1_000);
      } catch {
        continue;
      }
      if (poke.cursor <= pulledThrough) continue;
      for (let more = true; more;) {
        const page = await puller.pull(pulledThrough, subscription);
        assert.equal(page.status, 200, page.text);
        pulls += 1;
        for (const change of page.json.changes) {
          assert.ok(change.seq > pulledThrough, 'in order, after the cursor');
          assert.ok(!received.has(change.record_id), `applied twice: ${change.record_id}`);
          received.set(change.record_id, change.seq);
        }
        pulledThrough = page.json.cursor;
        more = page.json.has_more;
      }
    }
  })();
  try {
    const WRITES = 1000;
    const WRITERS = 4;
    let head = 0;
    const written = new Set();
    const seqOf = new Map();
    await Promise.all(Array.from({ length: WRITERS }, async (_, w) => {
      const writer = client(app.url, token);
      for (let i = 0; i < WRITES / WRITERS; i += 1) {
        const { mutation, response } = writer.send(room, 'Ada', `w${w} #${i}`);
        const result = (await response).json.results[0];
        assert.equal(result.status, 'confirmed');
        head = Math.max(head, result.seq);
        written.add(mutation.record_id);
        seqOf.set(mutation.record_id, result.seq);
      }
    }));
    // Pokes that carry their changes are never held back: the listener gets every
    // write inside a poke, whatever order the writers poked in; except once the app's
    // last "yes" for its topic is over 30 s old (it never pulls, so never asks again):
    // then pokes carry only the cursor, and a client pulls (a slow PostgreSQL run can
    // last that long).
    const carried = () => new Set(heard.received.flatMap((p) => (p.changes ?? []).map((c) => c.record_id)));
    const announced = () => Math.max(0, ...heard.received.filter((p) => !p.changes?.length).map((p) => p.cursor));
    const covered = () => [...written].every((id) => carried().has(id) || seqOf.get(id) <= announced());
    const deadline = Date.now() + 5_000;
    while (Date.now() < deadline && (pulledThrough < head || !covered())) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const listened = heard.received.map((p) => p.cursor);
    assert.equal(Math.max(...listened), head, 'the listener heard of the last write');
    assert.equal(new Set(listened).size, listened.length, 'at most one poke per cursor');
    const inPokes = carried();
    for (const id of written) {
      assert.ok(inPokes.has(id) || seqOf.get(id) <= announced(), `the listener never heard of ${id}`);
    }
    const rowless = heard.received.filter((p) => !p.changes?.length);
    if (rowless.length) {
      // Row-less only after the authorization aged: every carried poke comes first.
      const firstRowless = Math.min(...rowless.map((p) => p.cursor));
      assert.ok(inPokes.size >= WRITES / 4, `${inPokes.size} writes carried before pokes went row-less at ${firstRowless}`);
    } else {
      assert.equal(inPokes.size, WRITES, 'every write carried');
    }
    // In commit order, each poke's changes begin where the previous write's ended: a
    // client that has one applies the next without a pull, whichever writer sent it.
    const topic = `roomMessages{"roomId":"${room}"}`;
    const seqs = [...seqOf.values()].sort((x, y) => x - y);
    const chain = heard.received.filter((p) => p.changes?.length).sort((x, y) => x.cursor - y.cursor);
    for (const poke of chain) {
      assert.equal(poke.topic, topic);
      const k = seqs.indexOf(poke.cursor);
      assert.ok(k >= 0, `poke ${poke.cursor} is one write's`);
      if (k === 0) assert.ok(poke.since <= startedAt, 'the first poke follows the query');
      else assert.equal(poke.since, seqs[k - 1], `poke ${poke.cursor} follows ${seqs[k - 1]}`);
    }
    // Applied as they arrived, each one that follows moves the client on; one that
    // overtook an earlier writer's is a gap the client pulls for (which brings it at
    // least to that poke).
    let stands = startedAt;
    let gaps = 0;
    for (const poke of heard.received.filter((p) => p.changes?.length)) {
      if (poke.since > stands) gaps += 1; // the client would pull: at least through this poke
      stands = Math.max(stands, poke.cursor);
    }
    console.log(`# ${chain.length} carried pokes, ${rowless.length} row-less; ${gaps} arrived ahead of an earlier one`);
    for (const poke of heard.received) {
      for (const change of poke.changes ?? []) assert.ok(change.seq <= poke.cursor, 'a poke carries changes up to its cursor');
    }
    assert.ok(pulledThrough >= head, 'the pulling watcher caught up');
    assert.equal(received.size, WRITES, 'every write reached the pulling watcher once');
    for (const id of written) assert.ok(received.has(id), `missed ${id}`);
    console.log(`# ${WRITES} writes: the listener got ${listened.length} pokes; the puller made ${pulls} pulls`);
  } finally {
    stop = true;
    await pullLoop;
    heard.close();
    pulling.close();
  }
});

test('a poke whose changes do not follow what the client holds makes it pull, and the pull fills the gap', async () => {
  const room = newId('room');
  const reader = client(app.url, token);
  const snapshot = await reader.query('roomMessages', { roomId: room });
  let stands = snapshot.json.cursor;
  const socket = await pokeSocket(app.url, reader);
  try {
    const writer = client(app.url, token);
    const first = (await writer.send(room, 'Ada', 'small one').response).json.results[0];
    const poke1 = await socket.next();
    assert.equal(poke1.cursor, first.seq);
    assert.ok(poke1.since <= stands, 'follows the snapshot');
    stands = poke1.cursor;
    // One push too big to ride in a poke (over 64 KB): announced without its changes.
    const big = Array.from({ length: 40 }, (_, i) => ({
      id: newId('outbox'), name: 'sendMessage', args: { roomId: room, authorId: writer.subject, authorName: 'Ada', body: `${i} ${'b'.repeat(1990)}` }, record_id: newId('message'),
    }));
    const pushed = await writer.push(big);
    assert.equal(pushed.status, 200);
    const poke2 = await socket.next();
    assert.equal(poke2.cursor, pushed.json.cursor);
    assert.equal(poke2.changes, undefined, 'too big to carry');
    assert.equal(poke2.since, undefined);
    // The next small write's poke begins after the big push: a gap for this client.
    const third = (await writer.send(room, 'Ada', 'small two').response).json.results[0];
    const poke3 = await socket.next();
    assert.equal(poke3.since, poke2.cursor);
    assert.ok(poke3.since > stands, 'a gap');
    assert.deepEqual(poke3.changes.map((c) => c.row.body), ['small two']);
    // The pull from where the client stands fills it: the 40, then the small one.
    const pulled = await reader.pull(stands, [{ name: 'roomMessages', args: { roomId: room } }]);
    assert.equal(pulled.json.changes.length, 41);
    assert.equal(pulled.json.changes.at(-1).seq, third.seq);
  } finally {
    socket.close();
  }
});
