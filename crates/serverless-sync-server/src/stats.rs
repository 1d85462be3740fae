//! `GET /sync/admin/stats`: what an operator needs to see at a glance, only for a
//! caller presenting the engine secret (`x-sync-engine-secret`). Everything else gets
//! a 401 that says nothing about the app.

use axum::Json;
use axum::extract::Extension;
use axum::http::HeaderMap;
use serde_json::{Value, json};
use worker::Env;

use crate::engine::{Engine, TracedEngine};
use crate::error::ApiError;
use crate::upstream::{Database, Upstream, integer};

/// Listening sessions asked for their sockets and topics, at most (each ask is a
/// Durable Object request).
const SESSIONS_ASKED: usize = 100;

#[worker::send]
pub async fn stats(
    TracedEngine(engine): TracedEngine,
    Extension(env): Extension<Env>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    if !crate::config::presents_engine_secret(&env, &headers) {
        return Err(ApiError::Unauthorized {
            reason: format!(
                "the operator's stats need the engine secret ({})",
                sync::protocol::SECRET_HEADER
            ),
        });
    }
    let log = change_log(&engine, &env).await?;
    let live = crate::durable::live_sessions(&env, SESSIONS_ASKED).await;
    let (claims, watches, memo_bytes, known_head) = crate::durable::with_memo(|memo| memo.sizes());
    Ok(Json(json!({
        "change_log": log,
        "sessions": live,
        "isolate": {
            "memo_claimed_sessions": claims,
            "memo_watches": watches,
            "memo_bytes": memo_bytes,
            "memo_known_head": known_head,
            "wasm_memory_bytes": crate::health::wasm_memory_bytes(),
        },
    })))
}

async fn change_log(engine: &Engine, env: &Env) -> Result<Value, ApiError> {
    let db = Upstream::open(engine, env).await?;
    let statement = sync::sql::Statement { sql: sync::sql::LOG_STATS.into(), params: Vec::new() };
    let rows = db.rows(&statement).await?;
    let row = rows.first().cloned().unwrap_or_default();
    let number = |column: &str| integer(&row, column).unwrap_or(0);
    Ok(json!({
        "changes": number("changes"),
        "stored_outcomes": number("mutations"),
        "last_seq": number("last_seq"),
        "compacted_through": number("compacted_through"),
    }))
}
