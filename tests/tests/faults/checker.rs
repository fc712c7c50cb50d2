//! The checker: after the faults stop and the replicas converge, reads the
//! whole chat state from **every** replica (directly, no failover) and checks
//! it against the history.
//!
//! 1. every acknowledged send is present, exactly once;
//! 2. no message whose deletion was acknowledged is present; no account
//!    whose deletion was acknowledged is back; a live account opens with the
//!    password in force, the same on every replica, and not with one an
//!    acknowledged change replaced, whose sessions stay ended;
//! 3. a send that failed or whose outcome is unknown is present on all
//!    replicas or on none (and at most once);
//! 4. all replicas hold the same state (equal digests, equal views);
//!    history pages have no gaps or repeats;
//! 5. acknowledged read marks hold (read, or deleted); every account's unread
//!    count equals the number of unread messages addressed to it.
//!
//! Plus: no message appears that nobody sent.
//!
//! Then, with the replicas stopped, [`check_logs`] reads every replica's log
//! from disk: 6. no message whose deletion was acknowledged, and no account
//! deleted in the log, keeps its content there (body, password hash); a
//! live account keeps exactly one password hash; at most one full copy of
//! any message or creation remains (retries are superseded); and [`check_replay`]: 7. every replica's state is what
//! replaying its own log gives (`chat-server verify`).

use std::collections::{BTreeMap, HashMap, HashSet};

use chat_tests::chat_shared::proto::{self, chat_client::ChatClient};
use chat_tests::{authed, full_history};
use tonic::transport::Channel;

use super::history::{Op, Outcome, Record};

/// An account the workload knows: its credentials, and its id once known.
#[derive(Debug, Clone)]
pub struct Account {
    pub username: String,
    pub password: String,
    pub id: Option<String>,
}

/// What one replica holds, as its clients see it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct View {
    /// Message id -> (sender id, recipient id, body, read).
    pub messages: BTreeMap<String, (String, String, String, bool)>,
    /// Account id -> unread count reported at login.
    pub unread: BTreeMap<String, u64>,
    /// Message id -> its time (`sent_at_ms`).
    pub times: BTreeMap<String, i64>,
}

pub struct Anomalies(pub Vec<String>);

impl Anomalies {
    fn add(&mut self, s: String) {
        self.0.push(s);
    }
}

async fn client(url: &str) -> ChatClient<Channel> {
    let ch = Channel::from_shared(url.to_string())
        .unwrap()
        .connect()
        .await
        .unwrap_or_else(|e| panic!("checker cannot reach {url}: {e}"));
    ChatClient::new(ch)
}

/// Reads a replica's view through the accounts that can log in; checks
/// paging on the way.
pub async fn read_view(url: &str, accounts: &[Account], anomalies: &mut Anomalies) -> View {
    let mut c = client(url).await;
    let mut view = View::default();
    for a in accounts {
        let auth = match c
            .login(proto::LoginRequest {
                username: a.username.clone(),
                password: a.password.clone(),
            })
            .await
        {
            Ok(r) => r.into_inner(),
            Err(s) => {
                anomalies.add(format!(
                    "{url}: main account {} cannot log in: {s:?}",
                    a.username
                ));
                continue;
            }
        };
        let me = auth.account.as_ref().unwrap().id.clone();
        view.unread.insert(me.clone(), auth.unread_count);
        let mut peers = Vec::new();
        let mut cursor = String::new();
        loop {
            let page = c
                .list_conversations(authed(
                    &auth.token,
                    proto::ListConversationsRequest {
                        page_size: 7,
                        cursor,
                    },
                ))
                .await
                .expect("conversations")
                .into_inner();
            peers.extend(page.conversations.into_iter().map(|c| c.peer.unwrap().id));
            if page.next_cursor.is_empty() {
                break;
            }
            cursor = page.next_cursor;
        }
        for peer in peers {
            let small = full_history(&mut c, &auth.token, &peer, 37)
                .await
                .expect("history");
            let big = full_history(&mut c, &auth.token, &peer, 200)
                .await
                .expect("history");
            let ids: Vec<&String> = small.iter().map(|m| &m.id).collect();
            if ids.iter().collect::<HashSet<_>>().len() != ids.len() {
                anomalies.add(format!(
                    "{url}: history {me}/{peer} repeats a message across pages"
                ));
            }
            if small.windows(2).any(|w| w[0].sent_at_ms < w[1].sent_at_ms) {
                anomalies.add(format!("{url}: history {me}/{peer} is not newest-first"));
            }
            let big_ids: Vec<&String> = big.iter().map(|m| &m.id).collect();
            if ids != big_ids {
                anomalies.add(format!(
                    "{url}: history {me}/{peer} differs between page sizes 37 and 200 (gap or repeat)"
                ));
            }
            for m in big {
                view.times.insert(m.id.clone(), m.sent_at_ms);
                view.messages.insert(
                    m.id,
                    (
                        m.sender.unwrap().id,
                        m.recipient.unwrap().id,
                        m.body,
                        m.read,
                    ),
                );
            }
        }
    }
    view
}

