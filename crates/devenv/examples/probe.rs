//! Temporary manual probe (not committed).
use std::time::Instant;
fn main() -> anyhow::Result<()> {
    let tools = devenv::default_tools()?;
    let t = Instant::now();
    let mongo = devenv::start_mongo(&tools, devenv::MongoOptions::default())?;
    eprintln!("mongo ready in {:?}: {} pid {}", t.elapsed(), mongo.url, mongo.pid());
    let t = Instant::now();
    let nats = devenv::start_nats(&tools, devenv::NatsOptions::default())?;
    eprintln!("nats ready in {:?}: {} pid {}", t.elapsed(), nats.url, nats.pid());
    if std::env::args().any(|a| a == "--hang") {
        eprintln!("READY");
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
    let t = Instant::now();
    nats.stop()?;
    eprintln!("nats stopped in {:?}", t.elapsed());
    let t = Instant::now();
    mongo.stop()?;
    eprintln!("mongo stopped in {:?}", t.elapsed());
    Ok(())
}
