//! The SQL built for SQLite runs on a real SQLite (the same engine D1 and the
//! browser's store use) and does what the operation says, whatever the values hold.

mod common;

use std::collections::BTreeSet;

use proptest::prelude::*;
use rusqlite::{Connection, params_from_iter, types::Value as SqlValue};
use serde_json::{Value, json};
use sync::changes::{Change, ChangeKind, Cursor, Topic};
use sync::schema::Row;
use sync::sql::{self, Dialect, SqlParam, Statement};
use sync::{Operation, Operator, Select};

use common::{cards, ctx, model, notes};

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

fn execute(db: &Connection, statement: &Statement) -> usize {
    db.execute(&statement.sql, params_from_iter(bind(&statement.params)))
        .unwrap_or_else(|e| panic!("{}: {e}", statement.sql))
}

fn query_raw(db: &Connection, statement: &Statement) -> Vec<Vec<(String, Value)>> {
    let mut prepared = db.prepare(&statement.sql).unwrap_or_else(|e| panic!("{}: {e}", statement.sql));
    let names: Vec<String> = prepared.column_names().map(String::from).collect();
    prepared
        .query_map(params_from_iter(bind(&statement.params)), |row| {
            Ok(names
                .iter()
                .enumerate()
                .map(|(index, name)| {
                    let cell = match row.get::<_, SqlValue>(index).expect("cell") {
                        SqlValue::Null => Value::Null,
                        SqlValue::Integer(i) => json!(i),
                        SqlValue::Real(r) => json!(r),
                        SqlValue::Text(t) => json!(t),
                        SqlValue::Blob(_) => panic!("no blobs"),
                    };
                    (name.clone(), cell)
                })
                .collect())
        })
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

fn select_rows(db: &Connection, collection: &sync::Collection, select: &Select) -> Vec<Row> {
    let statement = sql::select(Dialect::Sqlite, collection, select).expect("select builds");
    query_raw(db, &statement).into_iter().map(|raw| sql::decode_row(collection, raw)).collect()
}

fn database() -> Connection {
    let db = Connection::open_in_memory().expect("sqlite");
    for collection in model().collections() {
        db.execute_batch(&sql::create_table(Dialect::Sqlite, collection)).expect("create table");
    }
    for statement in sql::engine_schema(Dialect::Sqlite) {
        db.execute_batch(statement).expect("engine schema");
    }
    for statement in sync::capture::triggers(Dialect::Sqlite, &model()) {
        db.execute_batch(&statement).unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
    db
}

fn schema_snapshot(db: &Connection) -> Vec<String> {
    let mut statement = db.prepare("SELECT sql FROM sqlite_master ORDER BY name").expect("prepare");
    statement
        .query_map([], |row| row.get::<_, Option<String>>(0))
        .expect("query")
        .filter_map(|r| r.expect("row"))
        .collect()
}

fn send(db: &Connection, record: &str, board: &str, body: &str, now: i64) {
    let write = model()
        .validate_mutation(
            "addCard",
            &json!({"boardId": board, "author": "Ada", "body": body}),
            &ctx("client_a", record, now),
        )
        .expect("valid");
    assert_eq!(execute(db, &sql::write(Dialect::Sqlite, &cards(), &write.operation).expect("builds")), 1);
}

#[test]
fn insert_update_delete_and_select_do_what_the_operations_say() {
    let db = database();
    send(&db, "m1", "r1", "first", 10);
    send(&db, "m2", "r1", "second", 5);
    send(&db, "m3", "r2", "elsewhere", 1);
    let board = model().validate_query("boardCards", &json!({"boardId": "r1"})).expect("valid");
    let rows = select_rows(&db, &cards(), &board.select);
    // Ordered by created_at, then id.
    assert_eq!(rows.iter().map(|r| r["id"].clone()).collect::<Vec<_>>(), vec![json!("m2"), json!("m1")]);
    assert_eq!(rows[1]["body"], json!("first"));
    assert_eq!(rows[1]["created_at"], json!(10));

    let edit = model()
        .validate_mutation(
            "editCard",
            &json!({"boardId": "r1", "body": "edited"}),
            &ctx("client_b", "m1", 11),
        )
        .expect("valid");
    assert_eq!(execute(&db, &sql::write(Dialect::Sqlite, &cards(), &edit.operation).expect("builds")), 1);
    // The guard stops an edit through another board.
    let sneaky = model()
        .validate_mutation(
            "editCard",
            &json!({"boardId": "r2", "body": "hijack"}),
            &ctx("client_b", "m1", 12),
        )
        .expect("valid");
    assert_eq!(execute(&db, &sql::write(Dialect::Sqlite, &cards(), &sneaky.operation).expect("builds")), 0);
    let by_id = sql::select_by_id(Dialect::Sqlite, &cards(), "m1").expect("builds");
    let row = sql::decode_row(&cards(), query_raw(&db, &by_id).remove(0));
    assert_eq!(row["body"], json!("edited"));
    assert_eq!(row["last_modified_by"], json!("client_b"));

    let delete = model()
        .validate_mutation("deleteCard", &json!({"boardId": "r1"}), &ctx("client_b", "m2", 13))
        .expect("valid");
    assert_eq!(execute(&db, &sql::write(Dialect::Sqlite, &cards(), &delete.operation).expect("builds")), 1);
    assert_eq!(select_rows(&db, &cards(), &board.select).len(), 1);
}

#[test]
fn booleans_reals_and_json_round_trip() {
    let db = database();
    let write = model()
        .validate_mutation(
            "addNote",
            &json!({"pinned": true, "score": 2.5, "meta": {"tags": ["x", "y"], "n": 1}}),
            &ctx("c", "n1", 1),
        )
        .expect("valid");
    execute(&db, &sql::write(Dialect::Sqlite, &notes(), &write.operation).expect("builds"));
    let rows = select_rows(&db, &notes(), &Select::from("notes"));
    assert_eq!(rows[0]["pinned"], json!(true));
    assert_eq!(rows[0]["score"], json!(2.5));
    assert_eq!(rows[0]["meta"], json!({"tags": ["x", "y"], "n": 1}));
}

#[test]
fn upsert_replaces_a_local_row_with_the_server_version() {
    let db = database();
    send(&db, "m1", "r1", "optimistic", 1);
    let server_row: Row = [
        ("id", json!("m1")),
        ("board_id", json!("r1")),
        ("author", json!("Ada")),
        ("body", json!("confirmed")),
        ("created_at", json!(99)),
        ("last_modified_by", json!("client_a")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    execute(&db, &sql::upsert_row(Dialect::Sqlite, &cards(), &server_row).expect("builds"));
    execute(&db, &sql::upsert_row(Dialect::Sqlite, &cards(), &server_row).expect("builds"));
    let rows = select_rows(&db, &cards(), &Select::from("cards"));
    assert_eq!(rows, vec![server_row]);
}

fn change(seq: u64, board: &str, record: &str) -> Change {
    Change {
        seq: Cursor(seq),
        collection: "cards".into(),
        record_id: record.into(),
        kind: ChangeKind::Upsert,
        row: Some(
            [("id".to_string(), json!(record)), ("board_id".to_string(), json!(board))].into_iter().collect(),
        ),
        topics: vec![Topic::from_raw(format!(r#"boardCards{{"boardId":"{board}"}}"#))],
        client_id: "client_a".into(),
        mutation_id: format!("outbox_{seq}"),
    }
}

#[test]
fn the_change_log_assigns_cursors_and_pulls_by_topic() {
    let db = database();
    for (seq, board) in [(1, "r1"), (2, "r2"), (3, "r1"), (4, "r3")] {
        execute(&db, &sql::insert_change(Dialect::Sqlite, &change(seq, board, &format!("m{seq}")), 0));
    }
    let head = db.query_row(sql::change_head(Dialect::Sqlite), [], |row| row.get::<_, i64>(0)).expect("head");
    assert_eq!(head, 4);
    let r1 = Topic::from_raw(r#"boardCards{"boardId":"r1"}"#);
    let r3 = Topic::from_raw(r#"boardCards{"boardId":"r3"}"#);
    let seqs = |since: u64, topics: &[Topic], limit: u32| -> Vec<i64> {
        query_raw(&db, &sql::pull_changes(Dialect::Sqlite, Cursor(since), topics, limit))
            .into_iter()
            .map(|row| row[0].1.as_i64().expect("seq"))
            .collect()
    };
    assert_eq!(seqs(0, std::slice::from_ref(&r1), 100), vec![1, 3]);
    assert_eq!(seqs(1, std::slice::from_ref(&r1), 100), vec![3]);
    assert_eq!(seqs(0, &[r1.clone(), r3.clone()], 100), vec![1, 3, 4]);
    assert_eq!(seqs(0, &[r1, r3], 2), vec![1, 3]);
    assert_eq!(seqs(0, &[], 100), Vec::<i64>::new());
    // The same answer as the reference pull.
    let log: Vec<Change> = [(1, "r1"), (2, "r2"), (3, "r1"), (4, "r3")]
        .iter()
        .map(|(s, r)| change(*s, r, &format!("m{s}")))
        .collect();
    let topics: BTreeSet<Topic> = [Topic::from_raw(r#"boardCards{"boardId":"r1"}"#)].into_iter().collect();
    let page = sync::changes::pull(&log, Cursor(0), &topics, 100, Cursor(4));
    assert_eq!(page.changes.iter().map(|c| c.seq.0 as i64).collect::<Vec<_>>(), vec![1, 3]);
    assert_eq!(page.cursor, Cursor(4));
}

#[test]
fn each_topic_is_pulled_from_its_own_cursor_and_pokes_find_where_a_topic_stands() {
    let db = database();
    let mut moved = change(5, "r1", "m1");
    moved.topics.push(Topic::from_raw(r#"boardCards{"boardId":"r2"}"#));
    for change in
        [change(1, "r1", "m1"), change(2, "r2", "m2"), change(3, "r1", "m3"), change(4, "r3", "m4"), moved]
    {
        execute(&db, &sql::insert_change(Dialect::Sqlite, &change, 0));
    }
    let [r1, r2, r3] =
        ["r1", "r2", "r3"].map(|board| Topic::from_raw(format!(r#"boardCards{{"boardId":"{board}"}}"#)));
    let seqs = |groups: &[(Cursor, Vec<Topic>)]| -> Vec<i64> {
        query_raw(&db, &sql::pull_changes_since(Dialect::Sqlite, groups, 100))
            .into_iter()
            .map(|row| row[0].1.as_i64().expect("seq"))
            .collect()
    };
    // m1's first image (1) is superseded by its later change (5), which this pull
    // hands out too: the superseded one is never sent.
    assert_eq!(seqs(&[(Cursor(0), vec![r1.clone()]), (Cursor(3), vec![r2.clone()])]), vec![3, 5]);
    assert_eq!(seqs(&[(Cursor(3), vec![r1.clone()]), (Cursor(0), vec![r2.clone()])]), vec![2, 5]);
    assert_eq!(seqs(&[(Cursor(5), vec![r1.clone(), r2.clone()]), (Cursor(0), vec![r3.clone()])]), vec![4]);
    assert_eq!(seqs(&[]), Vec::<i64>::new());

    // The newest change on each topic before 5, and the compaction mark.
    let predecessors = |first: Option<u64>| -> Vec<(String, Option<i64>)> {
        let mut rows: Vec<(String, Option<i64>)> = sql::topic_predecessors(
            Dialect::Sqlite,
            &[r1.clone(), r2.clone(), r3.clone()],
            first.map(Cursor),
        )
        .iter()
        .flat_map(|statement| query_raw(&db, statement))
        .map(|row| (row[0].1.as_str().expect("topic").to_string(), row[1].1.as_i64()))
        .collect();
        rows.sort();
        rows
    };
    assert_eq!(
        predecessors(Some(5)),
        vec![
            ("".into(), Some(0)),
            (r1.to_string(), Some(3)),
            (r2.to_string(), Some(2)),
            (r3.to_string(), Some(4))
        ]
    );
    // Before 3, r3 has no change at all (the window's start stands for it).
    assert_eq!(
        predecessors(Some(3)),
        vec![
            ("".into(), Some(0)),
            (r1.to_string(), Some(1)),
            (r2.to_string(), Some(2)),
            (r3.to_string(), None)
        ]
    );
    // Read inside a write batch before its writes: the newest change of each topic so
    // far, as if the batch's first change were the next number.
    let next = query_raw(
        &db,
        &Statement { sql: "SELECT MAX(seq) + 1 FROM sync_changes".into(), params: Vec::new() },
    )[0][0]
        .1
        .as_u64()
        .expect("next");
    assert_eq!(predecessors(None), predecessors(Some(next)));
}

#[test]
fn a_mutation_id_can_be_recorded_once() {
    let db = database();
    execute(
        &db,
        &sql::record_mutation(
            Dialect::Sqlite,
            "client_a",
            "outbox_1",
            r#"{"status":"rejected","reason":"x"}"#,
            0,
            None,
        ),
    );
    let found = query_raw(&db, &sql::find_mutation(Dialect::Sqlite, "client_a", "outbox_1", None));
    assert_eq!(found.len(), 1);
    let again = sql::record_mutation(Dialect::Sqlite, "client_a", "outbox_1", "{}", 0, Some(("cards", "m1")));
    assert!(db.execute(&again.sql, params_from_iter(bind(&again.params))).is_err(), "a duplicate must fail");
    // Another client may use the same mutation id.
    execute(&db, &sql::record_mutation(Dialect::Sqlite, "client_b", "outbox_1", "{}", 0, None));
}

#[test]
fn postgres_statements_use_numbered_placeholders_and_casts() {
    let write = model()
        .validate_mutation("addNote", &json!({"pinned": true, "score": 1.0, "meta": {}}), &ctx("c", "n1", 1))
        .expect("valid");
    let statement = sql::write(Dialect::Postgres, &notes(), &write.operation).expect("builds");
    assert_eq!(
        statement.sql,
        r#"INSERT INTO "notes" ("id", "meta", "pinned", "score") VALUES ($1, $2::jsonb, $3, $4)"#
    );
    assert_eq!(statement.params[2], SqlParam::Boolean(true));
    let select = Select::from("cards").filter("board_id", Operator::Eq, "r1").limit(20);
    let statement = sql::select(Dialect::Postgres, &cards(), &select).expect("builds");
    assert!(
        statement.sql.ends_with(r#"WHERE "board_id" = $1 ORDER BY "id" ASC LIMIT 20"#),
        "{}",
        statement.sql
    );
    let pull =
        sql::pull_changes(Dialect::Postgres, Cursor(3), &[Topic::from_raw("a"), Topic::from_raw("b")], 10);
    assert!(
        pull.sql.contains("c.seq > 3 AND") && pull.sql.contains("ARRAY[$1, $2]") && pull.params.len() == 2,
        "{}",
        pull.sql
    );
    assert!(sql::create_table(Dialect::Postgres, &notes()).contains(r#""meta" JSONB NOT NULL"#));
}

/// The apply for PostgreSQL: every statement numbers its placeholders from 1 and uses
/// each parameter, and the last returns the outcome and topics. (It runs on a real
/// PostgreSQL in the PostgreSQL tier: end2end/postgres.suite.mjs.)
#[test]
fn postgres_apply_numbers_every_parameter_once_and_returns_the_outcome() {
    let collection = cards();
    for (name, args) in [
        ("addCard", json!({"boardId": "r1", "author": "Ada", "body": "hi"})),
        ("editCard", json!({"boardId": "r1", "body": "edited"})),
        ("deleteCard", json!({"boardId": "r1"})),
    ] {
        let write = model().validate_mutation(name, &args, &ctx("client_a", "m1", 7)).expect("valid");
        let accepted = sql::AcceptedMutation {
            collection: &collection,
            operation: &write.operation,
            record_id: "m1",
            client_id: "client_a",
            mutation_id: "outbox_1",
            now_ms: 7,
        };
        let statements = accepted.statements(Dialect::Postgres).expect("builds");
        for statement in &statements {
            for index in 1..=statement.params.len() {
                assert!(
                    statement.sql.contains(&format!("${index}")),
                    "{name}: ${index} unused in {}",
                    statement.sql
                );
            }
            let beyond = format!("${}", statement.params.len() + 1);
            assert!(!statement.sql.contains(&beyond), "{name}: {beyond} has no parameter");
        }
        // The answer comes back from one of the statements after the write (the
        // confirmed change read back, or the stored "nothing written").
        for dialect in [Dialect::Postgres, Dialect::Sqlite] {
            let statements = accepted.statements(dialect).expect("builds");
            let answering = statements
                .iter()
                .filter(|s| {
                    s.sql.contains("outcome_json, topics_json")
                        || s.sql.contains("RETURNING outcome_json, NULL")
                })
                .count();
            assert_eq!(answering, 2, "{dialect:?}: {statements:?}");
        }
    }
}

#[test]
fn a_wrongly_typed_value_is_refused_before_reaching_sql() {
    let operation =
        Operation::Insert(sync::Insert::into("cards").value("id", "m1").value("created_at", "now"));
    assert!(matches!(sql::write(Dialect::Sqlite, &cards(), &operation), Err(sql::SqlError::BadValue { .. })));
    let operation = Operation::Insert(sync::Insert::into("cards").value("id", "m1").value("admin", true));
    assert!(matches!(
        sql::write(Dialect::Sqlite, &cards(), &operation),
        Err(sql::SqlError::UnknownColumn { .. })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Any text, including quotes, semicolons, comments and NULs, is stored and read
    /// back exactly, selects exactly its own row, and never changes the schema.
    #[test]
    fn values_can_never_inject_sql(board in ".{0,40}", body in "(.|'|\"|;|--|\\)|\\\\){0,60}", other in ".{0,10}") {
        let db = database();
        let before = schema_snapshot(&db);
        send(&db, "m1", &board, &body, 1);
        let bystander = format!("{board}{other}x");
        send(&db, "m2", &bystander, "bystander", 2);
        let read = model().validate_query("boardCards", &json!({"boardId": board})).expect("valid");
        let rows = select_rows(&db, &cards(), &read.select);
        let expected_board = board.trim().to_string();
        prop_assert_eq!(rows.len(), 1);
        prop_assert_eq!(&rows[0]["board_id"], &json!(expected_board));
        prop_assert_eq!(&rows[0]["body"], &json!(body.trim()));
        prop_assert_eq!(schema_snapshot(&db), before);
        let count: i64 = db.query_row("SELECT COUNT(*) FROM cards", [], |r| r.get(0)).expect("count");
        prop_assert_eq!(count, 2);
    }
}

/// Runs statements as one transaction, like a D1 batch: all or nothing.
fn batch(db: &mut Connection, statements: &[Statement]) -> Result<(), rusqlite::Error> {
    let tx = db.transaction()?;
    for statement in statements {
        // Statements may return rows (RETURNING): step through them.
        let mut prepared = tx.prepare(&statement.sql)?;
        let mut rows = prepared.query(params_from_iter(bind(&statement.params)))?;
        while rows.next()?.is_some() {}
    }
    tx.commit()
}

fn outcome(
    db: &Connection,
    client: &str,
    mutation: &str,
    record: &str,
) -> Option<sync::protocol::push::MutationOutcome> {
    let rows =
        query_raw(db, &sql::find_mutation(Dialect::Sqlite, client, mutation, Some((&["cards"], record))));
    assert!(rows.len() <= 1, "one answer per mutation: {rows:?}");
    let text = rows.first()?.first()?.1.as_str()?.to_string();
    let mut outcome: sync::protocol::push::MutationOutcome =
        serde_json::from_str(&text).expect("outcome json");
    if let sync::protocol::push::MutationOutcome::Confirmed { row: Some(row), .. } = &mut outcome {
        *row = sql::decode_row(&cards(), std::mem::take(row));
    }
    Some(outcome)
}

fn apply(
    db: &mut Connection,
    name: &str,
    args: Value,
    record: &str,
    mutation: &str,
) -> Result<(), rusqlite::Error> {
    let m = model();
    let write = m.validate_mutation(name, &args, &ctx("client_a", record, 50)).expect("valid");
    let collection = cards();
    let accepted = sql::AcceptedMutation {
        collection: &collection,
        operation: &write.operation,
        record_id: record,
        client_id: "client_a",
        mutation_id: mutation,
        now_ms: 50,
    };
    let statements = sql::sqlite_apply_mutation(&accepted).expect("builds");
    batch(db, &statements)
}

#[test]
fn an_applied_mutation_writes_row_change_and_outcome_atomically_and_only_once() {
    use sync::protocol::push::MutationOutcome;
    let mut db = database();
    let send = json!({"boardId": "r1", "author": "Ada", "body": "hello"});
    apply(&mut db, "addCard", send.clone(), "m1", "outbox_1").expect("applies");
    let Some(MutationOutcome::Confirmed { row: Some(row), seq }) = outcome(&db, "client_a", "outbox_1", "m1")
    else {
        panic!("confirmed with a row");
    };
    assert_eq!(seq, Cursor(1));
    assert_eq!(row["body"], json!("hello"));
    assert_eq!(row["created_at"], json!(50));

    // The same mutation id again: the claim fails and nothing else happens.
    assert!(apply(&mut db, "addCard", send, "m1", "outbox_1").is_err());
    let count = |db: &Connection, table: &str| -> i64 {
        db.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0)).expect("count")
    };
    // The confirmed answer is the change row itself: no row of its own.
    assert_eq!((count(&db, "cards"), count(&db, "sync_changes"), count(&db, "sync_mutations")), (1, 1, 0));

    // An edit applied, then the same edit again (a racing retry that read no answer):
    // the stamp's claim fails, so the second write rolls back and logs nothing.
    let edit = json!({"boardId": "r1", "body": "edited"});
    apply(&mut db, "editCard", edit.clone(), "m1", "outbox_edit").expect("applies");
    assert!(apply(&mut db, "editCard", edit, "m1", "outbox_edit").is_err(), "applied twice");
    assert_eq!(count(&db, "sync_changes"), 2);
    assert!(matches!(
        outcome(&db, "client_a", "outbox_edit", "m1"),
        Some(MutationOutcome::Confirmed { seq: Cursor(2), .. })
    ));
    // A rejection stored for an applied mutation would contradict its change: refused.
    let contradicting =
        sql::record_mutation(Dialect::Sqlite, "client_a", "outbox_edit", "{}", 0, Some(("cards", "m1")));
    assert!(db.execute(&contradicting.sql, params_from_iter(bind(&contradicting.params))).is_err());

    // A guard that does not hold: the write changes nothing, so no change row, and the
    // outcome says rejected.
    apply(&mut db, "editCard", json!({"boardId": "r2", "body": "hijack"}), "m1", "outbox_2").expect("runs");
    assert_eq!(
        outcome(&db, "client_a", "outbox_2", "m1"),
        Some(MutationOutcome::Rejected { reason: sql::RACED_REASON.into() })
    );
    assert_eq!(count(&db, "sync_changes"), 2);
    assert_eq!(count(&db, "sync_mutations"), 1);
    // ...and stored once: the same mutation again fails on its claim.
    assert!(
        apply(&mut db, "editCard", json!({"boardId": "r2", "body": "hijack"}), "m1", "outbox_2").is_err()
    );

    // A delete records a change without a row.
    apply(&mut db, "deleteCard", json!({"boardId": "r1"}), "m1", "outbox_3").expect("runs");
    assert_eq!(
        outcome(&db, "client_a", "outbox_3", "m1"),
        Some(MutationOutcome::Confirmed { row: None, seq: Cursor(3) })
    );
    assert_eq!(count(&db, "cards"), 0);

    // Compaction removes every change of the deleted record; their answers stay.
    let before: Vec<_> =
        ["outbox_1", "outbox_edit", "outbox_3"].iter().map(|m| outcome(&db, "client_a", m, "m1")).collect();
    execute(&db, &sql::mark_compacted(Dialect::Sqlite, Cursor(3)));
    let compaction = sql::compact_changes(Dialect::Sqlite, Cursor(3), 100);
    batch(&mut db, &compaction).expect("compacts");
    assert_eq!(count(&db, "sync_changes"), 0);
    let after: Vec<_> =
        ["outbox_1", "outbox_edit", "outbox_3"].iter().map(|m| outcome(&db, "client_a", m, "m1")).collect();
    assert_eq!(after, before);
}

#[test]
fn compaction_in_sql_removes_what_the_reference_removes_and_keeps_the_head() {
    let db = database();
    // Records a..d: a edited twice, b deleted, c untouched, d edited after the mark.
    let script: [(u64, &str, bool); 8] = [
        (1, "a", false),
        (2, "b", false),
        (3, "a", false),
        (4, "c", false),
        (5, "b", true),
        (6, "d", false),
        (7, "a", false),
        (8, "d", false),
    ];
    let mut log = Vec::new();
    for (seq, record, delete) in script {
        let mut entry = change(seq, "r1", record);
        if delete {
            entry.kind = ChangeKind::Delete;
            entry.row = None;
        }
        execute(&db, &sql::insert_change(Dialect::Sqlite, &entry, seq as i64 * 1000));
        log.push(entry);
    }
    // Changes older than 6.5 s: through 6.
    let bound = query_raw(&db, &sql::compaction_bound(Dialect::Sqlite, 6_500));
    let through = Cursor(bound[0][0].1.as_u64().expect("through"));
    assert_eq!(through, Cursor(6));
    execute(&db, &sql::mark_compacted(Dialect::Sqlite, through));
    execute(&db, &sql::mark_compacted(Dialect::Sqlite, Cursor(2)));
    let removed = |db: &Connection| {
        let mut statements = sql::compact_changes(Dialect::Sqlite, through, 2);
        let last = statements.pop().expect("the delete");
        for statement in &statements {
            execute(db, statement);
        }
        query_raw(db, &last).len()
    };
    // Batches of two until a short one.
    let mut total = 0;
    loop {
        let count = removed(&db);
        total += count;
        if count < 2 {
            break;
        }
    }
    sync::changes::compact(&mut log, through);
    let kept: Vec<i64> = query_raw(
        &db,
        &Statement { sql: "SELECT seq FROM sync_changes ORDER BY seq".into(), params: Vec::new() },
    )
    .into_iter()
    .map(|row| row[0].1.as_i64().expect("seq"))
    .collect();
    assert_eq!(kept, log.iter().map(|c| c.seq.0 as i64).collect::<Vec<_>>());
    assert_eq!(kept, vec![4, 7, 8], "a's older images, b's images and its delete, d's first image are gone");
    assert_eq!(total, 5);
    // The mark only moves up, and the head never goes back.
    let through_now = query_raw(&db, &Statement { sql: sql::compacted_through().into(), params: Vec::new() });
    assert_eq!(through_now[0][0].1.as_i64(), Some(6));
    execute(&db, &Statement { sql: "DELETE FROM sync_changes".into(), params: Vec::new() });
    let head = db.query_row(sql::change_head(Dialect::Sqlite), [], |row| row.get::<_, i64>(0)).expect("head");
    assert_eq!(head, 6);
}

#[test]
fn the_schema_check_names_what_the_database_lacks() {
    let db = database();
    let read = |db: &Connection| -> Vec<(String, String)> {
        query_raw(db, &sql::table_columns(Dialect::Sqlite, &model()))
            .into_iter()
            .map(|row| {
                (
                    row[0].1.as_str().unwrap_or_default().to_string(),
                    row[1].1.as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    };
    let columns = read(&db);
    let pairs = || columns.iter().map(|(t, c)| (t.as_str(), c.as_str()));
    assert_eq!(sql::schema_problems(&model(), pairs()), Vec::<String>::new());
    db.execute_batch("ALTER TABLE cards RENAME COLUMN body TO text; DROP TABLE notes;").expect("alter");
    let columns = read(&db);
    let problems = sql::schema_problems(&model(), columns.iter().map(|(t, c)| (t.as_str(), c.as_str())));
    assert_eq!(
        problems,
        vec!["table cards lacks column(s) body".to_string(), "table notes is missing".to_string()]
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    /// The pull's SQL delivers exactly what the rule in memory
    /// (`sync::pull::PullPlan::deliverable`) delivers, for any log and any groups: one
    /// rule, carried out twice.
    #[test]
    fn the_pull_sql_delivers_what_the_plan_delivers(
        log in proptest::collection::vec((0usize..4, 0usize..3, proptest::option::of(0usize..3)), 0..30),
        subscriptions in proptest::collection::vec((0usize..3, proptest::option::of(0u64..30)), 0..4),
        cursor in 0u64..10,
        limit in 1u32..8,
    ) {
        let db = database();
        let boards = ["r1", "r2", "r3"];
        let topic = |board: usize| Topic::from_raw(format!(r#"boardCards{{"boardId":"{}"}}"#, boards[board]));
        let mut changes = Vec::new();
        for (index, (record, board, moved_to)) in log.iter().enumerate() {
            let mut change = change(index as u64 + 1, boards[*board], &format!("m{record}"));
            if let Some(to) = moved_to {
                change.topics.push(topic(*to));
            }
            execute(&db, &sql::insert_change(Dialect::Sqlite, &change, 0));
            changes.push(change);
        }
        let plan = sync::pull::PullPlan::new(
            Cursor(cursor),
            subscriptions.iter().map(|(board, own)| (topic(*board), own.map(Cursor))),
        );
        let sql_seqs: Vec<(u64, bool)> = query_raw(&db, &sql::pull_changes_since(Dialect::Sqlite, &plan.groups(), limit))
            .into_iter()
            .map(|row| (row[0].1.as_u64().expect("seq"), row[8].1.as_i64() == Some(1)))
            .collect();
        let lowest = plan.groups().first().map_or(Cursor(cursor), |(c, _)| *c);
        let reference: Vec<(u64, bool)> = plan
            .deliverable(changes.iter().filter(|c| c.seq > lowest))
            .iter()
            .map(|d| (d.change.seq.0, d.outdated))
            .take(limit as usize)
            .collect();
        prop_assert_eq!(sql_seqs, reference);
    }
}

#[test]
fn statements_bind_no_more_than_d1_allows() {
    use sync::sql::MAX_BOUND_PARAMS;
    // A pull of 50 subscriptions, each at its own cursor.
    let groups: Vec<(Cursor, Vec<Topic>)> =
        (0..50u64).map(|i| (Cursor(i * 7), vec![Topic::from_raw(format!("q{{\"k\":\"{i}\"}}"))])).collect();
    let pull = sql::pull_changes_since(Dialect::Sqlite, &groups, 501);
    assert_eq!(pull.params.len(), 50);
    // A push that touched 250 topics asks for their predecessors in chunks.
    let topics: Vec<Topic> = (0..250).map(|i| Topic::from_raw(format!("q{{\"k\":\"{i}\"}}"))).collect();
    let statements = sql::topic_predecessors(Dialect::Sqlite, &topics, Some(Cursor(9)));
    assert_eq!(
        statements.len(),
        51,
        "50 chunks of 5 (D1's compound SELECT takes 5 terms) and the compaction mark"
    );
    assert!(statements.iter().all(|statement| statement.params.len() <= MAX_BOUND_PARAMS));
    let db = Connection::open_in_memory().expect("db");
    for statement in sync::sql::engine_schema(Dialect::Sqlite) {
        db.execute_batch(statement).expect("schema");
    }
    // D1 refuses a compound SELECT of 10 terms.
    db.set_limit(rusqlite::limits::Limit::SQLITE_LIMIT_COMPOUND_SELECT, 5).expect("limit");
    let rows: usize = statements.iter().map(|statement| query_raw(&db, statement).len()).sum();
    assert_eq!(rows, 251);
    // Both run (an empty log: no changes, every predecessor NULL), within SQLite's
    // expression depth (D1's is 100, as SQLite's default: a chain of 50 ORs is not).
    db.set_limit(rusqlite::limits::Limit::SQLITE_LIMIT_EXPR_DEPTH, 100).expect("limit");
    assert!(query_raw(&db, &pull).is_empty());
    // Read ahead of a push's writes too (no `first`).
    let ahead = sql::topic_predecessors(Dialect::Sqlite, &topics, None);
    let rows: usize = ahead.iter().map(|statement| query_raw(&db, statement).len()).sum();
    assert_eq!(rows, 251);
}
