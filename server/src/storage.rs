//! The log and the materialized state, in fjall.
//!
//! Three keyspaces in one fjall database:
//!
//! * `log`: every entry ever applied here, keyed by (origin, seq) in
//!   big-endian, so each origin's entries are one contiguous range in
//!   sequence order and the highest key of an origin is its cutoff. The log
//!   is the source of truth and what replicas ship to each other.
//! * `state`: the materialized state (`state::keys`), so a restart does not
//!   replay history from zero.
//! * `meta`: this replica's identity, its view of the network, and whether
//!   it stopped cleanly.
//!
//! [`Store::commit`] writes a batch of entries *and* the state they produce in
//! one atomic fjall batch, fdatasync'ed before it returns and made visible
//! to readers only after that. A crash therefore leaves either all of a
//! batch or none of it: never an entry without its effect, never an effect
//! without its entry. A commit may also rewrite entries already logged
//! (same key, private content erased: see `writer`); deleted content thus
//! leaves the state and the log in one atomic step.

use std::collections::BTreeMap;
use std::path::Path;

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode, Readable, Snapshot};

use crate::background_priority;
use crate::entry::Entry;
use crate::memtable_reaper::MemtableReaper;
use crate::state::kv::{KvIter, KvRead, StorageError};

pub struct Store {
    /// First, so it stops before the database closes.
    _reaper: MemtableReaper,
    db: Database,
    log: Keyspace,
    state: Keyspace,
    meta: Keyspace,
}

fn io(e: fjall::Error) -> StorageError {
    StorageError::Io(describe(&e))
}

/// What went wrong, in an operator's words: fjall's own text is its `Debug`
/// form, so an operating-system error is reported as itself, and a full
/// disk by name.
fn describe(e: &fjall::Error) -> String {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(os) = err.downcast_ref::<std::io::Error>() {
            return match os.kind() {
                std::io::ErrorKind::StorageFull => format!("the disk is full ({os})"),
                _ => format!("disk I/O error ({os})"),
            };
        }
        source = err.source();
    }
    match e {
        // Set when fjall's own background write (a flush or compaction)
        // failed; fjall logs why just before.
        fjall::Error::Poisoned => {
            "the store refuses writes since one of its flushes or compactions failed (the replica's log says why)".into()
        }
        fjall::Error::Locked => {
            "the data directory is in use by another process (is this replica already running?)".into()
        }
        other => format!("{other:?}"),
    }
}

fn log_key(origin: u32, seq: u64) -> [u8; 12] {
    let mut k = [0; 12];
    k[..4].copy_from_slice(&origin.to_be_bytes());
    k[4..].copy_from_slice(&seq.to_be_bytes());
    k
}

fn parse_log_key(k: &[u8]) -> Result<(u32, u64), StorageError> {
    let bad = || StorageError::Corrupt("log key is not 12 bytes".into());
    let origin = u32::from_be_bytes(k.get(..4).ok_or_else(bad)?.try_into().map_err(|_| bad())?);
    let seq = u64::from_be_bytes(
        k.get(4..12)
            .ok_or_else(bad)?
            .try_into()
            .map_err(|_| bad())?,
    );
    Ok((origin, seq))
}

const MIB: u64 = 1024 * 1024;

/// Meta key present only between a clean stop and the next start.
const CLEAN_STOP: &str = "clean-stop";
/// Present once a run of this replica has started on this store.
const STARTED: &str = "started";
/// Present while a snapshot is being installed (`replication::snapshot`).
const INSTALLING: &str = "snapshot-installing";
/// Meta key of the origin this replica logs under, once not its id.
const ORIGIN: &str = "origin";

/// Per-origin cutoffs: the highest sequence number held from each origin.
pub type Cutoffs = BTreeMap<u32, u64>;

/// fjall's background threads (memtable flushes and compactions). One:
/// with more, fjall 3 lets its first worker hand every compaction request
/// back to the queue while another worker is busy, and that worker then
/// receives it again at once -- a busy loop that cost a replica 10-15% of
/// its CPU under sustained writes (`perf`: `worker_tick` and
/// `flume::Shared::send` self time). One worker flushes and compacts in
/// turn, which is all two cores can use anyway. It runs at the lowest CPU
/// priority (`background_priority`).
const BACKGROUND_WORKERS: usize = 1;

