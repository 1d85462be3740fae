//! Parameterized SQL for SQLite (the browser's store and D1) and PostgreSQL.
//!
//! Values are always bound parameters, never spliced into the text. Identifiers come
//! only from the checked model (`[a-z_][a-z0-9_]*`) and are double-quoted anyway.

use serde::{Deserialize, Serialize};

use crate::Value;
use crate::changes::{Change, ChangeKind, Cursor, Topic};
use crate::operation::{Delete, Filter, Insert, Operation, Order, Select, Update};
use crate::schema::{Collection, ColumnType, Row};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `?1, ?2, ...` placeholders; booleans as 0/1; JSON as text.
    Sqlite,
    /// `$1, $2, ...` placeholders; native booleans; JSON as `jsonb`.
    Postgres,
}

/// A bound parameter value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SqlParam {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Boolean(bool),
}

/// SQL text plus its parameters, in placeholder order.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    pub sql: String,
    pub params: Vec<SqlParam>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SqlError {
    #[error("collection `{collection}` has no column `{column}`")]
    UnknownColumn { collection: String, column: String },
    #[error("column `{column}` cannot hold {detail}")]
    BadValue { column: String, detail: String },
    #[error("a continuation names the query's {0} order values (its order columns, then the primary key)")]
    Continuation(usize),
}

/// Accumulates SQL text and parameters with the dialect's placeholders.
struct Writer<'a> {
    dialect: Dialect,
    collection: &'a Collection,
    sql: String,
    params: Vec<SqlParam>,
}

impl<'a> Writer<'a> {
    fn new(dialect: Dialect, collection: &'a Collection) -> Self {
        Self { dialect, collection, sql: String::new(), params: Vec::new() }
    }

    fn push(&mut self, text: &str) {
        self.sql.push_str(text);
    }

    fn ident(&mut self, name: &str) {
        self.sql.push_str(&quote(name));
    }

    fn column_type(&self, column: &str) -> Result<ColumnType, SqlError> {
        self.collection.column_type(column).ok_or_else(|| SqlError::UnknownColumn {
            collection: self.collection.name.clone(),
            column: column.into(),
        })
    }

    /// Binds `value` as a parameter for `column` and writes its placeholder.
    fn bind(&mut self, column: &str, value: &Value) -> Result<(), SqlError> {
        let column_type = self.column_type(column)?;
        let param = encode(self.dialect, column, column_type, value)?;
        self.params.push(param);
        let index = self.params.len();
        match self.dialect {
            Dialect::Sqlite => self.sql.push_str(&format!("?{index}")),
            Dialect::Postgres => {
                self.sql.push_str(&format!("${index}"));
                if column_type == ColumnType::Json {
                    self.sql.push_str("::jsonb");
                }
            }
        }
        Ok(())
    }

    fn filters(&mut self, filters: &[Filter], mut first: bool) -> Result<(), SqlError> {
        for filter in filters {
            self.push(if first { " WHERE " } else { " AND " });
            first = false;
            self.ident(&filter.column);
            self.push(" ");
            self.push(filter.operator.sql());
            self.push(" ");
            self.bind(&filter.column, &filter.value)?;
        }
        Ok(())
    }

    fn column_list(&mut self) {
        let names: Vec<String> = self.collection.columns.iter().map(|c| quote(&c.name)).collect();
        self.push(&names.join(", "));
    }

    fn finish(self) -> Statement {
        Statement { sql: self.sql, params: self.params }
    }
}

/// An identifier, double-quoted (also for migrations, capture triggers and the
/// browser's store).
pub fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Turns a JSON value into the parameter the dialect stores for `column_type`.
pub fn encode(
    dialect: Dialect,
    column: &str,
    column_type: ColumnType,
    value: &Value,
) -> Result<SqlParam, SqlError> {
    let bad = || SqlError::BadValue {
        column: column.into(),
        detail: format!("{} as {}", crate::schema::describe_value(value), column_type.name()),
    };
    if !column_type.accepts(value) {
        return Err(bad());
    }
    Ok(match (column_type, value) {
        (ColumnType::Text, Value::String(text)) => SqlParam::Text(text.clone()),
        (ColumnType::Integer, value) => SqlParam::Integer(value.as_i64().ok_or_else(bad)?),
        (ColumnType::Real, value) => SqlParam::Real(value.as_f64().ok_or_else(bad)?),
        (ColumnType::Boolean, Value::Bool(flag)) => match dialect {
            Dialect::Sqlite => SqlParam::Integer(i64::from(*flag)),
            Dialect::Postgres => SqlParam::Boolean(*flag),
        },
        (ColumnType::Json, value) => SqlParam::Text(value.to_string()),
        _ => return Err(bad()),
    })
}

/// Turns a stored cell back into the model's JSON value (0/1 -> bool, JSON text ->
/// value). Cells already in model form pass through.
pub fn decode_cell(column_type: ColumnType, cell: Value) -> Value {
    match (column_type, cell) {
        (ColumnType::Boolean, Value::Number(number)) => Value::Bool(number.as_i64().unwrap_or(0) != 0),
        (ColumnType::Json, Value::String(text)) => serde_json::from_str(&text).unwrap_or(Value::String(text)),
        (ColumnType::Real, Value::Number(number)) => number
            .as_f64()
            .and_then(serde_json::Number::from_f64)
            .map_or(Value::Number(number), Value::Number),
        (_, cell) => cell,
    }
}

/// Decodes a raw row (column -> stored cell) into a model row, keeping only the
/// collection's columns.
pub fn decode_row(collection: &Collection, raw: impl IntoIterator<Item = (String, Value)>) -> Row {
    raw.into_iter()
        .filter_map(|(column, cell)| {
            let column_type = collection.column_type(&column)?;
            Some((column, decode_cell(column_type, cell)))
        })
        .collect()
}

/// The value a column takes when a write leaves it out (and existing rows take when a
/// migration adds it): every column is NOT NULL.
pub fn column_default(dialect: Dialect, column_type: ColumnType) -> &'static str {
    match (dialect, column_type) {
        (_, ColumnType::Text) => "''",
        (_, ColumnType::Integer | ColumnType::Real) => "0",
        (Dialect::Sqlite, ColumnType::Boolean) => "0",
        (Dialect::Postgres, ColumnType::Boolean) => "FALSE",
        (Dialect::Sqlite, ColumnType::Json) => "'null'",
        (Dialect::Postgres, ColumnType::Json) => "'null'::jsonb",
    }
}

