//! Runs in a real dedicated Web Worker in Chromium (wasm-bindgen-test-runner + chromedriver).
#![cfg(all(target_family = "wasm", target_os = "unknown", feature = "worker"))]

// The engine's neutral test model (cards on boards), shared with the core's tests.
#[path = "../../serverless-sync/tests/common/mod.rs"]
mod common;

use serde_json::json;
use sync::model::MutationContext;
use sync::protocol::push::MutationOutcome;
use sync_client::opfs::{open_in_memory, open_opfs};
use sync_store::LocalStore;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_dedicated_worker);

#[wasm_bindgen_test]
async fn opfs_database_keeps_rows_across_reopen() {
    let directory = "test-opfs-reopen";
    {
        let db = open_opfs(directory, "reopen.db").await.expect("open OPFS database");
        let mode: String =
            db.query_row("PRAGMA journal_mode", [], |row| row.get(0)).expect("read journal mode");
        // Write-ahead logging under exclusive locking: a commit appends to the log
        // without a flush (see `open_opfs`).
        assert_eq!(mode, "wal");
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

/// A worker that is stopped (a reload, a closed tab) never closes its database, so the
/// log is never checkpointed: what it committed must come back from the log.
#[wasm_bindgen_test]
async fn a_commit_survives_a_worker_that_never_closed_its_database() {
    let directory = "test-opfs-unclosed";
    let db = open_opfs(directory, "unclosed.db").await.expect("open OPFS database");
    db.execute_batch(
        "DROP TABLE IF EXISTS notes; CREATE TABLE notes(id TEXT PRIMARY KEY, body TEXT NOT NULL);",
    )
    .expect("create table");
    db.execute("INSERT INTO notes(id, body) VALUES (?1, ?2)", ("n1", "committed, never closed"))
        .expect("insert");
    // No close, no checkpoint: as if the worker had been stopped here.
    std::mem::forget(db);
    let db = open_opfs(directory, "unclosed.db").await.expect("open again");
    let body: String = db
        .query_row("SELECT body FROM notes WHERE id = 'n1'", [], |row| row.get(0))
        .expect("the committed row is read back from the log");
    assert_eq!(body, "committed, never closed");
}

#[wasm_bindgen_test]
fn in_memory_fallback_works() {
    let db = open_in_memory().expect("open memory database");
    let sum: i64 = db.query_row("SELECT 40 + 2", [], |row| row.get(0)).expect("query");
    assert_eq!(sum, 42);
}

#[wasm_bindgen_test]
async fn the_local_store_keeps_rows_outbox_and_client_id_on_opfs() {
    let directory = "test-local-store";
    let model = common::model();
    let ctx = MutationContext { client_id: "client_t".into(), record_id: "cards_1".into(), now_ms: 1 };
    {
        let db = open_opfs(directory, "store.db").await.expect("open");
        db.execute_batch("DROP TABLE IF EXISTS cards; DROP TABLE IF EXISTS sync_outbox; DROP TABLE IF EXISTS sync_confirmed; DROP TABLE IF EXISTS sync_meta; DROP TABLE IF EXISTS sync_resolved;")
            .expect("fresh tables");
        let mut store = LocalStore::open(db, model.clone(), || "client_t".into()).expect("store");
        let args = json!({"boardId": "r", "author": "Ada", "body": "offline"});
        store.mutate("outbox_1", "addCard", &args, &ctx).expect("mutate");
        let args = json!({"boardId": "r", "author": "Ada", "body": "rejected later"});
        let ctx2 = MutationContext { record_id: "cards_2".into(), ..ctx.clone() };
        store.mutate("outbox_2", "addCard", &args, &ctx2).expect("mutate");
    }
    // A reload: everything comes back from OPFS.
    let db = open_opfs(directory, "store.db").await.expect("reopen");
    let mut store = LocalStore::open(db, model, || unreachable!("client id was stored")).expect("store");
    assert_eq!(store.client_id(), "client_t");
    assert_eq!(store.outbox_len().expect("len"), 2);
    assert_eq!(store.rows("cards").expect("rows").len(), 2);
    store
        .resolve(&[("outbox_2".into(), MutationOutcome::Rejected { reason: "too long".into() })])
        .expect("resolve");
    let rows = store.rows("cards").expect("rows");
    assert_eq!(rows.len(), 1, "the rejected card is rolled back");
    assert_eq!(rows[0]["body"], json!("offline"));
    // The answer is remembered: a re-sent request for it is recognised, not re-applied.
    assert!(matches!(
        store.mutation_state("outbox_2").expect("state"),
        Some(sync_store::MutationState::Resolved { outcome: MutationOutcome::Rejected { .. }, .. })
    ));
    let again = store.mutate(
        "outbox_2",
        "addCard",
        &json!({"boardId": "r", "author": "Ada", "body": "rejected later"}),
        &ctx,
    );
    assert!(matches!(again, Err(sync_store::StoreError::Duplicate { .. })));
    assert_eq!(store.rows("cards").expect("rows").len(), 1);
}

#[wasm_bindgen_test]
async fn a_store_on_opfs_built_by_the_previous_model_upgrades_and_keeps_its_outbox() {
    let directory = "test-store-upgrade";
    let add = sync::ids::new_id("outbox", 1_700_000_000_000, 7);
    {
        let db = open_opfs(directory, "upgrade.db").await.expect("open");
        db.execute_batch("DROP TABLE IF EXISTS cards; DROP TABLE IF EXISTS notes; DROP TABLE IF EXISTS sync_outbox; DROP TABLE IF EXISTS sync_confirmed; DROP TABLE IF EXISTS sync_meta; DROP TABLE IF EXISTS sync_resolved;")
            .expect("fresh tables");
        let mut store = LocalStore::open(db, common::model(), || "client_u".into()).expect("store");
        let ctx = MutationContext { client_id: "client_u".into(), record_id: "cards_u".into(), now_ms: 1 };
        let args = json!({"boardId": "r", "author": "Ada", "body": "queued before the update"});
        store.mutate(&add, "addCard", &args, &ctx).expect("mutate");
    }
    let db = open_opfs(directory, "upgrade.db").await.expect("reopen");
    let mut store = LocalStore::open(db, common::model_v2(), || unreachable!("named")).expect("upgraded");
    assert!(store.take_upgrade_rejections().is_empty());
    assert_eq!(store.outbox_len().expect("outbox"), 1);
    let board =
        common::model_v2().validate_query("boardCards", &json!({"boardId": "r"})).expect("valid").select;
    let rows = store.query(&board).expect("rows");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["body"], json!("queued before the update"));
    assert_eq!(rows[0]["priority"], json!(0));
}
