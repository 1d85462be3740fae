//! The SQLite Web Worker: owns the local store, answers the page's requests, and syncs
//! with the connector (push the outbox, pull on pokes, keep one WebSocket open).
//!
//! Started by `pkg/db-worker.js`, which loads this bundle and calls
//! [`db_worker_start`].

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;

use client::messages::{FromWorker, Reply, Request, Status, Storage, ToWorker};
use futures_util::StreamExt;
use gloo_net::http::Request as Http;
use gloo_net::websocket::Message;
use gloo_net::websocket::futures::WebSocket;
use serde_json::Value;
use store::LocalStore;
use sync::model::MutationContext;
use sync::protocol::PROTOCOL_VERSION;
use sync::protocol::poke::ServerMessage;
use sync::protocol::pull::{PullRequest, PullResponse, Subscription};
use sync::protocol::push::{PushRequest, PushResponse};
use sync::protocol::query::{QueryRequest, QueryResponse};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{DedicatedWorkerGlobalScope, MessageEvent};

const OPFS_DIRECTORY: &str = "serverless-sync";
const DATABASE_FILE: &str = "local.db";
const PUSH_BATCH: usize = 100;

fn scope() -> DedicatedWorkerGlobalScope {
    js_sys::global().unchecked_into()
}

fn now_ms() -> f64 {
    scope().performance().map_or_else(js_sys::Date::now, |performance| performance.now())
}

fn post(message: &FromWorker) {
    if let Ok(text) = serde_json::to_string(message) {
        let _ = scope().post_message(&text.into());
    }
}

fn random_id(prefix: &str) -> String {
    let random = (0..5).fold(0u128, |acc, _| (acc << 16) | ((js_sys::Math::random() * 65536.0) as u128));
    sync::ids::new_id(prefix, js_sys::Date::now() as u64, random)
}

async fn sleep(ms: u32) {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        let _ = scope().set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms as i32);
    });
    let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
}

/// Exponential backoff with jitter: 250 ms doubling to 30 s.
fn backoff_ms(attempt: u32) -> u32 {
    let base = 250u32.saturating_mul(1 << attempt.min(7)).min(30_000);
    base / 2 + (js_sys::Math::random() * f64::from(base / 2)) as u32
}

struct Runtime {
    store: RefCell<Option<LocalStore>>,
    storage: Cell<Storage>,
    token: RefCell<String>,
    session_id: String,
    origin: String,
    subscriptions: RefCell<BTreeMap<String, Subscription>>,
    pushing: Cell<bool>,
    push_again: Cell<bool>,
    pulling: Cell<bool>,
    pull_again: Cell<bool>,
    online: Cell<bool>,
    last_error: RefCell<Option<String>>,
}

impl Runtime {
    fn with_store<T>(&self, f: impl FnOnce(&mut LocalStore) -> Result<T, String>) -> Result<T, String> {
        let mut store = self.store.borrow_mut();
        let store = store.as_mut().ok_or("the database is not open yet")?;
        f(store)
    }

    fn post_status(&self) {
        let (outbox, cursor) = self
            .with_store(|store| {
                Ok((store.outbox_len().unwrap_or(0), store.cursor().map(|c| c.0).unwrap_or(0)))
            })
            .unwrap_or((0, 0));
        post(&FromWorker::Status(Status {
            online: self.online.get(),
            outbox,
            cursor,
            last_error: self.last_error.borrow().clone(),
        }));
    }

    fn client_id(&self) -> Result<String, String> {
        self.with_store(|store| Ok(store.client_id().to_string()))
    }

    async fn post_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &impl serde::Serialize,
    ) -> Result<T, Failure> {
        let token = self.token.borrow().clone();
        let response = Http::post(&format!("{}{path}", self.origin))
            .header("authorization", &format!("Bearer {token}"))
            .json(body)
            .map_err(|e| Failure::Fatal(e.to_string()))?
            .send()
            .await
            .map_err(|e| Failure::Network(e.to_string()))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| Failure::Network(e.to_string()))?;
        if (200..300).contains(&status) {
            serde_json::from_str(&text).map_err(|e| Failure::Fatal(format!("unreadable answer: {e}")))
        } else if status >= 500 {
            Failure::network(format!("HTTP {status}: {text}"))
        } else {
            Err(Failure::Fatal(format!("HTTP {status}: {text}")))
        }
    }
}

