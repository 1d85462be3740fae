//! The in-page devtools (feature `devtools`): a panel over the page that shows what
//! the sync engine is doing. Mounted in a root of its own at the end of `<body>`
//! (never part of the app's tree, so server rendering and hydration are untouched),
//! closed until asked for: Alt+Shift+D, or `?devtools` in the address. While open it
//! asks the SQLite Web Worker for the open tab twice a second, as HTML the worker
//! renders (`crate::panel`, plain functions), and puts it in place; closed, it costs
//! nothing.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use leptos::prelude::GetUntracked;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::Closure;
use web_sys::{Element, HtmlElement};

use crate::SyncClient;
use crate::bridge::{Reply, Request};
use crate::panel::{self, Tab};

/// How often an open panel reads the worker's state.
const REFRESH_MS: i32 = 500;

struct Devtools {
    client: SyncClient,
    root: HtmlElement,
    open: Cell<bool>,
    tab: Cell<Tab>,
    /// The worker's last HTML for the open tab.
    content: RefCell<Option<String>>,
    failure: RefCell<Option<String>>,
    /// What is typed stays across refreshes and tab switches.
    filter: RefCell<String>,
    sql: RefCell<String>,
    /// Console statements run so far; each answer is marked with its run.
    runs: Cell<u32>,
    /// The console's last answer, as HTML.
    answer: RefCell<Option<String>>,
    reading: Cell<bool>,
    timer: Cell<Option<i32>>,
    tick: RefCell<Option<Closure<dyn FnMut()>>>,
}

/// Mounts the (closed) panel for `client`.
pub(crate) fn mount(client: SyncClient) {
    let Some(window) = web_sys::window() else { return };
    let Some(document) = window.document() else { return };
    let (Ok(root), Some(body)) = (document.create_element("div"), document.body()) else { return };
    let _ = root.set_attribute("data-testid", "sync-devtools-root");
    if body.append_child(&root).is_err() {
        return;
    }
    let Ok(root) = root.dyn_into::<HtmlElement>() else { return };
    let devtools = Rc::new(Devtools {
        client,
        root,
        open: Cell::new(false),
        tab: Cell::new(Tab::Status),
        content: RefCell::new(None),
        failure: RefCell::new(None),
        filter: RefCell::new(String::new()),
        sql: RefCell::new(String::new()),
        runs: Cell::new(0),
        answer: RefCell::new(None),
        reading: Cell::new(false),
        timer: Cell::new(None),
        tick: RefCell::new(None),
    });
    // The listeners live as long as the page.
    let on_key = {
        let devtools = devtools.clone();
        Closure::<dyn FnMut(web_sys::KeyboardEvent)>::new(move |event: web_sys::KeyboardEvent| {
            if event.alt_key() && event.shift_key() && event.code() == "KeyD" {
                event.prevent_default();
                if devtools.open.get() { close(&devtools) } else { open(&devtools) }
            }
        })
    };
    let _ = window.add_event_listener_with_callback("keydown", on_key.as_ref().unchecked_ref());
    on_key.forget();
    let on_click = {
        let devtools = devtools.clone();
        Closure::<dyn FnMut(web_sys::Event)>::new(move |event: web_sys::Event| on_click(&devtools, &event))
    };
    let _ = devtools.root.add_event_listener_with_callback("click", on_click.as_ref().unchecked_ref());
    on_click.forget();
    let on_input = {
        let devtools = devtools.clone();
        Closure::<dyn FnMut(web_sys::Event)>::new(move |event: web_sys::Event| on_input(&devtools, &event))
    };
    let _ = devtools.root.add_event_listener_with_callback("input", on_input.as_ref().unchecked_ref());
    on_input.forget();
    let tick = {
        let devtools = devtools.clone();
        Closure::<dyn FnMut()>::new(move || read(&devtools))
    };
    *devtools.tick.borrow_mut() = Some(tick);
    if asked_for_in_address() {
        open(&devtools);
    }
}

fn asked_for_in_address() -> bool {
    web_sys::window().and_then(|window| window.location().search().ok()).is_some_and(|search| {
        search.trim_start_matches('?').split('&').any(|pair| pair.split('=').next() == Some("devtools"))
    })
}

fn open(devtools: &Rc<Devtools>) {
    devtools.open.set(true);
    render_frame(devtools);
    read(devtools);
    let Some(window) = web_sys::window() else { return };
    if let Some(tick) = devtools.tick.borrow().as_ref() {
        let timer = window
            .set_interval_with_callback_and_timeout_and_arguments_0(tick.as_ref().unchecked_ref(), REFRESH_MS)
            .ok();
        devtools.timer.set(timer);
    }
}

fn close(devtools: &Devtools) {
    devtools.open.set(false);
    devtools.root.set_inner_html("");
    if let (Some(timer), Some(window)) = (devtools.timer.take(), web_sys::window()) {
        window.clear_interval_with_handle(timer);
    }
}

