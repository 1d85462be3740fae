//! A client session's decisions, without I/O: who owns it, which topics it watches,
//! when the app last allowed each, and what a poke for a topic sends to its client.
//! The ClientSession Durable Object keeps this state in its storage and carries out
//! what the methods answer; the simulation drives the same type.
//!
//! Rules:
//! - a session belongs to the first client that used it, and to the first user (the
//!   app's subject) that opened its socket; any other is refused;
//! - a poke carries a topic's rows only while the app's query callback allowed that
//!   topic to this session within [`AUTHORIZATION_FRESH_MS`] (every query and pull
//!   asks again); otherwise it carries no rows and the client pulls, which asks;
//! - a topic the app refused to this session (a query or a pull it said no to) is
//!   unwatched at once: no poke for it at all, and its topic object forgets the
//!   session at its next poke; a later "yes" watches it again;
//! - a session watches at most [`MAX_TOPICS_PER_SESSION`] topics: beyond, the ones
//!   the app allowed longest ago are unwatched (their topic objects forget the
//!   session at their next poke; a live query's next pull watches it again);
//! - when to poke at all is the [`PokeGate`]'s decision.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::changes::{Change, Cursor};
use crate::pokes::{PokeDecision, PokeGate};

/// How long the app's "yes" to a topic lets pokes carry its rows. A user the app stops
/// allowing gets rows by poke for at most this long (the documented revocation window).
pub const AUTHORIZATION_FRESH_MS: i64 = 30_000;

/// Most topics one session watches.
pub const MAX_TOPICS_PER_SESSION: usize = 1_000;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SessionState {
    pub owner: Option<String>,
    /// The user (the app's subject) the session belongs to, when the app names users.
    pub user: Option<String>,
    pub topics: BTreeSet<String>,
    /// When the app's query callback last allowed each topic to this session.
    pub authorized_at: BTreeMap<String, i64>,
    pub gate: PokeGate,
}

/// A poke to send to the session's sockets.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    pub cursor: u64,
    pub changes: Vec<Change>,
    /// With changes: their topic and where they begin (see [`crate::cursors`]).
    pub topic: Option<String>,
    pub since: Option<Cursor>,
}

impl Outgoing {
    fn bare(cursor: u64) -> Self {
        Self { cursor, changes: Vec::new(), topic: None, since: None }
    }
}

/// What a poke for a topic makes the session do.
#[derive(Debug, Clone, PartialEq)]
pub enum OnPoke {
    Send(Outgoing),
    Skip,
    /// Held behind the outstanding poke; `set_alarm`: start the hold alarm.
    Hold {
        set_alarm: bool,
    },
    /// The session does not watch this topic (never did, or the app refused it): no
    /// poke; the topic object should forget the session.
    Unwatched,
}

/// What a subscription (a query or a pull) changed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Subscribed {
    /// Topics watched for the first time: the topic objects must learn of the session.
    pub added: Vec<String>,
    /// A held poke to send now (the client pulled through the outstanding one).
    pub release: Option<Outgoing>,
}

impl SessionState {
    /// Binds the session to `client` on first use. `Err(owner)`: another client's.
    pub fn claim(&mut self, client: &str) -> Result<(), String> {
        match &self.owner {
            Some(owner) if owner == client => Ok(()),
            Some(owner) => Err(owner.clone()),
            None => {
                self.owner = Some(client.to_string());
                Ok(())
            }
        }
    }

    /// Binds the session to the app's user `subject` on first use (`None`: the app
    /// names no users). `Err(user)`: another user's session.
    pub fn claim_user(&mut self, subject: Option<&str>) -> Result<(), String> {
        match (&self.user, subject) {
            (_, None) => Ok(()),
            (Some(user), Some(subject)) if user != subject => Err(user.clone()),
            (Some(_), Some(_)) => Ok(()),
            (None, Some(subject)) => {
                self.user = Some(subject.to_string());
                Ok(())
            }
        }
    }

