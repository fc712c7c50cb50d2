//! Introducing this replica to a peer (the requester's side).
//!
//! ```text
//!  requester R                                   responder P
//!  ── Introduce{R's info, R's cutoffs} ─────────▶  P marks R "syncing",
//!                                                 records R in its network
//!  ◀──────── Hello{P's info, network, P's cutoffs}
//!  ◀──────── chunks: every entry P holds past R's cutoffs
//!  (R applies each chunk durably as it arrives)
//!  ── Push{R's cutoffs now} + chunks: every entry ▶ P applies them durably,
//!     R holds past P's cutoffs                    marks R live (relays resume
//!                                                 from R's cutoff for P)
//!  ◀──────── P's cutoffs after the push
//!  R marks P live (relays resume from P's cutoff for R)
//! ```
//!
//! Both sides end with each other's entries up to the moment of the
//! introduction, and each resumes relaying exactly where the other's cutoff
//! says; anything written meanwhile is filled from the log by the links.
//! Applying is idempotent (entries already held are skipped), so repeated or
//! crossing introductions are harmless.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio_stream::wrappers::ReceiverStream;

use super::backlog;
use super::cluster::{Cluster, ClusterError};
use crate::entry::Entry;
use crate::proto::replication::{
    Cutoff, EntryChunk, IntroduceRequest, PushRequest, ReplicaInfo, introduce_response,
};

/// Backlog chunks handed to the writer before waiting for the oldest.
pub const MAX_CHUNKS_IN_FLIGHT: usize = 2;

