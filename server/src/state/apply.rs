//! Applying a log entry to the materialized state.
//!
//! `apply` is a pure function of (state, entry): no clock, no I/O beyond the
//! key-value interface it is handed, no randomness. Everything that varies
//! (time, ids, who is live) was decided at the edge and written into the
//! entry.
//!
//! ## Why the order of origins does not matter
//!
//! Replicas receive each origin's entries in sequence order, but the
//! interleaving of different origins differs from replica to replica. Every
//! rule below is written so that any interleaving gives the same state:
//!
//! * **References are trusted, not checked.** A send may arrive before the
//!   creation of its sender (accepted by another replica that had already
//!   seen the creation). The accepting replica validated the send; `apply`
//!   stores it regardless of what it knows yet.
//! * **Marks before the message.** A read mark or a delete for a message not
//!   seen yet is parked in a `Pending` slot under the message id; when the
//!   message arrives it is born read, or born deleted (it never appears).
//!   After a delete the slot stays `Deleted` for good, so no later entry can
//!   resurrect it and the id is never reused.
//! * **Competing entries: lowest stamp wins.** Two creations of one username
//!   (accepted concurrently by two replicas) both record a claim; the owner
//!   of the name is the claimant with the lowest `(hlc, origin, seq)`,
//!   recomputed whenever a claim arrives. Two sends with one message id (a
//!   client retry that reached two replicas) are one message whose fields
//!   come from the lowest stamp. `min` does not care about arrival order.
//! * **Monotone flags.** `read` and `deleted` only ever turn on; counters and
//!   "newest message" are maintained so that they always equal what a fresh
//!   computation over the stored messages would give.
//! * **Passwords: highest `(version, stamp)` wins.** A change carries one
//!   more than the version of the password it replaced, as the accepting
//!   replica saw it. Ranking by stamp alone would let a change handled late
//!   -- by a replica that hung holding it while the client re-sent it
//!   elsewhere, then changed the password again -- put the replaced password
//!   back, since handling late means stamping late. Its version is that of
//!   the first try's (both replaced the same password), below the later
//!   change's, so it loses in any order. Concurrent changes of one password
//!   share a version, and the later stamp wins. Changes logged before
//!   versions (log format 3) have version 0 and compare by stamp, as then.
//!
//! The property test in `tests.rs` checks exactly this claim: random entry
//! sets from three origins, applied in random per-origin-FIFO interleavings,
//! give byte-identical state.
//!
//! ## Erasure: what the log may keep
//!
//! A deleted message's body, and a deleted account's password hash, must not
//! outlive the deletion in the log either, where every replica keeps it and
//! ships it to every joiner. So applying an entry also says which logged
//! entries to rewrite ([`Effects::erasures`]; `Entry::erase` rewrites, the
//! writer stores the rewrite in the same atomic batch):
//!
//! * When a message is deleted here -- or its send arrives already deleted --
//!   the send that carries its body becomes `ErasedSend` (ids, no body).
//!   Likewise an account's creation becomes `ErasedCreateAccount` (no hash),
//!   and its password changes `ErasedChangePassword`.
//! * When a password is changed, the hash it replaces goes: the creation
//!   keeps its place without it (an empty `password_hash`), a replaced
//!   change becomes `Superseded`. Of competing changes the highest
//!   `(version, stamp)` wins, so the log keeps exactly the hash in force.
//! * When a retried request left two entries (two sends of one message id,
//!   two creations of one account), the one with the higher stamp becomes
//!   `Superseded`, so only one copy of the content is ever left to erase.
//!
//! An erased entry (`ErasedSend`, `ErasedCreateAccount`,
//! `ErasedChangePassword`) is *evidence of the deletion*: applied on a
//! replica that has not seen the deletion yet, it has the deletion's effect
//! at once (the deleting entry still arrives later, and then changes
//! nothing). A superseded entry applies as nothing: the entry that
//! supersedes it (the lower stamp of a retried request, the higher rank of
//! a later password change) wins in any order anyway, and it reaches every
//! replica that received the superseded one; so does the change that took
//! the hash out of a creation. So a replica that syncs some origins from
//! an erased log and others from one not yet erased still ends in the same
//! state; the property test checks that too, and that no erasable content
//! survives in a log whose erasures were all applied.

