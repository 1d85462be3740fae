//! Guest sign-in for demos and templates: signed guest tokens (HS256 JWTs) for a
//! server-made subject (the identity) with a display name (a label), for one app
//! (`aud`); `POST /api/auth/guest`, and the check an app's callbacks make
//! ([`GuestAuth`]). The connector itself never reads tokens; it forwards
//! `authorization` to the callbacks. A real app brings its own sign-in; its callbacks
//! verify its own tokens.

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
/// The shortest [`AUTH_SECRET`] accepted: HS256 wants a key as long as its hash.
pub const MIN_SECRET_BYTES: usize = 32;

/// Guest tokens last a week, unless the setting [`TOKEN_LIFETIME_SETTING`] says
/// otherwise (seconds; tests use a few).
const TOKEN_LIFETIME_S: u64 = 7 * 24 * 3600;
pub const TOKEN_LIFETIME_SETTING: &str = "AUTH_TOKEN_LIFETIME_S";
/// How long after it expired a token may still be traded for a new one of the same
/// subject (a browser that was closed for a while keeps who it is).
pub const RENEWAL_GRACE_S: u64 = 30 * 24 * 3600;

fn token_lifetime_s(env: &Env) -> u64 {
    config::setting(env, TOKEN_LIFETIME_SETTING)
        .and_then(|value| value.parse::<u64>().ok())
        .filter(|seconds| *seconds > 0)
        .unwrap_or(TOKEN_LIFETIME_S)
}
pub const MAX_NAME_CHARS: usize = 40;
/// Prefix of the subjects guest sign-in makes.
pub const SUBJECT_PREFIX: &str = "user";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The subject: made by the server at the first sign-in (128 random bits), kept
    /// across renewals and renames. The identity an app compares.
    pub sub: String,
    /// The display name: a label the user picks, not an identity (two users may
    /// share one).
    pub name: String,
    /// The app the token was made for: a token of another app is refused, even when
    /// both share a secret.
    pub aud: String,
    pub iat: u64,
    pub exp: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is not a well-formed JWT")]
    Malformed,
    #[error("the token's signature does not match")]
    BadSignature,
    #[error("the token was made for another app")]
    WrongAudience,
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

/// The claims of a token this secret signed for `audience`, expired or not.
fn signed_claims(secret: &str, audience: &str, token: &str) -> Result<Claims, TokenError> {
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
    if claims.aud != audience {
        return Err(TokenError::WrongAudience);
    }
    Ok(claims)
}

/// The claims of a valid token: signed with `secret`, for `audience`, not expired.
pub fn verify(secret: &str, audience: &str, token: &str, now_s: u64) -> Result<Claims, TokenError> {
    let claims = signed_claims(secret, audience, token)?;
    if claims.exp <= now_s {
        return Err(TokenError::Expired);
    }
    Ok(claims)
}

/// The subject a renewal keeps: that of a token signed for `audience` that expired
/// less than [`RENEWAL_GRACE_S`] ago (or not at all).
pub fn renewable_subject(secret: &str, audience: &str, token: &str, now_s: u64) -> Option<String> {
    signed_claims(secret, audience, token)
        .ok()
        .filter(|claims| claims.exp.saturating_add(RENEWAL_GRACE_S) > now_s)
        .map(|claims| claims.sub)
}

/// A fresh subject: `user_` and 128 random bits as a ULID.
pub fn new_subject(random: u128) -> String {
    format!("{SUBJECT_PREFIX}_{}", ulid::Ulid::from(random))
}

pub fn now_s() -> u64 {
    worker::Date::now().as_millis() / 1000
}

