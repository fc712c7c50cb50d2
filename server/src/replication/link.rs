//! The task that owns one peer link: relays this replica's entries to the
//! peer in order, heartbeats it when idle, and re-introduces this replica
//! when the peer is dead or asks for a resync.
//!
//! The re-introduction runs in a task of its own. After a partition heals
//! both sides introduce themselves at once, and whichever introduction ends
//! first leaves both holding each other's entries and the link live; the
//! other one (streaming a long backlog, perhaps) is then redundant, and
//! batches queued meanwhile are relayed under their deadline instead of
//! waiting for it. It cannot mark the link dead or syncing again once the
//! peer's introduction has made it live (`Link::introduction_syncing`).
//!
//! Relaying is one long-lived `Relay` stream per peer. Each message is a
//! batch of consecutive entries -- everything queued since the previous
//! message -- and the peer answers every message, in order, once the batch
//! is durable there. Up to [`MAX_BATCHES_IN_FLIGHT`] batches may be
//! unanswered, so a batch formed while the previous one is on its way
//! does not wait a round trip to leave, and a stream message costs far less
//! than a call (no per-call headers, routing or stream set-up on either
//! side; docs/performance.md). Per-origin FIFO holds by construction: one stream, sent in
//! sequence order, applied by the peer's writer in arrival order.
//!
//! What to send is decided by sequence numbers, not by the queue: the link
//! sends everything after what this stream has carried (which starts at
//! the peer's cutoff), from memory when the queued batches are contiguous
//! with it, else from the log. So a link that comes back after an
//! introduction, or that missed batches while it was not live, fills the gap
//! without any special case. Any failure -- an error, an answer past the
//! deadline, a resync -- marks the peer dead and drops the stream; the next
//! live period opens a new one.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

use super::client::PeerClient;
use super::cluster::{Cluster, Link, LinkState, RelayItem};
use super::introduce::{IntroError, introduce};
use crate::entry::Entry;
use crate::proto::replication::{HeartbeatRequest, RelayRequest, RelayResponse};

/// Most entries in one relay batch (stream message).
const MAX_RELAY_ENTRIES: usize = 4096;
/// Most encoded bytes in one relay batch (may exceed by one entry).
const MAX_RELAY_BYTES: usize = 4 * 1024 * 1024;
/// Most batches sent to a peer and not yet answered. Measured at 16
/// senders on 2 cores, two paired runs: with 1 (a stream, no pipelining) a
/// send cost 10-25% more CPU and throughput was 8-19% lower than with 4;
/// 16 did no better than 4 at 16 or 64 senders.
pub const MAX_BATCHES_IN_FLIGHT: usize = 4;
/// A link stuck "syncing" this long while no introduction of ours runs
/// (the peer introducing itself died midway) is considered dead.
const SYNC_STALE: Duration = Duration::from_secs(60);

pub async fn run(
    cluster: Arc<Cluster>,
    link: Arc<Link>,
    queue: mpsc::UnboundedReceiver<RelayItem>,
) {
    cluster.wait_started().await;
    let mut task = LinkTask {
        cluster,
        link,
        queue,
        pending: VecDeque::new(),
        client: None,
        stream: None,
        introduction: None,
        retry_at: None,
    };
    loop {
        let (state, generation) = task.link.state_and_generation();
        if task
            .stream
            .as_ref()
            .is_some_and(|s| s.generation != generation)
        {
            task.stream = None;
        }
        let open = match state {
            LinkState::Dead => task.dead().await,
            LinkState::Syncing => task.syncing().await,
            LinkState::Live => task.live(generation).await,
            // Nothing is ever sent to it again; batches queued later are
            // dropped with the queue, which settles them.
            LinkState::Retired => false,
        };
        if !open {
            return; // the replica is shutting down, or the peer was retired
        }
    }
}

/// One link's task and what it holds between turns.
struct LinkTask {
    cluster: Arc<Cluster>,
    link: Arc<Link>,
    queue: mpsc::UnboundedReceiver<RelayItem>,
    /// Batches queued for the peer and not yet settled, in sequence order.
    pending: VecDeque<RelayItem>,
    client: Option<(String, PeerClient)>,
    stream: Option<RelayStream>,
    /// Our introduction to the peer, while one runs. It runs beside the
    /// task, not in it: when the peer's own introduction makes the link
    /// live first, batches are relayed (under their deadline) while ours
    /// is still streaming its backlog.
    introduction: Option<JoinHandle<bool>>,
    /// When to try again after a failed introduction.
    retry_at: Option<Instant>,
}

