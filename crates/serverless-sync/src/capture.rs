//! Change capture inside the upstream database: triggers that append every INSERT,
//! UPDATE and DELETE on a synced table to `sync_changes`, whoever makes it (the
//! connector, an admin script, `psql`, `wrangler d1 execute`).
//!
//! One definition, two dialects. Per collection, the change row holds what the
//! reference ([`crate::server::ServerState`]) records: the record's image after the
//! write (every model column on SQLite, `to_jsonb(NEW)` on PostgreSQL), and the topics
//! of its images before and after, composed in SQL exactly as
//! [`crate::changes::Topic::for_row`] composes them (query name + canonical JSON of the
//! equality-required predicates' values).
//!
//! Who wrote it: a change made by the connector carries the client and mutation id
//! that caused it; a write made by anyone else is recorded with empty ones (nobody's
//! mutation, everyone's change).
//!
//! - SQLite/D1: D1 bills every row written, so the connector sets no context: right
//!   after its write it stamps the newest change with the ids (one writer, so that
//!   change is the write's own: [`crate::sql::sqlite_apply_mutation`]). The triggers
//!   still copy the one-row table `sync_write_context` when it holds a row, as a
//!   worker from before engine schema 2 wrote it inside its batches, so such a
//!   worker keeps working while a deploy rolls out.
//! - PostgreSQL: the connector sets a *write context* (client id, mutation id) as
//!   transaction-local settings (`set_config(.., true)`, [`set_write_context`]); the
//!   trigger copies it into the change row and leaves the new sequence number there
//!   for the outcome statement. A statement-level BEFORE trigger takes the
//!   change-log lock ([`crate::sql::POSTGRES_CHANGE_LOG_LOCK`]) before the statement
//!   touches a row, so direct writers commit their sequence numbers in order like the
//!   connector does, and lock rows only while holding it.
//!
//! Topic values of `real` and `json` columns would be printed by the database's own
//! JSON printer, which differs from the engine's canonical form (`1.0` vs `1`, key
//! order): the model refuses equality-required predicates on them
//! (`ModelError::UnroutableColumn`), so every topic here is text, integer or boolean.
//! A write that changes a record's primary key is recorded as a delete of the old id
//! and an upsert of the new one.

use serde::{Deserialize, Serialize};

use crate::model::SyncModel;
use crate::schema::{Collection, ColumnType};
use crate::sql::{Dialect, POSTGRES_CHANGE_LOG_LOCK, SqlParam, Statement, placeholders, quote};

/// Bumped whenever the triggers' SQL changes, so apps' migrations re-create them.
/// 2: SQLite triggers number each change themselves ([`SQLITE_NEXT_SEQ`]).
pub const CAPTURE_VERSION: u32 = 2;

/// One topic a collection's rows belong to: a query over it and the columns that give
/// its equality-required args (sorted by arg name, as topics sort them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicDef {
    pub query: String,
    /// `(arg, column)` pairs.
    pub args: Vec<(String, String)>,
}

/// What the triggers of one collection compute, as recorded in an app's migration
/// snapshot: when it changes, the next migration re-creates the triggers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureDef {
    pub version: u32,
    pub topics: Vec<(String, Vec<TopicDef>)>,
}

/// The topic definitions of `collection`'s rows under `model`.
pub fn topic_defs(model: &SyncModel, collection: &str) -> Vec<TopicDef> {
    let mut defs: Vec<TopicDef> = model
        .queries()
        .filter(|query| query.root_collection == collection)
        .map(|query| {
            let mut args: Vec<(String, String)> = crate::changes::eq_predicates(query)
                .map(|(arg, column)| (arg.to_string(), column.to_string()))
                .collect();
            args.sort();
            TopicDef { query: query.name.clone(), args }
        })
        .collect();
    defs.sort_by(|a, b| a.query.cmp(&b.query));
    defs
}

