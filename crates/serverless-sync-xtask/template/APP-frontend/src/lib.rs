//! {{Title}} in the browser, one crate built twice: with the feature `page`, the
//! page's bundle (`mount`); with `db-worker`, the SQLite Web Worker's
//! (`db_worker_start`). The page renders in the browser (no server rendering).

#[cfg(feature = "page")]
mod page;

use wasm_bindgen::prelude::wasm_bindgen;

/// Scopes this app's browser storage apart from other apps on the same origin.
pub const APP_NAME: sync_client::AppName = sync_client::AppName({{app_snake}}_model::APP_NAME);

/// Starts the UI: spawns the sync worker, signs in, mounts the page.
#[cfg(feature = "page")]
#[wasm_bindgen]
pub fn mount() {
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(page::App);
}

/// Runs the local store and sync for the model, inside the Web Worker.
#[cfg(all(feature = "db-worker", target_family = "wasm", target_os = "unknown"))]
#[wasm_bindgen]
pub fn db_worker_start() {
    sync_client::start_db_worker({{app_snake}}_model::{{app_snake}}_model(), APP_NAME);
}
