{{#ssr}}
//! {{Title}}'s Cloudflare Worker: the page (rendered here, with the rows the visitor
//! may read, then hydrated in the browser), guest sign-in, the app's rules, and the
//! engine's `/sync/*` routes.
{{/ssr}}
{{^ssr}}
//! {{Title}}'s Cloudflare Worker: the page (a static shell; the UI renders in the
//! browser), guest sign-in, the app's rules, and the engine's `/sync/*` routes.
{{/ssr}}

use std::sync::OnceLock;

use axum::Router;
{{#ssr}}
use axum::extract::{Extension, Path, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
{{/ssr}}
{{^ssr}}
use axum::response::{Html, Redirect};
{{/ssr}}
use axum::routing::get;
{{#ssr}}
use leptos::prelude::*;
use {{app_snake}}_frontend::page::{App, ServerPage};
use {{app_snake}}_model::{BoardArgs, LIST_{{ROWS}}, {{Row}}};
{{/ssr}}
use sync::protocol::Decision;
use sync::protocol::mutation_callback::{MutationCallbackRequest, MutationCallbackResponse};
use sync::protocol::query_callback::QueryCallbackRequest;
use sync_server::{{{#ssr}}ApiError, {{/ssr}}CallbackError, Caller, Engine, HttpCallbacks, Rules, guest};

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

{{#ssr}}
/// Leptos settings, built in code (in wasm, leptos_axum cannot read Cargo.toml): the
/// bundle is `/pkg/{{app}}.js` + `/pkg/{{app}}_bg.wasm`.
fn leptos_options() -> LeptosOptions {
    LeptosOptions::builder().output_name("{{app}}").site_pkg_dir("pkg").site_root("site").build()
}

/// The whole HTML document, rendered here; the bundle hydrates `<App/>`.
fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <title>"{{Title}}"</title>
                <link rel="stylesheet" href="/style.css"/>
                <link rel="icon" type="image/svg+xml" href="/favicon.svg"/>
                <HydrationScripts options/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

/// `/` opens a new board.
async fn home() -> Redirect {
    let board = getrandom03::u32().map_or(10_000, |n| 10_000 + n % 90_000);
    Redirect::temporary(&format!("/board/{board}"))
}

/// A board's page, with its rows when the visitor's sign-in cookie lets them read it
/// (the same named query and rules as the sync routes).
#[worker::send]
async fn board_page(
    Extension(env): Extension<worker::Env>,
    State(options): State<LeptosOptions>,
    Path(board): Path<String>,
    request: axum::extract::Request,
) -> Response {
    let board_id = {{app_snake}}_model::clean_board_id(&board).unwrap_or_else(|| "home".into());
    let rows = match board_rows(&env, request.headers(), &board_id).await {
        Ok(rows) => rows,
        Err(error) => {
            // The page still renders; the browser's local store fills it in.
            worker::console_log!("board {board_id} rendered without rows: {error}");
            None
        }
    };
    let page = ServerPage { board_id, rows };
    let render = leptos_axum::render_app_to_stream_with_context(
        move || provide_context(page.clone()),
        move || shell(options.clone()),
    );
    render(request).await.into_response()
}

/// The board's rows as `list{{Rows}}` reads them, if the cookie holds a token the
/// rules accept; `None` for a visitor not signed in.
async fn board_rows(
    env: &worker::Env,
    headers: &axum::http::HeaderMap,
    board_id: &str,
) -> Result<Option<Vec<{{Row}}>>, ApiError> {
    let Some(token) = guest::token_from_cookie(headers) else { return Ok(None) };
    let args = BoardArgs { board_id: board_id.to_string() };
    engine().read_query(env, Some(&format!("Bearer {token}")), &LIST_{{ROWS}}, &args).await.map(Some)
}
{{/ssr}}
{{^ssr}}
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
{{/ssr}}

async fn not_found() -> (axum::http::StatusCode, Html<&'static str>) {
    (axum::http::StatusCode::NOT_FOUND, Html("<!DOCTYPE html><title>Not found</title><p><a href=\"/\">A new board</a>"))
}

/// Every route the worker answers.
pub fn router() -> Router {
{{#ssr}}
    // Server rendering awaits its resources on this isolate's executor (leptos_axum
    // sets it up only when it lists routes itself).
    let _ = any_spawner::Executor::init_wasm_bindgen();
{{/ssr}}
    Router::new()
        .route("/", get(home))
        .route("/board/{board}", get(board_page))
        .route("/api/health", engine().health())
        .merge(GUEST.routes())
        .merge(engine().routes())
        .nest("/api", Router::new().fallback(sync_server::api_not_found))
        .fallback(not_found)
{{#ssr}}
        .with_state(leptos_options())
{{/ssr}}
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
        Ok(done) => worker::console_log!("compaction: through {}, {} changes removed", done.through, done.removed),
        Err(error) => worker::console_error!("compaction: {error}"),
    }
}