/// How far a message's time may be from the real time of its send: the
/// replicas share this machine's clock, so only a stamp made with a
/// replica's wrong clock (the nemesis's clock jumps) can be further off.
const TIME_SLACK_MS: i64 = 1_000;

/// Check 8: every message carries the real time it was sent at -- not
/// before its send began and, for an acknowledged send, not after the
/// answer -- even when the nemesis moved a replica's clock by seconds to
/// hours (a replica whose clock is off or has just jumped stamps nothing,
/// docs/replication.md "A wrong clock"). `started_wall_ms`: the real time
/// at the history's start, which record times count from.
pub fn check_times(
    view: &View,
    history: &[Record],
    started_wall_ms: i64,
    anomalies: &mut Anomalies,
) {
    let by_body: HashMap<&str, &str> = view
        .messages
        .iter()
        .map(|(id, (_, _, body, _))| (body.as_str(), id.as_str()))
        .collect();
    let mut off = 0;
    for rec in history {
        let Op::Send { body, .. } = &rec.op else {
            continue;
        };
        let Some(time) = by_body
            .get(body.as_str())
            .and_then(|id| view.times.get(*id))
        else {
            continue;
        };
        let wall = |d: std::time::Duration| started_wall_ms + d.as_millis() as i64;
        let earliest = wall(rec.start) - TIME_SLACK_MS;
        let latest = match rec.outcome {
            Outcome::Ok => wall(rec.end) + TIME_SLACK_MS,
            // Unanswered: it may have been accepted later, but never
            // stamped in the future.
            _ => i64::MAX,
        };
        if !(earliest..=latest).contains(time) {
            off += 1;
            if off <= 10 {
                anomalies.add(format!(
                    "message {body:?} (op {}, {:?}) is stamped {time} ms, {} ms from its send at {}..{} ms",
                    rec.id,
                    rec.outcome,
                    if *time < earliest { time - earliest } else { time - latest },
                    earliest + TIME_SLACK_MS,
                    wall(rec.end)
                ));
            }
        }
    }
    if off > 10 {
        anomalies.add(format!(
            "... {} more messages stamped off their send's time",
            off - 10
        ));
    }
}

