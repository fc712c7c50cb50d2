//! Password hashing with argon2id (the argon2 crate's defaults: OWASP's
//! recommended 19 MiB, 2 passes, 1 lane) and a random salt per hash.
//!
//! Hashing is deliberately slow (tens of milliseconds), so it runs on the
//! blocking pool, at most one per core at a time: a burst of logins queues
//! instead of starving the async workers that serve everything else.
//! Plaintext passwords exist only in the request being handled; they are
//! never logged, stored or replicated -- log entries carry the PHC hash.

use std::sync::Arc;

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use tokio::sync::Semaphore;

#[derive(Clone)]
pub struct Passwords {
    permits: Arc<Semaphore>,
    /// A real hash of a random password: verified against when a username
    /// does not exist, so a login takes as long whether or not it does.
    dummy: Arc<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct HashError(String);

impl Passwords {
    pub fn new() -> Result<Self, HashError> {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let random: [u8; 16] = rand::random();
        Ok(Self {
            permits: Arc::new(Semaphore::new(cores)),
            dummy: Arc::new(hash_blocking(&hex::encode(random))?),
        })
    }

    /// A PHC string for `password`.
    pub async fn hash(&self, password: String) -> Result<String, HashError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| HashError(e.to_string()))?;
        tokio::task::spawn_blocking(move || hash_blocking(&password))
            .await
            .map_err(|e| HashError(e.to_string()))?
    }

    /// Whether `password` matches the PHC string `hash`; `None` runs a
    /// comparison against a dummy hash and answers false.
    pub async fn verify(&self, password: String, hash: Option<String>) -> bool {
        let Ok(_permit) = self.permits.acquire().await else {
            return false;
        };
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.dummy.as_ref().clone());
        let ok = tokio::task::spawn_blocking(move || {
            Argon2::default()
                .verify_password(password.as_bytes(), hash.as_str())
                .is_ok()
        })
        .await
        .unwrap_or(false);
        ok && known
    }
}

/// Hashes on the calling thread (for tools that build data directories;
/// the server uses [`Passwords::hash`]).
pub fn hash_blocking(password: &str) -> Result<String, HashError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| HashError(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_are_argon2id_salted_and_verify() {
        let p = Passwords::new().unwrap();
        let a = p.hash("correct horse".into()).await.unwrap();
        let b = p.hash("correct horse".into()).await.unwrap();
        assert!(a.starts_with("$argon2id$"));
        assert_ne!(a, b, "salted");
        assert!(!a.contains("correct horse"));
        assert!(p.verify("correct horse".into(), Some(a.clone())).await);
        assert!(!p.verify("wrong horse".into(), Some(a)).await);
        assert!(!p.verify("anything".into(), None).await);
    }
}
