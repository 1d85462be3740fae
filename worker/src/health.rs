use axum::Json;
use serde::Serialize;

#[derive(Serialize)]
pub struct Health {
    ok: bool,
    protocol_version: u32,
}

/// Liveness probe used by the test harness to know wrangler is serving.
pub async fn health() -> Json<Health> {
    Json(Health { ok: true, protocol_version: sync::PROTOCOL_VERSION })
}