    /// The app just allowed `topics` to this session (a query or a pull), at `now_ms`;
    /// `acknowledged`: the client holds every change through it.
    pub fn subscribe(&mut self, topics: &[String], acknowledged: Option<u64>, now_ms: i64) -> Subscribed {
        let release = acknowledged.and_then(|cursor| self.gate.on_acknowledged(cursor)).map(Outgoing::bare);
        let mut added = Vec::new();
        for topic in topics {
            if self.topics.insert(topic.clone()) {
                added.push(topic.clone());
            }
            self.authorized_at.insert(topic.clone(), now_ms);
        }
        if self.topics.len() > MAX_TOPICS_PER_SESSION {
            let mut by_age: Vec<(i64, String)> = self
                .topics
                .iter()
                .map(|topic| (self.authorized_at.get(topic).copied().unwrap_or(i64::MIN), topic.clone()))
                .collect();
            by_age.sort();
            let excess = self.topics.len() - MAX_TOPICS_PER_SESSION;
            for (_, topic) in by_age.into_iter().take(excess) {
                self.topics.remove(&topic);
                self.authorized_at.remove(&topic);
                added.retain(|added| *added != topic);
            }
        }
        Subscribed { added, release }
    }

    /// The app just refused `topics` to this session: they are unwatched at once.
    /// Returns those that were watched.
    pub fn refuse(&mut self, topics: &[String]) -> Vec<String> {
        let mut removed = Vec::new();
        for topic in topics {
            self.authorized_at.remove(topic);
            if self.topics.remove(topic) {
                removed.push(topic.clone());
            }
        }
        removed
    }

    /// The client no longer reads `topics`: they are unwatched at once, as a refusal
    /// would (the topic objects forget the session at their next poke; a later query
    /// or pull watches them again). Returns those that were watched.
    pub fn unwatch(&mut self, topics: &[String]) -> Vec<String> {
        self.refuse(topics)
    }

    /// Whether the app allowed `topic` recently enough for pokes to carry its rows.
    pub fn recently_authorized(&self, topic: &str, now_ms: i64) -> bool {
        self.authorized_at.get(topic).is_some_and(|at| now_ms - at <= AUTHORIZATION_FRESH_MS)
    }

    /// The log reached `cursor` on `topic`, with `changes` (what a pull of the topic
    /// would hand out of them) beginning after `since`.
    pub fn poke(
        &mut self,
        topic: &str,
        cursor: u64,
        changes: Vec<Change>,
        since: Option<u64>,
        now_ms: i64,
    ) -> OnPoke {
        if !self.topics.contains(topic) {
            return OnPoke::Unwatched;
        }
        // Rows ride along only while the app's last "yes" for this topic is recent;
        // otherwise the client pulls, which asks again.
        let changes =
            if changes.is_empty() || !self.recently_authorized(topic, now_ms) { Vec::new() } else { changes };
        let decision =
            if changes.is_empty() { self.gate.on_change(cursor) } else { self.gate.on_carried(cursor) };
        match decision {
            PokeDecision::Skip => OnPoke::Skip,
            PokeDecision::Hold { set_alarm } => OnPoke::Hold { set_alarm },
            PokeDecision::Send(cursor) => {
                // Where the changes begin is only meaningful with the changes.
                let (topic, since) = match since {
                    Some(since) if !changes.is_empty() => (Some(topic.to_string()), Some(Cursor(since))),
                    _ => (None, None),
                };
                OnPoke::Send(Outgoing { cursor, changes, topic, since })
            }
        }
    }

