//! One object per session: owner, watched topics, sockets, and the poke gate (what
//! its client has pulled and been told; see `sync::pokes`).

use sync::pokes::{HOLD_MS, PokeDecision, PokeGate};
use sync::protocol::poke::ServerMessage;
use worker::{
    DurableObject, Env, Request, Response, Result, SqlStorage, State, WebSocket, WebSocketIncomingMessage,
    WebSocketPair, durable_object,
};

use super::calls::{Claim, Delivered, Poke, Watch};
use super::stubs::{post_json, subscription_stub, tell_watcher};
use super::{error_response, json_response};

/// How long the app's "yes" to a topic lets pokes carry its rows: a client pulls
/// after pokes (each pull asks the query callback again), so an active session stays
/// fresh, and a user the app stops allowing gets rows by poke for at most this long.
const AUTHORIZATION_FRESH_MS: i64 = 30_000;

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
            // When the app's query callback last allowed each topic to this client.
            "CREATE TABLE IF NOT EXISTS topic_auth (topic TEXT PRIMARY KEY, at_ms INTEGER NOT NULL)",
            "CREATE TABLE IF NOT EXISTS poke_gate (id INTEGER PRIMARY KEY CHECK (id = 1), \
               acknowledged INTEGER NOT NULL, poked INTEGER NOT NULL, held INTEGER NOT NULL)",
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
                    let mut gate = self.gate()?;
                    let release = gate.on_acknowledged(cursor);
                    self.save_gate(&gate)?;
                    if let Some(cursor) = release {
                        self.send_poke(cursor, Vec::new(), "", None)?;
                    }
                }
                let added = self.add_topics(&claim.topics)?;
                self.authorized_now(&claim.topics)?;
                self.watch_all(&claim.session_id, &added).await;
                json_response(200, &serde_json::json!({ "topics": self.topics()?.len() }))
            }
            "/poke" => {
                let Ok(poke) = req.json::<Poke>().await else {
                    return error_response(400, "malformed_json", "expected a poke");
                };
                // Rows ride along only while the app's last "yes" for this topic is
                // recent; otherwise the client pulls, which asks again.
                let (changes, since) = if poke.changes.is_empty() || !self.recently_authorized(&poke.topic)? {
                    (Vec::new(), None)
                } else {
                    (poke.changes, poke.since)
                };
                let mut gate = self.gate()?;
                let decision = if changes.is_empty() {
                    gate.on_change(poke.cursor)
                } else {
                    gate.on_carried(poke.cursor)
                };
                self.save_gate(&gate)?;
                let sockets = match decision {
                    PokeDecision::Send(cursor) => self.send_poke(cursor, changes, &poke.topic, since)?,
                    // Skipped or held, the session is live while it has a socket.
                    PokeDecision::Skip => self.state.get_websockets().len(),
                    PokeDecision::Hold { set_alarm } => {
                        if set_alarm {
                            let hold_ms = i64::try_from(HOLD_MS).unwrap_or(500);
                            self.state.storage().set_alarm(hold_ms).await?;
                        }
                        self.state.get_websockets().len()
                    }
                };
                Response::from_json(&Delivered { sockets })
            }
            // The change watcher asks whether anyone still listens here.
            "/sockets" => Response::from_json(&Delivered { sockets: self.state.get_websockets().len() }),
            _ => error_response(404, "not_found", "no such session endpoint"),
        }
    }

    /// The hold alarm: a merged poke its client did not pull for goes out now.
    async fn alarm(&self) -> Result<Response> {
        let mut gate = self.gate()?;
        let release = gate.on_alarm();
        self.save_gate(&gate)?;
        if let Some(cursor) = release {
            self.send_poke(cursor, Vec::new(), "", None)?;
        }
        Response::ok("")
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
        if self.state.get_websockets().is_empty()
            && let Some(session_id) = self.session_id()?
        {
            tell_watcher(&self.env, "/quiet", &session_id).await;
        }
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

    fn session_id(&self) -> Result<Option<String>> {
        #[derive(serde::Deserialize)]
        struct Owner {
            session_id: String,
        }
        let owners: Vec<Owner> = self.sql.exec("SELECT session_id FROM owner LIMIT 1", None)?.to_array()?;
        Ok(owners.into_iter().next().map(|owner| owner.session_id))
    }

    fn gate(&self) -> Result<PokeGate> {
        #[derive(serde::Deserialize)]
        struct Row {
            acknowledged: i64,
            poked: i64,
            held: i64,
        }
        let rows: Vec<Row> = self
            .sql
            .exec("SELECT acknowledged, poked, held FROM poke_gate WHERE id = 1", None)?
            .to_array()?;
        let number = |value: i64| u64::try_from(value).unwrap_or(0);
        Ok(rows.first().map_or_else(PokeGate::default, |row| PokeGate {
            acknowledged: number(row.acknowledged),
            poked: number(row.poked),
            held: number(row.held),
        }))
    }

    fn save_gate(&self, gate: &PokeGate) -> Result<()> {
        let number = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
        self.sql.exec(
            "INSERT INTO poke_gate (id, acknowledged, poked, held) VALUES (1, ?, ?, ?) \
             ON CONFLICT (id) DO UPDATE SET acknowledged = excluded.acknowledged, \
             poked = excluded.poked, held = excluded.held",
            vec![number(gate.acknowledged).into(), number(gate.poked).into(), number(gate.held).into()],
        )?;
        Ok(())
    }

    /// Records that the app's query callback just allowed `topics` to this client.
    fn authorized_now(&self, topics: &[String]) -> Result<()> {
        let now = worker::Date::now().as_millis() as i64;
        for topic in topics {
            self.sql.exec(
                "INSERT INTO topic_auth (topic, at_ms) VALUES (?, ?) \
                 ON CONFLICT (topic) DO UPDATE SET at_ms = excluded.at_ms",
                vec![topic.clone().into(), now.into()],
            )?;
        }
        Ok(())
    }

    fn recently_authorized(&self, topic: &str) -> Result<bool> {
        #[derive(serde::Deserialize)]
        struct Row {
            at_ms: i64,
        }
        let rows: Vec<Row> =
            self.sql.exec("SELECT at_ms FROM topic_auth WHERE topic = ?", vec![topic.into()])?.to_array()?;
        let now = worker::Date::now().as_millis() as i64;
        Ok(rows.first().is_some_and(|row| now - row.at_ms <= AUTHORIZATION_FRESH_MS))
    }

    /// Tells every socket of the session that the log reached `cursor` (with
    /// `changes`, if any); returns how many sockets it reached.
    fn send_poke(
        &self,
        cursor: u64,
        changes: Vec<sync::Change>,
        topic: &str,
        since: Option<u64>,
    ) -> Result<usize> {
        // Where the changes begin is only meaningful with the changes.
        let (topic, since) = match since {
            Some(since) if !changes.is_empty() => (Some(topic.to_string()), Some(sync::Cursor(since))),
            _ => (None, None),
        };
        let text = serde_json::to_string(&ServerMessage::Poke {
            cursor: sync::Cursor(cursor),
            changes,
            topic,
            since,
        })?;
        Ok(self.state.get_websockets().iter().filter(|socket| socket.send_with_str(&text).is_ok()).count())
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
        tell_watcher(&self.env, "/listen", &session_id).await;
        Response::from_websocket(pair.client)
    }
}
