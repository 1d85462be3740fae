//! The client SDK.
//!
//! - [`messages`]: what the page and the SQLite Web Worker say to each other;
//! - [`SyncClient`] (page side, feature `hydrate`): spawns the worker, sends requests,
//!   turns its events into signals;
//! - [`use_query`] / [`use_mutator`]: the Leptos hooks components use;
//! - `offline` (feature `hydrate`): the Service Worker that lets pages load offline.

pub mod messages;
pub mod metrics;

mod hooks;
#[cfg(feature = "hydrate")]
pub mod offline;
#[cfg(feature = "hydrate")]
mod page;

pub use hooks::{
    MutationState, QueryState, SyncStatusView, use_metrics, use_mutator, use_query, use_sync_status,
};
pub use metrics::{Metrics, Stat};
#[cfg(feature = "hydrate")]
pub use page::{SyncClient, new_id};
