//! Checking a client's mutation against the state of the replica that
//! accepts it, before it becomes a log entry.
//!
//! This is where business rules live (a username is free, the recipient
//! exists, you may only delete your own mail): once an entry is in the log,
//! `apply` trusts it, on every replica. The writer runs `check` and `apply`
//! back to back for each command of a batch, so a check always sees the
//! effect of the commands before it.
//!
//! `check` also makes retries idempotent: a command whose effect is already
//! in the state (same request id) is answered as done without a new entry.

use chat_shared::validate::normalize_username;

use super::kv::{KvRead, StorageError};
use super::query;
use super::records::MessageSlot;
use crate::entry::Op;
use crate::ids::{AccountId, MessageId, RequestId};

/// A mutation requested by a client, already validated for syntax and limits
/// and authenticated; ids derived from the request are computed by `check`.
#[derive(Debug, Clone)]
pub enum Command {
    CreateAccount {
        username: String,
        password_hash: String,
    },
    SendMessage {
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
        /// The hash the caller's session was checked against: the change
        /// replaces that password or none (`CommandError::PasswordChanged`).
        replaces: String,
    },
}

/// What to do with a command that passed its checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checked {
    /// Log and apply this operation.
    Apply(Op),
    /// The state already reflects the command (a retry, or nothing to
    /// change): answer without logging anything.
    AlreadyDone,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("username '{0}' is already taken")]
    UsernameTaken(String),
    #[error("no account with id {0}")]
    UnknownAccount(AccountId),
    #[error("account '{0}' has been deleted")]
    AccountDeleted(String),
    #[error("you cannot send a message to yourself")]
    MessageToSelf,
    #[error("message {0} not found")]
    UnknownMessage(MessageId),
    #[error("message {0} was sent by you; only its recipient can mark it read")]
    NotRecipient(MessageId),
    #[error("this request id was already used for a different message")]
    RequestIdReused,
    /// The caller's own account is gone by the time its command reaches the
    /// writer (deleted, or its name lost, in a batch after the session was
    /// checked): the session has ended.
    #[error("this session has ended: its account has been deleted")]
    CallerGone,
    /// The password the caller's session was checked against is no longer
    /// in force by the time its change reaches the writer: another change
    /// (perhaps this request's own earlier try, relayed) came in between.
    #[error(
        "this session has ended because the account's password was changed or another device signed it out"
    )]
    PasswordChanged,
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// The session was checked against a snapshot before the command was
/// queued; the writer checks again that the caller's account is still
/// there, since a deletion (local or relayed) may have been applied in
/// between -- in the same batch, even.
fn caller_active(kv: &impl KvRead, account: AccountId) -> Result<(), CommandError> {
    match query::account_status(kv, account)? {
        query::AccountStatus::Active(_) => Ok(()),
        _ => Err(CommandError::CallerGone),
    }
}

