//! The client-side state rules, as a plain type. The browser's SQLite store
//! materializes exactly this:
//!
//! - **view** = confirmed server rows with the pending outbox applied on top, in order;
//! - a **confirmation** drops the mutation from the outbox and installs the server's
//!   version of the record (so the optimistic row is replaced);
//! - a **rejection** drops the mutation; the view falls back (rolled back);
//! - a **pull** updates confirmed rows only; the visible row of a record with pending
//!   writes keeps showing them until they resolve;
//! - every confirmed row remembers the sequence number it came with, and an older
//!   image never replaces a newer one (pull and push answers may arrive in any order).

use std::collections::BTreeMap;

use crate::Value;
use crate::changes::{Change, Cursor};
use crate::model::{MutationContext, SyncModel, ValidationError};
use crate::operation::Operation;
use crate::protocol::push::{MutationOutcome, PushMutation};
use crate::schema::Row;

/// A write waiting in the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingMutation {
    pub id: String,
    pub name: String,
    pub args: Value,
    pub collection: String,
    pub record_id: String,
    pub operation: Operation,
}

impl PendingMutation {
    /// What goes on the wire in a push.
    pub fn to_push(&self) -> PushMutation {
        PushMutation {
            id: self.id.clone(),
            name: self.name.clone(),
            args: self.args.clone(),
            record_id: self.record_id.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MutateError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("cannot apply locally: {0}")]
    NotApplicable(String),
}

/// A confirmed record image and the sequence number it is current as of.
#[derive(Debug, Clone, PartialEq)]
struct Confirmed {
    seq: Cursor,
    row: Option<Row>,
}

#[derive(Debug, Clone)]
pub struct ClientState {
    model: SyncModel,
    confirmed: BTreeMap<(String, String), Confirmed>,
    outbox: Vec<PendingMutation>,
    cursor: Cursor,
}

impl ClientState {
    pub fn new(model: SyncModel) -> Self {
        Self { model, confirmed: BTreeMap::new(), outbox: Vec::new(), cursor: Cursor::START }
    }

    pub fn cursor(&self) -> Cursor {
        self.cursor
    }

    pub fn outbox(&self) -> &[PendingMutation] {
        &self.outbox
    }

    /// Validates a named write against the model, checks it applies to the current
    /// view, and queues it. The view changes at once (optimistic).
    pub fn mutate(
        &mut self,
        mutation_id: &str,
        name: &str,
        args: &Value,
        ctx: &MutationContext,
    ) -> Result<PendingMutation, MutateError> {
        let validated = self.model.validate_mutation(name, args, ctx)?;
        let primary_key = self.primary_key(&validated.collection);
        let current = self.view_record(&validated.collection, &validated.record_id);
        validated.operation.apply(current.as_ref(), &primary_key).map_err(MutateError::NotApplicable)?;
        let pending = PendingMutation {
            id: mutation_id.into(),
            name: validated.name,
            args: validated.args,
            collection: validated.collection,
            record_id: validated.record_id,
            operation: validated.operation,
        };
        self.outbox.push(pending.clone());
        Ok(pending)
    }

    /// Resolves a pushed mutation with the server's answer. Unknown ids (already
    /// resolved: a duplicate answer) are ignored.
    pub fn resolve(&mut self, mutation_id: &str, outcome: &MutationOutcome) {
        let Some(index) = self.outbox.iter().position(|pending| pending.id == mutation_id) else {
            return;
        };
        let pending = self.outbox.remove(index);
        // An answer at or below the cursor is old news: what the client pulled through
        // (or re-fetched after a resync) already holds that record's state, later
        // changes included, which a replayed answer's image must not undo.
        if let MutationOutcome::Confirmed { row, seq } = outcome
            && *seq > self.cursor
        {
            self.install(&pending.collection, &pending.record_id, *seq, row.clone());
        }
    }

    /// Applies pulled changes and moves the cursor.
    pub fn apply_pull(&mut self, changes: &[Change], cursor: Cursor) {
        for change in changes {
            self.install(&change.collection, &change.record_id, change.seq, change.row.clone());
        }
        self.cursor = self.cursor.max(cursor);
    }

    fn install(&mut self, collection: &str, record_id: &str, seq: Cursor, row: Option<Row>) {
        let key = (collection.to_string(), record_id.to_string());
        // At one sequence number an image beats "no image": a record that left one of
        // this client's topics is delivered there without its image, and with it on
        // another topic the client also watches (`sync::pull::PullPlan::as_seen`).
        let newer = self.confirmed.get(&key).is_none_or(|current| {
            seq > current.seq || (seq == current.seq && current.row.is_none() && row.is_some())
        });
        if newer {
            self.confirmed.insert(key, Confirmed { seq, row });
        }
    }

    /// The confirmed image of a record (what the server last said).
    /// Starts again from the server's current state (the answer to
    /// `resync_required`): every confirmed image is dropped and the cursor goes back
    /// to the start; the outbox stays, so pending writes still show and still go out.
    pub fn resync(&mut self) {
        self.confirmed.clear();
        self.cursor = Cursor::START;
    }

    pub fn confirmed_record(&self, collection: &str, record_id: &str) -> Option<&Row> {
        self.confirmed.get(&(collection.to_string(), record_id.to_string()))?.row.as_ref()
    }

    /// The visible image of one record: confirmed + pending writes, in order. A
    /// pending write that no longer applies is skipped (the server will reject it).
    pub fn view_record(&self, collection: &str, record_id: &str) -> Option<Row> {
        let primary_key = self.primary_key(collection);
        let mut row = self.confirmed_record(collection, record_id).cloned();
        for pending in self.outbox.iter().filter(|p| p.collection == collection && p.record_id == record_id) {
            if let Ok(next) = pending.operation.apply(row.as_ref(), &primary_key) {
                row = next;
            }
        }
        row
    }

    /// Every visible row of a collection.
    pub fn view(&self, collection: &str) -> Vec<Row> {
        let mut ids: Vec<&str> = self
            .confirmed
            .keys()
            .filter(|(c, _)| c == collection)
            .map(|(_, id)| id.as_str())
            .chain(self.outbox.iter().filter(|p| p.collection == collection).map(|p| p.record_id.as_str()))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids.into_iter().filter_map(|id| self.view_record(collection, id)).collect()
    }

    fn primary_key(&self, collection: &str) -> String {
        self.model.collection(collection).map_or_else(|| "id".into(), |c| c.primary_key.clone())
    }
}
