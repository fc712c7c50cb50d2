//! The log entry: one mutation, stamped where it was accepted.
//!
//! [`Entry`] is the typed form the state machine applies; on disk and on the
//! wire an entry is the protobuf `chat.replication.v1.Entry`, so the log
//! format and the replication format are one and the same.

use prost::Message;

/// Version of the entry format: 1 added the erased forms (`ErasedSend`,
/// `ErasedCreateAccount`, `Superseded`); 2 made an entry's origin a replica's
/// incarnation, not always its id (`origin`); 3 added `ChangePassword` and
/// `ErasedChangePassword`; 4 gave `ChangePassword` a `version`. Replicas
/// exchange it when they introduce themselves and refuse a peer that writes
/// another one, since that peer could not read, or would be sent, entries
/// it does not know. (A replica reads the logs of every earlier format: each
/// only added operations or fields.)
pub const LOG_FORMAT: u32 = 4;

use crate::ids::{AccountId, MessageId, RequestId};
use crate::proto::replication as pb;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Replica that accepted the mutation, and which incarnation of it
    /// (`crate::origin`).
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
    ChangePassword {
        account: AccountId,
        password_hash: String,
        /// One more than the version of the password in force where the
        /// change was accepted (0 in entries of log format 3): see
        /// `state::apply`, "passwords".
        version: u64,
    },
    /// A `SendMessage` rewritten once its message was deleted: no body.
    ErasedSend {
        message: MessageId,
        sender: AccountId,
        recipient: AccountId,
    },
    /// A `CreateAccount` rewritten once its account was deleted: no password
    /// hash.
    ErasedCreateAccount {
        account: AccountId,
        username: String,
    },
    /// A `ChangePassword` rewritten once its account was deleted: no
    /// password hash.
    ErasedChangePassword {
        account: AccountId,
    },
    /// A retried `SendMessage` or `CreateAccount` whose effect another entry
    /// of the same request carries, or a `ChangePassword` replaced by a later
    /// one: applies as nothing.
    Superseded,
}

/// Why a logged entry must be rewritten without its private content (see
/// `state::apply`, which decides, and `Entry::erase`, which rewrites).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Erasure {
    /// The message the entry sent, or the account it created, was deleted.
    Deleted(Stamp),
    /// Another entry of the same request, with a lower stamp, carries the
    /// entry's effect.
    Superseded(Stamp),
    /// The account's password was changed by a later entry: the password
    /// hash the entry carries is no longer anyone's.
    Replaced(Stamp),
}

impl Erasure {
    pub fn stamp(&self) -> Stamp {
        match self {
            Erasure::Deleted(s) | Erasure::Superseded(s) | Erasure::Replaced(s) => *s,
        }
    }
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

