//! Child processes that cannot outlive us, plus the temp dirs, ports and log tails the servers need.

use std::env;
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};

/// How often startup and shutdown loops look at the child again.
pub(crate) const POLL: Duration = Duration::from_millis(50);

/// Runs beside each child with our end of a pipe as its stdin. EOF on that pipe means we dropped
/// the handle or died (the kernel closes the pipe even on SIGKILL); either way the child must go.
/// `read` is a shell builtin, so killing the watchdog itself leaves no orphaned `cat` behind.
/// `$1` is the child's pid, which is also its process group id; `$2` an optional directory to
/// remove once the child is gone.
const WATCHDOG_SH: &str = r#"
while read -r _; do :; done
if kill -TERM -"$1" 2>/dev/null; then
  i=0
  while [ "$i" -lt 100 ] && kill -0 "$1" 2>/dev/null; do sleep 0.1; i=$((i + 1)); done
  kill -KILL -"$1" 2>/dev/null
fi
if [ -n "$2" ]; then rm -rf -- "$2"; fi
"#;

/// A child process in its own process group, stopped (SIGTERM, then SIGKILL after a grace
/// period, both sent to the whole group) by [`Supervised::stop`] or on drop, and by a watchdog
/// if this process dies first.
///
/// Its own process group keeps a terminal's Ctrl-C away from it, so the parent decides the
/// shutdown order.
#[derive(Debug)]
pub struct Supervised {
    name: String,
    child: Child,
    watchdog: Option<Watchdog>,
    grace: Duration,
    stopped: bool,
}

#[derive(Debug)]
struct Watchdog {
    shell: Child,
    /// Never written to: it exists to be closed.
    _pipe: ChildStdin,
}

impl Supervised {
    /// Spawns `cmd` with stdin from /dev/null in a new process group; stdout and stderr are the
    /// caller's to configure. `grace` bounds how long [`stop`](Self::stop) waits after SIGTERM.
    pub fn spawn(name: &str, cmd: Command, grace: Duration) -> Result<Self> {
        Self::spawn_with_cleanup(name, cmd, grace, None)
    }

    /// Like [`spawn`](Self::spawn); if we die, the watchdog also removes `cleanup_dir` once the
    /// child is gone (otherwise its owner removes it).
    pub(crate) fn spawn_with_cleanup(
        name: &str,
        mut cmd: Command,
        grace: Duration,
        cleanup_dir: Option<&Path>,
    ) -> Result<Self> {
        let child = cmd
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()
            .with_context(|| format!("failed to start {name} ({})", cmd.get_program().display()))?;
        // From here on, dropping `supervised` stops the child, including on the error paths below.
        let mut supervised = Self {
            name: name.to_owned(),
            child,
            watchdog: None,
            grace,
            stopped: false,
        };
        let mut shell = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG_SH)
            .arg("devenv-watchdog")
            .arg(supervised.child.id().to_string())
            .arg(cleanup_dir.map_or(OsStr::new(""), Path::as_os_str))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Ctrl-C in a terminal must not kill the watchdog before it has done its job.
            .process_group(0)
            .spawn()
            .with_context(|| format!("failed to start the watchdog shell for {name}"))?;
        let Some(pipe) = shell.stdin.take() else {
            let _ = shell.kill();
            let _ = shell.wait();
            bail!("the watchdog shell for {name} has no stdin pipe");
        };
        supervised.watchdog = Some(Watchdog { shell, _pipe: pipe });
        Ok(supervised)
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The name given at spawn time, for messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Freezes the child (SIGSTOP to its process group): it keeps its connections and its
    /// state but does nothing, as a process stuck in a long pause, until [`Supervised::thaw`]
    /// or a kill.
    pub fn freeze(&self) -> Result<()> {
        signal_group("STOP", self.child.id())
    }

    /// Lets a frozen child run again (SIGCONT).
    pub fn thaw(&self) -> Result<()> {
        signal_group("CONT", self.child.id())
    }

