//! Client -> connector: changes since a cursor for the client's subscriptions.
//! `POST /sync/pull` with [`PullRequest`]; answer [`PullResponse`]. Repeat while
//! `has_more`.

use serde::{Deserialize, Serialize};

use crate::Value;
use crate::changes::{Change, Cursor};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullRequest {
    pub protocol_version: u32,
    pub client_id: String,
    pub session_id: String,
    pub cursor: Cursor,
    /// Named queries the client watches; each is validated and mapped to its topic.
    pub subscriptions: Vec<Subscription>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subscription {
    pub name: String,
    pub args: Value,
    /// Where this query stands, when further than the request's `cursor` (a query
    /// joined late starts at its snapshot; pokes move a query's cursor alone): its
    /// changes are read only after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<Cursor>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PullResponse {
    pub changes: Vec<Change>,
    pub cursor: Cursor,
    pub has_more: bool,
    /// Subscriptions the app's query callback refused: nothing of theirs is in this
    /// answer, and the session stopped watching them (no pokes for them either). The
    /// others are served as usual.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<RefusedSubscription>,
}

/// A subscription the app refused, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefusedSubscription {
    pub name: String,
    /// The args as the model normalized them.
    pub args: Value,
    pub topic: String,
    pub reason: String,
}
