//! The upstream's semantics, as a plain in-memory type: what the connector does on D1
//! or PostgreSQL, minus the database. Used as the reference in property tests and as
//! the specification the SQL implementations must match:
//!
//! - a mutation id is applied at most once per client; a retry gets the first answer;
//! - an accepted write gets the next sequence number and a change-log entry;
//! - the latest accepted write wins (arrival order).
//!
//! A push is decided by [`crate::push::PushPlan`], the same plan the connector
//! drives; this type only carries it out in memory.

use std::collections::{BTreeMap, BTreeSet};

use crate::changes::{Change, ChangeKind, Cursor, IdempotencyKey, PullPage, Topic, change_topics};
use crate::model::SyncModel;
use crate::protocol::mutation_callback::{MutationCallbackRequest, MutationCallbackResponse};
use crate::protocol::push::{MutationOutcome, MutationResult, PushMutation};
use crate::pull::{Page, PullPlan, PullRefusal};
use crate::push::PushPlan;
use crate::schema::Row;

/// The app's verdict on one mutation (from its mutation callback).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Deny(String),
}

/// The upstream's own refusals, which the model does not know (an app's CHECK or
/// trigger): given a write's collection and the record after it, the database's
/// message if it refuses.
#[derive(Clone)]
pub struct UpstreamRule(pub std::sync::Arc<RefusesWrite>);

/// `(collection, the record after the write) -> the database's message if it refuses`.
pub type RefusesWrite = dyn Fn(&str, Option<&Row>) -> Option<String> + Send + Sync;

impl std::fmt::Debug for UpstreamRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UpstreamRule")
    }
}

#[derive(Debug, Clone)]
pub struct ServerState {
    model: SyncModel,
    upstream_rule: Option<UpstreamRule>,
    rows: BTreeMap<(String, String), Row>,
    log: Vec<Change>,
    /// Stored answers: a rejection under the mutation id alone (`None`), a confirmed
    /// write under its id and the id of the record it wrote, as the SQL upstreams
    /// keep them (there the confirmed answer is the change row, found through the
    /// record the push names).
    outcomes: BTreeMap<(IdempotencyKey, Option<String>), MutationOutcome>,
    /// The log is compacted through this cursor (a pull from below it must resync).
    compacted_through: Cursor,
}

impl ServerState {
    pub fn new(model: SyncModel) -> Self {
        Self {
            model,
            upstream_rule: None,
            rows: BTreeMap::new(),
            log: Vec::new(),
            outcomes: BTreeMap::new(),
            compacted_through: Cursor::START,
        }
    }

    /// An upstream that refuses some writes itself (see [`UpstreamRule`]).
    pub fn with_upstream_rule(mut self, rule: UpstreamRule) -> Self {
        self.upstream_rule = Some(rule);
        self
    }

    /// The app deployed a new model whose migration only added what the old one lacked
    /// (new collections, new columns): existing rows get each new column's value as
    /// the generated migration gives it (`migrations::added_column_value`), and later
    /// writes follow the new model. The logged images stay as they were captured.
    pub fn upgrade(&mut self, model: SyncModel) {
        for ((collection, _), row) in &mut self.rows {
            if let Some(collection) = model.collection(collection) {
                crate::migrations::complete_image(collection, row);
            }
        }
        self.model = model;
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
        let mut verdict = Some(verdict);
        let answer = self.push_batch(client_id, "", std::slice::from_ref(mutation), now_ms, |request| {
            let verdict = verdict.take().map_or(Verdict::Allow, |decide| decide());
            MutationCallbackResponse::per_operation(&request.operations, |_| match &verdict {
                Verdict::Allow => Ok(()),
                Verdict::Deny(reason) => Err(reason.clone()),
            })
        });
        answer
            .into_iter()
            .next()
            .map_or_else(|| MutationOutcome::Rejected { reason: "no answer".into() }, |result| result.outcome)
    }

