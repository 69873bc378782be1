//! What a bench run produced, as the JSON file runs are compared by and as the tables printed
//! at the end: the machine, the parameters, and per scenario and limit the request count,
//! rate, latency percentiles and errors.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use super::load::Measured;

/// Version of the JSON layout; bumped when a field changes meaning.
pub const FORMAT: u32 = 1;

/// Everything one run measured, with what it ran on.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Results {
    /// [`FORMAT`].
    pub format: u32,
    /// When the run started, RFC 3339 UTC.
    pub started_at: String,
    /// The checkout the bench ran from, when it is a git work tree.
    pub git: Option<Git>,
    /// The machine it ran on.
    pub machine: Machine,
    /// The run's parameters.
    pub params: Params,
    /// One row per scenario, in the order they ran.
    pub scenarios: Vec<Row>,
    /// One row per limit measured (empty with `--no-limits`).
    pub limits: Vec<Row>,
}

/// The checkout.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Git {
    /// `git rev-parse --short HEAD`.
    pub commit: String,
    /// Tracked files had uncommitted changes.
    pub dirty: bool,
}

/// The machine.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Machine {
    /// Cores available to this process.
    pub cores: usize,
    /// `uname -r`.
    pub kernel: String,
    /// The CPU model from `/proc/cpuinfo`.
    pub cpu: String,
    /// `/proc/loadavg`'s 1, 5 and 15-minute averages before the run…
    pub load_before: String,
    /// …and after it: a busy machine makes every number lower.
    pub load_after: String,
}

/// The run's parameters.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Params {
    /// The stack's base URL.
    pub url: String,
    /// Concurrent connections (closed-loop workers).
    pub clients: usize,
    /// Measured window per scenario, seconds.
    pub duration_secs: f64,
    /// Unmeasured warm-up before each window, seconds.
    pub warmup_secs: f64,
    /// Ticket writes per second of the lag scenario.
    pub lag_rate: u32,
    /// Unreserved tickets present for list-tickets.
    pub list_tickets: usize,
    /// The scenarios selected.
    pub scenarios: Vec<String>,
    /// Whether the limits were measured.
    pub limits: bool,
}

/// Latency percentiles, milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Slowest.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

/// The limit a scenario is compared with.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Versus {
    /// The limit's name (the lowest of the limits that bound the scenario).
    pub limit: String,
    /// Its rate, requests per second.
    pub limit_rps: f64,
    /// Its p99 when it is a latency at a fixed rate (the lag's `replication-floor`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_p99_ms: Option<f64>,
    /// The scenario's rate over the limit's; for a latency limit, the scenario's p99 over the
    /// limit's.
    pub fraction: f64,
}

/// One scenario or limit.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    /// Scenario or limit name.
    pub name: String,
    /// What one request is, when it is not obvious from the name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Requests completed in the window.
    pub requests: u64,
    /// Non-2xx answers and transport errors among them.
    pub errors: u64,
    /// Errors by kind (status code or `transport: …`).
    #[serde(default)]
    pub error_kinds: BTreeMap<String, u64>,
    /// The window, seconds.
    pub seconds: f64,
    /// Requests per second.
    pub rps: f64,
    /// Latency from send until the whole body was read (the lag scenario: replication lag).
    pub latency_ms: Latency,
    /// The limit that bounds it, when one was measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub versus: Option<Versus>,
    /// How long the event backlog of the previous scenarios took to drain before this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settle_ms: Option<u64>,
    /// The stack's CPU time per request over the window, microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_us_per_request: Option<f64>,
    /// MongoDB commands per request over the window (all of them: the stack's background
    /// work counts too); a combined write of many documents is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db_commands_per_request: Option<f64>,
    /// MongoDB statements per request (`opcounters`: each document of a combined write).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db_statements_per_request: Option<f64>,
}

impl Row {
    /// The row of a measured window.
    pub(crate) fn new(name: &str, measured: &Measured) -> Self {
        let ms = |micros: u64| micros as f64 / 1000.0;
        let h = &measured.latency;
        let latency = if h.is_empty() {
            Latency::default()
        } else {
            Latency {
                p50: ms(h.value_at_quantile(0.50)),
                p90: ms(h.value_at_quantile(0.90)),
                p99: ms(h.value_at_quantile(0.99)),
                max: ms(h.max()),
                mean: h.mean() / 1000.0,
            }
        };
        Self {
            name: name.to_owned(),
            note: None,
            requests: measured.requests,
            errors: measured.errors,
            error_kinds: measured.error_kinds.clone(),
            seconds: measured.seconds,
            rps: measured.requests as f64 / measured.seconds.max(1e-9),
            latency_ms: latency,
            versus: None,
            settle_ms: None,
            cpu_us_per_request: None,
            db_commands_per_request: None,
            db_statements_per_request: None,
        }
    }
}

