//! The hooks components use. In the browser (feature `hydrate`) they talk to the
//! [`crate::SyncClient`] in context; during server rendering they are inert.

use leptos::prelude::*;
use sync::protocol::push::MutationOutcome;
use sync::schema::Row;

use crate::messages::Status;
#[cfg(feature = "hydrate")]
use crate::messages::{Reply, Request};

/// What a live query shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueryState {
    /// The visible rows: confirmed, with pending local writes applied.
    pub rows: Vec<Row>,
    /// Record ids with writes not yet confirmed by the server.
    pub pending: Vec<String>,
    /// True until the first local answer.
    pub loading: bool,
    /// The server's rows for this query reached the local store (see `Reply::Rows`).
    pub synced: bool,
    pub error: Option<String>,
}

/// The connection as the UI shows it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SyncStatusView {
    pub status: Option<Status>,
    pub storage: Option<crate::messages::Storage>,
    /// `Some(true)`: this tab holds the database; `Some(false)`: another tab does.
    pub leader: Option<bool>,
}

/// A live named query. `args` is reactive: a change re-runs the query.
pub fn use_query(
    name: &'static str,
    args: impl Fn() -> serde_json::Value + Send + Sync + 'static,
) -> ReadSignal<QueryState> {
    let (state, set_state) = signal(QueryState { loading: true, ..QueryState::default() });
    #[cfg(feature = "hydrate")]
    if let Some(client) = use_context::<crate::SyncClient>() {
        let generation = StoredValue::new(0u64);
        Effect::new(move |_| {
            let args = args();
            client.changes.track();
            if !client.started.get() {
                return;
            }
            generation.update_value(|g| *g += 1);
            let mine = generation.get_value();
            let client = client.clone();
            leptos::task::spawn_local(async move {
                let answer = client.request(Request::Query { name: name.into(), args }).await;
                // A newer run started meanwhile: its answer is the one to show.
                if generation.get_value() != mine {
                    return;
                }
                match answer {
                    Ok(Reply::Rows { rows, pending, synced }) => {
                        set_state.set(QueryState { rows, pending, loading: false, synced, error: None });
                        // The state now shows the latest local write: time it.
                        if let Some(started) = client.update_started.get_untracked() {
                            client.update_started.set(None);
                            let elapsed = crate::page::now_ms() - started;
                            client.metrics.update(|m| m.local_state_update.record(elapsed));
                        }
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
    let _ = (name, args, set_state);
    state
}

/// The outcome of one mutator call, once the server answered.
#[derive(Debug, Clone, PartialEq)]
pub struct MutationState {
    pub mutation_id: String,
    pub record_id: String,
    pub outcome: MutationOutcome,
}

/// A named mutator: `call(args)` applies the write locally at once and resolves when
/// the server confirmed or rejected it. `Err` means it was refused locally.
#[derive(Clone)]
pub struct Mutator {
    name: &'static str,
    #[cfg(feature = "hydrate")]
    client: Option<crate::SyncClient>,
}

impl Mutator {
    pub async fn call(&self, args: serde_json::Value) -> Result<MutationState, String> {
        #[cfg(feature = "hydrate")]
        {
            let client = self.client.clone().ok_or("no sync client in context")?;
            client.update_started.set(Some(crate::page::now_ms()));
            let (mutation_id, record_id, local_write_ms) = match client.mutate(self.name, args).await {
                Ok(applied) => applied,
                Err(error) => {
                    // Refused locally: nothing changed, nothing to time.
                    client.update_started.set(None);
                    return Err(error);
                }
            };
            client.metrics.update(|m| m.local_db_write.record(local_write_ms));
            let outcome = client.resolution(&mutation_id).await?;
            Ok(MutationState { mutation_id, record_id, outcome })
        }
        #[cfg(not(feature = "hydrate"))]
        {
            let _ = args;
            Err(format!("{} can only run in the browser", self.name))
        }
    }
}

pub fn use_mutator(name: &'static str) -> Mutator {
    Mutator {
        name,
        #[cfg(feature = "hydrate")]
        client: use_context::<crate::SyncClient>(),
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
