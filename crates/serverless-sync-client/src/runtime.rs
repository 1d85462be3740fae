//! The SQLite Web Worker: owns the local store, answers the page's requests, and syncs
//! with the connector (push the outbox, pull on pokes, keep one WebSocket open).
//!
//! An app starts it from its worker entry (a module script that loads the app's
//! bundle and calls an exported function) with its sync model and name:
//!
//! ```ignore
//! #[wasm_bindgen]
//! pub fn db_worker_start() {
//!     sync_client::start_db_worker(my_model(), AppName("todo"));
//! }
//! ```
//!
//! Tabs: every tab runs this worker, but only one — the **leader**, holder of the Web
//! Lock [`AppName::leader_lock`] — opens the database and syncs. The others are
//! **followers**: they forward their page's requests over the `BroadcastChannel`
//! [`AppName::tabs_channel`] and
//! relay the leader's events back. When the leader tab closes, its lock is released,
//! the next tab in line opens the database and announces itself, and followers re-send
//! every request not yet answered. Re-sending is safe: queries are reads, and a
//! mutation carries ids chosen by the page, which the store recognises.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use crate::AppName;
use crate::bridge::{FromWorker, Reply, Request, Status, Storage, TabMessage, ToWorker};
use crate::inspect::{EventKind, Inspection, Inspector, Queued, RefreshKind, TableCount};
use crate::panel::{self, Tab};
use crate::tabs::{TabAction, Tabs};
use crate::uses::QueryUses;
use futures_util::StreamExt;
use gloo_net::http::Request as Http;
use gloo_net::websocket::Message;
use gloo_net::websocket::futures::WebSocket;
use serde_json::Value;
use sync::model::{MutationContext, ValidatedQuery};
use sync::protocol::PROTOCOL_VERSION;
use sync::protocol::poke::ServerMessage;
use sync::protocol::pull::PullResponse;
use sync::protocol::push::PushResponse;
use sync::protocol::query::{QueryRequest, QueryResponse};
use sync::{Select, SyncModel};
use sync_store::driver::{AfterFailure, Failure, Snapshot, SyncDriver};
use sync_store::{LocalStore, MutationState, Touched};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{BroadcastChannel, DedicatedWorkerGlobalScope, MessageEvent};

const DATABASE_FILE: &str = "local.db";
/// A query whose snapshot could not be fetched (offline, server unavailable) is
/// fetched again after this pause.
const SNAPSHOT_RETRY_MS: u32 = 2_000;
/// A push on the socket not answered within this long is sent over HTTP (a socket can
/// go quiet without closing when the network drops).
const SOCKET_PUSH_TIMEOUT_MS: u32 = 10_000;

fn scope() -> DedicatedWorkerGlobalScope {
    js_sys::global().unchecked_into()
}

fn now_ms() -> f64 {
    scope().performance().map_or_else(js_sys::Date::now, |performance| performance.now())
}

/// Wall-clock time (ms since the epoch), for the devtools' timeline.
fn epoch_ms() -> f64 {
    js_sys::Date::now()
}

/// To this tab's page only.
fn post(message: &FromWorker) {
    if let Ok(text) = serde_json::to_string(message) {
        let _ = scope().post_message(&text.into());
    }
}

async fn sleep(ms: u32) {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        let _ = scope().set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms as i32);
    });
    let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
}

/// Sleeps up to `ms`, cut short when the browser reports the network is back
/// (`online` event bumps `wake`).
async fn backoff_sleep(runtime: &Runtime, ms: u32) {
    const STEP_MS: u32 = 100;
    let woken_at = runtime.wake.get();
    let mut slept = 0;
    while slept < ms && runtime.wake.get() == woken_at {
        sleep(STEP_MS.min(ms - slept)).await;
        slept += STEP_MS;
    }
}

/// Exponential backoff with jitter (`sync_store::driver::backoff_ms`).
fn backoff_ms(attempt: u32) -> u32 {
    sync_store::driver::backoff_ms(attempt, js_sys::Math::random())
}

struct Runtime {
    /// The app's sync model: what the local store validates and builds.
    model: SyncModel,
    /// Scopes the OPFS directory, the Web Lock and the BroadcastChannel.
    app: AppName,
    channel: Option<BroadcastChannel>,
    /// This tab's part among the tabs (leader or follower, forwarded requests, the
    /// page's token): plain code in `crate::tabs`; this worker carries it out.
    tabs: RefCell<Tabs>,
    store: RefCell<Option<LocalStore>>,
    /// The client's secret key: proves its client id on every request.
    client_key: RefCell<String>,
    storage: Cell<Storage>,
    token: RefCell<String>,
    syncing: Cell<bool>,
    session_id: String,
    origin: String,
    /// The sync loop's decisions (queries, where each stands, refused ones): plain
    /// code in `sync_store::driver`; this worker carries them out.
    driver: RefCell<SyncDriver>,
    pushing: Cell<bool>,
    push_again: Cell<bool>,
    pulling: Cell<bool>,
    pull_again: Cell<bool>,
    online: Cell<bool>,
    /// The server said the user's sign-in is missing or expired: pushes and pulls wait
    /// for a new token (the outbox and local reads carry on).
    needs_auth: Cell<bool>,
    /// Bumped on the browser's `online` event: waiting retries go at once.
    wake: Cell<u32>,
    last_error: RefCell<Option<String>>,
    /// The server's last answer said it is not set up (a migration not applied, a
    /// setting missing): why. Cleared by the next answer that is not that.
    server_not_ready: RefCell<Option<String>>,
    /// What the devtools show besides the store (`crate::inspect`): bounded.
    inspector: RefCell<Inspector>,
    /// The way out of the open socket, while one is open: pushes ride it.
    socket_out: RefCell<Option<futures_channel::mpsc::UnboundedSender<String>>>,
    /// Pushes sent on the socket and not answered yet (status, body), by id.
    socket_answers: RefCell<BTreeMap<u64, futures_channel::oneshot::Sender<(u16, String)>>>,
    last_socket_push: Cell<u64>,
    /// The server takes pushes on the socket (until it says otherwise, for the
    /// socket's life).
    pushes_on_socket: Cell<bool>,
    /// Every query asked for, by topic, as last asked (a windowed one with its
    /// window's size as limit): what eviction keeps, what a resync fetches again,
    /// which queries a change to a collection refreshed.
    queries: RefCell<BTreeMap<String, ValidatedQuery>>,
    /// Which queries live views hold and which ran out of time to live: plain code
    /// in `crate::uses`.
    uses: RefCell<QueryUses>,
    /// Windows whose next page is being fetched, by topic.
    filling: RefCell<BTreeSet<String>>,
}

impl Runtime {
    fn with_store<T>(&self, f: impl FnOnce(&mut LocalStore) -> Result<T, String>) -> Result<T, String> {
        let mut store = self.store.borrow_mut();
        let store = store.as_mut().ok_or("the database is not open yet")?;
        f(store)
    }

    fn broadcast(&self, message: &TabMessage) {
        if let (Some(channel), Ok(text)) = (&self.channel, serde_json::to_string(message)) {
            let _ = channel.post_message(&text.into());
        }
    }

    /// An event of the leader: to this page and to every follower's page.
    fn emit(&self, event: FromWorker) {
        post(&event);
        self.broadcast(&TabMessage::Event { event });
    }

