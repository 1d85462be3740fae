//! Compacting the change log (see `sync::changes::compact`), run from the app's
//! scheduled handler (a cron trigger): superseded row images and deletes older than
//! the horizon are removed, so old texts stop being handed out and the log stops
//! growing with every edit. A client whose cursor is older than the compaction mark
//! is told `resync_required` and fetches its queries again, keeping its outbox.

use serde::Serialize;
use sync::changes::Cursor;
use sync::sql;
use worker::Env;

use crate::config;
use crate::connector::now_ms;
use crate::engine::Engine;
use crate::error::ApiError;
use crate::upstream::{Database, Upstream, integer};

/// Changes younger than this many seconds are never compacted (default one day):
/// a client offline for less than the horizon catches up with a plain pull.
pub const HORIZON_SETTING: &str = "SYNC_COMPACTION_HORIZON_S";
const DEFAULT_HORIZON_S: u64 = 24 * 3600;
/// Changes removed per statement: short statements never hold writers up for long.
const BATCH: u32 = 500;
/// Statements per run; what is left waits for the next run.
const MAX_BATCHES: usize = 100;

/// What one compaction run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Compaction {
    /// The compaction mark: pulls from an older cursor must resync.
    pub through: u64,
    /// Changes removed by this run.
    pub removed: usize,
}

fn horizon_ms(env: &Env) -> i64 {
    let seconds = config::setting(env, HORIZON_SETTING)
        .and_then(|value| value.parse::<u64>().ok())
        .unwrap_or(DEFAULT_HORIZON_S);
    i64::try_from(seconds.saturating_mul(1000)).unwrap_or(i64::MAX)
}

impl Engine {
    /// Compacts the change log through the newest change older than the horizon
    /// ([`HORIZON_SETTING`]). Call it from the worker's scheduled handler.
    pub async fn compact(&self, env: &Env) -> Result<Compaction, ApiError> {
        let db = Upstream::open(self, env).await?;
        compact(&db, now_ms().saturating_sub(horizon_ms(env))).await
    }
}

/// Compacts `db`'s change log through its newest change older than `before_ms`.
pub async fn compact<D: Database>(db: &D, before_ms: i64) -> Result<Compaction, ApiError> {
    let bound = db.rows(&sql::compaction_bound(db.dialect(), before_ms)).await?;
    let through = bound.first().and_then(|row| integer(row, "through")).unwrap_or(0);
    let through = Cursor(u64::try_from(through).unwrap_or(0));
    if through == Cursor::START {
        return Ok(Compaction { through: 0, removed: 0 });
    }
    // The mark first: from now on a pull that could miss a removed change resyncs.
    db.write(&[sql::mark_compacted(db.dialect(), through)]).await?;
    let mut removed = 0;
    for _ in 0..MAX_BATCHES {
        // One transaction: the answers the removed changes stood for are kept first.
        let results = db.write(&sql::compact_changes(db.dialect(), through, BATCH)).await?;
        let batch = results.last().map_or(0, Vec::len);
        removed += batch;
        if batch < BATCH as usize {
            break;
        }
    }
    Ok(Compaction { through: through.0, removed })
}
