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
pub async fn run<C: Launch>() -> anyhow::Result<()> {
    crate::telemetry::init(C::NAME);
    let served = async {
        let config = C::from_env(&Env::process())?;
        let shutdown = crate::shutdown::on_signal();
        let service = config.build().await?;
        let http = config.http();
        Server::bind(http.listen, vec![service], shutdown)
            .await?
            .with_security(http.security.clone())
            .run()
            .await
    }
    .await;
    // Spans still buffered for export go out before the process ends.
    crate::telemetry::shutdown();
    served
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
        ];
        Service::new(self.name, router, checks).with_outbox(self.outbox, self.bus)
    }
}
