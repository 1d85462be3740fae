//! The committed migrations (`examples/todo/migrations`) are exactly what the todo
//! model needs; `cargo xtask migrations` writes the next one when the model changes.

#[test]
fn committed_migrations_match_the_model() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations");
    let write = std::env::var_os("SYNC_WRITE_MIGRATIONS").is_some();
    if let Err(problem) = sync::migrations::check_or_write(&todo_model::todo_model(), &dir, write) {
        panic!("{problem}");
    }
}

/// The worker hands every PostgreSQL migration to the engine (which applies them on
/// first connection): a file missing from its list would never run.
#[test]
fn the_worker_applies_every_postgres_migration() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let worker =
        std::fs::read_to_string(root.join("../todo-worker/src/lib.rs")).expect("the worker's lib.rs");
    if let Err(problem) =
        sync::migrations::check_postgres_migrations_listed(&root.join("../migrations"), &worker)
    {
        panic!("../todo-worker/src/lib.rs: {problem}");
    }
}
