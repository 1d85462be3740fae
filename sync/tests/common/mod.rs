//! A sync model shaped like the chat app's, plus a `notes` collection that uses every
//! column type. (The chat app's own model is tested in app/.)
#![allow(dead_code)]

use serde::{Deserialize, Serialize};
use sync::{
    Collection, ColumnType, Delete, Insert, MutationContext, Operator, Order, Select, SyncModel, Update,
};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomArgs {
    pub room_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendArgs {
    pub room_id: String,
    pub author_name: String,
    pub body: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EditArgs {
    pub room_id: String,
    pub body: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NoteArgs {
    pub pinned: bool,
    pub score: f64,
    pub meta: serde_json::Value,
}

pub fn messages() -> Collection {
    Collection::new("messages", "id")
        .column("id", ColumnType::Text)
        .column("room_id", ColumnType::Text)
        .column("author_name", ColumnType::Text)
        .column("body", ColumnType::Text)
        .column("created_at", ColumnType::Integer)
        .column("last_modified_by", ColumnType::Text)
}

pub fn notes() -> Collection {
    Collection::new("notes", "id")
        .column("id", ColumnType::Text)
        .column("pinned", ColumnType::Boolean)
        .column("score", ColumnType::Real)
        .column("meta", ColumnType::Json)
}

pub fn model() -> SyncModel {
    SyncModel::builder()
        .collection(messages())
        .collection(notes())
        .query(
            SyncModel::query::<RoomArgs>("roomMessages", "messages")
                .require("roomId", "room_id", Operator::Eq)
                .normalize(|args| RoomArgs { room_id: args.room_id.trim().to_string() })
                .build(|args| {
                    Select::from("messages")
                        .filter("room_id", Operator::Eq, args.room_id.clone())
                        .order_by("created_at", Order::Asc)
                }),
        )
        .mutator(
            SyncModel::insert::<SendArgs>("sendMessage", "messages")
                .require("roomId", "room_id")
                .normalize(|args| SendArgs {
                    room_id: args.room_id.trim().to_string(),
                    author_name: args.author_name.trim().to_string(),
                    body: args.body.trim().to_string(),
                })
                .build(|args, ctx| {
                    Insert::into("messages")
                        .value("room_id", args.room_id.clone())
                        .value("author_name", args.author_name.clone())
                        .value("body", args.body.clone())
                        .value("created_at", ctx.now_ms)
                        .value("last_modified_by", ctx.client_id.clone())
                }),
        )
        .mutator(SyncModel::update::<EditArgs>("editMessage", "messages").require("roomId", "room_id").build(
            |args, ctx| {
                Update::record("messages", ctx.record_id.clone())
                    .set("body", args.body.clone())
                    .set("last_modified_by", ctx.client_id.clone())
                    .guard("room_id", Operator::Eq, args.room_id.clone())
            },
        ))
        .mutator(
            SyncModel::delete::<RoomArgs>("deleteMessage", "messages").require("roomId", "room_id").build(
                |args, ctx| {
                    Delete::record("messages", ctx.record_id.clone()).guard(
                        "room_id",
                        Operator::Eq,
                        args.room_id.clone(),
                    )
                },
            ),
        )
        .mutator(SyncModel::insert::<NoteArgs>("addNote", "notes").build(|args, ctx| {
            Insert::into("notes")
                .value("id", ctx.record_id.clone())
                .value("pinned", args.pinned)
                .value("score", args.score)
                .value("meta", args.meta.clone())
        }))
        .build()
        .expect("test model is valid")
}

pub fn ctx(client: &str, record: &str, now_ms: i64) -> MutationContext {
    MutationContext { client_id: client.into(), record_id: record.into(), now_ms }
}
