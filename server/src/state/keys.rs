//! Layout of the materialized state in the ordered key space.
//!
//! Every key starts with a one-byte table tag; numbers are big-endian so byte
//! order is numeric order; ids are 16 raw bytes. Indexes carry the HLC
//! timestamp before the message id so a prefix scan walks messages in time
//! order (ties, which only equal timestamps from different replicas can
//! produce, broken by id: a total order, identical on every replica).
//!
//! | tag | key                                   | value               |
//! |-----|---------------------------------------|---------------------|
//! | `a` | account id                            | `AccountRecord`     |
//! | `n` | normalized username                   | winning account id  |
//! | `c` | normalized username, 0, account id    | (empty): a claim    |
//! | `m` | message id                            | `MessageSlot`       |
//! | `h` | lower id, higher id, hlc, message id  | `MessageRecord`     |
//! | `u` | recipient id, hlc, message id         | sender id: unread   |
//! | `v` | account id, peer id                   | `Conversation`      |
//! | `k` | account id                            | unread count (u64)  |
//! | `p` | account id                            | `PasswordInForce`: the change in force |
//!
//! A message's record (body included) is the value of its history key, so
//! a history page is one range scan; its slot under `m` keeps only what is
//! needed to find the record and check permissions.
//!
//! Usernames contain no 0 byte (see `chat_shared::validate::username`), so the
//! claim key is unambiguous.

use crate::ids::{AccountId, MessageId};

pub const ACCOUNT: u8 = b'a';
pub const NAME: u8 = b'n';
pub const CLAIM: u8 = b'c';
pub const MESSAGE: u8 = b'm';
pub const HISTORY: u8 = b'h';
pub const UNREAD: u8 = b'u';
pub const CONVERSATION: u8 = b'v';
pub const UNREAD_COUNT: u8 = b'k';
pub const PASSWORD_CHANGE: u8 = b'p';

fn key(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + parts.iter().map(|p| p.len()).sum::<usize>());
    k.push(tag);
    for p in parts {
        k.extend_from_slice(p);
    }
    k
}

pub fn account(id: AccountId) -> Vec<u8> {
    key(ACCOUNT, &[&id.0])
}

pub fn name(normalized: &str) -> Vec<u8> {
    key(NAME, &[normalized.as_bytes()])
}

pub fn claims_prefix(normalized: &str) -> Vec<u8> {
    key(CLAIM, &[normalized.as_bytes(), &[0]])
}

pub fn claim(normalized: &str, id: AccountId) -> Vec<u8> {
    key(CLAIM, &[normalized.as_bytes(), &[0], &id.0])
}

/// The account id at the end of a claim key.
pub fn claim_account(key: &[u8]) -> Option<AccountId> {
    AccountId::from_slice(key.get(key.len().checked_sub(16)?..)?)
}

pub fn message(id: MessageId) -> Vec<u8> {
    key(MESSAGE, &[&id.0])
}

/// The two parties of a conversation in canonical order.
pub fn pair(a: AccountId, b: AccountId) -> (AccountId, AccountId) {
    if a <= b { (a, b) } else { (b, a) }
}

pub fn history_prefix(a: AccountId, b: AccountId) -> Vec<u8> {
    let (lo, hi) = pair(a, b);
    key(HISTORY, &[&lo.0, &hi.0])
}

pub fn history(a: AccountId, b: AccountId, hlc: u64, id: MessageId) -> Vec<u8> {
    let mut k = history_prefix(a, b);
    k.extend_from_slice(&hlc.to_be_bytes());
    k.extend_from_slice(&id.0);
    k
}

pub fn unread_prefix(account: AccountId) -> Vec<u8> {
    key(UNREAD, &[&account.0])
}

pub fn unread(account: AccountId, hlc: u64, id: MessageId) -> Vec<u8> {
    key(UNREAD, &[&account.0, &hlc.to_be_bytes(), &id.0])
}

/// The message id at the end of a history or unread key.
pub fn trailing_message(key: &[u8]) -> Option<MessageId> {
    MessageId::from_slice(key.get(key.len().checked_sub(16)?..)?)
}

/// The (hlc, message id) at the end of a history or unread key: the position
/// a cursor names.
pub fn trailing_position(key: &[u8]) -> Option<(u64, MessageId)> {
    let n = key.len().checked_sub(24)?;
    let hlc = u64::from_be_bytes(key.get(n..n + 8)?.try_into().ok()?);
    Some((hlc, trailing_message(key)?))
}

pub fn conversations_prefix(account: AccountId) -> Vec<u8> {
    key(CONVERSATION, &[&account.0])
}

pub fn conversation(account: AccountId, peer: AccountId) -> Vec<u8> {
    key(CONVERSATION, &[&account.0, &peer.0])
}

pub fn unread_count(account: AccountId) -> Vec<u8> {
    key(UNREAD_COUNT, &[&account.0])
}

/// Which `ChangePassword` entry the account's hash (in its `a` record) came
/// from, and its version (`records::PasswordInForce`); absent while the
/// creation's hash is in force.
pub fn password_change(account: AccountId) -> Vec<u8> {
    key(PASSWORD_CHANGE, &[&account.0])
}

/// The smallest key greater than every key starting with `prefix`, for
/// prefix scans expressed as ranges. (Every prefix we scan has a byte below
/// 0xff; an all-0xff prefix has no successor and yields a key that sorts
/// after everything we store.)
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0xff; prefix.len() + 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_bounds_the_prefix() {
        assert_eq!(prefix_end(b"ab"), b"ac");
        assert_eq!(prefix_end(&[1, 0xff]), vec![2]);
        let p = history_prefix(AccountId([1; 16]), AccountId([2; 16]));
        let k = history(
            AccountId([2; 16]),
            AccountId([1; 16]),
            u64::MAX,
            MessageId([0xff; 16]),
        );
        assert!(k.starts_with(&p) && k < prefix_end(&p));
        assert_eq!(
            trailing_position(&k),
            Some((u64::MAX, MessageId([0xff; 16])))
        );
        let c = claim("bob", AccountId([9; 16]));
        assert_eq!(claim_account(&c), Some(AccountId([9; 16])));
    }
}
