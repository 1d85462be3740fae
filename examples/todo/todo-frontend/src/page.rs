//! The list page: add, tick, rename and delete items; each write shows at once and
//! says "saving" until the server confirms it; a refused write is rolled back and
//! listed with the reason.

use leptos::prelude::*;
use sync_client::{MutationResult, SyncClient, ready_resource, use_mutator, use_query, use_sync_status};
use todo_model::{
    ADD_TODO, AddTodo, DELETE_TODO, LIST_TODOS, ListArgs, RENAME_TODO, RenameTodo, SET_DONE, SetDone, Todo,
};

use crate::APP_NAME;

/// The list named by the URL (`/list/{id}`); `inbox` elsewhere.
fn current_list() -> String {
    let path = web_sys::window().and_then(|window| window.location().pathname().ok()).unwrap_or_default();
    path.strip_prefix("/list/").and_then(todo_model::clean_list_id).unwrap_or_else(|| "inbox".to_string())
}

const NAME_KEY: &str = "todo:name";

/// This browser's display name: remembered, or a fresh guest name.
fn display_name() -> String {
    let storage = web_sys::window().and_then(|window| window.local_storage().ok().flatten());
    if let Some(name) = storage.as_ref().and_then(|storage| storage.get_item(NAME_KEY).ok().flatten()) {
        return name;
    }
    let mut bytes = [0u8; 2];
    let number = if web_sys::window()
        .and_then(|window| window.crypto().ok())
        .and_then(|crypto| crypto.get_random_values_with_u8_array(&mut bytes).ok())
        .is_some()
    {
        u16::from_le_bytes(bytes) % 10_000
    } else {
        (js_sys::Date::now() as u64 % 10_000) as u16
    };
    let name = format!("Guest-{number:04}");
    if let Some(storage) = storage {
        let _ = storage.set_item(NAME_KEY, &name);
    }
    name
}

#[component]
pub fn App() -> impl IntoView {
    match SyncClient::spawn("/pkg/db-worker.js", todo_model::todo_model()) {
        Ok(client) => {
            provide_context(client.clone());
            sync_client::guest::sign_in(client, APP_NAME, display_name());
        }
        Err(error) => leptos::logging::error!("cannot start the sync worker: {error}"),
    }
    view! {
        <TodoList list_id=current_list()/>
        // Alt+Shift+D or ?devtools: the engine's panel.
        <sync_client::SyncDevtools/>
    }
}