    /// [`Supervised::stop`], naming the server's log in the error: what it wrote explains why.
    pub(crate) fn stop_with_log(&mut self, log_path: &Path) -> Result<()> {
        let name = self.name.clone();
        self.stop()
            .with_context(|| format!("{name} log: {}", log_path.display()))
    }

    /// The child's exit status if it has exited, without blocking.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        self.child
            .try_wait()
            .with_context(|| format!("failed to check on {}", self.name))
    }

    /// Stops the child: SIGTERM, then SIGKILL if it is still running after the grace period.
    ///
    /// Fails if the child had already exited before this call (it crashed) or had to be killed.
    /// Calling it again afterwards does nothing.
    pub fn stop(&mut self) -> Result<()> {
        if self.stopped {
            return Ok(());
        }
        self.stopped = true;
        // Once reaped, its pid may belong to another process by now: never signal it.
        match self.try_wait() {
            Ok(None) => {}
            Ok(Some(status)) => {
                self.disarm_watchdog();
                bail!("{} had already exited ({status})", self.name);
            }
            Err(err) => {
                self.kill();
                return Err(err);
            }
        }
        // SIGTERM goes out while the watchdog is still armed, so there is no moment in which our
        // own death would leave the child running.
        let sent = signal_group("TERM", self.child.id());
        self.disarm_watchdog();
        if let Err(err) = sent {
            self.kill();
            return Err(err.context(format!("failed to stop {} gracefully", self.name)));
        }
        let deadline = Instant::now() + self.grace;
        while Instant::now() < deadline {
            match self.try_wait() {
                Ok(Some(_)) => return Ok(()),
                Ok(None) => thread::sleep(POLL),
                Err(err) => {
                    self.kill();
                    return Err(err);
                }
            }
        }
        self.kill();
        bail!(
            "{} did not exit within {:?} of SIGTERM and was killed",
            self.name,
            self.grace
        )
    }

    /// Kills the child at once, as a crash would (SIGKILL to its process group, so no shutdown
    /// code runs), and reaps it. Fault tests use it; [`stop`](Self::stop) uses it as the last
    /// resort, so failures have nowhere better to go. Calling it again does nothing.
    pub fn kill(&mut self) {
        self.stopped = true;
        self.disarm_watchdog();
        if let Ok(Some(_)) = self.child.try_wait() {
            // Already reaped: its pid may belong to another process by now.
            return;
        }
        // The group first, while the unreaped leader still pins its id.
        let _ = signal_group("KILL", self.child.id());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn disarm_watchdog(&mut self) {
        if let Some(mut watchdog) = self.watchdog.take() {
            // Killed before its pipe closes, so it never acts on a pid we are about to reap.
            let _ = watchdog.shell.kill();
            let _ = watchdog.shell.wait();
        }
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// Sends `signal` to the process group led by `pid` through the shell's `kill` builtin: std only
/// offers SIGKILL, and only to one process.
fn signal_group(signal: &str, pid: u32) -> Result<()> {
    let status = Command::new("sh")
        .args(["-c", r#"kill -"$1" -"$2""#, "sh", signal])
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("failed to run `kill`")?;
    if !status.success() {
        bail!("`kill -{signal} -{pid}` failed ({status})");
    }
    Ok(())
}

/// A name no other process or earlier call of ours uses: prefix, pid, counter and time.
pub(crate) fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos());
    format!("{prefix}-{}-{count}-{nanos}", std::process::id())
}

/// A directory removed (with its contents) on drop.
#[derive(Debug)]
pub(crate) struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// A fresh directory under the system temp dir.
    pub(crate) fn new(prefix: &str) -> Result<Self> {
        Self::new_in(&env::temp_dir(), prefix)
    }

    /// A fresh directory under `parent`.
    pub(crate) fn new_in(parent: &Path, prefix: &str) -> Result<Self> {
        let path = parent.join(unique_name(prefix));
        fs::create_dir_all(&path)
            .with_context(|| format!("failed to create {}", path.display()))?;
        Ok(Self { path })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// Where a server keeps its files: its directory (the one given, or a fresh temp one removed
/// when the server is dropped) and its log (the one given, or `log_name` inside the directory).
#[derive(Debug)]
pub(crate) struct ServerFiles {
    pub(crate) dir: PathBuf,
    pub(crate) log_path: PathBuf,
    temp_dir: Option<TempDir>,
}

impl ServerFiles {
    pub(crate) fn new(
        dir: Option<PathBuf>,
        log_path: Option<PathBuf>,
        temp_prefix: &str,
        log_name: &str,
    ) -> Result<Self> {
        let (dir, temp_dir) = match dir {
            Some(dir) => (dir, None),
            None => {
                let temp = TempDir::new(temp_prefix)?;
                (temp.path().to_path_buf(), Some(temp))
            }
        };
        fs::create_dir_all(&dir).with_context(|| format!("failed to create {}", dir.display()))?;
        let log_path = log_path.unwrap_or_else(|| dir.join(log_name));
        Ok(Self {
            dir,
            log_path,
            temp_dir,
        })
    }

    /// The temp directory the server's watchdog removes if this process dies first.
    pub(crate) fn cleanup_dir(&self) -> Option<&Path> {
        self.temp_dir.as_ref().map(TempDir::path)
    }
}

/// A server this crate started and its files, dropped in that order: the process stops before
/// a temp directory is removed. Fault tests halt (SIGTERM) or kill (SIGKILL) it through here.
#[derive(Debug)]
pub struct Running {
    process: Supervised,
    files: ServerFiles,
}

impl Running {
    pub(crate) fn new(process: Supervised, files: ServerFiles) -> Self {
        Self { process, files }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    pub(crate) fn files(&self) -> &ServerFiles {
        &self.files
    }

    /// Stops the server gracefully (SIGTERM, then SIGKILL after its grace period) but keeps its
    /// port and files, so that its `restart` brings the same server back: an outage. The error
    /// names its log. Calling it again does nothing.
    pub fn halt(&mut self) -> Result<()> {
        self.process.stop_with_log(&self.files.log_path)
    }

    /// Kills the server at once (SIGKILL), as a crash would; its port and files stay for its
    /// `restart`.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Freezes the server: it keeps its connections but answers nothing, until
    /// [`Running::thaw`] ([`Supervised::freeze`]).
    pub fn freeze(&self) -> Result<()> {
        self.process.freeze()
    }

    /// Lets a frozen server run again.
    pub fn thaw(&self) -> Result<()> {
        self.process.thaw()
    }

    /// Its exit status if it has exited (crashed or killed), without blocking.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        self.process.try_wait()
    }

    /// Gets it out of the way of a new start: halts it if it still runs, and only reaps it if
    /// it already died (a crash is what a restart is for, not an error).
    pub(crate) fn halt_or_reap(&mut self) -> Result<()> {
        if self.process.try_wait()?.is_some() {
            self.process.kill();
            return Ok(());
        }
        self.halt()
    }

    /// The process, for startup checks that watch it.
    pub(crate) fn process_mut(&mut self) -> &mut Supervised {
        &mut self.process
    }

    /// The process started again in place of the halted one.
    pub(crate) fn replace(&mut self, process: Supervised) {
        self.process = process;
    }
}

/// A port that was free a moment ago; callers retry if someone else takes it first.
fn free_port() -> Result<u16> {
    Ok(free_ports(1)?[0])
}

/// `count` different ports that were free a moment ago (held together while they are picked,
/// so none comes twice); callers retry if someone else takes one first.
pub(crate) fn free_ports(count: usize) -> Result<Vec<u16>> {
    let listeners = (0..count)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("failed to find a free port"))
        .collect::<Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|listener| Ok(listener.local_addr()?.port()))
        .collect()
}

/// Waits until something accepts TCP connections on 127.0.0.1:`port`, failing early if the child exits.
pub(crate) fn wait_for_port(process: &mut Supervised, port: u16, timeout: Duration) -> Result<()> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = process.try_wait()? {
            bail!("{} exited during startup ({status})", process.name());
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(250)).is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "{} did not listen on {addr} within {timeout:?}",
                process.name()
            );
        }
        thread::sleep(POLL);
    }
}

