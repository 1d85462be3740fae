//! Asking the app's callbacks. Either over HTTP (the configured URLs) or, when no URL
//! is set, in-process through the chat app's own callback routes: the same request
//! (headers and JSON body) without the network hop.
//!
//! Whatever goes wrong (down, slow, non-2xx, not the documented JSON) denies, with a
//! reason that says what happened.

use std::time::Duration;

use axum::body::Body;
use futures_util::future::{Either, select};
use serde::de::DeserializeOwned;
use sync::protocol::mutation_callback::{MutationCallbackRequest, MutationCallbackResponse};
use sync::protocol::query_callback::QueryCallbackRequest;
use sync::protocol::{Decision, JSON_CONTENT_TYPE, SECRET_HEADER};
use tower_service::Service;
use worker::Env;

use crate::config::Config;

/// Largest callback answer read.
const MAX_ANSWER_BYTES: usize = 256 * 1024;

pub async fn ask_query(
    env: &Env,
    config: &Config,
    authorization: Option<&str>,
    request: &QueryCallbackRequest,
) -> Decision {
    match call::<Decision>(env, config, config.query_callback_url.as_deref(), "query", authorization, request)
        .await
    {
        Ok(decision) => decision,
        Err(reason) => Decision::deny(format!("query callback failed: {reason}")),
    }
}

pub async fn ask_mutation(
    env: &Env,
    config: &Config,
    authorization: Option<&str>,
    request: &MutationCallbackRequest,
) -> MutationCallbackResponse {
    match call(env, config, config.mutation_callback_url.as_deref(), "mutation", authorization, request).await
    {
        Ok(answer) => answer,
        Err(reason) => {
            MutationCallbackResponse::Batch(Decision::deny(format!("mutation callback failed: {reason}")))
        }
    }
}

async fn call<T: DeserializeOwned>(
    env: &Env,
    config: &Config,
    url: Option<&str>,
    kind: &str,
    authorization: Option<&str>,
    body: &impl serde::Serialize,
) -> Result<T, String> {
    let body = serde_json::to_string(body).map_err(|error| error.to_string())?;
    let timeout = Duration::from_millis(config.callback_timeout_ms);
    let exchange = async {
        match url {
            Some(url) => over_http(url, &config.engine_secret, authorization, body).await,
            None => in_process(env, kind, &config.engine_secret, authorization, body).await,
        }
    };
    let (status, bytes) = match select(Box::pin(exchange), Box::pin(worker::Delay::from(timeout))).await {
        Either::Left((result, _)) => result?,
        Either::Right(_) => return Err(format!("no answer within {} ms", config.callback_timeout_ms)),
    };
    if !(200..300).contains(&status) {
        return Err(format!("it answered HTTP {status}"));
    }
    if bytes.len() > MAX_ANSWER_BYTES {
        return Err("its answer is too large".into());
    }
    serde_json::from_slice(&bytes).map_err(|error| format!("its answer is not the documented JSON ({error})"))
}

async fn over_http(
    url: &str,
    secret: &str,
    authorization: Option<&str>,
    body: String,
) -> Result<(u16, Vec<u8>), String> {
    let headers = worker::Headers::new();
    let set = |name: &str, value: &str| headers.set(name, value).map_err(|error| error.to_string());
    set("content-type", JSON_CONTENT_TYPE)?;
    set(SECRET_HEADER, secret)?;
    if let Some(authorization) = authorization {
        set("authorization", authorization)?;
    }
    let mut init = worker::RequestInit::new();
    init.with_method(worker::Method::Post).with_headers(headers).with_body(Some(body.into()));
    let request = worker::Request::new_with_init(url, &init).map_err(|error| error.to_string())?;
    let mut response = worker::Fetch::Request(request)
        .send()
        .await
        .map_err(|error| format!("it is unreachable ({error})"))?;
    let status = response.status_code();
    let bytes = response.bytes().await.map_err(|error| error.to_string())?;
    Ok((status, bytes))
}

async fn in_process(
    env: &Env,
    kind: &str,
    secret: &str,
    authorization: Option<&str>,
    body: String,
) -> Result<(u16, Vec<u8>), String> {
    let mut request = http::Request::builder()
        .method("POST")
        .uri(format!("/api/callbacks/{kind}"))
        .header("content-type", JSON_CONTENT_TYPE)
        .header(SECRET_HEADER, secret);
    if let Some(authorization) = authorization {
        request = request.header("authorization", authorization);
    }
    let request = request.body(Body::from(body)).map_err(|error| error.to_string())?;
    let mut router = crate::chat_callbacks::router::<()>().layer(axum::Extension(env.clone()));
    let response = match router.call(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    let status = response.status().as_u16();
    let bytes = axum::body::to_bytes(response.into_body(), MAX_ANSWER_BYTES)
        .await
        .map_err(|error| error.to_string())?;
    Ok((status, bytes.to_vec()))
}
