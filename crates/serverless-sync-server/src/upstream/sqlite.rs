//! The upstream on SQLite through rusqlite, natively: D1's dialect and D1's
//! semantics (a batch is one transaction, one writer at a time), so the connector's
//! pipelines run in `cargo test` and in the simulation without wrangler. Not built
//! for the worker.

use std::cell::RefCell;

use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::{Connection, params_from_iter};
use serde_json::Value;
use sync::sql::{Dialect, SqlParam, Statement};

use super::{Database, RawRow};
use crate::error::ApiError;

/// An SQLite database as the upstream.
pub struct Sqlite {
    conn: RefCell<Connection>,
}

fn bind(params: &[SqlParam]) -> Vec<SqlValue> {
    params
        .iter()
        .map(|param| match param {
            SqlParam::Null => SqlValue::Null,
            SqlParam::Integer(value) => SqlValue::Integer(*value),
            SqlParam::Real(value) => SqlValue::Real(*value),
            SqlParam::Text(value) => SqlValue::Text(value.clone()),
            SqlParam::Boolean(value) => SqlValue::Integer(i64::from(*value)),
        })
        .collect()
}

/// An error as D1 words it: the message, then the result code (`...: SQLITE_CONSTRAINT`),
/// which is what tells an app's raising trigger from a lost connection.
fn as_d1(error: rusqlite::Error) -> ApiError {
    use rusqlite::ErrorCode;
    let text = match &error {
        rusqlite::Error::SqliteFailure(failure, message) => {
            let code = match failure.code {
                ErrorCode::ConstraintViolation => "SQLITE_CONSTRAINT",
                ErrorCode::TypeMismatch => "SQLITE_MISMATCH",
                ErrorCode::TooBig => "SQLITE_TOOBIG",
                ErrorCode::DatabaseBusy => "SQLITE_BUSY",
                ErrorCode::DatabaseLocked => "SQLITE_LOCKED",
                _ => "SQLITE_ERROR",
            };
            // As D1 says it: an app's trigger that raised is told apart by the extended code.
            let extended = if failure.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_TRIGGER {
                " (extended: SQLITE_CONSTRAINT_TRIGGER)"
            } else {
                ""
            };
            format!("{}: {code}{extended}", message.clone().unwrap_or_else(|| failure.to_string()))
        }
        other => other.to_string(),
    };
    ApiError::sqlite_failure(text)
}

/// Rows in storage form, as D1 hands them over.
fn run(conn: &Connection, statement: &Statement) -> Result<Vec<RawRow>, rusqlite::Error> {
    let mut prepared = conn.prepare_cached(&statement.sql)?;
    let names: Vec<String> = prepared.column_names().map(String::from).collect();
    let mut rows = prepared.query(params_from_iter(bind(&statement.params)))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let mut raw = RawRow::new();
        for (index, name) in names.iter().enumerate() {
            let cell = match row.get_ref(index)? {
                ValueRef::Null | ValueRef::Blob(_) => Value::Null,
                ValueRef::Integer(value) => Value::from(value),
                ValueRef::Real(value) => Value::from(value),
                ValueRef::Text(text) => Value::String(String::from_utf8_lossy(text).into_owned()),
            };
            raw.insert(name.clone(), cell);
        }
        out.push(raw);
    }
    Ok(out)
}

impl Sqlite {
    /// A database on `conn` with the model's tables, their capture triggers and the
    /// engine's tables: what an app's first migration leaves on D1.
    pub fn open(conn: Connection, model: &sync::SyncModel) -> Result<Self, ApiError> {
        let migration = sync::migrations::plan(None, model)
            .map_err(ApiError::upstream)?
            .ok_or_else(|| ApiError::upstream("the model has no collections"))?;
        conn.execute_batch(&migration.sqlite).map_err(as_d1)?;
        Ok(Self { conn: RefCell::new(conn) })
    }

    /// A fresh in-memory database for `model`.
    pub fn in_memory(model: &sync::SyncModel) -> Result<Self, ApiError> {
        Self::open(Connection::open_in_memory().map_err(as_d1)?, model)
    }

    /// Runs a migration (a script of statements). Statements prepared before it are
    /// forgotten: a cached `SELECT *` would keep the old column list.
    pub fn migrate(&self, script: &str) -> Result<(), ApiError> {
        let conn = self.conn.borrow();
        conn.execute_batch(script).map_err(as_d1)?;
        conn.flush_prepared_statement_cache();
        Ok(())
    }

    /// The connection, for writes made outside the connector (an admin's SQL).
    pub fn connection(&self) -> std::cell::RefMut<'_, Connection> {
        self.conn.borrow_mut()
    }

    fn transaction(&self, statements: &[Statement]) -> Result<Vec<Vec<RawRow>>, ApiError> {
        let mut conn = self.conn.borrow_mut();
        let tx = conn.transaction().map_err(as_d1)?;
        let mut results = Vec::with_capacity(statements.len());
        for statement in statements {
            results.push(run(&tx, statement).map_err(as_d1)?);
        }
        tx.commit().map_err(as_d1)?;
        Ok(results)
    }
}

impl Database for Sqlite {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    async fn rows(&self, statement: &Statement) -> Result<Vec<RawRow>, ApiError> {
        run(&self.conn.borrow(), statement).map_err(as_d1)
    }

    async fn read(&self, statements: &[Statement]) -> Result<Vec<Vec<RawRow>>, ApiError> {
        self.transaction(statements)
    }

    async fn read_each(&self, statements: &[Statement]) -> Result<Vec<Vec<RawRow>>, ApiError> {
        self.transaction(statements)
    }

    async fn write(&self, statements: &[Statement]) -> Result<Vec<Vec<RawRow>>, ApiError> {
        self.transaction(statements)
    }
}
