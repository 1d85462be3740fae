//! One object per upstream: pokes the topics of writes nobody announced (made with
//! plain SQL, not through the connector), while at least one client listens.
//!
//! ClientSessions register when a socket connects. While any is registered, an alarm
//! every `SYNC_CAPTURE_POLL_MS` (default 1000) reads the change log after its mark
//! for changes with no mutation behind them (`sync::capture::unannounced_changes`),
//! pokes their topics' QuerySubscriptions, and moves the mark
//! (`sync::capture::announce`). A shell over `sync::watchers::ChangeWatch`, which
//! decides when to ask the sessions whether they still have a socket, whom to forget
//! (only those that said none), and when to stop: an upstream nobody watches costs
//! nothing.

use sync::changes::{Cursor, Topic};
use sync::watchers::{ChangeWatch, OnAlarm, SocketAnswer};
use worker::{DurableObject, Env, Request, Response, Result, SqlStorage, State, durable_object};

use super::calls::Watch;
use super::stubs::ask_session;
use super::{error_response, json_response};
use crate::upstream::{Database, Upstream, head_of, head_statement, integer, topics_of};

const DEFAULT_POLL_MS: i64 = 1_000;
/// Listening sessions named to the operator's stats endpoint, at most.
const STATS_SAMPLE: usize = 100;
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
        if req.path() == "/stats" {
            // For the operator's stats endpoint: who listens, where the scan stands.
            let watch = self.load()?;
            return json_response(
                200,
                &serde_json::json!({
                    "listening_sessions": watch.listeners.len(),
                    "scan_mark": watch.mark.map(|mark| mark.0),
                    // Some of them, for the stats to ask (never shown to anyone).
                    "sample": watch.listeners.iter().take(STATS_SAMPLE).collect::<Vec<_>>(),
                }),
            );
        }
        let Ok(watch_request) = req.json::<Watch>().await else {
            return error_response(400, "malformed_json", "expected a session id");
        };
        match req.path().as_str() {
            "/listen" => {
                let stored = self.load()?;
                let mut watch = stored.clone();
                if watch.listen(&watch_request.session_id) {
                    match self.scan(None).await {
                        Ok(head) => watch.mark = Some(head),
                        Err(error) => worker::console_error!("change watcher: {error}"),
                    }
                }
                self.save(&stored, &watch)?;
                if self.state.storage().get_alarm().await?.is_none() {
                    self.state.storage().set_alarm(self.poll_ms()).await?;
                }
                json_response(200, &serde_json::json!({ "listeners": watch.listeners.len() }))
            }
            "/quiet" => {
                let stored = self.load()?;
                let mut watch = stored.clone();
                watch.quiet(&watch_request.session_id);
                self.save(&stored, &watch)?;
                json_response(200, &serde_json::json!({ "listeners": watch.listeners.len() }))
            }
            _ => error_response(404, "not_found", "no such watcher endpoint"),
        }
    }

    async fn alarm(&self) -> Result<Response> {
        let now = worker::Date::now().as_millis() as i64;
        let stored = self.load()?;
        let mut watch = stored.clone();
        let mut next = watch.on_alarm(now);
        if next == OnAlarm::AskLiveness {
            let sessions: Vec<String> = watch.listeners.iter().cloned().collect();
            let empty = serde_json::json!({});
            let asks =
                sessions.iter().map(|session_id| ask_session(&self.env, session_id, "/sockets", &empty));
            let answers: Vec<(String, SocketAnswer)> =
                sessions.iter().cloned().zip(futures_util::future::join_all(asks).await).collect();
            next = watch.after_liveness(&answers, now);
        }
        if next == OnAlarm::Scan {
            match self.scan(watch.mark).await {
                Ok(mark) => watch.mark = Some(mark),
                Err(error) => worker::console_error!("change watcher: {error}"),
            }
        }
        self.save(&stored, &watch)?;
        if next == OnAlarm::Scan {
            self.state.storage().set_alarm(self.poll_ms()).await?;
        }
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

    /// The watcher's state from its storage.
    fn load(&self) -> Result<ChangeWatch> {
        #[derive(serde::Deserialize)]
        struct Listener {
            session_id: String,
        }
        #[derive(serde::Deserialize)]
        struct Scan {
            mark: Option<i64>,
            checked_ms: i64,
        }
        let listeners: Vec<Listener> = self.sql.exec("SELECT session_id FROM listeners", None)?.to_array()?;
        let scan: Vec<Scan> =
            self.sql.exec("SELECT mark, checked_ms FROM scan WHERE id = 1", None)?.to_array()?;
        let (mark, checked_ms) = scan.first().map_or((None, 0), |row| {
            (row.mark.map(|mark| Cursor(u64::try_from(mark).unwrap_or(0))), row.checked_ms)
        });
        Ok(ChangeWatch {
            listeners: listeners.into_iter().map(|row| row.session_id).collect(),
            mark,
            checked_ms,
        })
    }

    /// Writes back what changed from `stored` (as [`Self::load`] read it) to `watch`.
    fn save(&self, stored: &ChangeWatch, watch: &ChangeWatch) -> Result<()> {
        for gone in stored.listeners.difference(&watch.listeners) {
            self.sql.exec("DELETE FROM listeners WHERE session_id = ?", vec![gone.clone().into()])?;
        }
        for new in watch.listeners.difference(&stored.listeners) {
            self.sql
                .exec("INSERT OR IGNORE INTO listeners (session_id) VALUES (?)", vec![new.clone().into()])?;
        }
        let mark = watch.mark.map(|mark| i64::try_from(mark.0).unwrap_or(i64::MAX));
        self.sql.exec(
            "INSERT INTO scan (id, mark, checked_ms) VALUES (1, ?, ?) \
             ON CONFLICT (id) DO UPDATE SET mark = excluded.mark, checked_ms = excluded.checked_ms",
            vec![mark.into(), watch.checked_ms.into()],
        )?;
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
            crate::observe::object_event(
                "watcher",
                "unannounced_changes",
                None,
                &[("changes", found.len() as u64), ("topics", announcement.topics.len() as u64)],
            );
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