/// Opens a log file for appending, creating its directory, for use as a child's stdout/stderr.
pub(crate) fn open_log(path: &Path) -> Result<File> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)
            .with_context(|| format!("failed to create {}", parent.display()))?;
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("failed to open {}", path.display()))
}

/// Current length of a file, 0 if it does not exist: where this attempt's log lines start.
pub(crate) fn file_len(path: &Path) -> u64 {
    fs::metadata(path).map_or(0, |meta| meta.len())
}

/// What was written to `path` after byte `offset`, at most the last `max_bytes` of it.
pub(crate) fn log_since(path: &Path, offset: u64, max_bytes: u64) -> std::io::Result<String> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    file.seek(SeekFrom::Start(offset.max(len.saturating_sub(max_bytes))))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Whether a server's log since `offset` says its port was taken, which is worth a retry.
fn port_was_taken(log_path: &Path, offset: u64) -> bool {
    log_since(log_path, offset, 1024 * 1024)
        .is_ok_and(|text| text.to_ascii_lowercase().contains("address already in use"))
}

/// The warnings, errors and last lines written to `path` after byte `offset`, for error messages.
fn log_tail(path: &Path, offset: u64) -> String {
    const MAX_LINES: usize = 8;
    // mongod's JSON severity field, nats-server's level tags.
    const NOTABLE: [&str; 6] = [
        r#""s":"W""#,
        r#""s":"E""#,
        r#""s":"F""#,
        "[WRN]",
        "[ERR]",
        "[FTL]",
    ];
    let text = match log_since(path, offset, 256 * 1024) {
        Ok(text) => text,
        Err(err) => return format!("(cannot read {}: {err})", path.display()),
    };
    let last = |lines: Vec<&str>| lines[lines.len().saturating_sub(MAX_LINES)..].join("\n");
    let notable: Vec<&str> = text
        .lines()
        .filter(|line| NOTABLE.iter().any(|mark| line.contains(mark)))
        .collect();
    let mut tail = String::new();
    if !notable.is_empty() {
        tail = format!("warnings and errors:\n{}\n", last(notable));
    }
    tail + "last lines:\n" + &last(text.lines().collect())
}

