//! The clients: each logs in as its own account through the real client
//! core (failover, server list, request-id retries) and runs a random mix of
//! operations against whichever replica it is using -- and now and then
//! switches to a random one by hand.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use chat_tests::chat_shared::client::{CallError, Config, native};
use rand::rngs::SmallRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};

use super::checker::Account;
use super::history::{History, Op, Outcome, Record};

/// How long one operation may take (including the client's own failovers)
/// before its outcome is recorded as unknown.
const OP_DEADLINE: Duration = Duration::from_secs(20);

#[derive(Clone)]
pub struct Setup {
    /// The main accounts, one per client, with their ids.
    pub accounts: Vec<Account>,
}

/// Registers the main accounts (before any fault).
pub async fn setup(urls: &[String], main: &[Account]) -> Setup {
    let mut accounts = Vec::new();
    for a in main {
        let client = native::client(urls.to_vec(), Config::default());
        let auth = client
            .create_account(&a.username, &a.password)
            .await
            .unwrap_or_else(|e| panic!("create {}: {e}", a.username));
        accounts.push(Account {
            id: auth.account.map(|a| a.id),
            ..a.clone()
        });
    }
    Setup { accounts }
}

/// What a client knows of a message it has seen.
struct Known {
    id: String,
    to_me: bool,
    read: bool,
}

struct Spare {
    /// As created (the password it was created with).
    account: Account,
    client: Option<native::NativeClient>,
    deleted: bool,
    /// The password this client believes in force.
    password: String,
    /// Password changes tried so far.
    changes: usize,
}

fn outcome<T>(r: &Result<Result<T, CallError>, tokio::time::error::Elapsed>) -> Outcome {
    match r {
        Ok(Ok(_)) => Outcome::Ok,
        Ok(Err(e)) => Outcome::Failed(match e.code() {
            Some(code) => format!("{code:?}: {e}"),
            None => e.to_string(),
        }),
        Err(_) => Outcome::Unknown,
    }
}

