//! Guest sign-in, the browser half of `sync_server::guest`: a signed token for a
//! server-made subject with a display name (`POST /api/auth/guest`), cached in
//! `localStorage` per app and renewed before it expires. A renewal or a rename sends
//! the cached token along, so the browser keeps its subject. Good for demos and
//! templates; a real app brings its own sign-in and hands its token to
//! [`crate::SyncClient::start`].

use crate::{AppName, SyncClient};

/// A cached token is renewed once it has less than this left (seconds).
const RENEW_BEFORE_S: u64 = 600;

#[derive(serde::Serialize, serde::Deserialize)]
struct Token {
    token: String,
    subject: String,
    name: String,
    expires_at: u64,
}

/// Who this browser is signed in as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The server-made subject: what an app stores with a record and compares.
    pub subject: String,
    /// The display name: a label.
    pub name: String,
}

impl Token {
    fn identity(&self) -> Identity {
        Identity { subject: self.subject.clone(), name: self.name.clone() }
    }

    /// The bearer token and who it says the browser is.
    fn into_parts(self) -> (String, Identity) {
        let identity = self.identity();
        (self.token, identity)
    }
}

fn storage() -> Option<web_sys::Storage> {
    web_sys::window().and_then(|window| window.local_storage().ok().flatten())
}

fn cached(app: AppName) -> Option<Token> {
    let text = storage()?.get_item(&app.token_key()).ok().flatten()?;
    serde_json::from_str::<Token>(&text).ok()
}

/// The identity of the cached token, if any (fresh or not).
pub fn identity(app: AppName) -> Option<Identity> {
    cached(app).map(|token| token.identity())
}

async fn fetch_token(name: &str, previous: Option<&str>) -> Result<Token, String> {
    let mut request = gloo_net::http::Request::post("/api/auth/guest");
    if let Some(previous) = previous {
        request = request.header("authorization", &format!("Bearer {previous}"));
    }
    let response = request
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

/// A new token for `name`, fetched now (keeping the cached token's subject) and
/// cached.
pub async fn renew(app: AppName, name: &str) -> Result<(String, Identity), String> {
    let previous = cached(app).map(|token| token.token);
    let fresh = fetch_token(name, previous.as_deref()).await?;
    if let (Some(storage), Ok(text)) = (storage(), serde_json::to_string(&fresh)) {
        let _ = storage.set_item(&app.token_key(), &text);
    }
    Ok(fresh.into_parts())
}

/// A token for `name`: the cached one while it is fresh and for that name, else a
/// new one; offline, the cached one even if stale (local work goes on; the server
/// says if it is too old).
pub async fn token_for(app: AppName, name: &str) -> Result<(String, Identity), String> {
    let now_s = (js_sys::Date::now() / 1000.0) as u64;
    if let Some(cached) = cached(app)
        && cached.name == name
        && cached.expires_at > now_s + RENEW_BEFORE_S
    {
        return Ok(cached.into_parts());
    }
    match renew(app, name).await {
        Ok(signed_in) => Ok(signed_in),
        Err(error) => cached(app).map(Token::into_parts).ok_or(error),
    }
}

/// Signs the sync worker in as `name` (again, after a rename). When the server later
/// finds the token expired, a new one is fetched for the same subject and name
/// without asking; if that fails, [`SyncClient::needs_auth`] stays true for the app
/// to ask the user.
pub fn sign_in(client: SyncClient, app: AppName, name: String) {
    sign_in_then(client, app, name, |_| ());
}

/// [`sign_in`], telling `on_identity` who the browser is signed in as (at once from
/// the cache when it can, and after every renewal).
pub fn sign_in_then(
    client: SyncClient,
    app: AppName,
    name: String,
    on_identity: impl Fn(Identity) + 'static,
) {
    let on_identity = std::rc::Rc::new(on_identity);
    let renew_name = name.clone();
    let on_renewed = on_identity.clone();
    client.on_needs_auth(move || {
        let name = renew_name.clone();
        let on_renewed = on_renewed.clone();
        async move {
            let (token, identity) = renew(app, &name).await.ok()?;
            on_renewed(identity);
            Some(token)
        }
    });
    leptos::task::spawn_local(async move {
        match token_for(app, &name).await {
            Ok((token, identity)) => {
                on_identity(identity);
                if let Err(error) = client.start(token).await {
                    leptos::logging::error!("sync worker: {error}");
                }
            }
            Err(error) => leptos::logging::error!("guest token: {error}"),
        }
    });
}
