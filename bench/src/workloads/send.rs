//! `send`: N concurrent senders, each its own account, sending to random
//! recipients, spread over the replicas; every send acknowledged by relay-or-
//! fail before the next. Measures messages/s and per-send latency.

use std::time::{Duration, Instant};

use chat_shared::proto::{CreateAccountRequest, SendMessageRequest};
use chat_tests::authed;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::cpu;
use crate::stats::Row;
use crate::target::Target;

/// One send: when it started (from the start of the measurement), how long
/// it took, and which replica took it.
pub struct Sample {
    pub start: Duration,
    pub latency: Duration,
    pub replica: usize,
}

pub async fn run(
    target: &Target,
    clients: usize,
    duration: Duration,
    seed: u64,
    tag: &str,
) -> (Row, Vec<Sample>) {
    // Accounts, created up front (argon2 makes this the slow part).
    let mut accounts = Vec::new();
    for i in 0..clients.max(2) {
        let mut c = target.client(i).await;
        let auth = c
            .create_account(CreateAccountRequest {
                request_id: rand::random::<[u8; 16]>().to_vec(),
                username: format!("b{tag}-{i}"),
                password: "bench-password".into(),
            })
            .await
            .expect("create bench account")
            .into_inner();
        accounts.push((auth.token, auth.account.expect("account").id));
    }
    let ids: Vec<String> = accounts.iter().map(|(_, id)| id.clone()).collect();
    let start = Instant::now() + Duration::from_millis(200);
    let mut tasks = Vec::new();
    for (i, (token, _)) in accounts.iter().take(clients).enumerate() {
        let token = token.clone();
        let ids = ids.clone();
        let mut c = target.client(i).await;
        let replica = i % target.urls.len();
        tasks.push(tokio::spawn(async move {
            let mut rng = SmallRng::seed_from_u64(seed ^ (i as u64) << 32);
            let mut samples = Vec::new();
            tokio::time::sleep_until(start.into()).await;
            let end = start + duration;
            let mut n = 0u64;
            while Instant::now() < end {
                let mut to = rng.random_range(0..ids.len());
                if to == i {
                    to = (to + 1) % ids.len();
                }
                let req = SendMessageRequest {
                    request_id: rng.random::<[u8; 16]>().to_vec(),
                    recipient_id: ids[to].clone(),
                    body: format!("bench message {n} from {i}"),
                };
                let t = Instant::now();
                c.send_message(authed(&token, req)).await.expect("send");
                samples.push(Sample {
                    start: t.saturating_duration_since(start),
                    latency: t.elapsed(),
                    replica,
                });
                n += 1;
            }
            samples
        }));
    }
    let cpu = cpu::measure(target, start, duration).await;
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("sender task"));
    }
    let mut row = Row::from_latencies(
        "send",
        clients,
        all.iter().map(|s| s.latency).collect(),
        duration,
    );
    cpu.record(&mut row);
    (row, all)
}

/// Appends `samples` to the CSV file at `path` (header first if new).
pub fn append_timeline(path: &std::path::Path, clients: usize, samples: &[Sample]) {
    use std::io::Write;
    let new = !path.exists();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut out = String::new();
    if new {
        out.push_str("clients,start_ms,latency_ms,replica\n");
    }
    let mut sorted: Vec<&Sample> = samples.iter().collect();
    sorted.sort_by_key(|s| s.start);
    for s in sorted {
        out.push_str(&format!(
            "{clients},{:.3},{:.3},{}\n",
            s.start.as_secs_f64() * 1000.0,
            s.latency.as_secs_f64() * 1000.0,
            s.replica
        ));
    }
    f.write_all(out.as_bytes())
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}
