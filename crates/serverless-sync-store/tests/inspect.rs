//! The devtools' view of the store: table sizes and the read-only console.

#[path = "../../serverless-sync/tests/common/mod.rs"]
mod common;

use serde_json::json;
use sync_store::LocalStore;
use sync_store::inspect::{CONSOLE_ROWS, ConsoleError};

fn store_with_cards(count: usize) -> LocalStore {
    let mut store =
        LocalStore::open(sync_store::Connection::open_in_memory().expect("db"), common::model(), || {
            "client_a".into()
        })
        .expect("open");
    for index in 0..count {
        let args = json!({ "boardId": "b1", "author": "Ada", "body": format!("card {index}") });
        let ctx = common::ctx("client_a", &format!("cards_{index}"), 1);
        store.mutate(&format!("outbox_{index}"), "addCard", &args, &ctx).expect("mutate");
    }
    store
}

#[test]
fn table_counts_name_every_table_with_its_rows() {
    let store = store_with_cards(3);
    let counts = store.table_counts().expect("counts");
    let count = |name: &str| counts.iter().find(|(table, _)| table == name).map(|(_, rows)| *rows);
    assert_eq!(count("cards"), Some(3));
    assert_eq!(count("sync_outbox"), Some(3));
    assert_eq!(count("notes"), Some(0));
    assert!(counts.windows(2).all(|pair| pair[0].0 < pair[1].0), "sorted by name: {counts:?}");
}

#[test]
fn the_console_answers_selects_with_columns_and_rows() {
    let store = store_with_cards(2);
    let answer = store.console("SELECT count(*) AS n FROM cards").expect("select");
    assert_eq!(answer.columns, vec!["n"]);
    assert_eq!(answer.rows, vec![vec![json!(2)]]);
    assert!(!answer.truncated);
    let with =
        store.console("  with b as (select body from cards order by body) select body from b").expect("with");
    assert_eq!(with.rows, vec![vec![json!("card 0")], vec![json!("card 1")]]);
}

#[test]
fn the_console_refuses_anything_that_could_write() {
    let store = store_with_cards(1);
    for sql in [
        "DELETE FROM cards",
        "UPDATE cards SET body = 'x'",
        "INSERT INTO cards (id) VALUES ('z')",
        "DROP TABLE cards",
        "PRAGMA writable_schema = 1",
        "ATTACH DATABASE ':memory:' AS other",
        "SELECT 1; DELETE FROM cards",
        "WITH x AS (SELECT 1) DELETE FROM cards",
        "",
    ] {
        assert_eq!(store.console(sql), Err(ConsoleError::NotASelect), "{sql}");
    }
    assert!(matches!(store.console("SELECT nope FROM cards"), Err(ConsoleError::Sqlite(_))));
    assert_eq!(store.console(&format!("SELECT '{}'", "x".repeat(5000))), Err(ConsoleError::TooLong));
    assert_eq!(store.console("SELECT count(*) FROM cards").expect("still there").rows, vec![vec![json!(1)]]);
}

#[test]
fn the_console_answer_is_bounded() {
    let store = store_with_cards(0);
    let answer = store
        .console(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000) SELECT i FROM n",
        )
        .expect("select");
    assert_eq!(answer.rows.len(), CONSOLE_ROWS);
    assert!(answer.truncated);
}
