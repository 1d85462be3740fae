//! Offline page loads: registers the app's Service Worker (network first, falling
//! back to a cache) and puts the current page into that cache, as the server renders
//! it for nobody (no cookie), so a reload with no network still opens it and no
//! user's data is ever in the cache. The data itself lives in the local SQLite store.
//!
//! The Service Worker script is the app's (it lists the app's own assets); it is
//! registered as `{script}?cache={name}` and must keep its copies in the cache of
//! that name ([`crate::AppName::cache_name`]), which this module writes to as well.

use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

fn js_error(value: wasm_bindgen::JsValue) -> String {
    value.as_string().unwrap_or_else(|| format!("{value:?}"))
}

/// Registers the Service Worker `script_url` for `app` and, once it is active,
/// caches the current page. Resolves when the page can be reloaded offline.
pub async fn enable(script_url: &str, app: &crate::AppName) -> Result<(), String> {
    let window = web_sys::window().ok_or("no window")?;
    let container = window.navigator().service_worker();
    let cache_name = app.cache_name();
    let script = format!("{script_url}?cache={cache_name}");
    JsFuture::from(container.register(&script)).await.map_err(js_error)?;
    JsFuture::from(container.ready().map_err(js_error)?).await.map_err(js_error)?;
    let caches = window.caches().map_err(js_error)?;
    let cache: web_sys::Cache =
        JsFuture::from(caches.open(&cache_name)).await.map_err(js_error)?.unchecked_into();
    // Offline now, the copy cannot be fetched: it is fetched once the network is back
    // (a failed fetch would only be logged).
    if !window.navigator().on_line() {
        let back_online = js_sys::Promise::new(&mut |resolve, _| {
            let options = web_sys::AddEventListenerOptions::new();
            options.set_once(true);
            let _ = window.add_event_listener_with_callback_and_add_event_listener_options(
                "online", &resolve, &options,
            );
        });
        JsFuture::from(back_online).await.map_err(js_error)?;
    }
    let here = window.location().href().map_err(js_error)?;
    // As rendered for nobody (no cookie): a user's data never sits in the cache.
    let init = web_sys::RequestInit::new();
    init.set_credentials(web_sys::RequestCredentials::Omit);
    let request = web_sys::Request::new_with_str_and_init(&here, &init).map_err(js_error)?;
    JsFuture::from(cache.add_with_request(&request)).await.map_err(js_error)?;
    Ok(())
}
