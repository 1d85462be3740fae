//! What the worker tells an operator. Every request served by [`crate::serve`] and
//! every Durable Object event leaves one JSON log line (Workers Logs, `wrangler tail`),
//! and, when the app binds Workers Analytics Engine as [`METRICS_BINDING`], one data
//! point. Lines carry timings, counts and a hash of the client id: never a token, a
//! key, a secret or a row.
//!
//! A request's [`Trace`] travels with it (an axum extension): the connector's handlers
//! get an [`Engine`](crate::Engine) that adds each upstream call's and each callback's
//! time to it, and the counts they know (mutations, changes, rows).

use std::sync::{Arc, Mutex};

use serde::Serialize;
use sha2::{Digest, Sha256};

/// The optional Workers Analytics Engine binding the engine writes one data point to
/// per request and per poke (see README "Operate it" for the queries).
pub const METRICS_BINDING: &str = "SYNC_METRICS";

/// Milliseconds since the epoch (in a worker it moves across I/O only, which is what
/// is timed here: the upstream, the callbacks, object calls).
pub fn clock_ms() -> f64 {
    #[cfg(target_family = "wasm")]
    {
        worker::Date::now().as_millis() as f64
    }
    #[cfg(not(target_family = "wasm"))]
    {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |elapsed| elapsed.as_secs_f64() * 1000.0)
    }
}

/// A short, stable, one-way name for a client id: lines about one client can be
/// followed without the id itself.
pub fn client_hash(client_id: &str) -> String {
    let digest = Sha256::digest(client_id.as_bytes());
    digest[..6].iter().map(|byte| format!("{byte:02x}")).collect()
}

/// What a request's log line says besides its route and status.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Measures {
    pub upstream_ms: f64,
    pub upstream_calls: u32,
    pub callback_ms: f64,
    pub callbacks: u32,
    pub mutations: u32,
    /// Mutations the app refused (answered `rejected`).
    pub rejected: u32,
    pub changes: u32,
    pub rows: u32,
    /// On D1, what it reported (and bills): rows read, rows written, statements run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub d1_rows_read: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub d1_rows_written: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub d1_statements: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
}

/// One request's measures, shared by the handler that fills them and [`crate::serve`],
/// which logs them.
#[derive(Debug, Clone, Default)]
pub struct Trace(Arc<Mutex<Measures>>);

impl Trace {
    fn update(&self, f: impl FnOnce(&mut Measures)) {
        if let Ok(mut measures) = self.0.lock() {
            f(&mut measures);
        }
    }

    pub fn upstream(&self, ms: f64) {
        self.update(|m| {
            m.upstream_ms += ms;
            m.upstream_calls += 1;
        });
    }

    pub fn callback(&self, ms: f64) {
        self.update(|m| {
            m.callback_ms += ms;
            m.callbacks += 1;
        });
    }

    pub fn d1(&self, rows_read: u64, rows_written: u64, statements: u64) {
        self.update(|m| {
            *m.d1_rows_read.get_or_insert(0) += rows_read;
            *m.d1_rows_written.get_or_insert(0) += rows_written;
            *m.d1_statements.get_or_insert(0) += statements;
        });
    }

    pub fn client(&self, client_id: &str) {
        self.update(|m| m.client = Some(client_hash(client_id)));
    }

    pub fn counts(&self, mutations: usize, changes: usize, rows: usize) {
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        self.update(|m| {
            m.mutations += count(mutations);
            m.changes += count(changes);
            m.rows += count(rows);
        });
    }

    pub fn rejected(&self, count: usize) {
        self.update(|m| m.rejected += u32::try_from(count).unwrap_or(u32::MAX));
    }

    pub fn measures(&self) -> Measures {
        self.0.lock().map(|measures| measures.clone()).unwrap_or_default()
    }
}

/// The error code a response carries, for its log line (set by `ApiError`).
#[derive(Debug, Clone, Copy)]
pub struct ErrorCode(pub &'static str);

/// One request's log line.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RequestLine {
    pub event: &'static str,
    pub method: String,
    /// The path, never the query string (a socket's ticket travels there).
    pub route: String,
    pub status: u16,
    /// When the request began, ms since the epoch: lines of one write (its push, its
    /// topic's fan-out) line up in time.
    pub at: f64,
    pub ms: f64,
    #[serde(flatten)]
    pub measures: Measures,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'static str>,
}

impl RequestLine {
    pub fn new(
        method: &str,
        path: &str,
        status: u16,
        (at, ms): (f64, f64),
        measures: Measures,
        error: Option<&'static str>,
    ) -> Self {
        Self {
            event: "request",
            method: method.to_string(),
            route: route_of(path),
            status,
            at: at.round(),
            ms: round(ms),
            measures: Measures {
                upstream_ms: round(measures.upstream_ms),
                callback_ms: round(measures.callback_ms),
                ..measures
            },
            error,
        }
    }
}

/// The route a path is counted under: `/sync/*` and `/api/*` paths as they are,
/// anything else (pages, assets, which may name a record or a user) cut to its first
/// segment.
pub fn route_of(path: &str) -> String {
    let path = path.split(['?', '#']).next().unwrap_or_default();
    if path.starts_with("/sync/") || path.starts_with("/api/") || path == "/" {
        return path.chars().take(64).collect();
    }
    let first = path.trim_start_matches('/').split('/').next().unwrap_or_default();
    format!("/{}", first.chars().take(32).collect::<String>())
}

fn round(ms: f64) -> f64 {
    (ms * 10.0).round() / 10.0
}

