//! `chat-server verify --data-dir DIR`: checks a stopped replica's data
//! directory against the rule everything rests on -- the state is what
//! replaying the log gives.
//!
//! Replicas compare state digests with each other, which finds a replica
//! that diverged, but not a fault they all share: the same code wrote every
//! one of them. So this replays the replica's log from nothing, through the
//! same state machine, into a scratch store next to it, and compares:
//!
//! * the **state digest** of the replay with the stored state's;
//! * each origin's **sequence numbers**: 1 up to its cutoff, none missing;
//! * the **log itself**: the replay erases deleted content as it goes (see
//!   `writer`), so an entry it rewrites is content the stored log still
//!   holds although its deletion is logged.
//!
//! It reads only; the scratch store is removed afterwards. It needs the
//! replica stopped (fjall locks a store to one process) and disk space for
//! a second copy of the state while it runs.

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::config::VerifyArgs;
use crate::entry::Entry;
use crate::server::store_dir;
use crate::state::StorageError;
use crate::state::digest::digest;
use crate::storage::Store;
use crate::writer;

/// Entries read from the log at a time.
const CHUNK: usize = 4096;

/// What the check found.
#[derive(Debug, Default)]
pub struct Report {
    pub entries: u64,
    pub origins: usize,
    /// Origins whose entries are not exactly 1..=cutoff.
    pub gaps: Vec<String>,
    pub stored_digest: String,
    pub replayed_digest: String,
    /// Log positions whose entry the replay rewrote (content left behind).
    pub unerased: Vec<(u32, u64)>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.gaps.is_empty()
            && self.stored_digest == self.replayed_digest
            && self.unerased.is_empty()
    }
}

pub fn run(args: VerifyArgs) -> Result<(), String> {
    let report = verify(&args.data_dir)?;
    let out = json!({
        "ok": report.ok(),
        "log_entries": report.entries,
        "origins": report.origins,
        "gaps": report.gaps,
        "stored_digest": report.stored_digest,
        "replayed_digest": report.replayed_digest,
        "unerased_entries": report.unerased.len(),
        "first_unerased": report.unerased.iter().take(10).map(|(o, s)| format!("{o}/{s}")).collect::<Vec<_>>(),
    });
    println!(
        "{}",
        serde_json::to_string_pretty(&out).map_err(|e| e.to_string())?
    );
    if report.ok() {
        Ok(())
    } else {
        Err(format!(
            "{} does not hold what replaying its log gives (see above)",
            args.data_dir.display()
        ))
    }
}

/// Checks the data directory `data_dir` (see the module docs).
pub fn verify(data_dir: &Path) -> Result<Report, String> {
    let dir = store_dir(data_dir);
    if !dir.exists() {
        return Err(format!("{} holds no replica store", data_dir.display()));
    }
    let source = Store::open(&dir).map_err(|e| {
        format!(
            "cannot open {} (is its replica still running? stop it first): {e}",
            dir.display()
        )
    })?;
    let scratch_dir = scratch_dir(data_dir);
    let _ = std::fs::remove_dir_all(&scratch_dir);
    let result = Store::open(&scratch_dir)
        .and_then(|scratch| compare(&source, &scratch))
        .map_err(|e| e.to_string());
    let _ = std::fs::remove_dir_all(&scratch_dir);
    result
}

fn scratch_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("verify-scratch")
}

fn compare(source: &Store, scratch: &Store) -> Result<Report, StorageError> {
    let cutoffs = source.cutoffs()?;
    let mut report = Report {
        origins: cutoffs.len(),
        ..Report::default()
    };
    for (&origin, &cutoff) in &cutoffs {
        let mut expected = 1;
        let mut failed = None;
        let mut gaps = Vec::new();
        let entries = log_of(source, origin, cutoff, &mut failed).inspect(|e| {
            if e.seq != expected && gaps.len() < 100 {
                gaps.push(format!(
                    "origin {origin}: expected seq {expected}, found {}",
                    e.seq
                ));
            }
            expected = e.seq + 1;
        });
        report.entries += writer::bulk_apply(scratch, entries, 1000)?;
        if let Some(e) = failed {
            return Err(e);
        }
        report.gaps.extend(gaps);
        if expected != cutoff + 1 {
            report.gaps.push(format!(
                "origin {origin}: ends at {} of {cutoff}",
                expected - 1
            ));
        }
    }
    report.stored_digest = digest(&source.reader())?;
    report.replayed_digest = digest(&scratch.reader())?;
    for (&origin, &cutoff) in &cutoffs {
        let mut failed = None;
        let replayed = log_of(scratch, origin, cutoff, &mut failed);
        let mut stored_failed = None;
        for (stored, replayed) in log_of(source, origin, cutoff, &mut stored_failed).zip(replayed) {
            if stored != replayed {
                report.unerased.push((origin, stored.seq));
            }
        }
        if let Some(e) = failed.or(stored_failed) {
            return Err(e);
        }
    }
    Ok(report)
}