use chat_shared::validate::normalize_username;

use super::keys;
use super::kv::{KvWrite, StorageError};
use super::query;
use super::records::{
    AccountRecord, Conversation, MessageMeta, MessageRecord, MessageSlot, PasswordInForce,
    PendingMark, decode, encode,
};
use crate::entry::{Entry, Erasure, Op, Stamp};
use crate::ids::{AccountId, MessageId};

/// What an applied entry changed, for live subscriptions. Only changes a user
/// can observe are reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    MessageStored {
        id: MessageId,
        sender: AccountId,
        recipient: AccountId,
    },
    MessageDeleted {
        id: MessageId,
        sender: AccountId,
        recipient: AccountId,
    },
    MessageRead {
        id: MessageId,
        sender: AccountId,
        recipient: AccountId,
    },
    AccountDeleted {
        account: AccountId,
    },
    /// Sessions started with the previous password end.
    PasswordChanged {
        account: AccountId,
    },
}

/// What applying an entry did besides changing the state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Effects {
    /// For live subscriptions.
    pub changes: Vec<Change>,
    /// Logged entries (the applied one included) to rewrite without their
    /// private content, in the order decided.
    pub erasures: Vec<Erasure>,
}

impl Effects {
    pub fn extend(&mut self, other: Effects) {
        self.changes.extend(other.changes);
        self.erasures.extend(other.erasures);
    }
}

/// Applies one entry. The caller guarantees each entry is applied once, and
/// each origin's entries in sequence order.
pub fn apply(entry: &Entry, kv: &mut impl KvWrite) -> Result<Effects, StorageError> {
    let stamp = entry.stamp();
    let mut fx = Effects::default();
    match &entry.op {
        Op::CreateAccount {
            account,
            username,
            password_hash,
        } => create_account(kv, stamp, *account, username, password_hash, &mut fx)?,
        Op::ErasedCreateAccount { account, username } => {
            create_account(kv, stamp, *account, username, "", &mut fx)?;
            delete_account(kv, *account, &mut fx)?;
        }
        Op::SendMessage {
            message,
            sender,
            recipient,
            body,
        } => send_message(kv, stamp, *message, *sender, *recipient, body, &mut fx)?,
        Op::ErasedSend {
            message,
            sender,
            recipient,
        } => erased_send(kv, *message, *sender, *recipient, &mut fx)?,
        Op::MarkRead { account, messages } => {
            for &id in messages {
                mark_read(kv, *account, id, &mut fx.changes)?;
            }
        }
        Op::DeleteMessages { account, messages } => {
            for &id in messages {
                delete_message(kv, *account, id, &mut fx)?;
            }
        }
        Op::DeleteAccount { account } | Op::ErasedChangePassword { account } => {
            delete_account(kv, *account, &mut fx)?
        }
        Op::ChangePassword {
            account,
            password_hash,
            version,
        } => {
            let change = PasswordInForce {
                version: *version,
                stamp,
            };
            change_password(kv, change, *account, password_hash, &mut fx)?
        }
        Op::Superseded => {}
    }
    Ok(fx)
}

