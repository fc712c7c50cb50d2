//! `chat-server status`: asks a replica for its replication status and
//! prints it as JSON (for operators, scripts and tests).

use std::time::Duration;

use serde_json::json;

use crate::auth::ClusterSecret;
use crate::config::StatusArgs;
use crate::proto::replication::StatusRequest;
use crate::replication::auth::AddPeerKey;
use crate::replication::client::Dialer;

pub async fn run(args: StatusArgs) -> Result<(), String> {
    let secret = match std::env::var("CHAT_CLUSTER_SECRET") {
        Ok(v) => v.trim().as_bytes().to_vec(),
        Err(_) => {
            let path = args.cluster_secret_file.as_ref().ok_or(
                "pass --cluster-secret-file (or set CHAT_CLUSTER_SECRET): the replication port only answers peers",
            )?;
            std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?
                .trim()
                .as_bytes()
                .to_vec()
        }
    };
    let secret = ClusterSecret::new(secret)?;
    let tls_ca = match &args.tls_ca {
        Some(p) => Some(std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?),
        None => None,
    };
    let dialer = Dialer {
        key: AddPeerKey::new(&secret),
        tls_ca,
        dead_after: Duration::from_secs(5),
    };
    let mut client = dialer
        .client(&args.replication_addr)
        .map_err(|e| e.to_string())?;
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
        "state_digest": status.state_digest,
        "log_entries": status.log_entries,
        "cutoffs": status.cutoffs.iter().map(|c| (c.origin.to_string(), json!(c.seq))).collect::<serde_json::Map<_, _>>(),
        "peers": status.peers.iter().map(|p| json!({
            "replica": info(&p.info),
            "live": p.live,
            "last_contact_ms_ago": p.last_contact_ms_ago,
        })).collect::<Vec<_>>(),
    });
    println!(
        "{}",
        serde_json::to_string_pretty(&out).map_err(|e| e.to_string())?
    );
    Ok(())
}