/// Origin `origin`'s entries up to `cutoff`, read a chunk at a time. A read
/// error ends the iteration and is left in `failed`.
fn log_of<'a>(
    store: &'a Store,
    origin: u32,
    cutoff: u64,
    failed: &'a mut Option<StorageError>,
) -> impl Iterator<Item = Entry> + 'a {
    let mut after = 0;
    std::iter::from_fn(move || {
        if after >= cutoff || failed.is_some() {
            return None;
        }
        match store.entries_after(origin, after, cutoff, CHUNK) {
            Ok(chunk) if !chunk.is_empty() => {
                after = chunk.last().map_or(cutoff, |e| e.seq);
                Some(chunk)
            }
            Ok(_) => None,
            Err(e) => {
                *failed = Some(e);
                None
            }
        }
    })
    .flatten()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::entry::Op;
    use crate::ids::{AccountId, MessageId};

    fn entry(origin: u32, seq: u64, op: Op) -> Entry {
        Entry {
            origin,
            seq,
            hlc: seq * 10 + u64::from(origin),
            request_id: [seq as u8 + 16 * origin as u8; 16],
            op,
        }
    }

    fn create(name: &str) -> Op {
        Op::CreateAccount {
            account: AccountId::derive(name, &[1; 16]),
            username: name.into(),
            password_hash: format!("hash-of-{name}"),
        }
    }

    fn send(rid: u8, body: &str) -> Op {
        let (ann, bob) = (
            AccountId::derive("ann", &[1; 16]),
            AccountId::derive("bob", &[1; 16]),
        );
        Op::SendMessage {
            message: MessageId::derive(ann, bob, &[rid; 16]),
            sender: ann,
            recipient: bob,
            body: body.into(),
        }
    }

    /// A data directory whose store holds, from two origins: two accounts,
    /// a message deleted (and so erased) and one kept.
    fn replica() -> (tempfile::TempDir, Entry) {
        let dir = tempfile::tempdir().unwrap();
        let ann = AccountId::derive("ann", &[1; 16]);
        let doomed = entry(2, 1, send(7, "doomed"));
        let Op::SendMessage { message, .. } = doomed.op else {
            unreachable!()
        };
        let entries = vec![
            entry(1, 1, create("ann")),
            entry(1, 2, create("bob")),
            doomed.clone(),
            entry(2, 2, send(8, "kept")),
            entry(
                1,
                3,
                Op::DeleteMessages {
                    account: ann,
                    messages: vec![message],
                },
            ),
        ];
        let store = Store::open(&store_dir(dir.path())).unwrap();
        writer::bulk_apply(&store, entries, 2).unwrap();
        (dir, doomed)
    }

    #[test]
    fn a_store_written_by_the_writer_verifies() {
        let (dir, _) = replica();
        let report = verify(dir.path()).unwrap();
        assert!(report.ok(), "{report:?}");
        assert_eq!((report.entries, report.origins), (5, 2));
        assert!(
            !scratch_dir(dir.path()).exists(),
            "scratch store left behind"
        );
    }

    #[test]
    fn state_the_log_does_not_give_is_found() {
        let (dir, _) = replica();
        {
            let store = Store::open(&store_dir(dir.path())).unwrap();
            let stray = BTreeMap::from([(b"zz-stray".to_vec(), Some(b"?".to_vec()))]);
            store.commit(&[], stray).unwrap();
        }
        let report = verify(dir.path()).unwrap();
        assert!(!report.ok());
        assert_ne!(report.stored_digest, report.replayed_digest);
        assert!(report.gaps.is_empty() && report.unerased.is_empty());
    }

    #[test]
    fn deleted_content_left_in_the_log_is_found() {
        let (dir, doomed) = replica();
        {
            let store = Store::open(&store_dir(dir.path())).unwrap();
            // The deleted message's entry back as it was sent.
            store.commit(&[doomed], BTreeMap::new()).unwrap();
        }
        let report = verify(dir.path()).unwrap();
        assert!(!report.ok());
        assert_eq!(report.unerased, vec![(2, 1)]);
        assert_eq!(report.stored_digest, report.replayed_digest);
    }

    #[test]
    fn missing_entries_are_found() {
        let (dir, _) = replica();
        {
            let store = Store::open(&store_dir(dir.path())).unwrap();
            store
                .commit(&[entry(2, 5, send(9, "after a gap"))], BTreeMap::new())
                .unwrap();
        }
        let report = verify(dir.path()).unwrap();
        assert!(!report.ok());
        assert_eq!(report.gaps, vec!["origin 2: expected seq 3, found 5"]);
    }

    #[test]
    fn a_directory_without_a_store_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = verify(dir.path()).unwrap_err();
        assert!(err.contains("holds no replica store"), "{err}");
    }
}
