//! What the operator commands share as API clients: signing up a throwaway user.

use anyhow::{Context as _, bail};
use serde_json::json;

/// Signs up a fresh user at `base` and returns its `session=…` cookie.
pub(crate) async fn signup(
    http: &reqwest::Client,
    base: &str,
    purpose: &str,
) -> anyhow::Result<String> {
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
