//! The board page: add, edit and delete {{collection}}; each write shows at once and
//! says "saving" until the server confirms it; a refused write is rolled back and
//! listed with the reason.

use leptos::prelude::*;
use sync_client::{MutationResult, SyncClient, use_mutator, use_query, use_sync_status};
use {{app_snake}}_model::{ADD_{{ROW}}, BoardArgs, DELETE_{{ROW}}, EDIT_{{ROW}}, LIST_{{ROWS}}, {{Row}}, {{Row}}Fields};

use crate::APP_NAME;

/// The board named by the URL (`/board/{id}`); `home` elsewhere.
fn current_board() -> String {
    let path = web_sys::window().and_then(|window| window.location().pathname().ok()).unwrap_or_default();
    path.strip_prefix("/board/").and_then({{app_snake}}_model::clean_board_id).unwrap_or_else(|| "home".into())
}

#[component]
pub fn App() -> impl IntoView {
    match SyncClient::spawn("/pkg/db-worker.js", {{app_snake}}_model::{{app_snake}}_model()) {
        Ok(client) => {
            provide_context(client.clone());
            let guest = format!("Guest-{:04}", (js_sys::Math::random() * 10_000.0) as u32);
            sync_client::guest::sign_in(client, APP_NAME, guest);
        }
        Err(error) => leptos::logging::error!("cannot start the sync worker: {error}"),
    }
    view! { <Board board_id=current_board()/> }
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

    let shown = move || {
        let state = rows.get();
        let round = refused.get();
        state.rows.iter().map(|row| (row.clone(), state.is_pending(&row.id), round)).collect::<Vec<_>>()
    };
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
            <ul class="rows" data-testid="{{row_testid}}-list" data-loaded=move || (!rows.get().loading).to_string()>
                <For each=shown key=|(row, pending, round)| (format!("{row:?}"), *pending, *round) children=item/>
            </ul>
            <ul class="refusals" data-testid="refusals">
                <For each=move || refusals.get().into_iter().enumerate() key=|(i, _)| *i let:refusal>
                    <li data-testid="refusal">{refusal.1}</li>
                </For>
            </ul>
        </main>
    }
}
