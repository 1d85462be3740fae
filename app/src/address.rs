//! The page's address, without a router: the chat has one page, `/room/{room}`,
//! whose room changes in place when the user joins another (`history.pushState`,
//! and back/forward follow it). A router crate was about a quarter of the page's
//! bundle for these two lines of routing.
//!
//! The server parses the request's path and query with [`Address::parse`] and
//! provides it as context; the browser parses its own location with the same
//! function, so hydration sees what the server rendered.

use leptos::prelude::*;

/// The room the page shows when its path names none.
const DEFAULT_ROOM: &str = "lobby";

/// What the page's URL says: the room, `?new` (this browser just made the room and
/// makes it private to its user) and `?invite=CODE` (join the private room).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Address {
    pub room: String,
    pub new: bool,
    pub invite: Option<String>,
}

impl Address {
    /// From a URL's path (`/room/{room}`) and query (`a=b&c`, with or without its `?`).
    pub fn parse(path: &str, query: &str) -> Address {
        let room = path
            .strip_prefix("/room/")
            .map(|segment| segment.trim_end_matches('/'))
            .filter(|segment| !segment.is_empty() && !segment.contains('/'))
            .map(percent_decode)
            .unwrap_or_else(|| DEFAULT_ROOM.to_string());
        let mut address = Address { room, new: false, invite: None };
        for pair in query.trim_start_matches('?').split('&').filter(|pair| !pair.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match percent_decode(key).as_str() {
                "new" => address.new = true,
                "invite" if address.invite.is_none() => address.invite = Some(percent_decode(value)),
                _ => {}
            }
        }
        address
    }
}

/// `%XX` escapes and `+` (a space, in a query) decoded; a malformed escape is kept
/// as it was.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |at: usize| bytes.get(at).and_then(|b| (*b as char).to_digit(16));
        match bytes[i] {
            b'%' => match (hex(i + 1), hex(i + 2)) {
                (Some(high), Some(low)) => {
                    out.push((high * 16 + low) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The page's room, live: it follows [`navigate_to_room`] and back/forward.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CurrentRoom(pub RwSignal<String>);

/// The address this page was loaded with: the server's context while rendering,
/// the browser's location after.
pub(crate) fn initial() -> Address {
    #[cfg(feature = "hydrate")]
    {
        let location = web_sys::window().map(|window| window.location());
        let path = location.as_ref().and_then(|l| l.pathname().ok()).unwrap_or_default();
        let query = location.as_ref().and_then(|l| l.search().ok()).unwrap_or_default();
        Address::parse(&path, &query)
    }
    #[cfg(not(feature = "hydrate"))]
    use_context::<Address>().unwrap_or_default()
}

/// The current room as a signal that follows the browser's history.
pub(crate) fn current_room(initial: &Address) -> CurrentRoom {
    let room = CurrentRoom(RwSignal::new(initial.room.clone()));
    #[cfg(feature = "hydrate")]
    {
        let handle = window_event_listener(leptos::ev::popstate, move |_| {
            let path = web_sys::window().and_then(|window| window.location().pathname().ok());
            room.0.set(Address::parse(&path.unwrap_or_default(), "").room);
        });
        on_cleanup(move || handle.remove());
    }
    room
}

/// Shows `room` in place: a new history entry, the page's room signal follows.
pub(crate) fn navigate_to_room(current: CurrentRoom, room: &str) {
    #[cfg(feature = "hydrate")]
    if let Some(history) = web_sys::window().and_then(|window| window.history().ok()) {
        let _ = history.push_state_with_url(&wasm_bindgen::JsValue::NULL, "", Some(&format!("/room/{room}")));
    }
    current.0.set(room.to_string());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_room_is_the_paths_second_segment_decoded() {
        assert_eq!(Address::parse("/room/94462", "").room, "94462");
        assert_eq!(Address::parse("/room/team%2Dchat/", "").room, "team-chat");
        assert_eq!(Address::parse("/", "").room, "lobby");
        assert_eq!(Address::parse("/room/", "").room, "lobby");
        assert_eq!(Address::parse("/room/a/b", "").room, "lobby");
        assert_eq!(Address::parse("/room/bad%zzescape", "").room, "bad%zzescape");
    }

    #[test]
    fn new_and_invite_come_from_the_query() {
        let created = Address::parse("/room/p_1", "?new");
        assert!(created.new);
        assert_eq!(created.invite, None);
        let invited = Address::parse("/room/p_1", "invite=ab%2Bc+d&invite=second&other=1");
        assert!(!invited.new);
        assert_eq!(invited.invite.as_deref(), Some("ab+c d"));
        assert_eq!(
            Address::parse("/room/p_1", "?invite"),
            Address { room: "p_1".into(), new: false, invite: Some(String::new()) }
        );
    }
}
