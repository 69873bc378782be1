//! Starts real `mongod` and `nats-server` processes through the public API and talks to them.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use devenv::{MongoOptions, NatsOptions, default_tools, start_mongo, start_nats};
use mongodb::Client;
use mongodb::bson::{Document, doc};

fn process_exists(pid: u32) -> bool {
    // A stopped child is reaped by `stop`, so its /proc entry is gone, not a zombie.
    Path::new(&format!("/proc/{pid}")).exists()
}

fn free_port_other_than(taken: u16) -> Result<u16> {
    loop {
        let port = std::net::TcpListener::bind(("127.0.0.1", 0))?
            .local_addr()?
            .port();
        if port != taken {
            return Ok(port);
        }
    }
}

/// The first line the NATS server on `port` sends: its `INFO` greeting.
fn nats_greeting(port: u16) -> Result<String> {
    let stream = TcpStream::connect(("127.0.0.1", port)).context("connect to nats")?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut greeting = String::new();
    BufReader::new(stream).read_line(&mut greeting)?;
    Ok(greeting)
}

/// Fails unless `dir`, a stopped server's temporary `what`, is gone.
fn ensure_removed(dir: &Path, what: &str) -> Result<()> {
    ensure!(!dir.exists(), "temp {what} {} left behind", dir.display());
    Ok(())
}

/// Fails unless the halted server `name` is gone: its process `pid`, and any answer on `port`.
fn ensure_halted(name: &str, pid: u32, port: u16) -> Result<()> {
    ensure!(!process_exists(pid), "{name} {pid} still running");
    ensure!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "port {port} still answers"
    );
    Ok(())
}

async fn is_writable_primary(client: &Client) -> Result<bool> {
    let reply = client
        .database("admin")
        .run_command(doc! { "hello": 1 })
        .await?;
    Ok(reply.get_bool("isWritablePrimary")?)
}

// A tokio test on purpose: `start_mongo` must work when called from inside a runtime.
#[tokio::test]
async fn mongo_is_a_primary_that_runs_transactions_and_stops() -> Result<()> {
    let tools = default_tools()?;
    let mongo = start_mongo(&tools, MongoOptions::default())?;
    let data_dir = mongo.data_dir.clone();
    let pid = mongo.server.pid();
    ensure!(mongo.url.ends_with("directConnection=true&replicaSet=rs0"));

    let client = Client::with_uri_str(&mongo.url).await?;
    ensure!(
        is_writable_primary(&client).await?,
        "not a writable primary"
    );
    // Killed clients' transactions expire fast, and no snapshot history is kept (see
    // `mongod_command`); the transaction below still commits.
    let parameters = client
        .database("admin")
        .run_command(doc! {
            "getParameter": 1,
            "transactionLifetimeLimitSeconds": 1,
            "minSnapshotHistoryWindowInSeconds": 1,
        })
        .await?;
    ensure!(
        parameters.get_i32("transactionLifetimeLimitSeconds")? == 10
            && parameters.get_i32("minSnapshotHistoryWindowInSeconds")? == 0,
        "mongod's parameters: {parameters}"
    );

    let orders = client
        .database("devenv_test")
        .collection::<Document>("orders");
    let mut session = client.start_session().await?;
    session.start_transaction().await?;
    orders
        .insert_one(doc! { "ticket": "t1" })
        .session(&mut session)
        .await?;
    session.commit_transaction().await?;
    ensure!(orders.count_documents(doc! {}).await? == 1);
    // `shutdown` waits for every session to be dropped first.
    drop(session);
    client.shutdown().await;

    mongo.stop()?;
    ensure!(!process_exists(pid), "mongod {pid} still running");
    ensure_removed(&data_dir, "data dir")
}

