//! Lists the app's PostgreSQL migrations for the worker: every file in
//! `migrations/postgres`, in name order (`sync::migrations::postgres_migrations_source`).

fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let dir = std::path::Path::new(&manifest).join("../migrations/postgres");
    println!("cargo::rerun-if-changed={}", dir.display());
    let source =
        sync::migrations::postgres_migrations_source(&dir).unwrap_or_else(|problem| panic!("{problem}"));
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    std::fs::write(std::path::Path::new(&out).join("postgres_migrations.rs"), source)
        .expect("writing postgres_migrations.rs");
}
