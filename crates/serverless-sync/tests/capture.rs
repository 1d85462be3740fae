//! Change capture on a real SQLite (the engine D1 runs): the same write made through
//! the connector's statements and made directly with plain SQL produces the change
//! the in-memory reference (`ServerState`) records, in the same order, exactly once.

mod common;

use proptest::prelude::*;
use rusqlite::{Connection, params_from_iter, types::Value as SqlValue};
use serde_json::{Value, json};
use sync::changes::{Change, ChangeKind, Cursor, Topic};
use sync::protocol::push::{MutationOutcome, PushMutation};
use sync::schema::Row;
use sync::server::{ServerState, Verdict};
use sync::sql::{self, Dialect, SqlParam, Statement};
use sync::{Operator, Select, SyncModel};

use common::ctx;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuthorArgs {
    board_id: String,
    author: String,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct PinArgs {
    pinned: bool,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct AtArgs {
    created_at: i64,
}

/// The test model plus topics of every shape: two args (sorted by arg name), a
/// boolean, an integer.
fn model() -> SyncModel {
    common::builder()
        .query(
            SyncModel::query::<AuthorArgs>("authorCards", "cards")
                .require("boardId", "board_id", Operator::Eq)
                .require("author", "author", Operator::Eq)
                .build(|args| {
                    Select::from("cards").filter("board_id", Operator::Eq, args.board_id.clone()).filter(
                        "author",
                        Operator::Eq,
                        args.author.clone(),
                    )
                }),
        )
        .query(
            SyncModel::query::<AtArgs>("cardsAt", "cards")
                .require("createdAt", "created_at", Operator::Eq)
                .build(|args| Select::from("cards").filter("created_at", Operator::Eq, args.created_at)),
        )
        .query(
            SyncModel::query::<PinArgs>("pinnedNotes", "notes")
                .require("pinned", "pinned", Operator::Eq)
                .build(|args| Select::from("notes").filter("pinned", Operator::Eq, args.pinned)),
        )
        .build()
        .expect("capture test model is valid")
}

fn bind(params: &[SqlParam]) -> Vec<SqlValue> {
    params
        .iter()
        .map(|param| match param {
            SqlParam::Null => SqlValue::Null,
            SqlParam::Integer(i) => SqlValue::Integer(*i),
            SqlParam::Real(r) => SqlValue::Real(*r),
            SqlParam::Text(t) => SqlValue::Text(t.clone()),
            SqlParam::Boolean(b) => SqlValue::Integer(i64::from(*b)),
        })
        .collect()
}

fn cell(value: SqlValue) -> Value {
    match value {
        SqlValue::Null => Value::Null,
        SqlValue::Integer(i) => json!(i),
        SqlValue::Real(r) => json!(r),
        SqlValue::Text(t) => json!(t),
        SqlValue::Blob(_) => panic!("no blobs"),
    }
}

/// Runs `statement`, returning its rows as column -> cell.
fn rows(db: &Connection, statement: &Statement) -> rusqlite::Result<Vec<serde_json::Map<String, Value>>> {
    let mut prepared = db.prepare(&statement.sql)?;
    let names: Vec<String> = prepared.column_names().map(String::from).collect();
    let mut out = Vec::new();
    let mut cursor = prepared.query(params_from_iter(bind(&statement.params)))?;
    while let Some(row) = cursor.next()? {
        let mut map = serde_json::Map::new();
        for (index, name) in names.iter().enumerate() {
            map.insert(name.clone(), cell(row.get::<_, SqlValue>(index)?));
        }
        out.push(map);
    }
    Ok(out)
}

fn database(model: &SyncModel) -> Connection {
    let db = Connection::open_in_memory().expect("sqlite");
    // Exactly what an app's D1 migration holds.
    let migration = sync::migrations::plan(None, model).expect("plans").expect("a first migration");
    db.execute_batch(&migration.sqlite).unwrap_or_else(|e| panic!("{}: {e}", migration.sqlite));
    db
}

/// The change log as the connector's pull would read it.
fn log(db: &Connection, model: &SyncModel) -> Vec<Change> {
    let statement = Statement {
        sql: "SELECT seq, collection, record_id, kind, row_json, topics_json, client_id, mutation_id \
              FROM sync_changes ORDER BY seq"
            .into(),
        params: Vec::new(),
    };
    rows(db, &statement)
        .expect("log")
        .into_iter()
        .map(|raw| {
            let collection =
                model.collection(raw["collection"].as_str().expect("collection")).expect("known");
            let row = raw["row_json"].as_str().map(|text| {
                let image: serde_json::Map<String, Value> = serde_json::from_str(text).expect("image json");
                sql::decode_row(collection, image)
            });
            let topics: Vec<String> =
                serde_json::from_str(raw["topics_json"].as_str().expect("topics")).expect("topics json");
            Change {
                seq: Cursor(raw["seq"].as_u64().expect("seq")),
                collection: collection.name.clone(),
                record_id: raw["record_id"].as_str().expect("id").into(),
                kind: if raw["kind"] == json!("delete") { ChangeKind::Delete } else { ChangeKind::Upsert },
                row,
                topics: topics.into_iter().map(Topic::from_raw).collect(),
                client_id: raw["client_id"].as_str().expect("client").into(),
                mutation_id: raw["mutation_id"].as_str().expect("mutation").into(),
            }
        })
        .collect()
}

fn table(db: &Connection, model: &SyncModel, name: &str) -> Vec<Row> {
    let collection = model.collection(name).expect("collection");
    let statement = sql::select(Dialect::Sqlite, collection, &Select::from(name)).expect("select");
    let mut found: Vec<Row> =
        rows(db, &statement).expect("rows").into_iter().map(|raw| sql::decode_row(collection, raw)).collect();
    found.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    found
}

/// Plain SQL, as an admin script would write it (no engine involved).
fn direct(db: &Connection, sql: &str, params: &[SqlParam]) -> usize {
    db.execute(sql, params_from_iter(bind(params))).unwrap_or_else(|e| panic!("{sql}: {e}"))
}

#[derive(Debug, Clone)]
enum Step {
    /// Through the connector: a mutator with args on a record.
    Connector {
        mutator: &'static str,
        args: Value,
        record: usize,
    },
    /// Plain SQL on cards: insert, move to another board with a new body, delete,
    /// rename the primary key.
    InsertCard {
        record: usize,
        board: usize,
        author: usize,
    },
    MoveCard {
        record: usize,
        board: usize,
    },
    DeleteCard {
        record: usize,
    },
    RenameCard {
        record: usize,
        to: usize,
    },
    /// Plain SQL on notes: insert or flip `pinned`.
    UpsertNote {
        record: usize,
        pinned: bool,
    },
}

fn card_id(index: usize) -> String {
    format!("card_{index}")
}

fn step() -> impl Strategy<Value = Step> {
    let board = 0..3usize;
    let record = 0..6usize;
    prop_oneof![
        (record.clone(), board.clone(), 0..2usize).prop_map(|(record, board, author)| Step::Connector {
            mutator: "addCard",
            args: json!({"boardId": format!("b{board}"), "author": format!("a{author}"), "body": "new"}),
            record,
        }),
        (record.clone(), board.clone()).prop_map(|(record, board)| Step::Connector {
            mutator: "editCard",
            args: json!({"boardId": format!("b{board}"), "body": format!("edited on b{board}")}),
            record,
        }),
        (record.clone(), board.clone()).prop_map(|(record, board)| Step::Connector {
            mutator: "deleteCard",
            args: json!({"boardId": format!("b{board}")}),
            record,
        }),
        (record.clone(), board.clone(), 0..2usize).prop_map(|(record, board, author)| Step::InsertCard {
            record,
            board,
            author
        }),
        (record.clone(), board).prop_map(|(record, board)| Step::MoveCard { record, board }),
        record.clone().prop_map(|record| Step::DeleteCard { record }),
        (record.clone(), record).prop_map(|(record, to)| Step::RenameCard { record, to }),
        (0..3usize, any::<bool>()).prop_map(|(record, pinned)| Step::UpsertNote { record, pinned }),
    ]
}

fn card_row(id: &str, board: &str, author: &str, body: &str, at: i64) -> Row {
    [
        ("id", json!(id)),
        ("board_id", json!(board)),
        ("author", json!(author)),
        ("body", json!(body)),
        ("created_at", json!(at)),
        ("last_modified_by", json!("admin")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Runs one step on SQLite and on the reference.
fn run(db: &mut Connection, model: &SyncModel, reference: &mut ServerState, step: &Step, index: usize) {
    let now = 1_000 + index as i64;
    match step {
        Step::Connector { mutator, args, record } => {
            let record_id = card_id(*record);
            let mutation = PushMutation {
                id: format!("outbox_{index}"),
                name: (*mutator).into(),
                args: args.clone(),
                record_id,
            };
            let expected = reference.push("client_a", &mutation, now, || Verdict::Allow);
            let MutationOutcome::Confirmed { .. } = &expected else {
                // The connector refuses what cannot apply before any SQL runs.
                return;
            };
            let write = model
                .validate_mutation(mutator, args, &ctx("client_a", &mutation.record_id, now))
                .expect("valid");
            let collection = model.collection(&write.collection).expect("collection");
            let accepted = sql::AcceptedMutation {
                collection,
                operation: &write.operation,
                record_id: &mutation.record_id,
                client_id: "client_a",
                mutation_id: &mutation.id,
                now_ms: now,
            };
            let tx = db.transaction().expect("tx");
            // One statement of the group answers (which one depends on whether it wrote).
            let mut answered = Vec::new();
            for statement in accepted.statements(Dialect::Sqlite).expect("builds") {
                let returned = rows(&tx, &statement).unwrap_or_else(|e| panic!("{}: {e}", statement.sql));
                if !returned.is_empty() {
                    answered = returned;
                }
            }
            tx.commit().expect("commit");
            let answer = answered.first().expect("a statement answers");
            let mut outcome: MutationOutcome =
                serde_json::from_str(answer["outcome_json"].as_str().expect("outcome"))
                    .expect("outcome json");
            if let MutationOutcome::Confirmed { row: Some(row), .. } = &mut outcome {
                *row = sql::decode_row(collection, std::mem::take(row));
            }
            assert_eq!(outcome, expected, "{step:?}");
            let topics: Vec<String> =
                serde_json::from_str(answer["topics_json"].as_str().expect("topics")).expect("topics json");
            assert_eq!(
                topics,
                reference
                    .log()
                    .last()
                    .expect("logged")
                    .topics
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
            );
        }
        Step::InsertCard { record, board, author } => {
            let id = card_id(*record);
            if reference.rows("cards").iter().any(|row| row["id"] == json!(id)) {
                return;
            }
            let (board, author) = (format!("b{board}"), format!("a{author}"));
            direct(
                db,
                "INSERT INTO cards (id, board_id, author, body, created_at, last_modified_by) \
                 VALUES (?1, ?2, ?3, 'by hand', ?4, 'admin')",
                &[
                    SqlParam::Text(id.clone()),
                    SqlParam::Text(board.clone()),
                    SqlParam::Text(author.clone()),
                    SqlParam::Integer(now),
                ],
            );
            reference.write_direct("cards", &id, Some(card_row(&id, &board, &author, "by hand", now)));
        }
        Step::MoveCard { record, board } => {
            let id = card_id(*record);
            let board = format!("b{board}");
            let changed = direct(
                db,
                "UPDATE cards SET board_id = ?1, body = 'moved', last_modified_by = 'admin' WHERE id = ?2",
                &[SqlParam::Text(board.clone()), SqlParam::Text(id.clone())],
            );
            let before = reference.rows("cards").into_iter().find(|row| row["id"] == json!(id));
            assert_eq!(changed, usize::from(before.is_some()));
            if let Some(mut row) = before {
                row.insert("board_id".into(), json!(board));
                row.insert("body".into(), json!("moved"));
                row.insert("last_modified_by".into(), json!("admin"));
                reference.write_direct("cards", &id, Some(row));
            }
        }
        Step::DeleteCard { record } => {
            let id = card_id(*record);
            direct(db, "DELETE FROM cards WHERE id = ?1", &[SqlParam::Text(id.clone())]);
            reference.write_direct("cards", &id, None);
        }
        Step::RenameCard { record, to } => {
            let (from, to) = (card_id(*record), card_id(*to));
            let rows_now = reference.rows("cards");
            let Some(mut row) = rows_now.iter().find(|row| row["id"] == json!(from)).cloned() else { return };
            if from == to || rows_now.iter().any(|row| row["id"] == json!(to)) {
                return;
            }
            direct(
                db,
                "UPDATE cards SET id = ?1 WHERE id = ?2",
                &[SqlParam::Text(to.clone()), SqlParam::Text(from.clone())],
            );
            reference.write_direct("cards", &from, None);
            row.insert("id".into(), json!(to));
            reference.write_direct("cards", &to, Some(row));
        }
        Step::UpsertNote { record, pinned } => {
            let id = format!("note_{record}");
            direct(
                db,
                "INSERT INTO notes (id, pinned, score, meta) VALUES (?1, ?2, 1.5, '{\"b\":1,\"a\":[true]}') \
                 ON CONFLICT (id) DO UPDATE SET pinned = excluded.pinned",
                &[SqlParam::Text(id.clone()), SqlParam::Boolean(*pinned)],
            );
            let row: Row = [
                ("id", json!(id)),
                ("pinned", json!(pinned)),
                ("score", json!(1.5)),
                ("meta", json!({"b": 1, "a": [true]})),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
            reference.write_direct("notes", &id, Some(row));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn direct_and_connector_writes_log_what_the_reference_logs(steps in prop::collection::vec(step(), 1..40)) {
        let model = model();
        let mut db = database(&model);
        let mut reference = ServerState::new(model.clone());
        for (index, step) in steps.iter().enumerate() {
            run(&mut db, &model, &mut reference, step, index);
        }
        let logged = log(&db, &model);
        prop_assert_eq!(&logged, &reference.log().to_vec());
        for name in ["cards", "notes"] {
            prop_assert_eq!(table(&db, &model, name), reference.rows(name));
        }
        // Nothing of the connector's context outlives its batch.
        let left: i64 = db.query_row("SELECT COUNT(*) FROM sync_write_context", [], |r| r.get(0)).expect("count");
        prop_assert_eq!(left, 0);
    }
}

#[test]
fn topics_composed_in_sql_equal_the_engines() {
    let model = model();
    let db = database(&model);
    direct(
        &db,
        "INSERT INTO cards (id, board_id, author, body, created_at, last_modified_by) \
         VALUES ('c1', 'b\"1\\\n', 'Zoë', 'x', 42, 'admin')",
        &[],
    );
    let logged = log(&db, &model);
    let expected = sync::changes::change_topics(&model, "cards", None, logged[0].row.as_ref());
    assert_eq!(logged[0].topics, expected);
    assert!(
        expected.iter().any(|topic| topic.as_str() == r#"authorCards{"author":"Zoë","boardId":"b\"1\\\n"}"#)
    );
    assert_eq!(logged[0].client_id, "");
}

#[test]
fn the_schema_check_names_missing_triggers() {
    let model = model();
    let db = database(&model);
    // What the schema check computes from the database's trigger list.
    let missing = |db: &Connection| {
        let statement =
            Statement { sql: sync::capture::installed_triggers(Dialect::Sqlite).into(), params: vec![] };
        let installed = rows(db, &statement).expect("triggers");
        let names = installed.iter().map(|row| row["name"].as_str().expect("name"));
        sync::capture::missing_triggers(Dialect::Sqlite, &model, names)
    };
    assert!(missing(&db).is_empty());
    db.execute_batch("DROP TRIGGER sync_capture_cards_update").expect("drop");
    assert_eq!(missing(&db), vec!["sync_capture_cards_update".to_string()]);
}

#[test]
fn a_scan_pokes_the_topics_of_unannounced_writes_and_moves_its_mark() {
    use sync::capture::{Announcement, announce};
    let topic = |name: &str| Topic::from_raw(name);
    // Nothing new: the mark follows the head (the connector announced those).
    assert_eq!(announce(Cursor(5), &[], 100, Cursor(9)), Announcement { topics: vec![], mark: Cursor(9) });
    // Two direct writes: both topics, once each; the mark goes to the head.
    let found = vec![(Cursor(6), vec![topic("b"), topic("a")]), (Cursor(8), vec![topic("a")])];
    assert_eq!(
        announce(Cursor(5), &found, 100, Cursor(9)),
        Announcement { topics: vec![topic("a"), topic("b")], mark: Cursor(9) }
    );
    // A full page: the mark stops at its last change; the head is not passed.
    assert_eq!(announce(Cursor(5), &found, 2, Cursor(20)).mark, Cursor(8));
    // Never backwards.
    assert_eq!(announce(Cursor(30), &[], 100, Cursor(20)).mark, Cursor(30));
}

#[test]
fn the_unannounced_scan_skips_the_connectors_changes() {
    let model = model();
    let mut db = database(&model);
    let mut reference = ServerState::new(model.clone());
    let steps = [
        Step::InsertCard { record: 1, board: 0, author: 0 },
        Step::Connector {
            mutator: "addCard",
            args: json!({"boardId": "b1", "author": "a", "body": "x"}),
            record: 2,
        },
        Step::MoveCard { record: 1, board: 2 },
    ];
    for (index, step) in steps.iter().enumerate() {
        run(&mut db, &model, &mut reference, step, index);
    }
    let found = rows(&db, &sync::capture::unannounced_changes(Dialect::Sqlite, Cursor(0), 10)).expect("scan");
    let seqs: Vec<i64> = found.iter().map(|row| row["seq"].as_i64().expect("seq")).collect();
    assert_eq!(seqs, vec![1, 3]);
    let found = rows(&db, &sync::capture::unannounced_changes(Dialect::Sqlite, Cursor(1), 10)).expect("scan");
    let topics: Vec<String> =
        serde_json::from_str(found[0]["topics_json"].as_str().expect("topics")).expect("json");
    assert!(topics.contains(&r#"boardCards{"boardId":"b0"}"#.to_string()), "{topics:?}");
    assert!(topics.contains(&r#"boardCards{"boardId":"b2"}"#.to_string()), "{topics:?}");
}

#[test]
fn equality_required_predicates_on_real_or_json_columns_are_refused() {
    #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
    struct ScoreArgs {
        score: f64,
    }
    let refused = common::builder()
        .query(
            SyncModel::query::<ScoreArgs>("byScore", "notes")
                .require("score", "score", Operator::Eq)
                .build(|args| Select::from("notes").filter("score", Operator::Eq, args.score)),
        )
        .build();
    match refused {
        Err(sync::model::ModelError::UnroutableColumn { operation, column, column_type }) => {
            assert_eq!((operation.as_str(), column.as_str(), column_type), ("byScore", "score", "real"));
        }
        other => panic!("expected UnroutableColumn, got {other:?}"),
    }
}

/// Only equality predicates route changes to a topic: a required `>` would hold for
/// the query's snapshot but not for its pulls and pokes, so the model is refused.
#[test]
fn required_predicates_other_than_equality_are_refused() {
    #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
    struct MinArgs {
        min: f64,
    }
    let refused = common::builder()
        .query(
            SyncModel::query::<MinArgs>("aboveScore", "notes")
                .require("min", "score", Operator::Gt)
                .build(|args| Select::from("notes").filter("score", Operator::Gt, args.min)),
        )
        .build();
    match refused {
        Err(sync::model::ModelError::UnroutedPredicate { operation, column, operator }) => {
            assert_eq!((operation.as_str(), column.as_str(), operator), ("aboveScore", "score", ">"));
        }
        other => panic!("expected UnroutedPredicate, got {other:?}"),
    }
}

/// A filter no required equality binds (here `pinned`, beyond the routed
/// `board_id`) would not hold for pulls and pokes: the read is refused, never run.
#[test]
fn filters_beyond_the_routed_predicates_are_refused() {
    #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Args {
        board_id: String,
    }
    let model = common::builder()
        .query(
            SyncModel::query::<Args>("boardPinned", "cards")
                .require("boardId", "board_id", Operator::Eq)
                .build(|args| {
                    Select::from("cards").filter("board_id", Operator::Eq, args.board_id.clone()).filter(
                        "body",
                        Operator::Ne,
                        "",
                    )
                }),
        )
        .build()
        .expect("the model builds: its filters show only when run");
    let refused = model.validate_query("boardPinned", &serde_json::json!({"boardId": "b1"}));
    match refused {
        Err(error @ sync::model::ValidationError::UnroutedFilter { .. }) => {
            assert_eq!(error.code(), "unrouted_filter");
            assert!(error.to_string().contains("`body`"), "{error}");
        }
        other => panic!("expected UnroutedFilter, got {other:?}"),
    }
}

/// A worker from before engine schema 2 sets the write context inside its batch
/// instead of stamping the change: while a deploy rolls out, its writes are still
/// recorded as its mutations and their sequence numbers found where it looks.
#[test]
fn a_worker_from_before_engine_schema_2_still_names_its_writes() {
    let model = model();
    let db = database(&model);
    let context = sync::capture::set_write_context(Dialect::Sqlite, "old_client", "old_mutation");
    db.execute(&context.sql, params_from_iter(bind(&context.params))).expect("context");
    direct(
        &db,
        "INSERT INTO cards (id, board_id, author, body, created_at, last_modified_by) \
         VALUES ('c1', 'b1', 'a', 'x', 1, 'old_client')",
        &[],
    );
    let seq: i64 = db
        .query_row(&format!("SELECT {}", sync::capture::context_seq(Dialect::Sqlite)), [], |row| row.get(0))
        .expect("the context holds the change's seq");
    db.execute("DELETE FROM sync_write_context", []).expect("clear");
    let logged = log(&db, &model);
    assert_eq!(logged.len(), 1);
    assert_eq!(logged[0].seq, Cursor(u64::try_from(seq).expect("positive")));
    assert_eq!(
        (logged[0].client_id.as_str(), logged[0].mutation_id.as_str()),
        ("old_client", "old_mutation")
    );
}
