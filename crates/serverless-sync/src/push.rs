//! The push pipeline's rules, decided once: the reference ([`crate::server::ServerState`])
//! and the connector (`sync-server`, on D1 and PostgreSQL) both drive a [`PushPlan`],
//! so no rule of a push exists twice. A plan does no I/O; its caller reads what
//! [`PushPlan::records`] and [`PushPlan::mutation_ids`] name, asks the app what
//! [`PushPlan::callback_request`] names, and carries out [`PushPlan::decide`]'s
//! [`Decisions`].
//!
//! The rules:
//! - each mutation id of a push is considered once (the first occurrence wins);
//! - every mutation is validated against the model with the server's clock;
//! - a mutation id answered before is answered the same, nobody asked again;
//! - the app is asked once, for the valid new ones only;
//! - a per-write "no" from the app and a write that cannot apply to the record as it
//!   stands are final and stored (a retry gets the same answer); a model refusal (the
//!   same on every retry anyway) and a caller refused as a whole (nothing may be left
//!   behind for someone the app does not know) are answered, not stored;
//! - the allowed writes apply in outbox order, each against the record as the earlier
//!   writes of the same push leave it, all in one transaction;
//! - an upstream failure that is not this write's fault ([`WriteFailure::Transient`])
//!   decides nothing: nothing is stored and the client retries; only a deterministic
//!   refusal of the write itself (a constraint it violates) is final.

use std::collections::BTreeMap;

use crate::changes::Topic;
use crate::model::{MutationContext, SyncModel, ValidatedMutation};
use crate::operation::Operation;
use crate::protocol::mutation_callback::{
    MutationCallbackOperation, MutationCallbackRequest, MutationCallbackResponse,
};
use crate::protocol::push::{MutationOutcome, MutationResult, PushMutation};
use crate::schema::Row;

/// A record, by collection and record id.
pub type RecordKey = (String, String);

/// One push, planned: its distinct mutations with their validation.
#[derive(Debug, Clone)]
pub struct PushPlan {
    client_id: String,
    now_ms: i64,
    candidates: Vec<Candidate>,
}

#[derive(Debug, Clone)]
struct Candidate {
    mutation: PushMutation,
    validated: Result<ValidatedMutation, String>,
}

/// A write the app allowed and that applies to the record as it stands: to run in
/// the push's one transaction, in this order.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedWrite {
    pub mutation_id: String,
    /// The mutator's name (a stored confirmed row is decoded with its collection).
    pub mutator: String,
    pub collection: String,
    pub record_id: String,
    pub operation: Operation,
    /// The record's image after this write, as planned (the write's SQL re-checks its
    /// guards inside the transaction).
    pub after: Option<Row>,
}

/// A write refused before it reached the upstream tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub mutation_id: String,
    /// The mutator's name (a racing retry's stored answer is decoded with it).
    pub mutator: String,
    pub reason: String,
    /// Whether the answer is stored, so that a retry of the id gets it again.
    pub stored: bool,
    /// The record the mutation would have written, when it is valid (a stored answer
    /// must not contradict that record's change log: see `sql::record_mutation`).
    pub record: Option<RecordKey>,
}

/// What a push does once the stored answers, the current images and the app's
/// answer are known.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decisions {
    /// Answers given before (retries): answered as they are.
    pub answered: BTreeMap<String, MutationOutcome>,
    /// The writes to apply, in outbox order, in one transaction.
    pub writes: Vec<PlannedWrite>,
    pub rejections: Vec<Rejection>,
}

/// Why applying writes failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteFailure {
    /// Not the write's fault (a connection reset, a timeout, an overloaded or
    /// restarting database, a lock): nothing is decided, the client retries.
    Transient(String),
    /// The database refused this write itself (it violates a constraint): final.
    Refused(String),
}

