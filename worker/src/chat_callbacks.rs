//! The chat's query and mutation callbacks: its rules, in one place.
//!
//! The engine calls them in process ([`ChatRules`], a `sync_server::Callbacks`); the
//! same rules are also served over HTTP (`POST /api/callbacks/query|mutation`, with the
//! seed's JSON and the engine secret), the shape a backend elsewhere would have.
//!
//! Rules: the end user must present a valid guest token of the chat (without one, the
//! answer is "needs auth": the browser renews its sign-in and sends the same writes
//! again); an open room (any typed name) is open to signed-in users, a private room
//! (made from a fresh 128-bit id by its creator) to its creator and those who
//! joined with its invite code, for reads and writes alike; a message has
//! 1..=2000 characters, is sent under the token's own subject and shows a valid
//! display name; edits and deletes name the token's own subject too, and the model
//! guards them on the message's `author_id`, so only the author edits or deletes.
//! Names are labels: no rule compares them.

use axum::extract::Extension;
use axum::http::HeaderMap;
use axum::routing::post;
use axum::{Json, Router};
use std::collections::BTreeMap;
use subtle::ConstantTimeEq;

use sync::protocol::mutation_callback::{
    MutationCallbackOperation as MutationOperation, MutationCallbackRequest, MutationCallbackResponse,
};
use sync::protocol::query_callback::QueryCallbackRequest;
use sync::protocol::{Decision, SECRET_HEADER};
use sync_server::guest::{Guest, GuestAuth, is_valid_name};
use sync_server::{ApiError, CallbackError, Caller, Rules, config, parse_json, read_body};
use worker::Env;

use app::model::{
    CREATE_ROOM, DELETE_MESSAGE, EDIT_MESSAGE, JOIN_ROOM, MAX_BODY_CHARS, MEMBERSHIP, MembershipArgs, ROOM,
    ROOM_MESSAGES, Room, RoomArgs, SEND_MESSAGE, is_private_room_id, member_id,
};

/// The chat's guest sign-in: its tokens name the chat (`aud`).
pub const GUEST: GuestAuth = GuestAuth::new(app::APP_NAME.0);

/// The chat's rules, called by the engine in process.
pub struct ChatRules;

impl Rules for ChatRules {
    async fn query(
        &self,
        caller: &Caller,
        request: &QueryCallbackRequest,
    ) -> Result<Decision, CallbackError> {
        let user = GUEST.signed_in(caller)?;
        decide_query(&caller.env, &user, request).await
    }

    async fn mutation(
        &self,
        caller: &Caller,
        request: &MutationCallbackRequest,
    ) -> Result<MutationCallbackResponse, CallbackError> {
        let user = GUEST.signed_in(caller)?;
        decide_mutation(&caller.env, &user, request).await
    }

    /// Sessions and their sockets belong to the guest's subject.
    async fn subject(&self, caller: &Caller) -> Result<Option<String>, CallbackError> {
        Ok(Some(GUEST.signed_in(caller)?.subject))
    }
}

fn text<'a>(args: &'a serde_json::Value, key: &str) -> &'a str {
    args.get(key).and_then(|value| value.as_str()).unwrap_or_default()
}

/// The server's own reads for the rules; a failed read decides nothing (retried).
async fn trusted<A: serde::Serialize, R: serde::de::DeserializeOwned>(
    env: &Env,
    query: &sync::typed::Query<A, R>,
    args: &A,
) -> Result<Vec<R>, CallbackError> {
    crate::engine()
        .read_trusted(env, query, args)
        .await
        .map_err(|error| CallbackError::Unavailable(format!("reading {}: {error}", query.name())))
}

/// A private room's row, if `room` is one.
async fn private_room(env: &Env, room: &str) -> Result<Option<Room>, CallbackError> {
    if !is_private_room_id(room) {
        return Ok(None);
    }
    let rows = trusted(env, &ROOM, &RoomArgs { room_id: room.to_string() }).await?;
    Ok(rows.into_iter().next())
}

