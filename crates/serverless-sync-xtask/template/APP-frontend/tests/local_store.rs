//! The model in the browser's own SQLite: a write lands in the local store at once,
//! with its outbox entry, before any server has seen it. Runs in a dedicated Web
//! Worker in Chromium (`cargo xtask test wasm`).
#![cfg(all(target_family = "wasm", target_os = "unknown", feature = "db-worker"))]

use sync::model::MutationContext;
use sync_store::LocalStore;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};
use {{app_snake}}_model::{ADD_{{ROW}}, BoardArgs, LIST_{{ROWS}}, {{Row}}Fields};

wasm_bindgen_test_configure!(run_in_dedicated_worker);

#[wasm_bindgen_test]
async fn a_write_is_in_the_local_store_at_once_and_waits_in_the_outbox() {
    let db = sync_client::opfs::open_opfs("test-{{app}}", "store.db").await.expect("open OPFS");
    let model = {{app_snake}}_model::{{app_snake}}_model();
    let mut store = LocalStore::open(db, model.clone(), || "client_t".into()).expect("store");
    let before = store.outbox_len().expect("outbox");
    let fields = {{Row}}Fields { board_id: "wasm-test".into(), ..Default::default() };
    let ctx = MutationContext { client_id: "client_t".into(), record_id: format!("r{before}"), now_ms: 1 };
    let args = serde_json::to_value(&fields).expect("json");
    store.mutate(&format!("outbox_{before}"), ADD_{{ROW}}.name(), &args, &ctx).expect("mutate");

    let query = serde_json::to_value(BoardArgs { board_id: "wasm-test".into() }).expect("json");
    let select = model.validate_query(LIST_{{ROWS}}.name(), &query).expect("query").select;
    let rows = store.query(&select).expect("read");
    assert!(rows.iter().any(|row| row["id"] == serde_json::json!(ctx.record_id)), "the new row is read back");
    assert_eq!(store.outbox_len().expect("outbox"), before + 1, "the write waits in the outbox");
}