/// Introduces this replica to the peer, and stops the replica if the peer
/// says it must not serve. Returns whether it succeeded.
async fn introduce_ourselves(cluster: Arc<Cluster>, link: Arc<Link>) -> bool {
    let addr = link.info().replication_addr;
    match introduce(&cluster, &addr, Some(link.id)).await {
        Ok(_) => {
            tracing::info!(peer = link.id, "re-introduced; link live");
            true
        }
        Err(IntroError::Clash(e)) => {
            tracing::error!(peer = link.id, error = %e, "id clash");
            false
        }
        Err(IntroError::Retired) => {
            tracing::error!(
                peer = link.id,
                "the peer says this replica has been retired from the cluster; stopping"
            );
            cluster.halt(cluster.retired_error().to_string());
            false
        }
        Err(IntroError::RolledBack(why)) => {
            tracing::error!(peer = link.id, "{why}; stopping");
            cluster.halt(why);
            false
        }
        // A malformed or inconsistent entry, theirs or (refused by them)
        // ours: no retry will get past it (docs/replication.md, "Security
        // of the replication port").
        Err(e @ IntroError::Protocol(_)) => {
            tracing::error!(peer = link.id, error = %e, "introduction failed");
            false
        }
        Err(IntroError::Refused(status)) if status.code() == tonic::Code::InvalidArgument => {
            tracing::error!(peer = link.id, %status, "the peer refused entries of this replica's log");
            false
        }
        Err(e) => {
            tracing::debug!(peer = link.id, error = %e, "introduction failed");
            false
        }
    }
}

impl LinkTask {
    /// One turn while the peer is dead: fail what is queued, make sure an
    /// introduction of ours is under way (or its retry due), wait for it or
    /// for the state to change. Each turn returns false once the queue has
    /// closed.
    async fn dead(&mut self) -> bool {
        let link = self.link.clone();
        // Nobody waits on a dead peer: fail what is queued -- unless the peer
        // came back meanwhile (its own introduction can make the link live at
        // any moment), in which case the batches are relayed as usual.
        if !fail_while_dead(&link, &mut self.pending, &mut self.queue) {
            return true;
        }
        if self.introduction.is_none() && self.retry_at.is_none_or(|t| t <= Instant::now()) {
            self.retry_at = None;
            self.introduction = Some(tokio::spawn(introduce_ourselves(
                self.cluster.clone(),
                link.clone(),
            )));
        }
        let changed = link.state_changed();
        if link.state() != LinkState::Dead {
            return true;
        }
        let retry_at = self.retry_at.unwrap_or_else(Instant::now);
        tokio::select! {
            done = async { self.introduction.as_mut().expect("guarded").await }, if self.introduction.is_some() => {
                self.introduction = None;
                // (One that halted the replica is a failure too: the task
                // goes on -- relaying, should the peer's introduction have
                // made the link live -- until the queue closes.)
                if !matches!(done, Ok(true)) {
                    self.retry_at = Some(Instant::now() + self.cluster.settings.heartbeat * 2);
                }
                true
            }
            _ = tokio::time::sleep_until(retry_at.into()), if self.introduction.is_none() => true,
            _ = changed => true,
            item = self.queue.recv() => match item {
                Some(item) => {
                    self.pending.push_back(item);
                    fail_while_dead(&link, &mut self.pending, &mut self.queue);
                    true
                }
                None => false,
            },
        }
    }

