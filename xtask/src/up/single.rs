//! `cargo xtask up`: one `mongod` (a single-member replica set), one `nats-server` and every
//! service in one `ticketing` process, each started again if it dies.

use std::time::Duration;

use anyhow::Result;
use devenv::{MongoOptions, NatsOptions, Program, Supervisor};

use super::launch::{Launch, env_var};

const APP_STOP_GRACE: Duration = Duration::from_secs(10);

/// Starts the servers (unless `MONGO_URL` / `NATS_URL` name running ones) and the app, each
/// under `supervisor`, and says where they are.
pub(super) fn start(launch: &Launch, supervisor: &mut Supervisor) -> Result<()> {
    let data = launch.root.join(".data");
    let mongo_url = match env_var("MONGO_URL") {
        Some(url) => {
            eprintln!("  mongo  {url}  (external, from MONGO_URL)");
            url
        }
        None => {
            let mongo = devenv::start_mongo(
                &launch.tools,
                MongoOptions {
                    data_dir: Some(data.join("mongo")),
                    log_path: Some(data.join("mongo.log")),
                    ..MongoOptions::default()
                },
            )?;
            let url = mongo.url.clone();
            eprintln!(
                "  mongo  {url}  (data {}, log {})",
                launch.rel(&mongo.data_dir),
                launch.rel(&mongo.log_path)
            );
            supervisor.add(mongo);
            url
        }
    };
    let nats_url = match env_var("NATS_URL") {
        Some(url) => {
            eprintln!("  nats   {url}  (external, from NATS_URL)");
            url
        }
        None => {
            let nats = devenv::start_nats(
                &launch.tools,
                NatsOptions {
                    store_dir: Some(data.join("nats")),
                    log_path: Some(data.join("nats.log")),
                    ..NatsOptions::default()
                },
            )?;
            let url = nats.url.clone();
            eprintln!(
                "  nats   {url}  (store {}, log {})",
                launch.rel(&nats.store_dir),
                launch.rel(&nats.log_path)
            );
            supervisor.add(nats);
            url
        }
    };
    let port = launch.port;
    let app = launch.app.clone();
    let command = move || {
        let mut command = app.command(&["up"]);
        command
            .env("MONGO_URL", &mongo_url)
            .env("NATS_URL", &nats_url)
            .env("TICKETING_PORT", port.to_string());
        Ok(command)
    };
    // Its output is the terminal's, as before; a death is announced between its lines.
    let app = Program::start("ticketing", command, APP_STOP_GRACE, None, Some(port))?;
    supervisor.add(app);
    eprintln!();
    eprintln!("  app    http://127.0.0.1:{port}  (Ctrl-C stops everything)");
    eprintln!();
    Ok(())
}
