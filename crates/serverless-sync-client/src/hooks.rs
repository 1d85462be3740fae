//! The hooks components use. In the browser (feature `hydrate`) they talk to the
//! [`crate::SyncClient`] in context; during server rendering they are inert.
//!
//! ```ignore
//! let items = use_query(&LIST_ITEMS, move || ListArgs { list_id: list() });
//! let add = use_mutator(&ADD_ITEM);
//! add.insert(AddItem { .. });                       // a new record, id minted here
//! let rename = use_mutator(&RENAME_ITEM);
//! rename.update(item.id.clone(), RenameItem { .. }); // an existing record, by id
//! ```

use std::marker::PhantomData;

use leptos::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sync::protocol::push::MutationOutcome;
use sync::typed::{Deletes, Inserts, Kind, Mutator, Query, Updates};

use crate::bridge::Status;
#[cfg(feature = "hydrate")]
use crate::bridge::{Reply, Request};

/// What a live query shows, rows typed as `R`.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveQuery<R> {
    /// The visible rows: confirmed, with pending local writes applied.
    pub rows: Vec<R>,
    /// Record ids with writes not yet confirmed by the server.
    pub pending: Vec<String>,
    /// True until the first local answer.
    pub loading: bool,
    /// The server's rows for this query reached the local store.
    pub synced: bool,
    /// Why this query cannot be shown or synced: the server refused it (its callback
    /// said no), or a row does not decode as `R`.
    pub error: Option<String>,
    /// A windowed query (one with a limit, see [`use_windowed_query`]): rows of it
    /// follow the window; [`QueryWindow::load_more`] shows them.
    pub more: bool,
}

impl<R> Default for LiveQuery<R> {
    fn default() -> Self {
        Self { rows: Vec::new(), pending: Vec::new(), loading: true, synced: false, error: None, more: false }
    }
}

/// How a live query is kept ([`use_query_with`], [`use_windowed_query_with`]).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct QueryOptions {
    /// How long the query stays synced, and its rows kept, once no view shows it
    /// (default: the client's, five minutes; see `SyncClient::set_query_ttl`).
    pub ttl: Option<std::time::Duration>,
}

impl QueryOptions {
    /// The time to live in ms, as the worker takes it.
    pub fn ttl_ms(&self) -> Option<u64> {
        self.ttl.map(|ttl| u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX))
    }
}

/// The size of a windowed query's view ([`use_windowed_query`]).
#[derive(Debug, Clone, Copy)]
pub struct QueryWindow {
    /// Rows shown beyond the query's own limit.
    extra: RwSignal<u32>,
}

impl QueryWindow {
    /// Shows `rows` more of the query (the next page is fetched from the server when
    /// the local store does not hold it).
    pub fn load_more(&self, rows: u32) {
        self.extra.update(|extra| *extra = extra.saturating_add(rows));
    }

    /// Rows shown beyond the query's own limit.
    pub fn extra(&self) -> u32 {
        self.extra.get()
    }
}

impl<R> LiveQuery<R> {
    /// Whether the record `id` has a local write the server has not confirmed yet.
    pub fn is_pending(&self, id: &str) -> bool {
        self.pending.iter().any(|pending| pending == id)
    }
}

/// The connection as the UI shows it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SyncStatusView {
    pub status: Option<Status>,
    pub storage: Option<crate::bridge::Storage>,
    /// `Some(true)`: this tab holds the database; `Some(false)`: another tab does.
    pub leader: Option<bool>,
}

/// A live named query: re-runs when `args` change or local rows change, and keeps
/// the server's rows for it synced in the local store.
pub fn use_query<A, R>(
    query: &Query<A, R>,
    args: impl Fn() -> A + Send + Sync + 'static,
) -> ReadSignal<LiveQuery<R>>
where
    A: Serialize + 'static,
    R: DeserializeOwned + Clone + Send + Sync + 'static,
{
    live_query(query, args, None, QueryOptions::default())
}

/// [`use_query`] with options (its time to live).
pub fn use_query_with<A, R>(
    query: &Query<A, R>,
    args: impl Fn() -> A + Send + Sync + 'static,
    options: QueryOptions,
) -> ReadSignal<LiveQuery<R>>
where
    A: Serialize + 'static,
    R: DeserializeOwned + Clone + Send + Sync + 'static,
{
    live_query(query, args, None, options)
}