/// [`AUTH_SECRET`], refused when missing or shorter than [`MIN_SECRET_BYTES`].
pub fn auth_secret(env: &Env) -> Result<String, ApiError> {
    let secret = config::required(env, AUTH_SECRET)?;
    if secret.len() < MIN_SECRET_BYTES {
        return Err(ApiError::NotConfigured {
            reason: format!(
                "the worker setting {AUTH_SECRET} must hold at least {MIN_SECRET_BYTES} bytes (it has {}): `openssl rand -hex 32`",
                secret.len()
            ),
        });
    }
    Ok(secret)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GuestRequest {
    name: String,
}

/// The answer to a guest sign-in.
#[derive(Serialize)]
pub struct GuestToken {
    token: String,
    subject: String,
    name: String,
    expires_at: u64,
}

/// Who a valid guest token says the caller is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guest {
    /// The server-made identity: compare this, never the name.
    pub subject: String,
    /// The display name the user chose.
    pub name: String,
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

/// Guest sign-in for one app: the audience its tokens name. An app makes one
/// (`GuestAuth::new("notes")`), mounts [`GuestAuth::routes`] and checks callers with
/// [`GuestAuth::signed_in`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestAuth {
    audience: &'static str,
}

impl GuestAuth {
    pub const fn new(audience: &'static str) -> Self {
        Self { audience }
    }

    pub fn audience(&self) -> &'static str {
        self.audience
    }

    /// `POST /api/auth/guest {"name": "Ada"}` (a JSON body, from this origin) -> a
    /// signed token for a server-made subject with that display name, in the body and
    /// as an HttpOnly cookie for server rendering. Sent with a previous token of this
    /// app (`authorization: Bearer`, expired less than [`RENEWAL_GRACE_S`] ago), it
    /// keeps that token's subject: a renewal or a rename, not a new user.
    pub fn routes<S: Clone + Send + Sync + 'static>(self) -> axum::Router<S> {
        axum::Router::new().route(
            "/api/auth/guest",
            axum::routing::post(move |Extension(env): Extension<Env>, raw: axum::extract::Request| {
                guest(self, env, raw)
            }),
        )
    }

    /// Who a bearer guest token says the caller is, or why it says nothing (a
    /// sentence for the user). `Err(ApiError)`: [`AUTH_SECRET`] is missing or short.
    pub fn identify(&self, env: &Env, bearer_token: Option<&str>) -> Result<Result<Guest, String>, ApiError> {
        let secret = auth_secret(env)?;
        Ok(match bearer_token {
            None => Err("sign in first: no bearer token".to_string()),
            Some(token) => verify(&secret, self.audience, token, now_s())
                .map(|claims| Guest { subject: claims.sub, name: claims.name })
                .map_err(|error| format!("sign in again: {error}")),
        })
    }

    /// Who the caller is, for an app's callbacks. A missing, forged, foreign or
    /// expired token is [`CallbackError::NeedsAuth`] (the client renews its sign-in
    /// and sends the same writes again); a missing or short [`AUTH_SECRET`] is
    /// [`CallbackError::Unavailable`].
    pub fn signed_in(&self, caller: &Caller) -> Result<Guest, CallbackError> {
        match self.identify(&caller.env, caller.bearer_token()) {
            Ok(Ok(guest)) => Ok(guest),
            Ok(Err(reason)) => Err(CallbackError::NeedsAuth(reason)),
            Err(error) => Err(CallbackError::Unavailable(error.to_string())),
        }
    }
}

/// A request that sets a cookie must come from this origin: a page elsewhere cannot
/// sign a visitor in (a form can only send `text/plain` or form bodies, and a
/// browser's `fetch` names its origin).
fn check_same_origin_json(request: &axum::extract::Request) -> Result<(), ApiError> {
    let headers = request.headers();
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::UnsupportedMediaType {
            reason: "a sign-in is a JSON body: send `content-type: application/json`".to_string(),
        });
    }
    let Some(origin) = headers.get(axum::http::header::ORIGIN) else { return Ok(()) };
    let host =
        request.uri().authority().map(|authority| authority.as_str().to_string()).or_else(|| {
            headers.get(axum::http::header::HOST).and_then(|h| h.to_str().ok()).map(str::to_string)
        });
    let origin_host = origin.to_str().ok().and_then(|origin| origin.split_once("://")).map(|(_, host)| host);
    match (origin_host, host) {
        (Some(origin_host), Some(host)) if origin_host.eq_ignore_ascii_case(&host) => Ok(()),
        _ => Err(ApiError::Forbidden {
            code: "cross_origin",
            reason: "a sign-in is only accepted from this site's own pages".to_string(),
        }),
    }
}

