//! Random interleavings of local writes, pushes (with lost answers and retries),
//! callback rejections and paged pulls across several clients: once every outbox has
//! drained and every client has pulled, every client shows exactly the server's rows,
//! and no mutation was ever applied twice.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use serde_json::json;
use sync::changes::{Cursor, Topic};
use sync::client::{ClientState, MutateError};
use sync::protocol::push::MutationOutcome;
use sync::server::{ServerState, Verdict};

use common::{ctx, model};

const CLIENTS: usize = 3;
const RECORDS: [&str; 4] = ["card_a", "card_b", "card_c", "card_d"];
const BOARDS: [&str; 2] = ["r1", "r2"];

#[derive(Debug, Clone)]
enum Step {
    Send {
        client: usize,
        record: usize,
        board: usize,
        body: String,
    },
    Edit {
        client: usize,
        record: usize,
        board: usize,
        body: String,
    },
    Delete {
        client: usize,
        record: usize,
        board: usize,
    },
    /// Push the whole outbox; with `lose_answer` the client never hears back.
    Push {
        client: usize,
        lose_answer: bool,
    },
    Pull {
        client: usize,
        page: usize,
    },
    /// Compact the server's log through its head minus `keep` changes.
    Compact {
        keep: u64,
    },
}

fn body() -> impl Strategy<Value = String> {
    // "bad" bodies are rejected by the app's callback.
    prop_oneof![4 => "[a-z]{1,6}", 1 => Just("bad".to_string())]
}

fn step() -> impl Strategy<Value = Step> {
    let c = 0..CLIENTS;
    let r = 0..RECORDS.len();
    let board = 0..BOARDS.len();
    prop_oneof![
        3 => (c.clone(), r.clone(), board.clone(), body()).prop_map(|(client, record, board, body)| Step::Send { client, record, board, body }),
        2 => (c.clone(), r.clone(), board.clone(), body()).prop_map(|(client, record, board, body)| Step::Edit { client, record, board, body }),
        1 => (c.clone(), r, board).prop_map(|(client, record, board)| Step::Delete { client, record, board }),
        3 => (c.clone(), any::<bool>()).prop_map(|(client, lose)| Step::Push { client, lose_answer: lose }),
        3 => (c, 1..4usize).prop_map(|(client, page)| Step::Pull { client, page }),
    ]
}

struct World {
    server: ServerState,
    clients: Vec<ClientState>,
    next_id: Vec<usize>,
    now: i64,
    topics: BTreeSet<Topic>,
    answers: BTreeMap<(usize, String), MutationOutcome>,
}

impl World {
    fn new() -> Self {
        let m = model();
        let topics = BOARDS
            .iter()
            .map(|board| m.validate_query("boardCards", &json!({"boardId": board})).expect("valid").topic)
            .collect();
        Self {
            server: ServerState::new(m.clone()),
            clients: (0..CLIENTS).map(|_| ClientState::new(m.clone())).collect(),
            next_id: vec![0; CLIENTS],
            now: 0,
            topics,
            answers: BTreeMap::new(),
        }
    }

    fn client_id(client: usize) -> String {
        format!("client_{client}")
    }

    fn mutate(&mut self, client: usize, name: &str, record: usize, args: serde_json::Value) {
        self.now += 1;
        self.next_id[client] += 1;
        let id = format!("outbox_{}", self.next_id[client]);
        let c = ctx(&Self::client_id(client), RECORDS[record], self.now);
        match self.clients[client].mutate(&id, name, &args, &c) {
            Ok(pending) => assert_eq!(
                self.clients[client].view_record("cards", &pending.record_id).is_some(),
                name != "deleteCard"
            ),
            // Not applicable to what this client sees: refused locally, nothing queued.
            Err(MutateError::NotApplicable(_)) => {}
            Err(other) => panic!("valid args were refused: {other}"),
        }
    }

