//! The metrics panel: the three timings of the write path, live.

use leptos::prelude::*;

/// The three timings of the write path, live.
#[component]
pub fn MetricsPanel() -> impl IntoView {
    let metrics = sync_client::use_metrics();
    let row = move |label: &'static str,
                    id: &'static str,
                    pick: fn(&sync_client::Metrics) -> sync_client::Stat| {
        let stat = move || pick(&metrics.get());
        view! {
            <tr data-testid=format!("metric-{id}")>
                <th scope="row">{label}</th>
                <td data-testid=format!("metric-{id}-n")>{move || stat().count}</td>
                <td data-testid=format!("metric-{id}-last")>{move || format!("{:.1}", stat().last)}</td>
                <td data-testid=format!("metric-{id}-avg")>{move || format!("{:.1}", stat().average())}</td>
                <td data-testid=format!("metric-{id}-max")>{move || format!("{:.1}", stat().max)}</td>
            </tr>
        }
    };
    view! {
        <section class="metrics" aria-labelledby="metrics-title" data-testid="metrics">
            <h2 id="metrics-title">"Metrics"</h2>
            <table>
                <thead>
                    <tr>
                        <th scope="col">"Timing (ms)"</th>
                        <th scope="col">"N"</th>
                        <th scope="col">"Last"</th>
                        <th scope="col">"Avg"</th>
                        <th scope="col">"Max"</th>
                    </tr>
                </thead>
                <tbody>
                    {row("Local state update", "local-state-update", |m| m.local_state_update)}
                    {row("Local DB write", "local-db-write", |m| m.local_db_write)}
                    {row("Upstream DB write", "upstream-db-write", |m| m.upstream_db_write)}
                </tbody>
            </table>
            <dl class="metrics__legend">
                <dt>"Local state update"</dt>
                <dd>"From pressing Send to the message list showing the message."</dd>
                <dt>"Local DB write"</dt>
                <dd>"The SQLite transaction in the Web Worker: the row and its outbox entry."</dd>
                <dt>"Upstream DB write"</dt>
                <dd>"From sending the outbox to the connector until it confirmed the write upstream."</dd>
            </dl>
        </section>
    }
}
