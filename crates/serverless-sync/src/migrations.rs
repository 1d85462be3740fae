//! An app's upstream tables, derived from its sync model.
//!
//! The app keeps a `migrations/` folder: `d1/NNNN_*.sql` (applied by
//! `wrangler d1 migrations apply`), `postgres/NNNN_*.sql` (applied by the engine) and
//! `schema.json`, the model's collections as of the last migration. [`plan`] compares
//! the model with that snapshot and writes the next migration: new collections
//! (tables with their indexes), new columns, new indexes. A change it cannot make
//! safely on its own (a collection or column removed, a type or primary key changed)
//! is an error that names it: write that migration by hand, then update the snapshot.
//!
//! Indexes: every index a collection declares, plus one per query over its
//! equality-required predicates unless a declared index already starts with them.
//!
//! Change capture: every migration ends by re-creating the triggers that log each
//! write to a synced table ([`crate::capture`]); the snapshot records what they
//! compute, so a model whose topics change gets a migration even with the same
//! tables. The engine's own tables (`sync_changes`, `sync_mutations`, ...) are created
//! by the engine itself ([`crate::sql::engine_schema`]), and on D1 by the migration
//! too, before its triggers.

use serde::{Deserialize, Serialize};

use crate::model::SyncModel;
use crate::operation::Operator;
use crate::schema::{Collection, ColumnType};
use crate::sql::{Dialect, column_sql_type, create_table, quote};

/// The model's collections as the committed migrations leave the database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// How many migrations produced it (the next one is `version + 1`).
    pub version: u32,
    pub collections: Vec<Collection>,
    /// What the change-capture triggers compute (absent before the engine had them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capture: Option<crate::capture::CaptureDef>,
    /// The schema version of the engine's own tables
    /// ([`crate::sql::ENGINE_SCHEMA_VERSION`]); 1 in snapshots from before it was kept.
    #[serde(default = "first_engine_schema")]
    pub engine: u32,
}

fn first_engine_schema() -> u32 {
    1
}

/// The next migration, in both dialects, and the snapshot after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    pub version: u32,
    /// `NNNN_name`, the file stem for both dialects.
    pub file_stem: String,
    pub sqlite: String,
    pub postgres: String,
    pub snapshot: Snapshot,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MigrationError {
    #[error(
        "the model {0}; a generated migration would lose or reinterpret data: write it by hand, then update schema.json"
    )]
    Unsupported(String),
}

/// The collections of `model` with every index they need (declared + per query).
pub fn collections_with_indexes(model: &SyncModel) -> Vec<Collection> {
    model
        .collections()
        .map(|collection| {
            let mut collection = collection.clone();
            for query in model.queries().filter(|query| query.root_collection == collection.name) {
                let columns: Vec<String> = query
                    .required_predicates
                    .iter()
                    .filter(|predicate| predicate.operator == Operator::Eq)
                    .map(|predicate| predicate.column.clone())
                    .collect();
                let covered = columns.is_empty()
                    || collection.indexes.iter().any(|index| index.starts_with(&columns))
                    || columns == [collection.primary_key.clone()];
                if !covered {
                    collection.indexes.push(columns);
                }
            }
            collection
        })
        .collect()
}

fn index_name(collection: &str, columns: &[String]) -> String {
    format!("{collection}_by_{}", columns.join("_"))
}

fn create_index(collection: &str, columns: &[String]) -> String {
    let list: Vec<String> = columns.iter().map(|column| quote(column)).collect();
    format!(
        "CREATE INDEX IF NOT EXISTS {} ON {} ({})",
        quote(&index_name(collection, columns)),
        quote(collection),
        list.join(", ")
    )
}

