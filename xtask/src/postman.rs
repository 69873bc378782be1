//! `cargo xtask postman`: regenerates `postman/` (the collection and its environments) from
//! the services' OpenAPI documents.
//!
//! The generator lives in the launcher (`ticketing postman`), the one crate allowed to depend
//! on every service; building it into xtask would make every `cargo xtask` command compile the
//! services first, with a feature set of its own.

use anyhow::Result;

use crate::cmd;

/// Runs `ticketing postman` from the workspace root.
pub(crate) fn run() -> Result<()> {
    let root = devenv::workspace_root();
    cmd::run(
        cmd::cargo(&root)
            .args(["run", "--quiet", "--package", "ticketing", "--", "postman"])
            .arg("--out")
            .arg(root.join("postman")),
    )
}
