-- 0001_init: generated from the sync model for D1 (applied by `wrangler d1 migrations apply`).
-- Do not edit: change the model and run `cargo xtask migrations`.

CREATE TABLE IF NOT EXISTS "todos" ("id" TEXT NOT NULL PRIMARY KEY, "list_id" TEXT NOT NULL, "title" TEXT NOT NULL, "done" INTEGER NOT NULL, "created_at" INTEGER NOT NULL, "updated_by" TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS "todos_by_list_id_created_at_id" ON "todos" ("list_id", "created_at", "id");
