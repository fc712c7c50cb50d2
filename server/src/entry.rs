//! The log entry: one mutation, stamped where it was accepted.
//!
//! [`Entry`] is the typed form the state machine applies; on disk and on the
//! wire an entry is the protobuf `chat.replication.v1.Entry`, so the log
//! format and the replication format are one and the same.

use prost::Message;

use crate::ids::{AccountId, MessageId, RequestId};
use crate::proto::replication as pb;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Replica that accepted the mutation.
    pub origin: u32,
    /// Position in the origin's log, from 1 without gaps.
    pub seq: u64,
    /// Hybrid logical clock timestamp (see `hlc`).
    pub hlc: u64,
    pub request_id: RequestId,
    pub op: Op,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    CreateAccount {
        account: AccountId,
        username: String,
        password_hash: String,
    },
    SendMessage {
        message: MessageId,
        sender: AccountId,
        recipient: AccountId,
        body: String,
    },
    MarkRead {
        account: AccountId,
        messages: Vec<MessageId>,
    },
    DeleteMessages {
        account: AccountId,
        messages: Vec<MessageId>,
    },
    DeleteAccount {
        account: AccountId,
    },
}

/// Total order on entries used wherever two entries compete for the same
/// thing (a username, a message id): the lower stamp wins. Every replica
/// compares the same numbers, so every replica picks the same winner.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct Stamp {
    pub hlc: u64,
    pub origin: u32,
    pub seq: u64,
}

impl Entry {
    pub fn stamp(&self) -> Stamp {
        Stamp {
            hlc: self.hlc,
            origin: self.origin,
            seq: self.seq,
        }
    }

    pub fn to_proto(&self) -> pb::Entry {
        use pb::entry::Op as P;
        let ids = |v: &[MessageId]| v.iter().map(|m| m.0.to_vec()).collect();
        let op = match &self.op {
            Op::CreateAccount {
                account,
                username,
                password_hash,
            } => P::CreateAccount(pb::CreateAccount {
                account_id: account.0.to_vec(),
                username: username.clone(),
                password_hash: password_hash.clone(),
            }),
            Op::SendMessage {
                message,
                sender,
                recipient,
                body,
            } => P::SendMessage(pb::SendMessage {
                message_id: message.0.to_vec(),
                sender_id: sender.0.to_vec(),
                recipient_id: recipient.0.to_vec(),
                body: body.clone(),
            }),
            Op::MarkRead { account, messages } => P::MarkRead(pb::MarkRead {
                account_id: account.0.to_vec(),
                message_ids: ids(messages),
            }),
            Op::DeleteMessages { account, messages } => P::DeleteMessages(pb::DeleteMessages {
                account_id: account.0.to_vec(),
                message_ids: ids(messages),
            }),
            Op::DeleteAccount { account } => P::DeleteAccount(pb::DeleteAccount {
                account_id: account.0.to_vec(),
            }),
        };
        pb::Entry {
            origin: self.origin,
            seq: self.seq,
            hlc: self.hlc,
            request_id: self.request_id.to_vec(),
            op: Some(op),
        }
    }

    pub fn from_proto(p: pb::Entry) -> Result<Self, EntryError> {
        use pb::entry::Op as P;
        let account = |b: &[u8]| AccountId::from_slice(b).ok_or(EntryError::BadId);
        let message = |b: &[u8]| MessageId::from_slice(b).ok_or(EntryError::BadId);
        let messages = |v: &[Vec<u8>]| v.iter().map(|b| message(b)).collect::<Result<Vec<_>, _>>();
        let op = match p.op.ok_or(EntryError::MissingOp)? {
            P::CreateAccount(c) => Op::CreateAccount {
                account: account(&c.account_id)?,
                username: c.username,
                password_hash: c.password_hash,
            },
            P::SendMessage(s) => Op::SendMessage {
                message: message(&s.message_id)?,
                sender: account(&s.sender_id)?,
                recipient: account(&s.recipient_id)?,
                body: s.body,
            },
            P::MarkRead(m) => Op::MarkRead {
                account: account(&m.account_id)?,
                messages: messages(&m.message_ids)?,
            },
            P::DeleteMessages(d) => Op::DeleteMessages {
                account: account(&d.account_id)?,
                messages: messages(&d.message_ids)?,
            },
            P::DeleteAccount(d) => Op::DeleteAccount {
                account: account(&d.account_id)?,
            },
        };
        Ok(Self {
            origin: p.origin,
            seq: p.seq,
            hlc: p.hlc,
            request_id: p
                .request_id
                .as_slice()
                .try_into()
                .map_err(|_| EntryError::BadRequestId)?,
            op,
        })
    }

    /// Rough size of the entry's variable part, for batching limits.
    pub fn body_len(&self) -> usize {
        64 + match &self.op {
            Op::CreateAccount {
                username,
                password_hash,
                ..
            } => username.len() + password_hash.len(),
            Op::SendMessage { body, .. } => body.len(),
            Op::MarkRead { messages, .. } | Op::DeleteMessages { messages, .. } => {
                16 * messages.len()
            }
            Op::DeleteAccount { .. } => 0,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        self.to_proto().encode_to_vec()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, EntryError> {
        Self::from_proto(pb::Entry::decode(bytes).map_err(|e| EntryError::Decode(e.to_string()))?)
    }
}

/// An entry from disk or from a peer that does not make sense.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    #[error("entry is not valid protobuf: {0}")]
    Decode(String),
    #[error("entry has no operation")]
    MissingOp,
    #[error("entry has an id that is not 16 bytes")]
    BadId,
    #[error("entry has a request id that is not 16 bytes")]
    BadRequestId,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proto_round_trip() {
        let ops = [
            Op::CreateAccount {
                account: AccountId([1; 16]),
                username: "Bob".into(),
                password_hash: "$argon2id$...".into(),
            },
            Op::SendMessage {
                message: MessageId([2; 16]),
                sender: AccountId([1; 16]),
                recipient: AccountId([3; 16]),
                body: "hi".into(),
            },
            Op::MarkRead {
                account: AccountId([3; 16]),
                messages: vec![MessageId([2; 16])],
            },
            Op::DeleteMessages {
                account: AccountId([3; 16]),
                messages: vec![MessageId([2; 16]), MessageId([4; 16])],
            },
            Op::DeleteAccount {
                account: AccountId([1; 16]),
            },
        ];
        for (i, op) in ops.into_iter().enumerate() {
            let e = Entry {
                origin: 3,
                seq: i as u64 + 1,
                hlc: 99,
                request_id: [5; 16],
                op,
            };
            assert_eq!(Entry::decode(&e.encode()), Ok(e));
        }
        assert!(Entry::decode(&[0xff, 0xff]).is_err());
    }
}
