//! The connector's pipelines on a real SQLite (D1's dialect), natively: every push and
//! pull rule, every error path, and every row of the README's "What is final, what is
//! retried" table that the server decides, with no wrangler.

#[path = "../../serverless-sync/tests/common/mod.rs"]
mod common;

use std::cell::Cell;

use axum::response::IntoResponse;
use futures_executor::block_on;
use serde_json::{Value, json};
use sync::changes::{ChangeKind, Cursor, Topic};
use sync::protocol::Decision;
use sync::protocol::mutation_callback::{MutationCallbackRequest, MutationCallbackResponse};
use sync::protocol::push::{MutationOutcome, PushMutation, PushRequest};
use sync::pull::PullPlan;
use sync::server::ServerState;
use sync::sql::{Dialect, Statement};
use sync_server::ApiError;
use sync_server::native::{self, Call, Database, Fault, Faulty, Postgres, Sqlite};

const CLIENT: &str = "client_01J00000000000000000000000";
const SESSION: &str = "session_01J00000000000000000000000";
const NOW: i64 = 1_000;

fn sqlite_upstream() -> Faulty<Sqlite> {
    Faulty::new(Sqlite::in_memory(&common::model()).expect("sqlite upstream"))
}

/// The PostgreSQL server the `postgres` test tier starts (its maintenance database).
const POSTGRES_URL: &str = "SYNC_TEST_POSTGRES_URL";

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("tokio runtime")
    })
}

