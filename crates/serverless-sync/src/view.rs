//! A live query's rows held in memory, kept up to date record by record.
//!
//! The page keeps one [`LiveRows`] per live query. A write the user makes is applied
//! to it at once ([`LiveRows::apply_operation`], the optimistic row), and every
//! record the local store reports as changed is applied as its new visible image
//! ([`LiveRows::apply_record`]), so no query has to be read again from SQLite after
//! each write. The result always equals [`Select::evaluate`] over the records the
//! view has been told about, except where it cannot know: a window (`LIMIT`) that
//! loses a row must be read again to learn which row comes in, and the view says so
//! ([`Applied::Reread`]).

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::rc::Rc;

use serde::{Deserialize, Serialize};

use crate::operation::{Operation, Select};
use crate::schema::Row;

/// A record's visible image after a local change: `row` is `None` when the record is
/// gone (deleted, or rolled back before it ever existed upstream); `pending` when a
/// local write of it awaits the server's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordView {
    pub collection: String,
    pub record_id: String,
    pub row: Option<Row>,
    pub pending: bool,
}

/// What applying a change did to a view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Neither the rows nor the pending marks changed.
    Unchanged,
    /// The rows or pending marks changed: show them again.
    Changed,
    /// The view cannot tell its rows any more (a windowed query lost a row and does
    /// not hold the next one): read the query again.
    Reread,
}

impl Applied {
    /// The stronger of two outcomes (a batch of changes needs the strongest).
    #[must_use]
    pub fn and(self, other: Applied) -> Applied {
        match (self, other) {
            (Applied::Reread, _) | (_, Applied::Reread) => Applied::Reread,
            (Applied::Changed, _) | (_, Applied::Changed) => Applied::Changed,
            _ => Applied::Unchanged,
        }
    }
}

/// One live query's rows, in the query's order, and its collection's pending records.
/// Rows are shared (`Rc`): a row that did not change is the same allocation after a
/// change, so whoever decodes the rows can keep what it decoded from it.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveRows {
    select: Select,
    primary_key: String,
    rows: Vec<Rc<Row>>,
    pending: BTreeSet<String>,
    /// Asked to be read again: until [`LiveRows::replace`], every change answers
    /// [`Applied::Reread`] (the rows held are no longer the query's).
    stale: bool,
    /// A row was pushed out of the window's end since the last read: rows follow it.
    pushed_out: bool,
}

impl LiveRows {
    /// A view holding `rows`, the query's answer (already filtered, ordered, limited),
    /// and `pending`, the records of its collection with unanswered local writes.
    pub fn new(
        select: Select,
        primary_key: impl Into<String>,
        rows: Vec<Row>,
        pending: impl IntoIterator<Item = String>,
    ) -> Self {
        Self {
            select,
            primary_key: primary_key.into(),
            rows: rows.into_iter().map(Rc::new).collect(),
            pending: pending.into_iter().collect(),
            stale: false,
            pushed_out: false,
        }
    }

    /// The query's fresh answer: the view is exact again.
    pub fn replace(&mut self, rows: Vec<Row>, pending: impl IntoIterator<Item = String>) {
        self.rows = rows.into_iter().map(Rc::new).collect();
        self.pending = pending.into_iter().collect();
        self.stale = false;
        self.pushed_out = false;
    }

    /// Whether a row entering the window pushed its last row out since the last read
    /// (so rows of the query follow the window).
    pub fn pushed_out(&self) -> bool {
        self.pushed_out
    }

    /// Whether the view waits for a fresh read (see [`Applied::Reread`]).
    pub fn is_stale(&self) -> bool {
        self.stale
    }

    pub fn select(&self) -> &Select {
        &self.select
    }

    pub fn collection(&self) -> &str {
        &self.select.collection
    }

    /// The rows, in the query's order (copies; see [`Self::shared_rows`]).
    pub fn rows(&self) -> Vec<Row> {
        self.rows.iter().map(|row| Row::clone(row)).collect()
    }

