//! The devtools panel's HTML, as plain functions: the SQLite Web Worker renders a
//! tab's content from what it knows ([`Inspection`], [`content`]) and the console's
//! answers ([`sql_answer`]); the page renders only the frame and the timings it
//! measures ([`frame`], [`timings`]) and puts the strings in place (`devtools`).
//! So the page's bundle carries neither the inspection's types nor their rendering.
//! Every text that comes from data (args, rows, reasons, names) is escaped: a row
//! holding `<script>` shows as text.
// The worker's bundle uses the content renderers, the page's the frame and timings.
#![cfg_attr(not(all(feature = "devtools", feature = "worker")), allow(dead_code))]

use std::fmt::Write as _;

use crate::inspect::{Inspection, OutboxState, RefreshKind, count};
use crate::metrics::{BUCKET_BOUNDS_MS, Metrics, Stat};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    Status,
    Outbox,
    Queries,
    Timeline,
    Data,
    Timings,
}

impl Tab {
    pub const ALL: [Tab; 6] =
        [Tab::Status, Tab::Outbox, Tab::Queries, Tab::Timeline, Tab::Data, Tab::Timings];

    pub fn id(self) -> &'static str {
        match self {
            Tab::Status => "status",
            Tab::Outbox => "outbox",
            Tab::Queries => "queries",
            Tab::Timeline => "timeline",
            Tab::Data => "data",
            Tab::Timings => "timings",
        }
    }

    pub fn from_id(id: &str) -> Option<Tab> {
        Tab::ALL.into_iter().find(|tab| tab.id() == id)
    }

    fn label(self) -> &'static str {
        match self {
            Tab::Status => "Status",
            Tab::Outbox => "Outbox",
            Tab::Queries => "Queries",
            Tab::Timeline => "Timeline",
            Tab::Data => "Data",
            Tab::Timings => "Timings",
        }
    }
}

/// Text as HTML: `&`, `<`, `>`, `"` and `'` escaped.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The panel's frame: the tabs (the current one selected), the close button, the
/// controls of the tab (they stay while the content refreshes: the timeline's filter,
/// the console) and an empty content area.
pub fn frame(tab: Tab, filter: &str, sql: &str) -> String {
    let mut html = format!(
        "<section class=\"sdt\" data-testid=\"sync-devtools\" role=\"dialog\" aria-label=\"Sync devtools\"><style>{STYLE}</style>\
         <header class=\"sdt-head\"><strong class=\"sdt-title\">sync devtools</strong><nav class=\"sdt-tabs\" role=\"tablist\">"
    );
    for this in Tab::ALL {
        let _ = write!(
            html,
            "<button class=\"sdt-tab\" role=\"tab\" data-tab=\"{id}\" data-testid=\"devtools-tab-{id}\" aria-selected=\"{selected}\">{label}</button>",
            id = this.id(),
            selected = this == tab,
            label = this.label(),
        );
    }
    html.push_str(
        "</nav><button class=\"sdt-close\" data-action=\"close\" data-testid=\"devtools-close\" aria-label=\"Close\">×</button></header><div class=\"sdt-body\">",
    );
    match tab {
        Tab::Timeline => {
            let _ = write!(
                html,
                "<input class=\"sdt-input\" data-testid=\"devtools-timeline-filter\" data-input=\"filter\" \
                 placeholder=\"filter: push, pull, poke, snapshot, resync, sign-in, socket, or any text\" value=\"{}\">",
                esc(filter)
            );
        }
        Tab::Data => {
            let _ = write!(
                html,
                "<div class=\"sdt-console\"><textarea class=\"sdt-input\" data-testid=\"devtools-sql\" data-input=\"sql\" rows=\"3\" \
                 placeholder=\"SELECT count(*) FROM sync_outbox\">{}</textarea>\
                 <button class=\"sdt-run\" data-action=\"run\" data-testid=\"devtools-sql-run\" data-runs=\"0\">Run (read-only)</button>\
                 <div class=\"sdt-answer\"></div></div>",
                esc(sql)
            );
        }
        _ => {}
    }
    html.push_str("<div class=\"sdt-content\"></div></div></section>");
    html
}

/// The content area of `tab` from what the worker knows (the timings are the
/// page's: [`timings`]).
pub fn content(tab: Tab, now: &Inspection, leader: Option<bool>, filter: &str) -> String {
    match tab {
        Tab::Status => status(now, leader),
        Tab::Outbox => outbox(now),
        Tab::Queries => queries(now),
        Tab::Timeline => timeline(now, filter),
        Tab::Data => tables(now),
        Tab::Timings => String::new(),
    }
}

