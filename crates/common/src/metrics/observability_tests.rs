//! The alert rules and the dashboard (`infra/observability/`) against what `/metrics` serves:
//! every PromQL expression parses, and every metric it names is a series this `/metrics`
//! writes, or one of the few that come from elsewhere (listed in [`EXTERNAL`]).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::http::Request;
use promql_parser::parser::{self, Expr, VectorSelector};
use promql_parser::util::{ExprVisitor, walk_expr};
use tower::ServiceExt as _;

use super::names;
use super::{HttpMetrics, PATH, ServiceMetrics, router};

/// Series the rules read that no service serves, and where they come from.
const EXTERNAL: [(&str, &str); 3] = [
    ("up", "Prometheus, for each scraped pod"),
    (
        "kube_deployment_status_replicas_available",
        "kube-state-metrics",
    ),
    (
        "kube_deployment_status_replicas_unavailable",
        "kube-state-metrics",
    ),
];

/// What Grafana puts in place of its variables before a query reaches Prometheus.
const GRAFANA_VARIABLES: [(&str, &str); 3] = [
    ("$__rate_interval", "1m"),
    ("$__interval", "1m"),
    ("$__range", "1h"),
];

fn observability_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../infra/observability")
}

/// The series names a real `/metrics` writes: each family's `# TYPE` line, with a histogram's
/// `_bucket`, `_sum` and `_count`.
async fn served() -> BTreeSet<String> {
    let services = vec![("tickets", ServiceMetrics::default())];
    let app = router(HttpMetrics::default(), services);
    let request = Request::get(PATH).body(Body::empty()).unwrap();
    let response = app.oneshot(request).await.unwrap();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let body = String::from_utf8(body.to_vec()).unwrap();
    let mut served = BTreeSet::new();
    for line in body.lines() {
        let Some(family) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let (name, kind) = family.split_once(' ').unwrap();
        if kind == "histogram" {
            served.extend(["_bucket", "_sum", "_count"].map(|s| format!("{name}{s}")));
        } else {
            served.insert(name.to_owned());
        }
    }
    served
}

/// The metric names an expression reads.
fn metrics_of(expr: &str) -> Result<BTreeSet<String>, String> {
    struct Names(BTreeSet<String>);
    impl Names {
        fn add(&mut self, selector: &VectorSelector) {
            let by_matcher = selector
                .matchers
                .matchers
                .iter()
                .find(|m| m.name == "__name__")
                .map(|m| m.value.clone());
            self.0.extend(selector.name.clone().or(by_matcher));
        }
    }
    impl ExprVisitor for Names {
        type Error = String;
        fn pre_visit(&mut self, expr: &Expr) -> Result<bool, String> {
            match expr {
                Expr::VectorSelector(selector) => self.add(selector),
                Expr::MatrixSelector(matrix) => self.add(&matrix.vs),
                _ => {}
            }
            Ok(true)
        }
    }
    let parsed = parser::parse(expr)?;
    let mut names = Names(BTreeSet::new());
    walk_expr(&mut names, &parsed)?;
    Ok(names.0)
}

/// The `expr:` block scalars of a rules file, each with the alert it belongs to. The file
/// writes every `expr` as a block (its comment says so), which this reads without YAML.
fn rule_expressions(rules: &str) -> Vec<(String, String)> {
    let lines: Vec<&str> = rules.lines().collect();
    let mut found = Vec::new();
    let mut alert = String::new();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        if let Some(name) = trimmed.strip_prefix("- alert:") {
            alert = name.trim().to_owned();
        }
        if trimmed.starts_with("expr:") {
            let indent = line.len() - trimmed.len();
            let block: Vec<&str> = lines[i + 1..]
                .iter()
                .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > indent)
                .map(|l| l.trim())
                .collect();
            found.push((alert.clone(), block.join("\n")));
        }
    }
    found
}

/// The `expr` of every dashboard target, with its panel's title, Grafana variables replaced.
fn dashboard_expressions(dashboard: &serde_json::Value) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let panels = dashboard["panels"].as_array().unwrap();
    for panel in panels {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let mut expr = target["expr"].as_str().unwrap().to_owned();
            for (variable, value) in GRAFANA_VARIABLES {
                expr = expr.replace(variable, value);
            }
            found.push((panel["title"].as_str().unwrap().to_owned(), expr));
        }
    }
    found
}

/// Checks each expression, naming where it is; returns the metrics they read.
fn check(expressions: &[(String, String)], known: &BTreeSet<String>) -> BTreeSet<String> {
    let mut read = BTreeSet::new();
    for (place, expr) in expressions {
        let metrics = metrics_of(expr).unwrap_or_else(|e| panic!("{place}: {e}\n{expr}"));
        assert!(!metrics.is_empty(), "{place} reads no metric: {expr}");
        for metric in &metrics {
            assert!(
                known.contains(metric),
                "{place} reads {metric}, which /metrics does not serve (it serves {known:?}): \
                 {expr}"
            );
        }
        read.extend(metrics);
    }
    read
}

#[tokio::test]
async fn every_series_the_alerts_and_the_dashboard_read_is_served() {
    let served = served().await;
    // The names' constants are what /metrics writes.
    for name in names::ALL {
        let histogram = format!("{name}_bucket");
        assert!(
            served.contains(name) || served.contains(&histogram),
            "{name} is not served: {served:?}"
        );
    }
    let mut known = served.clone();
    known.extend(EXTERNAL.map(|(name, _)| name.to_owned()));

    let dir = observability_dir();
    let rules = std::fs::read_to_string(dir.join("alerts.yaml")).unwrap();
    let alerts = rule_expressions(&rules);
    assert_eq!(
        alerts.len(),
        rules.matches("- alert:").count(),
        "every alert has one `expr: |` block"
    );
    let by_alerts = check(&alerts, &known);

    let dashboard = std::fs::read_to_string(dir.join("dashboard.json")).unwrap();
    let panels = dashboard_expressions(&serde_json::from_str(&dashboard).unwrap());
    assert!(panels.len() >= 10, "{} dashboard queries", panels.len());
    let by_dashboard = check(&panels, &known);

    // What the dashboard shows of the services is all they serve.
    let unshown: Vec<_> = names::ALL
        .iter()
        .filter(|name| {
            !by_dashboard.iter().any(|read| {
                read.strip_prefix(**name)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('_'))
            })
        })
        .collect();
    assert!(
        unshown.is_empty(),
        "the dashboard shows nothing of {unshown:?}"
    );
    for (name, _) in EXTERNAL {
        assert!(
            by_alerts.contains(name),
            "{name} is listed as external but read by no rule"
        );
    }
}

#[test]
fn the_metric_names_of_an_expression_are_found_in_every_selector() {
    let names = metrics_of(
        r#"sum by (route) (rate(http_requests_total{status=~"5.."}[5m])) / on() group_left
           max({__name__="events_outbox_pending"}) and histogram_quantile(0.9, x_bucket)"#,
    )
    .unwrap();
    let expected: BTreeSet<String> = ["events_outbox_pending", "http_requests_total", "x_bucket"]
        .map(String::from)
        .into();
    assert_eq!(names, expected);
    assert!(metrics_of("sum(rate(x[5m])").is_err());

    let rules =
        "      - alert: A\n        expr: |\n          up == 0\n          and x\n        for: 5m\n";
    assert_eq!(
        rule_expressions(rules),
        [("A".to_owned(), "up == 0\nand x".to_owned())]
    );
}
