//! Running cargo and other commands with the command line shown and failures named.

use std::env;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

/// The cargo that runs us (`$CARGO`), so toolchain overrides carry over, in the workspace root.
///
/// Without the variables `cargo run` gave xtask about itself: ring's build script declares
/// `rerun-if-env-changed` on `CARGO_PKG_NAME`, `CARGO_MANIFEST_DIR`…, so a child cargo that
/// inherits xtask's values rebuilds ring and everything above it, and the next plain `cargo`
/// rebuilds it all again.
pub(crate) fn cargo(root: &Path) -> Command {
    let mut cmd = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(root);
    for (name, _) in env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        let about_xtask = name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_MANIFEST_")
            || matches!(
                name,
                "CARGO_CRATE_NAME" | "CARGO_BIN_NAME" | "CARGO_PRIMARY_PACKAGE" | "OUT_DIR"
            );
        if about_xtask {
            cmd.env_remove(name);
        }
    }
    cmd
}

/// Runs `cmd` to completion with inherited stdio, failing unless it exits successfully.
pub(crate) fn run(cmd: &mut Command) -> Result<()> {
    let line = announce(cmd);
    let status = cmd
        .status()
        .with_context(|| format!("failed to run `{line}`"))?;
    succeeded(&line, status)
}

/// Runs `cmd` to completion and returns what it wrote on stdout (stderr stays the terminal's),
/// failing unless it exits successfully.
pub(crate) fn output(cmd: &mut Command) -> Result<Vec<u8>> {
    let line = announce(cmd);
    let output = cmd
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("failed to run `{line}`"))?;
    succeeded(&line, output.status)?;
    Ok(output.stdout)
}

/// Runs one step of a command between its announcement and its outcome, with the time it took.
pub(crate) fn timed<T>(name: &str, step: impl FnOnce() -> Result<T>) -> Result<T> {
    eprintln!("==> {name}");
    let started = Instant::now();
    let result = step();
    let secs = started.elapsed().as_secs_f64();
    match result {
        Ok(value) => {
            eprintln!("==> {name} passed in {secs:.1}s");
            Ok(value)
        }
        Err(err) => bail!("step `{name}` failed after {secs:.1}s: {err:#}"),
    }
}

/// Shows the command line about to run, and returns it.
pub(crate) fn announce(cmd: &Command) -> String {
    let line = display(cmd);
    eprintln!("$ {line}");
    line
}

fn succeeded(line: &str, status: ExitStatus) -> Result<()> {
    if !status.success() {
        bail!("`{line}` failed ({status})");
    }
    Ok(())
}

fn display(cmd: &Command) -> String {
    let program = Path::new(cmd.get_program())
        .file_name()
        .unwrap_or(cmd.get_program())
        .to_string_lossy()
        .into_owned();
    std::iter::once(program)
        .chain(cmd.get_args().map(|arg| arg.to_string_lossy().into_owned()))
        .collect::<Vec<_>>()
        .join(" ")
}