    /// The hold alarm fired.
    pub fn alarm(&mut self) -> Option<Outgoing> {
        self.gate.on_alarm().map(Outgoing::bare)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(seq: u64) -> Change {
        Change {
            seq: Cursor(seq),
            collection: "cards".into(),
            record_id: "card_a".into(),
            kind: crate::changes::ChangeKind::Upsert,
            row: Some(crate::schema::Row::new()),
            topics: Vec::new(),
            client_id: String::new(),
            mutation_id: String::new(),
        }
    }

    #[test]
    fn a_session_watches_a_bounded_number_of_topics_the_oldest_allowed_go_first() {
        let mut session = SessionState::default();
        let topics: Vec<String> = (0..MAX_TOPICS_PER_SESSION).map(|i| format!("t{i:04}")).collect();
        for (i, topic) in topics.iter().enumerate() {
            session.subscribe(std::slice::from_ref(topic), None, i as i64);
        }
        // t0000 was allowed again lately: t0001 is the oldest.
        session.subscribe(&["t0000".to_string()], None, 5_000);
        let subscribed = session.subscribe(&["new".to_string()], None, 6_000);
        assert_eq!(subscribed.added, vec!["new".to_string()]);
        assert_eq!(session.topics.len(), MAX_TOPICS_PER_SESSION);
        assert!(session.topics.contains("t0000") && !session.topics.contains("t0001"));
        assert!(!session.authorized_at.contains_key("t0001"));
        // Unwatched: its next poke says so (the topic object forgets the session).
        assert_eq!(session.poke("t0001", 1, Vec::new(), None, 6_001), OnPoke::Unwatched);
    }

    #[test]
    fn a_session_is_its_first_users() {
        let mut session = SessionState::default();
        assert_eq!(session.claim_user(None), Ok(()));
        assert_eq!(session.claim_user(Some("user_a")), Ok(()));
        assert_eq!(session.claim_user(Some("user_a")), Ok(()));
        assert_eq!(session.claim_user(Some("user_b")), Err("user_a".into()));
    }

    #[test]
    fn a_session_is_its_first_clients() {
        let mut session = SessionState::default();
        assert_eq!(session.claim("client_a"), Ok(()));
        assert_eq!(session.claim("client_a"), Ok(()));
        assert_eq!(session.claim("client_b"), Err("client_a".into()));
    }

    #[test]
    fn rows_ride_along_only_within_the_authorization_window() {
        let mut session = SessionState::default();
        let added = session.subscribe(&["t".into()], None, 1_000);
        assert_eq!(added.added, vec!["t".to_string()]);
        let OnPoke::Send(sent) =
            session.poke("t", 1, vec![change(1)], Some(0), 1_000 + AUTHORIZATION_FRESH_MS)
        else {
            panic!("sent");
        };
        assert_eq!((sent.changes.len(), sent.since), (1, Some(Cursor(0))));
        let OnPoke::Send(late) =
            session.poke("t", 2, vec![change(2)], Some(1), 1_001 + AUTHORIZATION_FRESH_MS)
        else {
            panic!("sent");
        };
        assert!(
            late.changes.is_empty() && late.since.is_none(),
            "past the window: no rows, the client pulls"
        );
        // A topic never watched is not poked at all.
        session.gate = PokeGate::default();
        assert_eq!(session.poke("u", 3, vec![change(3)], Some(2), 1_000), OnPoke::Unwatched);
    }

    #[test]
    fn an_unwatched_topic_gets_no_poke_until_a_query_or_pull_watches_it_again() {
        let mut session = SessionState::default();
        session.subscribe(&["a".into(), "b".into()], None, 1_000);
        assert_eq!(session.unwatch(&["a".into(), "never".into()]), vec!["a".to_string()]);
        assert_eq!(session.poke("a", 1, vec![change(1)], Some(0), 1_001), OnPoke::Unwatched);
        assert!(matches!(session.poke("b", 2, vec![change(2)], Some(1), 1_002), OnPoke::Send(_)));
        let again = session.subscribe(&["a".into()], Some(2), 1_003);
        assert_eq!(again.added, vec!["a".to_string()]);
        assert!(!matches!(session.poke("a", 3, vec![change(3)], Some(2), 1_004), OnPoke::Unwatched));
    }

    #[test]
    fn a_refused_topic_is_unwatched_at_once_until_allowed_again() {
        let mut session = SessionState::default();
        session.subscribe(&["t".into(), "u".into()], None, 1_000);
        assert_eq!(session.refuse(&["t".into(), "never".into()]), vec!["t".to_string()]);
        // Within the window of the last "yes", still nothing: the "no" came after it.
        assert_eq!(session.poke("t", 1, vec![change(1)], Some(0), 1_001), OnPoke::Unwatched);
        assert!(!session.recently_authorized("t", 1_001));
        // The other topic is untouched.
        assert!(matches!(session.poke("u", 2, vec![change(2)], Some(1), 1_001), OnPoke::Send(_)));
        // A new "yes" watches it again (its topic object must learn of the session).
        let again = session.subscribe(&["t".into()], None, 2_000);
        assert_eq!(again.added, vec!["t".to_string()]);
        assert!(matches!(session.poke("t", 3, vec![change(3)], Some(2), 2_001), OnPoke::Send(_)));
    }
}
