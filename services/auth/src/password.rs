//! Password hashing with argon2id, off the async threads, with bounded concurrency and
//! working memory that is reused.

use std::cell::RefCell;
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::Context as _;
use argon2::password_hash::phc::{Output, ParamsString, Salt};
use argon2::password_hash::{
    self, CustomizedPasswordHasher, PasswordHasher as _, PasswordVerifier as _,
};
use argon2::{Algorithm, Argon2, Block, Params, PasswordHash, Version};
use tokio::sync::Semaphore;

/// OWASP's minimum for argon2id: 19 MiB of memory, 2 passes, 1 lane.
const MEMORY_KIB: u32 = 19 * 1024;
const PASSES: u32 = 2;
const LANES: u32 = 1;
/// The most memory a stored hash may ask for to be verified (4 × ours).
const MAX_STORED_MEMORY_KIB: u32 = 4 * MEMORY_KIB;

/// Hashes and verifies passwords. Each hash costs ~19 MiB and tens of milliseconds of CPU, so
/// at most a few run at once: a burst of sign-ins queues instead of exhausting memory.
#[derive(Clone)]
pub struct PasswordHasher {
    params: Params,
    permits: Arc<Semaphore>,
    /// Working memory of finished hashes, for the next ones: at most one per permit is ever
    /// allocated. Allocating 19 MiB per hash left glibc's malloc holding ~1 GB after a few
    /// hundred sign-ins (freed blocks it neither reused nor returned), past auth's pod limit.
    memory: Arc<Mutex<Vec<Vec<Block>>>>,
    /// Verified against when the email is unknown, so that an unknown email costs as much
    /// time as a wrong password and timing does not reveal which accounts exist.
    decoy: Arc<str>,
}

impl PasswordHasher {
    /// auth's parameters; hashes the decoy, so it costs one hash.
    pub fn new() -> anyhow::Result<Self> {
        let params = Params::new(MEMORY_KIB, PASSES, LANES, None)
            .map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?;
        let parallelism = std::thread::available_parallelism().map_or(2, |n| n.get());
        // Its memory is freed, not pooled: an idle auth holds no working memory.
        let decoy = Lent::new(params.clone(), &mut Vec::new())
            .hash_password(b"decoy password for unknown accounts")
            .map_err(|e| anyhow::anyhow!("hash decoy password: {e}"))?
            .to_string();
        Ok(Self {
            params,
            permits: Arc::new(Semaphore::new(parallelism * 2)),
            memory: Arc::default(),
            decoy: decoy.into(),
        })
    }

    /// The PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`) of `password`.
    pub async fn hash(&self, password: String) -> anyhow::Result<String> {
        self.run(move |lent| {
            lent.hash_password(password.as_bytes())
                .map(|hash| hash.to_string())
                .map_err(|e| anyhow::anyhow!("hash password: {e}"))
        })
        .await
        .context("join hashing task")?
    }

    /// Whether `password` matches `stored`; with `None` (unknown account) it spends the same
    /// effort on the decoy and answers false.
    pub async fn verify(&self, password: String, stored: Option<String>) -> anyhow::Result<bool> {
        let known = stored.is_some();
        let stored = stored.unwrap_or_else(|| self.decoy.to_string());
        let matches = self
            .run(move |lent| {
                PasswordHash::new(&stored)
                    .is_ok_and(|hash| lent.verify_password(password.as_bytes(), &hash).is_ok())
            })
            .await
            .context("join verification task")?;
        Ok(known && matches)
    }

    /// Runs `work` on a blocking thread once a permit is free, with working memory from the
    /// pool, which gets it back afterwards.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Lent<'_>) -> T + Send + 'static,
    ) -> anyhow::Result<T> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .context("hasher closed")?;
        let (params, pool) = (self.params.clone(), self.memory.clone());
        let result = tokio::task::spawn_blocking(move || {
            let mut memory = pool
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop()
                .unwrap_or_default();
            let result = work(&Lent::new(params, &mut memory));
            pool.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(memory);
            drop(permit);
            result
        })
        .await?;
        Ok(result)
    }
}

/// Argon2id computing in memory lent to it, grown to what the parameters need, instead of
/// allocating its own per hash. Salt generation, the PHC format, and the constant-time
/// comparison of a verification come from the `password_hash` traits it implements.
struct Lent<'a> {
    algorithm: Algorithm,
    version: Version,
    params: Params,
    memory: RefCell<&'a mut Vec<Block>>,
}

impl<'a> Lent<'a> {
    fn new(params: Params, memory: &'a mut Vec<Block>) -> Self {
        Self {
            algorithm: Algorithm::Argon2id,
            version: Version::V0x13,
            params,
            memory: RefCell::new(memory),
        }
    }
}

