//! `POST /sync/push`: apply a batch of outbox mutations, in order, each exactly once.

use std::collections::{BTreeMap, BTreeSet};

use axum::Json;
use axum::extract::Extension;
use axum::http::HeaderMap;
use sync::SyncModel;
use sync::changes::{Change, ChangeKind, Cursor, Topic};
use sync::protocol::mutation_callback::{MutationCallbackRequest, MutationCallbackResponse};
use sync::protocol::push::{MutationOutcome, PushRequest, PushResponse};
use sync::push::{PlannedWrite, PushPlan, RecordKey, Rejection};
use sync::sql::{self, Dialect, Statement};
use worker::Env;

use super::{MAX_PUSH_MUTATIONS, admit, authorization, now_ms, parse_json, read_body, require_sign_in};
use crate::durable;
use crate::engine::{Engine, QueryVerdict, TracedEngine};
use crate::error::ApiError;
use crate::upstream::{Database, RawRow, Upstream, head_of, head_statement, topics_of};

#[worker::send]
pub async fn push(
    TracedEngine(engine): TracedEngine,
    Extension(env): Extension<Env>,
    Extension(after): Extension<crate::AfterAnswer>,
    headers: HeaderMap,
    raw: axum::extract::Request,
) -> Result<Json<PushResponse>, ApiError> {
    let request: PushRequest = parse_json(&read_body(raw).await?)?;
    admit(&engine, &env, &headers, request.protocol_version, &request.client_id, &request.session_id).await?;
    check_request(&request)?;
    if request.mutations.is_empty() {
        require_sign_in(&engine, &env, &headers).await?;
    }
    let db = Upstream::open(&engine, &env).await?;
    durable::claim(&env, &request.session_id, &request.client_id).await?;
    let ask = async |question: MutationCallbackRequest| {
        engine.ask_mutation(&env, authorization(&headers), &question).await
    };
    let mut pushed = run(engine.model(), &db, &request, now_ms(), ask).await?;
    withhold_unreadable_images(&engine, &env, &headers, &request, &mut pushed.response.results).await;
    if let Some(trace) = engine.trace() {
        trace.counts(request.mutations.len(), pushed.committed.len(), 0);
        trace.rejected(
            pushed
                .response
                .results
                .iter()
                .filter(|result| matches!(result.outcome, MutationOutcome::Rejected { .. }))
                .count(),
        );
    }
    if !pushed.topics.is_empty() {
        // Pokes go out after the answer: the writer does not wait for the fan-out.
        let Pushed { committed, topics, one_transaction, response, since } = pushed;
        let cursor = response.cursor;
        let (env, engine) = (env.clone(), engine.clone());
        after.run(async move {
            // Worked out after the answer too: the writer waits for none of it.
            let carried = sync::fanout::carried_by_topic(engine.model(), &topics, &committed);
            let since =
                poke_since(&db, since, one_transaction, &topics, &committed).await.unwrap_or_else(|error| {
                    worker::console_error!("finding where the pokes' changes begin: {error}");
                    BTreeMap::new()
                });
            durable::poke_topics(env, topics, cursor.0, carried, since).await;
        });
        return Ok(Json(response));
    }
    Ok(Json(pushed.response))
}

/// A confirmed image goes back only to a writer the app lets read it
/// (`sync::push::withhold_unreadable`): the app's query callback is asked about each
/// topic the images are on, as for a read; no answer counts as no (the image is left
/// out, never anything else: the write stands and the writer's pull follows).
async fn withhold_unreadable_images(
    engine: &Engine,
    env: &Env,
    headers: &HeaderMap,
    request: &PushRequest,
    results: &mut [sync::protocol::push::MutationResult],
) {
    let topics = sync::push::topics_of_answers(engine.model(), &request.mutations, results);
    let mut readable = Vec::new();
    for topic in topics {
        let Some((name, args)) = topic.query_and_args() else { continue };
        let verdict = engine
            .judge_query(env, authorization(headers), &request.client_id, &request.session_id, name, &args)
            .await;
        if let Ok(QueryVerdict::Allowed(_)) = verdict {
            readable.push(topic);
        }
    }
    sync::push::withhold_unreadable(engine.model(), &request.mutations, results, &readable);
}

/// The request's own limits: how many mutations, well-formed ids.
pub fn check_request(request: &PushRequest) -> Result<(), ApiError> {
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
    Ok(())
}

