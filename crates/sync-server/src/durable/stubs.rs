//! Calling the objects from the worker (and from each other).

use serde::Serialize;
use worker::{Env, Method, Request, RequestInit, Response, Stub};

use super::calls::{Claim, Poke};
use crate::error::ApiError;

pub const SESSIONS: &str = "CLIENT_SESSIONS";
pub const SUBSCRIPTIONS: &str = "QUERY_SUBSCRIPTIONS";
pub const WATCHER: &str = "CHANGE_WATCHER";

pub fn session_stub(env: &Env, session_id: &str) -> worker::Result<Stub> {
    env.durable_object(SESSIONS)?.id_from_name(session_id)?.get_stub()
}

pub fn subscription_stub(env: &Env, topic: &str) -> worker::Result<Stub> {
    env.durable_object(SUBSCRIPTIONS)?.id_from_name(topic)?.get_stub()
}

pub async fn post_json(stub: &Stub, path: &str, body: &impl Serialize) -> worker::Result<Response> {
    let headers = worker::Headers::new();
    headers.set("content-type", "application/json")?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post).with_headers(headers).with_body(Some(serde_json::to_string(body)?.into()));
    // Objects are addressed by stub; the host is a placeholder.
    stub.fetch_with_request(Request::new_with_init(&format!("https://object{path}"), &init)?).await
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("{0}")]
    Mismatch(String),
    #[error("the session object failed: {0}")]
    Failed(String),
}

impl From<SessionError> for ApiError {
    fn from(error: SessionError) -> Self {
        match error {
            SessionError::Mismatch(reason) => ApiError::Forbidden { code: "session_mismatch", reason },
            SessionError::Failed(reason) => ApiError::upstream(reason),
        }
    }
}

async fn session_call(env: &Env, path: &str, claim: &Claim) -> Result<(), SessionError> {
    let failed = |error: worker::Error| SessionError::Failed(error.to_string());
    let stub = session_stub(env, &claim.session_id).map_err(failed)?;
    let mut response = post_json(&stub, path, claim).await.map_err(failed)?;
    match response.status_code() {
        200 => Ok(()),
        403 => {
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            let reason =
                body.get("reason").and_then(|r| r.as_str()).unwrap_or("session belongs to another client");
            Err(SessionError::Mismatch(reason.to_string()))
        }
        status => Err(SessionError::Failed(format!("HTTP {status}"))),
    }
}

thread_local! {
    /// (session, client) pairs a ClientSession confirmed in this isolate. A session
    /// belongs to its first client for good, so a confirmation never goes stale.
    static CLAIMED: std::cell::RefCell<std::collections::HashSet<(String, String)>> =
        std::cell::RefCell::new(std::collections::HashSet::new());
}

/// Entries each memo keeps per isolate before it starts again.
const MEMO_LIMIT: usize = 10_000;

/// Binds (or checks) the session's client. Once a session object has confirmed the
/// pair, this isolate answers from memory: a push costs no object call.
pub async fn claim(env: &Env, session_id: &str, client_id: &str) -> Result<(), SessionError> {
    if CLAIMED.with(|claimed| claimed.borrow().contains(&(session_id.to_string(), client_id.to_string()))) {
        return Ok(());
    }
    let claim = Claim {
        session_id: session_id.into(),
        client_id: client_id.into(),
        topics: Vec::new(),
        cursor: None,
    };
    session_call(env, "/claim", &claim).await?;
    remember_claim(session_id, client_id);
    Ok(())
}

/// Notes that the session's object confirmed `client_id` as its owner.
fn remember_claim(session_id: &str, client_id: &str) {
    remember(&CLAIMED, [(session_id.to_string(), client_id.to_string())]);
}

/// Adds what an object confirmed to one of this isolate's memos, starting the memo
/// again when it would pass [`MEMO_LIMIT`] (bounds memory; forgetting only costs a call).
fn remember<K: std::hash::Hash + Eq + 'static>(
    memo: &'static std::thread::LocalKey<std::cell::RefCell<std::collections::HashSet<K>>>,
    confirmed: impl IntoIterator<Item = K>,
) {
    let confirmed: Vec<K> = confirmed.into_iter().collect();
    memo.with(|memo| {
        let mut memo = memo.borrow_mut();
        if memo.len() + confirmed.len() > MEMO_LIMIT {
            memo.clear();
        }
        memo.extend(confirmed);
    });
}

