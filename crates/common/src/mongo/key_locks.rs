//! `KeyLocks`: this process's changes to one record take turns instead of conflicting.

/// Striped in-process locks by record key: changes to one record made by this process run one
/// after the other instead of colliding in MongoDB, where the loser's guarded write misses
/// and is read and written again; under load, those retries would be most of the work.
/// Other replicas still collide now and then; their writes are guarded, and the loser reads
/// again.
#[derive(Debug)]
pub struct KeyLocks {
    stripes: Box<[tokio::sync::Mutex<()>]>,
    hasher: std::hash::RandomState,
}

impl KeyLocks {
    /// `stripes` locks shared by all keys (two keys may share one; that only serializes them).
    pub fn new(stripes: usize) -> Self {
        Self {
            stripes: (0..stripes.max(1))
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            hasher: std::hash::RandomState::new(),
        }
    }

    /// Waits for the lock of `key` (fair: first come, first served).
    pub async fn lock(&self, key: &impl std::hash::Hash) -> tokio::sync::MutexGuard<'_, ()> {
        use std::hash::BuildHasher as _;
        let hash = self.hasher.hash_one(key);
        self.stripes[(hash % self.stripes.len() as u64) as usize]
            .lock()
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_key_is_locked_until_released_and_other_stripes_are_free() {
        let locks = KeyLocks::new(1024);
        let held = locks.lock(&"ticket-1").await;
        assert!(
            tokio::time::timeout(
                std::time::Duration::from_millis(50),
                locks.lock(&"ticket-1")
            )
            .await
            .is_err(),
            "the same key must wait"
        );
        drop(held);
        let _again = locks.lock(&"ticket-1").await;
        // With 1024 stripes, some other key lands on another stripe and is not blocked.
        let free = (0..100).map(|i| format!("other-{i}")).collect::<Vec<_>>();
        let mut any_free = false;
        for key in &free {
            if tokio::time::timeout(std::time::Duration::from_millis(5), locks.lock(key))
                .await
                .is_ok()
            {
                any_free = true;
                break;
            }
        }
        assert!(any_free);
    }
}
