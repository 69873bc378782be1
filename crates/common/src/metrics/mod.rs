//! Prometheus metrics at `/metrics`, the same for every service: HTTP requests by route
//! template, events published and consumed, and, read when scraped, the outbox backlog and the
//! JetStream consumers' pending counts.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `http_requests_total` | counter | `route` (template, or `unmatched`), `method`, `status` |
//! | `http_request_duration_seconds` | histogram, 0.5 ms – 5 s | `route`, `method`, `status` |
//! | `events_published_total` | counter | `service`, `subject` (`ticket:created`, …) |
//! | `events_publish_duplicates_total` | counter | `service`, `subject` |
//! | `events_publish_failures_total` | counter | `service`, `subject` |
//! | `events_consumed_total` | counter | `service`, `consumer` (`tickets-order-created`, …) |
//! | `events_acked_total` | counter | `service`, `consumer` |
//! | `events_retried_total` | counter | `service`, `consumer` |
//! | `events_dead_lettered_total` | counter | `service`, `consumer` |
//! | `events_outbox_pending` | gauge, at scrape | `service` |
//! | `events_consumer_pending` | gauge, at scrape | `service`, `consumer` |
//! | `events_consumer_ack_pending` | gauge, at scrape | `service`, `consumer` |
//! | `events_stream_bytes`, `events_stream_max_bytes` | gauge, at scrape | `service` |
//! | `work_done_total` | counter | `service`, `work`, `outcome` |
//! | `work_backlog` | gauge, at scrape | `service`, `work` |
//! | `process_cpu_seconds_total` | counter, at scrape | none: the serving process |
//!
//! The hot paths only touch atomics (`http.rs`, and the event counters in
//! `events::counters`); snapshots, sorting, labels and the text format (`exposition.rs`) happen
//! when Prometheus scrapes. The names are constants in [`names`].
//!
//! HTTP series carry no `service` label: a route template belongs to one service, and in
//! Kubernetes the scrape target says which. Event series carry it, so that a server serving
//! every service (`ticketing up`) exposes all of them in one valid document. Requests for
//! `/metrics` itself are not counted. `/metrics` answers 404 to anything that came through a
//! reverse proxy (an `X-Forwarded-For` or `Forwarded` header, which the ingress and compose's
//! nginx always set): it is for Prometheus inside the cluster, scraping pods directly.

mod exposition;
mod http;
pub mod names;
#[cfg(test)]
mod observability_tests;
mod process;
mod service;
mod work;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::IntoResponse;
use axum::routing::get;
use futures::future::join_all;
use prometheus_client::encoding::prometheus_text;

use crate::error::ApiError;
use exposition::Exposition;
pub(crate) use http::HttpMetrics;
pub(crate) use service::ServiceMetrics;
pub use work::{Backlog, BacklogRead, WorkMetrics};

/// Where every server serves its metrics, at the root beside `/healthz` (never under `/api`).
pub const PATH: &str = "/metrics";

/// User plus system CPU seconds this process has used, as `/metrics` reports them (Linux).
pub fn process_cpu_seconds() -> Option<f64> {
    process::cpu_seconds()
}

/// What a server's `/metrics` reads: its HTTP series and each of its services.
struct Sources {
    http: HttpMetrics,
    services: Vec<(&'static str, ServiceMetrics)>,
}

/// The `/metrics` route of a server serving `services`, whose requests `http` records.
pub(crate) fn router(http: HttpMetrics, services: Vec<(&'static str, ServiceMetrics)>) -> Router {
    Router::new()
        .route(PATH, get(scrape))
        .with_state(Arc::new(Sources { http, services }))
}

async fn scrape(
    State(sources): State<Arc<Sources>>,
    headers: HeaderMap,
) -> axum::response::Response {
    if headers.contains_key("x-forwarded-for") || headers.contains_key(header::FORWARDED) {
        // Through the ingress: as if there were no such route.
        return ApiError::NotFound.into_response();
    }
    let services = join_all(
        sources
            .services
            .iter()
            .map(|(name, metrics)| metrics.snapshot(name)),
    )
    .await;
    let exposition = Exposition {
        http: sources.http.snapshot(),
        services,
        cpu_seconds: process::cpu_seconds(),
    };
    match exposition.encode_text() {
        Ok(body) => (
            [(header::CONTENT_TYPE, prometheus_text::CONTENT_TYPE)],
            body,
        )
            .into_response(),
        Err(error) => ApiError::Internal(error).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt as _;

    use super::names::{HTTP_REQUEST_DURATION, HTTP_REQUESTS};
    use super::*;

    /// A server's router as `Server` composes it, without the layers that do not count: routes,
    /// the `/metrics` route, the error-shaped fallbacks, and the metrics layer outermost.
    fn app(http: &HttpMetrics, services: Vec<(&'static str, ServiceMetrics)>) -> Router {
        let routes = Router::new()
            .route(
                "/api/things/{id}",
                get(|| async { "thing" }).put(|| async { StatusCode::NO_CONTENT }),
            )
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_millis(30)).await;
                }),
            )
            .merge(router(http.clone(), services))
            .fallback(crate::error::not_found)
            .method_not_allowed_fallback(crate::error::method_not_allowed);
        routes.layer(http.layer())
    }