/// How a column type is stored in `dialect`.
pub fn column_sql_type(dialect: Dialect, column_type: ColumnType) -> &'static str {
    match (dialect, column_type) {
        (_, ColumnType::Text) => "TEXT",
        (Dialect::Sqlite, ColumnType::Integer | ColumnType::Boolean) => "INTEGER",
        (Dialect::Sqlite, ColumnType::Real) => "REAL",
        (Dialect::Sqlite, ColumnType::Json) => "TEXT",
        (Dialect::Postgres, ColumnType::Integer) => "BIGINT",
        (Dialect::Postgres, ColumnType::Real) => "DOUBLE PRECISION",
        (Dialect::Postgres, ColumnType::Boolean) => "BOOLEAN",
        (Dialect::Postgres, ColumnType::Json) => "JSONB",
    }
}

/// `CREATE TABLE IF NOT EXISTS` for a collection. On SQLite the table is `WITHOUT
/// ROWID`: its text primary key is the table's own key, not a second index D1 bills
/// a row written (and read) for.
pub fn create_table(dialect: Dialect, collection: &Collection) -> String {
    table_definition(dialect, &collection.name, collection)
}

/// The table of `collection`, named `name` (an upgrade builds it beside the old one).
pub fn table_definition(dialect: Dialect, name: &str, collection: &Collection) -> String {
    let columns: Vec<String> = collection
        .columns
        .iter()
        .map(|column| {
            let sql_type = column_sql_type(dialect, column.column_type);
            // A column a write leaves out takes its type's default, as a column added
            // by a migration does (the key has none).
            let key = if column.name == collection.primary_key {
                " PRIMARY KEY".to_string()
            } else {
                format!(" DEFAULT {}", column_default(dialect, column.column_type))
            };
            format!("{} {sql_type} NOT NULL{key}", quote(&column.name))
        })
        .collect();
    let without_rowid = if dialect == Dialect::Sqlite { " WITHOUT ROWID" } else { "" };
    format!("CREATE TABLE IF NOT EXISTS {} ({}){without_rowid}", quote(name), columns.join(", "))
}

/// The select a named query built. Ties are broken by primary key, so every
/// database returns the same order.
pub fn select(dialect: Dialect, collection: &Collection, select: &Select) -> Result<Statement, SqlError> {
    select_page(dialect, collection, select, &Page { rows: select.limit, ..Page::default() })
}

/// Which part of a query's result a [`select_page`] reads.
#[derive(Debug, Clone, Copy, Default)]
pub struct Page<'a> {
    /// Only rows after this one in the query's order: its values of
    /// [`order_columns`], in that order (a keyset, so rows written meanwhile never
    /// shift a page).
    pub after: Option<&'a [Value]>,
    /// Only rows up to this one (included) in the query's order, its values of
    /// [`order_columns`]: a window's covered part (see `sync::window`).
    pub until: Option<&'a [Value]>,
    /// At most this many rows.
    pub rows: Option<u32>,
    /// The last rows of the order instead of the first (answered in reverse order).
    pub from_end: bool,
}

/// The columns a query's result is ordered by: its own, then the primary key.
pub fn order_columns(collection: &Collection, select: &Select) -> Vec<(String, Order)> {
    let mut orders = select.order_by.clone();
    // A query already ordered by its key needs no tiebreak (and an index on the
    // order columns then serves the ORDER BY as written).
    if !orders.iter().any(|(column, _)| *column == collection.primary_key) {
        orders.push((collection.primary_key.clone(), Order::Asc));
    }
    orders
}

/// One page of the select a named query built (see [`Page`]).
pub fn select_page(
    dialect: Dialect,
    collection: &Collection,
    select: &Select,
    page: &Page<'_>,
) -> Result<Statement, SqlError> {
    let orders = order_columns(collection, select);
    let mut w = Writer::new(dialect, collection);
    w.push("SELECT ");
    w.column_list();
    w.push(" FROM ");
    w.ident(&collection.name);
    w.filters(&select.filters, true)?;
    let mut first_condition = select.filters.is_empty();
    for (keyset, beyond) in [(page.after, true), (page.until, false)] {
        let Some(keyset) = keyset else { continue };
        if keyset.len() != orders.len() {
            return Err(SqlError::Continuation(orders.len()));
        }
        w.push(if first_condition { " WHERE (" } else { " AND (" });
        first_condition = false;
        // After: (c1 > v1) OR (c1 = v1 AND c2 > v2) OR ...; `<` where the order
        // descends. Until: the same with the comparisons turned, or all equal.
        for (i, (column, order)) in orders.iter().enumerate() {
            if i > 0 {
                w.push(" OR ");
            }
            w.push("(");
            for (equal, value) in orders[..i].iter().zip(keyset) {
                w.ident(&equal.0);
                w.push(" = ");
                w.bind(&equal.0, value)?;
                w.push(" AND ");
            }
            w.ident(column);
            w.push(if (*order == Order::Asc) == beyond { " > " } else { " < " });
            w.bind(column, &keyset[i])?;
            w.push(")");
        }
        if !beyond {
            w.push(" OR (");
            for (i, ((column, _), value)) in orders.iter().zip(keyset).enumerate() {
                if i > 0 {
                    w.push(" AND ");
                }
                w.ident(column);
                w.push(" = ");
                w.bind(column, value)?;
            }
            w.push(")");
        }
        w.push(")");
    }
    w.push(" ORDER BY ");
    let mut sql_orders: Vec<String> = Vec::new();
    for (column, order) in &orders {
        w.column_type(column)?;
        let ascending = (*order == Order::Asc) != page.from_end;
        sql_orders.push(format!("{} {}", quote(column), if ascending { "ASC" } else { "DESC" }));
    }
    w.push(&sql_orders.join(", "));
    if let Some(limit) = page.rows {
        // A u32 rendered as digits: no way to carry SQL.
        w.push(&format!(" LIMIT {limit}"));
    }
    Ok(w.finish())
}

/// Reads one record by primary key.
pub fn select_by_id(
    dialect: Dialect,
    collection: &Collection,
    record_id: &str,
) -> Result<Statement, SqlError> {
    let mut w = Writer::new(dialect, collection);
    w.push("SELECT ");
    w.column_list();
    w.push(" FROM ");
    w.ident(&collection.name);
    w.push(" WHERE ");
    w.ident(&collection.primary_key);
    w.push(" = ");
    w.bind(&collection.primary_key, &Value::String(record_id.into()))?;
    Ok(w.finish())
}

