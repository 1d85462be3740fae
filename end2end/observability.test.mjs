// What an operator sees: one JSON log line per request (documented fields, nothing
// secret), Durable Object events, and the stats endpoint behind the engine secret.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { startApp, TEST_VARS } from './support/app.mjs';
import { client, guestToken, newId } from './support/sync.mjs';

let app;

before(async () => {
  app = await startApp();
});
after(async () => app?.stop());

/** The JSON log lines wrangler printed so far (one object per line). */
function logLines() {
  return app.logs
    .join('')
    .split('\n')
    .map((line) => line.slice(line.indexOf('{')))
    .filter((line) => line.startsWith('{"event":'))
    .flatMap((line) => {
      try {
        return [JSON.parse(line)];
      } catch {
        return [];
      }
    });
}

async function waitForLine(predicate, what) {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    const found = logLines().find(predicate);
    if (found) return found;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`no log line ${what}; lines: ${JSON.stringify(logLines().slice(-5))}`);
}

test('a push leaves one JSON line with the documented fields and nothing secret', async () => {
  const token = await guestToken(app.url, 'Logged');
  const writer = client(app.url, token);
  const room = newId('room');
  const { response } = writer.send(room, 'Logged', 'a message with a secret word: swordfish');
  const pushed = await response;
  assert.equal(pushed.status, 200, pushed.text);

  const hash = createHash('sha256').update(writer.client_id).digest('hex').slice(0, 12);
  const line = await waitForLine((entry) => entry.route === '/sync/push' && entry.client === hash, 'for the push');
  assert.equal(line.event, 'request');
  assert.equal(line.method, 'POST');
  assert.equal(line.status, 200);
  assert.equal(line.mutations, 1);
  assert.equal(line.changes, 1);
  for (const field of ['ms', 'upstream_ms', 'upstream_calls', 'callback_ms', 'callbacks']) {
    assert.equal(typeof line[field], 'number', `${field} in ${JSON.stringify(line)}`);
  }
  assert.ok(line.upstream_calls >= 1, 'the push went upstream');
  if (app.upstream === 'd1') {
    // What D1 bills, as it reported it: the message (its row, its key and its room
    // index), its change (row and record index), the stamp naming it, its answer.
    // Nothing more: a write context or a claim-then-update would cost 12.
    assert.ok(line.d1_rows_written >= 2, JSON.stringify(line));
    assert.ok(line.d1_rows_written <= 7, `one message cost ${line.d1_rows_written} rows written: ${JSON.stringify(line)}`);
    assert.ok(line.d1_statements >= 2, JSON.stringify(line));
    assert.equal(typeof line.d1_rows_read, 'number');
    console.log(`one message's push on D1: ${line.d1_statements} statements, ${line.d1_rows_written} rows written, ${line.d1_rows_read} rows read`);
  } else {
    assert.equal(line.d1_rows_written, undefined, 'no D1 figures on PostgreSQL');
  }

  // Nowhere in the whole log: the token, the client key, the client id, the engine
  // secret, the row's text.
  const everything = app.logs.join('');
  for (const secret of [token, writer.client_key, writer.client_id, TEST_VARS.SYNC_ENGINE_SECRET, 'swordfish']) {
    assert.ok(!everything.includes(secret), `the log holds ${secret.slice(0, 12)}...`);
  }
});

test('a refused request logs its error code; a socket ticket never reaches the log', async () => {
  const bad = await fetch(`${app.url}/sync/push`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{' });
  assert.equal(bad.status, 400);
  const line = await waitForLine((entry) => entry.route === '/sync/push' && entry.status === 400, 'for the bad push');
  assert.equal(line.error, 'malformed_json');
  await fetch(`${app.url}/sync/socket?ticket=ticket-that-must-not-be-logged`);
  await waitForLine((entry) => entry.route === '/sync/socket', 'for the socket');
  assert.ok(!app.logs.join('').includes('ticket-that-must-not-be-logged'));
});

test('the stats endpoint answers the engine secret only', async () => {
  for (const headers of [{}, { 'x-sync-engine-secret': 'wrong' }]) {
    const refused = await fetch(`${app.url}/sync/admin/stats`, { headers });
    assert.equal(refused.status, 401);
    const body = await refused.json();
    assert.equal(body.error, 'unauthorized');
    assert.ok(!JSON.stringify(body).includes('change_log'));
  }
  const token = await guestToken(app.url, 'Counted');
  const writer = client(app.url, token);
  assert.equal((await writer.send(newId('room'), 'Counted', 'counted').response).status, 200);
  const answer = await fetch(`${app.url}/sync/admin/stats`, { headers: { 'x-sync-engine-secret': TEST_VARS.SYNC_ENGINE_SECRET } });
  assert.equal(answer.status, 200);
  const stats = await answer.json();
  assert.ok(stats.change_log.changes >= 1, JSON.stringify(stats));
  assert.ok(stats.change_log.last_seq >= stats.change_log.changes);
  assert.equal(typeof stats.change_log.compacted_through, 'number');
  assert.ok('listening' in stats.sessions && 'open_sockets' in stats.sessions && 'watched_topics' in stats.sessions);
  assert.equal(typeof stats.isolate.memo_claimed_sessions, 'number');
  assert.ok(stats.isolate.wasm_memory_bytes > 0);
});
