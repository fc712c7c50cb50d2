//! The cluster secret: one value shared by every replica, from which each
//! use derives its own key (session signing, peer authentication), so no key
//! serves two purposes and the secret itself never travels.

use std::fmt;

pub struct ClusterSecret(Vec<u8>);

impl ClusterSecret {
    /// Smallest accepted secret, in bytes.
    pub const MIN_BYTES: usize = 16;

    pub fn new(bytes: Vec<u8>) -> Result<Self, String> {
        if bytes.len() < Self::MIN_BYTES {
            return Err(format!(
                "the cluster secret must be at least {} bytes (got {})",
                Self::MIN_BYTES,
                bytes.len()
            ));
        }
        Ok(Self(bytes))
    }

    /// A 32-byte key for `purpose`, independent of the keys for any other
    /// purpose.
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        blake3::derive_key(&format!("chat cluster secret: {purpose}"), &self.0)
    }
}

impl fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterSecret(<redacted>)")
    }
}