/// Checks the logs of stopped replicas (their data directories, in replica
/// order) against the history: 6. in the module docs.
pub fn check_logs(data_dirs: &[std::path::PathBuf], history: &[Record], anomalies: &mut Anomalies) {
    use chat_tests::chat_server::entry::Op as Logged;
    use chat_tests::chat_server::ids::MessageId;
    let deleted_ok: HashSet<MessageId> = history
        .iter()
        .filter_map(|rec| match (&rec.op, &rec.outcome) {
            (Op::Delete { ids, .. }, Outcome::Ok) => Some(ids),
            _ => None,
        })
        .flatten()
        .filter_map(|id| id.parse().ok())
        .collect();
    for (i, dir) in data_dirs.iter().enumerate() {
        let r = i + 1;
        let dir = chat_tests::chat_server::server::store_dir(dir);
        let store = match chat_tests::chat_server::storage::Store::open(&dir) {
            Ok(s) => s,
            Err(e) => {
                anomalies.add(format!("replica {r}: cannot open its store: {e}"));
                continue;
            }
        };
        let mut log = Vec::new();
        let cutoffs = store.cutoffs().unwrap_or_default();
        // One origin per replica and unclean stop (kill -9): replication.md, "Origins".
        let origins = cutoffs.len();
        for (origin, cutoff) in cutoffs {
            match store.entries_after(origin, 0, cutoff, usize::MAX) {
                Ok(entries) => log.extend(entries),
                Err(e) => anomalies.add(format!("replica {r}: cannot read its log: {e}")),
            }
        }
        let deleted_accounts: HashSet<_> = log
            .iter()
            .filter_map(|e| match &e.op {
                Logged::DeleteAccount { account } => Some(*account),
                _ => None,
            })
            .collect();
        let mut sends: HashMap<MessageId, usize> = HashMap::new();
        let mut creations: HashMap<_, usize> = HashMap::new();
        let mut hashes: HashMap<_, usize> = HashMap::new();
        let mut changes = 0usize;
        for e in &log {
            match &e.op {
                Logged::SendMessage { message, .. } => {
                    if deleted_ok.contains(message) {
                        anomalies.add(format!(
                            "replica {r}: the log still holds the body of deleted message {message} ({}:{})",
                            e.origin, e.seq
                        ));
                    }
                    *sends.entry(*message).or_default() += 1;
                }
                Logged::CreateAccount {
                    account,
                    password_hash,
                    ..
                } => {
                    if deleted_accounts.contains(account) {
                        anomalies.add(format!(
                            "replica {r}: the log still holds the password hash of deleted account {account} ({}:{})",
                            e.origin, e.seq
                        ));
                    }
                    *creations.entry(*account).or_default() += 1;
                    if !password_hash.is_empty() {
                        *hashes.entry(*account).or_default() += 1;
                    }
                }
                Logged::ChangePassword { account, .. } => {
                    changes += 1;
                    if deleted_accounts.contains(account) {
                        anomalies.add(format!(
                            "replica {r}: the log still holds a password hash of deleted account {account}, from a change ({}:{})",
                            e.origin, e.seq
                        ));
                    }
                    *hashes.entry(*account).or_default() += 1;
                }
                _ => {}
            }
        }
        // A live account's log keeps exactly one password hash: the one in
        // force (replication.md, "Erasure").
        for account in creations.keys().filter(|a| !deleted_accounts.contains(a)) {
            let n = hashes.get(account).copied().unwrap_or(0);
            if n != 1 {
                anomalies.add(format!(
                    "replica {r}: the log holds {n} password hashes of live account {account}, not exactly 1"
                ));
            }
        }
        let copies = sends
            .values()
            .chain(creations.values())
            .filter(|&&n| n > 1)
            .count();
        if copies > 0 {
            anomalies.add(format!(
                "replica {r}: {copies} messages or accounts have more than one full entry in the log"
            ));
        }
        eprintln!(
            "replica {r}: log of {} entries from {origins} origins; {} messages, {} creations and {changes} password changes in full, {} deleted messages checked",
            log.len(),
            sends.len(),
            creations.len(),
            deleted_ok.len()
        );
    }
}

/// Check 7: each replica's state is what replaying its own log gives
/// (`chat-server verify`). The replicas must be stopped.
pub fn check_replay(data_dirs: &[std::path::PathBuf], anomalies: &mut Anomalies) {
    for (i, dir) in data_dirs.iter().enumerate() {
        match chat_tests::chat_server::admin::verify::verify(dir) {
            Ok(report) if report.ok() => {}
            Ok(report) => anomalies.add(format!(
                "replica {}: its state is not what replaying its log gives: digest {} vs \
                 replayed {}, gaps {:?}, {} entries not erased",
                i + 1,
                report.stored_digest,
                report.replayed_digest,
                report.gaps,
                report.unerased.len()
            )),
            Err(e) => anomalies.add(format!("replica {}: cannot replay its log: {e}", i + 1)),
        }
    }
}

