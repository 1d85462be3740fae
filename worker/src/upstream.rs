//! The upstream database. D1 for now; PostgreSQL joins behind the same calls.

use serde_json::{Map, Value};
use sync::sql::{SqlParam, Statement};
use wasm_bindgen::JsValue;
use worker::{D1Database, D1PreparedStatement, Env};

use crate::error::ApiError;

pub type RawRow = Map<String, Value>;

pub struct D1 {
    db: D1Database,
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

impl D1 {
    pub fn from_env(env: &Env) -> Result<Self, ApiError> {
        let db = env
            .d1("DB")
            .map_err(|error| ApiError::NotConfigured { reason: format!("D1 binding DB: {error}") })?;
        Ok(Self { db })
    }

    fn prepare(&self, statement: &Statement) -> Result<D1PreparedStatement, ApiError> {
        let params: Vec<JsValue> = statement.params.iter().map(js).collect();
        self.db.prepare(statement.sql.clone()).bind(&params).map_err(ApiError::upstream)
    }

    pub async fn rows(&self, statement: &Statement) -> Result<Vec<RawRow>, ApiError> {
        let result = self.prepare(statement)?.all().await.map_err(ApiError::upstream)?;
        result.results::<RawRow>().map_err(ApiError::upstream)
    }

    /// Runs statements as one transaction; returns each statement's rows.
    pub async fn batch(&self, statements: &[Statement]) -> Result<Vec<Vec<RawRow>>, ApiError> {
        let prepared = statements.iter().map(|s| self.prepare(s)).collect::<Result<Vec<_>, _>>()?;
        let results = self.db.batch(prepared).await.map_err(ApiError::upstream)?;
        results.iter().map(|result| result.results::<RawRow>().map_err(ApiError::upstream)).collect()
    }
}

/// Reads an integer cell (D1 hands numbers over as JSON numbers).
pub fn integer(row: &RawRow, column: &str) -> Option<i64> {
    let value = row.get(column)?;
    value.as_i64().or_else(|| value.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
}
