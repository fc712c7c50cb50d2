//! Tests of the state machine, in memory.

use proptest::prelude::*;

use super::query::{self, AccountStatus};
use super::records::MessageSlot;
use super::*;
use std::collections::BTreeMap;

use crate::entry::{Entry, Erasure, Op};
use crate::ids::{AccountId, MessageId};

const NAMES: [&str; 3] = ["ann", "bob", "cat"];

fn account(name: usize, rid: u8) -> AccountId {
    AccountId::derive(NAMES[name], &[rid; 16])
}

fn message(s: AccountId, r: AccountId, rid: u8) -> MessageId {
    MessageId::derive(s, r, &[rid; 16])
}

fn entry(origin: u32, seq: u64, hlc: u64, op: Op) -> Entry {
    Entry {
        origin,
        seq,
        hlc,
        request_id: [seq as u8; 16],
        op,
    }
}

fn create(name: usize, rid: u8) -> Op {
    Op::CreateAccount {
        account: account(name, rid),
        username: NAMES[name].to_uppercase(),
        password_hash: format!("hash-{rid}"),
    }
}

fn change_password(name: usize, rid: u8, password: u8, version: u64) -> Op {
    Op::ChangePassword {
        account: account(name, rid),
        password_hash: format!("new-{password}"),
        version,
    }
}

fn send(s: AccountId, r: AccountId, rid: u8, body: &str) -> Op {
    Op::SendMessage {
        message: message(s, r, rid),
        sender: s,
        recipient: r,
        body: body.into(),
    }
}

fn delete(account: AccountId, m: MessageId) -> Op {
    Op::DeleteMessages {
        account,
        messages: vec![m],
    }
}

fn apply_all(entries: &[Entry]) -> MemoryKv {
    let mut kv = MemoryKv::default();
    for e in entries {
        apply(e, &mut kv).unwrap();
    }
    kv
}

