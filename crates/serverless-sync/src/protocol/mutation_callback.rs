//! Connector -> app: "may these queued writes be applied?"
//!
//! The app may allow or reject each operation (`{"operations": [...]}`) or reject the
//! whole batch (`{"allow": false, "reason": ...}`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Decision, JsonObject, OperationKind, from_object};
use crate::Value;
use crate::model::MutationKind;
use crate::server::Verdict;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MutationCallbackRequest {
    pub client_id: String,
    /// Always [`OperationKind::Mutation`].
    pub operation_kind: OperationKind,
    pub operations: Vec<MutationCallbackOperation>,
    pub session_id: String,
}

impl MutationCallbackRequest {
    pub fn new(client_id: &str, session_id: &str, operations: Vec<MutationCallbackOperation>) -> Self {
        Self {
            client_id: client_id.into(),
            operation_kind: OperationKind::Mutation,
            operations,
            session_id: session_id.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MutationCallbackOperation {
    /// The mutator's args after normalization.
    pub args: Value,
    pub collection: String,
    /// The outbox id of the mutation (`outbox_...`).
    pub id: String,
    pub mutation_kind: MutationKind,
    pub operation_name: String,
    /// The record written (`card_...`).
    pub record_id: String,
}

/// The verdict on one operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "JsonObject")]
pub struct OperationDecision {
    pub allow: bool,
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged, try_from = "JsonObject")]
pub enum MutationCallbackResponse {
    PerOperation { operations: Vec<OperationDecision> },
    Batch(Decision),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOperationDecision {
    allow: bool,
    id: String,
    #[serde(default)]
    reason: Option<String>,
}

impl TryFrom<JsonObject> for OperationDecision {
    type Error = serde_json::Error;

    fn try_from(object: JsonObject) -> Result<Self, Self::Error> {
        let raw: RawOperationDecision = from_object(object)?;
        Ok(OperationDecision { allow: raw.allow, id: raw.id, reason: raw.reason })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPerOperation {
    operations: Vec<OperationDecision>,
}

impl TryFrom<JsonObject> for MutationCallbackResponse {
    type Error = serde_json::Error;

    fn try_from(object: JsonObject) -> Result<Self, Self::Error> {
        if object.0.contains_key("operations") {
            let raw: RawPerOperation = from_object(object)?;
            Ok(MutationCallbackResponse::PerOperation { operations: raw.operations })
        } else {
            Ok(MutationCallbackResponse::Batch(from_object(object)?))
        }
    }
}

/// Reason given when the callback denies without saying why.
pub const DENIED_WITHOUT_REASON: &str = "denied by the mutation callback";
/// Reason given when the callback's answer leaves an operation out.
pub const NO_DECISION: &str = "the mutation callback gave no decision for this operation";

impl MutationCallbackResponse {
    /// One decision per operation from `judge` (`Err` = the reason it is refused), the
    /// answer a callback gives when each write is judged on its own.
    pub fn per_operation(
        operations: &[MutationCallbackOperation],
        judge: impl Fn(&MutationCallbackOperation) -> Result<(), String>,
    ) -> Self {
        let operations = operations
            .iter()
            .map(|operation| {
                let verdict = judge(operation);
                OperationDecision { allow: verdict.is_ok(), id: operation.id.clone(), reason: verdict.err() }
            })
            .collect();
        MutationCallbackResponse::PerOperation { operations }
    }

    /// The verdict for each of `ids`, in order. An operation the answer does not
    /// mention is denied: silence is never consent.
    pub fn verdicts(&self, ids: &[&str]) -> Vec<Verdict> {
        let deny = |reason: &Option<String>| {
            Verdict::Deny(reason.clone().unwrap_or_else(|| DENIED_WITHOUT_REASON.into()))
        };
        match self {
            MutationCallbackResponse::Batch(decision) if decision.allow => vec![Verdict::Allow; ids.len()],
            MutationCallbackResponse::Batch(decision) => vec![deny(&decision.reason); ids.len()],
            MutationCallbackResponse::PerOperation { operations } => {
                let by_id: BTreeMap<&str, &OperationDecision> =
                    operations.iter().map(|decision| (decision.id.as_str(), decision)).collect();
                ids.iter()
                    .map(|id| match by_id.get(id) {
                        Some(decision) if decision.allow => Verdict::Allow,
                        Some(decision) => deny(&decision.reason),
                        None => Verdict::Deny(NO_DECISION.into()),
                    })
                    .collect()
            }
        }
    }
}