impl password_hash::PasswordHasher<PasswordHash> for Lent<'_> {
    fn hash_password_with_salt(
        &self,
        password: &[u8],
        salt: &[u8],
    ) -> password_hash::Result<PasswordHash> {
        let salt = Salt::new(salt)?;
        let mut buffer = [0u8; Output::MAX_LENGTH];
        let out = buffer
            .get_mut(
                ..self
                    .params
                    .output_len()
                    .unwrap_or(Params::DEFAULT_OUTPUT_LEN),
            )
            .ok_or(password_hash::Error::OutputSize)?;
        let mut memory = self.memory.borrow_mut();
        let blocks = self.params.block_count();
        if memory.len() < blocks {
            memory.resize(blocks, Block::default());
        }
        Argon2::new(self.algorithm, self.version, self.params.clone())
            .hash_password_into_with_memory(password, &salt, out, memory.as_mut_slice())?;
        Ok(PasswordHash {
            algorithm: self.algorithm.ident(),
            version: Some(self.version.into()),
            params: ParamsString::try_from(&self.params)?,
            salt: Some(salt),
            hash: Some(Output::new(out)?),
        })
    }
}

/// What verifying a stored hash needs: the same computation with the hash's own algorithm,
/// version and parameters.
impl CustomizedPasswordHasher<PasswordHash> for Lent<'_> {
    type Params = Params;

    fn hash_password_customized(
        &self,
        password: &[u8],
        salt: &[u8],
        algorithm: Option<&str>,
        version: Option<u32>,
        params: Params,
    ) -> password_hash::Result<PasswordHash> {
        // A stored hash is data: one asking for absurd memory must fail to verify, not abort
        // the process on an allocation failure.
        if params.m_cost() > MAX_STORED_MEMORY_KIB {
            return Err(password_hash::Error::ParamInvalid { name: "m" });
        }
        let mut memory = self.memory.borrow_mut();
        let stored = Lent {
            algorithm: algorithm
                .map(Algorithm::try_from)
                .transpose()?
                .unwrap_or_default(),
            version: version
                .map(Version::try_from)
                .transpose()?
                .unwrap_or_default(),
            params,
            memory: RefCell::new(&mut memory),
        };
        stored.hash_password_with_salt(password, salt)
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

    #[tokio::test]
    async fn hashes_are_interchangeable_with_the_argon2_crates_own() {
        let hasher = PasswordHasher::new().unwrap();
        let theirs = Argon2::new(Algorithm::Argon2id, Version::V0x13, hasher.params.clone());
        // Stored before the memory was pooled: still verifies, and only with its password.
        let stored = theirs.hash_password(b"hunter42").unwrap().to_string();
        assert!(
            hasher
                .verify("hunter42".into(), Some(stored.clone()))
                .await
                .unwrap()
        );
        assert!(
            !hasher
                .verify("hunter43".into(), Some(stored))
                .await
                .unwrap()
        );
        // Stored now: the crate's own verifier accepts it.
        let ours = hasher.hash("hunter42".into()).await.unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(theirs.verify_password(b"hunter42", &parsed).is_ok());
        assert!(theirs.verify_password(b"hunter43", &parsed).is_err());
    }

    #[tokio::test]
    async fn a_hash_with_other_parameters_verifies_with_its_own() {
        let hasher = PasswordHasher::new().unwrap();
        // Less memory, more (grows the pooled block), two lanes with a longer output; then
        // ours again, computed in the grown block.
        let others = [
            Params::new(8 * 1024, 1, 1, None).unwrap(),
            Params::new(32 * 1024, 3, 1, None).unwrap(),
            Params::new(8 * 1024, 1, 2, Some(64)).unwrap(),
            hasher.params.clone(),
        ];
        for params in others {
            let stored = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
                .hash_password(b"pw-with-other-params")
                .unwrap()
                .to_string();
            assert!(
                hasher
                    .verify("pw-with-other-params".into(), Some(stored.clone()))
                    .await
                    .unwrap(),
                "{stored}"
            );
            assert!(!hasher.verify("other".into(), Some(stored)).await.unwrap());
        }
    }

    #[tokio::test]
    async fn a_stored_hash_asking_for_absurd_memory_does_not_verify() {
        let hasher = PasswordHasher::new().unwrap();
        let ours = hasher.hash("pw".into()).await.unwrap();
        // 256 GiB, the most argon2 allows: allocating it would abort the process.
        let absurd = ours.replace("m=19456", "m=268435455");
        assert_ne!(absurd, ours);
        assert!(!hasher.verify("pw".into(), Some(absurd)).await.unwrap());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_allocates_working_memory_once_per_permit_at_most() {
        let hasher = PasswordHasher::new().unwrap();
        let stored = hasher.hash("the right one".into()).await.unwrap();
        let permits = hasher.permits.available_permits();
        let mut burst = tokio::task::JoinSet::new();
        for i in 0..permits * 3 {
            let (hasher, stored) = (hasher.clone(), stored.clone());
            // Reused blocks still compute exactly: right, wrong and unknown, interleaved.
            burst.spawn(async move {
                let (password, stored, expected) = match i % 3 {
                    0 => ("the right one".to_owned(), Some(stored), true),
                    1 => (format!("wrong {i}"), Some(stored), false),
                    _ => ("the right one".to_owned(), None, false),
                };
                (hasher.verify(password, stored).await.unwrap(), expected)
            });
        }
        while let Some(verified) = burst.join_next().await {
            let (verified, expected) = verified.unwrap();
            assert_eq!(verified, expected);
        }
        let pooled = hasher.memory.lock().unwrap().len();
        assert!((1..=permits).contains(&pooled), "{pooled} of {permits}");
    }
}