#[component]
fn TodoList(list_id: String) -> impl IntoView {
    let list = list_id.clone();
    let todos = use_query(&LIST_TODOS, move || ListArgs { list_id: list.clone() });
    // The same query as a resource: the count waits (Transition) until the list is known.
    let known = ready_resource(todos);
    let add = use_mutator(&ADD_TODO);
    let set_done = use_mutator(&SET_DONE);
    let rename = use_mutator(&RENAME_TODO);
    let remove = use_mutator(&DELETE_TODO);
    let status = use_sync_status();
    let (refusals, set_refusals) = signal(Vec::<String>::new());
    let report = move |result: MutationResult| {
        if let Some(reason) = result.refusal() {
            let reason = reason.to_string();
            set_refusals.update(|list| list.push(reason));
        }
    };

    let (draft, set_draft) = signal(String::new());
    let on_add = {
        let list_id = list_id.clone();
        move |event: leptos::ev::SubmitEvent| {
            event.prevent_default();
            let title = draft.get_untracked();
            if title.trim().is_empty() {
                return;
            }
            set_draft.set(String::new());
            let args = AddTodo { list_id: list_id.clone(), title };
            leptos::task::spawn_local(async move { report(add.insert_and_wait(args).await) });
        }
    };

    let saving = move || {
        add.pending().get() + set_done.pending().get() + rename.pending().get() + remove.pending().get()
    };
    let connection = move || match status.get().status {
        None => ("connecting", "connecting".to_string()),
        Some(s) if !s.online => ("offline", format!("offline, {} to send", s.outbox)),
        Some(s) if s.server_not_ready.is_some() => (
            "server_not_ready",
            format!("server not ready, {} to send: {}", s.outbox, s.server_not_ready.unwrap_or_default()),
        ),
        Some(s) if s.outbox > 0 => ("syncing", format!("syncing, {} to send", s.outbox)),
        Some(_) => ("online", "online, all saved".to_string()),
    };

    let shown = move || {
        let state = todos.get();
        state
            .rows
            .iter()
            .map(|todo| (todo.clone(), state.is_pending(&todo.id)))
            .collect::<Vec<(Todo, bool)>>()
    };
    let item = {
        let list_id = list_id.clone();
        move |(todo, pending): (Todo, bool)| {
            let (list_a, list_b, list_c) = (list_id.clone(), list_id.clone(), list_id.clone());
            let (id_a, id_b, id_c) = (todo.id.clone(), todo.id.clone(), todo.id.clone());
            let title_before = todo.title.clone();
            view! {
                <li class="todo" class:todo--done=todo.done data-testid="todo"
                    data-status=if pending { "pending" } else { "confirmed" } data-id=todo.id.clone()
                    data-title=todo.title.clone()>
                    <input type="checkbox" data-testid="todo-done" prop:checked=todo.done
                        aria-label="Done"
                        on:change=move |ev| {
                            let args = SetDone { list_id: list_a.clone(), done: event_target_checked(&ev) };
                            let id = id_a.clone();
                            leptos::task::spawn_local(async move { report(set_done.update_and_wait(id, args).await) });
                        }/>
                    <input class="todo__title" data-testid="todo-title" prop:value=todo.title.clone()
                        aria-label="Title"
                        on:change=move |ev| {
                            let args = RenameTodo { list_id: list_b.clone(), title: event_target_value(&ev) };
                            let id = id_b.clone();
                            let input = event_target::<web_sys::HtmlInputElement>(&ev);
                            let before = title_before.clone();
                            leptos::task::spawn_local(async move {
                                let result = rename.update_and_wait(id, args).await;
                                // Refused: the field shows the title again, even if the
                                // row never re-rendered (the title it shows did not change).
                                if result.refusal().is_some() {
                                    input.set_value(&before);
                                }
                                report(result)
                            });
                        }/>
                    <span class="todo__state">{if pending { "saving" } else { "saved" }}</span>
                    <button data-testid="todo-delete" aria-label="Delete"
                        on:click=move |_| {
                            let args = ListArgs { list_id: list_c.clone() };
                            let id = id_c.clone();
                            leptos::task::spawn_local(async move { report(remove.delete_and_wait(id, args).await) });
                        }>"Delete"</button>
                </li>
            }
        }
    };

    view! {
        <main class="todo-page">
            <header>
                <h1>"Shared list " <span data-testid="list-id">{list_id.clone()}</span></h1>
                <Transition fallback=|| view! { <p class="count" data-testid="todo-count" data-known="false">"counting…"</p> }>
                    {move || known.get().map(|state| {
                        let (open, total) = (state.rows.iter().filter(|todo| !todo.done).count(), state.rows.len());
                        view! {
                            <p class="count" data-testid="todo-count" data-known="true">
                                {format!("{open} open of {total}")}
                            </p>
                        }
                    })}
                </Transition>
                <p class="hint">"Share this page's address: everyone with it edits the same list, live, even offline."</p>
                <p class="status" data-testid="sync-status" data-state=move || connection().0>
                    {move || connection().1}
                    {move || match saving() { 0 => String::new(), n => format!(" · saving {n}") }}
                </p>
            </header>
            <form class="add" on:submit=on_add>
                <input data-testid="new-todo" placeholder="What needs doing?" autocomplete="off"
                    prop:value=draft on:input=move |ev| set_draft.set(event_target_value(&ev))/>
                <button type="submit" data-testid="add-todo">"Add"</button>
            </form>
            {move || todos.get().error.map(|error| view! {
                <p class="error" role="alert" data-testid="query-error">{error}</p>
            })}
            <ul class="todos" data-testid="todo-list" data-loaded=move || (!todos.get().loading).to_string()>
                <For each=shown key=|(todo, pending)| (todo.id.clone(), todo.title.clone(), todo.done, *pending)
                    children=item/>
            </ul>
            <ul class="refusals" data-testid="refusals">
                <For each=move || refusals.get().into_iter().enumerate() key=|(i, _)| *i let:refusal>
                    <li data-testid="refusal">{refusal.1}</li>
                </For>
            </ul>
        </main>
    }
}