/// Adds the server's recent log lines to a startup error.
pub(crate) fn with_log_tail(err: anyhow::Error, log_path: &Path, offset: u64) -> anyhow::Error {
    anyhow!(
        "{err:#}\nfrom {}:\n{}",
        log_path.display(),
        log_tail(log_path, offset)
    )
}

/// Spawns a server on the fixed port, or on a free port, tried up to three times when the
/// server reports that someone else took it between our check and its bind, then waits until
/// `ready`. Startup errors carry the tail of the log at `log_path`.
pub(crate) fn start_on_port(
    fixed_port: Option<u16>,
    log_path: &Path,
    mut spawn: impl FnMut(u16) -> Result<Supervised>,
    mut ready: impl FnMut(&mut Supervised, u16) -> Result<()>,
) -> Result<(Supervised, u16)> {
    const ATTEMPTS: u32 = 3;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let port = match fixed_port {
            Some(port) => port,
            None => free_port()?,
        };
        let offset = file_len(log_path);
        let mut process = spawn(port)?;
        let Err(err) = ready(&mut process, port) else {
            return Ok((process, port));
        };
        // Read before stopping it: the last lines should say why it is stuck, not how it shut down.
        let err = with_log_tail(err, log_path, offset);
        drop(process);
        let retry = fixed_port.is_none() && attempts < ATTEMPTS && port_was_taken(log_path, offset);
        if !retry {
            return Err(err);
        }
    }
}
