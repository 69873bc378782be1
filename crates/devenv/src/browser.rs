//! Debian's chromedriver (which drives Debian's chromium) for the browser tests, supervised
//! like the servers so no browser outlives the test binary.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::process::{Supervised, TempDir, open_log, start_on_port, wait_for_port};

/// Where Debian's `chromium` and `chromium-driver` packages put their executables.
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// See [`CHROMIUM`].
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

const LISTEN_TIMEOUT: Duration = Duration::from_secs(20);
const STOP_GRACE: Duration = Duration::from_secs(5);

/// A running chromedriver on loopback.
#[derive(Debug)]
pub struct ChromeDriver {
    /// `http://127.0.0.1:PORT`, the WebDriver endpoint.
    pub url: String,
    /// chromedriver's own log.
    pub log_path: PathBuf,
    _process: Supervised,
    temp_dir: TempDir,
}

/// The arguments chromium runs with under test: headless, and quiet on a machine with no
/// outside network (background networking would fail, noisily and slowly).
pub fn chromium_args(profile_dir: &Path) -> Vec<String> {
    [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--hide-scrollbars",
        "--force-color-profile=srgb",
    ]
    .iter()
    .map(|arg| (*arg).to_owned())
    .chain([format!("--user-data-dir={}", profile_dir.display())])
    .collect()
}

/// Whether Debian's chromium and chromedriver are installed.
pub fn browser_installed() -> bool {
    Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists()
}

/// Starts chromedriver on a free port. Fails, naming the packages, when they are missing
/// (`cargo xtask test` installs them).
pub fn start_chromedriver() -> Result<ChromeDriver> {
    if !browser_installed() {
        bail!(
            "{CHROMIUM} and {CHROMEDRIVER} are needed for the browser tests: \
             `cargo xtask test` installs them (apt-get install chromium chromium-driver)"
        );
    }
    let temp_dir = TempDir::new("ticketing-chromedriver")?;
    let log_path = temp_dir.path().join("chromedriver.log");
    let spawn = |port: u16| {
        let log = open_log(&log_path)?;
        let mut cmd = Command::new(CHROMEDRIVER);
        cmd.arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log_path.display()))
            .stdout(log.try_clone()?)
            .stderr(log);
        Supervised::spawn("chromedriver", cmd, STOP_GRACE)
    };
    let ready = |process: &mut Supervised, port| wait_for_port(process, port, LISTEN_TIMEOUT);
    let (process, port) =
        start_on_port(None, &log_path, spawn, ready).context("failed to start chromedriver")?;
    Ok(ChromeDriver {
        url: format!("http://127.0.0.1:{port}"),
        log_path,
        _process: process,
        temp_dir,
    })
}

impl ChromeDriver {
    /// A fresh, empty chromium profile directory for one session, removed with the driver.
    pub fn profile_dir(&self, name: &str) -> Result<PathBuf> {
        let dir = self.temp_dir.path().join(format!("profile-{name}"));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("failed to create {}", dir.display()))?;
        Ok(dir)
    }
}

/// Installs Debian's chromium and chromium-driver when they are missing (with sudo unless
/// root), so the browser tests find them; does nothing when they are there.
pub fn ensure_browser() -> Result<()> {
    if browser_installed() {
        return Ok(());
    }
    eprintln!("installing chromium and chromium-driver from Debian's packages");
    apt_install(&["chromium", "chromium-driver"])?;
    if !browser_installed() {
        bail!("apt-get installed chromium but {CHROMIUM} or {CHROMEDRIVER} is still missing");
    }
    Ok(())
}

/// Installs Debian's `packages` (with sudo unless root), after refreshing the package lists.
pub fn apt_install(packages: &[&str]) -> Result<()> {
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0");
    let apt = |args: &[&str]| -> Result<()> {
        let mut cmd = if is_root {
            Command::new("apt-get")
        } else {
            let mut sudo = Command::new("sudo");
            sudo.arg("apt-get");
            sudo
        };
        let status = cmd
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .context("run apt-get")?;
        if !status.success() {
            bail!("apt-get {} failed ({status})", args.join(" "));
        }
        Ok(())
    };
    apt(&["update", "-qq"])?;
    apt(&[&["install", "-y", "-qq"], packages].concat())
}
