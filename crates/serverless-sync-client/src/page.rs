//! The page side: spawns the SQLite Web Worker and talks to it.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use futures_channel::oneshot;
use leptos::prelude::*;
use send_wrapper::SendWrapper;
use sync::protocol::push::MutationOutcome;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::Closure;
use web_sys::{MessageEvent, Worker, WorkerOptions, WorkerType};

use crate::bridge::{FromWorker, Reply, Request, Status, Storage, ToWorker};
use crate::live::LiveViews;

type Waiters<T> = RefCell<HashMap<String, oneshot::Sender<T>>>;

/// An app's way to renew the user's sign-in without asking: a fresh token, or `None`
/// when only the user can help (the app then asks them and calls [`SyncClient::start`]).
pub type RenewToken = Rc<dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<String>>>>>;

struct Inner {
    worker: Worker,
    ready: Cell<bool>,
    queued: RefCell<Vec<String>>,
    next_id: Cell<u32>,
    replies: RefCell<HashMap<u32, oneshot::Sender<Result<Reply, String>>>>,
    resolutions: Waiters<MutationOutcome>,
    /// Mutations this page issued and not yet saw answered (other tabs' answers are
    /// broadcast too: only ours are timed and kept).
    issued: RefCell<std::collections::HashSet<String>>,
    early: RefCell<HashMap<String, MutationOutcome>>,
    renew: RefCell<Option<RenewToken>>,
    /// The app's model: the page builds a write's operation itself to show it at once.
    model: sync::SyncModel,
    /// This client's id (from the worker, once started): mutators may write it.
    client_id: RefCell<Option<String>>,
    /// How long a query no view shows stays synced (`None`: the worker's default).
    query_ttl_ms: Cell<Option<u64>>,
    /// Names this page's views to the worker (`holder`s of queries).
    page_id: String,
    next_view: Cell<u64>,
    pub(crate) views: LiveViews,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
}

/// Handle to the SQLite Web Worker. Cheap to clone; provide it with `provide_context`.
#[derive(Clone)]
pub struct SyncClient {
    inner: SendWrapper<Rc<Inner>>,
    /// Bumped whenever the worker reports changed rows (live queries follow those
    /// reports themselves; this is for anything else that wants to know).
    pub changes: RwSignal<u64>,
    pub status: RwSignal<Option<Status>>,
    pub storage: RwSignal<Option<Storage>>,
    /// Last time (ms) the server took to answer a mutation.
    pub upstream_ms: RwSignal<Option<f64>>,
    /// True once the worker opened the database and started syncing.
    pub started: RwSignal<bool>,
    /// The server wants a new sign-in (the user's token is missing or expired): writes
    /// are kept and wait. Cleared by [`Self::start`] with a new token.
    pub needs_auth: RwSignal<bool>,
    /// Whether this tab's worker holds the database (`Some(true)`) or forwards to the
    /// tab that does; `None` until known.
    pub leader: RwSignal<Option<bool>>,
    pub metrics: RwSignal<crate::Metrics>,
    /// When the latest mutator call started (ms, `performance.now()`), until a live
    /// query shows its effect.
    pub(crate) update_started: RwSignal<Option<f64>>,
}

