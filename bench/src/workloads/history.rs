//! `history`: page reads from a conversation of 100 000 messages. The
//! mailbox is generated straight into the replicas' data directories; each
//! client then pages through it from the newest message, 50 at a time,
//! starting over at the end.

use std::time::{Duration, Instant};

use chat_shared::proto::{GetHistoryRequest, LoginRequest};
use chat_tests::authed;

use crate::dataset;
use crate::stats::Row;
use crate::target::Target;

pub const MAILBOX: u64 = 100_000;

/// A 3-replica cluster whose replicas all hold one 100 000-message mailbox
/// between `h-0` and `h-1`.
pub async fn target(replicas: u32, seed: u64) -> Target {
    let cluster = Target::prepare(replicas);
    let first = cluster.replicas[0].data_dir.clone();
    let t = Instant::now();
    dataset::build(&first, 1, "h", 2, MAILBOX, seed, |n, _| {
        if n % 2 == 0 { (0, 1) } else { (1, 0) }
    });
    for r in &cluster.replicas[1..] {
        copy_dir(&first, &r.data_dir);
    }
    eprintln!("built a {MAILBOX}-message mailbox in {:.1?}", t.elapsed());
    Target::start_prepared(cluster).await
}

pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    let status = std::process::Command::new("cp")
        .arg("-r")
        .arg(from)
        .arg(to)
        .status()
        .expect("cp");
    assert!(status.success(), "copying {} failed", from.display());
}

pub async fn run(target: &Target, clients: usize, duration: Duration) -> Row {
    let mut tasks = Vec::new();
    let start = Instant::now() + Duration::from_millis(500);
    for i in 0..clients {
        let mut c = target.client(i).await;
        let auth = c
            .login(LoginRequest {
                username: "h-0".into(),
                password: dataset::PASSWORD.into(),
            })
            .await
            .expect("login")
            .into_inner();
        let peer = c
            .list_conversations(authed(&auth.token, Default::default()))
            .await
            .expect("conversations")
            .into_inner()
            .conversations[0]
            .peer
            .clone()
            .expect("peer")
            .id;
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut cursor = String::new();
            tokio::time::sleep_until(start.into()).await;
            let end = start + duration;
            while Instant::now() < end {
                let t = Instant::now();
                let page = c
                    .get_history(authed(
                        &auth.token,
                        GetHistoryRequest {
                            peer_id: peer.clone(),
                            page_size: 50,
                            cursor: cursor.clone(),
                        },
                    ))
                    .await
                    .expect("page")
                    .into_inner();
                lat.push(t.elapsed());
                assert!(!page.messages.is_empty());
                cursor = page.next_cursor;
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("reader"));
    }
    Row::from_latencies("history", clients, all, duration)
}
