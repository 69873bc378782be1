//! Sessions: an HS256 JWT in the `session` cookie, and the `CurrentUser` / `MaybeCurrentUser`
//! extractors that read it.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderValue, header};
use cookie::{Cookie, SameSite};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, Env};
use crate::error::ApiError;

/// Name of the cookie that carries the session JWT.
pub const COOKIE_NAME: &str = "session";

/// What a session token says about the signed-in user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user's id (ObjectId hex).
    pub id: String,
    /// The user's email, lower-cased.
    pub email: String,
    /// Issued at, seconds since the Unix epoch.
    pub iat: u64,
    /// Expires at, seconds since the Unix epoch.
    pub exp: u64,
}

/// Session settings, read from `JWT_KEY`, `SESSION_TTL_SECONDS` (default 86400) and
/// `COOKIE_SECURE` (default true).
#[derive(Clone)]
pub struct SessionConfig {
    /// The HS256 signing key.
    pub jwt_key: String,
    /// How long a token stays valid.
    pub ttl: Duration,
    /// Whether the cookie carries the `Secure` flag; off only for plain-HTTP local runs.
    pub cookie_secure: bool,
}

impl std::fmt::Debug for SessionConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionConfig")
            .field("jwt_key", &"<redacted>")
            .field("ttl", &self.ttl)
            .field("cookie_secure", &self.cookie_secure)
            .finish()
    }
}

/// The shortest `JWT_KEY` accepted: HS256's own 256 bits. A short key can be found offline
/// from a single token by anyone who signs in.
pub const MIN_KEY_BYTES: usize = 32;

/// Keys published with the code — the developer's stack (`ticketing up` without `JWT_KEY`)
/// and the tests. Anyone can sign any session with them, so they are refused where cookies
/// are `Secure`, that is, anywhere real visitors come.
pub const DEVELOPMENT_KEYS: [&str; 2] = [
    "dev-only-jwt-key-change-me-0123456789abcdef",
    "test-support-jwt-key-published-with-the-code",
];

impl SessionConfig {
    /// Reads the session settings from the environment, failing with the variable's name.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let jwt_key = env.required("JWT_KEY")?;
        let cookie_secure = env.flag_or("COOKIE_SECURE", true)?;
        let refuse = |reason: &str| ConfigError::Invalid {
            name: "JWT_KEY".to_owned(),
            value: format!("<secret of {} bytes>", jwt_key.len()),
            reason: reason.to_owned(),
        };
        if jwt_key.len() < MIN_KEY_BYTES {
            return Err(refuse(
                "shorter than 32 bytes; generate one with `openssl rand -base64 48`",
            ));
        }
        if cookie_secure && DEVELOPMENT_KEYS.contains(&jwt_key.as_str()) {
            return Err(refuse(
                "a development key published with the code, refused with COOKIE_SECURE=true; \
                 set a secret one",
            ));
        }
        Ok(Self {
            jwt_key,
            ttl: Duration::from_secs(env.parse_or("SESSION_TTL_SECONDS", 86_400)?),
            cookie_secure,
        })
    }
}

/// Issues and verifies session tokens. Cheap to clone; keys are parsed once.
#[derive(Clone)]
pub struct Sessions(Arc<Inner>);

struct Inner {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
    cookie_secure: bool,
    verified: Verified,
}

/// Slots in the cache of verified tokens (a few hundred KB when all are filled).
const VERIFIED_SLOTS: usize = 1024;

/// Tokens verified lately with their claims. A browser or API client sends the same token
/// with every request, and decoding it (base64, HMAC, the header and the claims parsed as
/// JSON) was the largest single cost of an authenticated request. A token is immutable and
/// the key never changes in a process, so a token that verified once verifies again until it
/// expires; expiry is still checked on every use. One token per slot, chosen by a keyed hash:
/// memory stays bounded, and a collision only costs a fresh verification.
struct Verified {
    slots: Box<[std::sync::Mutex<Option<Remembered>>]>,
    hasher: std::hash::RandomState,
}

struct Remembered {
    /// The token's keyed hash: a token is compared byte by byte only when this matches, so
    /// response timing tells nothing about the token held in a slot (finding another token
    /// with the same hash needs the process's secret hash key).
    hash: u64,
    token: Box<str>,
    claims: Claims,
}

impl Verified {
    fn new() -> Self {
        Self {
            slots: (0..VERIFIED_SLOTS)
                .map(|_| std::sync::Mutex::new(None))
                .collect(),
            hasher: std::hash::RandomState::new(),
        }
    }

    fn slot(&self, token: &str) -> (u64, &std::sync::Mutex<Option<Remembered>>) {
        let hash = std::hash::BuildHasher::hash_one(&self.hasher, token);
        (hash, &self.slots[hash as usize % self.slots.len()])
    }

    /// The claims of `token` if it verified before and has not expired since.
    fn get(&self, token: &str, now: u64) -> Option<Claims> {
        let (hash, slot) = self.slot(token);
        let slot = slot.lock().ok()?;
        let known = slot.as_ref()?;
        (known.hash == hash && *known.token == *token && known.claims.exp >= now)
            .then(|| known.claims.clone())
    }

