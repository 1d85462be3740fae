//! The sync loop's decisions, without I/O: which requests the client sends, what it
//! does with each answer and each failure, how a poke is applied or turns into a
//! pull, and how it starts again after a resync. The browser's SQLite worker
//! (`sync_client::runtime`) carries them out over HTTP and a WebSocket; the
//! simulation carries out the same decisions over its simulated network.
//!
//! Rules:
//! - the outbox goes out in order, in batches; a write leaves it only with a final
//!   answer (confirmed or rejected);
//! - only the app says no: a network failure, a 5xx or a 429 is retried with backoff,
//!   a `needs_auth` waits for a new token, and neither drops a write;
//! - a query is pulled only once its snapshot is installed; each topic is pulled from
//!   where it stands ([`TopicCursors`]);
//! - a poke's changes are installed at once; when they follow what the client holds
//!   on their topic they are all it lacks there, else (a gap, no rows, or a reconnect)
//!   it pulls;
//! - a refused query (its query refused, or named refused in a pull's answer) is
//!   left out of pulls (its reason is kept to show) until the user signs in anew; the
//!   others sync on; a pull refused whole (a server before per-subscription answers)
//!   makes every query be fetched again on its own, which finds the refused ones;
//! - `resync_required` forgets the cursor and the snapshots (never the outbox) and
//!   fetches every query again.

use std::collections::{BTreeMap, BTreeSet};

use sync::changes::{Change, Cursor};
use sync::cursors::TopicCursors;
use sync::model::ValidatedQuery;
use sync::protocol::PROTOCOL_VERSION;
use sync::protocol::error::{ErrorBody, NEEDS_AUTH, NOT_CONFIGURED, RESYNC_REQUIRED, SCHEMA_MISMATCH};
use sync::protocol::pull::{PullRequest, PullResponse, Subscription};
use sync::protocol::push::{PushRequest, PushResponse};
use sync::protocol::query::{QueryPage, QueryRequest};
use sync::protocol::unwatch::Unwatch;

use sync::window::Coverage;

use crate::{LocalStore, StoreError, Touched};

/// Most mutations one push carries.
pub const PUSH_BATCH: usize = 100;

/// Why a request to the connector failed, as the client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The connector is unreachable (offline): retried.
    Network(String),
    /// The connector answered but could not decide now (5xx, 429): retried. Nothing
    /// was decided; the browser is still online.
    Unavailable(String),
    /// The user's sign-in is missing or expired: retried with a new token.
    NeedsAuth(String),
    /// The pull's cursor is older than the compacted change log.
    Resync(String),
    /// Retrying will not help (the request itself is refused).
    Fatal(String),
}

impl Failure {
    /// Reads a connector answer that was not a 2xx.
    pub fn from_status(status: u16, body: &str) -> Self {
        let parsed = serde_json::from_str::<ErrorBody>(body).ok();
        let reason = parsed.as_ref().map_or_else(|| format!("HTTP {status}: {body}"), |b| b.reason.clone());
        let code = parsed.as_ref().map(|b| b.error.as_str());
        match (status, code) {
            (401, Some(NEEDS_AUTH)) => Failure::NeedsAuth(reason),
            (410, Some(RESYNC_REQUIRED)) => Failure::Resync(reason),
            (status, _) if status >= 500 || status == 429 => Failure::Unavailable(reason),
            _ => Failure::Fatal(reason),
        }
    }

    /// Why the server is not ready to serve at all, if a non-2xx answer says so: a
    /// deployment that lacks a migration or a setting. Still retried like any 503;
    /// the page shows it instead of "online".
    pub fn server_not_ready(status: u16, body: &str) -> Option<String> {
        // Only a 503 is parsed: every answer passes here, and a 2xx may be a large page.
        if status != 503 {
            return None;
        }
        let parsed = serde_json::from_str::<ErrorBody>(body).ok()?;
        [SCHEMA_MISMATCH, NOT_CONFIGURED].contains(&parsed.error.as_str()).then_some(parsed.reason)
    }

    pub fn reason(&self) -> &str {
        match self {
            Failure::Network(reason)
            | Failure::Unavailable(reason)
            | Failure::NeedsAuth(reason)
            | Failure::Resync(reason)
            | Failure::Fatal(reason) => reason,
        }
    }
}

/// What a loop does after a failed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Try again after a backoff (attempt number given).
    Retry { attempt: u32 },
    /// Wait for a new token, then try again.
    WaitForSignIn,
    /// Start again from the queries' snapshots ([`SyncDriver::resync`]).
    Resync,
    /// Give up on this request.
    Stop,
}