/// A live windowed query: one whose select has an order and a limit (say the newest
/// 200 posts of a feed) shows that many rows, and only those are synced, not the
/// whole answer. [`QueryWindow::load_more`] widens it (the server sends the next page);
/// [`LiveQuery::more`] says whether rows follow. The window starts again at the
/// query's limit when `args` change.
///
/// ```ignore
/// let (posts, window) = use_windowed_query(&FEED_POSTS, move || FeedArgs { feed_id: feed() });
/// // "Show earlier": window.load_more(200)
/// ```
pub fn use_windowed_query<A, R>(
    query: &Query<A, R>,
    args: impl Fn() -> A + Send + Sync + 'static,
) -> (ReadSignal<LiveQuery<R>>, QueryWindow)
where
    A: Serialize + 'static,
    R: DeserializeOwned + Clone + Send + Sync + 'static,
{
    use_windowed_query_with(query, args, QueryOptions::default())
}

/// [`use_windowed_query`] with options (its time to live).
pub fn use_windowed_query_with<A, R>(
    query: &Query<A, R>,
    args: impl Fn() -> A + Send + Sync + 'static,
    options: QueryOptions,
) -> (ReadSignal<LiveQuery<R>>, QueryWindow)
where
    A: Serialize + 'static,
    R: DeserializeOwned + Clone + Send + Sync + 'static,
{
    let window = QueryWindow { extra: RwSignal::new(0) };
    (live_query(query, args, Some(window), options), window)
}

