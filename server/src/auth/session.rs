//! Session tokens: JWTs signed (HS256) with a key derived from the cluster
//! secret, so a token issued by one replica is accepted by all of them.
//!
//! A token names an account and expires. Verification pins the algorithm to
//! HS256 -- a token claiming `alg: none` or any other algorithm is rejected
//! -- and requires `exp` and `sub`. That a token verifies is not enough: the
//! caller (`api::auth`) also checks the account still exists, so deleting an
//! account ends its sessions on every replica that has applied the deletion.

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
}

pub struct Sessions {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl_secs: u64,
}

impl Sessions {
    pub fn new(secret: &ClusterSecret, ttl_secs: u64) -> Self {
        let key = secret.derive("session signing key v1");
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.leeway = 5;
        Self {
            encoding: EncodingKey::from_secret(&key),
            decoding: DecodingKey::from_secret(&key),
            validation,
            ttl_secs,
        }
    }

    /// A token for `account`, issued at `now_secs`; returns it with its
    /// expiry (seconds since the epoch).
    pub fn issue(&self, account: AccountId, now_secs: u64) -> (String, u64) {
        let claims = Claims {
            sub: account.to_string(),
            iat: now_secs,
            exp: now_secs + self.ttl_secs,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing of a small struct cannot fail");
        (token, claims.exp)
    }

    /// The account a token was issued for, if the token is genuine and
    /// unexpired.
    pub fn verify(&self, token: &str) -> Result<AccountId, SessionError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => SessionError::Expired,
                _ => SessionError::Invalid,
            })?;
        data.claims.sub.parse().map_err(|_| SessionError::Invalid)
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
        let (token, exp) = sessions(b"0123456789abcdef").issue(a, now());
        assert!(exp > now());
        assert_eq!(sessions(b"0123456789abcdef").verify(&token), Ok(a));
        assert_eq!(
            sessions(b"another secret!!").verify(&token),
            Err(SessionError::Invalid)
        );
    }

    #[test]
    fn rejects_expired_forged_and_unsigned_tokens() {
        let s = sessions(b"0123456789abcdef");
        let (old, _) = s.issue(AccountId([3; 16]), now() - 7200);
        assert_eq!(s.verify(&old), Err(SessionError::Expired));
        // alg: none, with a valid-looking payload and no signature.
        let b64 = |s: &str| {
            use base64::Engine;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
        };
        let payload = format!(
            r#"{{"sub":"{}","iat":{},"exp":{}}}"#,
            AccountId([3; 16]),
            now(),
            now() + 100
        );
        let none = format!(
            "{}.{}.",
            b64(r#"{"alg":"none","typ":"JWT"}"#),
            b64(&payload)
        );
        assert_eq!(s.verify(&none), Err(SessionError::Invalid));
        assert_eq!(s.verify("garbage"), Err(SessionError::Invalid));
        // A genuine token with its payload swapped.
        let (token, _) = s.issue(AccountId([3; 16]), now());
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
