//! Validation of named reads and writes, with the precise error for each way to get
//! them wrong, and model-level checks done once at build time.

mod common;

use serde::{Deserialize, Serialize};
use serde_json::json;
use sync::model::{ModelError, MutationKind, ValidationError};
use sync::{Collection, ColumnType, Insert, Operator, Select, SyncModel, Update};

use common::{BoardArgs, SendArgs, cards, ctx, model};

const CLIENT: &str = "client_01HYS7J9GZ8P6VA3K3Z4X5M2K1";
const RECORD: &str = "card_01HYS8M33DK68VQT6C9X4T5H0A";

fn send(args: serde_json::Value) -> Result<sync::ValidatedMutation, ValidationError> {
    model().validate_mutation("addCard", &args, &ctx(CLIENT, RECORD, 7))
}

#[test]
fn a_valid_query_is_normalized_and_carries_its_required_predicate() {
    let read = model().validate_query("boardCards", &json!({"boardId": " r1 "})).expect("valid");
    assert_eq!(read.args, json!({"boardId": "r1"}));
    assert_eq!(read.select.collection, "cards");
    assert!(read.select.filters.iter().any(|f| f.column == "board_id" && f.value == json!("r1")));
}

#[test]
fn query_errors_are_precise() {
    let m = model();
    assert_eq!(
        m.validate_query("allCards", &json!({})),
        Err(ValidationError::UnknownQuery("allCards".into()))
    );
    assert!(matches!(
        m.validate_query("boardCards", &json!({})),
        Err(ValidationError::MissingArg { arg, .. }) if arg == "boardId"
    ));
    assert!(matches!(
        m.validate_query("boardCards", &json!({"boardId": "r", "limit": 5})),
        Err(ValidationError::UnknownArg { arg, .. }) if arg == "limit"
    ));
    assert!(matches!(
        m.validate_query("boardCards", &json!({"boardId": 5})),
        Err(ValidationError::IllTypedArg { arg, detail, .. }) if arg == "boardId" && detail.contains("integer")
    ));
    assert!(matches!(
        m.validate_query("boardCards", &json!(["r1"])),
        Err(ValidationError::ArgsNotObject { got: "array", .. })
    ));
    // The addCard mutator is not a query.
    assert_eq!(m.validate_query("addCard", &json!({})), Err(ValidationError::UnknownQuery("addCard".into())));
}

/// A model whose build functions misbehave, to prove the checks on what was built.
fn rogue_model() -> SyncModel {
    SyncModel::builder()
        .collection(cards())
        .collection(Collection::new("secrets", "id").column("id", ColumnType::Text))
        .query(
            SyncModel::query::<BoardArgs>("forgetsPredicate", "cards")
                .require("boardId", "board_id", Operator::Eq)
                .build(|_| Select::from("cards")),
        )
        .query(
            SyncModel::query::<BoardArgs>("widensPredicate", "cards")
                .require("boardId", "board_id", Operator::Eq)
                .build(|args| Select::from("cards").filter("board_id", Operator::Ge, args.board_id.clone())),
        )
        .query(
            SyncModel::query::<BoardArgs>("readsElsewhere", "cards")
                .require("boardId", "board_id", Operator::Eq)
                .build(|args| {
                    Select::from("secrets").filter("board_id", Operator::Eq, args.board_id.clone())
                }),
        )
        .query(
            SyncModel::query::<BoardArgs>("unknownColumn", "cards")
                .build(|args| Select::from("cards").filter("password", Operator::Eq, args.board_id.clone())),
        )
        .mutator(SyncModel::insert::<SendArgs>("wrongBoard", "cards").require("boardId", "board_id").build(
            |args, ctx| {
                Insert::into("cards")
                    .value("board_id", "somewhere-else")
                    .value("author", args.author.clone())
                    .value("body", args.body.clone())
                    .value("created_at", ctx.now_ms)
                    .value("last_modified_by", ctx.client_id.clone())
            },
        ))
        .mutator(
            SyncModel::insert::<SendArgs>("missingColumn", "cards")
                .build(|args, _| Insert::into("cards").value("board_id", args.board_id.clone())),
        )
        .mutator(SyncModel::insert::<SendArgs>("badType", "cards").build(|args, ctx| {
            Insert::into("cards")
                .value("board_id", args.board_id.clone())
                .value("author", args.author.clone())
                .value("body", args.body.clone())
                .value("created_at", "yesterday")
                .value("last_modified_by", ctx.client_id.clone())
        }))
        .mutator(SyncModel::insert::<SendArgs>("otherRecord", "cards").build(|args, ctx| {
            Insert::into("cards")
                .value("id", "card_someone_elses")
                .value("board_id", args.board_id.clone())
                .value("author", args.author.clone())
                .value("body", args.body.clone())
                .value("created_at", ctx.now_ms)
                .value("last_modified_by", ctx.client_id.clone())
        }))
        .mutator(
            SyncModel::insert::<BoardArgs>("writesElsewhere", "cards")
                .build(|_, ctx| Insert::into("secrets").value("id", ctx.record_id.clone())),
        )
        .mutator(
            SyncModel::insert::<BoardArgs>("isAnUpdate", "cards")
                .build(|_, ctx| Update::record("cards", ctx.record_id.clone()).set("body", "x")),
        )
        .mutator(
            SyncModel::update::<BoardArgs>("unguardedUpdate", "cards")
                .require("boardId", "board_id")
                .build(|_, ctx| Update::record("cards", ctx.record_id.clone()).set("body", "x")),
        )
        .mutator(SyncModel::update::<BoardArgs>("movesBoard", "cards").require("boardId", "board_id").build(
            |args, ctx| {
                Update::record("cards", ctx.record_id.clone()).set("board_id", "elsewhere").guard(
                    "board_id",
                    Operator::Eq,
                    args.board_id.clone(),
                )
            },
        ))
        .mutator(
            SyncModel::update::<BoardArgs>("rekeys", "cards")
                .build(|_, ctx| Update::record("cards", ctx.record_id.clone()).set("id", "card_new")),
        )
        .build()
        .expect("structurally valid")
}