#[test]
fn lifecycle_through_checks() {
    let mut kv = MemoryKv::default();
    let mut seq = 0;
    let mut run = |kv: &mut MemoryKv, cmd: Command, rid: u8| -> Result<Checked, CommandError> {
        let checked = check(&cmd, &[rid; 16], kv)?;
        if let Checked::Apply(op) = &checked {
            seq += 1;
            apply(&entry(1, seq, seq * 10, op.clone()), kv).unwrap();
        }
        Ok(checked)
    };
    let create = |name: &str| Command::CreateAccount {
        username: name.into(),
        password_hash: "h".into(),
    };
    assert!(matches!(
        run(&mut kv, create("Ann"), 1),
        Ok(Checked::Apply(_))
    ));
    assert!(matches!(
        run(&mut kv, create("bob"), 2),
        Ok(Checked::Apply(_))
    ));
    // A retry is done already; another registration of the name is refused,
    // whatever its case.
    assert_eq!(run(&mut kv, create("Ann"), 1), Ok(Checked::AlreadyDone));
    assert_eq!(
        run(&mut kv, create("ANN"), 3),
        Err(CommandError::UsernameTaken("ANN".into()))
    );
    let ann = AccountId::derive("ann", &[1; 16]);
    let bob = AccountId::derive("bob", &[2; 16]);

    let send = |body: &str| Command::SendMessage {
        sender: ann,
        recipient: bob,
        body: body.into(),
    };
    assert!(matches!(
        run(&mut kv, send("hi"), 10),
        Ok(Checked::Apply(_))
    ));
    assert!(matches!(
        run(&mut kv, send("there"), 11),
        Ok(Checked::Apply(_))
    ));
    assert_eq!(run(&mut kv, send("hi"), 10), Ok(Checked::AlreadyDone));
    assert_eq!(
        run(&mut kv, send("other"), 10),
        Err(CommandError::RequestIdReused)
    );
    assert_eq!(query::unread_count(&kv, bob).unwrap(), 2);

    let m1 = MessageId::derive(ann, bob, &[10; 16]);
    let m2 = MessageId::derive(ann, bob, &[11; 16]);
    let (page, next) = query::history(&kv, bob, ann, None, 1).unwrap();
    assert_eq!(page[0].0, m2, "newest first");
    let (page, next) = query::history(&kv, bob, ann, next, 1).unwrap();
    assert_eq!((page[0].0, next), (m1, None));

    // Only the recipient marks read; nobody touches others' mail.
    let mark = |who, ids: Vec<MessageId>| Command::MarkRead {
        account: who,
        messages: ids,
    };
    assert_eq!(
        run(&mut kv, mark(ann, vec![m1]), 20),
        Err(CommandError::NotRecipient(m1))
    );
    let carl = AccountId([9; 16]);
    assert_eq!(
        run(&mut kv, mark(carl, vec![m1]), 21),
        Err(CommandError::UnknownMessage(m1))
    );
    assert!(matches!(
        run(&mut kv, mark(bob, vec![m1, m1]), 22),
        Ok(Checked::Apply(_))
    ));
    assert_eq!(
        run(&mut kv, mark(bob, vec![m1]), 23),
        Ok(Checked::AlreadyDone)
    );
    assert_eq!(query::unread_count(&kv, bob).unwrap(), 1);
    let unread = query::unread_messages(&kv, bob, 10).unwrap();
    assert_eq!(
        unread.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        vec![m2]
    );

    let delete = |who, ids: Vec<MessageId>| Command::DeleteMessages {
        account: who,
        messages: ids,
    };
    assert_eq!(
        run(&mut kv, delete(carl, vec![m2]), 30),
        Err(CommandError::UnknownMessage(m2))
    );
    assert!(matches!(
        run(&mut kv, delete(ann, vec![m2]), 31),
        Ok(Checked::Apply(_))
    ));
    assert_eq!(
        run(&mut kv, delete(bob, vec![m2]), 32),
        Ok(Checked::AlreadyDone)
    );
    assert_eq!(query::unread_count(&kv, bob).unwrap(), 0);
    assert!(matches!(
        query::message(&kv, m2).unwrap(),
        Some(MessageSlot::Deleted { .. })
    ));
    let convs = query::conversations(&kv, bob).unwrap();
    assert_eq!(convs.len(), 1);
    assert_eq!((convs[0].1.total, convs[0].1.unread), (1, 0));
    assert_eq!(convs[0].1.last.map(|(_, id)| id), Some(m1));

    assert!(matches!(
        run(&mut kv, Command::DeleteAccount { account: bob }, 40),
        Ok(Checked::Apply(_))
    ));
    assert_eq!(
        run(&mut kv, send("still there?"), 41),
        Err(CommandError::AccountDeleted("bob".into()))
    );
    // A retry of a send stored before the deletion is still answered as
    // done: the message is there.
    assert_eq!(run(&mut kv, send("hi"), 10), Ok(Checked::AlreadyDone));
    // The name stays retired.
    assert_eq!(
        run(&mut kv, create("bob"), 42),
        Err(CommandError::UsernameTaken("bob".into()))
    );
    let (listed, _) = query::list_accounts(&kv, "*", None, 10).unwrap();
    assert_eq!(
        listed.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        vec![ann]
    );
    // Ann still sees her conversation with the deleted account.
    assert_eq!(query::history(&kv, ann, bob, None, 10).unwrap().0.len(), 1);
    // Bob's commands that reach the writer after his deletion (his session
    // was checked before): refused, nothing applied.
    let from_bob = Command::SendMessage {
        sender: bob,
        recipient: ann,
        body: "from beyond".into(),
    };
    assert_eq!(run(&mut kv, from_bob, 43), Err(CommandError::CallerGone));
    assert_eq!(
        run(&mut kv, delete(bob, vec![m1]), 44),
        Err(CommandError::CallerGone)
    );
    assert_eq!(query::history(&kv, ann, bob, None, 10).unwrap().0.len(), 1);
}

#[test]
fn concurrent_registrations_lowest_stamp_owns_the_name() {
    let (a, b) = (account(1, 1), account(1, 2));
    let first = entry(2, 1, 100, create(1, 1));
    let second = entry(1, 1, 100, create(1, 2)); // same hlc, lower origin
    for order in [[&first, &second], [&second, &first]] {
        let kv = apply_all(&order.map(Clone::clone));
        assert_eq!(query::name_owner(&kv, "bob").unwrap(), Some(b));
        assert!(matches!(
            query::account_status(&kv, a).unwrap(),
            AccountStatus::LostName(_)
        ));
        assert!(matches!(
            query::account_status(&kv, b).unwrap(),
            AccountStatus::Active(_)
        ));
        assert_eq!(query::claimants(&kv, "bob").unwrap().len(), 2);
    }
}

