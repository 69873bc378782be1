//! Which card gateway payments uses under `cargo xtask up`: the local test gateway unless one
//! was chosen; with `PAYMENTS_GATEWAY=stripe-fake` and no `STRIPE_API_BASE`, the fake Stripe
//! (test-support's `fake-stripe` binary) runs beside the services, so the saga's failures —
//! a slow charge, a 502 after charging, an outage — can be tried by hand.

use std::process::Command;
use std::time::Duration;

use anyhow::Result;
use devenv::{Program, Supervisor};

use super::launch::{Launch, env_var};

/// Where the fake Stripe listens unless `FAKE_STRIPE_PORT` says otherwise (its own default).
const FAKE_STRIPE_PORT: u16 = 12111;
/// Any secret key the fake accepts (it checks the `sk_` prefix only).
const FAKE_STRIPE_KEY: &str = "sk_test_fake";
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Whether the fake Stripe is to run (and so to be built).
pub(super) fn wants_fake() -> bool {
    env_var("PAYMENTS_GATEWAY").as_deref() == Some("stripe-fake")
        && env_var("STRIPE_API_BASE").is_none()
}

/// The variables payments needs for the chosen gateway, starting the fake Stripe under
/// `supervisor` when it is the one chosen; says which gateway it is.
pub(super) fn start(
    launch: &Launch,
    supervisor: &mut Supervisor,
) -> Result<Vec<(&'static str, String)>> {
    if env_var("PAYMENTS_GATEWAY").is_none() && env_var("STRIPE_KEY").is_none() {
        // Payments never picks a gateway by itself: a laptop's stack says the local one.
        eprintln!("xtask: payments uses the local test gateway (PAYMENTS_GATEWAY=local)");
        return Ok(vec![("PAYMENTS_GATEWAY", "local".to_owned())]);
    }
    if !wants_fake() {
        return Ok(Vec::new());
    }
    let port = match env_var("FAKE_STRIPE_PORT") {
        Some(port) => port.parse()?,
        None => FAKE_STRIPE_PORT,
    };
    let exe = launch.app.exe.with_file_name("fake-stripe");
    let command = move || {
        let mut command = Command::new(&exe);
        command
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string());
        Ok(command)
    };
    supervisor.add(Program::start(
        "fake-stripe",
        command,
        STOP_GRACE,
        None,
        Some(port),
    )?);
    let url = format!("http://127.0.0.1:{port}");
    eprintln!(
        "  stripe {url}  (the fake Stripe: switches `curl -X POST {url}/_fake/switches -H \
         'content-type: application/json' -d '{{\"latency\": 8000}}'`, ledger `curl \
         {url}/_fake/state`)"
    );
    let mut env = vec![("STRIPE_API_BASE", url)];
    if env_var("STRIPE_KEY").is_none() {
        env.push(("STRIPE_KEY", FAKE_STRIPE_KEY.to_owned()));
    }
    Ok(env)
}
