//! Collections (tables) that exist both locally and upstream.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Value;

/// A row: column name -> value. Ordered, so rows compare and serialize stably.
pub type Row = BTreeMap<String, Value>;

/// The types a column can hold. Stored as SQLite/PostgreSQL types by [`crate::sql`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    Text,
    Integer,
    Real,
    Boolean,
    Json,
}

impl ColumnType {
    /// Whether `value` may be stored in a column of this type. `null` never is: every
    /// column is NOT NULL (absent data is an absent row, not a null cell).
    pub fn accepts(self, value: &Value) -> bool {
        match self {
            ColumnType::Text => value.is_string(),
            ColumnType::Integer => value.is_i64(),
            ColumnType::Real => value.is_number(),
            ColumnType::Boolean => value.is_boolean(),
            ColumnType::Json => !value.is_null(),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ColumnType::Text => "text",
            ColumnType::Integer => "integer",
            ColumnType::Real => "real",
            ColumnType::Boolean => "boolean",
            ColumnType::Json => "json",
        }
    }
}

/// Describes a JSON value's kind for error cards ("got integer").
pub fn describe_value(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(number) if number.is_i64() || number.is_u64() => "integer",
        Value::Number(_) => "real",
        Value::String(_) => "text",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    #[serde(rename = "type")]
    pub column_type: ColumnType,
}

/// Bytes a value of a routed column (a record id, a column a query requires by
/// equality: it becomes part of a topic, kept in memos and Durable Object keys) may
/// hold, unless the collection says otherwise ([`Collection::max_bytes`]).
pub const ROUTED_VALUE_MAX_BYTES: usize = 256;

/// Bytes any other value may hold, unless the collection says otherwise.
pub const VALUE_MAX_BYTES: usize = 64 * 1024;

/// The size a value counts for against its column's limit: a text's UTF-8 bytes,
/// a JSON value's compact text; numbers and booleans are small by construction.
pub fn value_bytes(value: &Value) -> usize {
    match value {
        Value::String(text) => text.len(),
        Value::Null | Value::Bool(_) | Value::Number(_) => 0,
        Value::Array(_) | Value::Object(_) => {
            serde_json::to_string(value).map_or(usize::MAX, |text| text.len())
        }
    }
}

/// A table that is synced. The primary key is a text column holding the record id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Collection {
    pub name: String,
    pub primary_key: String,
    pub columns: Vec<Column>,
    /// Upstream indexes, each a list of columns (see [`crate::migrations`]: each
    /// query also gets one on its required predicates unless one of these covers it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub indexes: Vec<Vec<String>>,
    /// Columns whose values may be larger (or must be smaller) than the default
    /// limits ([`ROUTED_VALUE_MAX_BYTES`], [`VALUE_MAX_BYTES`]), in bytes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub max_bytes: BTreeMap<String, usize>,
}

impl Collection {
    pub fn new(name: impl Into<String>, primary_key: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            primary_key: primary_key.into(),
            columns: Vec::new(),
            indexes: Vec::new(),
            max_bytes: BTreeMap::new(),
        }
    }

    /// Values of `column` may hold up to `bytes` (instead of 256 bytes for a routed
    /// column, 64 KB for any other). A write or read beyond it is refused with
    /// `invalid_args` before anything runs.
    pub fn max_bytes(mut self, column: impl Into<String>, bytes: usize) -> Self {
        self.max_bytes.insert(column.into(), bytes);
        self
    }

    pub fn column(mut self, name: impl Into<String>, column_type: ColumnType) -> Self {
        self.columns.push(Column { name: name.into(), column_type });
        self
    }

    /// An upstream index over `columns`, in order (e.g. a query's filter columns,
    /// then its sort columns).
    pub fn index(mut self, columns: &[&str]) -> Self {
        self.indexes.push(columns.iter().map(|column| column.to_string()).collect());
        self
    }

    pub fn column_type(&self, name: &str) -> Option<ColumnType> {
        self.columns.iter().find(|column| column.name == name).map(|column| column.column_type)
    }

    pub fn has_column(&self, name: &str) -> bool {
        self.column_type(name).is_some()
    }

    /// The record id of `row`, if it has a text primary key.
    pub fn record_id<'a>(&self, row: &'a Row) -> Option<&'a str> {
        row.get(&self.primary_key).and_then(Value::as_str)
    }
}

/// SQL identifiers come only from the model and must match `[a-z_][a-z0-9_]{0,62}`,
/// so they can never carry SQL. (Values are always bound parameters.)
pub fn is_valid_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    first_ok
        && name.len() <= 63
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.starts_with("sync_")
}
