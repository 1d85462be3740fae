//! The HTML pages. `/` sends a visitor to a fresh private room; `/room/{room}` renders
//! that room, with its current messages when the visitor's sign-in cookie lets them
//! read it (the same named query and callback as the sync connector), so the first
//! paint has content before the local store takes over.

use axum::extract::{Extension, Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use leptos::prelude::*;
use worker::Env;

use app::model::{Message, ROOM_MESSAGES, RoomArgs};
use sync_server::ApiError;

/// A fresh private room: 128 random bits nobody can guess or count, made private to
/// the visitor by the page (`?new`).
pub async fn home() -> Result<Redirect, ApiError> {
    let (high, low) = (getrandom03::u64(), getrandom03::u64());
    let (Ok(high), Ok(low)) = (high, low) else {
        return Err(ApiError::upstream("no randomness for a room id"));
    };
    let room = app::model::private_room_id((u128::from(high) << 64) | u128::from(low));
    Ok(Redirect::temporary(&format!("/room/{room}?new")))
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
    let address = app::Address::parse(request.uri().path(), request.uri().query().unwrap_or_default());
    let render = leptos_axum::render_app_to_stream_with_context(
        move || {
            provide_context(app::ServerRows(rows.clone()));
            provide_context(address.clone());
        },
        move || app::shell(options.clone()),
    );
    render(request).await.into_response()
}

/// The room's newest messages, the window the named query `roomMessages` opens with,
/// if the cookie holds a token the query callback accepts. `None`: not rendered on
/// the server.
async fn room_rows(env: &Env, headers: &HeaderMap, room: &str) -> Result<Option<Vec<Message>>, ApiError> {
    let Some(token) = sync_server::guest::token_from_cookie(headers) else { return Ok(None) };
    let bearer = format!("Bearer {token}");
    let args = RoomArgs { room_id: room.to_string() };
    let rows = crate::engine().read_query(env, Some(&bearer), &ROOM_MESSAGES, &args).await?;
    Ok(Some(rows))
}

/// Paths that are neither a page, an API endpoint nor a static asset.
pub async fn not_found() -> (axum::http::StatusCode, axum::response::Html<&'static str>) {
    (
        axum::http::StatusCode::NOT_FOUND,
        axum::response::Html(
            "<!DOCTYPE html><title>Not found</title><p>Page not found. <a href=\"/\">Back to the chat</a></p>",
        ),
    )
}
