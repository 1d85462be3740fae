//! The chat's query and mutation callbacks: its rules, in one place.
//!
//! The engine calls them in process ([`ChatRules`], a `sync_server::Callbacks`); the
//! same rules are also served over HTTP (`POST /api/callbacks/query|mutation`, with the
//! seed's JSON and the engine secret), the shape a backend elsewhere would have.
//!
//! Rules: the end user must present a valid guest token of the chat (without one, the
//! answer is "needs auth": the browser renews its sign-in and sends the same writes
//! again); reads of `roomMessages` are open to signed-in users; a message has
//! 1..=2000 characters, is sent under the token's own subject and shows a valid
//! display name; edits and deletes name the token's own subject too, and the model
//! guards them on the message's `author_id`, so only the author edits or deletes.
//! Names are labels: no rule compares them.

use axum::extract::Extension;
use axum::http::HeaderMap;
use axum::routing::post;
use axum::{Json, Router};
use subtle::ConstantTimeEq;
use sync::protocol::mutation_callback::{MutationCallbackRequest, MutationCallbackResponse};
use sync::protocol::query_callback::QueryCallbackRequest;
use sync::protocol::{Decision, SECRET_HEADER};
use sync_server::guest::{Guest, GuestAuth, is_valid_name};
use sync_server::{ApiError, CallbackFuture, Callbacks, Caller, config, parse_json, read_body};
use worker::Env;

use app::model::{DELETE_MESSAGE, EDIT_MESSAGE, MAX_BODY_CHARS, ROOM_MESSAGES, SEND_MESSAGE};

/// The chat's guest sign-in: its tokens name the chat (`aud`).
pub const GUEST: GuestAuth = GuestAuth::new(app::APP_NAME.0);

/// The chat's rules, called by the engine in process.
pub struct ChatRules;

impl Callbacks for ChatRules {
    fn query<'a>(
        &'a self,
        caller: &'a Caller,
        request: &'a QueryCallbackRequest,
    ) -> CallbackFuture<'a, Decision> {
        Box::pin(async move {
            GUEST.signed_in(caller)?;
            Ok(decide_query(request))
        })
    }

    fn mutation<'a>(
        &'a self,
        caller: &'a Caller,
        request: &'a MutationCallbackRequest,
    ) -> CallbackFuture<'a, MutationCallbackResponse> {
        Box::pin(async move {
            let user = GUEST.signed_in(caller)?;
            Ok(decide_mutation(&user, request))
        })
    }

    /// Sessions and their sockets belong to the guest's subject.
    fn subject<'a>(&'a self, caller: &'a Caller) -> CallbackFuture<'a, Option<String>> {
        Box::pin(async move { Ok(Some(GUEST.signed_in(caller)?.subject)) })
    }
}

fn decide_query(request: &QueryCallbackRequest) -> Decision {
    if request.operation_name == ROOM_MESSAGES.name() {
        Decision::allow()
    } else {
        Decision::deny("query operation is not allowlisted")
    }
}

fn decide_mutation(user: &Guest, request: &MutationCallbackRequest) -> MutationCallbackResponse {
    MutationCallbackResponse::per_operation(&request.operations, |operation| {
        judge(user, &operation.operation_name, &operation.args)
    })
}

fn judge(user: &Guest, operation: &str, args: &serde_json::Value) -> Result<(), String> {
    let text = |key: &str| args.get(key).and_then(|value| value.as_str()).unwrap_or_default();
    let check_body = || {
        let chars = text("body").chars().count();
        if chars == 0 {
            Err("a message cannot be empty".to_string())
        } else if chars > MAX_BODY_CHARS {
            Err(format!("a message has at most {MAX_BODY_CHARS} characters (this one has {chars})"))
        } else {
            Ok(())
        }
    };
    if operation == SEND_MESSAGE.name() {
        check_body()?;
        if !is_valid_name(text("authorName")) {
            return Err("a message shows its author's display name: 1 to 40 visible characters".to_string());
        }
        own_subject_only(user, text("authorId"), "post")
    } else if operation == EDIT_MESSAGE.name() {
        check_body()?;
        own_subject_only(user, text("authorId"), "edit")
    } else if operation == DELETE_MESSAGE.name() {
        own_subject_only(user, text("authorId"), "delete")
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

async fn query(
    Extension(env): Extension<Env>,
    headers: HeaderMap,
    raw: axum::extract::Request,
) -> Result<Json<Decision>, ApiError> {
    let body = read_body(raw).await?;
    http_caller(&env, &headers)?;
    let request: QueryCallbackRequest = parse_json(&body)?;
    Ok(Json(decide_query(&request)))
}

async fn mutation(
    Extension(env): Extension<Env>,
    headers: HeaderMap,
    raw: axum::extract::Request,
) -> Result<Json<MutationCallbackResponse>, ApiError> {
    let body = read_body(raw).await?;
    let user = http_caller(&env, &headers)?;
    let request: MutationCallbackRequest = parse_json(&body)?;
    Ok(Json(decide_mutation(&user, &request)))
}
