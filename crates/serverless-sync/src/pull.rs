//! The pull's rules, decided once: the reference ([`crate::server::ServerState`]) and
//! the connector (`sync-server`, in SQL) both drive a [`PullPlan`], so no rule of a
//! pull exists twice.
//!
//! The rules:
//! - each topic is read from where its query stands: the request's cursor, or the
//!   subscription's own when further (a query joined late starts at its snapshot);
//!   named twice, a topic is read from the lower one;
//! - a change is delivered when it touches a topic of a group after that group's
//!   cursor ([`PullPlan::matches`]), unless a later change of the same record that
//!   this pull also delivers supersedes it ([`PullPlan::superseded`]);
//! - a delivered change loses its image when a later change of its record on any of
//!   the pull's topics outdates it ([`PullPlan::outdates`]): the caller holds that
//!   one already, so a pull never hands out a text that a delete or an edit
//!   committed before it replaced, yet still says the record moved on;
//! - a change whose new image lies outside every topic of the pull (the record moved
//!   to a topic the caller did not ask for) is delivered as the record leaving: no
//!   image ([`PullPlan::as_seen`]);
//! - a cursor beyond the log's head is refused; a cursor below the compaction mark
//!   must resync; with no more matching changes the cursor jumps to the head.

use std::collections::BTreeMap;

use crate::changes::{Change, ChangeKind, Cursor, Topic};
use crate::model::SyncModel;

/// One pull: each topic with the cursor it is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullPlan {
    cursor: Cursor,
    since: BTreeMap<Topic, Cursor>,
}

/// Why a pull is not answered with changes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PullRefusal {
    /// A cursor the log has not reached: never answered nor remembered (remembered, it
    /// would silence the session's pokes up to it).
    #[error("cursor {cursor} is beyond the change log's head {head}")]
    BeyondHead { cursor: u64, head: u64 },
    /// Changes the client would need (deletes, superseded images) were compacted.
    #[error(
        "cursor {cursor} is older than the compacted change log (through {through}): fetch the queries again"
    )]
    Compacted { cursor: u64, through: u64 },
}

/// A change a pull delivers, and whether a later change of its record on the pull's
/// topics outdated its image (see [`PullPlan::outdates`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Deliverable {
    pub change: Change,
    pub outdated: bool,
}

/// One page of a pull.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub changes: Vec<Change>,
    /// Where the next page starts; the head when nothing more matches.
    pub cursor: Cursor,
    pub has_more: bool,
}

impl PullPlan {
    /// `cursor` is the request's; each subscription gives its topic and, when it
    /// stands further, its own cursor.
    pub fn new(cursor: Cursor, subscriptions: impl IntoIterator<Item = (Topic, Option<Cursor>)>) -> Self {
        let mut since: BTreeMap<Topic, Cursor> = BTreeMap::new();
        for (topic, own) in subscriptions {
            let from = own.unwrap_or(cursor).max(cursor);
            since.entry(topic).and_modify(|held| *held = (*held).min(from)).or_insert(from);
        }
        Self { cursor, since }
    }

    /// The request's cursor.
    pub fn cursor(&self) -> Cursor {
        self.cursor
    }

    pub fn topics(&self) -> Vec<Topic> {
        self.since.keys().cloned().collect()
    }

    /// The topics grouped by the cursor they are read from, lowest first.
    pub fn groups(&self) -> Vec<(Cursor, Vec<Topic>)> {
        let mut groups: BTreeMap<Cursor, Vec<Topic>> = BTreeMap::new();
        for (topic, from) in &self.since {
            groups.entry(*from).or_default().push(topic.clone());
        }
        groups.into_iter().collect()
    }

    /// The furthest cursor the pull names: the log must have reached it.
    pub fn furthest(&self) -> Cursor {
        self.since.values().copied().max().unwrap_or(self.cursor).max(self.cursor)
    }

    /// Whether `change` is on one of the pull's topics after that topic's cursor.
    pub fn matches(&self, change: &Change) -> bool {
        change.topics.iter().any(|topic| self.since.get(topic).is_some_and(|from| change.seq > *from))
    }

