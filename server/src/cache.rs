//! The writer's cache of small, hot state records.
//!
//! Every send reads the recipient's account and name, both parties'
//! conversation summaries and the recipient's unread count; on a busy
//! replica these are the same few thousand records over and over, and each
//! read through fjall costs a skiplist search per memtable plus filter checks
//! per table. The writer is the only code that changes the state, so it can
//! keep these records decoded-free in a plain map and stay exactly in step:
//! it refreshes the cache with every batch it commits (and clears it if a
//! commit fails). Only the writer uses it; readers go to fjall snapshots.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};

use crate::state::keys;
use crate::state::kv::{KvIter, KvRead, StorageError};

/// Entries kept before the cache starts over (a few tens of MB at most).
const CAPACITY: usize = 200_000;

#[derive(Default)]
pub struct ReadCache {
    map: RefCell<HashMap<Vec<u8>, Option<Vec<u8>>>>,
}

/// Tables worth caching: small records read on every send.
fn cacheable(key: &[u8]) -> bool {
    matches!(
        key.first(),
        Some(&keys::ACCOUNT | &keys::NAME | &keys::CONVERSATION | &keys::UNREAD_COUNT)
    )
}

impl ReadCache {
    /// Applies a batch's writes, which are about to be committed.
    pub fn update(&self, writes: &BTreeMap<Vec<u8>, Option<Vec<u8>>>) {
        let mut map = self.map.borrow_mut();
        for (k, v) in writes {
            if cacheable(k) {
                map.insert(k.clone(), v.clone());
            }
        }
        if map.len() > CAPACITY {
            map.clear();
        }
    }

    /// Forgets everything (after a failed commit, when the store's contents
    /// are uncertain).
    pub fn clear(&self) {
        self.map.borrow_mut().clear();
    }

    /// `base` with this cache in front of it.
    pub fn over<B: KvRead>(&self, base: B) -> Cached<'_, B> {
        Cached { cache: self, base }
    }
}

pub struct Cached<'a, B> {
    cache: &'a ReadCache,
    base: B,
}

impl<B: KvRead> KvRead for Cached<'_, B> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        if !cacheable(key) {
            return self.base.get(key);
        }
        if let Some(v) = self.cache.map.borrow().get(key) {
            return Ok(v.clone());
        }
        let v = self.base.get(key)?;
        self.cache.map.borrow_mut().insert(key.to_vec(), v.clone());
        Ok(v)
    }

    fn range(&self, start: &[u8], end: &[u8], reverse: bool) -> KvIter<'_> {
        self.base.range(start, end, reverse)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::kv::{KvWrite, MemoryKv, Overlay};

    #[test]
    fn stays_in_step_with_committed_writes() {
        let mut store = MemoryKv::default();
        store.put(b"k1".to_vec(), b"5".to_vec());
        let cache = ReadCache::default();
        assert_eq!(cache.over(&store).get(b"k1").unwrap(), Some(b"5".to_vec()));
        // A batch through an overlay, "committed" to the store.
        let writes = {
            let cached = cache.over(&store);
            let mut o = Overlay::new(&cached);
            o.put(b"k1".to_vec(), b"6".to_vec());
            o.delete(b"k2".to_vec());
            o.put(b"m1".to_vec(), b"x".to_vec());
            o.into_writes()
        };
        cache.update(&writes);
        for (k, v) in writes {
            match v {
                Some(v) => store.put(k, v),
                None => store.delete(k),
            }
        }
        let cached = cache.over(&store);
        assert_eq!(cached.get(b"k1").unwrap(), Some(b"6".to_vec()));
        assert_eq!(cached.get(b"k2").unwrap(), None);
        assert_eq!(cached.get(b"m1").unwrap(), Some(b"x".to_vec()));
        assert!(
            !cache.map.borrow().contains_key(b"m1".as_slice()),
            "messages are not cached"
        );
    }
}
