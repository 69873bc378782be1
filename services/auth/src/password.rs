//! Password hashing with argon2id, off the async threads and with bounded concurrency.

use std::sync::Arc;

use anyhow::Context as _;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

/// OWASP's minimum for argon2id: 19 MiB of memory, 2 passes, 1 lane.
const MEMORY_KIB: u32 = 19 * 1024;
const PASSES: u32 = 2;
const LANES: u32 = 1;

/// Hashes and verifies passwords. Each hash costs ~19 MiB and tens of milliseconds of CPU, so
/// at most a few run at once: a burst of sign-ins queues instead of exhausting memory.
#[derive(Clone)]
pub(crate) struct PasswordHasher {
    argon2: Argon2<'static>,
    permits: Arc<Semaphore>,
    /// Verified against when the email is unknown, so that an unknown email costs as much
    /// time as a wrong password and timing does not reveal which accounts exist.
    decoy: Arc<str>,
}

impl PasswordHasher {
    pub(crate) fn new() -> anyhow::Result<Self> {
        let params = Params::new(MEMORY_KIB, PASSES, LANES, None)
            .map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?;
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let decoy = argon2
            .hash_password(b"decoy password for unknown accounts")
            .map_err(|e| anyhow::anyhow!("hash decoy password: {e}"))?
            .to_string();
        let parallelism = std::thread::available_parallelism().map_or(2, |n| n.get());
        Ok(Self {
            argon2,
            permits: Arc::new(Semaphore::new(parallelism * 2)),
            decoy: decoy.into(),
        })
    }

    /// The PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`) of `password`.
    pub(crate) async fn hash(&self, password: String) -> anyhow::Result<String> {
        let _permit = self.permits.acquire().await.context("hasher closed")?;
        let argon2 = self.argon2.clone();
        tokio::task::spawn_blocking(move || {
            argon2
                .hash_password(password.as_bytes())
                .map(|hash| hash.to_string())
                .map_err(|e| anyhow::anyhow!("hash password: {e}"))
        })
        .await
        .context("join hashing task")?
    }

    /// Whether `password` matches `stored`; with `None` (unknown account) it spends the same
    /// effort on the decoy and answers false.
    pub(crate) async fn verify(
        &self,
        password: String,
        stored: Option<String>,
    ) -> anyhow::Result<bool> {
        let _permit = self.permits.acquire().await.context("hasher closed")?;
        let argon2 = self.argon2.clone();
        let known = stored.is_some();
        let stored = stored.unwrap_or_else(|| self.decoy.to_string());
        let matches = tokio::task::spawn_blocking(move || {
            argon2
                .verify_password(password.as_bytes(), stored.as_str())
                .is_ok()
        })
        .await
        .context("join verification task")?;
        Ok(known && matches)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn hashes_with_the_chosen_parameters_and_verifies_exactly() {
        let hasher = PasswordHasher::new().unwrap();
        let hash = hasher.hash(" secret ".into()).await.unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(
            hasher
                .verify(" secret ".into(), Some(hash.clone()))
                .await
                .unwrap()
        );
        // Hashed exactly as typed: trimming is only for the length rule.
        assert!(!hasher.verify("secret".into(), Some(hash)).await.unwrap());
    }

    #[tokio::test]
    async fn an_unknown_account_never_verifies() {
        let hasher = PasswordHasher::new().unwrap();
        assert!(
            !hasher
                .verify("decoy password for unknown accounts".into(), None)
                .await
                .unwrap()
        );
    }
}
