//! Tracing setup and W3C trace context.
//!
//! Logs are human-readable by default, JSON lines when `LOG_FORMAT=json`. Every span also
//! carries an OpenTelemetry context, so a trace id exists for every request and message even
//! when nothing exports it: the id travels in `traceparent` over HTTP and in NATS message
//! headers (through the outbox), and shows in log lines as `trace_id`. When
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, spans are
//! exported there with OTLP over HTTP/protobuf.

use std::sync::OnceLock;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator as _};
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::filter::{EnvFilter, LevelFilter};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{Layer as _, fmt};

/// The W3C header (and NATS header) that carries the trace context.
pub const TRACEPARENT: &str = "traceparent";

static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Installs the global subscriber once; later calls (tests, the launcher) are no-ops.
///
/// The log filter comes from `RUST_LOG` (default `info`); `LOG_FORMAT=json` switches to one
/// JSON object per line, with every enclosing span's fields (request id, trace id). Spans
/// at `info` and above always get a trace context; they are exported only when an OTLP
/// endpoint is configured, under `OTEL_SERVICE_NAME` or else `service`.
pub fn init(service: &str) {
    install(service, false);
}

/// For tests: trace contexts as in production, logs only when `RUST_LOG` is set, written
/// through the test harness so they show for failing tests only.
pub fn init_for_tests() {
    install("test", true);
}

fn install(service: &str, test: bool) {
    let env = crate::config::Env::process();
    let log_filter = match EnvFilter::try_from_default_env() {
        Ok(filter) => filter,
        Err(_) if test => EnvFilter::new("off"),
        Err(_) => EnvFilter::new("info"),
    };
    let json = env
        .get("LOG_FORMAT")
        .is_some_and(|v| v.eq_ignore_ascii_case("json"));
    let fmt_layer = if json {
        fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(true)
            .with_filter(log_filter)
            .boxed()
    } else if test {
        fmt::layer()
            .compact()
            .with_test_writer()
            .with_filter(log_filter)
            .boxed()
    } else {
        fmt::layer().compact().with_filter(log_filter).boxed()
    };
    // The standard switch: no trace contexts at all (nothing propagated, no `trace_id` in
    // logs), for the last bit of throughput when nobody collects traces.
    let disabled = env
        .get("OTEL_SDK_DISABLED")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let otel_layer = (!disabled).then(|| {
        let provider = PROVIDER.get_or_init(|| tracer_provider(service, &env));
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("ticketing"))
            // Per-request cost: no clock reads on every poll (busy/idle times), no thread and
            // source-location attributes on every span.
            .with_tracked_inactivity(false)
            .with_threads(false)
            .with_location(false)
            .with_filter(LevelFilter::INFO)
    });
    // An error means a subscriber is already installed, which is fine.
    if tracing_subscriber::registry()
        .with(fmt_layer)
        .with(otel_layer)
        .try_init()
        .is_ok()
    {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    }
}

fn tracer_provider(service: &str, env: &crate::config::Env) -> SdkTracerProvider {
    let mut builder = SdkTracerProvider::builder();
    let endpoint = env
        .get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .or_else(|| env.get("OTEL_EXPORTER_OTLP_ENDPOINT"));
    if endpoint.is_some() {
        // The builder reads the endpoint, headers and timeout from the standard variables.
        match opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()
        {
            Ok(exporter) => builder = builder.with_batch_exporter(exporter),
            // Telemetry must never keep the service from starting.
            Err(error) => eprintln!("OTLP export disabled: {error}"),
        }
    }
    let name = env
        .get("OTEL_SERVICE_NAME")
        .unwrap_or_else(|| service.to_owned());
    builder
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(name)
                .build(),
        )
        .build()
}

/// Sends the spans still buffered for export; call once before the process exits.
pub fn shutdown() {
    if let Some(provider) = PROVIDER.get() {
        let _ = provider.shutdown();
    }
}

/// Makes `span` a child of the trace context found in `headers` (if any) and records the
/// trace id in its `trace_id` field, so that every log line inside it names the trace.
pub fn continue_trace(span: &tracing::Span, headers: &dyn Extractor) {
    let parent = TraceContextPropagator::new().extract(headers);
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
    let context = span.context();
    let span_context = context.span().span_context().clone();
    if span_context.is_valid() {
        span.record("trace_id", tracing::field::display(span_context.trace_id()));
    }
}

/// The `traceparent` value of the current span, to hand to the next hop (a NATS message, an
/// outgoing request), if the current span has a trace context.
pub fn current_traceparent() -> Option<String> {
    let mut carrier = TraceParent(None);
    TraceContextPropagator::new().inject_context(&tracing::Span::current().context(), &mut carrier);
    carrier.0
}

struct TraceParent(Option<String>);

impl Injector for TraceParent {
    fn set(&mut self, key: &str, value: String) {
        if key == TRACEPARENT {
            self.0 = Some(value);
        }
    }
}

/// Reads the trace context from HTTP headers.
#[derive(Debug)]
pub struct HttpHeaders<'a>(pub &'a axum::http::HeaderMap);

impl Extractor for HttpHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(axum::http::HeaderName::as_str).collect()
    }
}

/// Reads the trace context from NATS message headers.
#[derive(Debug)]
pub struct NatsHeaders<'a>(pub Option<&'a async_nats::HeaderMap>);

impl Extractor for NatsHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0?.get(key).map(async_nats::HeaderValue::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        // The trace context propagator asks for its two headers by name only.
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_span_continues_the_callers_trace_and_hands_it_on() {
        init_for_tests();
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(
            TRACEPARENT,
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                .parse()
                .expect("header"),
        );
        let span = tracing::info_span!("request", trace_id = tracing::field::Empty);
        continue_trace(&span, &HttpHeaders(&headers));
        let handed_on = span.in_scope(current_traceparent).expect("a traceparent");
        assert!(
            handed_on.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
            "{handed_on}"
        );
        // A child span of our own, not the caller's span.
        assert!(!handed_on.contains("00f067aa0ba902b7"), "{handed_on}");
    }

    #[test]
    fn without_a_caller_a_new_trace_starts() {
        init_for_tests();
        let span = tracing::info_span!("request", trace_id = tracing::field::Empty);
        continue_trace(&span, &HttpHeaders(&axum::http::HeaderMap::new()));
        let first = span.in_scope(current_traceparent).expect("a traceparent");
        let other = tracing::info_span!("request", trace_id = tracing::field::Empty);
        continue_trace(&other, &HttpHeaders(&axum::http::HeaderMap::new()));
        let second = other.in_scope(current_traceparent).expect("a traceparent");
        assert_ne!(first[3..35], second[3..35], "{first} {second}");
    }
}