/// Shown until the worker's first answer.
pub const READING: &str = "<p class=\"sdt-muted\">reading the worker...</p>";

pub fn failure(error: &str) -> String {
    format!("<p class=\"sdt-error\" data-testid=\"devtools-failure\">{}</p>", esc(error))
}

fn ago(now: f64, then: Option<f64>) -> String {
    match then {
        None => "never".into(),
        Some(then) => {
            let seconds = ((now - then) / 1000.0).max(0.0);
            if seconds < 60.0 {
                format!("{seconds:.1} s ago")
            } else {
                format!("{:.0} min ago", seconds / 60.0)
            }
        }
    }
}

fn yes_no(value: bool) -> &'static str {
    if value { "yes" } else { "no" }
}

fn status(now: &Inspection, leader: Option<bool>) -> String {
    let behind = now.server_head.saturating_sub(now.synced_through);
    let queued = now.outbox.iter().filter(|item| !matches!(item.state, OutboxState::Rejected { .. })).count();
    let rows: [(&str, &str, String); 15] = [
        ("online", "Network", if now.online { "online".into() } else { "offline".into() }),
        ("leader", "This tab leads", leader.map_or("unknown", yes_no).into()),
        ("needs-auth", "Needs sign-in", yes_no(now.needs_auth).into()),
        ("storage", "Storage", format!("{:?}", now.storage).to_lowercase()),
        ("cursor", "Store cursor (pulled through)", now.cursor.to_string()),
        ("synced-through", "Queries synced through", now.synced_through.to_string()),
        ("head", "Server head (seen)", now.server_head.to_string()),
        ("behind", "Trails by (at most)", count(usize::try_from(behind).unwrap_or(usize::MAX), "change")),
        ("last-poke", "Last poke", ago(now.at, now.last_poke_at)),
        ("last-pull", "Last pull", ago(now.at, now.last_pull_at)),
        ("outbox-count", "Queued writes", queued.to_string()),
        ("schema", "Local schema", now.schema_version.clone()),
        ("client-id", "Client id", now.client_id.clone()),
        ("server", "Server", now.server_not_ready.clone().unwrap_or_else(|| "ready".into())),
        ("last-error", "Last error", now.last_error.clone().unwrap_or_else(|| "none".into())),
    ];
    let mut html = String::from("<table class=\"sdt-table\" data-testid=\"devtools-status\"><tbody>");
    for (id, label, value) in rows {
        let _ =
            write!(html, "<tr><th>{label}</th><td data-testid=\"devtools-{id}\">{}</td></tr>", esc(&value));
    }
    html.push_str("</tbody></table>");
    html
}

fn state_text(state: &OutboxState, now: f64) -> (&'static str, String) {
    match state {
        OutboxState::Local => ("local", "local".into()),
        OutboxState::Sending => ("sending", "sending".into()),
        OutboxState::Retrying { attempt, next_try_at, reason } => (
            "retrying",
            format!(
                "retrying (attempt {attempt}, next in {:.1} s): {reason}",
                ((next_try_at - now) / 1000.0).max(0.0)
            ),
        ),
        OutboxState::Rejected { reason } => ("rejected", format!("rejected: {reason}")),
    }
}

fn outbox(now: &Inspection) -> String {
    if now.outbox.is_empty() {
        return "<p class=\"sdt-muted\" data-testid=\"devtools-outbox-empty\">The outbox is empty: every write is confirmed.</p>"
            .into();
    }
    let mut html = String::from(
        "<table class=\"sdt-table\" data-testid=\"devtools-outbox\"><thead><tr><th>mutator</th><th>args</th><th>record</th><th>state</th></tr></thead><tbody>",
    );
    for item in &now.outbox {
        let (state, text) = state_text(&item.state, now.at);
        let _ = write!(
            html,
            "<tr data-testid=\"devtools-outbox-item\" data-state=\"{state}\" data-mutation-id=\"{}\"><td>{}</td><td class=\"sdt-json\">{}</td><td>{}</td><td data-testid=\"devtools-outbox-state\">{}</td></tr>",
            esc(&item.mutation_id),
            esc(&item.name),
            esc(&item.args.to_string()),
            esc(&item.record_id),
            esc(&text),
        );
    }
    html.push_str("</tbody></table>");
    html
}