    /// One turn while an introduction with the peer is under way: batches
    /// wait for it.
    async fn syncing(&mut self) -> bool {
        // Ours is bounded by its own timeouts (each backlog chunk, the
        // connection's keepalive); the stale limit is for the peer's.
        let ours = self.introduction.as_ref().is_some_and(|i| !i.is_finished());
        if !ours && self.link.state_age() > SYNC_STALE {
            self.link.set_state(LinkState::Dead);
            return true;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(20)) => true,
            item = self.queue.recv() => match item {
                Some(item) => {
                    self.pending.push_back(item);
                    true
                }
                None => false,
            },
        }
    }

    /// One turn while the peer is live: wait for something to do, then send
    /// what the peer lacks, as far as the window allows.
    async fn live(&mut self, generation: u64) -> bool {
        // An introduction of ours that ended while the link was live (made
        // so by the peer's) is done with: a later dead period starts anew.
        if self.introduction.as_ref().is_some_and(|i| i.is_finished()) {
            self.introduction = None;
        }
        let (cluster, link) = (&self.cluster, &self.link);
        let addr = link.info().replication_addr;
        if self.client.as_ref().is_none_or(|(a, _)| *a != addr) {
            self.stream = None;
            match cluster.dialer.client(&addr) {
                Ok(c) => self.client = Some((addr, c)),
                Err(e) => {
                    tracing::warn!(peer = link.id, error = %e, "bad peer address");
                    link.set_state(LinkState::Dead);
                    return true;
                }
            }
        }
        let Some((_, peer)) = self.client.as_mut() else {
            return true;
        };
        let (pending, stream, queue) = (&mut self.pending, &mut self.stream, &mut self.queue);
        // Unless a queued batch can go out now (it may have been queued while
        // the link was not live), wait for something to do: a batch to relay,
        // an answer, the oldest unanswered batch's deadline, or (idle) a
        // heartbeat.
        let deadline = stream
            .as_ref()
            .and_then(|s| s.unanswered.front())
            .map(|(_, sent)| *sent + cluster.settings.relay_timeout);
        let idle = pending.is_empty() && deadline.is_none();
        let mut heartbeat_due = false;
        let sent = stream.as_ref().map_or_else(|| link.peer_has(), |s| s.sent);
        let unsent = pending
            .iter()
            .any(|i| i.entries.last().is_some_and(|e| e.seq > sent));
        if !unsent || window_full(stream) {
            tokio::select! {
                item = queue.recv() => match item {
                    Some(item) => pending.push_back(item),
                    None => return false,
                },
                answer = async { stream.as_mut().expect("guarded").answers.message().await }, if deadline.is_some() => {
                    let answered = stream.as_mut().is_some_and(|s| s.answered(link, answer));
                    if !answered {
                        link.set_state(LinkState::Dead);
                    }
                }
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now).into()), if deadline.is_some() => {
                    tracing::warn!(peer = link.id, timeout = ?cluster.settings.relay_timeout, "relay timed out; peer marked dead");
                    link.set_state(LinkState::Dead);
                }
                _ = tokio::time::sleep(cluster.settings.heartbeat), if idle => heartbeat_due = true,
            }
        }
        while let Ok(item) = queue.try_recv() {
            pending.push_back(item);
        }
        if heartbeat_due && !heartbeat(cluster, link, peer).await {
            return true;
        }
        // Everything the peer lacks: through the newest queued batch, or (on
        // a heartbeat) through our newest entry.
        let mut target = pending
            .iter()
            .filter_map(|i| i.entries.last().map(|e| e.seq))
            .max()
            .unwrap_or(0);
        if heartbeat_due {
            let ours = cluster.writer.cutoffs().get(&cluster.origin()).copied();
            target = target.max(ours.unwrap_or(0));
        }
        while link.state() == LinkState::Live {
            let sent = stream.as_ref().map_or_else(|| link.peer_has(), |s| s.sent);
            if sent >= target || window_full(stream) {
                break;
            }
            if stream.is_none() {
                match open(cluster, link, peer, generation).await {
                    Some(s) => *stream = Some(s),
                    None => {
                        link.set_state(LinkState::Dead);
                        break;
                    }
                }
            }
            let Some(s) = stream.as_mut() else { break };
            if !s.send(cluster, link, pending, target).await {
                link.set_state(LinkState::Dead);
            }
        }
        complete(pending, link.peer_has());
        if link.state() != LinkState::Live {
            *stream = None;
            fail_all(pending);
        }
        true
    }
}