    fn post_status(&self) {
        let (outbox, cursor) = self
            .with_store(|store| {
                Ok((store.outbox_len().unwrap_or(0), store.cursor().map(|c| c.0).unwrap_or(0)))
            })
            .unwrap_or((0, 0));
        self.emit(FromWorker::Status(Status {
            online: self.online.get(),
            storage: self.storage.get(),
            outbox,
            cursor,
            last_error: self.last_error.borrow().clone(),
            needs_auth: self.needs_auth.get(),
            server_not_ready: self.server_not_ready.borrow().clone(),
        }));
    }

    /// The browser (or the socket) lost the network: the page says offline at once,
    /// not only once a write fails.
    fn went_offline(&self) {
        if self.online.replace(false) {
            self.post_status();
        }
    }

    /// The network answered again: the page says online (a request that then fails
    /// says offline again).
    fn went_online(&self) {
        if !self.online.replace(true) {
            self.post_status();
        }
    }

    /// Notes an event on the devtools' timeline.
    fn event(&self, kind: EventKind, ms: Option<f64>, detail: impl Into<String>) {
        self.inspector.borrow_mut().record(epoch_ms(), kind, ms, detail);
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
        let key = self.client_key.borrow().clone();
        let response = Http::post(&format!("{}{path}", self.origin))
            .header("authorization", &format!("Bearer {token}"))
            .header(sync::protocol::CLIENT_KEY_HEADER, &key)
            .json(body)
            .map_err(|e| Failure::Fatal(e.to_string()))?
            .send()
            .await
            .map_err(|e| Failure::Network(e.to_string()))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| Failure::Network(e.to_string()))?;
        self.read_answer(status, &text, &token)
    }

    /// A push: on the open socket when the server takes it there (no request of its
    /// own to set up), else over HTTP. The same answer either way, and which way it went
    /// (for the devtools' timeline).
    async fn push(
        &self,
        request: &sync::protocol::push::PushRequest,
    ) -> (Result<PushResponse, Failure>, &'static str) {
        match self.push_on_socket(request).await {
            Some(answer) => (answer, "on the socket"),
            None => (self.post_json("/sync/push", request).await, "over HTTP"),
        }
    }

    /// `None`: not answered on the socket (none open, offline, it closed or went quiet,
    /// or the server takes pushes over HTTP only): the caller sends it over HTTP, which is
    /// safe even if the socket's copy was applied (mutation ids make a push
    /// idempotent).
    async fn push_on_socket(
        &self,
        request: &sync::protocol::push::PushRequest,
    ) -> Option<Result<PushResponse, Failure>> {
        use futures_util::future::{Either, select};
        use sync::protocol::socket_push::{PUSH_NOT_ON_SOCKET, SOCKET_PUSH_TYPE, SocketPush};
        // Offline as the browser says: an open socket may not have noticed yet (and a
        // browser's offline mode leaves open sockets alone), HTTP fails at once.
        if !self.pushes_on_socket.get() || !self.online.get() {
            return None;
        }
        let out = self.socket_out.borrow().clone()?;
        let token = self.token.borrow().clone();
        let key = self.client_key.borrow().clone();
        let authorization = format!("Bearer {token}");
        let id = self.last_socket_push.get() + 1;
        self.last_socket_push.set(id);
        let message = SocketPush {
            kind: SOCKET_PUSH_TYPE,
            id,
            authorization: Some(&authorization),
            client_key: &key,
            request,
        };
        let text = serde_json::to_string(&message).ok()?;
        let (answered, answer) = futures_channel::oneshot::channel();
        self.socket_answers.borrow_mut().insert(id, answered);
        if out.unbounded_send(text).is_err() {
            self.socket_answers.borrow_mut().remove(&id);
            return None;
        }
        match select(answer, Box::pin(sleep(SOCKET_PUSH_TIMEOUT_MS))).await {
            Either::Left((Ok((status, body)), _)) => {
                if status == 501 && body.contains(PUSH_NOT_ON_SOCKET) {
                    self.pushes_on_socket.set(false);
                    return None;
                }
                Some(self.read_answer(status, &body, &token))
            }
            // The socket closed before answering.
            Either::Left((Err(_), _)) => None,
            Either::Right(_) => {
                self.socket_answers.borrow_mut().remove(&id);
                None
            }
        }
    }

    /// What an answer says, over HTTP or on the socket: the value, or the failure
    /// the sync loops act on.
    fn read_answer<T: serde::de::DeserializeOwned>(
        &self,
        status: u16,
        text: &str,
        token: &str,
    ) -> Result<T, Failure> {
        let not_ready = Failure::server_not_ready(status, text);
        if *self.server_not_ready.borrow() != not_ready {
            *self.server_not_ready.borrow_mut() = not_ready;
            self.post_status();
        }
        if (200..300).contains(&status) {
            return serde_json::from_str(text).map_err(|e| Failure::Fatal(format!("unreadable answer: {e}")));
        }
        match Failure::from_status(status, text) {
            // Sent with a token that has been renewed since: just send it again.
            Failure::NeedsAuth(reason) if *self.token.borrow() != token => {
                Err(Failure::Unavailable(format!("signed in again; retrying ({reason})")))
            }
            failure => Err(failure),
        }
    }
}

/// Runs the SQLite Web Worker for the app `app` with its sync `model`. Call it once,
/// from the app's worker entry, when its wasm bundle is loaded in a dedicated worker.
pub fn start_db_worker(model: SyncModel, app: AppName) {
    console_error_panic_hook::set_once();
    let origin = scope().location().origin();
    let channel = BroadcastChannel::new(&app.tabs_channel()).ok();
    let session_id = crate::new_id(sync::ids::SESSION);
    let runtime = Rc::new(Runtime {
        model,
        app,
        channel,
        tabs: RefCell::new(Tabs::new(crate::new_id("tab"))),
        store: RefCell::new(None),
        client_key: RefCell::new(String::new()),
        storage: Cell::new(Storage::Memory),
        token: RefCell::new(String::new()),
        syncing: Cell::new(false),
        driver: RefCell::new(SyncDriver::new(session_id.clone())),
        session_id,
        origin,
        pushing: Cell::new(false),
        push_again: Cell::new(false),
        pulling: Cell::new(false),
        pull_again: Cell::new(false),
        online: Cell::new(true),
        needs_auth: Cell::new(false),
        wake: Cell::new(0),
        last_error: RefCell::new(None),
        server_not_ready: RefCell::new(None),
        inspector: RefCell::new(Inspector::default()),
        socket_out: RefCell::new(None),
        socket_answers: RefCell::new(BTreeMap::new()),
        last_socket_push: Cell::new(0),
        pushes_on_socket: Cell::new(true),
        queries: RefCell::new(BTreeMap::new()),
        uses: RefCell::new(QueryUses::new(crate::bridge::QUERY_TTL_MS)),
        filling: RefCell::new(BTreeSet::new()),
    });

    let from_page = runtime.clone();
    let on_page = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
        let Some(text) = event.data().as_string() else { return };
        let Ok(message) = serde_json::from_str::<ToWorker>(&text) else { return };
        on_page_request(&from_page, message);
    });
    scope().set_onmessage(Some(on_page.as_ref().unchecked_ref()));
    // The worker lives as long as the page: the handlers must too.
    on_page.forget();

    if let Some(channel) = &runtime.channel {
        let from_tabs = runtime.clone();
        let on_tab = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
            let Some(text) = event.data().as_string() else { return };
            let Ok(message) = serde_json::from_str::<TabMessage>(&text) else { return };
            on_tab_message(&from_tabs, message);
        });
        channel.set_onmessage(Some(on_tab.as_ref().unchecked_ref()));
        on_tab.forget();
    }

    let waker = runtime.clone();
    let on_online = Closure::<dyn FnMut()>::new(move || waker.wake.set(waker.wake.get().wrapping_add(1)));
    scope().set_ononline(Some(on_online.as_ref().unchecked_ref()));
    on_online.forget();

    if !request_leadership(&runtime) {
        // No Web Locks here: act alone (a second tab then falls back to memory).
        wasm_bindgen_futures::spawn_local(become_leader(runtime));
    }
    post(&FromWorker::Ready);
}

