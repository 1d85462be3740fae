//! The upstream database, the source of truth: D1 (the default) or PostgreSQL through
//! a Hyperdrive binding, chosen by the `SYNC_UPSTREAM` setting. Both sit behind
//! [`Database`]; the connector builds its SQL with [`Database::dialect`] and never
//! looks at which one it talks to.
//!
//! Rows come back in *storage form*, the same for both: text as strings, numbers as
//! JSON numbers, booleans as JSON booleans (PostgreSQL) or 0/1 (SQLite), JSON columns
//! as JSON text. `sync::sql::decode_row` turns them into model rows.

mod d1;
#[cfg(not(target_family = "wasm"))]
mod faults;
mod postgres;
#[cfg(not(target_family = "wasm"))]
mod sqlite;

use std::cell::Cell;

use serde_json::{Map, Value};
use sync::sql::{Dialect, Statement};
use worker::Env;

pub use d1::D1;
#[cfg(not(target_family = "wasm"))]
pub use faults::{Call, Fault, Faulty};
pub use postgres::Postgres;
#[cfg(not(target_family = "wasm"))]
pub use sqlite::Sqlite;

use crate::config;
use crate::engine::Engine;
use crate::error::ApiError;

pub type RawRow = Map<String, Value>;

thread_local! {
    /// The app's tables matched its model once in this isolate.
    static SCHEMA_MATCHES: Cell<bool> = const { Cell::new(false) };
}

/// What the connector needs from an upstream database.
// The worker is single-threaded and its futures are not Send anyway.
#[allow(async_fn_in_trait)]
pub trait Database {
    fn dialect(&self) -> Dialect;

    /// One statement on its own (its own transaction).
    async fn rows(&self, statement: &Statement) -> Result<Vec<RawRow>, ApiError>;

    /// Reads that must agree with each other (rows and the cursor they are exact at):
    /// one transaction, one snapshot. Each statement's rows, in order.
    async fn read(&self, statements: &[Statement]) -> Result<Vec<Vec<RawRow>>, ApiError>;

    /// Reads that need not agree with each other: as few round trips as the database
    /// allows, no shared snapshot. Each statement's rows, in order.
    async fn read_each(&self, statements: &[Statement]) -> Result<Vec<Vec<RawRow>>, ApiError>;

    /// Writes as one transaction: all of them or none. Writers that append to the
    /// change log commit one at a time, so cursors only ever pass committed changes.
    async fn write(&self, statements: &[Statement]) -> Result<Vec<Vec<RawRow>>, ApiError>;
}

/// Which database `SYNC_UPSTREAM` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    D1,
    Postgres,
}

impl Kind {
    pub fn from_env(env: &Env) -> Result<Self, ApiError> {
        match config::setting(env, config::UPSTREAM).as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("d1") => Ok(Kind::D1),
            Some("postgres" | "postgresql") => Ok(Kind::Postgres),
            Some(other) => Err(ApiError::NotConfigured {
                reason: format!("{} is `{other}`; use `d1` or `postgres`", config::UPSTREAM),
            }),
        }
    }
}

/// The configured upstream, opened for one request; each call's time goes to the
/// request's trace, if it has one.
pub struct Upstream {
    backend: Backend,
    trace: Option<crate::observe::Trace>,
}

enum Backend {
    D1(D1),
    Postgres(Postgres),
}

impl Upstream {
    /// Opens the configured database for one request. The first use in an isolate
    /// also makes sure the engine's tables exist (and, on PostgreSQL, applies the
    /// app's migrations given to the [`Engine`]).
    ///
    /// Until the app's tables have been found to match its model once in this isolate,
    /// each open checks them: a mismatch (a migration not applied) is a clear 503
    /// `schema_mismatch`, not a failure of every statement that touches the table.
    pub async fn open(engine: &Engine, env: &Env) -> Result<Self, ApiError> {
        let mut db = Self::open_unchecked(engine, env).await?;
        db.trace = engine.trace().cloned();
        if !SCHEMA_MATCHES.with(Cell::get) {
            check_schema(&db, engine.model()).await?;
            SCHEMA_MATCHES.with(|matches| matches.set(true));
        }
        Ok(db)
    }

    /// [`Self::open`] without the schema check (for the health probe, which always
    /// checks afresh).
    pub async fn open_unchecked(engine: &Engine, env: &Env) -> Result<Self, ApiError> {
        let backend = match Kind::from_env(env)? {
            Kind::D1 => Backend::D1(D1::open(env).await?),
            Kind::Postgres => {
                Backend::Postgres(Postgres::connect(env, engine.app_postgres_migrations()).await?)
            }
        };
        Ok(Upstream { backend, trace: None })
    }

