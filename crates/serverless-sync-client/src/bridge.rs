//! The bridge between the page and the SQLite Web Worker: JSON strings over
//! `postMessage`.
//! Every request carries an id; the worker answers each with a [`FromWorker::Reply`]
//! of the same id, and emits events (changes, resolutions, status) on its own.
//!
//! Between tabs: every tab has its own worker, but only the leader's (elected with a
//! Web Lock) opens the database. The others forward requests to it over a
//! `BroadcastChannel` as [`TabMessage`]s and relay its events to their page.

use serde::{Deserialize, Serialize};
use sync::protocol::push::MutationOutcome;
use sync::schema::Row;
use sync::view::RecordView;

/// How long a query no page shows stays synced, and its rows kept, by default: five
/// minutes after its last use (in the spirit of Zero's query TTL).
pub const QUERY_TTL_MS: u64 = 5 * 60 * 1000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToWorker {
    pub id: u32,
    pub request: Request,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    /// Opens the database and starts syncing as the user holding `token`.
    /// `query_ttl_ms`: how long a query no page uses stays synced, and its rows kept
    /// (default [`QUERY_TTL_MS`]).
    Start {
        token: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        query_ttl_ms: Option<u64>,
    },
    /// Runs a named query on the local rows and keeps it synced. `window`: a windowed
    /// query's size (`sync::window`; default its own limit). `holder`: the live view
    /// showing it (one query at a time per holder), which keeps it in use until
    /// [`Request::Release`]; without one (a preload) it is kept for its time to live.
    /// `ttl_ms`: this query's time to live (default the client's).
    Query {
        name: String,
        args: serde_json::Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        window: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        holder: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ttl_ms: Option<u64>,
    },
    /// The view `holder` is gone: its query's time to live starts.
    Release { holder: String },
    /// Applies a named mutation locally and queues it. The ids are chosen by the page
    /// so that sending the same request twice applies it once; so is the time
    /// (`now_ms`), so the row the worker writes is the one the page already shows.
    Mutate {
        name: String,
        args: serde_json::Value,
        mutation_id: String,
        record_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        now_ms: Option<i64>,
    },
    /// The app may now allow what it refused (say, the user just joined a group):
    /// refused queries are asked again.
    AskAgain,
    /// The page's browser went offline or came back (its `online`/`offline` events,
    /// which a worker does not always get, and an open socket does not notice).
    Network { online: bool },
    /// The devtools' tab `tab` (its id) as HTML, rendered by the worker from what it
    /// knows ([`crate::inspect::Inspection`]): the page's bundle carries neither the
    /// inspection's types nor their rendering. `leader`: the asking tab's role.
    #[cfg(any(feature = "devtools", feature = "worker", test))]
    Inspect { tab: String, filter: String, leader: Option<bool> },
    /// The devtools' console: one read-only SELECT on the local database; the answer
    /// as HTML, marked with `run`.
    #[cfg(any(feature = "devtools", feature = "worker", test))]
    Sql { sql: String, run: u32 },
}

/// When a poke reached the SQLite worker and when its changes were stored there (ms
/// since the epoch).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PokeTiming {
    pub received_at: f64,
    pub stored_at: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FromWorker {
    /// The worker's wasm is loaded; requests may be sent.
    Ready,
    Reply {
        id: u32,
        result: Result<Reply, String>,
    },
    /// Visible rows of these collections changed. With `records`, exactly these
    /// records (their visible image now, and whether they are pending): live views
    /// apply them in place. Without, views of these collections (all views, when the
    /// list is empty) read their query again.
    Changed {
        collections: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        records: Option<Vec<RecordView>>,
        /// When another client made the newest write among them (ms since the epoch,
        /// from its mutation id): the page times send -> render with it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sent_at: Option<f64>,
        /// For a poke: when this worker read it from the socket, and when its changes
        /// were stored (ms since the epoch), so a receiver's time splits into the
        /// way here, the local store, and the page.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        poke_timing: Option<PokeTiming>,
    },
    /// The server answered a mutation.
    Resolved {
        mutation_id: String,
        outcome: MutationOutcome,
        /// Send -> answer time; `None` when the answer is replayed from the store.
        upstream_ms: Option<f64>,
    },
    Status(Status),
    /// This tab's worker holds the database (`true`) or forwards to the one that does.
    Role {
        leader: bool,
    },
}

