//! Guest sign-in, the browser half of `sync_server::guest`: a signed token for a
//! display name (`POST /api/auth/guest`), cached in `localStorage` per app and
//! renewed before it expires. Good for demos and templates; a real app brings its own
//! sign-in and hands its token to [`crate::SyncClient::start`].

use crate::{AppName, SyncClient};

/// A cached token is renewed once it has less than this left (seconds).
const RENEW_BEFORE_S: u64 = 600;

#[derive(serde::Serialize, serde::Deserialize)]
struct Token {
    token: String,
    name: String,
    expires_at: u64,
}

fn storage() -> Option<web_sys::Storage> {
    web_sys::window().and_then(|window| window.local_storage().ok().flatten())
}

fn stored_token(app: AppName, name: &str) -> Option<Token> {
    let text = storage()?.get_item(&app.token_key()).ok().flatten()?;
    serde_json::from_str::<Token>(&text).ok().filter(|token| token.name == name)
}

async fn fetch_token(name: &str) -> Result<Token, String> {
    let response = gloo_net::http::Request::post("/api/auth/guest")
        .json(&serde_json::json!({ "name": name }))
        .map_err(|e| e.to_string())?
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !response.ok() {
        return Err(response.text().await.unwrap_or_default());
    }
    response.json::<Token>().await.map_err(|e| e.to_string())
}

/// A new token for `name`, fetched now and cached.
pub async fn renew(app: AppName, name: &str) -> Result<String, String> {
    let fresh = fetch_token(name).await?;
    if let (Some(storage), Ok(text)) = (storage(), serde_json::to_string(&fresh)) {
        let _ = storage.set_item(&app.token_key(), &text);
    }
    Ok(fresh.token)
}

/// A token for `name`: the cached one while it is fresh, else a new one; offline, the
/// cached one even if stale (local work goes on; the server says if it is too old).
pub async fn token_for(app: AppName, name: &str) -> Result<String, String> {
    let now_s = (js_sys::Date::now() / 1000.0) as u64;
    if let Some(cached) = stored_token(app, name)
        && cached.expires_at > now_s + RENEW_BEFORE_S
    {
        return Ok(cached.token);
    }
    match renew(app, name).await {
        Ok(token) => Ok(token),
        Err(error) => stored_token(app, name).map(|cached| cached.token).ok_or(error),
    }
}

/// Signs the sync worker in as `name` (again, after a rename). When the server later
/// finds the token expired, a new one is fetched for the same name without asking;
/// if that fails, [`SyncClient::needs_auth`] stays true for the app to ask the user.
pub fn sign_in(client: SyncClient, app: AppName, name: String) {
    let renew_name = name.clone();
    client.on_needs_auth(move || {
        let name = renew_name.clone();
        async move { renew(app, &name).await.ok() }
    });
    leptos::task::spawn_local(async move {
        match token_for(app, &name).await {
            Ok(token) => {
                if let Err(error) = client.start(token).await {
                    leptos::logging::error!("sync worker: {error}");
                }
            }
            Err(error) => leptos::logging::error!("guest token: {error}"),
        }
    });
}
