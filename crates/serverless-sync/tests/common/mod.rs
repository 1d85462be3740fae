//! A sync model of cards on boards, plus a `notes` collection that uses every
//! column type.
#![allow(dead_code)]

use serde::{Deserialize, Serialize};
use sync::{
    Collection, ColumnType, Delete, Insert, MutationContext, Operator, Order, Select, SyncModel, Update,
};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BoardArgs {
    pub board_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendArgs {
    pub board_id: String,
    pub author: String,
    pub body: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EditArgs {
    pub board_id: String,
    pub body: String,
}

/// Moves a card to another board (no required value: the app's callback decides).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MoveArgs {
    pub from_board_id: String,
    pub to_board_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NoteArgs {
    pub pinned: bool,
    pub score: f64,
    pub meta: serde_json::Value,
}

pub fn cards() -> Collection {
    Collection::new("cards", "id")
        .column("id", ColumnType::Text)
        .column("board_id", ColumnType::Text)
        .column("author", ColumnType::Text)
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
    builder().build().expect("test model is valid")
}

/// The test model's builder, for tests that add queries of their own.
pub fn builder() -> sync::SyncModelBuilder {
    board_model(cards(), false)
}

/// The next version of [`model`], for the simulation's upgrade: cards gain a
/// `priority` column (new cards get 0) and the `moveCard` mutator is gone.
pub fn upgraded_model() -> SyncModel {
    board_model(cards().column("priority", ColumnType::Integer), true)
        .build()
        .expect("upgraded model is valid")
}

fn board_model(cards: Collection, upgraded: bool) -> sync::SyncModelBuilder {
    let builder = SyncModel::builder()
        .collection(cards)
        .collection(notes())
        .query(
            SyncModel::query::<BoardArgs>("boardCards", "cards")
                .require("boardId", "board_id", Operator::Eq)
                .normalize(|args| BoardArgs { board_id: args.board_id.trim().to_string() })
                .build(|args| {
                    Select::from("cards")
                        .filter("board_id", Operator::Eq, args.board_id.clone())
                        .order_by("created_at", Order::Asc)
                }),
        )
        .mutator(
            SyncModel::insert::<SendArgs>("addCard", "cards")
                .require("boardId", "board_id")
                .normalize(|args| SendArgs {
                    board_id: args.board_id.trim().to_string(),
                    author: args.author.trim().to_string(),
                    body: args.body.trim().to_string(),
                })
                .build(move |args, ctx| {
                    let insert = Insert::into("cards")
                        .value("board_id", args.board_id.clone())
                        .value("author", args.author.clone())
                        .value("body", args.body.clone())
                        .value("created_at", ctx.now_ms)
                        .value("last_modified_by", ctx.client_id.clone());
                    if upgraded { insert.value("priority", 0) } else { insert }
                }),
        )
        .mutator(SyncModel::update::<EditArgs>("editCard", "cards").require("boardId", "board_id").build(
            |args, ctx| {
                Update::record("cards", ctx.record_id.clone())
                    .set("body", args.body.clone())
                    .set("last_modified_by", ctx.client_id.clone())
                    .guard("board_id", Operator::Eq, args.board_id.clone())
            },
        ))
        .mutator(SyncModel::delete::<BoardArgs>("deleteCard", "cards").require("boardId", "board_id").build(
            |args, ctx| {
                Delete::record("cards", ctx.record_id.clone()).guard(
                    "board_id",
                    Operator::Eq,
                    args.board_id.clone(),
                )
            },
        ));
    let builder =
        if upgraded {
            builder
        } else {
            builder.mutator(SyncModel::update::<MoveArgs>("moveCard", "cards").build(|args, ctx| {
                Update::record("cards", ctx.record_id.clone())
                    .set("board_id", args.to_board_id.clone())
                    .guard("board_id", Operator::Eq, args.from_board_id.clone())
            }))
        };
    builder.mutator(SyncModel::insert::<NoteArgs>("addNote", "notes").build(|args, ctx| {
        Insert::into("notes")
            .value("id", ctx.record_id.clone())
            .value("pinned", args.pinned)
            .value("score", args.score)
            .value("meta", args.meta.clone())
    }))
}

pub fn ctx(client: &str, record: &str, now_ms: i64) -> MutationContext {
    MutationContext { client_id: client.into(), record_id: record.into(), now_ms }
}

/// The next version of the test model: cards gain a `priority` column, and editing
/// a card now requires a `reason`.
pub fn model_v2() -> sync::SyncModel {
    use sync::{ColumnType, Insert, Operator, Order, Select, SyncModel, Update};
    #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct EditWithReason {
        board_id: String,
        body: String,
        reason: String,
    }
    SyncModel::builder()
        .collection(cards().column("priority", ColumnType::Integer))
        .collection(notes())
        .query(
            SyncModel::query::<BoardArgs>("boardCards", "cards")
                .require("boardId", "board_id", Operator::Eq)
                .build(|args| {
                    Select::from("cards")
                        .filter("board_id", Operator::Eq, args.board_id.clone())
                        .order_by("created_at", Order::Asc)
                }),
        )
        .mutator(SyncModel::insert::<SendArgs>("addCard", "cards").require("boardId", "board_id").build(
            |args, ctx| {
                Insert::into("cards")
                    .value("board_id", args.board_id.clone())
                    .value("author", args.author.clone())
                    .value("body", args.body.clone())
                    .value("created_at", ctx.now_ms)
                    .value("last_modified_by", ctx.client_id.clone())
                    .value("priority", 0)
            },
        ))
        .mutator(
            SyncModel::update::<EditWithReason>("editCard", "cards").require("boardId", "board_id").build(
                |args, ctx| {
                    Update::record("cards", ctx.record_id.clone()).set("body", args.body.clone()).guard(
                        "board_id",
                        Operator::Eq,
                        args.board_id.clone(),
                    )
                },
            ),
        )
        .build()
        .expect("v2 model is valid")
}
