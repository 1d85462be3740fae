//! The engine's server side, as a library an app's Cloudflare Worker mounts. Package
//! `serverless-sync-server`, imported as `sync_server`.
//!
//! ```no_run
//! use std::sync::OnceLock;
//!
//! use sync::protocol::Decision;
//! use sync::protocol::mutation_callback::{MutationCallbackRequest, MutationCallbackResponse};
//! use sync::protocol::query_callback::QueryCallbackRequest;
//! use sync_server::{CallbackError, Caller, Engine, HttpCallbacks, Rules};
//! # fn my_model() -> sync::SyncModel { sync::SyncModel::builder().build().expect("a model") }
//!
//! /// Who may read and write what: plain async fns.
//! struct MyRules;
//!
//! impl Rules for MyRules {
//!     async fn query(&self, _caller: &Caller, _request: &QueryCallbackRequest) -> Result<Decision, CallbackError> {
//!         Ok(Decision::allow())
//!     }
//!
//!     async fn mutation(
//!         &self,
//!         _caller: &Caller,
//!         request: &MutationCallbackRequest,
//!     ) -> Result<MutationCallbackResponse, CallbackError> {
//!         // One verdict per write: Ok, or Err(the reason the user sees).
//!         Ok(MutationCallbackResponse::per_operation(&request.operations, |_operation| Ok(())))
//!     }
//! }
//!
//! fn engine() -> &'static Engine {
//!     static ENGINE: OnceLock<Engine> = OnceLock::new();
//!     // The rules run in process unless SYNC_*_CALLBACK_URL points at a backend.
//!     ENGINE.get_or_init(|| Engine::new(my_model(), HttpCallbacks::or(MyRules)))
//! }
//!
//! /// The app's routes beside the engine's (`/sync/*`); the worker's fetch handler is
//! /// `sync_server::serve(router(), req, env, ctx).await`.
//! pub fn router() -> axum::Router {
//!     axum::Router::new().route("/api/health", engine().health()).merge(engine().routes())
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
pub mod observe;
mod socket_push;
mod stats;
mod upstream;

use std::sync::Arc;

use tower_service::Service;

pub use callbacks::{CallbackError, CallbackFuture, Callbacks, Caller, HttpCallbacks, Rules};
pub use compaction::Compaction;
pub use connector::{MAX_BODY_BYTES, parse_json, read_body};
pub use durable::{ChangeWatcher, ClientSession, QuerySubscription};
pub use engine::Engine;
pub use error::{ApiError, api_not_found};
pub use socket_push::{AfterAnswer, install};

/// The connector's pipelines on any upstream, natively: what the worker's handlers run
/// between admitting a request and poking, for tests and the simulation (no wrangler,
/// no Durable Objects, the app's callbacks as plain functions).
#[cfg(not(target_family = "wasm"))]
pub mod native {
    pub use crate::compaction::compact;
    pub use crate::connector::check_client;
    pub use crate::connector::pull::{decode_change, read_page as pull_page};
    pub use crate::connector::push::{
        Pushed, check_request as check_push, poke_since, predecessors, run as push,
    };
    pub use crate::connector::query::{
        AnswerPage, page_rows, read_last as query_last, read_page as query_page,
    };
    pub use crate::connector::{MAX_PUSH_MUTATIONS, PULL_PAGE};
    pub use crate::engine::callback_failed;
    pub use crate::upstream::{Call, Database, Fault, Faulty, Postgres, RawRow, Sqlite, check_schema};
}

/// Serves one request with `router`: buffers the body first (bounded; see
/// [`MAX_BODY_BYTES`]), then routes it with the worker's `Env` and `Context` as axum
/// extensions (`Extension<worker::Env>`, `Extension<Arc<worker::Context>>`). Each
/// request leaves one JSON log line ([`observe::RequestLine`]) and, when the app binds
/// [`observe::METRICS_BINDING`], one Analytics Engine data point.
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
    let started = observe::clock_ms();
    let (mut parts, body) = req.into_parts();
    let (method, path) = (parts.method.to_string(), parts.uri.path().to_string());
    let trace = observe::Trace::default();
    parts.extensions.insert(trace.clone());
    let after = AfterAnswer::Runtime(Arc::new(ctx));
    let response = match route(router, parts, axum::body::Body::new(body), &env, after).await {
        Ok(response) => response,
        Err(error) => axum::response::IntoResponse::into_response(error),
    };
    let error = response.extensions().get::<observe::ErrorCode>().map(|code| code.0);
    let line = observe::RequestLine::new(
        &method,
        &path,
        response.status().as_u16(),
        (started, observe::clock_ms() - started),
        trace.measures(),
        error,
    );
    observe::log_line(&line);
    observe::request_point(&env, &line);
    Ok(response)
}

/// Routes one request (an HTTP request, or a push on a session's socket) with the
/// engine's checks that come before any route: the body bounded, the address's limit.
async fn route(
    router: axum::Router,
    parts: axum::http::request::Parts,
    body: axum::body::Body,
    env: &worker::Env,
    after: AfterAnswer,
) -> Result<axum::http::Response<axum::body::Body>, ApiError> {
    let body = axum::body::Body::from(connector::drain_body(body).await?);
    connector::limit_address(env, &parts.headers).await?;
    let mut router = router
        .method_not_allowed_fallback(error::method_not_allowed)
        // Handlers read bodies with `read_body` (bounded, always drained).
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(axum::Extension(env.clone()))
        .layer(axum::Extension(after));
    router.call(axum::http::Request::from_parts(parts, body)).await.map_err(|never| match never {})
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
