//! Client -> connector: run a named read and subscribe to it.
//! `POST /sync/query` with [`QueryRequest`]; answer [`QueryResponse`].

use serde::{Deserialize, Serialize};

use crate::Value;
use crate::changes::{Cursor, Topic};
use crate::schema::Row;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryRequest {
    pub protocol_version: u32,
    pub client_id: String,
    pub session_id: String,
    pub name: String,
    pub args: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryResponse {
    /// The query's rows as of `cursor`.
    pub rows: Vec<Row>,
    /// The change-log position the rows reflect; pull from here.
    pub cursor: Cursor,
    /// The topic the session is now subscribed to.
    pub topic: Topic,
}