#[test]
fn marks_that_arrive_before_their_message() {
    let (ann, bob) = (account(0, 1), account(1, 1));
    let m = message(ann, bob, 7);
    let sent = entry(1, 1, 10, send(ann, bob, 7, "x"));
    let read = entry(
        2,
        1,
        20,
        Op::MarkRead {
            account: bob,
            messages: vec![m],
        },
    );
    let deleted = entry(3, 1, 30, delete(ann, m));
    let stranger = entry(
        3,
        1,
        30,
        Op::DeleteMessages {
            account: account(2, 1),
            messages: vec![m],
        },
    );

    let kv = apply_all(&[read.clone(), sent.clone()]);
    assert_eq!(query::unread_count(&kv, bob).unwrap(), 0);
    assert!(query::live_message(&kv, m).unwrap().unwrap().read);
    assert_eq!(kv, apply_all(&[sent.clone(), read.clone()]));

    let kv = apply_all(&[deleted.clone(), sent.clone()]);
    assert!(query::live_message(&kv, m).unwrap().is_none());
    assert!(
        query::history(&kv, ann, bob, None, 10)
            .unwrap()
            .0
            .is_empty()
    );
    assert_eq!(kv, apply_all(&[sent.clone(), deleted]));

    // A stranger's delete never takes effect, early or late.
    let kv = apply_all(&[stranger.clone(), sent.clone()]);
    assert!(query::live_message(&kv, m).unwrap().is_some());
}

#[test]
fn a_retried_send_on_two_replicas_is_one_message() {
    let (ann, bob) = (account(0, 1), account(1, 1));
    let on_a = entry(1, 5, 50, send(ann, bob, 7, "hello"));
    let on_b = entry(2, 3, 40, send(ann, bob, 7, "hello"));
    let kv = apply_all(&[on_a.clone(), on_b.clone()]);
    assert_eq!(kv, apply_all(&[on_b, on_a]));
    let (page, _) = query::history(&kv, ann, bob, None, 10).unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].1.stamp.hlc, 40);
    assert_eq!(query::unread_count(&kv, bob).unwrap(), 1);
}

#[test]
fn account_deleted_before_its_creation_arrives() {
    let ann = account(0, 1);
    let created = entry(1, 1, 10, create(0, 1));
    let deleted = entry(2, 1, 20, Op::DeleteAccount { account: ann });
    let kv = apply_all(&[deleted.clone(), created.clone()]);
    assert_eq!(kv, apply_all(&[created, deleted]));
    let rec = query::account(&kv, ann).unwrap().unwrap();
    assert!(rec.deleted && rec.password_hash.is_empty());
    assert_eq!(query::name_owner(&kv, "ann").unwrap(), Some(ann));
}

// ---- erasure ----------------------------------------------------------------

/// Applies entries in order the way a replica does, keeping its log: each
/// entry is logged, applied, and the erasures it causes are carried out on
/// the log. Returns the state and the log by (origin, seq).
fn apply_logged(entries: &[Entry]) -> (MemoryKv, BTreeMap<(u32, u64), Entry>) {
    let mut kv = MemoryKv::default();
    let mut log = BTreeMap::new();
    for e in entries {
        log.insert((e.origin, e.seq), e.clone());
        for why in apply(e, &mut kv).unwrap().erasures {
            let at = why.stamp();
            log.get_mut(&(at.origin, at.seq))
                .expect("an erasure names a logged entry")
                .erase(why);
        }
    }
    (kv, log)
}

fn erasures(e: &Entry, kv: &mut MemoryKv) -> Vec<Erasure> {
    apply(e, kv).unwrap().erasures
}

