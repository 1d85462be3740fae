//! The Cloudflare Worker: serves the Leptos SSR page, the JSON API of the sync
//! connector, and hosts the Durable Objects.
//!
//! The request path is `fetch` -> [`router`] (an ordinary axum `Router`, so it can be
//! driven request by request) -> a handler. Static files (`/pkg`, `/style`) are served
//! by wrangler's `[assets]` before the worker runs.

mod auth;
mod callbacks;
mod chat_callbacks;
mod config;
mod connector;
mod durable;
mod error;
mod health;
mod pages;
mod upstream;

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

/// The app's routes, listed once per isolate: listing renders the app in a special
/// mode, too costly (in time and memory) to repeat on every request. `/` and
/// `/room/{room}` have handlers of their own (pages.rs); leptos_axum serves the rest.
fn app_routes() -> Vec<leptos_axum::AxumRouteListing> {
    thread_local! {
        static ROUTES: Vec<leptos_axum::AxumRouteListing> = generate_route_list(app::App)
            .into_iter()
            .filter(|route| !matches!(route.path(), "/" | "/room/{room}"))
            .collect();
    }
    ROUTES.with(Clone::clone)
}

/// Every route the worker answers, in one place. `ctx` lets handlers finish work
/// (pokes) after the response is sent.
pub fn router(env: worker::Env, ctx: std::sync::Arc<worker::Context>) -> Router {
    let options = leptos_options();
    let routes = app_routes();
    Router::new()
        .route("/", get(pages::home))
        .route("/room/{room}", get(pages::room))
        .route("/api/health", get(health::health))
        .route("/api/auth/guest", axum::routing::post(auth::guest))
        .merge(chat_callbacks::router())
        .merge(connector::routes())
        .nest("/sync", Router::new().fallback(error::api_not_found))
        .nest("/api", Router::new().fallback(error::api_not_found))
        .leptos_routes(&options, routes, {
            let options = options.clone();
            move || app::shell(options.clone())
        })
        .fallback(error::page_not_found)
        // Handlers read bodies with connector::read_body (bounded, always drained).
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(options)
        .layer(axum::Extension(env))
        .layer(axum::Extension(ctx))
}

#[worker::event(fetch)]
async fn fetch(
    req: worker::HttpRequest,
    env: worker::Env,
    ctx: worker::Context,
) -> worker::Result<axum::http::Response<axum::body::Body>> {
    console_error_panic_hook_once();
    // Buffer the body before routing: a response sent while the request body is still
    // unread (a 404, a 413, a handler that ignores it) takes the isolate down with the
    // next request. Bodies are small JSON; the limit is enforced here for every route.
    let (parts, body) = req.into_parts();
    let body = match connector::drain_body(axum::body::Body::new(body)).await {
        Ok(bytes) => axum::body::Body::from(bytes),
        Err(error) => return Ok(axum::response::IntoResponse::into_response(error)),
    };
    Ok(router(env, std::sync::Arc::new(ctx)).call(axum::http::Request::from_parts(parts, body)).await?)
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