#[test]
fn operations_that_leave_their_contract_are_refused() {
    let m = rogue_model();
    let board = json!({"boardId": "r1"});
    assert!(matches!(
        m.validate_query("forgetsPredicate", &board),
        Err(ValidationError::RequiredPredicateMissing { ref column, .. }) if column == "board_id"
    ));
    // `board_id >= ?` is a filter no topic pins: refused before it could widen a read.
    assert!(matches!(
        m.validate_query("widensPredicate", &board),
        Err(ValidationError::UnroutedFilter { ref column, .. }) if column == "board_id"
    ));
    assert!(matches!(
        m.validate_query("readsElsewhere", &board),
        Err(ValidationError::WrongCollection { expected, actual, .. }) if expected == "cards" && actual == "secrets"
    ));
    assert!(
        matches!(m.validate_query("unknownColumn", &board), Err(ValidationError::UnknownColumn { column, .. }) if column == "password")
    );

    let c = ctx(CLIENT, RECORD, 1);
    let send = json!({"boardId": "r1", "author": "Ada", "body": "hi"});
    assert!(
        matches!(m.validate_mutation("wrongBoard", &send, &c), Err(ValidationError::RequiredValueMissing { column, .. }) if column == "board_id")
    );
    assert!(matches!(
        m.validate_mutation("missingColumn", &send, &c),
        Err(ValidationError::ColumnType { .. } | ValidationError::MissingColumn { .. })
    ));
    assert!(matches!(
        m.validate_mutation("badType", &send, &c),
        Err(ValidationError::ColumnType { column, expected: "integer", actual: "text", .. }) if column == "created_at"
    ));
    assert!(matches!(
        m.validate_mutation("otherRecord", &send, &c),
        Err(ValidationError::RecordIdMismatch { .. })
    ));
    assert!(matches!(
        m.validate_mutation("writesElsewhere", &board, &c),
        Err(ValidationError::WrongCollection { .. })
    ));
    assert!(matches!(
        m.validate_mutation("isAnUpdate", &board, &c),
        Err(ValidationError::WrongKind { expected: MutationKind::Insert, actual: MutationKind::Update, .. })
    ));
    assert!(matches!(
        m.validate_mutation("unguardedUpdate", &board, &c),
        Err(ValidationError::RequiredValueMissing { .. })
    ));
    assert!(matches!(
        m.validate_mutation("movesBoard", &board, &c),
        Err(ValidationError::RequiredValueMissing { .. })
    ));
    assert!(matches!(
        m.validate_mutation("rekeys", &board, &c),
        Err(ValidationError::PrimaryKeyUpdate { .. })
    ));
}

#[test]
fn a_valid_send_fills_the_record_id_and_normalizes() {
    let write = send(json!({"boardId": "r1", "author": " Ada", "body": "hi "})).expect("valid");
    assert_eq!(write.kind, MutationKind::Insert);
    assert_eq!(write.record_id, RECORD);
    assert_eq!(write.args, json!({"boardId": "r1", "author": "Ada", "body": "hi"}));
    let sync::Operation::Insert(insert) = write.operation else { panic!("insert") };
    assert_eq!(insert.values["id"], json!(RECORD));
}

