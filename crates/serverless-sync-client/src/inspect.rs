//! What the devtools panel shows, as the SQLite Web Worker keeps it: the timeline of
//! sync events, where each queued write stands, what last refreshed each query, and
//! how far the store trails the server. Plain code: the worker records into an
//! [`Inspector`] and, when the page asks, reads an [`Inspection`] and renders it
//! (`crate::panel`); only the HTML crosses the bridge.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde_json::Value;

use crate::bridge::Storage;

/// Events the timeline keeps (the oldest go first).
pub const TIMELINE_EVENTS: usize = 500;
/// Rejected writes the outbox view keeps after they left the outbox.
pub const REJECTIONS_KEPT: usize = 50;
/// Queued writes the outbox view (and its Status count) reads at most: the oldest ones.
pub const QUEUED_SHOWN: usize = 200;

/// Everything the panel shows from the worker, at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Inspection {
    /// Wall-clock time of this answer (ms since the epoch).
    pub at: f64,
    pub client_id: String,
    pub online: bool,
    pub needs_auth: bool,
    pub storage: Storage,
    /// The local schema version (the model's digest the tables were built for).
    pub schema_version: String,
    /// What the store pulled through.
    pub cursor: u64,
    /// The newest change-log position the server has mentioned (a poke, a pull, a
    /// push's answer).
    pub server_head: u64,
    /// How far every synced query is known to be up to date: the lowest of their
    /// cursors (a poke moves one query's cursor, a pull the store's), at least the
    /// store's cursor. `server_head - synced_through` is how far this client trails.
    pub synced_through: u64,
    pub last_poke_at: Option<f64>,
    pub last_pull_at: Option<f64>,
    pub last_error: Option<String>,
    pub server_not_ready: Option<String>,
    /// Queued and recently rejected writes, newest first.
    pub outbox: Vec<OutboxItem>,
    pub queries: Vec<QueryItem>,
    /// Newest last.
    pub timeline: Vec<TimelineEvent>,
    /// Each local table and its row count, by name.
    pub tables: Vec<TableCount>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OutboxItem {
    pub mutation_id: String,
    pub name: String,
    pub args: Value,
    pub record_id: String,
    pub state: OutboxState,
}

#[derive(Debug, Clone, PartialEq)]
pub enum OutboxState {
    /// Written locally, not sent yet.
    Local,
    /// In the push on its way.
    Sending,
    /// A push with it failed for a reason that is not the user's: tried again.
    Retrying { attempt: u32, next_try_at: f64, reason: String },
    /// The app refused it: rolled back locally.
    Rejected { reason: String },
}

#[derive(Debug, Clone, PartialEq)]
pub struct QueryItem {
    pub topic: String,
    pub name: String,
    pub args: Value,
    /// Rows the query reads locally now.
    pub rows: u64,
    pub cursor: u64,
    /// Its server snapshot is installed.
    pub synced: bool,
    pub last_refresh: Option<Refresh>,
    /// Why the server refused it.
    pub error: Option<String>,
}