/// The capture definition of the whole model (see [`CaptureDef`]).
pub fn capture_def(model: &SyncModel) -> CaptureDef {
    CaptureDef {
        version: CAPTURE_VERSION,
        topics: model
            .collections()
            .map(|collection| (collection.name.clone(), topic_defs(model, &collection.name)))
            .collect(),
    }
}

fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The names of the triggers [`triggers`] installs for `collection`, as the schema
/// check looks for them.
pub fn trigger_names(dialect: Dialect, collection: &str) -> Vec<String> {
    match dialect {
        Dialect::Sqlite => ["insert", "update", "delete"]
            .iter()
            .map(|kind| format!("sync_capture_{collection}_{kind}"))
            .collect(),
        Dialect::Postgres => {
            vec![format!("sync_capture_{collection}"), format!("sync_capture_{collection}_lock")]
        }
    }
}

/// One topic of a row (`row` is `NEW` or `OLD`), as SQL text.
fn topic_expr(dialect: Dialect, collection: &Collection, def: &TopicDef, row: &str) -> String {
    if def.args.is_empty() {
        return literal(&format!("{}{{}}", def.query));
    }
    let mut parts = vec![literal(&format!("{}{{", def.query))];
    for (index, (arg, column)) in def.args.iter().enumerate() {
        let key = serde_json::Value::String(arg.clone()).to_string();
        let separator = if index == 0 { "" } else { "," };
        parts.push(literal(&format!("{separator}{key}:")));
        let cell = format!("{row}.{}", quote(column));
        let column_type = collection.column_type(column).unwrap_or(ColumnType::Text);
        parts.push(match (dialect, column_type) {
            (Dialect::Sqlite, ColumnType::Boolean) => {
                format!("(CASE WHEN {cell} THEN 'true' ELSE 'false' END)")
            }
            (Dialect::Sqlite, ColumnType::Json) => format!("json({cell})"),
            (Dialect::Sqlite, _) => format!("json_quote({cell})"),
            (Dialect::Postgres, _) => format!("to_json({cell})::text"),
        });
    }
    parts.push("'}'".into());
    format!("({})", parts.join(" || "))
}

/// The sorted, deduplicated JSON array of the topics of the given row images.
fn topics_expr(dialect: Dialect, collection: &Collection, defs: &[TopicDef], rows: &[&str]) -> String {
    let each: Vec<String> = rows
        .iter()
        .flat_map(|row| defs.iter().map(move |def| (row, def)))
        .map(|(row, def)| format!("SELECT {} AS t", topic_expr(dialect, collection, def, row)))
        .collect();
    match dialect {
        Dialect::Sqlite if each.is_empty() => "'[]'".into(),
        Dialect::Postgres if each.is_empty() => "'[]'::jsonb".into(),
        // UNION removes duplicates; byte order, like the engine's sorted topics.
        Dialect::Sqlite => {
            format!("(SELECT json_group_array(t) FROM (SELECT t FROM ({}) ORDER BY t))", each.join(" UNION "))
        }
        Dialect::Postgres => format!(
            "(SELECT COALESCE(jsonb_agg(t ORDER BY t COLLATE \"C\"), '[]'::jsonb) FROM ({}) AS topics)",
            each.join(" UNION ")
        ),
    }
}

/// The record image a SQLite trigger stores: every model column, JSON columns as JSON.
fn sqlite_image(collection: &Collection, row: &str) -> String {
    let fields: Vec<String> = collection
        .columns
        .iter()
        .map(|column| {
            let cell = format!("{row}.{}", quote(&column.name));
            let cell = if column.column_type == ColumnType::Json { format!("json({cell})") } else { cell };
            format!("{}, {cell}", literal(&column.name))
        })
        .collect();
    format!("json_object({})", fields.join(", "))
}

const CHANGE_COLUMNS: &str = "INSERT INTO sync_changes (collection, record_id, kind, row_json, topics_json, client_id, mutation_id, created_at)";

