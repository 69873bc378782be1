//! The fuzz harness: one stack with its fixtures, `FUZZ_CASES` and `FUZZ_SEED`, a proptest
//! runner per route that sends each case and shrinks a failure, and the report of what was sent.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use common::config::Env;
use proptest::strategy::Strategy;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestError, TestRunner};
use reqwest::header::{CONTENT_TYPE, COOKIE, HeaderName, HeaderValue};
use serde_json::Value;
use test_support::{REQUEST_TIMEOUT, TestApp, TestResponse};

use super::case::Probe;
use super::fixtures::Fixtures;
use super::oracle::{Route, verdict};

/// Cases per route and weight unless `FUZZ_CASES` says otherwise.
const DEFAULT_CASES: u32 = 200;

/// One stack, its fixtures, and what was sent to it.
pub(super) struct Fuzz {
    name: &'static str,
    app: TestApp,
    http: reqwest::Client,
    /// Who and what the cases aim at.
    pub(super) fx: Fixtures,
    cases: u32,
    seed: u64,
    started: Instant,
    /// Per route, how many answers of each status.
    sent: Mutex<BTreeMap<&'static str, BTreeMap<u16, u64>>>,
    failures: Mutex<Vec<String>>,
}

/// An answer as the oracle reads it: the response, its body as text, and the path the server
/// saw.
type Answer = (TestResponse, String, String);

impl Fuzz {
    pub(super) async fn start(name: &'static str) -> Self {
        let env = Env::process();
        // A value that does not parse fails the test, naming the variable.
        let cases = env.parse_or("FUZZ_CASES", DEFAULT_CASES).unwrap();
        let seed = env.parse_or("FUZZ_SEED", fresh_seed()).unwrap();
        // X-Forwarded-For is read (and must survive junk) as behind a proxy: the test's own
        // address is trusted.
        let app = crate::spawn_stack_with(&[("TRUSTED_PROXIES", "127.0.0.1")]).await;
        let fx = Fixtures::create(&app).await;
        // A fresh connection per request: a server may close a keep-alive connection after
        // answering early without reading a body (a 401 before the body, a GET with a body),
        // and a pooled client would then see the *next* case fail for no fault of its own.
        // Unpooled, every case stands alone, which is also what makes shrinking meaningful.
        // The shared client's timeout stays: a request that hangs fails its case.
        let http = test_support::client_builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        Self {
            name,
            app,
            http,
            fx,
            cases,
            seed,
            started: Instant::now(),
            sent: Mutex::new(BTreeMap::new()),
            failures: Mutex::new(Vec::new()),
        }
    }

    /// Runs `weight` × `FUZZ_CASES` cases of `strategy` against the stack, shrinking a failure
    /// to a minimal request and recording it.
    pub(super) fn run(&self, route: Route, weight: u32, strategy: impl Strategy<Value = Probe>) {
        let config = Config {
            cases: self.cases.saturating_mul(weight),
            failure_persistence: None,
            max_shrink_iters: 256,
            // Each route its own stream of cases, all replayable from the one seed.
            rng_seed: RngSeed::Fixed(self.seed ^ fnv(route.label)),
            ..Config::default()
        };
        let mut runner = TestRunner::new(config);
        let handle = tokio::runtime::Handle::current();
        let result = tokio::task::block_in_place(|| {
            runner
                .run(&strategy, |probe| {
                    handle.block_on(self.check(route, &probe)).map(drop)
                })
                .map_err(|error| match error {
                    TestError::Fail(reason, probe) => {
                        format!("{}: {reason}\n  minimal input: {probe:#?}", route.label)
                    }
                    TestError::Abort(reason) => format!("{}: aborted: {reason}", route.label),
                })
        });
        if let Err(failure) = result {
            self.failures
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(failure);
        }
    }

    /// Sends one probe and checks every promise of `route` on the answer.
    async fn check(&self, route: Route, probe: &Probe) -> Result<TestResponse, TestCaseError> {
        let (response, text, path) = match self.send(probe).await {
            Ok(answer) => answer,
            Err(error) => {
                let failure = format!("{} {}: {error}", probe.method, probe.path);
                return Err(TestCaseError::fail(failure));
            }
        };
        *self
            .sent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(route.label)
            .or_default()
            .entry(response.status.as_u16())
            .or_default() += 1;
        match verdict(route, &self.fx, probe, &response, &path) {
            Ok(()) => Ok(response),
            Err(what) => Err(TestCaseError::fail(format!(
                "{what} for {} {path}: {}",
                probe.method,
                excerpt(&text)
            ))),
        }
    }

    /// Sends a fixed probe (a regression) under the common checks, failing at once if one
    /// does not hold, and returns the answer for the caller's own assertions.
    pub(super) async fn replay(&self, probe: Probe) -> TestResponse {
        match self.check(Route::new("regressions"), &probe).await {
            Ok(response) => response,
            Err(failure) => panic!("{failure}\n  input: {probe:#?}"),
        }
    }