fn refresh_text(kind: RefreshKind) -> &'static str {
    match kind {
        RefreshKind::Poke => "poke with rows",
        RefreshKind::Pull => "pull",
        RefreshKind::Snapshot => "snapshot",
        RefreshKind::LocalWrite => "local write",
        RefreshKind::PushAnswer => "push answer",
    }
}

fn queries(now: &Inspection) -> String {
    if now.queries.is_empty() {
        return "<p class=\"sdt-muted\" data-testid=\"devtools-queries-empty\">No live query.</p>".into();
    }
    let mut html = String::from(
        "<table class=\"sdt-table\" data-testid=\"devtools-queries\"><thead><tr><th>query</th><th>args</th><th>rows</th><th>cursor</th><th>synced</th><th>last refreshed by</th><th>error</th></tr></thead><tbody>",
    );
    for query in &now.queries {
        let refresh = query
            .last_refresh
            .as_ref()
            .map(|refresh| format!("{} ({})", refresh_text(refresh.by), ago(now.at, Some(refresh.at))))
            .unwrap_or_else(|| "-".into());
        let _ = write!(
            html,
            "<tr data-testid=\"devtools-query\" data-name=\"{name}\" data-topic=\"{topic}\"><td title=\"{topic}\">{name}</td><td class=\"sdt-json\">{}</td>\
             <td data-testid=\"devtools-query-rows\">{}</td><td>{}</td><td>{}</td><td data-testid=\"devtools-query-refresh\">{}</td>\
             <td data-testid=\"devtools-query-error\">{}</td></tr>",
            esc(&query.args.to_string()),
            query.rows,
            query.cursor,
            yes_no(query.synced),
            esc(&refresh),
            esc(query.error.as_deref().unwrap_or_default()),
            name = esc(&query.name),
            topic = esc(&query.topic),
        );
    }
    html.push_str("</tbody></table>");
    html
}

fn timeline(now: &Inspection, filter: &str) -> String {
    let needle = filter.trim().to_lowercase();
    let mut html = String::from(
        "<table class=\"sdt-table\" data-testid=\"devtools-timeline\"><thead><tr><th>when</th><th>event</th><th>ms</th><th>what</th></tr></thead><tbody>",
    );
    let shown = now.timeline.iter().rev().filter(|event| {
        needle.is_empty()
            || event.kind.label().contains(&needle)
            || event.detail.to_lowercase().contains(&needle)
    });
    for event in shown {
        let _ = write!(
            html,
            "<tr data-testid=\"devtools-event\" data-kind=\"{kind}\"><td>{}</td><td>{kind}</td><td>{}</td><td>{}</td></tr>",
            ago(now.at, Some(event.at)),
            event.ms.map(|ms| format!("{ms:.1}")).unwrap_or_default(),
            esc(&event.detail),
            kind = event.kind.label(),
        );
    }
    html.push_str("</tbody></table>");
    html
}

fn tables(now: &Inspection) -> String {
    let mut html = String::from(
        "<table class=\"sdt-table sdt-tables\" data-testid=\"devtools-data\"><thead><tr><th>table</th><th>rows</th></tr></thead><tbody>",
    );
    for table in &now.tables {
        let _ = write!(
            html,
            "<tr data-testid=\"devtools-table\" data-name=\"{name}\"><td>{name}</td><td data-testid=\"devtools-table-rows\">{}</td></tr>",
            table.rows,
            name = esc(&table.name),
        );
    }
    html.push_str("</tbody></table>");
    html
}

/// The console's answer to its run number `run`: the rows the store's console read
/// (`sync_store::inspect::SqlRows`), with a note when only the first are shown.
pub fn sql_rows(columns: &[String], rows: &[Vec<serde_json::Value>], truncated: bool, run: u32) -> String {
    let mut html = format!(
        "<table class=\"sdt-table\" data-testid=\"devtools-sql-result\" data-run=\"{run}\"><thead><tr>"
    );
    for column in columns {
        let _ = write!(html, "<th>{}</th>", esc(column));
    }
    html.push_str("</tr></thead><tbody>");
    for row in rows {
        html.push_str("<tr>");
        for cell in row {
            let text = match cell {
                serde_json::Value::String(text) => esc(text),
                other => esc(&other.to_string()),
            };
            let _ = write!(html, "<td>{text}</td>");
        }
        html.push_str("</tr>");
    }
    html.push_str("</tbody></table>");
    if truncated {
        html.push_str("<p class=\"sdt-muted\">only the first rows are shown</p>");
    }
    html
}

