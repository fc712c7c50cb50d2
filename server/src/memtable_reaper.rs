//! Frees flushed memtables on a thread of our own, not under fjall's lock.
//!
//! fjall keeps a history of tree versions; a flushed memtable lives on in
//! the old versions until fjall prunes them, which it does when a later
//! memtable is rotated -- while holding the keyspace's version lock, which
//! every read takes. Pruning drops the last reference to the flushed
//! memtable, and freeing an 8 MiB skiplist (tens of thousands of nodes)
//! takes ~15-30 ms on the machines we measure on: every read on the replica,
//! the writer's included, waited that long once per rotation (about every
//! second under load). The three replicas of a cluster apply the same
//! entries and rotate at the same moment, so with relay-or-fail every send
//! in flight waited -- the largest part of our p99 at 16 and 64 senders.
//! (Found by timing the writer's batches against fjall's debug log: the
//! writer sat blocked, 0 ms on CPU, from "Rotating keyspace" until the
//! rotation returned; docs/performance.md, "Where the tail comes from".)
//!
//! The reaper holds a reference to every memtable it has seen active and
//! lets go of one only when it holds the last reference, so the free happens
//! here and fjall's pruning merely decrements a count. It holds nothing
//! fjall still uses longer than one tick, so memory is not retained.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

use fjall::{AbstractTree, Keyspace};

/// How often the reaper looks at the active memtables. A memtable created
/// and rotated within one tick escapes it (and is freed by fjall, as
/// before): at 8 MiB per memtable that takes > 100 MiB/s of writes.
const TICK: Duration = Duration::from_millis(50);

/// The reaper thread's name.
pub const THREAD_NAME: &str = "memtable-reaper";

/// The running reaper; stops (and joins its thread) when dropped.
pub struct MemtableReaper {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    held: Arc<AtomicUsize>,
}

impl MemtableReaper {
    pub fn start(keyspaces: Vec<Keyspace>) -> std::io::Result<Self> {
        let (stop, stopped) = mpsc::channel::<()>();
        let held = Arc::new(AtomicUsize::new(0));
        let count = held.clone();
        let thread = std::thread::Builder::new()
            .name(THREAD_NAME.into())
            .spawn(move || run(keyspaces, stopped, &count))?;
        Ok(Self {
            stop: Some(stop),
            thread: Some(thread),
            held,
        })
    }

    /// Memtables held right now (active ones, and flushed ones fjall has
    /// not pruned yet).
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }
}

impl Drop for MemtableReaper {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(keyspaces: Vec<Keyspace>, stopped: mpsc::Receiver<()>, count: &AtomicUsize) {
    if let Err(e) = crate::background_priority::lower_current_thread() {
        tracing::debug!(error = %e, "memtable reaper stays at normal CPU priority");
    }
    let mut held = Vec::new();
    loop {
        match stopped.recv_timeout(TICK) {
            Err(RecvTimeoutError::Timeout) => {}
            // Stop asked (sender dropped): what we hold is freed with us.
            _ => return,
        }
        for ks in &keyspaces {
            let active = ks.tree.active_memtable();
            if !held.iter().any(|m| Arc::ptr_eq(m, &active)) {
                held.push(active);
            }
        }
        // Only we hold it: fjall has flushed it and pruned every version
        // that named it. Free it here.
        held.retain(|m| Arc::strong_count(m) > 1);
        count.store(held.len(), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fjall::{Database, KeyspaceCreateOptions};

    /// Through many rotations and flushes, the reaper lets go of every
    /// memtable fjall is done with: it never accumulates them.
    #[test]
    fn holds_only_what_fjall_still_uses() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::builder(dir.path()).open().unwrap();
        let ks = db
            .keyspace("t", || {
                KeyspaceCreateOptions::default().max_memtable_size(64 * 1024)
            })
            .unwrap();
        let reaper = MemtableReaper::start(vec![ks.clone()]).unwrap();
        let mut most = 0;
        for round in 0..40u32 {
            for i in 0..200u32 {
                let key = [round.to_be_bytes(), i.to_be_bytes()].concat();
                ks.insert(key, vec![7u8; 512]).unwrap();
            }
            ks.rotate_memtable_and_wait().unwrap();
            std::thread::sleep(TICK * 2);
            most = most.max(reaper.held());
        }
        assert!(most >= 1, "the reaper saw the active memtables");
        assert!(
            most <= 4,
            "the reaper held {most} memtables at once over 40 flushes: it is not letting go"
        );
        drop(reaper);
        assert_eq!(
            ks.get([0u32.to_be_bytes(), 0u32.to_be_bytes()].concat())
                .unwrap()
                .as_deref(),
            Some(&[7u8; 512][..])
        );
    }
}