/// What last brought rows to a query, and when (ms since the epoch).
#[derive(Debug, Clone, PartialEq)]
pub struct Refresh {
    pub by: RefreshKind,
    pub at: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshKind {
    /// A poke that carried its rows.
    Poke,
    Pull,
    Snapshot,
    LocalWrite,
    /// The server answered a push of this client's.
    PushAnswer,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TableCount {
    pub name: String,
    pub rows: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TimelineEvent {
    /// When it ended (ms since the epoch).
    pub at: f64,
    pub kind: EventKind,
    /// How long it took, for requests.
    pub ms: Option<f64>,
    /// A short line: counts, outcome, reason.
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Push,
    Pull,
    Poke,
    Snapshot,
    Resync,
    SignIn,
    Socket,
    Failure,
}

impl EventKind {
    pub fn label(self) -> &'static str {
        match self {
            EventKind::Push => "push",
            EventKind::Pull => "pull",
            EventKind::Poke => "poke",
            EventKind::Snapshot => "snapshot",
            EventKind::Resync => "resync",
            EventKind::SignIn => "sign-in",
            EventKind::Socket => "socket",
            EventKind::Failure => "failure",
        }
    }
}

/// A queued write as the store holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Queued {
    pub mutation_id: String,
    pub name: String,
    pub args: Value,
    pub record_id: String,
}

/// What the worker remembers for the panel besides the store. Bounded: the timeline
/// keeps [`TIMELINE_EVENTS`], rejections [`REJECTIONS_KEPT`], refreshes one per
/// subscribed topic.
#[derive(Debug, Clone, Default)]
pub struct Inspector {
    timeline: VecDeque<TimelineEvent>,
    sending: BTreeSet<String>,
    retry: Option<(u32, f64, String)>,
    rejected: VecDeque<OutboxItem>,
    server_head: u64,
    last_poke_at: Option<f64>,
    last_pull_at: Option<f64>,
    refreshed: BTreeMap<String, Refresh>,
}

/// `1 write`, `2 writes`.
pub fn count(n: usize, noun: &str) -> String {
    match (n, noun.strip_suffix('y')) {
        (1, _) => format!("1 {noun}"),
        (_, Some(stem)) => format!("{n} {stem}ies"),
        (_, None) => format!("{n} {noun}s"),
    }
}

impl Inspector {
    pub fn record(&mut self, at: f64, kind: EventKind, ms: Option<f64>, detail: impl Into<String>) {
        if self.timeline.len() == TIMELINE_EVENTS {
            self.timeline.pop_front();
        }
        self.timeline.push_back(TimelineEvent { at, kind, ms, detail: detail.into() });
    }

    /// The server mentioned change-log position `cursor`.
    pub fn saw_head(&mut self, cursor: u64) {
        self.server_head = self.server_head.max(cursor);
    }

    pub fn poked(&mut self, at: f64) {
        self.last_poke_at = Some(at);
    }

    pub fn pulled(&mut self, at: f64) {
        self.last_pull_at = Some(at);
    }

    /// A push with these writes is on its way.
    pub fn sending(&mut self, mutation_ids: impl IntoIterator<Item = String>) {
        self.sending = mutation_ids.into_iter().collect();
    }

    /// The push came back (answered or not).
    pub fn sent(&mut self) {
        self.sending.clear();
        self.retry = None;
    }

    /// The push failed and goes again at `next_try_at` (attempt `attempt`).
    pub fn retrying(&mut self, attempt: u32, next_try_at: f64, reason: impl Into<String>) {
        self.sending.clear();
        self.retry = Some((attempt, next_try_at, reason.into()));
    }

    /// The app refused a write: shown as rejected until newer ones push it out.
    pub fn rejected(&mut self, write: Queued, reason: String) {
        if self.rejected.len() == REJECTIONS_KEPT {
            self.rejected.pop_back();
        }
        self.rejected.push_front(OutboxItem {
            mutation_id: write.mutation_id,
            name: write.name,
            args: write.args,
            record_id: write.record_id,
            state: OutboxState::Rejected { reason },
        });
    }

    /// `topics` got rows by `by`.
    pub fn refreshed<'a>(&mut self, topics: impl IntoIterator<Item = &'a str>, by: RefreshKind, at: f64) {
        for topic in topics {
            self.refreshed.insert(topic.to_string(), Refresh { by, at });
        }
    }

    /// Drops what it remembers of topics no longer read.
    pub fn keep_topics(&mut self, topics: &BTreeSet<String>) {
        self.refreshed.retain(|topic, _| topics.contains(topic));
    }

    pub fn last_refresh(&self, topic: &str) -> Option<Refresh> {
        self.refreshed.get(topic).cloned()
    }

    pub fn server_head(&self) -> u64 {
        self.server_head
    }

    pub fn last_poke_at(&self) -> Option<f64> {
        self.last_poke_at
    }

    pub fn last_pull_at(&self) -> Option<f64> {
        self.last_pull_at
    }

    pub fn timeline(&self) -> Vec<TimelineEvent> {
        self.timeline.iter().cloned().collect()
    }

