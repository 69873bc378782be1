//! The supervisor: keeps servers and service processes running, as Kubernetes keeps pods
//! running. Whatever dies is started again after a delay that grows while it keeps dying, with
//! a line saying which, how it ended and where to look for why.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::process::{POLL, Supervised, log_since};
use crate::{Mongo, MongoMember, Nats, NatsNode};

/// The wait before the first restart of something that died.
pub const FIRST_RESTART_DELAY: Duration = Duration::from_millis(250);
/// The longest wait between restarts, however often it died before.
const LONGEST_RESTART_DELAY: Duration = Duration::from_secs(30);
/// Up this long after a restart, it has recovered: its next death waits the first delay again.
const HEALTHY_AFTER: Duration = Duration::from_secs(30);

/// Something the supervisor keeps running.
pub trait Unit: Send {
    /// Its name in messages, e.g. `tickets-1` or `mongod-0`.
    fn name(&self) -> &str;
    /// Its current process id.
    fn pid(&self) -> u32;
    /// Its exit status once it has died, without blocking.
    fn exited(&mut self) -> Result<Option<ExitStatus>>;
    /// Starts it again in place of the one that died, and waits until it is back.
    fn start_again(&mut self) -> Result<()>;
    /// Kills it at once (SIGKILL), as a crash would.
    fn kill(&mut self);
    /// Stops it for good (SIGTERM, then SIGKILL after its grace period).
    fn stop(&mut self) -> Result<()>;
    /// Its log file, where the reason of a death is; `None` when its output is the terminal's.
    fn log_path(&self) -> Option<&Path>;
}

/// A program of ours run as a child, started again from the same command line; its output
/// goes to its log file, or to the terminal.
pub struct Program {
    name: String,
    command: Box<dyn FnMut() -> Result<Command> + Send>,
    grace: Duration,
    log_path: Option<PathBuf>,
    /// The port it listens on once started, checked before it counts as up.
    port: Option<u16>,
    process: Supervised,
}

impl std::fmt::Debug for Program {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Program")
            .field("name", &self.name)
            .field("pid", &self.process.pid())
            .finish_non_exhaustive()
    }
}

/// How long a program may take to listen on its port.
const PROGRAM_START_TIMEOUT: Duration = Duration::from_secs(120);

impl Program {
    /// Starts `command()` and, when `port` is given, waits until it listens there (failing if
    /// it exits first: a program that cannot start is not restarted, it is reported). The
    /// command's output must already go where `log_path` says (`None`: the terminal).
    pub fn start(
        name: &str,
        mut command: impl FnMut() -> Result<Command> + Send + 'static,
        grace: Duration,
        log_path: Option<PathBuf>,
        port: Option<u16>,
    ) -> Result<Self> {
        let mut process = Supervised::spawn(name, command()?, grace)?;
        if let Some(port) = port {
            wait_until_listening(&mut process, port, log_path.as_deref())?;
        }
        Ok(Self {
            name: name.to_owned(),
            command: Box::new(command),
            grace,
            log_path,
            port,
            process,
        })
    }
}

fn wait_until_listening(process: &mut Supervised, port: u16, log: Option<&Path>) -> Result<()> {
    crate::process::wait_for_port(process, port, PROGRAM_START_TIMEOUT).with_context(|| match log {
        Some(log) => format!("see {}", log.display()),
        None => "see its output above".to_owned(),
    })
}

impl Unit for Program {
    fn name(&self) -> &str {
        &self.name
    }
    fn pid(&self) -> u32 {
        self.process.pid()
    }
    fn exited(&mut self) -> Result<Option<ExitStatus>> {
        self.process.try_wait()
    }
    fn start_again(&mut self) -> Result<()> {
        self.process.kill();
        self.process = Supervised::spawn(&self.name, (self.command)()?, self.grace)?;
        match self.port {
            Some(port) => wait_until_listening(&mut self.process, port, self.log_path.as_deref()),
            None => Ok(()),
        }
    }
    fn kill(&mut self) {
        self.process.kill();
    }
    fn stop(&mut self) -> Result<()> {
        self.process.stop()
    }
    fn log_path(&self) -> Option<&Path> {
        self.log_path.as_deref()
    }
}

