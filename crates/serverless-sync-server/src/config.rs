//! The engine's settings, from wrangler vars / secrets (`.dev.vars` locally). An app
//! reads its own settings with [`setting`] and [`required`].

use worker::Env;

use crate::error::ApiError;

/// Shared secret the connector sends to the callbacks in `x-sync-engine-secret`.
pub const ENGINE_SECRET: &str = "SYNC_ENGINE_SECRET";
/// Where the query callback lives; empty = the app's in-process callbacks.
pub const QUERY_CALLBACK_URL: &str = "SYNC_QUERY_CALLBACK_URL";
/// Where the mutation callback lives; empty = the app's in-process callbacks.
pub const MUTATION_CALLBACK_URL: &str = "SYNC_MUTATION_CALLBACK_URL";
/// How long a callback may take before it counts as unavailable (503, retried).
pub const CALLBACK_TIMEOUT_MS: &str = "SYNC_CALLBACK_TIMEOUT_MS";
/// Which upstream database holds the data: `d1` (default) or `postgres` (through the
/// Hyperdrive binding `HYPERDRIVE`).
pub const UPSTREAM: &str = "SYNC_UPSTREAM";
/// How often (ms, default 1000, at least 50) the change watcher reads the log for
/// writes made outside the connector while any client listens.
pub const CAPTURE_POLL_MS: &str = "SYNC_CAPTURE_POLL_MS";

const DEFAULT_CALLBACK_TIMEOUT_MS: u64 = 3_000;

#[derive(Debug, Clone)]
pub struct Config {
    pub engine_secret: String,
    pub query_callback_url: Option<String>,
    pub mutation_callback_url: Option<String>,
    pub callback_timeout_ms: u64,
}

/// A string binding, whether declared as a var or a secret; empty counts as unset.
pub fn setting(env: &Env, name: &str) -> Option<String> {
    let value =
        env.var(name).map(|v| v.to_string()).or_else(|_| env.secret(name).map(|s| s.to_string())).ok()?;
    let value = value.trim().to_string();
    (!value.is_empty()).then_some(value)
}

pub fn required(env: &Env, name: &str) -> Result<String, ApiError> {
    setting(env, name).ok_or_else(|| ApiError::NotConfigured {
        reason: format!("the worker setting {name} is not set (wrangler secret, or .dev.vars locally)"),
    })
}

impl Config {
    pub fn from_env(env: &Env) -> Result<Self, ApiError> {
        Ok(Self {
            engine_secret: required(env, ENGINE_SECRET)?,
            query_callback_url: setting(env, QUERY_CALLBACK_URL),
            mutation_callback_url: setting(env, MUTATION_CALLBACK_URL),
            callback_timeout_ms: setting(env, CALLBACK_TIMEOUT_MS)
                .and_then(|ms| ms.parse().ok())
                .unwrap_or(DEFAULT_CALLBACK_TIMEOUT_MS),
        })
    }
}

/// Whether `headers` carry the engine secret (`x-sync-engine-secret`), compared in
/// constant time: the caller is the operator or the app's own server.
pub fn presents_engine_secret(env: &Env, headers: &axum::http::HeaderMap) -> bool {
    use subtle::ConstantTimeEq as _;
    let Some(expected) = setting(env, ENGINE_SECRET) else { return false };
    let presented =
        headers.get(sync::protocol::SECRET_HEADER).map(|value| value.as_bytes()).unwrap_or_default();
    !expected.is_empty() && bool::from(presented.ct_eq(expected.as_bytes()))
}
