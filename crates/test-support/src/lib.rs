//! Test support: one real `mongod` and `nats-server` per test binary, a fresh database and event
//! namespace per test, and an HTTP client with typed helpers.
//!
//! Servers come from the provisioned binaries (see `devenv`) unless `MONGO_URL` / `NATS_URL`
//! point at running ones. They are never shared between test binaries, and a watchdog stops
//! them when the test process exits, however it exits.

mod app;
mod context;
mod events;
pub mod metrics;
pub mod openapi;
mod servers;
pub mod stripe;
mod wait;

use std::time::Duration;

use common::Sessions;
use common::session::SessionConfig;

pub use app::{
    REQUEST_TIMEOUT, TestApp, TestResponse, TestUser, assert_one_created, client, client_builder,
};
pub use context::{TestContext, spawn_app};
pub use events::{StoredEvent, redeliver};
pub use servers::{Servers, servers, unique_name};
pub use stripe::FakeStripe;
pub use wait::{WAIT, eventually};

/// The session key every test service signs with (published, so accepted only without
/// `Secure` cookies, as in tests).
pub const JWT_KEY: &str = common::session::DEVELOPMENT_KEYS[1];

/// A rate limit (per minute, and burst) that no test reaches.
pub const UNTHROTTLED: &str = "1000000";

/// Sessions signed with the test key, for minting cookies without going through auth.
pub fn sessions() -> Sessions {
    Sessions::new(&SessionConfig {
        jwt_key: JWT_KEY.to_owned(),
        ttl: Duration::from_secs(3600),
        cookie_secure: false,
    })
}

/// A user signed in without the auth service: a cookie minted with the test key, for services
/// that only read sessions.
pub fn fake_user() -> TestUser {
    let id = mongodb::bson::oid::ObjectId::new().to_hex();
    let email = format!("{id}@test.dev");
    match sessions().issue(&id, &email) {
        Ok((token, _)) => TestUser {
            id,
            email,
            cookie: format!("session={token}"),
        },
        Err(error) => panic!("mint session: {error:#}"),
    }
}
