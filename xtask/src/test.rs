//! `cargo xtask test`: the checks CI runs, in order, stopping at the first failure.

use std::time::Instant;

use anyhow::{Result, bail};
use clap::Args;

use crate::cmd;

/// Arguments of `cargo xtask test`.
#[derive(Args)]
pub(crate) struct TestArgs {
    /// Extra arguments for `cargo test --workspace`, e.g. `-- --no-fail-fast` or `-- -- --nocapture`.
    #[arg(last = true)]
    cargo_test_args: Vec<String>,
}

/// One check: a name for the report and the cargo arguments that run it.
struct Step {
    name: &'static str,
    cargo_args: Vec<String>,
}

impl Step {
    fn new<'a>(name: &'static str, args: impl IntoIterator<Item = &'a str>) -> Self {
        Self {
            name,
            cargo_args: args.into_iter().map(str::to_owned).collect(),
        }
    }
}

/// The checks, in the order they run: cheap ones first so failures come fast.
fn steps(args: &TestArgs) -> Vec<Step> {
    let mut test = Step::new("test", ["test", "--workspace"]);
    test.cargo_args.extend(args.cargo_test_args.iter().cloned());
    vec![
        Step::new("fmt", ["fmt", "--all", "--", "--check"]),
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

pub(crate) fn run(args: &TestArgs) -> Result<()> {
    let root = devenv::workspace_root();
    // Provisioned up front so tests neither race to download nor count it in their timeouts.
    devenv::ensure_tools(&root)?;
    let tools_dir = devenv::bin_dir(&root);

    let total = Instant::now();
    for step in steps(args) {
        eprintln!("==> {}", step.name);
        let started = Instant::now();
        let result = cmd::run(
            cmd::cargo(&root)
                .args(&step.cargo_args)
                .env(devenv::TOOLS_DIR_ENV, &tools_dir),
        );
        let secs = started.elapsed().as_secs_f64();
        if let Err(err) = result {
            bail!("step `{}` failed after {secs:.1}s: {err:#}", step.name);
        }
        eprintln!("==> {} passed in {secs:.1}s", step.name);
    }
    eprintln!(
        "==> all steps passed in {:.1}s",
        total.elapsed().as_secs_f64()
    );
    Ok(())
}
