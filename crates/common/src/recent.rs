//! A bounded memory of records as this process last wrote or read them, so that its next
//! change can be written without reading the record first. Hints only: every write made from
//! a remembered record must stay guarded by what it assumes (a version), so a record changed
//! elsewhere since is a guard miss and a fresh read, never a lost change.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Mutex, PoisonError};

/// Records by key, at most `capacity` of them; past that the memory starts over (a miss
/// costs one read).
#[derive(Debug)]
pub struct Recent<K, V> {
    capacity: usize,
    records: Mutex<HashMap<K, V>>,
}

impl<K: Hash + Eq, V: Clone> Recent<K, V> {
    /// An empty memory of at most `capacity` records.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            records: Mutex::new(HashMap::new()),
        }
    }

    fn records(&self) -> std::sync::MutexGuard<'_, HashMap<K, V>> {
        // Hints only: a map left half-updated by a panic can only cause a guard miss.
        self.records.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The record as this process last saw it, if it remembers it.
    pub fn get(&self, key: &K) -> Option<V> {
        self.records().get(key).cloned()
    }

    /// Remembers `record` as the latest state of `key`.
    pub fn put(&self, key: K, record: V) {
        let mut records = self.records();
        if records.len() >= self.capacity && !records.contains_key(&key) {
            records.clear();
        }
        records.insert(key, record);
    }

    /// The record as this process last saw it, forgotten: for a change that, made or not,
    /// leaves the memory out of date.
    pub fn take(&self, key: &K) -> Option<V> {
        self.records().remove(key)
    }

    /// How many records it holds.
    pub fn len(&self) -> usize {
        self.records().len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.records().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_state_is_kept_and_memory_stays_bounded() {
        let recent = Recent::new(100);
        recent.put(1, "first");
        recent.put(1, "second");
        assert_eq!(recent.get(&1), Some("second"));
        for key in 2..250 {
            recent.put(key, "other");
            assert!(recent.len() <= 100);
        }
        recent.put(7, "again");
        assert_eq!(recent.take(&7), Some("again"));
        assert_eq!(recent.get(&7), None);
    }
}
