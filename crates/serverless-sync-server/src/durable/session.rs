//! One object per session: a thin shell over `sync::session::SessionState` (owner,
//! watched topics, their authorization, the poke gate), kept in the object's storage,
//! plus the hibernating WebSockets that carry out its pokes.

use sync::pokes::{HOLD_MS, PokeGate};
use sync::protocol::poke::ServerMessage;
use sync::protocol::unwatch::Unwatch;
use sync::session::{OnPoke, Outgoing, SessionState};
use worker::{
    DurableObject, Env, Request, Response, Result, SqlStorage, State, WebSocket, WebSocketIncomingMessage,
    WebSocketPair, durable_object,
};

use super::calls::{Claim, Delivered, Poke, TicketGrant, Watch};
use super::stubs::{post_json, subscription_stub, tell_watcher};
use super::{error_response, json_response};

/// Most sockets one session holds open (one leader tab holds one; reconnects overlap).
const MAX_SOCKETS_PER_SESSION: usize = 4;

fn now_ms() -> i64 {
    worker::Date::now().as_millis() as i64
}

#[durable_object]
pub struct ClientSession {
    state: State,
    env: Env,
    sql: SqlStorage,
    /// Pushes on this session's sockets being run (bounded: `MAX_PUSHES_IN_FLIGHT`).
    pushes_in_flight: std::cell::Cell<usize>,
}

/// How a push on the socket begins (`sync::protocol::socket_push::SocketPush`).
const PUSH_PREFIX: &str = r#"{"type":"push""#;
/// The tag that keeps the address a socket was opened from (its pushes count against
/// that address's rate limit, as over HTTP).
const ADDRESS_TAG: &str = "address:";

/// The keep-alive a client may send on its socket, and the answer it gets.
pub const PING: &str = r#"{"type":"ping"}"#;
pub const PONG: &str = r#"{"type":"pong"}"#;

