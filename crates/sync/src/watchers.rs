//! Who listens, without I/O: a topic's watching sessions (the QuerySubscription
//! object) and the sessions the change watcher scans for (the ChangeWatcher object).
//! The objects keep this state in their storage and carry out what the methods
//! answer; the simulation drives the same types.
//!
//! Rules:
//! - a session is forgotten only when it answered that it has no socket left: a call
//!   that failed (an overloaded object, a network error) proves nothing, and dropping
//!   an honest watcher would silently stop its live updates (a session that is
//!   forgotten watches again when a socket connects);
//! - the change watcher asks its listeners whether they still have a socket every
//!   [`LIVENESS_MS`], scans only while one listens, and starts from the head again
//!   after nobody did (a client that connects pulls what it missed).

use std::collections::BTreeSet;

use crate::changes::Cursor;

/// How often the change watcher asks its listeners whether they still have a socket.
pub const LIVENESS_MS: i64 = 30_000;

/// A session's answer to a poke or a liveness question.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketAnswer {
    /// It answered: this many sockets (0: none left).
    Sockets(usize),
    /// The call failed: nothing known.
    Unreachable,
}

/// The sessions among `answers` to forget: those that said they have no socket.
pub fn silent<'a>(answers: impl IntoIterator<Item = (&'a String, SocketAnswer)>) -> Vec<String> {
    answers
        .into_iter()
        .filter(|(_, answer)| *answer == SocketAnswer::Sockets(0))
        .map(|(session, _)| session.clone())
        .collect()
}

/// One topic's watching sessions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicWatchers {
    sessions: BTreeSet<String>,
}

impl TopicWatchers {
    pub fn new(sessions: impl IntoIterator<Item = String>) -> Self {
        Self { sessions: sessions.into_iter().collect() }
    }

    /// Adds a session; whether it was new.
    pub fn watch(&mut self, session: &str) -> bool {
        self.sessions.insert(session.to_string())
    }

    pub fn sessions(&self) -> impl Iterator<Item = &String> {
        self.sessions.iter()
    }

    pub fn contains(&self, session: &str) -> bool {
        self.sessions.contains(session)
    }

    /// After a poke went to every session: forgets those with no socket left.
    /// Returns the forgotten (the object deletes them from its storage).
    pub fn after_poke(&mut self, answers: &[(String, SocketAnswer)]) -> Vec<String> {
        let gone = silent(answers.iter().map(|(session, answer)| (session, *answer)));
        for session in &gone {
            self.sessions.remove(session);
        }
        gone
    }
}

/// The change watcher's state: its listeners, the mark its scans start after, and
/// when it last asked the listeners whether they still have a socket.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangeWatch {
    pub listeners: BTreeSet<String>,
    /// `None`: not scanning (the next scan only reads the head).
    pub mark: Option<Cursor>,
    pub checked_ms: i64,
}

/// What an alarm of the change watcher does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnAlarm {
    /// Ask every listener whether it still has a socket, then [`ChangeWatch::after_liveness`].
    AskLiveness,
    /// Nobody listens: stop (no next alarm; the mark is forgotten).
    Stop,
    /// Scan after the mark (or read the head if there is none), then alarm again.
    Scan,
}

impl ChangeWatch {
    /// A session's socket connected. Returns whether the mark must first be set at
    /// the head (not scanning yet): the client's pull after connecting covers every
    /// earlier write, the scans every later one.
    pub fn listen(&mut self, session: &str) -> bool {
        self.listeners.insert(session.to_string());
        self.mark.is_none()
    }

    /// A session's last socket closed.
    pub fn quiet(&mut self, session: &str) {
        self.listeners.remove(session);
    }

    /// What an alarm at `now` does first.
    pub fn on_alarm(&mut self, now: i64) -> OnAlarm {
        if now - self.checked_ms >= LIVENESS_MS && !self.listeners.is_empty() {
            return OnAlarm::AskLiveness;
        }
        if self.listeners.is_empty() {
            self.mark = None;
            return OnAlarm::Stop;
        }
        OnAlarm::Scan
    }

    /// The listeners answered at `now`: those with no socket are forgotten. Then the
    /// alarm goes on as [`Self::on_alarm`] says (never asking twice in a row).
    pub fn after_liveness(&mut self, answers: &[(String, SocketAnswer)], now: i64) -> OnAlarm {
        for session in silent(answers.iter().map(|(session, answer)| (session, *answer))) {
            self.listeners.remove(&session);
        }
        self.checked_ms = now;
        self.on_alarm(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poke_forgets_only_sessions_that_said_they_have_no_socket() {
        let mut watchers = TopicWatchers::new(["a".to_string(), "b".to_string(), "c".to_string()]);
        let gone = watchers.after_poke(&[
            ("a".into(), SocketAnswer::Sockets(2)),
            ("b".into(), SocketAnswer::Sockets(0)),
            ("c".into(), SocketAnswer::Unreachable),
        ]);
        assert_eq!(gone, vec!["b".to_string()]);
        assert!(watchers.contains("a") && watchers.contains("c") && !watchers.contains("b"));
        assert!(watchers.watch("b"), "a socket connects again: watched again");
        assert!(!watchers.watch("b"));
    }

    #[test]
    fn the_change_watcher_asks_every_30_s_keeps_the_unreachable_and_stops_when_nobody_listens() {
        let mut watch = ChangeWatch { checked_ms: 0, ..ChangeWatch::default() };
        assert!(watch.listen("a"), "no mark yet: read the head first");
        watch.mark = Some(Cursor(1));
        assert!(!watch.listen("b"));
        assert_eq!(watch.on_alarm(1_000), OnAlarm::Scan);
        assert_eq!(watch.on_alarm(LIVENESS_MS), OnAlarm::AskLiveness);
        let next = watch.after_liveness(
            &[("a".into(), SocketAnswer::Unreachable), ("b".into(), SocketAnswer::Sockets(0))],
            LIVENESS_MS,
        );
        assert_eq!(next, OnAlarm::Scan);
        assert_eq!(watch.listeners.iter().collect::<Vec<_>>(), vec!["a"]);
        watch.mark = Some(Cursor(5));
        watch.quiet("a");
        assert_eq!(watch.on_alarm(LIVENESS_MS + 1), OnAlarm::Stop);
        assert_eq!(watch.mark, None, "a watcher nobody listens to starts from the head again");
        let next = watch.after_liveness(&[], 2 * LIVENESS_MS);
        assert_eq!(next, OnAlarm::Stop);
    }
}