/// Engine schema 3 on D1: a collection's table built before it (with a rowid and a
/// second index for its text key) rebuilt `WITHOUT ROWID`, every row kept, its
/// indexes re-created. Its capture triggers are dropped before and re-created after.
fn rebuild_without_rowid(collection: &Collection) -> Vec<String> {
    let table = quote(&collection.name);
    let staged_name = format!("{}__sync_rebuild", collection.name);
    let staged = quote(&staged_name);
    let columns: Vec<String> = collection.columns.iter().map(|column| quote(&column.name)).collect();
    let columns = columns.join(", ");
    let mut statements = vec![
        crate::sql::table_definition(Dialect::Sqlite, &staged_name, collection),
        format!("INSERT INTO {staged} ({columns}) SELECT {columns} FROM {table}"),
        format!("DROP TABLE {table}"),
        format!("ALTER TABLE {staged} RENAME TO {table}"),
    ];
    statements.extend(collection.indexes.iter().map(|index| create_index(&collection.name, index)));
    statements
}

/// The value existing rows get in a column added later (every column is NOT NULL).
/// What an existing row holds in a column a migration adds: `column_default` as a
/// value (the reference model and the images logged before the column existed).
pub fn added_column_value(column_type: ColumnType) -> serde_json::Value {
    match column_type {
        ColumnType::Text => serde_json::Value::from(""),
        ColumnType::Integer => serde_json::Value::from(0),
        ColumnType::Real => serde_json::Value::from(0.0),
        ColumnType::Boolean => serde_json::Value::from(false),
        ColumnType::Json => serde_json::Value::Null,
    }
}

/// Gives an image logged before a migration added columns those columns' added
/// values: the record holds them now (unless a later change says otherwise, and then
/// this image is not handed out).
pub fn complete_image(collection: &Collection, row: &mut crate::schema::Row) {
    for column in &collection.columns {
        if !row.contains_key(&column.name) {
            row.insert(column.name.clone(), added_column_value(column.column_type));
        }
    }
}

/// The statements that take a database from `previous` to `current`.
fn statements(
    dialect: Dialect,
    previous: &[Collection],
    current: &[Collection],
) -> Result<Vec<String>, MigrationError> {
    let mut out = Vec::new();
    for old in previous {
        let Some(new) = current.iter().find(|c| c.name == old.name) else {
            return Err(MigrationError::Unsupported(format!("no longer has collection `{}`", old.name)));
        };
        if new.primary_key != old.primary_key {
            return Err(MigrationError::Unsupported(format!(
                "changed the primary key of `{}` from `{}` to `{}`",
                old.name, old.primary_key, new.primary_key
            )));
        }
        for column in &old.columns {
            match new.column_type(&column.name) {
                None => {
                    return Err(MigrationError::Unsupported(format!(
                        "no longer has column `{}.{}`",
                        old.name, column.name
                    )));
                }
                Some(now) if now != column.column_type => {
                    return Err(MigrationError::Unsupported(format!(
                        "changed `{}.{}` from {} to {}",
                        old.name,
                        column.name,
                        column.column_type.name(),
                        now.name()
                    )));
                }
                Some(_) => {}
            }
        }
    }
    for new in current {
        match previous.iter().find(|c| c.name == new.name) {
            None => {
                out.push(create_table(dialect, new));
                out.extend(new.indexes.iter().map(|index| create_index(&new.name, index)));
            }
            Some(old) => {
                for column in new.columns.iter().filter(|column| !old.has_column(&column.name)) {
                    out.push(format!(
                        "ALTER TABLE {} ADD COLUMN {} {} NOT NULL DEFAULT {}",
                        quote(&new.name),
                        quote(&column.name),
                        column_sql_type(dialect, column.column_type),
                        crate::sql::column_default(dialect, column.column_type)
                    ));
                }
                for index in new.indexes.iter().filter(|index| !old.indexes.contains(index)) {
                    out.push(create_index(&new.name, index));
                }
            }
        }
    }
    Ok(out)
}

fn render(dialect: Dialect, stem: &str, statements: &[String]) -> String {
    let tool = match dialect {
        Dialect::Sqlite => "D1 (applied by `wrangler d1 migrations apply`)",
        Dialect::Postgres => "PostgreSQL (applied by the sync engine on first connection)",
    };
    let mut text = format!(
        "-- {stem}: generated from the sync model for {tool}.\n-- Do not edit: change the model and run `cargo xtask migrations`.\n\n"
    );
    for statement in statements {
        text.push_str(statement);
        text.push_str(";\n");
    }
    text
}

