//! Connector -> app: "may this client run this named read?"
//!
//! Body of the POST to the query callback; the answer is a [`super::Decision`].

use serde::{Deserialize, Serialize};

use super::OperationKind;
use crate::Value;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryCallbackRequest {
    /// The query's args after normalization.
    pub args: Value,
    pub client_id: String,
    pub operation_name: String,
    /// Always [`OperationKind::Query`].
    pub operation_kind: OperationKind,
    pub session_id: String,
}

impl QueryCallbackRequest {
    pub fn new(client_id: &str, session_id: &str, operation_name: &str, args: Value) -> Self {
        Self {
            args,
            client_id: client_id.into(),
            operation_name: operation_name.into(),
            operation_kind: OperationKind::Query,
            session_id: session_id.into(),
        }
    }
}
