//! `ticketing up` refuses session keys anyone could know: a short one always, a published
//! development one wherever cookies are `Secure` — before it connects to anything.

use std::process::{Command, Stdio};
use std::time::Duration;

use common::session::DEVELOPMENT_KEYS;
use test_support::WAIT;

/// Runs `ticketing up` on a free port with `env` and returns its exit status and stderr,
/// failing if it is still running after [`WAIT`] (it must refuse at once).
fn up_with(env: &[(&str, &str)]) -> (std::process::ExitStatus, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ticketing"));
    command
        .args(["up", "--port", "0"])
        // Nothing listens there: a launcher that got past its configuration would fail later,
        // and differently.
        .env(
            "MONGO_URL",
            "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=100",
        )
        .env("NATS_URL", "nats://127.0.0.1:1")
        .env_remove("JWT_KEY")
        .env_remove("COOKIE_SECURE")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("ticketing up with {env:?} did not refuse to start");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    (status, stderr)
}

#[test]
fn a_short_key_is_refused_naming_jwt_key() {
    let (status, stderr) = up_with(&[("JWT_KEY", "0123456789abcdef"), ("COOKIE_SECURE", "false")]);
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains("JWT_KEY") && stderr.contains("32 bytes"),
        "{stderr}"
    );
}

#[test]
fn a_development_key_is_refused_with_secure_cookies() {
    for env in [
        vec![("JWT_KEY", DEVELOPMENT_KEYS[0]), ("COOKIE_SECURE", "true")],
        // Unset, the launcher takes the development key itself; Secure is the default.
        vec![],
    ] {
        let (status, stderr) = up_with(&env);
        assert!(!status.success(), "{env:?}: {stderr}");
        assert!(
            stderr.contains("JWT_KEY") && stderr.contains("development key"),
            "{env:?}: {stderr}"
        );
    }
}
