//! Tracing setup and W3C trace context.
//!
//! Logs are human-readable by default, JSON lines when `LOG_FORMAT=json`. Every span also
//! carries a trace context, so a trace id exists for every request and message even when
//! nothing exports it: the id travels in `traceparent` over HTTP and in NATS message headers
//! (through the outbox), and shows in log lines as `trace_id`.
//!
//! When `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, spans
//! are OpenTelemetry spans, exported there with OTLP over HTTP/protobuf. Otherwise a span holds
//! only its W3C ids ([`TraceContext`]): the OpenTelemetry SDK's span bookkeeping cost about a
//! fifth of the throughput of the cheapest endpoints, for spans nobody collects.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator as _};
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::filter::{EnvFilter, LevelFilter};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{Layer, Registry, fmt};

/// The W3C header (and NATS header) that carries the trace context.
pub const TRACEPARENT: &str = "traceparent";

static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();
/// Whether spans are OpenTelemetry spans (an exporter is configured) rather than
/// [`TraceContext`]s.
static EXPORTING: AtomicBool = AtomicBool::new(false);
/// Whether the log filter may show `info` spans, and so their `trace_id`.
static SPANS_LOGGED: AtomicBool = AtomicBool::new(true);

/// Installs the global subscriber once; later calls (tests, the launcher) are no-ops.
///
/// The log filter comes from `RUST_LOG` (default `info`); `LOG_FORMAT=json` switches to one
/// JSON object per line, with every enclosing span's fields (request id, trace id). Spans
/// at `info` and above always get a trace context; they are exported only when an OTLP
/// endpoint is configured, under `OTEL_SERVICE_NAME` or else `service`.
pub fn init(service: &str) {
    install(service, &crate::config::Env::process(), false);
}

/// For tests: trace contexts as in production, logs only when `RUST_LOG` is set, written
/// through the test harness so they show for failing tests only.
pub fn init_for_tests() {
    install("test", &crate::config::Env::process(), true);
}

/// Like [`init_for_tests`], reading the settings from `env` instead of the process's
/// environment (to test the exporting setup).
pub fn init_for_tests_with(env: &crate::config::Env) {
    install("test", env, true);
}

fn install(service: &str, env: &crate::config::Env, test: bool) {
    let log_filter = match EnvFilter::try_from_default_env() {
        Ok(filter) => filter,
        Err(_) if test => EnvFilter::new("off"),
        Err(_) => EnvFilter::new("info"),
    };
    let spans_logged = shows_spans(&log_filter);
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
    let exporting = !disabled
        && (env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some()
            || env.get("OTEL_EXPORTER_OTLP_ENDPOINT").is_some());
    let otel_layer = exporting.then(|| {
        let provider = PROVIDER.get_or_init(|| tracer_provider(service, env));
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("ticketing"))
            // Per-request cost: no clock reads on every poll (busy/idle times), no thread and
            // source-location attributes on every span.
            .with_tracked_inactivity(false)
            .with_threads(false)
            .with_location(false)
            .with_filter(LevelFilter::INFO)
    });
    let context_layer =
        (!disabled && !exporting).then(|| ContextLayer.with_filter(LevelFilter::INFO));
    // An error means a subscriber is already installed, which is fine.
    if tracing_subscriber::registry()
        .with(fmt_layer)
        .with(otel_layer)
        .with(context_layer)
        .try_init()
        .is_ok()
    {
        EXPORTING.store(exporting, Ordering::Release);
        SPANS_LOGGED.store(spans_logged, Ordering::Release);
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    }
}

/// Whether a log filter may show our spans (all at `info`), and so the `trace_id` in them.
fn shows_spans(log_filter: &EnvFilter) -> bool {
    log_filter
        .max_level_hint()
        .is_none_or(|level| level >= LevelFilter::INFO)
}

fn tracer_provider(service: &str, env: &crate::config::Env) -> SdkTracerProvider {
    let mut builder = SdkTracerProvider::builder();
    let endpoint = env
        .get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .map(|traces| (traces, true))
        .or_else(|| {
            env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
                .map(|base| (base, false))
        });
    if let Some((endpoint, full)) = endpoint {
        // Headers and timeout come from the standard variables.
        let url = if full {
            endpoint
        } else {
            format!("{}/v1/traces", endpoint.trim_end_matches('/'))
        };
        // The exporter's HTTP client needs the TLS provider, and this runs first in `main`.
        crate::install_tls_provider();
        match opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(url)
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
    if !EXPORTING.load(Ordering::Acquire) {
        let remote = headers.get(TRACEPARENT).and_then(TraceContext::parse);
        let own = with_context(span, |context| {
            if let Some(remote) = remote {
                context.trace_id = remote.trace_id;
                context.sampled = remote.sampled;
            }
            context.trace_id
        });
        // Recorded once the span's extensions are free again: recording writes to them. Only
        // for the logs: propagation reads the context itself.
        if let Some(trace_id) = own.filter(|_| SPANS_LOGGED.load(Ordering::Acquire)) {
            span.record(
                "trace_id",
                tracing::field::display(format_args!("{trace_id:032x}")),
            );
        }
        return;
    }
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
    let span = tracing::Span::current();
    if !EXPORTING.load(Ordering::Acquire) {
        return with_context(&span, |context| context.traceparent());
    }
    let mut carrier = TraceParent(None);
    TraceContextPropagator::new().inject_context(&span.context(), &mut carrier);
    carrier.0
}

/// The W3C ids of a span when nothing exports spans: its trace, its own id, and whether the
/// trace is sampled (passed on unchanged).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    /// The trace's 16-byte id.
    pub trace_id: u128,
    /// The span's own 8-byte id.
    pub span_id: u64,
    /// The `sampled` trace flag.
    pub sampled: bool,
}

