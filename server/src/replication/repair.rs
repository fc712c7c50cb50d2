//! Anti-entropy between replicas that stay live to each other.
//!
//! Relays carry only their sender's own entries; entries of other origins
//! travel in introductions, which a replica makes when it starts or when a
//! peer has written it off. Between two replicas that never stop seeing
//! each other, nothing else moves entries -- so an entry that reached only
//! one of them stays missing on the other for as long as both stay up:
//!
//! * A partition cuts C off from B but not from A: C relays its writes to A
//!   only (B is dead to it). If C is then lost, or stays away, A holds C's
//!   entries and B never gets them, although A and B talk all the time.
//! * C crashes while relaying a batch, which reaches A but not B. Restarted
//!   (under a new origin), C syncs from B first, then fetches the batch back
//!   from A; B never sees it.
//!
//! So every round (`--repair-interval-ms`, a few relay deadlines) each
//! replica asks each live peer for its cutoffs and compares them with its
//! *own cutoffs of one round earlier*: what the peer still lacks of those,
//! a relay deadline and more later, is not on its way (a relay is
//! answered, or its link written off, within the deadline), so it is sent
//! with `Forward`. (A shorter round is still correct, only wasteful: an
//! entry forwarded while its relay is under way is applied once.) Excluded are this
//! replica's current origin (its relays deliver it, or the peer is written
//! off and must re-introduce itself) and every origin of the peer itself
//! (a replica never takes its own entries from others while running: its
//! introductions fetch what an earlier incarnation of it left behind).
//! Applying is idempotent, so an entry that arrives twice -- forwarded and
//! relayed, or forwarded by two peers -- is applied once.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio_stream::wrappers::ReceiverStream;

use super::backlog;
use super::cluster::{Cluster, LinkState};
use crate::entry::Entry;
use crate::origin;
use crate::proto::replication::{EntryChunk, PushRequest, StatusRequest};
use crate::storage::Cutoffs;

/// Compares with every live peer once a round, for good.
pub async fn run(cluster: Arc<Cluster>) {
    let round = cluster.settings.repair_interval;
    let mut before: Option<Cutoffs> = None;
    let busy: Arc<Mutex<HashSet<u32>>> = Arc::default();
    loop {
        tokio::time::sleep(round).await;
        let now = cluster.writer.cutoffs();
        if let Some(before) = before.replace(now.clone()) {
            // Each peer on its own task: one that hangs (frozen, not yet
            // written off) must hold up neither the others nor the next
            // rounds; it gets a new one only when its last has finished.
            let before = Arc::new(before);
            let now = Arc::new(now);
            for link in cluster.live_links() {
                if !lock(&busy).insert(link.id) {
                    continue;
                }
                let (cluster, busy) = (cluster.clone(), busy.clone());
                let (before, now) = (before.clone(), now.clone());
                tokio::spawn(async move {
                    if let Err(e) = repair(&cluster, link.id, &before, &now).await {
                        tracing::debug!(peer = link.id, error = %e, "repair round failed");
                    }
                    lock(&busy).remove(&link.id);
                });
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What replica `peer` lacks of `before` (cutoffs this replica held a round ago),
/// as (origin, the peer's cutoff): entries after the peer's cutoff up to
/// ours are to be forwarded. See the module doc for the origins left out.
pub fn lacking(mine: u32, peer: u32, before: &Cutoffs, theirs: &Cutoffs) -> Cutoffs {
    before
        .iter()
        .filter(|&(&o, _)| o != mine && origin::replica(o) != origin::replica(peer))
        .filter_map(|(&o, &held)| {
            let has = theirs.get(&o).copied().unwrap_or(0);
            (has < held).then_some((o, has))
        })
        .collect()
}

async fn repair(
    cluster: &Arc<Cluster>,
    peer: u32,
    before: &Cutoffs,
    now: &Cutoffs,
) -> Result<(), String> {
    let Some(link) = cluster.link(peer) else {
        return Ok(());
    };
    let addr = link.info().replication_addr;
    let mut client = cluster.dialer.client(&addr).map_err(|e| e.to_string())?;
    let deadline = cluster.settings.relay_timeout;
    let status = tokio::time::timeout(
        deadline,
        client.status(StatusRequest {
            without_digest: true,
        }),
    )
    .await
    .map_err(|_| "status timed out".to_string())?
    .map_err(|s| s.message().to_string())?
    .into_inner();
    let theirs = backlog::from_proto(&status.cutoffs);
    let gaps = lacking(cluster.origin(), peer, before, &theirs);
    if gaps.is_empty() || link.state() != LinkState::Live {
        return Ok(());
    }
    let upto: Cutoffs = gaps
        .keys()
        .map(|o| (*o, now.get(o).copied().unwrap_or(0)))
        .collect();
    let count: u64 = upto.iter().map(|(o, s)| s - gaps[o]).sum();
    tracing::warn!(
        peer,
        entries = count,
        origins = ?gaps.keys().collect::<Vec<_>>(),
        "peer lacks entries of other replicas that it should hold by now; forwarding them"
    );
    let mut chunks = backlog::spawn(cluster.store.clone(), gaps, upto);
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    let me = cluster.me.clone();
    tokio::spawn(async move {
        let mut from = Some(me);
        while let Some(chunk) = chunks.recv().await {
            let Ok(entries) = chunk else { return }; // dropping tx ends it short
            let msg = PushRequest {
                from: from.take(),
                chunk: Some(EntryChunk {
                    entries: entries.iter().map(Entry::to_proto).collect(),
                }),
                cutoffs: Vec::new(),
            };
            if tx.send(msg).await.is_err() {
                return;
            }
        }
    });
    // Backlog chunks are bounded; a forward of one round's gap is small.
    tokio::time::timeout(deadline * 10, client.forward(ReceiverStream::new(rx)))
        .await
        .map_err(|_| "forward timed out".to_string())?
        .map_err(|s| s.message().to_string())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_a_peer_lacks_of_other_replicas_origins_is_forwarded() {
        let a = 1; // this replica's current origin
        let b = 2; // the peer, and another incarnation of it
        let b_old = 2 + 65_536;
        let c = 3; // a third replica, and another incarnation of it
        let c_old = 3 + 65_536;
        let before = Cutoffs::from([(a, 50), (b, 9), (b_old, 4), (c, 20), (c_old, 7)]);
        // The peer holds less of our own origin (relays carry it), less of
        // its own (never forwarded to it), and less of both of C's.
        let theirs = Cutoffs::from([(a, 10), (b, 1), (c, 12)]);
        assert_eq!(
            lacking(a, b, &before, &theirs),
            Cutoffs::from([(c, 12), (c_old, 0)])
        );
        // Caught up: nothing.
        let theirs = Cutoffs::from([(a, 10), (c, 25), (c_old, 7)]);
        assert!(lacking(a, b, &before, &theirs).is_empty());
    }
}
