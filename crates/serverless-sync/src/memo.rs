//! What one worker isolate remembers between requests, without I/O: which session
//! objects confirmed which client, which topics they confirmed it watches, and the
//! highest change-log head read. It only saves Durable Object calls; losing it (an
//! isolate restart, or the byte bound starting it over) costs calls, never
//! correctness. The worker keeps one per isolate; the simulation keeps several and
//! restarts them.
//!
//! Rules:
//! - a (session, client) pair is remembered only after the session's object
//!   confirmed it (a session belongs to its first client for good, so it stays true);
//! - a pull skips the session call only when the pair and every topic it names were
//!   confirmed in this isolate; the call after answering then refreshes the topics'
//!   authorization instead ([`PullWatch::refresh`]);
//! - a pull's cursor is acknowledged before the read only when this isolate has seen
//!   the log reach it (the log only grows); any other waits for the read;
//! - the memo holds at most [`MEMO_BYTES`] of ids; past that it starts again.

use std::collections::HashSet;

use crate::changes::Cursor;

/// Bytes of ids one isolate's memo keeps before it starts again.
pub const MEMO_BYTES: usize = 4 << 20;
/// What an entry costs beyond its ids (hash-set slot, string headers).
const ENTRY_OVERHEAD: usize = 64;

#[derive(Debug, Clone, Default)]
pub struct IsolateMemo {
    claimed: HashSet<(String, String)>,
    watching: HashSet<(String, String, String)>,
    known_head: u64,
    bytes: usize,
}

/// What a pull does with the session object before and after its read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullWatch {
    /// Call the session before the read (claim it, watch the topics), acknowledging
    /// this cursor at once if set.
    pub call_before: Option<Option<u64>>,
    /// Topics whose authorization the call after answering refreshes (those the
    /// skipped call would have refreshed).
    pub refresh: Vec<String>,
    /// Call the session after answering (acknowledge the page's cursor, refresh).
    /// A pull that names no topic calls no session object at all: it watches nothing,
    /// and a caller with fresh keys must not make objects by the thousand.
    pub call_after: bool,
}

impl IsolateMemo {
    /// What the memo holds, for the operator's stats: (claimed sessions, watched
    /// (session, topic) pairs, bytes it counts, the head it saw).
    pub fn sizes(&self) -> (usize, usize, usize, u64) {
        (self.claimed.len(), self.watching.len(), self.bytes, self.known_head)
    }

    pub fn new() -> Self {
        Self::default()
    }

    /// The session's object confirmed `client` as its owner in this isolate.
    pub fn is_claimed(&self, session: &str, client: &str) -> bool {
        self.claimed.contains(&(session.to_string(), client.to_string()))
    }

    /// Notes that the session's object confirmed `client` as its owner.
    pub fn remember_claim(&mut self, session: &str, client: &str) {
        let key = (session.to_string(), client.to_string());
        if !self.claimed.contains(&key) {
            self.reserve(session.len() + client.len());
            self.claimed.insert(key);
        }
    }

    /// Notes that the session's object confirmed `client` watches `topics`.
    pub fn remember_watch(&mut self, session: &str, client: &str, topics: &[String]) {
        self.remember_claim(session, client);
        for topic in topics {
            let key = (session.to_string(), client.to_string(), topic.clone());
            if !self.watching.contains(&key) {
                self.reserve(session.len() + client.len() + topic.len());
                self.watching.insert(key);
            }
        }
    }

    /// The app refused `topics` to the session: its object no longer watches them.
    pub fn forget_watch(&mut self, session: &str, client: &str, topics: &[String]) {
        for topic in topics {
            self.watching.remove(&(session.to_string(), client.to_string(), topic.clone()));
        }
    }

    /// The log reached `head` (a read saw it).
    pub fn saw_head(&mut self, head: Cursor) {
        self.known_head = self.known_head.max(head.0);
    }

    /// Whether this isolate has seen the log reach `cursor`.
    pub fn vouches_for(&self, cursor: Cursor) -> bool {
        cursor.0 <= self.known_head
    }

