//! Operator commands: `chat-server status` and `chat-server retire` talk to a
//! running replica's replication port, as a peer would, with the cluster
//! secret; `chat-server verify` checks a stopped replica's data directory.

pub mod retire;
pub mod status;
pub mod verify;

use std::time::Duration;

use crate::auth::ClusterSecret;
pub use crate::config::AdminArgs;
use crate::replication::auth::AddPeerKey;
use crate::replication::client::{Dialer, PeerClient};

/// A client for the replica `args` names, authenticated with the cluster
/// secret (CHAT_CLUSTER_SECRET, else --cluster-secret-file).
fn dial(args: &AdminArgs) -> Result<PeerClient, String> {
    let from_env = std::env::var("CHAT_CLUSTER_SECRET")
        .ok()
        .filter(|v| !v.trim().is_empty());
    let secret = match from_env {
        Some(v) => {
            if let Some(f) = &args.cluster_secret_file {
                eprintln!(
                    "note: CHAT_CLUSTER_SECRET is set: using it, not {}",
                    f.display()
                );
            }
            v.trim().as_bytes().to_vec()
        }
        None => {
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
        Some(p) => {
            let ca = std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
            crate::server::check_tls_ca(&ca)
                .map_err(|why| format!("--tls-ca {}: {why}", p.display()))?;
            Some(ca)
        }
        None => None,
    };
    let dialer = Dialer {
        key: AddPeerKey::new(&secret),
        tls_ca,
        dead_after: Duration::from_secs(5),
    };
    dialer
        .client(&args.replication_addr)
        .map_err(|e| e.to_string())
}
