//! Client -> connector: a batch of outbox mutations, in outbox order.
//! `POST /sync/push` with [`PushRequest`]; answer [`PushResponse`], one result per
//! mutation. A mutation id already applied gets its first result again.

use serde::{Deserialize, Serialize};

use crate::Value;
use crate::changes::Cursor;
use crate::schema::Row;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushRequest {
    pub protocol_version: u32,
    pub client_id: String,
    pub session_id: String,
    pub mutations: Vec<PushMutation>,
    /// The client has not sent these mutations before (written since its worker
    /// started, never in a request): none can have an answer yet, so the connector
    /// may skip reading the stored answers (a batch of new inserts then takes one
    /// upstream round trip). Only a hint: a mutation applied or answered already is
    /// still found (its claim fails and it is answered from what is stored).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub first_send: bool,
}

/// One outbox entry on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushMutation {
    /// The outbox id (`outbox_...`); with the client id, the idempotency key.
    pub id: String,
    /// The mutator's name.
    pub name: String,
    pub args: Value,
    /// The record written (`card_...`).
    pub record_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PushResponse {
    pub results: Vec<MutationResult>,
    /// The change-log head after this push.
    pub cursor: Cursor,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MutationResult {
    pub id: String,
    #[serde(flatten)]
    pub outcome: MutationOutcome,
}

/// The server's final word on one mutation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum MutationOutcome {
    /// Applied as change `seq`; `row` is the record's server version (`None` if deleted).
    Confirmed { row: Option<Row>, seq: Cursor },
    /// Not applied, and never will be under this id.
    Rejected { reason: String },
}
