//! The three timings the metrics panel shows, each with count, last, average, max.

/// Running statistics of one timing, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Stat {
    pub count: u64,
    pub last: f64,
    pub total: f64,
    pub max: f64,
}

impl Stat {
    pub fn record(&mut self, ms: f64) {
        let ms = if ms.is_finite() && ms >= 0.0 { ms } else { 0.0 };
        self.count += 1;
        self.last = ms;
        self.total += ms;
        self.max = self.max.max(ms);
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
}

#[cfg(test)]
mod tests {
    use super::Stat;

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
    }
}