/// A server of ours is a unit: its `restart` starts it again on the same port and files.
macro_rules! server_unit {
    ($type:ty, $name:path) => {
        impl Unit for $type {
            fn name(&self) -> &str {
                $name(self)
            }
            fn pid(&self) -> u32 {
                self.server.pid()
            }
            fn exited(&mut self) -> Result<Option<ExitStatus>> {
                self.server.try_wait()
            }
            fn start_again(&mut self) -> Result<()> {
                self.restart()
            }
            fn kill(&mut self) {
                self.server.kill();
            }
            fn stop(&mut self) -> Result<()> {
                self.server.halt()
            }
            fn log_path(&self) -> Option<&Path> {
                Some(&self.log_path)
            }
        }
    };
}

fn mongo_name(_: &Mongo) -> &str {
    "mongod"
}
fn nats_name(_: &Nats) -> &str {
    "nats-server"
}
fn member_name(member: &MongoMember) -> &str {
    &member.name
}
fn node_name(node: &NatsNode) -> &str {
    &node.name
}

server_unit!(Mongo, mongo_name);
server_unit!(Nats, nats_name);
server_unit!(MongoMember, member_name);
server_unit!(NatsNode, node_name);

/// One supervised unit and its restart bookkeeping.
struct Entry {
    unit: Box<dyn Unit>,
    /// The wait before its next restart.
    delay: Duration,
    /// Set while it is dead: when it died, and when it is due to start again.
    dead: Option<(Instant, Instant)>,
    /// When it was last started.
    started: Instant,
    /// When it was last back after a death.
    back: Option<Instant>,
    restarts: u32,
    /// Not started again while set: a machine that stays down.
    held: bool,
}

/// Keeps its units running: [`Supervisor::check`] restarts whatever died, once its delay has
/// passed; [`Supervisor::stop_all`] stops them, the last added first.
pub struct Supervisor {
    /// Starts every line it writes, e.g. `xtask`.
    label: String,
    units: Vec<Entry>,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.units.iter().map(|entry| entry.unit.name()).collect();
        f.debug_struct("Supervisor")
            .field("label", &self.label)
            .field("units", &names)
            .finish()
    }
}

impl Supervisor {
    /// A supervisor whose lines start with `label`.
    pub fn new(label: &str) -> Self {
        Self {
            label: label.to_owned(),
            units: Vec::new(),
        }
    }

    /// Supervises `unit`, already started, from now on.
    pub fn add(&mut self, unit: impl Unit + 'static) {
        self.units.push(Entry {
            unit: Box::new(unit),
            delay: FIRST_RESTART_DELAY,
            dead: None,
            started: Instant::now(),
            back: None,
            restarts: 0,
            held: false,
        });
    }

    /// Holds the unit named `name` down once it dies (a machine that stays down), or lets it
    /// be started again; false if there is no such unit.
    pub fn hold(&mut self, name: &str, held: bool) -> bool {
        let entry = self
            .units
            .iter_mut()
            .find(|entry| entry.unit.name() == name);
        entry.map(|entry| entry.held = held).is_some()
    }

    /// The unit named `name`, e.g. to kill it.
    pub fn unit(&mut self, name: &str) -> Option<&mut dyn Unit> {
        self.units
            .iter_mut()
            .find(|entry| entry.unit.name() == name)
            .map(|entry| &mut *entry.unit as &mut dyn Unit)
    }

    /// How many times the unit named `name` was started again, and when it was last back.
    pub fn restarts(&self, name: &str) -> (u32, Option<Instant>) {
        self.units
            .iter()
            .find(|entry| entry.unit.name() == name)
            .map_or((0, None), |entry| (entry.restarts, entry.back))
    }

