//! `POST /sync/push`: apply a batch of outbox mutations, in order, each exactly once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::Json;
use axum::extract::Extension;
use axum::http::HeaderMap;
use sync::SyncModel;
use sync::changes::{Change, ChangeKind, Cursor, Topic};
use sync::model::{MutationContext, ValidatedMutation};
use sync::protocol::mutation_callback::{
    MutationCallbackOperation, MutationCallbackRequest, MutationCallbackResponse,
};
use sync::protocol::push::{MutationOutcome, MutationResult, PushMutation, PushRequest, PushResponse};
use sync::server::Verdict;
use sync::sql::{self, Dialect, Statement};
use worker::{Context, Env};

use super::{MAX_PUSH_MUTATIONS, admit, authorization, now_ms, parse_json, read_body};
use crate::durable;
use crate::engine::Engine;
use crate::error::ApiError;
use crate::upstream::{Database, RawRow, Upstream, head_of, head_statement, topics_of};

#[worker::send]
pub async fn push(
    Extension(engine): Extension<Engine>,
    Extension(env): Extension<Env>,
    Extension(ctx): Extension<Arc<Context>>,
    headers: HeaderMap,
    raw: axum::extract::Request,
) -> Result<Json<PushResponse>, ApiError> {
    let request: PushRequest = parse_json(&read_body(raw).await?)?;
    admit(&env, &headers, request.protocol_version, &request.client_id, &request.session_id).await?;
    if request.mutations.len() > MAX_PUSH_MUTATIONS {
        return Err(ApiError::bad_request(
            "too_many_mutations",
            format!("a push carries at most {MAX_PUSH_MUTATIONS} mutations"),
        ));
    }
    for mutation in &request.mutations {
        sync::ids::parse_id(sync::ids::OUTBOX, &mutation.id)
            .map_err(|error| ApiError::bad_request("invalid_id", error.to_string()))?;
        if mutation.record_id.is_empty() || mutation.record_id.len() > 128 {
            return Err(ApiError::bad_request("invalid_id", "a record id has 1 to 128 bytes"));
        }
    }
    let model = engine.model();
    let db = Upstream::open(&engine, &env).await?;
    let client = request.client_id.as_str();
    durable::claim(&env, &request.session_id, client).await?;

    // Validate each against the model, with the server's clock.
    let now = now_ms();
    let mut candidates: Vec<(&PushMutation, Result<ValidatedMutation, String>)> = Vec::new();
    for mutation in &request.mutations {
        if candidates.iter().any(|(seen, _)| seen.id == mutation.id) {
            continue;
        }
        let ctx =
            MutationContext { client_id: client.into(), record_id: mutation.record_id.clone(), now_ms: now };
        let validated =
            model.validate_mutation(&mutation.name, &mutation.args, &ctx).map_err(|error| error.to_string());
        candidates.push((mutation, validated));
    }

    // One read (one round trip on D1): the answers given before (retries are final:
    // answered from them, nobody asked again) and the current image of every record a valid
    // mutation would write (read before the callback: the write's guards and its
    // outcome statement are what decide, this only plans).
    let valid: Vec<&ValidatedMutation> = candidates.iter().filter_map(|(_, v)| v.as_ref().ok()).collect();
    let (mut known, mut images) = prior_state(model, &db, client, &request.mutations, &valid).await?;
    let fresh: Vec<(&PushMutation, Result<ValidatedMutation, String>)> =
        candidates.into_iter().filter(|(mutation, _)| !known.contains_key(&mutation.id)).collect();

    // One callback for every valid new mutation.
    let operations: Vec<MutationCallbackOperation> = fresh
        .iter()
        .filter_map(|(mutation, validated)| validated.as_ref().ok().map(|v| (mutation, v)))
        .map(|(mutation, validated)| MutationCallbackOperation {
            args: validated.args.clone(),
            collection: validated.collection.clone(),
            id: mutation.id.clone(),
            mutation_kind: validated.kind,
            operation_name: validated.name.clone(),
            record_id: validated.record_id.clone(),
        })
        .collect();
    let mut verdicts: BTreeMap<String, Verdict> = BTreeMap::new();
    // A caller the callback refuses as a whole (no or bad credentials) leaves nothing
    // behind: its rejections are answered, not stored. (A callback that cannot answer
    // is a 503 before this: nothing decided, nothing stored.)
    let mut denied_whole = false;
    if !operations.is_empty() {
        let ask = MutationCallbackRequest::new(client, &request.session_id, operations);
        let answer = engine.ask_mutation(&env, authorization(&headers), &ask).await?;
        denied_whole = matches!(&answer, MutationCallbackResponse::Batch(decision) if !decision.allow);
        let ids: Vec<&str> = ask.operations.iter().map(|operation| operation.id.as_str()).collect();
        verdicts = ask.operations.iter().map(|o| o.id.clone()).zip(answer.verdicts(&ids)).collect();
    }

    // Decide each new mutation: rejected (invalid, denied, not applicable to the
    // current record) or planned for applying, in outbox order.
    let mut plans = Vec::new();
    let mut rejections = Vec::new();
    for (mutation, validated) in fresh {
        // Whether the rejection is stored (answered the same on a retry): the app's
        // own per-write "no" and a write that cannot apply are; a model error (the
        // same on every retry anyway) and a caller refused whole are not.
        let validated = match (validated, verdicts.remove(&mutation.id)) {
            (Err(reason), _) => {
                rejections.push((mutation, reason, false));
                continue;
            }
            (Ok(_), Some(Verdict::Deny(reason))) => {
                rejections.push((mutation, reason, !denied_whole));
                continue;
            }
            (Ok(_), None) => {
                rejections.push((mutation, "no decision from the callback".to_string(), !denied_whole));
                continue;
            }
            (Ok(validated), Some(Verdict::Allow)) => validated,
        };
        match plan(model, db.dialect(), &mut images, client, mutation, validated, now)? {
            Ok(planned) => plans.push(planned),
            Err(reason) => rejections.push((mutation, reason, true)),
        }
    }

    // Every planned write in one upstream transaction, each with its change-log row
    // and outcome; if the transaction fails (a racing retry, a conflicting write),
    // fall back to one transaction per mutation so one failure rejects only itself.
    let mut touched = BTreeSet::new();
    let mut committed = Vec::new();
    let (applied_all, head_after) = apply_all(model, &db, client, &plans, now).await?;
    for (planned, Applied { outcome, topics }) in applied_all {
        if let MutationOutcome::Confirmed { row, seq } = &outcome {
            touched.extend(topics.iter().map(ToString::to_string));
            // What a pull would hand out for it: the pokes carry it to the watchers.
            committed.push(Change {
                seq: *seq,
                collection: planned.collection.clone(),
                record_id: planned.mutation.record_id.clone(),
                kind: if row.is_some() { ChangeKind::Upsert } else { ChangeKind::Delete },
                row: row.clone(),
                topics,
                client_id: client.to_string(),
                mutation_id: planned.mutation.id.clone(),
            });
        }
        known.insert(planned.mutation.id.clone(), outcome);
    }
    for (mutation, reason, stored) in rejections {
        let outcome = if stored {
            record_rejection(model, &db, client, mutation, &reason, now).await?
        } else {
            MutationOutcome::Rejected { reason }
        };
        known.insert(mutation.id.clone(), outcome);
    }

    let cursor = match head_after {
        Some(head) => head,
        None => head_of(&db.rows(&head_statement(db.dialect())).await?),
    };
    if !touched.is_empty() {
        // Pokes go out after the answer: the writer does not wait for the fan-out.
        committed.sort_by_key(|change| change.seq);
        // Applied in one transaction, the changes are `first..=cursor` and nobody
        // else's: each topic's poke can say where its changes begin, and clients
        // standing there apply them without a pull.
        let first = head_after.and(committed.first().map(|change| change.seq));
        let topics: Vec<String> = touched.into_iter().collect();
        let env = env.clone();
        ctx.wait_until(async move {
            let since = match first {
                Some(first) => predecessors(&db, &topics, first).await.unwrap_or_else(|error| {
                    worker::console_error!("finding where the pokes' changes begin: {error}");
                    BTreeMap::new()
                }),
                None => BTreeMap::new(),
            };
            durable::poke_topics(env, topics, cursor.0, committed, since).await;
        });
    }
    let results = request
        .mutations
        .iter()
        .filter_map(|mutation| {
            known
                .get(&mutation.id)
                .map(|outcome| MutationResult { id: mutation.id.clone(), outcome: outcome.clone() })
        })
        .collect();
    Ok(Json(PushResponse { results, cursor }))
}

