-- Upstream schema for PostgreSQL. The worker applies the files of this folder itself,
-- in name order, the first time an isolate connects (recorded in
-- sync_schema_migrations, under an advisory lock). app/tests/migrations.rs checks these
-- statements against the sync model.

-- The chat app's collection (app/src/model.rs).
CREATE TABLE IF NOT EXISTS "messages" (
  "id" TEXT NOT NULL PRIMARY KEY,
  "room_id" TEXT NOT NULL,
  "author_name" TEXT NOT NULL,
  "body" TEXT NOT NULL,
  "created_at" BIGINT NOT NULL,
  "last_modified_by" TEXT NOT NULL
);
-- roomMessages: WHERE room_id = $1 ORDER BY created_at, id.
CREATE INDEX IF NOT EXISTS messages_room_created ON "messages" ("room_id", "created_at", "id");

-- Engine: the change log. seq is the cursor clients pull from; writers append one at
-- a time (an advisory lock), so seq order is commit order.
CREATE TABLE IF NOT EXISTS sync_changes (
  seq BIGSERIAL PRIMARY KEY,
  collection TEXT NOT NULL, record_id TEXT NOT NULL, kind TEXT NOT NULL,
  row_json JSONB, topics_json JSONB NOT NULL,
  client_id TEXT NOT NULL, mutation_id TEXT NOT NULL, created_at BIGINT NOT NULL
);
-- pull: topics_json ?| ARRAY[...] AND seq > $1.
CREATE INDEX IF NOT EXISTS sync_changes_topics ON sync_changes USING GIN (topics_json);

-- Engine: one answer per (client, mutation id), so a retried push never applies twice.
CREATE TABLE IF NOT EXISTS sync_mutations (
  client_id TEXT NOT NULL, mutation_id TEXT NOT NULL,
  outcome_json JSONB NOT NULL, created_at BIGINT NOT NULL,
  PRIMARY KEY (client_id, mutation_id)
);
