//! Reading `/metrics` in tests: one scrape, one sample, and waiting until series have values.

use std::time::{Duration, Instant};

use common::metrics::names::{EVENTS_OUTBOX_PENDING, EVENTS_PUBLISH_DUPLICATES, EVENTS_PUBLISHED};
use reqwest::StatusCode;

use crate::{TestApp, WAIT, eventually};

/// How long a count must hold once reached: four of the relay's 250 ms scans, so an event
/// sent again by a later pass shows up.
const HOLDS_FOR: Duration = Duration::from_secs(1);

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

/// Asserts that `service`'s relay published exactly `count` events on `subject` (by the
/// original's name, `ticket:created`), none of them a repeat JetStream dropped as a duplicate:
/// counted at the publisher, because the stream would hide a repeat. Waits until the outbox is
/// empty and the count reached, then keeps scraping for [`HOLDS_FOR`] so that a late repeat
/// fails too.
///
/// # Panics
/// When the count is wrong, a duplicate was published, or the outbox never empties.
pub async fn assert_published_exactly(app: &TestApp, service: &str, subject: &str, count: u64) {
    let labels = format!(r#"{{service="{service}",subject="{subject}"}}"#);
    let published = format!("{EVENTS_PUBLISHED}{labels}");
    let duplicates = format!("{EVENTS_PUBLISH_DUPLICATES}{labels}");
    let pending = format!(r#"{EVENTS_OUTBOX_PENDING}{{service="{service}"}}"#);
    let read = |body: &str| {
        (
            sample(body, &published).unwrap_or(0.0),
            sample(body, &duplicates).unwrap_or(0.0),
        )
    };
    eventually(
        &format!("{count} {subject} published by {service}"),
        WAIT,
        || async {
            let body = scrape(app).await;
            let reached = read(&body).0 >= count as f64;
            (reached && sample(&body, &pending) == Some(0.0)).then_some(())
        },
    )
    .await;
    let since = Instant::now();
    loop {
        let (sent, repeated) = read(&scrape(app).await);
        assert_eq!(sent, count as f64, "{subject} published by {service}");
        assert_eq!(repeated, 0.0, "{subject} published again by {service}");
        if since.elapsed() >= HOLDS_FOR {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