/// For each topic, `since` for a poke of changes starting at `first`: one look back
/// in the change log (`sync::sql::topic_predecessors`, `sync::cursors::poke_since`).
async fn predecessors(
    db: &Upstream,
    topics: &[String],
    first: Cursor,
) -> Result<BTreeMap<String, u64>, ApiError> {
    let wanted: Vec<Topic> = topics.iter().map(|topic| Topic::from_raw(topic.clone())).collect();
    let rows = db.rows(&sql::topic_predecessors(db.dialect(), &wanted, first)).await?;
    let mut found = BTreeMap::new();
    let mut compacted = Cursor::START;
    for row in &rows {
        let topic = row.get("topic").and_then(|value| value.as_str()).unwrap_or_default();
        let prev = crate::upstream::integer(row, "prev").and_then(|value| u64::try_from(value).ok());
        match (topic, prev) {
            ("", Some(through)) => compacted = Cursor(through),
            (topic, Some(prev)) => {
                found.insert(topic.to_string(), Cursor(prev));
            }
            _ => {}
        }
    }
    Ok(topics
        .iter()
        .map(|topic| {
            (topic.clone(), sync::cursors::poke_since(found.get(topic).copied(), first, compacted).0)
        })
        .collect())
}

type PriorState = (BTreeMap<String, MutationOutcome>, BTreeMap<ImageKey, Option<sync::schema::Row>>);

