//! The single writer: the only code that changes the log and the state.
//!
//! Every mutation -- a client's command accepted here, or entries relayed or
//! synced from peers -- goes through one queue into one thread, which
//! serializes them. That gives the log-replay core its guarantees cheaply:
//!
//! * each origin's entries are applied in sequence order, each exactly once
//!   (the writer keeps the per-origin cutoffs and skips what it already has);
//! * a command is checked against the state that includes every command
//!   before it, so "username is free" cannot race;
//! * **group commit**: the thread takes every job waiting in the queue (up to
//!   [`MAX_BATCH`]), checks and applies them in memory, and writes them all
//!   in one atomic batch with a single fdatasync. Under load, concurrent
//!   writers share an fsync instead of paying one each; with one writer the
//!   batch is just that write.
//!
//! A batch's local entries go to the acknowledgement stage (the replication
//! relay) as the batch's commit *starts*, so relaying them to the peers
//! overlaps this replica's fdatasync; a client is answered once both are
//! done -- its entry durable here and on every live peer. (A crash during
//! the fdatasync can thus leave entries on a peer that this replica's log
//! lacks; none was acknowledged, and `crate::origin` keeps their sequence
//! numbers from being given again.) Remote jobs are answered once the
//! commit is done.
//!
//! **Erasure** also happens here, in the same atomic batch: when applying an
//! entry says that a logged entry must lose its private content (a deleted
//! message's body, a deleted account's password hash; see `state::apply`),
//! the writer rewrites that entry -- in the batch if it is there, else as a
//! rewrite of the stored one -- before committing.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry as Slot;
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot, watch};

use crate::cache::ReadCache;
use crate::clock_agreement::ClockAgreement;
use crate::disk_watchdog::BatchClock;
use crate::entry::{Entry, Erasure};
use crate::events::EventHub;
use crate::hlc::{Hlc, wall_clock_ms};
use crate::ids::RequestId;
use crate::replication::relay::Settle;
use crate::state::query::{self, Receipt};
use crate::state::{self, Checked, Command, CommandError, KvRead, Overlay, StorageError};
use crate::storage::{Cutoffs, Store};

/// Most jobs in one group commit.
pub const MAX_BATCH: usize = 1024;
/// Jobs waiting for the writer before submitters wait too (backpressure).
pub const QUEUE: usize = 8192;

/// What became of a client's command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Logged and applied as this entry, leaving this behind.
    Applied(Entry, Box<Receipt>),
    /// Already reflected in the state (a retry): nothing logged.
    AlreadyDone,
}

/// What became of entries from a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteOutcome {
    /// How many were new here (the rest were already held).
    pub applied: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Command(#[from] CommandError),
    /// Entries from a peer skip sequence numbers: the sender must resync.
    #[error("entries of origin {origin} jump from {held} to {got}")]
    Gap { origin: u32, held: u64, got: u64 },
    #[error("this replica cannot write: {0}")]
    Unavailable(String),
    /// This replica's clock is off, or was just stepped
    /// (`crate::clock_agreement`): nothing may be stamped with it.
    #[error("{0}")]
    ClockOff(String),
}

/// Why the writer stopped committing: from then on it refuses every job, and
/// the replica stops (`crate::server`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// A commit failed: the disk is full, or an I/O error. fjall refuses
    /// every write after one (it cannot know what reached the disk).
    #[error("the store refused a write ({0})")]
    Refused(String),
    /// A batch has not finished in this long: the disk hangs
    /// (`crate::disk_watchdog`).
    #[error("a write to the disk has not finished in {} ms: the disk hangs", .0.as_millis())]
    Hung(std::time::Duration),
}

impl From<StorageError> for WriteError {
    fn from(e: StorageError) -> Self {
        WriteError::Unavailable(e.to_string())
    }
}

enum Job {
    Local {
        request_id: RequestId,
        command: Command,
        reply: oneshot::Sender<Result<Outcome, WriteError>>,
    },
    Remote {
        entries: Vec<Entry>,
        reply: oneshot::Sender<Result<RemoteOutcome, WriteError>>,
    },
    /// The last job: mark the stop clean and refuse local commands from now.
    Close { reply: oneshot::Sender<bool> },
}

/// A batch's local part, handed to the acknowledgement stage as its commit
/// starts.
pub struct ProposedBatch {
    /// Entries accepted by this replica in the batch, in sequence order.
    pub local: Arc<Vec<Entry>>,
    /// The dispatcher's share of the wait of the batch's clients: it takes a
    /// share for each link it queues the batch on, then drops this one.
    pub dispatch: Settle,
}