/// Why a request to the connector failed.
enum Failure {
    /// Worth retrying (offline, server error).
    Network(String),
    /// Retrying will not help (the request itself is refused).
    Fatal(String),
}

impl Failure {
    fn network<T>(reason: String) -> Result<T, Failure> {
        Err(Failure::Network(reason))
    }
}

/// Entry point, called by `db-worker.js` once the bundle is loaded.
#[wasm_bindgen]
pub fn db_worker_start() {
    console_error_panic_hook::set_once();
    let origin = scope().location().origin();
    let runtime = Rc::new(Runtime {
        store: RefCell::new(None),
        storage: Cell::new(Storage::Memory),
        token: RefCell::new(String::new()),
        session_id: random_id(sync::ids::SESSION),
        origin,
        subscriptions: RefCell::new(BTreeMap::new()),
        pushing: Cell::new(false),
        push_again: Cell::new(false),
        pulling: Cell::new(false),
        pull_again: Cell::new(false),
        online: Cell::new(true),
        last_error: RefCell::new(None),
    });
    let handler = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
        let Some(text) = event.data().as_string() else { return };
        let Ok(message) = serde_json::from_str::<ToWorker>(&text) else { return };
        let runtime = runtime.clone();
        wasm_bindgen_futures::spawn_local(async move {
            let result = handle(&runtime, message.request).await;
            post(&FromWorker::Reply { id: message.id, result });
        });
    });
    scope().set_onmessage(Some(handler.as_ref().unchecked_ref()));
    // The worker lives as long as the page: the handler must too.
    handler.forget();
    post(&FromWorker::Ready);
}

async fn handle(runtime: &Rc<Runtime>, request: Request) -> Result<Reply, String> {
    match request {
        Request::Start { token } => start(runtime, token).await,
        Request::Query { name, args } => {
            wait_until_open(runtime).await?;
            query(runtime, name, args)
        }
        Request::Mutate { name, args } => {
            wait_until_open(runtime).await?;
            mutate(runtime, name, args)
        }
    }
}

/// Requests that arrive while the database is still opening wait for it (a user can
/// press Send before the worker is up).
async fn wait_until_open(runtime: &Rc<Runtime>) -> Result<(), String> {
    const WAIT_MS: u32 = 10;
    for _ in 0..(30_000 / WAIT_MS) {
        if runtime.store.borrow().is_some() {
            return Ok(());
        }
        sleep(WAIT_MS).await;
    }
    Err("the local database did not open within 30 s".into())
}

async fn start(runtime: &Rc<Runtime>, token: String) -> Result<Reply, String> {
    *runtime.token.borrow_mut() = token;
    if runtime.store.borrow().is_some() {
        return Ok(Reply::Started { client_id: runtime.client_id()?, storage: runtime.storage.get() });
    }
    let (connection, storage) = match crate::opfs::open_opfs(OPFS_DIRECTORY, DATABASE_FILE).await {
        Ok(connection) => (connection, Storage::Opfs),
        Err(error) => {
            leptos::logging::warn!("local database in memory: {error}");
            (crate::opfs::open_in_memory().map_err(|e| e.to_string())?, Storage::Memory)
        }
    };
    let store = LocalStore::open(connection, app::model::chat_model(), || random_id(sync::ids::CLIENT))
        .map_err(|e| e.to_string())?;
    let client_id = store.client_id().to_string();
    *runtime.store.borrow_mut() = Some(store);
    runtime.storage.set(storage);
    let socket = runtime.clone();
    wasm_bindgen_futures::spawn_local(async move { keep_socket(socket).await });
    // Whatever was queued before a reload goes out now.
    spawn_push(runtime);
    runtime.post_status();
    Ok(Reply::Started { client_id, storage })
}