/// The stored answers to `mutations` (by mutation id) and the current upstream image
/// of every record `valid` touches, read together (they need not agree: an answer
/// never changes once stored, and the images only plan the write).
async fn prior_state(
    model: &SyncModel,
    db: &Upstream,
    client: &str,
    mutations: &[PushMutation],
    valid: &[&ValidatedMutation],
) -> Result<PriorState, ApiError> {
    let mut keys: Vec<ImageKey> = valid.iter().map(|v| (v.collection.clone(), v.record_id.clone())).collect();
    keys.sort();
    keys.dedup();
    let mut reads: Vec<Statement> =
        mutations.iter().map(|m| sql::find_mutation(db.dialect(), client, &m.id)).collect();
    for (collection, record_id) in &keys {
        let collection = model
            .collection(collection)
            .ok_or_else(|| ApiError::bad_request("invalid_operation", "unknown collection"))?;
        reads.push(sql::select_by_id(db.dialect(), collection, record_id).map_err(ApiError::upstream)?);
    }
    if reads.is_empty() {
        return Ok((BTreeMap::new(), BTreeMap::new()));
    }
    let mut results = db.read_each(&reads).await?.into_iter();
    let mut known = BTreeMap::new();
    for (mutation, rows) in mutations.iter().zip(results.by_ref()) {
        if let Some(outcome) = rows.first().and_then(|row| decode_outcome(model, row, &mutation.name)) {
            known.insert(mutation.id.clone(), outcome);
        }
    }
    let mut images = BTreeMap::new();
    for ((collection_name, record_id), rows) in keys.into_iter().zip(results) {
        let image = model
            .collection(&collection_name)
            .and_then(|collection| rows.into_iter().next().map(|raw| sql::decode_row(collection, raw)));
        images.insert((collection_name, record_id), image);
    }
    Ok((known, images))
}

/// Reads a stored outcome; the row comes back in storage form and is decoded with
/// the mutator's collection.
fn decode_outcome(model: &SyncModel, row: &RawRow, mutator: &str) -> Option<MutationOutcome> {
    let text = row.get("outcome_json")?.as_str()?;
    let mut outcome: MutationOutcome = serde_json::from_str(text).ok()?;
    if let MutationOutcome::Confirmed { row: Some(image), .. } = &mut outcome {
        let collection = model.mutator_def(mutator).and_then(|m| model.collection(&m.collection))?;
        *image = sql::decode_row(collection, std::mem::take(image));
    }
    Some(outcome)
}

async fn stored_outcome(
    model: &SyncModel,
    db: &Upstream,
    client: &str,
    mutation: &str,
    mutator: &str,
) -> Result<Option<MutationOutcome>, ApiError> {
    let rows = db.rows(&sql::find_mutation(db.dialect(), client, mutation)).await?;
    Ok(rows.first().and_then(|row| decode_outcome(model, row, mutator)))
}

async fn record_rejection(
    model: &SyncModel,
    db: &Upstream,
    client: &str,
    mutation: &PushMutation,
    reason: &str,
    now: i64,
) -> Result<MutationOutcome, ApiError> {
    let outcome = MutationOutcome::Rejected { reason: reason.into() };
    let json = serde_json::to_string(&outcome).map_err(ApiError::upstream)?;
    if db.rows(&sql::record_mutation(db.dialect(), client, &mutation.id, &json, now)).await.is_err() {
        // A concurrent retry recorded an answer first: that answer stands (decoded with
        // the mutator's collection, so a confirmed row comes back whole).
        if let Some(existing) = stored_outcome(model, db, client, &mutation.id, &mutation.name).await? {
            return Ok(existing);
        }
    }
    Ok(outcome)
}

/// A mutation ready to apply: its statements (see `sync::sql::AcceptedMutation`), the
/// last of which returns the outcome and the topics of the change it logged.
struct Planned<'a> {
    mutation: &'a PushMutation,
    mutator: String,
    collection: String,
    statements: Vec<Statement>,
}

