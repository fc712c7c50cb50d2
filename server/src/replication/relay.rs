//! The acknowledgement stage: relay-or-fail.
//!
//! The writer hands over each committed batch of local entries. This stage
//! queues the batch on every link that is live *now*, and answers the
//! batch's clients once each of those peers has acknowledged it (the entries
//! are durable there) or failed (and been marked dead). Batches are queued
//! in commit order, so each link relays in sequence order; waiting is per
//! batch, so batch N+1 is relayed while batch N's clients are answered.
//!
//! The waiting is a countdown shared by the batch's queue items ([`Settle`]):
//! whichever link settles the batch last answers its clients, on its own
//! task, with no task of its own per batch.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use super::cluster::{Cluster, RelayItem};
use crate::writer::{CommittedBatch, LocalReply};

pub async fn run(cluster: Arc<Cluster>, mut commits: mpsc::UnboundedReceiver<CommittedBatch>) {
    while let Some(batch) = commits.recv().await {
        let links = if batch.local.is_empty() {
            Vec::new()
        } else {
            cluster.live_links()
        };
        if links.is_empty() {
            batch.replies.into_iter().for_each(LocalReply::send);
            continue;
        }
        let waiting = Arc::new(Waiting {
            links: AtomicUsize::new(links.len()),
            replies: Mutex::new(batch.replies),
        });
        for link in links {
            link.enqueue(RelayItem {
                entries: batch.local.clone(),
                done: Settle(waiting.clone()),
            });
        }
    }
}

/// A batch's clients, waiting for the links it was queued on.
struct Waiting {
    links: AtomicUsize,
    replies: Mutex<Vec<LocalReply>>,
}

/// One link's share of a batch's wait. Dropping it -- the peer acknowledged
/// the batch, or failed and was marked dead, or the link task is gone --
/// settles that link; the last one answers the clients.
pub struct Settle(Arc<Waiting>);

impl Drop for Settle {
    fn drop(&mut self) {
        if self.0.links.fetch_sub(1, Ordering::AcqRel) == 1 {
            let replies =
                std::mem::take(&mut *self.0.replies.lock().unwrap_or_else(|p| p.into_inner()));
            replies.into_iter().for_each(LocalReply::send);
        }
    }
}
