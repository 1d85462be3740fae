//! The SQLite store behaves exactly like the reference rules (`sync::client::ClientState`)
//! under random interleavings of local writes, pushes (answers lost or delivered),
//! callback rejections, paged pulls and store reopenings (a reload), and every store
//! ends with the server's rows. Each client also keeps a page's live view of one
//! board, fed only with the records the store reports as touched: it always equals
//! the query read afresh.

use std::collections::BTreeSet;
use std::path::PathBuf;

// The engine's neutral test model (cards on boards), shared with the core's tests.
#[path = "../../serverless-sync/tests/common/mod.rs"]
mod common;

const CARDS: &str = "cards";
const ADD_CARD: &str = "addCard";
const EDIT_CARD: &str = "editCard";
const DELETE_CARD: &str = "deleteCard";

fn model() -> sync::SyncModel {
    common::model()
}
use proptest::prelude::*;
use serde_json::json;
use sync::client::ClientState;
use sync::model::MutationContext;
use sync::protocol::push::MutationOutcome;
use sync::server::{ServerState, Verdict};
use sync::view::{Applied, LiveRows};
use sync_store::{LocalStore, Touched};

const CLIENTS: usize = 2;
const RECORDS: [&str; 3] = ["card_a", "card_b", "card_c"];
const BOARDS: [&str; 2] = ["r1", "r2"];

#[derive(Debug, Clone)]
enum Step {
    Write { client: usize, kind: usize, record: usize, board: usize, body: String },
    Push { client: usize, lose_answer: bool },
    Pull { client: usize, page: usize },
    Reopen { client: usize },
}

fn step() -> impl Strategy<Value = Step> {
    let body = prop_oneof![4 => "[a-z]{1,5}", 1 => Just(String::new())];
    prop_oneof![
        5 => (0..CLIENTS, 0..3usize, 0..RECORDS.len(), 0..BOARDS.len(), body)
            .prop_map(|(client, kind, record, board, body)| Step::Write { client, kind, record, board, body }),
        3 => (0..CLIENTS, any::<bool>()).prop_map(|(client, lose_answer)| Step::Push { client, lose_answer }),
        3 => (0..CLIENTS, 1..4usize).prop_map(|(client, page)| Step::Pull { client, page }),
        1 => (0..CLIENTS).prop_map(|client| Step::Reopen { client }),
    ]
}

struct Client {
    path: PathBuf,
    store: Option<LocalStore>,
    reference: ClientState,
    next_id: usize,
    /// The page's view of board `BOARDS[0]`, kept up to date from `record_views`.
    view: Option<LiveRows>,
}

impl Client {
    fn store(&mut self) -> &mut LocalStore {
        if self.store.is_none() {
            let conn = rusqlite_open(&self.path);
            self.store = Some(
                LocalStore::open(conn, model(), || format!("client_{}", self.path.display())).expect("open"),
            );
        }
        self.store.as_mut().expect("just opened")
    }

    fn board_select() -> sync::Select {
        model().validate_query("boardCards", &json!({"boardId": BOARDS[0]})).expect("valid").select
    }

    /// What the page does with a touched set: applies each record's visible image.
    fn follow(&mut self, touched: &BTreeSet<Touched>) {
        let records = self.store().record_views(touched).expect("record views");
        let Some(view) = self.view.as_mut() else { return };
        for record in records.iter().filter(|r| r.collection == CARDS) {
            assert_ne!(
                view.apply_record(&record.record_id, record.row.as_ref(), record.pending),
                Applied::Reread,
                "the board query has no window"
            );
        }
    }

    fn check_view(&mut self) {
        let select = Self::board_select();
        let fresh = self.store().query(&select).expect("query");
        let pending = self.store().pending_records(CARDS).expect("pending");
        let view =
            self.view.get_or_insert_with(|| LiveRows::new(select, "id", fresh.clone(), pending.clone()));
        assert_eq!(view.rows(), fresh.as_slice(), "the live view drifted from its query");
        assert_eq!(view.pending(), pending, "the live view's pending marks drifted");
    }
}

