//! Jepsen-style fault injection: a randomized workload against a 3-replica
//! cluster while a nemesis kills, pauses, partitions and restarts replicas;
//! then a checker over the recorded history and every replica's state.
//!
//! ```sh
//! cargo test --release --test faults                     # short run (~2 min, >= 20 faults)
//! CHAT_FAULTS_LONG=1 cargo test --release --test faults  # long run (>= 100 faults, >= 50 000 ops)
//! CHAT_FAULTS_SEED=1234 cargo test --release --test faults   # replay a run
//! ```
//!
//! The replicas run in their own network namespaces (see
//! `chat_tests::netlab`), so the test needs root; the clients run in the
//! test process and use the real client core (`chat_shared::client`): the
//! same server list, failover and request-id retries as the browser app.
//! Every operation is recorded with its outcome (ok / failed / unknown).
//! Everything random comes from the printed seed.

mod checker;
mod history;
mod nemesis;
mod workload;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chat_tests::clock_skew::ClockSkew;
use chat_tests::netlab::NetLab;
use chat_tests::{Replica, TestDir};

use checker::{Account, Anomalies};
use history::{History, Outcome};
use nemesis::Cluster;

struct Config {
    seed: u64,
    faults: usize,
    min_ops: u64,
    clients: usize,
}