    /// Notices what died (and says so) and starts again what is due. Blocks while a restart
    /// waits for its unit to be back.
    pub fn check(&mut self) {
        let now = Instant::now();
        let label = &self.label;
        for entry in &mut self.units {
            match entry.dead {
                None => match entry.unit.exited() {
                    Ok(Some(status)) => {
                        if now.duration_since(entry.started) >= HEALTHY_AFTER {
                            entry.delay = FIRST_RESTART_DELAY;
                        }
                        entry.dead = Some((now, now + entry.delay));
                        say(label, &died(&*entry.unit, status, entry.delay, entry.held));
                        if let Some(panic) = entry.unit.log_path().and_then(last_panic) {
                            say(
                                label,
                                &format!("  {} last panicked: {panic}", entry.unit.name()),
                            );
                        }
                    }
                    Ok(None) => {}
                    Err(err) => say(label, &format!("{}: {err:#}", entry.unit.name())),
                },
                Some((died_at, due)) if now >= due && !entry.held => {
                    entry.restarts += 1;
                    entry.started = Instant::now();
                    entry.delay = (entry.delay * 2).min(LONGEST_RESTART_DELAY);
                    match entry.unit.start_again() {
                        Ok(()) => {
                            entry.dead = None;
                            entry.back = Some(Instant::now());
                            let line = format!(
                                "{} is back (pid {}), {:.1} s after it died",
                                entry.unit.name(),
                                entry.unit.pid(),
                                died_at.elapsed().as_secs_f64()
                            );
                            say(label, &line);
                        }
                        Err(err) => {
                            entry.dead = Some((died_at, Instant::now() + entry.delay));
                            let line = format!(
                                "{} failed to start again ({err:#}); next try in {:.1} s",
                                entry.unit.name(),
                                entry.delay.as_secs_f64()
                            );
                            say(label, &line);
                        }
                    }
                }
                Some(_) => {}
            }
        }
    }

    /// Stops every unit, the last added first (the services before the servers they use);
    /// fails naming the units that did not stop cleanly.
    pub fn stop_all(&mut self) -> Result<()> {
        let mut failed = Vec::new();
        while let Some(mut entry) = self.units.pop() {
            if entry.dead.is_some() {
                entry.unit.kill();
                continue;
            }
            if let Err(err) = entry.unit.stop() {
                failed.push(format!("{}: {err:#}", entry.unit.name()));
            }
        }
        if !failed.is_empty() {
            bail!("{}", failed.join("; "));
        }
        Ok(())
    }

    /// Checks the units every poll interval on a thread of its own, until dropped.
    pub fn watch(self) -> Watched {
        let supervisor = Arc::new(Mutex::new(self));
        let done = Arc::new(AtomicBool::new(false));
        let thread = {
            let (supervisor, done) = (Arc::clone(&supervisor), Arc::clone(&done));
            thread::spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    supervisor
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .check();
                    thread::sleep(POLL);
                }
            })
        };
        Watched {
            supervisor,
            done,
            thread: Some(thread),
        }
    }
}

fn say(label: &str, line: &str) {
    eprintln!("{label}: {line}");
}

/// A [`Supervisor`] checking its units on its own thread; dropping it stops the units.
#[derive(Debug)]
pub struct Watched {
    supervisor: Arc<Mutex<Supervisor>>,
    done: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Watched {
    /// Runs `f` on the supervisor between two checks.
    pub fn with<T>(&self, f: impl FnOnce(&mut Supervisor) -> T) -> T {
        f(&mut self
            .supervisor
            .lock()
            .unwrap_or_else(PoisonError::into_inner))
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let _ = self.with(Supervisor::stop_all);
    }
}

/// The line about a death: which unit, how it ended, when it comes back, where to look.
fn died(unit: &dyn Unit, status: ExitStatus, delay: Duration, held: bool) -> String {
    let output = match unit.log_path() {
        Some(log) => format!("its log: {}", log.display()),
        None => "its output is above".to_owned(),
    };
    let again = if held {
        "held down until released".to_owned()
    } else {
        format!("starting it again in {:.2} s", delay.as_secs_f64())
    };
    format!(
        "{} (pid {}) died: {}; {again}; {output}",
        unit.name(),
        unit.pid(),
        describe(status),
    )
}

/// An exit status as a person reads it.
pub fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(101), _) => "exited with status 101 (a Rust panic)".to_owned(),
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => {
            let name = match signal {
                1 => "SIGHUP",
                2 => "SIGINT",
                6 => "SIGABRT",
                9 => "SIGKILL",
                11 => "SIGSEGV",
                15 => "SIGTERM",
                _ => "a signal",
            };
            format!("killed by signal {signal} ({name})")
        }
        (None, None) => format!("{status}"),
    }
}

/// The last `panicked at` line in the tail of a log, if any.
fn last_panic(log: &Path) -> Option<String> {
    let tail = log_since(log, 0, 64 * 1024).ok()?;
    tail.lines()
        .rev()
        .find(|line| line.contains("panicked at"))
        .map(|line| line.trim().chars().take(300).collect())
}