fn delete_account(
    kv: &mut impl KvWrite,
    account: AccountId,
    fx: &mut Effects,
) -> Result<(), StorageError> {
    let mut rec = get::<AccountRecord>(kv, &keys::account(account))?.unwrap_or_else(blank_account);
    if !rec.deleted {
        // A creation that arrives later erases itself (`create_account`).
        if let Some(created) = rec.created {
            fx.erasures.push(Erasure::Deleted(created));
        }
    }
    // So does a password change (`change_password`); one already applied
    // is erased now.
    let change_key = keys::password_change(account);
    if let Some(changed) = query::password_in_force(kv, account)? {
        fx.erasures.push(Erasure::Deleted(changed.stamp));
        kv.delete(change_key);
    }
    let news = !rec.deleted;
    rec.deleted = true;
    rec.password_hash.clear();
    kv.put(keys::account(account), encode(&rec));
    // Once: the deletion, its evidence (erased entries) and a retry of it
    // each come here.
    if news {
        fx.changes.push(Change::AccountDeleted { account });
    }
    Ok(())
}

/// An account record before anything is known of the account.
fn blank_account() -> AccountRecord {
    AccountRecord {
        username: String::new(),
        password_hash: String::new(),
        created: None,
        deleted: false,
    }
}

/// The change with the highest `(version, stamp)` is in force, whatever the
/// order the changes arrive in; every other hash of the account (its
/// creation's, the losing changes') is erased from the log. A change may
/// arrive before the creation it changes (`create_account` then keeps the
/// change's hash).
fn change_password(
    kv: &mut impl KvWrite,
    change: PasswordInForce,
    account: AccountId,
    password_hash: &str,
    fx: &mut Effects,
) -> Result<(), StorageError> {
    let key = keys::account(account);
    let mut rec = get::<AccountRecord>(kv, &key)?.unwrap_or_else(blank_account);
    if rec.deleted {
        // Arrived after the account's deletion: born erased.
        fx.erasures.push(Erasure::Deleted(change.stamp));
        return Ok(());
    }
    match query::password_in_force(kv, account)? {
        Some(in_force) if change.rank() < in_force.rank() => {
            fx.erasures.push(Erasure::Replaced(change.stamp));
            return Ok(());
        }
        Some(in_force) => fx.erasures.push(Erasure::Replaced(in_force.stamp)),
        None => {
            if let Some(created) = rec.created {
                fx.erasures.push(Erasure::Replaced(created));
            }
        }
    }
    password_hash.clone_into(&mut rec.password_hash);
    kv.put(key, encode(&rec));
    kv.put(keys::password_change(account), change.encode());
    fx.changes.push(Change::PasswordChanged { account });
    Ok(())
}

fn get<T: serde::de::DeserializeOwned>(
    kv: &impl KvWrite,
    key: &[u8],
) -> Result<Option<T>, StorageError> {
    kv.get(key)?.map(|v| decode(&v)).transpose()
}

fn create_account(
    kv: &mut impl KvWrite,
    stamp: Stamp,
    id: AccountId,
    username: &str,
    password_hash: &str,
    fx: &mut Effects,
) -> Result<(), StorageError> {
    let key = keys::account(id);
    let mut rec = get::<AccountRecord>(kv, &key)?.unwrap_or_else(blank_account);
    // A retried creation that reached two replicas: the earliest entry's
    // fields win, whichever arrived first, and the other entry is
    // superseded.
    match rec.created {
        Some(c) if c < stamp => fx.erasures.push(Erasure::Superseded(stamp)),
        Some(c) => fx.erasures.push(Erasure::Superseded(c)),
        None => {}
    }
    if rec.created.is_none_or(|c| stamp < c) {
        rec.username = username.to_owned();
        rec.created = Some(stamp);
        if rec.deleted {
            // Arrived after the account's deletion: born erased.
            fx.erasures.push(Erasure::Deleted(stamp));
            rec.password_hash.clear();
        } else if kv.get(&keys::password_change(id))?.is_some() {
            // Arrived after a password change, whose hash stays in force;
            // the creation's is nobody's.
            fx.erasures.push(Erasure::Replaced(stamp));
        } else {
            password_hash.clone_into(&mut rec.password_hash);
        }
    }
    kv.put(key, encode(&rec));

    let norm = normalize_username(username);
    kv.put(keys::claim(&norm, id), Vec::new());
    // The name belongs to the claimant with the lowest creation stamp.
    let prefix = keys::claims_prefix(&norm);
    let mut winner: Option<(Stamp, AccountId)> = None;
    for pair in kv.range(&prefix, &keys::prefix_end(&prefix), false) {
        let (claim_key, _) = pair?;
        let claimant = keys::claim_account(&claim_key)
            .ok_or_else(|| StorageError::Corrupt("short claim key".into()))?;
        let created = get::<AccountRecord>(kv, &keys::account(claimant))?
            .and_then(|r| r.created)
            .ok_or_else(|| StorageError::Corrupt("claim without account".into()))?;
        if winner.is_none_or(|(s, _)| created < s) {
            winner = Some((created, claimant));
        }
    }
    if let Some((_, owner)) = winner {
        kv.put(keys::name(&norm), owner.0.to_vec());
    }
    Ok(())
}