/// The write a mutator built. An update or delete that affects no row means the
/// record is missing or its guards failed.
pub fn write(
    dialect: Dialect,
    collection: &Collection,
    operation: &Operation,
) -> Result<Statement, SqlError> {
    match operation {
        Operation::Insert(insert) => insert_statement(dialect, collection, insert),
        Operation::Update(update) => update_statement(dialect, collection, update),
        Operation::Delete(delete) => delete_statement(dialect, collection, delete),
    }
}

fn insert_statement(
    dialect: Dialect,
    collection: &Collection,
    insert: &Insert,
) -> Result<Statement, SqlError> {
    let mut w = Writer::new(dialect, collection);
    w.push("INSERT INTO ");
    w.ident(&collection.name);
    let columns: Vec<String> = insert.values.keys().map(|c| quote(c)).collect();
    w.push(&format!(" ({}) VALUES (", columns.join(", ")));
    for (index, (column, value)) in insert.values.iter().enumerate() {
        if index > 0 {
            w.push(", ");
        }
        w.bind(column, value)?;
    }
    w.push(")");
    Ok(w.finish())
}

fn update_statement(
    dialect: Dialect,
    collection: &Collection,
    update: &Update,
) -> Result<Statement, SqlError> {
    let mut w = Writer::new(dialect, collection);
    w.push("UPDATE ");
    w.ident(&collection.name);
    w.push(" SET ");
    if update.set.is_empty() {
        // Still touch the row, so "no such record" is detectable by the row count.
        w.ident(&collection.primary_key);
        w.push(" = ");
        w.ident(&collection.primary_key);
    }
    for (index, (column, value)) in update.set.iter().enumerate() {
        if index > 0 {
            w.push(", ");
        }
        w.ident(column);
        w.push(" = ");
        w.bind(column, value)?;
    }
    key_and_guards(&mut w, &update.record_id, &update.guards)?;
    Ok(w.finish())
}

fn delete_statement(
    dialect: Dialect,
    collection: &Collection,
    delete: &Delete,
) -> Result<Statement, SqlError> {
    let mut w = Writer::new(dialect, collection);
    w.push("DELETE FROM ");
    w.ident(&collection.name);
    key_and_guards(&mut w, &delete.record_id, &delete.guards)?;
    Ok(w.finish())
}

fn key_and_guards(w: &mut Writer<'_>, record_id: &str, guards: &[Filter]) -> Result<(), SqlError> {
    let key = w.collection.primary_key.clone();
    w.push(" WHERE ");
    w.ident(&key);
    w.push(" = ");
    w.bind(&key, &Value::String(record_id.into()))?;
    w.filters(guards, false)
}

/// Writes a server row into a local table, replacing what was there (the browser's
/// store applies confirmed and pulled rows with this).
pub fn upsert_row(dialect: Dialect, collection: &Collection, row: &Row) -> Result<Statement, SqlError> {
    let mut w = Writer::new(dialect, collection);
    w.push("INSERT INTO ");
    w.ident(&collection.name);
    w.push(" (");
    w.column_list();
    w.push(") VALUES (");
    for (index, column) in collection.columns.iter().enumerate() {
        if index > 0 {
            w.push(", ");
        }
        let value = row.get(&column.name).ok_or_else(|| SqlError::BadValue {
            column: column.name.clone(),
            detail: "a missing value".into(),
        })?;
        w.bind(&column.name, value)?;
    }
    w.push(") ON CONFLICT (");
    w.ident(&collection.primary_key);
    w.push(") DO UPDATE SET ");
    let updates: Vec<String> = collection
        .columns
        .iter()
        .filter(|column| column.name != collection.primary_key)
        .map(|column| format!("{0} = excluded.{0}", quote(&column.name)))
        .collect();
    if updates.is_empty() {
        let key = quote(&collection.primary_key);
        w.push(&format!("{key} = excluded.{key}"));
    } else {
        w.push(&updates.join(", "));
    }
    Ok(w.finish())
}

// ------------------------------------------------------------------ engine tables

/// Version of the engine's own upstream tables. Apps' migrations record it
/// (`crate::migrations::Snapshot::engine`) and upgrade older tables
/// ([`engine_upgrade`]).
///
/// 2: on D1, `sync_changes` without `AUTOINCREMENT` (its `sqlite_sequence` row cost a
/// write per change) and `sync_mutations` `WITHOUT ROWID` (its key was a second,
/// billed, index row).
///
/// 3: on D1, the collections' tables `WITHOUT ROWID` (a text primary key in a rowid
/// table is a second index: one more row written per write, one more read per lookup).
pub const ENGINE_SCHEMA_VERSION: u32 = 3;

/// Upstream bookkeeping: the change log (sequence = cursor) and the idempotency
/// records of every mutation answered.
pub fn engine_schema(dialect: Dialect) -> Vec<&'static str> {
    match dialect {
        Dialect::Sqlite => vec![
            // No AUTOINCREMENT: the capture triggers number a change past both the
            // newest change and the compaction mark (which may have removed the
            // newest), so no number is handed out twice.
            "CREATE TABLE IF NOT EXISTS sync_changes (\
               seq INTEGER PRIMARY KEY, \
               collection TEXT NOT NULL, record_id TEXT NOT NULL, kind TEXT NOT NULL, \
               row_json TEXT, topics_json TEXT NOT NULL, \
               client_id TEXT NOT NULL, mutation_id TEXT NOT NULL, created_at INTEGER NOT NULL)",
            "CREATE TABLE IF NOT EXISTS sync_mutations (\
               client_id TEXT NOT NULL, mutation_id TEXT NOT NULL, \
               outcome_json TEXT NOT NULL, created_at INTEGER NOT NULL, \
               PRIMARY KEY (client_id, mutation_id)) WITHOUT ROWID",
            "CREATE TABLE IF NOT EXISTS sync_compaction (\
               id INTEGER PRIMARY KEY CHECK (id = 1), through INTEGER NOT NULL)",
            // The write context a worker before engine schema 2 set inside its batches
            // (see crate::capture); the triggers still read it.
            "CREATE TABLE IF NOT EXISTS sync_write_context (\
               id INTEGER PRIMARY KEY CHECK (id = 1), client_id TEXT NOT NULL, mutation_id TEXT NOT NULL, seq INTEGER)",
            // compaction and pulls: later changes of the same record.
            "CREATE INDEX IF NOT EXISTS sync_changes_record ON sync_changes (collection, record_id, seq)",
        ],
        Dialect::Postgres => vec![
            "CREATE TABLE IF NOT EXISTS sync_changes (\
               seq BIGSERIAL PRIMARY KEY, \
               collection TEXT NOT NULL, record_id TEXT NOT NULL, kind TEXT NOT NULL, \
               row_json JSONB, topics_json JSONB NOT NULL, \
               client_id TEXT NOT NULL, mutation_id TEXT NOT NULL, created_at BIGINT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS sync_mutations (\
               client_id TEXT NOT NULL, mutation_id TEXT NOT NULL, \
               outcome_json JSONB NOT NULL, created_at BIGINT NOT NULL, \
               PRIMARY KEY (client_id, mutation_id))",
            // pull: topics_json ?| ARRAY[...] AND seq > $1.
            "CREATE INDEX IF NOT EXISTS sync_changes_topics ON sync_changes USING GIN (topics_json)",
            "CREATE TABLE IF NOT EXISTS sync_compaction (\
               id INTEGER PRIMARY KEY CHECK (id = 1), through BIGINT NOT NULL)",
            "CREATE INDEX IF NOT EXISTS sync_changes_record ON sync_changes (collection, record_id, seq)",
        ],
    }
}

