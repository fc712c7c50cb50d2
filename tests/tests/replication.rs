//! Replication end to end: real replica processes, killed, stopped and
//! restarted; checked through the client API and the replicas' status
//! digests.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chat_tests::chat_server::proto::replication as repl;
use chat_tests::chat_shared::proto::{self, event};
use chat_tests::*;
use tokio_stream::StreamExt;
use tonic::Code;

fn send_req(to: &str, body: &str) -> proto::SendMessageRequest {
    proto::SendMessageRequest {
        request_id: rid(),
        recipient_id: to.into(),
        body: body.into(),
    }
}

fn change(
    token: &str,
    current: &str,
    new: &str,
    request_id: Vec<u8>,
) -> tonic::Request<proto::ChangePasswordRequest> {
    authed(
        token,
        proto::ChangePasswordRequest {
            request_id,
            current_password: current.into(),
            new_password: new.into(),
        },
    )
}

fn id(a: &proto::AuthResponse) -> String {
    a.account.as_ref().unwrap().id.clone()
}

async fn history(r: &Replica, token: &str, peer: &str) -> Vec<proto::Message> {
    full_history(&mut r.client().await, token, peer, 200)
        .await
        .unwrap_or_else(|s| panic!("history on replica {}: {s:?}", r.id))
}

