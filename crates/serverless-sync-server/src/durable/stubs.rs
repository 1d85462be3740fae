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

/// The one change watcher of this upstream.
fn watcher_stub(env: &Env) -> worker::Result<Stub> {
    env.durable_object(WATCHER)?.id_from_name("change-log")?.get_stub()
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

/// POSTs to a session's object: its 200 answer, or why not (403: another client's
/// or user's session).
async fn session_request(
    env: &Env,
    session_id: &str,
    path: &str,
    body: &impl Serialize,
) -> Result<Response, SessionError> {
    let failed = |error: worker::Error| SessionError::Failed(error.to_string());
    let stub = session_stub(env, session_id).map_err(failed)?;
    let mut response = post_json(&stub, path, body).await.map_err(failed)?;
    match response.status_code() {
        200 => Ok(response),
        403 => {
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            let reason =
                body.get("reason").and_then(|r| r.as_str()).unwrap_or("session belongs to another client");
            Err(SessionError::Mismatch(reason.to_string()))
        }
        status => Err(SessionError::Failed(format!("HTTP {status}"))),
    }
}

async fn session_call(env: &Env, path: &str, claim: &Claim) -> Result<(), SessionError> {
    session_request(env, &claim.session_id, path, claim).await.map(|_| ())
}

thread_local! {
    /// What this isolate's objects confirmed (`sync::memo`): saves object calls only.
    static MEMO: std::cell::RefCell<sync::memo::IsolateMemo> =
        std::cell::RefCell::new(sync::memo::IsolateMemo::new());
}

/// Reads or updates this isolate's memo.
pub fn with_memo<T>(f: impl FnOnce(&mut sync::memo::IsolateMemo) -> T) -> T {
    MEMO.with(|memo| f(&mut memo.borrow_mut()))
}

/// A one-time ticket for the session's socket, granted by its object to its client
/// (and user, when the app names one).
pub async fn grant_ticket(
    env: &Env,
    session_id: &str,
    client_id: &str,
    subject: Option<String>,
) -> Result<sync::protocol::ticket::TicketResponse, SessionError> {
    let grant =
        super::calls::TicketGrant { session_id: session_id.into(), client_id: client_id.into(), subject };
    let mut response = session_request(env, session_id, "/ticket", &grant).await?;
    response.json().await.map_err(|error| SessionError::Failed(error.to_string()))
}

/// Binds (or checks) the session's client. Once a session object has confirmed the
/// pair, this isolate answers from memory: a push costs no object call.
pub async fn claim(env: &Env, session_id: &str, client_id: &str) -> Result<(), SessionError> {
    if with_memo(|memo| memo.is_claimed(session_id, client_id)) {
        return Ok(());
    }
    let claim = Claim {
        session_id: session_id.into(),
        client_id: client_id.into(),
        topics: Vec::new(),
        cursor: None,
        refused: Vec::new(),
    };
    session_call(env, "/claim", &claim).await?;
    with_memo(|memo| memo.remember_claim(session_id, client_id));
    Ok(())
}

/// The session object itself vouches that `client_id` owns `session_id` (a push on
/// its socket): this isolate's claims answer from memory, with no call to the object.
pub fn remember_claim(session_id: &str, client_id: &str) {
    with_memo(|memo| memo.remember_claim(session_id, client_id));
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
    let claim = Claim {
        session_id: session_id.into(),
        client_id: client_id.into(),
        topics,
        cursor,
        refused: Vec::new(),
    };
    session_call(env, "/subscribe", &claim).await
}

/// The app refused `topics` to this session: it stops watching them before the
/// refusal is answered (no poke for them after it). Also checks the session's client.
pub async fn refuse(
    env: &Env,
    session_id: &str,
    client_id: &str,
    refused: Vec<String>,
) -> Result<(), SessionError> {
    with_memo(|memo| memo.forget_watch(session_id, client_id, &refused));
    let claim = Claim {
        session_id: session_id.into(),
        client_id: client_id.into(),
        topics: Vec::new(),
        cursor: None,
        refused,
    };
    session_call(env, "/subscribe", &claim).await
}

/// Tells the change watcher that `session_id` has a socket (`/listen`) or none left
/// (`/quiet`). Logged, never raised: without a watcher binding (an app that has not
/// added it) only writes made outside the connector go unannounced.
pub async fn tell_watcher(env: &Env, path: &str, session_id: &str) {
    let watch = super::calls::Watch { topic: String::new(), session_id: session_id.into(), user: None };
    let result = match watcher_stub(env) {
        Ok(stub) => post_json(&stub, path, &watch).await.map(|_| ()),
        Err(error) => Err(error),
    };
    if let Err(error) = result {
        worker::console_error!("change watcher {path}: {error}");
    }
}

/// A pull's session call before its read, as this isolate's memo decides
/// (`sync::memo::IsolateMemo::pull_watch`). Returns the topics whose authorization
/// the call after answering must refresh, or `None` when no call follows.
pub async fn watch_before_read(
    env: &Env,
    session_id: &str,
    client_id: &str,
    topics: Vec<String>,
    cursor: sync::changes::Cursor,
) -> Result<Option<Vec<String>>, SessionError> {
    let watch = with_memo(|memo| memo.pull_watch(session_id, client_id, &topics, cursor));
    if let Some(acknowledge) = watch.call_before {
        subscribe(env, session_id, client_id, topics.clone(), acknowledge).await?;
        with_memo(|memo| memo.remember_watch(session_id, client_id, &topics));
    }
    Ok(watch.call_after.then_some(watch.refresh))
}

/// Asks a session object (`/poke` or `/sockets`) how many sockets it has; a failed
/// call or an answer that is not one is [`SocketAnswer::Unreachable`].
pub async fn ask_session(
    env: &Env,
    session_id: &str,
    path: &str,
    body: &impl Serialize,
) -> sync::watchers::SocketAnswer {
    delivered(env, session_id, path, body).await.0
}

/// [`ask_session`], with the storage rows the call wrote there (0 when unknown).
pub async fn delivered(
    env: &Env,
    session_id: &str,
    path: &str,
    body: &impl Serialize,
) -> (sync::watchers::SocketAnswer, u64) {
    use sync::watchers::SocketAnswer;
    let Ok(stub) = session_stub(env, session_id) else { return (SocketAnswer::Unreachable, 0) };
    match post_json(&stub, path, body).await {
        Ok(mut response) if response.status_code() == 200 => response
            .json::<super::calls::Delivered>()
            .await
            .map_or((SocketAnswer::Unreachable, 0), |delivered| {
                (SocketAnswer::Sockets(delivered.sockets), delivered.storage_rows_written)
            }),
        _ => (SocketAnswer::Unreachable, 0),
    }
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

/// The live sessions as the operator's stats show them: how many listen (have a
/// socket), and, asking at most `limit` of them, their open sockets and the distinct
/// topics they watch. Without a watcher binding, nulls.
pub async fn live_sessions(env: &Env, limit: usize) -> serde_json::Value {
    #[derive(serde::Deserialize)]
    struct WatcherStats {
        listening_sessions: usize,
        scan_mark: Option<u64>,
        #[serde(default)]
        sample: Vec<String>,
    }
    #[derive(serde::Deserialize)]
    struct SessionStats {
        sockets: usize,
        topics: Vec<String>,
    }
    let empty = serde_json::json!({});
    let watcher = match watcher_stub(env) {
        Ok(stub) => match post_json(&stub, "/stats", &empty).await {
            Ok(mut response) => response.json::<WatcherStats>().await.ok(),
            Err(_) => None,
        },
        Err(_) => None,
    };
    let Some(watcher) = watcher else {
        return serde_json::json!({ "listening": null, "asked": 0, "open_sockets": null, "watched_topics": null });
    };
    let asks = watcher.sample.iter().take(limit).map(|session_id| async move {
        let stub = session_stub(env, session_id).ok()?;
        let mut response = post_json(&stub, "/stats", &serde_json::json!({})).await.ok()?;
        response.json::<SessionStats>().await.ok()
    });
    let answers: Vec<SessionStats> =
        futures_util::future::join_all(asks).await.into_iter().flatten().collect();
    let topics: std::collections::BTreeSet<&String> =
        answers.iter().flat_map(|stats| &stats.topics).collect();
    serde_json::json!({
        "listening": watcher.listening_sessions,
        "asked": answers.len(),
        "open_sockets": answers.iter().map(|stats| stats.sockets).sum::<usize>(),
        "watched_topics": topics.len(),
        "change_watcher_mark": watcher.scan_mark,
    })
}