impl DurableObject for ClientSession {
    fn new(state: State, env: Env) -> Self {
        let sql = state.storage().sql();
        for statement in [
            "CREATE TABLE IF NOT EXISTS owner (session_id TEXT NOT NULL, client_id TEXT NOT NULL)",
            // The app's subject of the user the session belongs to (apps that name users).
            "CREATE TABLE IF NOT EXISTS owner_user (id INTEGER PRIMARY KEY CHECK (id = 1), subject TEXT NOT NULL)",
            // Unspent socket tickets (`sync::protocol::ticket`).
            "CREATE TABLE IF NOT EXISTS tickets (secret TEXT PRIMARY KEY, expires_at INTEGER NOT NULL)",
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
        // A keep-alive ping is answered by the runtime itself: it neither wakes the
        // hibernating object nor counts as a request.
        match worker::worker_sys::WebSocketRequestResponsePair::new(PING, PONG) {
            Ok(pair) => state.set_websocket_auto_response(&pair),
            Err(error) => worker::console_error!("ClientSession auto-response: {error:?}"),
        }
        Self { state, env, sql, pushes_in_flight: std::cell::Cell::new(0) }
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
                let before = self.load()?;
                let mut session = before.clone();
                if let Err(owner) = session.claim(&claim.client_id) {
                    return error_response(
                        403,
                        "session_mismatch",
                        &format!("session {} belongs to another client than {owner}", claim.session_id),
                    );
                }
                let subscribed = session.subscribe(&claim.topics, claim.cursor, now_ms());
                session.refuse(&claim.refused);
                self.save(&claim.session_id, &before, &session)?;
                if let Some(release) = subscribed.release {
                    self.send_poke(release)?;
                }
                self.watch_all(&claim.session_id, session.user.clone(), &subscribed.added).await;
                json_response(200, &serde_json::json!({ "topics": session.topics.len() }))
            }
            "/poke" => {
                let Ok(poke) = req.json::<Poke>().await else {
                    return error_response(400, "malformed_json", "expected a poke");
                };
                // Only what a poke decides on: the topic's authorization and the gate.
                let mut session = self.load_for_poke(&poke.topic)?;
                let gate_before = session.gate;
                let decision = session.poke(&poke.topic, poke.cursor, poke.changes, poke.since, now_ms());
                // Storage rows written are billed per row: a poke that carries its
                // changes leaves the gate as it was, so it writes nothing.
                let storage_rows_written =
                    if session.gate != gate_before { self.save_gate(&session.gate)? } else { 0 };
                // A poke sent, skipped or held is counted in its topic's fan-out line
                // (one per write), not logged here: that would be a line per reader.
                let unwatched = matches!(decision, OnPoke::Unwatched);
                let sockets = match decision {
                    OnPoke::Send(outgoing) => self.send_poke(outgoing)?,
                    // Skipped or held, the session is live while it has a socket.
                    OnPoke::Skip => self.state.get_websockets().len(),
                    OnPoke::Hold { set_alarm } => {
                        if set_alarm {
                            let hold_ms = i64::try_from(HOLD_MS).unwrap_or(500);
                            self.state.storage().set_alarm(hold_ms).await?;
                        }
                        self.state.get_websockets().len()
                    }
                    // Not watched (refused, or never): the topic object forgets us.
                    OnPoke::Unwatched => 0,
                };
                if unwatched {
                    crate::observe::object_event("session", "poke_unwatched", None, &[]);
                }
                Response::from_json(&Delivered { sockets, storage_rows_written })
            }
            "/ticket" => {
                let Ok(grant) = req.json::<TicketGrant>().await else {
                    return error_response(400, "malformed_json", "expected a ticket grant");
                };
                self.ticket(&grant)
            }
            // The operator's stats: sockets and watched topics.
            "/stats" => Response::from_json(&serde_json::json!({
                "sockets": self.state.get_websockets().len(),
                "topics": self.topics()?,
            })),
            // The change watcher asks whether anyone still listens here.
            "/sockets" => Response::from_json(&Delivered {
                sockets: self.state.get_websockets().len(),
                storage_rows_written: 0,
            }),
            _ => error_response(404, "not_found", "no such session endpoint"),
        }
    }

    /// The hold alarm: a merged poke its client did not pull for goes out now.
    async fn alarm(&self) -> Result<Response> {
        let gate_before = self.gate()?;
        let mut session = SessionState { gate: gate_before, ..SessionState::default() };
        let release = session.alarm();
        if session.gate != gate_before {
            self.save_gate(&session.gate)?;
        }
        if let Some(outgoing) = release {
            let sockets = self.send_poke(outgoing)?;
            crate::observe::object_event(
                "session",
                "held_poke_released",
                None,
                &[("sockets", sockets as u64)],
            );
        }
        Response::ok("")
    }

    async fn websocket_message(&self, ws: WebSocket, message: WebSocketIncomingMessage) -> Result<()> {
        // A push rides the socket (its request line logs it); the exact PING never
        // gets here (the runtime answers it). Anything else woke the object, which is
        // billed: it is logged.
        if let WebSocketIncomingMessage::String(text) = &message
            && text.starts_with(PUSH_PREFIX)
        {
            return self.push_on_socket(&ws, text).await;
        }
        if let WebSocketIncomingMessage::String(text) = &message
            && Unwatch::is_unwatch(text)
        {
            return self.unwatch_on_socket(&ws, text);
        }
        crate::observe::object_event("session", "socket_message", None, &[]);
        if let WebSocketIncomingMessage::String(text) = message
            && text.contains("\"ping\"")
        {
            ws.send_with_str(PONG)?;
        }
        Ok(())
    }

    async fn websocket_close(&self, ws: WebSocket, code: usize, reason: String, _clean: bool) -> Result<()> {
        let code = u16::try_from(code).ok().filter(|c| (1000..5000).contains(c) && *c != 1005 && *c != 1006);
        ws.close(Some(code.unwrap_or(1000)), Some(reason)).ok();
        let open = self.state.get_websockets().len();
        crate::observe::object_event("session", "socket_closed", None, &[("open_sockets", open as u64)]);
        if open == 0
            && let Some(session_id) = self.session_id()?
        {
            tell_watcher(&self.env, "/quiet", &session_id).await;
        }
        Ok(())
    }
}

impl ClientSession {
    /// The session's state as its storage holds it (see `sync::session`).
    fn load(&self) -> Result<SessionState> {
        #[derive(serde::Deserialize)]
        struct Owner {
            client_id: String,
        }
        #[derive(serde::Deserialize)]
        struct Auth {
            topic: String,
            at_ms: i64,
        }
        #[derive(serde::Deserialize)]
        struct User {
            subject: String,
        }
        let owners: Vec<Owner> = self.sql.exec("SELECT client_id FROM owner LIMIT 1", None)?.to_array()?;
        let users: Vec<User> =
            self.sql.exec("SELECT subject FROM owner_user WHERE id = 1", None)?.to_array()?;
        let auth: Vec<Auth> = self.sql.exec("SELECT topic, at_ms FROM topic_auth", None)?.to_array()?;
        Ok(SessionState {
            owner: owners.into_iter().next().map(|owner| owner.client_id),
            user: users.into_iter().next().map(|user| user.subject),
            topics: self.topics()?.into_iter().collect(),
            authorized_at: auth.into_iter().map(|row| (row.topic, row.at_ms)).collect(),
            gate: self.gate()?,
        })
    }

