//! {{Title}}'s Cloudflare Worker: the page (a static shell; the UI renders in the
//! browser), guest sign-in, the app's rules, and the engine's `/sync/*` routes.

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

/// The PostgreSQL migrations (`migrations/postgres`, listed by build.rs).
const POSTGRES_MIGRATIONS: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/postgres_migrations.rs"));

/// Guest sign-in: its tokens name this app (`aud`).
const GUEST: guest::GuestAuth = guest::GuestAuth::new({{app_snake}}_model::APP_NAME);

/// Who may do what: anyone signed in reads and edits a board they have the link to;
/// each write obeys the model crate's rules.
struct AppRules;

impl Rules for AppRules {
    async fn query(&self, caller: &Caller, _request: &QueryCallbackRequest) -> Result<Decision, CallbackError> {
        GUEST.signed_in(caller)?;
        Ok(Decision::allow())
    }

    async fn mutation(
        &self,
        caller: &Caller,
        request: &MutationCallbackRequest,
    ) -> Result<MutationCallbackResponse, CallbackError> {
        GUEST.signed_in(caller)?;
        Ok(MutationCallbackResponse::per_operation(&request.operations, {{app_snake}}_model::judge_write))
    }

    /// Sessions and their sockets belong to the guest's subject.
    async fn subject(&self, caller: &Caller) -> Result<Option<String>, CallbackError> {
        Ok(Some(GUEST.signed_in(caller)?.subject))
    }
}

fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        Engine::new({{app_snake}}_model::{{app_snake}}_model(), HttpCallbacks::or(AppRules))
            .postgres_migrations(POSTGRES_MIGRATIONS)
    })
}

/// The page: loads the bundle, which renders the board and starts the sync worker.
const SHELL: &str = r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{Title}}</title>
<link rel="stylesheet" href="/style.css">
<link rel="icon" type="image/svg+xml" href="/favicon.svg">
</head>
<body>
<script type="module">
import init, { mount } from '/pkg/{{app}}.js';
await init({ module_or_path: '/pkg/{{app}}_bg.wasm' });
mount();
</script>
</body>
</html>
"#;

/// `/` opens a new board.
async fn home() -> Redirect {
    let board = getrandom03::u32().map_or(10_000, |n| 10_000 + n % 90_000);
    Redirect::temporary(&format!("/board/{board}"))
}

async fn board_page() -> Html<&'static str> {
    Html(SHELL)
}

async fn not_found() -> (axum::http::StatusCode, Html<&'static str>) {
    (axum::http::StatusCode::NOT_FOUND, Html("<!DOCTYPE html><title>Not found</title><p><a href=\"/\">A new board</a>"))
}

/// Every route the worker answers.
pub fn router() -> Router {
    Router::new()
        .route("/", get(home))
        .route("/board/{board}", get(board_page))
        .route("/api/health", engine().health())
        .merge(GUEST.routes())
        .merge(engine().routes())
        .nest("/api", Router::new().fallback(sync_server::api_not_found))
        .fallback(not_found)
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
        Ok(done) => worker::console_log!("compaction: through {}, {} changes removed", done.through, done.removed),
        Err(error) => worker::console_error!("compaction: {error}"),
    }
}
