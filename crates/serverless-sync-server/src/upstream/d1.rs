//! D1, the embedded default: SQLite, one writer at a time by construction, and a
//! batch is one transaction.

use std::cell::Cell;

use sync::sql::{self, Dialect, SqlParam, Statement};
use wasm_bindgen::JsValue;
use worker::{D1Database, D1PreparedStatement, Env};

use super::{Database, RawRow};
use crate::error::ApiError;

/// The D1 binding's name in wrangler.toml.
const BINDING: &str = "DB";

pub struct D1 {
    db: D1Database,
    /// What D1 reported since the last `take_usage` (it bills rows read and written).
    usage: Cell<Usage>,
}

/// D1's own count of what statements cost: rows read, rows written, statements.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub rows_read: u64,
    pub rows_written: u64,
    pub statements: u64,
}

fn js(param: &SqlParam) -> JsValue {
    match param {
        SqlParam::Null => JsValue::NULL,
        // D1 takes JS numbers: exact up to 2^53, which covers millisecond timestamps.
        SqlParam::Integer(value) => JsValue::from_f64(*value as f64),
        SqlParam::Real(value) => JsValue::from_f64(*value),
        SqlParam::Text(value) => JsValue::from_str(value),
        SqlParam::Boolean(value) => JsValue::from_bool(*value),
    }
}

thread_local! {
    /// The engine's tables are made sure of once per isolate.
    static ENGINE_TABLES: Cell<bool> = const { Cell::new(false) };
}

impl D1 {
    /// The `DB` binding; on an isolate's first use, creates the engine's own tables
    /// if they are missing (the app's tables come from its wrangler migrations).
    pub async fn open(env: &Env) -> Result<Self, ApiError> {
        let db = env
            .d1(BINDING)
            .map_err(|error| ApiError::NotConfigured { reason: format!("D1 binding {BINDING}: {error}") })?;
        let db = Self { db, usage: Cell::new(Usage::default()) };
        if !ENGINE_TABLES.with(Cell::get) {
            let schema: Vec<Statement> = sql::engine_schema(Dialect::Sqlite)
                .into_iter()
                .map(|sql| Statement { sql: sql.into(), params: Vec::new() })
                .collect();
            db.batch(&schema).await?;
            ENGINE_TABLES.with(|done| done.set(true));
        }
        Ok(db)
    }

    /// What the statements since the last call cost, as D1 reported it.
    pub fn take_usage(&self) -> Usage {
        self.usage.take()
    }

    fn count(&self, result: &worker::D1Result) {
        let meta = result.meta().ok().flatten();
        let mut usage = self.usage.get();
        usage.statements += 1;
        if let Some(meta) = meta {
            usage.rows_read += meta.rows_read.unwrap_or(0) as u64;
            usage.rows_written += meta.rows_written.unwrap_or(0) as u64;
        }
        self.usage.set(usage);
    }

    fn prepare(&self, statement: &Statement) -> Result<D1PreparedStatement, ApiError> {
        let params: Vec<JsValue> = statement.params.iter().map(js).collect();
        self.db.prepare(statement.sql.clone()).bind(&params).map_err(ApiError::upstream)
    }

    /// Runs statements as one transaction; returns each statement's rows.
    async fn batch(&self, statements: &[Statement]) -> Result<Vec<Vec<RawRow>>, ApiError> {
        if statements.is_empty() {
            return Ok(Vec::new());
        }
        let prepared = statements.iter().map(|s| self.prepare(s)).collect::<Result<Vec<_>, _>>()?;
        let results = self.db.batch(prepared).await.map_err(ApiError::sqlite_failure)?;
        results.iter().for_each(|result| self.count(result));
        results.iter().map(|result| result.results::<RawRow>().map_err(ApiError::upstream)).collect()
    }
}

impl Database for D1 {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    async fn rows(&self, statement: &Statement) -> Result<Vec<RawRow>, ApiError> {
        let result = self.prepare(statement)?.all().await.map_err(ApiError::sqlite_failure)?;
        self.count(&result);
        result.results::<RawRow>().map_err(ApiError::upstream)
    }

    async fn read(&self, statements: &[Statement]) -> Result<Vec<Vec<RawRow>>, ApiError> {
        self.batch(statements).await
    }

    async fn read_each(&self, statements: &[Statement]) -> Result<Vec<Vec<RawRow>>, ApiError> {
        self.batch(statements).await
    }

    async fn write(&self, statements: &[Statement]) -> Result<Vec<Vec<RawRow>>, ApiError> {
        self.batch(statements).await
    }
}