#[test]
fn a_deleted_message_leaves_no_body_in_the_log_whatever_the_order() {
    let (ann, bob) = (account(0, 1), account(1, 1));
    let m = message(ann, bob, 7);
    let sent = entry(1, 1, 10, send(ann, bob, 7, "secret"));
    let deleted = entry(2, 1, 20, delete(bob, m));
    let erased = Op::ErasedSend {
        message: m,
        sender: ann,
        recipient: bob,
    };

    // Delete after the send: the delete erases the send.
    let mut kv = MemoryKv::default();
    assert_eq!(erasures(&sent, &mut kv), vec![]);
    assert_eq!(
        erasures(&deleted, &mut kv),
        vec![Erasure::Deleted(sent.stamp())]
    );
    // Send after the delete: born deleted, it erases itself.
    let mut kv = MemoryKv::default();
    assert_eq!(erasures(&deleted, &mut kv), vec![]);
    assert_eq!(
        erasures(&sent, &mut kv),
        vec![Erasure::Deleted(sent.stamp())]
    );

    for order in [[&sent, &deleted], [&deleted, &sent]] {
        let (kv, log) = apply_logged(&order.map(Clone::clone));
        assert_eq!(log[&(1, 1)].op, erased);
        assert_eq!(log[&(2, 1)], deleted, "the delete itself is kept as is");
        // The erased log replays to the same state, in any order, and the
        // erased send alone already has the deletion's effect.
        let rewritten = log[&(1, 1)].clone();
        assert_eq!(apply_all(&[rewritten.clone(), deleted.clone()]), kv);
        assert_eq!(apply_all(&[deleted.clone(), rewritten.clone()]), kv);
        assert_eq!(apply_all(&[rewritten]), kv);
    }
}

#[test]
fn an_erased_send_deletes_the_message_where_it_is_live() {
    let (ann, bob) = (account(0, 1), account(1, 1));
    let m = message(ann, bob, 7);
    let sent = entry(1, 1, 10, send(ann, bob, 7, "secret"));
    // Another replica's copy of the same entry, erased there after a delete
    // this replica has not received yet.
    let mut rewritten = sent.clone();
    rewritten.erase(Erasure::Deleted(sent.stamp()));
    let deleted = entry(2, 1, 20, delete(ann, m));
    // A retry of the send accepted by a third replica, stored live here.
    let retried = entry(3, 1, 30, send(ann, bob, 7, "secret"));
    let mut kv = apply_all(std::slice::from_ref(&retried));
    assert_eq!(query::unread_count(&kv, bob).unwrap(), 1);
    let fx = apply(&rewritten, &mut kv).unwrap();
    assert_eq!(fx.erasures, vec![Erasure::Deleted(retried.stamp())]);
    assert_eq!(
        fx.changes,
        vec![Change::MessageDeleted {
            id: m,
            sender: ann,
            recipient: bob
        }]
    );
    assert_eq!(query::unread_count(&kv, bob).unwrap(), 0);
    assert_eq!(kv, apply_all(&[retried, sent, deleted]));
}

#[test]
fn a_retried_send_leaves_one_copy_of_the_body() {
    let (ann, bob) = (account(0, 1), account(1, 1));
    let on_a = entry(1, 5, 50, send(ann, bob, 7, "hello"));
    let on_b = entry(2, 3, 40, send(ann, bob, 7, "hello"));
    for order in [[&on_a, &on_b], [&on_b, &on_a]] {
        let (kv, log) = apply_logged(&order.map(Clone::clone));
        assert_eq!(log[&(1, 5)].op, Op::Superseded, "the later stamp goes");
        assert_eq!(log[&(2, 3)], on_b);
        assert_eq!(apply_all(&[log[&(1, 5)].clone(), on_b.clone()]), kv);
    }
}

#[test]
fn a_deleted_account_leaves_no_password_hash_in_the_log() {
    let ann = account(0, 1);
    let created = entry(1, 1, 10, create(0, 1));
    let retried = entry(3, 1, 15, create(0, 1));
    let deleted = entry(2, 1, 20, Op::DeleteAccount { account: ann });
    let orders = [
        [&created, &retried, &deleted],
        [&deleted, &retried, &created],
        [&retried, &deleted, &created],
    ];
    for order in orders {
        let (kv, log) = apply_logged(&order.map(Clone::clone));
        assert_eq!(
            log[&(1, 1)].op,
            Op::ErasedCreateAccount {
                account: ann,
                username: "ANN".into()
            }
        );
        assert!(
            matches!(
                log[&(3, 1)].op,
                Op::Superseded | Op::ErasedCreateAccount { .. }
            ),
            "{:?}",
            log[&(3, 1)]
        );
        let replayed: Vec<Entry> = log.values().cloned().collect();
        assert_eq!(apply_all(&replayed), kv);
        // The erased creation alone: the account exists, deleted, and keeps
        // its name.
        let alone = apply_all(&[log[&(1, 1)].clone()]);
        let rec = query::account(&alone, ann).unwrap().unwrap();
        assert!(rec.deleted && rec.password_hash.is_empty());
        assert_eq!(query::name_owner(&alone, "ann").unwrap(), Some(ann));
        assert_eq!(alone, apply_all(&[created.clone(), deleted.clone()]));
    }
}

