//! The chat demo: its sync model ([`model`]) and its user interface (Leptos).
//!
//! Compiled twice: with `ssr` inside the Cloudflare Worker (renders HTML) and with
//! `hydrate` inside the browser bundle (attaches behaviour to that HTML).

pub mod model;

use leptos::prelude::*;
use leptos_meta::{MetaTags, Stylesheet, Title, provide_meta_context};
use leptos_router::{
    components::{Route, Router, Routes},
    hooks::use_params_map,
    path,
};

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
                <Route path=path!("/") view=ChatPage/>
                <Route path=path!("/room/:room") view=ChatPage/>
            </Routes>
        </Router>
    }
}

/// Browser-only glue: the display name, the guest token, the sync worker.
#[cfg(feature = "hydrate")]
mod browser {
    use leptos::prelude::*;

    const NAME_KEY: &str = "serverless-sync:name";

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

    const TOKEN_KEY: &str = "serverless-sync:token";
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
    pub fn sign_in(client: client::SyncClient, name: String) {
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
        let client = match client::SyncClient::spawn("/pkg/db-worker.js") {
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

/// A message the server refused, shown with its reason.
#[derive(Debug, Clone, PartialEq)]
struct Refusal {
    body: String,
    reason: String,
}

#[component]
fn ChatPage() -> impl IntoView {
    let params = use_params_map();
    let room = move || params.read().get("room").unwrap_or_else(|| "lobby".to_string());

    // `false` while the HTML is only server-rendered; flips once hydration has run.
    let (interactive, set_interactive) = signal(false);
    let (name, set_name) = signal(String::new());
    // Set once this page can be reloaded with no network.
    let (offline_ready, set_offline_ready) = signal(false);
    Effect::new(move |_| {
        set_interactive.set(true);
        #[cfg(feature = "hydrate")]
        {
            set_name.set(browser::display_name());
            leptos::task::spawn_local(async move {
                match client::offline::enable("/sw.js").await {
                    Ok(()) => set_offline_ready.set(true),
                    Err(error) => leptos::logging::warn!("offline page loads unavailable: {error}"),
                }
            });
        }
        #[cfg(not(feature = "hydrate"))]
        let _ = set_offline_ready;
    });

    let messages = client::use_query(model::ROOM_MESSAGES, move || serde_json::json!({ "roomId": room() }));
    let send_message = client::use_mutator(model::SEND_MESSAGE);
    let status = client::use_sync_status();
    let (refusals, set_refusals) = signal(Vec::<Refusal>::new());

    #[cfg(feature = "hydrate")]
    let sync_client = use_context::<client::SyncClient>();
    let (draft, set_draft) = signal(String::new());
    let send = move |event: leptos::ev::SubmitEvent| {
        event.prevent_default();
        let body = draft.get_untracked();
        if body.trim().is_empty() {
            return;
        }
        set_draft.set(String::new());
        let args = serde_json::json!({ "roomId": room(), "authorName": name.get_untracked(), "body": body });
        let send_message = send_message.clone();
        leptos::task::spawn_local(async move {
            match send_message.call(args).await {
                Ok(state) => {
                    if let sync::protocol::push::MutationOutcome::Rejected { reason } = state.outcome {
                        set_refusals.update(|list| list.push(Refusal { body, reason }));
                    }
                }
                Err(reason) => set_refusals.update(|list| list.push(Refusal { body, reason })),
            }
        });
    };

    let rows = move || {
        let state = messages.get();
        state
            .rows
            .into_iter()
            .map(|row| {
                let text = |key: &str| row.get(key).and_then(|v| v.as_str()).unwrap_or_default().to_string();
                let id = text("id");
                let pending = state.pending.contains(&id);
                (id, text("author_name"), text("body"), pending)
            })
            .collect::<Vec<_>>()
    };

    view! {
        <main class="chat">
            <header class="chat__header">
                <h1>"Serverless Sync"</h1>
                <p class="chat__room">"Room " <span data-testid="room-id">{room}</span></p>
                <p class="chat__status" data-testid="app-status">
                    {move || if interactive.get() { "interactive" } else { "server-rendered" }}
                </p>
                <p class="chat__sync" data-testid="sync-status">
                    {move || {
                        let view = status.get();
                        match view.status {
                            Some(s) if s.online => format!("online, {} pending", s.outbox),
                            Some(s) => format!("offline, {} pending", s.outbox),
                            None => "connecting".to_string(),
                        }
                    }}
                </p>
                <p class="chat__storage" data-testid="storage">
                    {move || match status.get().storage {
                        Some(client::messages::Storage::Opfs) => "Local database: saved in this browser (OPFS)",
                        Some(client::messages::Storage::Memory) => "Local database: in memory only (OPFS unavailable)",
                        None => "Local database: opening",
                    }}
                </p>
                <p class="chat__offline" data-testid="offline-ready" data-ready=move || offline_ready.get().to_string()>
                    {move || if offline_ready.get() { "Opens offline" } else { "" }}
                </p>
                <p
                    class="chat__role"
                    data-testid="tab-role"
                    data-role=move || match status.get().leader {
                        Some(true) => "leader",
                        Some(false) => "follower",
                        None => "unknown",
                    }
                >
                    {move || match status.get().leader {
                        Some(true) => "This tab syncs for every tab of this app",
                        Some(false) => "Another tab of this app syncs for this one",
                        None => "",
                    }}
                </p>
                <label class="chat__name">
                    "Name "
                    <input
                        data-testid="name-input"
                        prop:value=name
                        on:change=move |ev| {
                            let value = event_target_value(&ev);
                            #[cfg(feature = "hydrate")]
                            {
                                browser::remember_name(&value);
                                if let Some(client) = sync_client.clone() {
                                    browser::sign_in(client, value.clone());
                                }
                            }
                            set_name.set(value);
                        }
                    />
                </label>
            </header>
            <ol class="chat__messages" data-testid="message-list">
                <For each=rows key=|(id, _, body, pending)| (id.clone(), body.clone(), *pending) let:item>
                    <li
                        data-testid="message"
                        data-status=if item.3 { "pending" } else { "confirmed" }
                        class:pending=item.3
                    >
                        <span class="message__author" data-testid="message-author">{item.1}</span>
                        <span class="message__body" data-testid="message-body">{item.2}</span>
                        <span class="message__state">{if item.3 { "sending" } else { "sent" }}</span>
                    </li>
                </For>
            </ol>
            <ul class="chat__refusals" data-testid="refusals">
                <For each=move || refusals.get().into_iter().enumerate() key=|(i, _)| *i let:item>
                    <li data-testid="rejected-message">
                        <span class="message__body">{item.1.body.clone()}</span>
                        " was not sent: "
                        <span data-testid="rejection-reason">{item.1.reason.clone()}</span>
                    </li>
                </For>
            </ul>
            <form class="chat__composer" on:submit=send>
                <label for="composer-input" class="visually-hidden">"Message"</label>
                <input
                    id="composer-input"
                    data-testid="composer-input"
                    placeholder="Write a message"
                    prop:value=draft
                    on:input=move |ev| set_draft.set(event_target_value(&ev))
                />
                <button type="submit" data-testid="composer-send">"Send"</button>
            </form>
            <MetricsPanel/>
        </main>
    }
}

/// The three timings of the write path, live.
#[component]
fn MetricsPanel() -> impl IntoView {
    let metrics = client::use_metrics();
    let row = move |label: &'static str, id: &'static str, pick: fn(&client::Metrics) -> client::Stat| {
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
        </section>
    }
}
