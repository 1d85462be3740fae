//! One object per upstream: pokes the topics of writes nobody announced (made with
//! plain SQL, not through the connector), while at least one client listens.
//!
//! ClientSessions register when a socket connects. While any is registered, an alarm
//! every `SYNC_CAPTURE_POLL_MS` (default 1000) reads the change log after its mark
//! for changes with no mutation behind them (`sync::capture::unannounced_changes`),
//! pokes their topics' QuerySubscriptions, and moves the mark
//! (`sync::capture::announce`). Every 30 s it asks each session whether it still has
//! a socket and forgets those that do not; with none left the alarm stops, so an
//! upstream nobody watches costs nothing.

use sync::changes::{Cursor, Topic};
use worker::{DurableObject, Env, Request, Response, Result, SqlStorage, State, durable_object};

use super::calls::{Delivered, Watch};
use super::stubs::{post_json, session_stub};
use super::{error_response, json_response};
use crate::upstream::{Database, Upstream, head_of, head_statement, integer, topics_of};

const DEFAULT_POLL_MS: i64 = 1_000;
/// How often registered sessions are asked whether they still have a socket.
const LIVENESS_MS: i64 = 30_000;
/// Unannounced changes read per scan (the rest waits for the next).
const SCAN_LIMIT: u32 = 500;

#[durable_object]
pub struct ChangeWatcher {
    state: State,
    env: Env,
    sql: SqlStorage,
}

impl DurableObject for ChangeWatcher {
    fn new(state: State, env: Env) -> Self {
        let sql = state.storage().sql();
        for statement in [
            "CREATE TABLE IF NOT EXISTS listeners (session_id TEXT PRIMARY KEY)",
            // `mark`: the log is scanned after it; `checked_ms`: last liveness check.
            "CREATE TABLE IF NOT EXISTS scan (id INTEGER PRIMARY KEY CHECK (id = 1), \
               mark INTEGER, checked_ms INTEGER NOT NULL)",
        ] {
            if let Err(error) = sql.exec(statement, None) {
                worker::console_error!("ChangeWatcher schema: {error}");
            }
        }
        Self { state, env, sql }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let Ok(watch) = req.json::<Watch>().await else {
            return error_response(400, "malformed_json", "expected a session id");
        };
        match req.path().as_str() {
            "/listen" => {
                self.sql.exec(
                    "INSERT OR IGNORE INTO listeners (session_id) VALUES (?)",
                    vec![watch.session_id.into()],
                )?;
                // The mark starts at the head now, before the client's socket is
                // answered: its pull after connecting covers every earlier write, the
                // scans every later one.
                let (mark, checked_ms) = self.scan_state()?;
                if mark.is_none() {
                    match self.scan(None).await {
                        Ok(head) => self.save_scan(Some(head), checked_ms)?,
                        Err(error) => worker::console_error!("change watcher: {error}"),
                    }
                }
                if self.state.storage().get_alarm().await?.is_none() {
                    self.state.storage().set_alarm(self.poll_ms()).await?;
                }
                json_response(200, &serde_json::json!({ "listeners": self.listeners()?.len() }))
            }
            "/quiet" => {
                self.sql.exec("DELETE FROM listeners WHERE session_id = ?", vec![watch.session_id.into()])?;
                json_response(200, &serde_json::json!({ "listeners": self.listeners()?.len() }))
            }
            _ => error_response(404, "not_found", "no such watcher endpoint"),
        }
    }

    async fn alarm(&self) -> Result<Response> {
        let now = worker::Date::now().as_millis() as i64;
        let (mark, mut checked_ms) = self.scan_state()?;
        if now - checked_ms >= LIVENESS_MS {
            self.forget_silent_listeners().await?;
            checked_ms = now;
            self.save_scan(mark, checked_ms)?;
        }
        if self.listeners()?.is_empty() {
            // Nobody listens: stop, and start from the head when someone does again
            // (a client that connects pulls everything it missed anyway).
            self.sql.exec("DELETE FROM scan", None)?;
            return Response::ok("");
        }
        match self.scan(mark).await {
            Ok(next) => self.save_scan(Some(next), checked_ms)?,
            Err(error) => worker::console_error!("change watcher: {error}"),
        }
        self.state.storage().set_alarm(self.poll_ms()).await?;
        Response::ok("")
    }
}