/// Checks a converged cluster against the history. `views[i]` is replica
/// i's view; `spares` are the rarely created/deleted accounts.
pub async fn check(
    urls: &[String],
    views: &[View],
    history: &[Record],
    main: &[Account],
    spares: &[Account],
    anomalies: &mut Anomalies,
) {
    // 4. Same view everywhere.
    for (i, v) in views.iter().enumerate().skip(1) {
        if v != &views[0] {
            let a: HashSet<_> = views[0].messages.keys().collect();
            let b: HashSet<_> = v.messages.keys().collect();
            anomalies.add(format!(
                "replica {} and replica 1 differ: {} messages only on 1, {} only on {}, unread {:?} vs {:?}",
                i + 1,
                a.difference(&b).count(),
                b.difference(&a).count(),
                i + 1,
                views[0].unread,
                v.unread
            ));
        }
    }
    // Indexes over the history, built once.
    let mut sent_bodies = HashSet::new();
    let mut deleted_ok = HashSet::new();
    let mut maybe_deleted = HashSet::new();
    let mut marked = HashSet::new();
    for rec in history {
        match (&rec.op, &rec.outcome) {
            (Op::Send { body, .. }, _) => {
                sent_bodies.insert(body.as_str());
            }
            (Op::Delete { ids, .. }, Outcome::Ok) => {
                deleted_ok.extend(ids.iter().map(String::as_str));
                maybe_deleted.extend(ids.iter().map(String::as_str));
            }
            (Op::Delete { ids, .. }, Outcome::Unknown) => {
                maybe_deleted.extend(ids.iter().map(String::as_str));
            }
            (Op::MarkRead { ids, .. }, Outcome::Ok) => {
                marked.extend(ids.iter().map(String::as_str))
            }
            _ => {}
        }
    }
    for (i, view) in views.iter().enumerate() {
        let r = i + 1;
        let mut by_body: HashMap<&str, Vec<&String>> = HashMap::new();
        for (id, (_, _, body, _)) in &view.messages {
            by_body.entry(body.as_str()).or_default().push(id);
        }
        // 1 and 3. Sends: acknowledged ones present exactly once (unless
        // deleted since); any send at most once.
        for rec in history {
            let Op::Send { body, id, .. } = &rec.op else {
                continue;
            };
            let found = by_body.get(body.as_str()).map_or(0, Vec::len);
            if found > 1 {
                anomalies.add(format!(
                    "replica {r}: send op {} ({body}) stored {found} times",
                    rec.id
                ));
            }
            if rec.outcome == Outcome::Ok {
                let id = id.as_deref().unwrap_or_default();
                let present = by_body
                    .get(body.as_str())
                    .is_some_and(|ids| ids.iter().any(|i| i.as_str() == id));
                if !present && !maybe_deleted.contains(id) {
                    anomalies.add(format!(
                        "replica {r}: acknowledged send op {} ({body}, id {id}) is missing",
                        rec.id
                    ));
                }
            }
        }
        // 2. Acknowledged deletions hold.
        for id in &deleted_ok {
            if view.messages.contains_key(*id) {
                anomalies.add(format!(
                    "replica {r}: message {id} is back after an acknowledged delete"
                ));
            }
        }
        // 5. Read marks hold; unread counts match.
        for id in &marked {
            if let Some((_, _, _, read)) = view.messages.get(*id)
                && !read
            {
                anomalies.add(format!(
                    "replica {r}: message {id} is unread after an acknowledged mark-read"
                ));
            }
        }
        for (account, count) in &view.unread {
            let actual = view
                .messages
                .values()
                .filter(|(_, to, _, read)| to == account && !read)
                .count() as u64;
            if actual != *count {
                anomalies.add(format!(
                    "replica {r}: account {account} reports {count} unread, holds {actual} unread messages"
                ));
            }
        }
        // Nothing nobody sent.
        for (id, (_, _, body, _)) in &view.messages {
            if !sent_bodies.contains(body.as_str()) {
                anomalies.add(format!("replica {r}: message {id} ({body}) was never sent"));
            }
        }
    }
    // 2. Deleted accounts stay deleted; created ones exist, opened by the
    // password in force.
    let mut spare_ops: HashMap<(usize, &str), Vec<Outcome>> = HashMap::new();
    for rec in history {
        match rec.op {
            Op::CreateAccount { spare } | Op::DeleteAccount { spare } => spare_ops
                .entry((spare, rec.op.kind()))
                .or_default()
                .push(rec.outcome.clone()),
            _ => {}
        }
    }
    let passwords = passwords_in_force(spares, history);
    let mut in_force: HashMap<usize, (usize, String)> = HashMap::new();
    for (i, url) in urls.iter().enumerate() {
        let mut c = client(url).await;
        let token = c
            .login(proto::LoginRequest {
                username: main[0].username.clone(),
                password: main[0].password.clone(),
            })
            .await
            .map(|r| r.into_inner().token)
            .ok();
        for (k, spare) in spares.iter().enumerate() {
            if spare.username.is_empty() {
                continue;
            }
            let deleted = spare_ops
                .get(&(k, "delete-account"))
                .is_some_and(|o| o.contains(&Outcome::Ok));
            let maybe_deleted = spare_ops.get(&(k, "delete-account")).is_some_and(|o| {
                o.iter()
                    .any(|o| *o != Outcome::Ok && !matches!(o, Outcome::Failed(_)))
            });
            let created = spare_ops
                .get(&(k, "create-account"))
                .is_some_and(|o| o.contains(&Outcome::Ok));
            let login = async |c: &mut ChatClient<Channel>, password: &str| {
                c.login(proto::LoginRequest {
                    username: spare.username.clone(),
                    password: password.to_string(),
                })
                .await
            };
            if deleted {
                match &login(&mut c, &spare.password).await {
                    Err(s) if s.message().contains("deleted") => {}
                    other => anomalies.add(format!(
                        "replica {}: spare {} was deleted (acknowledged) but login gives {other:?}",
                        i + 1,
                        spare.username
                    )),
                }
                if let Some(token) = &token {
                    let listed = c
                        .list_accounts(authed(
                            token,
                            proto::ListAccountsRequest {
                                pattern: spare.username.clone(),
                                ..Default::default()
                            },
                        ))
                        .await
                        .map(|r| r.into_inner().accounts.len())
                        .unwrap_or(0);
                    if listed != 0 {
                        anomalies.add(format!(
                            "replica {}: deleted spare {} is listed",
                            i + 1,
                            spare.username
                        ));
                    }
                }
            } else if created {
                let allowed = passwords.get(&k);
                let candidates = allowed.map_or(std::slice::from_ref(&spare.password), |p| {
                    p.allowed.as_slice()
                });
                // The likeliest first: each wrong one costs a password try.
                let mut opened = None;
                let mut last = None;
                for candidate in candidates.iter().rev() {
                    match login(&mut c, candidate).await {
                        Ok(_) => {
                            opened = Some(candidate.clone());
                            break;
                        }
                        Err(s) => last = Some(s),
                    }
                }
                match (&opened, &last) {
                    (Some(p), _) => {
                        if let Some((first, seen)) = in_force.get(&k) {
                            if seen != p {
                                anomalies.add(format!(
                                    "spare {}: replica {} takes password '{seen}', replica {} '{p}'",
                                    spare.username,
                                    first,
                                    i + 1
                                ));
                            }
                        } else {
                            in_force.insert(k, (i + 1, p.clone()));
                        }
                    }
                    (None, Some(s)) if maybe_deleted && s.message().contains("deleted") => {}
                    (None, s) => anomalies.add(format!(
                        "replica {}: spare {} was created (acknowledged) but opens with none of {candidates:?}: {s:?}",
                        i + 1,
                        spare.username
                    )),
                }
                if let Some(p) = allowed {
                    // Passwords an acknowledged change replaced open nothing
                    // (the three newest: each costs a password try).
                    for old in p.replaced.iter().take(3) {
                        if login(&mut c, old).await.is_err() {
                            continue;
                        }
                        anomalies.add(format!(
                            "replica {}: spare {} still opens with '{old}', replaced by an acknowledged change",
                            i + 1,
                            spare.username
                        ));
                    }
                    // Sessions an acknowledged change ended stay ended.
                    for ended in &p.ended_sessions {
                        let r = c
                            .list_unread(authed(ended, proto::ListUnreadRequest { limit: 1 }))
                            .await;
                        if !matches!(&r, Err(s) if s.code() == tonic::Code::Unauthenticated) {
                            anomalies.add(format!(
                                "replica {}: spare {}: a session ended by an acknowledged password change gives {:?}",
                                i + 1,
                                spare.username,
                                r.map(|_| "a page of unread messages")
                            ));
                        }
                    }
                }
            }
        }
    }
}

