//! The sync engine core, shared by the browser store, the connector worker and the
//! Durable Objects. It does no I/O: every function here is a pure transformation, so
//! all of it is tested natively.
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
