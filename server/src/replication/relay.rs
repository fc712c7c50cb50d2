//! The acknowledgement stage: relay-or-fail.
//!
//! The writer hands over each committed batch of local entries. This stage
//! queues the batch on every link that is live *now*, and answers the
//! batch's clients once each of those peers has acknowledged it (the entries
//! are durable there) or failed (and been marked dead). Batches are queued
//! in commit order, so each link relays in sequence order; waiting is per
//! batch, so batch N+1 is relayed while batch N's clients are answered.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::cluster::{Cluster, RelayItem};
use crate::writer::{CommittedBatch, LocalReply};

pub async fn run(cluster: Arc<Cluster>, mut commits: mpsc::UnboundedReceiver<CommittedBatch>) {
    while let Some(batch) = commits.recv().await {
        if batch.local.is_empty() {
            batch.replies.into_iter().for_each(LocalReply::send);
            continue;
        }
        let mut acks = Vec::new();
        for link in cluster.live_links() {
            let (done, ack) = oneshot::channel();
            link.enqueue(RelayItem {
                entries: batch.local.clone(),
                done,
            });
            acks.push(ack);
        }
        tokio::spawn(async move {
            for ack in acks {
                // Acknowledged or failed: either way the peer is settled.
                let _ = ack.await;
            }
            batch.replies.into_iter().for_each(LocalReply::send);
        });
    }
}
