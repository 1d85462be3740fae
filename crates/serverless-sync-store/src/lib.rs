//! The browser's local store: [`sync::client::ClientState`]'s rules, kept in SQLite so
//! they survive reloads (OPFS in the browser; any SQLite in tests).
//!
//! Tables (the `sync_` prefix is reserved; the model cannot use it):
//! - one table per collection, named like it: the **visible** rows, what local
//!   queries read: confirmed rows with pending writes applied on top;
//! - `sync_confirmed`: the server's image of each record and the sequence number it
//!   came with (`row_json` NULL = deleted);
//! - `sync_outbox`: pending mutations in order;
//! - `sync_resolved`: the server's answers to recent mutations, so a request sent
//!   twice (a tab re-sending after the leader tab closed) is answered, not re-applied;
//! - `sync_meta`: the client id, the pull cursor, and the schema version (the model's
//!   digest) the collection tables were built for;
//! - `sync_windows`: for each windowed query (one with a limit, `sync::window`), how far
//!   its covered part reaches: up to a keyset, or to the end.
//!
//! Rows no live query needs are evicted ([`LocalStore::evict`]); pending writes never
//! are.
//!
//! When the app's model changes (a new schema version), [`LocalStore::open`] rebuilds
//! the collection tables, forgets the server's images and the cursor (the queries'
//! snapshots are fetched again), and keeps the outbox: each queued write is checked
//! against the new model, re-planned, and shown again; one the new model refuses is
//! answered as rejected with the reason ([`LocalStore::take_upgrade_rejections`]).
//!
//! Every public write runs in one transaction and returns the records it touched, so
//! the caller knows which live queries to refresh. Package `serverless-sync-store`,
//! imported as `sync_store`; the browser's Web Worker runs it on OPFS
//! (`sync_client::opfs`), tests on any SQLite:
//!
//! ```
//! use sync::model::MutationContext;
//! use sync::{Collection, ColumnType, Insert, Mutator, SyncModel};
//! # #[derive(serde::Serialize, serde::Deserialize)]
//! # #[serde(rename_all = "camelCase")]
//! # struct AddNote { board_id: String, text: String }
//! # const ADD_NOTE: Mutator<AddNote, sync::Inserts> = Mutator::insert("addNote", "notes");
//! # let model = SyncModel::builder()
//! #     .collection(Collection::new("notes", "id").column("id", ColumnType::Text)
//! #         .column("board_id", ColumnType::Text).column("text", ColumnType::Text))
//! #     .mutator(ADD_NOTE.define().require("boardId", "board_id").build(|args, ctx| {
//! #         Insert::into("notes").value("id", ctx.record_id.clone())
//! #             .value("board_id", args.board_id.clone()).value("text", args.text.clone())
//! #     }))
//! #     .build()?;
//! // `model`: the app's sync model, with a `notes` collection and an `addNote` mutator.
//! let db = rusqlite::Connection::open_in_memory()?;
//! let mut store = sync_store::LocalStore::open(db, model, || "client_a".into())?;
//!
//! // A write is visible at once and waits in the outbox, in one transaction.
//! let ctx = MutationContext { client_id: "client_a".into(), record_id: "notes_1".into(), now_ms: 1 };
//! let args = serde_json::json!({"boardId": "b1", "text": "offline"});
//! store.mutate("outbox_1", "addNote", &args, &ctx)?;
//! assert_eq!(store.rows("notes")?.len(), 1);
//! assert_eq!(store.outbox_len()?, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod driver;
pub mod inspect;

use std::collections::BTreeSet;

use rusqlite::{OptionalExtension, Transaction, params, params_from_iter};
use serde_json::Value;
use sync::changes::{Change, Cursor};
use sync::client::{MutateError, PendingMutation};
use sync::model::{MutationContext, SyncModel};
use sync::operation::{Operation, Select};
use sync::protocol::push::MutationOutcome;
use sync::schema::{Collection, Row};
use sync::sql::{self, Dialect, SqlParam, Statement};
use sync::view::RecordView;
use sync::window::Coverage;

/// The SQLite connection type the store runs on (rusqlite).
pub use rusqlite::Connection;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("stored JSON is unreadable: {0}")]
    Json(#[from] serde_json::Error),
    #[error("SQL building: {0}")]
    Sql(#[from] sql::SqlError),
    #[error(transparent)]
    Mutate(#[from] MutateError),
    #[error("unknown collection `{0}`")]
    UnknownCollection(String),
    #[error("the store has no client key and none could be made")]
    NoClientKey,
    /// A snapshot older than what the store has pulled through would miss changes in
    /// between: fetch it again (nothing was installed).
    #[error("the snapshot is exact at cursor {snapshot}, older than the store's cursor {held}")]
    StaleSnapshot { snapshot: u64, held: u64 },
    /// The id was seen before; `state` says where it stands, so the caller can answer.
    #[error("mutation `{id}` was already applied here")]
    Duplicate { id: String, state: MutationState },
}

/// How many answered mutations `sync_resolved` remembers.
const RESOLVED_KEPT: i64 = 1000;

/// Where a mutation id stands in this store.
#[derive(Debug, Clone, PartialEq)]
pub enum MutationState {
    /// Applied locally, waiting in the outbox.
    Pending { record_id: String },
    /// The server answered it.
    Resolved { record_id: String, outcome: MutationOutcome },
}

/// How far a windowed query's covered part reaches in its order.
#[derive(Debug, Clone, PartialEq)]
pub enum Reach {
    /// Up to the row with this keyset (`sync::window::keyset`), included.
    Until(Vec<Value>),
    /// To the end of the query's answer.
    End,
}

/// A windowed query read locally ([`LocalStore::query_window`]).
#[derive(Debug, Clone, PartialEq)]
pub struct WindowRead {
    /// The window's rows: at most its size, none past the covered part.
    pub rows: Vec<Row>,
    /// The covered part holds the whole window (or reaches the end): nothing to fetch.
    pub covered: bool,
    /// Rows of the query may follow the window (held here, or on the server): true
    /// whenever they do (a row deleted upstream past the window may leave it true
    /// until the next page says the end is reached).
    pub more: bool,
    /// How far the covered part reaches (`None`: nothing is known, or the query is
    /// not windowed).
    pub reach: Option<Reach>,
}

/// What [`LocalStore::evict`] removed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Eviction {
    /// The records removed (their views show them gone).
    pub touched: BTreeSet<Touched>,
    /// Windows whose covered part was cut back to the rows they show.
    pub windows_cut: usize,
}

/// A record whose visible row may have changed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Touched {
    pub collection: String,
    pub record_id: String,
}

