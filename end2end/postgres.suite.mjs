// PostgreSQL upstream, checked in the database itself: run only by the PostgreSQL tier
// of `cargo xtask test` (its name matches none of node's test-file patterns), which points
// SYNC_E2E_POSTGRES_URL at a throwaway cluster. The shared suites (connector, pokes,
// chat) run against the same cluster in that tier.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { readdirSync } from 'node:fs';
import { startApp, POSTGRES_URL } from './support/app.mjs';
import { client, guestToken, newId, withoutImage } from './support/sync.mjs';

const roomMessages = (roomId) => ({ name: 'roomMessages', args: { roomId } });

let app;
let ada;

before(async () => {
  assert.ok(POSTGRES_URL, 'SYNC_E2E_POSTGRES_URL must name a PostgreSQL server (cargo xtask test postgres)');
  app = await startApp();
  ada = await guestToken(app.url, 'Ada');
});
after(async () => app?.stop());

test('the worker says it runs on PostgreSQL and migrated the database itself', async () => {
  const health = await (await fetch(`${app.url}/api/health`)).json();
  assert.equal(health.upstream, 'postgres');
  // Any connector call connects; the first connection applies the migrations.
  const read = await client(app.url, ada).query('roomMessages', { roomId: newId('room') });
  assert.equal(read.status, 200, read.text);
  // The engine's own tables, then every migration of the app's folder (generated from its model).
  const folder = readdirSync(new URL('../migrations/postgres/', import.meta.url))
    .filter((name) => name.endsWith('.sql')).map((name) => [name.slice(0, -'.sql'.length)]).sort();
  assert.ok(folder.length >= 6, 'the app has its migrations');
  assert.deepEqual(
    await app.sql('SELECT version FROM sync_schema_migrations ORDER BY version'),
    [...folder, ['sync_engine_0002']],
  );
  const indexes = await app.sql("SELECT indexname FROM pg_indexes WHERE schemaname = 'public' AND indexname NOT LIKE '%_pkey' ORDER BY indexname");
  assert.deepEqual(indexes.map(([name]) => name), ['messages_by_room_id_created_at_id', 'room_members_by_room_id_user_id', 'sync_changes_record', 'sync_changes_topics']);
  const tables = await app.sql(
    "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY table_name",
  );
  assert.deepEqual(tables.map(([name]) => name), ['messages', 'private_rooms', 'room_members', 'sync_changes', 'sync_compaction', 'sync_mutations', 'sync_schema_migrations']);
});

test('an accepted write is in PostgreSQL: the row and its change-log entry, which is its answer, once', async () => {
  const room = newId('room');
  const a = client(app.url, ada);
  const { mutation, response } = a.send(room, 'Ada', 'stored in postgres');
  const pushed = await response;
  assert.equal(pushed.status, 200, pushed.text);
  const [result] = pushed.json.results;
  assert.equal(result.status, 'confirmed', JSON.stringify(result));
  // A retry changes nothing upstream.
  assert.deepEqual((await a.push([mutation])).json.results, withoutImage(pushed.json.results));

  const rows = await app.sql(`SELECT id, room_id, author_name, body, created_at FROM messages WHERE room_id = '${room}'`);
  assert.deepEqual(rows, [[mutation.record_id, room, 'Ada', 'stored in postgres', String(result.row.created_at)]]);
  const changes = await app.sql(
    `SELECT seq, kind, row_json->>'body', topics_json::text, mutation_id FROM sync_changes WHERE record_id = '${mutation.record_id}'`,
  );
  assert.deepEqual(changes, [[String(result.seq), 'upsert', 'stored in postgres', `["roomMessages{\\"roomId\\":\\"${room}\\"}"]`, mutation.id]]);
  // The change row, stamped with the mutation, is the stored answer: no row of its own.
  assert.deepEqual(await app.sql(`SELECT count(*) FROM sync_mutations WHERE client_id = '${a.client_id}'`), [['0']]);
});

test('a refused write leaves PostgreSQL untouched but for its recorded answer', async () => {
  const room = newId('room');
  const a = client(app.url, ada);
  // The chat's mutation callback refuses posting as another user (Bob's subject).
  const bob = client(app.url, await guestToken(app.url, 'Bob'));
  const forged = { id: newId('outbox'), name: 'sendMessage', args: { roomId: room, authorId: bob.subject, authorName: 'Bob', body: 'not really Bob' }, record_id: newId('messages') };
  const response = a.push([forged]);
  const [result] = (await response).json.results;
  assert.equal(result.status, 'rejected', JSON.stringify(result));
  assert.deepEqual(await app.sql(`SELECT count(*) FROM messages WHERE room_id = '${room}'`), [['0']]);
  assert.deepEqual(await app.sql(`SELECT count(*) FROM sync_changes WHERE client_id = '${a.client_id}'`), [['0']]);
  assert.deepEqual(
    await app.sql(`SELECT outcome_json->>'status' FROM sync_mutations WHERE client_id = '${a.client_id}'`),
    [['rejected']],
  );
});