/// One Durable Object event's log line: `object` (`session`, `subscription`,
/// `watcher`), what happened, and its numbers.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ObjectLine<'a> {
    pub event: &'static str,
    pub object: &'static str,
    pub action: &'a str,
    /// When the event began, ms since the epoch.
    pub at: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ms: Option<f64>,
    /// Sockets a poke went to, rows it carried, listeners left...
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    pub counts: serde_json::Map<String, serde_json::Value>,
}

/// Writes a line to the worker's log (standard output natively).
pub fn log_line(line: &impl Serialize) {
    if let Ok(text) = serde_json::to_string(line) {
        #[cfg(target_family = "wasm")]
        worker::console_log!("{text}");
        #[cfg(not(target_family = "wasm"))]
        println!("{text}");
    }
}

/// Logs a Durable Object event with its counts.
pub fn object_event(object: &'static str, action: &str, ms: Option<f64>, counts: &[(&str, u64)]) {
    let counts =
        counts.iter().map(|(name, value)| ((*name).to_string(), serde_json::Value::from(*value))).collect();
    let at = (clock_ms() - ms.unwrap_or(0.0)).round();
    log_line(&ObjectLine { event: "object", object, action, at, ms: ms.map(round), counts });
}

/// Writes a request's data point to Analytics Engine, when bound: blobs (route,
/// status class, error code), doubles (ms, upstream ms, callback ms, mutations,
/// changes, rows, status), index: the route.
pub fn request_point(env: &worker::Env, line: &RequestLine) {
    let Ok(dataset) = env.analytics_engine(METRICS_BINDING) else { return };
    let point = worker::AnalyticsEngineDataPointBuilder::new()
        .indexes([line.route.as_str()])
        .add_blob(line.route.as_str())
        .add_blob(line.method.as_str())
        .add_blob(line.error.unwrap_or(""))
        .add_double(line.ms)
        .add_double(line.measures.upstream_ms)
        .add_double(line.measures.callback_ms)
        .add_double(f64::from(line.measures.mutations))
        .add_double(f64::from(line.measures.changes))
        .add_double(f64::from(line.measures.rows))
        .add_double(f64::from(line.status))
        .add_double(f64::from(line.measures.rejected))
        .add_double(line.measures.d1_rows_read.unwrap_or(0) as f64)
        .add_double(line.measures.d1_rows_written.unwrap_or(0) as f64)
        .add_double(line.measures.d1_statements.unwrap_or(0) as f64)
        .build();
    if let Err(error) = dataset.write_data_point(&point) {
        crate::log::error(&format!("{METRICS_BINDING}: {error}"));
    }
}

/// Writes a Durable Object event's data point, when bound: index and blob1
/// `object:<object>`, blob2 the action, double1 ms, then the counts' values in order
/// (the same counts as its log line).
pub fn object_point(env: &worker::Env, object: &str, action: &str, ms: f64, counts: &[(&str, u64)]) {
    let Ok(dataset) = env.analytics_engine(METRICS_BINDING) else { return };
    let kind = format!("object:{object}");
    let point = worker::AnalyticsEngineDataPointBuilder::new()
        .indexes([kind.as_str()])
        .add_blob(kind.as_str())
        .add_blob(action)
        .add_double(ms)
        .doubles(counts.iter().map(|(_, count)| *count as f64))
        .build();
    if let Err(error) = dataset.write_data_point(&point) {
        crate::log::error(&format!("{METRICS_BINDING}: {error}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_keep_engine_paths_and_cut_pages() {
        assert_eq!(route_of("/sync/socket?ticket=secret"), "/sync/socket");
        assert_eq!(route_of("/sync/push"), "/sync/push");
        assert_eq!(route_of("/board/board_01H/secret-name"), "/board");
        assert_eq!(route_of("/"), "/");
        assert_eq!(route_of("/pkg/app.js"), "/pkg");
    }

    #[test]
    fn a_line_has_the_documented_fields_and_no_client_id() {
        let trace = Trace::default();
        trace.client("client_01HXYZ");
        trace.upstream(3.04);
        trace.upstream(2.0);
        trace.callback(1.26);
        trace.counts(2, 2, 0);
        trace.d1(3, 4, 5);
        trace.d1(1, 1, 1);
        let line =
            RequestLine::new("POST", "/sync/push", 200, (1_700_000_000_000.4, 12.34), trace.measures(), None);
        let json = serde_json::to_value(&line).expect("serializes");
        for field in [
            "event",
            "method",
            "route",
            "status",
            "at",
            "ms",
            "upstream_ms",
            "upstream_calls",
            "callback_ms",
            "callbacks",
            "mutations",
            "rejected",
            "changes",
            "rows",
            "client",
        ] {
            assert!(json.get(field).is_some(), "{field} missing from {json}");
        }
        assert_eq!(json["upstream_ms"], 5.0);
        assert_eq!(json["upstream_calls"], 2);
        assert_eq!(
            (json["d1_rows_read"].clone(), json["d1_rows_written"].clone(), json["d1_statements"].clone()),
            (4.into(), 5.into(), 6.into())
        );
        let untouched = RequestLine::new("GET", "/", 200, (1.0, 1.0), Trace::default().measures(), None);
        assert!(
            serde_json::to_value(&untouched).expect("serializes").get("d1_rows_read").is_none(),
            "only where D1 answered"
        );
        assert_eq!(json["ms"], 12.3);
        assert_eq!(json["at"], 1_700_000_000_000.0);
        assert_eq!(json["client"], client_hash("client_01HXYZ"));
        assert!(!json.to_string().contains("client_01HXYZ"));
        assert_eq!(client_hash("client_01HXYZ").len(), 12);
    }
}
