//! `LiveRows`, the page's in-memory view of a live query, against the reference:
//! after any sequence of record changes and optimistic writes, a view that did not ask
//! to be read again holds exactly `Select::evaluate` over every record.

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::json;
use sync::operation::{Delete, Insert, Operation, Operator, Order, Select, Update};
use sync::schema::Row;
use sync::view::{Applied, LiveRows};

const IDS: [&str; 8] = ["r0", "r1", "r2", "r3", "r4", "r5", "r6", "r7"];

fn row(id: &str, board: &str, at: i64, body: &str) -> Row {
    let mut row = Row::new();
    row.insert("id".into(), json!(id));
    row.insert("board_id".into(), json!(board));
    row.insert("created_at".into(), json!(at));
    row.insert("body".into(), json!(body));
    row
}

fn image() -> impl Strategy<Value = Option<Row>> {
    prop_oneof![
        1 => Just(None),
        4 => (prop_oneof![Just("a"), Just("b")], 0i64..5, prop_oneof![Just("x"), Just("y"), Just("z")])
            .prop_map(|(board, at, body)| Some((board, at, body))),
    ]
    .prop_map(|image| image.map(|(board, at, body)| row("", board, at, body)))
}

fn select() -> impl Strategy<Value = Select> {
    (
        prop_oneof![Just(None), Just(Some("a"))],
        prop_oneof![
            Just(vec![]),
            Just(vec![("created_at", Order::Asc)]),
            Just(vec![("created_at", Order::Desc)]),
            Just(vec![("body", Order::Asc), ("created_at", Order::Desc)]),
        ],
        prop_oneof![Just(None), (1u32..5).prop_map(Some)],
    )
        .prop_map(|(board, order, limit)| {
            let mut select = Select::from("cards");
            if let Some(board) = board {
                select = select.filter("board_id", Operator::Eq, board);
            }
            for (column, order) in order {
                select = select.order_by(column, order);
            }
            select.limit = limit;
            select
        })
}

#[derive(Debug, Clone)]
enum Step {
    /// The store reports the record's visible image.
    Record { id: usize, image: Option<Row>, pending: bool },
    /// The page applies a write first, then the store reports the record as written.
    Write { id: usize, operation: Operation },
}

fn step() -> impl Strategy<Value = Step> {
    let record = (0..IDS.len(), image(), any::<bool>()).prop_map(|(id, image, pending)| Step::Record {
        id,
        image,
        pending,
    });
    let write = (0..IDS.len(), image(), 0..3u8).prop_map(|(id, image, kind)| {
        let image = image.unwrap_or_else(|| row("", "a", 1, "w"));
        let operation = match kind {
            0 => Operation::Insert(Insert {
                collection: "cards".into(),
                values: with_id(&image, IDS[id]).into_iter().collect(),
            }),
            1 => Operation::Update(
                Update::record("cards", IDS[id])
                    .set("body", image["body"].clone())
                    .set("created_at", image["created_at"].clone())
                    .set("board_id", image["board_id"].clone()),
            ),
            _ => Operation::Delete(Delete::record("cards", IDS[id])),
        };
        Step::Write { id, operation }
    });
    prop_oneof![3 => record, 2 => write]
}

fn with_id(image: &Row, id: &str) -> Row {
    let mut row = image.clone();
    row.insert("id".into(), json!(id));
    row
}