#[test]
fn nats_greets_with_jetstream_and_stops_on_drop() -> Result<()> {
    let tools = default_tools()?;
    let nats = start_nats(&tools, NatsOptions::default())?;
    let pid = nats.server.pid();
    let store_dir = nats.store_dir.clone();
    ensure!(nats.url == format!("nats://127.0.0.1:{}", nats.port));

    let greeting = nats_greeting(nats.port)?;
    ensure!(
        greeting.starts_with("INFO "),
        "unexpected greeting {greeting}"
    );
    ensure!(
        greeting.contains(r#""jetstream":true"#),
        "no JetStream: {greeting}"
    );

    drop(nats);
    ensure!(!process_exists(pid), "nats-server {pid} still running");
    ensure_removed(&store_dir, "store")
}

// A kept data dir remembers the replica set's member host; restarting on another port must
// still give a primary.
#[test]
fn mongo_restarts_on_another_port_with_a_kept_data_dir() -> Result<()> {
    let tools = default_tools()?;
    let dir = std::env::temp_dir().join(format!("devenv-test-kept-{}", std::process::id()));
    let options = || MongoOptions {
        data_dir: Some(dir.clone()),
        ..MongoOptions::default()
    };
    let result = (|| -> Result<()> {
        let first = start_mongo(&tools, options())?;
        let first_port = first.port;
        first.stop()?;
        let second = start_mongo(
            &tools,
            MongoOptions {
                port: Some(free_port_other_than(first_port)?),
                ..options()
            },
        )?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let primary = runtime.block_on(async {
            let client = Client::with_uri_str(&second.url).await?;
            let primary = is_writable_primary(&client).await;
            client.shutdown().await;
            primary
        })?;
        ensure!(primary, "not a writable primary after the port changed");
        ensure!(
            dir.join("mongod.log").exists(),
            "no log in the kept data dir"
        );
        second.stop()
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

// What fault tests rely on: an outage that ends with the same server on the same address.
#[tokio::test]
async fn mongo_halts_and_restarts_on_the_same_port_as_primary_with_its_data() -> Result<()> {
    let tools = default_tools()?;
    let mut mongo = start_mongo(&tools, MongoOptions::default())?;
    let (port, pid) = (mongo.port, mongo.server.pid());
    let client = Client::with_uri_str(&mongo.url).await?;
    client
        .database("devenv_test")
        .collection::<Document>("kept")
        .insert_one(doc! { "survives": "the outage" })
        .await?;
    client.shutdown().await;

    mongo.server.halt()?;
    ensure_halted("mongod", pid, port)?;
    ensure!(mongo.data_dir.exists(), "halt removed the data dir");

    mongo.restart()?;
    ensure!(mongo.port == port && mongo.server.pid() != pid);
    let client = Client::with_uri_str(&mongo.url).await?;
    ensure!(
        is_writable_primary(&client).await?,
        "not a writable primary after the restart"
    );
    let kept = client
        .database("devenv_test")
        .collection::<Document>("kept")
        .count_documents(doc! {})
        .await?;
    ensure!(kept == 1, "the data is gone");
    client.shutdown().await;

    let data_dir = mongo.data_dir.clone();
    mongo.stop()?;
    ensure_removed(&data_dir, "data dir")
}

#[test]
fn nats_halts_and_restarts_on_the_same_port_with_its_store() -> Result<()> {
    let tools = default_tools()?;
    let mut nats = start_nats(&tools, NatsOptions::default())?;
    let (port, pid) = (nats.port, nats.server.pid());

    nats.server.halt()?;
    ensure_halted("nats-server", pid, port)?;
    ensure!(nats.store_dir.exists(), "halt removed the store");

    nats.restart()?;
    ensure!(nats.port == port && nats.server.pid() != pid);
    let greeting = nats_greeting(port)?;
    ensure!(
        greeting.contains(r#""jetstream":true"#),
        "no JetStream after the restart: {greeting}"
    );

    let store_dir = nats.store_dir.clone();
    drop(nats);
    ensure_removed(&store_dir, "store")
}

#[test]
fn a_killed_child_dies_at_once_of_sigkill_even_if_it_ignores_sigterm() -> Result<()> {
    use std::os::unix::process::ExitStatusExt as _;
    let mut command = std::process::Command::new("sh");
    command.args(["-c", r#"trap "" TERM; while :; do sleep 1; done"#]);
    let mut child = devenv::Supervised::spawn("stubborn", command, Duration::from_secs(30))?;
    let pid = child.pid();
    let started = std::time::Instant::now();
    child.kill();
    // A kill that waited for the 30 s grace would take 30 s; half of it leaves a busy machine
    // room and still tells the two apart.
    ensure!(
        started.elapsed() < Duration::from_secs(15),
        "kill waited {:?}",
        started.elapsed()
    );
    ensure!(!process_exists(pid), "{pid} still running");
    let status = child.try_wait()?.context("not reaped")?;
    ensure!(status.signal() == Some(9), "ended with {status}");
    // Stopping afterwards is a no-op, as is dropping.
    child.stop()?;
    Ok(())
}
