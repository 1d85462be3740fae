//! Connector -> client, over the session's WebSocket: "something you watch changed".
//! Carries the head cursor so a client already there can skip the pull, and, when
//! they are small enough ([`MAX_CARRIED_BYTES`]), the changes themselves: the client
//! shows them at once and pulls only to move its cursor.

use serde::{Deserialize, Serialize};

use crate::changes::{Change, Cursor};

/// Changes ride in a poke only while their JSON stays under this size; a larger
/// burst is announced without them (the client pulls).
pub const MAX_CARRIED_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ServerMessage {
    Poke {
        cursor: Cursor,
        /// Committed changes on the session's topics at or below `cursor` (maybe not
        /// all of them: a pull from the client's cursor is still the guarantee).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        changes: Vec<Change>,
        /// With `changes`: the topic they are on, and `since`, below which the client
        /// must already stand on it for them to be all it lacks through `cursor` (see
        /// [`crate::cursors`]). A client there applies them and does not pull.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        topic: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<Cursor>,
    },
    /// The answer to a push sent on the socket ([`crate::protocol::socket_push`]):
    /// the status and the JSON body `POST /sync/push` would have answered.
    Pushed { id: u64, status: u16, body: serde_json::Value },
    /// The session no longer watches these topics (the answer to an
    /// [`crate::protocol::unwatch::Unwatch`]): a client that reads one again pulls.
    Unwatched { topics: Vec<String> },
}