/// Reads an SQLite (D1, rusqlite) error message: a violated constraint is the write's
/// own fault, named by its text or by the result code D1 appends (`...: SQLITE_CONSTRAINT
/// (extended: SQLITE_CONSTRAINT_TRIGGER)` for an app's trigger that raises, whatever
/// its message says), as is a value the column cannot hold (`SQLITE_MISMATCH`,
/// `SQLITE_TOOBIG`); anything else (a lost connection, "overloaded", a busy or locked
/// database, a reset isolate) is transient.
pub fn classify_sqlite_failure(message: &str) -> WriteFailure {
    let lower = message.to_ascii_lowercase();
    let refusal =
        ["constraint failed", "datatype mismatch", "sqlite_constraint", "sqlite_mismatch", "sqlite_toobig"];
    if refusal.iter().any(|text| lower.contains(text)) {
        WriteFailure::Refused(message.to_string())
    } else {
        WriteFailure::Transient(message.to_string())
    }
}

/// Reads a PostgreSQL SQLSTATE: class 23 (integrity constraint violation), class 22
/// (data exception: a value the column refuses) and P0001 (an app's trigger raised
/// an exception) are the write's own fault; anything else (connection, lock timeouts,
/// serialization failures, shutdowns) is transient.
pub fn classify_postgres_failure(sqlstate: Option<&str>, message: &str) -> WriteFailure {
    match sqlstate {
        Some(code) if code.starts_with("23") || code.starts_with("22") || code == "P0001" => {
            WriteFailure::Refused(message.to_string())
        }
        _ => WriteFailure::Transient(message.to_string()),
    }
}

/// The reason a write the database refused is answered with. An app's trigger that
/// raised (SQLite's `SQLITE_CONSTRAINT_TRIGGER`, PostgreSQL's `P0001`) speaks to the
/// user: its message is answered as written ([`app_refusal`]). Anything else the
/// database said (constraint and table names) stays in the server's log: the user
/// is told what happened, not the schema.
pub fn refused_reason(message: &str) -> String {
    let message = message.strip_prefix("D1_ERROR: ").unwrap_or(message);
    if message.contains("SQLITE_CONSTRAINT_TRIGGER") {
        let said = message.find(": SQLITE_").map_or(message, |at| &message[..at]);
        return app_refusal(said);
    }
    if let Some(said) = message.strip_suffix(" (P0001)") {
        return app_refusal(said);
    }
    REFUSED_BY_CONSTRAINT.to_string()
}

/// The answer to a write the database refused for one of its own rules (a unique
/// key, a check, a reference, a type).
pub const REFUSED_BY_CONSTRAINT: &str =
    "the upstream refused the write: it breaks a rule of the table (a unique key, a check or a reference)";

/// The answer to a write an app's trigger refused with `message`.
pub fn app_refusal(message: &str) -> String {
    crate::protocol::error::bounded_reason(format!("the upstream refused the write: {message}"))
}

impl PushPlan {
    /// Plans a push of `mutations` by `client_id` at the server's `now_ms`.
    pub fn new(model: &SyncModel, client_id: &str, mutations: &[PushMutation], now_ms: i64) -> Self {
        let mut candidates: Vec<Candidate> = Vec::new();
        for mutation in mutations {
            if candidates.iter().any(|seen| seen.mutation.id == mutation.id) {
                continue;
            }
            let ctx = MutationContext {
                client_id: client_id.into(),
                record_id: mutation.record_id.clone(),
                now_ms,
            };
            let validated = model
                .validate_mutation(&mutation.name, &mutation.args, &ctx)
                .map_err(|error| error.to_string());
            candidates.push(Candidate { mutation: mutation.clone(), validated });
        }
        Self { client_id: client_id.into(), now_ms, candidates }
    }

    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    pub fn now_ms(&self) -> i64 {
        self.now_ms
    }

