//! The Cloudflare Worker: serves the Leptos SSR page, the JSON API of the sync
//! connector, and hosts the Durable Objects.
//!
//! The request path is `fetch` -> [`router`] (an ordinary axum `Router`, so it can be
//! driven request by request) -> a handler. Static files (`/pkg`, `/style`) are served
//! by wrangler's `[assets]` before the worker runs.

mod durable;
mod error;
mod health;

use axum::Router;
use axum::routing::get;
use leptos::prelude::*;
use leptos_axum::{LeptosRoutes, generate_route_list};
use tower_service::Service;

pub use durable::{ClientSession, QuerySubscription};
pub use error::ApiError;

/// Leptos settings, built in code: in wasm, leptos_axum cannot read Cargo.toml.
fn leptos_options() -> LeptosOptions {
    LeptosOptions::builder()
        .output_name(app::CLIENT_BUNDLE)
        .site_pkg_dir(app::CLIENT_PKG_DIR)
        .site_root("site")
        .build()
}

/// Every route the worker answers, in one place.
pub fn router(env: worker::Env) -> Router {
    let options = leptos_options();
    let routes = generate_route_list(app::App);
    Router::new()
        .route("/api/health", get(health::health))
        .nest("/api", Router::new().fallback(error::api_not_found))
        .leptos_routes(&options, routes, {
            let options = options.clone();
            move || app::shell(options.clone())
        })
        .fallback(error::page_not_found)
        .with_state(options)
        .layer(axum::Extension(env))
}

#[worker::event(fetch)]
async fn fetch(
    req: worker::HttpRequest,
    env: worker::Env,
    _ctx: worker::Context,
) -> worker::Result<axum::http::Response<axum::body::Body>> {
    console_error_panic_hook_once();
    Ok(router(env).call(req).await?)
}

fn console_error_panic_hook_once() {
    use std::sync::Once;
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            worker::console_error!("panic: {info}");
        }));
    });
}
