//! `restart`: a replica holding 1 000 000 messages (generated straight into
//! its data directory) is started; measures the time from process start to
//! serving clients, and its resident memory once serving (after a few
//! reads). Runs the start twice: cold (first open after the bulk load) and
//! warm (after a clean restart).

use std::time::{Duration, Instant};

use chat_shared::proto::{GetHistoryRequest, ListUnreadRequest, LoginRequest};
use chat_tests::authed;

use crate::dataset;
use crate::stats::Row;
use crate::target::Target;

pub async fn run(messages: u64, seed: u64) -> Vec<Row> {
    let mut cluster = Target::prepare(1);
    build(&cluster.replicas[0].data_dir, messages, seed);
    let mut rows = Vec::new();
    for attempt in ["cold", "warm"] {
        let r = &mut cluster.replicas[0];
        let t = Instant::now();
        r.spawn();
        r.wait_ready(Duration::from_secs(300)).await;
        let serving = t.elapsed();
        // A few reads, as a freshly started replica would serve.
        let mut c = r.client().await;
        let auth = c
            .login(LoginRequest {
                username: "r-0".into(),
                password: dataset::PASSWORD.into(),
            })
            .await
            .expect("login")
            .into_inner();
        let unread = c
            .list_unread(authed(&auth.token, ListUnreadRequest { limit: 100 }))
            .await
            .expect("unread")
            .into_inner();
        if let Some(m) = unread.messages.first() {
            c.get_history(authed(
                &auth.token,
                GetHistoryRequest {
                    peer_id: m.sender.as_ref().expect("sender").id.clone(),
                    ..Default::default()
                },
            ))
            .await
            .expect("history");
        }
        let rss = rss_kib(r.pid());
        let mut row = Row::from_latencies("restart", 1, vec![serving], Duration::from_secs(1));
        row.ops_per_sec = 0.0;
        row.extra.insert("start".into(), attempt.into());
        row.extra.insert("messages".into(), messages.into());
        row.extra.insert(
            "serving_ms".into(),
            (serving.as_secs_f64() * 1000.0).round().into(),
        );
        row.extra.insert(
            "rss_mib".into(),
            ((rss as f64 / 1024.0 * 10.0).round() / 10.0).into(),
        );
        rows.push(row);
        let status = r.terminate().await;
        assert!(status.success(), "replica exited with {status}");
    }
    rows
}

/// Fills the data directory of replica 1 with `messages` messages among
/// 1000 accounts (`r-0` ...); returns the entries written.
pub fn build(dir: &std::path::Path, messages: u64, seed: u64) -> u64 {
    let t = Instant::now();
    let accounts = 1000;
    let data = dataset::build(dir, 1, "r", accounts, messages, seed, |_, rng| {
        use rand::Rng;
        let a = rng.random_range(0..accounts);
        let b = (a + rng.random_range(1..accounts)) % accounts;
        (a, b)
    });
    eprintln!("built {} entries in {:.1?}", data.entries, t.elapsed());
    data.entries
}

/// Resident set size of a process, in KiB.
pub fn rss_kib(pid: i32) -> u64 {
    proc_status_kib(pid, "VmRSS:")
}

/// A memory figure (`VmRSS:`, `VmHWM:` ...) of a process, in KiB.
pub fn proc_status_kib(pid: i32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