    /// Whether `later` (a change after `change`) supersedes it for this pull: the same
    /// record, and this pull delivers `later` too (in this page or a later one).
    pub fn superseded(&self, change: &Change, later: &Change) -> bool {
        later.seq > change.seq
            && later.collection == change.collection
            && later.record_id == change.record_id
            && self.matches(later)
    }

    /// Whether `later` (a change after `change`) makes `change`'s image out of date for
    /// this caller: the same record, on one of the pull's topics. The caller holds
    /// that topic through `later` already (or gets `later` from this pull), so
    /// `change` is handed out without its image: its text was replaced.
    pub fn outdates(&self, change: &Change, later: &Change) -> bool {
        later.seq > change.seq
            && later.collection == change.collection
            && later.record_id == change.record_id
            && later.topics.iter().any(|topic| self.since.contains_key(topic))
    }

    /// What the pull delivers of `log` (ascending; every change after the lowest
    /// cursor), before paging: the matching changes no later matching change
    /// supersedes, each marked when a later change outdates its image. (The
    /// reference; the connector asks the same of its SQL:
    /// `sync::sql::pull_changes_since`.)
    pub fn deliverable<'a>(&self, log: impl IntoIterator<Item = &'a Change>) -> Vec<Deliverable> {
        let log: Vec<&Change> = log.into_iter().collect();
        // From the newest back: whether a later change of the record was seen that
        // this pull delivers (supersedes) or that is on one of its topics (outdates).
        let mut later: BTreeMap<(&str, &str), (bool, bool)> = BTreeMap::new();
        let mut kept = Vec::new();
        for change in log.iter().rev() {
            let key = (change.collection.as_str(), change.record_id.as_str());
            let (superseded, outdated) = later.get(&key).copied().unwrap_or((false, false));
            let matches = self.matches(change);
            if matches && !superseded {
                kept.push(Deliverable { change: (*change).clone(), outdated });
            }
            let on_topics = change.topics.iter().any(|topic| self.since.contains_key(topic));
            later.insert(key, (superseded || matches, outdated || on_topics));
        }
        kept.reverse();
        kept
    }

    /// A change as this pull hands it out: without its image when a later change
    /// outdated it, or when the record's new image is on none of the pull's topics
    /// (it left the caller's view).
    pub fn as_seen(&self, model: &SyncModel, deliverable: Deliverable) -> Change {
        let Deliverable { mut change, outdated } = deliverable;
        if let Some(row) = &mut change.row {
            let now_on = model.topics_for_row(&change.collection, row);
            if outdated || !now_on.iter().any(|topic| self.since.contains_key(topic)) {
                change.row = None;
                change.kind = ChangeKind::Delete;
            } else if let Some(collection) = model.collection(&change.collection) {
                // Logged before a migration added columns: the record holds their
                // added values now.
                crate::migrations::complete_image(collection, row);
            }
        }
        change
    }

    /// Whether the log (its `head` and compaction mark `through`, read in one
    /// snapshot) can answer this pull.
    pub fn check(&self, head: Cursor, through: Cursor) -> Result<(), PullRefusal> {
        let furthest = self.furthest();
        if furthest > head {
            return Err(PullRefusal::BeyondHead { cursor: furthest.0, head: head.0 });
        }
        if self.cursor < through {
            return Err(PullRefusal::Compacted { cursor: self.cursor.0, through: through.0 });
        }
        Ok(())
    }

    /// The page, once [`Self::check`] passed: `fetched` are the deliverable changes
    /// after the lowest cursor, oldest first, at most `limit + 1` (one more tells
    /// whether more remain); with no more, the cursor is the `head`.
    pub fn page(&self, model: &SyncModel, head: Cursor, mut fetched: Vec<Deliverable>, limit: usize) -> Page {
        let has_more = fetched.len() > limit;
        fetched.truncate(limit);
        let cursor = match (has_more, fetched.last()) {
            (true, Some(last)) => last.change.seq,
            _ => head.max(self.cursor),
        };
        let changes = fetched.into_iter().map(|deliverable| self.as_seen(model, deliverable)).collect();
        Page { changes, cursor, has_more }
    }
}