test('concurrent writers while a reader pulls: the reader misses no change, and none arrives twice', async () => {
  const room = newId('room');
  const names = ['W0', 'W1', 'W2', 'W3', 'W4', 'W5'];
  const writers = await Promise.all(names.map(async (name) => client(app.url, await guestToken(app.url, name))));
  // The reader only ever pulls from its own cursor, as the browser does, while the
  // writes land. A change whose sequence number commits after a later one's would be
  // skipped for good: that is what the change-log lock prevents.
  const reader = client(app.url, ada);
  const received = [];
  let cursor = 0;
  let writing = true;
  const pullOnce = async () => {
    const page = await reader.pull(cursor, [roomMessages(room)]);
    assert.equal(page.status, 200, page.text);
    received.push(...page.json.changes.map((change) => change.seq));
    cursor = page.json.cursor;
    return page.json.has_more;
  };
  const pulling = (async () => {
    while (writing) await pullOnce();
  })();
  const pushes = [];
  for (let round = 0; round < 5; round += 1) {
    for (const [index, writer] of writers.entries()) {
      const mutations = [0, 1, 2].map((n) => ({
        id: newId('outbox'), name: 'sendMessage', args: { roomId: room, authorId: writer.subject, authorName: names[index], body: `r${round} n${n}` }, record_id: newId('messages'),
      }));
      pushes.push(writer.push(mutations));
    }
  }
  const answers = await Promise.all(pushes);
  writing = false;
  await pulling;
  while (await pullOnce());
  for (const answer of answers) assert.equal(answer.status, 200, answer.text);
  const seqs = answers.flatMap((answer) => answer.json.results.map((r) => {
    assert.equal(r.status, 'confirmed', JSON.stringify(r));
    return r.seq;
  }));
  assert.equal(new Set(seqs).size, 90, 'each write has its own sequence number');
  assert.deepEqual(received, [...seqs].sort((x, y) => x - y), 'the reader got every change once, in order');
  const [[logged]] = await app.sql(`SELECT count(*) FROM sync_changes WHERE topics_json ? 'roomMessages{"roomId":"${room}"}'`);
  assert.equal(logged, '90');
});

test('a write that commits late is not skipped: a later write waits for it, so cursors never pass it', async () => {
  const room = newId('room');
  const reader = client(app.url, ada);
  // (This read also makes sure the worker has migrated the database.)
  const start = (await reader.query('roomMessages', { roomId: room })).json.cursor;
  // A trigger (installed here, in this app's database) holds a write's transaction
  // open for a while after its change-log row took its sequence number.
  await app.sql(`
    CREATE OR REPLACE FUNCTION e2e_slow_commit() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN PERFORM pg_sleep(1.5); RETURN NEW; END $$;
    DROP TRIGGER IF EXISTS e2e_slow_commit ON sync_changes;
    CREATE TRIGGER e2e_slow_commit AFTER INSERT ON sync_changes FOR EACH ROW
      WHEN (NEW.row_json->>'body' = 'slow') EXECUTE FUNCTION e2e_slow_commit();`);
  try {
    const slow = client(app.url, ada).send(room, 'Ada', 'slow').response;
    await new Promise((resolve) => setTimeout(resolve, 400));
    const fast = await client(app.url, ada).send(room, 'Ada', 'fast').response;
    assert.equal(fast.status, 200, fast.text);
    // Pull right away, as a poke would make the browser do, then again later.
    const first = await reader.pull(start, [roomMessages(room)]);
    const slowAnswer = await slow;
    const second = await reader.pull(first.json.cursor, [roomMessages(room)]);
    const received = [...first.json.changes, ...second.json.changes].map((change) => change.row.body);
    assert.equal(slowAnswer.json.results[0].status, 'confirmed', slowAnswer.text);
    assert.ok(slowAnswer.json.results[0].seq < fast.json.results[0].seq, 'the slow write took its number first');
    assert.deepEqual(received, ['slow', 'fast'], 'the reader got both writes, in sequence order');
  } finally {
    await app.sql('DROP TRIGGER IF EXISTS e2e_slow_commit ON sync_changes');
  }
});

