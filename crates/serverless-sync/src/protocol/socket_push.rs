//! Client -> connector over the session's WebSocket: a push sent on the socket the
//! client already holds, instead of a new HTTP request. The session object runs it
//! through the same route as `POST /sync/push` (the same checks, limits, plan and log
//! line), with what that request carries in headers carried here, and answers with
//! [`crate::protocol::poke::ServerMessage::Pushed`]: the status and the body the HTTP
//! route would have answered. A client without an open socket, or told the socket
//! cannot take pushes, sends them over HTTP; either way a retry is idempotent (the
//! mutation ids).

use serde::{Deserialize, Serialize};

use crate::protocol::push::PushRequest;

/// The error code (HTTP 501) of the answer to a push on the socket of a worker that
/// takes pushes over HTTP only: the client sends it, and the next ones, there.
pub const PUSH_NOT_ON_SOCKET: &str = "push_not_on_socket";

/// The `type` of a push on the socket.
pub const SOCKET_PUSH_TYPE: &str = "push";

/// A push on the socket, as the client sends it.
#[derive(Debug, Clone, Serialize)]
pub struct SocketPush<'a> {
    /// Always [`SOCKET_PUSH_TYPE`].
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Names the answer ([`crate::protocol::poke::ServerMessage::Pushed`]`::id`).
    pub id: u64,
    /// The `authorization` header the HTTP push would carry (`Bearer <token>`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorization: Option<&'a str>,
    /// The client key header the HTTP push would carry.
    pub client_key: &'a str,
    /// The body the HTTP push would carry.
    pub request: &'a PushRequest,
}

/// A push on the socket, as the session object reads it: the request is kept as the
/// client wrote it and handed to the push route as its body.
#[derive(Debug, Deserialize)]
pub struct SocketPushIn {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: u64,
    #[serde(default)]
    pub authorization: Option<String>,
    #[serde(default)]
    pub client_key: String,
    pub request: Box<serde_json::value::RawValue>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::poke::ServerMessage;

    #[test]
    fn a_push_on_the_socket_carries_what_the_http_push_carries() {
        let request = PushRequest {
            protocol_version: crate::protocol::PROTOCOL_VERSION,
            client_id: "client_1".into(),
            session_id: "session_1".into(),
            mutations: Vec::new(),
            first_send: false,
        };
        let sent = SocketPush {
            kind: SOCKET_PUSH_TYPE,
            id: 7,
            authorization: Some("Bearer t"),
            client_key: "k",
            request: &request,
        };
        let text = serde_json::to_string(&sent).unwrap();
        let read: SocketPushIn = serde_json::from_str(&text).unwrap();
        assert_eq!(
            (read.kind.as_str(), read.id, read.authorization.as_deref()),
            ("push", 7, Some("Bearer t"))
        );
        assert_eq!(read.client_key, "k");
        let body: PushRequest = serde_json::from_str(read.request.get()).unwrap();
        assert_eq!(body, request);
        // The answer names the push and says what the HTTP route would have said.
        let answer = ServerMessage::Pushed { id: 7, status: 200, body: serde_json::json!({"cursor": 3}) };
        let text = serde_json::to_string(&answer).unwrap();
        assert!(text.starts_with(r#"{"type":"pushed","id":7,"status":200"#), "{text}");
        assert_eq!(serde_json::from_str::<ServerMessage>(&text).unwrap(), answer);
    }
}
