use axum::Json;
use serde::Serialize;

#[derive(Serialize)]
pub struct Health {
    ok: bool,
    protocol_version: u32,
    /// Linear memory of this isolate's wasm instance: it only grows, so a rising
    /// figure under steady load means something is kept that should not be.
    wasm_memory_bytes: usize,
}

/// Liveness probe used by the test harness to know wrangler is serving.
pub async fn health() -> Json<Health> {
    Json(Health {
        ok: true,
        protocol_version: sync::PROTOCOL_VERSION,
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