test('a write that finds its record changed at the last moment is rejected whole: no row change, no change-log entry', async () => {
  const room = newId('room');
  const a = client(app.url, ada);
  const { mutation: sent, response } = a.send(room, 'Ada', 'original');
  assert.equal((await response).json.results[0].status, 'confirmed');
  // A trigger stands in for a concurrent change: it makes the UPDATE touch no row,
  // after the connector's own check saw the record.
  await app.sql(`
    CREATE OR REPLACE FUNCTION e2e_vanish() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN RETURN NULL; END $$;
    DROP TRIGGER IF EXISTS e2e_vanish ON messages;
    CREATE TRIGGER e2e_vanish BEFORE UPDATE ON messages FOR EACH ROW
      WHEN (NEW.body = 'vanish') EXECUTE FUNCTION e2e_vanish();`);
  try {
    const edit = { id: newId('outbox'), name: 'editMessage', args: { roomId: room, authorId: a.subject, body: 'vanish' }, record_id: sent.record_id };
    const later = { id: newId('outbox'), name: 'editMessage', args: { roomId: room, authorId: a.subject, body: 'edited' }, record_id: sent.record_id };
    const pushed = await a.push([edit, later]);
    assert.equal(pushed.status, 200, pushed.text);
    const [first, second] = pushed.json.results;
    assert.equal(first.status, 'rejected', JSON.stringify(first));
    assert.match(first.reason, /changed before this write could apply/);
    assert.equal(second.status, 'confirmed', JSON.stringify(second));
    assert.deepEqual(await app.sql(`SELECT body FROM messages WHERE id = '${sent.record_id}'`), [['edited']]);
    assert.deepEqual(
      await app.sql(`SELECT row_json->>'body' FROM sync_changes WHERE record_id = '${sent.record_id}' ORDER BY seq`),
      [['original'], ['edited']],
    );
  } finally {
    await app.sql('DROP TRIGGER IF EXISTS e2e_vanish ON messages');
  }
});

// (A port nobody listens on is not tried: wrangler's local Hyperdrive proxy dies on
// ECONNREFUSED, taking wrangler dev down; the deployed Hyperdrive answers an error.)
for (const [what, brokenUrl, reason] of [
  ['a wrong password', async () => { const url = new URL(app.databaseUrl); url.password = 'wrong'; return url.toString(); }, /password|authentication/],
  ['a server that does not speak PostgreSQL', notPostgres, /connecting|PostgreSQL|127\.0\.0\.1/],
]) {
  test(`PostgreSQL behind ${what}: reads and writes answer 503 upstream_unavailable with a JSON reason and Retry-After, and the write is not lost`, async () => {
    const broken = await startApp({ postgresUrl: await brokenUrl() });
    try {
      const token = await guestToken(broken.url, 'Ada');
      const b = client(broken.url, token);
      const read = await b.query('roomMessages', { roomId: newId('room') });
      assert.equal(read.status, 503, read.text);
      assert.equal(read.json.error, 'upstream_unavailable');
      // Whose failure it is and what to do; what the database said stays in the log.
      assert.match(read.json.reason, /upstream database is unavailable; retry/);
      assert.doesNotMatch(read.json.reason, reason);
      const room = newId('room');
      const { mutation, response } = b.send(room, 'Ada', 'while broken');
      const pushed = await response;
      assert.equal(pushed.status, 503, pushed.text);
      assert.equal(pushed.json.error, 'upstream_unavailable');
      // The client keeps it in its outbox and pushes it again to a working connector.
      const again = await client(app.url, token, b.client_key).call('push', {
        protocol_version: 1, client_id: b.client_id, session_id: b.session_id, mutations: [mutation],
      });
      assert.equal(again.status, 200, again.text);
      assert.equal(again.json.results[0].status, 'confirmed', again.text);
      assert.deepEqual(await app.sql(`SELECT body FROM messages WHERE room_id = '${room}'`), [['while broken']]);
    } finally {
      await broken.stop();
    }
  });
}

/** A loopback server that answers anything with an HTTP error and hangs up. */
async function notPostgres() {
  const server = createServer((socket) => {
    socket.on('error', () => {});
    socket.on('data', () => socket.end('HTTP/1.1 400 Bad Request\r\n\r\n'));
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  server.unref();
  const url = new URL(app.databaseUrl);
  url.port = String(server.address().port);
  return url.toString();
}