/// What a push did: the answer, and what its pokes carry.
pub struct Pushed {
    pub response: PushResponse,
    /// The changes it committed, in sequence order, as a pull would hand them out.
    pub committed: Vec<Change>,
    /// The topics they touched.
    pub topics: Vec<String>,
    /// Whether they were applied in one transaction (so they are `first..=cursor`,
    /// nobody else's, and each topic's poke can say where its changes begin).
    pub one_transaction: bool,
    /// Where each topic's changes begin for its poke (`sync::cursors::poke_since`), when
    /// the one transaction read it before its writes; else the poke looks it up.
    pub since: Option<BTreeMap<String, u64>>,
}

/// The push pipeline on any upstream, as [`sync::push::PushPlan`] decides it: one read
/// (the stored answers and the current images), one callback (`ask`, for the valid new
/// mutations), one write transaction (every allowed write with its change-log row and
/// answer, and the refusals that are stored). Runs on D1 and PostgreSQL in the worker, and
/// on SQLite and PostgreSQL natively in the tests and the simulation.
pub async fn run<D: Database>(
    model: &SyncModel,
    db: &D,
    request: &PushRequest,
    now: i64,
    ask: impl AsyncFnOnce(MutationCallbackRequest) -> Result<MutationCallbackResponse, ApiError>,
) -> Result<Pushed, ApiError> {
    let client = request.client_id.as_str();
    let plan = PushPlan::new(model, client, &request.mutations, now);

    // One read (one round trip on D1): the answers given before (retries are final:
    // answered from them, nobody asked again) and the current image of every record a
    // valid mutation would write (read before the callback: the write's guards and its
    // outcome statement are what decide, this only plans). Skipped for new records a
    // client sends for the first time: none has an answer or an image yet, so the
    // push is one round trip. Were the hint wrong, the write's claim (an answer or
    // change of the mutation exists) or the record's key (it exists) refuses the
    // transaction, and each write is then answered from what is stored.
    let mut unread = request.first_send && plan.only_inserts();
    let (mut stored, mut images) = if unread {
        (BTreeMap::new(), plan.records().into_iter().map(|record| (record, None)).collect())
    } else {
        prior_state(model, db, &plan).await?
    };
    let answer = match plan.callback_request(&request.session_id, &stored) {
        Some(question) => Some(ask(question).await?),
        None => None,
    };
    let mut outcomes = BTreeMap::new();
    let mut committed = Vec::new();
    let mut touched = BTreeSet::new();
    // Rounds that stopped at a refused write (each answers it for good, stored).
    let mut refused_rounds = 0;
    let mut read_ahead;
    let head_after = loop {
        // The topics the writes will touch, from the images before and the planned
        // images after: their previous changes are read in the writes' own batch.
        let before = images.clone();
        let decisions = plan.decide(model, &stored, images, answer.as_ref());
        let predicted: BTreeSet<Topic> = decisions
            .writes
            .iter()
            .flat_map(|write| {
                let key = (write.collection.clone(), write.record_id.clone());
                let before = before.get(&key).and_then(Option::as_ref);
                sync::changes::change_topics(model, &write.collection, before, write.after.as_ref())
            })
            .collect();
        // Every allowed write in one upstream transaction, each with its change-log
        // row and outcome, and the stored rejections with them: a push's answers land
        // together or not at all. If the transaction is refused (a racing retry, a
        // conflicting write, an app's constraint), one transaction per write until one
        // is refused: the writes after it were planned on what it would have left, so
        // they are planned again on what is there (`sync::push`: the app's answer
        // stands, nobody is asked twice). A transient failure decides nothing: 503.
        let stored_rejections: Vec<&Rejection> =
            decisions.rejections.iter().filter(|rejection| rejection.stored).collect();
        let predicted: Vec<Topic> = predicted.into_iter().collect();
        let applied =
            apply_all(model, db, client, &decisions.writes, &stored_rejections, &predicted, now, !unread)
                .await?;
        if applied.read_first {
            // The first-send hint did not hold (or a write is refused): nothing was
            // applied; read what is stored and plan again, as any push does (the app's
            // answer stands: it was given by mutation id).
            unread = false;
            (stored, images) = prior_state(model, db, &plan).await?;
            continue;
        }
        read_ahead = applied.predecessors;
        for (write, Applied { outcome, topics, logged }) in decisions.writes.iter().zip(applied.writes) {
            if let (true, MutationOutcome::Confirmed { row, seq }) = (logged, &outcome) {
                touched.extend(topics.iter().map(ToString::to_string));
                committed.push(Change {
                    seq: *seq,
                    collection: write.collection.clone(),
                    record_id: write.record_id.clone(),
                    kind: if row.is_some() { ChangeKind::Upsert } else { ChangeKind::Delete },
                    row: row.clone(),
                    topics,
                    client_id: client.to_string(),
                    mutation_id: write.mutation_id.clone(),
                });
            }
            outcomes.insert(write.mutation_id.clone(), outcome);
        }
        if applied.interrupted {
            // At most one such round per write: the refused one is stored, so it is
            // answered from there next time.
            refused_rounds += 1;
            if refused_rounds > request.mutations.len() {
                return Err(ApiError::upstream("a refused write's answer was not stored; the push stops"));
            }
            // What this push stored so far is read back with the images it left.
            (stored, images) = prior_state(model, db, &plan).await?;
            continue;
        }
        outcomes.extend(decisions.answered);
        outcomes.extend(applied.rejections);
        for rejection in decisions.rejections.into_iter().filter(|rejection| !rejection.stored) {
            outcomes.insert(rejection.mutation_id, MutationOutcome::Rejected { reason: rejection.reason });
        }
        // The head read inside the one transaction, if it was one.
        break if refused_rounds == 0 { applied.head } else { None };
    };

    let cursor = match head_after {
        Some(head) => head,
        None => head_of(&db.rows(&head_statement(db.dialect())).await?),
    };
    committed.sort_by_key(|change| change.seq);
    let response = PushResponse { results: sync::push::answers(&request.mutations, &outcomes), cursor };
    let one_transaction = head_after.is_some();
    let topics: Vec<String> = touched.into_iter().collect();
    // A topic the prediction missed (a racing writer moved the record meanwhile) gets
    // no `since`: its readers pull, as after any gap.
    let since = match (one_transaction, read_ahead, committed.first()) {
        (true, Some(found), Some(first)) => Some(since_by_topic(&topics, &found, first.seq)),
        _ => None,
    };
    Ok(Pushed { response, committed, topics, one_transaction, since })
}

