//! The chat's Cloudflare Worker: the Leptos pages (SSR), guest sign-in, the chat's
//! callbacks (in process, and over HTTP) and the sync engine's routes, in one axum
//! `Router` ([`router`]). Static files (`/pkg`, `/style`) are served by wrangler's
//! `[assets]` before the worker runs.

mod chat_callbacks;
mod pages;

use std::sync::OnceLock;

use axum::Router;
use axum::routing::get;
use leptos::prelude::*;
use leptos_axum::{LeptosRoutes, generate_route_list};
use sync_server::{Engine, HttpCallbacks};

// The engine's Durable Objects, exported by this worker under the class names its
// wrangler config binds.
pub use sync_server::{ChangeWatcher, ClientSession, QuerySubscription};

/// The app's PostgreSQL migrations: every file in `migrations/postgres`, in name
/// order, as the build script lists them (generated from the model; see
/// `cargo xtask migrations`).
const POSTGRES_MIGRATIONS: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/postgres_migrations.rs"));

/// The sync engine for the chat's model: its callbacks over HTTP when
/// `SYNC_*_CALLBACK_URL` is set, the chat's own rules in process otherwise. Built
/// once per isolate.
pub fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        Engine::new(app::model::chat_model(), HttpCallbacks::or(chat_callbacks::ChatRules))
            .postgres_migrations(POSTGRES_MIGRATIONS)
    })
}

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

/// Every route the worker answers, in one place.
pub fn router() -> Router {
    let options = leptos_options();
    let routes = app_routes();
    Router::new()
        .route("/", get(pages::home))
        .route("/room/{room}", get(pages::room))
        .route("/api/health", engine().health())
        .merge(chat_callbacks::GUEST.routes())
        .merge(chat_callbacks::router())
        .merge(engine().routes())
        .nest("/api", Router::new().fallback(sync_server::api_not_found))
        .leptos_routes(&options, routes, {
            let options = options.clone();
            move || app::shell(options.clone())
        })
        .fallback(pages::not_found)
        .with_state(options)
}

/// When the module starts: the session objects take pushes on their sockets with
/// this engine (a push then needs no HTTP request of its own).
#[worker::event(start)]
fn start() {
    sync_server::install(engine());
}

#[worker::event(fetch)]
async fn fetch(
    req: worker::HttpRequest,
    env: worker::Env,
    ctx: worker::Context,
) -> worker::Result<axum::http::Response<axum::body::Body>> {
    sync_server::serve(router(), req, env, ctx).await
}

/// The cron trigger (wrangler.toml `[triggers]`): compacts the change log.
#[worker::event(scheduled)]
async fn scheduled(_event: worker::ScheduledEvent, env: worker::Env, _ctx: worker::ScheduleContext) {
    match engine().compact(&env).await {
        Ok(done) => {
            worker::console_log!("compaction: through {}, {} changes removed", done.through, done.removed)
        }
        Err(error) => worker::console_error!("compaction: {error}"),
    }
}
