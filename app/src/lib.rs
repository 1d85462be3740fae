//! The chat demo: its sync model ([`model`]) and its user interface (Leptos).
//!
//! Compiled twice: with `ssr` inside the Cloudflare Worker (renders HTML) and with
//! `hydrate` inside the browser bundle (attaches behaviour to that HTML).

mod address;
mod chat;
mod explainer;
mod metrics;
pub mod model;

pub use address::Address;
pub use chat::ServerRows;

use leptos::prelude::*;

/// Scopes this app's browser storage (OPFS directory, Web Lock, tabs channel,
/// offline cache) so other apps on the same origin keep theirs apart.
pub const APP_NAME: sync_client::AppName = sync_client::AppName("chat");

/// This browser's subject (the identity of its sign-in), once known: it marks the
/// messages this user may edit and signs the ones they send. `None` while server
/// rendering and until hydration has run (the first paint matches the server's).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Me(pub RwSignal<Option<String>>);

/// Name of the browser bundle: `pkg/{CLIENT_BUNDLE}.js` and `pkg/{CLIENT_BUNDLE}_bg.wasm`.
/// The build (`xtask build`) and the server's `LeptosOptions` both read it from here.
pub const CLIENT_BUNDLE: &str = "frontend";
/// Folder, under the static assets root, holding the client bundle.
pub const CLIENT_PKG_DIR: &str = "pkg";

/// The SQLite Web Worker's module script (built by `cargo xtask build`).
pub const DB_WORKER_SCRIPT: &str = "/pkg/db-worker.js";

/// The whole HTML document. Rendered on the server only.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <link rel="icon" type="image/svg+xml" href="/style/favicon.svg"/>
                // The SQLite worker starts loading now, beside the page's own bundle.
                <sync_client::SyncWorkerPreload src=DB_WORKER_SCRIPT/>
                // Static head: written by the server only, so the page's bundle
                // carries no head management.
                <title>"Serverless Sync: local-first chat"</title>
                <link rel="stylesheet" id="app-style" href="/style/main.css"/>
                <HydrationScripts options/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

#[component]
pub fn App() -> impl IntoView {
    #[cfg(feature = "hydrate")]
    browser::provide_sync_client();
    view! {
        // One page: its room comes from the address (`address`), no router.
        <chat::ChatPage/>
        // Alt+Shift+D or ?devtools: the engine's panel (nothing when the feature is off).
        <sync_client::SyncDevtools/>
    }
}

/// Browser-only glue: the display name, the guest token, the sync worker.
#[cfg(feature = "hydrate")]
pub(crate) mod browser {
    use leptos::prelude::*;

    const NAME_KEY: &str = "chat:name";

    pub fn display_name() -> String {
        let stored = web_sys::window()
            .and_then(|window| window.local_storage().ok().flatten())
            .and_then(|storage| storage.get_item(NAME_KEY).ok().flatten());
        stored.unwrap_or_else(|| {
            let name = format!("Guest-{:04}", (js_sys::Math::random() * 10_000.0) as u32);
            remember_name(&name);
            name
        })
    }

    pub fn remember_name(name: &str) {
        if let Some(storage) = web_sys::window().and_then(|window| window.local_storage().ok().flatten()) {
            let _ = storage.set_item(NAME_KEY, name);
        }
    }

    /// Signs the sync worker in as `name` (again, after a rename), keeping the
    /// subject; `me` learns it.
    pub fn sign_in(client: sync_client::SyncClient, me: crate::Me, name: String) {
        sync_client::guest::sign_in_then(client, crate::APP_NAME, name, move |identity| {
            me.0.set(Some(identity.subject));
        });
    }

    /// The subject of the cached sign-in, if any.
    pub fn cached_subject() -> Option<String> {
        sync_client::guest::identity(crate::APP_NAME).map(|identity| identity.subject)
    }

    /// Spawns the SQLite worker and signs in as the stored display name.
    pub fn provide_sync_client() {
        let me = crate::Me(RwSignal::new(None));
        provide_context(me);
        let client = match sync_client::SyncClient::spawn(crate::DB_WORKER_SCRIPT, crate::model::chat_model())
        {
            Ok(client) => client,
            Err(error) => {
                leptos::logging::error!("cannot start the sync worker: {error}");
                return;
            }
        };
        provide_context(client.clone());
        sign_in(client, me, display_name());
    }
}
