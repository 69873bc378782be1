//! `ticketing up`: every service of the workspace in one process, each with its own database,
//! behind the same routes the Kubernetes ingress serves.
//!
//! Being one server, it has one `/metrics`: every service's series in one document, the event
//! series labelled with their `service` (HTTP series are told apart by their route).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use anyhow::Context as _;
use common::config::Env;
use common::security::HttpSecurity;
use common::server::{Server, Service};
use tokio::net::TcpListener;

/// Sign-in/sign-up limit of this developer's stack unless set: benchmarks and the concurrency
/// test sign up many users from 127.0.0.1, which production's limit would throttle.
const LOCAL_AUTH_RATE_LIMIT: &str = "1000000";

/// Arguments of `ticketing up`.
#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// Port to serve on.
    #[arg(long, env = "TICKETING_PORT", default_value_t = 3000)]
    port: u16,
    /// Address to bind; loopback by default since this is a developer's stack.
    #[arg(long, env = "TICKETING_HOST", default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    host: IpAddr,
}

/// Builds every service. `env_for(name)` gives each its environment; `ticketing up` gives them
/// the process's with their own database, and the client the server's own address as its
/// `API_URL`.
pub async fn services(env_for: impl Fn(&str) -> Env) -> anyhow::Result<Vec<Service>> {
    let auth = auth::Config::from_env(&env_for("auth"))?;
    let tickets = tickets::Config::from_env(&env_for("tickets"))?;
    let orders = orders::Config::from_env(&env_for("orders"))?;
    let expiration = expiration::Config::from_env(&env_for("expiration"))?;
    let payments = payments::Config::from_env(&env_for("payments"))?;
    let client = client::Config::from_env(&env_for("client"))?;
    Ok(vec![
        auth::build(&auth).await?,
        tickets::build(&tickets).await?,
        orders::build(&orders).await?,
        expiration::build(&expiration).await?,
        payments::build(&payments).await?,
        client::build(&client)?,
    ])
}

/// Runs `ticketing up` until SIGTERM or Ctrl-C.
pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let shutdown = common::shutdown::on_signal();
    let mut env = Env::process();
    for name in ["AUTH_RATE_LIMIT_PER_MINUTE", "AUTH_RATE_LIMIT_BURST"] {
        if env.get(name).is_none() {
            env = env.with(name, LOCAL_AUTH_RATE_LIMIT);
        }
    }
    let security = HttpSecurity::from_env(&env)?;
    let addr = SocketAddr::new(args.host, args.port);
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("bind {addr}"))?;
    let own = listener.local_addr()?;
    // The client calls the APIs through this very server unless told otherwise.
    let api_url = env.get("API_URL").unwrap_or_else(|| {
        let host = if own.ip().is_unspecified() {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            own.ip()
        };
        format!("http://{}", SocketAddr::new(host, own.port()))
    });
    let services = services(|name| {
        env.clone()
            .with("MONGO_DB", name)
            .with("API_URL", api_url.clone())
    })
    .await?;
    let names: Vec<_> = services.iter().map(|s| s.name).collect();
    let server = Server::from_listener(listener, services, shutdown)?.with_security(security);
    tracing::info!(
        services = ?names,
        url = %format!("http://{}", server.local_addr()?),
        startup_ms = started.elapsed().as_millis() as u64,
        "ticketing is up"
    );
    server.run().await
}