    /// The part of the state a poke for `topic` reads: whether the topic is watched,
    /// its authorization, the gate.
    fn load_for_poke(&self, topic: &str) -> Result<SessionState> {
        let mut session = SessionState { gate: self.gate()?, ..SessionState::default() };
        self.load_topic(topic, &mut session)?;
        Ok(session)
    }

    /// Adds `topic` to `session` as stored: watched or not, and when the app last
    /// allowed it.
    fn load_topic(&self, topic: &str, session: &mut SessionState) -> Result<()> {
        #[derive(serde::Deserialize)]
        struct Watched {
            at_ms: Option<i64>,
        }
        let watched: Vec<Watched> = self
            .sql
            .exec(
                "SELECT a.at_ms AS at_ms FROM topics t LEFT JOIN topic_auth a ON a.topic = t.topic \
                 WHERE t.topic = ?",
                vec![topic.into()],
            )?
            .to_array()?;
        if let Some(row) = watched.first() {
            session.topics.insert(topic.to_string());
            if let Some(at_ms) = row.at_ms {
                session.authorized_at.insert(topic.to_string(), at_ms);
            }
        }
        Ok(())
    }

    /// Stores what changed between `before` and `after`.
    fn save(&self, session_id: &str, before: &SessionState, after: &SessionState) -> Result<()> {
        if before.owner.is_none()
            && let Some(client_id) = &after.owner
        {
            self.sql.exec(
                "INSERT INTO owner (session_id, client_id) VALUES (?, ?)",
                vec![session_id.into(), client_id.clone().into()],
            )?;
        }
        if before.user.is_none()
            && let Some(subject) = &after.user
        {
            self.sql.exec(
                "INSERT OR IGNORE INTO owner_user (id, subject) VALUES (1, ?)",
                vec![subject.clone().into()],
            )?;
        }
        for topic in after.topics.difference(&before.topics) {
            self.sql.exec("INSERT OR IGNORE INTO topics (topic) VALUES (?)", vec![topic.clone().into()])?;
        }
        for topic in before.topics.difference(&after.topics) {
            self.sql.exec("DELETE FROM topics WHERE topic = ?", vec![topic.clone().into()])?;
        }
        for topic in before.authorized_at.keys().filter(|topic| !after.authorized_at.contains_key(*topic)) {
            self.sql.exec("DELETE FROM topic_auth WHERE topic = ?", vec![topic.clone().into()])?;
        }
        for (topic, at_ms) in &after.authorized_at {
            if before.authorized_at.get(topic) != Some(at_ms) {
                self.sql.exec(
                    "INSERT INTO topic_auth (topic, at_ms) VALUES (?, ?) \
                     ON CONFLICT (topic) DO UPDATE SET at_ms = excluded.at_ms",
                    vec![topic.clone().into(), (*at_ms).into()],
                )?;
            }
        }
        if before.gate != after.gate {
            self.save_gate(&after.gate)?;
        }
        Ok(())
    }

    fn session_id(&self) -> Result<Option<String>> {
        Ok(self.owner()?.map(|(session_id, _)| session_id))
    }

    /// The session's id and its client's, once claimed.
    fn owner(&self) -> Result<Option<(String, String)>> {
        #[derive(serde::Deserialize)]
        struct Owner {
            session_id: String,
            client_id: String,
        }
        let owners: Vec<Owner> =
            self.sql.exec("SELECT session_id, client_id FROM owner LIMIT 1", None)?.to_array()?;
        Ok(owners.into_iter().next().map(|owner| (owner.session_id, owner.client_id)))
    }