fn rusqlite_open(path: &PathBuf) -> sync_store::Connection {
    sync_store::Connection::open(path).expect("sqlite file")
}

struct World {
    server: ServerState,
    clients: Vec<Client>,
    now: i64,
    _dir: TempDir,
}

/// A folder removed on drop.
struct TempDir(PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn temp_dir() -> TempDir {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "store-test-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    TempDir(dir)
}

impl World {
    fn new() -> Self {
        let dir = temp_dir();
        let clients = (0..CLIENTS)
            .map(|i| Client {
                path: dir.0.join(format!("client{i}.db")),
                store: None,
                reference: ClientState::new(model()),
                next_id: 0,
                view: None,
            })
            .collect();
        Self { server: ServerState::new(model()), clients, now: 0, _dir: dir }
    }

    fn client_id(client: usize) -> String {
        format!("client_{client}")
    }

    fn check_equivalent(&mut self, client: usize) {
        let reference = self.clients[client].reference.view(CARDS);
        let stored = self.clients[client].store().rows(CARDS).expect("rows");
        assert_eq!(stored, reference, "store and reference rules disagree for client {client}");
    }

    fn run(&mut self, step: &Step) {
        self.now += 1;
        match step.clone() {
            Step::Write { client, kind, record, board, body } => {
                let c = &mut self.clients[client];
                c.next_id += 1;
                let id = format!("outbox_{}", c.next_id);
                let (name, args) = match kind {
                    0 => (ADD_CARD, json!({"boardId": BOARDS[board], "author": "Ada", "body": body})),
                    1 => (EDIT_CARD, json!({"boardId": BOARDS[board], "body": body})),
                    _ => (DELETE_CARD, json!({"boardId": BOARDS[board]})),
                };
                let ctx = MutationContext {
                    client_id: Self::client_id(client),
                    record_id: RECORDS[record].into(),
                    now_ms: self.now,
                };
                let by_reference = c.reference.mutate(&id, name, &args, &ctx).is_ok();
                let by_store = c.store().mutate(&id, name, &args, &ctx);
                assert_eq!(
                    by_store.is_ok(),
                    by_reference,
                    "store and reference disagree on accepting {name}"
                );
                if let Ok((_, touched)) = by_store {
                    c.follow(&BTreeSet::from([touched]));
                }
            }
            Step::Push { client, lose_answer } => {
                let pending = self.clients[client].store().outbox(100).expect("outbox");
                let reference_pending: Vec<_> =
                    self.clients[client].reference.outbox().iter().map(|p| p.id.clone()).collect();
                assert_eq!(pending.iter().map(|p| p.id.clone()).collect::<Vec<_>>(), reference_pending);
                let mut answers = Vec::new();
                for mutation in pending.iter().map(|p| p.to_push()) {
                    let verdict = || {
                        if mutation.args.get("body").and_then(|b| b.as_str()) == Some("") {
                            Verdict::Deny("a message cannot be empty".into())
                        } else {
                            Verdict::Allow
                        }
                    };
                    let outcome: MutationOutcome =
                        self.server.push(&Self::client_id(client), &mutation, self.now, verdict);
                    answers.push((mutation.id.clone(), outcome));
                }
                if !lose_answer {
                    for (id, outcome) in &answers {
                        self.clients[client].reference.resolve(id, outcome);
                    }
                    let touched = self.clients[client].store().resolve(&answers).expect("resolve");
                    self.clients[client].follow(&touched);
                }
            }
            Step::Pull { client, page } => {
                let cursor = self.clients[client].store().cursor().expect("cursor");
                assert_eq!(cursor, self.clients[client].reference.cursor());
                let topics = BOARDS
                    .iter()
                    .map(|board| {
                        model().validate_query("boardCards", &json!({"boardId": board})).expect("valid").topic
                    })
                    .collect();
                let result = self.server.pull(cursor, &topics, page);
                self.clients[client].reference.apply_pull(&result.changes, result.cursor);
                let touched =
                    self.clients[client].store().apply_pull(&result.changes, result.cursor).expect("pull");
                self.clients[client].follow(&touched);
            }
            Step::Reopen { client } => {
                // A reload: the connection goes away; everything must come back from disk.
                self.clients[client].store = None;
            }
        }
        for client in 0..CLIENTS {
            self.check_equivalent(client);
            self.clients[client].check_view();
        }
    }

    fn settle(&mut self) {
        for client in 0..CLIENTS {
            self.run(&Step::Push { client, lose_answer: false });
        }
        for client in 0..CLIENTS {
            for _ in 0..100 {
                self.run(&Step::Pull { client, page: 3 });
                if self.clients[client].store().cursor().expect("cursor") == self.server.head() {
                    break;
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn the_store_follows_the_reference_rules_and_converges(steps in proptest::collection::vec(step(), 0..40)) {
        let mut world = World::new();
        for step in &steps {
            world.run(step);
        }
        world.settle();
        let server_rows = world.server.rows(CARDS);
        for client in 0..CLIENTS {
            let store = world.clients[client].store();
            prop_assert_eq!(store.rows(CARDS).expect("rows"), server_rows.clone());
            prop_assert_eq!(store.outbox_len().expect("len"), 0);
        }
    }
}

#[test]
fn the_client_id_is_made_once_and_kept() {
    let dir = temp_dir();
    let path = dir.0.join("id.db");
    let first = LocalStore::open(rusqlite_open(&path), model(), || "client_first".into()).expect("open");
    assert_eq!(first.client_id(), "client_first");
    drop(first);
    let again =
        LocalStore::open(rusqlite_open(&path), model(), || unreachable!("already named")).expect("open");
    assert_eq!(again.client_id(), "client_first");
}

#[test]
fn a_keyed_client_keeps_its_key_and_the_id_it_proves() {
    let dir = temp_dir();
    let path = dir.0.join("keyed.db");
    let key = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef".to_string();
    let (first, got) = LocalStore::open_keyed(rusqlite_open(&path), model(), || key.clone()).expect("open");
    assert_eq!(got, key);
    assert_eq!(first.client_id(), sync::ids::client_id_for_key(&key));
    drop(first);
    let (again, kept) =
        LocalStore::open_keyed(rusqlite_open(&path), model(), || unreachable!("already keyed"))
            .expect("open");
    assert_eq!(kept, key);
    assert_eq!(again.client_id(), sync::ids::client_id_for_key(&key));

    // A store from before keys: it gets a key, and the id that key proves.
    let old = dir.0.join("old.db");
    drop(LocalStore::open(rusqlite_open(&old), model(), || "client_old".into()).expect("open"));
    let (upgraded, new_key) =
        LocalStore::open_keyed(rusqlite_open(&old), model(), || "f".repeat(64)).expect("open");
    assert_eq!(new_key, "f".repeat(64));
    assert_eq!(upgraded.client_id(), sync::ids::client_id_for_key(&new_key));
}

#[test]
fn a_write_and_its_outbox_entry_land_together_or_not_at_all() {
    let mut store =
        LocalStore::open(sync_store::Connection::open_in_memory().expect("db"), model(), || "c".into())
            .expect("open");
    let ctx = MutationContext { client_id: "c".into(), record_id: "card_x".into(), now_ms: 1 };
    // Editing a record this client has never seen cannot apply: nothing is queued.
    let refused = store.mutate("outbox_1", EDIT_CARD, &json!({"boardId": "r", "body": "x"}), &ctx);
    assert!(refused.is_err());
    assert_eq!(store.outbox_len().expect("len"), 0);
    assert!(store.rows(CARDS).expect("rows").is_empty());
    // An invalid arg is refused the same way.
    assert!(store.mutate("outbox_2", ADD_CARD, &json!({"boardId": "r"}), &ctx).is_err());
    assert_eq!(store.outbox_len().expect("len"), 0);
    // A valid send shows at once and is queued.
    store
        .mutate("outbox_3", ADD_CARD, &json!({"boardId": "r", "author": "Ada", "body": "hi"}), &ctx)
        .expect("valid");
    assert_eq!(store.outbox_len().expect("len"), 1);
    assert_eq!(store.rows(CARDS).expect("rows")[0]["body"], json!("hi"));
    // Rejected: rolled back.
    store
        .resolve(&[("outbox_3".into(), MutationOutcome::Rejected { reason: "no".into() })])
        .expect("resolve");
    assert!(store.rows(CARDS).expect("rows").is_empty());
    assert_eq!(store.outbox_len().expect("len"), 0);
}

#[test]
fn a_query_snapshot_installs_rows_removes_vanished_ones_and_moves_a_fresh_cursor() {
    let model = model();
    let mut store =
        LocalStore::open(sync_store::Connection::open_in_memory().expect("db"), model.clone(), || "c".into())
            .expect("open");
    let row = |id: &str, board: &str, body: &str| -> sync::Row {
        [
            ("id", json!(id)),
            ("board_id", json!(board)),
            ("author", json!("Ada")),
            ("body", json!(body)),
            ("created_at", json!(1)),
            ("last_modified_by", json!("c")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    };
    let board = model.validate_query("boardCards", &json!({"boardId": "r1"})).expect("valid").select;
    store
        .apply_snapshot(&board, &[row("m1", "r1", "one"), row("m2", "r1", "two")], sync::Cursor(10), true)
        .expect("snapshot");
    // A store that had pulled nothing starts from the snapshot's cursor: no pull
    // re-reads what it holds.
    assert_eq!(store.cursor().expect("cursor"), sync::Cursor(10));
    // A newer image arrives by pull.
    let newer = sync::Change {
        seq: sync::Cursor(12),
        collection: CARDS.into(),
        record_id: "m1".into(),
        kind: sync::ChangeKind::Upsert,
        row: Some(row("m1", "r1", "edited")),
        topics: vec![],
        client_id: "x".into(),
        mutation_id: "outbox_x".into(),
    };
    store.apply_pull(&[newer], sync::Cursor(12)).expect("pull");
    // A snapshot older than the cursor would miss changes: refused, nothing installed.
    let stale = store.apply_snapshot(&board, &[row("m1", "r1", "one")], sync::Cursor(11), true);
    assert!(
        matches!(stale, Err(sync_store::StoreError::StaleSnapshot { snapshot: 11, held: 12 })),
        "{stale:?}"
    );
    assert_eq!(store.query(&board).expect("rows").len(), 2);
    // The next snapshot (at 12) no longer has m2, and another board's record is
    // untouched; the cursor stays where the pulls left it.
    store
        .apply_snapshot(
            &model.validate_query("boardCards", &json!({"boardId": "r2"})).expect("valid").select,
            &[row("m9", "r2", "elsewhere")],
            sync::Cursor(12),
            false,
        )
        .expect("snapshot");
    store.apply_snapshot(&board, &[row("m1", "r1", "edited")], sync::Cursor(12), true).expect("snapshot");
    assert_eq!(store.cursor().expect("cursor"), sync::Cursor(12));
    let rows = store.query(&board).expect("rows");
    assert_eq!(
        rows.iter().map(|r| (r["id"].clone(), r["body"].clone())).collect::<Vec<_>>(),
        vec![(json!("m1"), json!("edited"))]
    );
    assert_eq!(store.rows(CARDS).expect("rows").len(), 2, "m9 in r2 is still there");

    // A local edit waiting in the outbox still shows over a newer snapshot's image,
    // and a snapshot image older than one already held does not replace it.
    let ctx = MutationContext { client_id: "c".into(), record_id: "m1".into(), now_ms: 5 };
    store.mutate("outbox_e", EDIT_CARD, &json!({"boardId": "r1", "body": "mine"}), &ctx).expect("edit");
    store.apply_snapshot(&board, &[row("m1", "r1", "server")], sync::Cursor(13), true).expect("snapshot");
    assert_eq!(store.query(&board).expect("rows")[0]["body"], json!("mine"));
    let newest = sync::Change {
        seq: sync::Cursor(20),
        row: Some(row("m9", "r2", "newest")),
        record_id: "m9".into(),
        ..sync::Change {
            seq: sync::Cursor(0),
            collection: CARDS.into(),
            record_id: String::new(),
            kind: sync::ChangeKind::Upsert,
            row: None,
            topics: vec![],
            client_id: "x".into(),
            mutation_id: "outbox_y".into(),
        }
    };
    store.apply_pull(&[newest], sync::Cursor(13)).expect("pull");
    let r2 = model.validate_query("boardCards", &json!({"boardId": "r2"})).expect("valid").select;
    store.apply_snapshot(&r2, &[row("m9", "r2", "older")], sync::Cursor(14), true).expect("snapshot");
    assert_eq!(store.query(&r2).expect("rows")[0]["body"], json!("newest"));
}

#[test]
fn a_mutation_id_is_remembered_while_pending_and_after_its_answer() {
    use sync_store::MutationState;
    let mut store =
        LocalStore::open(sync_store::Connection::open_in_memory().expect("db"), model(), || "c".into())
            .expect("open");
    let ctx = MutationContext { client_id: "c".into(), record_id: "card_y".into(), now_ms: 1 };
    assert_eq!(store.mutation_state("outbox_1").expect("state"), None);
    store
        .mutate("outbox_1", ADD_CARD, &json!({"boardId": "r", "author": "Ada", "body": "hi"}), &ctx)
        .expect("valid");
    assert_eq!(
        store.mutation_state("outbox_1").expect("state"),
        Some(MutationState::Pending { record_id: "card_y".into() })
    );
    let refusal = MutationOutcome::Rejected { reason: "no".into() };
    store.resolve(&[("outbox_1".into(), refusal.clone())]).expect("resolve");
    assert_eq!(
        store.mutation_state("outbox_1").expect("state"),
        Some(MutationState::Resolved { record_id: "card_y".into(), outcome: refusal })
    );
    // The same id is never queued twice: a re-sent request is answered, not re-applied.
    let again =
        store.mutate("outbox_1", ADD_CARD, &json!({"boardId": "r", "author": "Ada", "body": "hi"}), &ctx);
    assert!(matches!(
        again,
        Err(sync_store::StoreError::Duplicate { id, state: MutationState::Resolved { .. } }) if id == "outbox_1"
    ));
    assert_eq!(store.outbox_len().expect("len"), 0);
    assert!(store.rows(CARDS).expect("rows").is_empty());
}

#[test]
fn a_store_of_the_previous_model_upgrades_and_keeps_its_pending_writes() {
    assert_ne!(model().schema_version(), common::model_v2().schema_version());
    assert_eq!(model().schema_version(), model().schema_version(), "stable");
    let dir = temp_dir();
    let path = dir.0.join("upgrade.db");
    let (add, edit) = (
        sync::ids::new_id("outbox", 1_700_000_000_000, 1),
        sync::ids::new_id("outbox", 1_700_000_000_500, 2),
    );
    {
        let mut v1 = LocalStore::open(rusqlite_open(&path), model(), || "client_v1".into()).expect("open");
        let board = model().validate_query("boardCards", &json!({"boardId": "r1"})).expect("valid").select;
        let server_row: sync::Row = [
            ("id", json!("card_z")),
            ("board_id", json!("r1")),
            ("author", json!("Bo")),
            ("body", json!("from the server")),
            ("created_at", json!(1)),
            ("last_modified_by", json!("x")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        v1.apply_snapshot(&board, &[server_row], sync::Cursor(5), true).expect("snapshot");
        let ctx = MutationContext {
            client_id: "client_v1".into(),
            record_id: "card_a".into(),
            now_ms: 1_700_000_000_000,
        };
        v1.mutate(&add, ADD_CARD, &json!({"boardId": "r1", "author": "Ada", "body": "queued"}), &ctx)
            .expect("add");
        v1.mutate(&edit, EDIT_CARD, &json!({"boardId": "r1", "body": "queued, edited"}), &ctx).expect("edit");
        assert_eq!(v1.outbox_len().expect("outbox"), 2);
    }
    let mut v2 = LocalStore::open(rusqlite_open(&path), common::model_v2(), || unreachable!("already named"))
        .expect("open");
    assert_eq!(v2.client_id(), "client_v1");
    // The edit no longer fits the model: answered as rejected, with the reason.
    let rejected = v2.take_upgrade_rejections();
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].0, edit);
    assert!(
        matches!(&rejected[0].1, MutationOutcome::Rejected { reason } if reason.contains("no longer accepts") && reason.contains("reason")),
        "{rejected:?}"
    );
    assert!(matches!(
        v2.mutation_state(&edit).expect("state"),
        Some(sync_store::MutationState::Resolved { .. })
    ));
    // The add is still queued, re-planned for the new table, and shown.
    let outbox = v2.outbox(10).expect("outbox");
    assert_eq!(outbox.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(), vec![add.as_str()]);
    let board =
        common::model_v2().validate_query("boardCards", &json!({"boardId": "r1"})).expect("valid").select;
    let rows = v2.query(&board).expect("rows");
    assert_eq!(rows.len(), 1, "the server's image is forgotten until the snapshot is fetched again");
    assert_eq!(rows[0]["body"], json!("queued"));
    assert_eq!(rows[0]["priority"], json!(0));
    assert_eq!(rows[0]["created_at"], json!(1_700_000_000_000_i64), "the write keeps its own time");
    assert_eq!(v2.cursor().expect("cursor"), sync::Cursor(0), "snapshots are fetched again");
    // Opening again with the same model changes nothing.
    drop(v2);
    let mut again =
        LocalStore::open(rusqlite_open(&path), common::model_v2(), || unreachable!()).expect("open");
    assert!(again.take_upgrade_rejections().is_empty());
    assert_eq!(again.outbox_len().expect("outbox"), 1);
    assert_eq!(again.query(&board).expect("rows").len(), 1);
}

#[test]
fn changes_a_poke_carries_show_at_once_and_the_pull_fills_the_gap() {
    let model = model();
    let mut store =
        LocalStore::open(sync_store::Connection::open_in_memory().expect("db"), model.clone(), || "c".into())
            .expect("open");
    let card = |seq: u64, id: &str, body: &str| sync::Change {
        seq: sync::Cursor(seq),
        collection: CARDS.into(),
        record_id: id.into(),
        kind: sync::ChangeKind::Upsert,
        row: Some(
            [
                ("id", json!(id)),
                ("board_id", json!("r1")),
                ("author", json!("Ada")),
                ("body", json!(body)),
                ("created_at", json!(seq)),
                ("last_modified_by", json!("x")),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        ),
        topics: vec![],
        client_id: "x".into(),
        mutation_id: format!("outbox_{seq}"),
    };
    let board = model.validate_query("boardCards", &json!({"boardId": "r1"})).expect("valid").select;
    store.apply_pull(&[], sync::Cursor(3)).expect("at 3");
    // A poke carries change 6; change 5 (another writer's) has not arrived yet.
    let held = store.cursor().expect("cursor");
    store.apply_pull(&[card(6, "card_b", "carried")], held).expect("carried");
    assert_eq!(store.cursor().expect("cursor"), sync::Cursor(3), "the cursor waits for the pull");
    assert_eq!(store.query(&board).expect("rows").len(), 1, "shown at once");
    // The pull from 3 brings 5 and 6 again (and a later edit of 6 wins once).
    store
        .apply_pull(
            &[card(5, "card_a", "gap"), card(6, "card_b", "carried"), card(7, "card_b", "edited")],
            sync::Cursor(7),
        )
        .expect("pull");
    // A late carried copy of 6 must not undo 7.
    let held = store.cursor().expect("cursor");
    store.apply_pull(&[card(6, "card_b", "carried")], held).expect("late copy");
    let rows = store.query(&board).expect("rows");
    assert_eq!(
        rows.iter().map(|r| (r["id"].clone(), r["body"].clone())).collect::<Vec<_>>(),
        vec![(json!("card_a"), json!("gap")), (json!("card_b"), json!("edited"))]
    );
    assert_eq!(store.cursor().expect("cursor"), sync::Cursor(7));
}