/// Exponential backoff: 250 ms doubling to 30 s; `jitter` in `[0, 1)` spreads clients.
pub fn backoff_ms(attempt: u32, jitter: f64) -> u32 {
    let base = 250u32.saturating_mul(1 << attempt.min(7)).min(30_000);
    base / 2 + (jitter.clamp(0.0, 1.0) * f64::from(base / 2)) as u32
}

/// What became of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Snapshot {
    Installed(BTreeSet<Touched>),
    /// Older than what the store pulled through: fetch the query again.
    Stale,
    /// Not installed: the query is no longer subscribed, or a newer snapshot of it is
    /// installed already (answers can arrive out of order). Dropped.
    NotWanted,
}

/// One query of this client, as [`SyncDriver::queries`] reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryState {
    pub topic: String,
    pub name: String,
    pub args: serde_json::Value,
    /// Its server snapshot is installed.
    pub synced: bool,
    /// Where it stands in the change log.
    pub cursor: Cursor,
    /// Why the server refused it, if it did.
    pub refused: Option<String>,
}

/// The client's sync state besides the store: its queries and where each stands.
#[derive(Debug, Clone, Default)]
pub struct SyncDriver {
    session_id: String,
    subscriptions: BTreeMap<String, Subscription>,
    /// Topics whose server snapshot is installed.
    synced: BTreeSet<String>,
    cursors: TopicCursors,
    /// Topics the server refused, with its reason.
    denied: BTreeMap<String, String>,
    /// Mutations written since this driver started and never put in a push request:
    /// a push of only these says `first_send` (none can have an answer upstream).
    unsent: BTreeSet<String>,
    /// Topics this client stopped reading whose unwatch is not sent yet (at most
    /// [`sync::session::MAX_TOPICS_PER_SESSION`]: no session watches more).
    unwatch: BTreeSet<String>,
}

impl SyncDriver {
    pub fn new(session_id: impl Into<String>) -> Self {
        Self { session_id: session_id.into(), ..Self::default() }
    }

    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// A query the page reads. `true`: it is new and its snapshot must be fetched.
    pub fn subscribe(&mut self, query: &ValidatedQuery) -> bool {
        let topic = query.topic.to_string();
        if self.denied.contains_key(&topic) || self.subscriptions.contains_key(&topic) {
            return false;
        }
        let subscription = Subscription { name: query.name.clone(), args: query.args.clone(), cursor: None };
        self.unwatch.remove(&topic);
        self.subscriptions.insert(topic, subscription);
        true
    }

    /// No page uses the query any more (its time to live ran out): forgotten, and its
    /// session is to stop watching it ([`Self::take_unwatch`]).
    pub fn stop_reading(&mut self, topic: &str) {
        self.forget(topic);
        self.note_unwatch(topic);
    }

    fn note_unwatch(&mut self, topic: &str) {
        if self.unwatch.len() < sync::session::MAX_TOPICS_PER_SESSION {
            self.unwatch.insert(topic.to_string());
        }
    }

    /// The unwatches to send on the session's socket now (none pending after).
    pub fn take_unwatch(&mut self) -> Vec<Unwatch> {
        let topics: Vec<String> = std::mem::take(&mut self.unwatch).into_iter().collect();
        Unwatch::batches(&topics)
    }

    /// The session stopped watching `topics`. `true`: this client reads one of them
    /// again (it reopened it while the unwatch was on its way) and must pull, which
    /// watches it again.
    pub fn on_unwatched(&self, topics: &[String]) -> bool {
        topics.iter().any(|topic| self.subscriptions.contains_key(topic))
    }

    /// Every query this client reads, as the devtools show it: subscribed ones with
    /// whether their snapshot is installed and where their cursor stands (`pulled`:
    /// the store's cursor), then the refused ones with the server's reason.
    pub fn queries(&self, pulled: Cursor) -> Vec<QueryState> {
        let subscribed = self.subscriptions.iter().map(|(topic, subscription)| QueryState {
            topic: topic.clone(),
            name: subscription.name.clone(),
            args: subscription.args.clone(),
            synced: self.synced.contains(topic),
            cursor: self.cursors.get(topic, pulled),
            refused: None,
        });
        let refused = self.denied.iter().map(|(topic, reason)| {
            let (name, args) = sync::Topic::from_raw(topic.clone())
                .query_and_args()
                .map(|(name, args)| (name.to_string(), args))
                .unwrap_or_default();
            QueryState {
                topic: topic.clone(),
                name,
                args,
                synced: false,
                cursor: Cursor::START,
                refused: Some(reason.clone()),
            }
        });
        subscribed.chain(refused).collect()
    }

