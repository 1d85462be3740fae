//! The chat app's own query and mutation callbacks, as ordinary routes, so the demo
//! works with no other server. A real app would host these in its own backend; the
//! connector reaches them over HTTP when `SYNC_*_CALLBACK_URL` is set.
//!
//! Rules: the caller must present the engine secret; the end user must present a
//! valid guest token; reads of `roomMessages` are open to signed-in users; a message
//! has 1..=2000 characters and is sent under the token's own name.

use axum::extract::Extension;
use axum::http::HeaderMap;
use axum::routing::post;
use axum::{Json, Router};
use subtle::ConstantTimeEq;
use sync::protocol::mutation_callback::{
    MutationCallbackRequest, MutationCallbackResponse, OperationDecision,
};
use sync::protocol::query_callback::QueryCallbackRequest;
use sync::protocol::{Decision, SECRET_HEADER};
use worker::Env;

use crate::auth;
use crate::config;
use crate::connector::{parse_json, read_body};
use crate::error::ApiError;

pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/api/callbacks/query", post(query)).route("/api/callbacks/mutation", post(mutation))
}

/// Checks the engine secret (constant time) and returns the end user's name, or why
/// there is none.
fn caller(env: &Env, headers: &HeaderMap) -> Result<Result<String, String>, ApiError> {
    let expected = config::required(env, config::ENGINE_SECRET)?;
    let presented = headers.get(SECRET_HEADER).map(|value| value.as_bytes()).unwrap_or_default();
    if !bool::from(presented.ct_eq(expected.as_bytes())) {
        return Err(ApiError::Unauthorized { reason: format!("missing or wrong {SECRET_HEADER}") });
    }
    let secret = config::required(env, config::AUTH_SECRET)?;
    let token = headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    Ok(match token {
        None => Err("sign in first: no bearer token".to_string()),
        Some(token) => auth::verify(&secret, token, auth::now_s())
            .map(|claims| claims.sub)
            .map_err(|error| format!("sign in again: {error}")),
    })
}

async fn query(
    Extension(env): Extension<Env>,
    headers: HeaderMap,
    raw: axum::extract::Request,
) -> Result<Json<Decision>, ApiError> {
    let body = read_body(raw).await?;
    let user = caller(&env, &headers)?;
    let request: QueryCallbackRequest = parse_json(&body)?;
    Ok(Json(match (user, request.operation_name.as_str()) {
        (Err(reason), _) => Decision::deny(reason),
        (Ok(_), app::model::ROOM_MESSAGES) => Decision::allow(),
        (Ok(_), _) => Decision::deny("query operation is not allowlisted"),
    }))
}

async fn mutation(
    Extension(env): Extension<Env>,
    headers: HeaderMap,
    raw: axum::extract::Request,
) -> Result<Json<MutationCallbackResponse>, ApiError> {
    let body = read_body(raw).await?;
    let user = caller(&env, &headers)?;
    let request: MutationCallbackRequest = parse_json(&body)?;
    let name = match user {
        Ok(name) => name,
        Err(reason) => return Ok(Json(MutationCallbackResponse::Batch(Decision::deny(reason)))),
    };
    let operations = request
        .operations
        .iter()
        .map(|operation| {
            let verdict = judge(&name, &operation.operation_name, &operation.args);
            OperationDecision { allow: verdict.is_ok(), id: operation.id.clone(), reason: verdict.err() }
        })
        .collect();
    Ok(Json(MutationCallbackResponse::PerOperation { operations }))
}

fn judge(user: &str, operation: &str, args: &serde_json::Value) -> Result<(), String> {
    let text = |key: &str| args.get(key).and_then(|value| value.as_str()).unwrap_or_default();
    let check_body = || {
        let chars = text("body").chars().count();
        if chars == 0 {
            Err("a message cannot be empty".to_string())
        } else if chars > app::model::MAX_BODY_CHARS {
            Err(format!(
                "a message has at most {} characters (this one has {chars})",
                app::model::MAX_BODY_CHARS
            ))
        } else {
            Ok(())
        }
    };
    match operation {
        app::model::SEND_MESSAGE => {
            check_body()?;
            if text("authorName") != user {
                return Err(format!(
                    "you are signed in as {user:?} and cannot post as {:?}",
                    text("authorName")
                ));
            }
            Ok(())
        }
        app::model::EDIT_MESSAGE => check_body(),
        app::model::DELETE_MESSAGE => Ok(()),
        _ => Err("mutation operation is not allowlisted".into()),
    }
}