    /// The client no longer reads some topics (`sync::protocol::unwatch`): they are
    /// unwatched (their objects forget this session at their next poke) and the
    /// client is told which, so it pulls if it reads one again by now. Reads and
    /// writes only the rows of the topics named.
    fn unwatch_on_socket(&self, ws: &WebSocket, text: &str) -> Result<()> {
        let unwatch = match Unwatch::parse(text) {
            Ok(unwatch) => unwatch,
            Err(error) => {
                // Only a broken client sends one; nothing changes.
                worker::console_error!("unwatch on the socket refused: {error}");
                crate::observe::object_event("session", "unwatch_refused", None, &[]);
                return Ok(());
            }
        };
        let mut before = SessionState::default();
        for topic in &unwatch.topics {
            self.load_topic(topic, &mut before)?;
        }
        let mut after = before.clone();
        let removed = after.unwatch(&unwatch.topics);
        if !removed.is_empty() {
            // No owner changes here: the session id is not needed.
            self.save("", &before, &after)?;
        }
        crate::observe::object_event("session", "unwatched", None, &[("topics", removed.len() as u64)]);
        let answer = serde_json::to_string(&ServerMessage::Unwatched { topics: unwatch.topics })
            .map_err(|error| worker::Error::RustError(error.to_string()))?;
        if let Err(error) = ws.send_with_str(&answer) {
            worker::console_error!("answering an unwatch on a closed socket: {error}");
        }
        Ok(())
    }

