//! The one HTTP error type at the edge: every failure becomes a status code plus a
//! JSON body `{"error": <machine code>, "reason": <human sentence>}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use sync::model::ValidationError;
use sync::protocol::error::ErrorBody;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed or names something the model does not allow.
    #[error("{reason}")]
    BadRequest { code: &'static str, reason: String },
    /// 401: missing or wrong credentials.
    #[error("{reason}")]
    Unauthorized { reason: String },
    /// 401 `needs_auth`: the app's callback found the user's sign-in missing or
    /// expired. Nothing is decided or stored; the client renews its token and retries.
    #[error("{reason}")]
    NeedsAuth { reason: String },
    /// 403: the app's callback said no.
    #[error("{reason}")]
    Forbidden { code: &'static str, reason: String },
    #[error("{reason}")]
    NotFound { reason: String },
    /// 410 `resync_required`: the pull's cursor is older than the compacted change
    /// log; the client fetches its queries' snapshots again (keeping its outbox).
    #[error("{reason}")]
    ResyncRequired { reason: String },
    /// 426: a WebSocket endpoint was called without an upgrade.
    #[error("{reason}")]
    UpgradeRequired { reason: String },
    /// 415: the body is not the media type the endpoint reads.
    #[error("{reason}")]
    UnsupportedMediaType { reason: String },
    #[error("request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// 429: the client sent more requests than the rate limit allows; retry after
    /// `retry_after_s` seconds.
    #[error("{reason}")]
    TooManyRequests { reason: String, retry_after_s: u32 },
    /// 503: the app's callback could not answer (down, slow, non-2xx, not the
    /// documented JSON). Not the user's fault: nothing is decided or stored, and the
    /// client retries after `Retry-After`.
    #[error("{reason}")]
    CallbackUnavailable { reason: String },
    /// 503 `schema_mismatch`: the upstream tables do not match the sync model (a
    /// migration was not applied).
    #[error("{reason}")]
    SchemaMismatch { reason: String },
    /// 503: a required setting is missing.
    #[error("{reason}")]
    NotConfigured { reason: String },
    /// 502: the upstream database gave an answer the connector cannot read.
    #[error("upstream database error: {reason}")]
    Upstream { reason: String },
    /// 502 `upstream_error`: the upstream database refused a statement itself (it
    /// violates a constraint): a write that meets it is rejected for good.
    #[error("upstream database refused: {reason}")]
    UpstreamRefused { reason: String },
    /// 503 `upstream_unavailable`: the upstream database failed in a way that is
    /// nobody's fault (a lost connection, a timeout, overloaded, locked). Nothing is
    /// decided or stored; the client retries after `Retry-After`.
    #[error("upstream database unavailable: {reason}")]
    UpstreamUnavailable { reason: String },
    /// 501 `push_not_on_socket`: a push came on a session's socket, and this worker
    /// takes pushes over HTTP only; the client sends it there.
    #[error("{reason}")]
    PushNotOnSocket { reason: String },
}

impl ApiError {
    pub fn bad_request(code: &'static str, reason: impl Into<String>) -> Self {
        ApiError::BadRequest { code, reason: reason.into() }
    }

    pub fn upstream(error: impl std::fmt::Display) -> Self {
        ApiError::Upstream { reason: error.to_string() }
    }

    /// A failed statement, as [`sync::push::WriteFailure`] classifies it.
    pub fn write_failure(failure: sync::push::WriteFailure) -> Self {
        match failure {
            sync::push::WriteFailure::Transient(reason) => ApiError::UpstreamUnavailable { reason },
            sync::push::WriteFailure::Refused(reason) => ApiError::UpstreamRefused { reason },
        }
    }

    /// A failed SQLite (D1) statement: a violated constraint is a refusal, anything
    /// else transient.
    pub fn sqlite_failure(error: impl std::fmt::Display) -> Self {
        Self::write_failure(sync::push::classify_sqlite_failure(&error.to_string()))
    }

    /// Whether retrying may succeed: nothing was decided.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ApiError::UpstreamUnavailable { .. }
                | ApiError::CallbackUnavailable { .. }
                | ApiError::NeedsAuth { .. }
                | ApiError::TooManyRequests { .. }
                | ApiError::SchemaMismatch { .. }
                | ApiError::NotConfigured { .. }
        )
    }

    /// The reason a client is told. What the database or the app's callback said
    /// (constraint names, callback URLs, connection details) stays in the log: the
    /// client gets a sentence that says whose failure it was and what to do.
    pub fn public_reason(&self) -> String {
        let public = match self {
            ApiError::Upstream { .. } => {
                "the upstream database gave an answer the connector cannot read".into()
            }
            ApiError::UpstreamRefused { .. } => "the upstream database refused the statement".into(),
            ApiError::UpstreamUnavailable { .. } => {
                "the upstream database is unavailable; retry shortly".into()
            }
            // What kind of failure it was is the client's to know ("it answered HTTP
            // 500"); the details after it, in parentheses, are not.
            ApiError::CallbackUnavailable { reason } => {
                let category = reason.split(" (").next().unwrap_or_default();
                format!("{category}; retry shortly")
            }
            _ => return self.to_string(),
        };
        crate::log::error(&format!("{}: {self}", self.code()));
        public
    }

    /// The HTTP status it is answered with.
    pub fn status(&self) -> u16 {
        self.status_and_code().0.as_u16()
    }

    /// The machine-readable code of the JSON body (`error`).
    pub fn code(&self) -> &'static str {
        self.status_and_code().1
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest { code, .. } => (StatusCode::BAD_REQUEST, code),
            ApiError::Unauthorized { .. } => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::NeedsAuth { .. } => (StatusCode::UNAUTHORIZED, sync::protocol::error::NEEDS_AUTH),
            ApiError::Forbidden { code, .. } => (StatusCode::FORBIDDEN, code),
            ApiError::NotFound { .. } => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::ResyncRequired { .. } => (StatusCode::GONE, sync::protocol::error::RESYNC_REQUIRED),
            ApiError::UpgradeRequired { .. } => (StatusCode::UPGRADE_REQUIRED, "upgrade_required"),
            ApiError::PayloadTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::UnsupportedMediaType { .. } => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            ApiError::TooManyRequests { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ApiError::CallbackUnavailable { .. } => (StatusCode::SERVICE_UNAVAILABLE, "callback_unavailable"),
            ApiError::NotConfigured { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, sync::protocol::error::NOT_CONFIGURED)
            }
            ApiError::SchemaMismatch { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, sync::protocol::error::SCHEMA_MISMATCH)
            }
            ApiError::Upstream { .. } | ApiError::UpstreamRefused { .. } => {
                (StatusCode::BAD_GATEWAY, "upstream_error")
            }
            ApiError::UpstreamUnavailable { .. } => (StatusCode::SERVICE_UNAVAILABLE, "upstream_unavailable"),
            ApiError::PushNotOnSocket { .. } => {
                (StatusCode::NOT_IMPLEMENTED, sync::protocol::socket_push::PUSH_NOT_ON_SOCKET)
            }
        }
    }
}

