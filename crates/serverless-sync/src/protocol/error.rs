//! Every error answer from the connector: an HTTP status and `{"error", "reason"}`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Stable machine-readable code, e.g. `unknown_query`.
    pub error: String,
    /// A sentence for humans.
    pub reason: String,
}

/// `error` of a 401 that asks for a new sign-in: the app's callback found the user's
/// token missing or expired. Nothing was decided; the client keeps its writes and
/// sends them again with a new token.
pub const NEEDS_AUTH: &str = "needs_auth";

/// `error` of a 410 pull answer: the cursor is older than the compacted change log
/// reaches. The client fetches its queries' snapshots again (keeping its outbox).
pub const RESYNC_REQUIRED: &str = "resync_required";

/// `error` of a 503: the upstream tables lack what the model names (a migration not
/// applied). Retried like any 503; the page says the server is not ready.
pub const SCHEMA_MISMATCH: &str = "schema_mismatch";

/// `error` of a 503: the deployment lacks a setting or binding it needs. Retried like
/// any 503; the page says the server is not ready.
pub const NOT_CONFIGURED: &str = "not_configured";

/// Reasons are sentences, not echoes: what they quote of a request is cut so that a
/// reason (answered, or stored with a rejection) never exceeds this many characters.
pub const MAX_REASON_CHARS: usize = 400;

/// `reason` cut to [`MAX_REASON_CHARS`] characters (an ellipsis marks the cut).
pub fn bounded_reason(mut reason: String) -> String {
    if let Some((cut, _)) = reason.char_indices().nth(MAX_REASON_CHARS) {
        reason.truncate(cut);
        reason.push('…');
    }
    reason
}