fn live_query<A, R>(
    query: &Query<A, R>,
    args: impl Fn() -> A + Send + Sync + 'static,
    window: Option<QueryWindow>,
    options: QueryOptions,
) -> ReadSignal<LiveQuery<R>>
where
    A: Serialize + 'static,
    R: DeserializeOwned + Clone + Send + Sync + 'static,
{
    let (state, set_state) = signal(LiveQuery::<R>::default());
    #[cfg(feature = "hydrate")]
    if let Some(client) = use_context::<crate::SyncClient>() {
        let query = *query;
        let name = query.name();
        let generation = StoredValue::new(0u64);
        // Bumped when the view cannot follow changes in place: read the query again.
        let reread = RwSignal::new(0u64);
        // The rows the state shows, as the view held them. A change reaches the state as
        // one splice: the rows between the unchanged ends (compared by allocation: an
        // unchanged row keeps its `Rc`) are decoded and swapped in; nothing else is
        // decoded or copied.
        let held_rows = StoredValue::new_local(Vec::<std::rc::Rc<sync::Row>>::new());
        let show: crate::live::Show = {
            let client = client.clone();
            std::rc::Rc::new(move |live: &sync::view::LiveRows| {
                let next = live.shared_rows();
                let shown = held_rows.try_update_value(|held| {
                    let same = |(a, b): &(&std::rc::Rc<sync::Row>, &std::rc::Rc<sync::Row>)| {
                        std::rc::Rc::ptr_eq(a, b)
                    };
                    let prefix = held.iter().zip(next).take_while(same).count();
                    let overlap = held.len().min(next.len()) - prefix;
                    let suffix =
                        held.iter().rev().zip(next.iter().rev()).take(overlap).take_while(same).count();
                    let fresh: Result<Vec<R>, String> =
                        next[prefix..next.len() - suffix].iter().map(|row| query.decode_row(row)).collect();
                    let replaced = prefix..held.len() - suffix;
                    *held = if fresh.is_ok() { next.to_vec() } else { Vec::new() };
                    fresh.map(|fresh| (replaced, fresh))
                });
                set_state.update(|s| {
                    match shown {
                        // The state and the held rows move together, so the range fits.
                        Some(Ok((replaced, fresh))) if replaced.end <= s.rows.len() => {
                            s.rows.splice(replaced, fresh);
                        }
                        Some(Ok(_)) => {}
                        Some(Err(decode)) => {
                            s.rows = Vec::new();
                            s.error = Some(decode);
                        }
                        None => {}
                    }
                    s.pending = live.pending();
                    s.loading = false;
                    s.more |= live.pushed_out();
                });
                // The state now shows the latest local write: time it.
                if let Some(started) = client.update_started.get_untracked() {
                    client.update_started.set(None);
                    let elapsed = crate::page::now_ms() - started;
                    client.metrics.update(|m| m.local_state_update.record(elapsed));
                }
            })
        };
        let view = client.views().register(show, std::rc::Rc::new(move || reread.update(|n| *n += 1)));
        // This view's name to the worker: while it shows the query, the query is in use.
        let holder = client.new_holder();
        {
            let client = client.clone();
            let holder = holder.clone();
            on_cleanup(move || {
                client.views().unregister(view);
                let release = client.clone();
                leptos::task::spawn_local(async move {
                    let _ = release.request(Request::Release { holder }).await;
                });
            });
        }
        // The args the window was widened for: new args start at the query's limit.
        let widened_for = StoredValue::new(None::<serde_json::Value>);
        Effect::new(move |_| {
            let args = serde_json::to_value(args());
            reread.track();
            let extra = window.map_or(0, |window| window.extra.get());
            if !client.started.get() {
                return;
            }
            let validated =
                args.map_err(|error| format!("{name}: args do not serialize: {error}")).and_then(|args| {
                    let validated = client.model().validate_query(name, &args).map_err(|e| e.to_string())?;
                    Ok((args, validated))
                });
            let (args, mut validated) = match validated {
                Ok(validated) => validated,
                Err(error) => {
                    set_state.update(|s| {
                        s.loading = false;
                        s.error = Some(error);
                    });
                    return;
                }
            };
            let primary_key = client
                .model()
                .collection(&validated.select.collection)
                .map(|c| c.primary_key.clone())
                .unwrap_or_default();
            let mut extra = extra;
            if let Some(window) = window
                && widened_for.get_value().as_ref() != Some(&args)
            {
                if widened_for.get_value().is_some() && extra > 0 {
                    // Other args: the window starts again (this run re-runs at 0).
                    window.extra.set(0);
                    extra = 0;
                }
                widened_for.set_value(Some(args.clone()));
            }
            let size = validated.select.limit.map(|limit| limit.saturating_add(extra));
            if let Some(size) = sync::window::window_size(&validated.select, size) {
                validated.select = sync::window::sized(&validated.select, size);
            }
            generation.update_value(|g| *g += 1);
            let mine = generation.get_value();
            let client = client.clone();
            let holder = holder.clone();
            leptos::task::spawn_local(async move {
                let request = Request::Query {
                    name: name.into(),
                    args,
                    window: validated.select.limit,
                    holder: Some(holder),
                    ttl_ms: options.ttl_ms(),
                };
                let answer = client.request(request).await;
                // A newer run started meanwhile: its answer is the one to show.
                if generation.get_value() != mine {
                    return;
                }
                match answer {
                    Ok(Reply::Rows { rows, pending, synced, error, more }) => {
                        set_state.update(|s| {
                            s.synced = synced;
                            s.error = error;
                            s.more = more;
                        });
                        client.views().install(view, validated.select, &primary_key, rows, pending);
                    }
                    Ok(other) => set_state.update(|s| s.error = Some(format!("unexpected reply {other:?}"))),
                    Err(error) => set_state.update(|s| {
                        s.loading = false;
                        s.error = Some(error);
                    }),
                }
            });
        });
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = (query, args, set_state, window, options);
    state
}

/// [`use_query`] as a resource, for `<Suspense>` and `<Transition>`: pending until the
/// query has something true to show, then its live state, which follows every change
/// as [`use_query`]'s does. See [`ready_resource`] for when it resolves.
///
/// ```ignore
/// let notes = use_query_resource(&BOARD_NOTES, move || BoardArgs { board_id: board() });
/// view! { <Transition fallback=|| "loading"> {move || notes.get().map(|q| q.rows.len())} </Transition> }
/// ```
pub fn use_query_resource<A, R>(
    query: &Query<A, R>,
    args: impl Fn() -> A + Send + Sync + 'static,
) -> LocalResource<LiveQuery<R>>
where
    A: Serialize + 'static,
    R: DeserializeOwned + Clone + Send + Sync + 'static,
{
    ready_resource(use_query(query, args))
}

/// A live query's state as a resource (to share one [`use_query`] between a plain
/// view and a `<Suspense>`): pending until the server's rows for the query reached
/// the local store, or the store already holds rows for it, or the query was refused
/// (its `error`); resolved, it follows every change. Offline with nothing stored, it
/// stays pending until the rows arrive. During server rendering it stays pending
/// (the fallback renders).
pub fn ready_resource<R>(live: ReadSignal<LiveQuery<R>>) -> LocalResource<LiveQuery<R>>
where
    R: Clone + Send + Sync + 'static,
{
    LocalResource::new(move || {
        let state = live.get();
        async move {
            if is_ready(&state) {
                return state;
            }
            // The resource starts no new run before this one answers: wait here for
            // the state that is ready, and answer that.
            until_ready(live).await;
            live.get_untracked()
        }
    })
}

fn is_ready<R>(state: &LiveQuery<R>) -> bool {
    state.synced || state.error.is_some() || (!state.loading && !state.rows.is_empty())
}

/// Resolves once `live` is [`is_ready`] (an effect watches it; it ends with the
/// resource's run, whose owner it belongs to).
#[cfg(feature = "hydrate")]
async fn until_ready<R: Send + Sync + 'static>(live: ReadSignal<LiveQuery<R>>) {
    let (ready, is_now) = futures_channel::oneshot::channel::<()>();
    let ready = std::cell::Cell::new(Some(ready));
    Effect::new(move |_| {
        if live.with(is_ready)
            && let Some(ready) = ready.take()
        {
            let _ = ready.send(());
        }
    });
    let _ = is_now.await;
}