impl From<ValidationError> for ApiError {
    fn from(error: ValidationError) -> Self {
        ApiError::BadRequest { code: error.code(), reason: error.to_string() }
    }
}

/// Seconds a client waits before retrying after a callback or the upstream failed.
const CALLBACK_RETRY_AFTER_S: u32 = 2;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let reason = sync::protocol::error::bounded_reason(self.public_reason());
        let body = ErrorBody { error: code.to_string(), reason };
        let mut response = (status, Json(body)).into_response();
        response.extensions_mut().insert(crate::observe::ErrorCode(code));
        let retry_after_s = match self {
            ApiError::TooManyRequests { retry_after_s, .. } => Some(retry_after_s),
            ApiError::CallbackUnavailable { .. } | ApiError::UpstreamUnavailable { .. } => {
                Some(CALLBACK_RETRY_AFTER_S)
            }
            _ => None,
        };
        if let Some(value) =
            retry_after_s.and_then(|s| axum::http::HeaderValue::from_str(&s.to_string()).ok())
        {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, value);
        }
        response
    }
}

/// `405` with the JSON body every error has.
pub async fn method_not_allowed(axum::extract::OriginalUri(uri): axum::extract::OriginalUri) -> Response {
    let body = ErrorBody {
        error: "method_not_allowed".into(),
        reason: format!("{} does not answer this method", uri.path()),
    };
    (StatusCode::METHOD_NOT_ALLOWED, Json(body)).into_response()
}

pub async fn api_not_found(axum::extract::OriginalUri(uri): axum::extract::OriginalUri) -> ApiError {
    ApiError::NotFound { reason: format!("no API endpoint at {}", uri.path()) }
}