pub fn check(
    command: &Command,
    request_id: &RequestId,
    kv: &impl KvRead,
) -> Result<Checked, CommandError> {
    match command {
        Command::CreateAccount {
            username,
            password_hash,
        } => {
            let norm = normalize_username(username);
            let account = AccountId::derive(&norm, request_id);
            let owner = query::name_owner(kv, &norm)?;
            if query::account(kv, account)?.is_some_and(|r| r.created.is_some()) {
                // A retry of a creation that was applied.
                return if owner == Some(account) {
                    Ok(Checked::AlreadyDone)
                } else {
                    Err(CommandError::UsernameTaken(username.clone()))
                };
            }
            if owner.is_some() {
                return Err(CommandError::UsernameTaken(username.clone()));
            }
            Ok(Checked::Apply(Op::CreateAccount {
                account,
                username: username.clone(),
                password_hash: password_hash.clone(),
            }))
        }
        Command::SendMessage {
            sender,
            recipient,
            body,
        } => {
            if sender == recipient {
                return Err(CommandError::MessageToSelf);
            }
            // An earlier attempt that was stored is the answer, whatever
            // became of the recipient since: refusing it would tell the
            // client "not sent" about a message that is there.
            let message = MessageId::derive(*sender, *recipient, request_id);
            match query::message(kv, message)? {
                Some(MessageSlot::Live(_)) => {
                    return match query::live_message(kv, message)? {
                        Some(rec) if rec.body == *body => Ok(Checked::AlreadyDone),
                        _ => Err(CommandError::RequestIdReused),
                    };
                }
                Some(MessageSlot::Deleted { .. }) => return Ok(Checked::AlreadyDone),
                Some(MessageSlot::Pending(_)) | None => {}
            }
            match query::account_status(kv, *recipient)? {
                query::AccountStatus::Active(_) => {}
                query::AccountStatus::Deleted(rec) => {
                    return Err(CommandError::AccountDeleted(rec.username));
                }
                query::AccountStatus::Unknown | query::AccountStatus::LostName(_) => {
                    return Err(CommandError::UnknownAccount(*recipient));
                }
            }
            caller_active(kv, *sender)?;
            Ok(Checked::Apply(Op::SendMessage {
                message,
                sender: *sender,
                recipient: *recipient,
                body: body.clone(),
            }))
        }
        Command::MarkRead { account, messages } => {
            let mut effective = Vec::new();
            for &id in messages {
                match query::message(kv, id)? {
                    Some(MessageSlot::Live(rec)) if rec.recipient == *account => {
                        if !rec.read && !effective.contains(&id) {
                            effective.push(id);
                        }
                    }
                    Some(MessageSlot::Live(rec)) if rec.sender == *account => {
                        return Err(CommandError::NotRecipient(id));
                    }
                    // Deleted meanwhile (by the other party, say): nothing to mark.
                    Some(MessageSlot::Deleted { sender, recipient })
                        if sender == *account || recipient == *account => {}
                    _ => return Err(CommandError::UnknownMessage(id)),
                }
            }
            if !effective.is_empty() {
                caller_active(kv, *account)?;
            }
            Ok(if effective.is_empty() {
                Checked::AlreadyDone
            } else {
                Checked::Apply(Op::MarkRead {
                    account: *account,
                    messages: effective,
                })
            })
        }
        Command::DeleteMessages { account, messages } => {
            let mut effective = Vec::new();
            for &id in messages {
                match query::message(kv, id)? {
                    Some(MessageSlot::Live(rec))
                        if rec.sender == *account || rec.recipient == *account =>
                    {
                        if !effective.contains(&id) {
                            effective.push(id);
                        }
                    }
                    // Already gone (a retry, or the other party was faster).
                    Some(MessageSlot::Deleted { sender, recipient })
                        if sender == *account || recipient == *account => {}
                    _ => return Err(CommandError::UnknownMessage(id)),
                }
            }
            if !effective.is_empty() {
                caller_active(kv, *account)?;
            }
            Ok(if effective.is_empty() {
                Checked::AlreadyDone
            } else {
                Checked::Apply(Op::DeleteMessages {
                    account: *account,
                    messages: effective,
                })
            })
        }
        Command::DeleteAccount { account } => match query::account(kv, *account)? {
            Some(rec) if rec.created.is_some() && !rec.deleted => {
                Ok(Checked::Apply(Op::DeleteAccount { account: *account }))
            }
            Some(rec) if rec.deleted => Ok(Checked::AlreadyDone),
            _ => Err(CommandError::UnknownAccount(*account)),
        },
        Command::ChangePassword {
            account,
            password_hash,
            replaces,
        } => match query::account_status(kv, *account)? {
            // A change replaces the password it was authorised under, or
            // none: checked here, where no other change can come in
            // between, and recorded as the version it ranks by.
            query::AccountStatus::Active(rec) if rec.password_hash != *replaces => {
                Err(CommandError::PasswordChanged)
            }
            query::AccountStatus::Active(_) => Ok(Checked::Apply(Op::ChangePassword {
                account: *account,
                password_hash: password_hash.clone(),
                version: query::password_in_force(kv, *account)?
                    .map_or(0, |p| p.version)
                    .saturating_add(1),
            })),
            query::AccountStatus::Deleted(rec) => Err(CommandError::AccountDeleted(rec.username)),
            query::AccountStatus::Unknown | query::AccountStatus::LostName(_) => {
                Err(CommandError::UnknownAccount(*account))
            }
        },
    }
}
