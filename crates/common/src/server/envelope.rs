//! The envelope of every request: one future around the route that gives the request its id
//! and its span, bounds its time, reads its body, waits for its turn (`admission.rs`), runs it
//! to its end (`detached.rs`), and writes the security headers and the id on its answer.
//!
//! One hand-written service instead of a middleware per step: each `from_fn` middleware cost a
//! boxed future, a boxed clone of the rest of the stack and a move of the request per request
//! (`docs/performance.md`).

use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::response::Response;
use futures::future::BoxFuture;
use tokio::time::Instant;
use tower::ServiceExt as _;

use super::admission::Admission;
use super::in_span::InSpan;
use super::{Limits, bounds, detached, timer};
use crate::security::SecurityHeaders;

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// What the envelope of one router needs: the limits, the headers, and the service's turns
/// (none for the server's own routes: health, metrics, the fallback).
#[derive(Debug)]
struct Settings {
    limits: Limits,
    headers: SecurityHeaders,
    admission: Option<Arc<Admission>>,
}

/// The layer of [`Envelope`].
#[derive(Debug, Clone)]
pub(super) struct EnvelopeLayer(Arc<Settings>);

impl EnvelopeLayer {
    pub(super) fn new(
        limits: Limits,
        headers: SecurityHeaders,
        admission: Option<Arc<Admission>>,
    ) -> Self {
        Self(Arc::new(Settings {
            limits,
            headers,
            admission,
        }))
    }
}

impl<S> tower::Layer<S> for EnvelopeLayer {
    type Service = Envelope<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Envelope {
            inner,
            settings: Arc::clone(&self.0),
        }
    }
}

/// See the module's documentation.
#[derive(Debug, Clone)]
pub(super) struct Envelope<S> {
    inner: S,
    settings: Arc<Settings>,
}

impl<S> tower::Service<Request> for Envelope<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // The inner service is driven ready in the future, once the body is read.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        let id = request_id(&mut request);
        let span = span(&request, &id);
        let signed_in = SecurityHeaders::signed_in(request.headers());
        let inner = self.inner.clone();
        let settings = Arc::clone(&self.settings);
        Box::pin(InSpan::new(
            async move {
                let started = Instant::now();
                let limits = &settings.limits;
                let deadline = started + limits.request_timeout;
                let mut response = timer::within(deadline, settings.serve(inner, request))
                    .await
                    .unwrap_or_else(|| bounds::timed_out(limits));
                let headers = response.headers_mut();
                settings.headers.apply(signed_in, headers);
                if !headers.contains_key(X_REQUEST_ID) {
                    headers.insert(X_REQUEST_ID, id);
                }
                tracing::debug!(
                    status = response.status().as_u16(),
                    latency_us = started.elapsed().as_micros() as u64,
                    "response"
                );
                Ok(response)
            },
            span,
        ))
    }
}

impl Settings {
    /// The request after its id and span: body, turn, run. What refuses it answers at once.
    async fn serve<S>(&self, inner: S, request: Request) -> Response
    where
        S: tower::Service<Request, Response = Response, Error = Infallible> + Send + 'static,
        S::Future: Send + 'static,
    {
        let request = match bounds::read_body(&self.limits, request).await {
            Ok(request) => request,
            Err(refused) => return refused,
        };
        // Held until the answer; work that outlives its client (see `detached`) holds none.
        let _turn = match &self.admission {
            Some(admission) => match admission.admit().await {
                Ok(turn) => Some(turn),
                Err(refused) => return refused,
            },
            None => None,
        };
        detached::run_to_end(async move {
            match inner.oneshot(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            }
        })
        .await
    }
}

/// The request's `x-request-id`: the caller's, or a new one set on the request.
///
/// New ids are unique across processes without a random draw per request: a random prefix
/// chosen once per process, then a counter (`3f2a9c1e7b44-1a`).
fn request_id(request: &mut Request) -> HeaderValue {
    if let Some(id) = request.headers().get(X_REQUEST_ID) {
        return id.clone();
    }
    static PREFIX: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let prefix = PREFIX.get_or_init(|| {
        use std::hash::BuildHasher as _;
        // RandomState is seeded from the OS once per process.
        let seed = std::hash::RandomState::new().hash_one(std::process::id());
        format!("{:012x}", seed & 0xffff_ffff_ffff)
    });
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // The prefix, a dash and at most 16 hex digits: one allocation.
    let mut text = String::with_capacity(prefix.len() + 17);
    let _ = write!(text, "{prefix}-{n:x}");
    // Hex digits and a dash: always a valid header value.
    let id = HeaderValue::from_maybe_shared(bytes::Bytes::from(text))
        .unwrap_or(HeaderValue::from_static("unknown"));
    request.headers_mut().insert(X_REQUEST_ID, id.clone());
    id
}

/// The request's span: method, path, id, and the trace it continues (`traceparent`).
fn span(request: &Request, id: &HeaderValue) -> tracing::Span {
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        request_id = id.to_str().unwrap_or_default(),
        trace_id = tracing::field::Empty,
    );
    crate::telemetry::continue_trace(&span, &crate::telemetry::HttpHeaders(request.headers()));
    span
}