    /// Rewrites the entry without what `why` says it may no longer hold.
    /// Returns whether anything changed. Only entries that carry private
    /// content (a body, a password hash) change; erasing an entry twice, or
    /// an entry of another kind, leaves it as it is. Origin, seq, hlc and
    /// request id never change: the log keeps its shape.
    pub fn erase(&mut self, why: Erasure) -> bool {
        let erased = match (&self.op, why) {
            (
                Op::SendMessage {
                    message,
                    sender,
                    recipient,
                    ..
                },
                Erasure::Deleted(_),
            ) => Op::ErasedSend {
                message: *message,
                sender: *sender,
                recipient: *recipient,
            },
            (
                Op::CreateAccount {
                    account, username, ..
                },
                Erasure::Deleted(_),
            ) => Op::ErasedCreateAccount {
                account: *account,
                username: username.clone(),
            },
            (Op::SendMessage { .. } | Op::CreateAccount { .. }, Erasure::Superseded(_)) => {
                Op::Superseded
            }
            (Op::ChangePassword { account, .. }, Erasure::Deleted(_)) => {
                Op::ErasedChangePassword { account: *account }
            }
            (Op::ChangePassword { .. }, Erasure::Replaced(_)) => Op::Superseded,
            // The creation stays (it holds the account's name and creation
            // time); only its hash goes.
            (
                Op::CreateAccount {
                    account,
                    username,
                    password_hash,
                },
                Erasure::Replaced(_),
            ) if !password_hash.is_empty() => Op::CreateAccount {
                account: *account,
                username: username.clone(),
                password_hash: String::new(),
            },
            _ => return false,
        };
        self.op = erased;
        true
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
            Op::ChangePassword {
                account,
                password_hash,
                version,
            } => P::ChangePassword(pb::ChangePassword {
                account_id: account.0.to_vec(),
                password_hash: password_hash.clone(),
                version: *version,
            }),
            Op::ErasedChangePassword { account } => {
                P::ErasedChangePassword(pb::ErasedChangePassword {
                    account_id: account.0.to_vec(),
                })
            }
            Op::ErasedSend {
                message,
                sender,
                recipient,
            } => P::ErasedSend(pb::ErasedSend {
                message_id: message.0.to_vec(),
                sender_id: sender.0.to_vec(),
                recipient_id: recipient.0.to_vec(),
            }),
            Op::ErasedCreateAccount { account, username } => {
                P::ErasedCreateAccount(pb::ErasedCreateAccount {
                    account_id: account.0.to_vec(),
                    username: username.clone(),
                })
            }
            Op::Superseded => P::Superseded(pb::Superseded {}),
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
            P::ChangePassword(c) => Op::ChangePassword {
                account: account(&c.account_id)?,
                password_hash: c.password_hash,
                version: c.version,
            },
            P::ErasedChangePassword(c) => Op::ErasedChangePassword {
                account: account(&c.account_id)?,
            },
            P::ErasedSend(s) => Op::ErasedSend {
                message: message(&s.message_id)?,
                sender: account(&s.sender_id)?,
                recipient: account(&s.recipient_id)?,
            },
            P::ErasedCreateAccount(c) => Op::ErasedCreateAccount {
                account: account(&c.account_id)?,
                username: c.username,
            },
            P::Superseded(pb::Superseded {}) => Op::Superseded,
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
            Op::ErasedCreateAccount { username, .. } => username.len(),
            Op::ChangePassword { password_hash, .. } => password_hash.len(),
            Op::DeleteAccount { .. }
            | Op::ErasedSend { .. }
            | Op::ErasedChangePassword { .. }
            | Op::Superseded => 0,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        self.to_proto().encode_to_vec()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, EntryError> {
        Self::from_proto(pb::Entry::decode(bytes).map_err(|e| EntryError::Decode(e.to_string()))?)
    }

    /// An entry a peer sent: well-formed, and consistent the way the client
    /// API makes every entry it accepts (see [`Entry::check_consistent`]).
    pub fn from_peer(p: pb::Entry) -> Result<Self, EntryError> {
        let entry = Self::from_proto(p)?;
        entry.check_consistent()?;
        Ok(entry)
    }

    /// What the client API checks before it logs an entry, checked again on
    /// entries that come from peers: an id derived from what it names
    /// (`crate::ids`: a username and request id, or the two parties and the
    /// request id), a valid username, a message body within the limits, at
    /// most `IDS_PER_REQUEST_MAX` message ids. A peer is authenticated, so
    /// this guards against a faulty build or a corrupt log rather than an
    /// attacker -- an entry that breaks it would be applied, relayed and
    /// kept on every replica for good. (Not checked on reading the own log:
    /// what is stored was checked on its way in.)
    pub fn check_consistent(&self) -> Result<(), EntryError> {
        use chat_shared::limits::IDS_PER_REQUEST_MAX;
        use chat_shared::validate;
        let invalid = |why: String| {
            Err(EntryError::Inconsistent(format!(
                "entry {} of origin {}: {why}",
                self.seq, self.origin
            )))
        };
        let message_id = |message: &MessageId, sender: &AccountId, recipient: &AccountId| {
            if *message == MessageId::derive(*sender, *recipient, &self.request_id) {
                Ok(())
            } else {
                invalid(format!(
                    "message {message} is not the id its parties and request id give"
                ))
            }
        };
        match &self.op {
            Op::CreateAccount {
                account, username, ..
            }
            | Op::ErasedCreateAccount { account, username } => {
                if let Err(e) = validate::username(username) {
                    return invalid(format!("account {account}: {e}"));
                }
                let derived =
                    AccountId::derive(&validate::normalize_username(username), &self.request_id);
                if *account != derived {
                    return invalid(format!(
                        "account {account} is not the id its username and request id give"
                    ));
                }
            }
            Op::SendMessage {
                message,
                sender,
                recipient,
                body,
            } => {
                if let Err(e) = validate::message_body(body) {
                    return invalid(format!("message {message}: {e}"));
                }
                message_id(message, sender, recipient)?;
            }
            Op::ErasedSend {
                message,
                sender,
                recipient,
            } => message_id(message, sender, recipient)?,
            Op::MarkRead { messages, .. } | Op::DeleteMessages { messages, .. }
                if messages.len() > IDS_PER_REQUEST_MAX =>
            {
                return invalid(format!(
                    "{} message ids in one entry; at most {IDS_PER_REQUEST_MAX}",
                    messages.len()
                ));
            }
            _ => {}
        }
        Ok(())
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
    #[error("entry is inconsistent: {0}")]
    Inconsistent(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_from_peers_must_be_consistent() {
        let rid = [5; 16];
        let entry = |op: Op| Entry {
            origin: 2,
            seq: 1,
            hlc: 1 << 16,
            request_id: rid,
            op,
        };
        let bob = AccountId::derive("bob", &rid);
        let ann = AccountId([1; 16]);
        let send = |message, body: &str| Op::SendMessage {
            message,
            sender: ann,
            recipient: bob,
            body: body.into(),
        };
        let good = [
            Op::CreateAccount {
                account: bob,
                username: "Bob".into(),
                password_hash: String::new(),
            },
            Op::ErasedCreateAccount {
                account: bob,
                username: "bob".into(),
            },
            send(MessageId::derive(ann, bob, &rid), "hi"),
            Op::ErasedSend {
                message: MessageId::derive(ann, bob, &rid),
                sender: ann,
                recipient: bob,
            },
            Op::MarkRead {
                account: bob,
                messages: vec![MessageId([3; 16]); 500],
            },
            Op::DeleteAccount { account: ann },
        ];
        for op in good {
            let e = entry(op);
            assert_eq!(Entry::from_peer(e.to_proto()), Ok(e));
        }
        let bad = [
            // Another name's id, or another request's.
            Op::CreateAccount {
                account: bob,
                username: "bobby".into(),
                password_hash: String::new(),
            },
            Op::CreateAccount {
                account: AccountId::derive("bob", &[6; 16]),
                username: "bob".into(),
                password_hash: String::new(),
            },
            Op::CreateAccount {
                account: AccountId::derive("b b", &rid),
                username: "b b".into(),
                password_hash: String::new(),
            },
            send(MessageId([9; 16]), "hi"),
            send(MessageId::derive(bob, ann, &rid), "hi"),
            send(MessageId::derive(ann, bob, &rid), " "),
            send(MessageId::derive(ann, bob, &rid), &"x".repeat(4097)),
            Op::ErasedSend {
                message: MessageId([9; 16]),
                sender: ann,
                recipient: bob,
            },
            Op::DeleteMessages {
                account: bob,
                messages: vec![MessageId([3; 16]); 501],
            },
        ];
        for op in bad {
            let e = entry(op);
            assert!(
                matches!(
                    Entry::from_peer(e.to_proto()),
                    Err(EntryError::Inconsistent(_))
                ),
                "{e:?}"
            );
            // Read from the own log, it decodes (checked on its way in).
            assert_eq!(Entry::decode(&e.encode()), Ok(e));
        }
    }

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
            Op::ErasedSend {
                message: MessageId([2; 16]),
                sender: AccountId([1; 16]),
                recipient: AccountId([3; 16]),
            },
            Op::ErasedCreateAccount {
                account: AccountId([1; 16]),
                username: "Bob".into(),
            },
            Op::ChangePassword {
                account: AccountId([1; 16]),
                password_hash: "$argon2id$new".into(),
                version: 2,
            },
            Op::ErasedChangePassword {
                account: AccountId([1; 16]),
            },
            Op::Superseded,
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

    /// The stamp named by the erasures below (its entry's own).
    const AT: Stamp = Stamp {
        hlc: 99,
        origin: 3,
        seq: 7,
    };

    fn entry(op: Op) -> Entry {
        Entry {
            origin: AT.origin,
            seq: AT.seq,
            hlc: AT.hlc,
            request_id: [5; 16],
            op,
        }
    }

    #[test]
    fn erasing_drops_the_private_content_and_keeps_the_position() {
        let at = AT;
        let (ann, bob, m) = (AccountId([1; 16]), AccountId([3; 16]), MessageId([2; 16]));
        let send = entry(Op::SendMessage {
            message: m,
            sender: ann,
            recipient: bob,
            body: "secret".into(),
        });
        let create = entry(Op::CreateAccount {
            account: ann,
            username: "Ann".into(),
            password_hash: "$argon2id$secret".into(),
        });

        let mut e = send.clone();
        assert!(e.erase(Erasure::Deleted(at)));
        let erased_send = Op::ErasedSend {
            message: m,
            sender: ann,
            recipient: bob,
        };
        assert_eq!(e, entry(erased_send.clone()));
        assert!(
            !e.erase(Erasure::Deleted(at)),
            "erasing twice changes nothing"
        );
        assert!(
            !e.erase(Erasure::Superseded(at)),
            "an erased send stays one"
        );

        let mut e = create.clone();
        assert!(e.erase(Erasure::Deleted(at)));
        assert_eq!(
            e.op,
            Op::ErasedCreateAccount {
                account: ann,
                username: "Ann".into()
            }
        );
        let encoded = e.encode();
        assert!(!encoded.windows(6).any(|w| w == b"secret"));

        for original in [send, create] {
            let mut e = original;
            assert!(e.erase(Erasure::Superseded(at)));
            assert_eq!(e, entry(Op::Superseded));
            assert!(!e.erase(Erasure::Deleted(at)));
        }

        let mut mark = entry(Op::MarkRead {
            account: bob,
            messages: vec![m],
        });
        let before = mark.clone();
        assert!(!mark.erase(Erasure::Deleted(at)));
        assert_eq!(mark, before);
    }

    #[test]
    fn a_replaced_password_leaves_the_log() {
        let at = AT;
        let ann = AccountId([1; 16]);
        let change = entry(Op::ChangePassword {
            account: ann,
            password_hash: "$argon2id$secret".into(),
            version: 1,
        });
        let create = entry(Op::CreateAccount {
            account: ann,
            username: "Ann".into(),
            password_hash: "$argon2id$secret".into(),
        });

        // A creation keeps its place and name, without the hash.
        let mut e = create.clone();
        assert!(e.erase(Erasure::Replaced(at)));
        assert_eq!(
            e.op,
            Op::CreateAccount {
                account: ann,
                username: "Ann".into(),
                password_hash: String::new(),
            }
        );
        assert!(
            !e.erase(Erasure::Replaced(at)),
            "erasing twice changes nothing"
        );
        assert!(!e.encode().windows(6).any(|w| w == b"secret"));
        // ... and is still erased in full when the account goes.
        assert!(e.erase(Erasure::Deleted(at)));
        assert!(matches!(e.op, Op::ErasedCreateAccount { .. }));

        let mut e = change.clone();
        assert!(e.erase(Erasure::Replaced(at)));
        assert_eq!(e.op, Op::Superseded);
        let mut e = change;
        assert!(e.erase(Erasure::Deleted(at)));
        assert_eq!(e.op, Op::ErasedChangePassword { account: ann });
        assert!(!e.erase(Erasure::Replaced(at)));
        assert!(!e.encode().windows(6).any(|w| w == b"secret"));
    }
}
