//! Values stored in the state tables (see `keys`), encoded with postcard.
//!
//! Encodings must be canonical: two replicas that reached the same state by
//! different orders of application must store the same bytes, because the
//! state digest hashes them. Hence no hash maps, and lists kept sorted.

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use super::kv::StorageError;
use crate::entry::Stamp;
use crate::ids::AccountId;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountRecord {
    /// As registered (case preserved). Empty while only a deletion is known.
    pub username: String,
    /// Argon2id PHC string; cleared when the account is deleted.
    pub password_hash: String,
    /// Stamp of the (earliest) entry that created the account; `None` while
    /// only a deletion is known (entries of different origins may arrive in
    /// any order).
    pub created: Option<Stamp>,
    pub deleted: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MessageSlot {
    /// Stored; the record itself (with the body) is the value of its
    /// history-index key, so a history page is one range scan.
    Live(MessageMeta),
    /// Deleted for good: the body is gone; the parties stay so that a retried
    /// delete by either of them is recognised as already done.
    Deleted {
        sender: AccountId,
        recipient: AccountId,
    },
    /// Marks that arrived (from another origin) before the message itself.
    /// Sorted by account, at most one per account.
    Pending(Vec<PendingMark>),
}

/// What the message slot keeps of a stored message: enough to find its
/// record and to check who may mark or delete it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageMeta {
    pub sender: AccountId,
    pub recipient: AccountId,
    pub stamp: Stamp,
    pub read: bool,
}

/// A stored message, the value of its history-index key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRecord {
    pub sender: AccountId,
    pub recipient: AccountId,
    pub body: String,
    /// Stamp of the (earliest) entry that sent it; `stamp.hlc` orders it.
    pub stamp: Stamp,
    pub read: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingMark {
    pub account: AccountId,
    pub read: bool,
    pub delete: bool,
}

impl MessageRecord {
    pub fn meta(&self) -> MessageMeta {
        MessageMeta {
            sender: self.sender,
            recipient: self.recipient,
            stamp: self.stamp,
            read: self.read,
        }
    }
}

/// One side of a conversation: what `account` sees of its exchange with
/// `peer` (the key).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversation {
    /// Messages in both directions.
    pub total: u64,
    /// Messages from the peer this account has not read.
    pub unread: u64,
    /// Position (hlc, message id) of the newest message.
    pub last: Option<(u64, crate::ids::MessageId)>,
}

/// Which `ChangePassword` entry an account's hash (in its `a` record) came
/// from: the value of its `p` key. Changes compete by `(version, stamp)`
/// (`state::apply`, "passwords").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordInForce {
    pub version: u64,
    pub stamp: Stamp,
}

impl PasswordInForce {
    /// What a competing change is compared by: the higher wins.
    pub fn rank(&self) -> (u64, Stamp) {
        (self.version, self.stamp)
    }

    /// A bare `Stamp` when the version is 0 (changes logged before versions,
    /// log format 3), the stamp followed by the version otherwise: so a
    /// state written by an earlier build and one rebuilt from the same log
    /// hold the same bytes, as the state digest needs.
    pub fn encode(&self) -> Vec<u8> {
        if self.version == 0 {
            encode(&self.stamp)
        } else {
            encode(&(self.stamp, self.version))
        }
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, StorageError> {
        let corrupt = |e: postcard::Error| StorageError::Corrupt(e.to_string());
        let (stamp, rest) = postcard::take_from_bytes::<Stamp>(bytes).map_err(corrupt)?;
        let version = if rest.is_empty() {
            0
        } else {
            match postcard::take_from_bytes::<u64>(rest).map_err(corrupt)? {
                (v, []) if v > 0 => v,
                _ => {
                    return Err(StorageError::Corrupt(
                        "a password record with a zero version or trailing bytes".into(),
                    ));
                }
            }
        };
        Ok(Self { version, stamp })
    }
}

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_allocvec(value).expect("postcard encodes our records into a Vec infallibly")
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StorageError> {
    postcard::from_bytes(bytes).map_err(|e| StorageError::Corrupt(e.to_string()))
}
