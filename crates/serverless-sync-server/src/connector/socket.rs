//! The session's poke channel: `POST /sync/ticket` (authenticated like every request:
//! client key and sign-in in headers) answers a one-time ticket, and
//! `GET /sync/socket?ticket=..` (WebSocket) spends it. The socket is held by the
//! session's ClientSession object with the hibernation API. The client key never
//! appears in a URL (see `sync::protocol::ticket`).

use axum::Json;
use axum::extract::{Extension, Query};
use axum::http::HeaderMap;
use serde::Deserialize;
use sync::protocol::ticket::{TicketRequest, TicketResponse, parse_ticket};
use worker::Env;

use super::{admit, authorization, parse_json, read_body};
use crate::durable;
use crate::engine::TracedEngine;
use crate::error::ApiError;

/// `POST /sync/ticket`: a ticket that opens this session's socket once, soon. The
/// session must be this client's, and this user's when the app names users.
#[worker::send]
pub async fn ticket(
    TracedEngine(engine): TracedEngine,
    Extension(env): Extension<Env>,
    headers: HeaderMap,
    raw: axum::extract::Request,
) -> Result<Json<TicketResponse>, ApiError> {
    let request: TicketRequest = parse_json(&read_body(raw).await?)?;
    admit(&engine, &env, &headers, request.protocol_version, &request.client_id, &request.session_id).await?;
    // Who is asking, when the app says: a missing or expired sign-in is a 401.
    let subject = engine.subject(&env, authorization(&headers)).await?;
    let granted = durable::grant_ticket(&env, &request.session_id, &request.client_id, subject).await?;
    Ok(Json(granted))
}

#[derive(Deserialize)]
pub struct SocketParams {
    ticket: String,
}

#[worker::send]
pub async fn socket(
    Extension(env): Extension<Env>,
    headers: HeaderMap,
    params: Result<Query<SocketParams>, axum::extract::rejection::QueryRejection>,
) -> Result<axum::response::Response, ApiError> {
    let upgrade = headers.get("upgrade").and_then(|value| value.to_str().ok()).unwrap_or_default();
    if !upgrade.eq_ignore_ascii_case("websocket") {
        return Err(ApiError::UpgradeRequired { reason: "this endpoint speaks WebSocket only".into() });
    }
    let Query(params) = params.map_err(|_| ApiError::Unauthorized {
        reason: "a socket opens with a ticket (`POST /sync/ticket`): `?ticket=` is missing".into(),
    })?;
    let Some((session_id, secret)) = parse_ticket(&params.ticket) else {
        return Err(ApiError::Unauthorized { reason: "not a socket ticket".into() });
    };
    // Both parts are checked (a prefixed ULID, hex digits): safe in a URL as they are.
    // The address the socket comes from: pushes on it count against its limit.
    let address = super::client_address(&headers).filter(|address| super::is_address(address));
    let url = match address {
        Some(address) => format!("https://object/socket?ticket={secret}&address={address}"),
        None => format!("https://object/socket?ticket={secret}"),
    };
    let mut response = durable::open_socket(&env, session_id, &url).await.map_err(ApiError::upstream)?;
    match response.status_code() {
        101 => Ok(response.into()),
        401 => Err(ApiError::Unauthorized {
            reason: "the ticket is unknown, used or expired: ask for another".into(),
        }),
        status => {
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            let reason = body.get("reason").and_then(|r| r.as_str()).unwrap_or_default().to_string();
            Err(ApiError::upstream(format!("the session object answered HTTP {status}: {reason}")))
        }
    }
}
