//! The committed upstream migrations (`migrations/d1`, `migrations/postgres`,
//! `migrations/schema.json`) are exactly what the chat's sync model needs. Change the
//! model and this test names the migration to write; `cargo xtask migrations` writes it.

#[test]
fn committed_migrations_match_the_model() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations");
    let write = std::env::var_os("SYNC_WRITE_MIGRATIONS").is_some();
    if let Err(problem) = sync::migrations::check_or_write(&app::model::chat_model(), &dir, write) {
        panic!("{problem}");
    }
}