impl Config {
    fn from_env() -> Self {
        let long = std::env::var("CHAT_FAULTS_LONG").is_ok_and(|v| v != "0" && !v.is_empty());
        let seed = std::env::var("CHAT_FAULTS_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(rand::random);
        if long {
            Self {
                seed,
                faults: 110,
                min_ops: 50_000,
                clients: 6,
            }
        } else {
            Self {
                seed,
                faults: 22,
                min_ops: 0,
                clients: 4,
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn faults() {
    let config = Config::from_env();
    eprintln!(
        "faults: seed {} ({} faults, {} clients{}); replay with CHAT_FAULTS_SEED={}",
        config.seed,
        config.faults,
        config.clients,
        if config.min_ops > 0 {
            format!(", at least {} operations", config.min_ops)
        } else {
            String::new()
        },
        config.seed
    );
    let lab = NetLab::new(3).unwrap_or_else(|e| {
        panic!(
            "the fault test needs network namespaces (root and iproute2) to partition replicas: {e}"
        )
    });
    let dir = TestDir::new("faults");
    let first_clock = ClockSkew::build(dir.path(), "replica-1");
    let clocks: Vec<ClockSkew> = (1..=3)
        .map(|i| first_clock.another(&format!("replica-{i}")))
        .collect();
    let mut replicas = Vec::new();
    let repl_addr = |i: usize| std::net::SocketAddr::from((lab.host_ip(i), 7101));
    for i in 1..=3usize {
        let join = (1..=3).filter(|&j| j != i).map(repl_addr).collect();
        let mut r = Replica::new(dir.path(), i as u32, join);
        r.client_addr = std::net::SocketAddr::from((lab.host_ip(i), 7001));
        r.replication_addr = repl_addr(i);
        r.netns = Some(lab.netns(i));
        // The checker logs in to hundreds of accounts, deleted ones among
        // them, from one address, like a proxy in front of many users: the
        // per-address password limit is off here (the per-account one stays).
        r.extra_args
            .extend(["--password-tries-per-address", "0"].map(String::from));
        clocks[i - 1].attach(&mut r);
        r.spawn();
        replicas.push(r);
    }
    for r in &mut replicas {
        r.wait_ready(Duration::from_secs(60)).await;
    }
    let urls: Vec<String> = replicas.iter().map(Replica::url).collect();
    let cluster = Arc::new(Cluster {
        replicas: tokio::sync::Mutex::new(replicas),
        lab,
        clocks,
    });

    let started = Instant::now();
    let history = Arc::new(History::new(started));
    let main: Vec<Account> = (0..config.clients)
        .map(|i| Account {
            username: format!("user{i}"),
            password: format!("password-of-user{i}"),
            id: None,
        })
        .collect();
    let setup = workload::setup(&urls, &main).await;
    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for c in 0..config.clients {
        clients.push(tokio::spawn(workload::client(
            c,
            config.seed,
            urls.clone(),
            setup.clone(),
            history.clone(),
            stop.clone(),
            ops.clone(),
        )));
    }

    let report = nemesis::run(cluster.clone(), config.seed, config.faults, started).await;
    while ops.load(Ordering::Relaxed) < config.min_ops {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut spares = Vec::new();
    for c in clients {
        spares.extend(c.await.expect("client task"));
    }
    let workload_time = started.elapsed();

    // Heal everything, then wait for convergence (bounded).
    cluster.lab.heal_all();
    for r in 1..=3 {
        cluster.replicas.lock().await[r - 1].signal_if_running(nix::sys::signal::Signal::SIGCONT);
        nemesis::restart(&cluster, r).await;
    }
    let healed = Instant::now();
    let converge_result = converge(&urls, &cluster).await;
    let converge_time = healed.elapsed();

    let records = history.records();
    let dump = dir.path().join("history.txt");
    let text: String = records.iter().map(|r| format!("{r:?}\n")).collect();
    let _ = std::fs::write(&dump, text);
    let mut anomalies = Anomalies(Vec::new());
    if let Err(e) = converge_result {
        anomalies.0.push(e);
    }
    let main_with_ids: Vec<Account> = setup.accounts.clone();
    let mut views = Vec::new();
    for url in &urls {
        views.push(checker::read_view(url, &main_with_ids, &mut anomalies).await);
    }
    checker::check(
        &urls,
        &views,
        &records,
        &main_with_ids,
        &spares,
        &mut anomalies,
    )
    .await;
    anomalies.0.extend(workload::monotonic_reads(&records));
    checker::check_times(
        &views[0],
        &records,
        history.started_wall_ms(),
        &mut anomalies,
    );
    // The logs, read from disk: stop the replicas first.
    let data_dirs: Vec<_> = {
        let mut replicas = cluster.replicas.lock().await;
        for r in replicas.iter_mut() {
            r.kill9();
        }
        replicas.iter().map(|r| r.data_dir.clone()).collect()
    };
    checker::check_logs(&data_dirs, &records, &mut anomalies);
    checker::check_replay(&data_dirs, &mut anomalies);

    // Summary.
    eprintln!("\n=== fault-injection summary (seed {}) ===", config.seed);
    eprintln!("workload ran {workload_time:.1?}; converged {converge_time:.1?} after healing");
    let mut by_kind: std::collections::BTreeMap<&str, [u64; 3]> = Default::default();
    for r in &records {
        let slot = match r.outcome {
            Outcome::Ok => 0,
            Outcome::Failed(_) => 1,
            Outcome::Unknown => 2,
        };
        by_kind.entry(r.op.kind()).or_default()[slot] += 1;
    }
    eprintln!("operations: {} total", records.len());
    for (kind, [ok, failed, unknown]) in &by_kind {
        eprintln!("  {kind:<15} ok {ok:>7}  failed {failed:>5}  unknown {unknown:>4}");
    }
    let failures: std::collections::BTreeMap<String, usize> =
        records.iter().fold(Default::default(), |mut m, r| {
            if let Outcome::Failed(why) = &r.outcome {
                *m.entry(format!("{}: {why}", r.op.kind())).or_default() += 1;
            }
            m
        });
    for (why, n) in failures {
        eprintln!("    failed {n:>4}x {why}");
    }
    eprintln!("faults injected: {}", report.log.len());
    for (kind, n) in &report.by_kind {
        eprintln!("  {kind:?}: {n}");
    }
    for line in &report.log {
        eprintln!("  {line}");
    }
    // When the definite failures happened, against the faults.
    let mut failed_at: Vec<f64> = records
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Failed(_)))
        .map(|r| r.start.as_secs_f64())
        .collect();
    failed_at.sort_by(f64::total_cmp);
    if !failed_at.is_empty() {
        let mut windows: Vec<(f64, f64, usize)> = Vec::new();
        for t in failed_at {
            match windows.last_mut() {
                Some((_, end, n)) if t - *end < 1.0 => {
                    *end = t;
                    *n += 1;
                }
                _ => windows.push((t, t, 1)),
            }
        }
        let spans: Vec<String> = windows
            .iter()
            .map(|(a, b, n)| format!("{a:.1}-{b:.1}s ({n})"))
            .collect();
        eprintln!("definite failures happened at: {}", spans.join(", "));
    }
    eprintln!("messages on each replica: {}", views[0].messages.len());
    if anomalies.0.is_empty() {
        eprintln!("anomalies: none");
    } else {
        eprintln!("anomalies: {}", anomalies.0.len());
        for a in &anomalies.0 {
            eprintln!("  {a}");
        }
        eprintln!("history written to {}", dump.display());
        let logs = cluster
            .replicas
            .lock()
            .await
            .iter()
            .map(|r| r.log_path.display().to_string())
            .collect::<Vec<_>>();
        panic!(
            "{} anomalies (seed {}; replica logs: {logs:?}, set CHAT_TEST_KEEP=1 to keep them)",
            anomalies.0.len(),
            config.seed
        );
    }
    assert!(report.log.len() >= config.faults);
    assert!(records.len() as u64 >= config.min_ops);
}

/// Waits (at most 60 s) until all three replicas report the same cutoffs and
/// digest and see each other live.
async fn converge(urls: &[String], cluster: &Arc<Cluster>) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let _ = urls;
    loop {
        let mut statuses = Vec::new();
        for r in cluster.replicas.lock().await.iter() {
            let mut c = chat_tests::replication_client(r);
            if let Ok(Ok(s)) = tokio::time::timeout(
                Duration::from_secs(10),
                c.status(chat_tests::chat_server::proto::replication::StatusRequest::default()),
            )
            .await
            {
                statuses.push(s.into_inner());
            }
        }
        if statuses.len() == 3 {
            let digests: std::collections::HashSet<_> =
                statuses.iter().map(|s| s.state_digest.clone()).collect();
            // Peers live, and no replica refusing clients over its clock
            // (one put right by the nemesis's last fault must first
            // compare it with the others').
            let live = statuses
                .iter()
                .all(|s| s.peers.iter().all(|p| p.live) && s.clock_refusal.is_empty());
            if digests.len() == 1 && live {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            return Err(format!(
                "replicas did not converge within 60 s of healing: {:?}",
                statuses
                    .iter()
                    .map(|s| (
                        s.replica.as_ref().map(|r| r.id),
                        s.state_digest.clone(),
                        s.cutoffs.clone()
                    ))
                    .collect::<Vec<_>>()
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