/// The next migration for `model` after `previous` (`None`: nothing migrated yet), or
/// `None` when the snapshot already matches the model.
pub fn plan(previous: Option<&Snapshot>, model: &SyncModel) -> Result<Option<Migration>, MigrationError> {
    let current = collections_with_indexes(model);
    let (version, before) = match previous {
        Some(snapshot) => (snapshot.version, snapshot.collections.as_slice()),
        None => (0, &[][..]),
    };
    let mut sqlite = statements(Dialect::Sqlite, before, &current)?;
    let capture = crate::capture::capture_def(model);
    let capture_changed = previous.and_then(|snapshot| snapshot.capture.as_ref()) != Some(&capture);
    let engine_from = previous.map_or(crate::sql::ENGINE_SCHEMA_VERSION, |snapshot| snapshot.engine);
    let engine_changed = engine_from < crate::sql::ENGINE_SCHEMA_VERSION;
    let model_changed = !sqlite.is_empty();
    if !model_changed && !capture_changed && !engine_changed {
        return Ok(None);
    }
    // Older engine tables are rebuilt first, before the model's own changes.
    let installed: Vec<String> = model
        .collections()
        .flat_map(|collection| crate::capture::trigger_names(Dialect::Sqlite, &collection.name))
        .collect();
    let mut upgrade = crate::sql::engine_upgrade(Dialect::Sqlite, engine_from, &installed);
    if engine_from < 3 {
        upgrade.extend(before.iter().flat_map(rebuild_without_rowid));
    }
    upgrade.append(&mut sqlite);
    let mut sqlite = upgrade;
    let mut postgres = statements(Dialect::Postgres, before, &current)?;
    // The capture triggers, re-created with every migration (a new column belongs in
    // the row image, a new query adds topics). On D1 the migration also creates the
    // engine's tables the triggers write to: a direct write may come before the
    // connector ever ran. (On PostgreSQL the engine creates them before migrating.)
    sqlite.extend(crate::sql::engine_schema(Dialect::Sqlite).into_iter().map(str::to_string));
    sqlite.extend(crate::capture::triggers(Dialect::Sqlite, model));
    postgres.extend(crate::capture::triggers(Dialect::Postgres, model));
    let version = version + 1;
    let file_stem = match version {
        1 => "0001_init".to_string(),
        _ if capture_changed && previous.is_some_and(|snapshot| snapshot.capture.is_none()) => {
            format!("{version:04}_change_capture")
        }
        _ if engine_changed && !model_changed => format!("{version:04}_engine_tables"),
        _ => format!("{version:04}_model"),
    };
    Ok(Some(Migration {
        version,
        sqlite: render(Dialect::Sqlite, &file_stem, &sqlite),
        postgres: render(Dialect::Postgres, &file_stem, &postgres),
        file_stem,
        snapshot: Snapshot {
            version,
            collections: current,
            capture: Some(capture),
            engine: crate::sql::ENGINE_SCHEMA_VERSION,
        },
    }))
}

