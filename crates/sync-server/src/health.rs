use axum::Json;
use axum::extract::Extension;
use serde::Serialize;
use worker::Env;

use crate::upstream::Kind;

#[derive(Serialize)]
pub struct Health {
    ok: bool,
    protocol_version: u32,
    /// Which upstream database `SYNC_UPSTREAM` names (`null`: the setting is invalid).
    upstream: Option<Kind>,
    /// Linear memory of this isolate's wasm instance: it only grows, so a rising
    /// figure under steady load means something is kept that should not be.
    wasm_memory_bytes: usize,
}

/// Liveness probe used by the test harness to know wrangler is serving.
pub async fn health(Extension(env): Extension<Env>) -> Json<Health> {
    Json(Health {
        ok: true,
        protocol_version: sync::PROTOCOL_VERSION,
        upstream: Kind::from_env(&env).ok(),
        wasm_memory_bytes: wasm_memory_bytes(),
    })
}

fn wasm_memory_bytes() -> usize {
    #[cfg(target_arch = "wasm32")]
    {
        core::arch::wasm32::memory_size(0) * 65_536
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        0
    }
}