/// Runs client `c` until `stop`; returns the spare accounts it created.
pub async fn client(
    c: usize,
    seed: u64,
    urls: Vec<String>,
    setup: Setup,
    history: Arc<History>,
    stop: Arc<AtomicBool>,
    ops: Arc<AtomicU64>,
) -> Vec<Account> {
    let mut rng =
        SmallRng::seed_from_u64(seed ^ (c as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    // Clients start on different replicas.
    let mut seeds = urls.clone();
    seeds.rotate_left(c % urls.len());
    let client = native::client(seeds, Config::default());
    let me = &setup.accounts[c];
    if let Err(e) = client.login(&me.username, &me.password).await {
        panic!("client {c} cannot log in: {e}");
    }
    let peers: Vec<&Account> = setup
        .accounts
        .iter()
        .filter(|a| a.username != me.username)
        .collect();
    let mut known: Vec<Known> = Vec::new();
    let mut spares: Vec<Spare> = Vec::new();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        ops.fetch_add(1, Ordering::Relaxed);
        let start = history.now();
        let dice = rng.random_range(0..1000);
        if dice < 30 {
            // Move to a random replica by hand, as a user of the servers
            // panel would (not an operation of its own).
            let url = urls.choose(&mut rng).expect("urls");
            let _ = tokio::time::timeout(OP_DEADLINE, client.switch_to(url)).await;
            continue;
        }
        match dice {
            0..500 => {
                // Mostly to another main account; one send in eight to one
                // of this client's spares, deleted or not, so that sends
                // meet recipients deleted under them (FAILED_PRECONDITION)
                // through failovers and faults.
                let spare = spares
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.account.id.is_some())
                    .map(|(i, s)| (i, s.account.id.clone().expect("id")))
                    .collect::<Vec<_>>()
                    .choose(&mut rng)
                    .cloned()
                    .filter(|_| rng.random_range(0..8) == 0);
                let (to_id, to) = match spare {
                    Some((i, id)) => (id, setup.accounts.len() + spare_index(c, i)),
                    None => {
                        let to = peers.choose(&mut rng).expect("peers");
                        let at = setup
                            .accounts
                            .iter()
                            .position(|a| a.id == to.id)
                            .unwrap_or(0);
                        (to.id.clone().expect("id"), at)
                    }
                };
                let body = format!("c{c}-n{n}-s{seed}");
                let r = tokio::time::timeout(OP_DEADLINE, client.send_message(&to_id, &body)).await;
                let id = match &r {
                    Ok(Ok(m)) => Some(m.id.clone()),
                    _ => None,
                };
                if let Some(id) = &id {
                    known.push(Known {
                        id: id.clone(),
                        to_me: false,
                        read: false,
                    });
                }
                history.record(
                    c,
                    start,
                    Op::Send {
                        from: c,
                        to,
                        body,
                        id,
                    },
                    outcome(&r),
                );
            }
            500..650 => {
                let peer = peers.choose(&mut rng).expect("peers");
                let peer_id = peer.id.clone().expect("id");
                let r = tokio::time::timeout(OP_DEADLINE, async {
                    let mut pages = 0;
                    let mut seen = Vec::new();
                    let mut cursor = String::new();
                    loop {
                        let page = client.get_history(&peer_id, 50, &cursor).await?;
                        pages += 1;
                        seen.extend(page.messages);
                        if page.next_cursor.is_empty() || pages == 3 {
                            return Ok::<_, CallError>((pages, seen));
                        }
                        cursor = page.next_cursor;
                    }
                })
                .await;
                let server = client.current_server().map(|s| s.id);
                let (pages, observed) = match &r {
                    Ok(Ok((pages, seen))) => {
                        for m in seen {
                            let to_me = m
                                .recipient
                                .as_ref()
                                .is_some_and(|a| a.id == me.id.clone().unwrap_or_default());
                            remember(&mut known, &m.id, to_me, m.read);
                        }
                        (
                            *pages,
                            seen.iter().map(|m| (m.id.clone(), m.read)).collect(),
                        )
                    }
                    _ => (0, Vec::new()),
                };
                let peer = setup
                    .accounts
                    .iter()
                    .position(|a| a.id == peer.id)
                    .unwrap_or(0);
                let messages = observed.len();
                history.record(
                    c,
                    start,
                    Op::History {
                        account: c,
                        peer,
                        pages,
                        messages,
                        server,
                        observed,
                    },
                    outcome(&r),
                );
            }
            650..750 => {
                let r = tokio::time::timeout(OP_DEADLINE, client.list_unread(100)).await;
                let server = client.current_server().map(|s| s.id);
                let (count, observed) = match &r {
                    Ok(Ok(u)) => {
                        for m in &u.messages {
                            remember(&mut known, &m.id, true, m.read);
                        }
                        (
                            u.unread_count,
                            u.messages.iter().map(|m| (m.id.clone(), m.read)).collect(),
                        )
                    }
                    _ => (0, Vec::new()),
                };
                history.record(
                    c,
                    start,
                    Op::Unread {
                        account: c,
                        count,
                        server,
                        observed,
                    },
                    outcome(&r),
                );
            }
            750..870 => {
                let ids: Vec<String> = known
                    .iter()
                    .filter(|k| k.to_me && !k.read)
                    .take(5)
                    .map(|k| k.id.clone())
                    .collect();
                if ids.is_empty() {
                    continue;
                }
                let r = tokio::time::timeout(OP_DEADLINE, client.mark_read(ids.clone())).await;
                if matches!(r, Ok(Ok(_))) {
                    for k in known.iter_mut().filter(|k| ids.contains(&k.id)) {
                        k.read = true;
                    }
                }
                history.record(c, start, Op::MarkRead { account: c, ids }, outcome(&r));
            }
            870..970 => {
                if known.is_empty() {
                    continue;
                }
                let count = rng.random_range(1..=3usize).min(known.len());
                let ids: Vec<String> = (0..count)
                    .map(|_| known.swap_remove(rng.random_range(0..known.len())).id)
                    .collect();
                let r =
                    tokio::time::timeout(OP_DEADLINE, client.delete_messages(ids.clone())).await;
                history.record(c, start, Op::Delete { account: c, ids }, outcome(&r));
            }
            _ => {
                // Rarely: create a spare account, change a spare's password,
                // or delete one.
                let live: Vec<usize> = spares
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| !s.deleted && s.client.is_some())
                    .map(|(i, _)| i)
                    .collect();
                let action = if live.is_empty() {
                    2
                } else {
                    rng.random_range(0..3)
                };
                if action == 0 {
                    let i = *live.choose(&mut rng).expect("live spare");
                    let spare = &mut spares[i];
                    let sc = spare.client.as_ref().expect("spare client");
                    let r =
                        tokio::time::timeout(OP_DEADLINE, sc.delete_account(&spare.password)).await;
                    spare.deleted = !matches!(r, Ok(Err(_)));
                    let k = spare_index(c, i);
                    history.record(c, start, Op::DeleteAccount { spare: k }, outcome(&r));
                } else if action == 1 {
                    let i = *live.choose(&mut rng).expect("live spare");
                    let spare = &mut spares[i];
                    spare.changes += 1;
                    let new_password = format!("{}-v{}", spare.account.password, spare.changes);
                    let sc = spare.client.as_ref().expect("spare client");
                    let old_token = sc.session().map(|s| s.token);
                    let r = tokio::time::timeout(
                        OP_DEADLINE,
                        sc.change_password(&spare.password, &new_password),
                    )
                    .await;
                    if matches!(r, Ok(Ok(()))) {
                        spare.password = new_password.clone();
                    } else {
                        // The change may have landed: find out which
                        // password now opens the account (a session for the
                        // next operations either way).
                        for candidate in [new_password.clone(), spare.password.clone()] {
                            let login = tokio::time::timeout(
                                OP_DEADLINE,
                                sc.login(&spare.account.username, &candidate),
                            )
                            .await;
                            if matches!(login, Ok(Ok(_))) {
                                spare.password = candidate;
                                break;
                            }
                        }
                    }
                    history.record(
                        c,
                        start,
                        Op::ChangePassword {
                            spare: spare_index(c, i),
                            new_password,
                            old_token,
                        },
                        outcome(&r),
                    );
                } else {
                    let i = spares.len();
                    let mut account = Account {
                        username: format!("spare{c}x{i}"),
                        password: format!("spare-password-{c}-{i}"),
                        id: None,
                    };
                    let mut seeds = urls.clone();
                    seeds.rotate_left(rng.random_range(0..urls.len()));
                    let sc = native::client(seeds, Config::default());
                    let r = tokio::time::timeout(
                        OP_DEADLINE,
                        sc.create_account(&account.username, &account.password),
                    )
                    .await;
                    let ok = matches!(r, Ok(Ok(_)));
                    // Known once the creation is acknowledged: sends go to it.
                    if let Ok(Ok(auth)) = &r {
                        account.id = auth.account.as_ref().map(|a| a.id.clone());
                    }
                    spares.push(Spare {
                        password: account.password.clone(),
                        account,
                        client: ok.then_some(sc),
                        deleted: false,
                        changes: 0,
                    });
                    history.record(
                        c,
                        start,
                        Op::CreateAccount {
                            spare: spare_index(c, i),
                        },
                        outcome(&r),
                    );
                }
            }
        }
    }
    // Spares are numbered client-major (see `spare_index`); pad so the
    // numbering holds across clients.
    let mut out: Vec<Account> = spares.into_iter().map(|s| s.account).collect();
    out.resize(
        SPARES_PER_CLIENT,
        Account {
            username: String::new(),
            password: String::new(),
            id: None,
        },
    );
    out
}

