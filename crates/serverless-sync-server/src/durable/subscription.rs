//! One object per topic: the sessions watching it. A shell over `sync::watchers`:
//! a watch is decided by `decide_watch` (a user's sessions and the total bounded),
//! a poke goes to each session, and `TopicWatchers` says whom to forget (only
//! sessions that said they have no socket).

use futures_util::future::join_all;
use worker::{DurableObject, Env, Request, Response, Result, SqlStorage, State, durable_object};

use sync::watchers::{SocketAnswer, TopicWatchers, Watched, Watcher, decide_watch};

use super::calls::{Poke, Watch};
use super::stubs::delivered;
use super::{error_response, json_response};

#[durable_object]
pub struct QuerySubscription {
    env: Env,
    sql: SqlStorage,
}

impl DurableObject for QuerySubscription {
    fn new(state: State, env: Env) -> Self {
        let sql = state.storage().sql();
        if let Err(error) =
            sql.exec("CREATE TABLE IF NOT EXISTS watchers (session_id TEXT PRIMARY KEY)", None)
        {
            worker::console_error!("QuerySubscription schema: {error}");
        }
        // Added later: objects made before have the table without them.
        for column in ["user_subject TEXT", "since_ms INTEGER NOT NULL DEFAULT 0"] {
            let _already = sql.exec(&format!("ALTER TABLE watchers ADD COLUMN {column}"), None);
        }
        let _ = sql
            .exec("CREATE INDEX IF NOT EXISTS watchers_by_user ON watchers (user_subject, since_ms)", None);
        Self { env, sql }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        match req.path().as_str() {
            "/watch" => {
                let Ok(watch) = req.json::<Watch>().await else {
                    return error_response(400, "malformed_json", "expected a watch");
                };
                match self.watch(&watch)? {
                    Watched::Yes { .. } => json_response(200, &serde_json::json!({ "watching": true })),
                    Watched::Full => {
                        crate::observe::object_event("subscription", "watch_refused_full", None, &[]);
                        error_response(
                            429,
                            "too_many_watchers",
                            &format!(
                                "this query has {} live watchers, the most one query takes; its changes reach this client by pulls",
                                sync::watchers::MAX_WATCHERS
                            ),
                        )
                    }
                }
            }
            "/poke" => {
                let Ok(poke) = req.json::<Poke>().await else {
                    return error_response(400, "malformed_json", "expected a poke");
                };
                let started = crate::observe::clock_ms();
                let mut watchers = TopicWatchers::new(self.watchers()?);
                let sessions: Vec<String> = watchers.sessions().cloned().collect();
                let answers =
                    join_all(sessions.iter().map(|session_id| self.poke_session(session_id, &poke))).await;
                let storage_rows_written: u64 = answers.iter().map(|(_, written)| written).sum();
                let answers: Vec<(String, SocketAnswer)> =
                    sessions.into_iter().zip(answers.into_iter().map(|(answer, _)| answer)).collect();
                for session_id in watchers.after_poke(&answers) {
                    self.sql.exec("DELETE FROM watchers WHERE session_id = ?", vec![session_id.into()])?;
                }
                let poked = answers
                    .iter()
                    .filter(|(_, answer)| matches!(answer, SocketAnswer::Sockets(n) if *n > 0))
                    .count();
                let ms = crate::observe::clock_ms() - started;
                let counts = [
                    ("sessions", answers.len() as u64),
                    ("poked", poked as u64),
                    ("changes", poke.changes.len() as u64),
                    ("storage_rows_written", storage_rows_written),
                ];
                crate::observe::object_event("subscription", "poke", Some(ms), &counts);
                crate::observe::object_point(&self.env, "subscription", "poke", ms, &counts);
                json_response(200, &serde_json::json!({ "poked": poked }))
            }
            _ => error_response(404, "not_found", "no such subscription endpoint"),
        }
    }
}

impl QuerySubscription {
    fn watchers(&self) -> Result<Vec<(String, Watcher)>> {
        #[derive(serde::Deserialize)]
        struct Row {
            session_id: String,
            user_subject: Option<String>,
            since_ms: i64,
        }
        let rows: Vec<Row> =
            self.sql.exec("SELECT session_id, user_subject, since_ms FROM watchers", None)?.to_array()?;
        Ok(rows
            .into_iter()
            .map(|row| (row.session_id, Watcher { user: row.user_subject, since_ms: row.since_ms }))
            .collect())
    }

    /// A watch, as `sync::watchers::decide_watch` decides it, reading only what it
    /// needs: whether the session watches, its user's sessions, the total.
    fn watch(&self, watch: &Watch) -> Result<Watched> {
        #[derive(serde::Deserialize)]
        struct Count {
            n: i64,
        }
        #[derive(serde::Deserialize)]
        struct Row {
            session_id: String,
            since_ms: i64,
        }
        let count = |sql: &str, params: Vec<worker::SqlStorageValue>| -> Result<usize> {
            let rows: Vec<Count> = self.sql.exec(sql, params)?.to_array()?;
            Ok(rows.first().map_or(0, |row| usize::try_from(row.n).unwrap_or(0)))
        };
        let known = count(
            "SELECT count(*) AS n FROM watchers WHERE session_id = ?",
            vec![watch.session_id.clone().into()],
        )? > 0;
        let total = count("SELECT count(*) AS n FROM watchers", Vec::new())?;
        let of_user: Vec<(String, i64)> = match &watch.user {
            Some(user) => self
                .sql
                .exec(
                    "SELECT session_id, since_ms FROM watchers WHERE user_subject = ?",
                    vec![user.clone().into()],
                )?
                .to_array::<Row>()?
                .into_iter()
                .map(|row| (row.session_id, row.since_ms))
                .collect(),
            None => Vec::new(),
        };
        let watched = decide_watch(&watch.session_id, watch.user.as_deref(), known, &of_user, total);
        if let Watched::Yes { replaced } = &watched {
            if let Some(replaced) = replaced {
                self.sql.exec("DELETE FROM watchers WHERE session_id = ?", vec![replaced.clone().into()])?;
            }
            let now = worker::Date::now().as_millis() as i64;
            self.sql.exec(
                "INSERT INTO watchers (session_id, user_subject, since_ms) VALUES (?, ?, ?) \
                 ON CONFLICT (session_id) DO UPDATE SET since_ms = excluded.since_ms, \
                 user_subject = COALESCE(excluded.user_subject, watchers.user_subject)",
                vec![watch.session_id.clone().into(), watch.user.clone().into(), now.into()],
            )?;
        }
        Ok(watched)
    }

    /// The sockets the session delivered to, or that it could not be asked.
    async fn poke_session(&self, session_id: &str, poke: &Poke) -> (SocketAnswer, u64) {
        delivered(&self.env, session_id, "/poke", poke).await
    }
}