/// The SQLite change log's columns, its sequence number first.
const SQLITE_CHANGE_COLUMNS: &str = "INSERT INTO sync_changes (seq, collection, record_id, kind, row_json, topics_json, client_id, mutation_id, created_at)";

/// The next sequence number: past the newest change and past the compaction mark
/// (compaction may have removed the newest change; its number must not come back,
/// clients may have passed it). `sync_changes` has no AUTOINCREMENT on D1: its
/// `sqlite_sequence` row was a billed write per change.
pub const SQLITE_NEXT_SEQ: &str = "(SELECT MAX(COALESCE((SELECT MAX(seq) FROM sync_changes), 0), \
     COALESCE((SELECT MAX(through) FROM sync_compaction), 0)) + 1)";

const SQLITE_NOW_MS: &str = "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)";
const SQLITE_CONTEXT: &str = "COALESCE((SELECT client_id FROM sync_write_context WHERE id = 1), ''), \
     COALESCE((SELECT mutation_id FROM sync_write_context WHERE id = 1), '')";
const SQLITE_KEEP_SEQ: &str = "UPDATE sync_write_context SET seq = last_insert_rowid() WHERE id = 1;";

fn sqlite_triggers(model: &SyncModel, collection: &Collection) -> Vec<String> {
    let name = &collection.name;
    let table = quote(name);
    let key = quote(&collection.primary_key);
    let defs = topic_defs(model, name);
    let coll = literal(name);
    let [insert, update, delete] = [0, 1, 2].map(|index| quote(&trigger_names(Dialect::Sqlite, name)[index]));
    let new_topics = topics_expr(Dialect::Sqlite, collection, &defs, &["NEW"]);
    let old_topics = topics_expr(Dialect::Sqlite, collection, &defs, &["OLD"]);
    let both_topics = topics_expr(Dialect::Sqlite, collection, &defs, &["OLD", "NEW"]);
    let image = sqlite_image(collection, "NEW");
    vec![
        format!("DROP TRIGGER IF EXISTS {insert}"),
        format!(
            "CREATE TRIGGER {insert} AFTER INSERT ON {table} BEGIN \
             {SQLITE_CHANGE_COLUMNS} VALUES ({SQLITE_NEXT_SEQ}, {coll}, NEW.{key}, 'upsert', {image}, {new_topics}, \
             {SQLITE_CONTEXT}, {SQLITE_NOW_MS}); \
             {SQLITE_KEEP_SEQ} END"
        ),
        format!("DROP TRIGGER IF EXISTS {update}"),
        format!(
            "CREATE TRIGGER {update} AFTER UPDATE ON {table} BEGIN \
             {SQLITE_CHANGE_COLUMNS} SELECT {SQLITE_NEXT_SEQ}, {coll}, OLD.{key}, 'delete', NULL, {old_topics}, \
             {SQLITE_CONTEXT}, {SQLITE_NOW_MS} WHERE OLD.{key} IS NOT NEW.{key}; \
             {SQLITE_CHANGE_COLUMNS} VALUES ({SQLITE_NEXT_SEQ}, {coll}, NEW.{key}, 'upsert', {image}, \
             CASE WHEN OLD.{key} IS NEW.{key} THEN {both_topics} ELSE {new_topics} END, {SQLITE_CONTEXT}, {SQLITE_NOW_MS}); \
             {SQLITE_KEEP_SEQ} END"
        ),
        format!("DROP TRIGGER IF EXISTS {delete}"),
        format!(
            "CREATE TRIGGER {delete} AFTER DELETE ON {table} BEGIN \
             {SQLITE_CHANGE_COLUMNS} VALUES ({SQLITE_NEXT_SEQ}, {coll}, OLD.{key}, 'delete', NULL, {old_topics}, \
             {SQLITE_CONTEXT}, {SQLITE_NOW_MS}); \
             {SQLITE_KEEP_SEQ} END"
        ),
    ]
}