fn reference(select: &Select, all: &BTreeMap<String, Row>) -> Vec<Row> {
    select.evaluate(all.values(), "id")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn a_view_equals_the_query_over_every_record(
        select in select(),
        start in proptest::collection::vec(image(), IDS.len()),
        steps in proptest::collection::vec(step(), 1..40),
    ) {
        let mut all: BTreeMap<String, Row> = BTreeMap::new();
        for (id, image) in IDS.iter().zip(start) {
            if let Some(image) = image {
                all.insert((*id).to_string(), with_id(&image, id));
            }
        }
        let mut view = LiveRows::new(select.clone(), "id", reference(&select, &all), Vec::<String>::new());
        let mut pending = std::collections::BTreeSet::new();
        for step in steps {
            let (id, image, is_pending, optimistic) = match step {
                Step::Record { id, image, pending } => (id, image.map(|image| with_id(&image, IDS[id])), pending, None),
                Step::Write { id, operation } => {
                    // What the store makes of it: the write applied to the record's
                    // true image, or nothing when it does not apply.
                    let truth = all.get(IDS[id]);
                    let Ok(next) = operation.apply(truth, "id") else { continue };
                    let before = view.clone();
                    let applied = view.apply_operation(&operation, IDS[id]);
                    let alone = !matches!(operation, Operation::Update(_));
                    (id, next, true, Some((before, applied, alone)))
                }
            };
            let record_id = IDS[id];
            match &image {
                Some(row) => { all.insert(record_id.to_string(), row.clone()); }
                None => { all.remove(record_id); }
            }
            if is_pending { pending.insert(record_id.to_string()); } else { pending.remove(record_id); }
            if let Some((before, applied, alone)) = optimistic {
                // The optimistic row is what the store will show, whenever the view
                // can work it out alone: it held the record, or the write is an insert
                // or a delete (an update of a record it does not show may bring it in).
                let held_before = before.rows().iter().any(|row| row["id"] == json!(record_id));
                if applied != Applied::Reread && (held_before || alone) {
                    prop_assert_eq!(view.rows().to_vec(), reference(&select, &all));
                }
            }
            let applied = view.apply_record(record_id, image.as_ref(), is_pending);
            if applied == Applied::Reread {
                prop_assert!(view.is_stale());
                view.replace(reference(&select, &all), pending.iter().cloned());
            }
            prop_assert_eq!(view.rows().to_vec(), reference(&select, &all));
            prop_assert_eq!(view.pending(), pending.iter().cloned().collect::<Vec<_>>());
        }
    }
}

#[test]
fn an_insert_shows_at_once_in_order_and_pending() {
    let select =
        Select::from("cards").filter("board_id", Operator::Eq, "a").order_by("created_at", Order::Asc);
    let mut view = LiveRows::new(
        select,
        "id",
        vec![row("r1", "a", 1, "x"), row("r3", "a", 3, "z")],
        Vec::<String>::new(),
    );
    let insert = Operation::Insert(Insert { collection: "cards".into(), values: row("r2", "a", 2, "y") });
    assert_eq!(view.apply_operation(&insert, "r2"), Applied::Changed);
    let ids: Vec<_> = view.rows().iter().map(|row| row["id"].clone()).collect();
    assert_eq!(ids, vec![json!("r1"), json!("r2"), json!("r3")]);
    assert_eq!(view.pending(), vec!["r2".to_string()]);
    // Another board's insert is not this view's.
    let elsewhere = Operation::Insert(Insert { collection: "cards".into(), values: row("r4", "b", 0, "w") });
    assert_eq!(view.apply_operation(&elsewhere, "r4"), Applied::Changed);
    assert_eq!(view.rows().len(), 3);
    // Rejected: the store reports the record gone and no longer pending.
    assert_eq!(view.apply_record("r2", None, false), Applied::Changed);
    let ids: Vec<_> = view.rows().iter().map(|row| row["id"].clone()).collect();
    assert_eq!(ids, vec![json!("r1"), json!("r3")]);
    assert_eq!(view.pending(), vec!["r4".to_string()]);
    // The same image again changes nothing.
    assert_eq!(view.apply_record("r1", Some(&row("r1", "a", 1, "x")), false), Applied::Unchanged);
}

#[test]
fn a_full_window_that_loses_a_row_asks_to_be_read_again() {
    let select = Select::from("cards").order_by("created_at", Order::Asc).limit(2);
    let mut view = LiveRows::new(
        select,
        "id",
        vec![row("r1", "a", 1, "x"), row("r2", "a", 2, "y")],
        Vec::<String>::new(),
    );
    // A row sorting before the end pushes the last one out.
    assert_eq!(view.apply_record("r0", Some(&row("r0", "a", 0, "w")), false), Applied::Changed);
    let ids: Vec<_> = view.rows().iter().map(|row| row["id"].clone()).collect();
    assert_eq!(ids, vec![json!("r0"), json!("r1")]);
    // A row sorting after the end stays out.
    assert_eq!(view.apply_record("r9", Some(&row("r9", "a", 9, "w")), false), Applied::Unchanged);
    // Losing a row: the next one is not held here.
    assert_eq!(view.apply_record("r0", None, false), Applied::Reread);
    // Until read again, every change says so.
    assert_eq!(view.apply_record("r9", None, false), Applied::Reread);
    view.replace(vec![row("r1", "a", 1, "x"), row("r2", "a", 2, "y")], Vec::<String>::new());
    assert_eq!(view.apply_record("r9", None, false), Applied::Unchanged);
}
