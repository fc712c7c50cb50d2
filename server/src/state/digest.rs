//! The state digest: a hash of every materialized key and value, in key
//! order. Two replicas have equal digests exactly when (up to a blake3
//! collision) their chat states are byte-identical, which the canonical
//! encodings of `records` make the same thing as holding the same accounts,
//! messages, marks and tombstones.

use super::kv::{KvRead, StorageError};

pub fn digest(kv: &impl KvRead) -> Result<String, StorageError> {
    let mut hasher = blake3::Hasher::new();
    for pair in kv.range(&[], &[0xff], false) {
        let (k, v) = pair?;
        hasher.update(&(k.len() as u32).to_le_bytes());
        hasher.update(&k);
        hasher.update(&(v.len() as u32).to_le_bytes());
        hasher.update(&v);
    }
    Ok(hasher.finalize().to_hex().to_string())
}
