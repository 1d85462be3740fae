//! The sync connector: `POST /sync/query`, `/sync/push`, `/sync/pull`. Each request is
//! checked against the sync model, authorized by the app's callbacks, and run on the
//! upstream database. See ARCHITECTURE.md for the data flows.

pub mod pull;
pub mod push;
pub mod query;
pub mod socket;

use axum::http::HeaderMap;
use serde::de::DeserializeOwned;
use sync::protocol::PROTOCOL_VERSION;

use crate::error::ApiError;

/// Largest request body the connector reads.
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// Most mutations one push may carry.
pub const MAX_PUSH_MUTATIONS: usize = 100;
/// Most changes one pull returns.
pub const PULL_PAGE: u32 = 500;

/// Parses a JSON body into `T`, or says precisely why not.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(ApiError::PayloadTooLarge { limit: MAX_BODY_BYTES });
    }
    serde_json::from_slice(body).map_err(|error| ApiError::bad_request("malformed_json", error.to_string()))
}

/// Reads a request body of at most [`MAX_BODY_BYTES`] into memory. A larger body is
/// still drained to its end (in constant memory) before the 413: answering with the
/// request body unread takes the isolate down with the next request.
pub async fn drain_body(body: axum::body::Body) -> Result<axum::body::Bytes, ApiError> {
    use futures_util::StreamExt as _;
    let mut chunks = body.into_data_stream();
    let mut bytes = Vec::new();
    let mut too_large = false;
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|error| ApiError::bad_request("unreadable_body", error.to_string()))?;
        if too_large {
            continue;
        }
        if bytes.len() + chunk.len() > MAX_BODY_BYTES {
            too_large = true;
            bytes = Vec::new();
        } else {
            bytes.extend_from_slice(&chunk);
        }
    }
    if too_large { Err(ApiError::PayloadTooLarge { limit: MAX_BODY_BYTES }) } else { Ok(bytes.into()) }
}

/// The body of a request whose body `fetch` already buffered (see `drain_body`).
pub async fn read_body(request: axum::extract::Request) -> Result<axum::body::Bytes, ApiError> {
    drain_body(request.into_body()).await
}

pub fn check_protocol(version: u32) -> Result<(), ApiError> {
    if version == PROTOCOL_VERSION {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "protocol_version",
            format!("this connector speaks protocol {PROTOCOL_VERSION}, the request says {version}"),
        ))
    }
}

/// Client and session ids must be well-formed prefixed ULIDs, and the client's key
/// must prove its id: only the client holding the key may act as that client (push,
/// pull, replay its writes, listen on its sessions).
pub fn check_client(client_key: Option<&str>, client_id: &str, session_id: &str) -> Result<(), ApiError> {
    sync::ids::parse_id(sync::ids::CLIENT, client_id)
        .and_then(|_| sync::ids::parse_id(sync::ids::SESSION, session_id))
        .map_err(|error| ApiError::bad_request("invalid_id", error.to_string()))?;
    let Some(key) = client_key else {
        return Err(ApiError::Unauthorized {
            reason: format!("the client key is missing ({} header)", sync::protocol::CLIENT_KEY_HEADER),
        });
    };
    if !sync::ids::is_valid_client_key(key) {
        return Err(ApiError::bad_request(
            "invalid_client_key",
            "a client key has 32 to 128 visible ASCII characters",
        ));
    }
    if sync::ids::client_id_for_key(key) != client_id {
        return Err(ApiError::Forbidden {
            code: "client_key_mismatch",
            reason: "the client key does not belong to this client id".into(),
        });
    }
    Ok(())
}

/// The optional rate-limit binding (wrangler `[[ratelimits]]`) that counts each
/// connector request per client id and again per signed-in subject: a user's many
/// client keys share the user's limit.
pub const RATE_LIMITER_BINDING: &str = "SYNC_RATE_LIMITER";
/// The optional rate-limit binding that counts every request to the worker (pages,
/// sign-in, health, the connector) per client address (`cf-connecting-ip`, set by
/// Cloudflare): a client id or an account costs nothing, an address does.
pub const ADDRESS_RATE_LIMITER_BINDING: &str = "SYNC_RATE_LIMITER_ADDRESS";
/// The optional rate-limit binding that counts the queries a user (or, for apps that
/// name no users, a client) starts watching: each may make a topic object, so a caller
/// cannot have thousands made a minute with pulls of fresh keys and topics.
pub const WATCH_RATE_LIMITER_BINDING: &str = "SYNC_RATE_LIMITER_WATCH";
/// Seconds a limited client is told to wait (the binding's shortest period).
const RETRY_AFTER_S: u32 = 10;

