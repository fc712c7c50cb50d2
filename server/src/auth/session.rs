//! Session tokens: JWTs signed (HS256) with a key derived from the cluster
//! secret, so a token issued by one replica is accepted by all of them.
//!
//! A token names an account and expires. Verification pins the algorithm to
//! HS256 -- a token claiming `alg: none` or any other algorithm is rejected
//! -- and requires `exp`, `sub` and `pwd`. That a token verifies is not
//! enough: the caller (`api::Context::authenticate`) also checks the account
//! still exists, so deleting an account ends its sessions on every replica
//! that has applied the deletion, and that the token's `pwd` is the
//! fingerprint of the account's password hash in force, so changing the
//! password ends every session started with the old one. The fingerprint is
//! keyed with the cluster secret and truncated: a token's readable payload
//! tells nothing about the hash.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::ClusterSecret;
use crate::ids::AccountId;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Account id (hex).
    pub sub: String,
    /// Issued at, seconds since the epoch.
    pub iat: u64,
    /// Expires at, seconds since the epoch.
    pub exp: u64,
    /// Fingerprint of the password hash the session was started with.
    pub pwd: String,
}

/// What a genuine, unexpired token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub account: AccountId,
    /// [`Sessions::fingerprint`] of the password hash it was issued under.
    pub password: String,
    /// When it expires, seconds since the epoch.
    pub expires_at: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("missing session: send 'authorization: Bearer <token>' metadata")]
    Missing,
    #[error("malformed authorization metadata: expected 'Bearer <token>'")]
    Malformed,
    #[error("session expired: log in again")]
    Expired,
    #[error("invalid session token")]
    Invalid,
    #[error(
        "this session has ended because the account's password was changed or another device signed it out"
    )]
    PasswordChanged,
}

/// How long after its `exp` a token is still accepted: replicas' clocks
/// differ by a little.
pub const LEEWAY_SECS: u64 = 5;

pub struct Sessions {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl_secs: u64,
    fingerprint_key: [u8; 32],
}

impl Sessions {
    pub fn new(secret: &ClusterSecret, ttl_secs: u64) -> Self {
        let key = secret.derive("session signing key v1");
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        // `pwd` is required by `Claims` itself: tokens issued before it
        // existed do not decode.
        validation.leeway = LEEWAY_SECS;
        Self {
            encoding: EncodingKey::from_secret(&key),
            decoding: DecodingKey::from_secret(&key),
            validation,
            ttl_secs,
            fingerprint_key: secret.derive("session password fingerprint v1"),
        }
    }

