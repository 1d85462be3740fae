//! `POST /sync/pull`: changes since a cursor for the caller's subscriptions.

use std::collections::BTreeSet;

use axum::Json;
use axum::extract::Extension;
use axum::http::HeaderMap;
use sync::SyncModel;
use sync::changes::{Change, ChangeKind, Cursor, Topic};
use sync::protocol::pull::{PullRequest, PullResponse};
use sync::sql::{self, Statement};
use worker::Env;

use super::{PULL_PAGE, authorization, check_ids, check_protocol, parse_json, read_body};
use crate::durable;
use crate::engine::Engine;
use crate::error::ApiError;
use crate::upstream::{Database, RawRow, Upstream, integer};

/// Most subscriptions one pull may name.
const MAX_SUBSCRIPTIONS: usize = 50;

#[worker::send]
pub async fn pull(
    Extension(engine): Extension<Engine>,
    Extension(env): Extension<Env>,
    headers: HeaderMap,
    raw: axum::extract::Request,
) -> Result<Json<PullResponse>, ApiError> {
    let request: PullRequest = parse_json(&read_body(raw).await?)?;
    check_protocol(request.protocol_version)?;
    check_ids(&request.client_id, &request.session_id)?;
    if request.subscriptions.len() > MAX_SUBSCRIPTIONS {
        return Err(ApiError::bad_request(
            "too_many_subscriptions",
            format!("a pull names at most {MAX_SUBSCRIPTIONS} subscriptions"),
        ));
    }
    let mut topics = BTreeSet::new();
    for subscription in &request.subscriptions {
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
        topics.insert(validated.topic);
    }
    let topics: Vec<Topic> = topics.into_iter().collect();
    // Also records the cursor the client holds: pokes at or below it are skipped.
    let watched = topics.iter().map(Topic::to_string).collect();
    durable::subscribe(&env, &request.session_id, &request.client_id, watched, Some(request.cursor.0))
        .await?;
    let head = Statement { sql: sql::change_head().into(), params: Vec::new() };
    // One more than a page tells whether more remain.
    let db = Upstream::open(&engine, &env).await?;
    let page = sql::pull_changes(db.dialect(), request.cursor, &topics, PULL_PAGE + 1);
    let mut results = db.read(&[head, page]).await?.into_iter();
    let head = results.next().and_then(|rows| rows.first().and_then(|row| integer(row, "head"))).unwrap_or(0);
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
        _ => Cursor(head.max(0) as u64).max(request.cursor),
    };
    Ok(Json(PullResponse { changes, cursor, has_more }))
}

fn decode_change(model: &SyncModel, row: &RawRow) -> Option<Change> {
    let text = |column: &str| row.get(column).and_then(|value| value.as_str()).map(str::to_string);
    let collection_name = text("collection")?;
    let collection = model.collection(&collection_name)?;
    let image = text("row_json")
        .and_then(|json| serde_json::from_str::<RawRow>(&json).ok())
        .map(|raw| sql::decode_row(collection, raw));
    let topics: Vec<String> = serde_json::from_str(&text("topics_json")?).ok()?;
    Some(Change {
        seq: Cursor(u64::try_from(integer(row, "seq")?).ok()?),
        collection: collection_name,
        record_id: text("record_id")?,
        kind: if text("kind")? == "delete" { ChangeKind::Delete } else { ChangeKind::Upsert },
        row: image,
        topics: topics.into_iter().map(Topic::from_raw).collect(),
        client_id: text("client_id")?,
        mutation_id: text("mutation_id")?,
    })
}
