//! The upstream schema (wrangler's D1 migrations) holds exactly the tables the sync
//! model and the engine need, as `sync::sql` would create them. Edit the model and
//! this test says which statement the migrations lack.

use sync::sql::{self, Dialect};

fn d1_migrations() -> String {
    let dir = format!("{}/../migrations/d1", env!("CARGO_MANIFEST_DIR"));
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

#[test]
fn d1_migrations_create_every_collection_and_engine_table() {
    let migrations = squash(&d1_migrations());
    let model = app::model::chat_model();
    let mut expected: Vec<String> =
        model.collections().map(|c| sql::create_table(Dialect::Sqlite, c)).collect();
    expected.extend(sql::engine_schema(Dialect::Sqlite).into_iter().map(String::from));
    for statement in expected {
        assert!(migrations.contains(&squash(&statement)), "migrations/d1 lacks:\n{statement};");
    }
}
