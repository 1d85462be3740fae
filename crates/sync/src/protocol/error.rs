//! Every error answer from the connector: an HTTP status and `{"error", "reason"}`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Stable machine-readable code, e.g. `unknown_query`.
    pub error: String,
    /// A sentence for humans.
    pub reason: String,
}
