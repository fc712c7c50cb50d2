//! `ping`: N concurrent clients calling `ListServers`, which touches no
//! storage and needs no session: the ceiling that gRPC round trips alone
//! put on this machine, to read the other workloads against.

use std::time::{Duration, Instant};

use chat_shared::proto::ListServersRequest;

use crate::cpu;
use crate::stats::Row;
use crate::target::Target;

pub async fn run(target: &Target, clients: usize, duration: Duration) -> Row {
    let start = Instant::now() + Duration::from_millis(200);
    let mut tasks = Vec::new();
    for i in 0..clients {
        let mut c = target.client(i).await;
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            tokio::time::sleep_until(start.into()).await;
            let end = start + duration;
            while Instant::now() < end {
                let t = Instant::now();
                c.list_servers(ListServersRequest {}).await.expect("ping");
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let cpu = cpu::measure(target, start, duration).await;
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("ping task"));
    }
    let mut row = Row::from_latencies("ping", clients, all, duration);
    cpu.record(&mut row);
    row
}