/// Spare accounts are numbered `client * SPARES_PER_CLIENT + i` so the
/// checker can find them in the concatenation of every client's list.
const SPARES_PER_CLIENT: usize = 10_000;

fn spare_index(client: usize, i: usize) -> usize {
    client * SPARES_PER_CLIENT + i
}

fn remember(known: &mut Vec<Known>, id: &str, to_me: bool, read: bool) {
    match known.iter_mut().find(|k| k.id == id) {
        Some(k) => k.read |= read,
        None => known.push(Known {
            id: id.to_string(),
            to_me,
            read,
        }),
    }
}

/// The replica that answered a read, and the read flags it showed.
fn observation(r: &Record) -> Option<(u32, &Vec<(String, bool)>)> {
    match &r.op {
        Op::History {
            server, observed, ..
        }
        | Op::Unread {
            server, observed, ..
        } => Some(((*server)?, observed)),
        _ => None,
    }
}

/// Read marks never go backwards on a replica: once a replica has shown a
/// message read, no later read on that replica shows it unread.
pub fn monotonic_reads(records: &[Record]) -> Vec<String> {
    // (replica, message) -> end time of the first observation as read.
    let mut read_at: HashMap<(u32, &str), (std::time::Duration, u64)> = HashMap::new();
    let mut sorted: Vec<&Record> = records.iter().collect();
    sorted.sort_by_key(|r| r.end);
    for r in &sorted {
        let Some((server, observed)) = observation(r) else {
            continue;
        };
        for (id, read) in observed {
            if *read {
                read_at
                    .entry((server, id.as_str()))
                    .or_insert((r.end, r.id));
            }
        }
    }
    let mut anomalies = Vec::new();
    for r in &sorted {
        let Some((server, observed)) = observation(r) else {
            continue;
        };
        for (id, read) in observed {
            if let Some((t, op)) = read_at.get(&(server, id.as_str()))
                && !read
                && r.start > *t
            {
                anomalies.push(format!(
                    "replica {server}: message {id} seen read by op {op}, then unread by op {} (read mark went backwards)",
                    r.id
                ));
            }
        }
    }
    anomalies
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn read(id: u64, at: u64, server: u32, read: bool) -> Record {
        Record {
            id,
            client: 0,
            start: Duration::from_secs(at),
            end: Duration::from_secs(at) + Duration::from_millis(10),
            op: Op::Unread {
                account: 0,
                count: 0,
                server: Some(server),
                observed: vec![("m".into(), read)],
            },
            outcome: Outcome::Ok,
        }
    }

    #[test]
    fn read_marks_going_backwards_on_a_replica_are_found() {
        // Read on replica 1, then unread on replica 2 (stale, allowed), then
        // unread again on replica 1 (not allowed).
        let ok = [read(0, 1, 1, true), read(1, 2, 2, false)];
        assert!(monotonic_reads(&ok).is_empty());
        let bad = [
            read(0, 1, 1, true),
            read(1, 2, 2, false),
            read(2, 3, 1, false),
        ];
        let found = monotonic_reads(&bad);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("op 0") && found[0].contains("op 2"));
    }
}