pub struct LocalReply {
    pub(crate) tx: oneshot::Sender<Result<Outcome, WriteError>>,
    pub(crate) result: Result<Outcome, WriteError>,
}

impl LocalReply {
    pub fn send(self) {
        // The client may have gone away; its write stands regardless.
        let _ = self.tx.send(self.result);
    }

    /// Answers with an error instead: the batch could not be committed.
    pub fn fail(self, why: String) {
        let _ = self.tx.send(Err(WriteError::Unavailable(why)));
    }
}

/// Cloneable handle to the writer thread.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Job>,
    cutoffs: Arc<Mutex<Cutoffs>>,
    origin: u32,
    /// Shared with the writer thread, so the watchdog can fail it too.
    failure: Arc<watch::Sender<Option<Failure>>>,
    clock: Arc<BatchClock>,
}

impl Writer {
    /// Starts the writer thread, logging local commands under `origin` (see
    /// `crate::origin`). Local batches go to `acks` as their commit starts.
    pub fn start(
        store: Arc<Store>,
        origin: u32,
        events: EventHub,
        acks: mpsc::UnboundedSender<ProposedBatch>,
        clock_agreement: Arc<ClockAgreement>,
    ) -> Result<Self, StorageError> {
        let cutoffs = store.cutoffs()?;
        let hlc = Hlc::new(store.max_hlc()?);
        let shared = Arc::new(Mutex::new(cutoffs.clone()));
        let (tx, rx) = mpsc::channel(QUEUE);
        let failure = Arc::new(watch::Sender::new(None));
        let clock = Arc::new(BatchClock::default());
        let thread = WriterThread {
            store,
            origin,
            events,
            acks,
            hlc,
            cutoffs,
            shared: shared.clone(),
            failure: failure.clone(),
            clock: clock.clone(),
            clock_agreement,
            closed: false,
        };
        std::thread::Builder::new()
            .name("writer".into())
            .spawn(move || thread.run(rx))
            .map_err(|e| StorageError::Io(format!("cannot start writer thread: {e}")))?;
        Ok(Self {
            tx,
            cutoffs: shared,
            origin,
            failure,
            clock,
        })
    }

    /// Checks, logs, applies and durably commits a client's command; returns
    /// once the acknowledgement stage has released it.
    pub async fn submit(
        &self,
        request_id: RequestId,
        command: Command,
    ) -> Result<Outcome, WriteError> {
        let (reply, rx) = oneshot::channel();
        self.send(Job::Local {
            request_id,
            command,
            reply,
        })
        .await?;
        rx.await.map_err(|_| stopped())?
    }

    /// Queues entries from a peer (each origin's in sequence order) and
    /// returns at once with a future of the outcome: they are applied and
    /// committed durably, entries already held skipped. Queued jobs are
    /// applied in queue order, so a sync can decode its next chunk, and a
    /// relay stream read its next batch, while the writer applies this one.
    pub async fn queue_remote(
        &self,
        entries: Vec<Entry>,
    ) -> Result<impl Future<Output = Result<RemoteOutcome, WriteError>> + use<>, WriteError> {
        let (reply, rx) = oneshot::channel();
        self.send(Job::Remote { entries, reply }).await?;
        Ok(async move { rx.await.map_err(|_| stopped())? })
    }

    /// Stops taking local commands and, unless a commit has failed, records
    /// a clean stop: every local batch proposed before is committed by then
    /// (the writer runs its jobs in order), so none of this replica's
    /// entries can be on a peer and not here. Returns whether the stop was
    /// recorded.
    pub async fn close(&self) -> bool {
        let (reply, rx) = oneshot::channel();
        if self.send(Job::Close { reply }).await.is_err() {
            return false;
        }
        rx.await.unwrap_or(false)
    }

    /// Resolves, with the reason, once a commit has failed or the disk hangs.
    /// From then on the writer refuses every job (fjall refuses further
    /// writes after an I/O error), so the replica can neither take writes
    /// nor store relays: it should stop rather than serve reads that fall
    /// further behind.
    pub async fn failed(&self) -> Failure {
        let mut rx = self.failure.subscribe();
        let why = rx
            .wait_for(|f| f.is_some())
            .await
            .ok()
            .and_then(|f| f.clone());
        match why {
            Some(why) => why,
            // The writer thread is gone without a failure: never while the
            // server runs.
            None => std::future::pending().await,
        }
    }

    /// Whether a commit has failed (see [`Writer::failed`]).
    pub fn has_failed(&self) -> bool {
        self.failure.borrow().is_some()
    }

