//! One way to start a service: [`Launch`] is what a service's configuration says about it (its
//! name, where it listens, how it is built), [`run`] is the whole `main` of its own binary, and
//! [`Backend`] connects a service that owns data and events to MongoDB, NATS and its outbox.
//! The all-in-one launcher builds the same services through the same [`Launch::build`].

use axum::Router;
use mongodb::Database;

use super::{HttpConfig, Server, Service};
use crate::config::{Env, FromEnv};
use crate::events::{Event, EventBus, Handler, Listener, NatsConfig, Outbox};
use crate::health::ReadinessCheck;
use crate::mongo::MongoConfig;

/// A service's configuration, and how to build the service from it.
pub trait Launch: FromEnv + Send + Sync {
    /// The service's name, given once: logs, the default database, its durable consumers'
    /// names, readiness checks and metrics all use it.
    const NAME: &'static str;

    /// Where the service's own binary listens, and its browser protections.
    fn http(&self) -> &HttpConfig;

    /// Connects to what the service needs and returns what a server runs of it.
    fn build(&self) -> impl Future<Output = anyhow::Result<Service>> + Send;
}

/// The `main` of a service's own binary: tracing, configuration from the process environment,
/// the service built and served until SIGTERM or Ctrl-C, then buffered spans flushed.
///
/// `<binary> healthcheck` instead asks the running server's `/readyz` on this container's own
/// `PORT` and exits 0 when it is ready: the images have no shell or curl for a health check.
pub async fn run<C: Launch>() -> anyhow::Result<()> {
    if std::env::args().nth(1).as_deref() == Some(HEALTHCHECK) {
        let listen = crate::config::listen_addr(&Env::process())?;
        return healthcheck(listen.port());
    }
    crate::telemetry::init(C::NAME);
    let served = async {
        let config = C::from_env(&Env::process())?;
        let shutdown = crate::shutdown::on_signal();
        let service = config.build().await?;
        let http = config.http();
        Server::bind(http.listen, vec![service], shutdown)
            .await?
            .with_http(http)
            .run()
            .await
    }
    .await;
    // Spans still buffered for export go out before the process ends.
    crate::telemetry::shutdown();
    served
}

/// The argument that makes a service's binary check its running server instead of serving.
pub const HEALTHCHECK: &str = "healthcheck";

/// Asks `http://127.0.0.1:<port>/readyz` once, within 3 s; `Ok` only for 200.
fn healthcheck(port: u16) -> anyhow::Result<()> {
    use std::io::{Read as _, Write as _};
    let timeout = std::time::Duration::from_secs(3);
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = std::net::TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")?;
    let mut head = [0_u8; 12];
    stream.read_exact(&mut head)?;
    anyhow::ensure!(
        head.starts_with(b"HTTP/1.1 200"),
        "not ready: {}",
        String::from_utf8_lossy(&head)
    );
    Ok(())
}

/// What a service that owns data and publishes events runs on: its database, the event bus,
/// and the outbox of the collections whose documents carry events.
#[derive(Debug, Clone)]
pub struct Backend {
    name: &'static str,
    /// The service's own database.
    pub db: Database,
    /// The event bus, in the configured namespace.
    pub bus: EventBus,
    /// The outbox of the service's event-carrying collections.
    pub outbox: Outbox,
}

impl Backend {
    /// Connects service `C` to its database and to NATS (creating the streams), and prepares
    /// the outbox of `collections`: every collection whose documents carry events.
    pub async fn connect<C: Launch>(
        mongo: &MongoConfig,
        nats: &NatsConfig,
        collections: &[&str],
    ) -> anyhow::Result<Self> {
        let name = C::NAME;
        let db = mongo.connect(name).await?;
        let bus = EventBus::connect(nats, name).await?;
        let outbox = Outbox::new(&db, collections);
        outbox.ensure_indexes().await?;
        Ok(Self {
            name,
            db,
            bus,
            outbox,
        })
    }

    /// The service's listener for `E`, on its durable consumer `<service>-<subject>`.
    pub fn listener<E: Event, H: Handler<E>>(&self, handler: H) -> Listener<E, H> {
        Listener::new(self.bus.clone(), self.name, handler)
    }

    /// The service with `router`: ready while its database and NATS answer, and running the
    /// outbox relay. Listeners and other tasks are added to what it returns.
    pub fn service(self, router: Router) -> Service {
        let checks = vec![
            ReadinessCheck::mongo(format!("{}-mongo", self.name), self.db),
            self.bus.readiness_check(),
            self.bus.stream_room_check(),
        ];
        Service::new(self.name, router, checks).with_outbox(self.outbox, self.bus)
    }
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;
    use axum::routing::get;

    use super::*;

    /// A server whose `/readyz` answers `status`, on a free port.
    async fn readyz(status: StatusCode) -> u16 {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let router = Router::new().route("/readyz", get(move || async move { status }));
        tokio::spawn(async move { axum::serve(listener, router).await });
        port
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn the_healthcheck_passes_only_on_a_ready_server() {
        let ready = readyz(StatusCode::OK).await;
        let busy = readyz(StatusCode::SERVICE_UNAVAILABLE).await;
        let closed = {
            let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
            listener.local_addr().unwrap().port()
        };
        let check = |port| tokio::task::spawn_blocking(move || healthcheck(port));
        assert!(check(ready).await.unwrap().is_ok());
        assert!(check(busy).await.unwrap().is_err());
        assert!(check(closed).await.unwrap().is_err());
    }
}