/// Whether the stream has as many batches unanswered as it may.
fn window_full(stream: &Option<RelayStream>) -> bool {
    stream
        .as_ref()
        .is_some_and(|s| s.unanswered.len() >= MAX_BATCHES_IN_FLIGHT)
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

/// An open relay stream to the peer.
struct RelayStream {
    /// The link's live period the stream belongs to.
    generation: u64,
    requests: mpsc::Sender<RelayRequest>,
    answers: Streaming<RelayResponse>,
    /// Each unanswered batch: its last sequence number, and when it left.
    unanswered: VecDeque<(u64, Instant)>,
    /// The last sequence number sent on this stream.
    sent: u64,
    /// Whether the stream's first message (which names us) has been sent.
    named: bool,
}

/// Opens a relay stream, starting after what the peer is known to hold.
async fn open(
    cluster: &Arc<Cluster>,
    link: &Arc<Link>,
    peer: &mut PeerClient,
    generation: u64,
) -> Option<RelayStream> {
    let (requests, outgoing) = mpsc::channel(MAX_BATCHES_IN_FLIGHT);
    let call = peer.relay(ReceiverStream::new(outgoing));
    match tokio::time::timeout(cluster.settings.relay_timeout, call).await {
        Ok(Ok(answers)) => Some(RelayStream {
            generation,
            requests,
            answers: answers.into_inner(),
            unanswered: VecDeque::new(),
            sent: link.peer_has(),
            named: false,
        }),
        Ok(Err(status)) => {
            tracing::warn!(peer = link.id, %status, "cannot open a relay stream; peer marked dead");
            None
        }
        Err(_) => {
            tracing::warn!(
                peer = link.id,
                "opening a relay stream timed out; peer marked dead"
            );
            None
        }
    }
}

impl RelayStream {
    /// Sends the next batch: the entries after `sent` up to `target`
    /// (bounded). Returns false if the link must be marked dead.
    async fn send(
        &mut self,
        cluster: &Arc<Cluster>,
        link: &Arc<Link>,
        pending: &VecDeque<RelayItem>,
        target: u64,
    ) -> bool {
        let from = self.sent + 1;
        let entries = match from_memory(pending, from) {
            Some(entries) => entries,
            None => {
                let store = cluster.store.clone();
                let origin = cluster.origin();
                match tokio::task::spawn_blocking(move || {
                    store.entries_after(origin, from - 1, target, MAX_RELAY_ENTRIES)
                })
                .await
                {
                    Ok(Ok(entries)) if !entries.is_empty() => entries,
                    other => {
                        tracing::error!(peer = link.id, from, target, result = ?other.map(|r| r.map(|e| e.len())), "cannot read the log to relay");
                        return false;
                    }
                }
            }
        };
        let last = entries.last().map_or(0, |e| e.seq);
        let request = RelayRequest {
            // The stream's first message names the sender.
            from: (!self.named).then(|| cluster.me.clone()),
            entries: entries.iter().map(Entry::to_proto).collect(),
        };
        if self.requests.send(request).await.is_err() {
            tracing::warn!(peer = link.id, "relay stream closed; peer marked dead");
            return false;
        }
        self.named = true;
        crate::metrics::record_relay_sent(link.id, entries.len());
        self.unanswered.push_back((last, Instant::now()));
        self.sent = last;
        true
    }

    /// Takes the peer's answer to the oldest unanswered batch. Returns false
    /// if the link must be marked dead.
    fn answered(&mut self, link: &Link, answer: Result<Option<RelayResponse>, Status>) -> bool {
        let resp = match answer {
            Ok(Some(resp)) => resp,
            Ok(None) => {
                tracing::warn!(
                    peer = link.id,
                    "peer ended the relay stream; peer marked dead"
                );
                return false;
            }
            Err(status) => {
                tracing::warn!(peer = link.id, %status, "relay failed; peer marked dead");
                return false;
            }
        };
        if resp.resync {
            tracing::info!(peer = link.id, "peer asks us to resync");
            return false;
        }
        link.touch();
        link.advance(resp.cutoff);
        let Some((last, sent)) = self.unanswered.pop_front() else {
            tracing::warn!(
                peer = link.id,
                "answer to a batch never sent; peer marked dead"
            );
            return false;
        };
        if resp.cutoff < last {
            tracing::warn!(
                peer = link.id,
                cutoff = resp.cutoff,
                last,
                "peer acknowledged less than sent"
            );
            return false;
        }
        if let Some(reading) = super::clocks::reading(resp.clock_ms, sent) {
            link.record_clock(reading);
        }
        let took = sent.elapsed();
        crate::metrics::record_relay_answered(link.id, took);
        tracing::trace!(peer = link.id, ?took, "relayed");
        true
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
    let sent = Instant::now();
    match tokio::time::timeout(cluster.settings.relay_timeout, peer.heartbeat(request)).await {
        Ok(Ok(resp)) => {
            link.touch();
            let resp = resp.into_inner();
            if let Some(reading) = super::clocks::reading(resp.clock_ms, sent) {
                link.record_clock(reading);
            }
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
