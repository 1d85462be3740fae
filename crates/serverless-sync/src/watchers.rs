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
//! - a topic's watchers are bounded: at most [`MAX_SESSIONS_PER_USER`] sessions of one
//!   user (the app's subject; a newer one replaces that user's oldest: client keys
//!   are free, so a user with many of them cannot make each write to a topic cost
//!   more Durable Object calls), and [`MAX_WATCHERS`] in all (beyond: refused with a
//!   reason, the session's client still pulls);
//! - the change watcher asks its listeners whether they still have a socket every
//!   [`LIVENESS_MS`], scans only while one listens, and starts from the head again
//!   after nobody did (a client that connects pulls what it missed).

use std::collections::{BTreeMap, BTreeSet};

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

/// Most sessions of one user that watch one topic (tabs and devices: each leader tab
/// holds one session).
pub const MAX_SESSIONS_PER_USER: usize = 16;

/// Most sessions that watch one topic: a write to it costs one Durable Object call
/// per watcher.
pub const MAX_WATCHERS: usize = 10_000;

/// A watching session: its user, when known (the app's subject, learnt when its
/// socket opened), and when it (last) started watching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watcher {
    pub user: Option<String>,
    pub since_ms: i64,
}

/// What a watch request does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Watched {
    /// Watching (again); `replaced`: the same user's oldest session, forgotten to
    /// keep within the bound.
    Yes { replaced: Option<String> },
    /// The topic has [`MAX_WATCHERS`] watchers: not watched.
    Full,
}

/// Decides a watch by `session` of `user` on a topic whose watchers are `total`, of
/// which `of_user` (session, since) are the user's, and `known` whether the session
/// already watches.
pub fn decide_watch(
    session: &str,
    user: Option<&str>,
    known: bool,
    of_user: &[(String, i64)],
    total: usize,
) -> Watched {
    if !known && total >= MAX_WATCHERS {
        return Watched::Full;
    }
    let replaced = user.and_then(|_| {
        let others: Vec<&(String, i64)> = of_user.iter().filter(|(other, _)| other != session).collect();
        (others.len() >= MAX_SESSIONS_PER_USER)
            .then(|| {
                others
                    .iter()
                    .min_by_key(|(other, since)| (*since, other.clone()))
                    .map(|(other, _)| other.clone())
            })
            .flatten()
    });
    Watched::Yes { replaced }
}

/// One topic's watching sessions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicWatchers {
    sessions: BTreeMap<String, Watcher>,
}

impl TopicWatchers {
    pub fn new(sessions: impl IntoIterator<Item = (String, Watcher)>) -> Self {
        Self { sessions: sessions.into_iter().collect() }
    }

    /// `session` (of `user`, when known) watches from `now_ms`, as [`decide_watch`]
    /// decides.
    pub fn watch(&mut self, session: &str, user: Option<&str>, now_ms: i64) -> Watched {
        let of_user: Vec<(String, i64)> = match user {
            Some(user) => self
                .sessions
                .iter()
                .filter(|(_, watcher)| watcher.user.as_deref() == Some(user))
                .map(|(session, watcher)| (session.clone(), watcher.since_ms))
                .collect(),
            None => Vec::new(),
        };
        let known = self.sessions.contains_key(session);
        let watched = decide_watch(session, user, known, &of_user, self.sessions.len());
        if let Watched::Yes { replaced } = &watched {
            if let Some(replaced) = replaced {
                self.sessions.remove(replaced);
            }
            let user =
                user.map(str::to_string).or_else(|| self.sessions.get(session).and_then(|w| w.user.clone()));
            self.sessions.insert(session.to_string(), Watcher { user, since_ms: now_ms });
        }
        watched
    }

    pub fn sessions(&self) -> impl Iterator<Item = &String> {
        self.sessions.keys()
    }

    pub fn contains(&self, session: &str) -> bool {
        self.sessions.contains_key(session)
    }

    /// The sessions of `user` that watch.
    pub fn of_user(&self, user: &str) -> usize {
        self.sessions.values().filter(|watcher| watcher.user.as_deref() == Some(user)).count()
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
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
        let watcher = Watcher { user: None, since_ms: 0 };
        let mut watchers =
            TopicWatchers::new(["a", "b", "c"].map(|session| (session.to_string(), watcher.clone())));
        let gone = watchers.after_poke(&[
            ("a".into(), SocketAnswer::Sockets(2)),
            ("b".into(), SocketAnswer::Sockets(0)),
            ("c".into(), SocketAnswer::Unreachable),
        ]);
        assert_eq!(gone, vec!["b".to_string()]);
        assert!(watchers.contains("a") && watchers.contains("c") && !watchers.contains("b"));
        assert_eq!(watchers.watch("b", None, 1), Watched::Yes { replaced: None }, "a socket connects again");
        assert!(watchers.contains("b"));
    }

    #[test]
    fn one_user_holds_a_bounded_number_of_watchers_and_the_topic_a_bounded_total() {
        let mut watchers = TopicWatchers::default();
        for i in 0..MAX_SESSIONS_PER_USER {
            assert_eq!(
                watchers.watch(&format!("eve{i:02}"), Some("eve"), i as i64),
                Watched::Yes { replaced: None }
            );
        }
        // The 17th of Eve's keys replaces her oldest session; nobody else's.
        watchers.watch("ada", Some("ada"), 0);
        assert_eq!(
            watchers.watch("eve99", Some("eve"), 100),
            Watched::Yes { replaced: Some("eve00".into()) }
        );
        assert_eq!(watchers.of_user("eve"), MAX_SESSIONS_PER_USER);
        assert!(watchers.contains("ada") && !watchers.contains("eve00"));
        // A session watching again refreshes itself, replacing nobody.
        assert_eq!(watchers.watch("eve01", Some("eve"), 101), Watched::Yes { replaced: None });
        // A session whose user became known (its socket opened) counts for that user.
        watchers.watch("anon", None, 102);
        assert_eq!(watchers.watch("anon", Some("eve"), 103), Watched::Yes { replaced: Some("eve02".into()) });
        assert_eq!(watchers.of_user("eve"), MAX_SESSIONS_PER_USER);
        // The total is bounded: a full topic refuses newcomers, keeps its watchers.
        let mut full = TopicWatchers::new(
            (0..MAX_WATCHERS).map(|i| (format!("s{i}"), Watcher { user: None, since_ms: 0 })),
        );
        assert_eq!(full.watch("late", Some("bob"), 1), Watched::Full);
        assert_eq!(full.watch("s5", None, 1), Watched::Yes { replaced: None });
        assert_eq!(full.len(), MAX_WATCHERS);
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