    async fn send(app: &Router, method: &str, path: &str) -> axum::response::Response {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .body(Body::empty())
            .unwrap();
        app.clone().oneshot(request).await.unwrap()
    }

    async fn scrape(app: &Router) -> String {
        let response = send(app, "GET", PATH).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "text/plain; version=0.0.4; charset=utf-8"
        );
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        String::from_utf8(body.to_vec()).unwrap()
    }

    /// The value of the sample whose name and labels are exactly `series`.
    fn sample(body: &str, series: &str) -> Option<f64> {
        body.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .map(|value| value.parse().unwrap())
    }

    #[tokio::test]
    async fn requests_are_counted_and_timed_by_route_template_method_and_status() {
        let http = HttpMetrics::default();
        let app = app(&http, Vec::new());
        for path in ["/api/things/1", "/api/things/2", "/api/things/3"] {
            assert_eq!(send(&app, "GET", path).await.status(), StatusCode::OK);
        }
        send(&app, "PUT", "/api/things/1").await;
        send(&app, "DELETE", "/api/things/1").await;
        send(&app, "GET", "/no/such/path").await;
        send(&app, "BREW", "/api/things/1").await;
        send(&app, "GET", "/slow").await;
        let body = scrape(&app).await;

        let get = r#"{route="/api/things/{id}",method="GET",status="200"}"#;
        assert_eq!(sample(&body, &format!("{HTTP_REQUESTS}{get}")), Some(3.0));
        assert_eq!(
            sample(&body, &format!("{HTTP_REQUEST_DURATION}_count{get}")),
            Some(3.0)
        );
        let put = r#"{route="/api/things/{id}",method="PUT",status="204"}"#;
        assert_eq!(sample(&body, &format!("{HTTP_REQUESTS}{put}")), Some(1.0));
        let not_allowed = r#"{route="/api/things/{id}",method="DELETE",status="405"}"#;
        assert_eq!(
            sample(&body, &format!("{HTTP_REQUESTS}{not_allowed}")),
            Some(1.0)
        );
        let unmatched = r#"{route="unmatched",method="GET",status="404"}"#;
        assert_eq!(
            sample(&body, &format!("{HTTP_REQUESTS}{unmatched}")),
            Some(1.0)
        );
        let other = r#"{route="/api/things/{id}",method="other",status="405"}"#;
        assert_eq!(sample(&body, &format!("{HTTP_REQUESTS}{other}")), Some(1.0));
        assert!(!body.contains("/no/such/path"), "{body}");
        assert!(!body.contains("BREW"), "{body}");

        // 30 ms lands above the 25 ms bound and within the 50 ms one; the sum is the time.
        let slow = |le: &str| {
            format!(
                r#"http_request_duration_seconds_bucket{{route="/slow",method="GET",status="200",le="{le}"}}"#
            )
        };
        assert_eq!(sample(&body, &slow("0.025")), Some(0.0), "{body}");
        assert_eq!(sample(&body, &slow("0.05")), Some(1.0), "{body}");
        assert_eq!(sample(&body, &slow("+Inf")), Some(1.0), "{body}");
        let sum = sample(
            &body,
            r#"http_request_duration_seconds_sum{route="/slow",method="GET",status="200"}"#,
        )
        .unwrap();
        assert!((0.03..1.0).contains(&sum), "{sum}");
    }

    #[tokio::test]
    async fn the_metrics_route_is_not_counted_and_refuses_proxied_requests() {
        let http = HttpMetrics::default();
        let app = app(&http, Vec::new());
        scrape(&app).await;
        let body = scrape(&app).await;
        assert!(!body.contains(r#"route="/metrics""#), "{body}");
        assert!(
            body.contains("# TYPE http_requests_total counter"),
            "{body}"
        );

        for forwarded in ["x-forwarded-for", "forwarded"] {
            let request = Request::get(PATH)
                .header(forwarded, "for=203.0.113.9")
                .body(Body::empty())
                .unwrap();
            let response = app.clone().oneshot(request).await.unwrap();
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{forwarded}");
        }
    }
}
