//! `GET /sync/socket?client_id=..&session_id=..&client_key=..` (WebSocket): the session's poke
//! channel, held by its ClientSession object with the hibernation API.

use axum::extract::{Extension, Query};
use axum::http::HeaderMap;
use serde::Deserialize;
use worker::Env;

use super::{check_client, rate_limit};
use crate::durable;
use crate::error::ApiError;

#[derive(Deserialize)]
pub struct SocketParams {
    client_id: String,
    session_id: String,
    client_key: Option<String>,
}

#[worker::send]
pub async fn socket(
    Extension(env): Extension<Env>,
    headers: HeaderMap,
    params: Result<Query<SocketParams>, axum::extract::rejection::QueryRejection>,
) -> Result<axum::response::Response, ApiError> {
    let Query(params) =
        params.map_err(|rejection| ApiError::bad_request("invalid_id", rejection.body_text()))?;
    let upgrade = headers.get("upgrade").and_then(|value| value.to_str().ok()).unwrap_or_default();
    if !upgrade.eq_ignore_ascii_case("websocket") {
        return Err(ApiError::UpgradeRequired { reason: "this endpoint speaks WebSocket only".into() });
    }
    check_client(
        params.client_key.as_deref().filter(|key| !key.is_empty()),
        &params.client_id,
        &params.session_id,
    )?;
    rate_limit(&env, &params.client_id).await?;
    // Both ids are checked prefixed ULIDs: safe to put in a URL as they are.
    let url =
        format!("https://object/socket?client_id={}&session_id={}", params.client_id, params.session_id);
    let mut response =
        durable::open_socket(&env, &params.session_id, &url).await.map_err(ApiError::upstream)?;
    match response.status_code() {
        101 => Ok(response.into()),
        403 => {
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            let reason =
                body.get("reason").and_then(|r| r.as_str()).unwrap_or("session belongs to another client");
            Err(ApiError::Forbidden { code: "session_mismatch", reason: reason.to_string() })
        }
        status => Err(ApiError::upstream(format!("the session object answered HTTP {status}"))),
    }
}
