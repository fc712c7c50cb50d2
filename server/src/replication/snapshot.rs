//! Bootstrapping an empty replica from a copy of a peer's data.
//!
//! A brand-new replica could catch up by replaying the whole log through the
//! state machine, entry by entry, as any lagging replica does. For a large
//! cluster that is slow (every entry is a handful of reads and writes), and
//! pointless: the state is a deterministic function of the log, so a
//! consistent copy of a peer's log *and* state is exactly what replay would
//! produce. The peer cuts the copy from one storage snapshot (so log, state
//! and cutoffs agree) and streams it in key order; the new replica writes it
//! straight into tables (fjall ingestion: no journal, no memtables), checks
//! the cutoffs, and then introduces itself as usual, which fills in whatever
//! was written after the copy was cut.
//!
//! Only a replica whose log and state are both empty asks for a copy; if
//! the copy fails midway it is thrown away and the replica falls back to
//! replay.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::backlog;
use super::client::Dialer;
use super::cluster::Cluster;
use crate::proto::replication::{
    KeyValue, ReplicaInfo, SnapshotChunk, SnapshotPart, SnapshotRequest,
};
use crate::state::StorageError;
use crate::storage::{Part, Store};

/// Most encoded bytes of pairs per chunk.
const CHUNK_BYTES: usize = 4 * 1024 * 1024;
/// Longest wait for the next chunk before the peer counts as hung.
const CHUNK_TIMEOUT: Duration = Duration::from_secs(30);

fn wire(part: Part) -> SnapshotPart {
    match part {
        Part::Log => SnapshotPart::Log,
        Part::State => SnapshotPart::State,
    }
}

/// The responder's side: streams a consistent copy of this replica's log
/// and state.
pub fn serve(
    cluster: &Arc<Cluster>,
    request: SnapshotRequest,
) -> Result<ReceiverStream<Result<SnapshotChunk, Status>>, Status> {
    let from = super::service::sender(cluster, request.from)?;
    // The same identity checks as an introduction: a replica reusing
    // another's id gets nothing.
    cluster
        .add_peer(from.clone())
        .map_err(|e| Status::failed_precondition(e.to_string()))?
        .ok_or_else(|| Status::failed_precondition("that address is this replica itself"))?;
    tracing::info!(peer = from.id, "sending a snapshot");
    let export = cluster.store.export();
    let (tx, rx) = mpsc::channel(4);
    tokio::task::spawn_blocking(move || {
        let send = |chunk: Result<SnapshotChunk, StorageError>| {
            tx.blocking_send(chunk.map_err(|e| Status::internal(e.to_string())))
                .is_ok()
        };
        let header = export.cutoffs().map(|c| SnapshotChunk {
            cutoffs: backlog::to_proto(&c),
            part: SnapshotPart::Unspecified as i32,
            pairs: Vec::new(),
        });
        if !send(header) {
            return;
        }
        for part in [Part::Log, Part::State] {
            let mut pairs = Vec::new();
            let mut bytes = 0;
            for pair in export.pairs(part) {
                let (key, value) = match pair {
                    Ok(p) => p,
                    Err(e) => {
                        send(Err(e));
                        return;
                    }
                };
                bytes += key.len() + value.len() + 8;
                pairs.push(KeyValue { key, value });
                if bytes >= CHUNK_BYTES {
                    let chunk = SnapshotChunk {
                        cutoffs: Vec::new(),
                        part: wire(part) as i32,
                        pairs: std::mem::take(&mut pairs),
                    };
                    bytes = 0;
                    if !send(Ok(chunk)) {
                        return;
                    }
                }
            }
            if !pairs.is_empty() {
                let chunk = SnapshotChunk {
                    cutoffs: Vec::new(),
                    part: wire(part) as i32,
                    pairs,
                };
                if !send(Ok(chunk)) {
                    return;
                }
            }
        }
    });
    Ok(ReceiverStream::new(rx))
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("peer unreachable or refused: {0}")]
    Call(String),
    #[error("peer did not answer in time")]
    Timeout,
    #[error("bad snapshot: {0}")]
    Protocol(String),
    /// The peer is as new as we are (a cluster starting together): there
    /// is nothing to copy, and start-up sync does the rest.
    #[error("the peer holds nothing yet")]
    PeerEmpty,
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// The new replica's side: if `store` is empty, installs a copy from the
/// first of `peers` (replication addresses) that sends one. Returns whether
/// a copy was installed.
pub async fn bootstrap(
    store: &Arc<Store>,
    dialer: &Dialer,
    me: &ReplicaInfo,
    peers: &[String],
) -> Result<bool, StorageError> {
    discard_interrupted_install(store)?;
    if peers.is_empty() || !store.is_empty()? {
        return Ok(false);
    }
    store.set_installing(true)?;
    for addr in peers {
        let started = Instant::now();
        match fetch(store, dialer, me, addr).await {
            Ok((log, state)) => {
                store.set_installing(false)?;
                tracing::info!(
                    %addr, log_entries = log, state_records = state, took = ?started.elapsed(),
                    "installed a snapshot"
                );
                return Ok(true);
            }
            Err(SnapshotError::PeerEmpty) => {
                tracing::info!(%addr, "no snapshot: this peer holds nothing yet");
                store.clear_data()?;
            }
            Err(e) => {
                tracing::warn!(%addr, error = %e, "no snapshot from this peer");
                store.clear_data()?;
            }
        }
    }
    store.set_installing(false)?;
    tracing::info!("no peer sent a snapshot: catching up by replaying the log");
    Ok(false)
}

