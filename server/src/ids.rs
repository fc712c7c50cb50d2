//! Identifiers of accounts and messages.
//!
//! An id is derived from the request that created the thing: a keyed hash of
//! the client's request id and what it names (the username for an account;
//! sender and recipient for a message). Deriving instead of counting gives
//! three properties at once:
//!
//! * **unique across replicas** without coordination (128 bits of a
//!   cryptographic hash over a random request id);
//! * **never reused**: the state keeps a tombstone for every deleted id, and a
//!   request id that was seen before names the same thing again;
//! * **retries converge**: a client that retries a send on another replica
//!   after a failover produces the *same* message id, even if the first
//!   attempt did reach a disk somewhere, so the two log entries merge into one
//!   message instead of duplicating it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A client-generated idempotency key (see `chat_shared::validate::request_id`).
pub type RequestId = [u8; 16];

/// The id string a client sent is not one of ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a valid id (expected 32 lowercase hex characters)")]
pub struct BadId(pub String);

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub struct $name(pub [u8; 16]);

        impl $name {
            pub fn from_slice(bytes: &[u8]) -> Option<Self> {
                bytes.try_into().ok().map(Self)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), &hex::encode(self.0)[..8])
            }
        }

        impl FromStr for $name {
            type Err = BadId;
            fn from_str(s: &str) -> Result<Self, BadId> {
                let bad = || BadId(s.chars().take(64).collect());
                if s.len() != 32 || s.bytes().any(|b| b.is_ascii_uppercase()) {
                    return Err(bad());
                }
                let mut out = [0; 16];
                hex::decode_to_slice(s, &mut out).map_err(|_| bad())?;
                Ok(Self(out))
            }
        }
    };
}

id_type!(
    /// Names an account on every replica, forever.
    AccountId
);
id_type!(
    /// Names a message on every replica, forever.
    MessageId
);

fn derive(context: &str, parts: &[&[u8]]) -> [u8; 16] {
    let mut hasher = blake3::Hasher::new_derive_key(context);
    for part in parts {
        // Length-prefix every part so ("ab","c") and ("a","bc") differ.
        hasher.update(&(part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    let mut out = [0; 16];
    out.copy_from_slice(&hasher.finalize().as_bytes()[..16]);
    out
}

impl AccountId {
    /// The account a `CreateAccount` with this normalized username and request
    /// id creates.
    pub fn derive(normalized_username: &str, request: &RequestId) -> Self {
        Self(derive(
            "chat.v1 account id",
            &[normalized_username.as_bytes(), request],
        ))
    }
}

impl MessageId {
    /// The message a `SendMessage` from `sender` to `recipient` with this
    /// request id creates.
    pub fn derive(sender: AccountId, recipient: AccountId, request: &RequestId) -> Self {
        Self(derive(
            "chat.v1 message id",
            &[&sender.0, &recipient.0, request],
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects() {
        let id = AccountId::derive("bob", &[7; 16]);
        assert_eq!(id.to_string().parse::<AccountId>(), Ok(id));
        assert!("xyz".parse::<AccountId>().is_err());
        assert!(id.to_string().to_uppercase().parse::<AccountId>().is_err());
        assert!("zz".repeat(16).parse::<AccountId>().is_err());
    }

    #[test]
    fn derivation_separates_inputs() {
        let (a, b) = (AccountId([1; 16]), AccountId([2; 16]));
        assert_ne!(
            MessageId::derive(a, b, &[1; 16]),
            MessageId::derive(b, a, &[1; 16])
        );
        assert_ne!(
            MessageId::derive(a, b, &[1; 16]),
            MessageId::derive(a, b, &[2; 16])
        );
        assert_eq!(
            MessageId::derive(a, b, &[1; 16]),
            MessageId::derive(a, b, &[1; 16])
        );
        assert_ne!(
            AccountId::derive("ab", &[1; 16]),
            AccountId::derive("ba", &[1; 16])
        );
    }
}