    /// The rows as held: an unchanged row keeps its allocation across changes.
    pub fn shared_rows(&self) -> &[Rc<Row>] {
        &self.rows
    }

    /// A row's record id (its primary key's value).
    pub fn record_id<'a>(&self, row: &'a Row) -> Option<&'a str> {
        self.id_of(row)
    }

    /// Records of the collection with local writes not yet answered, in id order.
    pub fn pending(&self) -> Vec<String> {
        self.pending.iter().cloned().collect()
    }

    fn id_of<'a>(&self, row: &'a Row) -> Option<&'a str> {
        row.get(&self.primary_key).and_then(|id| id.as_str())
    }

    fn position(&self, record_id: &str) -> Option<usize> {
        self.rows.iter().position(|row| self.id_of(row) == Some(record_id))
    }

    /// The record `record_id` now looks like `row` (`None`: gone) and is `pending` or
    /// not. Records of other collections are the caller's to skip.
    pub fn apply_record(&mut self, record_id: &str, row: Option<&Row>, pending: bool) -> Applied {
        if self.stale {
            return Applied::Reread;
        }
        let pending_changed =
            if pending { self.pending.insert(record_id.to_string()) } else { self.pending.remove(record_id) };
        let marks = if pending_changed { Applied::Changed } else { Applied::Unchanged };
        let at = self.position(record_id);
        let shown = row.filter(|row| self.select.matches(row));
        if let (Some(at), Some(next)) = (at, shown)
            && *self.rows[at] == *next
        {
            return marks;
        }
        let full = self.select.limit.is_some_and(|limit| self.rows.len() >= limit as usize);
        if let Some(at) = at {
            self.rows.remove(at);
            if full {
                // The window had a row after this one's place that it never held: only
                // a fresh read knows which row belongs at its end now.
                let still_inside = shown.is_some_and(|next| {
                    self.rows.last().is_some_and(|last| {
                        self.select.compare(next, last, &self.primary_key) == Ordering::Less
                    })
                });
                if !still_inside {
                    self.stale = true;
                    return Applied::Reread;
                }
            }
        } else if shown.is_none() {
            return marks;
        }
        let Some(next) = shown else { return Applied::Changed };
        let place = self
            .rows
            .partition_point(|held| self.select.compare(held, next, &self.primary_key) == Ordering::Less);
        if let Some(limit) = self.select.limit
            && place >= limit as usize
        {
            // Sorts after a full window: not shown (only its pending mark may change).
            return marks;
        }
        if self.select.limit.is_some() && place == self.rows.len() && !self.rows.is_empty() {
            // A window short of its size may end where the rows held locally end, not
            // where the query does (`sync::window`): whether a row past its last one
            // belongs in it, only a read of the covered part knows.
            self.stale = true;
            return Applied::Reread;
        }
        self.rows.insert(place, Rc::new(next.clone()));
        if let Some(limit) = self.select.limit
            && self.rows.len() > limit as usize
        {
            self.rows.truncate(limit as usize);
            self.pushed_out = true;
        }
        Applied::Changed
    }

    /// Applies a local write about to be made (the optimistic row): the record's
    /// image in this view, written as the operation says, now pending. A write that
    /// does not apply to what the view holds (an update of a record it does not
    /// show, which may or may not exist) leaves it alone: the local store's report of
    /// the record follows.
    pub fn apply_operation(&mut self, operation: &Operation, record_id: &str) -> Applied {
        if operation.collection() != self.select.collection {
            return Applied::Unchanged;
        }
        let current = self.position(record_id).map(|at| Rc::clone(&self.rows[at]));
        if current.is_none() && !matches!(operation, Operation::Insert(_)) {
            return Applied::Unchanged;
        }
        match operation.apply(current.as_deref(), &self.primary_key) {
            Ok(next) => self.apply_record(record_id, next.as_ref(), true),
            Err(_) => Applied::Unchanged,
        }
    }
}
