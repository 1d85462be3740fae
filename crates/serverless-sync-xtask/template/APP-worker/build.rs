//! Lists the app's PostgreSQL migrations for the worker: every file in
//! `migrations/postgres`, in name order.

fn main() {
    sync::migrations::build_postgres_migrations("../migrations/postgres");
}
