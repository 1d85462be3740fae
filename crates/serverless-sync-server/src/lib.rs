//! The engine's server side, as a library an app's Cloudflare Worker mounts.
//!
//! ```ignore
//! use sync_server::{Engine, HttpCallbacks};
//!
//! fn router() -> axum::Router {
//!     let engine = Engine::new(my_model(), HttpCallbacks::or(MyRules));
//!     axum::Router::new().merge(engine.routes()).route("/", get(home))
//! }
//!
//! #[worker::event(fetch)]
//! async fn fetch(req: worker::HttpRequest, env: worker::Env, ctx: worker::Context)
//!     -> worker::Result<axum::http::Response<axum::body::Body>> {
//!     sync_server::serve(router(), req, env, ctx).await
//! }
//! ```
//!
//! - [`Engine`]: the model + the app's [`Callbacks`]; `routes()` is the connector
//!   (`/sync/query`, `/sync/push`, `/sync/pull`, `/sync/socket`, `/sync/health`);
//! - [`callbacks`]: the app's rules, in process or over HTTP (the seed's JSON);
//! - the upstream databases (D1, PostgreSQL through Hyperdrive), picked by the setting
//!   `SYNC_UPSTREAM`; the engine creates its own tables, the app migrates its own;
//! - the Durable Objects [`ClientSession`], [`QuerySubscription`] and
//!   [`ChangeWatcher`] (the app's wrangler config binds them as `CLIENT_SESSIONS`,
//!   `QUERY_SUBSCRIPTIONS` and `CHANGE_WATCHER`);
//! - [`compaction`]: `Engine::compact`, for the app's scheduled handler (a cron
//!   trigger): old superseded images and deletes leave the change log;
//! - [`guest`]: guest sign-in (signed tokens for a display name) for demos and
//!   templates;
//! - [`ApiError`]: the one HTTP error type (status + `{"error", "reason"}`), for the
//!   app's own handlers too.
//!
//! Nothing here names an app's collections, queries or routes.

pub mod callbacks;
pub mod compaction;
pub mod config;
mod connector;
mod durable;
mod engine;
mod error;
pub mod guest;
mod health;
mod log;
mod upstream;

use std::sync::Arc;

use tower_service::Service;

pub use callbacks::{CallbackError, CallbackFuture, Callbacks, Caller, HttpCallbacks, Rules};
pub use compaction::Compaction;
pub use connector::{MAX_BODY_BYTES, parse_json, read_body};
pub use durable::{ChangeWatcher, ClientSession, QuerySubscription};
pub use engine::Engine;
pub use error::{ApiError, api_not_found};

/// The connector's pipelines on any upstream, natively: what the worker's handlers run
/// between admitting a request and poking, for tests and the simulation (no wrangler,
/// no Durable Objects, the app's callbacks as plain functions).
#[cfg(not(target_family = "wasm"))]
pub mod native {
    pub use crate::compaction::compact;
    pub use crate::connector::check_client;
    pub use crate::connector::pull::{decode_change, read_page as pull_page};
    pub use crate::connector::push::{Pushed, check_request as check_push, predecessors, run as push};
    pub use crate::connector::query::{
        AnswerPage, page_rows, read_last as query_last, read_page as query_page,
    };
    pub use crate::connector::{MAX_PUSH_MUTATIONS, PULL_PAGE};
    pub use crate::engine::callback_failed;
    pub use crate::upstream::{Call, Database, Fault, Faulty, Postgres, RawRow, Sqlite, check_schema};
}

/// Serves one request with `router`: buffers the body first (bounded; see
/// [`MAX_BODY_BYTES`]), then routes it with the worker's `Env` and `Context` as axum
/// extensions (`Extension<worker::Env>`, `Extension<Arc<worker::Context>>`).
///
/// Buffering matters: answering while the request body is still unread (a 404, a
/// 413, a handler that ignores it) takes the isolate down with the next request.
pub async fn serve(
    router: axum::Router,
    req: worker::HttpRequest,
    env: worker::Env,
    ctx: worker::Context,
) -> worker::Result<axum::http::Response<axum::body::Body>> {
    log_panics_once();
    let (parts, body) = req.into_parts();
    let body = match connector::drain_body(axum::body::Body::new(body)).await {
        Ok(bytes) => axum::body::Body::from(bytes),
        Err(error) => return Ok(axum::response::IntoResponse::into_response(error)),
    };
    if let Err(error) = connector::limit_address(&env, &parts.headers).await {
        return Ok(axum::response::IntoResponse::into_response(error));
    }
    let mut router = router
        .method_not_allowed_fallback(error::method_not_allowed)
        // Handlers read bodies with `read_body` (bounded, always drained).
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(axum::Extension(env))
        .layer(axum::Extension(Arc::new(ctx)));
    Ok(router.call(axum::http::Request::from_parts(parts, body)).await?)
}

/// A panic aborts the isolate; at least say where it happened.
fn log_panics_once() {
    use std::sync::Once;
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            worker::console_error!("panic: {info}");
        }));
    });
}
