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

/// Placeholder chat shell. The real message list and composer arrive with the client SDK.
#[component]
fn ChatPage() -> impl IntoView {
    let params = use_params_map();
    let room = move || params.read().get("room").unwrap_or_else(|| "lobby".to_string());

    // `false` while the HTML is only server-rendered; flips once hydration has run.
    let (interactive, set_interactive) = signal(false);
    Effect::new(move |_| set_interactive.set(true));

    let (draft, set_draft) = signal(String::new());
    let (drafts, set_drafts) = signal(Vec::<String>::new());
    let send = move |event: leptos::ev::SubmitEvent| {
        event.prevent_default();
        let body = draft.get_untracked().trim().to_string();
        if !body.is_empty() {
            set_drafts.update(|list| list.push(body));
            set_draft.set(String::new());
        }
    };

    view! {
        <main class="chat">
            <header class="chat__header">
                <h1>"Serverless Sync"</h1>
                <p class="chat__room">"Room " <span data-testid="room-id">{room}</span></p>
                <p class="chat__status" data-testid="app-status">
                    {move || if interactive.get() { "interactive" } else { "server-rendered" }}
                </p>
            </header>
            <ol class="chat__messages" data-testid="message-list">
                <For each=move || drafts.get().into_iter().enumerate() key=|(i, _)| *i let:item>
                    <li data-testid="message">{item.1}</li>
                </For>
            </ol>
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
        </main>
    }
}