/// Statements that bring the engine's tables from schema version `from` to
/// [`ENGINE_SCHEMA_VERSION`] (empty when there is nothing to do). `triggers` are the
/// capture triggers to drop first (SQLite refuses to rename a table while a trigger
/// names a missing one); the migration re-creates them after.
pub fn engine_upgrade(dialect: Dialect, from: u32, triggers: &[String]) -> Vec<String> {
    if dialect != Dialect::Sqlite || from >= ENGINE_SCHEMA_VERSION {
        return Vec::new();
    }
    let mut statements: Vec<String> =
        triggers.iter().map(|name| format!("DROP TRIGGER IF EXISTS {}", quote(name))).collect();
    if from >= 2 {
        return statements;
    }
    let columns =
        "seq, collection, record_id, kind, row_json, topics_json, client_id, mutation_id, created_at";
    statements.extend([
        "CREATE TABLE sync_mutations_v2 (\
           client_id TEXT NOT NULL, mutation_id TEXT NOT NULL, \
           outcome_json TEXT NOT NULL, created_at INTEGER NOT NULL, \
           PRIMARY KEY (client_id, mutation_id)) WITHOUT ROWID"
            .to_string(),
        "INSERT INTO sync_mutations_v2 SELECT client_id, mutation_id, outcome_json, created_at FROM sync_mutations"
            .to_string(),
        "DROP TABLE sync_mutations".to_string(),
        "ALTER TABLE sync_mutations_v2 RENAME TO sync_mutations".to_string(),
        "CREATE TABLE sync_changes_v2 (\
           seq INTEGER PRIMARY KEY, \
           collection TEXT NOT NULL, record_id TEXT NOT NULL, kind TEXT NOT NULL, \
           row_json TEXT, topics_json TEXT NOT NULL, \
           client_id TEXT NOT NULL, mutation_id TEXT NOT NULL, created_at INTEGER NOT NULL)"
            .to_string(),
        format!("INSERT INTO sync_changes_v2 ({columns}) SELECT {columns} FROM sync_changes"),
        "DROP TABLE sync_changes".to_string(),
        "ALTER TABLE sync_changes_v2 RENAME TO sync_changes".to_string(),
    ]);
    statements
}

pub(crate) fn placeholders(dialect: Dialect, count: usize, start: usize) -> Vec<String> {
    (start..start + count)
        .map(|index| match dialect {
            Dialect::Sqlite => format!("?{index}"),
            Dialect::Postgres => format!("${index}"),
        })
        .collect()
}

/// Appends a change; its `seq` is assigned by the database (the next cursor).
pub fn insert_change(dialect: Dialect, change: &Change, created_at_ms: i64) -> Statement {
    let p = placeholders(dialect, 8, 1);
    let json = if dialect == Dialect::Postgres { "::jsonb" } else { "" };
    Statement {
        sql: format!(
            "INSERT INTO sync_changes (collection, record_id, kind, row_json, topics_json, client_id, mutation_id, created_at) \
             VALUES ({}, {}, {}, {}{json}, {}{json}, {}, {}, {})",
            p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7]
        ),
        params: vec![
            SqlParam::Text(change.collection.clone()),
            SqlParam::Text(change.record_id.clone()),
            SqlParam::Text(match change.kind {
                ChangeKind::Upsert => "upsert".into(),
                ChangeKind::Delete => "delete".into(),
            }),
            change
                .row
                .as_ref()
                .map_or(SqlParam::Null, |row| SqlParam::Text(Value::from(row_object(row)).to_string())),
            SqlParam::Text(
                Value::from(change.topics.iter().map(|t| Value::from(t.as_str())).collect::<Vec<_>>())
                    .to_string(),
            ),
            SqlParam::Text(change.client_id.clone()),
            SqlParam::Text(change.mutation_id.clone()),
            SqlParam::Integer(created_at_ms),
        ],
    }
}

