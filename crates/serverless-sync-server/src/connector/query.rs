//! `POST /sync/query`: run a named read.

use axum::Json;
use axum::extract::Extension;
use axum::http::HeaderMap;
use sync::changes::Cursor;
use sync::protocol::query::{QueryPage, QueryRequest, QueryResponse};
use sync::sql;
use worker::Env;

use super::{admit, authorization, parse_json, read_body};
use crate::durable;
use crate::engine::{QueryVerdict, TracedEngine, query_denied};
use crate::error::ApiError;
use crate::upstream::{Database, Upstream, head_of, head_statement};

#[worker::send]
pub async fn query(
    TracedEngine(engine): TracedEngine,
    Extension(env): Extension<Env>,
    headers: HeaderMap,
    raw: axum::extract::Request,
) -> Result<Json<QueryResponse>, ApiError> {
    let request: QueryRequest = parse_json(&read_body(raw).await?)?;
    let admitted =
        admit(&engine, &env, &headers, request.protocol_version, &request.client_id, &request.session_id)
            .await?;
    let verdict = engine
        .judge_query(
            &env,
            authorization(&headers),
            &request.client_id,
            &request.session_id,
            &request.name,
            &request.args,
        )
        .await?;
    let validated = match verdict {
        QueryVerdict::Allowed(validated) => validated,
        QueryVerdict::Refused { query, reason } => {
            // Unwatched before the "no" is answered: no poke for it after this.
            durable::refuse(&env, &request.session_id, &request.client_id, vec![query.topic.to_string()])
                .await?;
            return Err(query_denied(reason));
        }
    };
    // Subscribe before reading, so no change between the read and the subscription
    // goes unpoked. (This also checks the session belongs to this client.)
    let watched = vec![validated.topic.to_string()];
    let new_watches =
        durable::with_memo(|memo| memo.unknown_watches(&request.session_id, &request.client_id, &watched));
    admitted.limit_new_watches(&env, new_watches).await?;
    durable::subscribe(&env, &request.session_id, &request.client_id, watched.clone(), None).await?;
    // Asked again (a remount, a view opened twice), the same topic is no new watch.
    durable::with_memo(|memo| memo.remember_watch(&request.session_id, &request.client_id, &watched));
    let db = Upstream::open(&engine, &env).await?;
    let rows = page_rows(engine.model(), &validated);
    let answer =
        read_page(engine.model(), &db, &validated, request.after.as_ref(), request.window, rows).await?;
    if let Some(trace) = engine.trace() {
        trace.counts(0, 0, answer.rows.len());
    }
    Ok(Json(QueryResponse {
        rows: answer.rows,
        cursor: answer.cursor,
        topic: validated.topic,
        more: answer.more,
        complete: answer.complete,
    }))
}

/// Bytes one page of a query's answer may take at most, by its columns' limits.
const PAGE_BYTES: usize = 16 << 20;
/// Rows one page holds at most.
const PAGE_ROWS: usize = 2_000;

/// How many rows a page of `validated` holds: as many as fit in `PAGE_BYTES` at
/// the model's value limits (`sync::SyncModel::value_limit`; an app that declares
/// tighter limits gets larger pages), between 50 and `PAGE_ROWS`.
pub fn page_rows(model: &sync::SyncModel, validated: &sync::ValidatedQuery) -> u32 {
    let row_bytes: usize = model.collection(&validated.select.collection).map_or(PAGE_BYTES, |collection| {
        collection
            .columns
            .iter()
            .map(|column| match column.column_type {
                sync::ColumnType::Text | sync::ColumnType::Json => {
                    model.value_limit(collection, &column.name)
                }
                _ => 8,
            })
            .sum()
    });
    let rows = (PAGE_BYTES / row_bytes.max(1)).clamp(50, PAGE_ROWS);
    u32::try_from(rows).unwrap_or(50)
}

/// One page of a query's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct AnswerPage {
    pub rows: Vec<sync::schema::Row>,
    /// The change-log position the rows are exact at.
    pub cursor: Cursor,
    pub more: Option<QueryPage>,
    /// No row of the query follows this page.
    pub complete: bool,
}

