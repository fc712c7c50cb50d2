//! Password hashing with argon2id (the argon2 crate's defaults: OWASP's
//! recommended 19 MiB, 2 passes, 1 lane).
//!
//! The server salts a hash with its request: the salt is derived from the
//! account, the request id (16 random bytes the client draws per user
//! action) and the hash the request replaces (none for a creation; for a
//! change, the one `state::check` makes every copy of it replace). Two
//! copies of one request -- a retry that reached two replicas, or one a
//! hung replica handled late -- thus store the *same* hash, and a session
//! issued under one copy's hash stays valid whichever copy the replicas
//! keep; every other request, changing to the same password included, gets
//! a salt of its own (so "sign out other devices" makes a new hash), and
//! no change can bring back a hash the account had before, even from a
//! client that reused a request id. A salt only has to be unique, not
//! secret.
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

use crate::ids::{AccountId, RequestId};

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

    /// A PHC string for `password`, set on `account` by request `request`
    /// in place of the hash `replaces` ("" for a creation), which salt it
    /// (see the module doc).
    pub async fn hash(
        &self,
        password: String,
        account: AccountId,
        request: RequestId,
        replaces: &str,
    ) -> Result<String, HashError> {
        let salt = request_salt(account, &request, replaces);
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| HashError(e.to_string()))?;
        tokio::task::spawn_blocking(move || hash_with_salt(&password, &salt))
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

/// Hashes on the calling thread with a random salt (for tools that build
/// data directories; the server uses [`Passwords::hash`]).
pub fn hash_blocking(password: &str) -> Result<String, HashError> {
    hash_with_salt(password, &rand::random::<[u8; 16]>())
}

/// The salt of a hash set on `account` by request `request` in place of
/// the hash `replaces`.
fn request_salt(account: AccountId, request: &RequestId, replaces: &str) -> [u8; 16] {
    let mut hasher = blake3::Hasher::new_derive_key("chat password salt v1");
    hasher.update(&account.0);
    hasher.update(request);
    hasher.update(replaces.as_bytes());
    let mut salt = [0; 16];
    hasher.finalize_xof().fill(&mut salt);
    salt
}

fn hash_with_salt(password: &str, salt: &[u8]) -> Result<String, HashError> {
    Argon2::default()
        .hash_password_with_salt(password.as_bytes(), salt)
        .map(|h| h.to_string())
        .map_err(|e| HashError(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_are_argon2id_salted_by_their_request_and_verify() {
        let p = Passwords::new().unwrap();
        let (ann, bob) = (AccountId([1; 16]), AccountId([2; 16]));
        let hash = |account, request: [u8; 16], replaces: &'static str| {
            p.hash("correct horse".into(), account, request, replaces)
        };
        let a = hash(ann, [7; 16], "$argon2id$old").await.unwrap();
        assert!(a.starts_with("$argon2id$"));
        assert_eq!(
            hash(ann, [7; 16], "$argon2id$old").await.unwrap(),
            a,
            "two copies of one request store one hash"
        );
        assert_ne!(
            hash(ann, [8; 16], "$argon2id$old").await.unwrap(),
            a,
            "another request"
        );
        assert_ne!(
            hash(bob, [7; 16], "$argon2id$old").await.unwrap(),
            a,
            "another account"
        );
        assert_ne!(
            hash(ann, [7; 16], "$argon2id$other").await.unwrap(),
            a,
            "the same request id on another password: no hash comes back"
        );
        assert_ne!(
            hash_blocking("correct horse").unwrap(),
            hash_blocking("correct horse").unwrap(),
            "tools salt at random"
        );
        assert!(!a.contains("correct horse"));
        assert!(p.verify("correct horse".into(), Some(a.clone())).await);
        assert!(!p.verify("wrong horse".into(), Some(a)).await);
        assert!(!p.verify("anything".into(), None).await);
    }
}
