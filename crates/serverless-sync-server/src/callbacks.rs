//! The app's say over every read and write: the query and mutation callbacks.
//!
//! [`Callbacks`] is the seam. Two implementations ship with the engine:
//! - [`HttpCallbacks`]: POSTs the seed's JSON to the URLs in the settings
//!   `SYNC_QUERY_CALLBACK_URL` / `SYNC_MUTATION_CALLBACK_URL`, forwarding the user's
//!   `authorization` plus `x-sync-engine-secret` (an app whose rules live in another
//!   backend);
//! - any Rust type of the app's own that implements [`Callbacks`] in process (no
//!   network hop), optionally behind HTTP: [`HttpCallbacks::or`] uses the URLs when
//!   they are set and the in-process rules otherwise.
//!
//! Only the app says no: a callback that cannot answer (down, slow, non-2xx, not the
//! documented JSON) decides nothing. The connector answers 503 `callback_unavailable`
//! with `Retry-After`, stores nothing, and the browser keeps the write in its outbox
//! and retries (see [`crate::Engine`]).
//!
//! A callback that finds the user's sign-in missing or expired says so with
//! [`CallbackError::NeedsAuth`] (over HTTP: status 401). That decides nothing either:
//! the connector answers 401 `needs_auth`, stores nothing, and the browser keeps its
//! outbox until the user's token is renewed.

use std::future::Future;
use std::pin::Pin;

use sync::protocol::mutation_callback::{MutationCallbackRequest, MutationCallbackResponse};
use sync::protocol::query_callback::QueryCallbackRequest;
use sync::protocol::{Decision, JSON_CONTENT_TYPE, SECRET_HEADER};
use worker::Env;

use crate::config;

/// Largest callback answer read.
const MAX_ANSWER_BYTES: usize = 256 * 1024;

/// What a callback returns: its answer, or why it could not give one.
pub type CallbackFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, CallbackError>> + 'a>>;

/// Why a callback gave no answer. Neither is a "no": nothing is decided or stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallbackError {
    /// It could not answer now (down, slow, broken): the client retries later.
    #[error("{0}")]
    Unavailable(String),
    /// The user's sign-in is missing or expired: the client pauses until it has a
    /// fresh token, then sends the same writes again.
    #[error("{0}")]
    NeedsAuth(String),
}

impl From<String> for CallbackError {
    fn from(reason: String) -> Self {
        CallbackError::Unavailable(reason)
    }
}

/// Who is asking, as the callback sees it.
#[derive(Clone)]
pub struct Caller {
    /// The worker's bindings (the app's own settings and secrets live there).
    pub env: Env,
    /// The end user's `authorization` header, as the client sent it.
    pub authorization: Option<String>,
    /// The shared secret the engine presents to callbacks (`SYNC_ENGINE_SECRET`).
    pub engine_secret: String,
}

impl Caller {
    /// The bearer token of `authorization`, if it is one.
    pub fn bearer_token(&self) -> Option<&str> {
        self.authorization.as_deref().and_then(|value| value.strip_prefix("Bearer "))
    }
}

/// The app's rules. Both answers use the seed's JSON types, so an in-process
/// implementation and an HTTP service are interchangeable.
pub trait Callbacks: Send + Sync + 'static {
    /// May this caller run this named read?
    fn query<'a>(
        &'a self,
        caller: &'a Caller,
        request: &'a QueryCallbackRequest,
    ) -> CallbackFuture<'a, Decision>;

    /// May this caller apply these writes? One answer for the batch or one per write.
    fn mutation<'a>(
        &'a self,
        caller: &'a Caller,
        request: &'a MutationCallbackRequest,
    ) -> CallbackFuture<'a, MutationCallbackResponse>;

    /// Who the caller is: the subject of their sign-in (an id nobody can claim by
    /// typing a name), when the app names its users. The engine binds each session,
    /// and so its poke socket, to its first user: another user cannot listen on it.
    /// `Ok(None)` (the default): the app does not say, and a session is bound to its
    /// client key only. A missing or expired sign-in is [`CallbackError::NeedsAuth`].
    fn subject<'a>(&'a self, caller: &'a Caller) -> CallbackFuture<'a, Option<String>> {
        let _ = caller;
        Box::pin(async { Ok(None) })
    }
}

/// The app's rules as plain `async fn`s: implement this and pass it where a
/// [`Callbacks`] goes (every `Rules` is one), e.g. `HttpCallbacks::or(MyRules)`.
///
/// ```ignore
/// impl Rules for NotesRules {
///     async fn query(&self, caller: &Caller, request: &QueryCallbackRequest) -> Result<Decision, CallbackError> {
///         GUEST.signed_in(caller)?;
///         Ok(match request.args_as(&BOARD_NOTES) {
///             Some(Ok(_)) => Decision::allow(),
///             Some(Err(unfit)) => Decision::deny(unfit),
///             None => Decision::deny("not a notes query"),
///         })
///     }
///     async fn mutation(&self, caller: &Caller, request: &MutationCallbackRequest)
///         -> Result<MutationCallbackResponse, CallbackError> { .. }
/// }
/// ```
// A worker runs on one thread: its futures need no `Send` bound, so the lint's
// concern (callers cannot require one) does not apply.
#[allow(async_fn_in_trait)]
pub trait Rules: Send + Sync + 'static {
    /// May this caller run this named read?
    async fn query(&self, caller: &Caller, request: &QueryCallbackRequest)
    -> Result<Decision, CallbackError>;

    /// May this caller apply these writes? One answer for the batch or one per write.
    async fn mutation(
        &self,
        caller: &Caller,
        request: &MutationCallbackRequest,
    ) -> Result<MutationCallbackResponse, CallbackError>;

    /// Who the caller is (see [`Callbacks::subject`]). `Ok(None)` by default.
    async fn subject(&self, caller: &Caller) -> Result<Option<String>, CallbackError> {
        let _ = caller;
        Ok(None)
    }
}