#[test]
fn the_latest_password_change_wins_and_its_hash_is_the_only_one_logged() {
    let ann = account(0, 1);
    let created = entry(1, 1, 10, create(0, 1));
    // Concurrent: both replaced the creation's password (version 1).
    let first = entry(2, 1, 20, change_password(0, 1, 1, 1));
    let second = entry(3, 1, 30, change_password(0, 1, 2, 1));
    let all = [&created, &first, &second];
    let mut states = Vec::new();
    for order in [
        [0, 1, 2],
        [0, 2, 1],
        [1, 0, 2],
        [1, 2, 0],
        [2, 0, 1],
        [2, 1, 0],
    ] {
        let (kv, log) = apply_logged(&order.map(|i| all[i].clone()));
        match query::account_status(&kv, ann).unwrap() {
            AccountStatus::Active(rec) => assert_eq!(rec.password_hash, "new-2", "{order:?}"),
            other => panic!("{order:?}: {other:?}"),
        }
        assert_eq!(
            log[&(1, 1)].op,
            Op::CreateAccount {
                account: ann,
                username: "ANN".into(),
                password_hash: String::new(),
            },
            "{order:?}: the creation keeps its place, not its hash"
        );
        assert_eq!(log[&(2, 1)].op, Op::Superseded, "{order:?}");
        assert_eq!(log[&(3, 1)], second, "{order:?}");
        let replayed: Vec<Entry> = log.values().cloned().collect();
        assert_eq!(apply_all(&replayed), kv, "{order:?}");
        states.push(kv);
    }
    assert!(states.windows(2).all(|w| w[0] == w[1]));

    // Deleting the account erases the change as well, in any order; the
    // erased change is evidence of the deletion.
    let deleted = entry(4, 1, 40, Op::DeleteAccount { account: ann });
    let orders = [
        [&created, &second, &deleted],
        [&deleted, &second, &created],
        [&second, &deleted, &created],
    ];
    for order in orders {
        let (kv, log) = apply_logged(&order.map(Clone::clone));
        assert_eq!(log[&(3, 1)].op, Op::ErasedChangePassword { account: ann });
        assert!(matches!(log[&(1, 1)].op, Op::ErasedCreateAccount { .. }));
        let rec = query::account(&kv, ann).unwrap().unwrap();
        assert!(rec.deleted && rec.password_hash.is_empty());
        assert_eq!(kv, apply_all(&[created.clone(), deleted.clone()]));
        assert_eq!(
            apply_all(&[created.clone(), log[&(3, 1)].clone()]),
            kv,
            "the erased change alone deletes the account"
        );
    }
}

#[test]
fn a_password_change_is_checked_against_the_account() {
    let ann = account(0, 1);
    let cmd = |account, replaces: &str| Command::ChangePassword {
        account,
        password_hash: "new".into(),
        replaces: replaces.into(),
    };
    let kv = MemoryKv::default();
    assert_eq!(
        check(&cmd(ann, "hash-1"), &[7; 16], &kv),
        Err(CommandError::UnknownAccount(ann))
    );
    let kv = apply_all(&[entry(1, 1, 10, create(0, 1))]);
    assert_eq!(
        check(&cmd(ann, "hash-1"), &[7; 16], &kv),
        Ok(Checked::Apply(Op::ChangePassword {
            account: ann,
            password_hash: "new".into(),
            version: 1,
        })),
        "the creation's password is version 0"
    );
    // A change replaces the password its session was checked against, or
    // none.
    assert_eq!(
        check(&cmd(ann, "new-5"), &[7; 16], &kv),
        Err(CommandError::PasswordChanged)
    );
    let changed = apply_all(&[
        entry(1, 1, 10, create(0, 1)),
        entry(2, 1, 20, change_password(0, 1, 5, 3)),
    ]);
    assert_eq!(
        check(&cmd(ann, "hash-1"), &[7; 16], &changed),
        Err(CommandError::PasswordChanged)
    );
    assert!(matches!(
        check(&cmd(ann, "new-5"), &[7; 16], &changed),
        Ok(Checked::Apply(Op::ChangePassword { version: 4, .. }))
    ));
    // A change logged before versions (log format 3) is version 0.
    let old = apply_all(&[
        entry(1, 1, 10, create(0, 1)),
        entry(2, 1, 20, change_password(0, 1, 5, 0)),
    ]);
    assert!(matches!(
        check(&cmd(ann, "new-5"), &[7; 16], &old),
        Ok(Checked::Apply(Op::ChangePassword { version: 1, .. }))
    ));
    let kv = apply_all(&[
        entry(1, 1, 10, create(0, 1)),
        entry(1, 2, 20, Op::DeleteAccount { account: ann }),
    ]);
    assert_eq!(
        check(&cmd(ann, "hash-1"), &[7; 16], &kv),
        Err(CommandError::AccountDeleted("ANN".into()))
    );
}

