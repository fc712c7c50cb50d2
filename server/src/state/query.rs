//! Read-side queries over the materialized state: what the client API's
//! read calls, the authenticator and the command checks ask.
//!
//! Every page is a bounded range scan over an index kept in the order the
//! page is served in, so a cursor is just the last position served and paging
//! never skips or repeats an item that stays put.

use chat_shared::validate::normalize_username;
use chat_shared::wildcard;

use super::keys;
use super::kv::{KvRead, StorageError};
use super::records::{
    AccountRecord, Conversation, MessageRecord, MessageSlot, PasswordInForce, decode,
};
use crate::ids::{AccountId, MessageId};

/// Most username-index keys one `list_accounts` call examines. A pattern
/// that matches rarely returns a short page (with a cursor) instead of
/// scanning every account in one request.
pub const ACCOUNT_SCAN_BUDGET: usize = 10_000;

fn get<T: serde::de::DeserializeOwned>(
    kv: &impl KvRead,
    key: &[u8],
) -> Result<Option<T>, StorageError> {
    kv.get(key)?.map(|v| decode(&v)).transpose()
}

pub fn account(kv: &impl KvRead, id: AccountId) -> Result<Option<AccountRecord>, StorageError> {
    get(kv, &keys::account(id))
}

/// The account that owns a (normalized) username, if any.
pub fn name_owner(kv: &impl KvRead, normalized: &str) -> Result<Option<AccountId>, StorageError> {
    Ok(kv
        .get(&keys::name(normalized))?
        .and_then(|v| AccountId::from_slice(&v)))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountStatus {
    Active(AccountRecord),
    Deleted(AccountRecord),
    /// Registered concurrently with another account of the same name on
    /// another replica, and the other registration won.
    LostName(AccountRecord),
    Unknown,
}

/// The password change whose hash is in force, if any (else the
/// creation's is).
pub fn password_in_force(
    kv: &impl KvRead,
    account: AccountId,
) -> Result<Option<PasswordInForce>, StorageError> {
    kv.get(&keys::password_change(account))?
        .map(|v| PasswordInForce::decode(&v))
        .transpose()
}

pub fn account_status(kv: &impl KvRead, id: AccountId) -> Result<AccountStatus, StorageError> {
    let Some(rec) = account(kv, id)? else {
        return Ok(AccountStatus::Unknown);
    };
    if rec.created.is_none() {
        return Ok(AccountStatus::Unknown);
    }
    if rec.deleted {
        return Ok(AccountStatus::Deleted(rec));
    }
    if name_owner(kv, &normalize_username(&rec.username))? != Some(id) {
        return Ok(AccountStatus::LostName(rec));
    }
    Ok(AccountStatus::Active(rec))
}

/// Every account that ever claimed a username: the owner, and registrations
/// that lost a concurrent race for it.
pub fn claimants(
    kv: &impl KvRead,
    normalized: &str,
) -> Result<Vec<(AccountId, AccountRecord)>, StorageError> {
    let prefix = keys::claims_prefix(normalized);
    let mut out = Vec::new();
    for pair in kv.range(&prefix, &keys::prefix_end(&prefix), false) {
        let (k, _) = pair?;
        if let Some(id) = keys::claim_account(&k)
            && let Some(rec) = account(kv, id)?
        {
            out.push((id, rec));
        }
    }
    Ok(out)
}

/// A page of accounts and the cursor (last name examined) for the next.
pub type AccountPage = (Vec<(AccountId, AccountRecord)>, Option<String>);

/// One page of live accounts whose username matches `pattern`, in
/// normalized-username order, after the normalized username `after`.
/// Returns the page and the cursor for the next one (`None` at the end).
pub fn list_accounts(
    kv: &impl KvRead,
    pattern: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<AccountPage, StorageError> {
    let literal = wildcard::literal_prefix(pattern);
    let scan_prefix = keys::name(&literal);
    let end = keys::prefix_end(&scan_prefix);
    let start = match after {
        // Just past `after`: the same name followed by the lowest byte.
        Some(a) => {
            let mut s = keys::name(a);
            s.push(0);
            s.max(scan_prefix.clone())
        }
        None => scan_prefix.clone(),
    };
    let mut page = Vec::new();
    let mut last_seen = None;
    for (examined, pair) in kv.range(&start, &end, false).enumerate() {
        if page.len() == limit || examined == ACCOUNT_SCAN_BUDGET {
            // More may follow: resume after the last name examined.
            return Ok((page, last_seen));
        }
        let (k, v) = pair?;
        let name = String::from_utf8_lossy(&k[1..]).into_owned();
        if wildcard::matches(pattern, &name)
            && let Some(id) = AccountId::from_slice(&v)
            && let Some(rec) = account(kv, id)?
            && !rec.deleted
        {
            page.push((id, rec));
        }
        last_seen = Some(name);
    }
    Ok((page, None))
}

pub fn message(kv: &impl KvRead, id: MessageId) -> Result<Option<MessageSlot>, StorageError> {
    get(kv, &keys::message(id))
}

/// A stored, undeleted message.
pub fn live_message(
    kv: &impl KvRead,
    id: MessageId,
) -> Result<Option<MessageRecord>, StorageError> {
    match message(kv, id)? {
        Some(MessageSlot::Live(meta)) => Ok(Some(record(
            kv,
            &keys::history(meta.sender, meta.recipient, meta.stamp.hlc, id),
        )?)),
        _ => Ok(None),
    }
}

fn record(kv: &impl KvRead, history_key: &[u8]) -> Result<MessageRecord, StorageError> {
    get(kv, history_key)?.ok_or_else(|| StorageError::Corrupt("message without a record".into()))
}

pub fn unread_count(kv: &impl KvRead, account: AccountId) -> Result<u64, StorageError> {
    Ok(match kv.get(&keys::unread_count(account))? {
        Some(v) => u64::from_be_bytes(
            v.as_slice()
                .try_into()
                .map_err(|_| StorageError::Corrupt("unread count".into()))?,
        ),
        None => 0,
    })
}

/// Up to `limit` unread messages addressed to `account`, oldest first.
pub fn unread_messages(
    kv: &impl KvRead,
    account: AccountId,
    limit: usize,
) -> Result<Vec<(MessageId, MessageRecord)>, StorageError> {
    let prefix = keys::unread_prefix(account);
    let mut out = Vec::new();
    for pair in kv
        .range(&prefix, &keys::prefix_end(&prefix), false)
        .take(limit)
    {
        let (k, sender) = pair?;
        let bad = || StorageError::Corrupt("unread index entry".into());
        let (hlc, id) = keys::trailing_position(&k).ok_or_else(bad)?;
        let sender = AccountId::from_slice(&sender).ok_or_else(bad)?;
        out.push((id, record(kv, &keys::history(sender, account, hlc, id))?));
    }
    Ok(out)
}

/// A position in a message index: (hlc, message id).
pub type Position = (u64, MessageId);

/// A page of messages and the cursor (last position served) for the next.
pub type MessagePage = (Vec<(MessageId, MessageRecord)>, Option<Position>);

/// One page of the conversation between `a` and `b`, newest first, older
/// than `before`. Returns the page and the cursor for the next (older) page.
pub fn history(
    kv: &impl KvRead,
    a: AccountId,
    b: AccountId,
    before: Option<Position>,
    limit: usize,
) -> Result<MessagePage, StorageError> {
    let prefix = keys::history_prefix(a, b);
    let end = match before {
        Some((hlc, id)) => keys::history(a, b, hlc, id),
        None => keys::prefix_end(&prefix),
    };
    let mut page = Vec::with_capacity(limit + 1);
    for pair in kv.range(&prefix, &end, true).take(limit + 1) {
        let (k, v) = pair?;
        let id = keys::trailing_message(&k)
            .ok_or_else(|| StorageError::Corrupt("short history key".into()))?;
        page.push((id, decode::<MessageRecord>(&v)?));
    }
    let next = if page.len() > limit {
        page.truncate(limit);
        page.last().map(|(id, rec)| (rec.stamp.hlc, *id))
    } else {
        None
    };
    Ok((page, next))
}

/// Every conversation of `account`, keyed by peer.
pub fn conversations(
    kv: &impl KvRead,
    account: AccountId,
) -> Result<Vec<(AccountId, Conversation)>, StorageError> {
    let prefix = keys::conversations_prefix(account);
    let mut out = Vec::new();
    for pair in kv.range(&prefix, &keys::prefix_end(&prefix), false) {
        let (k, v) = pair?;
        let peer = AccountId::from_slice(&k[prefix.len()..])
            .ok_or_else(|| StorageError::Corrupt("short conversation key".into()))?;
        out.push((peer, decode(&v)?));
    }
    Ok(out)
}

/// Whether `account` has a conversation with `peer`: one its conversation
/// list shows (a message between them is stored).
pub fn has_conversation(
    kv: &impl KvRead,
    account: AccountId,
    peer: AccountId,
) -> Result<bool, StorageError> {
    Ok(kv.get(&keys::conversation(account, peer))?.is_some())
}

/// What an entry left behind that its client's answer shows, read right
/// after the entry is applied (in the writer, from the batch's own writes),
/// so the client API can answer without reading the store again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Receipt {
    /// A sent message as stored, with its recipient's account.
    Message {
        id: MessageId,
        record: MessageRecord,
        recipient: AccountRecord,
    },
    /// Nothing the answer needs.
    Nothing,
}

/// The receipt of `entry`, read from `kv` just after applying it.
pub fn receipt(kv: &impl KvRead, entry: &crate::entry::Entry) -> Result<Receipt, StorageError> {
    let crate::entry::Op::SendMessage {
        message, recipient, ..
    } = &entry.op
    else {
        return Ok(Receipt::Nothing);
    };
    // The message may not be live (a delete that arrived before it), and
    // the recipient is known (the command was checked): otherwise the
    // answer needs a real read.
    Ok(
        match (live_message(kv, *message)?, account(kv, *recipient)?) {
            (Some(record), Some(recipient)) => Receipt::Message {
                id: *message,
                record,
                recipient,
            },
            _ => Receipt::Nothing,
        },
    )
}