/// Each topic's `since` from its previous change (`found`, with the compaction mark
/// under the empty topic) and the first change of the push.
fn since_by_topic(
    topics: &[String],
    found: &BTreeMap<String, Option<Cursor>>,
    first: Cursor,
) -> BTreeMap<String, u64> {
    let compacted = found.get("").copied().flatten().unwrap_or(Cursor::START);
    topics
        .iter()
        .filter_map(|topic| {
            // Only topics whose previous change was read: a missing one is unknown.
            let prev = found.get(topic)?;
            Some((topic.clone(), sync::cursors::poke_since(*prev, first, compacted).0))
        })
        .collect()
}

/// The rows of [`sql::topic_predecessors`]: each topic's previous change (`None`:
/// none in the window), and the compaction mark under the empty topic.
fn read_predecessors(results: impl IntoIterator<Item = Vec<RawRow>>) -> BTreeMap<String, Option<Cursor>> {
    let mut found = BTreeMap::new();
    for row in results.into_iter().flatten() {
        let topic = row.get("topic").and_then(|value| value.as_str()).unwrap_or_default().to_string();
        let prev =
            crate::upstream::integer(&row, "prev").and_then(|value| u64::try_from(value).ok()).map(Cursor);
        found.insert(topic, prev);
    }
    found
}

/// Where each topic's poke says its changes begin: read in the push's own batch when
/// it was one transaction (`read_ahead`, [`Pushed::since`]); looked up now if that
/// read could not be made; nothing after the fallback (its changes are not one run).
pub async fn poke_since<D: Database>(
    db: &D,
    read_ahead: Option<BTreeMap<String, u64>>,
    one_transaction: bool,
    topics: &[String],
    committed: &[Change],
) -> Result<BTreeMap<String, u64>, ApiError> {
    match (read_ahead, one_transaction.then(|| committed.first().map(|change| change.seq)).flatten()) {
        (Some(since), _) => Ok(since),
        (None, Some(first)) => predecessors(db, topics, first).await,
        (None, None) => Ok(BTreeMap::new()),
    }
}