/// A replica hung holding Ann's change to password 2 (origin 2); her client
/// re-sent it to another replica (origin 3), where it went through, and
/// then changed to password 3 there. The hung replica wakes and logs its
/// copy last, with the highest stamp -- but it replaced the same password
/// as the re-sent copy (version 1), so password 3 (version 2) stays in
/// force, in every order.
#[test]
fn a_password_change_handled_late_does_not_put_a_replaced_password_back() {
    let ann = account(0, 1);
    let created = entry(1, 1, 10, create(0, 1));
    let resent = entry(3, 1, 30, change_password(0, 1, 2, 1));
    let third = entry(3, 2, 40, change_password(0, 1, 3, 2));
    let late = entry(2, 1, 50, change_password(0, 1, 2, 1));
    let logs = [vec![created], vec![late], vec![resent, third.clone()]];
    let mut states = Vec::new();
    let orders = every_interleaving(&logs);
    assert_eq!(orders.len(), 12);
    for order in orders {
        let (kv, log) = apply_logged(&order);
        match query::account_status(&kv, ann).unwrap() {
            AccountStatus::Active(rec) => assert_eq!(rec.password_hash, "new-3", "{order:?}"),
            other => panic!("{order:?}: {other:?}"),
        }
        assert_eq!(log[&(3, 2)], third, "{order:?}");
        assert_eq!(log[&(2, 1)].op, Op::Superseded, "{order:?}");
        assert_eq!(log[&(3, 1)].op, Op::Superseded, "{order:?}");
        let replayed: Vec<Entry> = log.values().cloned().collect();
        assert_eq!(apply_all(&replayed), kv, "{order:?}");
        states.push(kv);
    }
    assert!(states.windows(2).all(|w| w[0] == w[1]));
    // Ranked by stamp alone (as before versions: every change version 0),
    // the late copy would have won.
    let unversioned = apply_all(&[
        entry(1, 1, 10, create(0, 1)),
        entry(3, 1, 30, change_password(0, 1, 2, 0)),
        entry(3, 2, 40, change_password(0, 1, 3, 0)),
        entry(2, 1, 50, change_password(0, 1, 2, 0)),
    ]);
    let rec = query::account(&unversioned, ann).unwrap().unwrap();
    assert_eq!(rec.password_hash, "new-2");
}

/// Every merge of the logs that keeps each one's order.
fn every_interleaving(logs: &[Vec<Entry>]) -> Vec<Vec<Entry>> {
    if logs.iter().all(Vec::is_empty) {
        return vec![Vec::new()];
    }
    let mut out = Vec::new();
    for (i, log) in logs.iter().enumerate() {
        let Some((first, rest)) = log.split_first() else {
            continue;
        };
        let mut remaining = logs.to_vec();
        remaining[i] = rest.to_vec();
        for mut tail in every_interleaving(&remaining) {
            tail.insert(0, first.clone());
            out.push(tail);
        }
    }
    out
}

#[test]
fn a_password_record_of_version_0_is_a_bare_stamp() {
    use super::records::{PasswordInForce, encode};
    let stamp = crate::entry::Stamp {
        hlc: 77,
        origin: 2,
        seq: 9,
    };
    let old = PasswordInForce { version: 0, stamp };
    assert_eq!(old.encode(), encode(&stamp), "as log format 3 stored it");
    assert_eq!(PasswordInForce::decode(&old.encode()), Ok(old));
    let new = PasswordInForce { version: 4, stamp };
    assert_eq!(PasswordInForce::decode(&new.encode()), Ok(new));
    let mut trailing = new.encode();
    trailing.push(0);
    assert!(PasswordInForce::decode(&trailing).is_err());
}

// ---- convergence property -------------------------------------------------