fn row_object(row: &Row) -> serde_json::Map<String, Value> {
    row.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// Changes after `since` on any of `topics`, oldest first, at most `limit`.
pub fn pull_changes(dialect: Dialect, since: Cursor, topics: &[Topic], limit: u32) -> Statement {
    pull_changes_since(dialect, &[(since, topics.to_vec())], limit)
}

/// Changes on each group's topics after that group's cursor, oldest first, at most
/// `limit`: a client whose queries were synced to different cursors (a query joined
/// late starts at its snapshot) reads each only from where it stands. A change that a
/// later change of the same record in the same pull supersedes is left out; column
/// `outdated` says whether a later change on any of the pull's topics outdates its
/// image (`crate::pull::PullPlan::deliverable`, the same rules in memory).
pub fn pull_changes_since(dialect: Dialect, groups: &[(Cursor, Vec<Topic>)], limit: u32) -> Statement {
    let columns = "seq, collection, record_id, kind, row_json, topics_json, client_id, mutation_id";
    // Cursors are written as integer literals (they are numbers, never text), so a
    // pull binds only its topics: 50 subscriptions at 50 cursors stay within D1's
    // [`MAX_BOUND_PARAMS`].
    let literal = |cursor: Cursor| i64::try_from(cursor.0).unwrap_or(i64::MAX).to_string();
    let mut params = Vec::new();
    let mut next = 1;
    let mut bind = |param: SqlParam, params: &mut Vec<SqlParam>| {
        params.push(param);
        let placeholder = placeholders(dialect, 1, next).remove(0);
        next += 1;
        placeholder
    };
    let lowest = literal(groups.iter().map(|(since, _)| *since).min().unwrap_or(Cursor::START));
    // Each group once, as (cursor literal, topic placeholders); used for the change
    // and for its later changes alike (a placeholder may be used twice).
    let mut bound = Vec::new();
    for (since, topics) in groups.iter().filter(|(_, topics)| !topics.is_empty()) {
        let list: Vec<String> =
            topics.iter().map(|topic| bind(SqlParam::Text(topic.as_str().into()), &mut params)).collect();
        bound.push((literal(*since), list.join(", ")));
    }
    // On SQLite, the (topic, cursor) pairs are a VALUES table joined to the change's
    // topics: a chain of one OR per cursor would nest past SQLite's expression depth
    // of 100 (D1's limit) at 50 cursors. PostgreSQL keeps its topics index (`?|`).
    let pairs: Vec<String> = bound
        .iter()
        .flat_map(|(since, list)| {
            list.split(", ").map(move |placeholder| format!("({placeholder}, {since})")).collect::<Vec<_>>()
        })
        .collect();
    let matches = |table: &str| -> String {
        if bound.is_empty() {
            return "FALSE".to_string();
        }
        match dialect {
            Dialect::Sqlite => format!(
                "EXISTS (SELECT 1 FROM json_each({table}.topics_json) AS t JOIN (VALUES {}) AS w \
                 ON t.value = w.column1 WHERE {table}.seq > w.column2)",
                pairs.join(", ")
            ),
            Dialect::Postgres => bound
                .iter()
                .map(|(since, list)| {
                    format!("({table}.seq > {since} AND {table}.topics_json ?| ARRAY[{list}]::text[])")
                })
                .collect::<Vec<_>>()
                .join(" OR "),
        }
    };
    let (on_topics, later_on_topics) = (matches("c"), matches("later"));
    // A later change of the record on any of the pull's topics, whatever its cursor,
    // outdates the change's image (`crate::pull::PullPlan::outdates`).
    let all_topics: Vec<&str> = bound.iter().map(|(_, list)| list.as_str()).collect();
    let later_on_any = if all_topics.is_empty() {
        "FALSE".to_string()
    } else {
        let list = all_topics.join(", ");
        match dialect {
            Dialect::Sqlite => {
                format!(
                    "EXISTS (SELECT 1 FROM json_each(later.topics_json) WHERE json_each.value IN ({list}))"
                )
            }
            Dialect::Postgres => format!("later.topics_json ?| ARRAY[{list}]::text[]"),
        }
    };
    Statement {
        sql: format!(
            "SELECT {columns}, EXISTS (SELECT 1 FROM sync_changes later WHERE later.collection = c.collection \
               AND later.record_id = c.record_id AND later.seq > c.seq AND ({later_on_any})) AS outdated \
             FROM sync_changes c WHERE c.seq > {lowest} AND ({on_topics}) \
             AND NOT EXISTS (SELECT 1 FROM sync_changes later WHERE later.collection = c.collection \
               AND later.record_id = c.record_id AND later.seq > c.seq AND ({later_on_topics})) \
             ORDER BY c.seq LIMIT {limit}"
        ),
        params,
    }
}

/// The most parameters one statement binds (D1's limit; SQLite's and PostgreSQL's
/// are far higher). Statements built here stay within it.
pub const MAX_BOUND_PARAMS: usize = 100;

/// How far back [`topic_predecessors`] looks for a topic's previous change.
pub const PREDECESSOR_WINDOW: u64 = 10_000;

/// Topics per statement of [`topic_predecessors`] (one term of a compound SELECT
/// each): D1 refuses a compound SELECT of 10 terms ("too many terms in compound
/// SELECT"), and takes 5.
pub const PREDECESSOR_TOPICS_PER_STATEMENT: usize = 5;

/// For each of `topics`, the newest change on it before `first` (`topic`, `prev`;
/// `prev` is NULL when there is none), looking back at most [`PREDECESSOR_WINDOW`]
/// sequence numbers, newest first and stopping at the first match (an active topic's
/// previous change is close); plus one row with the empty topic giving the
/// compaction mark (the last statement). Read them in one batch. See
/// `sync::cursors::poke_since`.
///
/// `first: None` reads them inside a write transaction before its writes: the
/// newest change of each topic so far (a push sends these ahead of its writes in its
/// one batch, and pokes without another round trip).
pub fn topic_predecessors(dialect: Dialect, topics: &[Topic], first: Option<Cursor>) -> Vec<Statement> {
    let window = i64::try_from(PREDECESSOR_WINDOW).unwrap_or(0);
    let (before, after) = match first {
        Some(first) => {
            let first_seq = i64::try_from(first.0).unwrap_or(i64::MAX);
            (first_seq.to_string(), first_seq.saturating_sub(window).to_string())
        }
        None => {
            let next = "(SELECT COALESCE(MAX(seq), 0) + 1 FROM sync_changes)";
            (next.to_string(), format!("{next} - {window}"))
        }
    };
    let cast = if dialect == Dialect::Postgres { "::text" } else { "" };
    // One statement per [`PREDECESSOR_TOPICS_PER_STATEMENT`] topics (a push may touch
    // hundreds).
    let mut statements: Vec<Statement> = topics
        .chunks(PREDECESSOR_TOPICS_PER_STATEMENT)
        .map(|chunk| {
            let mut params = Vec::new();
            let mut parts = Vec::new();
            for (topic, placeholder) in chunk.iter().zip(placeholders(dialect, chunk.len(), 1)) {
                params.push(SqlParam::Text(topic.as_str().into()));
                let on_topic = match dialect {
                    Dialect::Sqlite => format!(
                        "EXISTS (SELECT 1 FROM json_each(c.topics_json) WHERE json_each.value = {placeholder})"
                    ),
                    Dialect::Postgres => format!("c.topics_json ? {placeholder}"),
                };
                parts.push(format!(
                    "SELECT {placeholder}{cast} AS topic, (SELECT c.seq FROM sync_changes c \
                     WHERE c.seq < {before} AND c.seq > {after} AND {on_topic} ORDER BY c.seq DESC LIMIT 1) AS prev"
                ));
            }
            Statement { sql: parts.join(" UNION ALL "), params }
        })
        .collect();
    statements.push(Statement {
        sql: "SELECT '' AS topic, COALESCE(MAX(through), 0) AS prev FROM sync_compaction".into(),
        params: Vec::new(),
    });
    statements
}

/// The log head: the latest sequence number handed out, 0 when none. Compaction may
/// have removed the change that had it, so the compaction mark counts too.
/// The change log's size for the operator's stats (the same SQL on both dialects;
/// it counts whole tables, so on D1 it reads as many rows as they hold).
pub const LOG_STATS: &str = "SELECT (SELECT COUNT(*) FROM sync_changes) AS changes, \
     (SELECT COUNT(*) FROM sync_mutations) AS mutations, \
     COALESCE((SELECT MAX(seq) FROM sync_changes), 0) AS last_seq, \
     COALESCE((SELECT MAX(through) FROM sync_compaction), 0) AS compacted_through";

pub fn change_head(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Sqlite => {
            "SELECT MAX(COALESCE((SELECT MAX(seq) FROM sync_changes), 0), \
             COALESCE((SELECT MAX(through) FROM sync_compaction), 0)) AS head"
        }
        Dialect::Postgres => {
            "SELECT GREATEST(COALESCE((SELECT MAX(seq) FROM sync_changes), 0), \
             COALESCE((SELECT MAX(through) FROM sync_compaction), 0)) AS head"
        }
    }
}