    /// Forgets a query: one whose snapshot could not be fetched (its next read asks
    /// again), or one no page uses any more (its time to live ran out: left out of
    /// pulls, and a poke on its topic is not installed, its rows being evicted).
    pub fn forget(&mut self, topic: &str) {
        self.subscriptions.remove(topic);
        self.synced.remove(topic);
    }

    pub fn is_synced(&self, topic: &str) -> bool {
        self.synced.contains(topic)
    }

    /// Why the server refused this query, if it did.
    pub fn denied(&self, topic: &str) -> Option<&str> {
        self.denied.get(topic).map(String::as_str)
    }

    /// The server refused the query: left out of pulls, the reason kept to show.
    pub fn refused(&mut self, topic: &str, reason: String) {
        self.forget(topic);
        self.denied.insert(topic.to_string(), reason);
    }

    pub fn has_refusals(&self) -> bool {
        !self.denied.is_empty()
    }

    /// A new sign-in: refused queries may be asked again.
    pub fn signed_in(&mut self) {
        self.denied.clear();
    }

    /// A mutation was written locally (a new outbox entry, not one answered from the
    /// outbox): until it is in a push request, it was never sent.
    pub fn written(&mut self, mutation_id: &str) {
        self.unsent.insert(mutation_id.to_string());
    }

    /// The next push: the outbox's oldest writes. `None`: nothing to send. Its
    /// writes count as sent from now on (a request may arrive even if its answer
    /// does not).
    pub fn push_request(&mut self, store: &LocalStore) -> Result<Option<PushRequest>, StoreError> {
        let batch = store.outbox(PUSH_BATCH)?;
        if batch.is_empty() {
            return Ok(None);
        }
        let first_send = batch.iter().all(|pending| self.unsent.contains(&pending.id));
        for pending in &batch {
            self.unsent.remove(&pending.id);
        }
        Ok(Some(PushRequest {
            protocol_version: PROTOCOL_VERSION,
            client_id: store.client_id().to_string(),
            session_id: self.session_id.clone(),
            mutations: batch.iter().map(|pending| pending.to_push()).collect(),
            first_send,
        }))
    }

    /// The push's answers: each write leaves the outbox with its final answer.
    pub fn on_pushed(
        &mut self,
        store: &mut LocalStore,
        answer: &PushResponse,
    ) -> Result<BTreeSet<Touched>, StoreError> {
        let outcomes: Vec<_> = answer.results.iter().map(|r| (r.id.clone(), r.outcome.clone())).collect();
        store.resolve(&outcomes)
    }

    /// A push failed: nothing was decided (only the app says no), so every write stays
    /// in the outbox, in order; the answer says what the loop does next.
    pub fn on_push_failed(
        &mut self,
        _store: &mut LocalStore,
        failure: &Failure,
        attempt: u32,
    ) -> AfterFailure {
        Self::after_failure(failure, attempt)
    }

    /// A query's snapshot arrived, exact at `cursor`. A snapshot of a query no longer
    /// subscribed (forgotten, refused) is not installed; one older than what the store
    /// pulled through would miss the changes in between: fetch it again.
    pub fn on_snapshot(
        &mut self,
        store: &mut LocalStore,
        query: &ValidatedQuery,
        rows: &[sync::Row],
        cursor: Cursor,
    ) -> Result<Snapshot, StoreError> {
        self.on_answer(store, query, rows, cursor, true)
    }

    /// [`Self::on_snapshot`] for any query: `complete` says whether the rows reach
    /// the answer's end. A windowed query's (`sync::window`) first pages then cover
    /// its order up to their last row, or to the end.
    pub fn on_answer(
        &mut self,
        store: &mut LocalStore,
        query: &ValidatedQuery,
        rows: &[sync::Row],
        cursor: Cursor,
        complete: bool,
    ) -> Result<Snapshot, StoreError> {
        let topic = query.topic.to_string();
        if !self.subscriptions.contains_key(&topic) {
            return Ok(Snapshot::NotWanted);
        }
        // An older answer overtaken by a newer one: installing it would bring back what
        // the newer one no longer had.
        if self.synced.contains(&topic) && self.cursors.get(&topic, Cursor::START) > cursor {
            return Ok(Snapshot::NotWanted);
        }
        // The store's cursor may start at the snapshot's only when no other query is
        // synced: it stands for what every synced query holds.
        let only_query = self.synced.iter().all(|synced| *synced == topic);
        let installed = match store.model().collection(&query.select.collection).cloned() {
            Some(collection) if query.select.limit.is_some() => {
                let coverage = Coverage::of_pages(&collection, &query.select, None, rows, complete);
                store.apply_window_snapshot(&query.select, rows, cursor, only_query, &coverage)
            }
            _ => store.apply_snapshot(&query.select, rows, cursor, only_query),
        };
        let touched = match installed {
            Ok(touched) => touched,
            Err(StoreError::StaleSnapshot { .. }) => return Ok(Snapshot::Stale),
            Err(error) => return Err(error),
        };
        // The query starts where its snapshot is exact: no pull reads its changes up
        // to there again.
        self.cursors.snapshot(&topic, cursor);
        self.synced.insert(topic);
        Ok(Snapshot::Installed(touched))
    }