    /// How many of `topics` this isolate has not seen the session watch: each may
    /// make a topic object, so each counts against the caller's watch limit.
    pub fn unknown_watches(&self, session: &str, client: &str, topics: &[String]) -> usize {
        topics
            .iter()
            .filter(|topic| {
                !self.watching.contains(&(session.to_string(), client.to_string(), (*topic).clone()))
            })
            .count()
    }

    /// What a pull of `topics` from `cursor` does with the session object.
    pub fn pull_watch(&self, session: &str, client: &str, topics: &[String], cursor: Cursor) -> PullWatch {
        if topics.is_empty() {
            return PullWatch { call_before: None, refresh: Vec::new(), call_after: false };
        }
        let known = self.is_claimed(session, client)
            && topics.iter().all(|topic| {
                self.watching.contains(&(session.to_string(), client.to_string(), topic.clone()))
            });
        if known {
            PullWatch { call_before: None, refresh: topics.to_vec(), call_after: true }
        } else {
            let acknowledge = self.vouches_for(cursor).then_some(cursor.0);
            PullWatch { call_before: Some(acknowledge), refresh: Vec::new(), call_after: true }
        }
    }

    /// Bytes of ids held now.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    fn reserve(&mut self, ids: usize) {
        let cost = ids + ENTRY_OVERHEAD;
        if self.bytes + cost > MEMO_BYTES {
            // Forgetting only costs object calls; the known head stays true.
            self.claimed.clear();
            self.watching.clear();
            self.bytes = 0;
        }
        self.bytes += cost;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topics(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| (*name).to_string()).collect()
    }

    #[test]
    fn a_pull_calls_the_session_until_it_confirmed_the_pair_and_every_topic() {
        let mut memo = IsolateMemo::new();
        let watch = memo.pull_watch("s", "c", &topics(&["t1"]), Cursor(0));
        assert_eq!(watch, PullWatch { call_before: Some(Some(0)), refresh: vec![], call_after: true });
        memo.remember_watch("s", "c", &topics(&["t1"]));
        assert_eq!(memo.pull_watch("s", "c", &topics(&["t1"]), Cursor(0)).call_before, None);
        assert_eq!(memo.pull_watch("s", "c", &topics(&["t1"]), Cursor(0)).refresh, topics(&["t1"]));
        // Another topic, another client on the same session, another session: called.
        assert!(memo.pull_watch("s", "c", &topics(&["t1", "t2"]), Cursor(0)).call_before.is_some());
        assert!(memo.pull_watch("s", "other", &topics(&["t1"]), Cursor(0)).call_before.is_some());
        assert!(memo.pull_watch("s2", "c", &topics(&["t1"]), Cursor(0)).call_before.is_some());
    }

    #[test]
    fn a_cursor_is_acknowledged_before_the_read_only_when_the_log_was_seen_there() {
        let mut memo = IsolateMemo::new();
        let t1 = topics(&["t1"]);
        assert_eq!(memo.pull_watch("s", "c", &t1, Cursor(5)).call_before, Some(None));
        memo.saw_head(Cursor(7));
        memo.saw_head(Cursor(3));
        assert_eq!(memo.pull_watch("s", "c", &t1, Cursor(5)).call_before, Some(Some(5)));
        assert_eq!(memo.pull_watch("s", "c", &t1, Cursor(8)).call_before, Some(None));
    }

    #[test]
    fn a_pull_of_no_topic_calls_no_session_object() {
        let memo = IsolateMemo::new();
        let watch = memo.pull_watch("s", "c", &[], Cursor(5));
        assert_eq!(watch, PullWatch { call_before: None, refresh: vec![], call_after: false });
    }

    #[test]
    fn the_memo_starts_again_past_its_byte_bound_and_keeps_the_head() {
        let mut memo = IsolateMemo::new();
        memo.saw_head(Cursor(9));
        let long = "x".repeat(250_000);
        for index in 0..40 {
            memo.remember_watch(&format!("s{index}"), "c", std::slice::from_ref(&long));
            assert!(memo.bytes() <= MEMO_BYTES);
        }
        assert!(memo.is_claimed("s39", "c"));
        assert!(!memo.is_claimed("s0", "c"), "the oldest were forgotten");
        assert!(memo.vouches_for(Cursor(9)));
    }
}