fn send_message(
    kv: &mut impl KvWrite,
    stamp: Stamp,
    id: MessageId,
    sender: AccountId,
    recipient: AccountId,
    body: &str,
    fx: &mut Effects,
) -> Result<(), StorageError> {
    let slot_key = keys::message(id);
    let marks = match get::<MessageSlot>(kv, &slot_key)? {
        Some(MessageSlot::Deleted { .. }) => {
            fx.erasures.push(Erasure::Deleted(stamp));
            return Ok(());
        }
        Some(MessageSlot::Live(meta)) => {
            // The same message through another entry (a retry that reached
            // another replica): keep the earliest entry's stamp and body;
            // the other entry is superseded.
            if stamp < meta.stamp {
                fx.erasures.push(Erasure::Superseded(meta.stamp));
                unindex(kv, id, &meta);
                let from = (meta.stamp.hlc, id);
                let rec = MessageRecord {
                    sender: meta.sender,
                    recipient: meta.recipient,
                    body: body.to_owned(),
                    stamp,
                    read: meta.read,
                };
                index(kv, id, &rec);
                kv.put(slot_key, encode(&MessageSlot::Live(rec.meta())));
                let to = (stamp.hlc, id);
                touch_conversation(kv, sender, recipient, 0, 0, Newest::Moved { from, to })?;
            } else {
                fx.erasures.push(Erasure::Superseded(stamp));
            }
            return Ok(());
        }
        Some(MessageSlot::Pending(marks)) => marks,
        None => Vec::new(),
    };
    let is_party = |a: AccountId| a == sender || a == recipient;
    if marks.iter().any(|m| m.delete && is_party(m.account)) {
        kv.put(
            slot_key,
            encode(&MessageSlot::Deleted { sender, recipient }),
        );
        fx.erasures.push(Erasure::Deleted(stamp));
        return Ok(());
    }
    let rec = MessageRecord {
        sender,
        recipient,
        body: body.to_owned(),
        stamp,
        read: marks.iter().any(|m| m.read && m.account == recipient),
    };
    index(kv, id, &rec);
    let unread = i64::from(!rec.read);
    add_unread(kv, recipient, unread)?;
    kv.put(slot_key, encode(&MessageSlot::Live(rec.meta())));
    let at = (stamp.hlc, id);
    touch_conversation(kv, sender, recipient, 1, unread, Newest::Added(at))?;
    fx.changes.push(Change::MessageStored {
        id,
        sender,
        recipient,
    });
    Ok(())
}

