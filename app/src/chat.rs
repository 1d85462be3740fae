//! The chat page: room switcher, connection status, messages, composer.

use crate::model::{self, DeleteMessageArgs, EditMessageArgs, Message, RoomArgs, SendMessageArgs};
use leptos::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;

/// A room's messages read upstream while rendering on the server (`None`: not read,
/// e.g. the visitor has no sign-in cookie yet). Provided as context by the worker.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerRows(pub Option<Vec<Message>>);

/// The element holding [`ServerRows`] as JSON in the page.
const SERVER_ROWS_ID: &str = "server-rows";

/// The rows the server rendered the page with, and what the server writes into
/// the page for the browser to read them back (empty in the browser: the element
/// keeps what the server wrote).
fn server_rows() -> (Vec<Message>, String) {
    #[cfg(not(feature = "hydrate"))]
    {
        let rows = use_context::<ServerRows>().unwrap_or_default().0.unwrap_or_default();
        let json = serde_json::to_string(&rows).unwrap_or_else(|_| "[]".into());
        // Inside <script>, "</script>" or "<!--" in a message must not end or
        // comment the element: no '<' is written as itself.
        let json = json.replace('<', "\\u003c");
        (rows, json)
    }
    #[cfg(feature = "hydrate")]
    {
        let text = web_sys::window()
            .and_then(|window| window.document())
            .and_then(|document| document.get_element_by_id(SERVER_ROWS_ID))
            .and_then(|element| element.text_content());
        let rows = text.and_then(|text| serde_json::from_str(&text).ok()).unwrap_or_default();
        (rows, String::new())
    }
}

/// A message the server refused, shown with its reason.
#[derive(Debug, Clone, PartialEq)]
struct Refusal {
    body: String,
    reason: String,
}

/// One line of the message list.
#[derive(Debug, Clone, PartialEq)]
struct Line {
    id: String,
    author: String,
    /// The author's subject ('' on messages older than subjects).
    author_id: String,
    body: String,
    pending: bool,
}

/// How many earlier messages "Show earlier" asks for (the room opens with the
/// newest `model::ROOM_WINDOW`).
const SHOWN_AT_ONCE: u32 = 200;

/// Lines oldest first, from the room's messages newest first (as its query orders
/// them). A line that reads as it did in `held` (the lines shown before) is that
/// same `Arc`: the list is keyed by a line's address, so each change copies and
/// compares only the lines it changed, and an unchanged message keeps its element.
fn lines(rows: &[Message], pending: &[String], held: &[Arc<Line>]) -> Vec<Arc<Line>> {
    let held: HashMap<&str, &Arc<Line>> = held.iter().map(|line| (line.id.as_str(), line)).collect();
    rows.iter()
        .rev()
        .map(|message| {
            let pending = pending.contains(&message.id);
            match held.get(message.id.as_str()) {
                Some(line)
                    if line.pending == pending
                        && line.body == message.body
                        && line.author == message.author_name
                        && line.author_id == message.author_id =>
                {
                    Arc::clone(line)
                }
                _ => Arc::new(Line {
                    id: message.id.clone(),
                    author: message.author_name.clone(),
                    author_id: message.author_id.clone(),
                    body: message.body.clone(),
                    pending,
                }),
            }
        })
        .collect()
}

/// The key of a line in the list: its address. Two lines alive at once never share
/// one (the list and the held lines keep every line it shows alive), and a line is
/// shared only while its message reads the same.
fn line_key(line: &Arc<Line>) -> usize {
    Arc::as_ptr(line) as usize
}

/// A short tag of a subject, shown after the author's name: two people may share a
/// name, not a subject.
fn author_tag(author_id: &str) -> String {
    let ulid = author_id.rsplit('_').next().unwrap_or_default();
    let tail: String = ulid.chars().rev().take(4).collect::<Vec<_>>().into_iter().rev().collect();
    if tail.is_empty() { String::new() } else { format!("#{tail}") }
}

/// Room names are what a URL segment can hold without escaping.
fn clean_room(input: &str) -> Option<String> {
    let room: String = input
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(64)
        .collect();
    (!room.is_empty()).then_some(room)
}

