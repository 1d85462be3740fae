//! The chat app's sync model: one definition, used by the browser (local writes,
//! local queries) and by the worker (validation, SQL, topics).

use serde::{Deserialize, Serialize};
use sync::{
    Collection, ColumnType, Delete, Deletes, Insert, Inserts, Mutator, Operator, Order, Query, Select,
    SyncModel, Update, Updates,
};

pub const MESSAGES: &str = "messages";
/// Private rooms: one row each (open rooms have none).
pub const ROOMS: &str = "private_rooms";
/// Who joined a private room with its invite.
pub const MEMBERS: &str = "room_members";
/// A room's messages, oldest first.
pub const ROOM_MESSAGES: Query<RoomArgs, Message> = Query::new("roomMessages", MESSAGES);
/// How many of a room's newest messages its window holds at first.
pub const ROOM_WINDOW: u32 = 200;
pub const SEND_MESSAGE: Mutator<SendMessageArgs, Inserts> = Mutator::insert("sendMessage", MESSAGES);
pub const EDIT_MESSAGE: Mutator<EditMessageArgs, Updates> = Mutator::update("editMessage", MESSAGES);
pub const DELETE_MESSAGE: Mutator<DeleteMessageArgs, Deletes> = Mutator::delete("deleteMessage", MESSAGES);
/// A private room's row (its creator and invite code), for its members.
pub const ROOM: Query<RoomArgs, Room> = Query::new("room", ROOMS);
/// One user's membership of one room.
pub const MEMBERSHIP: Query<MembershipArgs, Member> = Query::new("membership", MEMBERS);
/// Makes a fresh room private to its creator (the record id is the room id).
pub const CREATE_ROOM: Mutator<CreateRoomArgs, Inserts> = Mutator::insert("createRoom", ROOMS);
/// Joins a private room with its invite code (the record id is [`member_id`]).
pub const JOIN_ROOM: Mutator<JoinRoomArgs, Inserts> = Mutator::insert("joinRoom", MEMBERS);

/// How many characters a private room's id has: 128 random bits in lowercase
/// Crockford base32 (see [`is_private_room_id`]).
pub const PRIVATE_ROOM_ID_CHARS: usize = 26;

/// Whether `room` has the shape of a private room's id: 26 lowercase Crockford
/// base32 characters, as `/` makes them from 128 random bits. Only such a room can be
/// made private; any other name (typed in the room box) is an open room.
pub fn is_private_room_id(room: &str) -> bool {
    room.len() == PRIVATE_ROOM_ID_CHARS
        && room.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'h' | b'j' | b'k' | b'm' | b'n' | b'p'..=b't' | b'v'..=b'z'))
}

/// A private room id from 128 random bits.
pub fn private_room_id(random: u128) -> String {
    const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
    (0..PRIVATE_ROOM_ID_CHARS).rev().map(|i| ALPHABET[((random >> (i * 5)) & 31) as usize] as char).collect()
}

/// The record id of `user`'s membership of `room`: one per pair.
pub fn member_id(room: &str, user: &str) -> String {
    format!("{room}:{user}")
}

/// A row of `rooms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Room {
    pub id: String,
    pub creator_id: String,
    /// Whoever holds it may join: the invite link carries it.
    pub invite_code: String,
    pub created_at: i64,
}

/// A row of `members`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub id: String,
    pub room_id: String,
    pub user_id: String,
    pub joined_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MembershipArgs {
    pub room_id: String,
    pub user_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateRoomArgs {
    pub room_id: String,
    pub creator_id: String,
    pub invite_code: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinRoomArgs {
    pub room_id: String,
    pub user_id: String,
    pub invite_code: String,
}

/// A row of `messages`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub id: String,
    pub room_id: String,
    /// Who wrote it: the subject of their sign-in (empty on messages written before
    /// subjects existed: nobody may edit those).
    pub author_id: String,
    /// The name they went by: a label, not an identity.
    pub author_name: String,
    pub body: String,
    pub created_at: i64,
    pub last_modified_by: String,
}

/// Longest message body the app accepts (its callback enforces it; the model only
/// trims).
pub const MAX_BODY_CHARS: usize = 2000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomArgs {
    pub room_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendMessageArgs {
    pub room_id: String,
    /// The sender's subject: the callback accepts only the caller's own.
    pub author_id: String,
    pub author_name: String,
    pub body: String,
}

/// Edits name their author's subject: the write only applies to a message of that
/// author (a required value, guarded in the UPDATE), and the callback only lets
/// users name themselves, so only the author edits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EditMessageArgs {
    pub room_id: String,
    pub author_id: String,
    pub body: String,
}

/// Deletes name their author's subject, like edits: only the author deletes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteMessageArgs {
    pub room_id: String,
    pub author_id: String,
}