    /// Every distinct mutation id, in outbox order, each with its mutator's name, the
    /// record id the push names and, when valid, the collection it writes: their
    /// stored answers are read before anything is decided (a confirmed answer is
    /// found through its record).
    pub fn mutation_ids(&self) -> Vec<(&str, &str, &str, Option<&str>)> {
        self.candidates
            .iter()
            .map(|c| {
                let collection = c.validated.as_ref().ok().map(|v| v.collection.as_str());
                (c.mutation.id.as_str(), c.mutation.name.as_str(), c.mutation.record_id.as_str(), collection)
            })
            .collect()
    }

    /// Whether every mutation is valid and inserts a record (whose current image, if
    /// the request's `first_send` holds, is nothing: a record that exists makes the
    /// insert fail upstream, and the connector answers it from there).
    pub fn only_inserts(&self) -> bool {
        self.candidates.iter().all(|candidate| {
            candidate
                .validated
                .as_ref()
                .is_ok_and(|validated| matches!(validated.operation, crate::operation::Operation::Insert(_)))
        })
    }

    /// The records the valid mutations write, sorted, each once: their current images
    /// are read before deciding.
    pub fn records(&self) -> Vec<RecordKey> {
        let mut keys: Vec<RecordKey> = self
            .candidates
            .iter()
            .filter_map(|c| c.validated.as_ref().ok())
            .map(|v| (v.collection.clone(), v.record_id.clone()))
            .collect();
        keys.sort();
        keys.dedup();
        keys
    }

    /// The mutations the app is asked about: valid, and without a stored answer.
    fn to_ask<'a>(
        &'a self,
        stored: &'a BTreeMap<String, MutationOutcome>,
    ) -> impl Iterator<Item = (&'a Candidate, &'a ValidatedMutation)> {
        self.candidates
            .iter()
            .filter(|c| !stored.contains_key(&c.mutation.id))
            .filter_map(|c| c.validated.as_ref().ok().map(|v| (c, v)))
    }

    /// What to ask the app's mutation callback: the valid mutations without a stored
    /// answer. `None`: nothing to ask.
    pub fn callback_request(
        &self,
        session_id: &str,
        stored: &BTreeMap<String, MutationOutcome>,
    ) -> Option<MutationCallbackRequest> {
        let operations: Vec<MutationCallbackOperation> = self
            .to_ask(stored)
            .map(|(c, v)| MutationCallbackOperation {
                args: v.args.clone(),
                collection: v.collection.clone(),
                id: c.mutation.id.clone(),
                mutation_kind: v.kind,
                operation_name: v.name.clone(),
                record_id: v.record_id.clone(),
            })
            .collect();
        (!operations.is_empty())
            .then(|| MutationCallbackRequest::new(&self.client_id, session_id, operations))
    }

    /// Decides every mutation: answered from `stored` (see [`answered_now`]), rejected,
    /// or planned against `images` (the current image of each of [`Self::records`];
    /// absent = no such record). `answer` is the app's answer to [`Self::callback_request`] (`None`
    /// when nothing was asked).
    pub fn decide(
        &self,
        model: &SyncModel,
        stored: &BTreeMap<String, MutationOutcome>,
        mut images: BTreeMap<RecordKey, Option<Row>>,
        answer: Option<&MutationCallbackResponse>,
    ) -> Decisions {
        let asked: Vec<&str> = self.to_ask(stored).map(|(c, _)| c.mutation.id.as_str()).collect();
        let denied_whole =
            matches!(answer, Some(MutationCallbackResponse::Batch(decision)) if !decision.allow);
        let verdicts: BTreeMap<&str, crate::server::Verdict> = match answer {
            Some(answer) => asked.iter().copied().zip(answer.verdicts(&asked)).collect(),
            None => BTreeMap::new(),
        };
        let mut decisions = Decisions::default();
        for candidate in &self.candidates {
            let id = &candidate.mutation.id;
            if let Some(outcome) = stored.get(id) {
                decisions.answered.insert(id.clone(), answered_now(outcome));
                continue;
            }
            // Stored and answered: cut like every reason (a validation error may
            // quote the request, an app's callback may say anything).
            let reject = |reason: String, stored: bool| Rejection {
                mutation_id: id.clone(),
                mutator: candidate.mutation.name.clone(),
                reason: crate::protocol::error::bounded_reason(reason),
                stored,
                record: candidate
                    .validated
                    .as_ref()
                    .ok()
                    .map(|v| (v.collection.clone(), v.record_id.clone())),
            };
            let validated = match (&candidate.validated, verdicts.get(id.as_str())) {
                (Err(reason), _) => {
                    decisions.rejections.push(reject(reason.clone(), false));
                    continue;
                }
                (Ok(_), Some(crate::server::Verdict::Deny(reason))) => {
                    decisions.rejections.push(reject(reason.clone(), !denied_whole));
                    continue;
                }
                (Ok(_), None) => {
                    let reason = crate::protocol::mutation_callback::NO_DECISION.to_string();
                    decisions.rejections.push(reject(reason, !denied_whole));
                    continue;
                }
                (Ok(validated), Some(crate::server::Verdict::Allow)) => validated,
            };
            let Some(collection) = model.collection(&validated.collection) else {
                decisions.rejections.push(reject("unknown collection".into(), false));
                continue;
            };
            let key = (validated.collection.clone(), validated.record_id.clone());
            let current = images.get(&key).cloned().flatten();
            match validated.operation.apply(current.as_ref(), &collection.primary_key) {
                Ok(after) => {
                    images.insert(key, after.clone());
                    decisions.writes.push(PlannedWrite {
                        mutation_id: id.clone(),
                        mutator: validated.name.clone(),
                        collection: validated.collection.clone(),
                        record_id: validated.record_id.clone(),
                        operation: validated.operation.clone(),
                        after,
                    });
                }
                Err(reason) => decisions.rejections.push(reject(reason, true)),
            }
        }
        decisions
    }
}

