//! `POST /sync/pull`: changes since a cursor for the caller's subscriptions.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::Json;
use axum::extract::Extension;
use axum::http::HeaderMap;
use sync::SyncModel;
use sync::changes::{Change, ChangeKind, Cursor, Topic};
use sync::protocol::pull::{PullRequest, PullResponse};
use sync::sql::{self, Statement};
use worker::{Context, Env};

use super::{PULL_PAGE, admit, authorization, parse_json, read_body};
use crate::durable;
use crate::engine::Engine;
use crate::error::ApiError;
use crate::upstream::{Database, RawRow, Upstream, head_statement, integer, topics_of};

/// The largest cursor a pull may name (2^53 - 1).
pub const MAX_CURSOR: u64 = (1 << 53) - 1;

thread_local! {
    /// The highest log head this isolate has read: the log only grows, so a cursor at
    /// or below it is one the log has reached.
    static KNOWN_HEAD: Cell<u64> = const { Cell::new(0) };
}

/// Most subscriptions one pull may name.
const MAX_SUBSCRIPTIONS: usize = 50;

#[worker::send]
pub async fn pull(
    Extension(engine): Extension<Engine>,
    Extension(env): Extension<Env>,
    Extension(ctx): Extension<Arc<Context>>,
    headers: HeaderMap,
    raw: axum::extract::Request,
) -> Result<Json<PullResponse>, ApiError> {
    let request: PullRequest = parse_json(&read_body(raw).await?)?;
    admit(&env, &headers, request.protocol_version, &request.client_id, &request.session_id).await?;
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
    let mut topics = BTreeSet::new();
    // Each topic from where its query stands: the request's cursor, or further.
    let mut since: BTreeMap<Topic, Cursor> = BTreeMap::new();
    for subscription in &request.subscriptions {
        if subscription.cursor.is_some_and(|cursor| cursor.0 > MAX_CURSOR) {
            return Err(ApiError::bad_request("invalid_cursor", format!("a cursor is at most {MAX_CURSOR}")));
        }
        // Every subscribed read is checked and authorized like the read itself.
        let validated = engine
            .authorized_query(
                &env,
                authorization(&headers),
                &request.client_id,
                &request.session_id,
                &subscription.name,
                &subscription.args,
            )
            .await?;
        let from = subscription.cursor.unwrap_or(request.cursor).max(request.cursor);
        // Named twice, a topic is read from the lower cursor.
        since.entry(validated.topic.clone()).and_modify(|held| *held = (*held).min(from)).or_insert(from);
        topics.insert(validated.topic);
    }
    let topics: Vec<Topic> = topics.into_iter().collect();
    // Watch before reading, so no change after the read goes unpoked. A cursor this
    // isolate has seen the log reach is remembered at once (pokes at or below it are
    // skipped); any other only once the read shows the log reached it.
    let vouched = request.cursor.0 <= KNOWN_HEAD.with(Cell::get);
    let watched: Vec<String> = topics.iter().map(Topic::to_string).collect();
    let ack_now = vouched.then_some(request.cursor.0);
    // Already watching (confirmed before in this isolate): no object call on the way;
    // the call after answering refreshes the topics' authorization instead.
    let called =
        durable::watch_before_read(&env, &request.session_id, &request.client_id, watched.clone(), ack_now)
            .await?;
    let refresh = if called { Vec::new() } else { watched };
    // One more than a page tells whether more remain.
    let db = Upstream::open(&engine, &env).await?;
    let head = head_statement(db.dialect());
    let through = Statement { sql: sql::compacted_through().into(), params: Vec::new() };
    let mut groups: BTreeMap<Cursor, Vec<Topic>> = BTreeMap::new();
    for (topic, from) in &since {
        groups.entry(*from).or_default().push(topic.clone());
    }
    let furthest = groups.keys().next_back().copied().unwrap_or(request.cursor);
    let groups: Vec<(Cursor, Vec<Topic>)> = groups.into_iter().collect();
    let page = sql::pull_changes_since(db.dialect(), &groups, PULL_PAGE + 1);
    let mut results = db.read(&[head, through, page]).await?.into_iter();
    let mut cell = |column: &str| {
        let value = results.next().and_then(|rows| rows.first().and_then(|row| integer(row, column)));
        Cursor(value.and_then(|value| u64::try_from(value).ok()).unwrap_or(0))
    };
    let (head, through) = (cell("head"), cell("through"));
    // A cursor the log has not reached is never answered nor remembered: remembered,
    // it would silence the session's pokes up to it.
    if furthest.max(request.cursor) > head {
        return Err(ApiError::bad_request(
            "invalid_cursor",
            format!("cursor {} is beyond the change log's head {}", furthest.max(request.cursor).0, head.0),
        ));
    }
    KNOWN_HEAD.with(|known| known.set(known.get().max(head.0)));
    if request.cursor < through {
        // Changes this client would need (deletes, superseded images) were compacted.
        return Err(ApiError::ResyncRequired {
            reason: format!(
                "cursor {} is older than the compacted change log (through {}): fetch the queries again",
                request.cursor.0, through.0
            ),
        });
    }
    let mut changes: Vec<Change> = results
        .next()
        .unwrap_or_default()
        .iter()
        .filter_map(|row| decode_change(engine.model(), row))
        .collect();
    let has_more = changes.len() > PULL_PAGE as usize;
    changes.truncate(PULL_PAGE as usize);
    let cursor = match (has_more, changes.last()) {
        (true, Some(last)) => last.seq,
        _ => head,
    };
    // Each record's latest image in this page only: superseded texts are never sent.
    let changes = sync::changes::latest_per_record(changes);
    // The client holds everything through `cursor` once it reads this answer: pokes
    // at or below it are skipped, and pokes held back while it pulled go out now.
    // Recorded after answering; a poke meanwhile is merely redundant.
    let (session, client, acknowledged) = (request.session_id.clone(), request.client_id.clone(), cursor.0);
    ctx.wait_until(async move {
        if let Err(error) = durable::subscribe(&env, &session, &client, refresh, Some(acknowledged)).await {
            worker::console_error!("acknowledging cursor {acknowledged}: {error}");
        }
    });
    Ok(Json(PullResponse { changes, cursor, has_more }))
}

fn decode_change(model: &SyncModel, row: &RawRow) -> Option<Change> {
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