pub struct LocalStore {
    conn: Connection,
    model: SyncModel,
    client_id: String,
    /// Queued writes the last schema upgrade refused: (mutation id, outcome).
    upgrade_rejections: Vec<(String, MutationOutcome)>,
}

const ENGINE_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sync_confirmed (
  collection TEXT NOT NULL, record_id TEXT NOT NULL, seq INTEGER NOT NULL, row_json TEXT,
  PRIMARY KEY (collection, record_id));
CREATE TABLE IF NOT EXISTS sync_outbox (
  position INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE, name TEXT NOT NULL, args_json TEXT NOT NULL,
  collection TEXT NOT NULL, record_id TEXT NOT NULL, operation_json TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS sync_outbox_record ON sync_outbox (collection, record_id);
CREATE TABLE IF NOT EXISTS sync_resolved (
  position INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE, record_id TEXT NOT NULL, outcome_json TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sync_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sync_absent (
  collection TEXT NOT NULL, record_id TEXT NOT NULL, select_json TEXT NOT NULL, through INTEGER NOT NULL,
  PRIMARY KEY (collection, record_id, select_json));
CREATE TABLE IF NOT EXISTS sync_windows (key_json TEXT PRIMARY KEY, until_json TEXT);
";

fn bind(params: &[SqlParam]) -> Vec<rusqlite::types::Value> {
    use rusqlite::types::Value as V;
    params
        .iter()
        .map(|param| match param {
            SqlParam::Null => V::Null,
            SqlParam::Integer(i) => V::Integer(*i),
            SqlParam::Real(r) => V::Real(*r),
            SqlParam::Text(t) => V::Text(t.clone()),
            SqlParam::Boolean(b) => V::Integer(i64::from(*b)),
        })
        .collect()
}

fn execute(tx: &Connection, statement: &Statement) -> Result<usize, StoreError> {
    Ok(tx.prepare_cached(&statement.sql)?.execute(params_from_iter(bind(&statement.params)))?)
}

/// Reads rows of `collection` with `statement` (which selects its columns in order).
fn read_rows(
    conn: &Connection,
    collection: &Collection,
    statement: &Statement,
) -> Result<Vec<Row>, StoreError> {
    use rusqlite::types::ValueRef;
    let mut prepared = conn.prepare_cached(&statement.sql)?;
    let names: Vec<String> = prepared.column_names().map(String::from).collect();
    let rows = prepared.query_map(params_from_iter(bind(&statement.params)), |row| {
        let mut raw = Vec::with_capacity(names.len());
        for (index, name) in names.iter().enumerate() {
            let cell = match row.get_ref(index)? {
                ValueRef::Null => Value::Null,
                ValueRef::Integer(i) => Value::from(i),
                ValueRef::Real(r) => Value::from(r),
                ValueRef::Text(t) => Value::from(String::from_utf8_lossy(t).into_owned()),
                ValueRef::Blob(_) => Value::Null,
            };
            raw.push((name.clone(), cell));
        }
        Ok(raw)
    })?;
    let mut out = Vec::new();
    for raw in rows {
        out.push(sql::decode_row(collection, raw?));
    }
    Ok(out)
}

impl LocalStore {
    /// Opens the store on `conn`, creating tables as needed. `new_client_id` is called
    /// once, the first time, to name this client for good.
    pub fn open(
        conn: Connection,
        model: SyncModel,
        new_client_id: impl FnOnce() -> String,
    ) -> Result<Self, StoreError> {
        conn.execute_batch(ENGINE_SCHEMA)?;
        let existing: Option<String> = conn
            .query_row("SELECT value FROM sync_meta WHERE key = 'client_id'", [], |row| row.get(0))
            .optional()?;
        let version = model.schema_version();
        let built_for: Option<String> = conn
            .query_row("SELECT value FROM sync_meta WHERE key = 'schema_version'", [], |row| row.get(0))
            .optional()?;
        let mut store = Self { conn, model, client_id: String::new(), upgrade_rejections: Vec::new() };
        if existing.is_some() && built_for.as_deref() != Some(version.as_str()) {
            store.upgrade_rejections = store.rebuild_for_model()?;
        }
        for collection in store.model.collections() {
            store.conn.execute_batch(&sql::create_table(Dialect::Sqlite, collection))?;
        }
        store.conn.execute(
            "INSERT INTO sync_meta (key, value) VALUES ('schema_version', ?1) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [&version],
        )?;
        store.client_id = match existing {
            Some(id) => id,
            None => {
                let id = new_client_id();
                store.conn.execute("INSERT INTO sync_meta (key, value) VALUES ('client_id', ?1)", [&id])?;
                id
            }
        };
        Ok(store)
    }

    /// The queued writes the model upgrade at open refused, with their outcomes (once).
    pub fn take_upgrade_rejections(&mut self) -> Vec<(String, MutationOutcome)> {
        std::mem::take(&mut self.upgrade_rejections)
    }

    /// Rebuilds the collection tables for this model, in one transaction: drops every
    /// collection table, forgets the server's images and the cursor, creates the
    /// model's tables, and replays the outbox on them (re-planned by this model; the
    /// writes it refuses leave the outbox as rejected).
    fn rebuild_for_model(&mut self) -> Result<Vec<(String, MutationOutcome)>, StoreError> {
        let tx = self.conn.transaction()?;
        let old_tables: Vec<String> = tx
            .prepare(
                "SELECT name FROM sqlite_master WHERE type = 'table' \
                 AND name NOT LIKE 'sync\\_%' ESCAPE '\\' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'",
            )?
            .query_map([], |row| row.get(0))?
            .collect::<Result<_, _>>()?;
        for table in old_tables {
            tx.execute_batch(&format!("DROP TABLE {}", sql::quote(&table)))?;
        }
        tx.execute_batch(
            "DELETE FROM sync_confirmed; DELETE FROM sync_absent; DELETE FROM sync_windows; \
             DELETE FROM sync_meta WHERE key = 'cursor';",
        )?;
        for collection in self.model.collections() {
            tx.execute_batch(&sql::create_table(Dialect::Sqlite, collection))?;
        }
        let client_id: String =
            tx.query_row("SELECT value FROM sync_meta WHERE key = 'client_id'", [], |row| row.get(0))?;
        let queued: Vec<(String, String, String, String)> = tx
            .prepare("SELECT id, name, args_json, record_id FROM sync_outbox ORDER BY position")?
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)))?
            .collect::<Result<_, _>>()?;
        let mut rejected = Vec::new();
        let mut touched = BTreeSet::new();
        for (id, name, args_json, record_id) in queued {
            let args: Value = serde_json::from_str(&args_json)?;
            // The write's own time: the page minted its id (a ULID) when it was made.
            let made_ms = sync::ids::parse_id(sync::ids::OUTBOX, &id)
                .map_or(0, |ulid| i64::try_from(ulid.timestamp_ms()).unwrap_or(0));
            let ctx = MutationContext {
                client_id: client_id.clone(),
                record_id: record_id.clone(),
                now_ms: made_ms,
            };
            match self.model.validate_mutation(&name, &args, &ctx) {
                Ok(validated) => {
                    tx.execute(
                        "UPDATE sync_outbox SET collection = ?2, operation_json = ?3 WHERE id = ?1",
                        params![id, validated.collection, serde_json::to_string(&validated.operation)?],
                    )?;
                    touched.insert(Touched { collection: validated.collection, record_id });
                }
                Err(error) => {
                    let outcome = MutationOutcome::Rejected {
                        reason: format!("the app was updated and no longer accepts this write: {error}"),
                    };
                    tx.execute("DELETE FROM sync_outbox WHERE id = ?1", [&id])?;
                    tx.execute(
                        "INSERT INTO sync_resolved (id, record_id, outcome_json) VALUES (?1, ?2, ?3)",
                        params![id, record_id, serde_json::to_string(&outcome)?],
                    )?;
                    rejected.push((id, outcome));
                }
            }
        }
        refresh_all(&tx, &self.model, &touched)?;
        tx.commit()?;
        Ok(rejected)
    }

    /// Opens the store like [`Self::open`], naming this client by a secret key:
    /// `new_key` is called once to make it, and the client id is the one the key
    /// proves (`sync::ids::client_id_for_key`). A store made before keys existed is
    /// given a key and the id it proves; its pending writes go out under that id.
    /// Returns the store and its key.
    pub fn open_keyed(
        conn: Connection,
        model: SyncModel,
        new_key: impl FnOnce() -> String,
    ) -> Result<(Self, String), StoreError> {
        let mut generator = Some(new_key);
        let mut minted = None;
        let mut store = Self::open(conn, model, || {
            let key = generator.take().map(|make| make()).unwrap_or_default();
            let id = sync::ids::client_id_for_key(&key);
            minted = Some(key);
            id
        })?;
        let stored: Option<String> = store
            .conn
            .query_row("SELECT value FROM sync_meta WHERE key = 'client_key'", [], |row| row.get(0))
            .optional()?;
        let key = match (stored, minted, generator.take()) {
            (Some(key), _, _) if sync::ids::client_id_for_key(&key) == store.client_id => key,
            (_, Some(key), _) => key,
            // An older store (no key, or one that does not prove its id): a new key.
            (_, None, Some(make)) => make(),
            (_, None, None) => return Err(StoreError::NoClientKey),
        };
        let id = sync::ids::client_id_for_key(&key);
        store.conn.execute(
            "INSERT INTO sync_meta (key, value) VALUES ('client_key', ?1) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [&key],
        )?;
        store.conn.execute("UPDATE sync_meta SET value = ?1 WHERE key = 'client_id'", [&id])?;
        store.client_id = id;
        Ok((store, key))
    }

    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    pub fn model(&self) -> &SyncModel {
        &self.model
    }

    pub fn cursor(&self) -> Result<Cursor, StoreError> {
        let value: Option<String> = self
            .conn
            .query_row("SELECT value FROM sync_meta WHERE key = 'cursor'", [], |row| row.get(0))
            .optional()?;
        Ok(Cursor(value.and_then(|v| v.parse().ok()).unwrap_or(0)))
    }

    fn collection(&self, name: &str) -> Result<&Collection, StoreError> {
        self.model.collection(name).ok_or_else(|| StoreError::UnknownCollection(name.into()))
    }

    /// Runs a select (from a validated named query) on the visible rows. A windowed
    /// one (with a limit) reads only its covered part ([`Self::query_window`]).
    pub fn query(&self, select: &Select) -> Result<Vec<Row>, StoreError> {
        if select.limit.is_some() {
            return Ok(self.query_window(select)?.rows);
        }
        let collection = self.collection(&select.collection)?;
        read_rows(&self.conn, collection, &sql::select(Dialect::Sqlite, collection, select)?)
    }

    /// A windowed query's rows (its limit is the window's size): the first of its
    /// covered part (`sync::window`), and whether that part holds the whole window.
    /// A query without a limit is read whole, covered.
    pub fn query_window(&self, select: &Select) -> Result<WindowRead, StoreError> {
        let Some(size) = select.limit else {
            return Ok(WindowRead { rows: self.query(select)?, covered: true, more: false, reach: None });
        };
        let collection = self.collection(&select.collection)?;
        let reach = self.window_reach(select)?;
        let until = match &reach {
            Some(Reach::Until(until)) => Some(until.as_slice()),
            _ => None,
        };
        let page = sql::Page { until, rows: Some(size.saturating_add(1)), ..sql::Page::default() };
        let mut rows = read_rows(
            &self.conn,
            collection,
            &sql::select_page(Dialect::Sqlite, collection, select, &page)?,
        )?;
        let beyond = rows.len() > size as usize;
        // Covered: the covered part holds the window, or reaches the end. More: rows
        // follow the window, held here or (past the covered part) upstream.
        let full = rows.len() >= size as usize;
        let (covered, more) = match reach {
            Some(Reach::End) => (true, beyond),
            Some(Reach::Until(_)) => (full, true),
            // Never synced here: what is held, until the server says more.
            None => (full, beyond),
        };
        rows.truncate(size as usize);
        Ok(WindowRead { rows, covered, more, reach })
    }

    /// How far a windowed query's covered part reaches (`None`: nothing is known).
    pub fn window_reach(&self, select: &Select) -> Result<Option<Reach>, StoreError> {
        let key = serde_json::to_string(&sync::window::key(select))?;
        let found: Option<Option<String>> = self
            .conn
            .prepare_cached("SELECT until_json FROM sync_windows WHERE key_json = ?1")?
            .query_row([&key], |row| row.get(0))
            .optional()?;
        Ok(match found {
            None => None,
            Some(None) => Some(Reach::End),
            Some(Some(json)) => Some(Reach::Until(serde_json::from_str(&json)?)),
        })
    }

    /// Every visible row of a collection, by primary key.
    pub fn rows(&self, collection: &str) -> Result<Vec<Row>, StoreError> {
        self.query(&Select::from(collection))
    }

    /// The pending mutations, oldest first, at most `limit`.
    pub fn outbox(&self, limit: usize) -> Result<Vec<PendingMutation>, StoreError> {
        let mut statement = self.conn.prepare_cached(
            "SELECT id, name, args_json, collection, record_id, operation_json FROM sync_outbox ORDER BY position LIMIT ?1",
        )?;
        let rows = statement.query_map([i64::try_from(limit).unwrap_or(i64::MAX)], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, String>(3)?,
                row.get::<_, String>(4)?,
                row.get::<_, String>(5)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, name, args, collection, record_id, operation) = row?;
            out.push(PendingMutation {
                id,
                name,
                args: serde_json::from_str(&args)?,
                collection,
                record_id,
                operation: serde_json::from_str(&operation)?,
            });
        }
        Ok(out)
    }

    /// Record ids of `collection` with pending writes (the UI marks them).
    pub fn pending_records(&self, collection: &str) -> Result<Vec<String>, StoreError> {
        let mut statement = self.conn.prepare_cached(
            "SELECT DISTINCT record_id FROM sync_outbox WHERE collection = ?1 ORDER BY record_id",
        )?;
        let ids = statement.query_map([collection], |row| row.get::<_, String>(0))?;
        Ok(ids.collect::<Result<_, _>>()?)
    }

    /// The visible image of each touched record and whether it has pending writes:
    /// what a live view in the page needs to follow a change without reading its
    /// query again (see `sync::view::LiveRows::apply_record`).
    pub fn record_views(&self, touched: &BTreeSet<Touched>) -> Result<Vec<RecordView>, StoreError> {
        let mut out = Vec::with_capacity(touched.len());
        for record in touched {
            let collection = self.collection(&record.collection)?;
            let statement = sql::select_by_id(Dialect::Sqlite, collection, &record.record_id)?;
            let row = read_rows(&self.conn, collection, &statement)?.into_iter().next();
            let pending = self
                .conn
                .prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM sync_outbox WHERE collection = ?1 AND record_id = ?2)",
                )?
                .query_row([&record.collection, &record.record_id], |row| row.get::<_, bool>(0))?;
            out.push(RecordView {
                collection: record.collection.clone(),
                record_id: record.record_id.clone(),
                row,
                pending,
            });
        }
        Ok(out)
    }

    pub fn outbox_len(&self) -> Result<usize, StoreError> {
        let count: i64 = self.conn.query_row("SELECT COUNT(*) FROM sync_outbox", [], |row| row.get(0))?;
        Ok(usize::try_from(count).unwrap_or(0))
    }

    /// Validates a named write, applies it to the visible rows and queues it, in one
    /// transaction. Fails (and changes nothing) when it is invalid or cannot apply to
    /// what this client sees.
    pub fn mutate(
        &mut self,
        mutation_id: &str,
        name: &str,
        args: &Value,
        ctx: &MutationContext,
    ) -> Result<(PendingMutation, Touched), StoreError> {
        if let Some(state) = self.mutation_state(mutation_id)? {
            return Err(StoreError::Duplicate { id: mutation_id.into(), state });
        }
        let validated = self.model.validate_mutation(name, args, ctx).map_err(MutateError::from)?;
        let collection = self.collection(&validated.collection)?.clone();
        let tx = self.conn.transaction()?;
        let current = visible(&tx, &collection, &validated.record_id)?;
        validated
            .operation
            .apply(current.as_ref(), &collection.primary_key)
            .map_err(|reason| StoreError::Mutate(MutateError::NotApplicable(reason)))?;
        tx.prepare_cached(
            "INSERT INTO sync_outbox (id, name, args_json, collection, record_id, operation_json) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![
                mutation_id,
                validated.name,
                validated.args.to_string(),
                validated.collection,
                validated.record_id,
                serde_json::to_string(&validated.operation)?,
            ],
        )?;
        refresh(&tx, &collection, &validated.record_id)?;
        tx.commit()?;
        let pending = PendingMutation {
            id: mutation_id.into(),
            name: validated.name,
            args: validated.args,
            collection: validated.collection.clone(),
            record_id: validated.record_id.clone(),
            operation: validated.operation,
        };
        Ok((pending, Touched { collection: validated.collection, record_id: validated.record_id }))
    }

    /// Resolves pushed mutations with the server's answers. Unknown ids (answered
    /// before) are ignored.
    pub fn resolve(
        &mut self,
        outcomes: &[(String, MutationOutcome)],
    ) -> Result<BTreeSet<Touched>, StoreError> {
        let pulled_through = self.cursor()?;
        let tx = self.conn.transaction()?;
        let mut touched = BTreeSet::new();
        for (mutation_id, outcome) in outcomes {
            let pending: Option<(String, String)> = tx
                .query_row(
                    "SELECT collection, record_id FROM sync_outbox WHERE id = ?1",
                    [mutation_id],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()?;
            let Some((collection, record_id)) = pending else { continue };
            tx.execute("DELETE FROM sync_outbox WHERE id = ?1", [mutation_id])?;
            tx.prepare_cached(
                "INSERT OR REPLACE INTO sync_resolved (id, record_id, outcome_json) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![mutation_id, record_id, serde_json::to_string(outcome)?])?;
            // At or below the cursor, the pulled state (later changes included) wins
            // over a replayed answer's image (see `sync::client::ClientState::resolve`).
            if let MutationOutcome::Confirmed { row, seq } = outcome
                && *seq > pulled_through
            {
                install(&tx, &collection, &record_id, *seq, row.as_ref())?;
            }
            touched.insert(Touched { collection, record_id });
        }
        refresh_all(&tx, &self.model, &touched)?;
        tx.execute(
            "DELETE FROM sync_resolved WHERE position <= (SELECT MAX(position) FROM sync_resolved) - ?1",
            [RESOLVED_KEPT],
        )?;
        tx.commit()?;
        Ok(touched)
    }

    /// Whether `mutation_id` was seen here: still pending, or answered (the latest
    /// `RESOLVED_KEPT` answers are remembered). `None`: never seen.
    pub fn mutation_state(&self, mutation_id: &str) -> Result<Option<MutationState>, StoreError> {
        let pending: Option<String> = self
            .conn
            .prepare_cached("SELECT record_id FROM sync_outbox WHERE id = ?1")?
            .query_row([mutation_id], |row| row.get(0))
            .optional()?;
        if let Some(record_id) = pending {
            return Ok(Some(MutationState::Pending { record_id }));
        }
        let resolved: Option<(String, String)> = self
            .conn
            .prepare_cached("SELECT record_id, outcome_json FROM sync_resolved WHERE id = ?1")?
            .query_row([mutation_id], |row| Ok((row.get(0)?, row.get(1)?)))
            .optional()?;
        resolved
            .map(|(record_id, json)| {
                Ok(MutationState::Resolved { record_id, outcome: serde_json::from_str(&json)? })
            })
            .transpose()
    }

    /// Applies pulled changes and moves the cursor.
    pub fn apply_pull(
        &mut self,
        changes: &[Change],
        cursor: Cursor,
    ) -> Result<BTreeSet<Touched>, StoreError> {
        let tx = self.conn.transaction()?;
        let mut touched = BTreeSet::new();
        for change in changes {
            if self.model.collection(&change.collection).is_none() {
                continue;
            }
            install(&tx, &change.collection, &change.record_id, change.seq, change.row.as_ref())?;
            touched.insert(Touched {
                collection: change.collection.clone(),
                record_id: change.record_id.clone(),
            });
        }
        refresh_all(&tx, &self.model, &touched)?;
        tx.execute(
            "INSERT INTO sync_meta (key, value) VALUES ('cursor', ?1) \
             ON CONFLICT (key) DO UPDATE SET value = CASE WHEN CAST(excluded.value AS INTEGER) > CAST(value AS INTEGER) THEN excluded.value ELSE value END",
            [cursor.0.to_string()],
        )?;
        tx.commit()?;
        Ok(touched)
    }

    /// Installs a query's server snapshot (`rows` as of `cursor`): each row becomes the
    /// confirmed image of its record, and a record this store holds as confirmed and
    /// matching the query, but absent from the snapshot, was deleted upstream. Newer
    /// images already held (sequence number above `cursor`) stay.
    ///
    /// Cursors: when this is the only query the store syncs (`only_query`) and it has
    /// pulled nothing yet (cursor 0), the store's cursor moves to `cursor` in the same
    /// transaction, so its first pull does not re-read what the snapshot holds. (With
    /// other queries synced, the store's cursor says what all of them hold: a later
    /// snapshot must not move it past an earlier query's changes.) A snapshot older
    /// than the store's cursor is refused ([`StoreError::StaleSnapshot`]): installed,
    /// it would miss the changes in between.
    pub fn apply_snapshot(
        &mut self,
        select: &Select,
        rows: &[Row],
        cursor: Cursor,
        only_query: bool,
    ) -> Result<BTreeSet<Touched>, StoreError> {
        self.install_answer(select, rows, cursor, Some(only_query), None)
    }

    /// [`Self::apply_snapshot`] for a windowed query: `rows` are the first pages of
    /// its answer, covering `coverage` (from the start); records outside it are
    /// left as they are, and the window's covered part is that.
    pub fn apply_window_snapshot(
        &mut self,
        select: &Select,
        rows: &[Row],
        cursor: Cursor,
        only_query: bool,
        coverage: &Coverage,
    ) -> Result<BTreeSet<Touched>, StoreError> {
        self.install_answer(select, rows, cursor, Some(only_query), Some(coverage))
    }

    /// The page of a synced windowed query after its covered part (a `load_more`, or
    /// the row a delete inside the window lets in): installed like a snapshot's
    /// rows, and the covered part reaches to its end when it starts where the covered
    /// part ended. Its cursor may be older than what was pulled: each record's newer
    /// image wins, and every change on the topic after the query's snapshot reaches
    /// this store, so nothing between is missed.
    pub fn apply_window_page(
        &mut self,
        select: &Select,
        rows: &[Row],
        cursor: Cursor,
        coverage: &Coverage,
    ) -> Result<BTreeSet<Touched>, StoreError> {
        self.install_answer(select, rows, cursor, None, Some(coverage))
    }

    /// Installs rows of a query's answer exact at `cursor`. `snapshot`: a first
    /// answer (`Some(only_query)`, see [`Self::apply_snapshot`]), else a later page
    /// of a synced window. `coverage`: the part of a windowed query's order the rows
    /// cover (`None`: the whole answer).
    fn install_answer(
        &mut self,
        select: &Select,
        rows: &[Row],
        cursor: Cursor,
        snapshot: Option<bool>,
        coverage: Option<&Coverage>,
    ) -> Result<BTreeSet<Touched>, StoreError> {
        let collection = self.collection(&select.collection)?.clone();
        let pulled_through = self.cursor()?;
        if snapshot.is_some() && cursor < pulled_through {
            return Err(StoreError::StaleSnapshot { snapshot: cursor.0, held: pulled_through.0 });
        }
        let covers = |row: &Row| coverage.is_none_or(|part| part.contains(&collection, select, row));
        let reach_before = match coverage {
            Some(_) => self.window_reach(select)?,
            None => None,
        };
        // Records with local writes pending: their visible row is recomputed; every
        // other record shows exactly its new confirmed image.
        let pending: BTreeSet<String> = self.pending_records(&collection.name)?.into_iter().collect();
        let tx = self.conn.transaction()?;
        // Confirmed records this query would show, read before the snapshot lands: any
        // the snapshot lacks were deleted upstream.
        let held: Vec<(String, Option<String>, i64)> = tx
            .prepare_cached(
                "SELECT record_id, row_json, seq FROM sync_confirmed WHERE collection = ?1 AND row_json IS NOT NULL",
            )?
            .query_map([&collection.name], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
            .collect::<Result<_, _>>()?;
        let mut touched = BTreeSet::new();
        let mut present = BTreeSet::new();
        for row in rows {
            let Some(record_id) = collection.record_id(row) else { continue };
            present.insert(record_id.to_string());
            let newer_held = confirmed_seq(&tx, &collection.name, record_id)?.is_some_and(|seq| seq > cursor);
            install(&tx, &collection.name, record_id, cursor, Some(row))?;
            if pending.contains(record_id) || newer_held {
                refresh(&tx, &collection, record_id)?;
            } else {
                execute(&tx, &sql::upsert_row(Dialect::Sqlite, &collection, row)?)?;
            }
            touched.insert(Touched { collection: collection.name.clone(), record_id: record_id.into() });
        }
        // A record this store shows on the query (its server image, or a pending write
        // of a record it has no image of) but absent from the snapshot is not on the
        // query as of `cursor`: it was deleted or moved away. Remembered as that (and
        // no more: it may be on another query), so no image of it on this query as
        // old as the snapshot can come back (a replayed answer, a late poke), while
        // one from another query, or a newer one, can; a held image is dropped.
        let select_json = serde_json::to_string(select)?;
        let mut absent = Vec::new();
        let snapshot_seq = i64::try_from(cursor.0).unwrap_or(i64::MAX);
        for (record_id, json, seq) in held {
            let row: Option<Row> = json.map(|json| serde_json::from_str(&json)).transpose()?;
            // An image newer than the snapshot stays.
            if seq <= snapshot_seq
                && !present.contains(&record_id)
                && row.as_ref().is_some_and(|row| select.matches(row) && covers(row))
            {
                tx.execute(
                    "UPDATE sync_confirmed SET row_json = NULL WHERE collection = ?1 AND record_id = ?2",
                    params![collection.name, record_id],
                )?;
                absent.push(record_id);
            }
        }
        for record_id in pending.iter().filter(|id| !present.contains(*id)) {
            if confirmed_seq(&tx, &collection.name, record_id)?.is_none()
                && visible(&tx, &collection, record_id)?
                    .is_some_and(|row| select.matches(&row) && covers(&row))
            {
                absent.push(record_id.clone());
            }
        }
        for record_id in absent {
            tx.execute(
                "INSERT INTO sync_absent (collection, record_id, select_json, through) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (collection, record_id, select_json) DO UPDATE SET through = MAX(through, excluded.through)",
                params![collection.name, record_id, select_json, i64::try_from(cursor.0).unwrap_or(i64::MAX)],
            )?;
            refresh(&tx, &collection, &record_id)?;
            touched.insert(Touched { collection: collection.name.clone(), record_id });
        }
        if let Some(part) = coverage {
            // The covered part grows only where it is contiguous: a first answer sets
            // it; a later page extends it only from where it ended.
            let contiguous = match (&part.after, &reach_before) {
                (None, _) => true,
                (Some(after), Some(Reach::Until(until))) => after == until,
                _ => false,
            };
            if contiguous {
                let key = serde_json::to_string(&sync::window::key(select))?;
                let until = part.until.as_ref().map(serde_json::to_string).transpose()?;
                tx.execute(
                    "INSERT INTO sync_windows (key_json, until_json) VALUES (?1, ?2) \
                     ON CONFLICT (key_json) DO UPDATE SET until_json = excluded.until_json",
                    params![key, until],
                )?;
            }
        }
        if snapshot == Some(true) && pulled_through == Cursor::START && cursor > pulled_through {
            tx.execute(
                "INSERT INTO sync_meta (key, value) VALUES ('cursor', ?1) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [cursor.0.to_string()],
            )?;
        }
        tx.commit()?;
        Ok(touched)
    }

    /// Removes every record that none of `live` (the queries still in use, a
    /// windowed one with its window's size as limit) shows and that has no pending
    /// write, in one transaction. A live window's covered part is cut back to the
    /// rows it shows; other queries' windows are forgotten. A record removed here
    /// comes back with its query's next snapshot.
    pub fn evict(&mut self, live: &[Select]) -> Result<Eviction, StoreError> {
        let mut keep: BTreeSet<(String, String)> = BTreeSet::new();
        let mut cuts = Vec::new();
        for select in live {
            let collection = self.collection(&select.collection)?.clone();
            // A window with held rows past it is cut back to its last row.
            let wider = select.limit.map(|size| sync::window::sized(select, size.saturating_add(1)));
            let mut rows = self.query(wider.as_ref().unwrap_or(select))?;
            if let Some(size) = select.limit
                && rows.len() > size as usize
            {
                rows.truncate(size as usize);
                if let Some(last) = rows.last() {
                    cuts.push((select.clone(), sync::window::keyset(&collection, select, last)));
                }
            }
            for row in &rows {
                if let Some(id) = collection.record_id(row) {
                    keep.insert((collection.name.clone(), id.to_string()));
                }
            }
        }
        let tx = self.conn.transaction()?;
        tx.execute_batch(
            "CREATE TEMP TABLE IF NOT EXISTS sync_keep (collection TEXT NOT NULL, record_id TEXT NOT NULL, \
               PRIMARY KEY (collection, record_id)); \
             DELETE FROM sync_keep; \
             INSERT OR IGNORE INTO sync_keep SELECT collection, record_id FROM sync_outbox;",
        )?;
        for (collection, record_id) in &keep {
            tx.prepare_cached("INSERT OR IGNORE INTO sync_keep (collection, record_id) VALUES (?1, ?2)")?
                .execute([collection, record_id])?;
        }
        let mut eviction = Eviction::default();
        for collection in self.model.collections() {
            let (table, key) = (sql::quote(&collection.name), sql::quote(&collection.primary_key));
            let gone: Vec<String> = tx
                .prepare(&format!(
                    "SELECT record_id FROM sync_confirmed WHERE collection = ?1 \
                       AND record_id NOT IN (SELECT record_id FROM sync_keep WHERE collection = ?1) \
                     UNION SELECT {key} FROM {table} \
                       WHERE {key} NOT IN (SELECT record_id FROM sync_keep WHERE collection = ?1)"
                ))?
                .query_map([&collection.name], |row| row.get(0))?
                .collect::<Result<_, _>>()?;
            if gone.is_empty() {
                continue;
            }
            tx.execute(
                "DELETE FROM sync_confirmed WHERE collection = ?1 \
                   AND record_id NOT IN (SELECT record_id FROM sync_keep WHERE collection = ?1)",
                [&collection.name],
            )?;
            tx.execute(
                "DELETE FROM sync_absent WHERE collection = ?1 \
                   AND record_id NOT IN (SELECT record_id FROM sync_keep WHERE collection = ?1)",
                [&collection.name],
            )?;
            tx.execute(
                &format!(
                    "DELETE FROM {table} WHERE {key} NOT IN (SELECT record_id FROM sync_keep WHERE collection = ?1)"
                ),
                [&collection.name],
            )?;
            eviction.touched.extend(
                gone.into_iter().map(|record_id| Touched { collection: collection.name.clone(), record_id }),
            );
        }
        let live_keys: BTreeSet<String> = live
            .iter()
            .filter(|select| select.limit.is_some())
            .map(|select| serde_json::to_string(&sync::window::key(select)))
            .collect::<Result<_, _>>()?;
        let stored: Vec<String> = tx
            .prepare("SELECT key_json FROM sync_windows")?
            .query_map([], |row| row.get(0))?
            .collect::<Result<_, _>>()?;
        for key in stored.iter().filter(|key| !live_keys.contains(*key)) {
            tx.execute("DELETE FROM sync_windows WHERE key_json = ?1", [key])?;
        }
        for (select, until) in cuts {
            let key = serde_json::to_string(&sync::window::key(&select))?;
            eviction.windows_cut += tx.execute(
                "UPDATE sync_windows SET until_json = ?2 WHERE key_json = ?1",
                params![key, serde_json::to_string(&until)?],
            )?;
        }
        tx.execute_batch("DELETE FROM sync_keep;")?;
        tx.commit()?;
        Ok(eviction)
    }

    /// Back to cursor 0, for a client told `resync_required`: its queries' snapshots
    /// are fetched again, and the first one sets the cursor. Rows and outbox stay.
    pub fn forget_cursor(&mut self) -> Result<(), StoreError> {
        self.conn.execute("DELETE FROM sync_meta WHERE key = 'cursor'", [])?;
        Ok(())
    }

    /// The server's image of a record, if it sent one.
    pub fn confirmed_record(&self, collection: &str, record_id: &str) -> Result<Option<Row>, StoreError> {
        confirmed(&self.conn, collection, record_id).map(|found| found.and_then(|(_, row)| row))
    }
}

/// The confirmed image of a record and its sequence number.
fn confirmed(
    conn: &Connection,
    collection: &str,
    record_id: &str,
) -> Result<Option<(Cursor, Option<Row>)>, StoreError> {
    let found: Option<(i64, Option<String>)> = conn
        .prepare_cached("SELECT seq, row_json FROM sync_confirmed WHERE collection = ?1 AND record_id = ?2")?
        .query_row([collection, record_id], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    match found {
        None => Ok(None),
        Some((seq, json)) => {
            let row = json.map(|json| serde_json::from_str::<Row>(&json)).transpose()?;
            Ok(Some((Cursor(u64::try_from(seq).unwrap_or(0)), row)))
        }
    }
}

/// The sequence number of a record's confirmed image, if any.
fn confirmed_seq(conn: &Connection, collection: &str, record_id: &str) -> Result<Option<Cursor>, StoreError> {
    let seq: Option<i64> = conn
        .prepare_cached("SELECT seq FROM sync_confirmed WHERE collection = ?1 AND record_id = ?2")?
        .query_row([collection, record_id], |row| row.get(0))
        .optional()?;
    Ok(seq.map(|seq| Cursor(u64::try_from(seq).unwrap_or(0))))
}

/// Stores a server image unless a newer one is already there.
fn install(
    tx: &Transaction<'_>,
    collection: &str,
    record_id: &str,
    seq: Cursor,
    row: Option<&Row>,
) -> Result<(), StoreError> {
    let seq = i64::try_from(seq.0).unwrap_or(i64::MAX);
    // An image on a query whose snapshot, as new as it or newer, did not have the
    // record is out of date there (see `apply_snapshot`).
    if let Some(row) = row {
        let facts: Vec<String> = tx
            .prepare_cached(
                "SELECT select_json FROM sync_absent WHERE collection = ?1 AND record_id = ?2 AND through >= ?3",
            )?
            .query_map(params![collection, record_id, seq], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        for json in facts {
            let select: Select = serde_json::from_str(&json)?;
            if select.matches(row) {
                return Ok(());
            }
        }
    }
    let json = row.map(serde_json::to_string).transpose()?;
    tx.prepare_cached(
        "INSERT INTO sync_confirmed (collection, record_id, seq, row_json) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (collection, record_id) DO UPDATE SET seq = excluded.seq, row_json = excluded.row_json \
         WHERE excluded.seq > sync_confirmed.seq \
            OR (excluded.seq = sync_confirmed.seq AND sync_confirmed.row_json IS NULL AND excluded.row_json IS NOT NULL)",
    )?
    .execute(params![collection, record_id, seq, json])?;
    Ok(())
}

/// The visible image of a record: confirmed + pending writes in order (a pending write
/// that no longer applies is skipped; the server will reject it).
fn visible(conn: &Connection, collection: &Collection, record_id: &str) -> Result<Option<Row>, StoreError> {
    let mut row = confirmed(conn, &collection.name, record_id)?.and_then(|(_, row)| row);
    let mut statement = conn.prepare_cached(
        "SELECT operation_json FROM sync_outbox WHERE collection = ?1 AND record_id = ?2 ORDER BY position",
    )?;
    let operations = statement.query_map([&collection.name, record_id], |r| r.get::<_, String>(0))?;
    for operation in operations {
        let operation: Operation = serde_json::from_str(&operation?)?;
        if let Ok(next) = operation.apply(row.as_ref(), &collection.primary_key) {
            row = next;
        }
    }
    Ok(row)
}

fn refresh_all(conn: &Connection, model: &SyncModel, touched: &BTreeSet<Touched>) -> Result<(), StoreError> {
    for record in touched {
        let collection = model
            .collection(&record.collection)
            .ok_or_else(|| StoreError::UnknownCollection(record.collection.clone()))?;
        refresh(conn, collection, &record.record_id)?;
    }
    Ok(())
}

/// Rewrites a record's visible row from its confirmed image and pending writes.
fn refresh(conn: &Connection, collection: &Collection, record_id: &str) -> Result<(), StoreError> {
    match visible(conn, collection, record_id)? {
        Some(row) => {
            execute(conn, &sql::upsert_row(Dialect::Sqlite, collection, &row)?)?;
        }
        None => {
            let delete = sync::operation::Delete::record(collection.name.clone(), record_id);
            execute(conn, &sql::write(Dialect::Sqlite, collection, &Operation::Delete(delete))?)?;
        }
    }
    Ok(())
}
