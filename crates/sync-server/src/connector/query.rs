//! `POST /sync/query`: run a named read.

use axum::Json;
use axum::extract::Extension;
use axum::http::HeaderMap;
use sync::changes::Cursor;
use sync::protocol::query::{QueryRequest, QueryResponse};
use sync::sql;
use worker::Env;

use super::{admit, authorization, parse_json, read_body};
use crate::durable;
use crate::engine::{Engine, QueryVerdict, query_denied};
use crate::error::ApiError;
use crate::upstream::{Database, Upstream, head_of, head_statement};

#[worker::send]
pub async fn query(
    Extension(engine): Extension<Engine>,
    Extension(env): Extension<Env>,
    headers: HeaderMap,
    raw: axum::extract::Request,
) -> Result<Json<QueryResponse>, ApiError> {
    let request: QueryRequest = parse_json(&read_body(raw).await?)?;
    admit(&env, &headers, request.protocol_version, &request.client_id, &request.session_id).await?;
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
    durable::subscribe(&env, &request.session_id, &request.client_id, watched, None).await?;
    let (rows, cursor) = read(&engine, &env, &validated).await?;
    Ok(Json(QueryResponse { rows, cursor, topic: validated.topic }))
}

/// Runs a validated read upstream: its rows and the cursor they are exact at (one
/// transaction).
pub async fn read(
    engine: &Engine,
    env: &Env,
    validated: &sync::ValidatedQuery,
) -> Result<(Vec<sync::schema::Row>, Cursor), ApiError> {
    let db = Upstream::open(engine, env).await?;
    read_rows(engine.model(), &db, validated).await
}

/// [`read`] on any upstream.
pub async fn read_rows<D: Database>(
    model: &sync::SyncModel,
    db: &D,
    validated: &sync::ValidatedQuery,
) -> Result<(Vec<sync::schema::Row>, Cursor), ApiError> {
    let collection = model
        .collection(&validated.select.collection)
        .ok_or_else(|| ApiError::bad_request("invalid_operation", "unknown collection"))?;
    let select = sql::select(db.dialect(), collection, &validated.select)
        .map_err(|error| ApiError::bad_request("invalid_operation", error.to_string()))?;
    let mut results = db.read(&[head_statement(db.dialect()), select]).await?.into_iter();
    let cursor = head_of(&results.next().unwrap_or_default());
    let rows =
        results.next().unwrap_or_default().into_iter().map(|raw| sql::decode_row(collection, raw)).collect();
    Ok((rows, cursor))
}
