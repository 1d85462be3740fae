-- 0001_init: generated from the sync model for PostgreSQL (applied by the sync engine on first connection).
-- Do not edit: change the model and run `cargo xtask migrations`.

CREATE TABLE IF NOT EXISTS "messages" ("id" TEXT NOT NULL PRIMARY KEY, "room_id" TEXT NOT NULL, "author_name" TEXT NOT NULL, "body" TEXT NOT NULL, "created_at" BIGINT NOT NULL, "last_modified_by" TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS "messages_by_room_id_created_at_id" ON "messages" ("room_id", "created_at", "id");
