//! `POST /sync/pull`: changes since a cursor for the caller's subscriptions.

use axum::Json;
use axum::extract::Extension;
use axum::http::HeaderMap;
use sync::SyncModel;
use sync::changes::{Change, ChangeKind, Cursor, Topic};
use sync::protocol::pull::{PullRequest, PullResponse, RefusedSubscription};
use sync::pull::{Deliverable, Page, PullPlan, PullRefusal};
use sync::sql::{self, Statement};
use worker::Env;

use super::{PULL_PAGE, admit, authorization, parse_json, read_body, require_sign_in};
use crate::durable;
use crate::engine::{QueryVerdict, TracedEngine};
use crate::error::ApiError;
use crate::upstream::{Database, RawRow, Upstream, head_statement, integer, topics_of};

/// The largest cursor a pull may name (2^53 - 1).
pub const MAX_CURSOR: u64 = (1 << 53) - 1;

/// Most subscriptions one pull may name.
const MAX_SUBSCRIPTIONS: usize = 50;

#[worker::send]
pub async fn pull(
    TracedEngine(engine): TracedEngine,
    Extension(env): Extension<Env>,
    Extension(after): Extension<crate::AfterAnswer>,
    headers: HeaderMap,
    raw: axum::extract::Request,
) -> Result<Json<PullResponse>, ApiError> {
    let request: PullRequest = parse_json(&read_body(raw).await?)?;
    let admitted =
        admit(&engine, &env, &headers, request.protocol_version, &request.client_id, &request.session_id)
            .await?;
    // Cursors are change-log sequence numbers: the databases count them exactly up to
    // 2^53 - 1 (D1 through JavaScript numbers).
    if request.cursor.0 > MAX_CURSOR {
        return Err(ApiError::bad_request("invalid_cursor", format!("a cursor is at most {MAX_CURSOR}")));
    }
    if request.subscriptions.len() > MAX_SUBSCRIPTIONS {
        return Err(ApiError::bad_request(
            "too_many_subscriptions",
            format!("a pull names at most {MAX_SUBSCRIPTIONS} subscriptions"),
        ));
    }
    if request.subscriptions.is_empty() {
        require_sign_in(&engine, &env, &headers).await?;
    }
    // Every subscribed read is checked and authorized like the read itself; the
    // app's "no" to one is answered for that one, the others are served.
    let mut authorized = Vec::new();
    let mut refused = Vec::new();
    for subscription in &request.subscriptions {
        if subscription.cursor.is_some_and(|cursor| cursor.0 > MAX_CURSOR) {
            return Err(ApiError::bad_request("invalid_cursor", format!("a cursor is at most {MAX_CURSOR}")));
        }
        let verdict = engine
            .judge_query(
                &env,
                authorization(&headers),
                &request.client_id,
                &request.session_id,
                &subscription.name,
                &subscription.args,
            )
            .await?;
        match verdict {
            QueryVerdict::Allowed(validated) => authorized.push((validated.topic, subscription.cursor)),
            QueryVerdict::Refused { query, reason } => refused.push(RefusedSubscription {
                name: query.name,
                args: query.args,
                topic: query.topic.to_string(),
                reason,
            }),
        }
    }
    if !refused.is_empty() {
        // Unwatched before the "no" is answered: no poke for them after this.
        let topics = refused.iter().map(|refusal| refusal.topic.clone()).collect();
        durable::refuse(&env, &request.session_id, &request.client_id, topics).await?;
    }
    let plan = PullPlan::new(request.cursor, authorized);
    // Watch before reading, so no change after the read goes unpoked (the isolate's
    // memo may skip the call, `sync::memo`).
    let watched: Vec<String> = plan.topics().iter().map(Topic::to_string).collect();
    let new_watches =
        durable::with_memo(|memo| memo.unknown_watches(&request.session_id, &request.client_id, &watched));
    admitted.limit_new_watches(&env, new_watches).await?;
    let refresh =
        durable::watch_before_read(&env, &request.session_id, &request.client_id, watched, request.cursor)
            .await?;
    let db = Upstream::open(&engine, &env).await?;
    let (page, head) = read_page(engine.model(), &db, &plan).await?;
    durable::with_memo(|memo| memo.saw_head(head));
    let page = page?;
    if let Some(trace) = engine.trace() {
        trace.counts(0, page.changes.len(), 0);
    }
    // The client holds everything through `cursor` once it reads this answer: pokes
    // at or below it are skipped, and pokes held back while it pulled go out now.
    // Recorded after answering; a poke meanwhile is merely redundant.
    if let Some(refresh) = refresh {
        let (session, client, acknowledged) =
            (request.session_id.clone(), request.client_id.clone(), page.cursor.0);
        after.run(async move {
            if let Err(error) = durable::subscribe(&env, &session, &client, refresh, Some(acknowledged)).await
            {
                worker::console_error!("acknowledging cursor {acknowledged}: {error}");
            }
        });
    }
    Ok(Json(PullResponse { changes: page.changes, cursor: page.cursor, has_more: page.has_more, refused }))
}

