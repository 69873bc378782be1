//! `cargo xtask postman`: the Postman collection and its environments, generated from the
//! public services' OpenAPI documents and the steps of `flow.rs` and `errors.rs` (each with its
//! test script), and committed under `postman/`.
//!
//! The documents come from `ticketing openapi`, run as a child cargo: building the services into
//! xtask would make every `cargo xtask` command compile them first. The output is deterministic
//! — the documents' order, ids derived from names, pretty JSON — so a stale committed file
//! shows up as a diff (a test fails on one).

mod collection;
mod environment;
mod errors;
mod example;
mod flow;
mod id;
mod step;
#[cfg(test)]
mod tests;

use std::path::Path;

use anyhow::{Context as _, Result, ensure};
use serde_json::{Map, Value};

use self::collection::collection;
use self::environment::{ENVIRONMENTS, environment};
use crate::cmd;

/// Where the files live, relative to the workspace root.
const DIR: &str = "postman";

/// The collection's file name.
const COLLECTION_FILE: &str = "ticketing.postman_collection.json";

/// Arguments of `cargo xtask postman`.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// Writes nothing; fails naming the files that differ from what would be written.
    #[arg(long)]
    check: bool,
}

/// Runs `cargo xtask postman`: writes the files, or with `--check` fails on stale ones.
pub(crate) fn run(args: &Args) -> Result<()> {
    let root = devenv::workspace_root();
    let documents = documents(&root)?;
    let dir = root.join(DIR);
    if args.check {
        let stale = stale(&dir, &documents)?;
        ensure!(
            stale.is_empty(),
            "stale in {}: {}; run `cargo xtask postman`",
            dir.display(),
            stale.join(", ")
        );
        return Ok(());
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    for (name, content) in files(&documents)? {
        let path = dir.join(name);
        std::fs::write(&path, content).with_context(|| format!("write {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// The public services' documents as `ticketing openapi` prints them, by service in order.
fn documents(root: &Path) -> Result<Map<String, Value>> {
    let stdout = cmd::output(cmd::cargo(root).args([
        "run",
        "--quiet",
        "--package",
        "ticketing",
        "--",
        "openapi",
    ]))?;
    serde_json::from_slice(&stdout).context("parse the output of `ticketing openapi`")
}

/// The files to write: name and content (pretty JSON with a final newline).
fn files(documents: &Map<String, Value>) -> Result<Vec<(String, String)>> {
    let mut files = vec![(COLLECTION_FILE.to_owned(), render(&collection(documents)?)?)];
    for (file, name, base_url) in ENVIRONMENTS {
        files.push((file.to_owned(), render(&environment(name, base_url))?));
    }
    Ok(files)
}

fn render(value: &Value) -> Result<String> {
    Ok(serde_json::to_string_pretty(value)? + "\n")
}

/// The files under `dir` that are missing or differ from [`files`].
fn stale(dir: &Path, documents: &Map<String, Value>) -> Result<Vec<String>> {
    Ok(files(documents)?
        .into_iter()
        .filter(|(name, content)| {
            std::fs::read_to_string(dir.join(name)).ok().as_ref() != Some(content)
        })
        .map(|(name, _)| name)
        .collect())
}