fn postgres_triggers(model: &SyncModel, collection: &Collection) -> Vec<String> {
    let name = &collection.name;
    let table = quote(name);
    let key = quote(&collection.primary_key);
    let defs = topic_defs(model, name);
    let coll = literal(name);
    let names = trigger_names(Dialect::Postgres, name);
    let (capture, lock) = (quote(&names[0]), quote(&names[1]));
    let function = quote(&format!("sync_capture_{name}"));
    let new_topics = topics_expr(Dialect::Postgres, collection, &defs, &["NEW"]);
    let old_topics = topics_expr(Dialect::Postgres, collection, &defs, &["OLD"]);
    let both_topics = topics_expr(Dialect::Postgres, collection, &defs, &["OLD", "NEW"]);
    let values = "ctx_client, ctx_mutation, (extract(epoch FROM clock_timestamp()) * 1000)::bigint";
    vec![
        // Shared by every synced table: the change-log lock, taken before any row is.
        format!(
            "CREATE OR REPLACE FUNCTION sync_capture_lock() RETURNS trigger LANGUAGE plpgsql AS $sync$ \
             BEGIN PERFORM pg_advisory_xact_lock({POSTGRES_CHANGE_LOG_LOCK}); RETURN NULL; END $sync$"
        ),
        format!(
            "CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $sync$ \
             DECLARE \
               ctx_client text := COALESCE(current_setting('sync_engine.client_id', true), ''); \
               ctx_mutation text := COALESCE(current_setting('sync_engine.mutation_id', true), ''); \
               logged bigint; \
             BEGIN \
               IF TG_OP = 'DELETE' THEN \
                 {CHANGE_COLUMNS} VALUES ({coll}, OLD.{key}, 'delete', NULL, {old_topics}, {values}) RETURNING seq INTO logged; \
               ELSIF TG_OP = 'INSERT' THEN \
                 {CHANGE_COLUMNS} VALUES ({coll}, NEW.{key}, 'upsert', to_jsonb(NEW), {new_topics}, {values}) RETURNING seq INTO logged; \
               ELSIF OLD.{key} IS DISTINCT FROM NEW.{key} THEN \
                 {CHANGE_COLUMNS} VALUES ({coll}, OLD.{key}, 'delete', NULL, {old_topics}, {values}); \
                 {CHANGE_COLUMNS} VALUES ({coll}, NEW.{key}, 'upsert', to_jsonb(NEW), {new_topics}, {values}) RETURNING seq INTO logged; \
               ELSE \
                 {CHANGE_COLUMNS} VALUES ({coll}, NEW.{key}, 'upsert', to_jsonb(NEW), {both_topics}, {values}) RETURNING seq INTO logged; \
               END IF; \
               IF ctx_mutation <> '' THEN PERFORM set_config('sync_engine.seq', logged::text, true); END IF; \
               RETURN NULL; \
             END $sync$"
        ),
        format!("DROP TRIGGER IF EXISTS {lock} ON {table}"),
        format!(
            "CREATE TRIGGER {lock} BEFORE INSERT OR UPDATE OR DELETE ON {table} \
             FOR EACH STATEMENT EXECUTE FUNCTION sync_capture_lock()"
        ),
        format!("DROP TRIGGER IF EXISTS {capture} ON {table}"),
        format!(
            "CREATE TRIGGER {capture} AFTER INSERT OR UPDATE OR DELETE ON {table} \
             FOR EACH ROW EXECUTE FUNCTION {function}()"
        ),
    ]
}

/// The statements that (re)install change capture on every collection of `model`
/// (idempotent: each trigger is dropped first). The engine's tables must exist.
pub fn triggers(dialect: Dialect, model: &SyncModel) -> Vec<String> {
    model
        .collections()
        .flat_map(|collection| match dialect {
            Dialect::Sqlite => sqlite_triggers(model, collection),
            Dialect::Postgres => postgres_triggers(model, collection),
        })
        .collect()
}