/// What the history says of one spare account's password.
#[derive(Debug, Default, PartialEq)]
pub struct Passwords {
    /// The passwords that may be in force now: the one the last acknowledged
    /// change set (or the creation's), and those of later changes that were
    /// not acknowledged (they may have landed).
    pub allowed: Vec<String>,
    /// Passwords in force before the last acknowledged change, newest
    /// first: that change outranks every earlier one (a higher version than
    /// those it replaced; a later stamp than those made on the same
    /// password before it), so none of them may open the account any more.
    /// (Except in a case docs/replication.md's "Known limits" leaves: a
    /// change never acknowledged, handled late by a replica that hung with
    /// it and heard of nothing since, beats the next change on the same
    /// password. The workload's clients never log in with an older
    /// password, so the partition case listed there does not arise.)
    pub replaced: Vec<String>,
    /// Tokens of sessions acknowledged changes ended.
    pub ended_sessions: Vec<String>,
}

/// Each spare's passwords, from its changes in the order its client made
/// them (one client per spare, one operation at a time).
pub fn passwords_in_force(spares: &[Account], history: &[Record]) -> HashMap<usize, Passwords> {
    let mut out: HashMap<usize, Passwords> = HashMap::new();
    let mut records: Vec<&Record> = history.iter().collect();
    records.sort_by_key(|r| r.id);
    for rec in records {
        let Op::ChangePassword {
            spare,
            new_password,
            old_token,
        } = &rec.op
        else {
            continue;
        };
        let p = out.entry(*spare).or_insert_with(|| Passwords {
            allowed: vec![spares[*spare].password.clone()],
            ..Default::default()
        });
        match &rec.outcome {
            Outcome::Ok => {
                let before = std::mem::replace(&mut p.allowed, vec![new_password.clone()]);
                p.replaced.splice(0..0, before.into_iter().rev());
                p.ended_sessions.extend(old_token.clone());
            }
            // Even a refusal may follow a failed-over attempt that a
            // replica stored (and relays later): the client reports the
            // last answer only.
            Outcome::Failed(_) | Outcome::Unknown => p.allowed.push(new_password.clone()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    //! The checker must be able to fail: each seeded defect is found.

    use std::time::Duration;

    use super::*;

    fn send(id: u64, body: &str, msg: Option<&str>, outcome: Outcome) -> Record {
        Record {
            id,
            client: 0,
            start: Duration::ZERO,
            end: Duration::ZERO,
            op: Op::Send {
                from: 0,
                to: 1,
                body: body.into(),
                id: msg.map(Into::into),
            },
            outcome,
        }
    }

    fn view(messages: &[(&str, &str, bool)], unread_b: u64) -> View {
        View {
            messages: messages
                .iter()
                .map(|(id, body, read)| {
                    (
                        id.to_string(),
                        ("a".into(), "b".into(), body.to_string(), *read),
                    )
                })
                .collect(),
            unread: [("b".to_string(), unread_b)].into(),
            times: Default::default(),
        }
    }

    #[test]
    fn finds_messages_stamped_off_the_time_they_were_sent() {
        let at = |id: u64, body: &str, start_ms: u64, end_ms: u64, outcome| Record {
            start: Duration::from_millis(start_ms),
            end: Duration::from_millis(end_ms),
            ..send(id, body, None, outcome)
        };
        let history = [
            at(0, "on time", 1_000, 1_020, Outcome::Ok),
            at(1, "from a clock an hour ahead", 2_000, 2_010, Outcome::Ok),
            at(2, "answered late", 3_000, 9_000, Outcome::Unknown),
            at(
                3,
                "from a clock ten minutes behind",
                4_000,
                4_005,
                Outcome::Unknown,
            ),
            at(4, "never stored", 5_000, 5_010, Outcome::Unknown),
        ];
        let base = 1_800_000_000_000;
        let mut v = view(
            &[
                ("m0", "on time", false),
                ("m1", "from a clock an hour ahead", false),
                ("m2", "answered late", false),
                ("m3", "from a clock ten minutes behind", false),
            ],
            0,
        );
        v.times = [
            ("m0".to_string(), base + 1_010),
            ("m1".to_string(), base + 2_005 + 3_600_000),
            // Accepted after the client gave up: later than its end, fine.
            ("m2".to_string(), base + 20_000),
            ("m3".to_string(), base + 4_002 - 600_000),
        ]
        .into();
        let mut a = Anomalies(Vec::new());
        check_times(&v, &history, base, &mut a);
        assert_eq!(a.0.len(), 2, "{:#?}", a.0);
        assert!(
            a.0[0].contains("an hour ahead") && a.0[0].contains("3598995 ms"),
            "{}",
            a.0[0]
        );
        assert!(a.0[1].contains("ten minutes behind"), "{}", a.0[1]);
    }

    async fn anomalies(views: &[View], history: &[Record]) -> Vec<String> {
        let mut a = Anomalies(Vec::new());
        check(&[], views, history, &[], &[], &mut a).await;
        a.0
    }

    #[tokio::test]
    async fn a_clean_history_passes() {
        let history = [
            send(0, "x", Some("m1"), Outcome::Ok),
            send(1, "y", None, Outcome::Unknown),
        ];
        let v = view(&[("m1", "x", false)], 1);
        assert!(anomalies(&[v.clone(), v], &history).await.is_empty());
    }

    #[tokio::test]
    async fn finds_lost_duplicated_resurrected_and_phantom_messages() {
        let mut history = vec![
            send(0, "x", Some("m1"), Outcome::Ok),
            send(1, "y", Some("m2"), Outcome::Ok),
        ];
        history.push(Record {
            id: 2,
            client: 0,
            start: Duration::ZERO,
            end: Duration::ZERO,
            op: Op::Delete {
                account: 0,
                ids: vec!["m2".into()],
            },
            outcome: Outcome::Ok,
        });
        history.push(Record {
            id: 3,
            client: 0,
            start: Duration::ZERO,
            end: Duration::ZERO,
            op: Op::MarkRead {
                account: 1,
                ids: vec!["m3".into()],
            },
            outcome: Outcome::Ok,
        });
        // m1 lost; m2 back after its delete; "x" stored twice under other
        // ids; m3 unread despite the mark; "z" never sent; unread count off.
        let v = view(
            &[
                ("m2", "y", false),
                ("m4", "x", false),
                ("m5", "x", false),
                ("m3", "x2", false),
                ("m6", "z", true),
            ],
            1,
        );
        let found = anomalies(&[v], &history).await;
        let all = found.join("\n");
        for needle in [
            "acknowledged send op 0 (x, id m1) is missing",
            "message m2 is back after an acknowledged delete",
            "send op 0 (x) stored 2 times",
            "message m3 is unread after an acknowledged mark-read",
            "was never sent",
            "reports 1 unread, holds 4 unread messages",
        ] {
            assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
        }
    }

    /// A replica's data directory holding `entries` in its log.
    fn data_dir_with(entries: &[chat_tests::chat_server::entry::Entry]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let store_dir = chat_tests::chat_server::server::store_dir(dir.path());
        let store = chat_tests::chat_server::storage::Store::open(&store_dir).unwrap();
        store.commit(entries, Default::default()).unwrap();
        dir
    }

    /// Log entries of one origin, numbered from 1 in the order given.
    fn numbered<const N: usize>(
        ops: [chat_tests::chat_server::entry::Op; N],
    ) -> Vec<chat_tests::chat_server::entry::Entry> {
        (1..)
            .zip(ops)
            .map(|(seq, op)| chat_tests::chat_server::entry::Entry {
                origin: 1,
                seq,
                hlc: seq,
                request_id: [seq as u8; 16],
                op,
            })
            .collect()
    }

    #[test]
    fn finds_deleted_content_left_in_a_log() {
        use chat_tests::chat_server::entry::Op as Logged;
        use chat_tests::chat_server::ids::{AccountId, MessageId};
        let (ann, bob, carl) = (AccountId([1; 16]), AccountId([2; 16]), AccountId([3; 16]));
        let (gone, kept) = (MessageId([7; 16]), MessageId([8; 16]));
        let send = |message| Logged::SendMessage {
            message,
            sender: ann,
            recipient: bob,
            body: "hello".into(),
        };
        let log = numbered([
            Logged::CreateAccount {
                account: carl,
                username: "carl".into(),
                password_hash: "$argon2id$secret".into(),
            },
            send(gone),
            send(kept),
            send(kept),
            Logged::DeleteAccount { account: carl },
        ]);
        let dir = data_dir_with(&log);
        let history = [Record {
            id: 0,
            client: 0,
            start: Duration::ZERO,
            end: Duration::ZERO,
            op: Op::Delete {
                account: 0,
                ids: vec![gone.to_string()],
            },
            outcome: Outcome::Ok,
        }];
        let mut a = Anomalies(Vec::new());
        check_logs(&[dir.path().to_path_buf()], &history, &mut a);
        let all = a.0.join("\n");
        for needle in [
            format!("still holds the body of deleted message {gone}"),
            format!("still holds the password hash of deleted account {carl}"),
            "1 messages or accounts have more than one full entry".to_string(),
        ] {
            assert!(all.contains(&needle), "missing {needle:?} in:\n{all}");
        }
        assert_eq!(a.0.len(), 3, "{all}");
    }

    #[test]
    fn finds_password_hashes_left_in_a_log() {
        use chat_tests::chat_server::entry::Op as Logged;
        use chat_tests::chat_server::ids::AccountId;
        let (ann, bob, carl, dave) = (
            AccountId([1; 16]),
            AccountId([2; 16]),
            AccountId([3; 16]),
            AccountId([4; 16]),
        );
        let create = |account, name: &str, hash: &str| Logged::CreateAccount {
            account,
            username: name.into(),
            password_hash: hash.into(),
        };
        let change = |account| Logged::ChangePassword {
            account,
            password_hash: "$argon2id$new".into(),
            version: 1,
        };
        let log = numbered([
            // ann: the creation's hash replaced, as erasure leaves it: fine.
            create(ann, "ann", ""),
            change(ann),
            // bob: the replaced creation kept its hash.
            create(bob, "bob", "$argon2id$old"),
            change(bob),
            // carl: no hash at all.
            create(carl, "carl", ""),
            // dave: deleted, a change of his still holding its hash.
            Logged::ErasedCreateAccount {
                account: dave,
                username: "dave".into(),
            },
            change(dave),
            Logged::DeleteAccount { account: dave },
        ]);
        let dir = data_dir_with(&log);
        let mut a = Anomalies(Vec::new());
        check_logs(&[dir.path().to_path_buf()], &[], &mut a);
        let all = a.0.join("\n");
        for needle in [
            format!("holds 2 password hashes of live account {bob}"),
            format!("holds 0 password hashes of live account {carl}"),
            format!("a password hash of deleted account {dave}, from a change"),
        ] {
            assert!(all.contains(&needle), "missing {needle:?} in:\n{all}");
        }
        assert_eq!(a.0.len(), 3, "{all}");
    }

    #[test]
    fn passwords_in_force_follow_the_last_acknowledged_change() {
        let spare = Account {
            username: "spare0x0".into(),
            password: "p0".into(),
            id: None,
        };
        let change = |id, new: &str, token: &str, outcome| Record {
            id,
            client: 0,
            start: Duration::ZERO,
            end: Duration::ZERO,
            op: Op::ChangePassword {
                spare: 0,
                new_password: new.into(),
                old_token: Some(token.into()),
            },
            outcome,
        };
        let history = [
            change(0, "p1", "t0", Outcome::Ok),
            change(1, "p2", "t1", Outcome::Unknown),
            change(2, "p3", "t1", Outcome::Failed("Unavailable: ...".into())),
        ];
        let p = &passwords_in_force(std::slice::from_ref(&spare), &history)[&0];
        assert_eq!(p.allowed, ["p1", "p2", "p3"]);
        assert_eq!(p.replaced, ["p0"]);
        assert_eq!(p.ended_sessions, ["t0"]);
        let history = [
            history[0].clone(),
            history[1].clone(),
            change(2, "p3", "t1", Outcome::Ok),
        ];
        let p = &passwords_in_force(std::slice::from_ref(&spare), &history)[&0];
        assert_eq!(p.allowed, ["p3"]);
        assert_eq!(p.replaced, ["p2", "p1", "p0"]);
        assert_eq!(p.ended_sessions, ["t0", "t1"]);
    }

    #[tokio::test]
    async fn finds_replicas_that_differ() {
        let history = [send(0, "x", Some("m1"), Outcome::Unknown)];
        let with = view(&[("m1", "x", false)], 1);
        let without = view(&[], 0);
        let found = anomalies(&[with, without], &history).await;
        assert!(
            found
                .iter()
                .any(|a| a.contains("replica 2 and replica 1 differ")),
            "{found:?}"
        );
    }
}
