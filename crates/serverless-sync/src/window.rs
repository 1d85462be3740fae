//! Windowed queries: a named query with an order and a `LIMIT` (say the newest 200
//! posts of a feed) is synced as a window, not whole.
//!
//! The client holds a query's **covered part**: every row of the query from the start
//! of its order up to a bound (a keyset, [`keyset`]), or to the end. Inside it the
//! local rows are exactly the server's: the snapshot's pages install it, and every
//! change on the query's topic (pulls and pokes carry them all) keeps it so, because a
//! row that moves in, out or within the covered part is a change on that topic. The
//! window shown is the first `size` rows of the covered part; when the covered part
//! holds fewer (a delete inside, a row moved away, `load_more`) and does not reach the
//! end, the client asks the server for the page after the bound, which extends it.
//! Rows past the bound (an edit of an old post arrives on the topic too) may be
//! held but are never shown: the local read stops at the bound
//! ([`crate::sql::Page::until`]).
//!
//! Nothing here does I/O; the store keeps the bounds, the browser's worker asks for
//! the pages.

use std::cmp::Ordering;

use serde_json::Value;

use crate::operation::Select;
use crate::schema::{Collection, Row};
use crate::sql::order_columns;

/// The largest window a client may ask for (rows in one query's view); a bigger
/// view pages in the app, not in one live query.
pub const MAX_WINDOW: u32 = 10_000;

/// The window a query asks for: `requested` rows (the view's `load_more` widened it),
/// else the query's own limit, within `1..=MAX_WINDOW`. `None`: not a windowed
/// query (no limit): it is synced whole.
pub fn window_size(select: &Select, requested: Option<u32>) -> Option<u32> {
    let base = select.limit?;
    Some(requested.unwrap_or(base).clamp(1, MAX_WINDOW))
}

/// The select with `size` as its limit (the rows a window of that size shows).
#[must_use]
pub fn sized(select: &Select, size: u32) -> Select {
    Select { limit: Some(size), ..select.clone() }
}

/// What a window is stored under: the select without its limit (the window widens,
/// its order and filters stay).
pub fn key(select: &Select) -> Select {
    Select { limit: None, ..select.clone() }
}

/// A row's place in the query's order: its values of
/// [`order_columns`], in that order.
pub fn keyset(collection: &Collection, select: &Select, row: &Row) -> Vec<Value> {
    order_columns(collection, select)
        .iter()
        .map(|(column, _)| row.get(column).cloned().unwrap_or(Value::Null))
        .collect()
}

/// Where `row` stands against the row whose keyset is `keyset`, in the query's order.
pub fn compare_to_keyset(collection: &Collection, select: &Select, row: &Row, keyset: &[Value]) -> Ordering {
    let bound: Row = order_columns(collection, select)
        .into_iter()
        .map(|(column, _)| column)
        .zip(keyset.iter().cloned())
        .collect();
    select.compare(row, &bound, &collection.primary_key)
}

/// The part of a query's order some rows of its answer cover: after `after`
/// (excluded; `None`: from the start) up to `until` (included; `None`: to the end).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Coverage {
    pub after: Option<Vec<Value>>,
    pub until: Option<Vec<Value>>,
}

impl Coverage {
    /// What pages of an answer cover: from where the first started, up to the last
    /// page's last row, or to the end when no row follows (`complete`).
    pub fn of_pages(
        collection: &Collection,
        select: &Select,
        after: Option<Vec<Value>>,
        rows: &[Row],
        complete: bool,
    ) -> Self {
        let until =
            if complete {
                None
            } else {
                // No row and not complete cannot happen from a server; covering nothing
                // past `after` then is the safe reading.
                Some(rows.last().map_or_else(
                    || after.clone().unwrap_or_default(),
                    |last| keyset(collection, select, last),
                ))
            };
        Self { after, until }
    }

    /// Whether `row` (one the query's filters match) lies in this part of the order.
    pub fn contains(&self, collection: &Collection, select: &Select, row: &Row) -> bool {
        let past_start = self
            .after
            .as_ref()
            .is_none_or(|after| compare_to_keyset(collection, select, row, after) == Ordering::Greater);
        let before_end = self.until.as_ref().is_none_or(|until| {
            until.is_empty() || compare_to_keyset(collection, select, row, until) != Ordering::Greater
        });
        past_start && before_end
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::operation::{Operator, Order};
    use crate::schema::ColumnType;

    fn posts() -> (Collection, Select) {
        let collection = Collection::new("posts", "id")
            .column("id", ColumnType::Text)
            .column("feed_id", ColumnType::Text)
            .column("created_at", ColumnType::Integer);
        let select = Select::from("posts")
            .filter("feed_id", Operator::Eq, "r")
            .order_by("created_at", Order::Desc)
            .limit(2);
        (collection, select)
    }

    fn row(id: &str, at: i64) -> Row {
        [("id", json!(id)), ("feed_id", json!("r")), ("created_at", json!(at))]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect()
    }

    #[test]
    fn a_window_is_the_query_with_a_size() {
        let (_, select) = posts();
        assert_eq!(window_size(&select, None), Some(2));
        assert_eq!(window_size(&select, Some(600)), Some(600));
        assert_eq!(window_size(&select, Some(0)), Some(1));
        assert_eq!(window_size(&select, Some(u32::MAX)), Some(MAX_WINDOW));
        assert_eq!(window_size(&key(&select), Some(5)), None, "no limit: synced whole");
        assert_eq!(sized(&select, 7).limit, Some(7));
        assert_eq!(key(&sized(&select, 7)), key(&select));
    }

    #[test]
    fn coverage_follows_the_query_order() {
        let (collection, select) = posts();
        // Newest first: 30, 20 on the page; 10 is past it.
        let page = [row("c", 30), row("b", 20)];
        let first = Coverage::of_pages(&collection, &select, None, &page, false);
        assert_eq!(first.until, Some(vec![json!(20), json!("b")]));
        assert!(first.contains(&collection, &select, &row("d", 40)), "newer than the page: inside");
        assert!(first.contains(&collection, &select, &row("b", 20)), "the bound itself");
        assert!(first.contains(&collection, &select, &row("a", 20)), "ties break by id ascending");
        assert!(!first.contains(&collection, &select, &row("z", 20)));
        assert!(!first.contains(&collection, &select, &row("a", 10)));
        let next = Coverage::of_pages(&collection, &select, first.until.clone(), &[row("a", 10)], true);
        assert!(next.contains(&collection, &select, &row("a", 1)), "complete: to the end");
        assert!(!next.contains(&collection, &select, &row("b", 20)), "the previous page is not this one's");
    }
}
