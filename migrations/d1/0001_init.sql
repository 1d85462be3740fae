-- Engine bookkeeping for the upstream database. App tables arrive with the connector.
CREATE TABLE IF NOT EXISTS sync_meta (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
INSERT OR IGNORE INTO sync_meta (key, value) VALUES ('schema', '1');