/// What the rules need to know of a room, read once per request.
struct RoomFacts {
    /// The membership rule's verdict for the caller.
    enter: Result<(), String>,
    /// The room's row, if it is private.
    private: Option<Room>,
}

/// The membership rule: anyone signed in enters an open room (any name but a
/// private room's id, or such an id nobody has made private yet: nothing is in
/// it); a private room only its creator and those who joined with its invite.
async fn room_facts(env: &Env, user: &Guest, room: &str) -> Result<RoomFacts, CallbackError> {
    let Some(private) = private_room(env, room).await? else {
        return Ok(RoomFacts { enter: Ok(()), private: None });
    };
    let member = private.creator_id == user.subject || {
        let membership = MembershipArgs { room_id: room.to_string(), user_id: user.subject.clone() };
        !trusted(env, &MEMBERSHIP, &membership).await?.is_empty()
    };
    let enter = if member {
        Ok(())
    } else {
        Err(format!("room {room} is private: ask a member for its invite link"))
    };
    Ok(RoomFacts { enter, private: Some(private) })
}

async fn decide_query(
    env: &Env,
    user: &Guest,
    request: &QueryCallbackRequest,
) -> Result<Decision, CallbackError> {
    let room = request.args_as(&ROOM_MESSAGES).or_else(|| request.args_as(&ROOM));
    let verdict = if let Some(args) = room {
        match args {
            Ok(args) => room_facts(env, user, &args.room_id).await?.enter,
            Err(unfit) => Err(unfit),
        }
    } else if let Some(args) = request.args_as(&MEMBERSHIP) {
        args.and_then(|args| {
            if args.user_id == user.subject { Ok(()) } else { Err("only your own memberships".to_string()) }
        })
    } else {
        Err("query operation is not allowlisted".to_string())
    };
    Ok(match verdict {
        Ok(()) => Decision::allow(),
        Err(reason) => Decision::deny(reason),
    })
}

async fn decide_mutation(
    env: &Env,
    user: &Guest,
    request: &MutationCallbackRequest,
) -> Result<MutationCallbackResponse, CallbackError> {
    // What the rules need to know of each room the batch names, read once.
    let mut rooms: BTreeMap<String, RoomFacts> = BTreeMap::new();
    for operation in &request.operations {
        let room = text(&operation.args, "roomId").to_string();
        if rooms.contains_key(&room) {
            continue;
        }
        let facts = room_facts(env, user, &room).await?;
        rooms.insert(room, facts);
    }
    Ok(MutationCallbackResponse::per_operation(&request.operations, |operation| {
        let facts = rooms.get(text(&operation.args, "roomId"));
        judge(user, operation, facts)
    }))
}

fn check_body(body: &str) -> Result<(), String> {
    let chars = body.chars().count();
    if chars == 0 {
        Err("a message cannot be empty".to_string())
    } else if chars > MAX_BODY_CHARS {
        Err(format!("a message has at most {MAX_BODY_CHARS} characters (this one has {chars})"))
    } else {
        Ok(())
    }
}

