//! Client -> connector: a ticket that opens the session's poke socket.
//! `POST /sync/ticket` with [`TicketRequest`] (and the client key and the user's
//! sign-in in headers, like every request); answer [`TicketResponse`]. Then
//! `GET /sync/socket?ticket=...` opens the WebSocket.
//!
//! Browsers cannot set headers on a WebSocket, so something in its URL must say who
//! opens it; URLs land in access logs. A ticket is that something: it is good once,
//! for [`TICKET_TTL_MS`], for one session of one client (and of one user, when the
//! app names its users), so a logged URL is worth nothing. The client key never
//! appears in a URL.

use serde::{Deserialize, Serialize};

/// How long a ticket can open a socket.
pub const TICKET_TTL_MS: i64 = 30_000;
/// Most unused tickets a session keeps; asking for more drops the oldest.
pub const MAX_OPEN_TICKETS: usize = 8;
/// The socket URL's parameter.
pub const TICKET_PARAM: &str = "ticket";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TicketRequest {
    pub protocol_version: u32,
    pub client_id: String,
    pub session_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketResponse {
    /// `{session_id}.{32 hex digits}`: the socket's `ticket` parameter.
    pub ticket: String,
    pub expires_in_ms: i64,
}

/// A ticket's parts: the session it opens and its secret. `None`: not a ticket.
pub fn parse_ticket(ticket: &str) -> Option<(&str, &str)> {
    let (session, secret) = ticket.split_once('.')?;
    crate::ids::parse_id(crate::ids::SESSION, session).ok()?;
    (secret.len() == 32 && secret.bytes().all(|b| b.is_ascii_hexdigit())).then_some((session, secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_name_a_session_and_a_128_bit_secret() {
        let session = "session_01HYS7J9GZ8P6VA3K3Z4X5M2K1";
        let secret = "0123456789abcdef0123456789abcdef";
        assert_eq!(parse_ticket(&format!("{session}.{secret}")), Some((session, secret)));
        assert_eq!(parse_ticket(&format!("{session}.{}", &secret[1..])), None);
        assert_eq!(parse_ticket(&format!("client_01HYS7J9GZ8P6VA3K3Z4X5M2K1.{secret}")), None);
        assert_eq!(parse_ticket(secret), None);
        assert_eq!(parse_ticket(&format!("{session}.{}", "g".repeat(32))), None);
    }
}
