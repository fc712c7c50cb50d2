//! The acknowledgement stage: relay-or-fail.
//!
//! The writer hands over each batch of local entries *as it starts the
//! batch's commit* -- the relay to the peers overlaps the local fdatasync.
//! This stage queues the batch on every link that is live *now*, and the
//! batch's clients are answered once the local commit is durable and each of
//! those peers has acknowledged it (the entries are durable there) or failed
//! (and been marked dead). Batches are queued in sequence order, so each
//! link relays in sequence order; waiting is per batch, so batch N+1 is
//! relayed while batch N's clients are answered.
//!
//! The waiting is a countdown shared by the batch's queue items and the
//! writer's commit ([`Settle`]): whichever settles the batch last answers
//! its clients, on its own thread, with no task of its own per batch.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use super::cluster::{Cluster, RelayItem};
use crate::writer::{LocalReply, ProposedBatch};

pub async fn run(cluster: Arc<Cluster>, mut batches: mpsc::UnboundedReceiver<ProposedBatch>) {
    while let Some(batch) = batches.recv().await {
        let ProposedBatch { local, dispatch } = batch;
        if local.is_empty() {
            continue;
        }
        for link in cluster.live_links() {
            link.enqueue(RelayItem {
                entries: local.clone(),
                done: dispatch.share(),
            });
        }
        // `dispatch` drops here: the batch now waits for the links it was
        // queued on and for the local commit.
    }
}

/// A batch's clients, waiting for the local commit and for the links the
/// batch was queued on.
struct Waiting {
    shares: AtomicUsize,
    replies: Mutex<Vec<LocalReply>>,
    /// Why the local commit failed, if it did: every reply becomes an error.
    failed: Mutex<Option<String>>,
}

/// One share of a batch's wait. Dropping it -- the local commit finished,
/// a peer acknowledged the batch, or failed and was marked dead, or the link
/// task is gone -- settles that share; the last one answers the clients.
pub struct Settle(Arc<Waiting>);

impl Settle {
    /// Two shares of a new wait for `replies`: the writer's (dropped once the
    /// batch is committed locally) and the dispatcher's (dropped once the
    /// batch is queued on every live link).
    pub fn pair(replies: Vec<LocalReply>) -> (Settle, Settle) {
        let waiting = Arc::new(Waiting {
            shares: AtomicUsize::new(2),
            replies: Mutex::new(replies),
            failed: Mutex::new(None),
        });
        (Settle(waiting.clone()), Settle(waiting))
    }

    /// Another share of the same wait (taken while this one is held, so the
    /// count cannot reach zero in between).
    pub fn share(&self) -> Settle {
        self.0.shares.fetch_add(1, Ordering::AcqRel);
        Settle(self.0.clone())
    }

    /// The local commit failed: the clients get `why` instead of their
    /// results.
    pub fn fail(self, why: String) {
        *self.0.failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
    }
}

impl Drop for Settle {
    fn drop(&mut self) {
        if self.0.shares.fetch_sub(1, Ordering::AcqRel) == 1 {
            let replies =
                std::mem::take(&mut *self.0.replies.lock().unwrap_or_else(|p| p.into_inner()));
            let failed = self
                .0
                .failed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take();
            for reply in replies {
                match &failed {
                    Some(why) => reply.fail(why.clone()),
                    None => reply.send(),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::oneshot;

    use super::*;
    use crate::writer::{Outcome, WriteError};

    fn reply() -> (LocalReply, oneshot::Receiver<Result<Outcome, WriteError>>) {
        let (tx, rx) = oneshot::channel();
        let result = Ok(Outcome::AlreadyDone);
        (LocalReply { tx, result }, rx)
    }

    #[test]
    fn the_clients_wait_for_the_local_commit_and_every_link() {
        let (r, mut rx) = reply();
        let (mine, dispatch) = Settle::pair(vec![r]);
        let links = [dispatch.share(), dispatch.share()];
        drop(dispatch);
        let [a, b] = links;
        drop(a);
        drop(mine);
        assert!(rx.try_recv().is_err(), "answered before the last link");
        drop(b);
        assert_eq!(rx.try_recv().unwrap(), Ok(Outcome::AlreadyDone));
    }

    #[test]
    fn peers_first_then_the_local_commit() {
        let (r, mut rx) = reply();
        let (mine, dispatch) = Settle::pair(vec![r]);
        drop(dispatch.share());
        drop(dispatch);
        assert!(rx.try_recv().is_err(), "answered before the local commit");
        drop(mine);
        assert_eq!(rx.try_recv().unwrap(), Ok(Outcome::AlreadyDone));
    }

    #[test]
    fn a_failed_local_commit_fails_every_client_even_if_peers_hold_the_batch() {
        let (r1, mut rx1) = reply();
        let (r2, mut rx2) = reply();
        let (mine, dispatch) = Settle::pair(vec![r1, r2]);
        let link = dispatch.share();
        drop(dispatch);
        drop(link);
        mine.fail("disk full".into());
        for rx in [&mut rx1, &mut rx2] {
            match rx.try_recv().unwrap() {
                Err(WriteError::Unavailable(why)) => assert_eq!(why, "disk full"),
                other => panic!("expected a failure, got {other:?}"),
            }
        }
    }
}
