//! The auth service's own binary, as Kubernetes runs it.

use common::config::Env;
use common::server::Server;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    common::telemetry::init("auth");
    let config = auth::Config::from_env(&Env::process())?;
    let shutdown = common::shutdown::on_signal();
    let service = auth::build(&config).await?;
    let served = Server::bind(config.service.listen, vec![service], shutdown)
        .await?
        .with_security(config.service.security.clone())
        .run()
        .await;
    // Spans still buffered for export go out before the process ends.
    common::telemetry::shutdown();
    served
}
