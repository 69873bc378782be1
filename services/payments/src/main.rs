//! The payments service's own binary, as Kubernetes runs it.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    common::server::run::<payments::Config>().await
}
