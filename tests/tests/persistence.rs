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

/// A small filesystem of its own (tmpfs) for one replica's data directory,
/// so a test can fill it up. Needs root (CAP_SYS_ADMIN), like the partition
/// tests' network namespaces. Unmounted when dropped.
#[cfg(target_os = "linux")]
struct SmallDisk {
    dir: std::path::PathBuf,
}

#[cfg(target_os = "linux")]
impl SmallDisk {
    fn mount(dir: &std::path::Path, mib: u32) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("cannot run mount");
        assert!(
            out.status.success(),
            "this test needs root to mount a small tmpfs and fill it: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Self {
            dir: dir.to_path_buf(),
        }
    }

    /// Writes a filler file until the filesystem is full, then gives back
    /// `headroom` bytes of it.
    fn fill(&self, headroom: u64) {
        use std::io::Write;
        let mut f = std::fs::File::create(self.dir.join("filler")).unwrap();
        let chunk = vec![0x5a_u8; 64 * 1024];
        loop {
            if let Err(e) = f.write_all(&chunk) {
                assert_eq!(e.raw_os_error(), Some(28), "expected ENOSPC, got {e}");
                break;
            }
        }
        // Small writes may still find a partial page: take that too.
        while f.write_all(&[0x5a]).is_ok() {}
        if headroom > 0 {
            let len = f.metadata().unwrap().len();
            f.set_len(len.saturating_sub(headroom)).unwrap();
        }
    }

    fn free(&self) {
        std::fs::remove_file(self.dir.join("filler")).unwrap();
    }
}

#[cfg(target_os = "linux")]
impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.dir)
            .status();
    }
}

/// When a replica's disk fills up, the write that finds it full fails with
/// UNAVAILABLE saying so (clients retry elsewhere, with the same request id,
/// and the message exists once), and the replica stops -- it could take no
/// more writes and store no relays, so its readers would fall behind -- with
/// the reason in its log. Its peers carry on; nothing acknowledged is lost.
/// With space freed, it starts again and catches up with everything it
/// missed.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_whose_disk_fills_stops_and_loses_nothing() {
    disk_fills(DiskFull::AtOnce).await;
}

/// The same when the disk fills up gradually: with room left for more than
/// a memtable's worth of sends, it fills while fjall both appends to its
/// journal and flushes memtables to tables in the background. Whichever
/// finds it full first -- usually a flush, on fjall's worker thread, after
/// which fjall refuses every write -- the replica's next commit fails and
/// it stops just the same, saying which.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_whose_disk_fills_gradually_stops_and_loses_nothing() {
    disk_fills(DiskFull::Gradually).await;
}

#[cfg(target_os = "linux")]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum DiskFull {
    /// Nothing left: the next journal write fails.
    AtOnce,
    /// Room for the journal of more than a memtable's worth of sends, not
    /// for the tables that flushing them writes as well.
    Gradually,
}

