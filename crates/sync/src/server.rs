//! The upstream's semantics, as a plain in-memory type: what the connector does on D1
//! or PostgreSQL, minus the database. Used as the reference in property tests and as
//! the specification the SQL implementations must match:
//!
//! - a mutation id is applied at most once per client; a retry gets the first answer;
//! - an accepted write gets the next sequence number and a change-log entry;
//! - the latest accepted write wins (arrival order).

use std::collections::{BTreeMap, BTreeSet};

use crate::changes::{
    Change, ChangeKind, Cursor, IdempotencyKey, PullPage, Topic, change_topics, pull_latest,
};
use crate::model::{MutationContext, SyncModel};
use crate::protocol::push::{MutationOutcome, PushMutation};
use crate::schema::Row;

/// The app's verdict on one mutation (from its mutation callback).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Deny(String),
}

#[derive(Debug, Clone)]
pub struct ServerState {
    model: SyncModel,
    rows: BTreeMap<(String, String), Row>,
    log: Vec<Change>,
    outcomes: BTreeMap<IdempotencyKey, MutationOutcome>,
    /// The log is compacted through this cursor (a pull from below it must resync).
    compacted_through: Cursor,
}

impl ServerState {
    pub fn new(model: SyncModel) -> Self {
        Self {
            model,
            rows: BTreeMap::new(),
            log: Vec::new(),
            outcomes: BTreeMap::new(),
            compacted_through: Cursor::START,
        }
    }

    /// The latest sequence number handed out (compaction may have removed its change).
    pub fn head(&self) -> Cursor {
        self.log.last().map_or(Cursor::START, |change| change.seq).max(self.compacted_through)
    }

    pub fn compacted_through(&self) -> Cursor {
        self.compacted_through
    }

    pub fn rows(&self, collection: &str) -> Vec<Row> {
        self.rows.iter().filter(|((c, _), _)| c == collection).map(|(_, row)| row.clone()).collect()
    }

    pub fn log(&self) -> &[Change] {
        &self.log
    }

    /// Applies one pushed mutation. `verdict` is consulted only for a mutation that is
    /// new and valid (a retry returns the recorded outcome without asking again).
    pub fn push(
        &mut self,
        client_id: &str,
        mutation: &PushMutation,
        now_ms: i64,
        verdict: impl FnOnce() -> Verdict,
    ) -> MutationOutcome {
        let key = IdempotencyKey { client_id: client_id.into(), mutation_id: mutation.id.clone() };
        if let Some(outcome) = self.outcomes.get(&key) {
            return outcome.clone();
        }
        let outcome = self.apply_new(client_id, mutation, now_ms, verdict);
        self.outcomes.insert(key, outcome.clone());
        outcome
    }

    fn apply_new(
        &mut self,
        client_id: &str,
        mutation: &PushMutation,
        now_ms: i64,
        verdict: impl FnOnce() -> Verdict,
    ) -> MutationOutcome {
        let ctx =
            MutationContext { client_id: client_id.into(), record_id: mutation.record_id.clone(), now_ms };
        let validated = match self.model.validate_mutation(&mutation.name, &mutation.args, &ctx) {
            Ok(validated) => validated,
            Err(error) => return MutationOutcome::Rejected { reason: error.to_string() },
        };
        if let Verdict::Deny(reason) = verdict() {
            return MutationOutcome::Rejected { reason };
        }
        let Some(collection) = self.model.collection(&validated.collection) else {
            return MutationOutcome::Rejected { reason: "unknown collection".into() };
        };
        let before = self.rows.get(&(validated.collection.clone(), validated.record_id.clone()));
        let after = match validated.operation.apply(before, &collection.primary_key) {
            Ok(after) => after,
            Err(reason) => return MutationOutcome::Rejected { reason },
        };
        let seq = self.log_write(
            &validated.collection,
            &validated.record_id,
            after.clone(),
            client_id,
            &mutation.id,
        );
        MutationOutcome::Confirmed { row: after, seq }
    }

    /// Records a write: the change (next sequence number, topics of the images before
    /// and after) and the record's new state.
    fn log_write(
        &mut self,
        collection: &str,
        record_id: &str,
        after: Option<Row>,
        client_id: &str,
        mutation_id: &str,
    ) -> Cursor {
        let key = (collection.to_string(), record_id.to_string());
        let topics = change_topics(&self.model, collection, self.rows.get(&key), after.as_ref());
        let seq = self.head().next();
        self.log.push(Change {
            seq,
            collection: collection.into(),
            record_id: record_id.into(),
            kind: if after.is_some() { ChangeKind::Upsert } else { ChangeKind::Delete },
            row: after.clone(),
            topics,
            client_id: client_id.into(),
            mutation_id: mutation_id.into(),
        });
        match after {
            Some(row) => self.rows.insert(key, row),
            None => self.rows.remove(&key),
        };
        seq
    }

    /// A write made directly on the upstream database, not through the connector (an
    /// admin script, `psql`): `after` is the record's new image (`None`: deleted). Its
    /// change is nobody's mutation (empty client and mutation ids); a write that
    /// changes nothing (no such record to delete) records nothing, like a trigger.
    pub fn write_direct(&mut self, collection: &str, record_id: &str, after: Option<Row>) -> Option<Cursor> {
        let exists = self.rows.contains_key(&(collection.to_string(), record_id.to_string()));
        if !exists && after.is_none() {
            return None;
        }
        Some(self.log_write(collection, record_id, after, "", ""))
    }

    /// What the connector answers: the page, latest change per record.
    pub fn pull(&self, since: Cursor, topics: &BTreeSet<Topic>, limit: usize) -> PullPage {
        pull_latest(&self.log, since, topics, limit, self.head())
    }

    /// Compacts the log through `through` (see [`crate::changes::compact`]).
    pub fn compact(&mut self, through: Cursor) {
        let through = through.min(self.head());
        crate::changes::compact(&mut self.log, through);
        self.compacted_through = self.compacted_through.max(through);
    }
}
