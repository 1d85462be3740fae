//! One object per topic: the sessions watching it.

use futures_util::future::join_all;
use worker::{DurableObject, Env, Request, Response, Result, SqlStorage, State, durable_object};

use super::calls::{Delivered, Poke, Watch};
use super::stubs::{post_json, session_stub};
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
                let watchers = self.watchers()?;
                let pokes = watchers.iter().map(|session_id| self.poke_session(session_id, &poke));
                let results = join_all(pokes).await;
                let mut poked = 0;
                for (session_id, sockets) in watchers.iter().zip(results) {
                    if sockets == 0 {
                        // No socket to tell: forget it until a socket connects again.
                        self.sql.exec(
                            "DELETE FROM watchers WHERE session_id = ?",
                            vec![session_id.clone().into()],
                        )?;
                    } else {
                        poked += 1;
                    }
                }
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

    /// Sockets the session delivered to (0 if it has none or cannot be reached).
    async fn poke_session(&self, session_id: &str, poke: &Poke) -> usize {
        let Ok(stub) = session_stub(&self.env, session_id) else { return 0 };
        match post_json(&stub, "/poke", poke).await {
            Ok(mut response) => response.json::<Delivered>().await.map(|d| d.sockets).unwrap_or(0),
            Err(_) => 0,
        }
    }
}