    /// Records a failure found outside the writer thread (the disk hangs:
    /// `crate::disk_watchdog`), unless one is recorded already. Jobs are
    /// refused from now on, by this handle at once and by the thread if it
    /// ever gets to them.
    pub fn declare_failed(&self, failure: Failure) {
        declare(&self.failure, failure);
    }

    /// When the writer's running batch started (`crate::disk_watchdog`).
    pub fn clock(&self) -> &BatchClock {
        &self.clock
    }

    /// The origin local commands are logged under.
    pub fn origin(&self) -> u32 {
        self.origin
    }

    /// The per-origin cutoffs as of the last commit.
    pub fn cutoffs(&self) -> Cutoffs {
        self.cutoffs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    async fn send(&self, job: Job) -> Result<(), WriteError> {
        // A writer stuck in a hung disk would never take the job.
        if let Some(failure) = self.failure.borrow().clone() {
            return Err(WriteError::Unavailable(failure.to_string()));
        }
        self.tx.send(job).await.map_err(|_| stopped())
    }
}

/// Records `failure` unless one is recorded already: the first is the cause.
fn declare(fail: &watch::Sender<Option<Failure>>, failure: Failure) {
    fail.send_if_modified(|f| {
        if f.is_some() {
            return false;
        }
        tracing::error!(%failure, "refusing further writes");
        *f = Some(failure);
        true
    });
}

fn stopped() -> WriteError {
    WriteError::Unavailable("the replica is shutting down".into())
}

struct WriterThread {
    store: Arc<Store>,
    origin: u32,
    events: EventHub,
    acks: mpsc::UnboundedSender<ProposedBatch>,
    hlc: Hlc,
    cutoffs: Cutoffs,
    shared: Arc<Mutex<Cutoffs>>,
    /// Set once a commit failed, with why: fjall refuses further writes
    /// after an I/O error, and so do we, rather than guess what reached the
    /// disk. Watched by `Writer::failed`; also set by the disk watchdog.
    failure: Arc<watch::Sender<Option<Failure>>>,
    /// Marks each batch's start and end for the disk watchdog.
    clock: Arc<BatchClock>,
    /// Whether this replica's wall clock may stamp entries: checked again
    /// at the stamp, since the API's check of it was made a little earlier.
    clock_agreement: Arc<ClockAgreement>,
    /// Set by [`Job::Close`]: local commands are refused from then on.
    closed: bool,
}

enum Answer {
    Local(
        oneshot::Sender<Result<Outcome, WriteError>>,
        Result<Outcome, WriteError>,
    ),
    Remote(
        oneshot::Sender<Result<RemoteOutcome, WriteError>>,
        Result<RemoteOutcome, WriteError>,
    ),
}

impl WriterThread {
    fn run(mut self, mut rx: mpsc::Receiver<Job>) {
        let cache = ReadCache::default();
        while let Some(first) = rx.blocking_recv() {
            let mut jobs = vec![first];
            while jobs.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
            self.clock.start();
            self.batch(jobs, &cache);
            self.clock.end();
        }
        tracing::debug!("writer stopped");
    }

