//! Durable Objects, both SQLite-backed and thin: each keeps a little durable state
//! and forwards pokes.
//!
//! - [`ClientSession`] (one per session id): which client owns the session (a request
//!   naming the session with another client id is refused), the topics it watches,
//!   and its WebSockets (hibernation API: an idle socket costs nothing).
//! - [`QuerySubscription`] (one per topic): the sessions watching it.
//! - [`ChangeWatcher`] (one per upstream): while any client listens, reads the change
//!   log every second for writes nobody announced (plain SQL) and pokes their topics.
//!
//! After a commit the connector pokes each topic's QuerySubscription, which pokes the
//! sessions, which send `{"type":"poke","cursor":N}` down their sockets. A session
//! with no socket left is dropped from the topic and re-added when a socket connects.

mod calls;
mod session;
mod stubs;
mod subscription;
mod watcher;

pub use session::ClientSession;
pub use stubs::{
    claim, grant_ticket, live_sessions, open_socket, poke_topics, refuse, remember_claim, subscribe,
    watch_before_read, with_memo,
};
pub use subscription::QuerySubscription;
pub use watcher::ChangeWatcher;

use worker::{Response, Result};

/// A JSON answer with a status, for the objects' internal endpoints.
fn json_response(status: u16, body: &serde_json::Value) -> Result<Response> {
    Ok(Response::from_json(body)?.with_status(status))
}

fn error_response(status: u16, error: &str, reason: &str) -> Result<Response> {
    json_response(status, &serde_json::json!({ "error": error, "reason": reason }))
}