/// Checks the session's client, makes it watch `topics`, and records the cursor the
/// client acknowledged (pokes at or below it are skipped).
pub async fn subscribe(
    env: &Env,
    session_id: &str,
    client_id: &str,
    topics: Vec<String>,
    cursor: Option<u64>,
) -> Result<(), SessionError> {
    let claim = Claim { session_id: session_id.into(), client_id: client_id.into(), topics, cursor };
    session_call(env, "/subscribe", &claim).await
}

/// Tells the change watcher that `session_id` has a socket (`/listen`) or none left
/// (`/quiet`). Logged, never raised: without a watcher binding (an app that has not
/// added it) only writes made outside the connector go unannounced.
pub async fn tell_watcher(env: &Env, path: &str, session_id: &str) {
    let watch = super::calls::Watch { topic: String::new(), session_id: session_id.into() };
    let result = match env.durable_object(WATCHER).and_then(|ns| ns.id_from_name("change-log")?.get_stub()) {
        Ok(stub) => post_json(&stub, path, &watch).await.map(|_| ()),
        Err(error) => Err(error),
    };
    if let Err(error) = result {
        worker::console_error!("change watcher {path}: {error}");
    }
}

thread_local! {
    /// (session, client, topic) triples whose watch a ClientSession confirmed in this
    /// isolate. A session never forgets a topic (a QuerySubscription that dropped a
    /// socketless session gets it back when a socket connects), so they stay true.
    static WATCHING: std::cell::RefCell<std::collections::HashSet<(String, String, String)>> =
        std::cell::RefCell::new(std::collections::HashSet::new());
}

/// [`subscribe`] before a read, skipped when this isolate saw the session confirm
/// every one of `topics` for this client already (then nothing would change, and the
/// pull saves an object call on its way). Returns whether it called the session.
pub async fn watch_before_read(
    env: &Env,
    session_id: &str,
    client_id: &str,
    topics: Vec<String>,
    cursor: Option<u64>,
) -> Result<bool, SessionError> {
    // The session's owner first: only a pair its object confirmed may skip the call
    // (a pull naming no topic is answered from the pair alone).
    let claimed = CLAIMED.with(|claimed| claimed.borrow().contains(&(session_id.into(), client_id.into())));
    let known = claimed
        && WATCHING.with(|watching| {
            let watching = watching.borrow();
            topics
                .iter()
                .all(|topic| watching.contains(&(session_id.into(), client_id.into(), topic.clone())))
        });
    if known {
        return Ok(false);
    }
    subscribe(env, session_id, client_id, topics.clone(), cursor).await?;
    remember_claim(session_id, client_id);
    remember(
        &WATCHING,
        topics.into_iter().map(|topic| (session_id.to_string(), client_id.to_string(), topic)),
    );
    Ok(true)
}

/// Hands a WebSocket upgrade to the session's object.
pub async fn open_socket(env: &Env, session_id: &str, url: &str) -> worker::Result<Response> {
    let stub = session_stub(env, session_id)?;
    let headers = worker::Headers::new();
    headers.set("upgrade", "websocket")?;
    let mut init = RequestInit::new();
    init.with_method(Method::Get).with_headers(headers);
    stub.fetch_with_request(Request::new_with_init(url, &init)?).await
}

/// Tells every watcher of `topics` that the log reached `cursor`, with the changes
/// on each topic when they are small enough to carry, and, where `since` names the
/// topic, where those changes begin (see `sync::cursors`). Failures are logged, never
/// raised: a missed poke is caught by the client's next pull.
pub async fn poke_topics(
    env: Env,
    topics: Vec<String>,
    cursor: u64,
    mut carried_by_topic: std::collections::BTreeMap<String, Vec<sync::changes::Change>>,
    since: std::collections::BTreeMap<String, u64>,
) {
    let pokes = topics.into_iter().map(|topic| {
        let env = env.clone();
        // What a pull of this topic alone would hand out (`sync::fanout`).
        let on_topic = carried_by_topic.remove(&topic).unwrap_or_default();
        let carried = serde_json::to_string(&on_topic).map_or(usize::MAX, |text| text.len());
        let on_topic = if carried <= sync::protocol::poke::MAX_CARRIED_BYTES { on_topic } else { Vec::new() };
        let since = if on_topic.is_empty() { None } else { since.get(&topic).copied() };
        async move {
            let poke = Poke { topic: topic.clone(), cursor, changes: on_topic, since };
            let result = match subscription_stub(&env, &topic) {
                Ok(stub) => post_json(&stub, "/poke", &poke).await.map(|_| ()),
                Err(error) => Err(error),
            };
            if let Err(error) = result {
                worker::console_error!("poke {topic}: {error}");
            }
        }
    });
    futures_util::future::join_all(pokes).await;
}