/// Empties a store whose snapshot install was cut short (the process
/// stopped between, or during, the imports of the log and the state):
/// its log would claim entries whose state is missing, and nothing else
/// would notice, since its cutoffs say it holds them. Returns whether
/// there was one. The replica then starts as the empty one it was.
fn discard_interrupted_install(store: &Store) -> Result<bool, StorageError> {
    if !store.installing()? {
        return Ok(false);
    }
    tracing::warn!(
        "the last start stopped while installing a snapshot: discarding the partial copy"
    );
    store.clear_data()?;
    store.set_installing(false)?;
    Ok(true)
}

type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

async fn fetch(
    store: &Arc<Store>,
    dialer: &Dialer,
    me: &ReplicaInfo,
    addr: &str,
) -> Result<(u64, u64), SnapshotError> {
    let mut client = dialer
        .client(addr)
        .map_err(|e| SnapshotError::Call(e.to_string()))?;
    let request = SnapshotRequest {
        from: Some(me.clone()),
    };
    let mut stream = tokio::time::timeout(CHUNK_TIMEOUT, client.snapshot(request))
        .await
        .map_err(|_| SnapshotError::Timeout)?
        .map_err(|s| SnapshotError::Call(s.message().to_string()))?
        .into_inner();
    let next = async |stream: &mut tonic::Streaming<SnapshotChunk>| {
        tokio::time::timeout(CHUNK_TIMEOUT, stream.message())
            .await
            .map_err(|_| SnapshotError::Timeout)?
            .map_err(|s| SnapshotError::Call(s.message().to_string()))
    };
    let header = next(&mut stream)
        .await?
        .ok_or_else(|| SnapshotError::Protocol("empty stream".into()))?;
    let cutoffs = backlog::from_proto(&header.cutoffs);
    if cutoffs.is_empty() {
        return Err(SnapshotError::PeerEmpty);
    }

    // Each part goes to its own import on a blocking thread, fed chunk by
    // chunk; the log comes first, then the state.
    let mut counts = [0u64; 2];
    let mut pending: Option<mpsc::Sender<Pairs>> = None;
    let mut importing = None;
    let mut current: Option<Part> = None;
    let finish = async |tx: Option<mpsc::Sender<Pairs>>,
                        task: Option<tokio::task::JoinHandle<Result<u64, StorageError>>>|
           -> Result<u64, SnapshotError> {
        drop(tx);
        match task {
            Some(t) => t
                .await
                .map_err(|e| SnapshotError::Protocol(e.to_string()))?
                .map_err(SnapshotError::Storage),
            None => Ok(0),
        }
    };
    while let Some(chunk) = next(&mut stream).await? {
        let part = match SnapshotPart::try_from(chunk.part) {
            Ok(SnapshotPart::Log) => Part::Log,
            Ok(SnapshotPart::State) => Part::State,
            _ => return Err(SnapshotError::Protocol("chunk of no known part".into())),
        };
        if current != Some(part) {
            if current == Some(Part::State) {
                return Err(SnapshotError::Protocol(
                    "log pairs after state pairs".into(),
                ));
            }
            if let Some(done) = current {
                counts[done as usize] = finish(pending.take(), importing.take()).await?;
            }
            let (tx, mut rx) = mpsc::channel::<Pairs>(4);
            let store = store.clone();
            importing = Some(tokio::task::spawn_blocking(move || {
                let pairs = std::iter::from_fn(move || rx.blocking_recv())
                    .flatten()
                    .map(Ok);
                store.import(part, pairs)
            }));
            pending = Some(tx);
            current = Some(part);
        }
        let pairs: Pairs = chunk
            .pairs
            .into_iter()
            .map(|kv| (kv.key, kv.value))
            .collect();
        let sent = match &pending {
            Some(tx) => tx.send(pairs).await.is_ok(),
            None => false,
        };
        if !sent {
            // The import stopped early: its error says why.
            finish(pending.take(), importing.take()).await?;
            return Err(SnapshotError::Protocol("import stopped".into()));
        }
    }
    if let Some(done) = current {
        counts[done as usize] = finish(pending.take(), importing.take()).await?;
    }
    store.persist()?;
    let installed = store.cutoffs()?;
    if installed != cutoffs {
        return Err(SnapshotError::Protocol(format!(
            "installed log has cutoffs {installed:?}, the snapshot promised {cutoffs:?}"
        )));
    }
    Ok((counts[0], counts[1]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_install_cut_short_between_log_and_state_is_discarded_on_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            store.set_installing(true).unwrap();
            // The log part arrived; the process stopped before the state's.
            let log = vec![Ok((
                vec![0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1],
                b"e".to_vec(),
            ))];
            store.import(Part::Log, log).unwrap();
            store.persist().unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert!(!store.is_empty().unwrap());
        assert!(discard_interrupted_install(&store).unwrap());
        assert!(store.is_empty().unwrap(), "the partial copy is gone");
        assert!(!store.installing().unwrap());
        // A finished install (or none) is left alone.
        assert!(!discard_interrupted_install(&store).unwrap());
    }
}
