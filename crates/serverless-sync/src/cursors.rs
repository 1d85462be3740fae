//! Per-topic cursors: how a client applies the changes a poke carries without
//! pulling, and how a query joined late starts from its snapshot.
//!
//! A client's topic cursor `c` for topic `T` means: it holds every change on `T` with
//! a sequence number up to `c`. A poke for `T` carries the changes on `T` of one
//! upstream transaction (sequence numbers `first..=cursor`, nobody else's in
//! between) and `since`, a number below `first` with no change on `T` in
//! `(since, first)`. So a client with `c >= since` holds everything on `T` through
//! `cursor` once it applies the carried changes; any other client has a gap and pulls.
//!
//! The connector finds `since` with one indexed look back
//! ([`crate::sql::topic_predecessors`]) and [`poke_since`]; the client keeps its
//! cursors in [`TopicCursors`].

use std::collections::BTreeMap;

use crate::changes::Cursor;
use crate::sql::PREDECESSOR_WINDOW;

/// `since` for a poke whose transaction's first change is `first`: the newest change on
/// the topic before it (`found`, looked for within [`PREDECESSOR_WINDOW`]), or, when
/// there is none in the window, the window's start. Never below the compaction mark:
/// compaction may have removed changes at or below it, so a client there must pull
/// (and is told to resync).
pub fn poke_since(found: Option<Cursor>, first: Cursor, compacted: Cursor) -> Cursor {
    let bound = found.unwrap_or(Cursor(first.0.saturating_sub(PREDECESSOR_WINDOW)));
    bound.max(compacted)
}

/// The client's cursor per topic (topic text -> cursor).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicCursors {
    cursors: BTreeMap<String, Cursor>,
}

impl TopicCursors {
    /// Where `topic` stands: its own cursor, or `pulled` (what the client's last
    /// complete pull covered for all its topics) if that is further.
    pub fn get(&self, topic: &str, pulled: Cursor) -> Cursor {
        self.cursors.get(topic).copied().unwrap_or_default().max(pulled)
    }

    /// The query's snapshot is installed, exact at `cursor`.
    pub fn snapshot(&mut self, topic: &str, cursor: Cursor) {
        self.advance(topic, cursor);
    }

    /// A pull answered every change on these topics through `cursor`.
    pub fn pulled<'a>(&mut self, topics: impl IntoIterator<Item = &'a str>, cursor: Cursor) {
        for topic in topics {
            self.advance(topic, cursor);
        }
    }

    /// A poke for `topic` carries the changes of `(since, cursor]`. `true`: they follow
    /// what the client holds (apply them; the topic now stands at `cursor`). `false`:
    /// there is a gap before them (pull).
    pub fn follow(&mut self, topic: &str, since: Cursor, cursor: Cursor, pulled: Cursor) -> bool {
        if self.get(topic, pulled) < since {
            return false;
        }
        self.advance(topic, cursor);
        true
    }

    /// Back to nothing (a resync starts again from snapshots).
    pub fn clear(&mut self) {
        self.cursors.clear();
    }

    fn advance(&mut self, topic: &str, cursor: Cursor) {
        let held = self.cursors.entry(topic.to_string()).or_default();
        *held = (*held).max(cursor);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poke_that_follows_applies_and_one_after_a_gap_pulls() {
        let mut cursors = TopicCursors::default();
        cursors.snapshot("board{a}", Cursor(10));
        // Changes 11..=12, nothing on the topic since 10: applied.
        assert!(cursors.follow("board{a}", Cursor(10), Cursor(12), Cursor(0)));
        assert_eq!(cursors.get("board{a}", Cursor(0)), Cursor(12));
        // The next one says the previous change on the topic was 15 (a direct write
        // whose poke carried nothing): a gap.
        assert!(!cursors.follow("board{a}", Cursor(15), Cursor(16), Cursor(0)));
        assert_eq!(cursors.get("board{a}", Cursor(0)), Cursor(12));
        // The pull fills it.
        cursors.pulled(["board{a}"], Cursor(16));
        assert!(cursors.follow("board{a}", Cursor(16), Cursor(20), Cursor(0)));
        // Pokes arriving late (a writer that poked after a later one) still follow.
        assert!(cursors.follow("board{a}", Cursor(12), Cursor(13), Cursor(0)));
        assert_eq!(cursors.get("board{a}", Cursor(0)), Cursor(20));
    }

    #[test]
    fn a_topic_never_seen_stands_where_the_last_pull_left_all() {
        let mut cursors = TopicCursors::default();
        assert_eq!(cursors.get("board{b}", Cursor(7)), Cursor(7));
        assert!(!cursors.follow("board{b}", Cursor(8), Cursor(9), Cursor(7)));
        assert!(cursors.follow("board{b}", Cursor(7), Cursor(9), Cursor(7)));
        cursors.clear();
        assert_eq!(cursors.get("board{b}", Cursor(0)), Cursor(0));
    }

    #[test]
    fn since_is_the_previous_change_or_the_window_and_never_below_compaction() {
        assert_eq!(poke_since(Some(Cursor(40)), Cursor(50), Cursor(0)), Cursor(40));
        assert_eq!(poke_since(Some(Cursor(40)), Cursor(50), Cursor(45)), Cursor(45));
        assert_eq!(poke_since(None, Cursor(50), Cursor(0)), Cursor(0));
        let first = Cursor(PREDECESSOR_WINDOW + 50);
        assert_eq!(poke_since(None, first, Cursor(0)), Cursor(50));
    }
}