impl Results {
    /// The scenario or limit row named `name`.
    pub fn row(&self, name: &str) -> Option<&Row> {
        self.scenarios
            .iter()
            .chain(&self.limits)
            .find(|row| row.name == name)
    }

    /// Total errors over scenarios and limits.
    pub fn errors(&self) -> u64 {
        self.scenarios
            .iter()
            .chain(&self.limits)
            .map(|r| r.errors)
            .sum()
    }

    /// Writes the JSON to `path`, creating its directory.
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        }
        let json = serde_json::to_string_pretty(self)?;
        std::fs::write(path, json + "\n").with_context(|| format!("write {}", path.display()))
    }

    /// Reads results written by [`Results::write`].
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parse {}", path.display()))
    }
}

/// `bench-results/<started_at>.json`, with the timestamp made safe for file names.
pub(crate) fn default_path(started_at: &str) -> PathBuf {
    let stamp: String = started_at
        .split('.')
        .next()
        .unwrap_or(started_at)
        .trim_end_matches('Z')
        .replace(':', "-");
    PathBuf::from("bench-results").join(format!("{stamp}Z.json"))
}

fn command_output(program: &str, args: &[&str]) -> Option<String> {
    let output = Command::new(program).args(args).output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// The checkout of the current directory, if any.
pub(crate) fn git() -> Option<Git> {
    let commit = command_output("git", &["rev-parse", "--short", "HEAD"])?;
    let dirty = command_output("git", &["status", "--porcelain", "--untracked-files=no"])
        .is_some_and(|status| !status.is_empty());
    Some(Git { commit, dirty })
}

/// The three load averages of `/proc/loadavg`.
pub(crate) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// This machine, with the load average as it is now in both load fields.
pub(crate) fn machine() -> Machine {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split_once(':'))
                .map(|(_, model)| model.trim().to_owned())
        })
        .unwrap_or_default();
    Machine {
        cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
        kernel: command_output("uname", &["-r"]).unwrap_or_default(),
        cpu,
        load_before: load_average(),
        load_after: String::new(),
    }
}

fn percent(fraction: f64) -> String {
    format!("{:.0}%", fraction * 100.0)
}

fn row_line(out: &mut String, row: &Row, versus: bool) {
    let l = &row.latency_ms;
    let _ = write!(
        out,
        "{:<20} {:>9} {:>9.0} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>7}",
        row.name, row.requests, row.rps, l.p50, l.p90, l.p99, l.max, row.errors
    );
    let cost = |value: Option<f64>| value.map_or_else(|| "-".to_owned(), |v| format!("{v:.0}"));
    if !versus {
        // A limit served by a process of its own (the bare handler) has its CPU time too.
        let _ = write!(out, " {:>7}", cost(row.cpu_us_per_request));
    } else {
        let per = |value: Option<f64>| value.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"));
        let _ = write!(
            out,
            " {:>7} {:>6} {:>6}",
            cost(row.cpu_us_per_request),
            per(row.db_commands_per_request),
            per(row.db_statements_per_request)
        );
        match &row.versus {
            Some(Versus {
                limit,
                limit_p99_ms: Some(p99),
                fraction,
                ..
            }) => {
                let _ = write!(out, "  p99 {fraction:.1}× {limit}'s ({p99:.1} ms)");
            }
            Some(v) => {
                let _ = write!(
                    out,
                    "  {:>5} of {} ({:.0}/s)",
                    percent(v.fraction),
                    v.limit,
                    v.limit_rps
                );
            }
            None => out.push_str("      -"),
        }
    }
    out.push('\n');
}

fn header(out: &mut String, first: &str, versus: bool) {
    let _ = write!(
        out,
        "{first:<20} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8} {:>7}",
        "requests", "req/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "errors"
    );
    if versus {
        out.push_str(&format!(
            " {:>7} {:>6} {:>6}  vs limit",
            "cpu µs", "db cmd", "db ops"
        ));
    } else {
        out.push_str(&format!(" {:>7}", "cpu µs"));
    }
    out.push('\n');
}