fn trimmed(text: String) -> String {
    let trimmed = text.trim();
    if trimmed.len() == text.len() { text } else { trimmed.to_string() }
}

// [model] (shown on the page, from here to the matching end marker)
/// The chat's sync model.
pub fn chat_model() -> SyncModel {
    let model = SyncModel::builder()
        .collection(
            Collection::new(MESSAGES, "id")
                .column("id", ColumnType::Text)
                .column("room_id", ColumnType::Text)
                .column("author_name", ColumnType::Text)
                .column("body", ColumnType::Text)
                .column("created_at", ColumnType::Integer)
                .column("last_modified_by", ColumnType::Text)
                // Added after the first release: older rows hold '' (nobody's).
                .column("author_id", ColumnType::Text)
                // roomMessages: WHERE room_id = ? ORDER BY created_at, id.
                .index(&["room_id", "created_at", "id"])
                // What the rules allow, in bytes (a character takes up to 4): tighter
                // than the engine's 64 KB default, so a room's answer pages hold more.
                .max_bytes("body", MAX_BODY_CHARS * 4)
                .max_bytes("author_name", 160) // a guest name: 40 characters
                .max_bytes("author_id", 64)
                .max_bytes("last_modified_by", 64),
        )
        .collection(
            Collection::new(ROOMS, "id")
                .column("id", ColumnType::Text)
                .column("creator_id", ColumnType::Text)
                .column("invite_code", ColumnType::Text)
                .column("created_at", ColumnType::Integer),
        )
        .collection(
            Collection::new(MEMBERS, "id")
                .column("id", ColumnType::Text)
                .column("room_id", ColumnType::Text)
                .column("user_id", ColumnType::Text)
                .column("joined_at", ColumnType::Integer)
                .index(&["room_id", "user_id"]),
        )
        .query(
            ROOM.define()
                .require("roomId", "id", Operator::Eq)
                .normalize(|args| RoomArgs { room_id: trimmed(args.room_id) })
                .build(|args| Select::from(ROOMS).filter("id", Operator::Eq, args.room_id.clone())),
        )
        .query(
            MEMBERSHIP
                .define()
                .require("roomId", "room_id", Operator::Eq)
                .require("userId", "user_id", Operator::Eq)
                .build(|args| {
                    Select::from(MEMBERS).filter("room_id", Operator::Eq, args.room_id.clone()).filter(
                        "user_id",
                        Operator::Eq,
                        args.user_id.clone(),
                    )
                }),
        )
        .mutator(CREATE_ROOM.define().require("roomId", "id").require("creatorId", "creator_id").build(
            |args, ctx| {
                Insert::into(ROOMS)
                    .value("id", ctx.record_id.clone())
                    .value("creator_id", args.creator_id.clone())
                    .value("invite_code", args.invite_code.clone())
                    .value("created_at", ctx.now_ms)
            },
        ))
        .mutator(JOIN_ROOM.define().require("roomId", "room_id").require("userId", "user_id").build(
            |args, ctx| {
                Insert::into(MEMBERS)
                    .value("id", ctx.record_id.clone())
                    .value("room_id", args.room_id.clone())
                    .value("user_id", args.user_id.clone())
                    .value("joined_at", ctx.now_ms)
            },
        ))
        .query(
            ROOM_MESSAGES
                .define()
                .require("roomId", "room_id", Operator::Eq)
                .normalize(|args| RoomArgs { room_id: trimmed(args.room_id) })
                .build(|args| {
                    // Newest first, a window of them: a room of a million messages
                    // syncs only what is shown (see `sync::window`).
                    Select::from(MESSAGES)
                        .filter("room_id", Operator::Eq, args.room_id.clone())
                        .order_by("created_at", Order::Desc)
                        // One push stamps its messages with one server time: the
                        // client-made ULID record ids keep them in the order written.
                        .order_by("id", Order::Desc)
                        .limit(ROOM_WINDOW)
                }),
        )
        .mutator(
            SEND_MESSAGE
                .define()
                .require("roomId", "room_id")
                .normalize(|args| SendMessageArgs {
                    room_id: trimmed(args.room_id),
                    author_id: trimmed(args.author_id),
                    author_name: trimmed(args.author_name),
                    body: trimmed(args.body),
                })
                .build(|args, ctx| {
                    Insert::into(MESSAGES)
                        .value("id", ctx.record_id.clone())
                        .value("room_id", args.room_id.clone())
                        .value("author_id", args.author_id.clone())
                        .value("author_name", args.author_name.clone())
                        .value("body", args.body.clone())
                        .value("created_at", ctx.now_ms)
                        .value("last_modified_by", ctx.client_id.clone())
                }),
        )
        .mutator(
            EDIT_MESSAGE
                .define()
                .require("roomId", "room_id")
                .require("authorId", "author_id")
                .normalize(|args| EditMessageArgs {
                    room_id: trimmed(args.room_id),
                    author_id: trimmed(args.author_id),
                    body: trimmed(args.body),
                })
                .build(|args, ctx| {
                    Update::record(MESSAGES, ctx.record_id.clone())
                        .set("body", args.body.clone())
                        .set("last_modified_by", ctx.client_id.clone())
                        .guard("room_id", Operator::Eq, args.room_id.clone())
                        .guard("author_id", Operator::Eq, args.author_id.clone())
                }),
        )
        .mutator(
            DELETE_MESSAGE
                .define()
                .require("roomId", "room_id")
                .require("authorId", "author_id")
                .normalize(|args| DeleteMessageArgs {
                    room_id: trimmed(args.room_id),
                    author_id: trimmed(args.author_id),
                })
                .build(|args, ctx| {
                    Delete::record(MESSAGES, ctx.record_id.clone())
                        .guard("room_id", Operator::Eq, args.room_id.clone())
                        .guard("author_id", Operator::Eq, args.author_id.clone())
                }),
        )
        .build();
    // [/model]
    match model {
        Ok(model) => model,
        // The model is a constant of this program: its tests build it, so this is
        // unreachable in any build that passed them.
        Err(error) => panic!("the chat sync model is invalid: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use sync::MutationContext;

    fn ctx() -> MutationContext {
        MutationContext {
            client_id: "client_01HYS7J9GZ8P6VA3K3Z4X5M2K1".into(),
            record_id: "messages_01HYS8M33DK68VQT6C9X4T5H0A".into(),
            now_ms: 1_700_000_000_000,
        }
    }

    #[test]
    fn chat_model_builds_and_routes_room_messages() {
        let model = chat_model();
        let read =
            model.validate_query(ROOM_MESSAGES.name(), &json!({"roomId": "  94462 "})).expect("valid read");
        assert_eq!(read.args, json!({"roomId": "94462"}));
        assert_eq!(read.topic.as_str(), r#"roomMessages{"roomId":"94462"}"#);
    }

    #[test]
    fn send_message_builds_the_full_row() {
        let model = chat_model();
        let write = model
            .validate_mutation(
                SEND_MESSAGE.name(),
                &json!({"roomId": "94462", "authorId": "user_1", "authorName": " Ada ", "body": " hello "}),
                &ctx(),
            )
            .expect("valid write");
        let sync::Operation::Insert(insert) = write.operation else { panic!("an insert") };
        assert_eq!(insert.values["body"], json!("hello"));
        assert_eq!(insert.values["author_name"], json!("Ada"));
        assert_eq!(insert.values["author_id"], json!("user_1"));
        assert_eq!(insert.values["id"], json!(ctx().record_id));
        assert_eq!(insert.values["last_modified_by"], json!(ctx().client_id));
        assert_eq!(insert.values["created_at"], json!(ctx().now_ms));
    }

    #[test]
    fn private_room_ids_are_128_random_bits_in_26_characters() {
        let id = private_room_id(u128::MAX - 12345);
        assert!(is_private_room_id(&id), "{id}");
        assert_ne!(private_room_id(1), private_room_id(2));
        assert!(is_private_room_id(&private_room_id(0)));
        for open in ["lobby", "94462", "room_01HYS7J9GZ8P6VA3K3Z4X5M2K1", &"A".repeat(26), &"u".repeat(26)] {
            assert!(!is_private_room_id(open), "{open}");
        }
    }

    #[test]
    fn edit_and_delete_are_guarded_by_room_and_author() {
        let model = chat_model();
        for (name, args) in [
            (EDIT_MESSAGE.name(), json!({"roomId": "a", "authorId": "user_1", "body": "x"})),
            (DELETE_MESSAGE.name(), json!({"roomId": "a", "authorId": "user_1"})),
        ] {
            let write = model.validate_mutation(name, &args, &ctx()).expect("valid write");
            let guards = match write.operation {
                sync::Operation::Update(update) => update.guards,
                sync::Operation::Delete(delete) => delete.guards,
                sync::Operation::Insert(_) => panic!("not an insert"),
            };
            let columns: Vec<&str> = guards.iter().map(|guard| guard.column.as_str()).collect();
            assert_eq!(columns, ["room_id", "author_id"]);
        }
    }
}