/// For each topic, `since` for a poke of changes starting at `first`: one look back
/// in the change log (`sync::sql::topic_predecessors`, `sync::cursors::poke_since`).
pub async fn predecessors<D: Database>(
    db: &D,
    topics: &[String],
    first: Cursor,
) -> Result<BTreeMap<String, u64>, ApiError> {
    let wanted: Vec<Topic> = topics.iter().map(|topic| Topic::from_raw(topic.clone())).collect();
    let results = db.read(&sql::topic_predecessors(db.dialect(), &wanted, Some(first))).await?;
    let mut found = read_predecessors(results);
    // A topic with no change in the window is known: `poke_since` decides from there.
    for topic in topics {
        found.entry(topic.clone()).or_insert(None);
    }
    Ok(since_by_topic(topics, &found, first))
}

type PriorState = (BTreeMap<String, MutationOutcome>, BTreeMap<RecordKey, Option<sync::schema::Row>>);

/// The stored answers to the plan's mutation ids and the current upstream image of
/// every record it would write, read together (they need not agree: an answer never
/// changes once stored, and the images only plan the write).
async fn prior_state<D: Database>(
    model: &SyncModel,
    db: &D,
    plan: &PushPlan,
) -> Result<PriorState, ApiError> {
    let ids = plan.mutation_ids();
    let keys = plan.records();
    // A mutation that no longer validates may still have been confirmed: its answer
    // is looked for in every collection.
    let everywhere: Vec<&str> = model.collections().map(|collection| collection.name.as_str()).collect();
    let mut reads: Vec<Statement> = ids
        .iter()
        .map(|(id, _, record_id, collection)| {
            let collections = collection.as_ref().map_or(everywhere.as_slice(), std::slice::from_ref);
            sql::find_mutation(db.dialect(), plan.client_id(), id, Some((collections, record_id)))
        })
        .collect();
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
    let mut stored = BTreeMap::new();
    for ((id, mutator, _, _), rows) in ids.iter().zip(results.by_ref()) {
        if let Some(outcome) = rows.first().and_then(|row| decode_outcome(model, row, mutator)) {
            stored.insert((*id).to_string(), outcome);
        }
    }
    let mut images = BTreeMap::new();
    for ((collection_name, record_id), rows) in keys.into_iter().zip(results) {
        let image = model
            .collection(&collection_name)
            .and_then(|collection| rows.into_iter().next().map(|raw| sql::decode_row(collection, raw)));
        images.insert((collection_name, record_id), image);
    }
    Ok((stored, images))
}

/// Reads a stored outcome; the row comes back in storage form and is decoded with
/// the mutator's collection (kept as stored if a model upgrade removed the mutator:
/// the answer stands all the same).
fn decode_outcome(model: &SyncModel, row: &RawRow, mutator: &str) -> Option<MutationOutcome> {
    let text = row.get("outcome_json")?.as_str()?;
    let mut outcome: MutationOutcome = serde_json::from_str(text).ok()?;
    if let MutationOutcome::Confirmed { row: Some(image), .. } = &mut outcome
        && let Some(collection) = model.mutator_def(mutator).and_then(|m| model.collection(&m.collection))
    {
        *image = sql::decode_row(collection, std::mem::take(image));
    }
    Some(outcome)
}

async fn stored_outcome<D: Database>(
    model: &SyncModel,
    db: &D,
    client: &str,
    mutation: &str,
    mutator: &str,
    record: sql::MutationRecord<'_>,
) -> Result<Option<MutationOutcome>, ApiError> {
    let answer_record = record.map(|(collection, record_id)| ([collection], record_id));
    let answer_record = answer_record.as_ref().map(|(collections, record_id)| (&collections[..], *record_id));
    let rows = db.rows(&sql::find_mutation(db.dialect(), client, mutation, answer_record)).await?;
    // Given again as `sync::push` gives a stored answer.
    Ok(rows
        .first()
        .and_then(|row| decode_outcome(model, row, mutator))
        .map(|outcome| sync::push::answered_now(&outcome)))
}

