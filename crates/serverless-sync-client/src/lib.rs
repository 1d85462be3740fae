//! The engine's browser side. Package `serverless-sync-client`, imported as
//! `sync_client`. A page reads through live queries and writes through typed handles:
//!
//! ```no_run
//! use leptos::prelude::*;
//! use sync_client::{use_mutator, use_query};
//! # use serde::{Deserialize, Serialize};
//! # use sync::{Inserts, Mutator, Query};
//! # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
//! # struct Note { id: String, board_id: String, text: String }
//! # #[derive(Debug, Clone, Serialize, Deserialize)]
//! # #[serde(rename_all = "camelCase")]
//! # struct BoardArgs { board_id: String }
//! # #[derive(Debug, Clone, Serialize, Deserialize)]
//! # #[serde(rename_all = "camelCase")]
//! # struct AddNote { board_id: String, text: String }
//! # const LIST_NOTES: Query<BoardArgs, Note> = Query::new("listNotes", "notes");
//! # const ADD_NOTE: Mutator<AddNote, Inserts> = Mutator::insert("addNote", "notes");
//! // LIST_NOTES and ADD_NOTE: the app's typed query and mutator (see the `sync` crate).
//! #[component]
//! fn Board(board_id: String) -> impl IntoView {
//!     let board = board_id.clone();
//!     // Rows from the browser's own SQLite at once, kept up to date as pokes arrive.
//!     let notes = use_query(&LIST_NOTES, move || BoardArgs { board_id: board.clone() });
//!     // A write shows at once (local SQLite + outbox), then syncs; a handle is Copy.
//!     let add = use_mutator(&ADD_NOTE);
//!     let on_add = move |_| {
//!         add.insert(AddNote { board_id: board_id.clone(), text: "hello".into() });
//!     };
//!     view! {
//!         <button on:click=on_add>"Add"</button>
//!         <ul>{move || notes.get().rows.into_iter().map(|note| view! { <li>{note.text}</li> }).collect_view()}</ul>
//!     }
//! }
//! ```
//!
//! - Hooks for Leptos components: [`use_query`] (a live, typed query),
//!   [`use_mutator`] (a typed write handle with pending / last-outcome signals),
//!   [`use_sync_status`], [`use_metrics`]. During server rendering they are inert.
//! - `SyncClient` (feature `hydrate`): the page's handle to the SQLite Web Worker;
//!   `SyncClient::spawn` it once and `provide_context` it.
//! - `start_db_worker` (feature `worker`, wasm32): the worker runtime itself: the
//!   local store on OPFS, the outbox push, pulls on pokes, one WebSocket, and the
//!   leader election between tabs. An app's worker entry is a few lines.
//! - [`SyncDevtools`] (feature `devtools`): an in-page panel (status, outbox,
//!   queries, timeline, local data with a read-only SQL console, timings), opened
//!   with Alt+Shift+D or `?devtools`; [`inspect`] is what it shows, as the worker
//!   keeps it.
//! - [`bridge`]: what the page and the worker say to each other.
//! - [`tabs`]: one tab's part in sharing the database between tabs (leader or
//!   follower, what is forwarded and sent again on a hand-over), plain code.
//! - `offline` (feature `hydrate`): the Service Worker that lets pages load offline.
//! - `guest` (feature `hydrate`): guest sign-in against `sync_server::guest`, for
//!   demos and templates.
//!
//! Every browser-side name (OPFS directory, Web Lock, BroadcastChannel, cache) is
//! scoped by the app's name, so two apps on one origin do not collide.

pub mod bridge;
pub mod inspect;
pub mod metrics;
pub mod tabs;
pub mod uses;

#[cfg(all(feature = "devtools", target_family = "wasm", target_os = "unknown"))]
mod devtools;
#[cfg(all(feature = "hydrate", target_family = "wasm", target_os = "unknown"))]
pub mod guest;
mod hooks;
#[cfg(feature = "hydrate")]
mod live;
#[cfg(feature = "hydrate")]
pub mod offline;
#[cfg(all(feature = "worker", target_family = "wasm", target_os = "unknown"))]
pub mod opfs;
#[cfg(feature = "hydrate")]
mod page;
#[cfg(any(feature = "devtools", feature = "worker", test))]
mod panel;
#[cfg(all(feature = "worker", target_family = "wasm", target_os = "unknown"))]
mod runtime;

pub use hooks::{
    LiveQuery, MutationResult, MutatorHandle, QueryOptions, QueryWindow, SyncDevtools, SyncStatusView,
    SyncWorkerPreload, ready_resource, use_metrics, use_mutator, use_query, use_query_resource,
    use_query_with, use_sync_status, use_windowed_query, use_windowed_query_with,
};
pub use metrics::{Metrics, Stat};
#[cfg(feature = "hydrate")]
pub use page::{SyncClient, new_id};
#[cfg(all(feature = "worker", target_family = "wasm", target_os = "unknown"))]
pub use runtime::start_db_worker;
pub use sync::typed::{Deletes, Inserts, Mutator, Query, Updates};

/// Names an app's browser-side resources. Page and worker must agree on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppName(pub &'static str);

impl AppName {
    /// OPFS directory holding the local database.
    pub fn opfs_directory(&self) -> String {
        format!("sync-{}", self.0)
    }

    /// Web Lock held by the tab whose worker owns the database.
    pub fn leader_lock(&self) -> String {
        format!("sync-{}:leader", self.0)
    }

    /// BroadcastChannel the tabs' workers talk on.
    pub fn tabs_channel(&self) -> String {
        format!("sync-{}:tabs", self.0)
    }

    /// `localStorage` key of the cached guest token.
    pub fn token_key(&self) -> String {
        format!("sync-{}:token", self.0)
    }

    /// Cache the Service Worker keeps pages and assets in (`sw.js?cache=...`).
    pub fn cache_name(&self) -> String {
        format!("sync-{}-v1", self.0)
    }
}
