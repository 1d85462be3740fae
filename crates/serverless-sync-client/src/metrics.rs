//! The timings the metrics panel and the devtools show, each with count, last,
//! average, max, and a histogram.

/// Upper bounds (ms) of the histogram's buckets; the last bucket holds the rest.
pub const BUCKET_BOUNDS_MS: [f64; 9] = [1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0];

/// Running statistics of one timing, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Stat {
    pub count: u64,
    pub last: f64,
    pub total: f64,
    pub max: f64,
    /// Counts per bucket of [`BUCKET_BOUNDS_MS`] (`< bound`), then `>=` the last bound.
    pub buckets: [u64; BUCKET_BOUNDS_MS.len() + 1],
}

impl Stat {
    pub fn record(&mut self, ms: f64) {
        let ms = if ms.is_finite() && ms >= 0.0 { ms } else { 0.0 };
        self.count += 1;
        self.last = ms;
        self.total += ms;
        self.max = self.max.max(ms);
        let bucket = BUCKET_BOUNDS_MS.iter().position(|bound| ms < *bound).unwrap_or(BUCKET_BOUNDS_MS.len());
        self.buckets[bucket] += 1;
    }

    pub fn average(&self) -> f64 {
        if self.count == 0 { 0.0 } else { self.total / self.count as f64 }
    }
}

/// What the panel shows.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Metrics {
    /// Mutator call -> the live query's signal holds the new rows.
    pub local_state_update: Stat,
    /// The worker's SQLite transaction (row + outbox entry).
    pub local_db_write: Stat,
    /// Push sent -> the server's confirmation received.
    pub upstream_db_write: Stat,
    /// Another client's write made (its mutation id's time) -> its rows in this page's
    /// live views: across machines this includes their clocks' difference.
    pub send_to_render: Stat,
}

#[cfg(test)]
mod tests {
    use super::{BUCKET_BOUNDS_MS, Stat};

    #[test]
    fn stats_track_count_last_average_and_max() {
        let mut stat = Stat::default();
        assert_eq!(stat.average(), 0.0);
        for ms in [2.0, 6.0, 1.0] {
            stat.record(ms);
        }
        assert_eq!((stat.count, stat.last, stat.max), (3, 1.0, 6.0));
        assert!((stat.average() - 3.0).abs() < 1e-9);
        stat.record(f64::NAN);
        assert_eq!((stat.count, stat.last, stat.max), (4, 0.0, 6.0));
        // 2.0 and 6.0 and 1.0 land in `< 5`, `< 10`, `< 2`; NaN counts as 0 (`< 1`).
        assert_eq!(stat.buckets[..4], [1, 1, 1, 1]);
        stat.record(10_000.0);
        assert_eq!(stat.buckets[BUCKET_BOUNDS_MS.len()], 1);
    }
}
