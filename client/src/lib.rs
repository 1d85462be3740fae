//! The client SDK.
//!
//! - [`messages`]: what the page and the SQLite Web Worker say to each other;
//! - [`SyncClient`] (page side, feature `hydrate`): spawns the worker, sends requests,
//!   turns its events into signals;
//! - [`use_query`] / [`use_mutator`]: the Leptos hooks components use.

pub mod messages;

mod hooks;
#[cfg(feature = "hydrate")]
mod page;

pub use hooks::{MutationState, QueryState, SyncStatusView, use_mutator, use_query, use_sync_status};
#[cfg(feature = "hydrate")]
pub use page::SyncClient;