    /// A push on one of this session's sockets (`crate::socket_push`): answered on that
    /// socket, then its pokes go out (the object stays awake for them).
    async fn push_on_socket(&self, ws: &WebSocket, text: &str) -> Result<()> {
        let owner = self.owner()?;
        let address = self
            .state
            .get_tags(ws)
            .into_iter()
            .find_map(|tag| tag.strip_prefix(ADDRESS_TAG).map(str::to_string));
        let socket_owner = owner.as_ref().map(|(session_id, client_id)| crate::socket_push::SocketOwner {
            session_id,
            client_id,
            address: address.as_deref(),
        });
        let busy = self.pushes_in_flight.get() >= crate::socket_push::MAX_PUSHES_IN_FLIGHT;
        if !busy {
            self.pushes_in_flight.set(self.pushes_in_flight.get() + 1);
        }
        let (answer, after) = crate::socket_push::answer(&self.env, socket_owner, text, busy).await;
        // A socket closed meanwhile: the client sends the push again (idempotent).
        if let Err(error) = ws.send_with_str(&answer) {
            worker::console_error!("answering a push on a closed socket: {error}");
        }
        // Counted until its pokes are out too: they hold its upstream connection.
        for work in after {
            work.await;
        }
        if !busy {
            self.pushes_in_flight.set(self.pushes_in_flight.get().saturating_sub(1));
        }
        Ok(())
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

    /// Stores the gate; returns the storage rows that wrote.
    fn save_gate(&self, gate: &PokeGate) -> Result<u64> {
        let number = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
        let written = self.sql.exec(
            "INSERT INTO poke_gate (id, acknowledged, poked, held) VALUES (1, ?, ?, ?) \
             ON CONFLICT (id) DO UPDATE SET acknowledged = excluded.acknowledged, \
             poked = excluded.poked, held = excluded.held",
            vec![number(gate.acknowledged).into(), number(gate.poked).into(), number(gate.held).into()],
        )?;
        Ok(written.rows_written() as u64)
    }

    /// Sends a poke to every socket of the session; returns how many it reached.
    fn send_poke(&self, outgoing: Outgoing) -> Result<usize> {
        let text = serde_json::to_string(&ServerMessage::Poke {
            cursor: sync::Cursor(outgoing.cursor),
            changes: outgoing.changes,
            topic: outgoing.topic,
            since: outgoing.since,
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

    /// Tells each topic's object that this session (of `user`) watches it. A topic
    /// that refuses more watchers (`too_many_watchers`) leaves this client to its
    /// pulls for that topic; logged.
    async fn watch_all(&self, session_id: &str, user: Option<String>, topics: &[String]) {
        let watches = topics.iter().map(|topic| {
            let watch = Watch { topic: topic.clone(), session_id: session_id.into(), user: user.clone() };
            async move {
                let result = match subscription_stub(&self.env, topic) {
                    Ok(stub) => {
                        post_json(&stub, "/watch", &watch).await.map(|response| response.status_code())
                    }
                    Err(error) => Err(error),
                };
                match result {
                    Ok(200) => {}
                    Ok(status) => worker::console_error!("watch {topic}: HTTP {status}"),
                    Err(error) => worker::console_error!("watch {topic}: {error}"),
                }
            }
        });
        futures_util::future::join_all(watches).await;
    }

    /// A one-time socket ticket for the session's own client and user.
    fn ticket(&self, grant: &TicketGrant) -> Result<Response> {
        use sync::protocol::ticket::{MAX_OPEN_TICKETS, TICKET_TTL_MS, TicketResponse};
        let before = self.load()?;
        let mut session = before.clone();
        if let Err(owner) = session.claim(&grant.client_id) {
            return error_response(
                403,
                "session_mismatch",
                &format!("session {} belongs to another client than {owner}", grant.session_id),
            );
        }
        if session.claim_user(grant.subject.as_deref()).is_err() {
            return error_response(
                403,
                "session_mismatch",
                &format!("session {} belongs to another user", grant.session_id),
            );
        }
        self.save(&grant.session_id, &before, &session)?;
        let mut random = [0u8; 16];
        getrandom::fill(&mut random).map_err(|error| worker::Error::RustError(error.to_string()))?;
        let secret: String = random.iter().map(|byte| format!("{byte:02x}")).collect();
        let now = now_ms();
        self.sql.exec("DELETE FROM tickets WHERE expires_at < ?", vec![now.into()])?;
        self.sql.exec(
            "INSERT INTO tickets (secret, expires_at) VALUES (?, ?)",
            vec![secret.clone().into(), (now + TICKET_TTL_MS).into()],
        )?;
        // A bounded number outstanding: asking for more drops the oldest.
        let kept = i64::try_from(MAX_OPEN_TICKETS).unwrap_or(8);
        self.sql.exec(
            "DELETE FROM tickets WHERE secret NOT IN \
             (SELECT secret FROM tickets ORDER BY expires_at DESC LIMIT ?)",
            vec![kept.into()],
        )?;
        Response::from_json(&TicketResponse {
            ticket: format!("{}.{secret}", grant.session_id),
            expires_in_ms: TICKET_TTL_MS,
        })
    }

    /// Spends a ticket: `true` when it was unspent and in time.
    fn spend_ticket(&self, secret: &str) -> Result<bool> {
        #[derive(serde::Deserialize)]
        struct Row {
            expires_at: i64,
        }
        let rows: Vec<Row> = self
            .sql
            .exec("SELECT expires_at FROM tickets WHERE secret = ?", vec![secret.into()])?
            .to_array()?;
        self.sql.exec("DELETE FROM tickets WHERE secret = ?", vec![secret.into()])?;
        Ok(rows.first().is_some_and(|row| row.expires_at >= now_ms()))
    }

    /// Accepts the client's WebSocket (hibernation API) for an unspent ticket, and
    /// re-watches every topic: a topic drops a session that had no socket when it was
    /// poked.
    async fn socket(&self, req: &Request) -> Result<Response> {
        let url = req.url()?;
        let secret = url.query_pairs().find(|(key, _)| key == "ticket").map(|(_, value)| value.into_owned());
        if !secret.is_some_and(|secret| self.spend_ticket(&secret).unwrap_or(false)) {
            return error_response(401, "unauthorized", "the ticket is unknown, used or expired");
        }
        let Some(session_id) = self.session_id()? else {
            return error_response(401, "unauthorized", "the session has no owner");
        };
        let pair = WebSocketPair::new()?;
        // A bounded number per session: the new one stays, the oldest beyond the
        // bound are closed (a reconnecting client is never locked out by its own
        // dead sockets).
        // Each socket is tagged with when it opened (zero-padded: tags sort by age).
        let mut open: Vec<(String, WebSocket)> = self
            .state
            .get_websockets()
            .into_iter()
            .map(|socket| (self.state.get_tags(&socket).into_iter().next().unwrap_or_default(), socket))
            .collect();
        open.sort_by(|a, b| a.0.cmp(&b.0));
        for (_, oldest) in open.iter().take((open.len() + 1).saturating_sub(MAX_SOCKETS_PER_SESSION)) {
            oldest.close(Some(4008), Some("too many sockets for this session: the newest stays")).ok();
        }
        let opened = format!("{:016}", now_ms());
        let address = url
            .query_pairs()
            .find(|(key, _)| key == "address")
            .map(|(_, value)| value.into_owned())
            .filter(|address| crate::connector::is_address(address))
            .map(|address| format!("{ADDRESS_TAG}{address}"));
        let tags: Vec<&str> = std::iter::once(opened.as_str()).chain(address.as_deref()).collect();
        self.state.accept_websocket_with_tags(&pair.server, &tags);
        // One read of the state: its topics, and its user for the topics' bounds.
        let state = self.load()?;
        let topics: Vec<String> = state.topics.into_iter().collect();
        self.watch_all(&session_id, state.user, &topics).await;
        tell_watcher(&self.env, "/listen", &session_id).await;
        crate::observe::object_event(
            "session",
            "socket_opened",
            None,
            &[("open_sockets", self.state.get_websockets().len() as u64), ("topics", topics.len() as u64)],
        );
        Response::from_websocket(pair.client)
    }
}