    /// The fingerprint a token carries of the password hash it was issued
    /// under (64 bits of a keyed hash, hex).
    pub fn fingerprint(&self, password_hash: &str) -> String {
        let hash = blake3::keyed_hash(&self.fingerprint_key, password_hash.as_bytes());
        hash.as_bytes()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// A token for `account`, whose password hash in force is
    /// `password_hash`, issued at `now_secs`; returns it with its expiry
    /// (seconds since the epoch).
    pub fn issue(&self, account: AccountId, password_hash: &str, now_secs: u64) -> (String, u64) {
        let claims = Claims {
            sub: account.to_string(),
            iat: now_secs,
            exp: now_secs + self.ttl_secs,
            pwd: self.fingerprint(password_hash),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing of a small struct cannot fail");
        (token, claims.exp)
    }

    /// What a token says, if it is genuine and unexpired. Whether its
    /// password is still the one in force is for the caller to check
    /// ([`Sessions::is_current`]).
    pub fn verify(&self, token: &str) -> Result<Token, SessionError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => SessionError::Expired,
                _ => SessionError::Invalid,
            })?;
        Ok(Token {
            account: data.claims.sub.parse().map_err(|_| SessionError::Invalid)?,
            password: data.claims.pwd,
            expires_at: data.claims.exp,
        })
    }

    /// How long from `now_ms` (ms since the epoch) until a token that
    /// expires at `expires_at` (seconds) stops being accepted -- zero once it
    /// has. [`Sessions::verify`] accepts it through the whole second
    /// `expires_at + LEEWAY_SECS` (it compares whole seconds).
    pub fn remaining(expires_at: u64, now_ms: u64) -> std::time::Duration {
        let refused_from_ms = expires_at
            .saturating_add(LEEWAY_SECS + 1)
            .saturating_mul(1000);
        std::time::Duration::from_millis(refused_from_ms.saturating_sub(now_ms))
    }

    /// Whether `token` was issued under the password hash in force.
    pub fn is_current(&self, token: &Token, password_hash: &str) -> bool {
        token.password == self.fingerprint(password_hash)
    }

    /// The token in `authorization: Bearer <token>` metadata.
    pub fn bearer(header: Option<&str>) -> Result<&str, SessionError> {
        let value = header.ok_or(SessionError::Missing)?;
        let (scheme, token) = value.split_once(' ').ok_or(SessionError::Malformed)?;
        if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
            return Err(SessionError::Malformed);
        }
        Ok(token.trim())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sessions(secret: &[u8]) -> Sessions {
        Sessions::new(&ClusterSecret::new(secret.to_vec()).unwrap(), 3600)
    }

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    #[test]
    fn issued_tokens_verify_on_every_replica_with_the_secret() {
        let a = AccountId([3; 16]);
        let (token, exp) = sessions(b"0123456789abcdef").issue(a, "$argon2id$h", now());
        assert!(exp > now());
        let other_replica = sessions(b"0123456789abcdef");
        let verified = other_replica.verify(&token).unwrap();
        assert_eq!(verified.account, a);
        assert!(other_replica.is_current(&verified, "$argon2id$h"));
        assert_eq!(
            sessions(b"another secret!!").verify(&token),
            Err(SessionError::Invalid)
        );
    }

    #[test]
    fn a_token_is_refused_once_its_remaining_time_is_up() {
        let s = sessions(b"0123456789abcdef");
        let now_s = now();
        // A token that expired LEEWAY_SECS ago is still accepted this
        // second, and has time remaining.
        let (token, exp) = s.issue(AccountId([3; 16]), "h", now_s - 3600 - LEEWAY_SECS);
        assert_eq!(exp + LEEWAY_SECS, now_s);
        assert!(
            s.verify(&token).is_ok() || now() > now_s,
            "accepted through its last second"
        );
        let left = Sessions::remaining(exp, now_s * 1000);
        assert_eq!(left, std::time::Duration::from_secs(1));
        // One more second: refused, and nothing remains.
        let (old, exp) = s.issue(AccountId([3; 16]), "h", now_s - 3600 - LEEWAY_SECS - 1);
        assert_eq!(s.verify(&old), Err(SessionError::Expired));
        assert_eq!(
            Sessions::remaining(exp, now_s * 1000),
            std::time::Duration::ZERO
        );
        assert_eq!(
            Sessions::remaining(u64::MAX, 0),
            std::time::Duration::from_millis(u64::MAX)
        );
    }

    #[test]
    fn rejects_expired_forged_and_unsigned_tokens() {
        let s = sessions(b"0123456789abcdef");
        let (old, _) = s.issue(AccountId([3; 16]), "h", now() - 7200);
        assert_eq!(s.verify(&old), Err(SessionError::Expired));
        // alg: none, with a valid-looking payload and no signature.
        let b64 = |s: &str| {
            use base64::Engine;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
        };
        let payload = format!(
            r#"{{"sub":"{}","iat":{},"exp":{},"pwd":"{}"}}"#,
            AccountId([3; 16]),
            now(),
            now() + 100,
            s.fingerprint("h")
        );
        let none = format!(
            "{}.{}.",
            b64(r#"{"alg":"none","typ":"JWT"}"#),
            b64(&payload)
        );
        assert_eq!(s.verify(&none), Err(SessionError::Invalid));
        assert_eq!(s.verify("garbage"), Err(SessionError::Invalid));
        // A genuine token with its payload swapped.
        let (token, _) = s.issue(AccountId([3; 16]), "h", now());
        let parts: Vec<&str> = token.split('.').collect();
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            b64(&payload.replace("0303", "0404")),
            parts[2]
        );
        assert_eq!(s.verify(&forged), Err(SessionError::Invalid));
    }

    #[test]
    fn a_token_is_current_only_under_the_password_it_was_issued_with() {
        let s = sessions(b"0123456789abcdef");
        let (token, _) = s.issue(AccountId([3; 16]), "$argon2id$old", now());
        let verified = s.verify(&token).unwrap();
        assert!(s.is_current(&verified, "$argon2id$old"));
        assert!(!s.is_current(&verified, "$argon2id$new"));
        // The fingerprint depends on the cluster secret: a token's payload
        // says nothing about the hash to someone without it.
        assert_ne!(
            s.fingerprint("$argon2id$old"),
            sessions(b"another secret!!").fingerprint("$argon2id$old")
        );
        // A token from before fingerprints (no `pwd`) is not accepted.
        let claims = serde_json::json!({"sub": AccountId([3; 16]).to_string(), "iat": now(), "exp": now() + 100});
        let key = ClusterSecret::new(b"0123456789abcdef".to_vec())
            .unwrap()
            .derive("session signing key v1");
        let legacy = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(&key),
        )
        .unwrap();
        assert_eq!(s.verify(&legacy), Err(SessionError::Invalid));
    }

    #[test]
    fn bearer_metadata() {
        assert_eq!(Sessions::bearer(Some("Bearer abc")), Ok("abc"));
        assert_eq!(Sessions::bearer(Some("bearer abc")), Ok("abc"));
        assert_eq!(Sessions::bearer(None), Err(SessionError::Missing));
        assert_eq!(
            Sessions::bearer(Some("Basic abc")),
            Err(SessionError::Malformed)
        );
        assert_eq!(
            Sessions::bearer(Some("Bearer ")),
            Err(SessionError::Malformed)
        );
    }
}