/// The console's refusal or failure for its run number `run`.
pub fn sql_error(error: &str, run: u32) -> String {
    format!("<p class=\"sdt-error\" data-testid=\"devtools-sql-error\" data-run=\"{run}\">{}</p>", esc(error))
}

/// The timings this page measured, as histograms.
pub fn timings(metrics: &Metrics) -> String {
    let mut html = String::from("<div class=\"sdt-timings\" data-testid=\"devtools-timings\">");
    for (id, label, stat) in [
        ("local-state-update", "click -> row in this page", &metrics.local_state_update),
        ("local-db-write", "local SQLite write (row + outbox)", &metrics.local_db_write),
        ("upstream-db-write", "push -> server's answer", &metrics.upstream_db_write),
        ("send-to-render", "another client's send -> rendered here", &metrics.send_to_render),
    ] {
        histogram(&mut html, id, label, stat);
    }
    html.push_str("</div>");
    html
}

fn histogram(html: &mut String, id: &str, label: &str, stat: &Stat) {
    let tallest = stat.buckets.iter().copied().max().unwrap_or(0).max(1);
    let _ = write!(
        html,
        "<figure class=\"sdt-timing\" data-testid=\"devtools-timing\" data-name=\"{id}\" data-count=\"{}\"><figcaption><strong>{label}</strong>\
         <span class=\"sdt-muted\"> n={} last={:.1} avg={:.1} max={:.1} ms</span></figcaption><div class=\"sdt-bars\">",
        stat.count,
        stat.count,
        stat.last,
        stat.average(),
        stat.max,
    );
    for (index, bucket) in stat.buckets.iter().enumerate() {
        let bound = match index {
            0 => format!("<{}", BUCKET_BOUNDS_MS[0]),
            index if index == BUCKET_BOUNDS_MS.len() => format!(">={}", BUCKET_BOUNDS_MS[index - 1]),
            index => format!("<{}", BUCKET_BOUNDS_MS[index]),
        };
        let height = (*bucket as f64 / tallest as f64 * 100.0).round();
        let _ = write!(
            html,
            "<div class=\"sdt-bar\" title=\"{bound} ms: {bucket}\"><span style=\"height:{height}%\"></span><small>{}</small></div>",
            esc(&bound),
            bound = esc(&bound),
        );
    }
    html.push_str("</div></figure>");
}