/// The PostgreSQL migrations in `dir` (`NNNN_name.sql`, in name order) as a Rust
/// expression of type `&[(&str, &str)]`: `("NNNN_name", include_str!("<file>"))` each,
/// for the engine's `postgres_migrations`. An app's worker writes it from
/// its build script and `include!`s it, so every file in the folder is applied and
/// nothing else is: no list to keep in step by hand. A name that is not
/// `NNNN_name.sql` is an error, so a stray file cannot slip in unordered.
#[cfg(feature = "migration-files")]
pub fn postgres_migrations_source(dir: &std::path::Path) -> Result<String, String> {
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
        .map_err(|error| format!("{}: {error}", dir.display()))?
        .filter_map(|entry| Some(entry.ok()?.path()))
        .filter(|path| path.extension().is_some_and(|extension| extension == "sql"))
        .collect();
    files.sort();
    let mut source = String::from("&[\n");
    for file in &files {
        let stem = file.file_stem().and_then(|stem| stem.to_str()).unwrap_or_default();
        let numbered = stem.len() > 5
            && stem.as_bytes()[..4].iter().all(u8::is_ascii_digit)
            && stem.as_bytes()[4] == b'_';
        if !numbered {
            return Err(format!("{}: a migration is named NNNN_name.sql", file.display()));
        }
        let path = file.to_str().ok_or_else(|| format!("{}: not UTF-8", file.display()))?;
        source.push_str(&format!("    ({stem:?}, include_str!({path:?})),\n"));
    }
    source.push(']');
    Ok(source)
}

/// A worker's whole build script: lists the PostgreSQL migrations in `folder`
/// (relative to the crate) as [`postgres_migrations_source`] into
/// `$OUT_DIR/postgres_migrations.rs`, and reruns when the folder changes. The worker
/// then holds `include!(concat!(env!("OUT_DIR"), "/postgres_migrations.rs"))`.
/// Panics with the reason (a build script's way to fail the build).
#[cfg(feature = "migration-files")]
pub fn build_postgres_migrations(folder: &str) {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let dir = std::path::Path::new(&manifest).join(folder);
    println!("cargo::rerun-if-changed={}", dir.display());
    let source = postgres_migrations_source(&dir).unwrap_or_else(|problem| panic!("{problem}"));
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    let file = std::path::Path::new(&out).join("postgres_migrations.rs");
    std::fs::write(&file, source).unwrap_or_else(|error| panic!("writing {}: {error}", file.display()));
}

