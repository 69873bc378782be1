//! `ticketing up`: every service of the workspace (or the ones `--services` names) in one
//! process, each with its own database, behind the same routes the Kubernetes ingress serves.
//!
//! Being one server, it has one `/metrics`: every service's series in one document, the event
//! series labelled with their `service` (HTTP series are told apart by their route).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use anyhow::Context as _;
use common::config::Env;
use common::server::{HttpConfig, Launch, Server, Service};
use futures::future::BoxFuture;
use tokio::net::TcpListener;

/// Sign-in/sign-up and per-user write limits of this developer's stack unless set: benchmarks
/// and the concurrency test sign up many users from 127.0.0.1 and write thousands of times a
/// second as one user, which production's limits would throttle.
const LOCAL_RATE_LIMIT: &str = "1000000";

/// Arguments of `ticketing up`.
#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// Port to serve on.
    #[arg(long, env = "TICKETING_PORT", default_value_t = 3000)]
    port: u16,
    /// Address to bind; loopback by default since this is a developer's stack.
    #[arg(long, env = "TICKETING_HOST", default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    host: IpAddr,
    /// Runs only these services (comma-separated), e.g. one as its own process beside the
    /// others; all of them when not given.
    #[arg(long, env = "TICKETING_SERVICES", value_enum, value_delimiter = ',')]
    services: Vec<ServiceName>,
}

/// The services `ticketing up` can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ServiceName {
    /// `/api/users/*`
    Auth,
    /// `/api/tickets/*`
    Tickets,
    /// `/api/orders/*`
    Orders,
    /// The expiration schedule (no routes).
    Expiration,
    /// `/api/payments/*`
    Payments,
    /// The browser client (`/`).
    Client,
}

impl ServiceName {
    /// Every service, in the order they are built.
    pub const ALL: [Self; 6] = [
        Self::Auth,
        Self::Tickets,
        Self::Orders,
        Self::Expiration,
        Self::Payments,
        Self::Client,
    ];

    /// The service's name: its database under `ticketing up`, the name `env_for` is given.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auth => auth::Config::NAME,
            Self::Tickets => tickets::Config::NAME,
            Self::Orders => orders::Config::NAME,
            Self::Expiration => expiration::Config::NAME,
            Self::Payments => payments::Config::NAME,
            Self::Client => client::Config::NAME,
        }
    }

    /// Reads the service's configuration now and returns the build to run later, so that a
    /// missing variable of any service fails before anything connects.
    fn configure(self, env: &Env) -> anyhow::Result<BoxFuture<'static, anyhow::Result<Service>>> {
        match self {
            Self::Auth => configure::<auth::Config>(env),
            Self::Tickets => configure::<tickets::Config>(env),
            Self::Orders => configure::<orders::Config>(env),
            Self::Expiration => configure::<expiration::Config>(env),
            Self::Payments => configure::<payments::Config>(env),
            Self::Client => configure::<client::Config>(env),
        }
    }
}

/// `C`'s configuration read now, and its build to run later.
fn configure<C: Launch + 'static>(
    env: &Env,
) -> anyhow::Result<BoxFuture<'static, anyhow::Result<Service>>> {
    let config = C::from_env(env)?;
    Ok(Box::pin(async move { config.build().await }))
}

/// Builds every service. `env_for(name)` gives each its environment; `ticketing up` gives them
/// the process's with their own database, and the client the server's own address as its
/// `API_URL`.
pub async fn services(env_for: impl Fn(&str) -> Env) -> anyhow::Result<Vec<Service>> {
    services_named(&ServiceName::ALL, env_for).await
}

/// Builds the named services, like [`services`].
pub async fn services_named(
    names: &[ServiceName],
    env_for: impl Fn(&str) -> Env,
) -> anyhow::Result<Vec<Service>> {
    let builds = names
        .iter()
        .map(|name| name.configure(&env_for(name.as_str())))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut services = Vec::with_capacity(builds.len());
    for build in builds {
        services.push(build.await?);
    }
    Ok(services)
}

/// Runs `ticketing up` until SIGTERM or Ctrl-C.
pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let shutdown = common::shutdown::on_signal();
    let mut env = Env::process();
    if env.get("JWT_KEY").is_none() {
        // A laptop's stack signs with the published development key; with COOKIE_SECURE=true
        // (anything real visitors reach) the services refuse it.
        env = env.with("JWT_KEY", common::session::DEVELOPMENT_KEYS[0]);
    }
    for name in [
        "AUTH_RATE_LIMIT_PER_MINUTE",
        "AUTH_RATE_LIMIT_BURST",
        "WRITE_RATE_LIMIT_PER_MINUTE",
        "WRITE_RATE_LIMIT_BURST",
    ] {
        if env.get(name).is_none() {
            env = env.with(name, LOCAL_RATE_LIMIT);
        }
    }
    let http = HttpConfig::from_env(&env)?;
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
    // In the usual order, each once, however they were listed.
    let names: Vec<_> = ServiceName::ALL
        .into_iter()
        .filter(|name| args.services.is_empty() || args.services.contains(name))
        .collect();
    let services = services_named(&names, |name| {
        env.clone()
            .with("MONGO_DB", name)
            .with("API_URL", api_url.clone())
    })
    .await?;
    let names: Vec<_> = services.iter().map(|s| s.name).collect();
    let server = Server::from_listener(listener, services, shutdown)?.with_http(&http);
    tracing::info!(
        services = ?names,
        url = %format!("http://{}", server.local_addr()?),
        startup_ms = started.elapsed().as_millis() as u64,
        "ticketing is up"
    );
    server.run().await
}
