//! Test support: one real `mongod` and `nats-server` per test binary, a fresh database and event
//! namespace per test, and an HTTP client with typed helpers.
//!
//! Servers come from the provisioned binaries (see `devenv`) unless `MONGO_URL` / `NATS_URL`
//! point at running ones. They are never shared between test binaries, and a watchdog stops
//! them when the test process exits, however it exits.

pub mod openapi;

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::Sessions;
use common::config::Env;
use common::server::{Server, Service};
use common::session::SessionConfig;
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// The session key every test service signs with.
pub const JWT_KEY: &str = "test-support-jwt-key";

/// A rate limit (per minute, and burst) that no test reaches.
pub const UNTHROTTLED: &str = "1000000";

/// Connection strings of the servers this test binary uses.
#[derive(Debug)]
pub struct Servers {
    /// A MongoDB replica set primary.
    pub mongo_url: String,
    /// A NATS server with JetStream.
    pub nats_url: String,
    // Held for the life of the process; the watchdogs stop them at exit.
    _mongo: Option<devenv::Mongo>,
    _nats: Option<devenv::Nats>,
}

/// The servers of this test binary, started on first use.
///
/// # Panics
/// When the servers cannot be provisioned or started: no test can run without them.
pub fn servers() -> &'static Servers {
    static SERVERS: OnceLock<Result<Servers, String>> = OnceLock::new();
    let servers = SERVERS.get_or_init(|| start_servers().map_err(|e| format!("{e:#}")));
    match servers {
        Ok(servers) => servers,
        Err(error) => panic!("test servers unavailable: {error}"),
    }
}

fn start_servers() -> anyhow::Result<Servers> {
    let env = Env::process();
    let external_mongo = env.get("MONGO_URL");
    let external_nats = env.get("NATS_URL");
    let tools = if external_mongo.is_none() || external_nats.is_none() {
        Some(devenv::default_tools()?)
    } else {
        None
    };
    let (mongo_url, mongo) = match (external_mongo, &tools) {
        (Some(url), _) => (url, None),
        (None, Some(tools)) => {
            let mongo = devenv::start_mongo(tools, devenv::MongoOptions::default())?;
            (mongo.url.clone(), Some(mongo))
        }
        (None, None) => unreachable!("tools are provisioned when a server must be started"),
    };
    let (nats_url, nats) = match (external_nats, &tools) {
        (Some(url), _) => (url, None),
        (None, Some(tools)) => {
            let nats = devenv::start_nats(tools, devenv::NatsOptions::default())?;
            (nats.url.clone(), Some(nats))
        }
        (None, None) => unreachable!("tools are provisioned when a server must be started"),
    };
    Ok(Servers {
        mongo_url,
        nats_url,
        _mongo: mongo,
        _nats: nats,
    })
}

/// A name no other test of any concurrent run uses: for databases and event namespaces.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{prefix}_{}_{n}_{nanos:x}", std::process::id())
}

/// The isolated world of one test: its own databases and event namespace on the shared servers.
#[derive(Debug, Clone)]
pub struct TestContext {
    /// Prefix of this test's databases and NATS subjects/streams.
    pub namespace: String,
    /// The MongoDB server.
    pub mongo_url: String,
    /// The NATS server.
    pub nats_url: String,
}

impl TestContext {
    /// A fresh namespace on this binary's servers.
    pub fn new() -> Self {
        // Trace contexts exist in tests as in production; logs show with RUST_LOG.
        common::telemetry::init_for_tests();
        let servers = servers();
        Self {
            namespace: unique_name("t"),
            mongo_url: servers.mongo_url.clone(),
            nats_url: servers.nats_url.clone(),
        }
    }

    /// The environment a service of this test reads: its own database, plain-HTTP cookies,
    /// the test session key, port 0 on loopback, and sign-in/sign-up limits high enough that
    /// tests signing up hundreds of users from 127.0.0.1 are never throttled.
    pub fn env(&self, service: &str) -> Env {
        Env::from_pairs([
            ("MONGO_URL", self.mongo_url.clone()),
            ("MONGO_DB", format!("{}_{service}", self.namespace)),
            ("NATS_URL", self.nats_url.clone()),
            ("EVENT_NAMESPACE", self.namespace.clone()),
            ("JWT_KEY", JWT_KEY.to_owned()),
            ("COOKIE_SECURE", "false".to_owned()),
            ("HOST", "127.0.0.1".to_owned()),
            ("PORT", "0".to_owned()),
            ("AUTH_RATE_LIMIT_PER_MINUTE", UNTHROTTLED.to_owned()),
            ("AUTH_RATE_LIMIT_BURST", UNTHROTTLED.to_owned()),
        ])
    }