/// A fresh database on the PostgreSQL server, with the engine's tables and the
/// model's first migration, as the worker applies them.
fn postgres_upstream() -> Faulty<Postgres> {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let url = std::env::var(POSTGRES_URL).expect("SYNC_TEST_POSTGRES_URL names a PostgreSQL server");
    let name = format!(
        "sync_native_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let admin = block_on(Postgres::connect_native(runtime(), &url, &[])).expect("maintenance database");
    let create = Statement { sql: format!("CREATE DATABASE {name}"), params: Vec::new() };
    block_on(admin.rows(&create)).expect("create database");
    let migration = sync::migrations::plan(None, &common::model()).expect("plan").expect("a migration");
    let target = postgres_url(&url, &name);
    let db =
        block_on(Postgres::connect_native(runtime(), &target, &[("0001_init", migration.postgres.as_str())]))
            .expect("test database");
    Faulty::new(db)
}

/// `url` with its database replaced by `name`.
fn postgres_url(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let cut = base
        .rfind('/')
        .map_or(base.len(), |slash| if base[..slash].ends_with('/') { base.len() } else { slash });
    let mut out = format!("{}/{name}", &base[..cut]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

/// Runs `sql` in its own transaction.
fn exec(db: &Faulty<impl Database>, sql: &str) {
    block_on(db.inner.write(&[Statement { sql: sql.into(), params: Vec::new() }]))
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

fn mutation_id(n: u32) -> String {
    format!("outbox_01J{n:023}")
}

fn add(n: u32, record: &str, board: &str, body: &str) -> PushMutation {
    PushMutation {
        id: mutation_id(n),
        name: "addCard".into(),
        args: json!({"boardId": board, "author": "Ada", "body": body}),
        record_id: record.into(),
    }
}

fn edit(n: u32, record: &str, board: &str, body: &str) -> PushMutation {
    PushMutation {
        id: mutation_id(n),
        name: "editCard".into(),
        args: json!({"boardId": board, "body": body}),
        record_id: record.into(),
    }
}

fn delete(n: u32, record: &str, board: &str) -> PushMutation {
    PushMutation {
        id: mutation_id(n),
        name: "deleteCard".into(),
        args: json!({"boardId": board}),
        record_id: record.into(),
    }
}

fn move_card(n: u32, record: &str, from: &str, to: &str) -> PushMutation {
    PushMutation {
        id: mutation_id(n),
        name: "moveCard".into(),
        args: json!({"fromBoardId": from, "toBoardId": to}),
        record_id: record.into(),
    }
}

fn request(mutations: Vec<PushMutation>) -> PushRequest {
    PushRequest {
        protocol_version: sync::PROTOCOL_VERSION,
        client_id: CLIENT.into(),
        session_id: SESSION.into(),
        mutations,
        first_send: false,
    }
}

/// The app's rules as a plain function: cards on board "locked" are refused one by one.
fn rules(question: &MutationCallbackRequest) -> MutationCallbackResponse {
    MutationCallbackResponse::per_operation(&question.operations, |operation| {
        if operation.args.get("boardId") == Some(&json!("locked")) {
            Err("board is locked".into())
        } else {
            Ok(())
        }
    })
}

/// Pushes with `answer` as the callback; counts the calls in `asked`.
fn push_with(
    db: &Faulty<impl Database>,
    mutations: Vec<PushMutation>,
    asked: &Cell<u32>,
    answer: impl Fn(&MutationCallbackRequest) -> Result<MutationCallbackResponse, ApiError>,
) -> Result<native::Pushed, ApiError> {
    let request = request(mutations);
    native::check_push(&request)?;
    block_on(native::push(&common::model(), db, &request, NOW, async |question: MutationCallbackRequest| {
        asked.set(asked.get() + 1);
        answer(&question)
    }))
}

fn push(db: &Faulty<impl Database>, mutations: Vec<PushMutation>) -> Result<native::Pushed, ApiError> {
    push_with(db, mutations, &Cell::new(0), |question| Ok(rules(question)))
}

fn outcomes(pushed: &native::Pushed) -> Vec<MutationOutcome> {
    pushed.response.results.iter().map(|result| result.outcome.clone()).collect()
}

fn count(db: &Faulty<impl Database>, table: &str) -> i64 {
    let statement = Statement { sql: format!("SELECT COUNT(*) AS n FROM {table}"), params: Vec::new() };
    let rows = block_on(db.inner.rows(&statement)).expect("count");
    rows.first().and_then(|row| row.get("n")).and_then(Value::as_i64).expect("a count")
}

/// (cards, changes, stored answers). A confirmed answer is its change row (stamped
/// with the mutation), the others are rows of `sync_mutations`.
fn counts(db: &Faulty<impl Database>) -> (i64, i64, i64) {
    let answers = count(db, "sync_mutations") + count(db, "sync_changes WHERE mutation_id <> ''");
    (count(db, "cards"), count(db, "sync_changes"), answers)
}

fn rejected(reason: &str) -> MutationOutcome {
    MutationOutcome::Rejected { reason: reason.into() }
}

fn board(name: &str) -> Topic {
    Topic::from_raw(format!(r#"boardCards{{"boardId":"{name}"}}"#))
}

fn pull(
    db: &Faulty<impl Database>,
    cursor: u64,
    topics: &[(&str, Option<u64>)],
) -> Result<sync::pull::Page, ApiError> {
    let plan = PullPlan::new(Cursor(cursor), topics.iter().map(|(name, own)| (board(name), own.map(Cursor))));
    block_on(native::pull_page(&common::model(), db, &plan)).and_then(|(page, _)| page)
}

/// Every test below, on one upstream.
macro_rules! on_every_upstream {
    ($upstream:path, $cases:expr $(, #[$attr:meta])*) => {
        #[allow(dead_code)]
        fn upstream() -> Faulty<impl Database> {
            $upstream()
        }

        /// A write that touches no row when it runs (a concurrent change the plan
        /// did not see; here a trigger that cancels it) is answered "changed before
        /// this write could apply", stored, and the writes after it still apply.
        #[test]
        $(#[$attr])*
        fn a_write_that_writes_nothing_is_answered_and_stored_once() {
            let db = upstream();
            push(&db, vec![add(1, "card_a", "b1", "hello")]).expect("push");
            match db.dialect() {
                Dialect::Sqlite => exec(&db, "CREATE TRIGGER vanish BEFORE UPDATE ON cards WHEN NEW.body = 'vanish' BEGIN SELECT RAISE(IGNORE); END"),
                Dialect::Postgres => {
                    exec(&db, "CREATE OR REPLACE FUNCTION vanish() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$");
                    exec(&db, "CREATE TRIGGER vanish BEFORE UPDATE ON cards FOR EACH ROW WHEN (NEW.body = 'vanish') EXECUTE FUNCTION vanish()");
                }
            }
            let pushed = push(&db, vec![edit(2, "card_a", "b1", "vanish"), edit(3, "card_a", "b1", "edited")]).expect("push");
            assert_eq!(outcomes(&pushed)[0], rejected(sync::sql::RACED_REASON), "{:?}", pushed.response);
            assert!(matches!(outcomes(&pushed)[1], MutationOutcome::Confirmed { .. }), "{:?}", pushed.response);
            assert!(pushed.one_transaction, "one transaction");
            let again = push(&db, vec![edit(2, "card_a", "b1", "vanish")]).expect("retry");
            assert_eq!(outcomes(&again)[0], rejected(sync::sql::RACED_REASON));
            assert_eq!(counts(&db), (1, 2, 3));
        }

        /// A retry racing the first attempt read no answer and planned the write
        /// again: its transaction must not apply it a second time. The claim (the
        /// change log of the record holds the mutation, or an answer is stored) rolls
        /// the whole transaction back; the first answer stands.
        #[test]
        $(#[$attr])*
        fn a_racing_retry_applies_nothing_and_the_first_answer_stands() {
            let db = upstream();
            push(&db, vec![add(1, "card_a", "b1", "hello")]).expect("push");
            let first = push(&db, vec![edit(2, "card_a", "b1", "edited")]).expect("push");
            let model = common::model();
            let racing = |mutation: PushMutation| {
                let context = sync::MutationContext { client_id: CLIENT.into(), record_id: mutation.record_id.clone(), now_ms: NOW };
                let validated = model.validate_mutation(&mutation.name, &mutation.args, &context).expect("valid");
                let collection = model.collection(&validated.collection).expect("collection");
                let accepted = sync::sql::AcceptedMutation {
                    collection,
                    operation: &validated.operation,
                    record_id: &mutation.record_id,
                    client_id: CLIENT,
                    mutation_id: &mutation.id,
                    now_ms: NOW,
                };
                block_on(db.write(&accepted.statements(db.dialect()).expect("builds")))
            };
            let before = counts(&db);
            assert!(racing(edit(2, "card_a", "b1", "edited")).is_err(), "an applied edit is applied again");
            assert!(racing(add(1, "card_a", "b1", "hello")).is_err(), "an applied insert is applied again");
            assert_eq!(counts(&db), before, "the racing transactions left nothing");
            // A write that wrote nothing is answered once too.
            let nothing = push(&db, vec![edit(3, "card_gone", "b1", "x")]).expect("push");
            assert!(matches!(outcomes(&nothing)[0], MutationOutcome::Rejected { .. }), "{:?}", nothing.response);
            let before = counts(&db);
            assert!(racing(edit(3, "card_gone", "b1", "x")).is_err(), "a stored answer is stored again");
            assert_eq!(counts(&db), before);
            // The retry is answered from the first answer.
            let again = push(&db, vec![edit(2, "card_a", "b1", "edited")]).expect("push");
            let replayed: Vec<_> = outcomes(&first).iter().map(sync::push::answered_now).collect();
            assert_eq!(replayed, outcomes(&again));
        }

        #[test]
        $(#[$attr])*
        fn a_new_write_is_applied_once_with_its_change_and_answer() {
            let db = upstream();
            let pushed = push(&db, vec![add(1, "card_a", "b1", "hello")]).expect("push");
            let answers = outcomes(&pushed);
            let [MutationOutcome::Confirmed { row: Some(row), seq }] = answers.as_slice() else {
                panic!("confirmed: {:?}", pushed.response);
            };
            assert_eq!(
                (row["body"].clone(), row["created_at"].clone(), *seq),
                (json!("hello"), json!(NOW), Cursor(1))
            );
            assert_eq!(pushed.response.cursor, Cursor(1));
            assert_eq!(counts(&db), (1, 1, 1));
            // What the pokes carry: the committed change on its topic, in one transaction.
            assert!(pushed.one_transaction);
            assert_eq!(pushed.topics, vec![board("b1").to_string()]);
            // Where its poke's changes begin was read in the write's own batch, and is
            // what a look back after it finds.
            let looked_up = block_on(native::predecessors(&db, &pushed.topics, Cursor(1))).expect("look back");
            assert_eq!(pushed.since.as_ref(), Some(&looked_up));
            let second = push(&db, vec![add(2, "card_b", "b1", "again")]).expect("push");
            let looked_up =
                block_on(native::predecessors(&db, &second.topics, second.committed[0].seq)).expect("look back");
            assert_eq!(second.since.as_ref(), Some(&looked_up));
            assert_eq!(looked_up.get(&board("b1").to_string()), Some(&1), "the first write is its predecessor");
            assert_eq!(pushed.committed.len(), 1);
            assert_eq!(pushed.committed[0].row.as_ref().map(|r| r["body"].clone()), Some(json!("hello")));
        }

        #[test]
        $(#[$attr])*
        fn a_retry_is_answered_from_the_stored_answer_without_asking_again() {
            let db = upstream();
            let asked = Cell::new(0);
            let first =
                push_with(&db, vec![add(1, "card_a", "b1", "hello")], &asked, |q| Ok(rules(q))).expect("push");
            let again =
                push_with(&db, vec![add(1, "card_a", "b1", "hello")], &asked, |q| Ok(rules(q))).expect("retry");
            // The same answer, without the first answer's image (a replay carries none).
            let replayed: Vec<_> = outcomes(&first).iter().map(sync::push::answered_now).collect();
            assert_eq!(replayed, outcomes(&again));
            assert!(matches!(outcomes(&again)[0], MutationOutcome::Confirmed { row: None, .. }));
            assert_eq!(asked.get(), 1, "the retry asks nobody");
            assert_eq!(counts(&db), (1, 1, 1));
            assert!(again.committed.is_empty(), "a retry pokes nothing");
        }

        /// New inserts sent for the first time take one upstream round trip (no read
        /// of answers or images); a first send that is not one (the mutation was
        /// applied, or refused and stored, or its record exists) is answered as a
        /// retry would be, applied at most once, and pokes nothing.
        #[test]
        $(#[$attr])*
        fn a_first_send_of_new_inserts_is_one_round_trip_and_a_wrong_hint_changes_no_answer() {
            let db = upstream();
            let first_send = |mutations: Vec<PushMutation>, asked: &Cell<u32>| {
                let request = PushRequest { first_send: true, ..request(mutations) };
                block_on(native::push(&common::model(), &db, &request, NOW, async |question: MutationCallbackRequest| {
                    asked.set(asked.get() + 1);
                    Ok(rules(&question))
                }))
            };
            let asked = Cell::new(0);
            // A read would fail: the push makes none.
            db.plan(Call::Read, Fault::Transient("no read expected".into()));
            let pushed = first_send(vec![add(1, "card_a", "b1", "hello"), add(2, "card_b", "b1", "again")], &asked)
                .expect("push");
            assert_eq!(db.pending(), 1, "the push read nothing");
            assert!(db.fired().is_empty());
            db.take_planned();
            assert!(outcomes(&pushed).iter().all(|o| matches!(o, MutationOutcome::Confirmed { row: Some(_), .. })));
            assert!(pushed.one_transaction);
            assert_eq!(counts(&db), (2, 2, 2));

            // Not a first send after all: the same mutation again. Answered from the
            // first answer (without its image), applied once, nothing to poke.
            let again = first_send(vec![add(1, "card_a", "b1", "hello")], &asked).expect("push");
            let replayed: Vec<_> = outcomes(&pushed)[..1].iter().map(sync::push::answered_now).collect();
            assert_eq!(outcomes(&again), replayed);
            assert!(again.committed.is_empty());
            assert_eq!(counts(&db), (2, 2, 2));

            // A refusal stored, then the same mutation "for the first time": refused again.
            let refused = push(&db, vec![add(3, "card_c", "locked", "no")]).expect("push");
            let refused_again = first_send(vec![add(3, "card_c", "locked", "no")], &asked).expect("push");
            assert_eq!(outcomes(&refused_again), outcomes(&refused));
            // Its record inserted meanwhile by someone else: still the stored refusal.
            exec(&db, "INSERT INTO cards (id, board_id, author, body, created_at, last_modified_by) VALUES ('card_d', 'b1', 'Bo', 'x', 1, '')");
            let refused_third = first_send(vec![add(3, "card_c", "locked", "no")], &asked).expect("push");
            assert_eq!(outcomes(&refused_third), outcomes(&refused));

            // A new mutation on a record that exists: the insert is refused by the
            // database, as without the hint.
            let taken = first_send(vec![add(4, "card_d", "b1", "mine")], &asked).expect("push");
            let without_hint = push(&db, vec![add(5, "card_d", "b1", "mine")]).expect("push");
            assert!(matches!(outcomes(&taken)[0], MutationOutcome::Rejected { .. }), "{:?}", taken.response);
            assert_eq!(
                format!("{:?}", outcomes(&taken)[0]),
                format!("{:?}", outcomes(&without_hint)[0])
            );
        }

        #[test]
        $(#[$attr])*
        fn a_mutation_id_named_twice_in_one_push_applies_once_and_is_answered_twice() {
            let db = upstream();
            let pushed = push(&db, vec![add(1, "card_a", "b1", "x"), add(1, "card_a", "b1", "x")]).expect("push");
            let answers = outcomes(&pushed);
            assert_eq!(answers.len(), 2);
            assert_eq!(answers[0], answers[1]);
            assert_eq!(counts(&db), (1, 1, 1));
        }

        #[test]
        $(#[$attr])*
        fn writes_of_one_push_apply_in_order_each_on_what_the_earlier_left() {
            let db = upstream();
            let pushed = push(
                &db,
                vec![add(1, "card_a", "b1", "one"), edit(2, "card_a", "b1", "two"), delete(3, "card_a", "b1")],
            )
            .expect("push");
            let seqs: Vec<u64> = outcomes(&pushed)
                .iter()
                .map(|o| match o {
                    MutationOutcome::Confirmed { seq, .. } => seq.0,
                    other => panic!("{other:?}"),
                })
                .collect();
            assert_eq!(seqs, vec![1, 2, 3]);
            assert_eq!(counts(&db), (0, 3, 3));
        }

        #[test]
        $(#[$attr])*
        fn the_apps_no_to_one_write_is_final_and_stored() {
            let db = upstream();
            let asked = Cell::new(0);
            let pushed =
                push_with(&db, vec![add(1, "card_a", "locked", "no"), add(2, "card_b", "b1", "yes")], &asked, |q| {
                    Ok(rules(q))
                })
                .expect("push");
            let answers = outcomes(&pushed);
            assert_eq!(answers[0], rejected("board is locked"));
            assert!(matches!(answers[1], MutationOutcome::Confirmed { .. }));
            assert_eq!(counts(&db), (1, 1, 2), "the refusal is stored, its write is not applied");
            let again = push_with(&db, vec![add(1, "card_a", "locked", "no")], &asked, |_| panic!("asked again"))
                .expect("retry");
            assert_eq!(outcomes(&again), vec![rejected("board is locked")]);
        }

        #[test]
        $(#[$attr])*
        fn a_caller_refused_whole_leaves_nothing_behind() {
            let db = upstream();
            let deny = |_: &MutationCallbackRequest| {
                Ok(MutationCallbackResponse::Batch(Decision { allow: false, reason: Some("who are you".into()) }))
            };
            let pushed = push_with(&db, vec![add(1, "card_a", "b1", "x")], &Cell::new(0), deny).expect("push");
            assert_eq!(outcomes(&pushed), vec![rejected("who are you")]);
            assert_eq!(counts(&db), (0, 0, 0), "nothing stored for a caller the app does not know");
            // The same id, once the app allows it, applies.
            let later = push(&db, vec![add(1, "card_a", "b1", "x")]).expect("push");
            assert!(matches!(outcomes(&later)[0], MutationOutcome::Confirmed { .. }));
        }

        #[test]
        $(#[$attr])*
        fn a_model_refusal_is_answered_not_stored_and_the_app_is_not_asked() {
            let db = upstream();
            let bad = PushMutation { args: json!({"boardId": "b1"}), ..add(1, "card_a", "b1", "x") };
            let unknown = PushMutation { name: "dropTables".into(), ..add(2, "card_b", "b1", "x") };
            let pushed = push_with(&db, vec![bad, unknown], &Cell::new(0), |_| panic!("asked")).expect("push");
            assert!(outcomes(&pushed).iter().all(|o| matches!(o, MutationOutcome::Rejected { .. })));
            assert_eq!(counts(&db), (0, 0, 0));
        }

        #[test]
        $(#[$attr])*
        fn a_write_that_cannot_apply_is_final_and_stored() {
            let db = upstream();
            let pushed = push(&db, vec![edit(1, "card_missing", "b1", "x")]).expect("push");
            assert!(matches!(&outcomes(&pushed)[0], MutationOutcome::Rejected { .. }));
            assert_eq!(counts(&db), (0, 0, 1));
        }

        #[test]
        $(#[$attr])*
        fn a_callback_that_cannot_answer_decides_nothing() {
            for failure in [
                sync_server::CallbackError::Unavailable("connection refused".into()),
                sync_server::CallbackError::NeedsAuth("token expired".into()),
            ] {
                let db = upstream();
                let error = push_with(&db, vec![add(1, "card_a", "b1", "x")], &Cell::new(0), |_| {
                    Err(native::callback_failed("mutation", failure.clone()))
                })
                .err()
                .expect("no answer");
                let response = error.into_response();
                match failure {
                    sync_server::CallbackError::Unavailable(_) => {
                        assert_eq!(response.status(), 503);
                        assert!(response.headers().contains_key("retry-after"));
                    }
                    sync_server::CallbackError::NeedsAuth(_) => assert_eq!(response.status(), 401),
                }
                assert_eq!(counts(&db), (0, 0, 0), "nothing stored");
                let retried = push(&db, vec![add(1, "card_a", "b1", "x")]).expect("retry");
                assert!(matches!(outcomes(&retried)[0], MutationOutcome::Confirmed { .. }));
            }
        }

        #[test]
        $(#[$attr])*
        fn a_transient_upstream_failure_is_a_503_with_nothing_stored() {
            for message in [
                "D1_ERROR: Network connection lost.",
                "D1 DB is overloaded. Requests queued for too long.",
                "database is locked",
            ] {
                let db = upstream();
                db.plan(Call::Write, Fault::Transient(message.into()));
                let error = push(&db, vec![add(1, "card_a", "b1", "x"), add(2, "card_b", "locked", "y")])
                    .err()
                    .expect("fails");
                assert_eq!(error.code(), "upstream_unavailable", "{message}");
                let response = error.into_response();
                assert_eq!(response.status(), 503);
                assert!(response.headers().contains_key("retry-after"));
                assert_eq!(counts(&db), (0, 0, 0), "nothing stored after {message}");
                let retried =
                    push(&db, vec![add(1, "card_a", "b1", "x"), add(2, "card_b", "locked", "y")]).expect("retry");
                assert!(matches!(outcomes(&retried)[0], MutationOutcome::Confirmed { .. }));
                assert_eq!(outcomes(&retried)[1], rejected("board is locked"));
            }
            // A read that fails the same way: 503 too.
            let db = upstream();
            db.plan(Call::Read, Fault::Transient("D1_ERROR: Network connection lost.".into()));
            assert_eq!(
                push(&db, vec![add(1, "card_a", "b1", "x")]).err().map(|e| e.code()),
                Some("upstream_unavailable")
            );
        }

        #[test]
        $(#[$attr])*
        fn a_write_whose_answer_was_lost_is_answered_from_its_stored_outcome_on_retry() {
            let db = upstream();
            db.plan(Call::Write, Fault::LostAnswer);
            assert!(push(&db, vec![add(1, "card_a", "b1", "x")]).is_err());
            assert_eq!(counts(&db), (1, 1, 1), "it committed");
            let retried = push(&db, vec![add(1, "card_a", "b1", "x")]).expect("retry");
            assert!(matches!(outcomes(&retried)[0], MutationOutcome::Confirmed { seq: Cursor(1), .. }));
            assert_eq!(counts(&db), (1, 1, 1), "applied once");
        }

        #[test]
        $(#[$attr])*
        fn an_apps_trigger_refusal_is_final_and_the_rest_is_planned_on_what_it_left() {
            let db = upstream();
            // The app's own rule in its database, which the model does not know.
            match db.dialect() {
                Dialect::Sqlite => exec(
                    &db,
                    "CREATE TRIGGER app_rule BEFORE INSERT ON cards WHEN NEW.body = 'spam' \
                     BEGIN SELECT RAISE(ABORT, 'no spam here'); END",
                ),
                Dialect::Postgres => {
                    exec(
                        &db,
                        "CREATE FUNCTION app_rule() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
                         IF NEW.body = 'spam' THEN RAISE EXCEPTION 'no spam here'; END IF; RETURN NEW; END $$",
                    );
                    exec(&db, "CREATE TRIGGER app_rule BEFORE INSERT ON cards FOR EACH ROW EXECUTE FUNCTION app_rule()");
                }
            }
            // The edit was planned on the card the refused insert would have made; the
            // second add of card_a, refused in the plan for the same reason, is planned
            // again on what is there (no card_a) and applies.
            let pushed = push(
                &db,
                vec![
                    add(1, "card_a", "b1", "spam"),
                    edit(2, "card_a", "b1", "edited"),
                    add(3, "card_a", "b1", "fine"),
                    add(4, "card_b", "b1", "also fine"),
                ],
            )
            .expect("a refusal is an answer, not a 503");
            let answers = outcomes(&pushed);
            // In the database's words (PostgreSQL adds its SQLSTATE).
            assert!(
                matches!(&answers[0], MutationOutcome::Rejected { reason } if reason.starts_with("the upstream refused the write: no spam here")),
                "{:?}",
                answers[0]
            );
            assert!(matches!(answers[1], MutationOutcome::Rejected { .. }), "{:?}", answers[1]);
            assert!(matches!(&answers[2], MutationOutcome::Confirmed { row: Some(row), .. } if row["body"] == json!("fine")));
            assert!(matches!(answers[3], MutationOutcome::Confirmed { .. }));
            // Final: a retry gets the same answers, nothing applied twice.
            let again = push(&db, vec![add(1, "card_a", "b1", "spam"), add(3, "card_a", "b1", "fine")]).expect("retry");
            assert_eq!(
                outcomes(&again),
                vec![sync::push::answered_now(&answers[0]), sync::push::answered_now(&answers[2])]
            );
            assert_eq!(count(&db, "cards"), 2);
        }

        #[test]
        $(#[$attr])*
        fn a_write_the_database_refuses_is_final_and_rejects_only_itself() {
            let db = upstream();
            // Another writer inserts card_a between the push's read and its write: the insert
            // violates the primary key (a refusal of that write), the other write applies.
            let race = Statement {
                sql: "INSERT INTO cards (id, board_id, author, body, created_at, last_modified_by) VALUES ('card_a', 'b1', 'Bo', 'first', 1, '')".into(),
                params: Vec::new(),
            };
            db.plan(Call::Write, Fault::RaceWith(vec![race]));
            let pushed =
                push(&db, vec![add(1, "card_a", "b1", "late"), add(2, "card_b", "b1", "fine")]).expect("push");
            let answers = outcomes(&pushed);
            let MutationOutcome::Rejected { reason } = &answers[0] else { panic!("{answers:?}") };
            // Told what happened, not the schema (no table or constraint names).
            assert_eq!(reason, sync::push::REFUSED_BY_CONSTRAINT);
            assert!(!reason.contains("cards"), "{reason}");
            assert!(matches!(answers[1], MutationOutcome::Confirmed { .. }));
            assert!(!pushed.one_transaction);
            // Stored: a retry gets the same refusal.
            let again = push(&db, vec![add(1, "card_a", "b1", "late")]).expect("retry");
            assert_eq!(outcomes(&again)[0], answers[0]);
        }

        #[test]
        $(#[$attr])*
        fn requests_out_of_bounds_are_400s() {
            let too_many: Vec<PushMutation> =
                (0..=native::MAX_PUSH_MUTATIONS as u32).map(|n| add(n, &format!("card_{n}"), "b1", "x")).collect();
            let cases = [
                (request(too_many), "too_many_mutations"),
                (
                    request(vec![PushMutation { id: "outbox_nope".into(), ..add(1, "card_a", "b1", "x") }]),
                    "invalid_id",
                ),
                (request(vec![add(1, "", "b1", "x")]), "invalid_id"),
                (request(vec![add(1, &"c".repeat(129), "b1", "x")]), "invalid_id"),
            ];
            for (request, code) in cases {
                let error = native::check_push(&request).expect_err("refused");
                assert_eq!((error.code(), error.into_response().status().as_u16()), (code, 400));
            }
        }

        #[test]
        $(#[$attr])*
        fn a_client_proves_its_id_with_its_key() {
            let key = "k".repeat(40);
            let client = sync::ids::client_id_for_key(&key);
            assert!(native::check_client(Some(&key), &client, SESSION).is_ok());
            let status = |r: Result<(), ApiError>| r.err().map(|e| e.into_response().status().as_u16());
            assert_eq!(status(native::check_client(None, &client, SESSION)), Some(401));
            assert_eq!(status(native::check_client(Some(&"x".repeat(40)), &client, SESSION)), Some(403));
            assert_eq!(status(native::check_client(Some("short"), &client, SESSION)), Some(400));
            assert_eq!(status(native::check_client(Some(&key), "client_nope", SESSION)), Some(400));
            assert_eq!(status(native::check_client(Some(&key), &client, "session_nope")), Some(400));
        }

        #[test]
        $(#[$attr])*
        fn a_pull_hands_out_each_record_as_it_stands_never_a_superseded_image() {
            let db = upstream();
            push(&db, vec![add(1, "card_a", "b1", "secret"), add(2, "card_b", "b1", "kept")]).expect("push");
            push(&db, vec![edit(3, "card_b", "b1", "edited")]).expect("push");
            push(&db, vec![delete(4, "card_a", "b1")]).expect("push");
            let page = pull(&db, 0, &[("b1", None)]).expect("pull");
            let images: Vec<(String, ChangeKind, Option<Value>)> = page
                .changes
                .iter()
                .map(|c| (c.record_id.clone(), c.kind, c.row.as_ref().map(|r| r["body"].clone())))
                .collect();
            assert_eq!(
                images,
                vec![
                    ("card_b".into(), ChangeKind::Upsert, Some(json!("edited"))),
                    ("card_a".into(), ChangeKind::Delete, None)
                ]
            );
            assert_eq!((page.cursor, page.has_more), (Cursor(4), false));
            assert!(!serde_json::to_string(&page.changes).expect("json").contains("secret"));
        }

        #[test]
        $(#[$attr])*
        fn a_record_moved_away_reaches_its_old_topic_without_its_image() {
            let db = upstream();
            push(&db, vec![add(1, "card_a", "b1", "private plans")]).expect("push");
            push(&db, vec![move_card(2, "card_a", "b1", "b2")]).expect("move");
            let old = pull(&db, 1, &[("b1", None)]).expect("pull");
            assert_eq!(old.changes.len(), 1);
            assert_eq!((old.changes[0].kind, old.changes[0].row.is_none()), (ChangeKind::Delete, true));
            let new = pull(&db, 1, &[("b2", None)]).expect("pull");
            assert_eq!(new.changes[0].row.as_ref().map(|r| r["body"].clone()), Some(json!("private plans")));
            let both = pull(&db, 1, &[("b1", None), ("b2", None)]).expect("pull");
            assert!(both.changes[0].row.is_some(), "a caller on the new topic gets the image");
        }

        #[test]
        $(#[$attr])*
        fn a_pull_reads_each_topic_from_its_own_cursor_and_pages() {
            let db = upstream();
            for n in 0..5 {
                push(&db, vec![add(n, &format!("card_{n}"), if n % 2 == 0 { "b1" } else { "b2" }, "x")])
                    .expect("push");
            }
            let page = pull(&db, 0, &[("b1", None), ("b2", Some(4))]).expect("pull");
            let seqs: Vec<u64> = page.changes.iter().map(|c| c.seq.0).collect();
            assert_eq!(seqs, vec![1, 3, 5], "b2 only after its own cursor 4");
            assert_eq!(page.cursor, Cursor(5));
        }

        #[test]
        $(#[$attr])*
        fn a_pull_beyond_the_head_is_refused_and_one_below_the_compaction_mark_must_resync() {
            let db = upstream();
            push(&db, vec![add(1, "card_a", "b1", "x"), edit(2, "card_a", "b1", "y")]).expect("push");
            let beyond = pull(&db, 3, &[("b1", None)]).expect_err("refused");
            assert_eq!((beyond.code(), beyond.into_response().status().as_u16()), ("invalid_cursor", 400));
            let own_beyond = pull(&db, 0, &[("b1", Some(9))]).expect_err("refused");
            assert_eq!(own_beyond.code(), "invalid_cursor");
            exec(&db, "INSERT INTO sync_compaction (id, through) VALUES (1, 1)");
            let behind = pull(&db, 0, &[("b1", None)]).expect_err("resync");
            assert_eq!((behind.code(), behind.into_response().status().as_u16()), ("resync_required", 410));
            assert!(pull(&db, 1, &[("b1", None)]).is_ok());
        }

        #[test]
        $(#[$attr])*
        fn a_query_reads_rows_and_the_cursor_they_are_exact_at() {
            let db = upstream();
            push(&db, vec![add(1, "card_a", "b1", "x"), add(2, "card_b", "b2", "y")]).expect("push");
            let query = common::model().validate_query("boardCards", &json!({"boardId": " b1 "})).expect("valid");
            let page = block_on(native::query_page(&common::model(), &db, &query, None, None, 50)).expect("read");
            assert_eq!(page.rows.iter().map(|r| r["id"].clone()).collect::<Vec<_>>(), vec![json!("card_a")]);
            assert_eq!((page.cursor, page.more), (Cursor(2), None));
        }

        #[test]
        $(#[$attr])*
        fn a_query_answers_in_pages_that_writes_between_them_do_not_shift() {
            let db = upstream();
            let ids: Vec<String> = (0..7).map(|i| format!("card_{i}")).collect();
            push(&db, ids.iter().enumerate().map(|(i, id)| add(i as u32 + 1, id, "b1", "x")).collect()).expect("push");
            let query = common::model().validate_query("boardCards", &json!({"boardId": "b1"})).expect("valid");
            let model = common::model();
            let first = block_on(native::query_page(&model, &db, &query, None, None, 3)).expect("read");
            assert_eq!(first.rows.len(), 3);
            let more = first.more.clone().expect("more follows");
            assert_eq!(more.served, 3);
            // Meanwhile the first row is deleted and one is added before the page's end:
            // the next page starts after the last row it answered, whatever moved.
            push(&db, vec![delete(20, &ids[0], "b1"), add(21, "card_00", "b1", "early")]).expect("push");
            let second = block_on(native::query_page(&model, &db, &query, Some(&more), None, 3)).expect("read");
            let third = block_on(native::query_page(&model, &db, &query, second.more.as_ref(), None, 3)).expect("read");
            assert!(third.more.is_none());
            let answered: Vec<String> = [&first, &second, &third]
                .iter()
                .flat_map(|page| page.rows.iter().map(|row| row["id"].as_str().unwrap_or_default().to_string()))
                .collect();
            assert_eq!(answered, ids, "every row once, in order");
            assert!(second.cursor > first.cursor, "each page is exact at its own cursor");
            // A forged continuation pages within the same query, or is refused.
            let forged = sync::protocol::query::QueryPage { after: vec![json!(1)], served: 0 };
            let refused = block_on(native::query_page(&model, &db, &query, Some(&forged), None, 3)).expect_err("refused");
            assert_eq!(refused.code(), "invalid_continuation");
            let typed = sync::protocol::query::QueryPage { after: vec![json!("x"), json!(5)], served: 0 };
            assert!(block_on(native::query_page(&model, &db, &query, Some(&typed), None, 3)).is_err());
            // The newest rows, as a page rendered on the server shows them.
            let (last, _) = block_on(native::query_last(&model, &db, &query, 2)).expect("read");
            assert_eq!(last.iter().map(|r| r["id"].clone()).collect::<Vec<_>>(), vec![json!("card_5"), json!("card_6")]);
        }

        #[test]
        $(#[$attr])*
        fn a_windowed_query_stops_at_its_window_and_says_whether_rows_follow() {
            let db = upstream();
            let ids: Vec<String> = (0..7).map(|i| format!("card_{i}")).collect();
            push(&db, ids.iter().enumerate().map(|(i, id)| add(i as u32 + 1, id, "b1", "x")).collect()).expect("push");
            let model = common::model();
            let mut query = model.validate_query("boardCards", &json!({"boardId": "b1"})).expect("valid");
            query.select.limit = Some(2);
            // The query's own limit: two rows, no page to follow, rows beyond.
            let first = block_on(native::query_page(&model, &db, &query, None, None, 50)).expect("read");
            assert_eq!(first.rows.len(), 2);
            assert!(first.more.is_none() && !first.complete, "the window ends before the answer does");
            // Widened to 5 from where it stands: three more, still not the end.
            let cards = model.collection("cards").expect("cards").clone();
            let bound = sync::protocol::query::QueryPage {
                after: sync::window::keyset(&cards, &query.select, &first.rows[1]),
                served: 2,
            };
            let wider = block_on(native::query_page(&model, &db, &query, Some(&bound), Some(5), 50)).expect("read");
            assert_eq!(wider.rows.iter().map(|r| r["id"].clone()).collect::<Vec<_>>(), vec![json!("card_2"), json!("card_3"), json!("card_4")]);
            assert!(!wider.complete);
            // In pages of one, a window of 10 reaches the end: the last page says so.
            let mut page = block_on(native::query_page(&model, &db, &query, None, Some(10), 1)).expect("read");
            let mut seen = page.rows.len();
            while let Some(after) = page.more.take() {
                page = block_on(native::query_page(&model, &db, &query, Some(&after), Some(10), 1)).expect("read");
                seen += page.rows.len();
            }
            assert_eq!(seen, 7);
            assert!(page.complete, "no row follows the last page");
            // An exact fit is complete too: no row beyond the seventh.
            let exact = block_on(native::query_page(&model, &db, &query, None, Some(7), 50)).expect("read");
            assert!(exact.complete && exact.rows.len() == 7);
        }

        #[test]
        $(#[$attr])*
        fn an_upstream_without_the_models_tables_is_a_schema_mismatch() {
            let db = upstream();
            let dialect = db.dialect();
            for trigger in sync::capture::trigger_names(dialect, "cards") {
                match dialect {
                    Dialect::Sqlite => exec(&db, &format!("DROP TRIGGER IF EXISTS {trigger}")),
                    Dialect::Postgres => exec(&db, &format!("DROP TRIGGER IF EXISTS {trigger} ON cards")),
                }
            }
            let error = block_on(native::check_schema(&db, &common::model())).expect_err("mismatch");
            assert_eq!((error.code(), error.into_response().status().as_u16()), ("schema_mismatch", 503));
            assert!(block_on(native::check_schema(&upstream(), &common::model())).is_ok());
            // A table without a column the model names.
            let db = upstream();
            exec(&db, "DROP TABLE notes");
            exec(&db, "CREATE TABLE notes (id TEXT PRIMARY KEY)");
            let error = block_on(native::check_schema(&db, &common::model())).expect_err("mismatch");
            assert!(error.to_string().contains("notes"), "{error}");
        }

        /// The connector on SQLite and the reference in memory drive the same plans: for any
        /// sequence of pushes (with retries, refusals, moves, deletes), they answer the same,
        /// hold the same rows and log the same changes; and every pull page is the same.
        mod agrees_with_the_reference {
            use proptest::prelude::*;

            use super::*;

            fn mutation() -> impl Strategy<Value = PushMutation> {
                let record = prop::sample::select(vec!["card_a", "card_b", "card_c"]);
                let board = prop::sample::select(vec!["b1", "b2", "locked"]);
                (0u32..12, 0u8..4, record, board.clone(), board, "[a-z]{0,6}").prop_map(
                    |(n, kind, record, b, to, body)| match kind {
                        0 => add(n, record, b, &body),
                        1 => edit(n, record, b, &body),
                        2 => delete(n, record, b),
                        _ => move_card(n, record, b, to),
                    },
                )
            }

            proptest! {
                #![proptest_config(ProptestConfig::with_cases($cases))]
                #[test]
        $(#[$attr])*
                fn the_connector_and_the_reference_agree(
                    pushes in prop::collection::vec(prop::collection::vec(mutation(), 1..5), 1..8),
                    since in 0u64..6,
                ) {
                    let db = upstream();
                    let mut reference = ServerState::new(common::model());
                    for mutations in pushes {
                        let answer = push(&db, mutations.clone()).expect("push");
                        let expected = reference.push_batch(CLIENT, SESSION, &mutations, NOW, rules);
                        prop_assert_eq!(&answer.response.results, &expected);
                        prop_assert_eq!(answer.response.cursor, reference.head());
                    }
                    let upstream_rows = block_on(native::query_page(
                        &common::model(), &db,
                        &common::model().validate_query("boardCards", &json!({"boardId": "b1"})).expect("valid"),
                        None, None, 2_000,
                    )).expect("read").rows;
                    let expected_rows: Vec<_> = reference.rows("cards").into_iter().filter(|r| r["board_id"] == json!("b1")).collect();
                    let sorted = |mut rows: Vec<sync::Row>| { rows.sort_by_key(|r| r["id"].to_string()); rows };
                    prop_assert_eq!(sorted(upstream_rows), sorted(expected_rows));
                    let since = since.min(reference.head().0);
                    for topics in [vec![("b1", None)], vec![("b2", None), ("b1", Some(since + 1))]] {
                        let topics: Vec<(&str, Option<u64>)> =
                            topics.into_iter().map(|(t, own): (&str, Option<u64>)| (t, own.map(|c| c.min(reference.head().0)))).collect();
                        let plan = PullPlan::new(Cursor(since), topics.iter().map(|(name, own)| (board(name), own.map(Cursor))));
                        let page = pull(&db, since, &topics).expect("pull");
                        let expected = reference.pull_request(&plan, native::PULL_PAGE as usize).expect("pull");
                        prop_assert_eq!(page, expected);
                    }
                }
            }
        }

        #[test]
        $(#[$attr])*
        fn each_topics_poke_carries_what_a_pull_of_that_topic_hands_out() {
            let db = upstream();
            push(&db, vec![add(1, "card_a", "b1", "plans")]).expect("push");
            let pushed = push(&db, vec![edit(2, "card_a", "b1", "new plans"), move_card(3, "card_a", "b1", "b2")])
                .expect("push");
            let carried = sync::fanout::carried_by_topic(&common::model(), &pushed.topics, &pushed.committed);
            let b1 = &carried[&board("b1").to_string()];
            let b2 = &carried[&board("b2").to_string()];
            // b1: only the latest change, and without the image that now lives on b2.
            assert_eq!(b1.iter().map(|c| (c.seq.0, c.row.is_some())).collect::<Vec<_>>(), vec![(3, false)]);
            assert_eq!(
                b2.iter().map(|c| (c.seq.0, c.row.as_ref().map(|r| r["body"].clone()))).collect::<Vec<_>>(),
                vec![(3, Some(json!("new plans")))]
            );
            // The same as a pull of each topic from before the push.
            for (topic, poke) in [("b1", b1), ("b2", b2)] {
                assert_eq!(&pull(&db, 1, &[(topic, None)]).expect("pull").changes, poke);
            }
        }
    };
}

mod sqlite {
    use super::*;
    on_every_upstream!(super::sqlite_upstream, 150);
}

/// The same tests on PostgreSQL (`cargo xtask test postgres` runs them against its
/// throwaway server).
mod postgres {
    use super::*;
    on_every_upstream!(
        super::postgres_upstream,
        16,
        #[ignore = "needs a PostgreSQL server in SYNC_TEST_POSTGRES_URL (the postgres tier runs these)"]
    );
}