const CONVERGE: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_readable_everywhere_and_delivered_live_across_replicas() {
    let mut cluster = TestCluster::start("repl-basic", 3).await;
    cluster.converge(CONVERGE).await;
    let mut c1 = cluster.r(1).client().await;
    let mut c2 = cluster.r(2).client().await;
    let ann = register(&mut c1, "ann", "ann-password").await;
    // Bob registers on replica 2, with Ann's creation already there.
    let bob = register(&mut c2, "bob", "bob-password").await;
    // Sessions are valid on every replica.
    let mut events = c2
        .subscribe(authed(&bob.token, proto::SubscribeRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert!(matches!(
        events.next().await.unwrap().unwrap().kind,
        Some(event::Kind::Subscribed(_))
    ));

    for i in 0..20 {
        let sent = c1
            .send_message(authed(&ann.token, send_req(&id(&bob), &format!("hi {i}"))))
            .await
            .unwrap()
            .into_inner()
            .message
            .unwrap();
        // Readable on the other two as soon as the write returns.
        for r in [2, 3] {
            let h = history(cluster.r(r), &bob.token, &id(&ann)).await;
            assert_eq!(
                h[0].id, sent.id,
                "replica {r} lacks message {i} right after the ack"
            );
        }
        // And delivered live to Bob's subscription on replica 2.
        let got = tokio::time::timeout(Duration::from_secs(5), events.next())
            .await
            .expect("live event")
            .unwrap()
            .unwrap();
        match got.kind {
            Some(event::Kind::Message(m)) => assert_eq!(m.id, sent.id),
            other => panic!("expected message, got {other:?}"),
        }
    }
    // Every replica lists all three servers as up.
    for r in 1..=3 {
        let list = cluster.r(r).list_servers().await;
        assert_eq!(list.this_server_id, r);
        assert_eq!(list.servers.len(), 3);
        assert!(list.servers.iter().all(|s| s.live), "{list:?}");
        let urls: HashSet<_> = list.servers.iter().map(|s| s.url.clone()).collect();
        let want: HashSet<_> = cluster.replicas.iter().map(|r| r.url()).collect();
        assert_eq!(urls, want);
    }
    cluster.converge(CONVERGE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_account_is_announced_live_to_those_who_talk_with_it() {
    let mut cluster = TestCluster::start("repl-peer-deleted", 2).await;
    let mut c1 = cluster.r(1).client().await;
    let ann = register(&mut c1, "ann", "ann-password").await;
    let bob = register(&mut c1, "bob", "bob-password").await;
    let carol = register(&mut c1, "carol", "carol-password").await;
    c1.send_message(authed(&bob.token, send_req(&id(&ann), "hi ann")))
        .await
        .unwrap();
    cluster.converge(CONVERGE).await;
    // Ann (who talks with Bob) and Carol (who never did) listen on replica
    // 2; Bob deletes his account on replica 1.
    let mut c2 = cluster.r(2).client().await;
    let mut listen = async |token: &str| {
        let mut events = c2
            .subscribe(authed(token, proto::SubscribeRequest {}))
            .await
            .unwrap()
            .into_inner();
        assert!(matches!(
            next_event(&mut events).await,
            event::Kind::Subscribed(_)
        ));
        events
    };
    let mut ann_events = listen(&ann.token).await;
    let mut carol_events = listen(&carol.token).await;
    c1.delete_account(authed(
        &bob.token,
        proto::DeleteAccountRequest {
            request_id: rid(),
            password: "bob-password".into(),
        },
    ))
    .await
    .unwrap();
    match next_event(&mut ann_events).await {
        event::Kind::PeerDeleted(a) => {
            assert_eq!(
                (a.id, a.username, a.deleted),
                (id(&bob), "bob".into(), true)
            )
        }
        other => panic!("expected Bob's deletion, got {other:?}"),
    }
    // Carol is not told: her next event is Ann's message.
    c1.send_message(authed(&ann.token, send_req(&id(&carol), "hi carol")))
        .await
        .unwrap();
    match next_event(&mut carol_events).await {
        event::Kind::Message(m) => assert_eq!(m.body, "hi carol"),
        other => panic!("expected Ann's message, got {other:?}"),
    }
}

/// Sends `n` messages from `from` to `to` through replica `via`; returns the
/// acknowledged message ids.
async fn send_many(
    r: &Replica,
    from: &proto::AuthResponse,
    to: &str,
    n: usize,
    tag: &str,
) -> Vec<String> {
    let mut c = r.client().await;
    let mut ids = Vec::new();
    for i in 0..n {
        let m = c
            .send_message(authed(&from.token, send_req(to, &format!("{tag} {i}"))))
            .await
            .unwrap_or_else(|s| panic!("send via replica {}: {s:?}", r.id))
            .into_inner()
            .message
            .unwrap();
        ids.push(m.id);
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashed_replicas_catch_up_and_nothing_acknowledged_is_lost() {
    let mut cluster = TestCluster::start("repl-crash", 3).await;
    let mut c1 = cluster.r(1).client().await;
    let ann = register(&mut c1, "ann", "ann-password").await;
    let bob = register(&mut c1, "bob", "bob-password").await;
    let mut acked = send_many(cluster.r(1), &ann, &id(&bob), 10, "before").await;

    // kill -9 one replica; the others keep accepting writes.
    cluster.r(3).kill9();
    acked.extend(send_many(cluster.r(1), &ann, &id(&bob), 20, "r3 down, via r1").await);
    acked.extend(send_many(cluster.r(2), &bob, &id(&ann), 20, "r3 down, via r2").await);
    cluster.r(3).start().await;
    let (digest, took) = cluster.converge(CONVERGE).await;
    eprintln!("replica 3 caught up in {took:?} (digest {digest})");

    // Kill two of three: the survivor keeps accepting writes.
    cluster.r(2).kill9();
    cluster.r(3).kill9();
    let t = Instant::now();
    acked.extend(send_many(cluster.r(1), &ann, &id(&bob), 20, "alone").await);
    eprintln!("20 sends on the lone survivor took {:?}", t.elapsed());
    cluster.r(2).spawn();
    cluster.r(3).spawn();
    cluster.r(2).wait_ready(Duration::from_secs(30)).await;
    cluster.r(3).wait_ready(Duration::from_secs(30)).await;
    cluster.converge(CONVERGE).await;

    // Everything acknowledged is on every replica, exactly once.
    for r in 1..=3 {
        let h = history(cluster.r(r), &ann.token, &id(&bob)).await;
        let ids: HashSet<_> = h.iter().map(|m| m.id.clone()).collect();
        assert_eq!(ids.len(), h.len(), "duplicates on replica {r}");
        for a in &acked {
            assert!(ids.contains(a), "replica {r} lost acknowledged message {a}");
        }
        assert_eq!(h.len(), acked.len(), "replica {r}");
    }
}

/// A replica relays a batch of its own entries while it commits the batch
/// itself, so a crash can leave entries of its origin on a peer and not in
/// its own log (docs/replication.md, "Origins"). Here replica 1's data is
/// rolled back to an image taken mid-run -- more than such a crash loses,
/// the same situation -- while replica 2, stopped, holds what came after.
/// Were replica 1 to number its next writes on from its own log, they would
/// take sequence numbers replica 2 holds for other entries, and the two
/// would never agree again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_unclean_stop_a_replica_logs_under_a_new_origin() {
    let mut cluster = TestCluster::start("repl-origin", 2).await;
    let mut c1 = cluster.r(1).client().await;
    let ann = register(&mut c1, "ann", "ann-password").await;
    let bob = register(&mut c1, "bob", "bob-password").await;
    let mut acked = send_many(cluster.r(1), &ann, &id(&bob), 3, "before").await;
    cluster.converge(CONVERGE).await;
    assert_eq!(cluster.status(1).await.unwrap().origin, 1);

    // Replica 1's data as a crash would leave it (a stopped process's
    // files), then five more sends through it: held by replica 2 only, once
    // replica 1 is put back to the image.
    let image = image_of_running(&mut cluster, 1);
    acked.extend(send_many(cluster.r(1), &ann, &id(&bob), 5, "lost-by-1").await);
    cluster.r(1).kill9();
    put_back(&mut cluster, 1, &image);
    assert!(cluster.r(2).terminate().await.success());

    // Alone, replica 1 takes writes at once, under its next origin.
    cluster.r(1).start().await;
    assert_eq!(cluster.status(1).await.unwrap().origin, 1 + 65_536);
    acked.extend(send_many(cluster.r(1), &ann, &id(&bob), 3, "alone").await);

    // Replica 2 returns: it hands back replica 1's lost entries, takes the
    // new ones, and both agree on everything acknowledged.
    cluster.r(2).start().await;
    acked.extend(send_many(cluster.r(1), &ann, &id(&bob), 2, "after").await);
    cluster.converge(CONVERGE).await;
    for r in 1..=2 {
        let h = history(cluster.r(r), &ann.token, &id(&bob)).await;
        let mut ids: Vec<_> = h.iter().map(|m| m.id.clone()).collect();
        let mut expected = acked.clone();
        ids.sort();
        expected.sort();
        assert_eq!(ids, expected, "replica {r}");
    }
    for r in 1..=2 {
        assert!(cluster.r(r).terminate().await.success());
    }
    let positions = |r: &Replica| {
        let mut p: Vec<_> = logged_entries(r)
            .iter()
            .map(|e| (e.origin, e.seq))
            .collect();
        p.sort();
        p
    };
    let (one, two) = (positions(cluster.r(1)), positions(cluster.r(2)));
    assert_eq!(one, two, "the two logs hold different entries");
    let new_origin: Vec<u64> = one
        .iter()
        .filter(|(o, _)| *o == 65_537)
        .map(|(_, s)| *s)
        .collect();
    assert_eq!(new_origin, (1..=5).collect::<Vec<_>>());

    // A clean stop keeps the origin.
    cluster.r(1).start().await;
    assert_eq!(cluster.status(1).await.unwrap().origin, 1 + 65_536);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_that_fail_or_are_stopped_before_serving_use_up_no_origin() {
    // A long relay deadline keeps replica 1's start-up sync waiting on the
    // frozen replica 2 for a while: the window to look at it starting.
    let mut cluster =
        TestCluster::start_with("repl-origin-starts", 2, &["--relay-timeout-ms", "20000"]).await;
    // Something stored, so that a start syncs with its peers (an empty
    // replica would ask for a snapshot first).
    register(&mut cluster.r(1).client().await, "ann", "ann-password").await;
    cluster.converge(CONVERGE).await;
    assert!(cluster.r(1).terminate().await.success());
    cluster.r(2).signal(nix::sys::signal::Signal::SIGSTOP);

    // Its client port is taken: the start fails at once, saying why.
    let taken = std::net::TcpListener::bind(cluster.r(1).client_addr).unwrap();
    cluster.r(1).spawn();
    assert_ne!(cluster.r(1).wait_exit(CONVERGE).await, 0);
    assert!(cluster.r(1).log_tail().contains("cannot listen"));
    drop(taken);

    // Started again, it syncs with its peers before it opens the client
    // port: meanwhile a client's connection is refused (it moves on at
    // once), and a SIGTERM stops it cleanly.
    const SYNCING: &str = "syncing with peers before serving";
    let syncing = |r: &Replica| {
        std::fs::read_to_string(&r.log_path)
            .unwrap_or_default()
            .matches(SYNCING)
            .count()
    };
    // Starts replica 1 and waits until it syncs (past its port checks).
    let spawn_syncing = async |r: &mut Replica| {
        let before = syncing(r);
        r.spawn();
        let t = Instant::now();
        while syncing(r) == before {
            assert!(
                t.elapsed() < CONVERGE,
                "replica 1 did not start: {}",
                r.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    spawn_syncing(cluster.r(1)).await;
    let refused = tokio::net::TcpStream::connect(cluster.r(1).client_addr).await;
    assert!(
        refused.is_err(),
        "the client port accepted a connection during start-up sync"
    );
    assert!(cluster.r(1).terminate().await.success());
    assert!(cluster.r(1).log_tail().contains("stopped during start-up"));

    // Another process takes the client port during the sync: once synced,
    // the start fails, saying why, before it records a run.
    spawn_syncing(cluster.r(1)).await;
    let taken = std::net::TcpListener::bind(cluster.r(1).client_addr).unwrap();
    cluster.r(2).signal(nix::sys::signal::Signal::SIGCONT);
    assert_ne!(cluster.r(1).wait_exit(CONVERGE).await, 0);
    let log = std::fs::read_to_string(&cluster.r(1).log_path).unwrap();
    let run = &log[log.rfind(SYNCING).unwrap() + SYNCING.len()..];
    assert!(run.contains("cannot listen"), "{run}");
    assert!(!run.contains("serving"), "{run}");
    drop(taken);

    // No start took a new origin: none wrote or relayed anything.
    cluster.r(1).start().await;
    assert_eq!(cluster.status(1).await.unwrap().origin, 1);

    // The same on a new replica's first run, whose store the snapshot and
    // the sync fill: its port taken during the sync, it keeps its origin.
    let join = vec![cluster.r(1).replication_addr, cluster.r(2).replication_addr];
    let three = cluster.add(join);
    cluster.r(three).extra_args = vec!["--relay-timeout-ms".into(), "20000".into()];
    cluster.r(2).signal(nix::sys::signal::Signal::SIGSTOP);
    spawn_syncing(cluster.r(three)).await;
    let taken = std::net::TcpListener::bind(cluster.r(three).client_addr).unwrap();
    cluster.r(2).signal(nix::sys::signal::Signal::SIGCONT);
    assert_ne!(cluster.r(three).wait_exit(CONVERGE).await, 0);
    assert!(cluster.r(three).log_tail().contains("cannot listen"));
    drop(taken);
    cluster.r(three).start().await;
    assert_eq!(cluster.status(three).await.unwrap().origin, three);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_replica_is_written_off_then_resyncs() {
    let mut cluster =
        TestCluster::start_with("repl-sigstop", 3, &["--relay-timeout-ms", "1000"]).await;
    let mut c1 = cluster.r(1).client().await;
    let ann = register(&mut c1, "ann", "ann-password").await;
    let bob = register(&mut c1, "bob", "bob-password").await;
    cluster.converge(CONVERGE).await;

    cluster.r(3).signal(nix::sys::signal::Signal::SIGSTOP);
    // Writes elsewhere keep succeeding: the first waits out the relay
    // deadline, then replica 3 is dead to the others and writes are fast.
    let t = Instant::now();
    let mut acked = send_many(cluster.r(1), &ann, &id(&bob), 1, "first").await;
    let first = t.elapsed();
    assert!(first < Duration::from_secs(4), "first write took {first:?}");
    let t = Instant::now();
    acked.extend(send_many(cluster.r(1), &ann, &id(&bob), 20, "stopped").await);
    acked.extend(send_many(cluster.r(2), &bob, &id(&ann), 20, "stopped").await);
    eprintln!("first write {first:?}; next 40 in {:?}", t.elapsed());
    let s1 = cluster.status(1).await.unwrap();
    let p3 = s1
        .peers
        .iter()
        .find(|p| p.info.as_ref().unwrap().id == 3)
        .unwrap();
    assert!(
        !p3.live,
        "replica 1 still considers the stopped replica live"
    );

    tokio::time::sleep(Duration::from_millis(1500)).await;
    cluster.r(3).signal(nix::sys::signal::Signal::SIGCONT);
    let (_, took) = cluster.converge(CONVERGE).await;
    eprintln!("converged {took:?} after SIGCONT");
    for r in 1..=3 {
        let h = history(cluster.r(r), &ann.token, &id(&bob)).await;
        let ids: HashSet<_> = h.iter().map(|m| m.id.clone()).collect();
        assert!(
            acked.iter().all(|a| ids.contains(a)),
            "replica {r} lacks acknowledged writes"
        );
    }
    // Replica 3 was re-introduced (by itself, after being told to resync or
    // that it was considered dead, or by the others' retries).
    let logs: String = (1..=3).map(|r| cluster.r(r).log_tail()).collect();
    assert!(
        logs.contains("introduction complete"),
        "no re-introduction logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_from_a_peer_considered_dead_is_told_to_resync() {
    let mut cluster = TestCluster::start("repl-resync", 2).await;
    cluster.converge(CONVERGE).await;
    let info2 = cluster.status(2).await.unwrap().replica.unwrap();
    cluster.r(2).kill9();
    // A write on replica 1 finds replica 2 gone and marks it dead.
    let mut c1 = cluster.r(1).client().await;
    register(&mut c1, "ann", "ann-password").await;
    let s1 = cluster.status(1).await.unwrap();
    assert!(
        !s1.peers[0].live,
        "replica 1 still sees replica 2 live: {s1:?}"
    );
    // Now "replica 2" relays its next entry: refused with resync.
    let entry = chat_tests::chat_server::entry::Entry {
        origin: 2,
        seq: 1,
        hlc: 1 << 16,
        request_id: [9; 16],
        op: chat_tests::chat_server::entry::Op::DeleteAccount {
            account: chat_tests::chat_server::ids::AccountId([1; 16]),
        },
    };
    let request = repl::RelayRequest {
        from: Some(info2),
        entries: vec![entry.to_proto()],
    };
    let resp = first_answer(
        replication_client(cluster.r(1))
            .relay(tokio_stream::iter([request]))
            .await,
    )
    .await
    .unwrap();
    assert!(resp.resync);
    assert_eq!(resp.cutoff, 0);
    // And nothing of the refused relay was applied.
    let s1 = cluster.status(1).await.unwrap();
    assert!(s1.cutoffs.iter().all(|c| c.origin != 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_stream_answers_each_batch_in_order_and_refuses_gaps_and_malformed_batches() {
    // Replica 2 is stopped, so it relays nothing itself, and replica 1
    // keeps it live for the long relay deadline: the test speaks for it.
    let mut cluster =
        TestCluster::start_with("repl-stream", 2, &["--relay-timeout-ms", "20000"]).await;
    let info2 = cluster.status(2).await.unwrap().replica.unwrap();
    cluster.r(2).signal(nix::sys::signal::Signal::SIGSTOP);
    let entry = |seq: u64| {
        chat_tests::chat_server::entry::Entry {
            origin: 2,
            seq,
            hlc: seq << 16,
            request_id: [seq as u8; 16],
            op: chat_tests::chat_server::entry::Op::DeleteAccount {
                account: chat_tests::chat_server::ids::AccountId([seq as u8; 16]),
            },
        }
        .to_proto()
    };
    // Every batch goes out before any answer is read: 1-2, 3, then 5,
    // which skips 4.
    let batches = vec![
        repl::RelayRequest {
            from: Some(info2.clone()),
            entries: vec![entry(1), entry(2)],
        },
        repl::RelayRequest {
            from: None,
            entries: vec![entry(3)],
        },
        repl::RelayRequest {
            from: None,
            entries: vec![entry(5)],
        },
    ];
    let mut answers = replication_client(cluster.r(1))
        .relay(tokio_stream::iter(batches))
        .await
        .unwrap()
        .into_inner();
    let mut got = Vec::new();
    while let Some(a) = answers.message().await.unwrap() {
        got.push((a.resync, a.cutoff));
    }
    // One answer per batch, in order; each cutoff covers its batch (it may
    // cover more: the writer can commit several queued batches at once).
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(!got[0].0 && got[0].1 >= 2, "{got:?}");
    assert!(!got[1].0 && got[1].1 == 3, "{got:?}");
    assert!(got[2].0, "the gap was not refused: {got:?}");
    let s1 = cluster.status(1).await.unwrap();
    let cutoff2 = s1.cutoffs.iter().find(|c| c.origin == 2).map(|c| c.seq);
    assert_eq!(cutoff2, Some(3), "{s1:?}");

    // Malformed batches are refused with a clear status, and nothing of
    // them is applied: an entry of another replica's origin, a batch mixing
    // two of the sender's origins, an entry without an op, a message whose
    // id is not the one its parties and request id give.
    let mut foreign = entry(4);
    foreign.origin = 1;
    let mut later_incarnation = entry(1);
    later_incarnation.origin = 2 + 65_536;
    let mut no_op = entry(4);
    no_op.op = None;
    let forged = chat_tests::chat_server::entry::Entry {
        op: chat_tests::chat_server::entry::Op::SendMessage {
            message: chat_tests::chat_server::ids::MessageId([4; 16]),
            sender: chat_tests::chat_server::ids::AccountId([1; 16]),
            recipient: chat_tests::chat_server::ids::AccountId([2; 16]),
            body: "forged".into(),
        },
        ..chat_tests::chat_server::entry::Entry::from_proto(entry(4)).unwrap()
    }
    .to_proto();
    for bad in [
        vec![foreign],
        vec![entry(4), later_incarnation],
        vec![no_op],
        vec![forged],
    ] {
        let request = repl::RelayRequest {
            from: Some(info2.clone()),
            entries: bad,
        };
        let r = first_answer(
            replication_client(cluster.r(1))
                .relay(tokio_stream::iter([request]))
                .await,
        )
        .await;
        expect_code(r, Code::InvalidArgument);
    }
    let after = cluster.status(1).await.unwrap();
    assert_eq!(after.cutoffs, s1.cutoffs, "a refused batch left a trace");
    cluster.r(2).signal(nix::sys::signal::Signal::SIGCONT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_that_reached_one_replica_are_forwarded_to_its_live_peers() {
    // Replica 3's entry reaches replica 1 only -- as when a partition cut 3
    // off from 2 but not from 1, or 3 crashed mid-relay -- and 3 is gone
    // (stopped). Replicas 1 and 2 stay live to each other throughout, so no
    // introduction will carry it: the repair rounds must. (The long relay
    // deadline keeps the stopped replica 3 live on 1 while the test relays
    // for it, as in the test above.)
    let mut cluster = TestCluster::start_with(
        "repl-forward",
        3,
        &["--relay-timeout-ms", "20000", "--repair-interval-ms", "300"],
    )
    .await;
    cluster.converge(CONVERGE).await;
    let info3 = cluster.status(3).await.unwrap().replica.unwrap();
    cluster.r(3).signal(nix::sys::signal::Signal::SIGSTOP);
    // A few rounds pass first: replica 1's repair of the frozen replica 3
    // (still live to it) now hangs, and must not hold up replica 2's.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let entry = chat_tests::chat_server::entry::Entry {
        origin: 3,
        seq: 1,
        hlc: 1 << 16,
        request_id: [7; 16],
        op: chat_tests::chat_server::entry::Op::DeleteAccount {
            account: chat_tests::chat_server::ids::AccountId([7; 16]),
        },
    };
    let request = repl::RelayRequest {
        from: Some(info3),
        entries: vec![entry.to_proto()],
    };
    let answer = first_answer(
        replication_client(cluster.r(1))
            .relay(tokio_stream::iter([request]))
            .await,
    )
    .await
    .unwrap();
    assert!(!answer.resync && answer.cutoff == 1, "{answer:?}");
    let holds = |s: &repl::StatusResponse| s.cutoffs.iter().any(|c| c.origin == 3 && c.seq == 1);
    assert!(holds(&cluster.status(1).await.unwrap()));

    let started = Instant::now();
    loop {
        let s2 = cluster.status(2).await.unwrap();
        if holds(&s2) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "replica 2 never got replica 3's entry from replica 1: {s2:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Forwarded, not re-introduced: the two were live to each other all
    // along, and replica 2 applied it (the states agree).
    let (s1, s2) = (
        cluster.status(1).await.unwrap(),
        cluster.status(2).await.unwrap(),
    );
    assert!(
        s1.peers
            .iter()
            .chain(&s2.peers)
            .filter(|p| {
                let id = p.info.as_ref().map(|i| i.id);
                id == Some(1) || id == Some(2)
            })
            .all(|p| p.live),
        "{s1:?} {s2:?}"
    );
    assert_eq!(s1.state_digest, s2.state_digest);
    assert!(
        cluster.r(1).log_tail().contains("forwarding them"),
        "replica 1 did not say it forwarded"
    );
    cluster.r(3).signal(nix::sys::signal::Signal::SIGCONT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fourth_replica_joins_with_full_history() {
    let mut cluster = TestCluster::start("repl-join", 3).await;
    let mut c1 = cluster.r(1).client().await;
    let ann = register(&mut c1, "ann", "ann-password").await;
    let bob = register(&mut c1, "bob", "bob-password").await;
    let mut acked = send_many(cluster.r(1), &ann, &id(&bob), 30, "history").await;
    acked.extend(send_many(cluster.r(2), &bob, &id(&ann), 30, "history").await);
    // Replica 4 knows only replica 2.
    let join = vec![cluster.r(2).replication_addr];
    let four = cluster.add(join);
    cluster.r(four).start().await;
    let (_, took) = cluster.converge(CONVERGE).await;
    eprintln!("replica 4 joined and converged in {took:?}");
    let h = history(cluster.r(4), &ann.token, &id(&bob)).await;
    assert_eq!(h.len(), acked.len());
    // Being empty, it started from a copy of a peer's data.
    assert!(
        cluster.r(4).log_tail().contains("installed a snapshot"),
        "{}",
        cluster.r(4).log_tail()
    );
    // It is part of everyone's network, and writes through it replicate.
    for r in 1..=3 {
        let list = cluster.r(r).list_servers().await;
        assert!(
            list.servers.iter().any(|s| s.id == 4 && s.live),
            "replica {r}: {list:?}"
        );
    }
    let m = send_many(cluster.r(4), &bob, &id(&ann), 1, "from four").await;
    let h = history(cluster.r(1), &ann.token, &id(&bob)).await;
    assert_eq!(h[0].id, m[0]);
}

/// Every entry of a stopped replica's log, read through the server's own
/// storage code.
fn logged_entries(r: &Replica) -> Vec<chat_server::entry::Entry> {
    let dir = chat_server::server::store_dir(&r.data_dir);
    let store = chat_server::storage::Store::open(&dir)
        .unwrap_or_else(|e| panic!("open replica {}'s store: {e}", r.id));
    let mut all = Vec::new();
    for (origin, cutoff) in store.cutoffs().unwrap() {
        all.extend(store.entries_after(origin, 0, cutoff, usize::MAX).unwrap());
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_messages_and_accounts_leave_every_replicas_log() {
    use chat_server::entry::Op;
    let mut cluster = TestCluster::start("repl-erase", 3).await;
    let ann = register(&mut cluster.r(1).client().await, "ann", "ann-password").await;
    let bob = register(&mut cluster.r(2).client().await, "bob", "bob-password").await;
    let carl = register(&mut cluster.r(3).client().await, "carl", "carl-password").await;
    // Through different replicas: the send and its deletion are logged by
    // different origins, so erasing rewrites another origin's entry.
    let kept = send_many(cluster.r(1), &ann, &id(&bob), 1, "kept-7f3a").await;
    let gone = send_many(cluster.r(2), &ann, &id(&bob), 1, "erased-9c1e").await;
    let gone_too = send_many(cluster.r(3), &bob, &id(&ann), 1, "erased-9c1e").await;
    let mut c3 = cluster.r(3).client().await;
    for (who, id) in [(&bob, &gone[0]), (&bob, &gone_too[0])] {
        c3.delete_messages(authed(
            &who.token,
            proto::DeleteMessagesRequest {
                request_id: rid(),
                message_ids: vec![id.clone()],
            },
        ))
        .await
        .unwrap();
    }
    cluster
        .r(1)
        .client()
        .await
        .delete_account(authed(
            &carl.token,
            proto::DeleteAccountRequest {
                request_id: rid(),
                password: "carl-password".into(),
            },
        ))
        .await
        .unwrap();
    // A replica that joins afterwards copies a peer's (erased) log.
    let join = vec![cluster.r(2).replication_addr];
    let four = cluster.add(join);
    cluster.r(four).start().await;
    cluster.converge(CONVERGE).await;
    let h = history(cluster.r(4), &ann.token, &id(&bob)).await;
    assert_eq!(h.iter().map(|m| &m.id).collect::<Vec<_>>(), vec![&kept[0]]);

    for r in &mut cluster.replicas {
        r.terminate().await;
    }
    for r in &cluster.replicas {
        let log = logged_entries(r);
        let mut sends = Vec::new();
        let mut erased_sends = 0;
        let mut creations = Vec::new();
        let mut erased_creations = Vec::new();
        for e in &log {
            let bytes = e.encode();
            assert!(
                !bytes.windows(11).any(|w| w == b"erased-9c1e"),
                "replica {} still logs a deleted body: {e:?}",
                r.id
            );
            match &e.op {
                Op::SendMessage { body, .. } => sends.push(body.clone()),
                Op::ErasedSend { .. } => erased_sends += 1,
                Op::CreateAccount {
                    username,
                    password_hash,
                    ..
                } => {
                    assert!(password_hash.starts_with("$argon2id$"));
                    creations.push(username.clone());
                }
                Op::ErasedCreateAccount { username, .. } => erased_creations.push(username.clone()),
                _ => {}
            }
        }
        assert_eq!(sends, vec!["kept-7f3a 0".to_string()], "replica {}", r.id);
        assert_eq!(erased_sends, 2, "replica {}", r.id);
        creations.sort();
        assert_eq!(creations, vec!["ann", "bob"], "replica {}", r.id);
        assert_eq!(erased_creations, vec!["carl"], "replica {}", r.id);
        // And the state is what replaying that log gives.
        let dir = r.data_dir.to_string_lossy().to_string();
        let out = admin(&["verify", "--data-dir", &dir], SECRET);
        assert!(out.status.success(), "replica {}: {out:?}", r.id);
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["ok"], true, "{report}");
        assert_eq!(report["unerased_entries"], 0, "{report}");
        assert_eq!(report["log_entries"], log.len(), "{report}");
    }
}

/// Changing a password through one replica ends every session started
/// with the old one on every replica -- calls and live streams alike --
/// and leaves in every replica's log the one hash in force.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_password_ends_old_sessions_everywhere_and_leaves_one_hash_logged() {
    use chat_server::entry::Op;
    let mut cluster = TestCluster::start("repl-password", 3).await;
    let ann = register(&mut cluster.r(1).client().await, "ann", "first-password").await;
    let bob = register(&mut cluster.r(2).client().await, "bob", "bob-password").await;
    let login = |password: &str| proto::LoginRequest {
        username: "ann".into(),
        password: password.into(),
    };
    let mut events = cluster
        .r(2)
        .client()
        .await
        .subscribe(authed(&ann.token, proto::SubscribeRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert!(matches!(
        events.next().await.unwrap().unwrap().kind,
        Some(event::Kind::Subscribed(_))
    ));

    let mut c3 = cluster.r(3).client().await;
    let wrong = c3
        .change_password(change(
            &ann.token,
            "not-my-password",
            "second-password",
            rid(),
        ))
        .await;
    assert!(expect_code(wrong, Code::PermissionDenied).contains("current password is incorrect"));
    let short = c3
        .change_password(change(&ann.token, "first-password", "short", rid()))
        .await;
    expect_code(short, Code::InvalidArgument);

    let request_id = rid();
    let changed = c3
        .change_password(change(
            &ann.token,
            "first-password",
            "second-password",
            request_id.clone(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(changed.account.as_ref().unwrap().username, "ann");

    // The old session's stream on another replica ends.
    let ended = tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("the old session's stream is still open")
        .unwrap();
    assert!(
        expect_code(ended, Code::Unauthenticated).contains("password was changed"),
        "the stream ends saying why"
    );
    for n in 1..=3 {
        let mut c = cluster.r(n).client().await;
        let old = c
            .list_conversations(authed(
                &ann.token,
                proto::ListConversationsRequest::default(),
            ))
            .await;
        assert!(
            expect_code(old, Code::Unauthenticated).contains("password was changed"),
            "replica {n}"
        );
        c.list_conversations(authed(
            &changed.token,
            proto::ListConversationsRequest::default(),
        ))
        .await
        .unwrap_or_else(|s| panic!("replica {n} refuses the new session: {s:?}"));
        expect_code(
            c.login(login("first-password")).await,
            Code::Unauthenticated,
        );
        c.login(login("second-password"))
            .await
            .unwrap_or_else(|s| panic!("replica {n} refuses the new password: {s:?}"));
    }
    // Bob's session is untouched.
    cluster
        .r(1)
        .client()
        .await
        .list_conversations(authed(
            &bob.token,
            proto::ListConversationsRequest::default(),
        ))
        .await
        .unwrap();

    // A retry of the change (its answer lost in a failover) arrives with
    // the old token at another replica: it gets a session all the same,
    // and changes nothing more.
    let retried = cluster
        .r(1)
        .client()
        .await
        .change_password(change(
            &ann.token,
            "first-password",
            "second-password",
            request_id,
        ))
        .await
        .unwrap()
        .into_inner();
    let mut c2 = cluster.r(2).client().await;
    c2.list_conversations(authed(
        &retried.token,
        proto::ListConversationsRequest::default(),
    ))
    .await
    .unwrap();
    // The old token alone opens nothing: not a change to a password
    // its holder does not know.
    let stolen = c2
        .change_password(change(
            &ann.token,
            "first-password",
            "thief-password",
            rid(),
        ))
        .await;
    expect_code(stolen, Code::Unauthenticated);
    // Nor by naming the password in force under another request id: that
    // change was not its own (as when another device signs the others out).
    let other = c2
        .change_password(change(
            &ann.token,
            "first-password",
            "second-password",
            rid(),
        ))
        .await;
    expect_code(other, Code::Unauthenticated);

    // A second change, through another replica, replaces the first.
    let again = c2
        .change_password(change(
            &changed.token,
            "second-password",
            "third-password",
            rid(),
        ))
        .await
        .unwrap()
        .into_inner();
    c2.login(login("third-password")).await.unwrap();
    expect_code(
        c2.login(login("second-password")).await,
        Code::Unauthenticated,
    );
    expect_code(
        c2.list_conversations(authed(
            &changed.token,
            proto::ListConversationsRequest::default(),
        ))
        .await,
        Code::Unauthenticated,
    );
    c2.list_conversations(authed(
        &again.token,
        proto::ListConversationsRequest::default(),
    ))
    .await
    .unwrap();

    cluster.converge(CONVERGE).await;
    for r in &mut cluster.replicas {
        r.terminate().await;
    }
    let ann_id: chat_server::ids::AccountId = id(&ann).parse().unwrap();
    for r in &cluster.replicas {
        let mut hashes = 0;
        let mut replaced = 0;
        for e in logged_entries(r) {
            match &e.op {
                Op::CreateAccount {
                    account,
                    password_hash,
                    ..
                } if *account == ann_id => {
                    assert_eq!(
                        password_hash, "",
                        "replica {}: the first hash is still logged",
                        r.id
                    );
                }
                Op::ChangePassword { account, .. } if *account == ann_id => hashes += 1,
                Op::Superseded => replaced += 1,
                _ => {}
            }
        }
        assert_eq!((hashes, replaced), (1, 1), "replica {}", r.id);
        let dir = r.data_dir.to_string_lossy().to_string();
        let out = admin(&["verify", "--data-dir", &dir], SECRET);
        assert!(out.status.success(), "replica {}: {out:?}", r.id);
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["ok"], true, "{report}");
        assert_eq!(report["unerased_entries"], 0, "{report}");
    }
}

/// A replica hangs holding Ann's password change; her client re-sends it
/// to another replica, where it goes through, and she then changes her
/// password once more there. When the hung replica wakes it handles the
/// copy it held -- as a replica paused by its VM would -- stamping it
/// after her latest change. Her latest password must stay in force
/// everywhere: the late copy replaced the same password as the re-sent
/// one (a lower version than the latest change's), or, if the replica has
/// heard of the changes by the time its writer gets to it, is refused for
/// replacing a password no longer in force. (Ranked by stamp alone, as
/// before versions, the late copy put the second password back.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_change_handled_late_by_a_hung_replica_does_not_undo_a_later_one() {
    use nix::sys::signal::Signal;
    let mut cluster =
        TestCluster::start_with("repl-late-password", 3, &["--relay-timeout-ms", "1000"]).await;
    let mut c1 = cluster.r(1).client().await;
    let mut c2 = cluster.r(2).client().await;
    let ann = register(&mut c1, "ann", "first-password").await;
    let bob = register(&mut c2, "bob", "bob-password").await;
    cluster.converge(CONVERGE).await;

    // Replica 1 hangs; a write through replica 2 waits out the relay
    // deadline and writes it off, so nothing more is relayed to it.
    cluster.r(1).signal(Signal::SIGSTOP);
    c2.send_message(authed(&bob.token, send_req(&id(&ann), "still there?")))
        .await
        .unwrap();
    // Ann's change reaches replica 1 and waits in its socket. Her client
    // gives up on the attempt (the call itself is left open, so that the
    // replica does not see it cancelled when it wakes).
    let request_id = rid();
    let attempt = tokio::spawn({
        let mut c1 = c1.clone();
        let request = change(
            &ann.token,
            "first-password",
            "second-password",
            request_id.clone(),
        );
        async move { tokio::time::timeout(Duration::from_secs(60), c1.change_password(request)).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!attempt.is_finished(), "a stopped replica answered");
    // The re-send goes through on replica 2; then a second change there.
    let second = c2
        .change_password(change(
            &ann.token,
            "first-password",
            "second-password",
            request_id,
        ))
        .await
        .unwrap()
        .into_inner();
    c2.change_password(change(
        &second.token,
        "second-password",
        "third-password",
        rid(),
    ))
    .await
    .unwrap();

    // Replica 1 wakes and handles the change it held.
    cluster.r(1).signal(Signal::SIGCONT);
    let late = attempt.await.unwrap();
    eprintln!(
        "the late attempt's answer: {:?}",
        late.map(|r| r.map(|_| "a new session"))
    );
    cluster.converge(CONVERGE).await;
    for n in 1..=3 {
        let mut c = cluster.r(n).client().await;
        let login = |password: &str| proto::LoginRequest {
            username: "ann".into(),
            password: password.into(),
        };
        c.login(login("third-password"))
            .await
            .unwrap_or_else(|s| panic!("replica {n}: the latest password is replaced: {s:?}"));
        expect_code(
            c.login(login("second-password")).await,
            Code::Unauthenticated,
        );
    }
}

/// "Sign out other devices" (a password change to the same password, made
/// through the client core as the web app makes it): every other session
/// of the account ends on every replica, the device that asked carries on
/// -- its live stream too -- and the password still opens the account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_signs_out_the_others_and_keeps_its_password() {
    use chat_tests::chat_shared::client::{Config, native};
    let mut cluster = TestCluster::start("repl-sign-out-others", 3).await;
    let urls: Vec<String> = (1..=3).map(|n| cluster.r(n).url()).collect();
    let laptop = native::client(vec![urls[0].clone()], Config::default());
    laptop
        .create_account("ann", "ann-password")
        .await
        .expect("create");
    let bob = native::client(vec![urls[2].clone()], Config::default())
        .create_account("bob", "bob-password")
        .await
        .expect("create bob");
    let bob_id = bob.account.expect("account").id;
    let phone = native::client(vec![urls[1].clone()], Config::default());
    phone
        .login("ann", "ann-password")
        .await
        .expect("phone login");
    let old_laptop_token = laptop.session().expect("session").token;
    let phone_token = phone.session().expect("session").token;
    let mut stream = laptop.subscribe();
    assert!(matches!(
        stream.next().await.expect("subscribed").kind,
        Some(event::Kind::Subscribed(_))
    ));

    laptop
        .sign_out_other_devices("ann-password")
        .await
        .expect("sign out other devices");
    assert_ne!(laptop.session().expect("session").token, old_laptop_token);

    for n in 1..=3 {
        let mut c = cluster.r(n).client().await;
        for (who, token) in [("phone", &phone_token), ("laptop's old", &old_laptop_token)] {
            let refused = c
                .list_conversations(authed(token, proto::ListConversationsRequest::default()))
                .await;
            assert!(
                expect_code(refused, Code::Unauthenticated)
                    .contains("another device signed it out"),
                "replica {n}: the {who} session"
            );
        }
        c.login(proto::LoginRequest {
            username: "ann".into(),
            password: "ann-password".into(),
        })
        .await
        .unwrap_or_else(|s| panic!("replica {n} refuses the kept password: {s:?}"));
    }
    let err = phone
        .list_unread(10)
        .await
        .expect_err("the phone is signed out");
    assert!(err.is_session_ended(), "{err:?}");
    // The laptop carries on, on another replica too: its live stream,
    // ended with the old session, re-opens with the new one (starting with
    // `Subscribed`, not with an error) and delivers what follows.
    laptop.switch_to(&urls[2]).await.expect("switch");
    let reopened = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("the laptop's stream re-opens")
        .expect("the laptop's stream goes on after the sign-out");
    assert!(
        matches!(reopened.kind, Some(event::Kind::Subscribed(_))),
        "{reopened:?}"
    );
    let sent = laptop
        .send_message(&bob_id, "still here")
        .await
        .expect("the laptop still sends");
    let delivered = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(event::Kind::Message(m)) = stream.next().await.expect("event").kind {
                return m;
            }
        }
    })
    .await
    .expect("the laptop's stream delivers after the sign-out");
    assert_eq!(delivered.id, sent.id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_id_clash_is_refused() {
    let mut cluster = TestCluster::start("repl-clash", 2).await;
    // A fresh data directory claiming id 2, which replica 2 already holds.
    let join = vec![cluster.r(1).replication_addr];
    let mut impostor = Replica::new(&cluster.dir.path().join("impostor"), 2, join);
    std::fs::create_dir_all(cluster.dir.path().join("impostor")).unwrap();
    impostor.spawn();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(code) = impostor.exit_code() {
            assert_ne!(code, 0);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "impostor still running:\n{}",
            impostor.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        impostor.log_tail().contains("already used"),
        "{}",
        impostor.log_tail()
    );
    cluster.converge(CONVERGE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_registrations_of_one_name_have_one_owner_everywhere() {
    let mut cluster = TestCluster::start("repl-names", 3).await;
    let c1 = cluster.r(1).client().await;
    let c2 = cluster.r(2).client().await;
    let trials = 25;
    let mut both_ok = 0;
    for t in 0..trials {
        let name = format!("name{t}");
        let req = |pw: &str| proto::CreateAccountRequest {
            request_id: rid(),
            username: name.clone(),
            password: pw.into(),
        };
        let (mut a, mut b) = (c1.clone(), c2.clone());
        let (ra, rb) = tokio::join!(
            a.create_account(req("password-a")),
            b.create_account(req("password-b"))
        );
        assert!(
            ra.is_ok() || rb.is_ok(),
            "trial {t}: neither registration succeeded"
        );
        for r in [&ra, &rb] {
            if let Err(s) = r {
                assert_eq!(s.code(), Code::AlreadyExists, "trial {t}: {s:?}");
            }
        }
        if ra.is_ok() && rb.is_ok() {
            both_ok += 1;
        }
    }
    cluster.converge(CONVERGE).await;
    // Exactly one owner per name, the same on every replica; the other
    // registrant is told clearly at login.
    for t in 0..trials {
        let mut winners = HashSet::new();
        for r in 1..=3 {
            let mut c = cluster.r(r).client().await;
            let mut ok = Vec::new();
            for pw in ["password-a", "password-b"] {
                match c
                    .login(proto::LoginRequest {
                        username: format!("name{t}"),
                        password: pw.into(),
                    })
                    .await
                {
                    Ok(auth) => ok.push((pw, id(&auth.into_inner()))),
                    Err(s) => {
                        assert_eq!(s.code(), Code::Unauthenticated);
                        assert!(
                            s.message().contains("wrong username or password")
                                || s.message().contains("registered by someone else"),
                            "{s:?}"
                        );
                    }
                }
            }
            assert_eq!(ok.len(), 1, "name{t} on replica {r}: {ok:?}");
            winners.insert(ok[0].clone());
        }
        assert_eq!(
            winners.len(),
            1,
            "name{t}: replicas disagree on the owner: {winners:?}"
        );
    }
    eprintln!("{both_ok} of {trials} trials had both registrations acknowledged");
    // Directory listing shows each name once.
    let mut c = cluster.r(3).client().await;
    let someone = c
        .login(proto::LoginRequest {
            username: "name0".into(),
            password: "password-a".into(),
        })
        .await;
    let token = match someone {
        Ok(a) => a.into_inner().token,
        Err(_) => {
            c.login(proto::LoginRequest {
                username: "name0".into(),
                password: "password-b".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .token
        }
    };
    let list = c
        .list_accounts(authed(
            &token,
            proto::ListAccountsRequest {
                pattern: "name*".into(),
                page_size: 200,
                cursor: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.accounts.len(), trials);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_on_another_replica_does_not_duplicate() {
    let mut cluster = TestCluster::start("repl-retry", 3).await;
    let mut c1 = cluster.r(1).client().await;
    let ann = register(&mut c1, "ann", "ann-password").await;
    let bob = register(&mut c1, "bob", "bob-password").await;
    cluster.converge(CONVERGE).await;

    // Simple failover retry: same request on replica 1, then replica 2.
    let req = send_req(&id(&bob), "once");
    let a = c1
        .send_message(authed(&ann.token, req.clone()))
        .await
        .unwrap()
        .into_inner();
    let mut c2 = cluster.r(2).client().await;
    let b = c2
        .send_message(authed(&ann.token, req))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(a.message.unwrap().id, b.message.unwrap().id);

    // The hard case: the first attempt reached only replica 1's disk (the
    // others were down), replica 1 died, the client retried on replica 2.
    // Both log entries exist; they must become one message.
    cluster.r(2).kill9();
    cluster.r(3).kill9();
    let req = send_req(&id(&bob), "twice logged, once stored");
    c1.send_message(authed(&ann.token, req.clone()))
        .await
        .unwrap();
    cluster.r(1).kill9();
    cluster.r(2).spawn();
    cluster.r(3).spawn();
    cluster.r(2).wait_ready(Duration::from_secs(30)).await;
    cluster.r(3).wait_ready(Duration::from_secs(30)).await;
    let mut c2 = cluster.r(2).client().await;
    c2.send_message(authed(&ann.token, req)).await.unwrap();
    cluster.r(1).start().await;
    cluster.converge(CONVERGE).await;
    for r in 1..=3 {
        let h = history(cluster.r(r), &ann.token, &id(&bob)).await;
        let n = h
            .iter()
            .filter(|m| m.body == "twice logged, once stored")
            .count();
        assert_eq!(n, 1, "replica {r} shows the retried message {n} times");
        assert_eq!(h.len(), 2);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_replication_port_rejects_unauthenticated_calls() {
    let mut cluster = TestCluster::start("repl-auth", 1).await;
    let addr = format!("http://{}", cluster.r(1).replication_addr);
    let channel = tonic::transport::Channel::from_shared(addr)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut anon = repl::replication_client::ReplicationClient::new(channel.clone());
    let r = anon.status(repl::StatusRequest::default()).await;
    expect_code(r, Code::Unauthenticated);
    let mut wrong = repl::replication_client::ReplicationClient::with_interceptor(
        channel,
        |mut req: tonic::Request<()>| {
            req.metadata_mut()
                .insert("authorization", "Bearer 0000".parse().unwrap());
            Ok(req)
        },
    );
    expect_code(
        wrong.status(repl::StatusRequest::default()).await,
        Code::Unauthenticated,
    );
    let request = repl::RelayRequest {
        from: None,
        entries: vec![],
    };
    expect_code(
        first_answer(wrong.relay(tokio_stream::iter([request])).await).await,
        Code::Unauthenticated,
    );
    // With the key it answers -- and still checks what it is sent.
    cluster.status(1).await.unwrap();
    let mut keyed = replication_client(cluster.r(1));
    for from in [None, Some(repl::ReplicaInfo::default())] {
        let r = keyed
            .snapshot(repl::SnapshotRequest { from: from.clone() })
            .await;
        expect_code(r.map(|_| ()), Code::InvalidArgument);
        let request = repl::RelayRequest {
            from,
            entries: vec![],
        };
        let r = first_answer(keyed.relay(tokio_stream::iter([request])).await).await;
        expect_code(r, Code::InvalidArgument);
    }
    assert!(
        cluster
            .r(1)
            .log_tail()
            .contains("rejected a replication call")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_of_another_build_is_refused() {
    let mut cluster = TestCluster::start("repl-format", 1).await;
    let mut keyed = replication_client(cluster.r(1));
    let stranger = |log_format| repl::ReplicaInfo {
        id: 9,
        instance: "another-build".into(),
        client_url: "http://127.0.0.1:9".into(),
        replication_addr: "127.0.0.1:9".into(),
        log_format,
        retired: false,
    };
    // A build from before the log format was versioned sends none (0).
    let old = stranger(0);
    let r = keyed
        .introduce(repl::IntroduceRequest {
            from: Some(old.clone()),
            cutoffs: vec![],
        })
        .await;
    let why = expect_code(r.map(|_| ()), Code::FailedPrecondition);
    assert!(why.contains("must run the same build"), "{why}");
    let r = keyed
        .heartbeat(repl::HeartbeatRequest {
            from: Some(old.clone()),
        })
        .await;
    expect_code(r, Code::FailedPrecondition);
    let request = repl::RelayRequest {
        from: Some(old),
        entries: vec![],
    };
    let r = first_answer(keyed.relay(tokio_stream::iter([request])).await).await;
    expect_code(r, Code::FailedPrecondition);
    // Refused before it became a peer: the network is still just replica 1.
    let status = cluster.status(1).await.unwrap();
    assert!(status.peers.is_empty(), "{status:?}");
    let expected = format!(
        "writes log format 0, this replica {}",
        chat_server::entry::LOG_FORMAT
    );
    assert!(cluster.r(1).log_tail().contains(&expected), "{expected}");
    // The same introduction with this build's format is accepted.
    let current = stranger(chat_server::entry::LOG_FORMAT);
    keyed
        .introduce(repl::IntroduceRequest {
            from: Some(current),
            cutoffs: vec![],
        })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_command_shows_identity_log_format_and_peers() {
    let mut cluster = TestCluster::start("repl-status-cli", 2).await;
    let addr = cluster.r(1).replication_addr.to_string();
    let out = admin(&["status", "--replication-addr", &addr], SECRET);
    assert!(out.status.success(), "{out:?}");
    let status: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("status prints JSON");
    assert_eq!(status["replica"]["id"], 1);
    assert_eq!(status["log_format"], chat_server::entry::LOG_FORMAT);
    assert_eq!(status["serving"], true);
    // A fresh replica logs under its id (docs/replication.md, "Origins").
    assert_eq!(status["origin"], 1);
    let peers = status["peers"].as_array().expect("peers");
    assert_eq!(peers.len(), 1, "{status}");
    assert_eq!(peers[0]["replica"]["id"], 2);
    assert_eq!(peers[0]["live"], true);
    // Without the cluster secret the replication port does not answer.
    let out = admin(
        &["status", "--replication-addr", &addr],
        "not-the-cluster-secret-at-all",
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("need the cluster's peer key"), "{err}");
}

/// The value of one series (`name{labels}` exactly as exposed) in a
/// Prometheus text exposition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_calls_and_commits_and_show_live_peers() {
    let mut cluster = TestCluster::new("repl-metrics", 2);
    let mut metrics = Vec::new();
    for r in &mut cluster.replicas {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
        r.extra_args
            .extend(["--metrics-addr".to_string(), addr.to_string()]);
        metrics.push(addr);
        r.spawn();
    }
    for r in &mut cluster.replicas {
        r.wait_ready(CONVERGE).await;
    }
    cluster.converge(CONVERGE).await;

    let mut c1 = cluster.r(1).client().await;
    let ann = register(&mut c1, "ann", "ann-password").await;
    let bob = register(&mut c1, "bob", "bob-password").await;
    // A live subscription on replica 2.
    let mut events = cluster
        .r(2)
        .client()
        .await
        .subscribe(authed(&bob.token, proto::SubscribeRequest {}))
        .await
        .unwrap()
        .into_inner();
    events.next().await.expect("subscribed event").unwrap();
    c1.send_message(authed(&ann.token, send_req(&id(&bob), "hi")))
        .await
        .unwrap();
    let refused = c1.send_message(send_req(&id(&bob), "no token")).await;
    expect_code(refused, Code::Unauthenticated);

    let m1 = scrape(metrics[0]).await;
    let calls = |m: &str, method: &str, code: &str| {
        metric(
            m,
            &format!("chat_requests_total{{method=\"{method}\",code=\"{code}\"}}"),
        )
    };
    assert_eq!(calls(&m1, "CreateAccount", "OK"), Some(2.0), "{m1}");
    assert_eq!(calls(&m1, "SendMessage", "OK"), Some(1.0), "{m1}");
    assert_eq!(
        calls(&m1, "SendMessage", "Unauthenticated"),
        Some(1.0),
        "{m1}"
    );
    assert_eq!(
        metric(
            &m1,
            "chat_request_duration_seconds_count{method=\"SendMessage\"}"
        ),
        Some(2.0),
        "{m1}"
    );
    assert_eq!(metric(&m1, "chat_serving"), Some(1.0), "{m1}");
    assert_eq!(metric(&m1, "chat_peer_up{peer=\"2\"}"), Some(1.0), "{m1}");
    // Same machine, same clock: the peer reads within a second of ours.
    let offset = metric(&m1, "chat_peer_clock_offset_seconds{peer=\"2\"}").expect("offset");
    assert!(offset.abs() < 1.0, "{m1}");
    assert_eq!(metric(&m1, "chat_clock_refusing"), Some(0.0), "{m1}");
    assert_eq!(
        metric(&m1, "chat_relay_entries_total{peer=\"2\"}"),
        Some(3.0),
        "{m1}"
    );
    let relayed = metric(&m1, "chat_relay_duration_seconds_count{peer=\"2\"}").unwrap();
    assert!((1.0..=3.0).contains(&relayed), "{m1}");
    assert_eq!(
        metric(&m1, "chat_peer_down_total{peer=\"2\"}"),
        None,
        "{m1}"
    );
    // Three entries (two creations, one send), each written once on each
    // replica: accepted on 1, relayed to 2.
    let m2 = scrape(metrics[1]).await;
    for m in [&m1, &m2] {
        assert_eq!(metric(m, "chat_log_entries"), Some(3.0), "{m}");
        assert_eq!(metric(m, "chat_commit_entries_sum"), Some(3.0), "{m}");
        let commits = metric(m, "chat_commits_total").unwrap();
        assert!((1.0..=3.0).contains(&commits), "{m}");
        assert_eq!(
            metric(m, "chat_commit_duration_seconds_count"),
            Some(commits),
            "{m}"
        );
        assert_eq!(metric(m, "chat_commit_failures_total"), Some(0.0), "{m}");
    }
    assert_eq!(calls(&m2, "SendMessage", "OK"), None, "{m2}");
    assert_eq!(metric(&m2, "chat_live_subscriptions"), Some(1.0), "{m2}");
    drop(events);

    // Replica 2 dies: replica 1 says so.
    cluster.r(2).kill9();
    let t = Instant::now();
    loop {
        let m = scrape(metrics[0]).await;
        if metric(&m, "chat_peer_up{peer=\"2\"}") == Some(0.0) {
            assert!(metric(&m, "chat_peer_silence_seconds{peer=\"2\"}").unwrap() > 0.0);
            assert_eq!(
                metric(&m, "chat_peer_down_total{peer=\"2\"}"),
                Some(1.0),
                "{m}"
            );
            break;
        }
        assert!(t.elapsed() < CONVERGE, "replica 1 still has 2 live:\n{m}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs an operator command (`chat-server status ...`, `retire ...`) with
/// the cluster secret `secret`.
fn admin(args: &[&str], secret: &str) -> std::process::Output {
    std::process::Command::new(server_binary())
        .args(args)
        .env("CHAT_CLUSTER_SECRET", secret)
        .env_remove("CHAT_CLUSTER_SECRET_FILE")
        .output()
        .expect("run chat-server")
}

/// The ids of the servers a replica lists to clients.
async fn listed_servers(r: &Replica) -> Vec<u32> {
    let mut ids: Vec<u32> = r
        .list_servers()
        .await
        .servers
        .iter()
        .map(|s| s.id)
        .collect();
    ids.sort();
    ids
}

/// Replica `of`'s view of peer `peer`, from its status.
async fn peer_status(cluster: &TestCluster, of: u32, peer: u32) -> repl::PeerStatus {
    cluster
        .status(of)
        .await
        .unwrap()
        .peers
        .into_iter()
        .find(|p| p.info.as_ref().is_some_and(|i| i.id == peer))
        .unwrap_or_else(|| panic!("replica {of} does not know replica {peer}"))
}

/// A replica gone for good is retired through another one: only once it is
/// stopped; every replica then stops listing it and relaying to it, a new
/// replica never learns of it as a member, its past writes stay, and if it
/// comes back it is refused and stops by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retired_replica_leaves_the_cluster_for_good() {
    let mut cluster =
        TestCluster::start_with("repl-retire", 3, &["--relay-timeout-ms", "1000"]).await;
    let mut c3 = cluster.r(3).client().await;
    let ann = register(&mut c3, "ann", "ann-password").await;
    let bob = register(&mut c3, "bob", "bob-password").await;
    let mut acked = send_many(cluster.r(3), &ann, &id(&bob), 5, "via three").await;
    cluster.converge(CONVERGE).await;

    let retire = |via: &Replica, id: u32| {
        let out = admin(
            &[
                "retire",
                "--id",
                &id.to_string(),
                "--replication-addr",
                &via.replication_addr.to_string(),
            ],
            SECRET,
        );
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    };
    let (ok, text) = retire(cluster.r(1), 3);
    assert!(!ok && text.contains("replica 3 is running"), "{text}");
    let (ok, text) = retire(cluster.r(1), 1);
    assert!(!ok && text.contains("cannot retire itself"), "{text}");
    let (ok, text) = retire(cluster.r(1), 9);
    assert!(!ok && text.contains("not part of this cluster"), "{text}");
    assert_eq!(listed_servers(cluster.r(1)).await, [1, 2, 3]);

    cluster.r(3).terminate().await;
    let t = Instant::now();
    while peer_status(&cluster, 1, 3).await.live {
        assert!(t.elapsed() < CONVERGE, "replica 1 never saw replica 3 stop");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (ok, text) = retire(cluster.r(1), 3);
    assert!(ok, "{text}");
    assert!(
        text.contains("replica 3 is retired (told replica 2 at once)"),
        "{text}"
    );
    // Retiring again is harmless.
    assert!(retire(cluster.r(2), 3).0);
    for r in 1..=2 {
        assert_eq!(listed_servers(cluster.r(r)).await, [1, 2], "replica {r}");
        let p3 = peer_status(&cluster, r, 3).await;
        assert!(p3.retired && !p3.live, "replica {r}: {p3:?}");
    }
    acked.extend(send_many(cluster.r(2), &bob, &id(&ann), 5, "after").await);

    // It comes back: refused by its peers, it says why and stops.
    cluster.r(3).spawn();
    assert_ne!(cluster.r(3).wait_exit(CONVERGE).await, 0);
    let log = cluster.r(3).log_tail();
    assert!(log.contains("has been retired from its cluster"), "{log}");
    assert_eq!(listed_servers(cluster.r(1)).await, [1, 2]);

    // A new replica joining through replica 2 learns of the retirement (not
    // of a member to sync with) and holds the retired replica's writes.
    let addr2 = cluster.r(2).replication_addr;
    let four = cluster.add(vec![addr2]);
    cluster.r(four).start().await;
    cluster.converge(CONVERGE).await;
    assert_eq!(listed_servers(cluster.r(four)).await, [1, 2, 4]);
    assert!(peer_status(&cluster, four, 3).await.retired);
    let ids: HashSet<_> = history(cluster.r(four), &ann.token, &id(&bob))
        .await
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert!(
        acked.iter().all(|a| ids.contains(a)),
        "replica 4 lacks writes"
    );
}

/// docs/replication.md, "Backups": stops replica `r` cleanly, copies its
/// data directory (`cp -a`), checks the copy (`chat-server verify`) and
/// starts the replica again; returns the copy.
async fn back_up(cluster: &mut TestCluster, r: u32) -> std::path::PathBuf {
    assert!(cluster.r(r).terminate().await.success());
    let backup = cluster.dir.path().join(format!("backup-of-{r}"));
    let copied = std::process::Command::new("cp")
        .arg("-a")
        .arg(&cluster.r(r).data_dir)
        .arg(&backup)
        .status();
    assert!(copied.expect("cp").success(), "copying replica {r}'s data");
    let checked = admin(&["verify", "--data-dir", &backup.to_string_lossy()], SECRET);
    assert!(checked.status.success(), "verify: {checked:?}");
    cluster.r(r).start().await;
    backup
}

/// A copy of running replica `r`'s data directory as a crash or a disk
/// snapshot would leave it (taken while the process is paused).
fn image_of_running(cluster: &mut TestCluster, r: u32) -> std::path::PathBuf {
    use nix::sys::signal::Signal;
    let image = cluster.dir.path().join(format!("image-of-{r}"));
    cluster.r(r).signal(Signal::SIGSTOP);
    let copied = std::process::Command::new("cp")
        .arg("-a")
        .arg(&cluster.r(r).data_dir)
        .arg(&image)
        .status();
    cluster.r(r).signal(Signal::SIGCONT);
    assert!(copied.expect("cp").success(), "copying replica {r}'s data");
    image
}

/// Puts `backup` back as the data directory of replica `r` (stopped).
fn put_back(cluster: &mut TestCluster, r: u32, backup: &std::path::Path) {
    let dir = &cluster.r(r).data_dir;
    if dir.exists() {
        std::fs::remove_dir_all(dir).unwrap();
    }
    std::fs::rename(backup, dir).unwrap();
}

/// The ids of the messages between `me` and `peer` that replica `r` holds,
/// sorted.
async fn held_ids(r: &Replica, me: &proto::AuthResponse, peer: &str) -> Vec<String> {
    let mut ids: Vec<String> = history(r, &me.token, peer)
        .await
        .into_iter()
        .map(|m| m.id)
        .collect();
    ids.sort();
    ids
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

/// A copy of one cleanly stopped replica's data directory backs up the
/// whole cluster. After every replica is lost, disks included, the copy put
/// back as its replica's directory serves alone what the cluster held when
/// it was taken (and nothing later); the lost replicas are retired through
/// it, and new ones join under new ids.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_lost_whole_comes_back_from_one_replicas_backup() {
    let mut cluster = TestCluster::start("repl-backup", 3).await;
    let mut c2 = cluster.r(2).client().await;
    let ann = register(&mut c2, "ann", "ann-password").await;
    let bob = register(&mut c2, "bob", "bob-password").await;
    let mut kept = send_many(cluster.r(2), &ann, &id(&bob), 4, "before").await;
    cluster.converge(CONVERGE).await;
    let backup = back_up(&mut cluster, 1).await;
    send_many(cluster.r(3), &bob, &id(&ann), 3, "after the backup").await;
    cluster.converge(CONVERGE).await;

    // Every replica lost, with its disk.
    for r in 1..=3 {
        cluster.r(r).kill9();
        std::fs::remove_dir_all(&cluster.r(r).data_dir).unwrap();
    }

    // Restored, replica 1 serves alone what the backup held.
    put_back(&mut cluster, 1, &backup);
    cluster.r(1).start().await;
    assert_eq!(
        held_ids(cluster.r(1), &ann, &id(&bob)).await,
        sorted(kept.clone()),
        "the restored replica should hold what the backup held, and only that"
    );
    kept.extend(send_many(cluster.r(1), &ann, &id(&bob), 2, "restored").await);

    // The lost replicas are retired through it; a new one joins.
    let via = cluster.r(1).replication_addr.to_string();
    for gone in ["2", "3"] {
        let out = admin(
            &["retire", "--id", gone, "--replication-addr", &via],
            SECRET,
        );
        assert!(out.status.success(), "retire {gone}: {out:?}");
    }
    let addr1 = cluster.r(1).replication_addr;
    let four = cluster.add(vec![addr1]);
    cluster.r(four).start().await;
    kept.extend(send_many(cluster.r(four), &bob, &id(&ann), 2, "rebuilt").await);
    cluster.converge(CONVERGE).await;
    for r in [1, four] {
        assert_eq!(listed_servers(cluster.r(r)).await, [1, four], "replica {r}");
        assert_eq!(
            held_ids(cluster.r(r), &ann, &id(&bob)).await,
            sorted(kept.clone()),
            "replica {r}"
        );
    }
}

/// A replica whose data directory is put back from a backup while its
/// cluster ran on holds less of its own writes than its peers do. Serving,
/// it would number new entries at positions they hold for others; it sees
/// this in its first peer's cutoffs and refuses to start, saying why, and
/// the cluster is unharmed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_restored_from_a_backup_while_its_cluster_ran_on_refuses_to_serve() {
    let mut cluster = TestCluster::start("repl-restore-live", 2).await;
    let mut c1 = cluster.r(1).client().await;
    let ann = register(&mut c1, "ann", "ann-password").await;
    let bob = register(&mut c1, "bob", "bob-password").await;
    let mut acked = send_many(cluster.r(1), &ann, &id(&bob), 2, "before").await;
    cluster.converge(CONVERGE).await;
    let backup = back_up(&mut cluster, 1).await;
    acked.extend(send_many(cluster.r(1), &ann, &id(&bob), 3, "after").await);
    cluster.converge(CONVERGE).await;

    // Put back while replica 2 runs on with replica 1's later writes.
    assert!(cluster.r(1).terminate().await.success());
    put_back(&mut cluster, 1, &backup);
    cluster.r(1).spawn();
    assert_ne!(cluster.r(1).wait_exit(CONVERGE).await, 0);
    let log = cluster.r(1).log_tail();
    assert!(
        log.contains("holds this replica's own writes") && log.contains("must not serve"),
        "{log}"
    );

    // Replica 2 still serves everything acknowledged, and takes writes.
    assert_eq!(held_ids(cluster.r(2), &ann, &id(&bob)).await, sorted(acked));
    send_many(cluster.r(2), &bob, &id(&ann), 1, "still here").await;
}

/// The same mistake made while every peer is down, from a copy taken
/// before two crashes: the replica starts alone and serves (nobody can tell
/// it otherwise), but the first peer to return holds a later incarnation of
/// it, so whichever side introduces first, it stops, saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolled_back_replica_serving_alone_stops_when_a_peer_returns() {
    let mut cluster = TestCluster::start("repl-rollback-alone", 2).await;
    let mut c1 = cluster.r(1).client().await;
    let ann = register(&mut c1, "ann", "ann-password").await;
    let bob = register(&mut c1, "bob", "bob-password").await;
    send_many(cluster.r(1), &ann, &id(&bob), 2, "before").await;
    cluster.converge(CONVERGE).await;

    // A disk snapshot of the running replica (origin 1), then two crashes,
    // each followed by writes under the next origin.
    let image = image_of_running(&mut cluster, 1);
    for crash in 1..=2u32 {
        cluster.r(1).kill9();
        cluster.r(1).start().await;
        assert_eq!(cluster.status(1).await.unwrap().origin, 1 + 65_536 * crash);
        send_many(cluster.r(1), &ann, &id(&bob), 2, "later").await;
    }
    cluster.converge(CONVERGE).await;

    // Put back with replica 2 down: replica 1 starts alone, under origin
    // 65 537 again (the one after the snapshot's), and serves.
    assert!(cluster.r(2).terminate().await.success());
    cluster.r(1).kill9();
    put_back(&mut cluster, 1, &image);
    cluster.r(1).start().await;
    assert_eq!(cluster.status(1).await.unwrap().origin, 1 + 65_536);

    // Replica 2 returns, holding origin 131 073 of replica 1.
    cluster.r(2).start().await;
    assert_ne!(cluster.r(1).wait_exit(CONVERGE).await, 0);
    let log = cluster.r(1).log_tail();
    assert!(
        log.contains("holds this replica's own writes up to origin 131073")
            && log.contains("must not serve"),
        "{log}"
    );
    // Replica 2 is unharmed.
    send_many(cluster.r(2), &bob, &id(&ann), 1, "still here").await;
}

/// A replica retired while it was only unreachable (paused here) finds out
/// when it is reachable again, and stops instead of serving writes that
/// nobody else would ever see. A replica that was unreachable too when the
/// retirement happened learns it when it comes back, and its stale network
/// list does not bring the retired one back anywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retired_replica_that_was_only_cut_off_stops_when_it_reconnects() {
    let mut cluster =
        TestCluster::start_with("repl-retire-paused", 3, &["--relay-timeout-ms", "1000"]).await;
    for r in [2, 3] {
        cluster.r(r).signal(nix::sys::signal::Signal::SIGSTOP);
    }
    let t = Instant::now();
    while peer_status(&cluster, 1, 2).await.live || peer_status(&cluster, 1, 3).await.live {
        assert!(
            t.elapsed() < CONVERGE,
            "the paused replicas still count as live"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let addr1 = cluster.r(1).replication_addr.to_string();
    let out = admin(
        &["retire", "--id", "3", "--replication-addr", &addr1],
        SECRET,
    );
    assert!(out.status.success(), "{out:?}");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("no other replica is live there"), "{said}");

    // Replica 2 comes back first, with a list in which 3 is a member.
    cluster.r(2).signal(nix::sys::signal::Signal::SIGCONT);
    let t = Instant::now();
    while !peer_status(&cluster, 1, 2).await.live || !peer_status(&cluster, 2, 3).await.retired {
        assert!(
            t.elapsed() < CONVERGE,
            "replica 2 never learnt of the retirement"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A few heartbeats later, still retired everywhere.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for r in 1..=2 {
        assert!(peer_status(&cluster, r, 3).await.retired, "replica {r}");
        assert_eq!(listed_servers(cluster.r(r)).await, [1, 2], "replica {r}");
    }

    cluster.r(3).signal(nix::sys::signal::Signal::SIGCONT);
    assert_ne!(cluster.r(3).wait_exit(CONVERGE).await, 0);
    let log = cluster.r(3).log_tail();
    assert!(
        log.contains("the peer says this replica has been retired"),
        "{log}"
    );
    for r in 1..=2 {
        assert_eq!(listed_servers(cluster.r(r)).await, [1, 2], "replica {r}");
    }
    cluster.converge(CONVERGE).await;
}

/// The answer to the first batch of a relay stream, or the call's (or the
/// stream's) error.
async fn first_answer(
    call: Result<tonic::Response<tonic::Streaming<repl::RelayResponse>>, tonic::Status>,
) -> Result<repl::RelayResponse, tonic::Status> {
    call?
        .into_inner()
        .message()
        .await?
        .ok_or_else(|| tonic::Status::unknown("the relay stream ended without an answer"))
}

/// Milliseconds since the Unix epoch on the test's (right) clock.
fn real_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as i64
}

/// Waits until `r` answers a cheap authenticated call (no password to
/// hash) in a way that `done` accepts, or fails.
async fn unread_until(
    r: &Replica,
    token: &str,
    what: &str,
    done: impl Fn(&Result<proto::ListUnreadResponse, tonic::Status>) -> bool,
) -> Result<proto::ListUnreadResponse, tonic::Status> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answer = r
            .client()
            .await
            .list_unread(authed(token, proto::ListUnreadRequest { limit: 1 }))
            .await
            .map(|r| r.into_inner());
        if done(&answer) {
            return answer;
        }
        if Instant::now() >= deadline {
            let list = r.list_servers().await;
            panic!(
                "replica {}: {what} not seen after 60 s; last answer {answer:?}; servers {list:?}\n{}",
                r.id,
                r.log_tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sends a message through `r`, which must stamp it with the real time.
async fn sent_on_time(r: &Replica, token: &str, to: &str) {
    let before = real_now_ms();
    let m = r
        .client()
        .await
        .send_message(authed(token, send_req(to, "on time")))
        .await
        .unwrap_or_else(|s| panic!("replica {} does not serve: {s:?}", r.id))
        .into_inner()
        .message
        .expect("message");
    stamped_now(&m, before);
}

/// Puts `r`'s clock right; it must serve again, stamping the real time.
async fn put_right(skew: &chat_tests::clock_skew::ClockSkew, r: &Replica, token: &str, to: &str) {
    skew.reset();
    unread_until(r, token, "serving again", Result::is_ok)
        .await
        .expect("answered");
    sent_on_time(r, token, to).await;
}

/// A message's timestamp is the real time it was sent at (give or take).
fn stamped_now(m: &proto::Message, before_ms: i64) {
    let after_ms = real_now_ms();
    assert!(
        (before_ms - 1_000..=after_ms + 1_000).contains(&m.sent_at_ms),
        "message stamped {} ms, sent between {before_ms} and {after_ms}",
        m.sent_at_ms
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_whose_clock_is_off_refuses_clients_until_it_agrees_again() {
    use chat_tests::chat_shared::client::{Config, native};
    use chat_tests::clock_skew::ClockSkew;
    let mut cluster = TestCluster::new("repl-clock", 3);
    let skew = ClockSkew::build(cluster.dir.path(), "replica-3");
    skew.attach(cluster.r(3));
    for r in &mut cluster.replicas {
        r.spawn();
    }
    for r in &mut cluster.replicas {
        r.wait_ready(Duration::from_secs(30)).await;
    }
    cluster.converge(CONVERGE).await;
    let mut c1 = cluster.r(1).client().await;
    let ann = register(&mut c1, "ann", "ann-password").await;
    let bob = register(&mut c1, "bob", "bob-password").await;
    unread_until(cluster.r(3), &ann.token, "an answer", Result::is_ok)
        .await
        .expect("answered");

    // Replica 3's clock jumps an hour ahead: from the very next call it
    // stamps nothing (the jump is seen against the monotonic clock), and
    // once it has compared clocks it says why.
    let refused =
        |s: &tonic::Status| s.code() == Code::Unavailable && s.message().contains("clock");
    let mut c3 = cluster.r(3).client().await;
    skew.set(3_600_000);
    let first = c3
        .send_message(authed(&ann.token, send_req(&id(&bob), "from the future")))
        .await;
    assert!(first.as_ref().is_err_and(refused), "{first:?}");
    let why = unread_until(cluster.r(3), &ann.token, "the reason", |a| {
        a.as_ref()
            .is_err_and(|s| refused(s) && s.message().contains("ahead of"))
    })
    .await
    .unwrap_err();
    assert!(
        why.message().contains("1 h ahead of") && why.message().contains("replicas 1, 2"),
        "{why:?}"
    );
    // Every call but ListServers is refused; the list shows it down.
    let send = c3
        .send_message(authed(&ann.token, send_req(&id(&bob), "from the future")))
        .await;
    assert!(send.as_ref().is_err_and(refused), "{send:?}");
    let login = c3
        .login(proto::LoginRequest {
            username: "ann".into(),
            password: "ann-password".into(),
        })
        .await;
    assert!(login.as_ref().is_err_and(refused), "{login:?}");
    let list = cluster.r(3).list_servers().await;
    let live: Vec<(u32, bool)> = list.servers.iter().map(|s| (s.id, s.live)).collect();
    assert_eq!(
        sorted_pairs(live),
        vec![(1, true), (2, true), (3, false)],
        "{list:?}"
    );
    let status = cluster.status(3).await.expect("status");
    assert!(status.clock_refusal.contains("ahead of"), "{status:?}");
    // Replica 1 reads 3's clock an hour ahead (at its next heartbeat).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let seen_by_1 = peer_status(&cluster, 1, 3).await;
        let offset = seen_by_1.clock_offset_ms.unwrap_or(0);
        if (3_590_000..3_610_000).contains(&offset) {
            break;
        }
        assert!(Instant::now() < deadline, "{seen_by_1:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The other two see nothing wrong with their own clocks: they serve,
    // with the real time on what they stamp; replica 3 still replicates.
    sent_on_time(cluster.r(2), &ann.token, &id(&bob)).await;
    // A client whose only address is replica 3 (the web app it served)
    // fails over to the others.
    let app = native::client(vec![cluster.r(3).url()], Config::default());
    app.login("bob", "bob-password").await.expect("fails over");
    let before = real_now_ms();
    let reply = app.send_message(&id(&ann), "hi").await.expect("send");
    stamped_now(&reply, before);
    assert_ne!(app.current_server().expect("a server").id, 3);
    cluster.converge(CONVERGE).await;

    // Its clock put right, it serves again -- with the right time.
    put_right(&skew, cluster.r(3), &ann.token, &id(&bob)).await;
    // Every message of the conversation, on every replica, has a time
    // no later than now.
    for r in 1..=3 {
        for m in history(cluster.r(r), &bob.token, &id(&ann)).await {
            assert!(m.sent_at_ms <= real_now_ms(), "replica {r}: {m:?}");
        }
    }

    // With only two replicas live, a disagreement cannot say whose clock
    // is wrong -- but the one that jumped is the suspect: it refuses until
    // its clock agrees again, and the other serves on.
    cluster.r(2).terminate().await;
    skew.set(-3_600_000);
    let send = c3
        .send_message(authed(&ann.token, send_req(&id(&bob), "from the past")))
        .await;
    assert!(send.as_ref().is_err_and(refused), "{send:?}");
    tokio::time::sleep(Duration::from_secs(2)).await; // several checks
    let send = c3
        .send_message(authed(&ann.token, send_req(&id(&bob), "from the past")))
        .await;
    assert!(send.as_ref().is_err_and(refused), "{send:?}");
    sent_on_time(cluster.r(1), &ann.token, &id(&bob)).await;
    put_right(&skew, cluster.r(3), &ann.token, &id(&bob)).await;
    cluster.r(2).start().await;

    // A replica that starts with its clock off never serves a client.
    cluster.r(3).terminate().await;
    skew.set(-600_000);
    cluster.r(3).start().await;
    let why = expect_code(
        cluster
            .r(3)
            .client()
            .await
            .login(proto::LoginRequest {
                username: "ann".into(),
                password: "ann-password".into(),
            })
            .await,
        Code::Unavailable,
    );
    assert!(why.contains("10 min behind"), "{why}");
    put_right(&skew, cluster.r(3), &ann.token, &id(&bob)).await;

    // With only one other replica live, one that starts with its clock off
    // cannot be outvoted -- but, just started, it is the one to doubt: it
    // refuses until their clocks agree, and the other serves on.
    cluster.r(3).terminate().await;
    cluster.r(2).terminate().await;
    skew.set(3_600_000);
    cluster.r(3).start().await;
    let send = cluster
        .r(3)
        .client()
        .await
        .send_message(authed(&ann.token, send_req(&id(&bob), "just started")))
        .await;
    let why = expect_code(send, Code::Unavailable);
    assert!(why.contains("just started"), "{why}");
    sent_on_time(cluster.r(1), &ann.token, &id(&bob)).await;
    put_right(&skew, cluster.r(3), &ann.token, &id(&bob)).await;
    cluster.r(2).start().await;
    cluster.converge(CONVERGE).await;
}

fn sorted_pairs(mut v: Vec<(u32, bool)>) -> Vec<(u32, bool)> {
    v.sort_unstable();
    v
}

/// A native client's live stream on a replica that hangs (SIGSTOP: its
/// connections stay open, nothing answers) is found dead by the
/// connection's keepalive and re-opened on another replica, which then
/// delivers -- nothing else is ever sent on an idle stream, so without the
/// probe it would wait forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_stream_on_a_hung_replica_moves_to_another() {
    use chat_tests::chat_shared::client::{Config, native};
    let mut cluster =
        TestCluster::start_with("repl-stream-keepalive", 2, &["--relay-timeout-ms", "1000"]).await;
    let ann = native::client(vec![cluster.r(1).url()], Config::default());
    let ann_id = id(&ann
        .create_account("ann", "ann-password")
        .await
        .expect("create ann"));
    let bob = register(&mut cluster.r(2).client().await, "bob", "bob-password").await;
    let mut stream = ann.subscribe();
    let first = stream.next().await.expect("subscribed");
    let Some(event::Kind::Subscribed(on)) = first.kind else {
        panic!("{first:?}")
    };
    let (hung, other) = if on.server_id == 1 { (1, 2) } else { (2, 1) };
    cluster.r(hung).signal(nix::sys::signal::Signal::SIGSTOP);

    let reopened = tokio::time::timeout(Duration::from_secs(30), stream.next())
        .await
        .expect("the stream on the hung replica was never found dead")
        .expect("the stream goes on");
    let Some(event::Kind::Subscribed(now_on)) = reopened.kind else {
        panic!("{reopened:?}")
    };
    assert_eq!(now_on.server_id, other);
    let sent = send_many(cluster.r(other), &bob, &ann_id, 1, "hi").await;
    let delivered = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("delivered")
        .expect("the stream goes on");
    let Some(event::Kind::Message(m)) = delivered.kind else {
        panic!("{delivered:?}")
    };
    assert_eq!(Some(m.id), sent.first().cloned());
    cluster.r(hung).signal(nix::sys::signal::Signal::SIGCONT);
}

/// A stand-in for a replica on the replication port. It hands each
/// introduction it receives to the test, which answers it (`Hello`) when it
/// chooses and then holds it open (the backlog "still streaming"); it
/// acknowledges every relayed batch and hands the entries to the test; its
/// heartbeat answers say the caller is live unless `disowning`.
struct StandIn {
    me: repl::ReplicaInfo,
    introductions: tokio::sync::mpsc::UnboundedSender<IntroductionHeld>,
    relayed: tokio::sync::mpsc::UnboundedSender<chat_tests::chat_server::entry::Entry>,
    disowning: Arc<std::sync::atomic::AtomicBool>,
}

type IntroductionHeld = tokio::sync::mpsc::Sender<Result<repl::IntroduceResponse, tonic::Status>>;

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

type Boxed<T> =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<T, tonic::Status>> + Send>>;

#[tonic::async_trait]
impl repl::replication_server::Replication for StandIn {
    type IntroduceStream = Boxed<repl::IntroduceResponse>;
    type SnapshotStream = Boxed<repl::SnapshotChunk>;
    type RelayStream = Boxed<repl::RelayResponse>;

    async fn introduce(
        &self,
        _: tonic::Request<repl::IntroduceRequest>,
    ) -> Result<tonic::Response<Self::IntroduceStream>, tonic::Status> {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let _ = self.introductions.send(tx);
        Ok(tonic::Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn relay(
        &self,
        request: tonic::Request<tonic::Streaming<repl::RelayRequest>>,
    ) -> Result<tonic::Response<Self::RelayStream>, tonic::Status> {
        let mut inbound = request.into_inner();
        let relayed = self.relayed.clone();
        let (out, answers) = tokio::sync::mpsc::channel(16);
        tokio::spawn(async move {
            let mut cutoff = 0;
            while let Ok(Some(batch)) = inbound.message().await {
                for e in batch.entries {
                    let e = chat_tests::chat_server::entry::Entry::from_proto(e).unwrap();
                    cutoff = cutoff.max(e.seq);
                    let _ = relayed.send(e);
                }
                let answer = repl::RelayResponse {
                    resync: false,
                    cutoff,
                    clock_ms: now_ms(),
                };
                if out.send(Ok(answer)).await.is_err() {
                    return;
                }
            }
        });
        Ok(tonic::Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(answers),
        )))
    }

    async fn heartbeat(
        &self,
        _: tonic::Request<repl::HeartbeatRequest>,
    ) -> Result<tonic::Response<repl::HeartbeatResponse>, tonic::Status> {
        Ok(tonic::Response::new(repl::HeartbeatResponse {
            responder: Some(self.me.clone()),
            caller_live: !self.disowning.load(std::sync::atomic::Ordering::SeqCst),
            network: Vec::new(),
            clock_ms: now_ms(),
        }))
    }

    async fn push(
        &self,
        _: tonic::Request<tonic::Streaming<repl::PushRequest>>,
    ) -> Result<tonic::Response<repl::PushResponse>, tonic::Status> {
        Err(tonic::Status::unavailable("stand-in"))
    }

    async fn forward(
        &self,
        _: tonic::Request<tonic::Streaming<repl::PushRequest>>,
    ) -> Result<tonic::Response<repl::PushResponse>, tonic::Status> {
        Err(tonic::Status::unavailable("stand-in"))
    }

    async fn status(
        &self,
        _: tonic::Request<repl::StatusRequest>,
    ) -> Result<tonic::Response<repl::StatusResponse>, tonic::Status> {
        Err(tonic::Status::unavailable("stand-in"))
    }

    async fn snapshot(
        &self,
        _: tonic::Request<repl::SnapshotRequest>,
    ) -> Result<tonic::Response<Self::SnapshotStream>, tonic::Status> {
        Err(tonic::Status::unavailable("stand-in"))
    }

    async fn retire(
        &self,
        _: tonic::Request<repl::RetireRequest>,
    ) -> Result<tonic::Response<repl::RetireResponse>, tonic::Status> {
        Err(tonic::Status::unavailable("stand-in"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_relayed_while_a_redundant_introduction_of_ours_still_streams() {
    // After a partition both sides introduce themselves; when the peer's
    // introduction makes the link live first, ours is redundant. Replica 1
    // must then relay its writes at once (under the relay deadline), not
    // wait for its own introduction -- which here never ends by itself:
    // a stand-in for replica 2 holds it open after `Hello`.
    let mut cluster =
        TestCluster::start_with("repl-redundant-intro", 2, &["--heartbeat-ms", "100"]).await;
    let mut c1 = cluster.r(1).client().await;
    let ann = register(&mut c1, "ann", "ann-password").await;
    let bob = register(&mut c1, "bob", "bob-password").await;
    cluster.converge(CONVERGE).await;
    let info2 = cluster.status(2).await.unwrap().replica.unwrap();
    let addr2 = cluster.r(2).replication_addr;
    cluster.r(2).kill9();
    // Replica 1 writes it off (a write finds it gone).
    send_many(cluster.r(1), &ann, &id(&bob), 1, "while 2 is away").await;
    assert!(!cluster.status(1).await.unwrap().peers[0].live);

    // The stand-in takes replica 2's address; replica 1's next attempt to
    // introduce itself reaches it.
    let (introductions_tx, mut introductions) = tokio::sync::mpsc::unbounded_channel();
    let (relayed_tx, mut relayed) = tokio::sync::mpsc::unbounded_channel();
    let disowning = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stand_in = StandIn {
        me: info2.clone(),
        introductions: introductions_tx,
        relayed: relayed_tx,
        disowning: disowning.clone(),
    };
    let listener = tokio::net::TcpListener::bind(addr2).await.unwrap();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(repl::replication_server::ReplicationServer::new(stand_in))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let hello = || {
        Ok(repl::IntroduceResponse {
            kind: Some(repl::introduce_response::Kind::Hello(repl::Hello {
                responder: Some(info2.clone()),
                network: Vec::new(),
                cutoffs: Vec::new(),
                clock_ms: now_ms(),
            })),
        })
    };
    // "Replica 2" introducing itself to replica 1, to the end: it holds all
    // of replica 1's log, so the link is live.
    let peer_introduces_itself = async || {
        let s1 = cluster.status(1).await.unwrap();
        let mut peer1 = replication_client(&cluster.replicas[0]);
        let mut theirs = peer1
            .introduce(repl::IntroduceRequest {
                from: Some(info2.clone()),
                cutoffs: s1.cutoffs.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        while theirs.message().await.unwrap().is_some() {}
        let push = repl::PushRequest {
            from: Some(info2.clone()),
            chunk: None,
            cutoffs: s1.cutoffs.clone(),
        };
        peer1.push(tokio_stream::iter([push])).await.unwrap();
        assert!(cluster.status(1).await.unwrap().peers[0].live);
    };
    let mut c1 = cluster.replicas[0].client().await;
    // A write acknowledged promptly, and relayed to "replica 2".
    let mut relayed_write = async |text: &str| {
        let request = authed(&ann.token, send_req(&id(&bob), text));
        // (Without the wait, a write takes milliseconds; the channel's own
        // timeout is 10 s.)
        let answer = tokio::time::timeout(Duration::from_secs(8), c1.send_message(request)).await;
        assert!(
            matches!(answer, Ok(Ok(_))),
            "the write failed or waited for replica 1's redundant introduction: {answer:?}"
        );
        let e = tokio::time::timeout(Duration::from_secs(5), relayed.recv())
            .await
            .expect("the write was not relayed")
            .unwrap();
        assert!(
            matches!(&e.op, chat_tests::chat_server::entry::Op::SendMessage { body, .. } if body == text),
            "{e:?}"
        );
    };
    let wait_introduction =
        async |introductions: &mut tokio::sync::mpsc::UnboundedReceiver<IntroductionHeld>| {
            tokio::time::timeout(CONVERGE, introductions.recv())
                .await
                .expect("replica 1 did not introduce itself")
                .unwrap()
        };

    // 1. Our introduction is syncing (Hello answered) when the peer's
    // completes: writes are relayed meanwhile.
    let ours = wait_introduction(&mut introductions).await;
    ours.send(hello()).await.unwrap();
    peer_introduces_itself().await;
    relayed_write("while ours streams").await;
    assert!(!ours.is_closed(), "replica 1's introduction ended");
    // Then ours fails: the link the peer's introduction made live stays
    // live (no new introduction of ours), and writes still go to replica 2.
    ours.send(Err(tonic::Status::unavailable("gone")))
        .await
        .unwrap();
    drop(ours);
    let again = tokio::time::timeout(Duration::from_secs(1), introductions.recv()).await;
    assert!(again.is_err(), "the failed introduction wrote the peer off");
    assert!(cluster.status(1).await.unwrap().peers[0].live);
    relayed_write("after ours failed").await;

    // 2. The peer says it considers replica 1 dead (as after a one-sided
    // failure): replica 1 writes it off and introduces itself again. This
    // time the peer's introduction completes before ours gets its Hello:
    // that late Hello leaves the link live.
    disowning.store(true, std::sync::atomic::Ordering::SeqCst);
    let ours = wait_introduction(&mut introductions).await;
    disowning.store(false, std::sync::atomic::Ordering::SeqCst);
    peer_introduces_itself().await;
    ours.send(hello()).await.unwrap();
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(1) {
        let s1 = cluster.status(1).await.unwrap();
        assert!(
            s1.peers[0].live,
            "a late Hello took the link out of live: {s1:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    relayed_write("after a late Hello").await;
    assert!(!ours.is_closed(), "replica 1's introduction ended");
    server.abort();
}
