// PostgreSQL upstream, checked in the database itself: run only by the PostgreSQL tier
// of `cargo xtask test` (its name does not match node's test pattern), which points
// SYNC_E2E_POSTGRES_URL at a throwaway cluster. The shared suites (connector, pokes,
// chat) run against the same cluster in that tier.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startApp, POSTGRES_URL } from './support/app.mjs';
import { client, guestToken, newId } from './support/sync.mjs';

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
  assert.deepEqual(await app.sql('SELECT version FROM sync_schema_migrations ORDER BY version'), [['0001_init']]);
  const tables = await app.sql(
    "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY table_name",
  );
  assert.deepEqual(tables.map(([name]) => name), ['messages', 'sync_changes', 'sync_mutations', 'sync_schema_migrations']);
});

test('an accepted write is in PostgreSQL: the row, its change-log entry and its outcome, once', async () => {
  const room = newId('room');
  const a = client(app.url, ada);
  const { mutation, response } = a.send(room, 'Ada', 'stored in postgres');
  const pushed = await response;
  assert.equal(pushed.status, 200, pushed.text);
  const [result] = pushed.json.results;
  assert.equal(result.status, 'confirmed', JSON.stringify(result));
  // A retry changes nothing upstream.
  assert.deepEqual((await a.push([mutation])).json.results, pushed.json.results);

  const rows = await app.sql(`SELECT id, room_id, author_name, body, created_at FROM messages WHERE room_id = '${room}'`);
  assert.deepEqual(rows, [[mutation.record_id, room, 'Ada', 'stored in postgres', String(result.row.created_at)]]);
  const changes = await app.sql(
    `SELECT seq, kind, row_json->>'body', topics_json::text, mutation_id FROM sync_changes WHERE record_id = '${mutation.record_id}'`,
  );
  assert.deepEqual(changes, [[String(result.seq), 'upsert', 'stored in postgres', `["roomMessages{\\"roomId\\":\\"${room}\\"}"]`, mutation.id]]);
  const outcomes = await app.sql(
    `SELECT outcome_json->>'status', outcome_json->>'seq' FROM sync_mutations WHERE client_id = '${a.client_id}'`,
  );
  assert.deepEqual(outcomes, [['confirmed', String(result.seq)]]);
});

test('a refused write leaves PostgreSQL untouched but for its recorded answer', async () => {
  const room = newId('room');
  const a = client(app.url, ada);
  // The chat's mutation callback refuses posting under someone else's name.
  const { response } = a.send(room, 'Bob', 'not really Bob');
  const [result] = (await response).json.results;
  assert.equal(result.status, 'rejected', JSON.stringify(result));
  assert.deepEqual(await app.sql(`SELECT count(*) FROM messages WHERE room_id = '${room}'`), [['0']]);
  assert.deepEqual(await app.sql(`SELECT count(*) FROM sync_changes WHERE client_id = '${a.client_id}'`), [['0']]);
  assert.deepEqual(
    await app.sql(`SELECT outcome_json->>'status' FROM sync_mutations WHERE client_id = '${a.client_id}'`),
    [['rejected']],
  );
});

test('concurrent writers: every accepted write is in the change log once, and pulls see them in cursor order', async () => {
  const room = newId('room');
  const writers = await Promise.all(['A', 'B', 'C', 'D', 'E', 'F'].map(async (name) => client(app.url, await guestToken(app.url, name))));
  const pushes = [];
  for (let round = 0; round < 5; round += 1) {
    for (const [index, writer] of writers.entries()) {
      const mutations = [0, 1, 2].map((n) => ({
        id: newId('outbox'), name: 'sendMessage', args: { roomId: room, authorName: `W${index}`, body: `r${round} n${n}` }, record_id: newId('message'),
      }));
      pushes.push(writer.push(mutations));
    }
  }
  const answers = await Promise.all(pushes);
  for (const answer of answers) assert.equal(answer.status, 200, answer.text);
  const seqs = answers.flatMap((answer) => answer.json.results.map((r) => {
    assert.equal(r.status, 'confirmed', JSON.stringify(r));
    return r.seq;
  }));
  assert.equal(new Set(seqs).size, 90, 'each write has its own sequence number');

  // Pull the room in small steps: every change arrives once, in cursor order.
  const reader = client(app.url, ada);
  let cursor = 0;
  const pulled = [];
  for (;;) {
    const page = await reader.pull(cursor, [roomMessages(room)]);
    assert.equal(page.status, 200, page.text);
    pulled.push(...page.json.changes.map((change) => change.seq));
    cursor = page.json.cursor;
    if (!page.json.has_more) break;
  }
  assert.deepEqual(pulled, [...seqs].sort((x, y) => x - y));
  const [[logged]] = await app.sql(`SELECT count(*) FROM sync_changes WHERE topics_json ? 'roomMessages{"roomId":"${room}"}'`);
  assert.equal(logged, '90');
});

test('PostgreSQL unreachable: reads and writes answer 502 with a JSON reason, and nothing is lost', async () => {
  // A second app whose Hyperdrive points at a port nobody listens on.
  const dead = new URL(app.databaseUrl);
  dead.port = '9';
  const broken = await startApp({ postgresUrl: dead.toString() });
  try {
    const token = await guestToken(broken.url, 'Ada');
    const b = client(broken.url, token);
    const read = await b.query('roomMessages', { roomId: newId('room') });
    assert.equal(read.status, 502, read.text);
    assert.equal(read.json.error, 'upstream_error');
    assert.match(read.json.reason, /PostgreSQL|Hyperdrive|connect/i);
    const { mutation, response } = b.send(newId('room'), 'Ada', 'while down');
    const pushed = await response;
    assert.equal(pushed.status, 502, pushed.text);
    assert.equal(pushed.json.error, 'upstream_error');
    // The client keeps it in its outbox and pushes it again once the database is back.
    const again = await client(app.url, token).call('push', {
      protocol_version: 1, client_id: b.client_id, session_id: b.session_id, mutations: [mutation],
    });
    assert.equal(again.status, 200, again.text);
    assert.equal(again.json.results[0].status, 'confirmed', again.text);
  } finally {
    await broken.stop();
  }
});
