// The upstream tables are checked against the sync model: a migration that was not
// applied is a clear 503 `schema_mismatch` on /api/health and on the connector, and
// the app recovers once the tables match. Runs on D1 and on PostgreSQL.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startApp } from './support/app.mjs';
import { client, guestToken, newId } from './support/sync.mjs';

let app;

before(async () => {
  app = await startApp();
});
after(async () => app?.stop());

test('a table that lacks a column of the model is a clear error, not a failure per request', async () => {
  const healthy = await fetch(`${app.url}/api/health`);
  assert.equal(healthy.status, 200);
  assert.equal((await healthy.json()).ok, true);

  await app.sql('ALTER TABLE messages RENAME COLUMN body TO text');
  const health = await fetch(`${app.url}/api/health`);
  assert.equal(health.status, 503);
  const body = await health.json();
  assert.equal(body.ok, false);
  assert.equal(body.error, 'schema_mismatch');
  assert.match(body.reason, /table messages lacks column\(s\) body/);

  const a = client(app.url, await guestToken(app.url, 'Ada'));
  const room = newId('room');
  const read = await a.query('roomMessages', { roomId: room });
  assert.equal(read.status, 503, read.text);
  assert.equal(read.json.error, 'schema_mismatch');
  const pushed = await a.send(room, 'Ada', 'hello').response;
  assert.equal(pushed.status, 503, pushed.text);
  assert.equal(pushed.json.error, 'schema_mismatch');

  await app.sql('ALTER TABLE messages RENAME COLUMN text TO body');
  assert.equal((await fetch(`${app.url}/api/health`)).status, 200);
  const retried = await a.send(room, 'Ada', 'hello').response;
  assert.equal(retried.json.results[0].status, 'confirmed', retried.text);
});
