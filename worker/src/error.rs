//! The one HTTP error type at the edge: every failure becomes a status code plus a
//! JSON body `{"error": <machine code>, "reason": <human sentence>}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{reason}")]
    NotFound { reason: String },
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    reason: String,
}

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::NotFound { .. } => (StatusCode::NOT_FOUND, "not_found"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let body = ErrorBody { error: code, reason: self.to_string() };
        (status, Json(body)).into_response()
    }
}

pub async fn api_not_found(axum::extract::OriginalUri(uri): axum::extract::OriginalUri) -> ApiError {
    ApiError::NotFound { reason: format!("no API endpoint at {}", uri.path()) }
}

/// Paths that are neither a page, an API endpoint nor a static asset.
pub async fn page_not_found() -> (StatusCode, axum::response::Html<&'static str>) {
    (
        StatusCode::NOT_FOUND,
        axum::response::Html(
            "<!DOCTYPE html><title>Not found</title><p>Page not found. <a href=\"/\">Back to the chat</a></p>",
        ),
    )
}