impl Store {
    /// Opens (or creates) the database in `dir`. Fjall locks the directory,
    /// so two replicas can never share one.
    pub fn open(dir: &Path) -> Result<Self, StorageError> {
        // Memory and restart time are bounded here. Memtables (write
        // buffers) are small, so a replica holding millions of messages
        // stays within a modest resident size, and the journal is capped, so
        // a restart after a crash replays at most that much. The block cache
        // holds recently read blocks (the bulk of steady-state memory).
        //
        // The database is opened at normal priority -- opening replays the
        // journal, and a restarting replica must not wait behind busy
        // neighbours for it -- and then fjall's flush and compaction worker,
        // started by the opening, is lowered to the lowest CPU priority
        // (`background_priority`).
        let db = Database::builder(dir)
            .cache_size(32 * MIB)
            .max_journaling_size(64 * MIB)
            .worker_threads(BACKGROUND_WORKERS)
            .open()
            .map_err(io)?;
        match background_priority::lower_threads_named(
            background_priority::FJALL_WORKER_THREAD,
            BACKGROUND_WORKERS,
            std::time::Duration::from_secs(1),
        ) {
            Ok(None) => {}
            Ok(Some(n)) if n >= BACKGROUND_WORKERS => {}
            Ok(Some(n)) => tracing::warn!(
                found = n,
                expected = BACKGROUND_WORKERS,
                "not every storage worker found: those missing stay at normal CPU priority"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "storage workers stay at normal CPU priority")
            }
        }
        let options = || KeyspaceCreateOptions::default().max_memtable_size(8 * MIB);
        let log = db.keyspace("log", options).map_err(io)?;
        let state = db.keyspace("state", options).map_err(io)?;
        let meta = db
            .keyspace("meta", KeyspaceCreateOptions::default)
            .map_err(io)?;
        let reaper = MemtableReaper::start(vec![log.clone(), state.clone(), meta.clone()])
            .map_err(|e| StorageError::Io(format!("cannot start the memtable reaper: {e}")))?;
        Ok(Self {
            _reaper: reaper,
            db,
            log,
            state,
            meta,
        })
    }

    /// Writes entries and the state changes they produce atomically and
    /// durably (fdatasync), then makes them visible. An entry at a position
    /// the log already holds replaces it (an erased rewrite); no position
    /// may appear twice in one call.
    pub fn commit(
        &self,
        entries: &[Entry],
        writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        self.write(entries, writes, Some(PersistMode::SyncData))
    }

    /// Like [`Store::commit`] but without waiting for the disk: for bulk
    /// loading, which calls [`Store::persist`] once at the end.
    pub fn commit_buffered(
        &self,
        entries: &[Entry],
        writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        self.write(entries, writes, None)
    }

    /// Makes everything committed so far durable.
    pub fn persist(&self) -> Result<(), StorageError> {
        self.db.persist(PersistMode::SyncAll).map_err(io)
    }

    /// Writes the in-memory write buffers out to tables, so that the next
    /// start replays (almost) no journal and starts small. Called on a clean
    /// shutdown and after bulk loads; a crash skips it and costs at most a
    /// journal's worth of replay.
    pub fn flush(&self) -> Result<(), StorageError> {
        for ks in [&self.log, &self.state, &self.meta] {
            ks.rotate_memtable_and_wait().map_err(io)?;
        }
        Ok(())
    }

    fn write(
        &self,
        entries: &[Entry],
        writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
        durability: Option<PersistMode>,
    ) -> Result<(), StorageError> {
        let mut batch = self.db.batch().durability(durability);
        for e in entries {
            batch.insert(&self.log, log_key(e.origin, e.seq), e.encode());
        }
        for (k, v) in writes {
            match v {
                Some(v) => batch.insert(&self.state, k, v),
                None => batch.remove(&self.state, k),
            }
        }
        batch.commit().map_err(io)
    }

    /// A consistent read-only view of the state as of now.
    pub fn reader(&self) -> StateReader {
        StateReader {
            snapshot: self.db.snapshot(),
            state: self.state.clone(),
        }
    }

    /// The highest sequence number held from every origin (derived from the
    /// log itself: the last key of each origin's range).
    pub fn cutoffs(&self) -> Result<Cutoffs, StorageError> {
        cutoffs_in(&self.db.snapshot(), &self.log)
    }

    /// The newest HLC timestamp in the log (each origin's last entry holds
    /// its newest, since an origin's clock never goes back).
    pub fn max_hlc(&self) -> Result<u64, StorageError> {
        let mut max = 0;
        for (origin, seq) in self.cutoffs()? {
            if let Some(e) = self.entry(origin, seq)? {
                max = max.max(e.hlc);
            }
        }
        Ok(max)
    }

    pub fn entry(&self, origin: u32, seq: u64) -> Result<Option<Entry>, StorageError> {
        match self.log.get(log_key(origin, seq)).map_err(io)? {
            Some(v) => Ok(Some(
                Entry::decode(&v).map_err(|e| StorageError::Corrupt(e.to_string()))?,
            )),
            None => Ok(None),
        }
    }

    /// Entries of `origin` with sequence numbers in `after+1 ..= upto`, in
    /// order, at most `max` of them.
    pub fn entries_after(
        &self,
        origin: u32,
        after: u64,
        upto: u64,
        max: usize,
    ) -> Result<Vec<Entry>, StorageError> {
        if after >= upto {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for guard in self
            .log
            .range(log_key(origin, after + 1)..=log_key(origin, upto))
            .take(max)
        {
            let v = guard.value().map_err(io)?;
            out.push(Entry::decode(&v).map_err(|e| StorageError::Corrupt(e.to_string()))?);
        }
        Ok(out)
    }

    pub fn meta_get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.meta.get(key).map_err(io)?.map(|v| v.to_vec()))
    }

    /// Writes a metadata value durably.
    pub fn meta_put(&self, key: &str, value: &[u8]) -> Result<(), StorageError> {
        let mut batch = self.db.batch().durability(Some(PersistMode::SyncData));
        batch.insert(&self.meta, key, value);
        batch.commit().map_err(io)
    }

    /// Records that this replica stopped cleanly: every batch of its own
    /// entries it relayed is durable in its own log. Written by the writer
    /// as its last act (`Writer::close`).
    pub fn mark_clean_stop(&self) -> Result<(), StorageError> {
        self.meta_put(CLEAN_STOP, b"1")
    }

    /// Whether the previous run stopped cleanly, or there was none. Only
    /// reads: [`Store::begin_run`] takes the record away once this run is
    /// about to serve, so a run that fails or is stopped before that (a port
    /// in use, a signal during start-up sync: nothing of its own written or
    /// relayed) leaves the next start clean too. A store from before the
    /// start record is a first run only if empty.
    pub fn stopped_cleanly(&self) -> Result<bool, StorageError> {
        let marked = self.meta.contains_key(CLEAN_STOP).map_err(io)?;
        let started = self.meta.contains_key(STARTED).map_err(io)?;
        Ok(marked || (!started && self.is_empty()?))
    }

    /// Records, durably, that a run is about to serve: clears the clean-stop
    /// mark and records that a run has started, so that a crash from now on
    /// counts as unclean -- even one before the run's first commit, which
    /// may already have relayed a batch that its own log never got (so an
    /// empty log is no proof that nothing went out).
    pub fn begin_run(&self) -> Result<(), StorageError> {
        let mut batch = self.db.batch().durability(Some(PersistMode::SyncData));
        batch.remove(&self.meta, CLEAN_STOP);
        batch.insert(&self.meta, STARTED, b"1");
        batch.commit().map_err(io)
    }

    /// The origin this replica logs its own entries under (`crate::origin`):
    /// the one recorded last, else its id.
    pub fn origin(&self, id: u32) -> Result<u32, StorageError> {
        match self.meta_get(ORIGIN)? {
            None => Ok(id),
            Some(v) => v
                .try_into()
                .map(u32::from_be_bytes)
                .map_err(|_| StorageError::Corrupt("origin record is not 4 bytes".into())),
        }
    }

    /// Records, durably, the origin to log under from now on.
    pub fn set_origin(&self, origin: u32) -> Result<(), StorageError> {
        self.meta_put(ORIGIN, &origin.to_be_bytes())
    }

    /// Metadata pairs whose key starts with `prefix`.
    pub fn meta_scan(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        let mut out = Vec::new();
        for guard in self.meta.prefix(prefix) {
            let (k, v) = guard.into_inner().map_err(io)?;
            out.push((String::from_utf8_lossy(&k).into_owned(), v.to_vec()));
        }
        Ok(out)
    }
}

