//! The upstream schemas (wrangler's D1 migrations, the worker's PostgreSQL migrations)
//! hold exactly the tables the sync model and the engine need, as `sync::sql` would
//! create them. Edit the model and this test says which statement the migrations lack.

use sync::sql::{self, Dialect};

fn migrations(folder: &str) -> String {
    let dir = format!("{}/../migrations/{folder}", env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "sql"))
        .collect();
    files.sort();
    files.iter().map(|path| std::fs::read_to_string(path).expect("readable")).collect::<Vec<_>>().join("\n")
}

/// Whitespace-insensitive containment.
fn squash(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ").replace("( ", "(").replace(" )", ")")
}

fn assert_creates_every_table(folder: &str, dialect: Dialect) {
    let migrations = squash(&migrations(folder));
    let model = app::model::chat_model();
    let mut expected: Vec<String> = model.collections().map(|c| sql::create_table(dialect, c)).collect();
    expected.extend(sql::engine_schema(dialect).into_iter().map(String::from));
    for statement in expected {
        assert!(migrations.contains(&squash(&statement)), "migrations/{folder} lacks:\n{statement};");
    }
}

#[test]
fn d1_migrations_create_every_collection_and_engine_table() {
    assert_creates_every_table("d1", Dialect::Sqlite);
}

#[test]
fn postgres_migrations_create_every_collection_and_engine_table() {
    assert_creates_every_table("postgres", Dialect::Postgres);
}