#[test]
fn mutation_arg_errors_are_precise() {
    assert_eq!(
        model().validate_mutation("sendMassage", &json!({}), &ctx(CLIENT, RECORD, 1)),
        Err(ValidationError::UnknownMutator("sendMassage".into()))
    );
    assert!(
        matches!(send(json!({"boardId": "r1", "body": "hi"})), Err(ValidationError::MissingArg { arg, .. }) if arg == "author")
    );
    assert!(matches!(
        send(json!({"boardId": "r1", "author": "A", "body": "hi", "admin": true})),
        Err(ValidationError::UnknownArg { arg, .. }) if arg == "admin"
    ));
    assert!(matches!(
        send(json!({"boardId": "r1", "author": "A", "body": ["hi"]})),
        Err(ValidationError::IllTypedArg { arg, .. }) if arg == "body"
    ));
    assert!(matches!(send(json!(null)), Err(ValidationError::ArgsNotObject { got: "null", .. })));
}

#[test]
fn every_column_type_is_checked() {
    let m = model();
    let c = ctx(CLIENT, "note_1", 1);
    let ok =
        m.validate_mutation("addNote", &json!({"pinned": true, "score": 1.5, "meta": {"tags": ["a"]}}), &c);
    assert!(ok.is_ok(), "{ok:?}");
    // An integer is a fine real.
    assert!(m.validate_mutation("addNote", &json!({"pinned": false, "score": 2, "meta": [1]}), &c).is_ok());
    // JSON null is not storable: absent data is an absent row.
    assert!(matches!(
        m.validate_mutation("addNote", &json!({"pinned": false, "score": 2, "meta": null}), &c),
        Err(ValidationError::ColumnType { column, .. }) if column == "meta"
    ));
}

#[test]
fn validation_errors_have_stable_codes() {
    assert_eq!(ValidationError::UnknownQuery("x".into()).code(), "unknown_query");
    assert_eq!(send(json!({})).map(|_| ()).map_err(|e| e.code()), Err("invalid_args"));
}

#[derive(Serialize, Deserialize)]
struct NoArgs {}

#[test]
fn inconsistent_models_do_not_build() {
    let with = |collection: Collection| SyncModel::builder().collection(collection).build();
    assert_eq!(
        with(Collection::new("Cards", "id").column("id", ColumnType::Text)).err(),
        Some(ModelError::InvalidIdentifier("Cards".into()))
    );
    assert_eq!(
        with(
            Collection::new("m", "id")
                .column("id", ColumnType::Text)
                .column("x\"; DROP TABLE m; --", ColumnType::Text)
        )
        .err(),
        Some(ModelError::InvalidIdentifier("x\"; DROP TABLE m; --".into()))
    );
    assert_eq!(
        with(Collection::new("sync_changes", "id").column("id", ColumnType::Text)).err(),
        Some(ModelError::InvalidIdentifier("sync_changes".into()))
    );
    assert!(matches!(
        with(Collection::new("m", "id").column("id", ColumnType::Integer)).err(),
        Some(ModelError::BadPrimaryKey { .. })
    ));
    assert!(matches!(
        with(Collection::new("m", "id").column("id", ColumnType::Text).column("id", ColumnType::Text)).err(),
        Some(ModelError::DuplicateColumn { .. })
    ));
    let base = || SyncModel::builder().collection(cards());
    assert!(matches!(
        base()
            .query(
                SyncModel::query::<NoArgs>("q", "cards")
                    .require("x", "nope", Operator::Eq)
                    .build(|_| Select::from("cards"))
            )
            .build()
            .err(),
        Some(ModelError::UnknownColumn { .. })
    ));
    assert!(matches!(
        base()
            .query(SyncModel::query::<NoArgs>("q", "nowhere").build(|_| Select::from("nowhere")))
            .build()
            .err(),
        Some(ModelError::UnknownCollection { .. })
    ));
    assert!(matches!(
        base().query(SyncModel::query::<NoArgs>("q", "cards")).build().err(),
        Some(ModelError::MissingBuild(_))
    ));
    assert!(matches!(
        base()
            .query(SyncModel::query::<NoArgs>("q", "cards").build(|_| Select::from("cards")))
            .mutator(
                SyncModel::delete::<NoArgs>("q", "cards")
                    .build(|_, c| sync::Delete::record("cards", c.record_id.clone()))
            )
            .build()
            .err(),
        Some(ModelError::DuplicateOperation(_))
    ));
}

