//! One object per session: owner, watched topics, sockets.

use sync::protocol::poke::ServerMessage;
use worker::{
    DurableObject, Env, Request, Response, Result, SqlStorage, State, WebSocket, WebSocketIncomingMessage,
    WebSocketPair, durable_object,
};

use super::calls::{Claim, Delivered, Poke, Watch};
use super::stubs::{post_json, subscription_stub};
use super::{error_response, json_response};

#[durable_object]
pub struct ClientSession {
    state: State,
    env: Env,
    sql: SqlStorage,
}

impl DurableObject for ClientSession {
    fn new(state: State, env: Env) -> Self {
        let sql = state.storage().sql();
        for statement in [
            "CREATE TABLE IF NOT EXISTS owner (session_id TEXT NOT NULL, client_id TEXT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS topics (topic TEXT PRIMARY KEY)",
            "CREATE TABLE IF NOT EXISTS cursor (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL)",
        ] {
            if let Err(error) = sql.exec(statement, None) {
                worker::console_error!("ClientSession schema: {error}");
            }
        }
        Self { state, env, sql }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let path = req.path();
        if path == "/socket" {
            return self.socket(&req).await;
        }
        match path.as_str() {
            "/claim" | "/subscribe" => {
                let Ok(claim) = req.json::<Claim>().await else {
                    return error_response(400, "malformed_json", "expected a claim");
                };
                if let Err(owner) = self.claim(&claim) {
                    return error_response(
                        403,
                        "session_mismatch",
                        &format!("session {} belongs to another client than {owner}", claim.session_id),
                    );
                }
                if let Some(cursor) = claim.cursor {
                    self.acknowledge(cursor)?;
                }
                let added = self.add_topics(&claim.topics)?;
                self.watch_all(&claim.session_id, &added).await;
                json_response(200, &serde_json::json!({ "topics": self.topics()?.len() }))
            }
            "/poke" => {
                let Ok(poke) = req.json::<Poke>().await else {
                    return error_response(400, "malformed_json", "expected a poke");
                };
                if poke.cursor <= self.acknowledged()? {
                    // The client already holds that change; count the session as live.
                    return Response::from_json(&Delivered { sockets: self.state.get_websockets().len() });
                }
                let message = ServerMessage::Poke { cursor: sync::Cursor(poke.cursor) };
                let text = serde_json::to_string(&message)?;
                let sockets = self.state.get_websockets();
                let mut delivered = 0;
                for socket in &sockets {
                    if socket.send_with_str(&text).is_ok() {
                        delivered += 1;
                    }
                }
                Response::from_json(&Delivered { sockets: delivered })
            }
            _ => error_response(404, "not_found", "no such session endpoint"),
        }
    }

    async fn websocket_message(&self, ws: WebSocket, message: WebSocketIncomingMessage) -> Result<()> {
        // Clients only listen. A ping gets a pong so they can tell a dead socket.
        if let WebSocketIncomingMessage::String(text) = message
            && text.contains("\"ping\"")
        {
            ws.send_with_str(r#"{"type":"pong"}"#)?;
        }
        Ok(())
    }

    async fn websocket_close(&self, ws: WebSocket, code: usize, reason: String, _clean: bool) -> Result<()> {
        let code = u16::try_from(code).ok().filter(|c| (1000..5000).contains(c) && *c != 1005 && *c != 1006);
        ws.close(Some(code.unwrap_or(1000)), Some(reason)).ok();
        Ok(())
    }
}

impl ClientSession {
    /// Binds the session to its first client; afterwards only that client may use it.
    /// `Err` carries the client that owns it.
    fn claim(&self, claim: &Claim) -> std::result::Result<(), String> {
        #[derive(serde::Deserialize)]
        struct Owner {
            client_id: String,
        }
        let owners: Vec<Owner> = self
            .sql
            .exec("SELECT client_id FROM owner LIMIT 1", None)
            .and_then(|cursor| cursor.to_array())
            .map_err(|error| error.to_string())?;
        match owners.first() {
            Some(owner) if owner.client_id == claim.client_id => Ok(()),
            Some(_) => Err(claim.client_id.clone()),
            None => self
                .sql
                .exec(
                    "INSERT INTO owner (session_id, client_id) VALUES (?, ?)",
                    vec![claim.session_id.clone().into(), claim.client_id.clone().into()],
                )
                .map(|_| ())
                .map_err(|error| error.to_string()),
        }
    }

    /// Records the highest cursor the client has acknowledged.
    fn acknowledge(&self, cursor: u64) -> Result<()> {
        let cursor = i64::try_from(cursor).unwrap_or(i64::MAX);
        self.sql.exec(
            "INSERT INTO cursor (id, seq) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET seq = MAX(seq, excluded.seq)",
            vec![cursor.into()],
        )?;
        Ok(())
    }

    fn acknowledged(&self) -> Result<u64> {
        #[derive(serde::Deserialize)]
        struct Row {
            seq: i64,
        }
        let rows: Vec<Row> = self.sql.exec("SELECT seq FROM cursor WHERE id = 1", None)?.to_array()?;
        Ok(rows.first().map_or(0, |row| u64::try_from(row.seq).unwrap_or(0)))
    }

    fn topics(&self) -> Result<Vec<String>> {
        #[derive(serde::Deserialize)]
        struct Row {
            topic: String,
        }
        let rows: Vec<Row> = self.sql.exec("SELECT topic FROM topics", None)?.to_array()?;
        Ok(rows.into_iter().map(|row| row.topic).collect())
    }

    /// Stores topics; returns the ones that are new.
    fn add_topics(&self, topics: &[String]) -> Result<Vec<String>> {
        let known = self.topics()?;
        let mut added = Vec::new();
        for topic in topics {
            if !known.contains(topic) && !added.contains(topic) {
                self.sql
                    .exec("INSERT OR IGNORE INTO topics (topic) VALUES (?)", vec![topic.clone().into()])?;
                added.push(topic.clone());
            }
        }
        Ok(added)
    }

    async fn watch_all(&self, session_id: &str, topics: &[String]) {
        for topic in topics {
            let watch = Watch { topic: topic.clone(), session_id: session_id.into() };
            let result = match subscription_stub(&self.env, topic) {
                Ok(stub) => post_json(&stub, "/watch", &watch).await.map(|_| ()),
                Err(error) => Err(error),
            };
            if let Err(error) = result {
                worker::console_error!("watch {topic}: {error}");
            }
        }
    }

    /// Accepts the client's WebSocket (hibernation API) and re-watches every topic:
    /// a topic drops a session that had no socket when it was poked.
    async fn socket(&self, req: &Request) -> Result<Response> {
        let url = req.url()?;
        let param =
            |name: &str| url.query_pairs().find(|(key, _)| key == name).map(|(_, value)| value.into_owned());
        let (Some(session_id), Some(client_id)) = (param("session_id"), param("client_id")) else {
            return error_response(400, "invalid_id", "session_id and client_id are required");
        };
        let claim = Claim { session_id: session_id.clone(), client_id, topics: Vec::new(), cursor: None };
        if let Err(owner) = self.claim(&claim) {
            return error_response(
                403,
                "session_mismatch",
                &format!("session belongs to another client than {owner}"),
            );
        }
        let pair = WebSocketPair::new()?;
        self.state.accept_web_socket(&pair.server);
        let topics = self.topics()?;
        self.watch_all(&session_id, &topics).await;
        Response::from_websocket(pair.client)
    }
}
