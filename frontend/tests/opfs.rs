//! Runs in a real dedicated Web Worker in Chromium (wasm-bindgen-test-runner + chromedriver).
#![cfg(all(target_family = "wasm", target_os = "unknown"))]

use frontend::store::{open_in_memory, open_opfs};
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_dedicated_worker);

#[wasm_bindgen_test]
async fn opfs_database_keeps_rows_across_reopen() {
    let directory = "test-opfs-reopen";
    {
        let db = open_opfs(directory, "reopen.db").await.expect("open OPFS database");
        let mode: String =
            db.query_row("PRAGMA journal_mode", [], |row| row.get(0)).expect("read journal mode");
        assert_eq!(mode, "persist");
        db.execute_batch(
            "DROP TABLE IF EXISTS notes; CREATE TABLE notes(id TEXT PRIMARY KEY, body TEXT NOT NULL);",
        )
        .expect("create table");
        db.execute("INSERT INTO notes(id, body) VALUES (?1, ?2)", ("n1", "hello opfs")).expect("insert");
    }
    // The connection is closed; the data must come back from OPFS, not from memory.
    let db = open_opfs(directory, "reopen.db").await.expect("reopen OPFS database");
    let body: String = db
        .query_row("SELECT body FROM notes WHERE id = 'n1'", [], |row| row.get(0))
        .expect("row survives reopen");
    assert_eq!(body, "hello opfs");
}

#[wasm_bindgen_test]
fn in_memory_fallback_works() {
    let db = open_in_memory().expect("open memory database");
    let sum: i64 = db.query_row("SELECT 40 + 2", [], |row| row.get(0)).expect("query");
    assert_eq!(sum, 42);
}
