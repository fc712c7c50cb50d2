//! The task that owns one peer link: relays this replica's entries to the
//! peer in order, heartbeats it when idle, and re-introduces this replica
//! when the peer is dead or asks for a resync.
//!
//! Relaying is one call at a time per peer (so per-origin FIFO holds by
//! construction) carrying every batch queued meanwhile (so under load a
//! round trip carries many writes and throughput does not collapse to one
//! write per round trip). What to send is decided by the peer's cutoff, not
//! by the queue: the link sends everything after `peer_has`, from memory
//! when the queued batches are contiguous with it, else from the log. So a
//! link that comes back after an introduction, or that missed batches while
//! it was not live, fills the gap without any special case.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::client::PeerClient;
use super::cluster::{Cluster, Link, LinkState, RelayItem};
use super::introduce::{IntroError, introduce};
use crate::entry::Entry;
use crate::proto::replication::{HeartbeatRequest, RelayRequest};

/// Most entries in one relay call.
const MAX_RELAY_ENTRIES: usize = 4096;
/// Most encoded bytes in one relay call (may exceed by one entry).
const MAX_RELAY_BYTES: usize = 4 * 1024 * 1024;
/// A link stuck "syncing" this long (the introducing peer died midway) is
/// considered dead.
const SYNC_STALE: Duration = Duration::from_secs(60);

pub async fn run(
    cluster: Arc<Cluster>,
    link: Arc<Link>,
    mut queue: mpsc::UnboundedReceiver<RelayItem>,
) {
    cluster.wait_started().await;
    let mut pending: VecDeque<RelayItem> = VecDeque::new();
    let mut client: Option<(String, PeerClient)> = None;
    let retry = cluster.settings.heartbeat * 2;
    loop {
        match link.state() {
            LinkState::Dead => {
                // Nobody waits on a dead peer: fail what is queued -- unless
                // the peer came back meanwhile (its own introduction can make
                // the link live at any moment), in which case the batches
                // are relayed as usual.
                if !fail_while_dead(&link, &mut pending, &mut queue) {
                    continue;
                }
                let addr = link.info().replication_addr;
                match introduce(&cluster, &addr, Some(link.id)).await {
                    Ok(_) => {
                        tracing::info!(peer = link.id, "re-introduced; link live");
                        continue;
                    }
                    Err(IntroError::Clash(e)) => {
                        tracing::error!(peer = link.id, error = %e, "id clash")
                    }
                    Err(e) => tracing::debug!(peer = link.id, error = %e, "introduction failed"),
                }
                let sleep = tokio::time::sleep(retry);
                tokio::pin!(sleep);
                loop {
                    let changed = link.state_changed();
                    tokio::select! {
                        _ = &mut sleep => break,
                        _ = changed => break,
                        item = queue.recv() => match item {
                            Some(item) => {
                                pending.push_back(item);
                                if !fail_while_dead(&link, &mut pending, &mut queue) {
                                    break;
                                }
                            }
                            None => return,
                        },
                    }
                }
            }
            LinkState::Syncing => {
                if link.state_age() > SYNC_STALE {
                    link.set_state(LinkState::Dead);
                    continue;
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                    item = queue.recv() => match item {
                        Some(item) => pending.push_back(item),
                        None => return,
                    },
                }
            }
            LinkState::Live => {
                let addr = link.info().replication_addr;
                if client.as_ref().is_none_or(|(a, _)| *a != addr) {
                    match cluster.dialer.client(&addr) {
                        Ok(c) => client = Some((addr, c)),
                        Err(e) => {
                            tracing::warn!(peer = link.id, error = %e, "bad peer address");
                            link.set_state(LinkState::Dead);
                            continue;
                        }
                    }
                }
                let Some((_, peer)) = client.as_mut() else {
                    continue;
                };
                let mut heartbeat_due = false;
                if pending.is_empty() {
                    tokio::select! {
                        item = queue.recv() => match item {
                            Some(item) => pending.push_back(item),
                            None => return,
                        },
                        _ = tokio::time::sleep(cluster.settings.heartbeat) => heartbeat_due = true,
                    }
                }
                while let Ok(item) = queue.try_recv() {
                    pending.push_back(item);
                }
                if heartbeat_due && !heartbeat(&cluster, &link, peer).await {
                    continue;
                }
                // Everything the peer lacks: through the newest queued batch,
                // or (on a heartbeat) through our newest entry.
                let mut target = pending
                    .iter()
                    .filter_map(|i| i.entries.last().map(|e| e.seq))
                    .max()
                    .unwrap_or(0);
                if heartbeat_due {
                    target = target.max(
                        cluster
                            .writer
                            .cutoffs()
                            .get(&cluster.me.id)
                            .copied()
                            .unwrap_or(0),
                    );
                }
                while link.state() == LinkState::Live && link.peer_has() < target {
                    if !relay(&cluster, &link, peer, &pending, target).await {
                        break;
                    }
                    complete(&mut pending, link.peer_has());
                }
                if link.state() != LinkState::Live {
                    fail_all(&mut pending);
                } else {
                    complete(&mut pending, link.peer_has());
                }
            }
        }
    }
}