#[allow(clippy::too_many_arguments)]
async fn record_rejection<D: Database>(
    model: &SyncModel,
    db: &D,
    client: &str,
    mutation_id: &str,
    mutator: &str,
    reason: &str,
    now: i64,
    record: sql::MutationRecord<'_>,
) -> Result<MutationOutcome, ApiError> {
    let outcome = MutationOutcome::Rejected { reason: reason.into() };
    let json = serde_json::to_string(&outcome).map_err(ApiError::upstream)?;
    match db.rows(&sql::record_mutation(db.dialect(), client, mutation_id, &json, now, record)).await {
        Ok(_) => Ok(outcome),
        // Not stored, nothing decided: the client asks again.
        Err(error) if error.is_transient() => Err(error),
        // A concurrent retry recorded or applied it first: that answer stands (decoded
        // with the mutator's collection, so a confirmed row comes back whole).
        Err(error) => match stored_outcome(model, db, client, mutation_id, mutator, record).await? {
            Some(existing) => Ok(existing),
            None => Err(error),
        },
    }
}

/// What applying one planned write gave: its outcome and, if it logged a change (the
/// capture trigger computed them), that change's topics.
struct Applied {
    outcome: MutationOutcome,
    topics: Vec<Topic>,
    /// This push's write logged the change (not an answer found stored: a racing
    /// retry, or a first send that was not one).
    logged: bool,
}

/// Reads a write's answer: the rows of the one statement of its group that returned
/// any (which one depends on the dialect and on whether it wrote).
fn answer_rows(results: impl IntoIterator<Item = Vec<RawRow>>) -> Vec<RawRow> {
    results.into_iter().filter(|rows| !rows.is_empty()).last().unwrap_or_default()
}

/// Reads the answer row of a write's statements.
fn applied(model: &SyncModel, write: &PlannedWrite, rows: &[RawRow]) -> Option<Applied> {
    let row = rows.first()?;
    let outcome = decode_outcome(model, row, &write.mutator)?;
    // No change logged (nothing written): no topics.
    Some(Applied { outcome, topics: topics_of(row).unwrap_or_default(), logged: true })
}

/// The statements of one planned write (see `sync::sql::AcceptedMutation`); one of
/// them returns its outcome and the topics of the change it logged.
fn statements(
    model: &SyncModel,
    dialect: Dialect,
    client: &str,
    write: &PlannedWrite,
    now: i64,
) -> Result<Vec<Statement>, ApiError> {
    let collection = model
        .collection(&write.collection)
        .ok_or_else(|| ApiError::bad_request("invalid_operation", "unknown collection"))?;
    let accepted = sql::AcceptedMutation {
        collection,
        operation: &write.operation,
        record_id: &write.record_id,
        client_id: client,
        mutation_id: &write.mutation_id,
        now_ms: now,
    };
    accepted
        .statements(dialect)
        .map_err(|error| ApiError::bad_request("invalid_operation", error.to_string()))
}

/// What applying a push's decisions gave.
#[derive(Default)]
struct AppliedAll {
    /// Each write's outcome, in order.
    writes: Vec<Applied>,
    /// The stored rejections' answers (a racing retry's stored answer stands).
    rejections: Vec<(String, MutationOutcome)>,
    /// The log head after the one transaction (read inside it); `None` after the
    /// fallback.
    head: Option<Cursor>,
    /// The fallback stopped after a write that was refused (the last of `writes`):
    /// the rest must be planned again, and the rejections were not stored yet.
    interrupted: bool,
    /// With the one transaction, each predicted topic's previous change and the
    /// compaction mark, read ahead of the writes ([`read_predecessors`]).
    predecessors: Option<BTreeMap<String, Option<Cursor>>>,
    /// The one transaction was refused and, planned without reading what is stored,
    /// nothing else was tried: read first, then plan again.
    read_first: bool,
}