/// During server rendering nothing is ready (the fallback renders).
#[cfg(not(feature = "hydrate"))]
async fn until_ready<R>(_live: ReadSignal<LiveQuery<R>>) {
    std::future::pending::<()>().await;
}

/// One mutator call, once it is settled.
#[derive(Debug, Clone, PartialEq)]
pub struct MutationResult {
    /// The record written (minted by the handle for an insert).
    pub record_id: String,
    /// `Ok`: the server's answer (confirmed with its row, or rejected with the app's
    /// reason; a rejected write is rolled back locally). `Err`: refused before it was
    /// queued (the model's own validation, or no sync client).
    pub outcome: Result<MutationOutcome, String>,
}

impl MutationResult {
    /// The reason the write did not stick, if it did not.
    pub fn refusal(&self) -> Option<&str> {
        match &self.outcome {
            Ok(MutationOutcome::Confirmed { .. }) => None,
            Ok(MutationOutcome::Rejected { reason }) | Err(reason) => Some(reason),
        }
    }
}

/// A typed write handle, like a Leptos `Action`: calls apply locally at once and
/// settle when the server answers. `pending()` counts calls not settled yet;
/// `last()` is the latest settled call. `Copy`, like a signal: move it into as many
/// closures and rows as the page has, no clones (it lives as long as the reactive
/// owner that made it).
pub struct MutatorHandle<A, K> {
    mutator: Mutator<A, K>,
    pending: RwSignal<usize>,
    last: RwSignal<Option<MutationResult>>,
    #[cfg(feature = "hydrate")]
    client: StoredValue<Option<crate::SyncClient>>,
    types: PhantomData<fn(A)>,
}

impl<A, K> Clone for MutatorHandle<A, K> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<A, K> Copy for MutatorHandle<A, K> {}

impl<A: Serialize + 'static, K: Kind> MutatorHandle<A, K> {
    /// Calls not settled yet.
    pub fn pending(&self) -> Signal<usize> {
        self.pending.into()
    }

    /// The latest settled call.
    pub fn last(&self) -> Signal<Option<MutationResult>> {
        self.last.into()
    }

    /// Applies the write to the local store, then waits for the server's answer.
    async fn run(&self, record_id: String, args: A) -> MutationResult {
        self.pending.update(|n| *n += 1);
        let outcome = self.settle(&record_id, args).await;
        let result = MutationResult { record_id, outcome };
        self.pending.update(|n| *n = n.saturating_sub(1));
        self.last.set(Some(result.clone()));
        result
    }

    #[cfg(feature = "hydrate")]
    async fn settle(&self, record_id: &str, args: A) -> Result<MutationOutcome, String> {
        let client = self.client.get_value().ok_or("no sync client in context")?;
        let args = serde_json::to_value(args).map_err(|e| format!("args do not serialize: {e}"))?;
        client.update_started.set(Some(crate::page::now_ms()));
        let (mutation_id, local_write_ms) = match client.mutate(self.mutator.name(), args, record_id).await {
            Ok(applied) => applied,
            Err(error) => {
                // Refused locally: nothing changed, nothing to time.
                client.update_started.set(None);
                return Err(error);
            }
        };
        client.metrics.update(|m| m.local_db_write.record(local_write_ms));
        client.resolution(&mutation_id).await
    }

    #[cfg(not(feature = "hydrate"))]
    async fn settle(&self, _record_id: &str, _args: A) -> Result<MutationOutcome, String> {
        Err(format!("{} can only run in the browser", self.mutator.name()))
    }

    fn spawn(&self, record_id: String, args: A) {
        let handle = *self;
        leptos::task::spawn_local(async move {
            handle.run(record_id, args).await;
        });
    }
}