/// Asks for the leader lock; the callback runs when this tab gets it and holds it
/// until the worker ends (its promise never settles). False: no Web Locks API.
fn request_leadership(runtime: &Rc<Runtime>) -> bool {
    let navigator = scope().navigator();
    let Ok(locks) = js_sys::Reflect::get(&navigator, &"locks".into()) else { return false };
    if locks.is_undefined() || locks.is_null() {
        return false;
    }
    let Ok(request) = js_sys::Reflect::get(&locks, &"request".into()) else { return false };
    let Ok(request) = request.dyn_into::<js_sys::Function>() else { return false };
    let name = runtime.app.leader_lock();
    let runtime = runtime.clone();
    let on_granted = Closure::once_into_js(move |_lock: JsValue| -> js_sys::Promise {
        wasm_bindgen_futures::spawn_local(become_leader(runtime));
        js_sys::Promise::new(&mut |_, _| {})
    });
    request.call2(&locks, &name.into(), &on_granted).is_ok()
}

/// This tab now holds the lock: open the database, tell the others, and serve what
/// this page asked while it followed.
async fn become_leader(runtime: Rc<Runtime>) {
    let role = runtime.tabs.borrow_mut().become_leader();
    carry_out(&runtime, vec![role]);
    if let Err(error) = open_store(&runtime).await {
        leptos::logging::error!("local database: {error}");
    }
    let token = runtime.tabs.borrow().page_token().map(str::to_string);
    if let Some(token) = token {
        *runtime.token.borrow_mut() = token;
        start_sync(&runtime);
    }
    // Tell the other tabs (they send again what they wait for), then serve what this
    // page asked while it followed.
    let announced = runtime.tabs.borrow_mut().announce();
    carry_out(&runtime, announced);
    // Every page re-runs its queries against this store (and so re-subscribes here).
    runtime.emit(FromWorker::Changed {
        collections: Vec::new(),
        records: None,
        sent_at: None,
        poke_timing: None,
    });
}

/// Does what the tabs' rules (`crate::tabs`) said.
fn carry_out(runtime: &Rc<Runtime>, actions: Vec<TabAction>) {
    for action in actions {
        match action {
            TabAction::Serve { id, request, for_tab: None } => serve_page(runtime, id, request),
            TabAction::Serve { id, request, for_tab: Some(tab) } => {
                let runtime = runtime.clone();
                wasm_bindgen_futures::spawn_local(async move {
                    let result = handle(&runtime, request).await;
                    runtime.broadcast(&TabMessage::Reply { tab, id, result });
                });
            }
            TabAction::Broadcast(message) => runtime.broadcast(&message),
            TabAction::Post(message) => post(&message),
        }
    }
}

/// Opens OPFS, retrying briefly: a previous leader's file handles may still be
/// closing. Falls back to memory when OPFS is unavailable.
async fn open_store(runtime: &Rc<Runtime>) -> Result<(), String> {
    const ATTEMPTS: u32 = 20;
    let mut opened = None;
    for attempt in 0..ATTEMPTS {
        match crate::opfs::open_opfs(&runtime.app.opfs_directory(), DATABASE_FILE).await {
            Ok(connection) => {
                opened = Some((connection, Storage::Opfs));
                break;
            }
            Err(error) if attempt + 1 == ATTEMPTS => {
                leptos::logging::warn!("local database in memory: {error}");
            }
            Err(_) => sleep(100).await,
        }
    }
    let (connection, storage) = match opened {
        Some(opened) => opened,
        None => (crate::opfs::open_in_memory().map_err(|e| e.to_string())?, Storage::Memory),
    };
    let (mut store, key) = LocalStore::open_keyed(connection, runtime.model.clone(), new_client_key)
        .map_err(|e| e.to_string())?;
    // The app's model changed since this database was built: queued writes the new
    // model refuses were answered as rejected. Say so; the rest go out as usual.
    let refused = store.take_upgrade_rejections();
    if let Some((_, outcome)) = refused.first() {
        let reason = match outcome {
            sync::protocol::push::MutationOutcome::Rejected { reason } => reason.clone(),
            sync::protocol::push::MutationOutcome::Confirmed { .. } => String::new(),
        };
        *runtime.last_error.borrow_mut() =
            Some(format!("{} queued write(s) dropped: {reason}", refused.len()));
    }
    for (mutation_id, outcome) in refused {
        runtime.emit(FromWorker::Resolved { mutation_id, outcome, upstream_ms: None });
    }
    *runtime.client_key.borrow_mut() = key;
    *runtime.store.borrow_mut() = Some(store);
    runtime.storage.set(storage);
    Ok(())
}

