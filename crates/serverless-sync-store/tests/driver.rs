//! The sync loop's decisions (`sync_store::driver`) against the real store: the cases
//! the simulation (`cargo xtask sim`) found, kept as plain tests.

#[path = "../../serverless-sync/tests/common/mod.rs"]
mod common;

use serde_json::json;
use sync::changes::{Change, ChangeKind, Cursor};
use sync::model::MutationContext;
use sync::protocol::pull::PullResponse;
use sync::protocol::push::{MutationOutcome, MutationResult, PushResponse};
use sync_store::LocalStore;
use sync_store::driver::{Snapshot, SyncDriver};

fn store() -> LocalStore {
    LocalStore::open(sync_store::Connection::open_in_memory().expect("db"), common::model(), || {
        "client_a".into()
    })
    .expect("open")
}

fn board(name: &str) -> sync::ValidatedQuery {
    common::model().validate_query("boardCards", &json!({ "boardId": name })).expect("valid")
}

fn card(id: &str, board: &str, body: &str) -> sync::Row {
    [
        ("id", json!(id)),
        ("board_id", json!(board)),
        ("author", json!("Ada")),
        ("body", json!(body)),
        ("created_at", json!(1)),
        ("last_modified_by", json!("client_a")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn change(seq: u64, id: &str, row: Option<sync::Row>) -> Change {
    Change {
        seq: Cursor(seq),
        collection: "cards".into(),
        record_id: id.into(),
        kind: if row.is_some() { ChangeKind::Upsert } else { ChangeKind::Delete },
        row,
        topics: Vec::new(),
        client_id: String::new(),
        mutation_id: String::new(),
    }
}

fn ids(store: &LocalStore, query: &sync::ValidatedQuery) -> Vec<String> {
    store
        .query(&query.select)
        .expect("rows")
        .iter()
        .map(|r| r["id"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Seed 190: b1's snapshot at 0, then b3's at 1, before any pull. The store's cursor
/// must stay where b1 stands, or the pull would skip b1's change 1 for good.
#[test]
fn a_second_snapshot_does_not_move_the_cursor_past_the_first_querys_changes() {
    let mut store = store();
    let mut driver = SyncDriver::new("session_a");
    let (b1, b3) = (board("b1"), board("b3"));
    assert!(driver.subscribe(&b1) && driver.subscribe(&b3));
    assert!(matches!(driver.on_snapshot(&mut store, &b1, &[], Cursor(0)), Ok(Snapshot::Installed(_))));
    assert!(matches!(driver.on_snapshot(&mut store, &b3, &[], Cursor(1)), Ok(Snapshot::Installed(_))));
    let request = driver.pull_request(&store).expect("store").expect("a pull");
    assert_eq!(request.cursor, Cursor(0), "b1 is pulled from where its snapshot left it");
    let page = PullResponse {
        changes: vec![change(1, "card_x", Some(card("card_x", "b1", "hi")))],
        cursor: Cursor(1),
        has_more: false,
        refused: Vec::new(),
    };
    driver.on_pulled(&mut store, &request, &page).expect("pull");
    assert_eq!(ids(&store, &b1), vec!["card_x"]);
}

/// The app refuses one of two queries in a pull: that one shows the reason and leaves
/// pulls; the other syncs on.
#[test]
fn a_subscription_refused_in_a_pull_leaves_pulls_and_the_others_sync_on() {
    let mut store = store();
    let mut driver = SyncDriver::new("session_a");
    let (b1, b3) = (board("b1"), board("b3"));
    driver.subscribe(&b1);
    driver.subscribe(&b3);
    driver.on_snapshot(&mut store, &b1, &[], Cursor(0)).expect("snapshot");
    driver.on_snapshot(&mut store, &b3, &[], Cursor(0)).expect("snapshot");
    let request = driver.pull_request(&store).expect("store").expect("a pull");
    let page = PullResponse {
        changes: vec![change(1, "card_x", Some(card("card_x", "b1", "hi")))],
        cursor: Cursor(1),
        has_more: false,
        refused: vec![sync::protocol::pull::RefusedSubscription {
            name: b3.name.clone(),
            args: b3.args.clone(),
            topic: b3.topic.to_string(),
            reason: "not yours".into(),
        }],
    };
    driver.on_pulled(&mut store, &request, &page).expect("pull");
    assert_eq!(ids(&store, &b1), vec!["card_x"]);
    assert_eq!(driver.denied(b3.topic.as_str()), Some("not yours"));
    assert_eq!(driver.denied(b1.topic.as_str()), None);
    let next = driver.pull_request(&store).expect("store").expect("a pull");
    let names: Vec<&serde_json::Value> = next.subscriptions.iter().map(|s| &s.args).collect();
    assert_eq!(names, vec![&b1.args], "only b1 is pulled");
}

/// Seed 850: a snapshot older than what the store pulled through is fetched again,
/// and the query stays subscribed (it is still pulled).
#[test]
fn a_stale_snapshot_is_fetched_again_and_its_query_stays_in_pulls() {
    let mut store = store();
    let mut driver = SyncDriver::new("session_a");
    let (b1, b3) = (board("b1"), board("b3"));
    driver.subscribe(&b1);
    driver.subscribe(&b3);
    driver.on_snapshot(&mut store, &b1, &[], Cursor(2)).expect("snapshot");
    assert_eq!(store.cursor().expect("cursor"), Cursor(2));
    assert_eq!(driver.on_snapshot(&mut store, &b3, &[], Cursor(1)).expect("snapshot"), Snapshot::Stale);
    let request = driver.pull_request(&store).expect("store").expect("a pull");
    assert_eq!(request.subscriptions.len(), 2, "b3 is still pulled");
    // A snapshot of a query no longer subscribed is dropped.
    driver.forget(b3.topic.as_str());
    assert_eq!(driver.on_snapshot(&mut store, &b3, &[], Cursor(2)).expect("snapshot"), Snapshot::NotWanted);
}

/// Seed 2267: the client's own card is applied upstream (2), then moved away (3)
/// before the answer reaches it; a snapshot at 3 does not have it. The replayed
/// answer's image (2) must not bring it back on that board.
#[test]
fn a_replayed_answer_does_not_bring_back_a_record_a_newer_snapshot_lacks() {
    let mut store = store();
    let mut driver = SyncDriver::new("session_a");
    let b3 = board("b3");
    driver.subscribe(&b3);
    let ctx = MutationContext { client_id: "client_a".into(), record_id: "card_2".into(), now_ms: 1 };
    store
        .mutate(
            "outbox_01J00000000000000000000001",
            "addCard",
            &json!({"boardId": "b3", "author": "Ada", "body": "hi"}),
            &ctx,
        )
        .expect("write");
    assert_eq!(ids(&store, &b3), vec!["card_2"], "shown at once");
    driver.on_snapshot(&mut store, &b3, &[], Cursor(3)).expect("snapshot");
    assert_eq!(ids(&store, &b3), vec!["card_2"], "still pending: still shown");
    let answer = PushResponse {
        results: vec![MutationResult {
            id: "outbox_01J00000000000000000000001".into(),
            outcome: MutationOutcome::Confirmed { row: Some(card("card_2", "b3", "hi")), seq: Cursor(2) },
        }],
        cursor: Cursor(3),
    };
    driver.on_pushed(&mut store, &answer).expect("resolve");
    assert!(ids(&store, &b3).is_empty(), "moved away as of the snapshot");
    // An image of it elsewhere, or a newer one, still lands.
    store.apply_pull(&[change(4, "card_2", Some(card("card_2", "b3", "back")))], Cursor(4)).expect("pull");
    assert_eq!(ids(&store, &b3), vec!["card_2"]);
}

/// Seed 2642: a pending write shows a record on b3; b3's snapshot lacks it, but it
/// exists on b2 (older change 1). The b2 image must still land.
#[test]
fn a_record_absent_from_one_snapshot_still_lands_from_another_query() {
    let mut store = store();
    let mut driver = SyncDriver::new("session_a");
    let (b2, b3) = (board("b2"), board("b3"));
    driver.subscribe(&b2);
    driver.subscribe(&b3);
    let ctx = MutationContext { client_id: "client_a".into(), record_id: "card_2".into(), now_ms: 1 };
    store
        .mutate(
            "outbox_01J00000000000000000000001",
            "addCard",
            &json!({"boardId": "b3", "author": "Ada", "body": "mine"}),
            &ctx,
        )
        .expect("write");
    driver.on_snapshot(&mut store, &b2, &[], Cursor(0)).expect("snapshot");
    driver.on_snapshot(&mut store, &b3, &[], Cursor(2)).expect("snapshot");
    // The insert is refused (the record exists), and the pull brings the b2 image.
    let answer = PushResponse {
        results: vec![MutationResult {
            id: "outbox_01J00000000000000000000001".into(),
            outcome: MutationOutcome::Rejected { reason: "a record with this id already exists".into() },
        }],
        cursor: Cursor(2),
    };
    driver.on_pushed(&mut store, &answer).expect("resolve");
    store.apply_pull(&[change(1, "card_2", Some(card("card_2", "b2", "theirs")))], Cursor(2)).expect("pull");
    assert_eq!(ids(&store, &b2), vec!["card_2"]);
    assert!(ids(&store, &b3).is_empty());
}

/// Seed 3429: b3's snapshot at 1 moves the store's cursor; b2 is opened (answer A,
/// at 1, with card_2), then fetched again after a refused pull (answer B, at 2: card_2
/// moved away). B arrives first. A, arriving late, must not bring card_2 back.
#[test]
fn an_older_snapshot_arriving_after_a_newer_one_is_dropped() {
    let mut store = store();
    let mut driver = SyncDriver::new("session_a");
    let (b2, b3) = (board("b2"), board("b3"));
    assert!(driver.subscribe(&b3) && driver.subscribe(&b2));
    assert!(matches!(driver.on_snapshot(&mut store, &b3, &[], Cursor(1)), Ok(Snapshot::Installed(_))));
    assert!(matches!(driver.on_snapshot(&mut store, &b2, &[], Cursor(2)), Ok(Snapshot::Installed(_))));
    let late = [card("card_2", "b2", "secret")];
    assert!(matches!(driver.on_snapshot(&mut store, &b2, &late, Cursor(1)), Ok(Snapshot::NotWanted)));
    assert!(ids(&store, &b2).is_empty(), "the moved card stays gone");
}

#[test]
fn a_query_no_page_reads_is_unwatched_once_and_a_reopened_one_is_pulled_back() {
    let mut store = store();
    let mut driver = SyncDriver::new("session_a");
    let (b1, b2) = (board("b1"), board("b2"));
    assert!(driver.subscribe(&b1));
    assert!(driver.subscribe(&b2));
    assert!(driver.take_unwatch().is_empty(), "nothing to unwatch while both are read");

    // b1's time to live ran out: one unwatch names it, then nothing is pending.
    driver.stop_reading(b1.topic.as_str());
    let sent = driver.take_unwatch();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].topics, vec![b1.topic.to_string()]);
    assert!(driver.take_unwatch().is_empty());
    // Its rows by poke are not installed, and the session is told again (its unwatch
    // may have been lost, or a pull in flight watched it again).
    let poke = [change(1, "c1", Some(card("c1", "b1", "late")))];
    let (touched, pull) =
        driver.on_poke(&mut store, Cursor(1), &poke, Some(b1.topic.as_str()), Some(Cursor(0))).expect("poke");
    assert!(touched.is_empty() && !pull);
    assert_eq!(driver.take_unwatch()[0].topics, vec![b1.topic.to_string()]);
    // The session's answer: b1 is not read, no pull.
    assert!(!driver.on_unwatched(&[b1.topic.to_string()]));

    // Read again before the unwatch went out: it is not sent.
    driver.stop_reading(b2.topic.as_str());
    assert!(driver.subscribe(&b2));
    assert!(driver.take_unwatch().is_empty());
    // Read again after it went out (the socket and the query's request are not
    // ordered): the session's answer makes the client pull, which watches it again.
    driver.stop_reading(b1.topic.as_str());
    assert_eq!(driver.take_unwatch().len(), 1);
    assert!(driver.subscribe(&b1));
    assert!(driver.on_unwatched(&[b1.topic.to_string()]));
}
