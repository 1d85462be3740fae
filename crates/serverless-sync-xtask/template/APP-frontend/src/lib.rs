//! {{Title}} in the browser, one crate built twice: with the feature `page`, the
//! page's bundle ({{#ssr}}`hydrate`: it attaches to the HTML the worker rendered with
//! the feature `ssr`{{/ssr}}{{^ssr}}`mount`: it renders in the browser{{/ssr}}); with `db-worker`, the SQLite
//! Web Worker's (`db_worker_start`).

#[cfg({{#ssr}}any(feature = "page", feature = "ssr"){{/ssr}}{{^ssr}}feature = "page"{{/ssr}})]
{{#ssr}}pub {{/ssr}}mod page;

/// Scopes this app's browser storage apart from other apps on the same origin.
pub const APP_NAME: sync_client::AppName = sync_client::AppName({{app_snake}}_model::APP_NAME);

{{#ssr}}
/// Attaches the page to the HTML the worker rendered, then starts the sync worker.
#[cfg(feature = "page")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(page::App);
}
{{/ssr}}
{{^ssr}}
/// Starts the UI: spawns the sync worker, signs in, mounts the page.
#[cfg(feature = "page")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn mount() {
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(page::App);
}
{{/ssr}}

/// Runs the local store and sync for the model, inside the Web Worker.
#[cfg(all(feature = "db-worker", target_family = "wasm", target_os = "unknown"))]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn db_worker_start() {
    sync_client::start_db_worker({{app_snake}}_model::{{app_snake}}_model(), APP_NAME);
}
