//! What the devtools read from the local store: table sizes, and a read-only SQL
//! console. Nothing here writes.

use rusqlite::types::ValueRef;
use serde_json::Value;
use sync::sql;

use crate::{LocalStore, StoreError};

/// Most rows one console answer carries.
pub const CONSOLE_ROWS: usize = 500;
/// Longest statement the console takes.
pub const CONSOLE_SQL_BYTES: usize = 4096;
/// Text cells are cut at this many characters (the panel shows, it does not export).
const CELL_CHARS: usize = 2000;

/// A console answer.
#[derive(Debug, Clone, PartialEq)]
pub struct SqlRows {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
    /// More rows matched than [`CONSOLE_ROWS`].
    pub truncated: bool,
}

/// Why the console refused a statement.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsoleError {
    #[error("only a single SELECT (or WITH ... SELECT) is allowed")]
    NotASelect,
    #[error("the statement is longer than {CONSOLE_SQL_BYTES} bytes")]
    TooLong,
    #[error("{0}")]
    Sqlite(String),
}

impl LocalStore {
    /// Every table of the local database (the app's collections and the engine's
    /// `sync_*` tables) with its row count, by name.
    pub fn table_counts(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let names: Vec<String> = self
            .conn
            .prepare_cached(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
            )?
            .query_map([], |row| row.get::<_, String>(0))?
            .collect::<Result<_, _>>()?;
        let mut counts = Vec::with_capacity(names.len());
        for name in names {
            let quoted = sql::quote(&name);
            let count: i64 =
                self.conn.query_row(&format!("SELECT COUNT(*) FROM {quoted}"), [], |row| row.get(0))?;
            counts.push((name, u64::try_from(count).unwrap_or(0)));
        }
        Ok(counts)
    }

    /// Runs one read-only statement typed into the devtools console: a single
    /// `SELECT` (or `WITH ... SELECT`) that SQLite itself says writes nothing
    /// (`sqlite3_stmt_readonly`); anything else is refused before it runs.
    pub fn console(&self, sql: &str) -> Result<SqlRows, ConsoleError> {
        if sql.len() > CONSOLE_SQL_BYTES {
            return Err(ConsoleError::TooLong);
        }
        let first_word: String = sql
            .trim_start()
            .chars()
            .take_while(char::is_ascii_alphabetic)
            .collect::<String>()
            .to_ascii_uppercase();
        if first_word != "SELECT" && first_word != "WITH" {
            return Err(ConsoleError::NotASelect);
        }
        // `prepare` refuses a second statement after the first (rusqlite checks the tail).
        let mut statement = self.conn.prepare(sql).map_err(|error| match error {
            rusqlite::Error::MultipleStatement => ConsoleError::NotASelect,
            other => ConsoleError::Sqlite(other.to_string()),
        })?;
        if !statement.readonly() {
            return Err(ConsoleError::NotASelect);
        }
        let columns: Vec<String> = statement.column_names().map(String::from).collect();
        let width = columns.len();
        let mut rows = Vec::new();
        let mut truncated = false;
        let mut cursor = statement.query([]).map_err(|error| ConsoleError::Sqlite(error.to_string()))?;
        while let Some(row) = cursor.next().map_err(|error| ConsoleError::Sqlite(error.to_string()))? {
            if rows.len() == CONSOLE_ROWS {
                truncated = true;
                break;
            }
            let mut cells = Vec::with_capacity(width);
            for index in 0..width {
                let cell =
                    match row.get_ref(index).map_err(|error| ConsoleError::Sqlite(error.to_string()))? {
                        ValueRef::Null => Value::Null,
                        ValueRef::Integer(i) => Value::from(i),
                        ValueRef::Real(r) => Value::from(r),
                        ValueRef::Text(t) => Value::from(
                            String::from_utf8_lossy(t).chars().take(CELL_CHARS).collect::<String>(),
                        ),
                        ValueRef::Blob(b) => Value::from(format!("<{} bytes>", b.len())),
                    };
                cells.push(cell);
            }
            rows.push(cells);
        }
        Ok(SqlRows { columns, rows, truncated })
    }
}
