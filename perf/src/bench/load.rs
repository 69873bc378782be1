//! Driving load: closed-loop workers (each sends its next request when the last one answered)
//! over a warm-up and a measured window, recording per-request latency from send until the
//! whole body is read, counting errors by kind, and a live progress bar.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use hyper::Request;
use indicatif::{ProgressBar, ProgressStyle};

use super::http::{Conn, Reply};
use bytes::Bytes;
use http_body_util::Full;

/// Latencies are recorded in microseconds, from 1 µs to 10 minutes, at 3 significant digits.
const HIGHEST_MICROS: u64 = 600_000_000;
/// How long a request may still be running after the window closes before its worker is
/// abandoned (and the request counted as an error).
const DRAIN: Duration = Duration::from_secs(5);

/// An empty latency histogram.
pub(crate) fn histogram() -> Histogram<u64> {
    // The bounds are constants that hdrhistogram accepts; the fallback is never taken.
    Histogram::new_with_bounds(1, HIGHEST_MICROS, 3)
        .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!()))
}

/// How long to warm up and then measure.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    pub(crate) warmup: Duration,
    pub(crate) duration: Duration,
}

/// What a measured window produced.
#[derive(Debug)]
pub(crate) struct Measured {
    /// Requests that completed inside the window, successful or not.
    pub(crate) requests: u64,
    /// Of those, non-2xx answers and transport errors, plus requests that never completed.
    pub(crate) errors: u64,
    /// Errors by kind: the status code, or `transport: …`.
    pub(crate) error_kinds: BTreeMap<String, u64>,
    /// Latency of every request counted in `requests`, in microseconds.
    pub(crate) latency: Histogram<u64>,
    /// The window's length.
    pub(crate) seconds: f64,
}

impl Measured {
    pub(crate) fn empty(seconds: f64) -> Self {
        Self {
            requests: 0,
            errors: 0,
            error_kinds: BTreeMap::new(),
            latency: histogram(),
            seconds,
        }
    }

    fn merge(&mut self, other: Recorder) {
        self.requests += other.requests;
        self.errors += other.errors;
        for (kind, n) in other.error_kinds {
            *self.error_kinds.entry(kind).or_default() += n;
        }
        // Same bounds on both sides: adding cannot fail.
        let _ = self.latency.add(&other.latency);
    }

    /// Records one error that is not a request of the window (a worker that never finished).
    pub(crate) fn add_error(&mut self, kind: &str) {
        self.errors += 1;
        *self.error_kinds.entry(kind.to_owned()).or_default() += 1;
    }
}

/// One worker's tally; counts only what completes inside the measured window.
pub(crate) struct Recorder {
    start: Instant,
    end: Instant,
    live: Arc<AtomicU64>,
    requests: u64,
    errors: u64,
    error_kinds: BTreeMap<String, u64>,
    latency: Histogram<u64>,
}

impl Recorder {
    fn new(start: Instant, end: Instant, live: Arc<AtomicU64>) -> Self {
        Self {
            start,
            end,
            live,
            requests: 0,
            errors: 0,
            error_kinds: BTreeMap::new(),
            latency: histogram(),
        }
    }

    /// True once the measured window has closed: the worker stops.
    pub(crate) fn finished(&self) -> bool {
        Instant::now() >= self.end
    }

    /// Records a request sent at `sent` that has just completed (`Err`: its error kind).
    pub(crate) fn record(&mut self, sent: Instant, outcome: Result<(), String>) {
        let now = Instant::now();
        self.live.fetch_add(1, Ordering::Relaxed);
        if now < self.start || now > self.end {
            return;
        }
        self.requests += 1;
        self.latency
            .saturating_record(now.duration_since(sent).as_micros().max(1) as u64);
        if let Err(kind) = outcome {
            self.errors += 1;
            *self.error_kinds.entry(kind).or_default() += 1;
        }
    }

    /// Sends `request`, records it, and returns the reply when it was a 2xx.
    pub(crate) async fn exchange(
        &mut self,
        conn: &mut Conn,
        request: Request<Full<Bytes>>,
    ) -> Option<Reply> {
        let sent = Instant::now();
        match conn.send(request).await {
            Ok(reply) if reply.status.is_success() => {
                self.record(sent, Ok(()));
                Some(reply)
            }
            Ok(reply) => {
                self.record(sent, Err(reply.status.as_u16().to_string()));
                None
            }
            Err(error) => {
                self.record(sent, Err(transport_kind(&error)));
                None
            }
        }
    }
}

