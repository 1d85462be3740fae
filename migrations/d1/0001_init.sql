-- Upstream schema for D1. Every write to these tables goes through the connector
-- (it records the change log and idempotency records in the same transaction).
-- app/tests/migrations.rs checks these statements against the sync model.

-- The chat app's collection (app/src/model.rs).
CREATE TABLE IF NOT EXISTS "messages" (
  "id" TEXT NOT NULL PRIMARY KEY,
  "room_id" TEXT NOT NULL,
  "author_name" TEXT NOT NULL,
  "body" TEXT NOT NULL,
  "created_at" INTEGER NOT NULL,
  "last_modified_by" TEXT NOT NULL
);
-- roomMessages: WHERE room_id = ? ORDER BY created_at, id.
CREATE INDEX IF NOT EXISTS messages_room_created ON "messages" ("room_id", "created_at", "id");

-- Engine: the change log. seq is the cursor clients pull from.
CREATE TABLE IF NOT EXISTS sync_changes (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  collection TEXT NOT NULL, record_id TEXT NOT NULL, kind TEXT NOT NULL,
  row_json TEXT, topics_json TEXT NOT NULL,
  client_id TEXT NOT NULL, mutation_id TEXT NOT NULL, created_at INTEGER NOT NULL
);

-- Engine: one answer per (client, mutation id), so a retried push never applies twice.
CREATE TABLE IF NOT EXISTS sync_mutations (
  client_id TEXT NOT NULL, mutation_id TEXT NOT NULL,
  outcome_json TEXT NOT NULL, created_at INTEGER NOT NULL,
  PRIMARY KEY (client_id, mutation_id)
);