/// Applies the writes and stores the rejections in one transaction, or one by one if
/// the database refuses it. With the one transaction, the log head after it comes
/// back too (read inside it: no extra round trip for the cursor the push answers). A
/// transient failure is the push's answer (503): nothing was decided, and whatever
/// did commit is answered from its stored outcome on the retry.
#[allow(clippy::too_many_arguments)]
async fn apply_all<D: Database>(
    model: &SyncModel,
    db: &D,
    client: &str,
    writes: &[PlannedWrite],
    rejections: &[&Rejection],
    predicted: &[Topic],
    now: i64,
    planned_on_reads: bool,
) -> Result<AppliedAll, ApiError> {
    if writes.is_empty() && rejections.is_empty() {
        return Ok(AppliedAll::default());
    }
    let planned: Vec<Vec<Statement>> = writes
        .iter()
        .map(|write| statements(model, db.dialect(), client, write, now))
        .collect::<Result<_, _>>()?;
    // The pokes' look back, ahead of the writes in the same transaction: no round
    // trip of its own after the answer.
    let look_back = if predicted.is_empty() {
        Vec::new()
    } else {
        sql::topic_predecessors(db.dialect(), predicted, None)
    };
    let mut all: Vec<Statement> = look_back.clone();
    let mut refused = Vec::new();
    for rejection in rejections {
        let outcome = MutationOutcome::Rejected { reason: rejection.reason.clone() };
        let json = serde_json::to_string(&outcome).map_err(ApiError::upstream)?;
        let record = rejection.record.as_ref().map(|(collection, id)| (collection.as_str(), id.as_str()));
        all.push(sql::record_mutation(db.dialect(), client, &rejection.mutation_id, &json, now, record));
        refused.push((rejection.mutation_id.clone(), outcome));
    }
    all.extend(planned.iter().flatten().cloned());
    all.push(head_statement(db.dialect()));
    match db.write(&all).await {
        Ok(results) => {
            let mut results = results.into_iter();
            let predecessors =
                (!look_back.is_empty()).then(|| read_predecessors(results.by_ref().take(look_back.len())));
            let mut results = results.skip(rejections.len());
            let mut outcomes = Vec::new();
            for (write, statements) in writes.iter().zip(&planned) {
                let rows = answer_rows(results.by_ref().take(statements.len()));
                let answer = applied(model, write, &rows)
                    .ok_or_else(|| ApiError::upstream("an applied mutation left no outcome"))?;
                outcomes.push(answer);
            }
            let head = results.next().map(|rows| head_of(&rows));
            return Ok(AppliedAll {
                writes: outcomes,
                rejections: refused,
                head,
                interrupted: false,
                predecessors,
                read_first: false,
            });
        }
        Err(error) if error.is_transient() => return Err(error),
        Err(_) if !planned_on_reads => {
            return Ok(AppliedAll { read_first: true, ..AppliedAll::default() });
        }
        Err(_) => {}
    }
    let mut outcomes = Vec::new();
    for (write, statements) in writes.iter().zip(&planned) {
        let applied = apply_one(model, db, client, write, statements, now).await?;
        let refused = matches!(applied.outcome, MutationOutcome::Rejected { .. });
        outcomes.push(applied);
        if refused {
            return Ok(AppliedAll { writes: outcomes, interrupted: true, ..AppliedAll::default() });
        }
    }
    let mut answers = Vec::new();
    for Rejection { mutation_id, mutator, reason, record, .. } in rejections.iter().copied() {
        let record = record.as_ref().map(|(collection, id)| (collection.as_str(), id.as_str()));
        let outcome = record_rejection(model, db, client, mutation_id, mutator, reason, now, record).await?;
        answers.push((mutation_id.clone(), outcome));
    }
    Ok(AppliedAll { writes: outcomes, rejections: answers, ..AppliedAll::default() })
}

/// One write in its own transaction (the fallback path).
async fn apply_one<D: Database>(
    model: &SyncModel,
    db: &D,
    client: &str,
    write: &PlannedWrite,
    statements: &[Statement],
    now: i64,
) -> Result<Applied, ApiError> {
    let record = Some((write.collection.as_str(), write.record_id.as_str()));
    match db.write(statements).await {
        Ok(results) => applied(model, write, &answer_rows(results))
            .ok_or_else(|| ApiError::upstream("the applied mutation left no outcome")),
        Err(error) if error.is_transient() => Err(error),
        Err(error) => {
            // Either a concurrent retry claimed the id (its answer stands; it poked)
            // or the database refused the write itself (e.g. the id was inserted
            // meanwhile): nothing was applied, and the refusal is final.
            let outcome = match stored_outcome(model, db, client, &write.mutation_id, &write.mutator, record)
                .await?
            {
                Some(existing) => existing,
                None => {
                    let message = match &error {
                        ApiError::UpstreamRefused { reason } => reason.clone(),
                        other => other.to_string(),
                    };
                    crate::log::error(&format!("write {} refused upstream: {message}", write.mutation_id));
                    let reason = sync::push::refused_reason(&message);
                    record_rejection(
                        model,
                        db,
                        client,
                        &write.mutation_id,
                        &write.mutator,
                        &reason,
                        now,
                        record,
                    )
                    .await?
                }
            };
            Ok(Applied { outcome, topics: Vec::new(), logged: false })
        }
    }
}
