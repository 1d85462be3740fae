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
    /// The next page of an answer: [`QueryResponse::more`] of the previous one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<QueryPage>,
    /// A windowed query (one with a limit): how many rows the client's window holds
    /// (its `load_more` widens it past the query's limit), at most
    /// [`crate::window::MAX_WINDOW`]. Pages stop there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<u32>,
}

/// Where the next page of a query's answer starts: the last row's values of the
/// query's order columns then its primary key (`sync::sql::order_columns`), and how
/// many rows were answered before (a query with a `LIMIT` stops there).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryPage {
    pub after: Vec<Value>,
    pub served: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryResponse {
    /// The query's rows as of `cursor`.
    pub rows: Vec<Row>,
    /// The change-log position the rows reflect; pull from here.
    pub cursor: Cursor,
    /// The topic the session is now subscribed to.
    pub topic: Topic,
    /// More rows follow: ask again with this as [`QueryRequest::after`]. Every page
    /// is exact at its own cursor; the first page's cursor covers them all (a pull
    /// from it hands out every change after it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub more: Option<QueryPage>,
    /// No row of the query follows this page's last: the answer reached its end
    /// (a window that stops before the end is told so by `false`).
    #[serde(default)]
    pub complete: bool,
}
