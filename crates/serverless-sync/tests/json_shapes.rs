//! The callback bodies match the seed's JSON shapes (fixtures copied from it), byte
//! for byte modulo key order and whitespace: every fixture parses into our type,
//! and our type serializes back to the same canonical JSON.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use sync::changes::canonical_json;
use sync::model::MutationKind;
use sync::protocol::mutation_callback::{
    MutationCallbackOperation, MutationCallbackRequest, MutationCallbackResponse, OperationDecision,
};
use sync::protocol::query_callback::QueryCallbackRequest;
use sync::protocol::{Decision, JSON_CONTENT_TYPE, SECRET_HEADER};
use sync::server::Verdict;

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Parses the fixture into `T`, serializes it back, and compares canonically.
fn round_trips<T: DeserializeOwned + Serialize>(name: &str) -> T {
    let expected = fixture(name);
    let typed: T = serde_json::from_value(expected.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
    let produced = serde_json::to_value(&typed).expect("serializes");
    assert_eq!(canonical_json(&produced), canonical_json(&expected), "{name} changed shape");
    typed
}

const CLIENT: &str = "client_01HYS7J9GZ8P6VA3K3Z4X5M2K1";
const SESSION: &str = "session_01HYS7K0NV8NC2D3AEX4N6V1BT";
const BOARD: &str = "board_01HYS7K7NQ5VQJ4Y3BT9PZ7M0D";
const OUTBOX: &str = "outbox_01HYS8M2Q0B5W0NY5H3A6E9D2R";

#[test]
fn query_callback_request_matches_the_seed() {
    round_trips::<QueryCallbackRequest>("query_callback_request");
    // Built the way the connector builds it, it is the same document.
    let built = QueryCallbackRequest::new(CLIENT, SESSION, "boardCards", json!({ "boardId": BOARD }));
    assert_eq!(
        canonical_json(&serde_json::to_value(built).expect("serializes")),
        canonical_json(&fixture("query_callback_request"))
    );
}

#[test]
fn query_callback_answers_match_the_seed() {
    assert_eq!(round_trips::<Decision>("query_callback_approved"), Decision::allow());
    assert_eq!(
        round_trips::<Decision>("query_callback_denied"),
        Decision::deny("query operation is not allowlisted")
    );
}

#[test]
fn mutation_callback_request_matches_the_seed() {
    round_trips::<MutationCallbackRequest>("mutation_callback_request");
    let built = MutationCallbackRequest::new(
        CLIENT,
        SESSION,
        vec![MutationCallbackOperation {
            args: json!({ "author": "Ada", "body": "hello", "boardId": BOARD }),
            collection: "cards".into(),
            id: OUTBOX.into(),
            mutation_kind: MutationKind::Insert,
            operation_name: "addCard".into(),
            record_id: "card_01HYS8M33DK68VQT6C9X4T5H0A".into(),
        }],
    );
    assert_eq!(
        canonical_json(&serde_json::to_value(built).expect("serializes")),
        canonical_json(&fixture("mutation_callback_request"))
    );
}

#[test]
fn mutation_callback_answers_match_the_seed_and_resolve_per_operation() {
    let approved = round_trips::<MutationCallbackResponse>("mutation_callback_approved");
    assert_eq!(approved.verdicts(&[OUTBOX]), vec![Verdict::Allow]);
    let denied = round_trips::<MutationCallbackResponse>("mutation_callback_denied");
    assert_eq!(
        denied.verdicts(&[OUTBOX, "outbox_other"]),
        vec![Verdict::Deny("mutation operation is not allowlisted".into()); 2]
    );
}

#[test]
fn per_operation_answers_allow_one_and_reject_another_and_never_default_to_allow() {
    let mixed = MutationCallbackResponse::PerOperation {
        operations: vec![
            OperationDecision { allow: true, id: "a".into(), reason: None },
            OperationDecision { allow: false, id: "b".into(), reason: Some("body too long".into()) },
            OperationDecision { allow: false, id: "c".into(), reason: None },
        ],
    };
    let verdicts = mixed.verdicts(&["a", "b", "c", "d"]);
    assert_eq!(verdicts[0], Verdict::Allow);
    assert_eq!(verdicts[1], Verdict::Deny("body too long".into()));
    assert!(matches!(&verdicts[2], Verdict::Deny(reason) if !reason.is_empty()));
    assert!(matches!(&verdicts[3], Verdict::Deny(reason) if reason.contains("no decision")));
}

#[test]
fn garbage_callback_answers_do_not_parse() {
    for garbage in [
        json!({}),
        json!({"allow": "yes"}),
        json!({"operations": "all"}),
        json!({"operations": [{"allow": true}]}),
        json!([true]),
        json!("allow"),
    ] {
        assert!(
            serde_json::from_value::<MutationCallbackResponse>(garbage.clone()).is_err(),
            "{garbage} must not parse as a mutation answer"
        );
    }
    for garbage in [json!({}), json!({"allow": 1}), json!({"ok": true})] {
        assert!(
            serde_json::from_value::<Decision>(garbage.clone()).is_err(),
            "{garbage} must not parse as a decision"
        );
    }
}

#[test]
fn operation_kind_is_checked_when_parsing() {
    let mut wrong = fixture("query_callback_request");
    wrong["operation_kind"] = json!("mutation");
    // It still parses (the enum has both values) but says what it is.
    let parsed: QueryCallbackRequest = serde_json::from_value(wrong).expect("parses");
    assert_eq!(parsed.operation_kind, sync::protocol::OperationKind::Mutation);
    let mut bogus = fixture("query_callback_request");
    bogus["operation_kind"] = json!("delete-everything");
    assert!(serde_json::from_value::<QueryCallbackRequest>(bogus).is_err());
}

#[test]
fn headers_are_the_seeds() {
    assert_eq!(SECRET_HEADER, "x-sync-engine-secret");
    assert_eq!(JSON_CONTENT_TYPE, "application/json; charset=utf-8");
}