    fn batch(&mut self, jobs: Vec<Job>, cache: &ReadCache) {
        if let Some(failure) = self.failure.borrow().clone() {
            let err = WriteError::Unavailable(failure.to_string());
            for job in jobs {
                match job {
                    Job::Local { reply, .. } => drop(reply.send(Err(err.clone()))),
                    Job::Remote { reply, .. } => drop(reply.send(Err(err.clone()))),
                    Job::Close { reply } => {
                        let _ = reply.send(false);
                    }
                }
            }
            return;
        }
        let before = (self.cutoffs.clone(), self.hlc.clone());
        let base = cache.over(self.store.reader());
        let mut overlay = Overlay::new(&base);
        let mut entries = Vec::new();
        // Positions in `entries` of the entries accepted here.
        let mut local_at = Vec::new();
        let mut effects = state::Effects::default();
        let mut answers = Vec::with_capacity(jobs.len());
        let mut local = Vec::new();
        let mut storage_error: Option<String> = None;
        let mut closing = Vec::new();
        for job in jobs {
            if let Some(why) = &storage_error {
                let err = WriteError::Unavailable(why.clone());
                match job {
                    Job::Local { reply, .. } => answers.push(Answer::Local(reply, Err(err))),
                    Job::Remote { reply, .. } => answers.push(Answer::Remote(reply, Err(err))),
                    Job::Close { reply } => closing.push(reply),
                }
                continue;
            }
            match job {
                Job::Local { reply, .. } if self.closed => {
                    answers.push(Answer::Local(reply, Err(stopped())));
                }
                Job::Local {
                    request_id,
                    command,
                    reply,
                } => {
                    let result = self.local(&mut overlay, request_id, &command, &mut effects);
                    if let Ok(Outcome::Applied(e, _)) = &result {
                        local_at.push(entries.len());
                        entries.push(e.clone());
                    }
                    if let Err(WriteError::Unavailable(why)) = &result {
                        storage_error = Some(why.clone());
                    }
                    answers.push(Answer::Local(reply, result));
                }
                Job::Remote {
                    entries: incoming,
                    reply,
                } => {
                    let result = self.remote(&mut overlay, incoming, &mut entries, &mut effects);
                    if let Err(WriteError::Unavailable(why)) = &result {
                        storage_error = Some(why.clone());
                    }
                    answers.push(Answer::Remote(reply, result));
                }
                // Local commands later in this batch are still committed
                // before the stop is recorded; those of later batches are
                // refused.
                Job::Close { reply } => closing.push(reply),
            }
        }
        // Local commands of later batches are refused, whether or not this
        // one commits (a failed one leaves the stop unrecorded).
        self.closed |= !closing.is_empty();
        let state::Effects { changes, erasures } = effects;
        if storage_error.is_none() {
            match erase(&self.store, &erasures, &mut entries) {
                Ok(rewrites) => {
                    // Relayed as logged here: peers never receive content
                    // this replica has already erased.
                    local = local_at.iter().map(|&i| entries[i].clone()).collect();
                    entries.extend(rewrites);
                }
                Err(e) => storage_error = Some(e.to_string()),
            }
        }
        // A storage error mid-batch leaves the overlay half-applied: commit
        // nothing, and fail every job of the batch.
        if let Some(why) = storage_error {
            (self.cutoffs, self.hlc) = before;
            for answer in answers {
                let err = WriteError::Unavailable(why.clone());
                match answer {
                    Answer::Local(tx, _) => drop(tx.send(Err(err))),
                    Answer::Remote(tx, _) => drop(tx.send(Err(err))),
                }
            }
            return;
        }
        let mut replies = Vec::new();
        let mut remote = Vec::new();
        for answer in answers {
            match answer {
                Answer::Local(tx, result) => replies.push(LocalReply { tx, result }),
                Answer::Remote(tx, result) => remote.push((tx, result)),
            }
        }
        // The local entries go to the acknowledgement stage *before* the
        // commit, so relaying them overlaps this replica's fdatasync; the
        // clients are answered once both are done (`relay::Settle`).
        let mine = if replies.is_empty() && local.is_empty() {
            None
        } else {
            let (mine, dispatch) = Settle::pair(replies);
            let batch = ProposedBatch {
                local: Arc::new(local),
                dispatch,
            };
            // No acknowledgement stage (shutting down): the batch waits for
            // the local commit alone.
            let _ = self.acks.send(batch);
            Some(mine)
        };
        let writes = overlay.into_writes();
        cache.update(&writes);
        // A batch of retries and entries already held writes nothing (and
        // fjall skips it): not a commit worth counting.
        let writes_something = !(entries.is_empty() && writes.is_empty());
        let start = std::time::Instant::now();
        let committed = self.store.commit(&entries, writes);
        if writes_something {
            crate::metrics::record_commit(entries.len(), start.elapsed(), committed.is_ok());
        }
        if let Err(e) = committed {
            let why = e.to_string();
            cache.clear();
            declare(&self.failure, Failure::Refused(why.clone()));
            (self.cutoffs, self.hlc) = before;
            if let Some(mine) = mine {
                mine.fail(why.clone());
            }
            for (tx, _) in remote {
                drop(tx.send(Err(WriteError::Unavailable(why.clone()))));
            }
            return;
        }
        *self.shared.lock().unwrap_or_else(|p| p.into_inner()) = self.cutoffs.clone();
        self.events.publish(changes);
        for (tx, result) in remote {
            drop(tx.send(result));
        }
        drop(mine);
        if !closing.is_empty() {
            // After this batch's commit: everything proposed is durable.
            let marked = match self.store.mark_clean_stop() {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot record the clean stop; the next start takes a new origin");
                    false
                }
            };
            for reply in closing {
                let _ = reply.send(marked);
            }
        }
    }