impl<R: Rules> Callbacks for R {
    fn query<'a>(
        &'a self,
        caller: &'a Caller,
        request: &'a QueryCallbackRequest,
    ) -> CallbackFuture<'a, Decision> {
        Box::pin(Rules::query(self, caller, request))
    }

    fn mutation<'a>(
        &'a self,
        caller: &'a Caller,
        request: &'a MutationCallbackRequest,
    ) -> CallbackFuture<'a, MutationCallbackResponse> {
        Box::pin(Rules::mutation(self, caller, request))
    }

    fn subject<'a>(&'a self, caller: &'a Caller) -> CallbackFuture<'a, Option<String>> {
        Box::pin(Rules::subject(self, caller))
    }
}

/// The callbacks over HTTP, at the URLs of the settings [`config::QUERY_CALLBACK_URL`]
/// and [`config::MUTATION_CALLBACK_URL`].
#[derive(Debug, Clone, Copy, Default)]
pub struct HttpCallbacks;

impl HttpCallbacks {
    /// HTTP where the URL settings are set, `local` where they are not.
    pub fn or<L: Callbacks>(local: L) -> HttpOr<L> {
        HttpOr(local)
    }
}

impl Callbacks for HttpCallbacks {
    fn query<'a>(
        &'a self,
        caller: &'a Caller,
        request: &'a QueryCallbackRequest,
    ) -> CallbackFuture<'a, Decision> {
        Box::pin(post_json(caller, config::QUERY_CALLBACK_URL, request))
    }

    fn mutation<'a>(
        &'a self,
        caller: &'a Caller,
        request: &'a MutationCallbackRequest,
    ) -> CallbackFuture<'a, MutationCallbackResponse> {
        Box::pin(post_json(caller, config::MUTATION_CALLBACK_URL, request))
    }
}

/// See [`HttpCallbacks::or`].
pub struct HttpOr<L>(L);

impl<L: Callbacks> Callbacks for HttpOr<L> {
    fn query<'a>(
        &'a self,
        caller: &'a Caller,
        request: &'a QueryCallbackRequest,
    ) -> CallbackFuture<'a, Decision> {
        if config::setting(&caller.env, config::QUERY_CALLBACK_URL).is_some() {
            HttpCallbacks.query(caller, request)
        } else {
            self.0.query(caller, request)
        }
    }

    fn mutation<'a>(
        &'a self,
        caller: &'a Caller,
        request: &'a MutationCallbackRequest,
    ) -> CallbackFuture<'a, MutationCallbackResponse> {
        if config::setting(&caller.env, config::MUTATION_CALLBACK_URL).is_some() {
            HttpCallbacks.mutation(caller, request)
        } else {
            self.0.mutation(caller, request)
        }
    }

    /// Always the app's own code: the seed's HTTP contract has no such call.
    fn subject<'a>(&'a self, caller: &'a Caller) -> CallbackFuture<'a, Option<String>> {
        self.0.subject(caller)
    }
}

/// The reason in a callback's 401 answer (`{"reason": "..."}`), or a default.
fn needs_auth_reason(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|value| value.get("reason").and_then(|reason| reason.as_str()).map(str::to_string))
        .map(|reason| reason.chars().take(400).collect())
        .unwrap_or_else(|| "sign in again".to_string())
}

async fn post_json<T: serde::de::DeserializeOwned>(
    caller: &Caller,
    url_setting: &str,
    body: &impl serde::Serialize,
) -> Result<T, CallbackError> {
    let url = config::setting(&caller.env, url_setting)
        .ok_or_else(|| format!("the setting {url_setting} is not set"))?;
    let body = serde_json::to_string(body).map_err(|error| error.to_string())?;
    let headers = worker::Headers::new();
    let set = |name: &str, value: &str| headers.set(name, value).map_err(|error| error.to_string());
    set("content-type", JSON_CONTENT_TYPE)?;
    set(SECRET_HEADER, &caller.engine_secret)?;
    if let Some(authorization) = &caller.authorization {
        set("authorization", authorization)?;
    }
    let mut init = worker::RequestInit::new();
    init.with_method(worker::Method::Post).with_headers(headers).with_body(Some(body.into()));
    let request = worker::Request::new_with_init(&url, &init).map_err(|error| error.to_string())?;
    let mut response = worker::Fetch::Request(request)
        .send()
        .await
        .map_err(|error| format!("it is unreachable ({error})"))?;
    let status = response.status_code();
    let bytes = response.bytes().await.map_err(|error| error.to_string())?;
    if status == 401 {
        return Err(CallbackError::NeedsAuth(needs_auth_reason(&bytes)));
    }
    if !(200..300).contains(&status) {
        return Err(format!("it answered HTTP {status}").into());
    }
    if bytes.len() > MAX_ANSWER_BYTES {
        return Err("its answer is too large".to_string().into());
    }
    serde_json::from_slice(&bytes)
        .map_err(|error| format!("its answer is not the documented JSON ({error})").into())
}