/// The tables printed at the end: scenarios (with the fraction of their limit), limits, then
/// each kind of error and the notes that explain rows.
pub fn table(results: &Results) -> String {
    let mut out = String::new();
    header(&mut out, "scenario", true);
    for row in &results.scenarios {
        row_line(&mut out, row, true);
    }
    if !results.limits.is_empty() {
        out.push('\n');
        header(&mut out, "limit", false);
        for row in &results.limits {
            row_line(&mut out, row, false);
        }
    }
    let rows = || results.scenarios.iter().chain(&results.limits);
    let mut notes = String::new();
    for row in rows() {
        if let Some(note) = &row.note {
            let _ = writeln!(notes, "  {}: {note}", row.name);
        }
    }
    if !notes.is_empty() {
        out.push('\n');
        out.push_str(&notes);
    }
    for row in rows().filter(|row| row.errors > 0) {
        let kinds: Vec<String> = row
            .error_kinds
            .iter()
            .map(|(kind, n)| format!("{n} × {kind}"))
            .collect();
        let _ = writeln!(out, "errors in {}: {}", row.name, kinds.join(", "));
        if row.error_kinds.contains_key("429") {
            let _ = writeln!(
                out,
                "  429: auth's per-client rate limit (AUTH_RATE_LIMIT_PER_MINUTE / _BURST) \
                 throttled the bench; `ticketing up` raises it unless those are set"
            );
        }
    }
    out
}

fn change(old: f64, new: f64) -> String {
    if old == 0.0 {
        return "   n/a".to_owned();
    }
    format!("{:>+6.1}%", (new - old) / old * 100.0)
}