fn query(runtime: &Rc<Runtime>, name: String, args: Value) -> Result<Reply, String> {
    let (validated, rows, pending) = runtime.with_store(|store| {
        let validated = store.model().validate_query(&name, &args).map_err(|e| e.to_string())?;
        let rows = store.query(&validated.select).map_err(|e| e.to_string())?;
        let pending = store.pending_records(&validated.select.collection).map_err(|e| e.to_string())?;
        Ok((validated, rows, pending))
    })?;
    let topic = validated.topic.to_string();
    let is_new = !runtime.subscriptions.borrow().contains_key(&topic);
    if is_new {
        runtime
            .subscriptions
            .borrow_mut()
            .insert(topic, Subscription { name: validated.name.clone(), args: validated.args.clone() });
        let runtime = runtime.clone();
        wasm_bindgen_futures::spawn_local(async move { fetch_snapshot(&runtime, validated).await });
    }
    Ok(Reply::Rows { rows, pending })
}

/// First sight of a query: read it from the server, install it, then pull.
async fn fetch_snapshot(runtime: &Rc<Runtime>, validated: sync::model::ValidatedQuery) {
    let Ok(client_id) = runtime.client_id() else { return };
    let request = QueryRequest {
        protocol_version: PROTOCOL_VERSION,
        client_id,
        session_id: runtime.session_id.clone(),
        name: validated.name.clone(),
        args: validated.args.clone(),
    };
    match runtime.post_json::<QueryResponse>("/sync/query", &request).await {
        Ok(answer) => {
            let installed = runtime.with_store(|store| {
                store
                    .apply_snapshot(&validated.select, &answer.rows, answer.cursor)
                    .map_err(|e| e.to_string())
            });
            if let Ok(touched) = installed
                && !touched.is_empty()
            {
                post(&FromWorker::Changed { collections: vec![validated.select.collection.clone()] });
            }
            runtime.online.set(true);
        }
        Err(Failure::Network(reason) | Failure::Fatal(reason)) => {
            *runtime.last_error.borrow_mut() = Some(reason);
        }
    }
    spawn_pull(runtime);
}

fn mutate(runtime: &Rc<Runtime>, name: String, args: Value) -> Result<Reply, String> {
    let mutation_id = random_id(sync::ids::OUTBOX);
    let record_id = random_id(sync::ids::MESSAGE);
    let started = now_ms();
    let collection = runtime.with_store(|store| {
        let ctx = MutationContext {
            client_id: store.client_id().to_string(),
            record_id: record_id.clone(),
            now_ms: js_sys::Date::now() as i64,
        };
        let (_, touched) = store.mutate(&mutation_id, &name, &args, &ctx).map_err(|e| e.to_string())?;
        Ok(touched.collection)
    })?;
    let local_write_ms = now_ms() - started;
    post(&FromWorker::Changed { collections: vec![collection] });
    spawn_push(runtime);
    Ok(Reply::Mutated { mutation_id, record_id, local_write_ms })
}

fn spawn_push(runtime: &Rc<Runtime>) {
    if runtime.pushing.replace(true) {
        runtime.push_again.set(true);
        return;
    }
    let runtime = runtime.clone();
    wasm_bindgen_futures::spawn_local(async move {
        push_loop(&runtime).await;
        runtime.pushing.set(false);
        runtime.post_status();
    });
}