/// Checks an app's `migrations/` folder against its model, or (with `write`) adds the
/// next migration and snapshot to it. Used by each app's migrations test and by
/// `cargo xtask migrations`; reads and writes files, so it is not built unless the
/// feature `migration-files` is on (apps enable it for their tests only).
#[cfg(feature = "migration-files")]
pub fn check_or_write(model: &SyncModel, dir: &std::path::Path, write: bool) -> Result<(), String> {
    use std::fs;
    let snapshot_path = dir.join("schema.json");
    let previous: Option<Snapshot> = match fs::read_to_string(&snapshot_path) {
        Ok(text) => Some(
            serde_json::from_str(&text).map_err(|error| format!("{}: {error}", snapshot_path.display()))?,
        ),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
        Err(error) => return Err(format!("{}: {error}", snapshot_path.display())),
    };
    // Every migration the snapshot counts must be in both folders.
    if let Some(snapshot) = &previous {
        for folder in ["d1", "postgres"] {
            let count = fs::read_dir(dir.join(folder))
                .map(|entries| {
                    entries
                        .filter_map(Result::ok)
                        .filter(|entry| entry.path().extension().is_some_and(|ext| ext == "sql"))
                        .count()
                })
                .unwrap_or(0);
            if count != snapshot.version as usize {
                return Err(format!(
                    "{}/{folder} holds {count} migrations, schema.json says {}",
                    dir.display(),
                    snapshot.version
                ));
            }
        }
    }
    let Some(next) = plan(previous.as_ref(), model).map_err(|error| error.to_string())? else {
        return Ok(());
    };
    if !write {
        return Err(format!(
            "the sync model changed since {}: run `cargo xtask migrations` to write migration {}",
            snapshot_path.display(),
            next.file_stem
        ));
    }
    for (folder, sql) in [("d1", &next.sqlite), ("postgres", &next.postgres)] {
        let folder = dir.join(folder);
        fs::create_dir_all(&folder).map_err(|error| format!("{}: {error}", folder.display()))?;
        let path = folder.join(format!("{}.sql", next.file_stem));
        fs::write(&path, sql).map_err(|error| format!("{}: {error}", path.display()))?;
    }
    let json = serde_json::to_string_pretty(&next.snapshot).map_err(|error| error.to_string())?;
    fs::write(&snapshot_path, json + "\n")
        .map_err(|error| format!("{}: {error}", snapshot_path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Insert, Select};
    use serde::Deserialize;

    #[derive(Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct ListArgs {
        list_id: String,
    }

    fn model(extra_column: bool) -> SyncModel {
        model_with(extra_column.then_some(("done", ColumnType::Boolean)))
    }

    fn model_with(extra: Option<(&str, ColumnType)>) -> SyncModel {
        let mut items = Collection::new("items", "id")
            .column("id", ColumnType::Text)
            .column("list_id", ColumnType::Text)
            .column("title", ColumnType::Text);
        if let Some((name, column_type)) = extra {
            items = items.column(name, column_type);
        }
        SyncModel::builder()
            .collection(items)
            .query(
                SyncModel::query::<ListArgs>("listItems", "items")
                    .require("listId", "list_id", Operator::Eq)
                    .build(|args| {
                        Select::from("items").filter("list_id", Operator::Eq, args.list_id.clone())
                    }),
            )
            .mutator(SyncModel::insert::<ListArgs>("addItem", "items").build(|args, ctx| {
                Insert::into("items")
                    .value("id", ctx.record_id.clone())
                    .value("list_id", args.list_id.clone())
                    .value("title", "")
            }))
            .build()
            .expect("valid model")
    }

    #[test]
    fn the_first_migration_creates_tables_and_query_indexes() {
        let first = plan(None, &model(false)).expect("plans").expect("a migration");
        assert_eq!(first.file_stem, "0001_init");
        assert!(first.sqlite.contains(r#"CREATE TABLE IF NOT EXISTS "items""#), "{}", first.sqlite);
        assert!(
            first.sqlite.contains(r#"CREATE INDEX IF NOT EXISTS "items_by_list_id" ON "items" ("list_id")"#)
        );
        assert!(first.postgres.contains(r#""list_id" TEXT NOT NULL"#));
        assert_eq!(plan(Some(&first.snapshot), &model(false)), Ok(None), "nothing left to do");
    }

    #[test]
    fn a_new_column_is_added_with_a_default_and_removal_is_refused() {
        let first = plan(None, &model(false)).expect("plans").expect("a migration");
        let second = plan(Some(&first.snapshot), &model(true)).expect("plans").expect("a migration");
        assert_eq!(second.file_stem, "0002_model");
        assert!(
            second.sqlite.contains(r#"ALTER TABLE "items" ADD COLUMN "done" INTEGER NOT NULL DEFAULT 0"#)
        );
        assert!(second.postgres.contains(r#"ADD COLUMN "done" BOOLEAN NOT NULL DEFAULT FALSE"#));
        let back = plan(Some(&second.snapshot), &model(false));
        assert!(matches!(back, Err(MigrationError::Unsupported(ref what)) if what.contains("items.done")));
    }

    /// `added_column_value` (what the reference and old images use) is what the
    /// generated `ADD COLUMN ... DEFAULT` gives an existing row, for every type.
    #[test]
    fn an_added_columns_value_is_what_the_migration_gives_existing_rows() {
        use rusqlite::types::ValueRef;
        let first = plan(None, &model(false)).expect("plans").expect("a migration");
        for column_type in
            [ColumnType::Text, ColumnType::Integer, ColumnType::Real, ColumnType::Boolean, ColumnType::Json]
        {
            let next = model_with(Some(("extra", column_type)));
            let second = plan(Some(&first.snapshot), &next).expect("plans").expect("a migration");
            let db = rusqlite::Connection::open_in_memory().expect("db");
            db.execute_batch(&first.sqlite).expect("0001 runs");
            db.execute("INSERT INTO items (id, list_id, title) VALUES ('a', 'l', 't')", []).expect("insert");
            db.execute_batch(&second.sqlite).expect("0002 runs");
            let stored = db
                .query_row("SELECT extra FROM items WHERE id = 'a'", [], |row| {
                    Ok(match row.get_ref(0)? {
                        ValueRef::Null | ValueRef::Blob(_) => serde_json::Value::Null,
                        ValueRef::Integer(value) => serde_json::Value::from(value),
                        ValueRef::Real(value) => serde_json::Value::from(value),
                        ValueRef::Text(text) => {
                            serde_json::Value::from(String::from_utf8_lossy(text).into_owned())
                        }
                    })
                })
                .expect("row");
            let items = next.collection("items").expect("items");
            let decoded = crate::sql::decode_row(items, [("extra".to_string(), stored)]);
            assert_eq!(decoded["extra"], added_column_value(column_type), "{column_type:?}");
        }
    }

    /// A database migrated before engine schema 2 (`sync_changes` with AUTOINCREMENT,
    /// `sync_mutations` with a rowid and a separate key) is rebuilt in place by the
    /// next generated migration: every change and answer kept, the key of the
    /// compacted-away head never handed out again, capture working after it.
    #[test]
    fn an_engine_from_before_schema_2_is_upgraded_in_place() {
        let first = plan(None, &model(false)).expect("plans").expect("a migration");
        let db = rusqlite::Connection::open_in_memory().expect("db");
        // 0001 as engine schema 1 wrote it: the same, but the engine's own tables.
        let version_1 = first
            .sqlite
            .replace("seq INTEGER PRIMARY KEY,", "seq INTEGER PRIMARY KEY AUTOINCREMENT,")
            .replace(
                "PRIMARY KEY (client_id, mutation_id)) WITHOUT ROWID",
                "PRIMARY KEY (client_id, mutation_id))",
            );
        assert_ne!(version_1, first.sqlite, "the test builds the old tables");
        db.execute_batch(&version_1).expect("0001 (engine 1) runs");
        for id in ["a", "b", "c"] {
            db.execute("INSERT INTO items (id, list_id, title) VALUES (?1, 'l', 't')", [id]).expect("insert");
        }
        db.execute("DELETE FROM items WHERE id = 'c'", []).expect("delete");
        db.execute(
            "INSERT INTO sync_mutations (client_id, mutation_id, outcome_json, created_at) VALUES ('k', 'm', '{}', 1)",
            [],
        )
        .expect("an answer");
        // Compaction went through the head and removed it (engine 1 allowed that).
        db.execute("INSERT INTO sync_compaction (id, through) VALUES (1, 4)", []).expect("mark");
        db.execute("DELETE FROM sync_changes WHERE seq = 4", []).expect("compacted");
        let mut old = first.snapshot.clone();
        old.engine = 1;
        let json = serde_json::to_string(&old).expect("json");
        let old: Snapshot = serde_json::from_str(&json.replace(",\"engine\":1", "")).expect("old snapshot");
        assert_eq!(old.engine, 1, "a snapshot without the field is engine schema 1");

        let upgrade = plan(Some(&old), &model(false)).expect("plans").expect("a migration");
        assert_eq!(upgrade.file_stem, "0002_engine_tables");
        assert_eq!(upgrade.snapshot.engine, crate::sql::ENGINE_SCHEMA_VERSION);
        db.execute_batch(&upgrade.sqlite).expect("0002 runs");
        let table_sql = |name: &str| -> String {
            db.query_row("SELECT sql FROM sqlite_master WHERE name = ?1", [name], |row| row.get(0))
                .expect("table")
        };
        assert!(table_sql("sync_mutations").contains("WITHOUT ROWID"));
        assert!(!table_sql("sync_changes").contains("AUTOINCREMENT"));
        let answers: i64 =
            db.query_row("SELECT COUNT(*) FROM sync_mutations", [], |r| r.get(0)).expect("count");
        assert_eq!(answers, 1);
        let kept: Vec<i64> = db
            .prepare("SELECT seq FROM sync_changes ORDER BY seq")
            .expect("prepare")
            .query_map([], |row| row.get(0))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        assert_eq!(kept, [1, 2, 3], "every change kept");
        db.execute("INSERT INTO items (id, list_id, title) VALUES ('d', 'l', 't')", []).expect("insert");
        let next: i64 = db.query_row("SELECT MAX(seq) FROM sync_changes", [], |r| r.get(0)).expect("max");
        assert_eq!(next, 5, "captured after the upgrade, past the compacted-away head");
        assert_eq!(plan(Some(&upgrade.snapshot), &model(false)), Ok(None), "nothing left to do");
    }

    /// A database migrated with engine schema 2 (collection tables with a rowid, their
    /// text key a second index) is rebuilt `WITHOUT ROWID` by the next migration,
    /// together with the model's own change: rows, indexes and capture kept.
    #[test]
    fn collection_tables_from_engine_schema_2_are_rebuilt_without_rowid() {
        let first = plan(None, &model(false)).expect("plans").expect("a migration");
        // Engine schema 2 wrote the table with a rowid and without defaults.
        let rowid_table = first.sqlite.replace(
            r#""list_id" TEXT NOT NULL DEFAULT '', "title" TEXT NOT NULL DEFAULT '') WITHOUT ROWID"#,
            r#""list_id" TEXT NOT NULL, "title" TEXT NOT NULL)"#,
        );
        assert_ne!(rowid_table, first.sqlite, "the test builds the old table");
        let db = rusqlite::Connection::open_in_memory().expect("db");
        db.execute_batch(&rowid_table).expect("0001 (engine 2) runs");
        db.execute("INSERT INTO items (id, list_id, title) VALUES ('a', 'l', 't')", []).expect("insert");
        let mut old = first.snapshot.clone();
        old.engine = 2;

        let upgrade = plan(Some(&old), &model(true)).expect("plans").expect("a migration");
        assert_eq!(upgrade.file_stem, "0002_model");
        db.execute_batch(&upgrade.sqlite).expect("0002 runs");
        let table_sql: String = db
            .query_row("SELECT sql FROM sqlite_master WHERE name = 'items'", [], |row| row.get(0))
            .expect("table");
        assert!(table_sql.ends_with("WITHOUT ROWID"), "{table_sql}");
        let indexes: Vec<String> = db
            .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'items'")
            .expect("prepare")
            .query_map([], |row| row.get(0))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        assert_eq!(indexes, ["items_by_list_id"], "the key is the table's own, the declared index is back");
        let (title, done): (String, i64) = db
            .query_row("SELECT title, done FROM items WHERE id = 'a'", [], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .expect("row kept");
        assert_eq!((title.as_str(), done), ("t", 0));
        db.execute("UPDATE items SET title = 'u' WHERE id = 'a'", []).expect("update");
        let logged: i64 = db
            .query_row("SELECT COUNT(*) FROM sync_changes WHERE record_id = 'a'", [], |row| row.get(0))
            .expect("count");
        assert_eq!(logged, 2, "captured before and after the rebuild");
        // A column a direct write leaves out takes its type's default (as one a
        // migration added always did).
        db.execute("INSERT INTO items (id, list_id) VALUES ('b', 'l')", []).expect("defaults");
        assert_eq!(plan(Some(&upgrade.snapshot), &model(true)), Ok(None), "nothing left to do");
    }

    #[test]
    fn generated_sql_runs_on_sqlite_in_order() {
        let first = plan(None, &model(false)).expect("plans").expect("a migration");
        let second = plan(Some(&first.snapshot), &model(true)).expect("plans").expect("a migration");
        let db = rusqlite::Connection::open_in_memory().expect("db");
        db.execute_batch(&first.sqlite).expect("0001 runs");
        db.execute("INSERT INTO items (id, list_id, title) VALUES ('a', 'l', 't')", []).expect("insert");
        db.execute_batch(&second.sqlite).expect("0002 runs");
        let done: i64 =
            db.query_row("SELECT done FROM items WHERE id = 'a'", [], |row| row.get(0)).expect("row");
        assert_eq!(done, 0);
    }
}
