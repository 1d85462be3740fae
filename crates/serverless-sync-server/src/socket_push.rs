//! Pushes on the session's socket (`sync::protocol::socket_push`): the session object
//! runs each through the engine's own `POST /sync/push` route, with what the HTTP
//! request would carry in headers, so the checks, limits, plan and log line are the
//! ones of a push over HTTP; the answer goes back on the socket, and the pokes after it.
//!
//! A session object has no router of the app's: it runs the engine the app installed
//! with [`install`] when its worker's module started. Without one, a push on the
//! socket is answered "send it over HTTP" and the client does.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, OnceLock};

use axum::http::HeaderValue;
use sync::protocol::poke::ServerMessage;
use sync::protocol::socket_push::{SOCKET_PUSH_TYPE, SocketPushIn};

use crate::engine::Engine;
use crate::error::ApiError;
use crate::observe;

static INSTALLED: OnceLock<Engine> = OnceLock::new();

/// Lets this worker's session objects take pushes on their sockets, with `engine`
/// (the one the app's routes use). Call it once when the worker's module starts:
///
/// ```ignore
/// #[worker::event(start)]
/// fn start() {
///     sync_server::install(engine());
/// }
/// ```
pub fn install(engine: &Engine) {
    let _ = INSTALLED.set(engine.clone());
}

pub(crate) fn installed() -> Option<&'static Engine> {
    INSTALLED.get()
}

type Deferred = Pin<Box<dyn Future<Output = ()>>>;

/// Work a handler leaves for after its answer: the runtime's `wait_until` for an HTTP
/// request; kept and awaited by the session object, once it has sent the answer on
/// its socket, for a push on the socket.
#[derive(Clone)]
pub enum AfterAnswer {
    Runtime(Arc<worker::Context>),
    Kept(Arc<worker::send::SendWrapper<Rc<RefCell<Vec<Deferred>>>>>),
}

impl AfterAnswer {
    pub fn run(&self, work: impl Future<Output = ()> + 'static) {
        match self {
            Self::Runtime(ctx) => ctx.wait_until(work),
            Self::Kept(kept) => kept.borrow_mut().push(Box::pin(work)),
        }
    }

    fn kept() -> Self {
        Self::Kept(Arc::new(worker::send::SendWrapper::new(Rc::new(RefCell::new(Vec::new())))))
    }

    fn take(&self) -> Vec<Deferred> {
        match self {
            Self::Runtime(_) => Vec::new(),
            Self::Kept(kept) => kept.borrow_mut().drain(..).collect(),
        }
    }
}

/// Most pushes one session runs at once (a client sends one and waits for its answer);
/// the next are answered 429 at once, so a flood on a socket holds no more upstream
/// connections and memory than this.
pub(crate) const MAX_PUSHES_IN_FLIGHT: usize = 4;

/// Which session a socket belongs to, and from where it was opened.
pub(crate) struct SocketOwner<'a> {
    pub session_id: &'a str,
    pub client_id: &'a str,
    /// The address the socket was opened from (its address rate limit).
    pub address: Option<&'a str>,
}

/// The ids a push names, read before it runs.
#[derive(serde::Deserialize)]
struct Names {
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    session_id: String,
}

