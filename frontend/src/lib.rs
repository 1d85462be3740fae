//! Browser entry points, all in one wasm bundle:
//! - `hydrate()`: called by Leptos' hydration script on the page;
//! - the SQLite database on OPFS (`opfs`), opened inside a dedicated Web Worker.

#[cfg(all(target_family = "wasm", target_os = "unknown"))]
pub mod db_worker;
#[cfg(all(target_family = "wasm", target_os = "unknown"))]
pub mod opfs;

/// Attaches the Leptos app to the server-rendered HTML.
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(app::App);
}
