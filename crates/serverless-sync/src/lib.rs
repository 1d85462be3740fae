//! The sync engine core, shared by the browser store, the connector worker and the
//! Durable Objects. It does no I/O: every function here is a pure transformation, so
//! all of it is tested natively. Package `serverless-sync`, imported as `sync`.
//!
//! An app declares its sync model here once, typed, and shares it between its page
//! and its worker:
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use sync::model::MutationContext;
//! use sync::{Insert, Inserts, Mutator, Operator, Query, Select, SyncModel};
//!
//! /// A row of `notes`: the collection's columns are these fields.
//! #[derive(Debug, Clone, Serialize, Deserialize, sync::Collection)]
//! #[collection(name = "notes", index = "board_id, id")]
//! pub struct Note {
//!     pub id: String,
//!     pub board_id: String,
//!     pub text: String,
//! }
//!
//! #[derive(Debug, Clone, Serialize, Deserialize)]
//! #[serde(rename_all = "camelCase")]
//! pub struct BoardArgs {
//!     pub board_id: String,
//! }
//!
//! #[derive(Debug, Clone, Serialize, Deserialize)]
//! #[serde(rename_all = "camelCase")]
//! pub struct AddNote {
//!     pub board_id: String,
//!     pub text: String,
//! }
//!
//! pub const LIST_NOTES: Query<BoardArgs, Note> = Query::new("listNotes", Note::COLLECTION);
//! pub const ADD_NOTE: Mutator<AddNote, Inserts> = Mutator::insert("addNote", Note::COLLECTION);
//!
//! let model = SyncModel::builder()
//!     .collection(Note::collection())
//!     // A read names its board: the server can check it, and poke it.
//!     .query(LIST_NOTES.define().require("boardId", "board_id", Operator::Eq).build(|args| {
//!         Select::from(Note::COLLECTION).filter("board_id", Operator::Eq, args.board_id.clone())
//!     }))
//!     .mutator(ADD_NOTE.define().require("boardId", "board_id").build(|args, ctx| {
//!         Insert::into(Note::COLLECTION)
//!             .value("id", ctx.record_id.clone())
//!             .value("board_id", args.board_id.clone())
//!             .value("text", args.text.clone())
//!     }))
//!     .build()?;
//!
//! // Both sides check every read and write against it.
//! let ctx = MutationContext { client_id: "client_a".into(), record_id: "notes_1".into(), now_ms: 0 };
//! let add = serde_json::json!({"boardId": "b1", "text": "hello"});
//! assert!(matches!(model.validate_mutation("addNote", &add, &ctx)?.operation, sync::Operation::Insert(_)));
//! assert!(model.validate_query("listNotes", &serde_json::json!({})).is_err(), "a read names its board");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! - [`schema`]: collections, their columns and column types;
//! - [`operation`]: the reads and writes a named query or mutator builds;
//! - [`model`]: the sync model (the contract): named queries and mutators, args
//!   normalization and validation, topics;
//! - [`migrations`]: an app's upstream tables, derived from its model;
//! - [`capture`]: triggers that log every write to a synced table, whoever makes it;
//! - [`sql`]: parameterized SQL for SQLite (local + D1) and PostgreSQL;
//! - [`changes`]: change log, cursors, topics, pull filtering, idempotency;
//! - [`fanout`]: what each topic's poke carries (a one-topic pull of the push's changes);
//! - [`cursors`]: per-topic cursors, so a poke's changes apply without a pull;
//! - [`pokes`]: when a session pokes its client (at most once per cursor, bursts merged);
//! - [`pull`]: the pull's rules (which changes a page hands out, cursors, refusals);
//! - [`push`]: the push pipeline's rules (one plan, driven by the reference and the
//!   connector alike);
//! - [`session`]: a client session's decisions (owner, topics, authorization window,
//!   what a poke sends);
//! - [`memo`]: what a worker isolate remembers between requests (object calls it
//!   may skip), bounded by bytes;
//! - [`watchers`]: a topic's watching sessions and the change watcher's listeners
//!   (who is forgotten, when to scan);
//! - [`server`]: the reference upstream semantics (apply, idempotency, change log);
//! - [`client`]: the client-side state rules (confirmed rows + pending outbox);
//! - [`protocol`]: wire types, one module per message;
//! - [`typed`]: typed handles for named queries and mutators (args and rows);
//! - [`view`]: a live query's rows in memory, kept up to date record by record;
//! - [`ids`]: prefixed ULIDs.

pub mod capture;
pub mod changes;
pub mod client;
pub mod cursors;
pub mod fanout;
pub mod ids;
pub mod memo;
pub mod migrations;
pub mod model;
pub mod operation;
pub mod pokes;
pub mod protocol;
pub mod pull;
pub mod push;
pub mod schema;
pub mod server;
pub mod session;
pub mod sql;
pub mod typed;
pub mod view;
pub mod watchers;
pub mod window;

pub use changes::{Change, ChangeKind, Cursor, Topic};
pub use model::{
    MutationContext, MutatorBuilder, QueryBuilder, SyncModel, SyncModelBuilder, ValidatedMutation,
    ValidatedQuery,
};
pub use operation::{Delete, Filter, Insert, Operation, Operator, Order, Select, Update};
pub use protocol::PROTOCOL_VERSION;
pub use schema::{Collection, Column, ColumnType, Row};
/// `#[derive(Collection)]` on a row struct: the collection declared once (see
/// [`sync_macros`]).
pub use sync_macros::Collection;
pub use typed::{Deletes, Inserts, Mutator, Query, Updates};

/// A JSON value, as rows and args carry them.
pub type Value = serde_json::Value;