    /// The request for the page after a synced window's covered part, when the
    /// window (`query.select`'s limit) holds fewer rows than its size and the covered
    /// part does not reach the end; with where that part ends (for
    /// [`Self::on_window_page`]). `None`: nothing to fetch.
    pub fn window_page_request(
        &self,
        store: &LocalStore,
        query: &ValidatedQuery,
    ) -> Result<Option<(QueryRequest, Vec<serde_json::Value>)>, StoreError> {
        if query.select.limit.is_none() || !self.synced.contains(query.topic.as_str()) {
            return Ok(None);
        }
        let read = store.query_window(&query.select)?;
        let (false, Some(crate::Reach::Until(after))) = (read.covered, read.reach) else { return Ok(None) };
        let request = QueryRequest {
            protocol_version: PROTOCOL_VERSION,
            client_id: store.client_id().to_string(),
            session_id: self.session_id.clone(),
            name: query.name.clone(),
            args: query.args.clone(),
            after: Some(QueryPage { after: after.clone(), served: read.rows.len() as u64 }),
            window: query.select.limit,
        };
        Ok(Some((request, after)))
    }

    /// The page after a synced window's covered part (`after`: where that part
    /// ended when it was asked for), to widen it or to fill it after rows left it.
    /// Dropped when the query is no longer subscribed.
    pub fn on_window_page(
        &mut self,
        store: &mut LocalStore,
        query: &ValidatedQuery,
        after: Vec<serde_json::Value>,
        rows: &[sync::Row],
        cursor: Cursor,
        complete: bool,
    ) -> Result<Snapshot, StoreError> {
        let topic = query.topic.to_string();
        if !self.synced.contains(&topic) {
            return Ok(Snapshot::NotWanted);
        }
        let Some(collection) = store.model().collection(&query.select.collection).cloned() else {
            return Ok(Snapshot::NotWanted);
        };
        let coverage = Coverage::of_pages(&collection, &query.select, Some(after), rows, complete);
        Ok(Snapshot::Installed(store.apply_window_page(&query.select, rows, cursor, &coverage)?))
    }

    /// The next pull: every subscribed query from where it stands. `None` until a
    /// snapshot is installed (there is nothing to pull onto).
    pub fn pull_request(&self, store: &LocalStore) -> Result<Option<PullRequest>, StoreError> {
        if self.subscriptions.is_empty() || self.synced.is_empty() {
            return Ok(None);
        }
        let cursor = store.cursor()?;
        let subscriptions = self
            .subscriptions
            .iter()
            .map(|(topic, subscription)| {
                let stands = self.cursors.get(topic, cursor);
                Subscription { cursor: (stands > cursor).then_some(stands), ..subscription.clone() }
            })
            .collect();
        Ok(Some(PullRequest {
            protocol_version: PROTOCOL_VERSION,
            client_id: store.client_id().to_string(),
            session_id: self.session_id.clone(),
            cursor,
            subscriptions,
        }))
    }

    /// A pull's page. Returns what it touched and whether more pages remain.
    pub fn on_pulled(
        &mut self,
        store: &mut LocalStore,
        request: &PullRequest,
        page: &PullResponse,
    ) -> Result<(BTreeSet<Touched>, bool), StoreError> {
        // The app's "no" to some of them: shown on those queries, left out of pulls.
        for refusal in &page.refused {
            if self.subscriptions.contains_key(&refusal.topic) {
                self.refused(&refusal.topic, refusal.reason.clone());
            }
        }
        let touched = store.apply_pull(&page.changes, page.cursor)?;
        let pulled: Vec<String> = self
            .subscriptions
            .iter()
            .filter(|(_, s)| request.subscriptions.iter().any(|r| r.name == s.name && r.args == s.args))
            .map(|(topic, _)| topic.clone())
            .collect();
        self.cursors.pulled(pulled.iter().map(String::as_str), page.cursor);
        Ok((touched, page.has_more))
    }

