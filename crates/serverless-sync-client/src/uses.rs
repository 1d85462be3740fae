//! Which queries are in use, and which have been unused for their time to live: plain
//! code the SQLite worker (`runtime`) carries out, tested natively.
//!
//! A live view names itself (a *holder*) when it asks for its query; a view shows one
//! query at a time, so asking for another lets the first go, and the view going away
//! lets its query go ([`QueryUses::released`]). A query is in use while a holder holds
//! it; once none does, its time to live (its own, else the client's default) counts
//! from its last use, and past it the query is expired: the worker stops syncing it and
//! evicts its rows. A query asked without a holder (a preload) is kept for its time to
//! live from that moment.

use std::collections::{BTreeMap, BTreeSet};

/// The queries' uses, by topic.
#[derive(Debug, Clone)]
pub struct QueryUses {
    default_ttl_ms: u64,
    holders: BTreeMap<String, String>,
    last_use: BTreeMap<String, f64>,
    ttl_ms: BTreeMap<String, u64>,
    /// When the worker started syncing (for the first sweep).
    syncing_since: Option<f64>,
    swept: bool,
}

/// What a check of the uses found ([`QueryUses::expire`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Expiry {
    /// Topics whose time to live ran out: no longer synced, their rows evicted.
    pub expired: Vec<String>,
    /// Sweep the store even if nothing expired: the worker has synced for a time to
    /// live, so every open view has asked for its query, and rows an earlier page
    /// load kept for queries nobody asked for since can go (once).
    pub sweep: bool,
}

impl QueryUses {
    pub fn new(default_ttl_ms: u64) -> Self {
        Self {
            default_ttl_ms,
            holders: BTreeMap::new(),
            last_use: BTreeMap::new(),
            ttl_ms: BTreeMap::new(),
            syncing_since: None,
            swept: false,
        }
    }

    /// The client's default time to live (the page's `Start` may set it).
    pub fn set_default_ttl(&mut self, ttl_ms: u64) {
        self.default_ttl_ms = ttl_ms;
    }

    pub fn default_ttl(&self) -> u64 {
        self.default_ttl_ms
    }

    /// The worker started syncing at `now`.
    pub fn syncing(&mut self, now: f64) {
        self.syncing_since.get_or_insert(now);
    }

    /// `topic` was asked for at `now`, by `holder` if a view shows it, with the
    /// view's own time to live if it has one.
    pub fn asked(&mut self, topic: &str, holder: Option<&str>, ttl_ms: Option<u64>, now: f64) {
        self.last_use.insert(topic.to_string(), now);
        if let Some(ttl) = ttl_ms {
            self.ttl_ms.insert(topic.to_string(), ttl);
        }
        if let Some(holder) = holder
            && let Some(before) = self.holders.insert(holder.to_string(), topic.to_string())
            && before != topic
        {
            self.last_use.insert(before, now);
        }
    }

    /// The view `holder` went away at `now`.
    pub fn released(&mut self, holder: &str, now: f64) {
        if let Some(topic) = self.holders.remove(holder) {
            self.last_use.insert(topic, now);
        }
    }

    /// Whether a view shows `topic`.
    pub fn is_held(&self, topic: &str) -> bool {
        self.holders.values().any(|held| held == topic)
    }

    /// Of `known` (the topics the worker syncs), those unused past their time to live
    /// at `now`, forgotten here; and whether the store is due its one sweep.
    pub fn expire<'a>(&mut self, known: impl IntoIterator<Item = &'a str>, now: f64) -> Expiry {
        let held: BTreeSet<&str> = self.holders.values().map(String::as_str).collect();
        let expired: Vec<String> = known
            .into_iter()
            .filter(|topic| !held.contains(topic))
            .filter(|topic| {
                let ttl = self.ttl_ms.get(*topic).copied().unwrap_or(self.default_ttl_ms) as f64;
                self.last_use.get(*topic).is_none_or(|at| now - at >= ttl)
            })
            .map(str::to_string)
            .collect();
        for topic in &expired {
            self.last_use.remove(topic);
            self.ttl_ms.remove(topic);
        }
        let due = self.syncing_since.is_some_and(|since| now - since >= self.default_ttl_ms as f64);
        let sweep = !self.swept && due;
        self.swept |= sweep;
        Expiry { expired, sweep }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_query_never_expires_and_a_released_one_after_its_time_to_live() {
        let mut uses = QueryUses::new(1_000);
        uses.syncing(0.0);
        uses.asked("feed_a", Some("page:0"), None, 0.0);
        assert_eq!(uses.expire(["feed_a"], 10_000.0).expired, Vec::<String>::new(), "held");
        // The view shows another feed: the first is let go now.
        uses.asked("feed_b", Some("page:0"), None, 10_000.0);
        assert!(!uses.is_held("feed_a") && uses.is_held("feed_b"));
        assert!(uses.expire(["feed_a", "feed_b"], 10_999.0).expired.is_empty());
        assert_eq!(uses.expire(["feed_a", "feed_b"], 11_000.0).expired, vec!["feed_a".to_string()]);
        // The view goes away: its feed lives on for the time to live.
        uses.released("page:0", 12_000.0);
        assert!(uses.expire(["feed_b"], 12_500.0).expired.is_empty());
        assert_eq!(uses.expire(["feed_b"], 13_000.0).expired, vec!["feed_b".to_string()]);
    }

    #[test]
    fn a_query_may_live_longer_or_shorter_than_the_default_and_a_preload_lives_its_ttl() {
        let mut uses = QueryUses::new(1_000);
        uses.asked("long", None, Some(60_000), 0.0);
        uses.asked("short", None, Some(10), 0.0);
        uses.asked("preload", None, None, 0.0);
        let expiry = uses.expire(["long", "short", "preload"], 500.0);
        assert_eq!(expiry.expired, vec!["short".to_string()]);
        let expiry = uses.expire(["long", "preload"], 1_000.0);
        assert_eq!(expiry.expired, vec!["preload".to_string()]);
        assert!(uses.expire(["long"], 59_999.0).expired.is_empty());
        // Asked again, it lives again from then.
        uses.asked("long", None, None, 59_999.0);
        assert!(uses.expire(["long"], 100_000.0).expired.is_empty(), "its own ttl is kept");
        assert_eq!(uses.expire(["long"], 119_999.0).expired, vec!["long".to_string()]);
    }

    #[test]
    fn the_store_is_swept_once_a_time_to_live_after_syncing_starts() {
        let mut uses = QueryUses::new(1_000);
        assert!(!uses.expire([], 5_000.0).sweep, "not syncing yet");
        uses.syncing(5_000.0);
        assert!(!uses.expire([], 5_999.0).sweep);
        assert!(uses.expire([], 6_000.0).sweep);
        assert!(!uses.expire([], 7_000.0).sweep, "once");
        // A query nobody ever asked for (known to the worker from before) expires.
        assert_eq!(uses.expire(["stale"], 7_000.0).expired, vec!["stale".to_string()]);
    }
}
