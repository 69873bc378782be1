//! What the lab's commands and the launcher's `concurrency-test` share as clients: signing up
//! a throwaway user, shutting a MongoDB client down.

use anyhow::{Context as _, bail};
use serde_json::json;

/// Shuts a MongoDB client down when a command is done with it. Dropped instead, the driver
/// ends the client's sessions on a task of its own, which panics when the command exits right
/// after and the runtime stops under it.
pub async fn shut_down(client: &mongodb::Client) {
    client.clone().shutdown().immediate(true).await;
}

/// Signs up a fresh user at `base` and returns its `session=…` cookie.
pub async fn signup(http: &reqwest::Client, base: &str, purpose: &str) -> anyhow::Result<String> {
    let email = format!(
        "{purpose}-{}@test.dev",
        mongodb::bson::oid::ObjectId::new().to_hex()
    );
    let signup = http
        .post(format!("{base}/api/users/signup"))
        .json(&json!({"email": email, "password": "password"}))
        .send()
        .await
        .with_context(|| format!("sign up at {base}"))?;
    if !signup.status().is_success() {
        bail!("signup failed: {}", signup.status());
    }
    Ok(signup
        .headers()
        .get(reqwest::header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .context("signup set no session cookie")?
        .to_owned())
}
