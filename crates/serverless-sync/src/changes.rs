//! Change-log semantics. Every accepted write becomes one [`Change`] with the next
//! sequence number; a client's [`Cursor`] is the last sequence number it has seen.
//! Changes are routed by [`Topic`]: a query's name plus the values of its
//! equality-required predicates (`boardCards{"boardId":"r1"}`), which can be read
//! both from a subscription's args and from a written row.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::Value;
use crate::model::QueryDef;
use crate::operation::Operator;
use crate::schema::Row;

/// Position in the change log: the sequence number of the last change seen.
/// `Cursor(0)` is "nothing seen yet"; sequence numbers start at 1.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Cursor(pub u64);

impl Cursor {
    pub const START: Cursor = Cursor(0);

    pub fn next(self) -> Cursor {
        Cursor(self.0 + 1)
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A routing key for changes. See the module docs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Topic(String);

impl Topic {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The query and its bound args a topic names (`boardCards{"boardId":"b1"}` ->
    /// `("boardCards", {"boardId":"b1"})`). `None`: not a topic this engine made.
    pub fn query_and_args(&self) -> Option<(&str, Value)> {
        let open = self.0.find('{')?;
        let args: Value = serde_json::from_str(&self.0[open..]).ok()?;
        args.is_object().then(|| (&self.0[..open], args))
    }

    /// Wraps a topic string read back from storage or the wire.
    pub fn from_raw(raw: impl Into<String>) -> Topic {
        Topic(raw.into())
    }

    /// The topic a subscription to `query` with normalized `args` listens on.
    pub fn for_query(query: &QueryDef, args: &Value) -> Topic {
        let bound = eq_predicates(query)
            .map(|(arg, _)| (arg.to_string(), args.get(arg).cloned().unwrap_or(Value::Null)))
            .collect();
        Topic::compose(&query.name, bound)
    }

    /// The topic of `query` that a row image belongs to, if the row has every column
    /// the query's equality predicates name.
    pub fn for_row(query: &QueryDef, row: &Row) -> Option<Topic> {
        let mut bound = BTreeMap::new();
        for (arg, column) in eq_predicates(query) {
            bound.insert(arg.to_string(), row.get(column)?.clone());
        }
        Some(Topic::compose(&query.name, bound))
    }

    fn compose(name: &str, bound: BTreeMap<String, Value>) -> Topic {
        let mut text = String::from(name);
        text.push_str(&canonical_json(&Value::Object(bound.into_iter().collect())));
        Topic(text)
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Only equality predicates pin a topic; other operators fall back to a wider topic
/// (and the client filters with the query itself).
pub(crate) fn eq_predicates(query: &QueryDef) -> impl Iterator<Item = (&str, &str)> {
    query
        .required_predicates
        .iter()
        .filter(|predicate| predicate.operator == Operator::Eq)
        .map(|predicate| (predicate.arg.as_str(), predicate.column.as_str()))
}

/// JSON with object keys sorted at every depth, independent of how the map type
/// orders keys (serde_json's `preserve_order` may be switched on by any crate).
pub fn canonical_json(value: &Value) -> String {
    fn write(value: &Value, out: &mut String) {
        match value {
            Value::Object(map) => {
                out.push('{');
                let mut entries: Vec<_> = map.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                for (index, (key, item)) in entries.into_iter().enumerate() {
                    if index > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::String(key.clone()).to_string());
                    out.push(':');
                    write(item, out);
                }
                out.push('}');
            }
            Value::Array(items) => {
                out.push('[');
                for (index, item) in items.iter().enumerate() {
                    if index > 0 {
                        out.push(',');
                    }
                    write(item, out);
                }
                out.push(']');
            }
            scalar => out.push_str(&scalar.to_string()),
        }
    }
    let mut out = String::new();
    write(value, &mut out);
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    /// The record now has `row` (inserted or updated).
    Upsert,
    /// The record is gone.
    Delete,
}

/// One accepted write, as recorded in the upstream change log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub seq: Cursor,
    pub collection: String,
    pub record_id: String,
    pub kind: ChangeKind,
    /// The record's image after the write (`None` for a delete).
    pub row: Option<Row>,
    /// Topics of the record's images before and after: everyone who could see the
    /// record, or can see it now.
    pub topics: Vec<Topic>,
    pub client_id: String,
    pub mutation_id: String,
}

/// Identifies a client's mutation for exactly-once application.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct IdempotencyKey {
    pub client_id: String,
    pub mutation_id: String,
}

/// The union of topics of a record's old and new images, sorted and deduplicated.
pub fn change_topics(
    model: &crate::SyncModel,
    collection: &str,
    before: Option<&Row>,
    after: Option<&Row>,
) -> Vec<Topic> {
    let mut topics = BTreeSet::new();
    for image in [before, after].into_iter().flatten() {
        topics.extend(model.topics_for_row(collection, image));
    }
    topics.into_iter().collect()
}

/// What a pull returns: the changes after `since` on any of the caller's topics, at
/// most `limit` of them, and the cursor to continue from.
#[derive(Debug, Clone, PartialEq)]
pub struct PullPage {
    pub changes: Vec<Change>,
    pub cursor: Cursor,
    pub has_more: bool,
}

/// Compaction of a log (ascending `seq`) through `through`: every change at or below
/// it that a later change of the same record supersedes, and every delete at or below
/// it, is removed. A client whose cursor is at least `through` pulls exactly what it
/// pulled before (each record's latest state); an older cursor must start again from
/// snapshots (`resync_required`).
pub fn compact(log: &mut Vec<Change>, through: Cursor) {
    let mut latest: std::collections::HashMap<(String, String), Cursor> = std::collections::HashMap::new();
    for change in log.iter() {
        latest.insert((change.collection.clone(), change.record_id.clone()), change.seq);
    }
    log.retain(|change| {
        if change.seq > through {
            return true;
        }
        let superseded =
            latest.get(&(change.collection.clone(), change.record_id.clone())) != Some(&change.seq);
        !superseded && change.kind != ChangeKind::Delete
    });
}

/// Pull semantics over an ordered log (ascending `seq`). `head` is the log's latest
/// sequence number: with no more matching changes, the cursor jumps to it, so the
/// client never rescans changes that are not for it.
pub fn pull<'a>(
    log: impl IntoIterator<Item = &'a Change>,
    since: Cursor,
    topics: &BTreeSet<Topic>,
    limit: usize,
    head: Cursor,
) -> PullPage {
    let mut changes = Vec::new();
    for change in log.into_iter().filter(|change| change.seq > since) {
        if !change.topics.iter().any(|topic| topics.contains(topic)) {
            continue;
        }
        if changes.len() == limit {
            let cursor = changes.last().map_or(since, |last: &Change| last.seq);
            return PullPage { changes, cursor, has_more: true };
        }
        changes.push(change.clone());
    }
    PullPage { changes, cursor: head.max(since), has_more: false }
}