fn mark_read(
    kv: &mut impl KvWrite,
    account: AccountId,
    id: MessageId,
    changes: &mut Vec<Change>,
) -> Result<(), StorageError> {
    let slot_key = keys::message(id);
    match get::<MessageSlot>(kv, &slot_key)? {
        None => park(kv, slot_key, Vec::new(), account, true, false),
        Some(MessageSlot::Pending(marks)) => park(kv, slot_key, marks, account, true, false),
        Some(MessageSlot::Live(mut meta)) if meta.recipient == account && !meta.read => {
            let (sender, recipient) = (meta.sender, meta.recipient);
            kv.delete(keys::unread(recipient, meta.stamp.hlc, id));
            let record_key = keys::history(sender, recipient, meta.stamp.hlc, id);
            let mut rec = get::<MessageRecord>(kv, &record_key)?
                .ok_or_else(|| StorageError::Corrupt(format!("message {id} has no record")))?;
            rec.read = true;
            kv.put(record_key, encode(&rec));
            meta.read = true;
            kv.put(slot_key, encode(&MessageSlot::Live(meta)));
            add_unread(kv, recipient, -1)?;
            touch_conversation(kv, sender, recipient, 0, -1, Newest::Same)?;
            changes.push(Change::MessageRead {
                id,
                sender,
                recipient,
            });
        }
        Some(_) => {}
    }
    Ok(())
}

fn delete_message(
    kv: &mut impl KvWrite,
    account: AccountId,
    id: MessageId,
    fx: &mut Effects,
) -> Result<(), StorageError> {
    let slot_key = keys::message(id);
    match get::<MessageSlot>(kv, &slot_key)? {
        None => park(kv, slot_key, Vec::new(), account, false, true),
        Some(MessageSlot::Pending(marks)) => park(kv, slot_key, marks, account, false, true),
        Some(MessageSlot::Live(meta)) if meta.sender == account || meta.recipient == account => {
            delete_live(kv, id, &meta, fx)?;
        }
        Some(_) => {}
    }
    Ok(())
}

/// A send whose message was deleted at the replica that rewrote it: the
/// deletion's effect, whatever this replica has seen of the message.
fn erased_send(
    kv: &mut impl KvWrite,
    id: MessageId,
    sender: AccountId,
    recipient: AccountId,
    fx: &mut Effects,
) -> Result<(), StorageError> {
    let slot_key = keys::message(id);
    match get::<MessageSlot>(kv, &slot_key)? {
        Some(MessageSlot::Deleted { .. }) => {}
        // Stored here through another entry of the same request.
        Some(MessageSlot::Live(meta)) => delete_live(kv, id, &meta, fx)?,
        // Not seen yet: born deleted, as a send with a pending delete is.
        Some(MessageSlot::Pending(_)) | None => kv.put(
            slot_key,
            encode(&MessageSlot::Deleted { sender, recipient }),
        ),
    }
    Ok(())
}

fn delete_live(
    kv: &mut impl KvWrite,
    id: MessageId,
    meta: &MessageMeta,
    fx: &mut Effects,
) -> Result<(), StorageError> {
    unindex(kv, id, meta);
    let unread = i64::from(!meta.read);
    let (sender, recipient) = (meta.sender, meta.recipient);
    let at = (meta.stamp.hlc, id);
    kv.put(
        keys::message(id),
        encode(&MessageSlot::Deleted { sender, recipient }),
    );
    add_unread(kv, recipient, -unread)?;
    touch_conversation(kv, sender, recipient, -1, -unread, Newest::Removed(at))?;
    fx.erasures.push(Erasure::Deleted(meta.stamp));
    fx.changes.push(Change::MessageDeleted {
        id,
        sender,
        recipient,
    });
    Ok(())
}

/// Records a mark for a message that has not arrived yet.
fn park(
    kv: &mut impl KvWrite,
    slot_key: Vec<u8>,
    mut marks: Vec<PendingMark>,
    account: AccountId,
    read: bool,
    delete: bool,
) {
    match marks.binary_search_by_key(&account, |m| m.account) {
        Ok(i) => {
            marks[i].read |= read;
            marks[i].delete |= delete;
        }
        Err(i) => marks.insert(
            i,
            PendingMark {
                account,
                read,
                delete,
            },
        ),
    }
    kv.put(slot_key, encode(&MessageSlot::Pending(marks)));
}

