//! The auth service's own binary, as Kubernetes runs it.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    common::server::run::<auth::Config>().await
}
