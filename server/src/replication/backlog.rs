//! Streaming a backlog: every entry one replica holds past another's
//! cutoffs, read from the log in bounded chunks so that a backlog of any
//! size stays far below gRPC's message limit and memory stays flat.

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::entry::Entry;
use crate::state::StorageError;
use crate::storage::{Cutoffs, Store};

/// Most entries in one chunk.
pub const CHUNK_ENTRIES: usize = 4000;
/// Most encoded bytes in one chunk (a chunk may exceed it by one entry).
pub const CHUNK_BYTES: usize = 4 * 1024 * 1024;

/// Reads, on a blocking thread, the entries past `have` up to `upto`, origin
/// by origin in sequence order, and sends them in chunks. The receiver ends
/// after the last chunk; a storage error is sent and ends it too.
pub fn spawn(
    store: Arc<Store>,
    have: Cutoffs,
    upto: Cutoffs,
) -> mpsc::Receiver<Result<Vec<Entry>, StorageError>> {
    let (tx, rx) = mpsc::channel(4);
    tokio::task::spawn_blocking(move || {
        for (&origin, &last) in &upto {
            let mut after = have.get(&origin).copied().unwrap_or(0);
            while after < last {
                let mut chunk = match store.entries_after(origin, after, last, CHUNK_ENTRIES) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = tx.blocking_send(Err(e));
                        return;
                    }
                };
                if chunk.is_empty() {
                    let _ = tx.blocking_send(Err(StorageError::Corrupt(format!(
                        "log of origin {origin} has a hole after {after}"
                    ))));
                    return;
                }
                let mut bytes = 0;
                if let Some(cut) = chunk.iter().position(|e| {
                    bytes += e.body_len();
                    bytes > CHUNK_BYTES
                }) {
                    chunk.truncate(cut + 1);
                }
                after = chunk.last().map_or(after, |e| e.seq);
                if tx.blocking_send(Ok(chunk)).is_err() {
                    return; // the other side went away
                }
            }
        }
    });
    rx
}

/// `Cutoffs` from their wire form.
pub fn from_proto(cutoffs: &[crate::proto::replication::Cutoff]) -> Cutoffs {
    cutoffs.iter().map(|c| (c.origin, c.seq)).collect()
}

/// `Cutoffs` in their wire form.
pub fn to_proto(cutoffs: &Cutoffs) -> Vec<crate::proto::replication::Cutoff> {
    cutoffs
        .iter()
        .map(|(&origin, &seq)| crate::proto::replication::Cutoff { origin, seq })
        .collect()
}
