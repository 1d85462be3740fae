//! The chat demo: its sync model ([`model`]) and its user interface (Leptos).
//!
//! Compiled twice: with `ssr` inside the Cloudflare Worker (renders HTML) and with
//! `hydrate` inside the browser bundle (attaches behaviour to that HTML).

mod chat;
mod explainer;
mod metrics;
pub mod model;

pub use chat::ServerRows;

use leptos::prelude::*;
use leptos_meta::{MetaTags, Stylesheet, Title, provide_meta_context};
use leptos_router::{
    components::{Route, Router, Routes},
    path,
};

/// Scopes this app's browser storage (OPFS directory, Web Lock, tabs channel,
/// offline cache) so other apps on the same origin keep theirs apart.
pub const APP_NAME: sync_client::AppName = sync_client::AppName("chat");

/// Name of the browser bundle: `pkg/{CLIENT_BUNDLE}.js` and `pkg/{CLIENT_BUNDLE}_bg.wasm`.
/// The build (`xtask build`) and the server's `LeptosOptions` both read it from here.
pub const CLIENT_BUNDLE: &str = "frontend";
/// Folder, under the static assets root, holding the client bundle.
pub const CLIENT_PKG_DIR: &str = "pkg";

/// The whole HTML document. Rendered on the server only.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <link rel="icon" type="image/svg+xml" href="/style/favicon.svg"/>
                <HydrationScripts options/>
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    #[cfg(feature = "hydrate")]
    browser::provide_sync_client();
    view! {
        <Stylesheet id="app-style" href="/style/main.css"/>
        <Title text="Serverless Sync: local-first chat"/>
        <Router>
            <Routes fallback=|| view! { <p data-testid="not-found">"Page not found."</p> }>
                <Route path=path!("/") view=chat::ChatPage/>
                <Route path=path!("/room/:room") view=chat::ChatPage/>
            </Routes>
        </Router>
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

    const TOKEN_KEY: &str = "chat:token";
    /// A cached token is renewed once it has less than this left (seconds).
    const RENEW_BEFORE_S: u64 = 600;

    #[derive(serde::Serialize, serde::Deserialize)]
    struct Token {
        token: String,
        name: String,
        expires_at: u64,
    }

    fn storage() -> Option<web_sys::Storage> {
        web_sys::window().and_then(|window| window.local_storage().ok().flatten())
    }

    fn stored_token(name: &str) -> Option<Token> {
        let text = storage()?.get_item(TOKEN_KEY).ok().flatten()?;
        serde_json::from_str::<Token>(&text).ok().filter(|token| token.name == name)
    }

    async fn fetch_token(name: &str) -> Result<Token, String> {
        let response = gloo_net::http::Request::post("/api/auth/guest")
            .json(&serde_json::json!({ "name": name }))
            .map_err(|e| e.to_string())?
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !response.ok() {
            return Err(response.text().await.unwrap_or_default());
        }
        response.json::<Token>().await.map_err(|e| e.to_string())
    }

    /// A token for `name`: the cached one while it is fresh, else a new one; offline,
    /// the cached one even if stale (local work goes on; the server says if it is too old).
    async fn token_for(name: &str) -> Result<String, String> {
        let now_s = (js_sys::Date::now() / 1000.0) as u64;
        if let Some(cached) = stored_token(name)
            && cached.expires_at > now_s + RENEW_BEFORE_S
        {
            return Ok(cached.token);
        }
        match fetch_token(name).await {
            Ok(fresh) => {
                if let (Some(storage), Ok(text)) = (storage(), serde_json::to_string(&fresh)) {
                    let _ = storage.set_item(TOKEN_KEY, &text);
                }
                Ok(fresh.token)
            }
            Err(error) => stored_token(name).map(|cached| cached.token).ok_or(error),
        }
    }

    /// Signs the sync worker in as `name` (again, after a rename).
    pub fn sign_in(client: sync_client::SyncClient, name: String) {
        leptos::task::spawn_local(async move {
            match token_for(&name).await {
                Ok(token) => {
                    if let Err(error) = client.start(token).await {
                        leptos::logging::error!("sync worker: {error}");
                    }
                }
                Err(error) => leptos::logging::error!("guest token: {error}"),
            }
        });
    }

    /// Spawns the SQLite worker and signs in as the stored display name.
    pub fn provide_sync_client() {
        let client = match sync_client::SyncClient::spawn("/pkg/db-worker.js") {
            Ok(client) => client,
            Err(error) => {
                leptos::logging::error!("cannot start the sync worker: {error}");
                return;
            }
        };
        provide_context(client.clone());
        sign_in(client, display_name());
    }
}
