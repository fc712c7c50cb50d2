//! Retiring a replica: removing it from the cluster for good.
//!
//! Membership otherwise only grows: a replica whose machine or disk is gone
//! would stay in every network list forever, dead, shown to clients as a
//! server that never answers, and retried by every peer. Retiring it is an
//! operator's decision, made through any other replica (`chat-server
//! retire`), and it is final: the retired id is never relayed to, accepted
//! or reused again.
//!
//! The replica asked refuses unless the one to retire is dead to it: a
//! running replica may hold writes nobody else has yet (it accepted them
//! while cut off from every peer), and retiring it would strand them. It
//! records the retirement in its stored network state and tells its live
//! peers at once; the others learn it the way replicas learn of new members,
//! from the network list in every introduction and heartbeat, where a
//! retired copy of a replica's info overrides any other. A retired replica
//! that comes back is refused by every replica that knows, recognises the
//! refusal and stops (`cluster::ClusterError::Retired`). Its past writes stay
//! in every log: they are part of the history.

use std::sync::Arc;

use tonic::Status;

use super::cluster::{Cluster, RetireError};
use crate::proto::replication::{RetireRequest, RetireResponse};

pub async fn handle(cluster: &Arc<Cluster>, req: RetireRequest) -> Result<RetireResponse, Status> {
    // A peer passing the retirement on has already checked; like a network
    // list, its word is final here.
    let news = cluster.retire(req.id, !req.from_peer).map_err(|e| {
        let msg = e.to_string();
        match e {
            RetireError::Itself => Status::invalid_argument(msg),
            RetireError::Unknown(_) => Status::not_found(msg),
            RetireError::Running(_) => Status::failed_precondition(msg),
            RetireError::Storage(_) => Status::unavailable(msg),
        }
    })?;
    if !news || req.from_peer {
        return Ok(RetireResponse { told: Vec::new() });
    }
    let calls = cluster.live_links().into_iter().map(|link| {
        let cluster = cluster.clone();
        async move {
            let addr = link.info().replication_addr;
            let mut client = cluster.client(&addr).ok()?;
            let request = RetireRequest {
                id: req.id,
                from_peer: true,
            };
            match tokio::time::timeout(cluster.settings.relay_timeout, client.retire(request)).await
            {
                Ok(Ok(_)) => Some(link.id),
                Ok(Err(status)) => {
                    // It learns from the next network list it sees anyway.
                    tracing::warn!(peer = link.id, %status, "peer did not take the retirement");
                    None
                }
                Err(_) => None,
            }
        }
    });
    let told = futures_util::future::join_all(calls)
        .await
        .into_iter()
        .flatten()
        .collect();
    Ok(RetireResponse { told })
}