async fn guest(
    auth: GuestAuth,
    env: Env,
    raw: axum::extract::Request,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse as _;
    let allowed = check_same_origin_json(&raw);
    let previous = raw
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::to_string);
    let secure = raw.uri().scheme_str() != Some("http") || is_loopback(raw.uri().host());
    // The body is read to its end before any answer (one left unread takes the
    // isolate down with the next request).
    let body = read_body(raw).await?;
    allowed?;
    let request: GuestRequest = parse_json(&body)?;
    let name = request.name.trim().to_string();
    if !is_valid_name(&name) {
        return Err(ApiError::bad_request(
            "invalid_name",
            format!(
                "a display name has 1 to {MAX_NAME_CHARS} visible characters (no control, invisible or direction-changing ones)"
            ),
        ));
    }
    let secret = auth_secret(&env)?;
    let iat = now_s();
    let subject = match previous.and_then(|token| renewable_subject(&secret, auth.audience, &token, iat)) {
        Some(subject) => subject,
        None => {
            let mut random = [0u8; 16];
            getrandom::fill(&mut random)
                .map_err(|error| ApiError::upstream(format!("no randomness: {error}")))?;
            new_subject(u128::from_be_bytes(random))
        }
    };
    let lifetime_s = token_lifetime_s(&env);
    let claims = Claims {
        sub: subject.clone(),
        name: name.clone(),
        aud: auth.audience.to_string(),
        iat,
        exp: iat + lifetime_s,
    };
    let token = sign(&secret, &claims);
    // `Secure` everywhere but plain-HTTP hosts other than this machine (browsers keep
    // Secure cookies of http://localhost and 127.0.0.1).
    let secure = if secure { "; Secure" } else { "" };
    let cookie =
        format!("{SIGN_IN_COOKIE}={token}; Path=/; Max-Age={lifetime_s}; HttpOnly; SameSite=Lax{secure}");
    Ok((
        [(axum::http::header::SET_COOKIE, cookie)],
        Json(GuestToken { token, subject, name, expires_at: claims.exp }),
    )
        .into_response())
}

fn is_loopback(host: Option<&str>) -> bool {
    matches!(host, Some("localhost" | "127.0.0.1" | "[::1]" | "::1"))
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
    fn tokens_verify_expire_and_name_their_app() {
        let claims =
            Claims { sub: new_subject(7), name: "Ada".into(), aud: "notes".into(), iat: 10, exp: 20 };
        let token = sign("secret", &claims);
        assert_eq!(verify("secret", "notes", &token, 15), Ok(claims.clone()));
        assert_eq!(verify("other", "notes", &token, 15), Err(TokenError::BadSignature));
        assert_eq!(verify("secret", "board", &token, 15), Err(TokenError::WrongAudience));
        assert_eq!(verify("secret", "notes", &token, 20), Err(TokenError::Expired));
        assert_eq!(verify("secret", "notes", "not.a", 15), Err(TokenError::Malformed));
        // A renewal keeps the subject for a while after expiry, for this app only.
        assert_eq!(renewable_subject("secret", "notes", &token, 20 + RENEWAL_GRACE_S - 1), Some(claims.sub));
        assert_eq!(renewable_subject("secret", "notes", &token, 20 + RENEWAL_GRACE_S), None);
        assert_eq!(renewable_subject("secret", "board", &token, 15), None);
        assert_eq!(renewable_subject("other", "notes", &token, 15), None);
    }

    #[test]
    fn subjects_are_random_ulids() {
        assert_eq!(new_subject(0).len(), "user_".len() + 26);
        assert_ne!(new_subject(1), new_subject(2));
    }
}
