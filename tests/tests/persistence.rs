//! Durability: kill -9 a replica in the middle of a write load, restart it,
//! and find every acknowledged message -- and no half-applied write.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chat_tests::chat_shared::proto;
use chat_tests::*;
use tokio::sync::Mutex;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_mid_load_loses_nothing_acknowledged() {
    let dir = TestDir::new("persistence");
    let mut r = Replica::new(dir.path(), 1, vec![]);
    r.start().await;
    let mut c = r.client().await;
    let mut users = Vec::new();
    for i in 0..8 {
        users.push(register(&mut c, &format!("user{i}"), "some-password").await);
    }
    let users = Arc::new(users);
    // Every acknowledged send: message id -> (sender index, recipient index).
    let acked: Arc<Mutex<HashMap<String, (usize, usize)>>> = Arc::default();
    let mut senders = Vec::new();
    for s in 0..8 {
        let (users, acked, mut c) = (users.clone(), acked.clone(), c.clone());
        senders.push(tokio::spawn(async move {
            for n in 0.. {
                let to = (s + 1 + n % 7) % 8;
                let req = proto::SendMessageRequest {
                    request_id: rid(),
                    recipient_id: users[to].account.as_ref().unwrap().id.clone(),
                    body: format!("from {s} #{n}"),
                };
                match c.send_message(authed(&users[s].token, req)).await {
                    Ok(resp) => {
                        let id = resp.into_inner().message.unwrap().id;
                        acked.lock().await.insert(id, (s, to));
                    }
                    Err(_) => return, // the server died under us
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    r.kill9();
    for s in senders {
        s.await.unwrap();
    }
    let acked = acked.lock().await.clone();
    assert!(
        acked.len() > 50,
        "load too light to mean anything: {}",
        acked.len()
    );

    r.start().await;
    let mut c = r.client().await;
    // Log in again (tokens stay valid, but this also proves accounts persist).
    let mut tokens = Vec::new();
    for i in 0..8 {
        let auth = c
            .login(proto::LoginRequest {
                username: format!("user{i}"),
                password: "some-password".into(),
            })
            .await
            .unwrap()
            .into_inner();
        tokens.push(auth);
    }
    let mut found = HashMap::new();
    let mut total_unread = 0;
    for (i, me) in tokens.iter().enumerate() {
        let convs = c
            .list_conversations(authed(
                &me.token,
                proto::ListConversationsRequest::default(),
            ))
            .await
            .unwrap()
            .into_inner()
            .conversations;
        let mut unread_in_convs = 0;
        for conv in convs {
            let peer = conv.peer.unwrap().id;
            let history = full_history(&mut c, &me.token, &peer, 200).await.unwrap();
            // Derived state agrees with the messages: no half-applied write.
            assert_eq!(conv.message_count, history.len() as u64);
            let unread_here = history
                .iter()
                .filter(|m| {
                    !m.read && m.recipient.as_ref().unwrap().id == me.account.as_ref().unwrap().id
                })
                .count() as u64;
            assert_eq!(conv.unread_count, unread_here);
            unread_in_convs += unread_here;
            for m in history {
                found.insert(m.id, i);
            }
        }
        assert_eq!(
            me.unread_count, unread_in_convs,
            "user{i}: unread count vs messages"
        );
        total_unread += me.unread_count;
    }
    let missing: Vec<_> = acked.keys().filter(|id| !found.contains_key(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged messages lost: {missing:?}",
        missing.len()
    );
    // Nothing was read, so every stored message is unread exactly once.
    let stored = found.len() as u64;
    assert_eq!(total_unread, stored);
    assert!(stored >= acked.len() as u64);
    eprintln!(
        "acknowledged {} sends before kill -9; {} stored after restart",
        acked.len(),
        stored
    );
}

/// Flushes, compactions and memtable frees must not hold up the writer
/// (server/src/background_priority.rs): a running replica has them at the
/// lowest CPU priority, and nothing else.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn storage_maintenance_runs_at_the_lowest_cpu_priority() {
    let dir = TestDir::new("priority");
    let mut r = Replica::new(dir.path(), 1, vec![]);
    r.start().await;
    let mut niceness: HashMap<String, Vec<i32>> = HashMap::new();
    for task in std::fs::read_dir(format!("/proc/{}/task", r.pid())).unwrap() {
        // A thread that ends while we list (an idle blocking-pool thread)
        // has no stat any more.
        let Ok(stat) = std::fs::read_to_string(task.unwrap().path().join("stat")) else {
            continue;
        };
        // "tid (comm) state ppid ...": the comm may hold spaces, so split
        // at its closing parenthesis; niceness is field 19 of the line.
        let (head, rest) = stat.rsplit_once(')').unwrap();
        let comm = head.split_once('(').unwrap().1.to_string();
        let nice: i32 = rest.split_whitespace().nth(16).unwrap().parse().unwrap();
        niceness.entry(comm).or_default().push(nice);
    }
    use chat_server::background_priority::{BACKGROUND_NICENESS, FJALL_WORKER_THREAD};
    for background in [
        FJALL_WORKER_THREAD,
        chat_server::memtable_reaper::THREAD_NAME,
    ] {
        let got = niceness.remove(background).unwrap_or_default();
        assert!(!got.is_empty(), "no {background} thread: {niceness:?}");
        assert!(
            got.iter().all(|&n| n == BACKGROUND_NICENESS),
            "{background}: {got:?}"
        );
    }
    // Everything else (the writer, the gRPC runtime) keeps its priority.
    let own = niceness.get("chat-server").unwrap()[0];
    assert!(
        niceness.values().flatten().all(|&n| n == own),
        "{niceness:?}"
    );
}