/// Answers the push `text` carries (see the module doc): the message for the socket
/// and the work to await once it is sent.
pub(crate) async fn answer(
    env: &worker::Env,
    owner: Option<SocketOwner<'_>>,
    text: &str,
    busy: bool,
) -> (String, Vec<Deferred>) {
    let started = observe::clock_ms();
    let trace = observe::Trace::default();
    let after = AfterAnswer::kept();
    let (id, outcome) = match serde_json::from_str::<SocketPushIn>(text) {
        Ok(push) if push.kind == SOCKET_PUSH_TYPE && busy => (
            push.id,
            Err(ApiError::TooManyRequests {
                reason: format!(
                    "at most {MAX_PUSHES_IN_FLIGHT} pushes at a time on one socket: wait for their answers"
                ),
                retry_after_s: 1,
            }),
        ),
        Ok(push) if push.kind == SOCKET_PUSH_TYPE => {
            let id = push.id;
            (id, run(env, owner, push, trace.clone(), after.clone()).await)
        }
        Ok(_) => (0, Err(ApiError::bad_request("malformed_json", "not a push"))),
        Err(error) => (0, Err(ApiError::bad_request("malformed_json", error.to_string()))),
    };
    let (status, body, error) = match outcome {
        Ok((status, body)) => (status, body, None),
        Err(error) => {
            let response = axum::response::IntoResponse::into_response(error);
            let code = response.extensions().get::<observe::ErrorCode>().map(|code| code.0);
            let status = response.status().as_u16();
            (status, body_json(response).await, code)
        }
    };
    let line = observe::RequestLine::new(
        "WS",
        "/sync/push",
        status,
        (started, observe::clock_ms() - started),
        trace.measures(),
        error,
    );
    observe::log_line(&line);
    observe::request_point(env, &line);
    let message = ServerMessage::Pushed { id, status, body };
    let text = serde_json::to_string(&message).unwrap_or_else(|_| {
        format!(r#"{{"type":"pushed","id":{id},"status":500,"body":{{"error":"internal","reason":"unanswerable"}}}}"#)
    });
    (text, after.take())
}

async fn run(
    env: &worker::Env,
    owner: Option<SocketOwner<'_>>,
    push: SocketPushIn,
    trace: observe::Trace,
    after: AfterAnswer,
) -> Result<(u16, serde_json::Value), ApiError> {
    let Some(engine) = installed() else {
        return Err(ApiError::PushNotOnSocket {
            reason: "this worker takes pushes over HTTP only (no engine installed for its sockets)".into(),
        });
    };
    if push.request.get().len() > crate::connector::MAX_BODY_BYTES {
        return Err(ApiError::PayloadTooLarge { limit: crate::connector::MAX_BODY_BYTES });
    }
    let names: Names = serde_json::from_str(push.request.get())
        .map_err(|error| ApiError::bad_request("malformed_json", error.to_string()))?;
    // A socket carries its own session's pushes only.
    let Some(owner) = owner.filter(|owner| owner.session_id == names.session_id) else {
        return Err(ApiError::Forbidden {
            code: "session_mismatch",
            reason: "a socket carries pushes of its own session only".into(),
        });
    };
    if owner.client_id != names.client_id {
        return Err(ApiError::Forbidden {
            code: "session_mismatch",
            reason: format!(
                "session {} belongs to another client than {}",
                owner.session_id, names.client_id
            ),
        });
    }
    // The session object itself vouches for the pair: the route's claim is answered from
    // memory instead of a call to this very object.
    crate::durable::remember_claim(owner.session_id, owner.client_id);
    let header = |value: &str| {
        HeaderValue::from_str(value)
            .map_err(|_| ApiError::bad_request("malformed_header", "a header value is not text"))
    };
    let mut request = axum::http::Request::builder()
        .method("POST")
        .uri("/sync/push")
        .header("content-type", sync::protocol::JSON_CONTENT_TYPE)
        .header(sync::protocol::CLIENT_KEY_HEADER, header(&push.client_key)?);
    if let Some(authorization) = &push.authorization {
        request = request.header("authorization", header(authorization)?);
    }
    if let Some(address) = owner.address {
        request = request.header("cf-connecting-ip", header(address)?);
    }
    let request = request
        .extension(trace)
        .body(axum::body::Body::from(push.request.get().to_owned()))
        .map_err(|error| ApiError::bad_request("malformed_header", error.to_string()))?;
    let (parts, body) = request.into_parts();
    let router = engine.routes::<()>();
    let response = crate::route(router, parts, body, env, after).await?;
    let status = response.status().as_u16();
    Ok((status, body_json(response).await))
}

async fn body_json(response: axum::http::Response<axum::body::Body>) -> serde_json::Value {
    let bytes = axum::body::to_bytes(response.into_body(), crate::connector::MAX_BODY_BYTES * 4)
        .await
        .unwrap_or_default();
    serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null)
}