#[cfg(target_os = "linux")]
async fn disk_fills(how: DiskFull) {
    let mut cluster = TestCluster::new("disk-full", 3);
    // Dropped first (locals drop in reverse order), even on a panic: a lazy
    // unmount lets a still-running replica keep its open files until the
    // cluster kills it.
    let disk = SmallDisk::mount(&cluster.replicas[0].data_dir, 64);
    let (ann, bob) = start_with_ann_and_bob(&mut cluster).await;
    let mut c1 = cluster.r(1).client().await;
    let mut c2 = cluster.r(2).client().await;
    let ann_id = ann.account.as_ref().unwrap().id.clone();
    let bob_id = bob.account.as_ref().unwrap().id.clone();
    // Long bodies (4 000 bytes: the limit is 4 096) fill a memtable sooner.
    let send = |n: usize, request_id: Vec<u8>| proto::SendMessageRequest {
        request_id,
        recipient_id: bob_id.clone(),
        body: format!("message {n} {}", "abcdefghij".repeat(400)),
    };
    let mut acked = Vec::new();
    for n in 0..20 {
        let m = c1
            .send_message(authed(&ann.token, send(n, rid())))
            .await
            .expect("send before the disk fills");
        acked.push(m.into_inner().message.unwrap().id);
    }

    disk.fill(match how {
        DiskFull::AtOnce => 0,
        // fjall's journal takes about 2 x 4 KiB per send (log entry and
        // history record, in two keyspaces of 8 MiB memtables): 20 MiB is
        // room for both memtables' journal, not for the tables as well.
        DiskFull::Gradually => 20 << 20,
    });
    // Sends to replica 1 may still fit for a while (in the last page of its
    // journal file, or in the headroom); then one fails with UNAVAILABLE,
    // and every later one fails too (the replica stopping, then gone). Each
    // failed send is retried on replica 2 with the same request id.
    let mut reasons = Vec::new();
    let mut n = 20;
    while reasons.len() < 5 {
        assert!(n < 20_000, "replica 1 never found its disk full");
        let request_id = rid();
        match c1
            .send_message(authed(&ann.token, send(n, request_id.clone())))
            .await
        {
            Ok(m) => {
                assert!(
                    reasons.is_empty(),
                    "a send succeeded after one failed: {reasons:?}"
                );
                acked.push(m.into_inner().message.unwrap().id);
            }
            Err(s) => {
                // The refusal itself is UNAVAILABLE, so clients fail over;
                // later calls meet a replica that is closing its
                // connections, or gone: any transport error will do.
                if reasons.is_empty() {
                    assert_eq!(s.code(), tonic::Code::Unavailable, "{s:?}");
                }
                reasons.push(s.message().to_string());
                let m = c2
                    .send_message(authed(&ann.token, send(n, request_id)))
                    .await
                    .expect("the retry on a healthy replica");
                acked.push(m.into_inner().message.unwrap().id);
            }
        }
        n += 1;
    }
    eprintln!("{how:?}: {} sends fitted after the disk filled", n - 25);
    const FULL: &str = "the disk is full";
    // A flush failed on fjall's worker thread (its log says why); the
    // commit finds the store refusing writes.
    const FLUSH_FAILED: &str = "the store refuses writes since one of its flushes";
    let expected = match how {
        DiskFull::AtOnce => FULL,
        DiskFull::Gradually if reasons[0].contains(FLUSH_FAILED) => FLUSH_FAILED,
        DiskFull::Gradually => FULL,
    };
    eprintln!("{how:?}: the first refusal: {}", reasons[0]);
    assert!(
        reasons[0].contains(expected),
        "the first refusal should say why: {reasons:?}"
    );
    // Replica 1 stops by itself, saying why.
    let (log, tail) = stops_by_itself(&mut cluster, 1, "a full disk").await;
    assert!(
        log.contains(&format!(
            "the store refused a write (storage I/O failed: {expected}"
        )),
        "{tail}"
    );

    // Replicas 2 and 3 carry on without it.
    for n in n..n + 10 {
        let m = c2
            .send_message(authed(&ann.token, send(n, rid())))
            .await
            .expect("send on a healthy replica while replica 1 is down");
        acked.push(m.into_inner().message.unwrap().id);
    }
    let mut c3 = cluster.r(3).client().await;
    let history = full_history(&mut c3, &bob.token, &ann_id, 100)
        .await
        .unwrap();
    let ids: Vec<&String> = history.iter().map(|m| &m.id).collect();
    assert_eq!(
        history.len(),
        n + 10,
        "one message per send, retries merged: {ids:?}"
    );
    for id in &acked {
        assert!(
            ids.contains(&id),
            "acknowledged message {id} missing on replica 3"
        );
    }

    // With space freed it starts, catches up, and has every message.
    disk.free();
    cluster.r(1).start().await;
    cluster.converge(Duration::from_secs(30)).await;
    let mut c1 = cluster.r(1).client().await;
    let history = full_history(&mut c1, &bob.token, &ann_id, 100)
        .await
        .unwrap();
    assert_eq!(history.len(), n + 10);
    // The disk first (as on a panic): the data directory is then an
    // ordinary one again, which the cluster's TestDir can remove.
    drop(disk);
    drop(cluster);
}

