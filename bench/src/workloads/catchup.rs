//! `catchup`: a cluster of 3 replicas holding 1 000 000 operations (the same
//! generated data directory copied to each), and a brand-new, empty 4th
//! replica joining it. Measures the time from starting the 4th replica until
//! its state digest equals the cluster's.

use std::time::{Duration, Instant};

use crate::dataset;
use crate::stats::Row;
use crate::target::Target;
use crate::workloads::history::copy_dir;
use crate::workloads::restart::rss_kib;

pub async fn run(operations: u64, seed: u64) -> Row {
    let cluster = Target::prepare(3);
    let first = cluster.replicas[0].data_dir.clone();
    let t = Instant::now();
    let accounts = 1000;
    let data = dataset::build(
        &first,
        1,
        "c",
        accounts,
        operations - accounts as u64,
        seed,
        |_, rng| {
            use rand::Rng;
            let a = rng.random_range(0..accounts);
            let b = (a + rng.random_range(1..accounts)) % accounts;
            (a, b)
        },
    );
    for r in &cluster.replicas[1..] {
        copy_dir(&first, &r.data_dir);
    }
    eprintln!("built {} entries in {:.1?}", data.entries, t.elapsed());
    let mut target = Target::start_prepared(cluster).await;
    let cluster = target.cluster.as_mut().expect("local cluster");
    let digest = cluster.status(1).await.expect("status").state_digest;
    let join = vec![cluster.r(1).replication_addr];
    let four = cluster.add(join);
    cluster.r(four).log_level = "warn".into();
    let t = Instant::now();
    cluster.r(four).spawn();
    let mut client = chat_tests::replication_client(cluster.r(four));
    let caught_up = loop {
        let quick = client
            .status(chat_server::proto::replication::StatusRequest {
                without_digest: true,
            })
            .await;
        if let Ok(s) = quick
            && s.get_ref().serving
            && s.get_ref().log_entries >= data.entries
            && cluster
                .status(four)
                .await
                .is_ok_and(|s| s.state_digest == digest)
        {
            break t.elapsed();
        }
        assert!(
            t.elapsed() < Duration::from_secs(600),
            "replica 4 did not catch up in 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut row = Row::from_latencies("catchup", 1, vec![caught_up], Duration::from_secs(1));
    row.ops_per_sec = data.entries as f64 / caught_up.as_secs_f64();
    row.ops = data.entries;
    row.extra.insert("operations".into(), data.entries.into());
    row.extra.insert(
        "caught_up_ms".into(),
        (caught_up.as_secs_f64() * 1000.0).round().into(),
    );
    row.extra.insert(
        "rss_mib_new_replica".into(),
        ((rss_kib(cluster.r(four).pid()) as f64 / 1024.0 * 10.0).round() / 10.0).into(),
    );
    row
}