#[component]
pub fn ChatPage() -> impl IntoView {
    let address = crate::address::initial();
    let current_room = crate::address::current_room(&address);
    let room = move || current_room.0.get();
    // `?new`: this browser just made this room (from `/`), and makes it private to
    // its user; `?invite=CODE`: join the private room with its invite.
    let creating = address.new;
    let invite = address.invite;

    // `false` while the HTML is only server-rendered; flips once hydration has run.
    let (interactive, set_interactive) = signal(false);
    let (name, set_name) = signal(String::new());
    // Who this browser is (its sign-in's subject); provided by the browser glue.
    let me = use_context::<crate::Me>().unwrap_or_else(|| crate::Me(RwSignal::new(None)));
    // Set once this page can be reloaded with no network.
    let (offline_ready, set_offline_ready) = signal(false);
    Effect::new(move |_| {
        set_interactive.set(true);
        #[cfg(feature = "hydrate")]
        {
            set_name.set(crate::browser::display_name());
            if me.0.get_untracked().is_none() {
                me.0.set(crate::browser::cached_subject());
            }
            leptos::task::spawn_local(async move {
                match sync_client::offline::enable("/sw.js", &crate::APP_NAME).await {
                    Ok(()) => set_offline_ready.set(true),
                    Err(error) => leptos::logging::warn!("offline page loads unavailable: {error}"),
                }
            });
        }
        #[cfg(not(feature = "hydrate"))]
        let _ = set_offline_ready;
    });

    // What the server read while rendering: shown until the local store has the room.
    // The browser reads them from the JSON the server wrote beside the list, so its
    // first render is the server's (no resource, no suspense: the page's bundle
    // carries no async hydration for one list).
    let (server_rows, server_rows_json) = server_rows();
    // They are the rows of the room the page was loaded with, not of one joined since.
    let first_room = StoredValue::new(address.room.clone());
    let on_first_room = move || first_room.with_value(|first| *first == room());
    // The room's newest messages: only this window is synced; "Show earlier" widens it.
    let (messages, window) =
        sync_client::use_windowed_query(&model::ROOM_MESSAGES, move || RoomArgs { room_id: room() });
    let send_message = sync_client::use_mutator(&model::SEND_MESSAGE);
    let edit_message = sync_client::use_mutator(&model::EDIT_MESSAGE);
    let delete_message = sync_client::use_mutator(&model::DELETE_MESSAGE);
    let create_room = sync_client::use_mutator(&model::CREATE_ROOM);
    let join_room = sync_client::use_mutator(&model::JOIN_ROOM);
    // A private room's row: only its members read it (the invite code is in it).
    let room_row = sync_client::use_query(&model::ROOM, move || RoomArgs { room_id: room() });
    let invite_link = move || {
        room_row.with(|answer| {
            answer.rows.first().map(|row| format!("/room/{}?invite={}", row.id, row.invite_code))
        })
    };
    // The message being edited in place, if any.
    let (editing, set_editing) = signal(None::<String>);
    let status = sync_client::use_sync_status();
    let (refusals, set_refusals) = signal(Vec::<Refusal>::new());
    #[cfg(feature = "hydrate")]
    let sync_client = use_context::<sync_client::SyncClient>();

    let (draft, set_draft) = signal(String::new());
    // Send is a plain button (Enter in the field submits the form): a submit button's
    // click runs the browser's form submission steps first, which lay the page out
    // (about 0.7 ms before the message could show).
    let send = move || {
        let body = draft.get_untracked();
        if body.trim().is_empty() {
            return;
        }
        let Some(author_id) = me.0.get_untracked() else {
            let reason = "not signed in yet: wait until the page has signed you in".to_string();
            set_refusals.update(|list| list.push(Refusal { body, reason }));
            return;
        };
        set_draft.set(String::new());
        let args = SendMessageArgs {
            room_id: room(),
            author_id,
            author_name: name.get_untracked(),
            body: body.clone(),
        };
        leptos::task::spawn_local(async move {
            let sent = send_message.insert_and_wait(args).await;
            if let Some(reason) = sent.refusal() {
                let reason = reason.to_string();
                set_refusals.update(|list| list.push(Refusal { body, reason }));
            }
        });
    };

    // Make the room private, or join it, once this browser knows who it is.
    let (membership_done, set_membership_done) = signal(!(creating || invite.is_some()));
    #[cfg(feature = "hydrate")]
    {
        let joining_client = sync_client.clone();
        Effect::new(move |_| {
            let Some(subject) = me.0.get() else { return };
            if membership_done.get_untracked() {
                return;
            }
            set_membership_done.set(true);
            let room_id = room();
            let client = joining_client.clone();
            let invite = invite.clone();
            leptos::task::spawn_local(async move {
                let result = if let Some(invite_code) = invite {
                    let args = model::JoinRoomArgs {
                        room_id: room_id.clone(),
                        user_id: subject.clone(),
                        invite_code,
                    };
                    Some(join_room.insert_with_id_and_wait(model::member_id(&room_id, &subject), args).await)
                } else if model::is_private_room_id(&room_id) {
                    let invite_code = format!("{}{}", sync_client::new_id("i"), sync_client::new_id("i"))
                        .replace("i_", "")
                        .to_ascii_lowercase();
                    let args =
                        model::CreateRoomArgs { room_id: room_id.clone(), creator_id: subject, invite_code };
                    Some(create_room.insert_with_id_and_wait(room_id.clone(), args).await)
                } else {
                    None
                };
                if let Some(result) = result {
                    if let Some(reason) = result.refusal() {
                        let reason = reason.to_string();
                        set_refusals
                            .update(|list| list.push(Refusal { body: "(joining the room)".into(), reason }));
                    } else if let Some(client) = client {
                        // Now a member: what was refused may be allowed.
                        let _ = client.ask_again().await;
                    }
                }
                // The link's one-time part is done: a reload does not repeat it.
                if let Some(history) = web_sys::window().and_then(|window| window.history().ok()) {
                    let _ = history.replace_state_with_url(
                        &wasm_bindgen::JsValue::NULL,
                        "",
                        Some(&format!("/room/{room_id}")),
                    );
                }
            });
        });
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = (membership_done, set_membership_done, &create_room, &join_room, &invite);

    #[cfg(feature = "hydrate")]
    let renewing_client = sync_client.clone();
    let sign_in_again = Callback::new(move |()| {
        #[cfg(feature = "hydrate")]
        if let Some(client) = renewing_client.clone() {
            crate::browser::sign_in(client, me, name.get_untracked());
        }
    });

    let (room_draft, set_room_draft) = signal(String::new());
    let join = move |event: leptos::ev::SubmitEvent| {
        event.prevent_default();
        if let Some(next) = clean_room(&room_draft.get_untracked()) {
            set_room_draft.set(String::new());
            set_refusals.set(Vec::new());
            crate::address::navigate_to_room(current_room, &next);
        }
    };

    let connection = move || {
        let view = status.get();
        match view.status {
            None => ("connecting", "connecting".to_string()),
            Some(s) if s.needs_auth => ("needs_auth", format!("sign in again to sync, {} pending", s.outbox)),
            Some(s) if !s.online => ("offline", format!("offline, {} pending", s.outbox)),
            Some(s) if s.server_not_ready.is_some() => (
                "server_not_ready",
                format!("server not ready, {} pending: {}", s.outbox, s.server_not_ready.unwrap_or_default()),
            ),
            Some(s) if s.outbox > 0 => ("syncing", format!("syncing, {} pending", s.outbox)),
            Some(s) => ("online", format!("online, {} pending", s.outbox)),
        }
    };

    view! {
        <main class="page">
            <header class="topbar">
                <div class="topbar__brand">
                    <h1>"Serverless Sync"</h1>
                    <p class="topbar__tagline">"A local-first chat on Cloudflare, in Rust"</p>
                </div>
                <form class="room-switch" on:submit=join>
                    <label for="room-input">"Room"</label>
                    <input
                        id="room-input"
                        data-testid="room-input"
                        placeholder=room
                        autocomplete="off"
                        prop:value=room_draft
                        on:input=move |ev| set_room_draft.set(event_target_value(&ev))
                    />
                    <button type="submit" data-testid="room-join">"Join"</button>
                    <a class="room-switch__new" href="/" rel="external" data-testid="room-new">"New room"</a>
                </form>
            </header>

            <section class="chat" aria-labelledby="room-title">
                <div class="chat__head">
                    <h2 id="room-title">"Room " <span data-testid="room-id">{room}</span></h2>
                    <label class="chat__name">
                        "Your name"
                        <input
                            data-testid="name-input"
                            prop:value=name
                            maxlength="64"
                            on:change=move |ev| {
                                let value = event_target_value(&ev);
                                #[cfg(feature = "hydrate")]
                                {
                                    crate::browser::remember_name(&value);
                                    if let Some(client) = sync_client.clone() {
                                        crate::browser::sign_in(client, me, value.clone());
                                    }
                                }
                                set_name.set(value);
                            }
                        />
                    </label>
                </div>
                <ul class="status" aria-label="Connection">
                    <li
                        class="status__item"
                        data-testid="sync-status"
                        data-state=move || connection().0
                        aria-live="polite"
                    >
                        {move || connection().1}
                    </li>
                    <li class="status__item" data-testid="storage">
                        {move || match status.get().storage {
                            Some(sync_client::bridge::Storage::Opfs) => "Local database: saved in this browser (OPFS)",
                            Some(sync_client::bridge::Storage::Memory) => "Local database: in memory only (OPFS unavailable)",
                            None => "Local database: opening",
                        }}
                    </li>
                    <li
                        class="status__item"
                        data-testid="tab-role"
                        data-role=move || match status.get().leader {
                            Some(true) => "leader",
                            Some(false) => "follower",
                            None => "unknown",
                        }
                    >
                        {move || match status.get().leader {
                            Some(true) => "This tab syncs for all tabs",
                            Some(false) => "Another tab syncs for this one",
                            None => "Tab: starting",
                        }}
                    </li>
                    <li class="status__item" data-testid="offline-ready" data-ready=move || offline_ready.get().to_string()>
                        {move || if offline_ready.get() { "Opens offline" } else { "Offline page: not yet" }}
                    </li>
                    <li class="status__item status__item--quiet" data-testid="app-status">
                        {move || if interactive.get() { "interactive" } else { "server-rendered" }}
                    </li>
                </ul>
                {move || invite_link().map(|link| view! {
                    <p class="invite" data-testid="invite">
                        "Private room: only people you invite can read it. Invite link: "
                        <input class="invite__link" data-testid="invite-link" readonly prop:value=link aria-label="Invite link"/>
                    </p>
                })}
                <Show when=move || status.get().status.is_some_and(|s| s.needs_auth)>
                    <div class="notice" role="alert" data-testid="needs-auth">
                        <p>"Your sign-in has expired. Your messages are kept here and go out once you sign in again."</p>
                        <button
                            type="button"
                            data-testid="sign-in-again"
                            on:click=move |_| sign_in_again.run(())
                        >
                            "Sign in again as " {move || name.get()}
                        </button>
                    </div>
                </Show>
                <script type="application/json" id=SERVER_ROWS_ID inner_html=server_rows_json></script>
                {
                    let from_server = StoredValue::new(server_rows);
                    // The lines shown last: a message that reads the same keeps its line.
                    let held = StoredValue::new(Vec::<Arc<Line>>::new());
                    // Until the store has this room, an empty answer only means "not
                    // fetched yet": keep what the server rendered.
                    let from_store = move || messages.with(|local| !(local.loading || (local.rows.is_empty() && !local.synced)));
                    let count = move || {
                        if from_store() {
                            messages.with(|local| local.rows.len())
                        } else if on_first_room() {
                            from_server.with_value(Vec::len)
                        } else {
                            0
                        }
                    };
                    // Earlier messages exist (in the store or only upstream).
                    let more = move || if from_store() { messages.with(|local| local.more) } else { false };
                    let shown = move || {
                        let next = held.with_value(|held| {
                            if from_store() {
                                messages.with(|local| lines(&local.rows, &local.pending, held))
                            } else if on_first_room() {
                                from_server.with_value(|rows| lines(rows, &[], held))
                            } else {
                                Vec::new()
                            }
                        });
                        held.set_value(next.clone());
                        next
                    };
                    view! {
                        <p class="messages__count" data-testid="message-count" data-count=count data-more=move || more().to_string()>
                            {move || match (count(), more()) {
                                (n, true) => format!("the newest {n} messages"),
                                (1, false) => "1 message".to_string(),
                                (n, false) => format!("{n} messages"),
                            }}
                            <Show when=more>
                                <button type="button" class="link" data-testid="show-earlier"
                                    on:click=move |_| window.load_more(SHOWN_AT_ONCE)>
                                    {format!("Show {SHOWN_AT_ONCE} earlier")}
                                </button>
                            </Show>
                        </p>
                        <ol class="messages" data-testid="message-list" aria-live="polite">
                            <For each=shown key=line_key let:line>
                                {
                                    let author_id = line.author_id.clone();
                                    let own = move || !author_id.is_empty() && me.0.get().as_deref() == Some(author_id.as_str());
                                    let tag = author_tag(&line.author_id);
                                    let id = line.id.clone();
                                    let is_editing = {
                                        let id = id.clone();
                                        move || editing.get().as_deref() == Some(id.as_str())
                                    };
                                    let body = line.body.clone();
                                    let (edit_id, delete_id) = (id.clone(), id.clone());
                                    let save = move |ev: leptos::ev::Event| {
                                        let text = event_target_value(&ev);
                                        set_editing.set(None);
                                        let Some(author_id) = me.0.get_untracked() else { return };
                                        let args = EditMessageArgs { room_id: room(), author_id, body: text.clone() };
                                        let (edit, id) = (edit_message, edit_id.clone());
                                        leptos::task::spawn_local(async move {
                                            if let Some(reason) = edit.update_and_wait(id, args).await.refusal() {
                                                let reason = reason.to_string();
                                                set_refusals.update(|list| list.push(Refusal { body: text, reason }));
                                            }
                                        });
                                    };
                                    let remove = move |_| {
                                        let Some(author_id) = me.0.get_untracked() else { return };
                                        let args = DeleteMessageArgs { room_id: room(), author_id };
                                        let (delete, id) = (delete_message, delete_id.clone());
                                        leptos::task::spawn_local(async move {
                                            if let Some(reason) = delete.delete_and_wait(id, args).await.refusal() {
                                                let reason = reason.to_string();
                                                set_refusals.update(|list| list.push(Refusal { body: "(delete)".into(), reason }));
                                            }
                                        });
                                    };
                                    view! {
                                        <li
                                            class="message"
                                            class:message--pending=line.pending
                                            data-testid="message"
                                            data-status=if line.pending { "pending" } else { "confirmed" }
                                        >
                                            <span class="message__author" data-testid="message-author">{line.author.clone()}</span>
                                            <span class="message__tag" data-testid="message-author-tag" title="who wrote it: names may repeat, this does not">{tag}</span>
                                            {move || if is_editing() {
                                                view! {
                                                    <input class="message__edit" data-testid="message-edit-input"
                                                        aria-label="Edit message" prop:value=body.clone() on:change=save.clone()/>
                                                }.into_any()
                                            } else {
                                                view! { <span class="message__body" data-testid="message-body">{body.clone()}</span> }.into_any()
                                            }}
                                            <span class="message__state">{if line.pending { "sending" } else { "sent" }}</span>
                                            <span class="message__actions">
                                                {move || own().then(|| {
                                                    let (id, remove) = (id.clone(), remove.clone());
                                                    view! {
                                                        <button class="link" data-testid="message-edit"
                                                            on:click=move |_| set_editing.set(Some(id.clone()))>"Edit"</button>
                                                        <button class="link" data-testid="message-delete" on:click=remove>"Delete"</button>
                                                    }
                                                })}
                                            </span>
                                        </li>
                                    }
                                }
                            </For>
                        </ol>
                    }
                }
                {move || messages.get().error.map(|error| view! {
                    <p class="query-error" role="alert" data-testid="query-error">{error}</p>
                })}
                <ul class="refusals" data-testid="refusals" class:refusals--empty=move || refusals.get().is_empty()>
                    <For each=move || refusals.get().into_iter().enumerate() key=|(i, _)| *i let:item>
                        <li class="refusal" data-testid="rejected-message">
                            <span class="refusal__body">{item.1.body.clone()}</span>
                            " was not sent: "
                            <span data-testid="rejection-reason">{item.1.reason.clone()}</span>
                        </li>
                    </For>
                </ul>
                <form class="composer" on:submit=move |event: leptos::ev::SubmitEvent| {
                    event.prevent_default();
                    send();
                }>
                    <label for="composer-input" class="visually-hidden">"Message"</label>
                    <input
                        id="composer-input"
                        data-testid="composer-input"
                        placeholder="Write a message"
                        autocomplete="off"
                        prop:value=draft
                        on:input=move |ev| set_draft.set(event_target_value(&ev))
                    />
                    <button type="button" data-testid="composer-send" on:click=move |_| send()>"Send"</button>
                </form>
            </section>
            <crate::metrics::MetricsPanel/>
            <crate::explainer::HowItWorks/>
        </main>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_names_keep_only_url_safe_characters() {
        assert_eq!(clean_room(" 94462 "), Some("94462".into()));
        assert_eq!(clean_room("a b/c?d"), Some("abcd".into()));
        assert_eq!(clean_room("team-chat_2"), Some("team-chat_2".into()));
        assert_eq!(clean_room("/?# "), None);
        assert_eq!(clean_room(&"x".repeat(100)).map(|r| r.len()), Some(64));
    }

    #[test]
    fn author_tags_are_the_subjects_last_characters() {
        assert_eq!(author_tag("user_01HYS7J9GZ8P6VA3K3Z4X5M2K1"), "#M2K1");
        assert_eq!(author_tag(""), "");
    }
}
