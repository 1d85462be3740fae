//! The committed migrations (`migrations/`) are exactly what the model needs;
//! `cargo xtask migrations` writes the next one when the model changes.

#[test]
fn committed_migrations_match_the_model() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations");
    let write = std::env::var_os("SYNC_WRITE_MIGRATIONS").is_some();
    if let Err(problem) = sync::migrations::check_or_write(&{{app_snake}}_model::{{app_snake}}_model(), &dir, write) {
        panic!("{problem}");
    }
}