/// How far the log is compacted (`through`): a pull from an older cursor must resync.
pub fn compacted_through() -> &'static str {
    "SELECT COALESCE(MAX(through), 0) AS through FROM sync_compaction"
}

/// The newest change older than `before_ms` (`through`, 0 when none): how far a
/// compaction with that horizon may go.
pub fn compaction_bound(dialect: Dialect, before_ms: i64) -> Statement {
    Statement {
        sql: format!(
            "SELECT COALESCE(MAX(seq), 0) AS through FROM sync_changes WHERE created_at < {}",
            placeholders(dialect, 1, 1)[0]
        ),
        params: vec![SqlParam::Integer(before_ms)],
    }
}

/// Moves the compaction mark up to `through` (never down). Committed before any
/// change is removed, so a pull that could miss a removed change is told to resync.
pub fn mark_compacted(dialect: Dialect, through: Cursor) -> Statement {
    let greater = match dialect {
        Dialect::Sqlite => "MAX",
        Dialect::Postgres => "GREATEST",
    };
    Statement {
        sql: format!(
            "INSERT INTO sync_compaction (id, through) VALUES (1, {p}) \
             ON CONFLICT (id) DO UPDATE SET through = {greater}(sync_compaction.through, excluded.through)",
            p = placeholders(dialect, 1, 1)[0]
        ),
        params: vec![SqlParam::Integer(i64::try_from(through.0).unwrap_or(i64::MAX))],
    }
}

/// Removes up to `batch` changes at or below `through` that no client at or past it
/// needs: images a later change of the same record superseded, and deletes. Returns
/// one row (`seq`) per change removed; run it until it returns fewer than `batch`.
/// Small batches keep each statement short, so writers are never held up for long.
///
/// A confirmed mutation's answer is its change row (see [`AcceptedMutation`]): the
/// batch first copies the answers of the changes it removes into `sync_mutations`,
/// so a retry is still answered from them. Run the statements together, in one
/// transaction; the last returns the removed `seq`s.
pub fn compact_changes(dialect: Dialect, through: Cursor, batch: u32) -> Vec<Statement> {
    let removable = format!(
        "SELECT c.seq FROM sync_changes c WHERE c.seq <= {p} AND (c.kind = 'delete' OR EXISTS (\
           SELECT 1 FROM sync_changes later WHERE later.collection = c.collection \
           AND later.record_id = c.record_id AND later.seq > c.seq)) \
         ORDER BY c.seq LIMIT {batch}",
        p = placeholders(dialect, 1, 1)[0]
    );
    let through = SqlParam::Integer(i64::try_from(through.0).unwrap_or(i64::MAX));
    let (insert, on_conflict) = match dialect {
        Dialect::Sqlite => ("INSERT OR IGNORE INTO", ""),
        Dialect::Postgres => ("INSERT INTO", " ON CONFLICT DO NOTHING"),
    };
    vec![
        Statement {
            sql: format!(
                "{insert} sync_mutations (client_id, mutation_id, outcome_json, created_at) \
                 SELECT client_id, mutation_id, {}, created_at FROM sync_changes \
                 WHERE mutation_id <> '' AND seq IN ({removable}){on_conflict}",
                confirmed_from_change(dialect)
            ),
            params: vec![through.clone()],
        },
        Statement {
            sql: format!("DELETE FROM sync_changes WHERE seq IN ({removable}) RETURNING seq"),
            params: vec![through],
        },
    ]
}

/// The answer a confirmed mutation's change row stands for (what [`find_mutation`]
/// gives for it), from the change row's columns.
fn confirmed_from_change(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Sqlite => "json_object('status', 'confirmed', 'row', json(row_json), 'seq', seq)",
        Dialect::Postgres => "jsonb_build_object('status', 'confirmed', 'row', row_json, 'seq', seq)",
    }
}

/// A mutation's record: `(collection, record_id)`, when the mutation is valid.
pub type MutationRecord<'a> = Option<(&'a str, &'a str)>;

/// Where a confirmed answer may be: the record id a push names, in these
/// collections (the one its mutation writes; every collection of the model when the
/// mutation no longer validates, e.g. a model upgrade removed its mutator).
pub type AnswerRecord<'a> = Option<(&'a [&'a str], &'a str)>;

/// The recorded outcome of a mutation, if it was answered before (`outcome_json`,
/// one row at most). A confirmed mutation is answered by its change row, found
/// through the record it wrote (`record`; the change log's record index); the other
/// answers are rows of `sync_mutations`, and come first.
pub fn find_mutation(
    dialect: Dialect,
    client_id: &str,
    mutation_id: &str,
    record: AnswerRecord<'_>,
) -> Statement {
    let p = placeholders(dialect, 3, 1);
    let stored = format!(
        "SELECT outcome_json FROM sync_mutations WHERE client_id = {} AND mutation_id = {}",
        p[0], p[1]
    );
    let mut params = vec![SqlParam::Text(client_id.into()), SqlParam::Text(mutation_id.into())];
    let Some((collections, record_id)) = record.filter(|(collections, _)| !collections.is_empty()) else {
        return Statement { sql: stored, params };
    };
    params.push(SqlParam::Text(record_id.into()));
    params.extend(collections.iter().map(|collection| SqlParam::Text((*collection).into())));
    let listed = placeholders(dialect, collections.len(), 4).join(", ");
    Statement {
        sql: format!(
            "SELECT outcome_json FROM (\
               SELECT 0 AS answer_rank, outcome_json FROM sync_mutations WHERE client_id = {a} AND mutation_id = {b} \
               UNION ALL SELECT 1 AS answer_rank, {confirmed} AS outcome_json FROM sync_changes \
               WHERE collection IN ({listed}) AND record_id = {c} AND client_id = {a} AND mutation_id = {b}) answers \
             ORDER BY answer_rank LIMIT 1",
            a = p[0],
            b = p[1],
            c = p[2],
            confirmed = confirmed_from_change(dialect)
        ),
        params,
    }
}

