//! `verify`: `chat-server verify` on a stopped replica holding 1 000 000
//! messages (the `restart` data set): how long an operator waits for the
//! replay check, and the most memory it takes.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chat_tests::server_binary;

use super::restart::{build, proc_status_kib};
use crate::stats::Row;
use crate::target::Target;

pub async fn run(messages: u64, seed: u64) -> Row {
    let cluster = Target::prepare(1);
    let dir = &cluster.replicas[0].data_dir;
    let entries = build(dir, messages, seed);
    let t = Instant::now();
    let mut child = Command::new(server_binary())
        .arg("verify")
        .arg("--data-dir")
        .arg(dir)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start chat-server verify");
    // The peak so far, read until the process is gone.
    let mut peak_kib = 0;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for chat-server verify") {
            break status;
        }
        peak_kib = peak_kib.max(proc_status_kib(child.id() as i32, "VmHWM:"));
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let took = t.elapsed();
    let out = std::io::read_to_string(child.stdout.take().expect("stdout")).unwrap_or_default();
    assert!(status.success(), "chat-server verify failed: {out}");
    let report: serde_json::Value = serde_json::from_str(&out).expect("verify prints JSON");
    assert_eq!(report["log_entries"], entries, "{report}");
    let mut row = Row::from_latencies("verify", 1, vec![took], took);
    row.ops = entries;
    row.ops_per_sec = entries as f64 / took.as_secs_f64();
    row.extra.insert("messages".into(), messages.into());
    row.extra.insert(
        "peak_rss_mib".into(),
        ((peak_kib as f64 / 1024.0 * 10.0).round() / 10.0).into(),
    );
    row
}
