//! Who and what the cases aim at: an owner and a stranger, their tickets and orders, and the
//! session cookies an attacker could make or replay.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use common::session::{Claims, SessionConfig};
use reqwest::StatusCode;
use serde_json::{Value, json};
use test_support::{TestApp, TestUser, WAIT, eventually};

use super::case::Acts;

/// The fixtures' password, so that some sign-ins are right.
pub(super) const PASSWORD: &str = "password";
/// How long the sessions made here stay valid: longer than any run, so that only the one
/// meant to be expired is.
const DAY: u64 = 86_400;

/// Two users and their records: the owner's ticket for sale, the owner's ticket reserved by
/// the stranger, and the owner's order of the stranger's ticket (known to payments).
pub(super) struct Fixtures {
    pub(super) owner: TestUser,
    pub(super) stranger: TestUser,
    tickets: Vec<String>,
    orders: Vec<String>,
    /// Session cookies an attacker could make or replay, each with who it must read as.
    pub(super) forged: Vec<(&'static str, Bytes, Acts)>,
}

impl Fixtures {
    pub(super) async fn create(app: &TestApp) -> Self {
        let owner = app.signup("owner@fuzz.dev", PASSWORD).await;
        let stranger = app.signup("stranger@fuzz.dev", PASSWORD).await;
        let for_sale = id_of(&app.create_ticket(&owner, "for sale", 25.0).await);
        let reserved = id_of(&app.create_ticket(&owner, "reserved", 25.0).await);
        let strangers = id_of(&app.create_ticket(&stranger, "the stranger's", 25.0).await);
        place_order(app, &stranger, &reserved).await;
        let order = place_order(app, &owner, &strangers).await;
        // Payments knows the order once a declined card is refused rather than 404.
        eventually("payments to know the order", WAIT, || async {
            let response = app
                .post(
                    "/api/payments",
                    Some(&owner.cookie),
                    json!({"token": "tok_chargeDeclined", "orderId": order}),
                )
                .await;
            (response.status == StatusCode::BAD_REQUEST).then_some(())
        })
        .await;
        let forged = forged_sessions(&owner, &stranger);
        Self {
            owner,
            stranger,
            tickets: vec![for_sale, reserved, strangers],
            orders: vec![order],
            forged,
        }
    }

    /// Every record id of the fixtures, tickets and orders alike.
    pub(super) fn ids(&self) -> Vec<String> {
        self.tickets.iter().chain(&self.orders).cloned().collect()
    }
}

/// The `id` of a record as the API answers it.
fn id_of(record: &Value) -> String {
    record["id"].as_str().unwrap().to_owned()
}

/// Orders `ticket` as `user` once the orders replica has it, and returns the order's id.
async fn place_order(app: &TestApp, user: &TestUser, ticket: &str) -> String {
    eventually("the ticket to reach the orders replica", WAIT, || async {
        let response = app
            .post(
                "/api/orders",
                Some(&user.cookie),
                json!({"ticketId": ticket}),
            )
            .await;
        (response.status == StatusCode::CREATED).then(|| id_of(&response.body))
    })
    .await
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

/// Sessions an attacker could try: unsigned, signed with a guessed key, expired, tampered,
/// with another algorithm; and odd ones a key holder could sign.
fn forged_sessions(owner: &TestUser, stranger: &TestUser) -> Vec<(&'static str, Bytes, Acts)> {
    let token = |user: &TestUser| user.cookie.trim_start_matches("session=").to_owned();
    let (owner_token, stranger_token) = (token(owner), token(stranger));
    let claims = |exp| Claims {
        id: owner.id.clone(),
        email: owner.email.clone(),
        iat: now(),
        exp,
    };
    let owner_claims = serde_json::to_vec(&claims(now() + DAY)).unwrap();
    let alg_none = format!(
        "{}.{}.",
        base64url(br#"{"alg":"none","typ":"JWT"}"#),
        base64url(&owner_claims)
    );
    let guessed_key = common::Sessions::new(&SessionConfig {
        jwt_key: "secret".into(),
        ttl: Duration::from_secs(3600),
        cookie_secure: false,
    })
    .sign(&claims(now() + DAY))
    .unwrap();
    let test_key = test_support::sessions();
    let expired = test_key.sign(&claims(now() - 1)).unwrap();
    let parts: Vec<&str> = owner_token.split('.').collect();
    let stranger_parts: Vec<&str> = stranger_token.split('.').collect();
    // The forgeries are only worth something if they are well-formed JWTs: the encoder here
    // writes the real tokens' header exactly.
    assert_eq!(base64url(br#"{"typ":"JWT","alg":"HS256"}"#), parts[0]);
    let hs512 = format!(
        "{}.{}.{}",
        base64url(br#"{"alg":"HS512","typ":"JWT"}"#),
        parts[1],
        parts[2]
    );
    // The stranger's signature on the owner's claims.
    let spliced = format!("{}.{}.{}", parts[0], parts[1], stranger_parts[2]);
    let odd = |id: &str, email: &str, exp: u64| {
        test_key
            .sign(&Claims {
                id: id.to_owned(),
                email: email.to_owned(),
                iat: u64::MAX,
                exp,
            })
            .unwrap()
    };
    let s = |text: String| Bytes::from(text);
    vec![
        ("alg none", s(format!("session={alg_none}")), Acts::Nobody),
        (
            "guessed key",
            s(format!("session={guessed_key}")),
            Acts::Nobody,
        ),
        ("expired", s(format!("session={expired}")), Acts::Nobody),
        ("HS512 header", s(format!("session={hs512}")), Acts::Nobody),
        (
            "spliced signature",
            s(format!("session={spliced}")),
            Acts::Nobody,
        ),
        (
            "truncated",
            s(format!("session={}", &owner_token[..owner_token.len() - 2])),
            Acts::Nobody,
        ),
        (
            "appended",
            s(format!("session={owner_token}x")),
            Acts::Nobody,
        ),
        (
            "wrong name",
            s(format!("Session={owner_token}")),
            Acts::Nobody,
        ),
        ("empty", s("session=".into()), Acts::Nobody),
        ("no value", s("session".into()), Acts::Nobody),
        (
            "quoted owner",
            s(format!("session=\"{owner_token}\"")),
            Acts::Owner,
        ),
        // Only the first session cookie is read: a valid one behind junk is not looked at.
        (
            "junk then stranger",
            s(format!("session=junk; session={stranger_token}")),
            Acts::Nobody,
        ),
        (
            "stranger then junk",
            s(format!("session={stranger_token}; session=junk")),
            Acts::Other,
        ),
        (
            "odd id",
            s(format!("session={}", odd("../../etc", "x", u64::MAX))),
            Acts::Other,
        ),
        (
            "huge claims",
            s(format!(
                "session={}",
                odd(&"9".repeat(2000), &"é".repeat(2000), now() + DAY)
            )),
            Acts::Other,
        ),
        (
            "unicode id",
            s(format!(
                "session={}",
                odd("ß\u{202e}\u{0}", "", now() + DAY)
            )),
            Acts::Other,
        ),
    ]
}