    /// The configured database for reading the change log from a Durable Object that
    /// knows no app: no migrations, no schema check (a failure is tried again later).
    pub async fn open_bare(env: &Env) -> Result<Self, ApiError> {
        let backend = match Kind::from_env(env)? {
            Kind::D1 => Backend::D1(D1::open(env).await?),
            Kind::Postgres => Backend::Postgres(Postgres::connect_bare(env).await?),
        };
        Ok(Upstream { backend, trace: None })
    }
}

/// Whether every collection of `model` has its table, its columns and its capture
/// triggers upstream: else a clear 503 `schema_mismatch`.
pub async fn check_schema<D: Database>(db: &D, model: &sync::SyncModel) -> Result<(), ApiError> {
    let rows = db.rows(&sync::sql::table_columns(db.dialect(), model)).await?;
    fn text<'a>(row: &'a RawRow, column: &str) -> &'a str {
        row.get(column).and_then(Value::as_str).unwrap_or_default()
    }
    let mut problems = sync::sql::schema_problems(
        model,
        rows.iter().map(|row| (text(row, "table_name"), text(row, "column_name"))),
    );
    // Without its capture triggers a table's writes would never reach the change
    // log: the connector's own writes would all be answered "nothing written".
    let installed =
        Statement { sql: sync::capture::installed_triggers(db.dialect()).into(), params: Vec::new() };
    let triggers = db.rows(&installed).await?;
    let missing =
        sync::capture::missing_triggers(db.dialect(), model, triggers.iter().map(|row| text(row, "name")));
    if !missing.is_empty() {
        problems.push(format!("change-capture trigger(s) {} missing", missing.join(", ")));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ApiError::SchemaMismatch {
            reason: format!(
                "the upstream database does not match the sync model: {}; apply the app's migrations",
                problems.join("; ")
            ),
        })
    }
}

impl Upstream {
    /// Runs one call, adding its time (and on D1, the rows it read and wrote) to the
    /// trace.
    async fn timed<T>(&self, call: impl std::future::Future<Output = T>) -> T {
        let started = crate::observe::clock_ms();
        let answer = call.await;
        if let Some(trace) = &self.trace {
            trace.upstream(crate::observe::clock_ms() - started);
            if let Backend::D1(db) = &self.backend {
                let usage = db.take_usage();
                trace.d1(usage.rows_read, usage.rows_written, usage.statements);
            }
        }
        answer
    }
}

impl Database for Upstream {
    fn dialect(&self) -> Dialect {
        match &self.backend {
            Backend::D1(db) => db.dialect(),
            Backend::Postgres(db) => db.dialect(),
        }
    }

    async fn rows(&self, statement: &Statement) -> Result<Vec<RawRow>, ApiError> {
        match &self.backend {
            Backend::D1(db) => self.timed(db.rows(statement)).await,
            Backend::Postgres(db) => self.timed(db.rows(statement)).await,
        }
    }

    async fn read(&self, statements: &[Statement]) -> Result<Vec<Vec<RawRow>>, ApiError> {
        match &self.backend {
            Backend::D1(db) => self.timed(db.read(statements)).await,
            Backend::Postgres(db) => self.timed(db.read(statements)).await,
        }
    }

    async fn read_each(&self, statements: &[Statement]) -> Result<Vec<Vec<RawRow>>, ApiError> {
        match &self.backend {
            Backend::D1(db) => self.timed(db.read_each(statements)).await,
            Backend::Postgres(db) => self.timed(db.read_each(statements)).await,
        }
    }

    async fn write(&self, statements: &[Statement]) -> Result<Vec<Vec<RawRow>>, ApiError> {
        match &self.backend {
            Backend::D1(db) => self.timed(db.write(statements)).await,
            Backend::Postgres(db) => self.timed(db.write(statements)).await,
        }
    }
}

/// The statement that reads the change log's head (column `head`).
pub fn head_statement(dialect: Dialect) -> Statement {
    Statement { sql: sync::sql::change_head(dialect).into(), params: Vec::new() }
}

/// The head a [`head_statement`] answered (0 when the log is empty).
pub fn head_of(rows: &[RawRow]) -> sync::Cursor {
    let head = rows.first().and_then(|row| integer(row, "head")).unwrap_or(0);
    sync::Cursor(u64::try_from(head).unwrap_or(0))
}

/// The topics in a change row's `topics_json` (`None`: absent or not a list of strings).
pub fn topics_of(row: &RawRow) -> Option<Vec<sync::Topic>> {
    let topics: Vec<String> = serde_json::from_str(row.get("topics_json")?.as_str()?).ok()?;
    Some(topics.into_iter().map(sync::Topic::from_raw).collect())
}

/// Reads an integer cell (both databases hand numbers over as JSON numbers).
pub fn integer(row: &RawRow, column: &str) -> Option<i64> {
    let value = row.get(column)?;
    value.as_i64().or_else(|| value.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
}