    /// A database of this test, for asserting on what a service stored.
    pub async fn database(&self, service: &str) -> mongodb::Database {
        match mongodb::Client::with_uri_str(&self.mongo_url).await {
            Ok(client) => client.database(&format!("{}_{service}", self.namespace)),
            Err(error) => panic!("connect to test mongodb: {error}"),
        }
    }
}

impl Default for TestContext {
    fn default() -> Self {
        Self::new()
    }
}

/// Sessions signed with the test key, for minting cookies without going through auth.
pub fn sessions() -> Sessions {
    Sessions::new(&SessionConfig {
        jwt_key: JWT_KEY.to_owned(),
        ttl: Duration::from_secs(3600),
        cookie_secure: false,
    })
}

/// Services served on a free loopback port until the value is dropped.
#[derive(Debug)]
pub struct TestApp {
    /// `http://127.0.0.1:PORT`
    pub address: String,
    /// The test's namespace, for direct database assertions.
    pub context: TestContext,
    http: reqwest::Client,
    shutdown: CancellationToken,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A signed-in user: the cookie header to send and who it is.
#[derive(Debug, Clone)]
pub struct TestUser {
    /// User id (ObjectId hex).
    pub id: String,
    /// Email as stored.
    pub email: String,
    /// `session=<jwt>`, ready for a `Cookie` header.
    pub cookie: String,
}

/// A response with its status, headers and JSON body (`Value::Null` when empty or not JSON).
#[derive(Debug)]
pub struct TestResponse {
    /// HTTP status.
    pub status: StatusCode,
    /// Response headers.
    pub headers: reqwest::header::HeaderMap,
    /// Parsed body.
    pub body: Value,
}

impl TestResponse {
    /// The `Set-Cookie` header for the session cookie, if any.
    pub fn session_cookie(&self) -> Option<String> {
        self.headers
            .get_all(reqwest::header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with("session="))
            .map(str::to_owned)
    }

    /// The body deserialized as `T`.
    ///
    /// # Panics
    /// When the body does not have that shape.
    pub fn json<T: DeserializeOwned>(&self) -> T {
        match serde_json::from_value(self.body.clone()) {
            Ok(value) => value,
            Err(error) => panic!("unexpected body {}: {error}", self.body),
        }
    }