impl SyncClient {
    /// Spawns the worker from `script_url` (a module script), for the app's `model`
    /// (the same the worker runs: the page uses it to show writes before the worker
    /// stores them). Call [`Self::start`] once the user's token is known.
    pub fn spawn(script_url: &str, model: sync::SyncModel) -> Result<Self, String> {
        let options = WorkerOptions::new();
        options.set_type(WorkerType::Module);
        let (worker, sent_early) = match early_worker(script_url) {
            Some(early) => early,
            None => {
                (Worker::new_with_options(script_url, &options).map_err(|e| format!("{e:?}"))?, Vec::new())
            }
        };
        let changes = RwSignal::new(0u64);
        let status = RwSignal::new(None);
        let storage = RwSignal::new(None);
        let upstream_ms = RwSignal::new(None);
        let started = RwSignal::new(false);
        let metrics = RwSignal::new(crate::Metrics::default());
        let update_started = RwSignal::new(None);
        let leader = RwSignal::new(None);
        let needs_auth = RwSignal::new(false);
        let inner = Rc::new_cyclic(|weak: &std::rc::Weak<Inner>| {
            let weak = weak.clone();
            let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
                let Some(inner) = weak.upgrade() else { return };
                let Some(text) = event.data().as_string() else { return };
                let Ok(message) = serde_json::from_str::<FromWorker>(&text) else { return };
                match message {
                    FromWorker::Ready => {
                        inner.ready.set(true);
                        for queued in inner.queued.borrow_mut().drain(..) {
                            let _ = inner.worker.post_message(&queued.into());
                        }
                    }
                    FromWorker::Reply { id, result } => {
                        if let Ok(Reply::Started { storage: where_, .. }) = &result {
                            storage.set(Some(*where_));
                        }
                        if let Some(sender) = inner.replies.borrow_mut().remove(&id) {
                            let _ = sender.send(result);
                        }
                    }
                    FromWorker::Changed { collections, records, sent_at, .. } => {
                        inner.views.changed(&collections, records.as_deref());
                        changes.update(|n| *n += 1);
                        if let Some(sent_at) = sent_at {
                            // Timed once the views' effects (queued above) have run.
                            leptos::task::spawn_local(async move {
                                metrics.update(|m| m.send_to_render.record(js_sys::Date::now() - sent_at));
                            });
                        }
                    }
                    FromWorker::Resolved { mutation_id, outcome, upstream_ms: ms } => {
                        if !inner.issued.borrow_mut().remove(&mutation_id) {
                            return;
                        }
                        if let Some(ms) = ms {
                            upstream_ms.set(Some(ms));
                            metrics.update(|m| m.upstream_db_write.record(ms));
                        }
                        match inner.resolutions.borrow_mut().remove(&mutation_id) {
                            Some(sender) => {
                                let _ = sender.send(outcome);
                            }
                            None => {
                                inner.early.borrow_mut().insert(mutation_id, outcome);
                            }
                        }
                    }
                    FromWorker::Status(now) => {
                        storage.set(Some(now.storage));
                        let asks = now.needs_auth;
                        status.set(Some(now));
                        if asks && !needs_auth.get_untracked() {
                            needs_auth.set(true);
                            renew_sign_in(&inner);
                        } else if !asks && needs_auth.get_untracked() {
                            needs_auth.set(false);
                        }
                    }
                    FromWorker::Role { leader: is_leader } => leader.set(Some(is_leader)),
                }
            });
            worker.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
            Inner {
                worker,
                ready: Cell::new(false),
                queued: RefCell::new(Vec::new()),
                next_id: Cell::new(1),
                replies: RefCell::new(HashMap::new()),
                resolutions: RefCell::new(HashMap::new()),
                issued: RefCell::new(std::collections::HashSet::new()),
                early: RefCell::new(HashMap::new()),
                renew: RefCell::new(None),
                model,
                client_id: RefCell::new(None),
                query_ttl_ms: Cell::new(ttl_from_url()),
                page_id: new_id("page"),
                next_view: Cell::new(0),
                views: LiveViews::default(),
                _on_message: on_message,
            }
        });
        // What the worker said before this page took it over, in order.
        let handler: &js_sys::Function = inner._on_message.as_ref().unchecked_ref();
        for event in sent_early {
            let _ = handler.call1(&wasm_bindgen::JsValue::NULL, &event);
        }
        let client = Self {
            inner: SendWrapper::new(inner),
            changes,
            status,
            storage,
            upstream_ms,
            started,
            needs_auth,
            leader,
            metrics,
            update_started,
        };
        client.follow_network();
        Ok(client)
    }

    /// Tells the worker when the browser goes offline or comes back: the status says
    /// offline at once (an open socket may not notice for a long time), and waiting
    /// retries go as soon as the network is back.
    fn follow_network(&self) {
        let Some(window) = web_sys::window() else { return };
        for (event, online) in [("online", true), ("offline", false)] {
            let client = self.clone();
            let on_event = Closure::<dyn FnMut()>::new(move || {
                let client = client.clone();
                leptos::task::spawn_local(async move {
                    let _ = client.request(Request::Network { online }).await;
                });
            });
            let _ = window.add_event_listener_with_callback(event, on_event.as_ref().unchecked_ref());
            // Lives as long as the page, like the client.
            on_event.forget();
        }
    }

    /// How to renew the user's sign-in when the server asks for it (see
    /// [`RenewToken`]). Without one, or when it gives `None`, [`Self::needs_auth`]
    /// stays true until the app calls [`Self::start`] with a new token.
    pub fn on_needs_auth<F, Fut>(&self, renew: F)
    where
        F: Fn() -> Fut + 'static,
        Fut: std::future::Future<Output = Option<String>> + 'static,
    {
        let renew: RenewToken = Rc::new(move || Box::pin(renew()));
        *self.inner.renew.borrow_mut() = Some(renew);
    }

    /// How long a query no view shows any more stays synced and its rows kept
    /// (default five minutes, [`crate::bridge::QUERY_TTL_MS`]; a page opened with
    /// `?sync_ttl_ms=N` uses N). Set it before [`Self::start`].
    pub fn set_query_ttl(&self, ttl: std::time::Duration) {
        self.inner.query_ttl_ms.set(crate::QueryOptions { ttl: Some(ttl) }.ttl_ms());
    }

    /// A name for one live view of this page, unique among the worker's holders.
    pub(crate) fn new_holder(&self) -> String {
        let view = self.inner.next_view.get();
        self.inner.next_view.set(view + 1);
        format!("{}:{view}", self.inner.page_id)
    }

    /// Starts syncing a query before a view shows it (say, the board a pointer hovers
    /// over): its rows are fetched now and kept for its time to live (`options.ttl`,
    /// else the client's).
    pub fn preload<A: serde::Serialize, R>(
        &self,
        query: &sync::Query<A, R>,
        args: &A,
        options: crate::QueryOptions,
    ) {
        let Ok(args) = serde_json::to_value(args) else { return };
        let client = self.clone();
        let request = Request::Query {
            name: query.name().into(),
            args,
            window: None,
            holder: None,
            ttl_ms: options.ttl_ms(),
        };
        leptos::task::spawn_local(async move {
            let _ = client.request(request).await;
        });
    }

    /// Opens the local database and starts syncing as the user holding `token`.
    pub async fn start(&self, token: String) -> Result<(), String> {
        let query_ttl_ms = self.inner.query_ttl_ms.get();
        match self.request(Request::Start { token, query_ttl_ms }).await? {
            Reply::Started { client_id, .. } => {
                *self.inner.client_id.borrow_mut() = Some(client_id);
                self.started.set(true);
                Ok(())
            }
            other => Err(format!("unexpected reply {other:?}")),
        }
    }

    /// Asks the server again for the queries it refused: call it when the app may
    /// now allow them (the user just joined a group, was granted a list).
    pub async fn ask_again(&self) -> Result<(), String> {
        self.request(Request::AskAgain).await.map(|_| ())
    }

    /// Sends a request and waits for its reply.
    pub async fn request(&self, request: Request) -> Result<Reply, String> {
        let receiver = {
            let inner = &*self.inner;
            let id = inner.next_id.get();
            inner.next_id.set(id.wrapping_add(1));
            let (sender, receiver) = oneshot::channel();
            inner.replies.borrow_mut().insert(id, sender);
            let text = serde_json::to_string(&ToWorker { id, request }).map_err(|e| e.to_string())?;
            if inner.ready.get() {
                inner.worker.post_message(&text.into()).map_err(|e| format!("{e:?}"))?;
            } else {
                inner.queued.borrow_mut().push(text);
            }
            receiver
        };
        receiver.await.map_err(|_| "the sync worker went away".to_string())?
    }

    /// Applies the named mutation `name(args)` on `record_id` locally (through the
    /// worker) and returns its `(mutation_id, local_write_ms)`. The mutation id is
    /// chosen here, so a request re-sent to a new leader tab is applied once.
    pub async fn mutate(
        &self,
        name: &str,
        args: serde_json::Value,
        record_id: &str,
    ) -> Result<(String, f64), String> {
        let mutation_id = new_id(sync::ids::OUTBOX);
        let now_ms = js_sys::Date::now() as i64;
        self.inner.issued.borrow_mut().insert(mutation_id.clone());
        self.write_ahead(&mutation_id, name, &args, record_id, now_ms);
        let request = Request::Mutate {
            name: name.into(),
            args,
            mutation_id: mutation_id.clone(),
            record_id: record_id.into(),
            now_ms: Some(now_ms),
        };
        let answer = self.request(request).await;
        self.inner.views.settled(&mutation_id, matches!(answer, Ok(Reply::Mutated { .. })));
        match answer {
            Ok(Reply::Mutated { mutation_id, local_write_ms, .. }) => Ok((mutation_id, local_write_ms)),
            Ok(other) => Err(format!("unexpected reply {other:?}")),
            Err(error) => {
                self.inner.issued.borrow_mut().remove(&mutation_id);
                Err(error)
            }
        }
    }

    /// Shows the write in the live views now, built as the worker will build it (same
    /// model, client id, record id and time). A write the model refuses is not
    /// shown: the worker refuses it too and says why.
    fn write_ahead(
        &self,
        mutation_id: &str,
        name: &str,
        args: &serde_json::Value,
        record_id: &str,
        now_ms: i64,
    ) {
        let Some(client_id) = self.inner.client_id.borrow().clone() else { return };
        let ctx = sync::MutationContext { client_id, record_id: record_id.into(), now_ms };
        if let Ok(validated) = self.inner.model.validate_mutation(name, args, &ctx) {
            self.inner.views.write_ahead(mutation_id, &validated.record_id, validated.operation);
        }
    }

    pub(crate) fn views(&self) -> &LiveViews {
        &self.inner.views
    }

    /// The app's model (the one the worker runs).
    pub fn model(&self) -> &sync::SyncModel {
        &self.inner.model
    }

    /// Waits for the server's answer to a mutation.
    pub async fn resolution(&self, mutation_id: &str) -> Result<MutationOutcome, String> {
        let receiver = {
            if let Some(outcome) = self.inner.early.borrow_mut().remove(mutation_id) {
                return Ok(outcome);
            }
            let (sender, receiver) = oneshot::channel();
            self.inner.resolutions.borrow_mut().insert(mutation_id.to_string(), sender);
            receiver
        };
        receiver.await.map_err(|_| "the sync worker went away".to_string())
    }
}