/// The cutoffs of the log as `snapshot` sees it: for each origin, the last
/// key of its range (one seek to find each origin, one to find its last).
fn cutoffs_in(snapshot: &Snapshot, log: &Keyspace) -> Result<Cutoffs, StorageError> {
    let mut out = Cutoffs::new();
    let mut from = log_key(0, 0);
    while let Some(first) = snapshot.range(log, from..).next() {
        let (origin, _) = parse_log_key(&first.key().map_err(io)?)?;
        let last = snapshot
            .range(log, log_key(origin, 0)..=log_key(origin, u64::MAX))
            .next_back()
            .ok_or_else(|| StorageError::Corrupt("origin range vanished".into()))?;
        let (_, seq) = parse_log_key(&last.key().map_err(io)?)?;
        out.insert(origin, seq);
        match origin.checked_add(1) {
            Some(next) => from = log_key(next, 0),
            None => break,
        }
    }
    Ok(out)
}

/// The two keyspaces a replica's chat data lives in (its identity and peers,
/// in `meta`, are its own and never copied).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Log,
    State,
}

impl Store {
    /// Whether the store holds no log and no state (a brand-new replica).
    pub fn is_empty(&self) -> Result<bool, StorageError> {
        Ok(self.log.is_empty().map_err(io)? && self.state.is_empty().map_err(io)?)
    }