/// What applying one planned mutation gave: its outcome and, if it logged a change
/// (the capture trigger computed them), that change's topics.
struct Applied {
    outcome: MutationOutcome,
    topics: Vec<Topic>,
}

/// Reads the answer row of a planned mutation's last statement.
fn applied(model: &SyncModel, planned: &Planned<'_>, rows: &[RawRow]) -> Option<Applied> {
    let row = rows.first()?;
    let outcome = decode_outcome(model, row, &planned.mutator)?;
    // No change logged (nothing written): no topics.
    Some(Applied { outcome, topics: topics_of(row).unwrap_or_default() })
}

type ImageKey = (String, String);

/// Plans one allowed mutation against the predicted current image (earlier
/// mutations of this push included). `Err(reason)`: it cannot apply.
fn plan<'a>(
    model: &SyncModel,
    dialect: Dialect,
    images: &mut BTreeMap<ImageKey, Option<sync::schema::Row>>,
    client: &str,
    mutation: &'a PushMutation,
    validated: ValidatedMutation,
    now: i64,
) -> Result<Result<Planned<'a>, String>, ApiError> {
    let collection = model
        .collection(&validated.collection)
        .ok_or_else(|| ApiError::bad_request("invalid_operation", "unknown collection"))?;
    let key = (validated.collection.clone(), validated.record_id.clone());
    let current = images.get(&key).cloned().flatten();
    // Checked here for a clear reason (exists / missing / guard); the SQL re-checks.
    let after = match validated.operation.apply(current.as_ref(), &collection.primary_key) {
        Ok(after) => after,
        Err(reason) => return Ok(Err(reason)),
    };
    let accepted = sql::AcceptedMutation {
        collection,
        operation: &validated.operation,
        record_id: &validated.record_id,
        client_id: client,
        mutation_id: &mutation.id,
        now_ms: now,
    };
    let statements = accepted
        .statements(dialect)
        .map_err(|error| ApiError::bad_request("invalid_operation", error.to_string()))?;
    images.insert(key, after);
    Ok(Ok(Planned { mutation, mutator: validated.name, collection: validated.collection, statements }))
}

/// What applying a push's plans gave, each with its answer.
type AppliedPlans<'p, 'a> = Vec<(&'p Planned<'a>, Applied)>;

/// Applies the plans in one transaction, or one by one if that fails. With the one
/// transaction, the log head after it comes back too (read inside it: no extra round
/// trip for the cursor the push answers).
async fn apply_all<'p, 'a>(
    model: &SyncModel,
    db: &Upstream,
    client: &str,
    plans: &'p [Planned<'a>],
    now: i64,
) -> Result<(AppliedPlans<'p, 'a>, Option<Cursor>), ApiError> {
    if plans.is_empty() {
        return Ok((Vec::new(), None));
    }
    let mut all: Vec<Statement> = plans.iter().flat_map(|p| p.statements.iter().cloned()).collect();
    all.push(head_statement(db.dialect()));
    if let Ok(results) = db.write(&all).await {
        let mut results = results.into_iter();
        let mut outcomes = Vec::new();
        for planned in plans {
            let rows = results.by_ref().take(planned.statements.len()).last().unwrap_or_default();
            let answer = applied(model, planned, &rows)
                .ok_or_else(|| ApiError::upstream("an applied mutation left no outcome"))?;
            outcomes.push((planned, answer));
        }
        return Ok((outcomes, results.next().map(|rows| head_of(&rows))));
    }
    let mut outcomes = Vec::new();
    for planned in plans {
        outcomes.push((planned, apply_one(model, db, client, planned, now).await?));
    }
    Ok((outcomes, None))
}

/// One mutation in its own transaction (the fallback path).
async fn apply_one(
    model: &SyncModel,
    db: &Upstream,
    client: &str,
    planned: &Planned<'_>,
    now: i64,
) -> Result<Applied, ApiError> {
    let mutation = &planned.mutation.id;
    match db.write(&planned.statements).await {
        Ok(results) => results
            .last()
            .and_then(|rows| applied(model, planned, rows))
            .ok_or_else(|| ApiError::upstream("the applied mutation left no outcome")),
        Err(error) => {
            // Either a concurrent retry claimed the id (its answer stands; it poked)
            // or the write itself failed (e.g. the id was inserted meanwhile):
            // nothing was applied.
            let outcome = match stored_outcome(model, db, client, mutation, &planned.mutator).await? {
                Some(existing) => existing,
                None => {
                    let reason = format!("the upstream refused the write: {error}");
                    record_rejection(model, db, client, planned.mutation, &reason, now).await?
                }
            };
            Ok(Applied { outcome, topics: Vec::new() })
        }
    }
}