    /// The messages of an error body, in order.
    pub fn error_messages(&self) -> Vec<String> {
        self.body["errors"]
            .as_array()
            .map(|errors| {
                errors
                    .iter()
                    .filter_map(|e| e["message"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Asserts the body is in the error shape (`errors`, each with a string `message` and at
    /// most `message` and `field`) and returns it for further checks.
    ///
    /// # Panics
    /// When it is not.
    #[track_caller]
    pub fn assert_error_shape(&self) -> &Self {
        if let Some(problem) = self.error_shape_violation() {
            panic!("{problem}");
        }
        self
    }

    /// What keeps the body from being in the error shape, or `None` when it is: a non-empty
    /// `errors` array whose entries each have a string `message`, an optional string `field`,
    /// and nothing else. For checks that report instead of panicking (the fuzz tests).
    pub fn error_shape_violation(&self) -> Option<String> {
        let Some(errors) = self.body["errors"].as_array().filter(|e| !e.is_empty()) else {
            return Some(format!("not an error body: {}", self.body));
        };
        errors.iter().find_map(|error| {
            let Some(object) = error.as_object() else {
                return Some(format!("bad error entry {error}"));
            };
            if !object.get("message").is_some_and(Value::is_string) {
                return Some(format!("bad error entry {error}"));
            }
            if object.get("field").is_some_and(|f| !f.is_string()) {
                return Some(format!("non-string field in {error}"));
            }
            object
                .keys()
                .any(|k| k != "message" && k != "field")
                .then(|| format!("unexpected keys in {error}"))
        })
    }
}

impl TestApp {
    /// Serves `services` (built from `context.env(...)`) on a free loopback port.
    ///
    /// # Panics
    /// When the server cannot be bound.
    pub async fn serve(context: TestContext, services: Vec<Service>) -> Self {
        Self::serve_on(context, Self::listener().await, services)
    }

    /// A free loopback port, bound, for services that must know their address before
    /// [`TestApp::serve_on`] serves them (the client calls the APIs through it).
    ///
    /// # Panics
    /// When no port can be bound.
    pub async fn listener() -> tokio::net::TcpListener {
        match tokio::net::TcpListener::bind(("127.0.0.1", 0)).await {
            Ok(listener) => listener,
            Err(error) => panic!("bind test server: {error}"),
        }
    }

    /// Serves `services` on a listener from [`TestApp::listener`].
    ///
    /// # Panics
    /// When the services cannot be composed.
    pub fn serve_on(
        context: TestContext,
        listener: tokio::net::TcpListener,
        services: Vec<Service>,
    ) -> Self {
        let shutdown = CancellationToken::new();
        let server = match Server::from_listener(listener, services, shutdown.clone()) {
            Ok(server) => server,
            Err(error) => panic!("compose test server: {error:#}"),
        };
        let address = format!("http://127.0.0.1:{}", server.port());
        tokio::spawn(server.run());
        common::install_tls_provider();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Self {
            address,
            context,
            http,
            shutdown,
        }
    }

    /// The shared HTTP client, for requests the helpers do not cover.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Sends a request; `body` is sent as JSON when present.
    ///
    /// # Panics
    /// When the request cannot be sent at all (the server is down).
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        cookie: Option<&str>,
        body: Option<Value>,
    ) -> TestResponse {
        let mut request = self.http.request(method, format!("{}{path}", self.address));
        if let Some(cookie) = cookie {
            request = request.header(reqwest::header::COOKIE, cookie);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        Self::read(request).await
    }

    /// Sends a prepared request and reads the response.
    ///
    /// # Panics
    /// When the request cannot be sent.
    pub async fn read(request: reqwest::RequestBuilder) -> TestResponse {
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => panic!("request failed: {error}"),
        };
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.unwrap_or_default();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        TestResponse {
            status,
            headers,
            body,
        }
    }

    /// `GET path`.
    pub async fn get(&self, path: &str, cookie: Option<&str>) -> TestResponse {
        self.request(Method::GET, path, cookie, None).await
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, cookie: Option<&str>, body: Value) -> TestResponse {
        self.request(Method::POST, path, cookie, Some(body)).await
    }

    /// `PUT path` with a JSON body.
    pub async fn put(&self, path: &str, cookie: Option<&str>, body: Value) -> TestResponse {
        self.request(Method::PUT, path, cookie, Some(body)).await
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str, cookie: Option<&str>) -> TestResponse {
        self.request(Method::DELETE, path, cookie, None).await
    }

    /// Polls `GET path` until `check` accepts the body, failing with `what` after 10 s.
    pub async fn get_until(
        &self,
        path: &str,
        cookie: Option<&str>,
        what: &str,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        eventually(what, Duration::from_secs(10), || async {
            let body = self.get(path, cookie).await.body;
            check(&body).then_some(body)
        })
        .await
    }

    /// Signs up through the auth API and returns the signed-in user.
    ///
    /// # Panics
    /// When signup does not answer 201 with a session cookie.
    pub async fn signup(&self, email: &str, password: &str) -> TestUser {
        let response = self
            .post(
                "/api/users/signup",
                None,
                serde_json::json!({"email": email, "password": password}),
            )
            .await;
        assert_eq!(
            response.status,
            StatusCode::CREATED,
            "signup failed: {}",
            response.body
        );
        Self::user_from(&response)
    }

    /// Signs in through the auth API and returns the signed-in user.
    ///
    /// # Panics
    /// When signin does not answer 200 with a session cookie.
    pub async fn signin(&self, email: &str, password: &str) -> TestUser {
        let response = self
            .post(
                "/api/users/signin",
                None,
                serde_json::json!({"email": email, "password": password}),
            )
            .await;
        assert_eq!(
            response.status,
            StatusCode::OK,
            "signin failed: {}",
            response.body
        );
        Self::user_from(&response)
    }

    fn user_from(response: &TestResponse) -> TestUser {
        let set_cookie = response.session_cookie().unwrap_or_default();
        let cookie = set_cookie.split(';').next().unwrap_or_default().to_owned();
        assert!(
            cookie.len() > "session=".len(),
            "no session cookie in {set_cookie:?}"
        );
        TestUser {
            id: response.body["id"].as_str().unwrap_or_default().to_owned(),
            email: response.body["email"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            cookie,
        }
    }
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

/// Polls `check` every 10 ms until it returns `Some`, failing with `what` after `timeout`.
///
/// # Panics
/// When the condition is not met in time.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One message read back from a stream of this test's namespace.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    /// The NATS subject it was published on.
    pub subject: String,
    /// Its JSON payload (`Value::Null` if it is not JSON).
    pub payload: Value,
    /// Its headers as name → first value.
    pub headers: std::collections::HashMap<String, String>,
}

impl TestContext {
    /// A bus on this test's namespace (creates the streams if no service did yet).
    pub async fn bus(&self) -> common::events::EventBus {
        let config = common::events::NatsConfig {
            url: self.nats_url.clone(),
            namespace: self.namespace.clone(),
        };
        match common::events::EventBus::connect(&config, "test").await {
            Ok(bus) => bus,
            Err(error) => panic!("connect test bus: {error:#}"),
        }
    }

    /// Everything currently in one of this test's streams, oldest first.
    pub async fn stream_messages(&self, stream: &str) -> Vec<StoredEvent> {
        let bus = self.bus().await;
        let Ok(stream) = bus.jetstream().get_stream(stream).await else {
            return Vec::new();
        };
        let state = match stream.get_info().await {
            Ok(info) => info.state,
            Err(error) => panic!("stream info: {error}"),
        };
        let mut out = Vec::new();
        if state.messages == 0 {
            return out;
        }
        for sequence in state.first_sequence..=state.last_sequence {
            let Ok(message) = stream.get_raw_message(sequence).await else {
                continue;
            };
            let headers = message
                .headers
                .iter()
                .filter_map(|(name, values)| {
                    values.first().map(|v| (name.to_string(), v.to_string()))
                })
                .collect();
            out.push(StoredEvent {
                subject: message.subject.to_string(),
                payload: serde_json::from_slice(&message.payload).unwrap_or(Value::Null),
                headers,
            });
        }
        out
    }

    /// The domain events published so far in this test, as (original subject name, payload).
    pub async fn events(&self) -> Vec<(String, Value)> {
        let prefix = format!("{}.events.", self.namespace);
        self.stream_messages(&format!("{}_events", self.namespace))
            .await
            .into_iter()
            .filter_map(|m| {
                let token = m.subject.strip_prefix(&prefix)?;
                let subject = common::events::Subject::from_token(token)?;
                Some((subject.name().to_owned(), m.payload))
            })
            .collect()
    }

    /// Waits until the durable consumer has handled everything in the stream: nothing left to
    /// deliver, nothing awaiting an ack, and (when `no_redeliveries`) nothing redelivered —
    /// so an assertion that "nothing changed" is made after the message was really processed.
    pub async fn consumer_settled(&self, consumer: &str, no_redeliveries: bool) {
        let bus = self.bus().await;
        let stream = match bus.jetstream().get_stream(bus.stream_name()).await {
            Ok(stream) => stream,
            Err(error) => panic!("event stream: {error}"),
        };
        eventually(
            &format!("consumer {consumer} to settle"),
            Duration::from_secs(10),
            || async {
                let mut consumer: async_nats::jetstream::consumer::PullConsumer =
                    stream.get_consumer(consumer).await.ok()?;
                let info = consumer.info().await.ok()?;
                let settled = info.num_pending == 0
                    && info.num_ack_pending == 0
                    && (!no_redeliveries || info.num_redelivered == 0);
                settled.then_some(())
            },
        )
        .await;
    }

    /// The dead letters so far in this test.
    pub async fn dead_letters(&self) -> Vec<StoredEvent> {
        self.stream_messages(&format!("{}_dlq", self.namespace))
            .await
    }
}
