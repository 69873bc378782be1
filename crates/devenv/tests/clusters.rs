//! The replica set, the NATS cluster and the supervisor through the public API: members that
//! come back after a kill, and a supervisor that starts again what died.

use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use devenv::{
    FIRST_RESTART_DELAY, MongoSetOptions, NatsClusterOptions, Program, Supervisor, Unit,
    default_tools, start_mongo_set, start_nats_cluster,
};
use mongodb::Client;
use mongodb::bson::{Document, doc};

/// Polls `check` every 50 ms until it is true or `timeout` passes; returns how long it took.
fn within(timeout: Duration, what: &str, mut check: impl FnMut() -> bool) -> Result<Duration> {
    let started = Instant::now();
    while !check() {
        if started.elapsed() > timeout {
            bail!("{what} not within {timeout:?}");
        }
        thread::sleep(Duration::from_millis(50));
    }
    Ok(started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_set_takes_majority_writes_and_a_killed_member_back_with_its_data() -> Result<()>
{
    let tools = default_tools()?;
    let mut set =
        tokio::task::block_in_place(|| start_mongo_set(&tools, MongoSetOptions::default()))?;
    ensure!(set.members.len() == 3);
    ensure!(set.url.starts_with("mongodb://127.0.0.1:") && !set.url.contains("directConnection"));

    let client = Client::with_uri_str(&set.url).await?;
    let hello = client
        .database("admin")
        .run_command(doc! { "hello": 1 })
        .await?;
    let primary = hello.get_str("primary").context("no primary")?.to_owned();
    ensure!(hello.get_array("hosts")?.len() == 3, "{hello}");
    let kept = client
        .database("devenv_test")
        .collection::<Document>("kept");
    kept.insert_one(doc! { "on": "a majority" })
        .write_concern(mongodb::options::WriteConcern::majority())
        .await?;
    // A majority is two of three: the member killed below may not have had it yet. Every
    // member journals this one, so the one killed has it on its disk.
    kept.insert_one(doc! { "on": "every member" })
        .write_concern(
            mongodb::options::WriteConcern::builder()
                .w(mongodb::options::Acknowledgment::Nodes(3))
                .journal(true)
                .build(),
        )
        .await?;

    // A secondary killed and started again is a member again, with what it had.
    let secondary = set
        .members
        .iter_mut()
        .find(|member| !primary.ends_with(&format!(":{}", member.port)))
        .context("no secondary")?;
    let pid = secondary.server.pid();
    secondary.server.kill();
    tokio::task::block_in_place(|| secondary.restart())?;
    ensure!(secondary.server.pid() != pid);
    let direct = Client::with_uri_str(format!(
        "mongodb://127.0.0.1:{}/?directConnection=true&readPreference=secondaryPreferred",
        secondary.port
    ))
    .await?;
    let count = direct
        .database("devenv_test")
        .collection::<Document>("kept")
        .count_documents(doc! {})
        .await?;
    ensure!(count == 2, "the restarted member holds {count} documents");
    direct.shutdown().await;
    client.shutdown().await;
    Ok(())
}

/// The status line of `GET /healthz` on a server's monitoring port.
fn healthz(port: u16) -> String {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return "refused".to_owned();
    };
    let _ = write!(stream, "GET /healthz HTTP/1.0\r\n\r\n");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.lines().next().unwrap_or_default().to_owned()
}

#[test]
fn a_nats_cluster_is_current_everywhere_and_a_killed_server_catches_up_again() -> Result<()> {
    let tools = default_tools()?;
    let mut cluster = start_nats_cluster(&tools, NatsClusterOptions::default())?;
    ensure!(cluster.servers.len() == 3);
    ensure!(cluster.url.split(',').count() == 3, "{}", cluster.url);
    for server in &cluster.servers {
        let status = healthz(server.ports.monitor);
        ensure!(status.contains(" 200 "), "{}: {status}", server.name);
    }
    let server = &mut cluster.servers[1];
    let pid = server.server.pid();
    server.server.kill();
    ensure!(healthz(server.ports.monitor) == "refused");
    server.restart()?;
    ensure!(server.server.pid() != pid);
    ensure!(healthz(server.ports.monitor).contains(" 200 "));
    Ok(())
}

/// `sleep 600` in a shell, for the supervisor to keep running.
fn sleeper() -> Result<Command> {
    let mut command = Command::new("sh");
    command.args(["-c", "exec sleep 600"]);
    Ok(command)
}

#[test]
fn the_supervisor_starts_a_killed_program_again_within_two_seconds() -> Result<()> {
    let mut supervisor = Supervisor::new("devenv test");
    let program = Program::start("sleeper", sleeper, Duration::from_secs(5), None, None)?;
    let first = program.pid();
    supervisor.add(program);
    let watched = supervisor.watch();

    let killed = Instant::now();
    watched
        .with(|s| s.unit("sleeper").map(Unit::kill))
        .context("no sleeper")?;
    within(Duration::from_secs(2), "the sleeper back", || {
        watched.with(|s| s.restarts("sleeper").0 == 1)
    })?;
    let back = killed.elapsed();
    let pid = watched.with(|s| s.unit("sleeper").map(|unit| unit.pid()));
    ensure!(pid.is_some_and(|pid| pid != first), "same pid {pid:?}");
    ensure!(
        back >= FIRST_RESTART_DELAY,
        "restarted without waiting: {back:?}"
    );

    // Dropping the supervisor stops what it keeps.
    let pid = pid.unwrap_or_default();
    drop(watched);
    ensure!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "{pid} still runs"
    );
    Ok(())
}

#[test]
fn the_supervisor_waits_longer_each_time_a_program_keeps_dying() -> Result<()> {
    let dies = || -> Result<Command> {
        let mut command = Command::new("sh");
        command.args(["-c", "exit 3"]);
        Ok(command)
    };
    let mut supervisor = Supervisor::new("devenv test");
    supervisor.add(Program::start(
        "crasher",
        dies,
        Duration::from_secs(5),
        None,
        None,
    )?);
    let watched = supervisor.watch();
    // Restarts after 0.25, 0.5 and 1 s: three in about 1.75 s, not a tight loop.
    thread::sleep(Duration::from_millis(2_400));
    let restarts = watched.with(|s| s.restarts("crasher").0);
    ensure!((2..=4).contains(&restarts), "{restarts} restarts in 2.4 s");
    Ok(())
}
