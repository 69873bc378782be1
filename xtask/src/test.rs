//! `cargo xtask test`: the checks CI runs, in order, stopping at the first failure: fmt, the
//! deployment check, clippy, the tests, then the API under newman and schemathesis.

use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;

use crate::cmd::timed;
use crate::{api, cmd};

/// Arguments of `cargo xtask test`.
#[derive(Args)]
pub(crate) struct TestArgs {
    /// Extra arguments for `cargo test --workspace`, e.g. `-- --no-fail-fast`, `-- -- --nocapture`,
    /// or `-- -p auth` (which replaces `--workspace`).
    #[arg(last = true)]
    cargo_test_args: Vec<String>,
}

impl TestArgs {
    /// Whether the extra arguments pick packages (`-p`, `--package`), up to a `--` for the harness.
    fn selects_packages(&self) -> bool {
        self.cargo_test_args
            .iter()
            .take_while(|arg| *arg != "--")
            .any(|arg| arg.starts_with("-p") || arg.starts_with("--package"))
    }
}

/// One check: a name for the report, the program (`None`: cargo) and its arguments.
struct Step {
    name: &'static str,
    program: Option<&'static str>,
    cargo_args: Vec<String>,
}

impl Step {
    fn new<'a>(name: &'static str, args: impl IntoIterator<Item = &'a str>) -> Self {
        Self {
            name,
            program: None,
            cargo_args: args.into_iter().map(str::to_owned).collect(),
        }
    }

    fn program<'a>(
        name: &'static str,
        program: &'static str,
        args: impl IntoIterator<Item = &'a str>,
    ) -> Self {
        Self {
            program: Some(program),
            ..Self::new(name, args)
        }
    }
}

/// The checks, in the order they run: cheap ones first so failures come fast.
fn steps(args: &TestArgs) -> Vec<Step> {
    let mut test = Step::new("test", ["test"]);
    // cargo ignores `-p` next to `--workspace`, so a package selection replaces it.
    if !args.selects_packages() {
        test.cargo_args.push("--workspace".into());
    }
    test.cargo_args.extend(args.cargo_test_args.iter().cloned());
    vec![
        Step::new("fmt", ["fmt", "--all", "--", "--check"]),
        // Kubernetes manifests, skaffold and compose against the schemas and the code.
        Step::program("deploy-check", "python3", ["infra/check.py"]),
        Step::new(
            "clippy",
            [
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ],
        ),
        test,
    ]
}

/// How long one test binary may run (`XTASK_TEST_BINARY_TIMEOUT_SECONDS`, default 900): the
/// slowest, the whole-stack e2e binary, takes about 3 minutes on 2 cores.
fn binary_timeout() -> Result<Duration> {
    let seconds = match std::env::var_os("XTASK_TEST_BINARY_TIMEOUT_SECONDS") {
        Some(value) => {
            let value = value.to_string_lossy();
            value
                .parse()
                .map_err(|e| anyhow::anyhow!("XTASK_TEST_BINARY_TIMEOUT_SECONDS={value:?}: {e}"))?
        }
        None => 900,
    };
    Ok(Duration::from_secs(seconds))
}

pub(crate) fn run(args: &TestArgs) -> Result<()> {
    let root = devenv::workspace_root();
    // Provisioned up front so tests neither race to download nor count it in their timeouts.
    devenv::ensure_tools(&root)?;
    // The client's tests drive Debian's chromium.
    devenv::ensure_browser()?;
    let tools_dir = devenv::bin_dir(&root);

    let total = Instant::now();
    for step in steps(args) {
        let mut command = match step.program {
            Some(program) => {
                let mut command = std::process::Command::new(program);
                command.current_dir(&root);
                command
            }
            None => cmd::cargo(&root),
        };
        command
            .args(&step.cargo_args)
            .env(devenv::TOOLS_DIR_ENV, &tools_dir);
        timed(step.name, || {
            if step.name == "test" {
                crate::watchdog::run_tests(&mut command, binary_timeout()?)
            } else {
                cmd::run(&mut command)
            }
        })?;
    }
    // The API as users' tools see it, on the whole stack, with the binary the tests built
    // (`cargo build -p ticketing` would rebuild it with other features): only when the whole
    // workspace was tested.
    if !args.selects_packages() {
        let exe = api::ticketing_exe(&root, &["test", "--workspace", "--no-run"])?;
        api::run(&root, &exe)?;
    }
    eprintln!(
        "==> all steps passed in {:.1}s",
        total.elapsed().as_secs_f64()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_step_args(extra: &[&str]) -> Vec<String> {
        let args = TestArgs {
            cargo_test_args: extra.iter().map(|arg| (*arg).to_owned()).collect(),
        };
        steps(&args)
            .pop()
            .map(|step| step.cargo_args)
            .unwrap_or_default()
    }

    #[test]
    fn extra_args_go_to_cargo_test_and_packages_replace_the_workspace() {
        assert_eq!(test_step_args(&[]), ["test", "--workspace"]);
        assert_eq!(
            test_step_args(&["--", "--nocapture"]),
            ["test", "--workspace", "--", "--nocapture"]
        );
        assert_eq!(test_step_args(&["-p", "auth"]), ["test", "-p", "auth"]);
        assert_eq!(
            test_step_args(&["--package=auth"]),
            ["test", "--package=auth"]
        );
        // After `--` the arguments are the test harness's: a `-p` there selects nothing.
        assert_eq!(
            test_step_args(&["--", "-p"]),
            ["test", "--workspace", "--", "-p"]
        );
    }
}