#[test]
fn values_are_bounded_routed_ones_tightest() {
    let m = model();
    // A routed value (board_id becomes part of a topic): 256 bytes at most.
    let long_board = "b".repeat(sync::schema::ROUTED_VALUE_MAX_BYTES + 1);
    let refused = m.validate_query("boardCards", &json!({ "boardId": long_board })).unwrap_err();
    assert!(
        matches!(&refused, ValidationError::ValueTooLarge { column, bytes: 257, max: 256, .. } if column == "board_id"),
        "{refused:?}"
    );
    assert_eq!(refused.code(), "invalid_args");
    let edge = "b".repeat(sync::schema::ROUTED_VALUE_MAX_BYTES);
    assert!(m.validate_query("boardCards", &json!({ "boardId": edge })).is_ok());
    // Bytes, not characters: 86 three-byte characters are 258 bytes.
    let wide = "€".repeat(86);
    assert!(matches!(
        m.validate_query("boardCards", &json!({ "boardId": wide })),
        Err(ValidationError::ValueTooLarge { bytes: 258, .. })
    ));
    // The same routed column in a write.
    let refused = send(json!({"boardId": "b".repeat(300), "author": "ada", "body": "hi"})).unwrap_err();
    assert!(matches!(refused, ValidationError::ValueTooLarge { ref column, .. } if column == "board_id"));
    // Any other value: 64 KB.
    let body = "x".repeat(sync::schema::VALUE_MAX_BYTES);
    assert!(send(json!({"boardId": "b1", "author": "ada", "body": body})).is_ok());
    let body = "x".repeat(sync::schema::VALUE_MAX_BYTES + 1);
    let refused = send(json!({"boardId": "b1", "author": "ada", "body": body})).unwrap_err();
    assert!(
        matches!(refused, ValidationError::ValueTooLarge { ref column, max: 65536, .. } if column == "body")
    );
    assert_eq!(refused.code(), "invalid_args");
    // The message says which column, and is short whatever the input.
    assert!(refused.to_string().len() < 200, "{refused}");
    assert!(refused.to_string().contains("body"));
}

#[test]
fn a_collection_sets_its_own_limits() {
    let sized = |cards: Collection| {
        SyncModel::builder()
            .collection(cards)
            .mutator(SyncModel::insert::<SendArgs>("addCard", "cards").require("boardId", "board_id").build(
                |args, ctx| {
                    Insert::into("cards")
                        .value("board_id", args.board_id.clone())
                        .value("author", args.author.clone())
                        .value("body", args.body.clone())
                        .value("created_at", ctx.now_ms)
                        .value("last_modified_by", ctx.client_id.clone())
                },
            ))
            .build()
    };
    let m = sized(common::cards().max_bytes("body", 1 << 20).max_bytes("author", 8)).expect("valid");
    let ok = json!({"boardId": "b1", "author": "ada", "body": "x".repeat(100_000)});
    assert!(m.validate_mutation("addCard", &ok, &ctx(CLIENT, RECORD, 7)).is_ok());
    let long_author = json!({"boardId": "b1", "author": "adalovelace", "body": "x"});
    assert!(matches!(
        m.validate_mutation("addCard", &long_author, &ctx(CLIENT, RECORD, 7)),
        Err(ValidationError::ValueTooLarge { max: 8, .. })
    ));
    assert!(matches!(
        sized(common::cards().max_bytes("password", 10)),
        Err(ModelError::UnknownColumn { column, .. }) if column == "password"
    ));
}

#[test]
fn query_args_are_bounded_as_a_whole() {
    #[derive(Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct SearchArgs {
        board_id: String,
        search: String,
    }
    let m = SyncModel::builder()
        .collection(common::cards())
        .query(
            SyncModel::query::<SearchArgs>("search", "cards")
                .require("boardId", "board_id", Operator::Eq)
                .build(|args| Select::from("cards").filter("board_id", Operator::Eq, args.board_id.clone())),
        )
        .build()
        .expect("valid");
    assert!(m.validate_query("search", &json!({"boardId": "b", "search": "x".repeat(900)})).is_ok());
    assert!(matches!(
        m.validate_query("search", &json!({"boardId": "b", "search": "x".repeat(1100)})),
        Err(ValidationError::ArgsTooLarge { max: 1024, .. })
    ));
}

#[test]
fn query_and_mutator_names_are_plain_words() {
    for name in ["board$sync$; DROP TABLE cards; --", "", "9lives", "has space", "quote'd", &"q".repeat(64)] {
        let built = SyncModel::builder()
            .collection(common::cards())
            .query(
                SyncModel::query::<BoardArgs>(name, "cards")
                    .require("boardId", "board_id", Operator::Eq)
                    .build(|args| {
                        Select::from("cards").filter("board_id", Operator::Eq, args.board_id.clone())
                    }),
            )
            .build();
        assert!(
            matches!(built, Err(ModelError::InvalidOperationName(ref n)) if n == name),
            "{name}: {built:?}"
        );
    }
    let built = SyncModel::builder()
        .collection(common::cards())
        .mutator(
            SyncModel::delete::<BoardArgs>("drop$sync$", "cards")
                .build(|_, ctx| sync::Delete::record("cards", ctx.record_id.clone())),
        )
        .build();
    assert!(matches!(built, Err(ModelError::InvalidOperationName(_))), "{built:?}");
}