    /// The outbox view: `queued` (oldest first, as the store holds it) with each
    /// one's state, newest first, then the recent rejections.
    pub fn outbox(&self, queued: Vec<Queued>) -> Vec<OutboxItem> {
        let mut items: Vec<OutboxItem> = queued
            .into_iter()
            .map(|write| {
                let state = if self.sending.contains(&write.mutation_id) {
                    OutboxState::Sending
                } else if let Some((attempt, next_try_at, reason)) = &self.retry {
                    OutboxState::Retrying {
                        attempt: *attempt,
                        next_try_at: *next_try_at,
                        reason: reason.clone(),
                    }
                } else {
                    OutboxState::Local
                };
                OutboxItem {
                    mutation_id: write.mutation_id,
                    name: write.name,
                    args: write.args,
                    record_id: write.record_id,
                    state,
                }
            })
            .collect();
        items.reverse();
        items.extend(self.rejected.iter().cloned());
        items
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queued(id: &str) -> Queued {
        Queued { mutation_id: id.into(), name: "add".into(), args: Value::Null, record_id: format!("r{id}") }
    }

    #[test]
    fn counts_read_as_words() {
        assert_eq!(count(1, "write"), "1 write");
        assert_eq!(count(0, "change"), "0 changes");
        assert_eq!(count(2, "query"), "2 queries");
    }

    #[test]
    fn the_timeline_keeps_the_newest_events() {
        let mut inspector = Inspector::default();
        for index in 0..(TIMELINE_EVENTS + 10) {
            inspector.record(index as f64, EventKind::Pull, Some(1.0), format!("{index}"));
        }
        let timeline = inspector.timeline();
        assert_eq!(timeline.len(), TIMELINE_EVENTS);
        assert_eq!(timeline.first().map(|event| event.detail.as_str()), Some("10"));
        assert_eq!(timeline.last().map(|event| event.at), Some((TIMELINE_EVENTS + 9) as f64));
    }

    #[test]
    fn outbox_states_follow_the_push() {
        let mut inspector = Inspector::default();
        let states = |inspector: &Inspector| {
            inspector
                .outbox(vec![queued("1"), queued("2")])
                .into_iter()
                .map(|item| item.state)
                .collect::<Vec<_>>()
        };
        assert_eq!(states(&inspector), vec![OutboxState::Local, OutboxState::Local]);
        inspector.sending(["1".to_string()]);
        let items = inspector.outbox(vec![queued("1"), queued("2")]);
        assert_eq!(items[0].mutation_id, "2", "newest first");
        assert_eq!(items[1].state, OutboxState::Sending);
        inspector.retrying(3, 99.0, "offline");
        assert_eq!(
            states(&inspector)[0],
            OutboxState::Retrying { attempt: 3, next_try_at: 99.0, reason: "offline".into() }
        );
        inspector.sent();
        inspector.rejected(queued("0"), "too long".into());
        let items = inspector.outbox(vec![queued("2")]);
        assert_eq!(items.len(), 2);
        assert_eq!(items[1].state, OutboxState::Rejected { reason: "too long".into() });
    }

    #[test]
    fn rejections_and_refreshes_are_bounded() {
        let mut inspector = Inspector::default();
        for index in 0..(REJECTIONS_KEPT + 5) {
            inspector.rejected(queued(&index.to_string()), "no".into());
        }
        let outbox = inspector.outbox(Vec::new());
        assert_eq!(outbox.len(), REJECTIONS_KEPT);
        assert_eq!(outbox[0].mutation_id, (REJECTIONS_KEPT + 4).to_string(), "newest first");
        inspector.refreshed(["a", "b"], RefreshKind::Snapshot, 1.0);
        inspector.refreshed(["a"], RefreshKind::Poke, 2.0);
        assert_eq!(inspector.last_refresh("a"), Some(Refresh { by: RefreshKind::Poke, at: 2.0 }));
        inspector.keep_topics(&BTreeSet::from(["a".to_string()]));
        assert_eq!(inspector.last_refresh("b"), None);
        inspector.saw_head(5);
        inspector.saw_head(3);
        assert_eq!(inspector.server_head(), 5);
    }
}
