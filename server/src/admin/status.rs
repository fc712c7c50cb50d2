//! `chat-server status`: asks a replica for its replication status and
//! prints it as JSON (for operators, scripts and tests).

use std::time::Duration;

use serde_json::json;

use super::{AdminArgs, dial};
use crate::proto::replication::StatusRequest;

pub async fn run(args: AdminArgs) -> Result<(), String> {
    let mut client = dial(&args)?;
    let status = tokio::time::timeout(
        Duration::from_secs(30),
        client.status(StatusRequest::default()),
    )
    .await
    .map_err(|_| format!("{} did not answer within 30 s", args.replication_addr))?
    .map_err(|s| format!("{}: {}", args.replication_addr, s.message()))?
    .into_inner();
    let info = |i: &Option<crate::proto::replication::ReplicaInfo>| {
        i.as_ref().map(|i| {
            json!({
                "id": i.id,
                "instance": i.instance,
                "client_url": i.client_url,
                "replication_addr": i.replication_addr,
            })
        })
    };
    let out = json!({
        "replica": info(&status.replica),
        "log_format": status.replica.as_ref().map(|r| r.log_format),
        "serving": status.serving,
        "clock_refusal": (!status.clock_refusal.is_empty()).then_some(&status.clock_refusal),
        "origin": status.origin,
        "state_digest": status.state_digest,
        "log_entries": status.log_entries,
        "cutoffs": status.cutoffs.iter().map(|c| (c.origin.to_string(), json!(c.seq))).collect::<serde_json::Map<_, _>>(),
        "peers": status.peers.iter().map(|p| json!({
            "replica": info(&p.info),
            "live": p.live,
            "retired": p.retired,
            "last_contact_ms_ago": p.last_contact_ms_ago,
            "clock_offset_ms": p.clock_offset_ms,
        })).collect::<Vec<_>>(),
    });
    println!(
        "{}",
        serde_json::to_string_pretty(&out).map_err(|e| e.to_string())?
    );
    Ok(())
}