/// Counts one request under `key` against the limit of `binding`, when the app's
/// worker binds one; over the limit is a 429 with `Retry-After`, saying `whose`
/// limit it was.
pub async fn rate_limit(env: &worker::Env, binding: &str, key: String, whose: &str) -> Result<(), ApiError> {
    let Ok(limiter) = env.rate_limiter(binding) else { return Ok(()) };
    match limiter.limit(key).await {
        Ok(outcome) if !outcome.success => Err(ApiError::TooManyRequests {
            reason: format!("too many requests from {whose}; retry in {RETRY_AFTER_S} s"),
            retry_after_s: RETRY_AFTER_S,
        }),
        Ok(_) => Ok(()),
        // A limiter that fails does not stop the app.
        Err(error) => {
            crate::log::error(&format!("rate limiter: {error}"));
            Ok(())
        }
    }
}

/// The client's address as Cloudflare saw it, if the request came through it.
pub fn client_address(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("cf-connecting-ip")
        .and_then(|value| value.to_str().ok())
        .filter(|address| !address.is_empty())
}

/// An IPv4 or IPv6 address as `cf-connecting-ip` gives it: safe in a URL and a tag.
pub fn is_address(address: &str) -> bool {
    (2..=45).contains(&address.len())
        && address.chars().all(|c| c.is_ascii_hexdigit() || c == '.' || c == ':')
}

/// Counts a request against its address's limit ([`ADDRESS_RATE_LIMITER_BINDING`]).
pub async fn limit_address(env: &worker::Env, headers: &HeaderMap) -> Result<(), ApiError> {
    match client_address(headers) {
        Some(address) => {
            rate_limit(env, ADDRESS_RATE_LIMITER_BINDING, format!("address:{address}"), "this address").await
        }
        None => Ok(()),
    }
}

/// What every connector request passes first: the protocol version, the ids and the
/// client key that proves them, and the rate limits of its client and of its user
/// (when the app names users and the sign-in is valid; one that is not is the
/// app's callbacks' to answer).
pub async fn admit(
    engine: &crate::engine::Engine,
    env: &worker::Env,
    headers: &HeaderMap,
    protocol_version: u32,
    client_id: &str,
    session_id: &str,
) -> Result<Admitted, ApiError> {
    check_protocol(protocol_version)?;
    check_client(client_key(headers), client_id, session_id)?;
    if let Some(trace) = engine.trace() {
        trace.client(client_id);
    }
    rate_limit(env, RATE_LIMITER_BINDING, format!("client:{client_id}"), "this client").await?;
    let mut subject = None;
    if let Some(authorization) = authorization(headers)
        && let Ok(Some(user)) = engine.subject(env, Some(authorization)).await
    {
        rate_limit(env, RATE_LIMITER_BINDING, format!("user:{user}"), "this user").await?;
        subject = Some(user);
    }
    Ok(Admitted { client_id: client_id.to_string(), subject })
}

/// Who a request was admitted as.
pub struct Admitted {
    pub client_id: String,
    /// The user, when the app names users and the sign-in is valid.
    pub subject: Option<String>,
}

impl Admitted {
    /// Counts `count` new watches (queries the session had not watched in this
    /// isolate's memory) against the user's watch limit
    /// ([`WATCH_RATE_LIMITER_BINDING`]; per client for apps that name no users).
    pub async fn limit_new_watches(&self, env: &worker::Env, count: usize) -> Result<(), ApiError> {
        let key = match &self.subject {
            Some(user) => format!("user:{user}"),
            None => format!("client:{}", self.client_id),
        };
        for _ in 0..count {
            rate_limit(env, WATCH_RATE_LIMITER_BINDING, key.clone(), "this user's new queries").await?;
        }
        Ok(())
    }
}

/// An empty push or pull asks the app nothing, so nothing proves its caller: it
/// needs a sign-in the app recognizes ([`crate::engine::Engine::subject`]), else it
/// is a 401 that leaves nothing behind (no session object, no log head revealed).
pub async fn require_sign_in(
    engine: &crate::engine::Engine,
    env: &worker::Env,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    let Some(authorization) = authorization(headers) else {
        return Err(ApiError::NeedsAuth {
            reason: "sign in first: a request that names nothing needs a sign-in".into(),
        });
    };
    engine.subject(env, Some(authorization)).await.map(|_| ())
}

/// The client key header, if present and not empty.
pub fn client_key(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(sync::protocol::CLIENT_KEY_HEADER)
        .and_then(|value| value.to_str().ok())
        .filter(|key| !key.is_empty())
}

pub fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers.get("authorization").and_then(|value| value.to_str().ok())
}

pub fn now_ms() -> i64 {
    worker::Date::now().as_millis() as i64
}
