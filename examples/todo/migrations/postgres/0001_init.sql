-- 0001_init: generated from the sync model for PostgreSQL (applied by the sync engine on first connection).
-- Do not edit: change the model and run `cargo xtask migrations`.

CREATE TABLE IF NOT EXISTS "todos" ("id" TEXT NOT NULL PRIMARY KEY, "list_id" TEXT NOT NULL, "title" TEXT NOT NULL, "done" BOOLEAN NOT NULL, "created_at" BIGINT NOT NULL, "updated_by" TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS "todos_by_list_id_created_at_id" ON "todos" ("list_id", "created_at", "id");
