//! The `bare-handler` limit: auth's currentuser handler on plain axum, without the stack's
//! layers, served by `ticketing bare-handler` in a process of its own (as the stack is one),
//! and loaded like the currentuser scenario.
//!
//! A process of its own, not a server inside the bench: sharing the load generator's runtime
//! and threads slowed the handler more than the stack, so the bench's fraction said more than
//! another load generator's (`docs/performance.md`).

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};
use axum::routing::get;
use axum::{Json, Router};
use common::MaybeCurrentUser;
use common::metrics::names::PROCESS_CPU;
use common::session::{SessionConfig, Sessions};
use hyper::header::HeaderValue;
use indicatif::ProgressBar;
use mongodb::bson::oid::ObjectId;
use serde_json::json;

use super::cost::{self, CostProbe};
use super::http::{Conn, Target};
use super::load::{Timing, closed_loop};
use super::report::Row;
use super::scenarios::{HttpWorker, Plan};

/// Name of the bare-handler limit.
pub(crate) const BARE_HANDLER: &str = "bare-handler";
/// The first line the server prints: its address follows.
const SERVING: &str = "bare handler on http://";
/// The second line: the cookie follows.
const COOKIE: &str = "Cookie: ";
/// How long the process may take to say where it serves (a busy machine).
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Auth's currentuser handler, without the stack's layers (request id, tracing, security
/// headers, CORS, body limit): the cookie read, the JWT verified, the JSON written.
async fn current_user(MaybeCurrentUser(claims): MaybeCurrentUser) -> Json<serde_json::Value> {
    let current = claims.map(|c| json!({"id": c.id, "email": c.email, "iat": c.iat}));
    Json(json!({ "currentUser": current }))
}

/// The process's CPU seconds, as the stack's `/metrics` says them, so that the bench reads the
/// cost per request of both the same way.
async fn cpu_seconds() -> String {
    match common::metrics::process_cpu_seconds() {
        Some(seconds) => format!("{PROCESS_CPU} {seconds}\n"),
        None => String::new(),
    }
}

/// That handler's router, and a cookie it accepts (signed by a key of its own).
fn router() -> anyhow::Result<(Router, HeaderValue)> {
    let sessions = Sessions::new(&SessionConfig {
        jwt_key: format!("bench-{}", ObjectId::new().to_hex()),
        ttl: Duration::from_secs(3600),
        cookie_secure: false,
    });
    let (token, _) = sessions.issue(&ObjectId::new().to_hex(), "bench@test.dev")?;
    let cookie = HeaderValue::from_str(&format!("session={token}"))?;
    let router = Router::new()
        .route("/api/users/currentuser", get(current_user))
        .with_state(sessions)
        .route(common::metrics::PATH, get(cpu_seconds));
    Ok((router, cookie))
}

/// Serves the bare handler on `listen` until Ctrl-C (or, with `until_stdin_closes`, until its
/// standard input ends: the bench's end of a pipe, closed even when the bench is killed); prints
/// its address and the cookie it accepts first.
pub async fn serve_bare_handler(
    listen: SocketAddr,
    until_stdin_closes: bool,
) -> anyhow::Result<()> {
    let (router, cookie) = router()?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("bind {listen}"))?;
    println!(
        "{SERVING}{}/api/users/currentuser\n{COOKIE}{}",
        listener.local_addr()?,
        cookie.to_str()?
    );
    let (closed, stdin_closed) = tokio::sync::oneshot::channel::<()>();
    if until_stdin_closes {
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
            let _ = closed.send(());
        });
    }
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                Ok(()) = stdin_closed => {}
            }
        })
        .await
        .context("serve the bare handler")
}

/// A child process, stopped when dropped.
struct Running {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Drop for Running {
    fn drop(&mut self) {
        // Stopped at once here; the pipe on its stdin is what stops it when the bench dies
        // without running this.
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `bare-handler` process and where it serves.
struct Process {
    _running: Running,
    target: Target,
    cookie: HeaderValue,
}

impl Process {
    /// Starts `exe bare-handler` on a free loopback port and reads where it serves, waiting
    /// at most [`START_TIMEOUT`].
    async fn start(exe: &Path) -> anyhow::Result<Self> {
        let mut child = Command::new(exe)
            .args([
                "bare-handler",
                "--listen",
                "127.0.0.1:0",
                "--until-stdin-closes",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("start {} bare-handler", exe.display()))?;
        let stdout = child.stdout.take();
        let running = Running {
            stdin: child.stdin.take(),
            child,
        };
        let stdout = stdout.context("the bare handler's output")?;
        // Blocking reads, off the runtime; a process that never prints is stopped by the
        // guard's drop, which ends the read.
        let read = tokio::task::spawn_blocking(move || {
            let mut lines = BufReader::new(stdout).lines();
            let mut next = || -> anyhow::Result<String> {
                Ok(lines
                    .next()
                    .context("the bare handler ended before it served")??)
            };
            Ok::<_, anyhow::Error>((next()?, next()?))
        });
        let (address, cookie) = tokio::time::timeout(START_TIMEOUT, read)
            .await
            .context("the bare handler printed nothing in time")???;
        let (Some(address), Some(cookie)) =
            (address.strip_prefix(SERVING), cookie.strip_prefix(COOKIE))
        else {
            bail!("the bare handler printed {address:?} and {cookie:?}");
        };
        let address: SocketAddr = address
            .split('/')
            .next()
            .unwrap_or_default()
            .parse()
            .with_context(|| format!("the bare handler's address {address:?}"))?;
        Ok(Self {
            _running: running,
            target: Target::local(address)?,
            cookie: HeaderValue::from_str(cookie)?,
        })
    }
}

/// `bare-handler`: the handler served by `exe` (the `ticketing` binary), loaded like the
/// currentuser scenario; its row carries the process's CPU time per request.
pub(crate) async fn limit(
    exe: &Path,
    clients: usize,
    timing: Timing,
    bar: &ProgressBar,
) -> anyhow::Result<Row> {
    let process = Process::start(exe).await?;
    let probe = CostProbe::new(&process.target, None).await?;
    // The process answers as soon as it printed its address; a first call shows it.
    Conn::new(process.target.clone())
        .call(
            hyper::Method::GET,
            "/api/users/currentuser",
            Some(&process.cookie),
            None,
        )
        .await
        .context("the bare handler does not answer")?;
    let workers = (0..clients)
        .map(|_| {
            HttpWorker::new(
                Conn::new(process.target.clone()),
                Plan::CurrentUser(process.cookie.clone()),
            )
        })
        .collect();
    let start = std::time::Instant::now() + timing.warmup;
    let (measured, window) = tokio::join!(
        closed_loop(workers, timing, bar),
        probe.window(start, start + timing.duration)
    );
    let mut row = Row::new(BARE_HANDLER, &measured);
    cost::charge(&mut row, window);
    Ok(row)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_program_that_does_not_say_where_it_serves_is_refused() {
        // `echo` prints one line and ends, `true` prints nothing and ends.
        for program in ["echo", "true"] {
            let refused = Process::start(Path::new(program)).await.err();
            let message = refused.map(|e| format!("{e:#}")).unwrap_or_default();
            assert!(
                message.contains("ended before it served"),
                "{program}: {message}"
            );
        }
    }
}