    /// A fresh `csrf=…` cookie pair and the form token that goes with it and `cookie` (the
    /// probe's own), read off the page a visitor with those cookies is shown a form on.
    async fn form_token(&self, cookie: Option<&Bytes>) -> Result<(String, String), String> {
        let (_, headers, _) = crate::visitor::Visitor::new(&self.app)
            .get("/auth/signin")
            .await;
        let csrf = headers
            .get_all(reqwest::header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| v.split(';').next().filter(|pair| pair.starts_with("csrf=")))
            .ok_or("no csrf cookie")?
            .to_owned();
        for page in ["/auth/signin", "/tickets/new"] {
            let mut with = cookie.map(|c| c.to_vec()).unwrap_or_default();
            with.extend_from_slice(format!("; {csrf}").as_bytes());
            let request = self
                .http
                .get(format!("{}{page}", self.app.address))
                .header(COOKIE, header_value(&Bytes::from(with)));
            let html = request
                .send()
                .await
                .map_err(|e| e.to_string())?
                .text()
                .await
                .map_err(|e| e.to_string())?;
            if let Some(token) = crate::visitor::form_token(&html) {
                return Ok((csrf, token));
            }
        }
        Err("no page with a form for this visitor".to_owned())
    }

    /// The answer, or why there is none: no connection, or no whole answer within
    /// [`REQUEST_TIMEOUT`].
    async fn send(&self, probe: &Probe) -> Result<Answer, String> {
        let url = format!("{}{}", self.app.address, probe.path);
        let mut request = self.http.request(probe.method.clone(), url);
        let mut cookie = probe.who.cookie(&self.fx);
        let mut body = probe.body.bytes.as_ref().map(|raw| raw.0.clone());
        // A page's form posts carry its form token, as a browser's do, so that the fuzzing
        // reaches the forms behind it (the token itself is tested in `csrf.rs`).
        if probe.method == reqwest::Method::POST && !probe.path.starts_with("/api") {
            let (csrf, token) = self.form_token(cookie.as_ref()).await?;
            let mut with_csrf = cookie.map(|c| c.to_vec()).unwrap_or_default();
            with_csrf.extend_from_slice(format!("; {csrf}").as_bytes());
            cookie = Some(Bytes::from(with_csrf));
            let mut fields = format!("_csrf={token}&").into_bytes();
            fields.extend_from_slice(body.as_deref().unwrap_or_default());
            body = Some(Bytes::from(fields));
        }
        if let Some(cookie) = cookie {
            request = request.header(COOKIE, header_value(&cookie));
        }
        for (name, value) in &probe.headers {
            request = request.header(HeaderName::from_static(name), header_value(&value.0));
        }
        if let Some(content_type) = &probe.body.content_type {
            request = request.header(CONTENT_TYPE, header_value(&content_type.0));
        }
        if let Some(bytes) = body {
            request = request.body(bytes);
        }
        let response = request.send().await.map_err(|error| {
            if error.is_timeout() {
                format!("no answer within {REQUEST_TIMEOUT:?}")
            } else {
                format!("no answer: {error:?}")
            }
        })?;
        let path = response.url().path().to_owned();
        let status = response.status();
        let headers = response.headers().clone();
        // A body cut short reads as empty, for the checks to judge; one still arriving when
        // the time is up is no answer.
        let bytes = match response.bytes().await {
            Ok(bytes) => bytes,
            Err(error) if error.is_timeout() => {
                return Err(format!(
                    "{status}, its body not whole within {REQUEST_TIMEOUT:?}"
                ));
            }
            Err(_) => Bytes::new(),
        };
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok((
            TestResponse {
                status,
                headers,
                body,
            },
            text,
            path,
        ))
    }

    /// Prints what was sent and fails with every route's minimal failing input, if any.
    pub(super) fn finish(&self) {
        let sent = self
            .sent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let total: u64 = sent.values().flat_map(BTreeMap::values).sum();
        let mut report = format!(
            "fuzz {}: {total} requests in {:.1} s (FUZZ_CASES={}, FUZZ_SEED={})\n",
            self.name,
            self.started.elapsed().as_secs_f64(),
            self.cases,
            self.seed
        );
        for (label, statuses) in sent.iter() {
            let count: u64 = statuses.values().sum();
            let statuses: Vec<String> = statuses
                .iter()
                .map(|(status, n)| format!("{status}×{n}"))
                .collect();
            report.push_str(&format!(
                "  {count:>6}  {label:<28} {}\n",
                statuses.join(" ")
            ));
        }
        eprint!("{report}");
        let failures = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        assert!(
            failures.is_empty(),
            "{} route(s) failed (replay with FUZZ_SEED={}):\n{}",
            failures.len(),
            self.seed,
            failures.join("\n")
        );
    }
}

fn fresh_seed() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    // Truncation is fine: any 64 bits of the clock make a seed.
    (nanos as u64) ^ u64::from(std::process::id()).rotate_left(32)
}

/// FNV-1a, to give each route its own stream of cases from the one seed.
fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn header_value(bytes: &Bytes) -> HeaderValue {
    match HeaderValue::from_maybe_shared(bytes.clone()) {
        Ok(value) => value,
        Err(error) => panic!("the strategies make valid header values: {bytes:?}: {error}"),
    }
}

fn excerpt(text: &str) -> String {
    let mut out: String = text.chars().take(300).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out
}
