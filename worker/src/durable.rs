//! Durable Object classes. Declared in wrangler.toml (`new_sqlite_classes`).
//! Their behaviour (sessions, subscriptions, pokes) lands with the connector.

use worker::{DurableObject, Env, Request, Response, Result, State, durable_object};

/// One per connected client session: its identity, auth, subscriptions, cursor and WebSocket.
#[durable_object]
pub struct ClientSession {
    _state: State,
}

impl DurableObject for ClientSession {
    fn new(state: State, _env: Env) -> Self {
        Self { _state: state }
    }

    async fn fetch(&self, _req: Request) -> Result<Response> {
        not_yet()
    }
}

/// One per subscription key (a named query with its normalized args): who watches it.
#[durable_object]
pub struct QuerySubscription {
    _state: State,
}

impl DurableObject for QuerySubscription {
    fn new(state: State, _env: Env) -> Self {
        Self { _state: state }
    }

    async fn fetch(&self, _req: Request) -> Result<Response> {
        not_yet()
    }
}

fn not_yet() -> Result<Response> {
    Ok(Response::from_json(&serde_json::json!({
        "error": "not_implemented",
        "reason": "this Durable Object has no endpoints yet",
    }))?
    .with_status(501))
}
