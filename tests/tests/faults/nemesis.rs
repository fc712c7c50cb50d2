//! The nemesis: injects faults at random moments, one at a time, from a
//! seeded random generator, and logs each with its time so a failure can be
//! matched against the history.
//!
//! Faults: kill -9 and restart of one replica; SIGSTOP for longer than the
//! relay deadline, then SIGCONT; a network partition between two replicas, or
//! one replica cut off from both others, then healed; a rolling restart of all
//! replicas; two replicas killed at once; and one replica's wall clock
//! jumping seconds to hours ahead or behind, then put right. Never all three
//! down: clients must always have a replica to write to.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chat_tests::Replica;
use chat_tests::clock_skew::ClockSkew;
use chat_tests::netlab::NetLab;
use nix::sys::signal::Signal;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::sync::Mutex;

pub struct Cluster {
    pub replicas: Mutex<Vec<Replica>>,
    pub lab: NetLab,
    /// Each replica's clock (replica 1's first).
    pub clocks: Vec<ClockSkew>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    KillRestart,
    Pause,
    Partition,
    Isolate,
    RollingRestart,
    DoubleKill,
    ClockJump,
}

pub struct Report {
    pub by_kind: BTreeMap<Kind, usize>,
    pub log: Vec<String>,
}

/// How long a paused replica stays stopped: past the relay deadline.
pub const PAUSE: Duration = Duration::from_millis(2600);

pub async fn run(cluster: Arc<Cluster>, seed: u64, faults: usize, started: Instant) -> Report {
    let mut rng = SmallRng::seed_from_u64(seed ^ 0x6e656d65);
    let mut report = Report {
        by_kind: BTreeMap::new(),
        log: Vec::new(),
    };
    for _ in 0..faults {
        let quiet = Duration::from_millis(rng.random_range(300..1500));
        tokio::time::sleep(quiet).await;
        let kind = match rng.random_range(0..100) {
            0..27 => Kind::KillRestart,
            27..45 => Kind::Pause,
            45..63 => Kind::Partition,
            63..74 => Kind::Isolate,
            74..82 => Kind::RollingRestart,
            82..90 => Kind::DoubleKill,
            _ => Kind::ClockJump,
        };
        let a = rng.random_range(1..=3usize);
        let b = 1 + (a + rng.random_range(0..2usize)) % 3;
        let hold = Duration::from_millis(rng.random_range(500..3000));
        // A jump of 10 s to 2 h, either way.
        let jump_ms = rng.random_range(10_000..7_200_000i64) * if rng.random() { 1 } else { -1 };
        let t = started.elapsed();
        let what = apply(&cluster, kind, a, b, hold, jump_ms).await;
        report.log.push(format!("{:>8.3}s {what}", t.as_secs_f64()));
        *report.by_kind.entry(kind).or_default() += 1;
    }
    report
}

async fn apply(
    cluster: &Cluster,
    kind: Kind,
    a: usize,
    b: usize,
    hold: Duration,
    jump_ms: i64,
) -> String {
    match kind {
        Kind::KillRestart => {
            kill(cluster, a).await;
            tokio::time::sleep(hold).await;
            restart(cluster, a).await;
            format!("kill -9 replica {a}, restart after {hold:?}")
        }
        Kind::Pause => {
            signal(cluster, a, Signal::SIGSTOP).await;
            let hold = PAUSE + hold / 2;
            tokio::time::sleep(hold).await;
            signal(cluster, a, Signal::SIGCONT).await;
            format!("SIGSTOP replica {a} for {hold:?}")
        }
        Kind::Partition => {
            cluster.lab.partition(a, b).expect("partition");
            tokio::time::sleep(hold * 2).await;
            cluster.lab.heal(a, b);
            format!("partition {a} | {b} for {:?}", hold * 2)
        }
        Kind::Isolate => {
            let others: Vec<usize> = (1..=3).filter(|&o| o != a).collect();
            for &o in &others {
                cluster.lab.partition(a, o).expect("partition");
            }
            tokio::time::sleep(hold * 2).await;
            for &o in &others {
                cluster.lab.heal(a, o);
            }
            format!("isolate replica {a} for {:?}", hold * 2)
        }
        Kind::RollingRestart => {
            for r in 1..=3 {
                kill(cluster, r).await;
                tokio::time::sleep(Duration::from_millis(200)).await;
                restart(cluster, r).await;
            }
            "rolling restart of 1, 2, 3".to_string()
        }
        Kind::DoubleKill => {
            kill(cluster, a).await;
            kill(cluster, b).await;
            tokio::time::sleep(hold).await;
            restart(cluster, a).await;
            restart(cluster, b).await;
            format!("kill -9 replicas {a} and {b}, restart after {hold:?}")
        }
        Kind::ClockJump => {
            let clock = &cluster.clocks[a - 1];
            clock.set(jump_ms);
            tokio::time::sleep(hold * 2).await;
            clock.reset();
            format!(
                "clock of replica {a} off by {jump_ms} ms for {:?}",
                hold * 2
            )
        }
    }
}

async fn kill(cluster: &Cluster, r: usize) {
    cluster.replicas.lock().await[r - 1].kill9();
}

async fn signal(cluster: &Cluster, r: usize, sig: Signal) {
    cluster.replicas.lock().await[r - 1].signal(sig);
}

/// Restarts a replica and waits until it serves clients.
pub async fn restart(cluster: &Cluster, r: usize) {
    let mut replicas = cluster.replicas.lock().await;
    let replica = &mut replicas[r - 1];
    if !replica.is_running() {
        replica.spawn();
    }
    replica.wait_ready(Duration::from_secs(60)).await;
}
