//! The orders service's own binary, as Kubernetes runs it.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    common::server::run::<orders::Config>().await
}