    /// A consistent copy of the log and the state, as of now.
    pub fn export(&self) -> Export {
        Export {
            snapshot: self.db.snapshot(),
            log: self.log.clone(),
            state: self.state.clone(),
        }
    }

    /// Bulk-loads one part of an exported copy, in ascending key order,
    /// straight into tables (no journal, no memtable). Only for an empty
    /// store that nothing else writes to; call [`Store::persist`] after.
    /// Keys out of order (they come from the network) are refused rather
    /// than left to the engine, which would panic. Returns the pairs written.
    pub fn import(
        &self,
        part: Part,
        pairs: impl IntoIterator<Item = Result<(Vec<u8>, Vec<u8>), StorageError>>,
    ) -> Result<u64, StorageError> {
        let ks = match part {
            Part::Log => &self.log,
            Part::State => &self.state,
        };
        let mut ingestion = ks.start_ingestion().map_err(io)?;
        let mut last: Option<Vec<u8>> = None;
        let mut n = 0;
        for pair in pairs {
            let (key, value) = pair?;
            if last.as_ref().is_some_and(|last| key <= *last) {
                return Err(StorageError::Corrupt("snapshot keys out of order".into()));
            }
            last = Some(key.clone());
            ingestion.write(key, value).map_err(io)?;
            n += 1;
        }
        ingestion.finish().map_err(io)?;
        Ok(n)
    }

    /// Empties the log and the state (after a failed import).
    pub fn clear_data(&self) -> Result<(), StorageError> {
        self.log.clear().map_err(io)?;
        self.state.clear().map_err(io)
    }

    /// Records, durably, whether a snapshot install is under way. The log
    /// and the state are imported one after the other, so a process that
    /// stops in between leaves a log whose state is missing; the record
    /// tells the next start to discard that copy rather than serve it.
    pub fn set_installing(&self, installing: bool) -> Result<(), StorageError> {
        let mut batch = self.db.batch().durability(Some(PersistMode::SyncData));
        if installing {
            batch.insert(&self.meta, INSTALLING, b"1");
        } else {
            batch.remove(&self.meta, INSTALLING);
        }
        batch.commit().map_err(io)
    }

    /// Whether a snapshot install was begun and not finished.
    pub fn installing(&self) -> Result<bool, StorageError> {
        self.meta.contains_key(INSTALLING).map_err(io)
    }
}

/// A consistent, read-only copy of a store's log and state.
pub struct Export {
    snapshot: Snapshot,
    log: Keyspace,
    state: Keyspace,
}

impl Export {
    /// The cutoffs the copy corresponds to.
    pub fn cutoffs(&self) -> Result<Cutoffs, StorageError> {
        cutoffs_in(&self.snapshot, &self.log)
    }

    /// Every pair of one part, in ascending key order.
    pub fn pairs(
        &self,
        part: Part,
    ) -> impl Iterator<Item = Result<(Vec<u8>, Vec<u8>), StorageError>> + '_ {
        let ks = match part {
            Part::Log => &self.log,
            Part::State => &self.state,
        };
        self.snapshot.iter(ks).map(|g| {
            g.into_inner()
                .map(|(k, v)| (k.to_vec(), v.to_vec()))
                .map_err(io)
        })
    }
}