impl<A: Serialize + 'static> MutatorHandle<A, Inserts> {
    /// Inserts a new record and returns its id at once (the write settles later;
    /// see [`Self::last`]).
    pub fn insert(&self, args: A) -> String {
        let record_id = new_record_id(self.mutator.collection());
        self.spawn(record_id.clone(), args);
        record_id
    }

    /// Inserts a new record and waits until the server settled it.
    pub async fn insert_and_wait(&self, args: A) -> MutationResult {
        self.run(new_record_id(self.mutator.collection()), args).await
    }

    /// Inserts the record `record_id` (an id that means something: one record per
    /// group and user, a group named by its URL) and waits until the server
    /// settled it. A second insert of the same id is refused by the database.
    pub async fn insert_with_id_and_wait(&self, record_id: impl Into<String>, args: A) -> MutationResult {
        self.run(record_id.into(), args).await
    }
}

impl<A: Serialize + 'static> MutatorHandle<A, Updates> {
    /// Updates the record `record_id`.
    pub fn update(&self, record_id: impl Into<String>, args: A) {
        self.spawn(record_id.into(), args);
    }

    pub async fn update_and_wait(&self, record_id: impl Into<String>, args: A) -> MutationResult {
        self.run(record_id.into(), args).await
    }
}

impl<A: Serialize + 'static> MutatorHandle<A, Deletes> {
    /// Deletes the record `record_id`.
    pub fn delete(&self, record_id: impl Into<String>, args: A) {
        self.spawn(record_id.into(), args);
    }

    pub async fn delete_and_wait(&self, record_id: impl Into<String>, args: A) -> MutationResult {
        self.run(record_id.into(), args).await
    }
}

/// A fresh record id for `collection`: `{collection}_{ULID}`.
fn new_record_id(collection: &str) -> String {
    #[cfg(feature = "hydrate")]
    {
        crate::new_id(collection)
    }
    #[cfg(not(feature = "hydrate"))]
    {
        format!("{collection}_unminted")
    }
}

/// A typed write handle for `mutator`.
pub fn use_mutator<A: Serialize + 'static, K: Kind>(mutator: &Mutator<A, K>) -> MutatorHandle<A, K> {
    MutatorHandle {
        mutator: *mutator,
        pending: RwSignal::new(0),
        last: RwSignal::new(None),
        #[cfg(feature = "hydrate")]
        client: StoredValue::new(use_context::<crate::SyncClient>()),
        types: PhantomData,
    }
}

/// Connection status (online, outbox size, storage), live.
pub fn use_sync_status() -> Signal<SyncStatusView> {
    #[cfg(feature = "hydrate")]
    if let Some(client) = use_context::<crate::SyncClient>() {
        return Signal::derive(move || SyncStatusView {
            status: client.status.get(),
            storage: client.storage.get(),
            leader: client.leader.get(),
        });
    }
    Signal::derive(SyncStatusView::default)
}

/// The three timings, live.
pub fn use_metrics() -> Signal<crate::Metrics> {
    #[cfg(feature = "hydrate")]
    if let Some(client) = use_context::<crate::SyncClient>() {
        return client.metrics.into();
    }
    Signal::derive(crate::Metrics::default)
}

/// Starts the SQLite Web Worker from the page's `<head>` (put it in the shell the
/// server renders), so the worker's wasm downloads, compiles and opens the local
/// database while the page's own bundle loads and hydrates, instead of after it.
/// [`crate::SyncClient::spawn`] with the same `src` takes that worker over, with the
/// events it posted meanwhile. Without it the client spawns the worker itself.
#[component]
pub fn SyncWorkerPreload(
    /// The worker's module script, as given to `SyncClient::spawn`.
    src: &'static str,
) -> impl IntoView {
    let src = serde_json::to_string(src).unwrap_or_else(|_| "\"\"".into());
    let script = format!(
        "(()=>{{try{{const w=new Worker({src},{{type:'module'}});const q=[];\
         w.onmessage=(e)=>q.push(e);window.__syncWorker={{url:{src},worker:w,queued:q}};}}catch(e){{}}}})();"
    );
    view! { <script inner_html=script></script> }
}

/// The sync devtools (feature `devtools`): put `<SyncDevtools/>` once anywhere under
/// the component that provides the `SyncClient`. It renders nothing in
/// place: in the browser it mounts the panel in a root of its own (so server
/// rendering and hydration see the same page), opened with Alt+Shift+D or
/// `?devtools` in the address. Without the feature, and on the server, it does
/// nothing and adds nothing to the bundle.
#[component]
pub fn SyncDevtools() -> impl IntoView {
    #[cfg(all(feature = "devtools", target_family = "wasm", target_os = "unknown"))]
    if let Some(client) = use_context::<crate::SyncClient>() {
        let mounted = StoredValue::new(false);
        Effect::new(move |_| {
            if !mounted.get_value() {
                mounted.set_value(true);
                crate::devtools::mount(client.clone());
            }
        });
    }
}