/// Longest wait for the next backlog chunk before the peer counts as hung.
const CHUNK_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum IntroError {
    #[error("peer unreachable: {0}")]
    Unreachable(String),
    #[error("peer refused: {0}")]
    Refused(tonic::Status),
    #[error("peer did not answer in time")]
    Timeout,
    #[error("protocol violation: {0}")]
    Protocol(String),
    #[error("expected replica {expected} at that address, found replica {found}")]
    WrongReplica { expected: u32, found: u32 },
    #[error("cannot apply the backlog: {0}")]
    Apply(String),
    #[error("{0}")]
    Incompatible(String),
    /// The peer says this replica has been retired from the cluster.
    #[error("this replica has been retired from the cluster")]
    Retired,
    /// The peer answering is one this replica knows as retired.
    #[error("replica {0} has been retired from the cluster")]
    PeerRetired(u32),
    /// The peer holds more of this replica's own writes than its data does
    /// (`crate::origin::rolled_back`): it must not serve.
    #[error("{0}")]
    RolledBack(String),
    #[error(transparent)]
    Clash(#[from] ClusterError),
}

fn call_error(s: tonic::Status) -> IntroError {
    match s.code() {
        tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled => {
            IntroError::Unreachable(s.message().to_string())
        }
        tonic::Code::DeadlineExceeded => IntroError::Timeout,
        _ => IntroError::Refused(s),
    }
}

/// Introduces this replica to the peer at `addr` (expected to be replica
/// `expect`, if known). On success both sides hold each other's entries
/// and consider each other live; returns the peer's info.
pub async fn introduce(
    cluster: &Arc<Cluster>,
    addr: &str,
    expect: Option<u32>,
) -> Result<ReplicaInfo, IntroError> {
    let mut client = cluster.client(addr)?;
    let deadline = cluster.settings.relay_timeout;
    let request = IntroduceRequest {
        from: Some(cluster.me.clone()),
        cutoffs: backlog::to_proto(&cluster.writer.cutoffs()),
    };
    let sent = std::time::Instant::now();
    let mut stream = tokio::time::timeout(deadline, client.introduce(request))
        .await
        .map_err(|_| IntroError::Timeout)?
        .map_err(|s| {
            if s.code() == tonic::Code::FailedPrecondition && s.message().contains("already used") {
                IntroError::Clash(ClusterError::IdClash {
                    id: cluster.me.id,
                    existing: "(see the peer's log)".into(),
                    addr: addr.to_string(),
                })
            } else if super::service::is_retired_refusal(&s) {
                IntroError::Retired
            } else {
                call_error(s)
            }
        })?
        .into_inner();
    let hello = match tokio::time::timeout(deadline, stream.message())
        .await
        .map_err(|_| IntroError::Timeout)?
        .map_err(call_error)?
        .and_then(|m| m.kind)
    {
        Some(introduce_response::Kind::Hello(h)) => h,
        _ => {
            return Err(IntroError::Protocol(
                "introduction did not start with Hello".into(),
            ));
        }
    };
    let responder = hello
        .responder
        .ok_or_else(|| IntroError::Protocol("Hello without responder".into()))?;
    if let Some(expected) = expect
        && responder.id != expected
    {
        return Err(IntroError::WrongReplica {
            expected,
            found: responder.id,
        });
    }
    super::service::same_log_format(&responder).map_err(IntroError::Incompatible)?;
    if cluster.is_retired(responder.id) {
        return Err(IntroError::PeerRetired(responder.id));
    }
    check_not_rolled_back(cluster, responder.id, &hello.cutoffs)?;
    for info in hello.network {
        if info.id != responder.id {
            cluster.add_peer(info)?;
        }
    }
    let link = cluster
        .add_peer(responder.clone())?
        .ok_or_else(|| IntroError::Protocol("a replica answered as this replica".into()))?;
    if let Some(reading) = super::clocks::reading(hello.clock_ms, sent) {
        link.record_clock(reading);
    }
    let period = link.introduction_syncing();
    let result = sync(cluster, &mut client, &mut stream, &hello.cutoffs).await;
    match result {
        Ok(peer_has) => {
            link.set_live(peer_has);
            Ok(responder)
        }
        Err(e) => {
            link.introduction_failed(period);
            Err(e)
        }
    }
}

/// Refuses to go on if `peer`'s cutoffs hold more of this replica's own
/// writes than its data does (`crate::origin::rolled_back`). Both sides of
/// an introduction ask: the requester of the responder's cutoffs, the
/// responder (`service.rs`) of the requester's.
pub(super) fn check_not_rolled_back(
    cluster: &Cluster,
    peer: u32,
    cutoffs: &[Cutoff],
) -> Result<(), IntroError> {
    let mine = cluster.origin();
    let held = cluster.writer.cutoffs().get(&mine).copied().unwrap_or(0);
    let starting = !cluster.serving.load(Ordering::Relaxed);
    let peer_holds = cutoffs.iter().map(|c| (c.origin, c.seq));
    match crate::origin::rolled_back(mine, held, starting, peer_holds) {
        None => Ok(()),
        Some((origin, seq)) => Err(IntroError::RolledBack(format!(
            "replica {peer} holds this replica's own writes up to origin {origin}, entry {seq}, \
             but this replica's data only goes to origin {mine}, entry {held}: its data directory \
             is older than its writes (put back from a backup or a disk snapshot while the \
             cluster ran on?). It must not serve: it could log entries at positions its peers \
             hold for others. Replace it with a replica under a new id and an empty data \
             directory (docs/replication.md, \"Backups\")"
        ))),
    }
}

/// Applies the responder's backlog, pushes ours; returns how much of our
/// log the responder now holds.
async fn sync(
    cluster: &Arc<Cluster>,
    client: &mut super::client::PeerClient,
    stream: &mut tonic::Streaming<crate::proto::replication::IntroduceResponse>,
    responder_cutoffs: &[crate::proto::replication::Cutoff],
) -> Result<u64, IntroError> {
    let mut received = 0usize;
    // Chunks queued at the writer and not yet applied: decoding the next
    // chunk overlaps with applying this one.
    let mut in_flight = std::collections::VecDeque::new();
    loop {
        let next = tokio::time::timeout(CHUNK_TIMEOUT, stream.message())
            .await
            .map_err(|_| IntroError::Timeout)?
            .map_err(call_error)?;
        let Some(message) = next else { break };
        let Some(introduce_response::Kind::Chunk(chunk)) = message.kind else {
            return Err(IntroError::Protocol("expected an entry chunk".into()));
        };
        let entries = decode_chunk(chunk)?;
        received += entries.len();
        let applied = cluster.writer.queue_remote(entries).await;
        in_flight.push_back(applied.map_err(|e| IntroError::Apply(e.to_string()))?);
        if in_flight.len() > MAX_CHUNKS_IN_FLIGHT
            && let Some(oldest) = in_flight.pop_front()
        {
            oldest.await.map_err(|e| IntroError::Apply(e.to_string()))?;
        }
    }
    for applied in in_flight {
        applied
            .await
            .map_err(|e| IntroError::Apply(e.to_string()))?;
    }

    let theirs = backlog::from_proto(responder_cutoffs);
    let mine = cluster.writer.cutoffs();
    let pushed = mine
        .iter()
        .map(|(o, s)| s.saturating_sub(theirs.get(o).copied().unwrap_or(0)))
        .sum::<u64>();
    let mut chunks = backlog::spawn(cluster.store.clone(), theirs, mine.clone());
    let first = PushRequest {
        from: Some(cluster.me.clone()),
        chunk: None,
        cutoffs: backlog::to_proto(&mine),
    };
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    let _ = tx.send(first).await;
    tokio::spawn(async move {
        while let Some(chunk) = chunks.recv().await {
            let Ok(entries) = chunk else { return }; // dropping tx ends the push short
            let msg = PushRequest {
                from: None,
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
    let response = client
        .push(ReceiverStream::new(rx))
        .await
        .map_err(call_error)?
        .into_inner();
    let after = backlog::from_proto(&response.cutoffs);
    let mine_now = mine.get(&cluster.origin()).copied().unwrap_or(0);
    let peer_has = after.get(&cluster.origin()).copied().unwrap_or(0);
    if peer_has < mine_now {
        return Err(IntroError::Protocol(format!(
            "peer holds our log up to {peer_has} after the push, expected {mine_now}"
        )));
    }
    tracing::debug!(received, pushed, "introduction synced");
    Ok(peer_has)
}

pub fn decode_chunk(chunk: EntryChunk) -> Result<Vec<Entry>, IntroError> {
    chunk
        .entries
        .into_iter()
        .map(|e| Entry::from_peer(e).map_err(|e| IntroError::Protocol(e.to_string())))
        .collect()
}
