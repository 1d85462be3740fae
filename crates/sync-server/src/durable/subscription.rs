//! One object per topic: the sessions watching it. A shell over
//! `sync::watchers::TopicWatchers`: it loads the watchers, pokes each session, and
//! deletes those the type forgets (only sessions that said they have no socket).

use futures_util::future::join_all;
use worker::{DurableObject, Env, Request, Response, Result, SqlStorage, State, durable_object};

use sync::watchers::{SocketAnswer, TopicWatchers};

use super::calls::{Poke, Watch};
use super::stubs::ask_session;
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
        Self { env, sql }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        match req.path().as_str() {
            "/watch" => {
                let Ok(watch) = req.json::<Watch>().await else {
                    return error_response(400, "malformed_json", "expected a watch");
                };
                self.sql.exec(
                    "INSERT OR IGNORE INTO watchers (session_id) VALUES (?)",
                    vec![watch.session_id.into()],
                )?;
                json_response(200, &serde_json::json!({ "watchers": self.watchers()?.len() }))
            }
            "/poke" => {
                let Ok(poke) = req.json::<Poke>().await else {
                    return error_response(400, "malformed_json", "expected a poke");
                };
                let mut watchers = TopicWatchers::new(self.watchers()?);
                let sessions: Vec<String> = watchers.sessions().cloned().collect();
                let answers =
                    join_all(sessions.iter().map(|session_id| self.poke_session(session_id, &poke))).await;
                let answers: Vec<(String, SocketAnswer)> = sessions.into_iter().zip(answers).collect();
                for session_id in watchers.after_poke(&answers) {
                    self.sql.exec("DELETE FROM watchers WHERE session_id = ?", vec![session_id.into()])?;
                }
                let poked = answers
                    .iter()
                    .filter(|(_, answer)| matches!(answer, SocketAnswer::Sockets(n) if *n > 0))
                    .count();
                json_response(200, &serde_json::json!({ "poked": poked }))
            }
            _ => error_response(404, "not_found", "no such subscription endpoint"),
        }
    }
}

impl QuerySubscription {
    fn watchers(&self) -> Result<Vec<String>> {
        #[derive(serde::Deserialize)]
        struct Row {
            session_id: String,
        }
        let rows: Vec<Row> = self.sql.exec("SELECT session_id FROM watchers", None)?.to_array()?;
        Ok(rows.into_iter().map(|row| row.session_id).collect())
    }

    /// The sockets the session delivered to, or that it could not be asked.
    async fn poke_session(&self, session_id: &str, poke: &Poke) -> SocketAnswer {
        ask_session(&self.env, session_id, "/poke", poke).await
    }
}