/// Sends the outbox in order until it is empty, backing off while offline.
async fn push_loop(runtime: &Rc<Runtime>) {
    let mut attempt = 0;
    loop {
        runtime.push_again.set(false);
        let Ok((client_id, batch)) = runtime.with_store(|store| {
            Ok((store.client_id().to_string(), store.outbox(PUSH_BATCH).map_err(|e| e.to_string())?))
        }) else {
            return;
        };
        if batch.is_empty() {
            if runtime.push_again.get() {
                continue;
            }
            return;
        }
        let request = PushRequest {
            protocol_version: PROTOCOL_VERSION,
            client_id,
            session_id: runtime.session_id.clone(),
            mutations: batch.iter().map(|pending| pending.to_push()).collect(),
        };
        let sent = now_ms();
        match runtime.post_json::<PushResponse>("/sync/push", &request).await {
            Ok(answer) => {
                let upstream_ms = now_ms() - sent;
                attempt = 0;
                runtime.online.set(true);
                *runtime.last_error.borrow_mut() = None;
                let outcomes: Vec<_> =
                    answer.results.iter().map(|r| (r.id.clone(), r.outcome.clone())).collect();
                let resolved =
                    runtime.with_store(|store| store.resolve(&outcomes).map_err(|e| e.to_string()));
                if let Ok(touched) = resolved {
                    let collections =
                        touched.into_iter().map(|t| t.collection).collect::<std::collections::BTreeSet<_>>();
                    post(&FromWorker::Changed { collections: collections.into_iter().collect() });
                }
                for (mutation_id, outcome) in outcomes {
                    post(&FromWorker::Resolved { mutation_id, outcome, upstream_ms });
                }
                runtime.post_status();
            }
            Err(Failure::Network(reason)) => {
                runtime.online.set(false);
                *runtime.last_error.borrow_mut() = Some(reason);
                runtime.post_status();
                sleep(backoff_ms(attempt)).await;
                attempt += 1;
            }
            Err(Failure::Fatal(reason)) => {
                *runtime.last_error.borrow_mut() = Some(reason);
                runtime.post_status();
                return;
            }
        }
    }
}

fn spawn_pull(runtime: &Rc<Runtime>) {
    if runtime.pulling.replace(true) {
        runtime.pull_again.set(true);
        return;
    }
    let runtime = runtime.clone();
    wasm_bindgen_futures::spawn_local(async move {
        loop {
            runtime.pull_again.set(false);
            pull_all(&runtime).await;
            if !runtime.pull_again.get() {
                break;
            }
        }
        runtime.pulling.set(false);
        runtime.post_status();
    });
}

async fn pull_all(runtime: &Rc<Runtime>) {
    let subscriptions: Vec<Subscription> = runtime.subscriptions.borrow().values().cloned().collect();
    if subscriptions.is_empty() {
        return;
    }
    loop {
        let Ok((client_id, cursor)) = runtime.with_store(|store| {
            Ok((store.client_id().to_string(), store.cursor().map_err(|e| e.to_string())?))
        }) else {
            return;
        };
        let request = PullRequest {
            protocol_version: PROTOCOL_VERSION,
            client_id,
            session_id: runtime.session_id.clone(),
            cursor,
            subscriptions: subscriptions.clone(),
        };
        match runtime.post_json::<PullResponse>("/sync/pull", &request).await {
            Ok(page) => {
                runtime.online.set(true);
                let applied = runtime.with_store(|store| {
                    store.apply_pull(&page.changes, page.cursor).map_err(|e| e.to_string())
                });
                if let Ok(touched) = applied
                    && !touched.is_empty()
                {
                    let collections =
                        touched.into_iter().map(|t| t.collection).collect::<std::collections::BTreeSet<_>>();
                    post(&FromWorker::Changed { collections: collections.into_iter().collect() });
                }
                if !page.has_more {
                    return;
                }
            }
            Err(Failure::Network(reason) | Failure::Fatal(reason)) => {
                *runtime.last_error.borrow_mut() = Some(reason);
                return;
            }
        }
    }
}

/// Keeps one WebSocket to the session open; pulls on every poke and on reconnect.
async fn keep_socket(runtime: Rc<Runtime>) {
    let mut attempt = 0;
    loop {
        let Ok(client_id) = runtime.client_id() else { return };
        let url = format!(
            "{}/sync/socket?client_id={client_id}&session_id={}",
            runtime.origin.replacen("http", "ws", 1),
            runtime.session_id
        );
        if let Ok(mut socket) = WebSocket::open(&url) {
            // Connected (or connecting): catch up on what happened while away.
            spawn_pull(&runtime);
            spawn_push(&runtime);
            while let Some(message) = socket.next().await {
                let Ok(Message::Text(text)) = message else { break };
                attempt = 0;
                if let Ok(ServerMessage::Poke { cursor }) = serde_json::from_str::<ServerMessage>(&text) {
                    let behind = runtime
                        .with_store(|store| store.cursor().map_err(|e| e.to_string()))
                        .is_ok_and(|c| c < cursor);
                    if behind {
                        spawn_pull(&runtime);
                    }
                }
            }
        }
        sleep(backoff_ms(attempt)).await;
        attempt += 1;
    }
}
