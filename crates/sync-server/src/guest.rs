//! Guest sign-in for demos and templates: signed guest tokens (HS256 JWTs) for a
//! display name, `POST /api/auth/guest`, and the check an app's callbacks make. The
//! connector itself never reads tokens; it forwards `authorization` to the callbacks.
//! A real app brings its own sign-in; its callbacks verify its own tokens.

use axum::Json;
use axum::extract::Extension;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use worker::Env;

use crate::callbacks::{CallbackError, Caller};
use crate::config;
use crate::connector::{parse_json, read_body};
use crate::error::ApiError;

/// The setting holding the key that signs guest tokens.
pub const AUTH_SECRET: &str = "AUTH_SECRET";

/// Guest tokens last a week, unless the setting [`TOKEN_LIFETIME_SETTING`] says
/// otherwise (seconds; tests use a few).
const TOKEN_LIFETIME_S: u64 = 7 * 24 * 3600;
pub const TOKEN_LIFETIME_SETTING: &str = "AUTH_TOKEN_LIFETIME_S";

fn token_lifetime_s(env: &Env) -> u64 {
    config::setting(env, TOKEN_LIFETIME_SETTING)
        .and_then(|value| value.parse::<u64>().ok())
        .filter(|seconds| *seconds > 0)
        .unwrap_or(TOKEN_LIFETIME_S)
}
pub const MAX_NAME_CHARS: usize = 40;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The display name.
    pub sub: String,
    pub iat: u64,
    pub exp: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is not a well-formed JWT")]
    Malformed,
    #[error("the token's signature does not match")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
}

fn mac(secret: &str) -> Hmac<Sha256> {
    // HMAC takes keys of any length; this cannot fail.
    <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap_or_else(|_| unreachable!())
}

pub fn sign(secret: &str, claims: &Claims) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap_or_default());
    let signing_input = format!("{header}.{payload}");
    let mut mac = mac(secret);
    mac.update(signing_input.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signing_input}.{signature}")
}

pub fn verify(secret: &str, token: &str, now_s: u64) -> Result<Claims, TokenError> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| TokenError::Malformed)?;
    let mut mac = mac(secret);
    mac.update(format!("{header}.{payload}").as_bytes());
    mac.verify_slice(&signature).map_err(|_| TokenError::BadSignature)?;
    let claims: Claims = URL_SAFE_NO_PAD
        .decode(payload)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or(TokenError::Malformed)?;
    if claims.exp <= now_s {
        return Err(TokenError::Expired);
    }
    Ok(claims)
}

pub fn now_s() -> u64 {
    worker::Date::now().as_millis() / 1000
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GuestRequest {
    name: String,
}

#[derive(Serialize)]
pub struct GuestToken {
    token: String,
    name: String,
    expires_at: u64,
}

/// Cookie holding the guest token, so the server can render a page with the user's
/// data on the first paint (the sync requests themselves send it as `authorization`).
pub const SIGN_IN_COOKIE: &str = "sync_token";

/// The token in the request's [`SIGN_IN_COOKIE`], if any.
pub fn token_from_cookie(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SIGN_IN_COOKIE)
        .map(|(_, token)| token.to_string())
}

/// `POST /api/auth/guest {"name": "Ada"}` -> a signed token for that display name (in
/// the body, and as an HttpOnly cookie for server rendering).
/// Characters a name must not hold: controls, and the invisible ones that make two
/// names look alike or turn text around (zero-width, direction overrides and
/// isolates, word joiners, the BOM, soft hyphen, the Hangul and braille fillers).
fn is_hidden(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
            | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{206F}'
            | '\u{2800}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}' | '\u{FFA0}'
            | '\u{FFF9}'..='\u{FFFB}' | '\u{E0000}'..='\u{E007F}')
}

/// 1 to [`MAX_NAME_CHARS`] characters, none of them hidden.
pub fn is_valid_name(name: &str) -> bool {
    let chars = name.chars().count();
    (1..=MAX_NAME_CHARS).contains(&chars) && !name.chars().any(is_hidden)
}

/// `POST /api/auth/guest`, for an app's router.
pub fn routes<S: Clone + Send + Sync + 'static>() -> axum::Router<S> {
    axum::Router::new().route("/api/auth/guest", axum::routing::post(guest))
}

/// The display name in a bearer guest token, or why there is none (a sentence for the
/// user). `Err(ApiError)`: the setting [`AUTH_SECRET`] is missing.
pub fn user(env: &Env, bearer_token: Option<&str>) -> Result<Result<String, String>, ApiError> {
    let secret = config::required(env, AUTH_SECRET)?;
    Ok(match bearer_token {
        None => Err("sign in first: no bearer token".to_string()),
        Some(token) => verify(&secret, token, now_s())
            .map(|claims| claims.sub)
            .map_err(|error| format!("sign in again: {error}")),
    })
}

/// The display name in the caller's guest token, for an app's callbacks. A missing,
/// forged or expired token is [`CallbackError::NeedsAuth`] (the client renews its
/// sign-in and sends the same writes again); a missing [`AUTH_SECRET`] is
/// [`CallbackError::Unavailable`].
pub fn signed_in(caller: &Caller) -> Result<String, CallbackError> {
    match user(&caller.env, caller.bearer_token()) {
        Ok(Ok(name)) => Ok(name),
        Ok(Err(reason)) => Err(CallbackError::NeedsAuth(reason)),
        Err(error) => Err(CallbackError::Unavailable(error.to_string())),
    }
}

async fn guest(
    Extension(env): Extension<Env>,
    raw: axum::extract::Request,
) -> Result<impl axum::response::IntoResponse, ApiError> {
    let request: GuestRequest = parse_json(&read_body(raw).await?)?;
    let name = request.name.trim().to_string();
    if !is_valid_name(&name) {
        return Err(ApiError::bad_request(
            "invalid_name",
            format!(
                "a display name has 1 to {MAX_NAME_CHARS} visible characters (no control, invisible or direction-changing ones)"
            ),
        ));
    }
    let secret = config::required(&env, AUTH_SECRET)?;
    let iat = now_s();
    let lifetime_s = token_lifetime_s(&env);
    let claims = Claims { sub: name.clone(), iat, exp: iat + lifetime_s };
    let token = sign(&secret, &claims);
    let cookie = format!("{SIGN_IN_COOKIE}={token}; Path=/; Max-Age={lifetime_s}; HttpOnly; SameSite=Lax");
    Ok(([(axum::http::header::SET_COOKIE, cookie)], Json(GuestToken { token, name, expires_at: claims.exp })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_refuse_invisible_and_direction_changing_characters() {
        assert!(is_valid_name("Ada"));
        assert!(is_valid_name("Zoë 🚀"));
        for bad in
            ["", "Ada\u{202E}nimda", "A\u{200B}da", "Ada\u{2066}", "\u{FEFF}Ada", "Ada\n", "x\u{E0041}"]
        {
            assert!(!is_valid_name(bad), "{bad:?}");
        }
        assert!(!is_valid_name(&"x".repeat(MAX_NAME_CHARS + 1)));
    }

    #[test]
    fn tokens_verify_and_expire() {
        let claims = Claims { sub: "Ada".into(), iat: 10, exp: 20 };
        let token = sign("secret", &claims);
        assert_eq!(verify("secret", &token, 15), Ok(claims));
        assert_eq!(verify("other", &token, 15), Err(TokenError::BadSignature));
        assert_eq!(verify("secret", &token, 20), Err(TokenError::Expired));
        assert_eq!(verify("secret", "not.a", 15), Err(TokenError::Malformed));
    }
}
