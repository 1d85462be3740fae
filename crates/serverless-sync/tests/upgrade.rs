//! A model upgrade that adds a column: what the server hands out afterwards for
//! records written before it (the simulation's `Upgrade` step found both cases).

mod common;

use std::collections::BTreeSet;

use serde_json::json;
use sync::changes::Cursor;
use sync::protocol::push::{MutationOutcome, PushMutation};
use sync::server::{ServerState, Verdict};

fn add(id: &str, record: &str) -> PushMutation {
    PushMutation {
        id: id.into(),
        name: "addCard".into(),
        args: json!({ "boardId": "b1", "author": "Ada", "body": "hi" }),
        record_id: record.into(),
    }
}

#[test]
fn images_from_before_an_upgrade_carry_the_added_columns_and_replays_carry_none() {
    let mut server = ServerState::new(common::model());
    let first = server.push("client_a", &add("outbox_1", "card_1"), 10, || Verdict::Allow);
    let MutationOutcome::Confirmed { row: Some(before), .. } = &first else { panic!("{first:?}") };
    assert!(!before.contains_key("priority"));

    server.upgrade(common::upgraded_model());
    // The record holds the column's added value, as the migration gives it.
    assert_eq!(server.record("cards", "card_1").map(|row| row["priority"].clone()), Some(json!(0)));
    // A pull hands out the image logged before the column existed, completed.
    let topics: BTreeSet<_> = [common::upgraded_model()
        .validate_query("boardCards", &json!({ "boardId": "b1" }))
        .expect("q")
        .topic]
    .into_iter()
    .collect();
    let page = server.pull(Cursor::START, &topics, 10);
    assert_eq!(page.changes[0].row.as_ref().map(|row| row["priority"].clone()), Some(json!(0)));
    // A retry is answered from the stored answer, without its image (the pull above
    // hands out the record as it stands).
    let again = server.push("client_a", &add("outbox_1", "card_1"), 20, || Verdict::Allow);
    assert_eq!(again, MutationOutcome::Confirmed { row: None, seq: Cursor(1) });
    // A write after the upgrade follows the new model.
    let later = server.push("client_a", &add("outbox_2", "card_2"), 30, || Verdict::Allow);
    assert!(
        matches!(later, MutationOutcome::Confirmed { row: Some(row), .. } if row["priority"] == json!(0))
    );
}

#[test]
fn a_stored_answer_stands_after_the_upgrade_removed_its_mutator() {
    let mut server = ServerState::new(common::model());
    server.push("client_a", &add("outbox_1", "card_1"), 10, || Verdict::Allow);
    let moved = PushMutation {
        id: "outbox_2".into(),
        name: "moveCard".into(),
        args: json!({ "fromBoardId": "b1", "toBoardId": "b2" }),
        record_id: "card_1".into(),
    };
    let first = server.push("client_a", &moved, 20, || Verdict::Allow);
    assert!(matches!(first, MutationOutcome::Confirmed { .. }));
    server.upgrade(common::upgraded_model());
    assert_eq!(
        server.push("client_a", &moved, 30, || Verdict::Allow),
        sync::push::answered_now(&first),
        "applied: its answer stands"
    );
    // A new move is refused: the model has no such mutator now.
    let new_move = PushMutation { id: "outbox_3".into(), ..moved };
    assert!(matches!(
        server.push("client_a", &new_move, 40, || Verdict::Allow),
        MutationOutcome::Rejected { .. }
    ));
}

/// A write's answer carries the image only to a writer who may read one of the
/// record's topics; otherwise confirmed, at its sequence number, with no image.
#[test]
fn an_answer_carries_the_image_only_to_a_writer_who_may_read_it() {
    let model = common::model();
    let mut server = ServerState::new(model.clone());
    let mutations = vec![add("outbox_1", "card_1")];
    let results = server.push_batch("client_a", "session_a", &mutations, 10, |question| {
        sync::protocol::mutation_callback::MutationCallbackResponse::per_operation(
            &question.operations,
            |_| Ok(()),
        )
    });
    let topics = sync::push::topics_of_answers(&model, &mutations, &results);
    let b1 = model.validate_query("boardCards", &json!({ "boardId": "b1" })).expect("q").topic;
    assert_eq!(topics, vec![b1.clone()]);
    assert_eq!(b1.query_and_args(), Some(("boardCards", json!({ "boardId": "b1" }))));

    let mut readable = results.clone();
    sync::push::withhold_unreadable(&model, &mutations, &mut readable, std::slice::from_ref(&b1));
    assert_eq!(readable, results, "a reader of b1 gets the image");
    let mut unreadable = results.clone();
    sync::push::withhold_unreadable(&model, &mutations, &mut unreadable, &[]);
    assert_eq!(unreadable[0].outcome, MutationOutcome::Confirmed { row: None, seq: Cursor(1) });
}