/// An operation over a small universe of accounts and messages, so that
/// random histories collide often: duplicate names, retried sends, marks on
/// messages that arrive later or never.
fn arb_op() -> impl Strategy<Value = Op> {
    arb_op_among(3, 3)
}

/// `arb_op` over `names` usernames with `rids - 1` request ids each.
fn arb_op_among(names: usize, rids: u8) -> impl Strategy<Value = Op> {
    let acct = (0..names, 1..rids).prop_map(|(n, r)| account(n, r));
    let msg = (0..names, 1..rids, 0..names, 1..rids, 1..4u8)
        .prop_map(|(sn, sr, rn, rr, rid)| message(account(sn, sr), account(rn, rr), rid));
    prop_oneof![
        2 => (0..names, 1..rids).prop_map(|(n, r)| create(n, r)),
        5 => (acct.clone(), acct.clone(), 1..4u8, 0..2u8).prop_map(|(s, r, rid, b)| send(s, r, rid, &format!("body{b}"))),
        2 => (acct.clone(), prop::collection::vec(msg.clone(), 1..4))
            .prop_map(|(account, messages)| Op::MarkRead { account, messages }),
        2 => (acct.clone(), prop::collection::vec(msg, 1..4))
            .prop_map(|(account, messages)| Op::DeleteMessages { account, messages }),
        1 => (0..names, 1..rids, 0..3u8, 0..3u64)
            .prop_map(|(n, r, p, v)| change_password(n, r, p, v)),
        1 => acct.prop_map(|account| Op::DeleteAccount { account }),
    ]
}

/// Per-origin logs: each origin's entries with increasing seq and
/// non-decreasing hlc (an HLC never goes back), hlcs of different origins
/// overlapping so that ties across origins happen.
fn arb_logs() -> impl Strategy<Value = Vec<Vec<Entry>>> {
    arb_logs_of(arb_op)
}

/// Logs as `arb_logs`, over two accounts only: retried sends, and deletes
/// and marks of messages that exist, are the rule rather than the exception.
fn arb_dense_logs() -> impl Strategy<Value = Vec<Vec<Entry>>> {
    arb_logs_of(|| arb_op_among(2, 2))
}

fn arb_logs_of<S: Strategy<Value = Op> + 'static>(
    op: impl Fn() -> S,
) -> impl Strategy<Value = Vec<Vec<Entry>>> {
    let log = |origin: u32| {
        prop::collection::vec((op(), 0..3u64), 0..14).prop_map(move |ops| {
            let mut hlc = 0;
            ops.into_iter()
                .enumerate()
                .map(|(i, (op, step))| {
                    hlc += step;
                    entry(origin, i as u64 + 1, hlc, op)
                })
                .collect::<Vec<_>>()
        })
    };
    (log(1), log(2), log(3)).prop_map(|(a, b, c)| vec![a, b, c])
}

