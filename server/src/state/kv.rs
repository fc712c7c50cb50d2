//! The ordered key-value interface the state machine reads and writes
//! through. The state machine never sees fjall: the server hands it an
//! overlay over the fjall keyspace, tests hand it a [`MemoryKv`]. Keeping the
//! interface this small is what lets the property tests replay thousands of
//! histories in memory and trust the result for the real store.

use std::collections::BTreeMap;
use std::ops::Bound;

pub type KvPair = (Vec<u8>, Vec<u8>);
pub type KvIter<'a> = Box<dyn Iterator<Item = Result<KvPair, StorageError>> + 'a>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    #[error("storage I/O failed: {0}")]
    Io(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

pub trait KvRead {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError>;
    /// Pairs with `start <= key < end`, ascending or (if `reverse`) descending.
    fn range(&self, start: &[u8], end: &[u8], reverse: bool) -> KvIter<'_>;
}

impl<T: KvRead + ?Sized> KvRead for &T {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        (**self).get(key)
    }

    fn range(&self, start: &[u8], end: &[u8], reverse: bool) -> KvIter<'_> {
        (**self).range(start, end, reverse)
    }
}

pub trait KvWrite: KvRead {
    fn put(&mut self, key: Vec<u8>, value: Vec<u8>);
    fn delete(&mut self, key: Vec<u8>);
}

/// An in-memory store, for tests and for computing what a set of entries
/// should produce.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryKv(pub BTreeMap<Vec<u8>, Vec<u8>>);

impl KvRead for MemoryKv {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.0.get(key).cloned())
    }

    fn range(&self, start: &[u8], end: &[u8], reverse: bool) -> KvIter<'_> {
        let r = self
            .0
            .range::<[u8], _>((Bound::Included(start), Bound::Excluded(end)));
        let map = |(k, v): (&Vec<u8>, &Vec<u8>)| Ok((k.clone(), v.clone()));
        if reverse {
            Box::new(r.rev().map(map))
        } else {
            Box::new(r.map(map))
        }
    }
}

impl KvWrite for MemoryKv {
    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.0.insert(key, value);
    }

    fn delete(&mut self, key: Vec<u8>) {
        self.0.remove(&key);
    }
}

/// Uncommitted writes layered over a readable store: reads see the writes,
/// the base is untouched until the owner commits [`Overlay::into_writes`].
/// The server applies a whole group-commit batch of entries to one overlay,
/// then writes the result and the log entries in one atomic fjall batch.
pub struct Overlay<'a, B: KvRead> {
    base: &'a B,
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl<'a, B: KvRead> Overlay<'a, B> {
    pub fn new(base: &'a B) -> Self {
        Self {
            base,
            writes: BTreeMap::new(),
        }
    }

    /// The pending writes: `Some(value)` to put, `None` to delete.
    pub fn into_writes(self) -> BTreeMap<Vec<u8>, Option<Vec<u8>>> {
        self.writes
    }
}

impl<B: KvRead> KvRead for Overlay<'_, B> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        match self.writes.get(key) {
            Some(w) => Ok(w.clone()),
            None => self.base.get(key),
        }
    }

    fn range(&self, start: &[u8], end: &[u8], reverse: bool) -> KvIter<'_> {
        let base = self.base.range(start, end, reverse);
        let over = self
            .writes
            .range::<[u8], _>((Bound::Included(start), Bound::Excluded(end)));
        let over: PendingIter<'_> = if reverse {
            Box::new(over.rev())
        } else {
            Box::new(over)
        };
        Box::new(MergeIter {
            base: base.peekable(),
            over: over.peekable(),
            reverse,
        })
    }
}

impl<B: KvRead> KvWrite for Overlay<'_, B> {
    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.writes.insert(key, Some(value));
    }

    fn delete(&mut self, key: Vec<u8>) {
        self.writes.insert(key, None);
    }
}

/// The overlay's own writes in a range: `None` values are deletions.
type PendingIter<'a> = Box<dyn Iterator<Item = (&'a Vec<u8>, &'a Option<Vec<u8>>)> + 'a>;

/// Merges the base's pairs with the overlay's writes, the overlay winning on
/// equal keys and its deletions hiding base pairs.
struct MergeIter<'a> {
    base: std::iter::Peekable<KvIter<'a>>,
    over: std::iter::Peekable<PendingIter<'a>>,
    reverse: bool,
}

impl Iterator for MergeIter<'_> {
    type Item = Result<KvPair, StorageError>;

    fn next(&mut self) -> Option<Self::Item> {
        use std::cmp::Ordering;
        enum Take {
            Base,
            Over,
            /// Equal keys: the overlay's write shadows the base pair.
            Both,
        }
        loop {
            let take = match (self.base.peek(), self.over.peek()) {
                (None, None) => return None,
                (Some(Err(_)), _) | (Some(_), None) => Take::Base,
                (None, Some(_)) => Take::Over,
                (Some(Ok((bk, _))), Some((ok, _))) => {
                    match (ok.as_slice().cmp(bk.as_slice()), self.reverse) {
                        (Ordering::Equal, _) => Take::Both,
                        (Ordering::Less, false) | (Ordering::Greater, true) => Take::Over,
                        _ => Take::Base,
                    }
                }
            };
            match take {
                Take::Base => return self.base.next(),
                Take::Both => {
                    self.base.next();
                }
                Take::Over => {}
            }
            let (k, v) = self.over.next()?;
            if let Some(v) = v {
                return Some(Ok((k.clone(), v.clone())));
            }
            // A deletion yields nothing; the pair it hides was skipped above.
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(pairs: &[(&str, &str)]) -> MemoryKv {
        MemoryKv(
            pairs
                .iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
                .collect(),
        )
    }

    fn keys(it: KvIter<'_>) -> Vec<String> {
        it.map(|r| String::from_utf8(r.unwrap().0).unwrap())
            .collect()
    }

    #[test]
    fn overlay_merges_in_both_directions() {
        let base = kv(&[("a", "1"), ("c", "3"), ("e", "5"), ("g", "7")]);
        let mut o = Overlay::new(&base);
        o.put(b"b".to_vec(), b"2".to_vec());
        o.delete(b"c".to_vec());
        o.put(b"e".to_vec(), b"50".to_vec());
        o.put(b"h".to_vec(), b"8".to_vec());
        assert_eq!(keys(o.range(b"a", b"z", false)), ["a", "b", "e", "g", "h"]);
        assert_eq!(keys(o.range(b"a", b"z", true)), ["h", "g", "e", "b", "a"]);
        assert_eq!(keys(o.range(b"b", b"g", false)), ["b", "e"]);
        assert_eq!(o.get(b"e").unwrap(), Some(b"50".to_vec()));
        assert_eq!(o.get(b"c").unwrap(), None);
        assert_eq!(base.get(b"c").unwrap(), Some(b"3".to_vec()));
    }
}
