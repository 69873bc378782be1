//! `TestApp`: services served on a free loopback port, and an HTTP client with typed helpers
//! (`signup`, `create_ticket`, …) whose every request has a timeout.

use std::time::Duration;

use common::security::HttpSecurity;
use common::server::{HttpConfig, Limits, Server, Service};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::{TestContext, WAIT, eventually};

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

    /// Asserts the response is `status` with one error, `message`, and returns it for further
    /// checks.
    ///
    /// # Panics
    /// When it is not.
    #[track_caller]
    pub fn assert_error(&self, status: StatusCode, message: &str) -> &Self {
        assert_eq!(self.status, status, "{}", self.body);
        assert_eq!(self.error_messages(), [message]);
        self
    }

    /// Asserts the response refuses `input` (what was sent, for the failure's message) with
    /// 400, its first error naming `field`, and returns it for further checks.
    ///
    /// # Panics
    /// When it does not.
    #[track_caller]
    pub fn assert_bad_field(&self, field: &str, input: &Value) -> &Self {
        assert_eq!(self.status, StatusCode::BAD_REQUEST, "{input}");
        assert_eq!(
            self.body["errors"][0]["field"], field,
            "{input}: {}",
            self.body
        );
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
        Self::serve_limited(context, listener, services, Limits::default())
    }

    /// [`TestApp::serve_on`] with these server limits.
    ///
    /// # Panics
    /// When the services cannot be composed.
    pub fn serve_limited(
        context: TestContext,
        listener: tokio::net::TcpListener,
        services: Vec<Service>,
        limits: Limits,
    ) -> Self {
        let shutdown = CancellationToken::new();
        let http = match listener.local_addr() {
            Ok(listen) => HttpConfig {
                listen,
                security: HttpSecurity::default(),
                limits,
            },
            Err(error) => panic!("test listener: {error}"),
        };
        let server = match Server::from_listener(listener, services, shutdown.clone()) {
            Ok(server) => server.with_http(&http),
            Err(error) => panic!("compose test server: {error:#}"),
        };
        let address = format!("http://127.0.0.1:{}", server.port());
        tokio::spawn(server.run());
        let http = client();
        Self {
            address,
            context,
            http,
            shutdown,
        }
    }

    /// A client of services served elsewhere (another process) at `address`, with the same
    /// helpers.
    pub fn at(context: TestContext, address: String) -> Self {
        Self {
            address,
            context,
            http: client(),
            shutdown: CancellationToken::new(),
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

    /// `GET path` as text: its status and body, for what is not JSON.
    ///
    /// # Panics
    /// When the request cannot be sent or its body read.
    pub async fn get_text(&self, path: &str) -> (StatusCode, String) {
        let request = self.http.get(format!("{}{path}", self.address));
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => panic!("GET {path} failed: {error}"),
        };
        let status = response.status();
        match response.text().await {
            Ok(body) => (status, body),
            Err(error) => panic!("GET {path}: reading the body failed: {error}"),
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

    /// Sends `body` to `path` with `method` and no session, asserts the answer is 401, and
    /// returns it for further checks.
    ///
    /// # Panics
    /// When it is not 401.
    pub async fn assert_needs_session(
        &self,
        method: Method,
        path: &str,
        body: Value,
    ) -> TestResponse {
        let response = self.request(method.clone(), path, None, Some(body)).await;
        assert_eq!(
            response.status,
            StatusCode::UNAUTHORIZED,
            "{method} {path} without a session: {}",
            response.body
        );
        response
    }

    /// Creates a ticket as `user` and returns it.
    ///
    /// # Panics
    /// When the tickets service does not answer 201.
    pub async fn create_ticket(&self, user: &TestUser, title: &str, price: f64) -> Value {
        let body = serde_json::json!({"title": title, "price": price});
        let response = self.post("/api/tickets", Some(&user.cookie), body).await;
        assert_eq!(response.status, StatusCode::CREATED, "{}", response.body);
        response.body
    }

    /// Orders `ticket` as `buyer` as soon as the orders service's replica has it (a new
    /// ticket reaches it as an event), and returns the order.
    ///
    /// # Panics
    /// When no order is created within [`WAIT`].
    pub async fn order_ticket(&self, buyer: &TestUser, ticket: &str) -> Value {
        eventually("the orders replica to have the ticket", WAIT, || async {
            let body = serde_json::json!({"ticketId": ticket});
            let response = self.post("/api/orders", Some(&buyer.cookie), body).await;
            (response.status == StatusCode::CREATED).then_some(response.body)
        })
        .await
    }

    /// Polls `GET /api/tickets/{id}` until `check` accepts the ticket, failing with `what`
    /// after [`WAIT`].
    pub async fn ticket_where(
        &self,
        id: &str,
        what: &str,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        self.get_until(&format!("/api/tickets/{id}"), None, what, check)
            .await
    }

    /// Polls `GET path` until `check` accepts the body, failing with `what` after [`WAIT`].
    pub async fn get_until(
        &self,
        path: &str,
        cookie: Option<&str>,
        what: &str,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        eventually(what, WAIT, || async {
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

/// Asserts that exactly one of `responses` (attempts racing for one thing) is 201 Created, and
/// returns the others, the attempts that lost, for checks of how they were refused.
///
/// # Panics
/// When none or more than one is.
#[track_caller]
pub fn assert_one_created(responses: &[TestResponse]) -> Vec<&TestResponse> {
    let (created, refused): (Vec<_>, Vec<_>) = responses
        .iter()
        .partition(|r| r.status == StatusCode::CREATED);
    assert_eq!(created.len(), 1);
    refused
}

/// Longest a test request may take: far beyond any answer a working service gives, so a hung
/// request fails its test (naming the request) instead of hanging the run.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// The HTTP client of the test helpers: no redirects followed, every request bounded by
/// [`REQUEST_TIMEOUT`].
pub fn client() -> reqwest::Client {
    client_builder().build().unwrap_or_default()
}

/// The settings of [`client`], for a test that needs one more (an unpooled client, say) and
/// keeps the rest: no redirects followed, every request bounded by [`REQUEST_TIMEOUT`].
pub fn client_builder() -> reqwest::ClientBuilder {
    common::install_tls_provider();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(REQUEST_TIMEOUT)
        // Closed before the server closes idle connections (its header timeout, 10 s by
        // default), so that no request races a close.
        .pool_idle_timeout(std::time::Duration::from_secs(5))
}
