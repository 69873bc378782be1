//! Reading `/metrics` in tests: one scrape, one sample, and waiting until series have values.

use reqwest::StatusCode;

use crate::{TestApp, WAIT, eventually};

/// The text `/metrics` serves at `app`.
///
/// # Panics
/// When it does not answer 200.
pub async fn scrape(app: &TestApp) -> String {
    let response = app.get_text("/metrics").await;
    assert_eq!(response.0, StatusCode::OK, "{}", response.1);
    response.1
}

/// The value of the sample whose name and labels are exactly `series`.
///
/// # Panics
/// When the sample's value is not a number.
pub fn sample(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|value| match value.parse() {
            Ok(value) => value,
            Err(error) => panic!("{series} has value {value:?}: {error}"),
        })
}

/// Polls `/metrics` until every series has its value (events are counted asynchronously),
/// returning the last scrape.
pub async fn metrics_where(app: &TestApp, expected: &[(&str, f64)]) -> String {
    eventually(&format!("{expected:#?} in /metrics"), WAIT, || async {
        let body = scrape(app).await;
        let all = expected
            .iter()
            .all(|&(series, value)| sample(&body, series) == Some(value));
        all.then_some(body)
    })
    .await
}
