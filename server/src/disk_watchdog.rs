//! Stops a replica whose disk hangs.
//!
//! A disk that *fails* answers a write with an error: the writer records the
//! failure and the replica stops (`crate::writer`, `Writer::failed`), so its
//! clients fail over and its peers carry on. A disk that *hangs* never
//! answers: an fdatasync (or a read of a page that is not cached) blocks
//! the writer thread for good. Its peers notice -- their relays to it miss
//! their deadline and they write it off -- but the replica itself would
//! not: it would keep answering reads from a state that no longer receives
//! anyone's writes, and keep its clients' writes waiting until their
//! deadlines.
//!
//! So the writer marks when it starts and ends each batch ([`BatchClock`]),
//! and a watchdog task looks at the clock: a batch that has run for longer
//! than `--disk-stall-timeout-ms` means the disk hangs, and the watchdog
//! declares the writer failed ([`Failure::Hung`]), which stops the replica
//! the same way as a failed write. (A slow batch only logs a warning at
//! half that.) The time it takes is a bound on how long a reader on this
//! replica can see a state that has fallen behind its peers' without being
//! told. The watchdog cannot unblock the thread -- nothing can, short of the
//! disk -- so the process exits around it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::writer::{Failure, Writer};

/// When the writer's current batch started, if one is running. Cheap
/// enough to mark every batch: two relaxed atomic stores.
pub struct BatchClock {
    epoch: Instant,
    /// Microseconds from `epoch` to the running batch's start, plus one;
    /// zero when the writer is idle.
    running_since: AtomicU64,
}

impl Default for BatchClock {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            running_since: AtomicU64::new(0),
        }
    }
}

impl BatchClock {
    pub fn start(&self) {
        let now = self.epoch.elapsed().as_micros() as u64 + 1;
        self.running_since.store(now, Ordering::Relaxed);
    }

    pub fn end(&self) {
        self.running_since.store(0, Ordering::Relaxed);
    }

    /// How long the running batch has run; `None` when the writer is idle.
    pub fn running_for(&self) -> Option<Duration> {
        match self.running_since.load(Ordering::Relaxed) {
            0 => None,
            since => {
                let now = self.epoch.elapsed().as_micros() as u64 + 1;
                Some(Duration::from_micros(now.saturating_sub(since)))
            }
        }
    }
}

/// What the watchdog concludes from one look at the clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Fine,
    /// Running for longer than half the limit: worth a warning, once.
    Slow(Duration),
    Hung,
}

fn judge(running_for: Option<Duration>, limit: Duration) -> Verdict {
    match running_for {
        Some(d) if d >= limit => Verdict::Hung,
        Some(d) if d >= limit / 2 => Verdict::Slow(d),
        _ => Verdict::Fine,
    }
}

/// Watches `writer`'s batches until one runs for `limit` or the writer
/// fails otherwise; then declares it failed, which stops the replica.
pub async fn watch(writer: Writer, limit: Duration) {
    let every = (limit / 20).clamp(Duration::from_millis(10), Duration::from_secs(1));
    let mut warned = false;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = writer.failed() => return,
        }
        match judge(writer.clock().running_for(), limit) {
            Verdict::Fine => warned = false,
            Verdict::Slow(d) => {
                if !warned {
                    tracing::warn!(
                        running_ms = d.as_millis() as u64,
                        limit_ms = limit.as_millis() as u64,
                        "a write to the disk is taking long; the replica stops if it has not finished at the limit"
                    );
                }
                warned = true;
            }
            Verdict::Hung => {
                writer.declare_failed(Failure::Hung(limit));
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: Duration = Duration::from_secs(20);

    #[test]
    fn an_idle_writer_is_never_hung() {
        assert_eq!(judge(None, LIMIT), Verdict::Fine);
        let clock = BatchClock::default();
        assert_eq!(clock.running_for(), None);
        clock.start();
        assert!(clock.running_for().is_some());
        clock.end();
        assert_eq!(clock.running_for(), None);
    }

    #[test]
    fn a_batch_is_slow_at_half_the_limit_and_hung_at_it() {
        let secs = |s| Some(Duration::from_secs(s));
        assert_eq!(judge(secs(9), LIMIT), Verdict::Fine);
        assert_eq!(
            judge(secs(10), LIMIT),
            Verdict::Slow(Duration::from_secs(10))
        );
        assert_eq!(
            judge(secs(19), LIMIT),
            Verdict::Slow(Duration::from_secs(19))
        );
        assert_eq!(judge(secs(20), LIMIT), Verdict::Hung);
        assert_eq!(judge(secs(3600), LIMIT), Verdict::Hung);
    }

    #[test]
    fn the_clock_measures_from_the_batch_start() {
        let clock = BatchClock::default();
        clock.start();
        std::thread::sleep(Duration::from_millis(30));
        let d = clock.running_for().unwrap();
        assert!(d >= Duration::from_millis(30), "{d:?}");
    }
}