/// Merges the logs in the order given by `picks`: each pick selects one of
/// the origins that still has entries, preserving each origin's order.
fn interleave(logs: &[Vec<Entry>], picks: &[usize]) -> Vec<Entry> {
    let mut next = vec![0; logs.len()];
    let mut out = Vec::new();
    let mut picks = picks.iter().cycle();
    loop {
        let open: Vec<usize> = (0..logs.len())
            .filter(|&o| next[o] < logs[o].len())
            .collect();
        if open.is_empty() {
            return out;
        }
        let o = open[picks.next().copied().unwrap_or(0) % open.len()];
        out.push(logs[o][next[o]].clone());
        next[o] += 1;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_fifo_interleaving_gives_the_same_state(
        logs in arb_logs(),
        picks_a in prop::collection::vec(0..3usize, 1..50),
        picks_b in prop::collection::vec(0..3usize, 1..50),
    ) {
        let a = apply_all(&interleave(&logs, &picks_a));
        let b = apply_all(&interleave(&logs, &picks_b));
        prop_assert_eq!(digest::digest(&a).unwrap(), digest::digest(&b).unwrap());
        prop_assert_eq!(&a, &b);
        // And the derived counters agree with the messages they count.
        for (n, r) in [(0, 1), (0, 2), (1, 1), (1, 2), (2, 1), (2, 2)] {
            let acct = account(n, r);
            let unread = query::unread_messages(&a, acct, 10_000).unwrap();
            prop_assert_eq!(query::unread_count(&a, acct).unwrap(), unread.len() as u64);
            let convs = query::conversations(&a, acct).unwrap();
            let from_convs: u64 = convs.iter().map(|(_, c)| c.unread).sum();
            prop_assert_eq!(from_convs, unread.len() as u64);
            // Each summary matches its history: count, and newest message.
            for (peer, conv) in convs {
                let (all, _) = query::history(&a, acct, peer, None, 10_000).unwrap();
                prop_assert_eq!(conv.total, all.len() as u64);
                let newest = all.first().map(|(id, rec)| (rec.stamp.hlc, *id));
                prop_assert_eq!(conv.last, newest);
                // The slot's metadata agrees with the record in the index.
                for (id, rec) in &all {
                    prop_assert_eq!(query::message(&a, *id).unwrap(), Some(MessageSlot::Live(rec.meta())));
                }
            }
        }
    }

    /// Erasure keeps the convergence claim and keeps its promise. Two
    /// replicas apply the logs in different orders, erasing as they go; a
    /// third then takes every entry from either of them or from its origin
    /// (unerased), as a replica syncing from different peers at different
    /// times would, and must end in the same state. And a log whose
    /// erasures were carried out holds no body of a deleted message, no
    /// password hash of a deleted account, no password hash but the one in
    /// force, and one copy at most of any message or creation.
    #[test]
    fn erased_logs_replay_to_the_same_state_and_keep_nothing_deleted(
        logs in prop_oneof![arb_logs(), arb_dense_logs()],
        picks_a in prop::collection::vec(0..3usize, 1..50),
        picks_b in prop::collection::vec(0..3usize, 1..50),
        picks_c in prop::collection::vec(0..3usize, 1..50),
        sources in prop::collection::vec(0..3usize, 1..60),
    ) {
        let (a, log_a) = apply_logged(&interleave(&logs, &picks_a));
        let (b, log_b) = apply_logged(&interleave(&logs, &picks_b));
        prop_assert_eq!(&a, &b);

        let mut source = sources.iter().cycle();
        let mixed: Vec<Vec<Entry>> = logs
            .iter()
            .map(|log| {
                log.iter()
                    .map(|e| match source.next().copied().unwrap_or(0) {
                        0 => e.clone(),
                        1 => log_a[&(e.origin, e.seq)].clone(),
                        _ => log_b[&(e.origin, e.seq)].clone(),
                    })
                    .collect()
            })
            .collect();
        let (c, log_c) = apply_logged(&interleave(&mixed, &picks_c));
        prop_assert_eq!(&c, &a);

        for log in [&log_a, &log_b, &log_c] {
            let mut sends = BTreeMap::new();
            let mut creations = BTreeMap::new();
            let mut hashes = BTreeMap::new();
            for e in log.values() {
                match &e.op {
                    Op::SendMessage { message, .. } => {
                        let slot = query::message(&a, *message).unwrap();
                        prop_assert!(
                            !matches!(slot, Some(MessageSlot::Deleted { .. })),
                            "a deleted message's body is still logged: {:?}", e
                        );
                        *sends.entry(*message).or_insert(0) += 1;
                    }
                    Op::CreateAccount { account, password_hash, .. } => {
                        let rec = query::account(&a, *account).unwrap().unwrap();
                        prop_assert!(!rec.deleted, "a deleted account's hash is still logged: {:?}", e);
                        *creations.entry(*account).or_insert(0) += 1;
                        if !password_hash.is_empty() {
                            hashes.entry(*account).or_insert_with(Vec::new).push(password_hash.clone());
                        }
                    }
                    Op::ChangePassword { account, password_hash, .. } => {
                        let rec = query::account(&a, *account).unwrap().unwrap();
                        prop_assert!(!rec.deleted, "a deleted account's new hash is still logged: {:?}", e);
                        hashes.entry(*account).or_insert_with(Vec::new).push(password_hash.clone());
                    }
                    _ => {}
                }
            }
            prop_assert!(sends.values().all(|&n| n == 1), "{:?}", sends);
            prop_assert!(creations.values().all(|&n| n == 1), "{:?}", creations);
            // Of an account's hashes, only the one in force is logged.
            for (account, logged) in &hashes {
                let rec = query::account(&a, *account).unwrap().unwrap();
                prop_assert_eq!(logged, &vec![rec.password_hash.clone()]);
            }
        }
    }
}
