//! The board page: add, edit and delete {{collection}}; each write shows at once and
//! says "saving" until the server confirms it; a refused write is rolled back and
//! listed with the reason.
{{#ssr}}//!
//! Rendered twice: by the worker (feature `ssr`: the HTML, with the rows the server
//! read for the visitor) and in the browser (feature `page`: hydration, then the
//! local store takes over). Browser-only code is `#[cfg(feature = "page")]`.
{{/ssr}}
use leptos::prelude::*;
use sync_client::{MutationResult, use_mutator, use_query, use_sync_status};
use {{app_snake}}_model::{ADD_{{ROW}}, BoardArgs, DELETE_{{ROW}}, EDIT_{{ROW}}, LIST_{{ROWS}}, {{Row}}, {{Row}}Fields};

{{#ssr}}
/// What the worker read for the page it renders: the board and, for a visitor whose
/// sign-in cookie the rules let read it, its rows.
#[derive(Debug, Clone, Default)]
pub struct ServerPage {
    pub board_id: String,
    pub rows: Option<Vec<{{Row}}>>,
}

/// The board the page shows: the URL's (`/board/{id}`) in the browser, the one the
/// worker renders on the server.
fn current_board() -> String {
    #[cfg(feature = "page")]
    let board = web_sys::window()
        .and_then(|window| window.location().pathname().ok())
        .and_then(|path| path.strip_prefix("/board/").and_then({{app_snake}}_model::clean_board_id));
    #[cfg(not(feature = "page"))]
    let board = use_context::<ServerPage>().map(|page| page.board_id);
    board.unwrap_or_else(|| "home".into())
}
{{/ssr}}
{{^ssr}}
/// The board named by the URL (`/board/{id}`); `home` elsewhere.
fn current_board() -> String {
    let path = web_sys::window().and_then(|window| window.location().pathname().ok()).unwrap_or_default();
    path.strip_prefix("/board/").and_then({{app_snake}}_model::clean_board_id).unwrap_or_else(|| "home".into())
}
{{/ssr}}

/// In the browser: the SQLite Web Worker, and a guest sign-in.
{{#ssr}}
#[cfg(feature = "page")]
{{/ssr}}
fn start_sync() {
    match sync_client::SyncClient::spawn("/pkg/db-worker.js", {{app_snake}}_model::{{app_snake}}_model()) {
        Ok(client) => {
            provide_context(client.clone());
            let guest = format!("Guest-{:04}", (js_sys::Math::random() * 10_000.0) as u32);
            sync_client::guest::sign_in(client, crate::APP_NAME, guest);
        }
        Err(error) => leptos::logging::error!("cannot start the sync worker: {error}"),
    }
}

#[component]
pub fn App() -> impl IntoView {
{{#ssr}}
    #[cfg(feature = "page")]
{{/ssr}}
    start_sync();
{{#offline}}
    // Once the Service Worker (public/sw.js) is active, this page opens with no network.
    let (offline_ready, set_offline_ready) = signal(false);
{{#ssr}}
    #[cfg(not(feature = "page"))]
    let _ = set_offline_ready;
    #[cfg(feature = "page")]
{{/ssr}}
    leptos::task::spawn_local(async move {
        match sync_client::offline::enable("/sw.js", &crate::APP_NAME).await {
            Ok(()) => set_offline_ready.set(true),
            Err(error) => leptos::logging::warn!("offline page loads unavailable: {error}"),
        }
    });
    view! {
        <Board board_id=current_board()/>
        <p class="hint page" data-testid="offline-ready" data-ready=move || offline_ready.get().to_string()>
            {move || if offline_ready.get() { "This page opens offline too." } else { "" }}
        </p>
        // The engine's devtools: Alt+Shift+D or ?devtools (feature `devtools`).
        <sync_client::SyncDevtools/>
    }
{{/offline}}
{{^offline}}
    view! {
        <Board board_id=current_board()/>
        // The engine's devtools: Alt+Shift+D or ?devtools (feature `devtools`).
        <sync_client::SyncDevtools/>
    }
{{/offline}}
}

#[component]
fn Board(board_id: String) -> impl IntoView {
    let rows = use_query(&LIST_{{ROWS}}, {
        let board_id = board_id.clone();
        move || BoardArgs { board_id: board_id.clone() }
    });
    let (add, edit, remove) = (use_mutator(&ADD_{{ROW}}), use_mutator(&EDIT_{{ROW}}), use_mutator(&DELETE_{{ROW}}));
    let status = use_sync_status();
    let (refusals, set_refusals) = signal(Vec::<String>::new());
    // Bumped by a refusal: every row renders again from the store (its inputs too).
    let refused = RwSignal::new(0u32);
    let report = move |result: MutationResult| {
        if let Some(reason) = result.refusal() {
            let reason = reason.to_string();
            set_refusals.update(|list| list.push(reason));
            refused.update(|n| *n += 1);
        }
    };

    let draft = RwSignal::new({{Row}}Fields { board_id: board_id.clone(), ..Default::default() });
    let on_add = move |event: leptos::ev::SubmitEvent| {
        event.prevent_default();
        let fields = draft.get_untracked();
        draft.update(|draft| *draft = {{Row}}Fields { board_id: draft.board_id.clone(), ..Default::default() });
        leptos::task::spawn_local(async move { report(add.insert_and_wait(fields).await) });
    };

    let connection = move || match status.get().status {
        None => ("connecting", "connecting".to_string()),
        Some(s) if !s.online => ("offline", format!("offline, {} to send", s.outbox)),
        Some(s) if s.server_not_ready.is_some() => ("server_not_ready", format!("server not ready, {} to send", s.outbox)),
        Some(s) if s.outbox > 0 => ("syncing", format!("syncing, {} to send", s.outbox)),
        Some(_) => ("online", "online, all saved".to_string()),
    };

{{#ssr}}
    // What the server rendered with: hydration reads the same (the resource travels
    // in the page), until the store has the board.
    let server_rows = use_context::<ServerPage>().and_then(|page| page.rows);
    let initial = Resource::new(|| (), move |_| {
        let rows = server_rows.clone();
        async move { rows.unwrap_or_default() }
    });
    let from_store = move || rows.with(|local| !(local.loading || (local.rows.is_empty() && !local.synced)));
{{/ssr}}
{{^ssr}}
    let shown = move || {
        let state = rows.get();
        let round = refused.get();
        state.rows.iter().map(|row| (row.clone(), state.is_pending(&row.id), round)).collect::<Vec<_>>()
    };
{{/ssr}}
    let item = move |(row, pending, _): ({{Row}}, bool, u32)| {
        let fields = {{Row}}Fields::of(&row);
        let save = {
            let id = row.id.clone();
            move |fields: {{Row}}Fields| {
                let id = id.clone();
                leptos::task::spawn_local(async move { report(edit.update_and_wait(id, fields).await) });
            }
        };
        let delete = {
            let (id, board_id) = (row.id.clone(), row.board_id.clone());
            move |_| {
                let (id, args) = (id.clone(), BoardArgs { board_id: board_id.clone() });
                leptos::task::spawn_local(async move { report(remove.delete_and_wait(id, args).await) });
            }
        };
        view! {
            <li class="row" data-testid="{{row_testid}}" data-id=row.id.clone() data-key={{key_expr}}
                data-status=if pending { "pending" } else { "confirmed" }>
{{row_inputs}}                <span class="row__state">{if pending { "saving" } else { "saved" }}</span>
                <button data-testid="{{row_testid}}-delete" on:click=delete>"Delete"</button>
            </li>
        }
    };

    view! {
        <main class="page">
            <header>
                <h1>"{{Title}} " <span data-testid="board-id">{board_id.clone()}</span></h1>
                <p class="hint">"Share this page's address: everyone with it edits the same board, live, even offline."</p>
                <p class="status" data-testid="sync-status" data-state=move || connection().0>{move || connection().1}</p>
            </header>
            <form class="add" on:submit=on_add>
{{draft_inputs}}                <button type="submit" data-testid="add-{{row_testid}}">"Add"</button>
            </form>
            {move || rows.get().error.map(|error| view! { <p class="error" role="alert" data-testid="query-error">{error}</p> })}
{{#ssr}}
            <Suspense fallback=|| view! { <ul class="rows" data-testid="{{row_testid}}-list"></ul> }>
                {move || Suspend::new(async move {
                    let from_server = StoredValue::new(initial.await);
                    let shown = move || {
                        let round = refused.get();
                        if from_store() {
                            let state = rows.get();
                            state.rows.iter().map(|row| (row.clone(), state.is_pending(&row.id), round)).collect()
                        } else {
                            from_server.get_value().into_iter().map(|row| (row, false, round)).collect::<Vec<_>>()
                        }
                    };
                    view! {
                        <ul class="rows" data-testid="{{row_testid}}-list" data-loaded=move || from_store().to_string()>
                            <For each=shown key=|(row, pending, round)| (format!("{row:?}"), *pending, *round) children=item/>
                        </ul>
                    }
                })}
            </Suspense>
{{/ssr}}
{{^ssr}}
            <ul class="rows" data-testid="{{row_testid}}-list" data-loaded=move || (!rows.get().loading).to_string()>
                <For each=shown key=|(row, pending, round)| (format!("{row:?}"), *pending, *round) children=item/>
            </ul>
{{/ssr}}
            <ul class="refusals" data-testid="refusals">
                <For each=move || refusals.get().into_iter().enumerate() key=|(i, _)| *i let:refusal>
                    <li data-testid="refusal">{refusal.1}</li>
                </For>
            </ul>
        </main>
    }
}