/// The push's answer: one result per mutation of the request, in request order (a
/// mutation id named twice is answered twice), for every id `outcomes` knows.
pub fn answers(
    mutations: &[PushMutation],
    outcomes: &BTreeMap<String, MutationOutcome>,
) -> Vec<MutationResult> {
    mutations
        .iter()
        .filter_map(|mutation| {
            outcomes
                .get(&mutation.id)
                .map(|outcome| MutationResult { id: mutation.id.clone(), outcome: outcome.clone() })
        })
        .collect()
}

/// The topics a push's confirmed images are on now: the app is asked, as for a
/// read, whether the writer may read each (see [`withhold_unreadable`]).
pub fn topics_of_answers(
    model: &SyncModel,
    mutations: &[PushMutation],
    results: &[MutationResult],
) -> Vec<Topic> {
    let collections = collections_of(model, mutations);
    let mut topics = std::collections::BTreeSet::new();
    for result in results {
        if let (MutationOutcome::Confirmed { row: Some(image), .. }, Some(collection)) =
            (&result.outcome, collections.get(result.id.as_str()))
        {
            topics.extend(model.topics_for_row(collection, image));
        }
    }
    topics.into_iter().collect()
}

/// A write's answer carries the record's image back to its writer only when the app
/// lets the writer read one of the topics the record is on (`readable`): a writer
/// allowed to write but not to read learns it was confirmed, at its sequence
/// number, and nothing of the record (its pull, under the read rule, brings what it
/// may see).
pub fn withhold_unreadable(
    model: &SyncModel,
    mutations: &[PushMutation],
    results: &mut [MutationResult],
    readable: &[Topic],
) {
    let collections = collections_of(model, mutations);
    for result in results.iter_mut() {
        let Some(collection) = collections.get(result.id.as_str()) else { continue };
        if let MutationOutcome::Confirmed { row, .. } = &mut result.outcome
            && let Some(image) = row
            && !model.topics_for_row(collection, image).iter().any(|topic| readable.contains(topic))
        {
            *row = None;
        }
    }
}