/// Asks the app's [`RenewToken`] hook for a fresh token and hands it to the worker.
fn renew_sign_in(inner: &Rc<Inner>) {
    let Some(renew) = inner.renew.borrow().clone() else { return };
    let inner = inner.clone();
    leptos::task::spawn_local(async move {
        let Some(token) = renew().await else { return };
        let request = Request::Start { token, query_ttl_ms: inner.query_ttl_ms.get() };
        let text = serde_json::to_string(&ToWorker { id: 0, request });
        if let Ok(text) = text {
            // Id 0 is never awaited: the answer that matters is the next status.
            let _ = inner.worker.post_message(&text.into());
        }
    });
}

/// The worker `<SyncWorkerPreload/>` started for `script_url`, if any, with the
/// events it posted before this page took it over.
fn early_worker(script_url: &str) -> Option<(Worker, Vec<MessageEvent>)> {
    let window = web_sys::window()?;
    let key = wasm_bindgen::JsValue::from_str("__syncWorker");
    let early = js_sys::Reflect::get(&window, &key).ok().filter(|value| value.is_object())?;
    let _ = js_sys::Reflect::delete_property(&window, &key);
    let url = js_sys::Reflect::get(&early, &"url".into()).ok()?.as_string()?;
    if url != script_url {
        return None;
    }
    let worker: Worker = js_sys::Reflect::get(&early, &"worker".into()).ok()?.dyn_into().ok()?;
    let queued: js_sys::Array = js_sys::Reflect::get(&early, &"queued".into()).ok()?.dyn_into().ok()?;
    let sent = queued.iter().filter_map(|event| event.dyn_into::<MessageEvent>().ok()).collect();
    Some((worker, sent))
}

