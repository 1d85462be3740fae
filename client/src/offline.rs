//! Offline page loads: registers the app's Service Worker (`/sw.js`, network first,
//! falling back to a cache) and puts the current page into that cache, so a reload
//! with no network still opens it. The data itself lives in the local SQLite store.

use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

/// The cache `sw.js` reads and writes; keep the two in step.
pub const CACHE_NAME: &str = "serverless-sync-v1";

fn js_error(value: wasm_bindgen::JsValue) -> String {
    value.as_string().unwrap_or_else(|| format!("{value:?}"))
}

/// Registers `script_url` and, once it is active, caches the current page. Resolves
/// when the page can be reloaded offline.
pub async fn enable(script_url: &str) -> Result<(), String> {
    let window = web_sys::window().ok_or("no window")?;
    let container = window.navigator().service_worker();
    JsFuture::from(container.register(script_url)).await.map_err(js_error)?;
    JsFuture::from(container.ready().map_err(js_error)?).await.map_err(js_error)?;
    let caches = window.caches().map_err(js_error)?;
    let cache: web_sys::Cache =
        JsFuture::from(caches.open(CACHE_NAME)).await.map_err(js_error)?.unchecked_into();
    let here = window.location().href().map_err(js_error)?;
    JsFuture::from(cache.add_with_str(&here)).await.map_err(js_error)?;
    Ok(())
}