/// A new client key: 32 bytes from `crypto.getRandomValues`, as 64 hex digits.
fn new_client_key() -> String {
    let mut bytes = [0u8; 32];
    if getrandom::fill(&mut bytes).is_err() {
        // Web Crypto is missing only outside a secure context (where OPFS is missing
        // too): the best randomness left is the engine's generator.
        for byte in &mut bytes {
            *byte = (js_sys::Math::random() * 256.0) as u8;
        }
    }
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn on_page_request(runtime: &Rc<Runtime>, message: ToWorker) {
    let actions = runtime.tabs.borrow_mut().from_page(message.id, message.request);
    carry_out(runtime, actions);
}

/// Handles this page's request `id` here (the leader's own page) and replies to it.
fn serve_page(runtime: &Rc<Runtime>, id: u32, request: Request) {
    let runtime = runtime.clone();
    wasm_bindgen_futures::spawn_local(async move {
        let result = handle(&runtime, request).await;
        post(&FromWorker::Reply { id, result });
    });
}

fn on_tab_message(runtime: &Rc<Runtime>, message: TabMessage) {
    let actions = runtime.tabs.borrow_mut().from_tab(message);
    carry_out(runtime, actions);
}

async fn handle(runtime: &Rc<Runtime>, request: Request) -> Result<Reply, String> {
    match request {
        Request::Start { token, query_ttl_ms } => {
            wait_until_open(runtime).await?;
            if let Some(ttl) = query_ttl_ms {
                runtime.uses.borrow_mut().set_default_ttl(ttl);
            }
            let renewed = *runtime.token.borrow() != token;
            *runtime.token.borrow_mut() = token;
            if renewed && runtime.needs_auth.replace(false) {
                runtime.event(EventKind::SignIn, None, "signed in again: waiting requests go");
                // Signed in again: what waited for it goes now.
                *runtime.last_error.borrow_mut() = None;
                runtime.wake.set(runtime.wake.get().wrapping_add(1));
                spawn_pull(runtime);
            }
            // A new sign-in may be allowed what the last one was not.
            let had_refusals = runtime.driver.borrow().has_refusals();
            runtime.driver.borrow_mut().signed_in();
            if had_refusals {
                runtime.emit(FromWorker::Changed {
                    collections: Vec::new(),
                    records: None,
                    sent_at: None,
                    poke_timing: None,
                });
            }
            start_sync(runtime);
            Ok(Reply::Started { client_id: runtime.client_id()?, storage: runtime.storage.get() })
        }
        Request::Query { name, args, window, holder, ttl_ms } => {
            wait_until_open(runtime).await?;
            query(runtime, name, args, window, holder, ttl_ms)
        }
        Request::Release { holder } => {
            runtime.uses.borrow_mut().released(&holder, now_ms());
            Ok(Reply::Noted)
        }
        Request::Mutate { name, args, mutation_id, record_id, now_ms: at } => {
            wait_until_open(runtime).await?;
            mutate(runtime, name, args, mutation_id, record_id, at)
        }
        Request::AskAgain => {
            if runtime.driver.borrow().has_refusals() {
                runtime.driver.borrow_mut().signed_in();
                // Every view reads its query again, and a refused one is fetched anew.
                runtime.emit(FromWorker::Changed {
                    collections: Vec::new(),
                    records: None,
                    sent_at: None,
                    poke_timing: None,
                });
            }
            Ok(Reply::Asking)
        }
        Request::Network { online: false } => {
            runtime.went_offline();
            Ok(Reply::Noted)
        }
        Request::Inspect { tab, filter, leader } => {
            wait_until_open(runtime).await?;
            let tab = Tab::from_id(&tab).ok_or_else(|| format!("no devtools tab `{tab}`"))?;
            let inspection = inspect(runtime)?;
            Ok(Reply::Html { html: panel::content(tab, &inspection, leader, &filter) })
        }
        Request::Sql { sql, run } => {
            wait_until_open(runtime).await?;
            let html = runtime.with_store(|store| {
                Ok(match store.console(&sql) {
                    Ok(answer) => panel::sql_rows(&answer.columns, &answer.rows, answer.truncated, run),
                    Err(refused) => panel::sql_error(&refused.to_string(), run),
                })
            })?;
            Ok(Reply::Html { html })
        }
        Request::Network { online: true } => {
            // Back: waiting retries go at once, and a pull catches up on what the
            // socket may have missed.
            runtime.wake.set(runtime.wake.get().wrapping_add(1));
            spawn_pull(runtime);
            spawn_push(runtime);
            runtime.went_online();
            Ok(Reply::Noted)
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

/// Starts the socket and the push loop, once.
fn start_sync(runtime: &Rc<Runtime>) {
    if runtime.syncing.replace(true) {
        runtime.post_status();
        return;
    }
    let socket = runtime.clone();
    wasm_bindgen_futures::spawn_local(async move { keep_socket(socket).await });
    let evictor = runtime.clone();
    wasm_bindgen_futures::spawn_local(async move { evict_loop(evictor).await });
    // Whatever was queued before a reload goes out now.
    spawn_push(runtime);
    runtime.post_status();
}

fn query(
    runtime: &Rc<Runtime>,
    name: String,
    args: Value,
    window: Option<u32>,
    holder: Option<String>,
    ttl_ms: Option<u64>,
) -> Result<Reply, String> {
    let (validated, read, pending) = runtime.with_store(|store| {
        let mut validated = store.model().validate_query(&name, &args).map_err(|e| e.to_string())?;
        if let Some(size) = sync::window::window_size(&validated.select, window) {
            validated.select = sync::window::sized(&validated.select, size);
        }
        let read = store.query_window(&validated.select).map_err(|e| e.to_string())?;
        let pending = store.pending_records(&validated.select.collection).map_err(|e| e.to_string())?;
        Ok((validated, read, pending))
    })?;
    let topic = validated.topic.to_string();
    runtime.uses.borrow_mut().asked(&topic, holder.as_deref(), ttl_ms, now_ms());
    runtime.queries.borrow_mut().insert(topic.clone(), validated.clone());
    let synced = runtime.driver.borrow().is_synced(&topic);
    let error = runtime.driver.borrow().denied(&topic).map(str::to_string);
    let is_new = runtime.driver.borrow_mut().subscribe(&validated);
    if is_new {
        let runtime = runtime.clone();
        wasm_bindgen_futures::spawn_local(async move { fetch_snapshot(&runtime, validated).await });
    } else if synced && !read.covered {
        // A window short of its size (widened, or rows left it): the next page.
        let runtime = runtime.clone();
        wasm_bindgen_futures::spawn_local(async move { fill_window(&runtime, validated).await });
    }
    Ok(Reply::Rows { rows: read.rows, pending, synced, error, more: read.more })
}

/// Fetches the page after a synced window's covered part, until it holds the window
/// (or reaches the end), then has the views read it again.
async fn fill_window(runtime: &Rc<Runtime>, query: ValidatedQuery) {
    let topic = query.topic.to_string();
    if !runtime.filling.borrow_mut().insert(topic.clone()) {
        return;
    }
    let started = now_ms();
    let fetched = fetch_window_page(runtime, &query).await;
    runtime.filling.borrow_mut().remove(&topic);
    let collection = query.select.collection.clone();
    let changed = FromWorker::Changed {
        collections: vec![collection],
        records: None,
        sent_at: None,
        poke_timing: None,
    };
    match fetched {
        Ok(rows) => {
            runtime.event(
                EventKind::Snapshot,
                Some(now_ms() - started),
                format!("{topic}: {rows} more rows for its window"),
            );
            runtime.inspector.borrow_mut().refreshed([topic.as_str()], RefreshKind::Snapshot, epoch_ms());
            if rows > 0 {
                runtime.emit(changed);
            }
        }
        Err(Failure::Fatal(reason)) => {
            runtime.event(
                EventKind::Snapshot,
                Some(now_ms() - started),
                format!("{topic}: refused: {reason}"),
            );
            runtime.driver.borrow_mut().refused(&topic, reason);
            runtime.emit(changed);
        }
        Err(failure) => {
            // Not an answer: asked again after a pause (the views' next read asks).
            let reason = failure.reason().to_string();
            runtime.event(
                EventKind::Snapshot,
                Some(now_ms() - started),
                format!("{topic}: window not filled ({reason})"),
            );
            if matches!(failure, Failure::Network(_)) {
                runtime.went_offline();
            }
            backoff_sleep(runtime, SNAPSHOT_RETRY_MS).await;
            runtime.emit(changed);
        }
    }
}

/// The page after the window's covered part, installed. Returns how many rows it had.
async fn fetch_window_page(runtime: &Rc<Runtime>, query: &ValidatedQuery) -> Result<usize, Failure> {
    let planned = runtime.with_store(|store| {
        runtime.driver.borrow().window_page_request(store, query).map_err(|e| e.to_string())
    });
    let Some((request, after)) = planned.map_err(Failure::Fatal)? else { return Ok(0) };
    let answer = fetch_all_pages(runtime, &request).await?;
    runtime
        .with_store(|store| {
            runtime
                .driver
                .borrow_mut()
                .on_window_page(store, query, after, &answer.rows, answer.cursor, answer.complete)
                .map_err(|e| e.to_string())
        })
        .map_err(Failure::Fatal)?;
    Ok(answer.rows.len())
}

/// Every so often, drops the queries no view has used for their time to live: they
/// leave the pulls, and their rows no other live query shows leave the store.
async fn evict_loop(runtime: Rc<Runtime>) {
    runtime.uses.borrow_mut().syncing(now_ms());
    loop {
        // At most a second late (the time to live may change once the page starts).
        let tick = (runtime.uses.borrow().default_ttl() / 4).clamp(250, 1_000);
        sleep(u32::try_from(tick).unwrap_or(1_000)).await;
        evict_unused(&runtime);
    }
}

/// Stops syncing the queries whose time to live ran out and evicts what no query
/// still in use shows (`crate::uses` decides).
fn evict_unused(runtime: &Rc<Runtime>) {
    let expiry = {
        let queries = runtime.queries.borrow();
        runtime.uses.borrow_mut().expire(queries.keys().map(String::as_str), now_ms())
    };
    let expired = expiry.expired;
    if expired.is_empty() && !expiry.sweep {
        return;
    }
    for topic in &expired {
        runtime.driver.borrow_mut().stop_reading(topic);
        runtime.queries.borrow_mut().remove(topic);
    }
    // Their sessions stop poking them (now, or once the socket is open again).
    send_unwatch(runtime);
    let live: Vec<Select> = runtime.queries.borrow().values().map(|query| query.select.clone()).collect();
    let started = now_ms();
    match runtime.with_store(|store| store.evict(&live).map_err(|e| e.to_string())) {
        Ok(eviction) => {
            runtime.event(
                EventKind::Snapshot,
                Some(now_ms() - started),
                format!(
                    "evicted {} unused quer{} ({} rows); {} windows cut back",
                    expired.len(),
                    if expired.len() == 1 { "y" } else { "ies" },
                    eviction.touched.len(),
                    eviction.windows_cut
                ),
            );
            report(runtime, &eviction.touched, RefreshKind::Snapshot, None, None);
        }
        Err(error) => leptos::logging::warn!("eviction: {error}"),
    }
}

/// A query's whole answer, page after page: every page's rows, at the first page's
/// cursor (a pull from it hands out whatever changed while the later pages were read).
async fn fetch_all_pages(runtime: &Rc<Runtime>, request: &QueryRequest) -> Result<QueryResponse, Failure> {
    let mut answer = runtime.post_json::<QueryResponse>("/sync/query", request).await?;
    while let Some(after) = answer.more.take() {
        let next = QueryRequest { after: Some(after), ..request.clone() };
        let mut page = runtime.post_json::<QueryResponse>("/sync/query", &next).await?;
        answer.rows.append(&mut page.rows);
        answer.more = page.more;
        answer.complete = page.complete;
    }
    Ok(answer)
}

/// First sight of a query: read it from the server, install it, then pull.
async fn fetch_snapshot(runtime: &Rc<Runtime>, validated: sync::model::ValidatedQuery) {
    /// A snapshot older than the store's cursor is fetched again (the head only
    /// grows, so the next one is new enough); a few tries are plenty.
    const STALE_TRIES: u32 = 5;
    let Ok(client_id) = runtime.client_id() else { return };
    let request = QueryRequest {
        protocol_version: PROTOCOL_VERSION,
        client_id,
        session_id: runtime.session_id.clone(),
        name: validated.name.clone(),
        args: validated.args.clone(),
        after: None,
        window: validated.select.limit,
    };
    let started = now_ms();
    let mut answer = fetch_all_pages(runtime, &request).await;
    for _ in 1..STALE_TRIES {
        let Ok(snapshot) = &answer else { break };
        let held = runtime.with_store(|store| store.cursor().map_err(|e| e.to_string())).unwrap_or_default();
        if snapshot.cursor >= held {
            break;
        }
        answer = fetch_all_pages(runtime, &request).await;
    }
    match answer {
        Ok(answer) => {
            // One local transaction: the rows, and (for a store that has pulled
            // nothing yet) the cursor they are exact at, so no pull re-reads them.
            let installed = runtime.with_store(|store| {
                runtime
                    .driver
                    .borrow_mut()
                    .on_answer(store, &validated, &answer.rows, answer.cursor, answer.complete)
                    .map_err(|e| e.to_string())
            });
            match installed {
                Ok(Snapshot::Installed(_)) => {
                    runtime.event(
                        EventKind::Snapshot,
                        Some(now_ms() - started),
                        format!(
                            "{}: {} rows at cursor {}",
                            validated.topic,
                            answer.rows.len(),
                            answer.cursor.0
                        ),
                    );
                    {
                        let mut inspector = runtime.inspector.borrow_mut();
                        inspector.saw_head(answer.cursor.0);
                        inspector.refreshed([validated.topic.as_str()], RefreshKind::Snapshot, epoch_ms());
                    }
                    runtime.emit(FromWorker::Changed {
                        collections: vec![validated.select.collection.clone()],
                        records: None,
                        sent_at: None,
                        poke_timing: None,
                    });
                }
                Ok(Snapshot::NotWanted) => {}
                Ok(Snapshot::Stale) => {
                    // Older than what the store pulled through (it raced a pull):
                    // fetched again, after a pause (the head only grows).
                    let runtime = runtime.clone();
                    wasm_bindgen_futures::spawn_local(async move {
                        backoff_sleep(&runtime, SNAPSHOT_RETRY_MS).await;
                        fetch_snapshot(&runtime, validated).await;
                    });
                    return;
                }
                Err(error) => leptos::logging::warn!("snapshot of {}: {error}", validated.name),
            }
            runtime.online.set(true);
        }
        Err(
            failure @ (Failure::Network(_)
            | Failure::Unavailable(_)
            | Failure::NeedsAuth(_)
            | Failure::Resync(_)),
        ) => {
            if matches!(failure, Failure::NeedsAuth(_)) {
                runtime.needs_auth.set(true);
                runtime.post_status();
            }
            if matches!(failure, Failure::Network(_)) {
                runtime.went_offline();
            }
            let reason = failure.reason().to_string();
            runtime.event(
                EventKind::Snapshot,
                Some(now_ms() - started),
                format!("{}: not fetched ({reason}); tried again", validated.topic),
            );
            // Not an answer: fetch it again later. Forgetting the subscription makes
            // the query's next run (the Changed below, after a pause) fetch it anew.
            *runtime.last_error.borrow_mut() = Some(reason);
            let runtime = runtime.clone();
            let (topic, collection) = (validated.topic.to_string(), validated.select.collection.clone());
            wasm_bindgen_futures::spawn_local(async move {
                if runtime.needs_auth.get() {
                    wait_for_sign_in(&runtime).await;
                } else {
                    backoff_sleep(&runtime, SNAPSHOT_RETRY_MS).await;
                }
                runtime.driver.borrow_mut().forget(&topic);
                runtime.emit(FromWorker::Changed {
                    collections: vec![collection],
                    records: None,
                    sent_at: None,
                    poke_timing: None,
                });
            });
        }
        Err(Failure::Fatal(reason)) => {
            // The server refused this query (e.g. its callback said no): show it on
            // this query, and leave it out of pulls, which would fail whole.
            runtime.event(
                EventKind::Snapshot,
                Some(now_ms() - started),
                format!("{}: refused: {reason}", validated.topic),
            );
            runtime.driver.borrow_mut().refused(validated.topic.as_str(), reason);
            runtime.emit(FromWorker::Changed {
                collections: vec![validated.select.collection.clone()],
                records: None,
                sent_at: None,
                poke_timing: None,
            });
        }
    }
    spawn_pull(runtime);
}

fn mutate(
    runtime: &Rc<Runtime>,
    name: String,
    args: Value,
    mutation_id: String,
    record_id: String,
    at: Option<i64>,
) -> Result<Reply, String> {
    let started = now_ms();
    let applied = runtime.with_store(|store| {
        let ctx = MutationContext {
            client_id: store.client_id().to_string(),
            record_id: record_id.clone(),
            now_ms: at.unwrap_or_else(|| js_sys::Date::now() as i64),
        };
        match store.mutate(&mutation_id, &name, &args, &ctx) {
            Ok((_, touched)) => {
                runtime.driver.borrow_mut().written(&mutation_id);
                Ok(Ok(touched))
            }
            // Sent twice (a follower re-sending to a new leader): answer, do not re-apply.
            Err(sync_store::StoreError::Duplicate { state, .. }) => Ok(Err(state)),
            Err(error) => Err(error.to_string()),
        }
    })?;
    let touched = match applied {
        Ok(touched) => touched,
        Err(MutationState::Pending { record_id }) => {
            return Ok(Reply::Mutated { mutation_id, record_id, local_write_ms: 0.0 });
        }
        Err(MutationState::Resolved { record_id, outcome }) => {
            runtime.emit(FromWorker::Resolved {
                mutation_id: mutation_id.clone(),
                outcome,
                upstream_ms: None,
            });
            return Ok(Reply::Mutated { mutation_id, record_id, local_write_ms: 0.0 });
        }
    };
    let local_write_ms = now_ms() - started;
    report(runtime, &BTreeSet::from([touched]), RefreshKind::LocalWrite, None, None);
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
        let Ok(next) = runtime
            .with_store(|store| runtime.driver.borrow_mut().push_request(store).map_err(|e| e.to_string()))
        else {
            return;
        };
        let Some(request) = next else {
            if runtime.push_again.get() {
                continue;
            }
            return;
        };
        let sent = now_ms();
        runtime.inspector.borrow_mut().sending(request.mutations.iter().map(|mutation| mutation.id.clone()));
        let (answer, via) = runtime.push(&request).await;
        match answer {
            Ok(answer) => {
                let upstream_ms = now_ms() - sent;
                note_pushed(runtime, &request, &answer, upstream_ms, via);
                attempt = 0;
                runtime.online.set(true);
                *runtime.last_error.borrow_mut() = None;
                let resolved = runtime.with_store(|store| {
                    runtime.driver.borrow_mut().on_pushed(store, &answer).map_err(|e| e.to_string())
                });
                if let Ok(touched) = resolved {
                    report(runtime, &touched, RefreshKind::PushAnswer, None, None);
                }
                for sync::protocol::push::MutationResult { id: mutation_id, outcome } in answer.results {
                    runtime.emit(FromWorker::Resolved {
                        mutation_id,
                        outcome,
                        upstream_ms: Some(upstream_ms),
                    });
                }
                runtime.post_status();
            }
            Err(failure) => {
                // The driver decides (`SyncDriver::on_push_failed`): nothing was
                // decided upstream, so the writes stay in the outbox, in order.
                let next = runtime
                    .with_store(|store| {
                        Ok(runtime.driver.borrow_mut().on_push_failed(store, &failure, attempt))
                    })
                    .unwrap_or(AfterFailure::Stop);
                if matches!(failure, Failure::Network(_)) {
                    runtime.online.set(false);
                }
                *runtime.last_error.borrow_mut() = Some(failure.reason().to_string());
                let failed_ms = now_ms() - sent;
                match next {
                    AfterFailure::Retry { attempt: tried } => {
                        let pause = backoff_ms(tried);
                        runtime.event(
                            EventKind::Push,
                            Some(failed_ms),
                            format!(
                                "{} not sent ({}); try {} in {:.1} s",
                                crate::inspect::count(request.mutations.len(), "write"),
                                failure.reason(),
                                tried + 2,
                                f64::from(pause) / 1000.0
                            ),
                        );
                        runtime.inspector.borrow_mut().retrying(
                            tried + 1,
                            epoch_ms() + f64::from(pause),
                            failure.reason(),
                        );
                        runtime.post_status();
                        backoff_sleep(runtime, pause).await;
                        attempt = tried + 1;
                    }
                    AfterFailure::WaitForSignIn => {
                        runtime.event(
                            EventKind::SignIn,
                            Some(failed_ms),
                            format!("push paused: {}", failure.reason()),
                        );
                        runtime.inspector.borrow_mut().sent();
                        runtime.needs_auth.set(true);
                        runtime.post_status();
                        wait_for_sign_in(runtime).await;
                    }
                    AfterFailure::Resync | AfterFailure::Stop => {
                        runtime.event(
                            EventKind::Push,
                            Some(failed_ms),
                            format!("push stopped: {}", failure.reason()),
                        );
                        runtime.inspector.borrow_mut().sent();
                        runtime.post_status();
                        return;
                    }
                }
            }
        }
    }
}

/// Waits until the page hands over a new token ([`Request::Start`] clears the flag).
async fn wait_for_sign_in(runtime: &Rc<Runtime>) {
    while runtime.needs_auth.get() {
        backoff_sleep(runtime, 60_000).await;
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
    let mut attempt = 0;
    loop {
        // Until a snapshot is installed there is nothing to pull onto (and during a
        // resync a pull from the forgotten cursor would only be told to resync again).
        let Ok(Some(request)) = runtime
            .with_store(|store| runtime.driver.borrow().pull_request(store).map_err(|e| e.to_string()))
        else {
            return;
        };
        let sent = now_ms();
        match runtime.post_json::<PullResponse>("/sync/pull", &request).await {
            Ok(page) => {
                runtime.online.set(true);
                runtime.event(
                    EventKind::Pull,
                    Some(now_ms() - sent),
                    format!(
                        "{}, {}, cursor {} -> {}{}",
                        crate::inspect::count(page.changes.len(), "change"),
                        crate::inspect::count(request.subscriptions.len(), "query"),
                        request.cursor.0,
                        page.cursor.0,
                        if page.has_more { ", more" } else { "" }
                    ),
                );
                {
                    let mut inspector = runtime.inspector.borrow_mut();
                    inspector.pulled(epoch_ms());
                    inspector.saw_head(page.cursor.0);
                }
                let applied = runtime.with_store(|store| {
                    runtime.driver.borrow_mut().on_pulled(store, &request, &page).map_err(|e| e.to_string())
                });
                if let Ok((touched, _)) = &applied {
                    report(runtime, touched, RefreshKind::Pull, None, None);
                }
                // The app refused some of them: their queries show why (the driver
                // left them out of pulls); the others sync on.
                let refused: Vec<String> = page
                    .refused
                    .iter()
                    .filter_map(|refusal| runtime.model.validate_query(&refusal.name, &refusal.args).ok())
                    .map(|query| query.select.collection)
                    .collect();
                if let Some(first) = page.refused.first() {
                    *runtime.last_error.borrow_mut() = Some(first.reason.clone());
                    runtime.emit(FromWorker::Changed {
                        collections: refused,
                        records: None,
                        sent_at: None,
                        poke_timing: None,
                    });
                }
                attempt = 0;
                if !page.has_more {
                    return;
                }
            }
            Err(Failure::Resync(reason)) => {
                leptos::logging::warn!("resync: {reason}");
                runtime.event(EventKind::Resync, Some(now_ms() - sent), reason.clone());
                resync(runtime);
                return;
            }
            Err(failure @ (Failure::Network(_) | Failure::Unavailable(_))) => {
                // A pull that did not get through is tried again: the session skips
                // pokes the client has pulled through, so none may be lost.
                if matches!(failure, Failure::Network(_)) {
                    runtime.online.set(false);
                }
                runtime.event(
                    EventKind::Pull,
                    Some(now_ms() - sent),
                    format!("failed: {}; tried again", failure.reason()),
                );
                *runtime.last_error.borrow_mut() = Some(failure.reason().to_string());
                backoff_sleep(runtime, backoff_ms(attempt)).await;
                attempt += 1;
            }
            Err(Failure::Fatal(reason)) => {
                // Refused whole (a server that does not answer per subscription):
                // each query is fetched on its own, which finds the refused ones and
                // leaves them out of pulls; the others sync on (`SyncDriver::recheck`).
                runtime.event(EventKind::Pull, Some(now_ms() - sent), format!("refused: {reason}"));
                *runtime.last_error.borrow_mut() = Some(reason);
                let queries = runtime.driver.borrow_mut().recheck();
                refetch(runtime, queries);
                return;
            }
            Err(failure) => {
                if matches!(failure, Failure::NeedsAuth(_)) {
                    runtime.needs_auth.set(true);
                    runtime.event(
                        EventKind::SignIn,
                        Some(now_ms() - sent),
                        format!("pull paused: {}", failure.reason()),
                    );
                }
                *runtime.last_error.borrow_mut() = Some(failure.reason().to_string());
                return;
            }
        }
    }
}

/// The server compacted changes this client would need: start again from the
/// queries' snapshots. The outbox stays (pending writes still show and still go out);
/// the cursor goes back to the start and the first snapshot sets it again.
fn resync(runtime: &Rc<Runtime>) {
    let forgotten =
        runtime.with_store(|store| runtime.driver.borrow_mut().resync(store).map_err(|e| e.to_string()));
    let subscriptions = match forgotten {
        Ok(subscriptions) => subscriptions,
        Err(error) => {
            leptos::logging::error!("resync: {error}");
            return;
        }
    };
    refetch(runtime, subscriptions);
}

/// Fetches these queries' snapshots again, each on its own.
fn refetch(runtime: &Rc<Runtime>, subscriptions: Vec<sync::protocol::pull::Subscription>) {
    for subscription in subscriptions {
        let Ok(mut validated) = runtime.model.validate_query(&subscription.name, &subscription.args) else {
            continue;
        };
        // A window is fetched at the size last asked for.
        if let Some(asked) = runtime.queries.borrow().get(validated.topic.as_str()) {
            validated.select = asked.select.clone();
        }
        let runtime = runtime.clone();
        wasm_bindgen_futures::spawn_local(async move { fetch_snapshot(&runtime, validated).await });
    }
}

/// Most records one change report carries; a bigger change (a first snapshot, a long
/// pull) makes the pages read their queries again instead.
const REPORTED_RECORDS: usize = 500;

/// Tells every page which records changed and how they look now, so their live
/// views follow without reading their queries again.
fn report(
    runtime: &Runtime,
    touched: &BTreeSet<Touched>,
    by: RefreshKind,
    sent_at: Option<f64>,
    poke_timing: Option<crate::bridge::PokeTiming>,
) {
    if touched.is_empty() {
        return;
    }
    let collections: BTreeSet<String> = touched.iter().map(|t| t.collection.clone()).collect();
    {
        let by_topic = runtime.queries.borrow();
        let topics = by_topic.iter().filter(|(_, query)| collections.contains(&query.select.collection));
        runtime.inspector.borrow_mut().refreshed(topics.map(|(topic, _)| topic.as_str()), by, epoch_ms());
    }
    let records = (touched.len() <= REPORTED_RECORDS)
        .then(|| runtime.with_store(|store| store.record_views(touched).map_err(|e| e.to_string())).ok())
        .flatten();
    runtime.emit(FromWorker::Changed {
        collections: collections.into_iter().collect(),
        records,
        sent_at,
        poke_timing,
    });
}

/// Keeps one WebSocket to the session open; pulls on every poke and on reconnect.
async fn keep_socket(runtime: Rc<Runtime>) {
    let mut attempt = 0;
    loop {
        let Ok(client_id) = runtime.client_id() else { return };
        // A one-time ticket, asked for with the key and the sign-in in headers: the
        // key never goes into a URL.
        let request = sync::protocol::ticket::TicketRequest {
            protocol_version: sync::protocol::PROTOCOL_VERSION,
            client_id,
            session_id: runtime.session_id.clone(),
        };
        let ticket =
            match runtime.post_json::<sync::protocol::ticket::TicketResponse>("/sync/ticket", &request).await
            {
                Ok(granted) => {
                    runtime.went_online();
                    Some(granted.ticket)
                }
                Err(Failure::Network(_)) => {
                    runtime.went_offline();
                    None
                }
                Err(Failure::NeedsAuth(_)) => {
                    runtime.needs_auth.set(true);
                    runtime.post_status();
                    wait_for_sign_in(&runtime).await;
                    continue;
                }
                Err(_) => None,
            };
        let url = ticket.map(|ticket| {
            format!(
                "{}/sync/socket?{}={ticket}",
                runtime.origin.replacen("http", "ws", 1),
                sync::protocol::ticket::TICKET_PARAM,
            )
        });
        if let Some(Ok(socket)) = url.map(|url| WebSocket::open(&url)) {
            use futures_util::SinkExt;
            use futures_util::future::{Either, select};
            runtime.event(EventKind::Socket, None, "socket opened: pull to catch up");
            let (mut sink, mut stream) = socket.split();
            let (out, mut outgoing) = futures_channel::mpsc::unbounded::<String>();
            *runtime.socket_out.borrow_mut() = Some(out);
            runtime.pushes_on_socket.set(true);
            // Connected (or connecting): catch up on what happened while away.
            spawn_pull(&runtime);
            spawn_push(&runtime);
            send_unwatch(&runtime);
            loop {
                let text = match select(stream.next(), outgoing.next()).await {
                    Either::Left((Some(Ok(Message::Text(text))), _)) => text,
                    Either::Left(_) => break,
                    Either::Right((Some(text), _)) => {
                        if sink.send(Message::Text(text)).await.is_err() {
                            break;
                        }
                        continue;
                    }
                    Either::Right((None, _)) => break,
                };
                let received_at = js_sys::Date::now();
                attempt = 0;
                let message = serde_json::from_str::<ServerMessage>(&text);
                if let Ok(ServerMessage::Pushed { id, status, body }) = message {
                    if let Some(answered) = runtime.socket_answers.borrow_mut().remove(&id) {
                        let _ = answered.send((status, body.to_string()));
                    }
                } else if let Ok(ServerMessage::Unwatched { topics }) = message {
                    // Read again meanwhile (the query's request and the socket are not
                    // ordered): a pull watches it again.
                    let read_again = runtime.driver.borrow().on_unwatched(&topics);
                    runtime.event(
                        EventKind::Socket,
                        None,
                        format!(
                            "session unwatched {} topic(s){}",
                            topics.len(),
                            if read_again { ": pull" } else { "" }
                        ),
                    );
                    if read_again {
                        spawn_pull(&runtime);
                    }
                } else if let Ok(ServerMessage::Poke { cursor, changes, topic, since }) = message {
                    // Changes that follow what this client holds on their topic are all
                    // it lacks there: applied, and no pull (`SyncDriver::on_poke`).
                    let handled = runtime.with_store(|store| {
                        let sent_at = sent_by_others(&changes, store.client_id());
                        runtime
                            .driver
                            .borrow_mut()
                            .on_poke(store, cursor, &changes, topic.as_deref(), since)
                            .map(|(touched, pull)| (touched, pull, sent_at))
                            .map_err(|e| e.to_string())
                    });
                    match handled {
                        Ok((touched, pull, sent_at)) => {
                            let timing =
                                crate::bridge::PokeTiming { received_at, stored_at: js_sys::Date::now() };
                            note_poke(&runtime, cursor.0, changes.len(), topic.as_deref(), pull);
                            report(&runtime, &touched, RefreshKind::Poke, sent_at, Some(timing));
                            if pull {
                                spawn_pull(&runtime);
                            }
                            // Poked for a topic no page reads: the session is told.
                            send_unwatch(&runtime);
                        }
                        Err(error) => {
                            runtime.event(EventKind::Poke, None, format!("not applied ({error}): pull"));
                            spawn_pull(&runtime);
                        }
                    }
                }
            }
            // Pushes waiting on this socket go over HTTP (their answers are dropped here).
            runtime.socket_out.borrow_mut().take();
            runtime.socket_answers.borrow_mut().clear();
        }
        runtime.event(EventKind::Socket, None, format!("socket closed; reconnect try {}", attempt + 1));
        backoff_sleep(&runtime, backoff_ms(attempt)).await;
        attempt += 1;
    }
}

/// Tells the session the topics this client stopped reading, when its socket is
/// open (otherwise they wait for the next one). One lost on a closing socket is sent
/// again at the next poke for it.
fn send_unwatch(runtime: &Rc<Runtime>) {
    let Some(out) = runtime.socket_out.borrow().clone() else { return };
    for unwatch in runtime.driver.borrow_mut().take_unwatch() {
        let Ok(text) = serde_json::to_string(&unwatch) else { continue };
        runtime.event(EventKind::Socket, None, format!("unwatch {} topic(s)", unwatch.topics.len()));
        let _ = out.unbounded_send(text);
    }
}

/// When the newest write among `changes` made by another client was made (ms since
/// the epoch, from its mutation id, a ULID of the writer's clock).
fn sent_by_others(changes: &[sync::Change], own_client: &str) -> Option<f64> {
    changes
        .iter()
        .filter(|change| change.client_id != own_client)
        .filter_map(|change| sync::ids::parse_id(sync::ids::OUTBOX, &change.mutation_id).ok())
        .map(|ulid| ulid.timestamp_ms() as f64)
        .reduce(f64::max)
}

fn note_poke(runtime: &Runtime, cursor: u64, changes: usize, topic: Option<&str>, pull: bool) {
    {
        let mut inspector = runtime.inspector.borrow_mut();
        inspector.poked(epoch_ms());
        inspector.saw_head(cursor);
    }
    let what = match (changes, pull) {
        (0, _) => "no rows: pull".to_string(),
        (n, false) => format!("{} carried, followed", crate::inspect::count(n, "change")),
        (n, true) => format!("{} carried, gap: pull", crate::inspect::count(n, "change")),
    };
    runtime.event(EventKind::Poke, None, format!("{} at {cursor}: {what}", topic.unwrap_or("(all)")));
}

/// A push came back: the timeline says what became of it; rejected writes stay in
/// the devtools' outbox view with their reason.
fn note_pushed(
    runtime: &Runtime,
    request: &sync::protocol::push::PushRequest,
    answer: &PushResponse,
    ms: f64,
    via: &str,
) {
    use sync::protocol::push::MutationOutcome;
    let mut inspector = runtime.inspector.borrow_mut();
    inspector.sent();
    inspector.saw_head(answer.cursor.0);
    let mut rejected = 0;
    for result in &answer.results {
        if let MutationOutcome::Rejected { reason } = &result.outcome {
            rejected += 1;
            if let Some(mutation) = request.mutations.iter().find(|mutation| mutation.id == result.id) {
                let write = Queued {
                    mutation_id: mutation.id.clone(),
                    name: mutation.name.clone(),
                    args: mutation.args.clone(),
                    record_id: mutation.record_id.clone(),
                };
                inspector.rejected(write, reason.clone());
            }
        }
    }
    inspector.record(
        epoch_ms(),
        EventKind::Push,
        Some(ms),
        format!(
            "{} {}: {} confirmed, {rejected} rejected, cursor {}",
            crate::inspect::count(request.mutations.len(), "write"),
            via,
            answer.results.len() - rejected,
            answer.cursor.0
        ),
    );
}

/// Everything the devtools show, read now.
fn inspect(runtime: &Runtime) -> Result<Inspection, String> {
    let subscribed: BTreeSet<String> = runtime.queries.borrow().keys().cloned().collect();
    runtime.inspector.borrow_mut().keep_topics(&subscribed);
    runtime.with_store(|store| {
        let cursor = store.cursor().map_err(|e| e.to_string())?;
        let inspector = runtime.inspector.borrow();
        let queued = store
            .outbox(crate::inspect::QUEUED_SHOWN)
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|pending| Queued {
                mutation_id: pending.id,
                name: pending.name,
                args: pending.args,
                record_id: pending.record_id,
            })
            .collect();
        let states = runtime.driver.borrow().queries(cursor);
        let synced_through = states
            .iter()
            .filter(|query| query.synced)
            .map(|query| query.cursor.0)
            .min()
            .unwrap_or(cursor.0)
            .max(cursor.0);
        let queries = states
            .into_iter()
            .map(|query| {
                let rows = store
                    .model()
                    .validate_query(&query.name, &query.args)
                    .ok()
                    .and_then(|validated| store.query(&validated.select).ok())
                    .map_or(0, |rows| rows.len() as u64);
                crate::inspect::QueryItem {
                    last_refresh: inspector.last_refresh(&query.topic),
                    topic: query.topic,
                    name: query.name,
                    args: query.args,
                    rows,
                    cursor: query.cursor.0,
                    synced: query.synced,
                    error: query.refused,
                }
            })
            .collect();
        let tables = store
            .table_counts()
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|(name, rows)| TableCount { name, rows })
            .collect();
        Ok(Inspection {
            at: epoch_ms(),
            client_id: store.client_id().to_string(),
            online: runtime.online.get(),
            needs_auth: runtime.needs_auth.get(),
            storage: runtime.storage.get(),
            schema_version: store.model().schema_version(),
            cursor: cursor.0,
            server_head: inspector.server_head().max(synced_through),
            synced_through,
            last_poke_at: inspector.last_poke_at(),
            last_pull_at: inspector.last_pull_at(),
            last_error: runtime.last_error.borrow().clone(),
            server_not_ready: runtime.server_not_ready.borrow().clone(),
            outbox: inspector.outbox(queued),
            queries,
            timeline: inspector.timeline(),
            tables,
        })
    })
}