const STYLE: &str = "\
.sdt{position:fixed;left:0;right:0;bottom:0;height:45vh;z-index:2147483000;display:flex;flex-direction:column;\
background:#10141a;color:#d8dee9;font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;\
border-top:2px solid #5e81ac;box-shadow:0 -4px 16px rgba(0,0,0,.35)}\
.sdt-head{display:flex;align-items:center;gap:8px;padding:4px 8px;background:#1b2029;overflow-x:auto}\
.sdt-title{color:#88c0d0;white-space:nowrap}\
.sdt-tabs{display:flex;gap:2px;flex:1}\
.sdt-tab,.sdt-close,.sdt-run{background:#2e3440;color:#d8dee9;border:1px solid #3b4252;border-radius:3px;\
padding:2px 8px;font:inherit;cursor:pointer;white-space:nowrap}\
.sdt-tab[aria-selected=true]{background:#5e81ac;color:#fff}\
.sdt-body{flex:1;overflow:auto;padding:6px 8px}\
.sdt-table{border-collapse:collapse;width:100%}\
.sdt-table th,.sdt-table td{border-bottom:1px solid #2e3440;padding:2px 6px;text-align:left;vertical-align:top}\
.sdt-table td:last-child{overflow-wrap:anywhere}\
.sdt-table th{color:#81a1c1;font-weight:normal}\
.sdt-table td:first-child{white-space:nowrap}\
.sdt-json{max-width:28em;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}\
.sdt-muted{color:#7b8394}\
.sdt-error{color:#bf616a}\
.sdt-input{width:100%;box-sizing:border-box;background:#0b0e13;color:inherit;border:1px solid #3b4252;font:inherit;padding:3px}\
.sdt-console{margin-bottom:8px}\
.sdt-tables{width:auto;min-width:14em}\
.sdt-timings{display:grid;grid-template-columns:repeat(auto-fill,minmax(260px,1fr));gap:10px}\
.sdt-timing{margin:0}\
.sdt-bars{display:flex;align-items:flex-end;gap:2px;height:70px;margin-top:4px}\
.sdt-bar{flex:1;display:flex;flex-direction:column;justify-content:flex-end;height:100%;text-align:center}\
.sdt-bar span{display:block;background:#88c0d0;min-height:1px}\
.sdt-bar small{font-size:9px;color:#7b8394}\
@media (max-width:600px){.sdt{height:60vh}.sdt-title{display:none}}";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bridge::Storage;
    use crate::inspect::{OutboxItem, QueryItem, TableCount};

    fn inspection() -> Inspection {
        Inspection {
            at: 10_000.0,
            client_id: "client_1".into(),
            online: true,
            needs_auth: false,
            storage: Storage::Opfs,
            schema_version: "abc".into(),
            cursor: 3,
            server_head: 9,
            synced_through: 7,
            last_poke_at: Some(9_000.0),
            last_pull_at: None,
            last_error: None,
            server_not_ready: None,
            outbox: vec![OutboxItem {
                mutation_id: "outbox_1".into(),
                name: "add".into(),
                args: serde_json::json!({ "text": "<script>alert(1)</script>" }),
                record_id: "r\"1".into(),
                state: OutboxState::Rejected { reason: "a <b>bad</b> one".into() },
            }],
            queries: vec![QueryItem {
                topic: "list{\"id\":\"<x>\"}".into(),
                name: "list".into(),
                args: serde_json::json!({ "id": "<x>" }),
                rows: 4,
                cursor: 7,
                synced: true,
                last_refresh: None,
                error: None,
            }],
            timeline: Vec::new(),
            tables: vec![TableCount { name: "notes".into(), rows: 4 }],
        }
    }

    #[test]
    fn data_is_escaped_everywhere() {
        let now = inspection();
        for tab in Tab::ALL {
            let html = content(tab, &now, Some(true), "<i>");
            assert!(
                !html.contains("<script>") && !html.contains("<b>") && !html.contains("<x>"),
                "{tab:?}: {html}"
            );
        }
        let html = content(Tab::Outbox, &now, None, "");
        assert!(
            html.contains("&lt;script&gt;")
                && html.contains("data-state=\"rejected\"")
                && html.contains("r&quot;1")
        );
        assert!(frame(Tab::Timeline, "\"><script>", "").contains("value=\"&quot;&gt;&lt;script&gt;\""));
        assert!(frame(Tab::Data, "", "</textarea><script>").contains("&lt;/textarea&gt;&lt;script&gt;"));
        let html = sql_rows(&["<c>".into()], &[vec![serde_json::json!("<v>")]], true, 2);
        assert!(html.contains("&lt;c&gt;") && html.contains("&lt;v&gt;") && html.contains("data-run=\"2\""));
        assert!(sql_error("<e>", 3).contains("&lt;e&gt;") && sql_error("", 3).contains("data-run=\"3\""));
        assert!(failure("<x>").contains("&lt;x&gt;"));
        let mut metrics = Metrics::default();
        metrics.send_to_render.record(12.0);
        assert!(timings(&metrics).contains("data-name=\"send-to-render\" data-count=\"1\""));
    }

    #[test]
    fn status_says_how_far_the_queries_trail() {
        let html = content(Tab::Status, &inspection(), Some(false), "");
        assert!(html.contains("data-testid=\"devtools-behind\">2 changes<"), "{html}");
        assert!(html.contains("data-testid=\"devtools-leader\">no<"));
        assert!(html.contains("data-testid=\"devtools-outbox-count\">0<"), "a rejected write is not queued");
        assert!(html.contains("data-testid=\"devtools-last-poke\">1.0 s ago<"));
    }

    #[test]
    fn the_frame_marks_the_selected_tab_and_tabs_round_trip() {
        let html = frame(Tab::Queries, "", "");
        assert!(
            html.contains("data-tab=\"queries\" data-testid=\"devtools-tab-queries\" aria-selected=\"true\"")
        );
        assert!(
            html.contains("data-tab=\"status\" data-testid=\"devtools-tab-status\" aria-selected=\"false\"")
        );
        for tab in Tab::ALL {
            assert_eq!(Tab::from_id(tab.id()), Some(tab));
        }
    }
}