    fn put(&self, token: &str, claims: &Claims) {
        let (hash, slot) = self.slot(token);
        if let Ok(mut slot) = slot.lock() {
            *slot = Some(Remembered {
                hash,
                token: token.into(),
                claims: claims.clone(),
            });
        }
    }
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("ttl", &self.0.ttl)
            .finish_non_exhaustive()
    }
}

impl Sessions {
    /// Builds the keys from the configuration.
    pub fn new(config: &SessionConfig) -> Self {
        let secret = config.jwt_key.as_bytes();
        // Only HS256 is accepted: a token claiming any other algorithm, `none` included,
        // fails verification and reads as signed out.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp"]);
        Self(Arc::new(Inner {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ttl: config.ttl,
            cookie_secure: config.cookie_secure,
            verified: Verified::new(),
        }))
    }

    /// Signs a token for this user, valid for the configured lifetime from now.
    pub fn issue(&self, id: &str, email: &str) -> anyhow::Result<(String, Claims)> {
        let iat = now_secs();
        let claims = Claims {
            id: id.to_owned(),
            email: email.to_owned(),
            iat,
            exp: iat.saturating_add(self.0.ttl.as_secs()),
        };
        let token =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.0.encoding)?;
        Ok((token, claims))
    }

    /// Signs a token with explicit claims (tests use it for expired tokens).
    pub fn sign(&self, claims: &Claims) -> anyhow::Result<String> {
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            claims,
            &self.0.encoding,
        )?)
    }

    /// The claims of a valid, unexpired HS256 token; `None` for anything else.
    pub fn verify(&self, token: &str) -> Option<Claims> {
        // The same rule as the validation's (no leeway): valid through its `exp` second.
        if let Some(claims) = self.0.verified.get(token, now_secs()) {
            return Some(claims);
        }
        let claims = jsonwebtoken::decode::<Claims>(token, &self.0.decoding, &self.0.validation)
            .ok()?
            .claims;
        self.0.verified.put(token, &claims);
        Some(claims)
    }

    /// The `Set-Cookie` value that stores `token` in the browser.
    pub fn cookie(&self, token: &str) -> HeaderValue {
        let max_age =
            time::Duration::seconds(i64::try_from(self.0.ttl.as_secs()).unwrap_or(i64::MAX));
        self.cookie_header(token, max_age)
    }

    /// The `Set-Cookie` value that removes the session cookie.
    pub fn clear_cookie(&self) -> HeaderValue {
        self.cookie_header("", time::Duration::ZERO)
    }

    fn cookie_header(&self, value: &str, max_age: time::Duration) -> HeaderValue {
        let mut cookie = Cookie::build((COOKIE_NAME, value))
            .path("/")
            .http_only(true)
            .same_site(SameSite::Lax)
            .secure(self.0.cookie_secure)
            .max_age(max_age);
        if max_age.is_zero() {
            cookie = cookie.expires(time::OffsetDateTime::UNIX_EPOCH);
        }
        // A JWT is base64url and dots: always a valid header value.
        HeaderValue::from_str(&cookie.build().to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("session=; Path=/; Max-Age=0"))
    }

    /// Reads the session from the first `session` cookie of the request; anything missing or
    /// invalid is `None`.
    pub fn from_headers(&self, headers: &axum::http::HeaderMap) -> Option<Claims> {
        cookie(headers, COOKIE_NAME).and_then(|token| self.verify(token.trim_matches('"')))
    }
}

/// The value of the first cookie called `name` in the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// The signed-in user; rejects with 401 `Not authorized` when there is no valid session.
///
/// ```ignore
/// async fn create_ticket(CurrentUser(user): CurrentUser /* , … */) -> Result<Json<Ticket>> {
///     /* … user.id … */
/// }
/// ```
#[derive(Debug, Clone)]
pub struct CurrentUser(pub Claims);

/// The signed-in user if there is one; never rejects.
#[derive(Debug, Clone)]
pub struct MaybeCurrentUser(pub Option<Claims>);

impl<S> FromRequestParts<S> for MaybeCurrentUser
where
    Sessions: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(Sessions::from_ref(state).from_headers(&parts.headers)))
    }
}

