//! The checks that call a running marketplace the way users' tools do (`cargo xtask api`, and
//! the last steps of `cargo xtask test`): the Postman collection under newman, and
//! schemathesis over the four OpenAPI documents with the committed `schemathesis.toml`, on a
//! stack of their own. Each tool is installed under `.tools/` on first use, at the version
//! pinned here.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

use crate::cmd::{self, timed};
use crate::stack::Stack;

/// newman, from the npm registry, into `.tools/newman`.
const NEWMAN: &str = "newman@6.2.2";
/// schemathesis, from PyPI, into the virtual environment `.tools/schemathesis`.
const SCHEMATHESIS: &str = "schemathesis==4.32.5";
/// The services' documents, as the stack serves them.
const DOCUMENTS: [&str; 4] = [
    "/api/users/openapi.json",
    "/api/tickets/openapi.json",
    "/api/orders/openapi.json",
    "/api/payments/openapi.json",
];

/// Starts a stack running `exe` (`ticketing`), then runs newman and schemathesis against it;
/// their reports and the stack's log go to `.data/api-checks/`.
pub(crate) fn run(root: &Path, exe: &Path) -> Result<()> {
    let reports = root.join(".data").join("api-checks");
    std::fs::create_dir_all(&reports).with_context(|| format!("create {}", reports.display()))?;
    let log = reports.join("ticketing.log");
    let stack = timed("stack", || Stack::start(root, exe, &log))?;
    let checks = timed("newman", || newman(root, &stack.url, &reports))
        .and_then(|()| timed("schemathesis", || schemathesis(root, &stack.url, &reports)));
    checks.with_context(|| {
        format!(
            "reports in {}, ticketing's log {}",
            reports.display(),
            log.display()
        )
    })
}

/// The `ticketing` binary that `cargo <args> --message-format=json…` builds (or finds built).
pub(crate) fn ticketing_exe(root: &Path, args: &[&str]) -> Result<PathBuf> {
    let stdout = cmd::output(
        cmd::cargo(root)
            .args(args)
            .arg("--message-format=json-render-diagnostics"),
    )?;
    built_binary(&stdout).context("cargo built no `ticketing` binary")
}

/// The `ticketing` binary among cargo's JSON messages.
fn built_binary(stdout: &[u8]) -> Option<PathBuf> {
    stdout
        .split(|b| *b == b'\n')
        .filter_map(|line| serde_json::from_slice::<Value>(line).ok())
        .find(|message| {
            message["reason"] == "compiler-artifact"
                && message["target"]["name"] == "ticketing"
                && message["target"]["kind"]
                    .as_array()
                    .is_some_and(|kinds| kinds.iter().any(|kind| kind == "bin"))
                // `cargo test` also builds the binary's own test harness, under the same name.
                && message["profile"]["test"] == false
        })
        .and_then(|message| message["executable"].as_str().map(PathBuf::from))
}

/// Runs the collection against `url`: fails when any assertion does, or on no assertion at all.
fn newman(root: &Path, url: &str, reports: &Path) -> Result<()> {
    let newman = ensure_newman(root)?;
    let report = reports.join("newman.json");
    let postman = root.join("postman");
    cmd::run(
        Command::new(newman)
            .arg("run")
            .arg(postman.join("ticketing.postman_collection.json"))
            .arg("--environment")
            .arg(postman.join("ticketing-local.postman_environment.json"))
            .args(["--env-var", &format!("baseUrl={url}")])
            .args(["--reporters", "cli,json", "--reporter-json-export"])
            .arg(&report)
            .args(["--color", "off", "--disable-unicode"]),
    )?;
    let summary: Value = serde_json::from_slice(
        &std::fs::read(&report).with_context(|| format!("read {}", report.display()))?,
    )
    .context("parse newman's report")?;
    let stats = &summary["run"]["stats"];
    let count = |what: &str, key: &str| stats[what][key].as_u64().unwrap_or_default();
    let assertions = count("assertions", "total");
    eprintln!(
        "newman: {} requests, {assertions} assertions, {} failed",
        count("requests", "total"),
        count("assertions", "failed")
    );
    if assertions == 0 {
        bail!("newman ran no assertion ({})", report.display());
    }
    Ok(())
}

