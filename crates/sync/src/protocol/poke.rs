//! Connector -> client, over the session's WebSocket: "something you watch changed;
//! pull". Carries the head cursor so a client already there can skip the pull.

use serde::{Deserialize, Serialize};

use crate::changes::Cursor;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ServerMessage {
    Poke { cursor: Cursor },
}