/// Reads one page of `plan` from any upstream: the head, the compaction mark and the
/// deliverable changes in one snapshot, answered as [`PullPlan`] decides. Also
/// returns the head it read (the log reached it, whatever the answer).
pub async fn read_page<D: Database>(
    model: &SyncModel,
    db: &D,
    plan: &PullPlan,
) -> Result<(Result<Page, ApiError>, Cursor), ApiError> {
    let head = head_statement(db.dialect());
    let through = Statement { sql: sql::compacted_through().into(), params: Vec::new() };
    // One more than a page tells whether more remain.
    let page = sql::pull_changes_since(db.dialect(), &plan.groups(), PULL_PAGE + 1);
    let mut results = db.read(&[head, through, page]).await?.into_iter();
    let mut cell = |column: &str| {
        let value = results.next().and_then(|rows| rows.first().and_then(|row| integer(row, column)));
        Cursor(value.and_then(|value| u64::try_from(value).ok()).unwrap_or(0))
    };
    let (head, through) = (cell("head"), cell("through"));
    if let Err(refusal) = plan.check(head, through) {
        let error = match refusal {
            PullRefusal::BeyondHead { .. } => ApiError::bad_request("invalid_cursor", refusal.to_string()),
            PullRefusal::Compacted { .. } => ApiError::ResyncRequired { reason: refusal.to_string() },
        };
        return Ok((Err(error), head));
    }
    let fetched: Vec<Deliverable> = results
        .next()
        .unwrap_or_default()
        .iter()
        .filter_map(|row| {
            let outdated =
                row.get("outdated").is_some_and(|cell| cell.as_bool().unwrap_or(cell.as_i64() == Some(1)));
            decode_change(model, row).map(|change| Deliverable { change, outdated })
        })
        .collect();
    Ok((Ok(plan.page(model, head, fetched, PULL_PAGE as usize)), head))
}

pub fn decode_change(model: &SyncModel, row: &RawRow) -> Option<Change> {
    let text = |column: &str| row.get(column).and_then(|value| value.as_str()).map(str::to_string);
    let collection_name = text("collection")?;
    let collection = model.collection(&collection_name)?;
    let image = text("row_json")
        .and_then(|json| serde_json::from_str::<RawRow>(&json).ok())
        .map(|raw| sql::decode_row(collection, raw));
    Some(Change {
        seq: Cursor(u64::try_from(integer(row, "seq")?).ok()?),
        collection: collection_name,
        record_id: text("record_id")?,
        kind: if text("kind")? == "delete" { ChangeKind::Delete } else { ChangeKind::Upsert },
        row: image,
        topics: topics_of(row)?,
        client_id: text("client_id")?,
        mutation_id: text("mutation_id")?,
    })
}
