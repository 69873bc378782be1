//! The expiration service's own binary, as Kubernetes runs it.

use common::config::Env;
use common::server::Server;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    common::telemetry::init("expiration");
    let config = expiration::Config::from_env(&Env::process())?;
    let shutdown = common::shutdown::on_signal();
    let service = expiration::build(&config).await?;
    let served = Server::bind(config.listen, vec![service], shutdown)
        .await?
        .run()
        .await;
    // Spans still buffered for export go out before the process ends.
    common::telemetry::shutdown();
    served
}
