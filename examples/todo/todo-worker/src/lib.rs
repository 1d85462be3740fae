//! The todo example's Cloudflare Worker, built only on the engine's public API: the
//! page (a static shell; the UI renders in the browser), guest sign-in, the app's
//! rules as in-process callbacks, and the engine's `/sync/*` routes.

use std::sync::OnceLock;

use axum::Router;
use axum::response::{Html, Redirect};
use axum::routing::get;
use sync::protocol::Decision;
use sync::protocol::mutation_callback::{MutationCallbackRequest, MutationCallbackResponse};
use sync::protocol::query_callback::QueryCallbackRequest;
use sync_server::{CallbackError, Caller, Engine, HttpCallbacks, Rules, guest};

// The engine's Durable Objects, exported under the class names wrangler.toml binds.
pub use sync_server::{ChangeWatcher, ClientSession, QuerySubscription};

/// The app's PostgreSQL migrations: every file in `migrations/postgres`, in name
/// order, as the build script lists them (generated from the model; see
/// `cargo xtask migrations`).
const POSTGRES_MIGRATIONS: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/postgres_migrations.rs"));

/// The todo app's guest sign-in: its tokens name this app (`aud`).
const GUEST: guest::GuestAuth = guest::GuestAuth::new(todo_model::APP_NAME);

/// The todo rules: any signed-in user may read and edit a list they have the link
/// to, unless the list is locked; titles have 1 to 200 characters.
struct TodoRules;

impl Rules for TodoRules {
    async fn query(
        &self,
        caller: &Caller,
        request: &QueryCallbackRequest,
    ) -> Result<Decision, CallbackError> {
        GUEST.signed_in(caller)?;
        Ok(match todo_model::judge_read(request) {
            Ok(()) => Decision::allow(),
            Err(reason) => Decision::deny(reason),
        })
    }

    async fn mutation(
        &self,
        caller: &Caller,
        request: &MutationCallbackRequest,
    ) -> Result<MutationCallbackResponse, CallbackError> {
        GUEST.signed_in(caller)?;
        Ok(MutationCallbackResponse::per_operation(&request.operations, todo_model::judge_write))
    }

    /// Sessions and their sockets belong to the guest's subject.
    async fn subject(&self, caller: &Caller) -> Result<Option<String>, CallbackError> {
        Ok(Some(GUEST.signed_in(caller)?.subject))
    }
}

fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        Engine::new(todo_model::todo_model(), HttpCallbacks::or(TodoRules))
            .postgres_migrations(POSTGRES_MIGRATIONS)
    })
}

/// The page: loads the bundle, which renders the list and starts the sync worker.
const SHELL: &str = r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Shared list</title>
<link rel="stylesheet" href="/style.css">
<link rel="icon" type="image/svg+xml" href="/favicon.svg">
</head>
<body>
<script type="module">
import init, { mount } from '/pkg/todo.js';
await init({ module_or_path: '/pkg/todo_bg.wasm' });
mount();
</script>
</body>
</html>
"#;

async fn home() -> Redirect {
    let list = getrandom03::u32().map_or(10_000, |n| 10_000 + n % 90_000);
    Redirect::temporary(&format!("/list/{list}"))
}

async fn list_page() -> Html<&'static str> {
    Html(SHELL)
}

async fn not_found() -> (axum::http::StatusCode, Html<&'static str>) {
    (
        axum::http::StatusCode::NOT_FOUND,
        Html("<!DOCTYPE html><title>Not found</title><p><a href=\"/\">A new list</a>"),
    )
}

/// Every route the worker answers.
pub fn router() -> Router {
    Router::new()
        .route("/", get(home))
        .route("/list/{list}", get(list_page))
        .route("/api/health", engine().health())
        .merge(GUEST.routes())
        .merge(engine().routes())
        .nest("/api", Router::new().fallback(sync_server::api_not_found))
        .fallback(not_found)
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