/// A snapshot of the materialized state, readable through [`KvRead`].
pub struct StateReader {
    snapshot: Snapshot,
    state: Keyspace,
}

impl KvRead for StateReader {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self
            .snapshot
            .get(&self.state, key)
            .map_err(io)?
            .map(|v| v.to_vec()))
    }

    fn range(&self, start: &[u8], end: &[u8], reverse: bool) -> KvIter<'_> {
        let iter = self
            .snapshot
            .range(&self.state, start.to_vec()..end.to_vec());
        let map = |g: fjall::Guard| {
            g.into_inner()
                .map(|(k, v)| (k.to_vec(), v.to_vec()))
                .map_err(io)
        };
        if reverse {
            Box::new(iter.rev().map(map))
        } else {
            Box::new(iter.map(map))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::Op;
    use crate::ids::AccountId;

    #[test]
    fn storage_errors_say_what_went_wrong_in_plain_words() {
        let full = fjall::Error::Io(std::io::Error::from(std::io::ErrorKind::StorageFull));
        assert!(
            describe(&full).starts_with("the disk is full ("),
            "{}",
            describe(&full)
        );
        let other = fjall::Error::Io(std::io::Error::other("bad sector"));
        assert_eq!(describe(&other), "disk I/O error (bad sector)");
        assert!(describe(&fjall::Error::Poisoned).contains("flushes or compactions failed"));
    }

    fn entry(origin: u32, seq: u64) -> Entry {
        Entry {
            origin,
            seq,
            hlc: seq * 100 + origin as u64,
            request_id: [1; 16],
            op: Op::DeleteAccount {
                account: AccountId([origin as u8; 16]),
            },
        }
    }

    #[test]
    fn a_clean_stop_is_remembered_once_and_the_origin_across_reopens() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            // Nothing stored yet: as good as a clean stop.
            assert!(store.stopped_cleanly().unwrap());
            assert_eq!(store.origin(3).unwrap(), 3);
            store.begin_run().unwrap();
            store.commit(&[entry(3, 1)], BTreeMap::new()).unwrap();
            // Serving, and no mark: a crash now is unclean.
            assert!(!store.stopped_cleanly().unwrap());
            store.set_origin(3 + 65_536).unwrap();
            store.mark_clean_stop().unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.origin(3).unwrap(), 3 + 65_536);
        assert!(store.stopped_cleanly().unwrap());
        // A start that stops before serving leaves it clean...
        assert!(store.stopped_cleanly().unwrap());
        // ...one that serves takes it: a crash from now on is unclean.
        store.begin_run().unwrap();
        assert!(!store.stopped_cleanly().unwrap());
    }

    #[test]
    fn a_crash_before_the_first_commit_is_an_unclean_stop() {
        // The first run's first batch may be relayed before its own commit
        // (writer.rs): a crash in between leaves an empty store here and the
        // batch on a peer, so the next run must not reuse its positions.
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            assert!(store.stopped_cleanly().unwrap(), "the very first run");
            store.begin_run().unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert!(store.is_empty().unwrap());
        assert!(
            !store.stopped_cleanly().unwrap(),
            "empty, but it served before"
        );
    }

    #[test]
    fn cutoffs_and_entries_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            let mut writes = BTreeMap::new();
            writes.insert(b"a1".to_vec(), Some(b"x".to_vec()));
            store
                .commit(&[entry(1, 1), entry(1, 2), entry(7, 1)], writes)
                .unwrap();
            store.commit(&[entry(1, 3)], BTreeMap::new()).unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.cutoffs().unwrap(), Cutoffs::from([(1, 3), (7, 1)]));
        assert_eq!(store.max_hlc().unwrap(), 301);
        let got = store.entries_after(1, 1, 3, 10).unwrap();
        assert_eq!(got, vec![entry(1, 2), entry(1, 3)]);
        assert_eq!(store.reader().get(b"a1").unwrap(), Some(b"x".to_vec()));
        let all: Vec<_> = store
            .reader()
            .range(b"a", b"b", true)
            .map(|r| r.unwrap().0)
            .collect();
        assert_eq!(all, vec![b"a1".to_vec()]);
    }
}