/// Each mutator's rule, on its args as the app's own struct.
fn judge(user: &Guest, operation: &MutationOperation, facts: Option<&RoomFacts>) -> Result<(), String> {
    let Some(facts) = facts else { return Err("the write names no room".into()) };
    if let Some(args) = operation.args_as(&SEND_MESSAGE) {
        let args = args?;
        check_body(&args.body)?;
        if !is_valid_name(&args.author_name) {
            return Err("a message shows its author's display name: 1 to 40 visible characters".to_string());
        }
        own_subject_only(user, &args.author_id, "post")?;
        facts.enter.clone()
    } else if let Some(args) = operation.args_as(&EDIT_MESSAGE) {
        let args = args?;
        check_body(&args.body)?;
        own_subject_only(user, &args.author_id, "edit")?;
        facts.enter.clone()
    } else if let Some(args) = operation.args_as(&DELETE_MESSAGE) {
        own_subject_only(user, &args?.author_id, "delete")?;
        facts.enter.clone()
    } else if let Some(args) = operation.args_as(&CREATE_ROOM) {
        let args = args?;
        own_subject_only(user, &args.creator_id, "create a room")?;
        let room = &args.room_id;
        if !is_private_room_id(room) {
            return Err("only a fresh room (the New room link) can be made private".into());
        }
        if facts.private.is_some() {
            return Err(format!("room {room} is private already"));
        }
        let code = &args.invite_code;
        if !(16..=128).contains(&code.len()) || !code.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err("an invite code has 16 to 128 letters and digits".into());
        }
        Ok(())
    } else if let Some(args) = operation.args_as(&JOIN_ROOM) {
        let args = args?;
        own_subject_only(user, &args.user_id, "join")?;
        let room = &args.room_id;
        if operation.record_id != member_id(room, &user.subject) {
            return Err("a membership's record id is the room and the user".into());
        }
        match &facts.private {
            None => Err(format!("room {room} is open: there is nothing to join")),
            Some(private) if private.invite_code != args.invite_code => {
                Err("this invite is not valid for this room".into())
            }
            Some(_) => Ok(()),
        }
    } else {
        Err("mutation operation is not allowlisted".into())
    }
}

/// A write names its author's subject; the UPDATE/DELETE only touches a message of
/// that author (the model's guard), so naming yourself is enough: a user cannot
/// reach another's message, whatever name either goes by.
fn own_subject_only(user: &Guest, named: &str, verb: &str) -> Result<(), String> {
    if named == user.subject {
        Ok(())
    } else {
        Err(format!("you can only {verb} as yourself ({}), not as another user", user.subject))
    }
}

// ---------------------------------------------------------------- over HTTP

pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/api/callbacks/query", post(query)).route("/api/callbacks/mutation", post(mutation))
}

/// Checks the engine secret (constant time) and returns the end user. A
/// wrong secret is a 403 (401 is reserved for the user's own sign-in: it tells the
/// engine to ask the user to sign in again).
fn http_caller(env: &Env, headers: &HeaderMap) -> Result<Guest, ApiError> {
    let expected = config::required(env, config::ENGINE_SECRET)?;
    let presented = headers.get(SECRET_HEADER).map(|value| value.as_bytes()).unwrap_or_default();
    if !bool::from(presented.ct_eq(expected.as_bytes())) {
        return Err(ApiError::Forbidden {
            code: "wrong_engine_secret",
            reason: format!("missing or wrong {SECRET_HEADER}"),
        });
    }
    let token = headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    GUEST.identify(env, token)?.map_err(|reason| ApiError::NeedsAuth { reason })
}

/// A rule that could not be decided (its read failed): 503, retried.
fn unavailable(error: CallbackError) -> ApiError {
    match error {
        CallbackError::NeedsAuth(reason) => ApiError::NeedsAuth { reason },
        CallbackError::Unavailable(reason) => ApiError::CallbackUnavailable { reason },
    }
}

#[worker::send]
async fn query(
    Extension(env): Extension<Env>,
    headers: HeaderMap,
    raw: axum::extract::Request,
) -> Result<Json<Decision>, ApiError> {
    let body = read_body(raw).await?;
    let user = http_caller(&env, &headers)?;
    let request: QueryCallbackRequest = parse_json(&body)?;
    decide_query(&env, &user, &request).await.map(Json).map_err(unavailable)
}

#[worker::send]
async fn mutation(
    Extension(env): Extension<Env>,
    headers: HeaderMap,
    raw: axum::extract::Request,
) -> Result<Json<MutationCallbackResponse>, ApiError> {
    let body = read_body(raw).await?;
    let user = http_caller(&env, &headers)?;
    let request: MutationCallbackRequest = parse_json(&body)?;
    decide_mutation(&env, &user, &request).await.map(Json).map_err(unavailable)
}