    fn local(
        &mut self,
        overlay: &mut Overlay<'_, impl KvRead>,
        request_id: RequestId,
        command: &Command,
        effects: &mut state::Effects,
    ) -> Result<Outcome, WriteError> {
        match state::check(command, &request_id, overlay)? {
            Checked::AlreadyDone => Ok(Outcome::AlreadyDone),
            Checked::Apply(op) => {
                if let Some(why) = self.clock_agreement.refusal() {
                    return Err(WriteError::ClockOff(why));
                }
                let seq = self.cutoffs.get(&self.origin).copied().unwrap_or(0) + 1;
                let entry = Entry {
                    origin: self.origin,
                    seq,
                    hlc: self.hlc.tick(wall_clock_ms()),
                    request_id,
                    op,
                };
                effects.extend(state::apply(&entry, overlay)?);
                self.cutoffs.insert(self.origin, seq);
                let receipt = query::receipt(overlay, &entry)?;
                Ok(Outcome::Applied(entry, Box::new(receipt)))
            }
        }
    }

    fn remote(
        &mut self,
        overlay: &mut Overlay<'_, impl KvRead>,
        incoming: Vec<Entry>,
        entries: &mut Vec<Entry>,
        effects: &mut state::Effects,
    ) -> Result<RemoteOutcome, WriteError> {
        let mut applied = 0;
        for entry in incoming {
            let held = self.cutoffs.get(&entry.origin).copied().unwrap_or(0);
            if entry.seq <= held {
                continue; // already held: syncs may overlap
            }
            if entry.seq != held + 1 {
                // The entries before the gap stay applied (they are in
                // order); the sender must resync to fill the gap.
                return Err(WriteError::Gap {
                    origin: entry.origin,
                    held,
                    got: entry.seq,
                });
            }
            self.hlc.observe(entry.hlc);
            effects.extend(state::apply(&entry, overlay)?);
            self.cutoffs.insert(entry.origin, entry.seq);
            entries.push(entry);
            applied += 1;
        }
        Ok(RemoteOutcome { applied })
    }
}

/// Carries out `erasures` (in order) on the log: an entry about to be
/// committed is rewritten in `batch`; one already stored is read and
/// returned rewritten, to be committed with the batch (at most once per
/// position, so a batch never writes one log key twice). Stored entries
/// with nothing left to erase are not returned.
fn erase(
    store: &Store,
    erasures: &[Erasure],
    batch: &mut [Entry],
) -> Result<Vec<Entry>, StorageError> {
    let mut rewrites: BTreeMap<(u32, u64), (Entry, bool)> = BTreeMap::new();
    for &why in erasures {
        let at = why.stamp();
        let here = |e: &&mut Entry| e.origin == at.origin && e.seq == at.seq;
        if let Some(e) = batch.iter_mut().rev().find(here) {
            e.erase(why);
            continue;
        }
        match rewrites.entry((at.origin, at.seq)) {
            Slot::Occupied(mut stored) => {
                let (e, changed) = stored.get_mut();
                *changed |= e.erase(why);
            }
            Slot::Vacant(slot) => match store.entry(at.origin, at.seq)? {
                Some(mut e) => {
                    let changed = e.erase(why);
                    slot.insert((e, changed));
                }
                // The state names only entries applied here, and the log
                // holds every entry applied here; if it does not, there is
                // nothing of it to erase.
                None => tracing::warn!(
                    origin = at.origin,
                    seq = at.seq,
                    "an entry to erase is not in the log"
                ),
            },
        }
    }
    Ok(rewrites
        .into_values()
        .filter_map(|(e, changed)| changed.then_some(e))
        .collect())
}

/// Applies entries straight to a store that no replica is running on, in
/// batches of `batch` entries, without an fsync per batch (one at the end):
/// for building large data directories quickly (benchmarks, tools). Each
/// origin's entries must come in sequence order, continuing the store's log.
pub fn bulk_apply(
    store: &Store,
    entries: impl IntoIterator<Item = Entry>,
    batch: usize,
) -> Result<u64, StorageError> {
    let mut applied = 0;
    let mut pending = Vec::with_capacity(batch);
    let flush = |pending: &mut Vec<Entry>| -> Result<(), StorageError> {
        let base = store.reader();
        let mut overlay = Overlay::new(&base);
        let mut erasures = Vec::new();
        for e in pending.iter() {
            erasures.extend(state::apply(e, &mut overlay)?.erasures);
        }
        let writes = overlay.into_writes();
        let rewrites = erase(store, &erasures, pending)?;
        pending.extend(rewrites);
        store.commit_buffered(pending, writes)?;
        pending.clear();
        Ok(())
    };
    for e in entries {
        pending.push(e);
        applied += 1;
        if pending.len() == batch {
            flush(&mut pending)?;
        }
    }
    flush(&mut pending)?;
    store.persist()?;
    store.flush()?;
    Ok(applied)
}