/// `?sync_ttl_ms=N` in the page's address: queries' time to live (tests, benches).
fn ttl_from_url() -> Option<u64> {
    let search = web_sys::window()?.location().search().ok()?;
    search.trim_start_matches('?').split('&').find_map(|pair| pair.strip_prefix("sync_ttl_ms=")?.parse().ok())
}

/// A fresh prefixed ULID: the time, and 80 random bits from the browser's
/// cryptographic generator (`crypto.getRandomValues`, through getrandom).
pub fn new_id(prefix: &str) -> String {
    thread_local! {
        static COUNTER: Cell<u32> = const { Cell::new(0) };
    }
    let mut bytes = [0u8; 10];
    // getrandom fails only where Web Crypto is missing (no secure context, where
    // OPFS is missing too): then a per-page counter keeps this page's ids distinct.
    if getrandom::fill(&mut bytes).is_err() {
        let count = COUNTER.with(|counter| {
            counter.set(counter.get().wrapping_add(1));
            counter.get()
        });
        bytes[..4].copy_from_slice(&count.to_le_bytes());
    }
    let random = bytes.iter().fold(0u128, |acc, byte| (acc << 8) | u128::from(*byte));
    sync::ids::new_id(prefix, js_sys::Date::now() as u64, random)
}

/// `performance.now()` on the page, in milliseconds.
pub(crate) fn now_ms() -> f64 {
    let performance = js_sys::Reflect::get(&js_sys::global(), &"performance".into()).ok();
    performance
        .and_then(|p| p.dyn_into::<web_sys::Performance>().ok())
        .map_or_else(js_sys::Date::now, |p| p.now())
}