impl TraceContext {
    /// Reads a `traceparent` header value (version 00 format); `None` when malformed or when
    /// either id is all zeros, as the W3C specification requires.
    pub fn parse(value: &str) -> Option<Self> {
        let mut parts = value.trim().split('-');
        let (version, trace, span, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let hex = |s: &str, len: usize| {
            s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        };
        if !(hex(version, 2) && version != "ff" && hex(trace, 32) && hex(span, 16) && hex(flags, 2))
            || (version == "00" && parts.next().is_some())
        {
            return None;
        }
        let context = Self {
            trace_id: u128::from_str_radix(trace, 16).ok()?,
            span_id: u64::from_str_radix(span, 16).ok()?,
            sampled: u8::from_str_radix(flags, 16).ok()? & 1 == 1,
        };
        (context.trace_id != 0 && context.span_id != 0).then_some(context)
    }

    /// The `traceparent` value naming this span as the parent.
    pub fn traceparent(&self) -> String {
        format!(
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id,
            self.span_id,
            u8::from(self.sampled)
        )
    }

    fn root() -> Self {
        Self {
            trace_id: nonzero(rand::random::<u128>),
            span_id: nonzero(rand::random::<u64>),
            sampled: true,
        }
    }

    fn child(&self) -> Self {
        Self {
            span_id: nonzero(rand::random::<u64>),
            ..*self
        }
    }
}

fn nonzero<T: PartialEq + Default>(draw: impl Fn() -> T) -> T {
    loop {
        let value = draw();
        if value != T::default() {
            return value;
        }
    }
}

/// Runs `f` on the [`TraceContext`] of `span`, if it has one.
fn with_context<T>(span: &tracing::Span, f: impl FnOnce(&mut TraceContext) -> T) -> Option<T> {
    span.with_subscriber(|(id, dispatch)| {
        let registry = dispatch.downcast_ref::<Registry>()?;
        let data = registry.span(id)?;
        let mut extensions = data.extensions_mut();
        extensions.get_mut::<TraceContext>().map(f)
    })
    .flatten()
}

/// Gives every span a [`TraceContext`]: its parent's trace with an id of its own, or a new trace.
struct ContextLayer;

impl<S> Layer<S> for ContextLayer
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        _attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let Some(span) = ctx.span(id) else { return };
        let parent = span
            .parent()
            .and_then(|parent| parent.extensions().get::<TraceContext>().copied());
        let context = parent.map_or_else(TraceContext::root, |parent| parent.child());
        span.extensions_mut().insert(context);
    }
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
    fn the_trace_id_is_written_for_logs_that_may_show_a_span() {
        for (filter, shows) in [
            ("info", true),
            ("debug", true),
            ("warn,common=debug", true),
            ("warn", false),
            ("error", false),
            ("off", false),
        ] {
            assert_eq!(shows_spans(&EnvFilter::new(filter)), shows, "{filter}");
        }
    }

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

    #[test]
    fn child_spans_share_the_trace_with_ids_of_their_own() {
        init_for_tests();
        let parent = tracing::info_span!("request", trace_id = tracing::field::Empty);
        continue_trace(&parent, &HttpHeaders(&axum::http::HeaderMap::new()));
        let child = parent.in_scope(|| tracing::info_span!("store"));
        let of_parent = parent.in_scope(current_traceparent).expect("a traceparent");
        let of_child = child.in_scope(current_traceparent).expect("a traceparent");
        assert_eq!(of_parent[..36], of_child[..36], "{of_parent} {of_child}");
        assert_ne!(
            of_parent[36..52],
            of_child[36..52],
            "{of_parent} {of_child}"
        );
    }

    #[test]
    fn traceparent_values_are_checked() {
        let valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let context = TraceContext::parse(valid).expect("valid");
        assert_eq!(context.traceparent(), valid);
        assert!(
            !TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")
                .expect("valid")
                .sampled
        );
        for invalid in [
            "",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceContext::parse(invalid), None, "{invalid}");
        }
    }
}
