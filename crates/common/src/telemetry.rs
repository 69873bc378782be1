//! Tracing setup: human-readable logs by default, JSON lines when `LOG_FORMAT=json`.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber once; later calls (tests, the launcher) are no-ops.
///
/// The filter comes from `RUST_LOG` (default `info`); `LOG_FORMAT=json` switches to one
/// JSON object per line for log collectors.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = crate::config::Env::process()
        .get("LOG_FORMAT")
        .is_some_and(|v| v.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true);
    // An error means a subscriber is already installed, which is fine.
    let _ = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init()
    } else {
        builder.compact().try_init()
    };
}