    /// A poke: its changes are installed at once (each record's newer image wins, as
    /// always) without moving the store's cursor. Returns what it touched and whether
    /// to pull: not when the changes follow what the client holds on their topic.
    pub fn on_poke(
        &mut self,
        store: &mut LocalStore,
        cursor: Cursor,
        changes: &[Change],
        topic: Option<&str>,
        since: Option<Cursor>,
    ) -> Result<(BTreeSet<Touched>, bool), StoreError> {
        let pulled = store.cursor()?;
        let mut touched = BTreeSet::new();
        if let Some(topic) = topic.filter(|topic| !self.subscriptions.contains_key(*topic)) {
            // A topic this client no longer reads (its unwatch was lost, or a pull
            // in flight watched it again): its rows were evicted and stay so, and the
            // session is told again.
            if !self.denied.contains_key(topic) {
                self.note_unwatch(topic);
            }
            return Ok((touched, false));
        }
        if !changes.is_empty() {
            let follows = match (topic, since) {
                (Some(topic), Some(since)) if self.subscriptions.contains_key(topic) => {
                    self.cursors.follow(topic, since, cursor, pulled)
                }
                _ => false,
            };
            touched = store.apply_pull(changes, pulled)?;
            if follows {
                return Ok((touched, false));
            }
        }
        Ok((touched, pulled < cursor))
    }

    /// What a loop does after `failure`; `attempt` counts the failures in a row.
    pub fn after_failure(failure: &Failure, attempt: u32) -> AfterFailure {
        match failure {
            Failure::Network(_) | Failure::Unavailable(_) => AfterFailure::Retry { attempt },
            Failure::NeedsAuth(_) => AfterFailure::WaitForSignIn,
            Failure::Resync(_) => AfterFailure::Resync,
            Failure::Fatal(_) => AfterFailure::Stop,
        }
    }

    /// A pull refused whole (one of its queries is no longer allowed): every query is
    /// fetched again on its own, so the refused ones are found (and left out of pulls)
    /// and the others sync on. Pulls wait for the first snapshot. Returns the queries
    /// to fetch.
    pub fn recheck(&mut self) -> Vec<Subscription> {
        self.synced.clear();
        self.subscriptions.values().cloned().collect()
    }

    /// `resync_required`: the cursor and the snapshots are forgotten (the outbox
    /// stays: pending writes still show and still go out). Returns the queries to
    /// fetch again; the first snapshot sets the cursor again.
    pub fn resync(&mut self, store: &mut LocalStore) -> Result<Vec<Subscription>, StoreError> {
        store.forget_cursor()?;
        self.synced.clear();
        self.cursors.clear();
        Ok(self.subscriptions.values().cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_app_says_no() {
        let body = |code: &str| format!(r#"{{"error":"{code}","reason":"r"}}"#);
        assert_eq!(
            Failure::from_status(503, &body("upstream_unavailable")),
            Failure::Unavailable("r".into())
        );
        assert_eq!(
            Failure::from_status(502, "bad gateway"),
            Failure::Unavailable("HTTP 502: bad gateway".into())
        );
        assert_eq!(Failure::from_status(429, &body("rate_limited")), Failure::Unavailable("r".into()));
        assert_eq!(Failure::from_status(401, &body(NEEDS_AUTH)), Failure::NeedsAuth("r".into()));
        assert_eq!(Failure::from_status(410, &body(RESYNC_REQUIRED)), Failure::Resync("r".into()));
        assert_eq!(Failure::from_status(403, &body("query_denied")), Failure::Fatal("r".into()));
        // A server that is not set up is retried like any 503, and says so.
        assert_eq!(Failure::from_status(503, &body(SCHEMA_MISMATCH)), Failure::Unavailable("r".into()));
        assert_eq!(Failure::server_not_ready(503, &body(SCHEMA_MISMATCH)), Some("r".into()));
        assert_eq!(Failure::server_not_ready(503, &body(NOT_CONFIGURED)), Some("r".into()));
        assert_eq!(Failure::server_not_ready(503, &body("upstream_unavailable")), None);
        assert_eq!(Failure::server_not_ready(503, "maintenance"), None);
        assert_eq!(
            SyncDriver::after_failure(&Failure::Unavailable("x".into()), 3),
            AfterFailure::Retry { attempt: 3 }
        );
        assert_eq!(
            SyncDriver::after_failure(&Failure::NeedsAuth("x".into()), 0),
            AfterFailure::WaitForSignIn
        );
    }

    #[test]
    fn backoff_doubles_to_thirty_seconds() {
        assert_eq!(backoff_ms(0, 0.0), 125);
        assert_eq!(backoff_ms(1, 0.999), 250 + 249);
        assert_eq!(backoff_ms(20, 0.0), 15_000);
    }
}