/// Whether the mutation `1`/`2` (placeholders) was applied to the record `3`/`4` (a
/// change of it stamped with the mutation, other than `own`, the change the
/// statement's own write logged) or answered already.
fn claimed(dialect: Dialect, own: Option<&str>) -> String {
    let p = placeholders(dialect, 4, 1);
    let other = own.map(|own| format!(" AND claimed.seq <> {own}")).unwrap_or_default();
    format!(
        "(EXISTS (SELECT 1 FROM sync_changes claimed WHERE claimed.collection = {c} \
           AND claimed.record_id = {d} AND claimed.client_id = {a} AND claimed.mutation_id = {b}{other}) \
         OR EXISTS (SELECT 1 FROM sync_mutations answered WHERE answered.client_id = {a} \
           AND answered.mutation_id = {b}))",
        a = p[0],
        b = p[1],
        c = p[2],
        d = p[3]
    )
}

/// Records a mutation's outcome. Fails on a duplicate key, which aborts the
/// transaction it runs in: the second of two racing applies never commits. With the
/// mutation's `record` it also fails (a NULL outcome) when that record's change log
/// shows the mutation applied: a confirmed answer is its change row.
pub fn record_mutation(
    dialect: Dialect,
    client_id: &str,
    mutation_id: &str,
    outcome_json: &str,
    created_at_ms: i64,
    record: MutationRecord<'_>,
) -> Statement {
    let p = placeholders(dialect, 6, 1);
    let json = if dialect == Dialect::Postgres { "::jsonb" } else { "" };
    let mut params = vec![SqlParam::Text(client_id.into()), SqlParam::Text(mutation_id.into())];
    let Some((collection, record_id)) = record else {
        params.extend([SqlParam::Text(outcome_json.into()), SqlParam::Integer(created_at_ms)]);
        return Statement {
            sql: format!(
                "INSERT INTO sync_mutations (client_id, mutation_id, outcome_json, created_at) VALUES ({}, {}, {}{json}, {})",
                p[0], p[1], p[2], p[3]
            ),
            params,
        };
    };
    params.extend([
        SqlParam::Text(collection.into()),
        SqlParam::Text(record_id.into()),
        SqlParam::Text(outcome_json.into()),
        SqlParam::Integer(created_at_ms),
    ]);
    Statement {
        sql: format!(
            "INSERT INTO sync_mutations (client_id, mutation_id, outcome_json, created_at) \
             SELECT {}, {}, CASE WHEN {} THEN NULL ELSE {}{json} END, {}",
            p[0],
            p[1],
            claimed(dialect, None),
            p[4],
            p[5]
        ),
        params,
    }
}

/// Reason recorded when a write's guard or record vanished between the connector's
/// check and the write itself.
pub const RACED_REASON: &str = "the record changed before this write could apply; nothing was written";

/// A mutation the connector accepted, with everything its upstream statements need.
#[derive(Debug, Clone, Copy)]
pub struct AcceptedMutation<'a> {
    pub collection: &'a Collection,
    pub operation: &'a Operation,
    pub record_id: &'a str,
    pub client_id: &'a str,
    pub mutation_id: &'a str,
    pub now_ms: i64,
}

impl AcceptedMutation<'_> {
    /// The statements that apply it in one transaction of `dialect`; the last one
    /// returns one row: `outcome_json` (the `MutationOutcome`, cells in storage form)
    /// and `topics_json` (the change's topics; NULL when nothing was written).
    pub fn statements(&self, dialect: Dialect) -> Result<Vec<Statement>, SqlError> {
        match dialect {
            Dialect::Sqlite => sqlite_apply_mutation(self),
            Dialect::Postgres => postgres_apply_mutation(self),
        }
    }
}

/// Everything one accepted mutation does upstream, as statements for ONE SQLite
/// transaction (a D1 batch). D1 bills every row written, index entries included, so
/// besides the app's own row the engine writes only the change-log row (by the
/// capture trigger), stamped with the mutation: that change row is the confirmed
/// answer too ([`find_mutation`] finds it through the record's index).
///
/// 1. the write itself: the collection's capture trigger appends the change row (the
///    image read inside the transaction) when a row changed;
/// 2. stamp that change as this mutation's: SQLite has one writer, so the newest
///    change is the write's own when `changes()` (rows the write touched) is not
///    zero; it must also be this record's and still unstamped. This is the
///    idempotency claim: if the mutation was applied (a racing retry committed
///    first) or answered already, the stamp is NULL, the column refuses it, and the
///    whole batch rolls back, write included. It returns `outcome_json` and
///    `topics_json`;
/// 3. only when the write wrote nothing: the stored answer "nothing written",
///    claimed the same way, returning `outcome_json`.
///
/// No write context is set (`sync_write_context` costs three rows per mutation);
/// the triggers still copy one when present, so a worker from before this scheme
/// keeps its answers right while a deploy rolls out.
pub fn sqlite_apply_mutation(accepted: &AcceptedMutation<'_>) -> Result<Vec<Statement>, SqlError> {
    let AcceptedMutation { collection, operation, record_id, client_id, mutation_id, now_ms } = *accepted;
    let write = write(Dialect::Sqlite, collection, operation)?;
    let params = vec![
        SqlParam::Text(client_id.into()),
        SqlParam::Text(mutation_id.into()),
        SqlParam::Text(collection.name.clone()),
        SqlParam::Text(record_id.into()),
    ];
    // The newest change is the write's own (one writer; `changes()` says it wrote).
    // A mutation applied already (a racing retry committed first) or answered makes
    // the stamp NULL, which the column refuses: the whole batch rolls back.
    let stamp = Statement {
        sql: format!(
            "UPDATE sync_changes SET client_id = ?1, \
               mutation_id = CASE WHEN {claimed} THEN NULL ELSE ?2 END \
             WHERE seq = (SELECT MAX(seq) FROM sync_changes) AND changes() > 0 \
               AND collection = ?3 AND record_id = ?4 AND mutation_id = '' \
             RETURNING {confirmed} AS outcome_json, topics_json",
            claimed = claimed(Dialect::Sqlite, None),
            confirmed = confirmed_from_change(Dialect::Sqlite),
        ),
        params: params.clone(),
    };
    let mut nothing_params = params;
    nothing_params.extend([SqlParam::Text(RACED_REASON.into()), SqlParam::Integer(now_ms)]);
    // Only when the stamp found no change (`changes()` is its count): the write wrote
    // nothing, and that answer is stored.
    let nothing_written = Statement {
        sql: format!(
            "INSERT INTO sync_mutations (client_id, mutation_id, outcome_json, created_at) \
             SELECT ?1, ?2, CASE WHEN {claimed} THEN NULL \
               ELSE json_object('status', 'rejected', 'reason', ?5) END, ?6 \
             WHERE changes() = 0 \
             RETURNING outcome_json, NULL AS topics_json",
            claimed = claimed(Dialect::Sqlite, None),
        ),
        params: nothing_params,
    };
    Ok(vec![write, stamp, nothing_written])
}

