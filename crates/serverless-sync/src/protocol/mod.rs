//! Wire types. One module per message, the way the cards travel:
//!
//! - connector -> app callbacks (the seed's contract, field for field):
//!   [`query_callback`], [`mutation_callback`];
//! - client -> connector: [`query`], [`push`], [`pull`], [`ticket`] (opens the socket);
//! - connector -> client over the session WebSocket: [`poke`] (and the answer to a
//!   push sent on it);
//! - client -> connector over the session WebSocket: [`socket_push`], [`unwatch`];
//! - any error answer: [`error`].

pub mod error;
pub mod mutation_callback;
pub mod poke;
pub mod pull;
pub mod push;
pub mod query;
pub mod query_callback;
pub mod socket_push;
pub mod ticket;
pub mod unwatch;

use serde::{Deserialize, Serialize};

/// Version of the client <-> connector protocol. Bumped on any incompatible change;
/// the connector refuses requests that name another version.
pub const PROTOCOL_VERSION: u32 = 1;

/// Header carrying the secret shared between the connector and the app's callbacks.
pub const SECRET_HEADER: &str = "x-sync-engine-secret";

/// The client's secret key, on every query, push, pull and ticket request: it proves
/// the request's `client_id` (`ids::client_id_for_key`). It never appears in a URL:
/// the poke socket opens with a one-time [`ticket`].
pub const CLIENT_KEY_HEADER: &str = "x-sync-client-key";
/// Content type of every JSON body the engine sends.
pub const JSON_CONTENT_TYPE: &str = "application/json; charset=utf-8";

/// `operation_kind` in callback requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OperationKind {
    Query,
    Mutation,
}

/// An allow/deny answer: `{"allow": true}` or `{"allow": false, "reason": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "JsonObject")]
pub struct Decision {
    pub allow: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Decision {
    pub fn allow() -> Self {
        Self { allow: true, reason: None }
    }

    pub fn deny(reason: impl Into<String>) -> Self {
        Self { allow: false, reason: Some(reason.into()) }
    }
}

/// Callback answers must be JSON objects. Serde's derived structs also accept arrays
/// (`[true]` would read as `{"allow": true}`); routing through this type refuses them.
#[derive(Deserialize)]
#[serde(transparent)]
pub(crate) struct JsonObject(serde_json::Map<String, serde_json::Value>);

/// What a strict, object-only parse of `T` fails with.
pub(crate) fn from_object<T: serde::de::DeserializeOwned>(
    object: JsonObject,
) -> Result<T, serde_json::Error> {
    serde_json::from_value(serde_json::Value::Object(object.0))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDecision {
    allow: bool,
    #[serde(default)]
    reason: Option<String>,
}

impl TryFrom<JsonObject> for Decision {
    type Error = serde_json::Error;

    fn try_from(object: JsonObject) -> Result<Self, Self::Error> {
        let raw: RawDecision = from_object(object)?;
        Ok(Decision { allow: raw.allow, reason: raw.reason })
    }
}