    /// Applies a push the way the connector does ([`crate::push::PushPlan`]): `ask`
    /// is the app's mutation callback, asked once for the valid new mutations. The
    /// answers, in request order.
    pub fn push_batch(
        &mut self,
        client_id: &str,
        session_id: &str,
        mutations: &[PushMutation],
        now_ms: i64,
        ask: impl FnOnce(&MutationCallbackRequest) -> MutationCallbackResponse,
    ) -> Vec<MutationResult> {
        let plan = PushPlan::new(&self.model, client_id, mutations, now_ms);
        let mut stored: BTreeMap<String, MutationOutcome> = plan
            .mutation_ids()
            .into_iter()
            .filter_map(|(id, _, record_id, _)| {
                let key = IdempotencyKey { client_id: client_id.into(), mutation_id: id.into() };
                let outcome = self
                    .outcomes
                    .get(&(key.clone(), None))
                    .or_else(|| self.outcomes.get(&(key, Some(record_id.to_string()))));
                outcome.map(|outcome| (id.to_string(), outcome.clone()))
            })
            .collect();
        let answer = plan.callback_request(session_id, &stored).map(|request| ask(&request));
        let mut outcomes = BTreeMap::new();
        // Writes go in order; one the upstream refuses is answered for good, and the
        // rest are planned again on what it left (the app's answer stands).
        let decisions = 'planning: loop {
            let images = plan.records().into_iter().map(|key| {
                let image = self.rows.get(&key).cloned();
                (key, image)
            });
            let decisions = plan.decide(&self.model, &stored, images.collect(), answer.as_ref());
            for write in &decisions.writes {
                let refusal = self
                    .upstream_rule
                    .as_ref()
                    .and_then(|rule| (rule.0)(&write.collection, write.after.as_ref()));
                let outcome = match refusal {
                    Some(message) => MutationOutcome::Rejected { reason: crate::push::app_refusal(&message) },
                    None => {
                        let seq = self.log_write(
                            &write.collection,
                            &write.record_id,
                            write.after.clone(),
                            client_id,
                            &write.mutation_id,
                        );
                        MutationOutcome::Confirmed { row: write.after.clone(), seq }
                    }
                };
                let confirmed = matches!(outcome, MutationOutcome::Confirmed { .. });
                let record = confirmed.then(|| write.record_id.clone());
                self.store_outcome(client_id, &write.mutation_id, record, &outcome);
                stored.insert(write.mutation_id.clone(), outcome.clone());
                let refused = matches!(outcome, MutationOutcome::Rejected { .. });
                outcomes.insert(write.mutation_id.clone(), outcome);
                if refused {
                    continue 'planning;
                }
            }
            break decisions;
        };
        outcomes.extend(decisions.answered);
        for rejection in decisions.rejections {
            let outcome = MutationOutcome::Rejected { reason: rejection.reason };
            if rejection.stored {
                self.store_outcome(client_id, &rejection.mutation_id, None, &outcome);
            }
            outcomes.insert(rejection.mutation_id, outcome);
        }
        crate::push::answers(mutations, &outcomes)
    }

    fn store_outcome(
        &mut self,
        client_id: &str,
        mutation_id: &str,
        record: Option<String>,
        outcome: &MutationOutcome,
    ) {
        let key = IdempotencyKey { client_id: client_id.into(), mutation_id: mutation_id.into() };
        self.outcomes.insert((key, record), outcome.clone());
    }

    /// The stored answer to a mutation id, if any (a rejection first, else a write it
    /// confirmed).
    pub fn stored_outcome(&self, client_id: &str, mutation_id: &str) -> Option<&MutationOutcome> {
        let key = IdempotencyKey { client_id: client_id.into(), mutation_id: mutation_id.into() };
        self.outcomes.range((key.clone(), None)..).take_while(|((k, _), _)| *k == key).map(|(_, o)| o).next()
    }

    /// The current image of a record.
    pub fn record(&self, collection: &str, record_id: &str) -> Option<&Row> {
        self.rows.get(&(collection.to_string(), record_id.to_string()))
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

    /// The pages of the log for `topics` from `since`, without the cursor checks (a
    /// snapshot stand-in in tests): [`Self::pull_request`]'s pages.
    pub fn pull(&self, since: Cursor, topics: &BTreeSet<Topic>, limit: usize) -> PullPage {
        let plan = PullPlan::new(since, topics.iter().map(|topic| (topic.clone(), None)));
        let page = self.page(&plan, limit);
        PullPage { changes: page.changes, cursor: page.cursor, has_more: page.has_more }
    }

    /// What the connector answers to a pull ([`crate::pull::PullPlan`]).
    pub fn pull_request(&self, plan: &PullPlan, limit: usize) -> Result<Page, PullRefusal> {
        plan.check(self.head(), self.compacted_through)?;
        Ok(self.page(plan, limit))
    }

    fn page(&self, plan: &PullPlan, limit: usize) -> Page {
        let lowest = plan.groups().first().map_or(plan.cursor(), |(cursor, _)| *cursor);
        let mut fetched = plan.deliverable(self.log.iter().filter(|change| change.seq > lowest));
        fetched.truncate(limit.saturating_add(1));
        plan.page(&self.model, self.head(), fetched, limit)
    }

    /// Compacts the log through `through` (see [`crate::changes::compact`]).
    pub fn compact(&mut self, through: Cursor) {
        let through = through.min(self.head());
        crate::changes::compact(&mut self.log, through);
        self.compacted_through = self.compacted_through.max(through);
    }
}