/// A short, stable name for a transport error, so that equal errors count together.
fn transport_kind(error: &anyhow::Error) -> String {
    let root = error.root_cause().to_string();
    format!("transport: {}", root.chars().take(80).collect::<String>())
}

/// A simulated client: each `step` sends one or more requests through the recorder.
pub(crate) trait Worker: Send + 'static {
    fn step(&mut self, recorder: &mut Recorder) -> impl Future<Output = ()> + Send;
}

/// Runs `workers` closed-loop: every worker steps until the window closes.
pub(crate) async fn closed_loop<W: Worker>(
    workers: Vec<W>,
    timing: Timing,
    bar: &ProgressBar,
) -> Measured {
    let live = Arc::new(AtomicU64::new(0));
    let start = Instant::now() + timing.warmup;
    let end = start + timing.duration;
    let mut tasks = tokio::task::JoinSet::new();
    let count = workers.len();
    for mut worker in workers {
        let mut recorder = Recorder::new(start, end, live.clone());
        tasks.spawn(async move {
            while !recorder.finished() {
                worker.step(&mut recorder).await;
            }
            recorder
        });
    }
    let progress = tokio::spawn(show_progress(bar.clone(), live, start, end));
    let mut measured = Measured::empty(timing.duration.as_secs_f64());
    let mut done = 0;
    let drained = tokio::time::timeout_at((end + DRAIN).into(), async {
        while let Some(joined) = tasks.join_next().await {
            done += 1;
            match joined {
                Ok(recorder) => measured.merge(recorder),
                Err(_) => measured.add_error("worker panicked"),
            }
        }
    })
    .await;
    if drained.is_err() {
        tasks.abort_all();
        for _ in done..count {
            measured.add_error("request still running 5 s after the window");
        }
    }
    progress.abort();
    measured
}

/// Keeps `bar` at the window's elapsed time, with the live request rate as its message.
pub(crate) async fn show_progress(
    bar: ProgressBar,
    live: Arc<AtomicU64>,
    start: Instant,
    end: Instant,
) {
    let mut ticker = tokio::time::interval(Duration::from_millis(250));
    let mut last = (Instant::now(), 0);
    loop {
        ticker.tick().await;
        let now = Instant::now();
        let total = live.load(Ordering::Relaxed);
        let rate = (total - last.1) as f64 / now.duration_since(last.0).as_secs_f64().max(1e-3);
        last = (now, total);
        if now < start {
            bar.set_message(format!("warming up  {rate:>8.0} req/s"));
        } else {
            bar.set_position(now.min(end).duration_since(start).as_millis() as u64);
            bar.set_message(format!("{rate:>8.0} req/s"));
        }
    }
}

/// A bar over a window of `duration` (position in milliseconds), hidden unless `visible`.
pub(crate) fn bar(name: &str, duration: Duration, visible: bool) -> ProgressBar {
    if !visible {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(duration.as_millis() as u64).with_prefix(name.to_owned());
    let seconds = |ms: u64, w: &mut dyn std::fmt::Write| {
        let _ = write!(w, "{:.1}s", ms as f64 / 1000.0);
    };
    if let Ok(style) =
        ProgressStyle::with_template("{prefix:>20} [{bar:30}] {at:>5} of {of}  {msg}").map(|s| {
            s.with_key(
                "at",
                move |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                    seconds(state.pos(), w);
                },
            )
            .with_key(
                "of",
                move |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                    seconds(state.len().unwrap_or(0), w);
                },
            )
        })
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.enable_steady_tick(Duration::from_millis(250));
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_requests_completing_inside_the_window_count() {
        let now = Instant::now();
        let live = Arc::new(AtomicU64::new(0));
        let mut before = Recorder::new(
            now + Duration::from_secs(60),
            now + Duration::from_secs(61),
            live.clone(),
        );
        before.record(now, Err("500".into()));
        assert_eq!((before.requests, before.errors), (0, 0));
        let mut inside = Recorder::new(now, now + Duration::from_secs(60), live.clone());
        inside.record(now, Ok(()));
        inside.record(now, Err("429".into()));
        inside.record(now, Err("429".into()));
        assert_eq!((inside.requests, inside.errors), (3, 2));
        assert_eq!(inside.error_kinds["429"], 2);
        assert_eq!(live.load(Ordering::Relaxed), 4);
    }
}