/// The element `event` happened on, or its nearest ancestor matching `selector`.
fn target(event: &web_sys::Event, selector: &str) -> Option<Element> {
    event.target()?.dyn_into::<Element>().ok()?.closest(selector).ok()?
}

fn on_click(devtools: &Rc<Devtools>, event: &web_sys::Event) {
    let Some(clicked) = target(event, "[data-tab],[data-action]") else { return };
    if let Some(tab) = clicked.get_attribute("data-tab").as_deref().and_then(Tab::from_id) {
        devtools.tab.set(tab);
        *devtools.content.borrow_mut() = None;
        render_frame(devtools);
        read(devtools);
        return;
    }
    match clicked.get_attribute("data-action").as_deref() {
        Some("close") => close(devtools),
        Some("run") => run_sql(devtools),
        _ => {}
    }
}

fn on_input(devtools: &Rc<Devtools>, event: &web_sys::Event) {
    let Some(field) = target(event, "[data-input]") else { return };
    let value = if let Some(input) = field.dyn_ref::<web_sys::HtmlInputElement>() {
        input.value()
    } else if let Some(text) = field.dyn_ref::<web_sys::HtmlTextAreaElement>() {
        text.value()
    } else {
        return;
    };
    match field.get_attribute("data-input").as_deref() {
        Some("filter") => {
            *devtools.filter.borrow_mut() = value;
            read(devtools);
        }
        Some("sql") => *devtools.sql.borrow_mut() = value,
        _ => {}
    }
}

/// The frame (tabs, the tab's controls) and its content: on opening and tab switches.
fn render_frame(devtools: &Devtools) {
    if !devtools.open.get() {
        return;
    }
    let html = panel::frame(devtools.tab.get(), &devtools.filter.borrow(), &devtools.sql.borrow());
    devtools.root.set_inner_html(&html);
    render_content(devtools);
    render_answer(devtools);
}

/// The content only: the controls (and what is typed in them) stay.
fn render_content(devtools: &Devtools) {
    let Ok(Some(content)) = devtools.root.query_selector(".sdt-content") else { return };
    let mut html = devtools.failure.borrow().as_deref().map(panel::failure).unwrap_or_default();
    if devtools.tab.get() == Tab::Timings {
        html.push_str(&panel::timings(&devtools.client.metrics.get_untracked()));
    } else {
        html.push_str(devtools.content.borrow().as_deref().unwrap_or(panel::READING));
    }
    content.set_inner_html(&html);
}

fn render_answer(devtools: &Devtools) {
    let runs = devtools.runs.get();
    if let Ok(Some(button)) = devtools.root.query_selector("[data-action=run]") {
        let _ = button.set_attribute("data-runs", &runs.to_string());
    }
    if let Ok(Some(slot)) = devtools.root.query_selector(".sdt-answer") {
        slot.set_inner_html(devtools.answer.borrow().as_deref().unwrap_or_default());
    }
}

/// Asks the worker for the open tab (one request at a time) and shows it. An answer
/// for a tab or filter no longer shown is dropped; the next tick asks again.
fn read(devtools: &Rc<Devtools>) {
    if !devtools.open.get() {
        return;
    }
    let tab = devtools.tab.get();
    if tab == Tab::Timings {
        render_content(devtools);
        return;
    }
    if devtools.reading.replace(true) {
        return;
    }
    let filter = devtools.filter.borrow().clone();
    let request = Request::Inspect {
        tab: tab.id().into(),
        filter: filter.clone(),
        leader: devtools.client.leader.get_untracked(),
    };
    let devtools = devtools.clone();
    leptos::task::spawn_local(async move {
        let answer = devtools.client.request(request).await;
        devtools.reading.set(false);
        if devtools.tab.get() != tab || *devtools.filter.borrow() != filter {
            return;
        }
        match answer {
            Ok(Reply::Html { html }) => {
                *devtools.content.borrow_mut() = Some(html);
                *devtools.failure.borrow_mut() = None;
            }
            Ok(_) => *devtools.failure.borrow_mut() = Some("unexpected answer from the worker".into()),
            Err(error) => *devtools.failure.borrow_mut() = Some(error),
        }
        render_content(&devtools);
    });
}

/// Runs the console's statement on the worker (read-only there) and shows the answer.
fn run_sql(devtools: &Rc<Devtools>) {
    let sql = devtools.sql.borrow().clone();
    *devtools.answer.borrow_mut() = None;
    render_answer(devtools);
    let run = devtools.runs.get() + 1;
    let devtools = devtools.clone();
    leptos::task::spawn_local(async move {
        let html = match devtools.client.request(Request::Sql { sql, run }).await {
            Ok(Reply::Html { html }) => html,
            Ok(_) => panel::sql_error("unexpected answer from the worker", run),
            Err(error) => panel::sql_error(&error, run),
        };
        devtools.runs.set(run);
        *devtools.answer.borrow_mut() = Some(html);
        render_answer(&devtools);
    });
}