/// Worker <-> worker traffic on the tabs' `BroadcastChannel`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TabMessage {
    /// A follower forwards its page's request to the leader.
    Request { tab: String, id: u32, request: Request },
    /// The leader's answer to `tab`'s request `id`.
    Reply { tab: String, id: u32, result: Result<Reply, String> },
    /// An event of the leader, for every page.
    Event { event: FromWorker },
    /// `tab` has just become the leader: re-send what it has not answered.
    Leader { tab: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Reply {
    Started {
        client_id: String,
        storage: Storage,
    },
    /// `synced`: the server's rows for this query have been installed since the
    /// worker started (until then an empty answer may just mean "not fetched yet").
    /// `error`: why the server refused this query (its callback said no), if it did.
    Rows {
        rows: Vec<Row>,
        pending: Vec<String>,
        synced: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        /// A windowed query: rows of it follow the window (held, or on the server).
        #[serde(default)]
        more: bool,
    },
    Mutated {
        mutation_id: String,
        record_id: String,
        local_write_ms: f64,
    },
    /// Refused queries will be asked again.
    Asking,
    /// The network's state is noted.
    Noted,
    /// The devtools' answer, as HTML (`crate::panel`).
    #[cfg(any(feature = "devtools", feature = "worker", test))]
    Html {
        html: String,
    },
}

/// Where the local database lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Storage {
    /// Origin Private File System: survives reloads.
    Opfs,
    /// In memory: OPFS is unavailable (private window, old browser, another tab holds it).
    Memory,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub online: bool,
    pub storage: Storage,
    pub outbox: usize,
    pub cursor: u64,
    pub last_error: Option<String>,
    /// The server wants a new sign-in: pushes and pulls wait for a new token.
    #[serde(default)]
    pub needs_auth: bool,
    /// The server answers that it is not set up (503 `schema_mismatch` or
    /// `not_configured`): why. Requests keep being retried; show this, not "online".
    #[serde(default)]
    pub server_not_ready: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bridge_traffic_round_trips_as_json() {
        let events = vec![
            FromWorker::Ready,
            FromWorker::Reply {
                id: 3,
                result: Ok(Reply::Rows {
                    rows: vec![],
                    pending: vec!["m".into()],
                    synced: true,
                    error: Some("denied".into()),
                    more: true,
                }),
            },
            FromWorker::Reply { id: 4, result: Err("nope".into()) },
            FromWorker::Changed {
                collections: vec!["items".into()],
                records: None,
                sent_at: Some(1.5),
                poke_timing: Some(PokeTiming { received_at: 2.0, stored_at: 3.5 }),
            },
            FromWorker::Changed {
                collections: vec!["items".into()],
                records: Some(vec![RecordView {
                    collection: "items".into(),
                    record_id: "items_1".into(),
                    row: Some(Row::from_iter([("id".to_string(), serde_json::json!("items_1"))])),
                    pending: true,
                }]),
                sent_at: None,
                poke_timing: None,
            },
            FromWorker::Resolved {
                mutation_id: "outbox_1".into(),
                outcome: MutationOutcome::Rejected { reason: "too long".into() },
                upstream_ms: Some(4.5),
            },
            FromWorker::Status(Status {
                online: true,
                storage: Storage::Opfs,
                outbox: 2,
                cursor: 9,
                last_error: None,
                needs_auth: true,
                server_not_ready: Some("table notes lacks column(s) text".into()),
            }),
            FromWorker::Role { leader: false },
            FromWorker::Reply { id: 5, result: Ok(Reply::Html { html: "<p>3</p>".into() }) },
        ];
        for event in events {
            let text = serde_json::to_string(&event).expect("serializes");
            assert_eq!(serde_json::from_str::<FromWorker>(&text).expect("parses"), event);
        }
        let request = ToWorker {
            id: 1,
            request: Request::Query {
                name: "q".into(),
                args: serde_json::json!({}),
                window: Some(400),
                holder: Some("page_1:0".into()),
                ttl_ms: Some(60_000),
            },
        };
        let text = serde_json::to_string(&request).expect("serializes");
        assert_eq!(serde_json::from_str::<ToWorker>(&text).expect("parses"), request);
        let tabs = vec![
            TabMessage::Request {
                tab: "t1".into(),
                id: 7,
                request: Request::Mutate {
                    name: "addItem".into(),
                    args: serde_json::json!({"body": "hi"}),
                    mutation_id: "outbox_1".into(),
                    record_id: "items_1".into(),
                    now_ms: Some(1_700_000_000_000),
                },
            },
            TabMessage::Reply { tab: "t1".into(), id: 7, result: Err("refused".into()) },
            TabMessage::Event {
                event: FromWorker::Changed {
                    collections: vec![],
                    records: None,
                    sent_at: None,
                    poke_timing: None,
                },
            },
            TabMessage::Leader { tab: "t2".into() },
        ];
        for message in tabs {
            let text = serde_json::to_string(&message).expect("serializes");
            assert_eq!(serde_json::from_str::<TabMessage>(&text).expect("parses"), message);
        }
    }
}
