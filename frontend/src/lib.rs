//! The chat's browser bundle, loaded twice: by the page (`hydrate`) and by the SQLite
//! Web Worker (`js/db-worker.js` -> `db_worker_start`).

use wasm_bindgen::prelude::wasm_bindgen;

/// Attaches the Leptos app to the server-rendered HTML.
#[wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(app::App);
}

/// Runs the local store and sync for the chat's model, inside the Web Worker.
#[cfg(all(target_family = "wasm", target_os = "unknown"))]
#[wasm_bindgen]
pub fn db_worker_start() {
    sync_client::start_db_worker(app::model::chat_model(), app::APP_NAME);
}
