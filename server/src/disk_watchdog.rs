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
//!
//! The watchdog counts only time it saw pass itself, a tick at a time
//! ([`Watch`]), not the wall-clock age of the batch: a process that was
//! frozen (SIGSTOP, a paused VM, a suspended laptop) wakes up with a batch
//! that *looks* old, but its disk was not hanging, and the writer finishes
//! the batch as soon as it runs again. A tick that comes late counts as two
//! at most.

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
    /// Batches started, to tell one long batch from many short ones.
    started: AtomicU64,
}

impl Default for BatchClock {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            running_since: AtomicU64::new(0),
            started: AtomicU64::new(0),
        }
    }
}

impl BatchClock {
    pub fn start(&self) {
        self.started.fetch_add(1, Ordering::Relaxed);
        let now = self.epoch.elapsed().as_micros() as u64 + 1;
        self.running_since.store(now, Ordering::Relaxed);
    }

    pub fn end(&self) {
        self.running_since.store(0, Ordering::Relaxed);
    }

    /// How long the running batch has run by the wall clock (for the
    /// metric); `None` when the writer is idle.
    pub fn running_for(&self) -> Option<Duration> {
        match self.running_since.load(Ordering::Relaxed) {
            0 => None,
            since => {
                let now = self.epoch.elapsed().as_micros() as u64 + 1;
                Some(Duration::from_micros(now.saturating_sub(since)))
            }
        }
    }

    /// Which batch is running (a number that changes with every batch);
    /// `None` when the writer is idle.
    pub fn running(&self) -> Option<u64> {
        (self.running_since.load(Ordering::Relaxed) != 0)
            .then(|| self.started.load(Ordering::Relaxed))
    }
}

/// The watchdog's account of the batch it watches: how long it has seen
/// that same batch running, tick by tick.
#[derive(Debug, Default)]
struct Watch {
    batch: Option<u64>,
    seen_running: Duration,
}

impl Watch {
    /// One tick, `elapsed` after the previous one (meant to be `every`),
    /// finding `running`; returns how long that batch has been seen running.
    fn tick(&mut self, running: Option<u64>, elapsed: Duration, every: Duration) -> Duration {
        match running {
            Some(batch) if self.batch == Some(batch) => {
                // A late tick -- the process was frozen, or starved of CPU --
                // is no evidence against the disk.
                self.seen_running += elapsed.min(every * 2);
            }
            _ => self.seen_running = Duration::ZERO,
        }
        self.batch = running;
        self.seen_running
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

fn judge(seen_running: Duration, limit: Duration) -> Verdict {
    match seen_running {
        d if d >= limit => Verdict::Hung,
        d if d >= limit / 2 => Verdict::Slow(d),
        _ => Verdict::Fine,
    }
}

/// Watches `writer`'s batches until one runs for `limit` or the writer
/// fails otherwise; then declares it failed, which stops the replica.
pub async fn watch(writer: Writer, limit: Duration) {
    let every = (limit / 20).clamp(Duration::from_millis(10), Duration::from_secs(1));
    let mut watch = Watch::default();
    let mut last = Instant::now();
    let mut warned = false;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = writer.failed() => return,
        }
        let now = Instant::now();
        let seen = watch.tick(writer.clock().running(), now - last, every);
        last = now;
        match judge(seen, limit) {
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
    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn the_clock_tells_idle_from_running_and_one_batch_from_the_next() {
        let clock = BatchClock::default();
        assert_eq!(clock.running(), None);
        assert_eq!(clock.running_for(), None);
        clock.start();
        let first = clock.running().unwrap();
        assert!(clock.running_for().is_some());
        clock.end();
        assert_eq!(clock.running(), None);
        assert_eq!(clock.running_for(), None);
        clock.start();
        assert_ne!(clock.running(), Some(first));
    }

    #[test]
    fn the_clock_measures_from_the_batch_start() {
        let clock = BatchClock::default();
        clock.start();
        std::thread::sleep(Duration::from_millis(30));
        let d = clock.running_for().unwrap();
        assert!(d >= Duration::from_millis(30), "{d:?}");
    }

    #[test]
    fn a_batch_is_slow_at_half_the_limit_and_hung_at_it() {
        let secs = Duration::from_secs;
        assert_eq!(judge(secs(9), LIMIT), Verdict::Fine);
        assert_eq!(judge(secs(10), LIMIT), Verdict::Slow(secs(10)));
        assert_eq!(judge(secs(19), LIMIT), Verdict::Slow(secs(19)));
        assert_eq!(judge(secs(20), LIMIT), Verdict::Hung);
        assert_eq!(judge(secs(3600), LIMIT), Verdict::Hung);
    }

    #[test]
    fn one_batch_seen_running_tick_after_tick_adds_up() {
        let mut w = Watch::default();
        assert_eq!(w.tick(Some(7), SEC, SEC), Duration::ZERO);
        for n in 1..=20 {
            assert_eq!(w.tick(Some(7), SEC, SEC), SEC * n);
        }
        assert_eq!(judge(w.seen_running, LIMIT), Verdict::Hung);
    }

    #[test]
    fn a_busy_writers_short_batches_never_add_up() {
        // Every tick finds another batch running, or none.
        let mut w = Watch::default();
        for n in 0..100 {
            let running = (n % 3 != 0).then_some(n);
            assert_eq!(w.tick(running, SEC, SEC), Duration::ZERO);
        }
    }

    #[test]
    fn a_frozen_process_wakes_up_without_a_hung_disk() {
        // A tick 10 minutes late (SIGSTOP, a paused VM) with the same batch
        // still running counts as two ticks, not ten minutes.
        let mut w = Watch::default();
        w.tick(Some(1), SEC, SEC);
        let seen = w.tick(Some(1), Duration::from_secs(600), SEC);
        assert_eq!(seen, 2 * SEC);
        assert_eq!(judge(seen, LIMIT), Verdict::Fine);
        // And the writer, running again, finishes it.
        assert_eq!(w.tick(None, SEC, SEC), Duration::ZERO);
    }
}