/// Fails every pending and queued batch if the link is (still) dead;
/// returns false, failing nothing, if it is not.
fn fail_while_dead(
    link: &Link,
    pending: &mut VecDeque<RelayItem>,
    queue: &mut mpsc::UnboundedReceiver<RelayItem>,
) -> bool {
    while let Ok(item) = queue.try_recv() {
        pending.push_back(item);
    }
    if link.state() != LinkState::Dead {
        return false;
    }
    fail_all(pending);
    true
}

/// Settles the batches the peer now holds.
fn complete(pending: &mut VecDeque<RelayItem>, peer_has: u64) {
    while pending
        .front()
        .is_some_and(|i| i.entries.last().is_none_or(|e| e.seq <= peer_has))
    {
        pending.pop_front();
    }
}

/// Settles every pending batch: the peer is dead, nobody waits for it.
fn fail_all(pending: &mut VecDeque<RelayItem>) {
    pending.clear();
}

/// One relay call: the entries after `peer_has` up to `target` (bounded).
/// Returns whether the link is still live.
async fn relay(
    cluster: &Arc<Cluster>,
    link: &Arc<Link>,
    peer: &mut PeerClient,
    pending: &VecDeque<RelayItem>,
    target: u64,
) -> bool {
    let from = link.peer_has() + 1;
    let entries = match from_memory(pending, from) {
        Some(entries) => entries,
        None => {
            let store = cluster.store.clone();
            let origin = cluster.me.id;
            match tokio::task::spawn_blocking(move || {
                store.entries_after(origin, from - 1, target, MAX_RELAY_ENTRIES)
            })
            .await
            {
                Ok(Ok(entries)) if !entries.is_empty() => entries,
                other => {
                    tracing::error!(peer = link.id, from, target, result = ?other.map(|r| r.map(|e| e.len())), "cannot read the log to relay");
                    link.set_state(LinkState::Dead);
                    return false;
                }
            }
        }
    };
    let last = entries.last().map_or(0, |e| e.seq);
    let request = RelayRequest {
        from: Some(cluster.me.clone()),
        entries: entries.iter().map(Entry::to_proto).collect(),
    };
    let started = std::time::Instant::now();
    match tokio::time::timeout(cluster.settings.relay_timeout, peer.relay(request)).await {
        Ok(Ok(resp)) => {
            let resp = resp.into_inner();
            if resp.resync {
                tracing::info!(peer = link.id, "peer asks us to resync");
                link.set_state(LinkState::Dead);
                return false;
            }
            link.touch();
            link.advance(resp.cutoff);
            if resp.cutoff < last {
                tracing::warn!(
                    peer = link.id,
                    cutoff = resp.cutoff,
                    last,
                    "peer acknowledged less than sent"
                );
                link.set_state(LinkState::Dead);
                return false;
            }
            tracing::trace!(peer = link.id, n = entries.len(), took = ?started.elapsed(), "relayed");
            true
        }
        Ok(Err(status)) => {
            tracing::warn!(peer = link.id, %status, "relay failed; peer marked dead");
            link.set_state(LinkState::Dead);
            false
        }
        Err(_) => {
            tracing::warn!(peer = link.id, timeout = ?cluster.settings.relay_timeout, "relay timed out; peer marked dead");
            link.set_state(LinkState::Dead);
            false
        }
    }
}

/// The queued entries from `from` on, if the queue holds them contiguously.
fn from_memory(pending: &VecDeque<RelayItem>, from: u64) -> Option<Vec<Entry>> {
    let mut out = Vec::new();
    let mut bytes = 0;
    let mut next = from;
    for item in pending {
        for e in item.entries.iter() {
            if e.seq < next {
                continue;
            }
            if e.seq != next {
                return if out.is_empty() { None } else { Some(out) };
            }
            bytes += e.body_len();
            out.push(e.clone());
            next += 1;
            if out.len() >= MAX_RELAY_ENTRIES || bytes >= MAX_RELAY_BYTES {
                return Some(out);
            }
        }
    }
    if out.is_empty() { None } else { Some(out) }
}

/// Probes an idle live peer. Returns whether the link is still live.
async fn heartbeat(cluster: &Arc<Cluster>, link: &Arc<Link>, peer: &mut PeerClient) -> bool {
    let request = HeartbeatRequest {
        from: Some(cluster.me.clone()),
    };
    match tokio::time::timeout(cluster.settings.relay_timeout, peer.heartbeat(request)).await {
        Ok(Ok(resp)) => {
            link.touch();
            let resp = resp.into_inner();
            for info in resp.network {
                if let Err(e) = cluster.add_peer(info) {
                    tracing::error!(error = %e, "peer reports a conflicting replica");
                }
            }
            if !resp.caller_live {
                tracing::info!(peer = link.id, "peer considers us dead; re-introducing");
                link.set_state(LinkState::Dead);
                return false;
            }
            true
        }
        Ok(Err(status)) => {
            tracing::warn!(peer = link.id, %status, "heartbeat failed; peer marked dead");
            link.set_state(LinkState::Dead);
            false
        }
        Err(_) => {
            tracing::warn!(peer = link.id, "heartbeat timed out; peer marked dead");
            link.set_state(LinkState::Dead);
            false
        }
    }
}
