//! Windowed queries (`sync::window`) kept up by the real store: after any sequence of
//! upstream changes on the topic (delivered as pulls and pokes deliver them), widened
//! windows (`load_more`), evictions, and the pages a short window asks for, the
//! window read locally equals `Select::evaluate` with its limit over every record
//! upstream, and so does the page's `LiveRows` view kept up by the store's record
//! reports.

#[path = "../../serverless-sync/tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::{Value, json};
use sync::changes::{Change, ChangeKind, Cursor};
use sync::model::MutationContext;
use sync::operation::{Operator, Order, Select};
use sync::schema::Row;
use sync::view::{Applied, LiveRows};
use sync::window::{Coverage, compare_to_keyset, sized};
use sync_store::{LocalStore, Reach};

const IDS: usize = 12;

fn store() -> LocalStore {
    LocalStore::open(sync_store::Connection::open_in_memory().expect("db"), common::model(), || {
        "client_a".into()
    })
    .expect("open")
}

fn card(id: &str, board: &str, at: i64, body: &str) -> Row {
    [
        ("id", json!(id)),
        ("board_id", json!(board)),
        ("author", json!("Ada")),
        ("body", json!(body)),
        ("created_at", json!(at)),
        ("last_modified_by", json!("x")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// The newest cards of board `b1` first, `size` of them.
fn newest(size: u32) -> Select {
    Select::from("cards")
        .filter("board_id", Operator::Eq, "b1")
        .order_by("created_at", Order::Desc)
        .limit(size)
}

/// Upstream: every record, and the change log's head.
#[derive(Default)]
struct Upstream {
    records: BTreeMap<String, Row>,
    seq: u64,
}

impl Upstream {
    /// Writes a record (`None`: deletes it); the change, if it is on board b1's
    /// topic (the record was or is on b1), as a pull or poke hands it out.
    fn write(&mut self, id: &str, row: Option<Row>) -> Option<Change> {
        let before = match &row {
            Some(row) => self.records.insert(id.to_string(), row.clone()),
            None => self.records.remove(id),
        };
        self.seq += 1;
        let on_b1 = |row: &Option<Row>| row.as_ref().is_some_and(|row| row["board_id"] == json!("b1"));
        (on_b1(&before) || on_b1(&row)).then(|| Change {
            seq: Cursor(self.seq),
            collection: "cards".into(),
            record_id: id.into(),
            kind: if row.is_some() { ChangeKind::Upsert } else { ChangeKind::Delete },
            row,
            topics: Vec::new(),
            client_id: String::new(),
            mutation_id: String::new(),
        })
    }

    fn evaluate(&self, select: &Select) -> Vec<Row> {
        select.evaluate(self.records.values(), "id")
    }

    /// The server's page of `select` after `after`, at most `rows`, and whether it
    /// reaches the end (as `read_page` answers, reading one row more).
    fn page(&self, select: &Select, after: Option<&[Value]>, rows: usize) -> (Vec<Row>, bool) {
        let collection = common::cards();
        let all = self.evaluate(&Select { limit: None, ..select.clone() });
        let past: Vec<Row> = all
            .into_iter()
            .filter(|row| {
                after.is_none_or(|after| {
                    compare_to_keyset(&collection, select, row, after) == std::cmp::Ordering::Greater
                })
            })
            .collect();
        let complete = past.len() <= rows;
        (past.into_iter().take(rows).collect(), complete)
    }
}

/// Upstream with cards c0..c9 on board b1, created at 0..9.
fn ten_cards() -> Upstream {
    let mut upstream = Upstream::default();
    for i in 0..10 {
        let id = format!("c{i}");
        upstream.write(&id, Some(card(&id, "b1", i, "x")));
    }
    upstream
}

/// Installs the window `select`'s snapshot from upstream: its first `limit` rows,
/// covering up to the last of them (or to the end when they are all).
fn install_snapshot(store: &mut LocalStore, upstream: &Upstream, select: &Select, only_query: bool) {
    let size = select.limit.unwrap_or(u32::MAX) as usize;
    let (rows, complete) = upstream.page(select, None, size);
    let coverage = Coverage::of_pages(&common::cards(), select, None, &rows, complete);
    store
        .apply_window_snapshot(select, &rows, Cursor(upstream.seq), only_query, &coverage)
        .expect("snapshot");
}

/// Rows in the collection tables (what the browser keeps), not the engine's own.
fn local_rows(store: &LocalStore) -> u64 {
    let counts = store.table_counts().expect("counts");
    counts.iter().filter(|(name, _)| !name.starts_with("sync_")).map(|(_, count)| count).sum()
}

#[derive(Debug, Clone)]
enum Step {
    Write { id: usize, board: &'static str, at: i64, body: &'static str },
    Delete { id: usize },
    LoadMore { rows: u32 },
    Evict,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        5 => (0..IDS, prop_oneof![3 => Just("b1"), 1 => Just("b2")], 0i64..8, prop_oneof![Just("x"), Just("y")])
            .prop_map(|(id, board, at, body)| Step::Write { id, board, at, body }),
        2 => (0..IDS).prop_map(|id| Step::Delete { id }),
        1 => (1u32..4).prop_map(|rows| Step::LoadMore { rows }),
        1 => Just(Step::Evict),
    ]
}

/// Asks the server for pages after the covered part until the window is covered,
/// as the browser's worker does; returns the records the pages touched.
fn fill(
    store: &mut LocalStore,
    upstream: &Upstream,
    select: &Select,
    page_rows: usize,
) -> Vec<(String, Option<Row>, bool)> {
    let collection = common::cards();
    let mut reports = Vec::new();
    for _ in 0..50 {
        let read = store.query_window(select).expect("read");
        if read.covered {
            break;
        }
        // Only a window short of rows asks the server (no page is fetched for nothing).
        assert!(
            read.rows.len() < select.limit.unwrap_or(0) as usize,
            "asked for a page while holding the window"
        );
        let after = match store.window_reach(select).expect("reach") {
            Some(Reach::Until(until)) => until,
            other => panic!("a synced window that is not covered reaches {other:?}"),
        };
        let (rows, complete) = upstream.page(select, Some(&after), page_rows);
        let coverage = Coverage::of_pages(&collection, select, Some(after), &rows, complete);
        let touched =
            store.apply_window_page(select, &rows, Cursor(upstream.seq), &coverage).expect("page installs");
        reports.extend(views(store, touched));
    }
    reports
}

fn views(
    store: &LocalStore,
    touched: std::collections::BTreeSet<sync_store::Touched>,
) -> Vec<(String, Option<Row>, bool)> {
    store
        .record_views(&touched)
        .expect("views")
        .into_iter()
        .map(|view| (view.record_id, view.row, view.pending))
        .collect()
}

fn follow(
    view: &mut LiveRows,
    store: &LocalStore,
    select: &Select,
    reports: Vec<(String, Option<Row>, bool)>,
) {
    let mut applied = Applied::Unchanged;
    for (id, row, pending) in reports {
        applied = applied.and(view.apply_record(&id, row.as_ref(), pending));
    }
    if applied == Applied::Reread || view.is_stale() {
        view.replace(store.query(select).expect("read"), Vec::<String>::new());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn a_window_kept_up_by_changes_and_pages_equals_the_query_over_every_record(
        start in proptest::collection::vec((0..IDS, 0i64..8), 0..10),
        steps in proptest::collection::vec(step(), 1..40),
        size in 1u32..5,
        page_rows in 1usize..4,
    ) {
        let mut upstream = Upstream::default();
        for (id, at) in start {
            upstream.write(&format!("c{id}"), Some(card(&format!("c{id}"), "b1", at, "s")));
        }
        let mut store = store();
        let mut size = size;
        // The snapshot: the window's first `size` rows, and whether they are all.
        install_snapshot(&mut store, &upstream, &newest(size), true);
        let mut view = LiveRows::new(newest(size), "id", store.query(&newest(size)).expect("read"), Vec::<String>::new());
        for step in steps {
            let mut reports = Vec::new();
            match step {
                Step::Write { id, board, at, body } => {
                    let id = format!("c{id}");
                    if let Some(change) = upstream.write(&id, Some(card(&id, board, at, body))) {
                        let touched = store_pull(&mut store, change);
                        reports = views(&store, touched);
                    }
                }
                Step::Delete { id } => {
                    if let Some(change) = upstream.write(&format!("c{id}"), None) {
                        let touched = store_pull(&mut store, change);
                        reports = views(&store, touched);
                    }
                }
                Step::LoadMore { rows } => {
                    size += rows;
                    view = LiveRows::new(newest(size), "id", store.query(&newest(size)).expect("read"), Vec::<String>::new());
                }
                Step::Evict => {
                    let eviction = store.evict(&[newest(size)]).expect("evict");
                    reports = views(&store, eviction.touched);
                }
            }
            reports.extend(fill(&mut store, &upstream, &newest(size), page_rows));
            follow(&mut view, &store, &newest(size), reports);
            let expected = upstream.evaluate(&newest(size));
            prop_assert_eq!(&store.query(&newest(size)).expect("read"), &expected, "the store's window");
            prop_assert_eq!(&view.rows(), &expected, "the page's view");
            let read = store.query_window(&newest(size)).expect("read");
            let total = upstream.evaluate(&Select { limit: None, ..newest(size) }).len();
            if total > size as usize {
                prop_assert!(read.more, "`more` is true whenever rows follow the window");
            }
        }
    }
}

fn store_pull(store: &mut LocalStore, change: Change) -> std::collections::BTreeSet<sync_store::Touched> {
    let seq = change.seq;
    store.apply_pull(&[change], seq).expect("pull")
}

#[test]
fn eviction_keeps_the_windows_in_use_and_every_pending_write() {
    let mut store = store();
    let mut upstream = Upstream::default();
    for (board, count) in [("b1", 30), ("b2", 30)] {
        for i in 0..count {
            let id = format!("{board}_{i:02}");
            upstream.write(&id, Some(card(&id, board, i, "old")));
        }
    }
    let b2 = |size| Select {
        filters: vec![sync::Filter { column: "board_id".into(), operator: Operator::Eq, value: json!("b2") }],
        ..newest(size)
    };
    for select in [newest(5), b2(5)] {
        install_snapshot(&mut store, &upstream, &select, false);
    }
    // Later changes on b1 beyond its window arrive too (an edit of an old card).
    let edit = upstream.write("b1_00", Some(card("b1_00", "b1", 0, "edited"))).expect("on b1");
    store.apply_pull(&[edit], Cursor(upstream.seq)).expect("pull");
    // A write made here, offline, on b2: pending.
    let ctx = MutationContext { client_id: "client_a".into(), record_id: "b2_mine".into(), now_ms: -1 };
    let args = json!({"boardId": "b2", "author": "Ada", "body": "not sent yet"});
    store.mutate("outbox_1", "addCard", &args, &ctx).expect("local write");
    assert_eq!(local_rows(&store), 5 + 5 + 1 + 1);

    // Only b1's window is in use now: b2's rows go, the pending write stays, and so
    // does nothing past b1's window.
    let eviction = store.evict(&[newest(5)]).expect("evict");
    assert_eq!(eviction.touched.len(), 6, "b2's five rows and the old b1 card");
    assert_eq!(local_rows(&store), 5 + 1);
    assert_eq!(store.outbox_len().expect("outbox"), 1);
    assert!(store.rows("cards").expect("rows").iter().any(|row| row["id"] == json!("b2_mine")));
    assert_eq!(store.window_reach(&b2(5)).expect("reach"), None, "b2's window is forgotten");
    assert_eq!(store.query(&newest(5)).expect("rows"), upstream.evaluate(&newest(5)));
}

#[test]
fn a_snapshot_of_a_window_does_not_take_rows_past_it_for_deleted() {
    let mut store = store();
    let upstream = ten_cards();
    // Widened to 8 once, then the query is fetched again with its own window of 3:
    // rows 4..8 are past the new snapshot, not deleted.
    install_snapshot(&mut store, &upstream, &newest(8), true);
    install_snapshot(&mut store, &upstream, &newest(3), false);
    assert_eq!(local_rows(&store), 8, "nothing past the snapshot was taken for deleted");
    let read = store.query_window(&newest(5)).expect("read");
    assert_eq!(read.rows.len(), 3, "the covered part is the new snapshot's");
    assert!(!read.covered && read.more, "so a window of 5 asks for the next page");
}

#[test]
fn a_window_page_that_does_not_start_where_the_covered_part_ends_extends_nothing() {
    let collection = common::cards();
    let mut store = store();
    let upstream = ten_cards();
    install_snapshot(&mut store, &upstream, &newest(3), true);
    // A page asked for after row 5 (say, before an eviction cut the window back).
    let after = sync::window::keyset(&collection, &newest(3), &card("c5", "b1", 5, "x"));
    let (rows, complete) = upstream.page(&newest(3), Some(&after), 3);
    let coverage = Coverage::of_pages(&collection, &newest(3), Some(after), &rows, complete);
    store.apply_window_page(&newest(3), &rows, Cursor(upstream.seq), &coverage).expect("page");
    assert_eq!(sized(&newest(3), 6).limit, Some(6));
    assert_eq!(store.query(&newest(6)).expect("read").len(), 3, "rows 4..2 are held but not covered");
}

#[test]
fn the_driver_asks_for_the_next_page_only_when_the_window_lacks_rows() {
    use sync_store::driver::{Snapshot, SyncDriver};
    let collection = common::cards();
    let mut store = store();
    let mut driver = SyncDriver::new("session_1");
    let mut upstream = ten_cards();
    let mut query = common::model().validate_query("boardCards", &json!({"boardId": "b1"})).expect("valid");
    query.select = newest(3);
    assert!(driver.subscribe(&query));
    assert_eq!(driver.window_page_request(&store, &query).expect("plan"), None, "not synced yet");
    let (rows, complete) = upstream.page(&newest(3), None, 3);
    let installed =
        driver.on_answer(&mut store, &query, &rows, Cursor(upstream.seq), complete).expect("snapshot");
    assert!(matches!(installed, Snapshot::Installed(_)));
    assert_eq!(driver.window_page_request(&store, &query).expect("plan"), None, "the window is held");
    // A row inside leaves: one row is asked for, after the covered part.
    let change = upstream.write("c8", None).expect("on b1");
    store.apply_pull(&[change], Cursor(upstream.seq)).expect("pull");
    let (request, after) = driver.window_page_request(&store, &query).expect("plan").expect("a page");
    let bound = sync::window::keyset(&collection, &newest(3), &card("c7", "b1", 7, "x"));
    assert_eq!(after, bound);
    let page = request.after.clone().expect("a continuation");
    assert_eq!((page.after, page.served, request.window), (bound.clone(), 2, Some(3)));
    // The server's answer: at most `window - served` rows.
    let (rows, complete) = upstream.page(&newest(3), Some(&bound), 1);
    driver.on_window_page(&mut store, &query, after, &rows, Cursor(upstream.seq), complete).expect("page");
    assert_eq!(driver.window_page_request(&store, &query).expect("plan"), None);
    assert_eq!(store.query(&newest(3)).expect("read"), upstream.evaluate(&newest(3)));
}