/// Advisory-lock key every PostgreSQL write transaction takes first (see
/// [`postgres_apply_mutation`]): ASCII "syncLOG!".
pub const POSTGRES_CHANGE_LOG_LOCK: i64 = 0x7379_6e63_4c4f_4721;

/// Everything one accepted mutation does upstream, as statements for one PostgreSQL
/// transaction: name the write as this mutation's (the context), the write (its
/// capture trigger appends the change row, stamped from the context, and keeps its
/// `seq`), then the answer, as on SQLite: a confirmed write's answer is its change
/// row, read back; a write that wrote nothing stores "nothing written". Either way
/// the mutation must not be applied or answered already (a racing retry committed
/// first): then the read back divides by zero and the stored answer would be NULL,
/// so the whole transaction rolls back, write included. One of the last two returns
/// `outcome_json` (what [`find_mutation`] would read) and `topics_json`.
///
/// Run it in a transaction that first takes `pg_advisory_xact_lock(`
/// [`POSTGRES_CHANGE_LOG_LOCK`]`)` (the capture triggers take it too, for writers
/// that do not): sequence numbers are handed out at insert time, so without one
/// writer at a time a later `seq` could commit before an earlier one and a client
/// pulling in between would skip the earlier change for good.
pub fn postgres_apply_mutation(accepted: &AcceptedMutation<'_>) -> Result<Vec<Statement>, SqlError> {
    let AcceptedMutation { collection, operation, record_id, client_id, mutation_id, now_ms } = *accepted;
    let context = crate::capture::set_write_context(Dialect::Postgres, client_id, mutation_id);
    let write = write(Dialect::Postgres, collection, operation)?;
    let seq = crate::capture::context_seq(Dialect::Postgres);
    let params = vec![
        SqlParam::Text(client_id.into()),
        SqlParam::Text(mutation_id.into()),
        SqlParam::Text(collection.name.clone()),
        SqlParam::Text(record_id.into()),
    ];
    let mut nothing_params = params.clone();
    nothing_params.extend([SqlParam::Text(RACED_REASON.into()), SqlParam::Integer(now_ms)]);
    let nothing_written = Statement {
        sql: format!(
            "INSERT INTO sync_mutations (client_id, mutation_id, outcome_json, created_at) \
             SELECT $1, $2, CASE WHEN {claimed} THEN NULL \
               ELSE jsonb_build_object('status', 'rejected', 'reason', $5::text) END, $6 \
             WHERE {seq} IS NULL \
             RETURNING outcome_json, NULL::jsonb AS topics_json",
            claimed = claimed(Dialect::Postgres, None),
        ),
        params: nothing_params,
    };
    let confirmed = Statement {
        sql: format!(
            // The claim is in the select list: evaluated only for the change this write
            // logged (in WHERE, PostgreSQL may evaluate it once before any row).
            "SELECT {answer} AS outcome_json, topics_json, \
               1 / (CASE WHEN {claimed} THEN 0 ELSE 1 END) AS unclaimed FROM sync_changes \
             WHERE seq = {seq} AND $3::text = collection AND $4::text = record_id",
            answer = confirmed_from_change(Dialect::Postgres),
            claimed = claimed(Dialect::Postgres, Some(seq)),
        ),
        params,
    };
    Ok(vec![context, write, nothing_written, confirmed])
}

// ------------------------------------------------------------------ schema check

/// The columns of the model's collection tables: rows of (`table_name`,
/// `column_name`). Only those tables are read (D1 refuses to describe its own).
pub fn table_columns(dialect: Dialect, model: &crate::SyncModel) -> Statement {
    let tables: Vec<String> = model.collections().map(|collection| collection.name.clone()).collect();
    let list = placeholders(dialect, tables.len().max(1), 1).join(", ");
    let mut params: Vec<SqlParam> = tables.into_iter().map(SqlParam::Text).collect();
    if params.is_empty() {
        params.push(SqlParam::Text(String::new()));
    }
    let sql = match dialect {
        Dialect::Sqlite => format!(
            "SELECT m.name AS table_name, p.name AS column_name \
             FROM sqlite_master m JOIN pragma_table_info(m.name) p \
             WHERE m.type = 'table' AND m.name IN ({list})"
        ),
        Dialect::Postgres => format!(
            "SELECT table_name::text AS table_name, column_name::text AS column_name \
             FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name::text IN ({list})"
        ),
    };
    Statement { sql, params }
}

/// What the upstream database lacks for `model`, one sentence per table, given its
/// `(table, column)` pairs (see [`table_columns`]). Empty: every collection's table
/// has every column the model names (extra tables and columns are fine).
pub fn schema_problems<'a>(
    model: &crate::SyncModel,
    columns: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Vec<String> {
    let mut found: std::collections::BTreeMap<&str, std::collections::BTreeSet<&str>> =
        std::collections::BTreeMap::new();
    for (table, column) in columns {
        found.entry(table).or_default().insert(column);
    }
    let mut problems = Vec::new();
    for collection in model.collections() {
        match found.get(collection.name.as_str()) {
            None => problems.push(format!("table {} is missing", collection.name)),
            Some(present) => {
                let missing: Vec<&str> = collection
                    .columns
                    .iter()
                    .map(|column| column.name.as_str())
                    .filter(|name| !present.contains(name))
                    .collect();
                if !missing.is_empty() {
                    problems.push(format!(
                        "table {} lacks column(s) {}",
                        collection.name,
                        missing.join(", ")
                    ));
                }
            }
        }
    }
    problems
}
