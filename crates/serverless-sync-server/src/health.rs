//! `GET /api/health` (an app mounts it with [`crate::Engine::health`]) and
//! `GET /sync/health`: liveness, and whether the upstream tables match the model.

use axum::Json;
use axum::extract::Extension;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use worker::Env;

use crate::engine::Engine;
use crate::upstream::{Kind, Upstream};

#[derive(Serialize)]
pub struct Health {
    ok: bool,
    protocol_version: u32,
    /// Which upstream database `SYNC_UPSTREAM` names (`null`: the setting is invalid).
    upstream: Option<Kind>,
    /// Linear memory of this isolate's wasm instance: it only grows, so a rising
    /// figure under steady load means something is kept that should not be. Only for
    /// a caller that presents the engine secret (`x-sync-engine-secret`).
    #[serde(skip_serializing_if = "Option::is_none")]
    wasm_memory_bytes: Option<usize>,
    /// Why the app cannot serve (`schema_mismatch`, `upstream_error`, ...), if it cannot.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// 200 when the upstream database answers and its tables match the sync model;
/// otherwise 503 with `error` and `reason` (e.g. a migration not applied).
pub async fn health(
    Extension(engine): Extension<Engine>,
    Extension(env): Extension<Env>,
    headers: axum::http::HeaderMap,
) -> Response {
    let checked = check(&engine, &env).await;
    let failure = checked.err().map(|error| (error.code(), error.public_reason()));
    let operator = crate::config::presents_engine_secret(&env, &headers);
    let status = if failure.is_some() { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
    let health = Health {
        ok: failure.is_none(),
        protocol_version: sync::PROTOCOL_VERSION,
        upstream: Kind::from_env(&env).ok(),
        wasm_memory_bytes: operator.then(wasm_memory_bytes),
        error: failure.as_ref().map(|(code, _)| *code),
        reason: failure.map(|(_, reason)| reason),
    };
    (status, Json(health)).into_response()
}

#[worker::send]
async fn check(engine: &Engine, env: &Env) -> Result<(), crate::ApiError> {
    let db = Upstream::open_unchecked(engine, env).await?;
    crate::upstream::check_schema(&db, engine.model()).await
}

pub(crate) fn wasm_memory_bytes() -> usize {
    #[cfg(target_arch = "wasm32")]
    {
        core::arch::wasm32::memory_size(0) * 65_536
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        0
    }
}