impl ChangeWatcher {
    fn poll_ms(&self) -> i64 {
        crate::config::setting(&self.env, crate::config::CAPTURE_POLL_MS)
            .and_then(|ms| ms.parse::<i64>().ok())
            .filter(|ms| *ms >= 50)
            .unwrap_or(DEFAULT_POLL_MS)
    }

    fn listeners(&self) -> Result<Vec<String>> {
        #[derive(serde::Deserialize)]
        struct Row {
            session_id: String,
        }
        let rows: Vec<Row> = self.sql.exec("SELECT session_id FROM listeners", None)?.to_array()?;
        Ok(rows.into_iter().map(|row| row.session_id).collect())
    }

    fn scan_state(&self) -> Result<(Option<Cursor>, i64)> {
        #[derive(serde::Deserialize)]
        struct Row {
            mark: Option<i64>,
            checked_ms: i64,
        }
        let rows: Vec<Row> =
            self.sql.exec("SELECT mark, checked_ms FROM scan WHERE id = 1", None)?.to_array()?;
        Ok(rows.first().map_or((None, 0), |row| {
            (row.mark.map(|mark| Cursor(u64::try_from(mark).unwrap_or(0))), row.checked_ms)
        }))
    }

    fn save_scan(&self, mark: Option<Cursor>, checked_ms: i64) -> Result<()> {
        let mark = mark.map(|mark| i64::try_from(mark.0).unwrap_or(i64::MAX));
        self.sql.exec(
            "INSERT INTO scan (id, mark, checked_ms) VALUES (1, ?, ?) \
             ON CONFLICT (id) DO UPDATE SET mark = excluded.mark, checked_ms = excluded.checked_ms",
            vec![mark.into(), checked_ms.into()],
        )?;
        Ok(())
    }

    /// Asks every listener whether it still has a socket; forgets those that do not.
    async fn forget_silent_listeners(&self) -> Result<()> {
        let listeners = self.listeners()?;
        let asks = listeners.iter().map(|session_id| async move {
            let Ok(stub) = session_stub(&self.env, session_id) else { return 0 };
            match post_json(&stub, "/sockets", &serde_json::json!({})).await {
                Ok(mut response) => response.json::<Delivered>().await.map(|d| d.sockets).unwrap_or(0),
                Err(_) => 0,
            }
        });
        let sockets = futures_util::future::join_all(asks).await;
        for (session_id, count) in listeners.iter().zip(sockets) {
            if count == 0 {
                self.sql
                    .exec("DELETE FROM listeners WHERE session_id = ?", vec![session_id.clone().into()])?;
            }
        }
        Ok(())
    }

    /// One scan: the first sets the mark at the head; later ones poke the topics of
    /// unannounced changes after it. Returns the next mark.
    async fn scan(&self, mark: Option<Cursor>) -> std::result::Result<Cursor, crate::error::ApiError> {
        let db = Upstream::open_bare(&self.env).await?;
        let Some(mark) = mark else {
            return Ok(head_of(&db.rows(&head_statement(db.dialect())).await?));
        };
        let scan = sync::capture::unannounced_changes(db.dialect(), mark, SCAN_LIMIT);
        let mut results = db.read(&[scan, head_statement(db.dialect())]).await?.into_iter();
        let (found, head) =
            (results.next().unwrap_or_default(), head_of(&results.next().unwrap_or_default()));
        let found: Vec<(Cursor, Vec<Topic>)> = found
            .iter()
            .map(|row| {
                let seq = Cursor(u64::try_from(integer(row, "seq").unwrap_or(0)).unwrap_or(0));
                (seq, topics_of(row).unwrap_or_default())
            })
            .collect();
        let announcement = sync::capture::announce(mark, &found, SCAN_LIMIT as usize, head);
        if !announcement.topics.is_empty() {
            // No rows ride along (this object does not know the app's model to decode
            // them): each watcher pulls, which also asks the app's query callback.
            super::stubs::poke_topics(
                self.env.clone(),
                announcement.topics.iter().map(ToString::to_string).collect(),
                announcement.mark.0,
                std::collections::BTreeMap::new(),
                std::collections::BTreeMap::new(),
            )
            .await;
        }
        Ok(announcement.mark)
    }
}
