//! What a scenario costs the servers per request: the stack's CPU time (its own
//! `process_cpu_seconds_total` on `/metrics`), MongoDB's commands (`serverStatus`
//! `metrics.commands`) and the statements in them (`opcounters`: a combined insert or update
//! of 50 documents is one command and 50 statements), each read at the two edges of the
//! measured window. Steadier than requests per
//! second on a machine shared with the bench itself.

use std::time::Instant;

use hyper::Method;
use mongodb::bson::{Bson, Document, doc};

use super::http::{Conn, Target};
use super::report::Row;
use common::metrics::names::PROCESS_CPU;

/// The servers' counters at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Sample {
    cpu_seconds: Option<f64>,
    /// MongoDB's (commands, statements) so far.
    mongo: Option<(i64, i64)>,
}

/// Reads the counters.
pub(crate) struct CostProbe {
    target: Target,
    mongo: Option<mongodb::Client>,
}

impl CostProbe {
    /// A probe of the stack at `target` and, when given, of its MongoDB.
    pub(crate) async fn new(target: &Target, mongo_url: Option<&str>) -> anyhow::Result<Self> {
        let mongo = match mongo_url {
            Some(url) => Some(mongodb::Client::with_uri_str(url).await?),
            None => None,
        };
        Ok(Self {
            target: target.clone(),
            mongo,
        })
    }

    /// The counters now (a counter that cannot be read is left out).
    pub(crate) async fn sample(&self) -> Sample {
        let (cpu_seconds, mongo) = tokio::join!(self.cpu_seconds(), self.mongo_counts());
        Sample { cpu_seconds, mongo }
    }

    /// Takes a sample at `start` and one at `end`.
    pub(crate) async fn window(&self, start: Instant, end: Instant) -> (Sample, Sample) {
        tokio::time::sleep_until(start.into()).await;
        let first = self.sample().await;
        tokio::time::sleep_until(end.into()).await;
        (first, self.sample().await)
    }

    async fn cpu_seconds(&self) -> Option<f64> {
        let mut conn = Conn::new(self.target.clone());
        let reply = conn.call(Method::GET, "/metrics", None, None).await.ok()?;
        let text = String::from_utf8_lossy(&reply.body).into_owned();
        text.lines()
            .find_map(|line| line.strip_prefix(PROCESS_CPU)?.strip_prefix(' '))
            .and_then(|value| value.trim().parse().ok())
    }

    /// Every command MongoDB has run (`metrics.commands`, the probe's own two included), and
    /// every statement (inserts, queries, updates, deletes, getMores and other commands).
    async fn mongo_counts(&self) -> Option<(i64, i64)> {
        let status = self
            .mongo
            .as_ref()?
            .database("admin")
            .run_command(doc! { "serverStatus": 1 })
            .await
            .ok()?;
        let counters: &Document = status.get_document("opcounters").ok()?;
        let statements = ["insert", "query", "update", "delete", "getmore", "command"]
            .into_iter()
            .map(|name| integer(counters, name))
            .sum();
        let commands = status
            .get_document("metrics")
            .and_then(|metrics| metrics.get_document("commands"))
            .ok()?
            .values()
            .filter_map(Bson::as_document)
            .map(|command| integer(command, "total"))
            .sum();
        Some((commands, statements))
    }
}

/// A counter, whichever integer width the server chose.
fn integer(counters: &Document, name: &str) -> i64 {
    counters
        .get_i64(name)
        .or_else(|_| counters.get_i32(name).map(i64::from))
        .unwrap_or(0)
}

/// Puts the window's cost per request of `row` into it.
pub(crate) fn charge(row: &mut Row, (before, after): (Sample, Sample)) {
    if row.requests == 0 {
        return;
    }
    let requests = row.requests as f64;
    if let (Some(a), Some(b)) = (before.cpu_seconds, after.cpu_seconds) {
        row.cpu_us_per_request = Some((b - a) * 1e6 / requests);
    }
    if let (Some(a), Some(b)) = (before.mongo, after.mongo) {
        row.db_commands_per_request = Some((b.0 - a.0) as f64 / requests);
        row.db_statements_per_request = Some((b.1 - a.1) as f64 / requests);
    }
}
