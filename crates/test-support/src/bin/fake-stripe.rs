//! `fake-stripe`: the test-support fake Stripe as a server of its own, for trying the payment
//! saga by hand (`cargo xtask up` with `PAYMENTS_GATEWAY=stripe-fake`, the dev cluster's
//! `ticketing/fake-stripe` image). Listens on `$HOST:$PORT` (default 127.0.0.1:12111; a
//! container sets `HOST=0.0.0.0`); point payments at it with `STRIPE_API_BASE` and any
//! `sk_test_` key. Switches: `curl -X POST $URL/_fake/switches -H 'content-type: application/json'
//! -d '{"latency": 8000, "failAfterCharge": 1}'`; ledger: `curl $URL/_fake/state`.

#![allow(clippy::print_stdout)]

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let env = common::config::Env::process();
    let host = env.get("HOST").unwrap_or_else(|| "127.0.0.1".to_owned());
    let port: u16 = env.parse_or("PORT", 12111)?;
    let listener = tokio::net::TcpListener::bind((host.as_str(), port)).await?;
    println!("fake stripe on http://{}", listener.local_addr()?);
    let app = test_support::stripe::router(test_support::stripe::Shared::default());
    axum::serve(listener, app)
        .with_graceful_shutdown(common::shutdown::on_signal().cancelled_owned())
        .await?;
    Ok(())
}