/// A disk that hangs -- an fdatasync that never returns -- rather than
/// failing. The replica's writer blocks in it for good; its peers write it
/// off at their relay deadline, but only the disk watchdog stops the
/// replica itself, once a batch has run for `--disk-stall-timeout-ms`, so
/// that its clients fail over instead of reading a state that receives no
/// more writes. The send caught in the hang is retried on another replica
/// with its request id (one message), and the replica, restarted on a disk
/// that answers again, catches up.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_whose_disk_hangs_stops_and_loses_nothing() {
    let mut cluster = TestCluster::new("disk-hangs", 3);
    let stall = disk_stall::DiskStall::build(cluster.dir.path());
    stall.attach(cluster.r(1));
    let metrics = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    cluster.r(1).extra_args.extend([
        "--disk-stall-timeout-ms".into(),
        "3000".into(),
        "--metrics-addr".into(),
        metrics.to_string(),
    ]);
    let (ann, bob) = start_with_ann_and_bob(&mut cluster).await;
    let mut c1 = cluster.r(1).client().await;
    let mut c2 = cluster.r(2).client().await;
    let ann_id = ann.account.as_ref().unwrap().id.clone();
    let bob_id = bob.account.as_ref().unwrap().id.clone();
    let send = |n: usize, request_id: Vec<u8>| proto::SendMessageRequest {
        request_id,
        recipient_id: bob_id.clone(),
        body: format!("message {n}"),
    };
    let mut acked = Vec::new();
    for n in 0..3 {
        let m = c1
            .send_message(authed(&ann.token, send(n, rid())))
            .await
            .expect("send before the disk hangs");
        acked.push(m.into_inner().message.unwrap().id);
    }

    stall.hang();
    let hung_at = std::time::Instant::now();
    let request_id = rid();
    let caught = tokio::spawn({
        let mut c1 = c1.clone();
        let request = authed(&ann.token, send(3, request_id.clone()));
        async move { tokio::time::timeout(Duration::from_secs(30), c1.send_message(request)).await }
    });
    // A hung commit never shows in the commit durations; the running
    // batch's gauge shows it, until the replica stops.
    loop {
        let running = metric(&scrape(metrics).await, "chat_writer_batch_running_seconds");
        if running.is_some_and(|s| s >= 0.5) {
            break;
        }
        assert!(
            hung_at.elapsed() < Duration::from_millis(2500),
            "the hung batch is not in the metrics: {running:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let caught = caught
        .await
        .unwrap()
        .expect("a send caught in the hang ends when its replica stops");
    assert!(
        caught.is_err(),
        "a send was answered while its replica's disk hung: {caught:?}"
    );
    // Replica 1 stops by itself, saying why.
    let (log, tail) = stops_by_itself(&mut cluster, 1, "a hung disk").await;
    eprintln!(
        "replica 1 stopped {:?} after its disk hung",
        hung_at.elapsed()
    );
    assert!(
        log.contains("a write to the disk is taking long"),
        "a warning before the limit: {tail}"
    );
    assert!(
        log.contains(
            "a write to the disk has not finished in 3000 ms: the disk hangs: \
             this replica can take no more writes"
        ),
        "{tail}"
    );

    // The caught send, retried elsewhere with its request id; the others
    // carry on without replica 1.
    let m = c2
        .send_message(authed(&ann.token, send(3, request_id)))
        .await
        .expect("the retry on a healthy replica");
    acked.push(m.into_inner().message.unwrap().id);
    for n in 4..6 {
        let m = c2
            .send_message(authed(&ann.token, send(n, rid())))
            .await
            .expect("send while replica 1 is down");
        acked.push(m.into_inner().message.unwrap().id);
    }
    let mut c3 = cluster.r(3).client().await;
    let history = full_history(&mut c3, &bob.token, &ann_id, 100)
        .await
        .unwrap();
    // Newest first.
    let ids: Vec<String> = history.iter().rev().map(|m| m.id.clone()).collect();
    assert_eq!(ids, acked, "one message per send, the retry merged");

    // With the disk answering again it starts, catches up, and has every
    // message.
    stall.release();
    cluster.r(1).start().await;
    cluster.converge(Duration::from_secs(30)).await;
    let mut c1 = cluster.r(1).client().await;
    let history = full_history(&mut c1, &bob.token, &ann_id, 100)
        .await
        .unwrap();
    let ids: Vec<String> = history.iter().rev().map(|m| m.id.clone()).collect();
    assert_eq!(ids, acked);
}

/// Starts the (configured) replicas of `cluster`, waits until they see each
/// other, and registers ann and bob through replica 2.
#[cfg(target_os = "linux")]
async fn start_with_ann_and_bob(
    cluster: &mut TestCluster,
) -> (proto::AuthResponse, proto::AuthResponse) {
    for r in &mut cluster.replicas {
        r.spawn();
    }
    for r in &mut cluster.replicas {
        r.wait_ready(Duration::from_secs(30)).await;
    }
    cluster.converge(Duration::from_secs(30)).await;
    let mut c2 = cluster.r(2).client().await;
    let ann = register(&mut c2, "ann", "some-password").await;
    let bob = register(&mut c2, "bob", "some-password").await;
    (ann, bob)
}

/// Waits (up to 30 s) for replica `id` to exit by itself with a failure
/// status, as it must with `trouble`; returns its whole log -- the reason
/// may be followed by many lines (calls and introductions failing while it
/// stops) -- and the log's tail, for messages.
#[cfg(target_os = "linux")]
async fn stops_by_itself(cluster: &mut TestCluster, id: u32, trouble: &str) -> (String, String) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let code = loop {
        if let Some(code) = cluster.r(id).exit_code() {
            break code;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "replica {id} still running with {trouble}:\n{}",
            cluster.r(id).log_tail()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let log = std::fs::read_to_string(&cluster.r(id).log_path).unwrap();
    let tail = cluster.r(id).log_tail();
    assert_ne!(code, 0, "{tail}");
    (log, tail)
}

/// A replica frozen while a write is in flight (SIGSTOP here; a paused VM
/// or a suspended machine alike) wakes up with a batch that looks older than
/// the disk watchdog's limit, though its disk never hung: it must finish the
/// write and carry on, not stop. The disk is held for the first half second
/// so that the freeze lands mid-batch.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_frozen_mid_write_is_not_taken_for_a_hung_disk() {
    use nix::sys::signal::Signal;
    let mut cluster = TestCluster::new("frozen-mid-write", 2);
    let stall = disk_stall::DiskStall::build(cluster.dir.path());
    stall.attach(cluster.r(1));
    cluster
        .r(1)
        .extra_args
        .extend(["--disk-stall-timeout-ms".into(), "2000".into()]);
    let (ann, bob) = start_with_ann_and_bob(&mut cluster).await;
    let c1 = cluster.r(1).client().await;
    let bob_id = bob.account.as_ref().unwrap().id.clone();

    stall.hang();
    let caught = tokio::spawn({
        let mut c1 = c1.clone();
        let request = authed(
            &ann.token,
            proto::SendMessageRequest {
                request_id: rid(),
                recipient_id: bob_id,
                body: "written across a freeze".into(),
            },
        );
        async move { tokio::time::timeout(Duration::from_secs(30), c1.send_message(request)).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    cluster.r(1).signal(Signal::SIGSTOP);
    // Frozen for twice the limit, with the disk answering again meanwhile.
    tokio::time::sleep(Duration::from_secs(4)).await;
    stall.release();
    cluster.r(1).signal(Signal::SIGCONT);

    let sent = caught.await.unwrap().expect("the send ends");
    // Its peer wrote it off while it was frozen, so the send may have been
    // refused for want of the peer; what matters is that the replica lives.
    eprintln!("the send across the freeze: {:?}", sent.map(|_| ()));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        cluster.r(1).exit_code(),
        None,
        "replica 1 stopped after a freeze:\n{}",
        cluster.r(1).log_tail()
    );
    let log = std::fs::read_to_string(&cluster.r(1).log_path).unwrap();
    assert!(
        !log.contains("the disk hangs"),
        "{}",
        cluster.r(1).log_tail()
    );
    cluster.converge(Duration::from_secs(30)).await;
}