/// Runs schemathesis over each document of the stack at `url`, all of them even when one fails.
fn schemathesis(root: &Path, url: &str, reports: &Path) -> Result<()> {
    let st = ensure_schemathesis(root)?;
    let mut failed = Vec::new();
    for document in DOCUMENTS {
        let name = document
            .trim_start_matches("/api/")
            .trim_end_matches("/openapi.json");
        // `schemathesis.toml` at the root holds the settings; a report per document.
        let run = cmd::run(
            Command::new(&st)
                .current_dir(root)
                .arg("run")
                .arg(format!("{url}{document}"))
                .args(["--url", url, "--report", "junit", "--report-junit-path"])
                .arg(reports.join(format!("schemathesis-{name}.xml"))),
        );
        if let Err(err) = run {
            eprintln!("schemathesis: {document}: {err:#}");
            failed.push(document);
        }
    }
    if !failed.is_empty() {
        bail!("schemathesis found failures in {}", failed.join(", "));
    }
    Ok(())
}

/// newman's executable, installed with npm (itself from Debian's packages when missing).
fn ensure_newman(root: &Path) -> Result<PathBuf> {
    let dir = root.join(".tools").join("newman");
    let bin = dir.join("node_modules").join(".bin").join("newman");
    if is_installed(&dir, NEWMAN, &bin) {
        return Ok(bin);
    }
    if Command::new("npm").arg("--version").output().is_err() {
        eprintln!("installing npm (and node) from Debian's packages, for newman");
        devenv::apt_install(&["npm"])?;
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    cmd::run(
        Command::new("npm")
            .args([
                "install",
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
                "--prefix",
            ])
            .arg(&dir)
            .arg(NEWMAN),
    )?;
    installed(&dir, NEWMAN, &bin)
}

/// schemathesis' `st`, installed with pip in a virtual environment of its own.
fn ensure_schemathesis(root: &Path) -> Result<PathBuf> {
    let dir = root.join(".tools").join("schemathesis");
    let bin = dir.join("bin").join("st");
    if is_installed(&dir, SCHEMATHESIS, &bin) {
        return Ok(bin);
    }
    let _ = std::fs::remove_dir_all(&dir);
    let venv = || cmd::run(Command::new("python3").args(["-m", "venv"]).arg(&dir));
    if venv().is_err() {
        // Debian's Python makes virtual environments only with python3-venv.
        eprintln!("installing python3-venv from Debian's packages, for schemathesis");
        devenv::apt_install(&["python3-venv"])?;
        venv()?;
    }
    cmd::run(
        Command::new(dir.join("bin").join("pip"))
            .args(["install", "--quiet", "--disable-pip-version-check"])
            .arg(SCHEMATHESIS),
    )?;
    installed(&dir, SCHEMATHESIS, &bin)
}

/// The file in a tool's directory that records which version is installed there.
fn stamp(dir: &Path) -> PathBuf {
    dir.join("installed-version")
}

fn is_installed(dir: &Path, version: &str, bin: &Path) -> bool {
    bin.is_file() && std::fs::read_to_string(stamp(dir)).is_ok_and(|v| v == version)
}

/// Records that `version` is installed in `dir`, once `bin` is there.
fn installed(dir: &Path, version: &str, bin: &Path) -> Result<PathBuf> {
    if !bin.is_file() {
        bail!("{version} installed, but {} is missing", bin.display());
    }
    std::fs::write(stamp(dir), version).with_context(|| format!("write {}", dir.display()))?;
    Ok(bin.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_binary_is_found_and_not_its_test_harness() {
        let artifact = |kind: &str, test: bool, exe: &str| {
            serde_json::json!({
                "reason": "compiler-artifact",
                "target": {"name": "ticketing", "kind": [kind]},
                "profile": {"test": test},
                "executable": exe,
            })
            .to_string()
        };
        let stdout = [
            artifact("lib", true, "deps/ticketing-lib"),
            artifact("bin", true, "deps/ticketing-harness"),
            artifact("bin", false, "debug/ticketing"),
        ]
        .join("\n");
        assert_eq!(
            built_binary(stdout.as_bytes()),
            Some(PathBuf::from("debug/ticketing"))
        );
    }
}