/// Names the connector's next write as its own: the change it causes is recorded
/// with `client_id` and `mutation_id`, and its sequence number kept for
/// [`crate::sql::postgres_apply_mutation`]. (The D1 path stamps the change instead;
/// the SQLite form is what a worker before engine schema 2 ran, kept for tests of
/// that compatibility.)
pub fn set_write_context(dialect: Dialect, client_id: &str, mutation_id: &str) -> Statement {
    let params = vec![SqlParam::Text(client_id.into()), SqlParam::Text(mutation_id.into())];
    let sql = match dialect {
        Dialect::Sqlite => "INSERT OR REPLACE INTO sync_write_context (id, client_id, mutation_id, seq) \
                            VALUES (1, ?1, ?2, NULL)"
            .to_string(),
        Dialect::Postgres => "SELECT set_config('sync_engine.client_id', $1, true), \
                              set_config('sync_engine.mutation_id', $2, true), \
                              set_config('sync_engine.seq', '', true)"
            .to_string(),
    };
    Statement { sql, params }
}

/// The sequence number the last write under the context was logged with, as SQL
/// (NULL when the write changed nothing).
pub fn context_seq(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Sqlite => "(SELECT seq FROM sync_write_context WHERE id = 1)",
        Dialect::Postgres => "NULLIF(current_setting('sync_engine.seq', true), '')::bigint",
    }
}

/// The SQL that lists which capture triggers exist (`name` rows) among `expected`.
pub fn installed_triggers(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Sqlite => {
            "SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'sync_capture_%'"
        }
        Dialect::Postgres => {
            "SELECT tgname::text AS name FROM pg_trigger WHERE tgname::text LIKE 'sync_capture_%'"
        }
    }
}

/// The capture triggers `model` needs that are not among `installed`.
pub fn missing_triggers<'a>(
    dialect: Dialect,
    model: &SyncModel,
    installed: impl IntoIterator<Item = &'a str>,
) -> Vec<String> {
    let installed: std::collections::BTreeSet<&str> = installed.into_iter().collect();
    model
        .collections()
        .flat_map(|collection| trigger_names(dialect, &collection.name))
        .filter(|name| !installed.contains(name.as_str()))
        .collect()
}

/// Changes after `since` that nobody announced (writes made without the connector:
/// empty client id), oldest first, at most `limit`: `seq` and `topics_json`.
pub fn unannounced_changes(dialect: Dialect, since: crate::changes::Cursor, limit: u32) -> Statement {
    let p = &placeholders(dialect, 1, 1)[0];
    Statement {
        sql: format!(
            "SELECT seq, topics_json FROM sync_changes WHERE seq > {p} AND client_id = '' ORDER BY seq LIMIT {limit}"
        ),
        params: vec![SqlParam::Integer(i64::try_from(since.0).unwrap_or(i64::MAX))],
    }
}

/// What a scan of the log for unannounced writes decides: which topics to poke, and
/// the mark to scan from next time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    pub topics: Vec<crate::changes::Topic>,
    /// The cursor the pokes carry and the next scan starts after.
    pub mark: crate::changes::Cursor,
}

/// Decides a scan: `found` are the unannounced changes after `mark` (`seq`, topics),
/// at most `limit` of them, read in the same snapshot as `head`. With a full page the
/// mark stops at its last change (the rest comes next time); otherwise it moves to
/// the head, past every change the connector announced itself.
pub fn announce(
    mark: crate::changes::Cursor,
    found: &[(crate::changes::Cursor, Vec<crate::changes::Topic>)],
    limit: usize,
    head: crate::changes::Cursor,
) -> Announcement {
    let topics: std::collections::BTreeSet<crate::changes::Topic> =
        found.iter().flat_map(|(_, topics)| topics.iter().cloned()).collect();
    let next = match found.last() {
        Some((last, _)) if found.len() >= limit => *last,
        _ => head,
    };
    Announcement { topics: topics.into_iter().collect(), mark: next.max(mark) }
}
