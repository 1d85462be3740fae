//! The objects' internal requests (worker -> object, object -> object).

use serde::{Deserialize, Serialize};

/// `POST /claim` and `POST /subscribe` on a ClientSession.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claim {
    pub session_id: String,
    pub client_id: String,
    #[serde(default)]
    pub topics: Vec<String>,
    /// The cursor the client has acknowledged (it holds every change up to it).
    #[serde(default)]
    pub cursor: Option<u64>,
    /// Topics the app just refused to this session: unwatched at once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<String>,
}

/// `POST /ticket` on a ClientSession: a socket ticket for its client and user.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TicketGrant {
    pub session_id: String,
    pub client_id: String,
    /// The app's subject for the caller; `None` when the app names no users.
    #[serde(default)]
    pub subject: Option<String>,
}

/// `POST /watch` and `POST /unwatch` on a QuerySubscription.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Watch {
    pub topic: String,
    pub session_id: String,
    /// The session's user (the app's subject), once its socket told it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// `POST /poke` on a QuerySubscription (with `topic`) or a ClientSession.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Poke {
    #[serde(default)]
    pub topic: String,
    pub cursor: u64,
    /// The committed changes on `topic` that moved the log to `cursor`, when small
    /// enough to carry (see `sync::protocol::poke::MAX_CARRIED_BYTES`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<sync::changes::Change>,
    /// With `changes`: no change on `topic` lies between `since` and the first of them
    /// (`sync::cursors`), so a client standing at `since` needs nothing else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<u64>,
}

/// A ClientSession's answer to a poke.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Delivered {
    pub sockets: usize,
    /// Rows the poke wrote to the session's storage (billed per row): counted in
    /// the topic's fan-out line.
    #[serde(default)]
    pub storage_rows_written: u64,
}