/// The collection each mutation of a push writes, by mutation id.
fn collections_of<'a>(model: &'a SyncModel, mutations: &'a [PushMutation]) -> BTreeMap<&'a str, &'a str> {
    mutations
        .iter()
        .filter_map(|m| Some((m.id.as_str(), model.mutator_def(&m.name)?.collection.as_str())))
        .collect()
}

/// A stored answer as it is given again now (a retry, or a duplicate of a push in
/// flight): it stands whatever the model has become since (the write was applied),
/// but without its image. The first answer carried it; a replay may come long after
/// that text was replaced or deleted, or from a caller that may no longer read it.
/// The client's pull, under the read rule, brings what stands (at one sequence number
/// an image beats none, so nothing is lost).
pub fn answered_now(outcome: &MutationOutcome) -> MutationOutcome {
    match outcome {
        MutationOutcome::Confirmed { seq, .. } => MutationOutcome::Confirmed { row: None, seq: *seq },
        rejected @ MutationOutcome::Rejected { .. } => rejected.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_apps_trigger_speaks_to_the_user_the_schema_does_not() {
        assert_eq!(
            refused_reason(
                "D1_ERROR: the app refuses bad cards: SQLITE_CONSTRAINT (extended: SQLITE_CONSTRAINT_TRIGGER)"
            ),
            "the upstream refused the write: the app refuses bad cards"
        );
        assert_eq!(refused_reason("no spam here (P0001)"), "the upstream refused the write: no spam here");
        for schema_words in [
            "D1_ERROR: UNIQUE constraint failed: cards.id: SQLITE_CONSTRAINT (extended: SQLITE_CONSTRAINT_PRIMARYKEY)",
            "duplicate key value violates unique constraint \"cards_pkey\" (23505)",
            "new row for relation \"cards\" violates check constraint \"body_len\" (23514)",
        ] {
            assert_eq!(refused_reason(schema_words), REFUSED_BY_CONSTRAINT);
        }
        let long = "x".repeat(10_000);
        assert!(refused_reason(&format!("{long} (P0001)")).chars().count() <= 401);
    }

    #[test]
    fn sqlite_constraints_are_refusals_and_everything_else_is_transient() {
        let refused = [
            "D1_ERROR: UNIQUE constraint failed: cards.id: SQLITE_CONSTRAINT",
            "NOT NULL constraint failed: cards.body",
            "CHECK constraint failed: body",
            // An app's trigger that raises, as D1 reports it: only the code says so.
            "D1_ERROR: the app refuses bad cards: SQLITE_CONSTRAINT (extended: SQLITE_CONSTRAINT_TRIGGER)",
            "D1_ERROR: string or blob too big: SQLITE_TOOBIG",
        ];
        for message in refused {
            assert!(matches!(classify_sqlite_failure(message), WriteFailure::Refused(_)), "{message}");
        }
        let transient = [
            "D1_ERROR: Network connection lost.",
            "D1 DB is overloaded. Requests queued for too long.",
            "database is locked",
            "D1_ERROR: internal error; reference = abc",
            "The object was reset because its code was updated.",
            "no such table: cards",
        ];
        for message in transient {
            assert!(matches!(classify_sqlite_failure(message), WriteFailure::Transient(_)), "{message}");
        }
    }

    #[test]
    fn postgres_integrity_and_data_errors_are_refusals() {
        assert!(matches!(classify_postgres_failure(Some("23505"), "dup"), WriteFailure::Refused(_)));
        assert!(matches!(classify_postgres_failure(Some("22001"), "too long"), WriteFailure::Refused(_)));
        assert!(matches!(classify_postgres_failure(Some("P0001"), "no spam"), WriteFailure::Refused(_)));
        for code in [Some("40001"), Some("55P03"), Some("57014"), Some("08006"), None] {
            assert!(matches!(classify_postgres_failure(code, "x"), WriteFailure::Transient(_)), "{code:?}");
        }
    }
}