/// Writes a message's record under its history key, and (if unread) its
/// unread-index key, whose value names the sender so the record can be
/// found from it.
fn index(kv: &mut impl KvWrite, id: MessageId, rec: &MessageRecord) {
    kv.put(
        keys::history(rec.sender, rec.recipient, rec.stamp.hlc, id),
        encode(rec),
    );
    if !rec.read {
        kv.put(
            keys::unread(rec.recipient, rec.stamp.hlc, id),
            rec.sender.0.to_vec(),
        );
    }
}

fn unindex(kv: &mut impl KvWrite, id: MessageId, meta: &MessageMeta) {
    kv.delete(keys::history(
        meta.sender,
        meta.recipient,
        meta.stamp.hlc,
        id,
    ));
    if !meta.read {
        kv.delete(keys::unread(meta.recipient, meta.stamp.hlc, id));
    }
}

fn add_unread(kv: &mut impl KvWrite, account: AccountId, delta: i64) -> Result<(), StorageError> {
    if delta == 0 {
        return Ok(());
    }
    let key = keys::unread_count(account);
    let now = match kv.get(&key)? {
        Some(v) => u64::from_be_bytes(
            v.as_slice()
                .try_into()
                .map_err(|_| StorageError::Corrupt("unread count".into()))?,
        ),
        None => 0,
    };
    let next = now.saturating_add_signed(delta);
    // Absent means zero: one encoding for one state.
    if next == 0 {
        kv.delete(key);
    } else {
        kv.put(key, next.to_be_bytes().to_vec());
    }
    Ok(())
}

/// How a change affects a conversation's newest message.
enum Newest {
    Same,
    Added(Position),
    Removed(Position),
    /// A message's position moved earlier (a retried send with a lower stamp).
    Moved {
        from: Position,
        to: Position,
    },
}

type Position = (u64, MessageId);

/// Updates both sides' conversation summaries after the history index has
/// been changed: message count by `total`, the recipient's unread count by
/// `unread`, and the newest message. The newest is kept equal to the maximum
/// position in the history index: an addition can only raise it; only when
/// the newest itself is removed or moved is the index read back (one reverse
/// seek), so the common case -- a new message -- costs no scan.
fn touch_conversation(
    kv: &mut impl KvWrite,
    sender: AccountId,
    recipient: AccountId,
    total: i64,
    unread: i64,
    newest: Newest,
) -> Result<(), StorageError> {
    let mut sides = vec![(sender, recipient)];
    if sender != recipient {
        sides.push((recipient, sender));
    }
    let mut convs = Vec::with_capacity(2);
    for &(account, peer) in &sides {
        let key = keys::conversation(account, peer);
        let conv = get::<Conversation>(kv, &key)?.unwrap_or_default();
        convs.push((key, account, conv));
    }
    // Both sides always agree on the newest message.
    let current = convs[0].2.last;
    let last = match newest {
        Newest::Same => current,
        Newest::Added(at) => current.max(Some(at)),
        Newest::Removed(at) | Newest::Moved { from: at, .. } if current == Some(at) => {
            let prefix = keys::history_prefix(sender, recipient);
            match kv.range(&prefix, &keys::prefix_end(&prefix), true).next() {
                Some(pair) => keys::trailing_position(&pair?.0),
                None => None,
            }
        }
        Newest::Removed(_) => current,
        Newest::Moved { to, .. } => current.max(Some(to)),
    };
    for (key, account, mut conv) in convs {
        conv.total = conv.total.saturating_add_signed(total);
        if account == recipient {
            conv.unread = conv.unread.saturating_add_signed(unread);
        }
        conv.last = last;
        if conv.total == 0 {
            kv.delete(key);
        } else {
            kv.put(key, encode(&conv));
        }
    }
    Ok(())
}