    fn push(&mut self, client: usize, lose_answer: bool) {
        let pending: Vec<_> = self.clients[client].outbox().iter().map(|p| p.to_push()).collect();
        for mutation in pending {
            self.now += 1;
            let verdict = || {
                if mutation.args.get("body").and_then(|b| b.as_str()) == Some("bad") {
                    Verdict::Deny("body is not allowed".into())
                } else {
                    Verdict::Allow
                }
            };
            let outcome = self.server.push(&Self::client_id(client), &mutation, self.now, verdict);
            // A retry gets the first answer (its status, sequence number or reason),
            // without the first answer's image.
            let first = self.answers.entry((client, mutation.id.clone())).or_insert_with(|| outcome.clone());
            assert_eq!(
                sync::push::answered_now(first),
                sync::push::answered_now(&outcome),
                "a retried mutation got a different answer"
            );
            if *first != outcome {
                assert!(
                    matches!(outcome, MutationOutcome::Confirmed { row: None, .. }),
                    "a replay carried an image: {outcome:?}"
                );
            }
            if !lose_answer {
                self.clients[client].resolve(&mutation.id, &outcome);
            }
        }
    }

    fn pull(&mut self, client: usize, page: usize) -> bool {
        let state = &mut self.clients[client];
        if state.cursor() < self.server.compacted_through() {
            // `resync_required`: start again from the server's state (the whole
            // compacted log at once stands in for the queries' snapshots), keeping
            // the outbox.
            state.resync();
            let snapshot = self.server.pull(Cursor::START, &self.topics, usize::MAX);
            state.apply_pull(&snapshot.changes, snapshot.cursor);
            return false;
        }
        let result = self.server.pull(state.cursor(), &self.topics, page);
        state.apply_pull(&result.changes, result.cursor);
        result.has_more
    }

    fn run(&mut self, step: &Step) {
        match step.clone() {
            Step::Send { client, record, board, body } => self.mutate(
                client,
                "addCard",
                record,
                json!({"boardId": BOARDS[board], "author": format!("user{client}"), "body": body}),
            ),
            Step::Edit { client, record, board, body } => {
                self.mutate(client, "editCard", record, json!({"boardId": BOARDS[board], "body": body}))
            }
            Step::Delete { client, record, board } => {
                self.mutate(client, "deleteCard", record, json!({"boardId": BOARDS[board]}))
            }
            Step::Push { client, lose_answer } => self.push(client, lose_answer),
            Step::Pull { client, page } => {
                self.pull(client, page);
            }
            Step::Compact { keep } => {
                let through = sync::Cursor(self.server.head().0.saturating_sub(keep));
                self.server.compact(through);
            }
        }
    }