/// Reads the page of `validated` after `after` (the first without), at most `rows`
/// rows and never beyond the query's window (`window`, else its own limit; see
/// `sync::window`), with the head, in one snapshot.
pub async fn read_page<D: Database>(
    model: &sync::SyncModel,
    db: &D,
    validated: &sync::ValidatedQuery,
    after: Option<&QueryPage>,
    window: Option<u32>,
    rows: u32,
) -> Result<AnswerPage, ApiError> {
    let collection = model
        .collection(&validated.select.collection)
        .ok_or_else(|| ApiError::bad_request("invalid_operation", "unknown collection"))?;
    let orders = sql::order_columns(collection, &validated.select);
    if let Some(after) = after {
        // A continuation is the client's to send: each value must fit its column.
        if after.after.len() != orders.len() {
            return Err(ApiError::bad_request(
                "invalid_continuation",
                format!("a continuation of `{}` names {} values", validated.name, orders.len()),
            ));
        }
        for ((column, _), value) in orders.iter().zip(&after.after) {
            model.check_value(&validated.name, collection, column, value)?;
        }
    }
    let served = after.map_or(0, |page| page.served);
    let total = match window {
        Some(window) => sync::window::window_size(&validated.select, Some(window)),
        None => validated.select.limit,
    };
    let remaining = total.map(|limit| u64::from(limit).saturating_sub(served));
    let take = remaining.map_or(rows, |left| u32::try_from(left.min(u64::from(rows))).unwrap_or(rows));
    if take == 0 {
        let head = db.rows(&head_statement(db.dialect())).await?;
        return Ok(AnswerPage { rows: Vec::new(), cursor: head_of(&head), more: None, complete: false });
    }
    // One row more than the page tells whether the answer goes on past it.
    let page = sql::Page {
        after: after.map(|page| page.after.as_slice()),
        rows: Some(take.saturating_add(1)),
        ..sql::Page::default()
    };
    let select = sql::select_page(db.dialect(), collection, &validated.select, &page)
        .map_err(|error| ApiError::bad_request("invalid_continuation", error.to_string()))?;
    let mut results = db.read(&[head_statement(db.dialect()), select]).await?.into_iter();
    let cursor = head_of(&results.next().unwrap_or_default());
    let mut rows: Vec<sync::schema::Row> =
        results.next().unwrap_or_default().into_iter().map(|raw| sql::decode_row(collection, raw)).collect();
    let complete = rows.len() <= take as usize;
    rows.truncate(take as usize);
    let full = !complete && remaining.is_none_or(|left| left > u64::from(take));
    let more = match rows.last() {
        Some(last) if full => Some(QueryPage {
            after: orders.iter().map(|(column, _)| last.get(column).cloned().unwrap_or_default()).collect(),
            served: served + rows.len() as u64,
        }),
        _ => None,
    };
    Ok(AnswerPage { rows, cursor, more, complete })
}

/// The last `rows` rows of `validated` in its order (e.g. a page rendered on the
/// server shows the newest posts only), with the head they are exact at.
pub async fn read_last<D: Database>(
    model: &sync::SyncModel,
    db: &D,
    validated: &sync::ValidatedQuery,
    rows: u32,
) -> Result<(Vec<sync::schema::Row>, Cursor), ApiError> {
    let collection = model
        .collection(&validated.select.collection)
        .ok_or_else(|| ApiError::bad_request("invalid_operation", "unknown collection"))?;
    let take = validated.select.limit.map_or(rows, |limit| limit.min(rows));
    let page = sql::Page { rows: Some(take), from_end: true, ..sql::Page::default() };
    let select = sql::select_page(db.dialect(), collection, &validated.select, &page)
        .map_err(|error| ApiError::bad_request("invalid_operation", error.to_string()))?;
    let mut results = db.read(&[head_statement(db.dialect()), select]).await?.into_iter();
    let cursor = head_of(&results.next().unwrap_or_default());
    let mut rows: Vec<sync::schema::Row> =
        results.next().unwrap_or_default().into_iter().map(|raw| sql::decode_row(collection, raw)).collect();
    rows.reverse();
    Ok((rows, cursor))
}
