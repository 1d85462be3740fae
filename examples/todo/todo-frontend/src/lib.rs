//! The todo example in the browser: one wasm bundle, loaded by the page (`mount`) and
//! by the SQLite Web Worker (`db_worker_start`). The page is rendered in the browser
//! (no server rendering): the engine needs none.

mod page;

use wasm_bindgen::prelude::wasm_bindgen;

/// Scopes this app's browser storage apart from other apps on the same origin.
pub const APP_NAME: sync_client::AppName = sync_client::AppName("todo");

/// Starts the UI: spawns the sync worker, signs in, mounts the page.
#[wasm_bindgen]
pub fn mount() {
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(page::App);
}

/// Runs the local store and sync for the todo model, inside the Web Worker.
#[cfg(all(target_family = "wasm", target_os = "unknown"))]
#[wasm_bindgen]
pub fn db_worker_start() {
    sync_client::start_db_worker(todo_model::todo_model(), APP_NAME);
}
