//! The browser's local SQLite database. Lives in a dedicated Web Worker: the OPFS
//! sync-access-handle pool VFS (`sahpool`) only works there.

use rusqlite::{Connection, OpenFlags};
use sqlite_wasm_vfs::sahpool::{OpfsSAHError, OpfsSAHPoolCfgBuilder, install};

/// Name under which the OPFS pool for `directory` is registered with SQLite: one VFS
/// per pool directory (registering one name twice with two directories is refused).
pub fn vfs_name(directory: &str) -> String {
    format!("opfs-sahpool:{directory}")
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("OPFS storage is unavailable: {0}")]
    OpfsUnavailable(#[from] OpfsSAHError),
    #[error("SQLite error: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// Opens (creating if needed) `file` inside the OPFS pool stored under `directory`.
///
/// Only one holder per pool directory per origin is possible: a second open from
/// another tab fails with `OpfsUnavailable`.
pub async fn open_opfs(directory: &str, file: &str) -> Result<Connection, StoreError> {
    let vfs = vfs_name(directory);
    let config = OpfsSAHPoolCfgBuilder::new().vfs_name(&vfs).directory(directory).build();
    install::<sqlite_wasm_rs::WasmOsCallback>(&config, false).await?;
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE;
    let connection = Connection::open_with_flags_and_vfs(file, flags, vfs.as_str())?;
    // Exclusive locking first: this worker is the pool's only user anyway (OPFS
    // access handles are exclusive), and under it SQLite keeps WAL's index in its own
    // memory, so WAL needs no shared memory (which sahpool does not have).
    // WAL with synchronous=NORMAL appends a commit to the log without a flush (a
    // rollback journal flushed twice per commit); the log is flushed when it is
    // checkpointed into the database. Durability kept for what users do: every
    // acknowledged write is in the file when its transaction commits, so a reload, a
    // closed tab or a crashed worker never loses it (the e2e reload and offline suites
    // check this); an operating-system crash or power loss at the wrong moment may
    // lose the last transactions, never corrupt the database.
    connection.pragma_update(None, "locking_mode", "EXCLUSIVE")?;
    connection.pragma_update(None, "journal_mode", "WAL")?;
    connection.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(connection)
}

/// An in-memory database, for browsers without OPFS (private windows, old engines).
pub fn open_in_memory() -> Result<Connection, StoreError> {
    Ok(Connection::open_in_memory()?)
}