impl<S> FromRequestParts<S> for CurrentUser
where
    Sessions: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Sessions::from_ref(state)
            .from_headers(&parts.headers)
            .map(Self)
            .ok_or(ApiError::NotAuthorized)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use axum::http::HeaderMap;
    #[test]
    fn short_and_published_keys_are_refused_by_name_without_showing_them() {
        let config = |key: &str, secure: &str| {
            SessionConfig::from_env(&Env::from_pairs([
                ("JWT_KEY", key),
                ("COOKIE_SECURE", secure),
            ]))
        };
        let short = config("0123456789abcdef", "false").unwrap_err().to_string();
        assert!(
            short.contains("JWT_KEY") && short.contains("32 bytes"),
            "{short}"
        );
        assert!(
            !short.contains("0123456789abcdef"),
            "the key is shown: {short}"
        );
        for key in DEVELOPMENT_KEYS {
            let error = config(key, "true").unwrap_err().to_string();
            assert!(
                error.contains("JWT_KEY") && error.contains("development key"),
                "{error}"
            );
            assert!(
                config(key, "false").is_ok(),
                "{key} on a plain-HTTP dev stack"
            );
        }
        assert!(config(&"k".repeat(MIN_KEY_BYTES), "true").is_ok());
    }

    #[test]
    fn only_the_first_session_cookie_counts() {
        let sessions = sessions(false);
        let (token, _) = sessions.issue("abc", "a@b.c").unwrap();
        let signed_in = headers(&format!("session={token}; session=forged"));
        assert!(sessions.from_headers(&signed_in).is_some());
        // A second, valid token behind a bad first one (an injected cookie, a client trying
        // tokens) is never looked at.
        let behind = headers(&format!("session=forged; session={token}"));
        assert_eq!(sessions.from_headers(&behind), None);
    }

    fn sessions(secure: bool) -> Sessions {
        Sessions::new(&SessionConfig {
            jwt_key: "test-key".into(),
            ttl: Duration::from_secs(60),
            cookie_secure: secure,
        })
    }

    fn headers(cookie: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_str(cookie).unwrap());
        headers
    }

    #[test]
    fn a_remembered_token_still_expires_and_tampering_still_fails() {
        let sessions = sessions(true);
        let (token, claims) = sessions.issue("abc", "a@b.c").unwrap();
        assert_eq!(sessions.verify(&token), Some(claims.clone()));
        let verified = &sessions.0.verified;
        assert_eq!(verified.get(&token, claims.exp), Some(claims.clone()));
        assert_eq!(verified.get(&token, claims.exp + 1), None);
        // Another signature on the same header and claims: not the remembered token.
        let mut tampered = token.clone();
        let last = if tampered.ends_with('A') { "B" } else { "A" };
        tampered.replace_range(tampered.len() - 1.., last);
        assert_eq!(verified.get(&tampered, claims.iat), None);
        assert_eq!(sessions.verify(&tampered), None);
        // Signed with another key, for the same user: never verified here, so never remembered.
        let other = Sessions::new(&SessionConfig {
            jwt_key: "another-key".into(),
            ttl: Duration::from_secs(60),
            cookie_secure: true,
        });
        let forged = other.sign(&claims).unwrap();
        assert_eq!(sessions.verify(&forged), None);
        assert_eq!(sessions.verify(&token), Some(claims));
    }

    #[test]
    fn a_token_it_issued_reads_back() {
        let sessions = sessions(true);
        let (token, claims) = sessions.issue("abc", "a@b.c").unwrap();
        let read = sessions.from_headers(&headers(&format!("other=1; session={token}")));
        assert_eq!(read, Some(claims));
    }

    #[test]
    fn a_token_signed_with_another_key_reads_as_signed_out() {
        let (token, _) = sessions(true).issue("abc", "a@b.c").unwrap();
        let other = Sessions::new(&SessionConfig {
            jwt_key: "other".into(),
            ttl: Duration::from_secs(60),
            cookie_secure: true,
        });
        assert_eq!(other.verify(&token), None);
    }

    #[test]
    fn the_cookie_has_the_expected_flags() {
        let value = sessions(true).cookie("tok");
        let value = value.to_str().unwrap();
        for flag in [
            "session=tok",
            "HttpOnly",
            "SameSite=Lax",
            "Secure",
            "Path=/",
            "Max-Age=60",
        ] {
            assert!(value.contains(flag), "{value} lacks {flag}");
        }
        let value = sessions(false).cookie("tok");
        assert!(!value.to_str().unwrap().contains("Secure"));
    }

    #[test]
    fn clearing_expires_the_cookie() {
        let value = sessions(true).clear_cookie();
        let value = value.to_str().unwrap();
        assert!(value.starts_with("session=;"), "{value}");
        assert!(value.contains("Max-Age=0"), "{value}");
    }

    async fn whoami(CurrentUser(user): CurrentUser) -> String {
        user.email
    }

    async fn status_and_body(sessions: Sessions, cookie: Option<&str>) -> (u16, String) {
        use tower::ServiceExt as _;
        let router = axum::Router::new()
            .route("/", axum::routing::get(whoami))
            .with_state(sessions);
        let mut request = axum::http::Request::builder().uri("/");
        if let Some(cookie) = cookie {
            request = request.header(header::COOKIE, cookie);
        }
        let response = router
            .oneshot(request.body(axum::body::Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status().as_u16();
        let bytes = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    #[tokio::test]
    async fn current_user_rejects_a_missing_session_with_401_in_the_error_shape() {
        let (status, body) = status_and_body(sessions(true), None).await;
        assert_eq!(status, 401);
        assert_eq!(body, r#"{"errors":[{"message":"Not authorized"}]}"#);
    }

    #[tokio::test]
    async fn current_user_accepts_a_valid_session() {
        let sessions = sessions(true);
        let (token, _) = sessions.issue("abc", "a@b.c").unwrap();
        let cookie = format!("session={token}");
        let (status, body) = status_and_body(sessions, Some(&cookie)).await;
        assert_eq!((status, body.as_str()), (200, "a@b.c"));
    }
}
