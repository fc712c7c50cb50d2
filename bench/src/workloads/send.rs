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

pub async fn run(target: &Target, clients: usize, duration: Duration, seed: u64, tag: &str) -> Row {
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
        tasks.push(tokio::spawn(async move {
            let mut rng = SmallRng::seed_from_u64(seed ^ (i as u64) << 32);
            let mut lat = Vec::new();
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
                lat.push(t.elapsed());
                n += 1;
            }
            lat
        }));
    }
    let cpu = cpu::measure(target, start, duration).await;
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("sender task"));
    }
    let mut row = Row::from_latencies("send", clients, all, duration);
    cpu.record(&mut row);
    row
}