/// Per scenario and limit present in both runs: req/s and p99 before and after.
pub fn compare(old: &Results, new: &Results) -> String {
    let mut out = String::new();
    let commit = |r: &Results| {
        r.git.as_ref().map_or("?".to_owned(), |g| {
            format!("{}{}", g.commit, if g.dirty { "+" } else { "" })
        })
    };
    let _ = writeln!(
        out,
        "compared with {} ({}) → {} ({})",
        old.started_at,
        commit(old),
        new.started_at,
        commit(new)
    );
    let _ = writeln!(
        out,
        "{:<20} {:>9} {:>9} {:>7}   {:>8} {:>8} {:>7}",
        "", "req/s was", "now", "", "p99 was", "now", ""
    );
    for row in new.scenarios.iter().chain(&new.limits) {
        let Some(before) = old.row(&row.name) else {
            continue;
        };
        let _ = writeln!(
            out,
            "{:<20} {:>9.0} {:>9.0} {}   {:>8.2} {:>8.2} {}",
            row.name,
            before.rps,
            row.rps,
            change(before.rps, row.rps),
            before.latency_ms.p99,
            row.latency_ms.p99,
            change(before.latency_ms.p99, row.latency_ms.p99),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::bench::load::histogram;

    fn measured(values_ms: &[u64], errors: &[(&str, u64)]) -> Measured {
        let mut m = Measured::empty(2.0);
        for v in values_ms {
            m.latency.record(v * 1000).unwrap();
            m.requests += 1;
        }
        for (kind, n) in errors {
            m.errors += n;
            m.error_kinds.insert((*kind).to_owned(), *n);
        }
        m
    }

    fn results() -> Results {
        let mut currentuser = Row::new("currentuser", &measured(&[1, 2, 3], &[]));
        currentuser.versus = Some(Versus {
            limit: "bare-handler".into(),
            limit_rps: 3.0,
            limit_p99_ms: None,
            fraction: 0.5,
        });
        let signin = Row::new("signin", &measured(&[50], &[("429", 1)]));
        let mut lag = Row::new("lag", &measured(&[10, 30], &[]));
        lag.versus = Some(Versus {
            limit: "replication-floor".into(),
            limit_rps: 500.0,
            limit_p99_ms: Some(12.0),
            fraction: 2.5,
        });
        Results {
            format: FORMAT,
            started_at: "2026-01-02T03:04:05.678Z".into(),
            git: Some(Git {
                commit: "abc1234".into(),
                dirty: false,
            }),
            machine: Machine {
                cores: 2,
                kernel: "6.1.0".into(),
                cpu: "cpu".into(),
                load_before: "0.1 0.2 0.3".into(),
                load_after: "1.0 0.5 0.4".into(),
            },
            params: Params {
                url: "http://127.0.0.1:3000".into(),
                clients: 64,
                duration_secs: 10.0,
                warmup_secs: 2.0,
                lag_rate: 500,
                list_tickets: 100,
                scenarios: vec!["currentuser".into(), "signin".into(), "lag".into()],
                limits: true,
            },
            scenarios: vec![currentuser, signin, lag],
            limits: vec![Row {
                cpu_us_per_request: Some(8.4),
                ..Row::new("bare-handler", &measured(&[1, 1, 1, 1, 1, 1], &[]))
            }],
        }
    }

    #[test]
    fn percentiles_come_from_the_histogram_in_milliseconds() {
        let values: Vec<u64> = (1..=100).collect();
        let row = Row::new("x", &measured(&values, &[]));
        let l = row.latency_ms;
        // hdrhistogram keeps 3 significant digits: within 0.1 %.
        assert!((l.p50 - 50.0).abs() < 0.1, "{l:?}");
        assert!((l.p90 - 90.0).abs() < 0.1, "{l:?}");
        assert!((l.p99 - 99.0).abs() < 0.1, "{l:?}");
        assert!((l.max - 100.0).abs() < 0.1, "{l:?}");
        assert!((l.mean - 50.5).abs() < 0.1, "{l:?}");
        assert_eq!(row.requests, 100);
        assert!((row.rps - 50.0).abs() < 1e-9, "100 requests over 2 s");
    }

    #[test]
    fn an_empty_window_has_zero_latencies_not_a_panic() {
        let row = Row::new("x", &Measured::empty(1.0));
        assert_eq!(row.latency_ms, Latency::default());
        assert!(histogram().is_empty());
    }

    #[test]
    fn the_table_shows_every_row_the_fraction_of_its_limit_and_the_errors() {
        let table = table(&results());
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("scenario"), "{table}");
        assert!(lines[0].ends_with("vs limit"), "{table}");
        let currentuser = lines.iter().find(|l| l.starts_with("currentuser")).unwrap();
        assert!(
            currentuser.contains("50% of bare-handler (3/s)"),
            "{currentuser}"
        );
        let cells: Vec<&str> = currentuser.split_whitespace().collect();
        assert_eq!(
            &cells[1..8],
            ["3", "2", "2.00", "3.00", "3.00", "3.00", "0"]
        );
        let signin = lines.iter().find(|l| l.starts_with("signin")).unwrap();
        assert!(signin.trim_end().ends_with('-'), "no limit: {signin}");
        let lag = lines.iter().find(|l| l.starts_with("lag")).unwrap();
        assert!(
            lag.contains("p99 2.5× replication-floor's (12.0 ms)"),
            "a latency limit compares p99s: {lag}"
        );
        assert!(lines.iter().any(|l| l.starts_with("limit")), "{table}");
        let bare = lines
            .iter()
            .find(|l| l.starts_with("bare-handler"))
            .unwrap();
        assert!(bare.trim_end().ends_with(" 8"), "its CPU µs: {bare}");
        assert!(table.contains("errors in signin: 1 × 429"), "{table}");
        assert!(table.contains("rate limit"), "a 429 is explained: {table}");
    }

    #[test]
    fn the_json_has_the_documented_shape_and_reads_back() {
        let results = results();
        let json = serde_json::to_value(&results).unwrap();
        for key in [
            "format",
            "startedAt",
            "git",
            "machine",
            "params",
            "scenarios",
            "limits",
        ] {
            assert!(json.get(key).is_some(), "missing {key}: {json:#}");
        }
        assert_eq!(json["machine"]["cores"], 2);
        assert_eq!(json["params"]["clients"], 64);
        let row = &json["scenarios"][0];
        assert_eq!(row["name"], "currentuser");
        assert_eq!(row["requests"], 3);
        assert_eq!(row["errors"], 0);
        for key in ["p50", "p90", "p99", "max", "mean"] {
            assert!(row["latencyMs"][key].is_number(), "{row:#}");
        }
        assert_eq!(row["versus"]["limit"], "bare-handler");
        assert_eq!(row["versus"]["fraction"], 0.5);
        assert_eq!(json["scenarios"][1]["errorKinds"]["429"], 1);
        assert!(json["scenarios"][1].get("versus").is_none());
        assert!(
            row["versus"].get("limitP99Ms").is_none(),
            "only for a latency limit"
        );
        assert_eq!(json["scenarios"][2]["versus"]["limitP99Ms"], 12.0);

        let back: Results = serde_json::from_value(json).unwrap();
        assert_eq!(back.scenarios.len(), 3);
        assert_eq!(back.row("bare-handler").unwrap().requests, 6);
    }

    #[test]
    fn a_comparison_shows_the_change_of_rate_and_p99() {
        let old = results();
        let mut new = results();
        new.scenarios[0].rps = old.scenarios[0].rps * 1.5;
        let text = compare(&old, &new);
        let line = text.lines().find(|l| l.starts_with("currentuser")).unwrap();
        assert!(line.contains("+50.0%"), "{line}");
        assert!(
            text.lines().any(|l| l.starts_with("bare-handler")),
            "{text}"
        );
    }

    #[test]
    fn the_default_file_name_is_the_start_time_without_colons() {
        assert_eq!(
            default_path("2026-01-02T03:04:05.678Z"),
            PathBuf::from("bench-results/2026-01-02T03-04-05Z.json")
        );
    }
}
