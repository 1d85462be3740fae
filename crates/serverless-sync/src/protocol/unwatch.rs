//! Client -> session over the session's WebSocket: "I no longer read these topics"
//! (the client evicted their queries, or was poked for a topic it does not read). The
//! session stops poking them at once ([`crate::session::SessionState::unwatch`]); each
//! topic's object forgets the session at its next poke. Without it, every later
//! write on a query a user once read would cost a Durable Object request and a
//! socket message for that user, for as long as the session lives.
//!
//! The session answers [`crate::protocol::poke::ServerMessage::Unwatched`] with the
//! topics it was asked about. A client that reads one of them again by then (it
//! read it again while the unwatch was on its way: the socket and the query's
//! HTTP request are not ordered) pulls, and the pull watches it again.

use serde::{Deserialize, Serialize};

/// The `type` of an unwatch on the socket.
pub const UNWATCH_TYPE: &str = "unwatch";

/// Most topics one unwatch names (a client sends more in several).
pub const MAX_UNWATCH_TOPICS: usize = 100;

/// Longest unwatch message the session reads (bytes of JSON).
pub const MAX_UNWATCH_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Unwatch {
    /// Always [`UNWATCH_TYPE`].
    #[serde(rename = "type")]
    pub kind: String,
    pub topics: Vec<String>,
}

/// Why an unwatch is not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnwatchError {
    #[error("an unwatch message is at most {MAX_UNWATCH_BYTES} bytes")]
    TooLarge,
    #[error("an unwatch names at most {MAX_UNWATCH_TOPICS} topics")]
    TooManyTopics,
    #[error("not an unwatch message: {0}")]
    Malformed(String),
}

impl Unwatch {
    pub fn new(topics: Vec<String>) -> Self {
        Self { kind: UNWATCH_TYPE.to_string(), topics }
    }

    /// Whether a socket message is an unwatch (checked before parsing it).
    pub fn is_unwatch(text: &str) -> bool {
        text.starts_with(r#"{"type":"unwatch""#)
    }

    /// Reads one from the socket, within its bounds.
    pub fn parse(text: &str) -> Result<Self, UnwatchError> {
        if text.len() > MAX_UNWATCH_BYTES {
            return Err(UnwatchError::TooLarge);
        }
        let unwatch: Unwatch =
            serde_json::from_str(text).map_err(|error| UnwatchError::Malformed(error.to_string()))?;
        if unwatch.kind != UNWATCH_TYPE {
            return Err(UnwatchError::Malformed(format!("type {}", unwatch.kind)));
        }
        if unwatch.topics.len() > MAX_UNWATCH_TOPICS {
            return Err(UnwatchError::TooManyTopics);
        }
        Ok(unwatch)
    }

    /// The unwatches that name `topics`, at most [`MAX_UNWATCH_TOPICS`] each.
    pub fn batches(topics: &[String]) -> Vec<Unwatch> {
        topics.chunks(MAX_UNWATCH_TOPICS).map(|chunk| Unwatch::new(chunk.to_vec())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unwatch_round_trips_and_is_recognised_before_parsing() {
        let unwatch = Unwatch::new(vec!["boardCards{\"boardId\":\"a\"}".into()]);
        let text = serde_json::to_string(&unwatch).expect("serializes");
        assert!(Unwatch::is_unwatch(&text), "{text}");
        assert_eq!(Unwatch::parse(&text), Ok(unwatch));
        assert!(!Unwatch::is_unwatch(r#"{"type":"push","id":1}"#));
    }

    #[test]
    fn bounds_and_bad_input_are_refused() {
        let many: Vec<String> = (0..=MAX_UNWATCH_TOPICS).map(|i| format!("t{i}")).collect();
        let text = serde_json::to_string(&Unwatch::new(many.clone())).expect("serializes");
        assert_eq!(Unwatch::parse(&text), Err(UnwatchError::TooManyTopics));
        let long = format!(r#"{{"type":"unwatch","topics":["{}"]}}"#, "x".repeat(MAX_UNWATCH_BYTES));
        assert_eq!(Unwatch::parse(&long), Err(UnwatchError::TooLarge));
        assert!(matches!(
            Unwatch::parse(r#"{"type":"unwatch","topics":[1]}"#),
            Err(UnwatchError::Malformed(_))
        ));
        assert!(matches!(Unwatch::parse(r#"{"type":"other","topics":[]}"#), Err(UnwatchError::Malformed(_))));
        // More topics than one message holds go in several.
        let batches = Unwatch::batches(&many);
        assert_eq!(batches.len(), 2);
        assert_eq!(batches[1].topics, vec![format!("t{MAX_UNWATCH_TOPICS}")]);
    }
}
