//! The HTML pages. `/` sends a visitor to a fresh random room; `/room/{room}` renders
//! that room, with its current messages when the visitor's sign-in cookie lets them
//! read it (the same named query and callback as the sync connector), so the first
//! paint has content before the local store takes over.

use axum::extract::{Extension, Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use leptos::prelude::*;
use worker::Env;

use crate::config::Config;
use crate::connector;
use crate::error::ApiError;

/// The connector's callbacks see server rendering under these ids.
const RENDER_CLIENT_ID: &str = "client_00000000000000000000000000";
const RENDER_SESSION_ID: &str = "session_00000000000000000000000000";

pub async fn home() -> Redirect {
    let room = getrandom03::u32().map_or(10_000, |n| 10_000 + n % 90_000);
    Redirect::temporary(&format!("/room/{room}"))
}

#[worker::send]
pub async fn room(
    Extension(env): Extension<Env>,
    State(options): State<LeptosOptions>,
    Path(room): Path<String>,
    request: axum::extract::Request,
) -> Response {
    let rows = match room_rows(&env, request.headers(), &room).await {
        Ok(rows) => rows,
        Err(error) => {
            // The page still renders; the browser's local store fills it in.
            worker::console_log!("server render of room {room} without messages: {error}");
            None
        }
    };
    let render = leptos_axum::render_app_to_stream_with_context(
        move || provide_context(app::ServerRows(rows.clone())),
        move || app::shell(options.clone()),
    );
    render(request).await.into_response()
}

/// The room's messages as the named query `roomMessages` returns them, if the cookie
/// holds a token the query callback accepts. `None`: not rendered on the server.
async fn room_rows(
    env: &Env,
    headers: &HeaderMap,
    room: &str,
) -> Result<Option<Vec<sync::schema::Row>>, ApiError> {
    let Some(token) = crate::auth::token_from_cookie(headers) else { return Ok(None) };
    let bearer = format!("Bearer {token}");
    let config = Config::from_env(env)?;
    let validated = connector::authorized_query(
        env,
        &config,
        Some(&bearer),
        RENDER_CLIENT_ID,
        RENDER_SESSION_ID,
        app::model::ROOM_MESSAGES,
        &serde_json::json!({ "roomId": room }),
    )
    .await?;
    let (rows, _) = connector::query::read(env, &validated).await?;
    Ok(Some(rows))
}
