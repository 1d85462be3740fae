//! The in-page devtools (feature `devtools`): a panel over the page that shows what
//! the sync engine is doing. Mounted in its own root beside the app (never part of the
//! server-rendered tree, so hydration is untouched), closed until asked for: the
//! keyboard shortcut Alt+Shift+D, or `?devtools` in the address. While open it asks
//! the SQLite Web Worker for an [`Inspection`] twice a second; closed, it costs nothing.

use leptos::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::Closure;

use crate::SyncClient;
use crate::bridge::{Reply, Request};
use crate::inspect::{EventKind, Inspection, OutboxState, RefreshKind, SqlAnswer};
use crate::metrics::{BUCKET_BOUNDS_MS, Stat};

/// How often an open panel reads the worker's state.
const REFRESH_MS: u64 = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tab {
    Status,
    Outbox,
    Queries,
    Timeline,
    Data,
    Timings,
}

impl Tab {
    const ALL: [Tab; 6] = [Tab::Status, Tab::Outbox, Tab::Queries, Tab::Timeline, Tab::Data, Tab::Timings];

    fn id(self) -> &'static str {
        match self {
            Tab::Status => "status",
            Tab::Outbox => "outbox",
            Tab::Queries => "queries",
            Tab::Timeline => "timeline",
            Tab::Data => "data",
            Tab::Timings => "timings",
        }
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

/// Mounts the panel for `client` in a root of its own at the end of `<body>`.
pub(crate) fn mount(client: SyncClient) {
    let Some(document) = web_sys::window().and_then(|window| window.document()) else { return };
    let (Ok(root), Some(body)) = (document.create_element("div"), document.body()) else { return };
    root.set_attribute("data-testid", "sync-devtools-root").ok();
    if body.append_child(&root).is_err() {
        return;
    }
    let Ok(root) = root.dyn_into::<web_sys::HtmlElement>() else { return };
    leptos::mount::mount_to(root, move || view! { <Panel client=client/> }).forget();
}

fn asked_for_in_address() -> bool {
    web_sys::window().and_then(|window| window.location().search().ok()).is_some_and(|search| {
        search.trim_start_matches('?').split('&').any(|pair| pair.split('=').next() == Some("devtools"))
    })
}

#[component]
fn Panel(client: SyncClient) -> impl IntoView {
    let open = RwSignal::new(asked_for_in_address());
    let tab = RwSignal::new(Tab::Status);
    let inspection = RwSignal::new(None::<Inspection>);
    let failure = RwSignal::new(None::<String>);

    // Alt+Shift+D opens and closes it.
    if let Some(window) = web_sys::window() {
        let on_key =
            Closure::<dyn FnMut(web_sys::KeyboardEvent)>::new(move |event: web_sys::KeyboardEvent| {
                if event.alt_key() && event.shift_key() && event.code() == "KeyD" {
                    event.prevent_default();
                    open.update(|open| *open = !*open);
                }
            });
        let _ = window.add_event_listener_with_callback("keydown", on_key.as_ref().unchecked_ref());
        // Lives as long as the page.
        on_key.forget();
    }

    // While open: read the worker's state now and every REFRESH_MS, one request at a time.
    let busy = StoredValue::new(false);
    let read = {
        let client = client.clone();
        move || {
            if busy.get_value() || !open.get_untracked() {
                return;
            }
            busy.set_value(true);
            let client = client.clone();
            leptos::task::spawn_local(async move {
                match client.request(Request::Inspect).await {
                    Ok(Reply::Inspected(now)) => {
                        inspection.set(Some(*now));
                        failure.set(None);
                    }
                    Ok(other) => failure.set(Some(format!("unexpected answer {other:?}"))),
                    Err(error) => failure.set(Some(error)),
                }
                busy.set_value(false);
            });
        }
    };
    let timer = StoredValue::new(None::<IntervalHandle>);
    Effect::new({
        let read = read.clone();
        move |_| {
            if open.get() {
                read();
                let read = read.clone();
                let handle =
                    set_interval_with_handle(read, std::time::Duration::from_millis(REFRESH_MS)).ok();
                timer.set_value(handle);
            } else if let Some(handle) = timer.get_value() {
                handle.clear();
                timer.set_value(None);
            }
        }
    });

    let console = ConsoleState {
        text: RwSignal::new(String::new()),
        answer: RwSignal::new(None),
        runs: RwSignal::new(0),
    };
    let status_client = client.clone();
    view! {
        <Show when=move || open.get()>
            <section class="sdt" data-testid="sync-devtools" role="dialog" aria-label="Sync devtools">
                <style>{STYLE}</style>
                <header class="sdt-head">
                    <strong class="sdt-title">"sync devtools"</strong>
                    <nav class="sdt-tabs" role="tablist">
                        {Tab::ALL
                            .into_iter()
                            .map(|this| {
                                view! {
                                    <button
                                        class="sdt-tab"
                                        role="tab"
                                        data-testid=format!("devtools-tab-{}", this.id())
                                        aria-selected=move || (tab.get() == this).to_string()
                                        on:click=move |_| tab.set(this)
                                    >
                                        {this.label()}
                                    </button>
                                }
                            })
                            .collect_view()}
                    </nav>
                    <button class="sdt-close" data-testid="devtools-close" aria-label="Close" on:click=move |_| open.set(false)>
                        "×"
                    </button>
                </header>
                <div class="sdt-body">
                    {move || failure.get().map(|error| view! { <p class="sdt-error" data-testid="devtools-failure">{error}</p> })}
                    {
                        // Built again on a tab switch only: what is typed (the timeline's
                        // filter, the console) keeps its focus while the data refreshes.
                        let client = status_client.clone();
                        let loaded = Memo::new(move |_| inspection.with(Option::is_some));
                        move || {
                            let client = client.clone();
                            let tab = tab.get();
                            if !loaded.get() && tab != Tab::Timings {
                                return view! { <p class="sdt-muted">"reading the worker..."</p> }.into_any();
                            }
                            match tab {
                                Tab::Timings => view! { <Timings client=client/> }.into_any(),
                                Tab::Status => {
                                    let leader = client.leader;
                                    (move || inspection.get().map(|now| status_view(leader.get(), now))).into_any()
                                }
                                Tab::Outbox => (move || inspection.get().map(outbox_view)).into_any(),
                                Tab::Queries => (move || inspection.get().map(queries_view)).into_any(),
                                Tab::Timeline => view! { <Timeline inspection=inspection/> }.into_any(),
                                Tab::Data => {
                                    view! { <Data client=client inspection=inspection console=console/> }.into_any()
                                }
                            }
                        }
                    }
                </div>
            </section>
        </Show>
    }
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

fn status_view(leader: Option<bool>, now: Inspection) -> impl IntoView {
    let behind = now.server_head.saturating_sub(now.synced_through);
    let rows: Vec<(&'static str, &'static str, String)> = vec![
        ("online", "Network", if now.online { "online".into() } else { "offline".into() }),
        ("leader", "This tab leads", leader.map_or("unknown", yes_no).into()),
        ("needs-auth", "Needs sign-in", yes_no(now.needs_auth).into()),
        ("storage", "Storage", format!("{:?}", now.storage).to_lowercase()),
        ("cursor", "Store cursor (pulled through)", now.cursor.to_string()),
        ("synced-through", "Queries synced through", now.synced_through.to_string()),
        ("head", "Server head (seen)", now.server_head.to_string()),
        ("behind", "Trails by", crate::inspect::count(behind as usize, "change")),
        ("last-poke", "Last poke", ago(now.at, now.last_poke_at)),
        ("last-pull", "Last pull", ago(now.at, now.last_pull_at)),
        (
            "outbox-count",
            "Queued writes",
            now.outbox
                .iter()
                .filter(|item| !matches!(item.state, OutboxState::Rejected { .. }))
                .count()
                .to_string(),
        ),
        ("schema", "Local schema", now.schema_version.clone()),
        ("client-id", "Client id", now.client_id.clone()),
        ("server", "Server", now.server_not_ready.clone().unwrap_or_else(|| "ready".into())),
        ("last-error", "Last error", now.last_error.clone().unwrap_or_else(|| "none".into())),
    ];
    view! {
        <table class="sdt-table" data-testid="devtools-status">
            <tbody>
                {rows
                    .into_iter()
                    .map(|(id, label, value)| {
                        view! {
                            <tr>
                                <th>{label}</th>
                                <td data-testid=format!("devtools-{id}")>{value}</td>
                            </tr>
                        }
                    })
                    .collect_view()}
            </tbody>
        </table>
    }
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

fn outbox_view(now: Inspection) -> impl IntoView {
    if now.outbox.is_empty() {
        return view! { <p class="sdt-muted" data-testid="devtools-outbox-empty">"The outbox is empty: every write is confirmed."</p> }
            .into_any();
    }
    view! {
        <table class="sdt-table" data-testid="devtools-outbox">
            <thead>
                <tr><th>"mutator"</th><th>"args"</th><th>"record"</th><th>"state"</th></tr>
            </thead>
            <tbody>
                {now
                    .outbox
                    .into_iter()
                    .map(|item| {
                        let (state, text) = state_text(&item.state, now.at);
                        view! {
                            <tr data-testid="devtools-outbox-item" data-state=state data-mutation-id=item.mutation_id.clone()>
                                <td>{item.name}</td>
                                <td class="sdt-json">{item.args.to_string()}</td>
                                <td>{item.record_id}</td>
                                <td data-testid="devtools-outbox-state">{text}</td>
                            </tr>
                        }
                    })
                    .collect_view()}
            </tbody>
        </table>
    }
    .into_any()
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

fn queries_view(now: Inspection) -> impl IntoView {
    if now.queries.is_empty() {
        return view! { <p class="sdt-muted" data-testid="devtools-queries-empty">"No live query."</p> }
            .into_any();
    }
    view! {
        <table class="sdt-table" data-testid="devtools-queries">
            <thead>
                <tr><th>"query"</th><th>"args"</th><th>"rows"</th><th>"cursor"</th><th>"synced"</th><th>"last refreshed by"</th><th>"error"</th></tr>
            </thead>
            <tbody>
                {now
                    .queries
                    .into_iter()
                    .map(|query| {
                        let refresh = query
                            .last_refresh
                            .map(|refresh| format!("{} ({})", refresh_text(refresh.by), ago(now.at, Some(refresh.at))))
                            .unwrap_or_else(|| "-".into());
                        let (name, topic, title) = (query.name.clone(), query.topic.clone(), query.topic.clone());
                        view! {
                            <tr data-testid="devtools-query" data-name=name data-topic=topic>
                                <td title=title>{query.name}</td>
                                <td class="sdt-json">{query.args.to_string()}</td>
                                <td data-testid="devtools-query-rows">{query.rows}</td>
                                <td>{query.cursor}</td>
                                <td>{yes_no(query.synced)}</td>
                                <td data-testid="devtools-query-refresh">{refresh}</td>
                                <td data-testid="devtools-query-error">{query.error.unwrap_or_default()}</td>
                            </tr>
                        }
                    })
                    .collect_view()}
            </tbody>
        </table>
    }
    .into_any()
}

#[component]
fn Timeline(inspection: RwSignal<Option<Inspection>>) -> impl IntoView {
    let filter = RwSignal::new(String::new());
    view! {
        <div data-testid="devtools-timeline">
            <input
                class="sdt-input"
                data-testid="devtools-timeline-filter"
                placeholder="filter: push, pull, poke, snapshot, resync, sign-in, socket, or any text"
                prop:value=move || filter.get()
                on:input=move |event| filter.set(event_target_value(&event))
            />
            <table class="sdt-table">
                <thead>
                    <tr><th>"when"</th><th>"event"</th><th>"ms"</th><th>"what"</th></tr>
                </thead>
                <tbody>
                    {move || {
                        let needle = filter.get().to_lowercase();
                        let Some(now) = inspection.get() else { return ().into_any() };
                        let at = now.at;
                        now.timeline
                            .iter()
                            .rev()
                            .filter(|event| {
                                needle.is_empty()
                                    || event.kind.label().contains(&needle)
                                    || event.detail.to_lowercase().contains(&needle)
                            })
                            .map(|event| {
                                let kind: EventKind = event.kind;
                                view! {
                                    <tr data-testid="devtools-event" data-kind=kind.label()>
                                        <td>{ago(at, Some(event.at))}</td>
                                        <td>{kind.label()}</td>
                                        <td>{event.ms.map(|ms| format!("{ms:.1}")).unwrap_or_default()}</td>
                                        <td>{event.detail.clone()}</td>
                                    </tr>
                                }
                            })
                            .collect_view()
                            .into_any()
                    }}
                </tbody>
            </table>
        </div>
    }
}

#[component]
fn Data(
    client: SyncClient,
    inspection: RwSignal<Option<Inspection>>,
    console: ConsoleState,
) -> impl IntoView {
    let sql = console;
    let run = move |_| {
        let client = client.clone();
        let text = sql.text.get_untracked();
        sql.answer.set(None);
        leptos::task::spawn_local(async move {
            let answer = match client.request(Request::Sql { sql: text }).await {
                Ok(Reply::SqlRows(rows)) => Ok(rows),
                Ok(other) => Err(format!("unexpected answer {other:?}")),
                Err(error) => Err(error),
            };
            sql.runs.update(|runs| *runs += 1);
            sql.answer.set(Some(answer));
        });
    };
    view! {
        <div class="sdt-data" data-testid="devtools-data">
            <table class="sdt-table sdt-tables">
                <thead><tr><th>"table"</th><th>"rows"</th></tr></thead>
                <tbody>
                    {move || {
                        inspection
                            .get()
                            .map(|now| now.tables)
                            .unwrap_or_default()
                            .into_iter()
                            .map(|table| {
                                let name = table.name.clone();
                                view! {
                                    <tr data-testid="devtools-table" data-name=name>
                                        <td>{table.name}</td>
                                        <td data-testid="devtools-table-rows">{table.rows}</td>
                                    </tr>
                                }
                            })
                            .collect_view()
                    }}
                </tbody>
            </table>
            <div class="sdt-console">
                <textarea
                    class="sdt-input"
                    data-testid="devtools-sql"
                    rows="3"
                    placeholder="SELECT count(*) FROM sync_outbox"
                    prop:value=move || sql.text.get()
                    on:input=move |event| sql.text.set(event_target_value(&event))
                ></textarea>
                <button class="sdt-run" data-testid="devtools-sql-run" data-runs=move || sql.runs.get() on:click=run>
                    "Run (read-only)"
                </button>
                {move || {
                    let run = sql.runs.get();
                    sql.answer.get().map(|answer| match answer {
                        Ok(rows) => sql_table(rows, run).into_any(),
                        Err(error) => {
                            view! { <p class="sdt-error" data-testid="devtools-sql-error" data-run=run>{error}</p> }
                                .into_any()
                        }
                    })
                }}
            </div>
        </div>
    }
}

/// The console's text and last answer, kept while the panel re-renders (twice a second).
#[derive(Clone, Copy)]
struct ConsoleState {
    text: RwSignal<String>,
    answer: RwSignal<Option<Result<SqlAnswer, String>>>,
    /// Statements run so far: each answer is marked with its run (`data-run`).
    runs: RwSignal<u32>,
}

fn sql_table(answer: SqlAnswer, run: u32) -> impl IntoView {
    let note = answer.truncated.then(|| view! { <p class="sdt-muted">"only the first rows are shown"</p> });
    view! {
        <table class="sdt-table" data-testid="devtools-sql-result" data-run=run>
            <thead>
                <tr>{answer.columns.into_iter().map(|column| view! { <th>{column}</th> }).collect_view()}</tr>
            </thead>
            <tbody>
                {answer
                    .rows
                    .into_iter()
                    .map(|row| {
                        view! {
                            <tr>
                                {row
                                    .into_iter()
                                    .map(|cell| {
                                        let text = match cell {
                                            serde_json::Value::String(text) => text,
                                            other => other.to_string(),
                                        };
                                        view! { <td>{text}</td> }
                                    })
                                    .collect_view()}
                            </tr>
                        }
                    })
                    .collect_view()}
            </tbody>
        </table>
        {note}
    }
}

#[component]
fn Timings(client: SyncClient) -> impl IntoView {
    let metrics = client.metrics;
    view! {
        <div class="sdt-timings" data-testid="devtools-timings">
            {move || {
                let now = metrics.get();
                [
                    ("local-state-update", "click -> row in this page", now.local_state_update),
                    ("local-db-write", "local SQLite write (row + outbox)", now.local_db_write),
                    ("upstream-db-write", "push -> server's answer", now.upstream_db_write),
                    ("send-to-render", "another client's send -> rendered here", now.send_to_render),
                ]
                    .into_iter()
                    .map(|(id, label, stat)| histogram(id, label, stat))
                    .collect_view()
            }}
        </div>
    }
}

fn histogram(id: &'static str, label: &'static str, stat: Stat) -> impl IntoView {
    let tallest = stat.buckets.iter().copied().max().unwrap_or(0).max(1);
    let bucket_label = |index: usize| match index {
        0 => format!("<{}", BUCKET_BOUNDS_MS[0]),
        index if index == BUCKET_BOUNDS_MS.len() => format!(">={}", BUCKET_BOUNDS_MS[index - 1]),
        index => format!("<{}", BUCKET_BOUNDS_MS[index]),
    };
    view! {
        <figure class="sdt-timing" data-testid="devtools-timing" data-name=id data-count=stat.count>
            <figcaption>
                <strong>{label}</strong>
                <span class="sdt-muted">
                    {format!(
                        " n={} last={:.1} avg={:.1} max={:.1} ms",
                        stat.count,
                        stat.last,
                        stat.average(),
                        stat.max,
                    )}
                </span>
            </figcaption>
            <div class="sdt-bars">
                {stat
                    .buckets
                    .iter()
                    .enumerate()
                    .map(|(index, count)| {
                        let height = (*count as f64 / tallest as f64 * 100.0).round();
                        view! {
                            <div class="sdt-bar" title=format!("{} ms: {count}", bucket_label(index))>
                                <span style=format!("height:{height}%")></span>
                                <small>{bucket_label(index)}</small>
                            </div>
                        }
                    })
                    .collect_view()}
            </div>
        </figure>
    }
}

const STYLE: &str = r#"
.sdt{position:fixed;left:0;right:0;bottom:0;height:45vh;z-index:2147483000;display:flex;flex-direction:column;
  background:#10141a;color:#d8dee9;font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;
  border-top:2px solid #5e81ac;box-shadow:0 -4px 16px rgba(0,0,0,.35)}
.sdt-head{display:flex;align-items:center;gap:8px;padding:4px 8px;background:#1b2029;overflow-x:auto}
.sdt-title{color:#88c0d0;white-space:nowrap}
.sdt-tabs{display:flex;gap:2px;flex:1}
.sdt-tab,.sdt-close,.sdt-run{background:#2e3440;color:#d8dee9;border:1px solid #3b4252;border-radius:3px;
  padding:2px 8px;font:inherit;cursor:pointer;white-space:nowrap}
.sdt-tab[aria-selected=true]{background:#5e81ac;color:#fff}
.sdt-body{flex:1;overflow:auto;padding:6px 8px}
.sdt-table{border-collapse:collapse;width:100%}
.sdt-table th,.sdt-table td{border-bottom:1px solid #2e3440;padding:2px 6px;text-align:left;vertical-align:top}
.sdt-table th{color:#81a1c1;font-weight:normal}
.sdt-table td:first-child{white-space:nowrap}
.sdt-json{max-width:28em;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.sdt-muted{color:#7b8394}
.sdt-error{color:#bf616a}
.sdt-input{width:100%;box-sizing:border-box;background:#0b0e13;color:inherit;border:1px solid #3b4252;font:inherit;padding:3px}
.sdt-data{display:flex;gap:12px;flex-wrap:wrap}
.sdt-tables{width:auto;min-width:14em}
.sdt-console{flex:1;min-width:16em}
.sdt-timings{display:grid;grid-template-columns:repeat(auto-fill,minmax(260px,1fr));gap:10px}
.sdt-timing{margin:0}
.sdt-bars{display:flex;align-items:flex-end;gap:2px;height:70px;margin-top:4px}
.sdt-bar{flex:1;display:flex;flex-direction:column;justify-content:flex-end;height:100%;text-align:center}
.sdt-bar span{display:block;background:#88c0d0;min-height:1px}
.sdt-bar small{font-size:9px;color:#7b8394}
@media (max-width:600px){.sdt{height:60vh}.sdt-title{display:none}}
"#;
