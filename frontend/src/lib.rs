//! The chat's browser bundles, one crate built twice (`cargo xtask build`): with the
//! feature `page`, the page's bundle (`hydrate`); with `db-worker`, the SQLite Web
//! Worker's (`js/db-worker.js` -> `db_worker_start`). The page's bundle carries no
//! SQLite, so first paint and hydration never wait for it.

use wasm_bindgen::prelude::wasm_bindgen;

/// Attaches the Leptos app to the server-rendered HTML.
#[cfg(feature = "page")]
#[wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(app::App);
}

/// Runs the local store and sync for the chat's model, inside the Web Worker.
#[cfg(all(feature = "db-worker", target_family = "wasm", target_os = "unknown"))]
#[wasm_bindgen]
pub fn db_worker_start() {
    sync_client::start_db_worker(app::model::chat_model(), app::APP_NAME);
}