    fn settle(&mut self) {
        for client in 0..CLIENTS {
            self.push(client, false);
            assert!(self.clients[client].outbox().is_empty());
        }
        for client in 0..CLIENTS {
            while self.pull(client, 2) {}
            assert_eq!(self.clients[client].cursor(), self.server.head());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_client_converges_to_the_server(steps in proptest::collection::vec(step(), 0..60)) {
        let mut world = World::new();
        for step in &steps {
            world.run(step);
        }
        world.settle();
        let server_rows = world.server.rows("cards");
        for client in &world.clients {
            prop_assert_eq!(&client.view("cards"), &server_rows);
        }
        // Exactly-once: one change per confirmed mutation id, never two.
        let mut seen = BTreeSet::new();
        for change in world.server.log() {
            prop_assert!(seen.insert((change.client_id.clone(), change.mutation_id.clone())), "applied twice: {:?}", change);
        }
        let confirmed = world.answers.values().filter(|o| matches!(o, MutationOutcome::Confirmed { .. })).count();
        prop_assert_eq!(confirmed, world.server.log().len());
        // Sequence numbers are dense and increasing.
        for (index, change) in world.server.log().iter().enumerate() {
            prop_assert_eq!(change.seq, Cursor(index as u64 + 1));
        }
    }
}

fn step_with_compaction() -> impl Strategy<Value = Step> {
    prop_oneof![8 => step(), 1 => (0..4u64).prop_map(|keep| Step::Compact { keep })]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Compaction at any moment (clients behind it resync from the start, keeping
    /// their outboxes): every client still converges, and no pull ever hands out an
    /// image a later change of the same record superseded within it.
    #[test]
    fn compaction_keeps_every_client_converging(steps in proptest::collection::vec(step_with_compaction(), 0..80)) {
        let mut world = World::new();
        for step in &steps {
            world.run(step);
        }
        world.settle();
        let server_rows = world.server.rows("cards");
        for client in &world.clients {
            prop_assert_eq!(&client.view("cards"), &server_rows);
        }
        let page = world.server.pull(Cursor::START, &world.topics, usize::MAX);
        let mut records = BTreeSet::new();
        for change in &page.changes {
            prop_assert!(records.insert((change.collection.clone(), change.record_id.clone())), "two images of one record");
        }
    }
}

#[test]
fn a_newcomer_never_receives_edited_or_deleted_text() {
    let mut world = World::new();
    world.run(&Step::Send { client: 0, record: 0, board: 0, body: "secret".into() });
    world.run(&Step::Send { client: 0, record: 1, board: 0, body: "typo".into() });
    world.run(&Step::Push { client: 0, lose_answer: false });
    world.run(&Step::Delete { client: 0, record: 0, board: 0 });
    world.run(&Step::Edit { client: 0, record: 1, board: 0, body: "fixed".into() });
    world.run(&Step::Push { client: 0, lose_answer: false });
    // Before compaction, a pull already sends only each record's latest image...
    let page = world.server.pull(Cursor::START, &world.topics, 100);
    let bodies: Vec<_> =
        page.changes.iter().filter_map(|c| c.row.as_ref().map(|r| r["body"].clone())).collect();
    assert_eq!(bodies, vec![json!("fixed")]);
    // ...and after it, the log itself no longer holds the old texts.
    world.server.compact(world.server.head());
    let held: Vec<_> =
        world.server.log().iter().filter_map(|c| c.row.as_ref().map(|r| r["body"].clone())).collect();
    assert_eq!(held, vec![json!("fixed")]);
    // A client behind the compaction resyncs and still ends up with the server's rows.
    world.settle();
    assert_eq!(world.clients[1].view("cards"), world.server.rows("cards"));
}

#[test]
fn an_optimistic_write_shows_at_once_and_a_rejection_rolls_it_back() {
    let mut world = World::new();
    world.run(&Step::Send { client: 0, record: 0, board: 0, body: "bad".into() });
    assert_eq!(world.clients[0].view("cards").len(), 1, "visible before the server answers");
    world.run(&Step::Push { client: 0, lose_answer: false });
    assert!(world.clients[0].view("cards").is_empty(), "rolled back");
    assert!(world.server.rows("cards").is_empty(), "never reached the server");
}

#[test]
fn a_confirmation_replaces_the_optimistic_row_with_the_server_version() {
    let mut world = World::new();
    world.run(&Step::Send { client: 0, record: 0, board: 0, body: "hi".into() });
    let optimistic = world.clients[0].view("cards");
    world.run(&Step::Push { client: 0, lose_answer: false });
    let confirmed = world.clients[0].view("cards");
    assert_eq!(confirmed, world.server.rows("cards"));
    // The server stamped its own clock: the rows differ in created_at only.
    assert_ne!(optimistic[0]["created_at"], confirmed[0]["created_at"]);
    assert_eq!(optimistic[0]["body"], confirmed[0]["body"]);
}

#[test]
fn a_pull_does_not_overwrite_a_row_with_pending_local_writes() {
    let mut world = World::new();
    world.run(&Step::Send { client: 0, record: 0, board: 0, body: "hi".into() });
    world.run(&Step::Push { client: 0, lose_answer: false });
    world.run(&Step::Pull { client: 1, page: 10 });
    // Client 1 edits locally; meanwhile client 0's edit lands upstream.
    world.run(&Step::Edit { client: 1, record: 0, board: 0, body: "mine".into() });
    world.run(&Step::Edit { client: 0, record: 0, board: 0, body: "theirs".into() });
    world.run(&Step::Push { client: 0, lose_answer: false });
    world.run(&Step::Pull { client: 1, page: 10 });
    assert_eq!(world.clients[1].view("cards")[0]["body"], json!("mine"), "pending write still shown");
    assert_eq!(
        world.clients[1].confirmed_record("cards", RECORDS[0]).map(|r| r["body"].clone()),
        Some(json!("theirs"))
    );
    // Last accepted write wins once it resolves.
    world.run(&Step::Push { client: 1, lose_answer: false });
    world.settle();
    assert_eq!(world.server.rows("cards")[0]["body"], json!("mine"));
    assert_eq!(world.clients[0].view("cards"), world.server.rows("cards"));
}

#[test]
fn a_lost_answer_is_retried_without_applying_twice() {
    let mut world = World::new();
    world.run(&Step::Send { client: 0, record: 0, board: 0, body: "once".into() });
    world.run(&Step::Push { client: 0, lose_answer: true });
    world.run(&Step::Push { client: 0, lose_answer: true });
    world.run(&Step::Push { client: 0, lose_answer: false });
    assert_eq!(world.server.log().len(), 1);
    assert!(world.clients[0].outbox().is_empty());
}
