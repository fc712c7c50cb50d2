//! Storage maintenance runs at the lowest CPU priority.
//!
//! A replica's latency is decided on its foreground threads: the gRPC
//! runtime and the writer, which must wake the moment its fdatasync returns.
//! fjall's background worker flushes a full memtable to a table (50-150 ms
//! of CPU, every couple of seconds under load) and compacts tables (about
//! 100 ms every few flushes); the memtable reaper frees flushed memtables.
//! None of that is urgent: a flush has the rest of the next memtable's
//! filling time to finish. At normal priority, though, it takes its full
//! share of the CPU the moment it starts, and when the CPU is busy the
//! writer, woken from its fdatasync, waits in the run queue behind it: we
//! measured writer batches sitting 4-9 ms runnable but not running while a
//! flush ran. The replicas of a cluster apply the same entries, so they
//! flush at the same moment and every send in flight feels it.
//!
//! So these threads run at nice 19, as RocksDB offers for its compaction
//! pool (`Env::LowerThreadPoolCPUPriority`): they still get whatever CPU
//! the foreground leaves idle, and a small share when it leaves none, so
//! flushes finish and fjall's own write back-pressure (which pauses the
//! writer when sealed memtables pile up) keeps memory bounded if they
//! ever fall behind. The cost: the worker also holds locks the writer
//! needs -- fjall's journal lock at each memtable rotation (a moment) and
//! at each journal rotation (every 64 MB, ~15 ms of fsyncs), a tree's
//! version lock while it records a new table -- and a lowered thread
//! preempted there holds the writer up longer. Those windows are short
//! against flushes of 50-150 ms, and the measurements (docs/performance.md)
//! came out on the side of lowering: p99 lower in 20 of 21 paired runs at
//! 16 and 64 senders, throughput unchanged, no write halt at 256.
//!
//! Raising the niceness of one's own threads needs no privilege (lowering
//! it again does, so a lowered thread stays lowered). fjall offers no hook
//! to run code on the threads it starts, but a new thread takes its
//! creator's niceness: [`run_lowered`] opens the database on a lowered
//! thread of its own, and the workers fjall starts there are born lowered.
//! On Linux niceness is a per-thread attribute; elsewhere this module does
//! nothing.

use std::io;

/// The niceness given to background threads: the lowest priority.
pub const BACKGROUND_NICENESS: i32 = 19;

/// The name fjall gives its flush and compaction threads (it spawns them
/// itself; checked from outside by the end-to-end tests).
pub const FJALL_WORKER_THREAD: &str = "fjall:worker";

/// Lowers the calling thread to [`BACKGROUND_NICENESS`], for good.
pub fn lower_current_thread() -> io::Result<()> {
    imp::lower_current()
}

/// Runs `f` on a new thread lowered to [`BACKGROUND_NICENESS`] and returns
/// its result, so that every thread `f` starts is lowered too. The caller's
/// own priority is untouched. If the thread cannot be lowered, `f` runs
/// anyway, at normal priority: slower tails, not an outage.
pub fn run_lowered<T: Send>(f: impl FnOnce() -> T + Send) -> io::Result<T> {
    std::thread::scope(|scope| {
        let thread = std::thread::Builder::new()
            .name("lowered-start".into())
            .spawn_scoped(scope, || {
                if let Err(e) = lower_current_thread() {
                    tracing::warn!(error = %e, "background threads stay at normal CPU priority");
                }
                f()
            })?;
        match thread.join() {
            Ok(value) => Ok(value),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

#[cfg(target_os = "linux")]
mod imp {
    use std::io;

    pub fn current_thread() -> libc::id_t {
        // SAFETY: gettid has no preconditions and cannot fail.
        unsafe { libc::gettid() as libc::id_t }
    }

    pub fn lower_current() -> io::Result<()> {
        // PRIO_PROCESS with a thread id sets that one thread's niceness
        // (setpriority(2), "Linux notes").
        // SAFETY: plain system call on integer arguments.
        let rc = unsafe {
            libc::setpriority(
                libc::PRIO_PROCESS,
                current_thread(),
                super::BACKGROUND_NICENESS,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use std::io;

    pub fn lower_current() -> io::Result<()> {
        Ok(())
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// The niceness of the calling thread.
    fn current_niceness() -> io::Result<i32> {
        // getpriority can legitimately return -1, so errors are told apart
        // by errno, cleared first.
        // SAFETY: errno is thread-local; these are plain system calls.
        unsafe {
            *libc::__errno_location() = 0;
            let nice = libc::getpriority(libc::PRIO_PROCESS, imp::current_thread());
            if nice == -1 && *libc::__errno_location() != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(nice)
        }
    }

    #[test]
    fn threads_started_by_a_lowered_run_are_lowered_and_the_caller_is_not() {
        // Whatever niceness the test runner was started with.
        let base = current_niceness().unwrap();
        let (inside, started) = run_lowered(|| {
            let started = std::thread::spawn(|| current_niceness().unwrap())
                .join()
                .unwrap();
            (current_niceness().unwrap(), started)
        })
        .unwrap();
        assert_eq!(inside, BACKGROUND_NICENESS);
        assert_eq!(started, BACKGROUND_NICENESS);
        assert_eq!(current_niceness().unwrap(), base);
    }

    #[test]
    fn lowers_the_calling_thread_alone() {
        let base = current_niceness().unwrap();
        let lowered = std::thread::spawn(|| {
            lower_current_thread().unwrap();
            current_niceness().unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(lowered, BACKGROUND_NICENESS);
        assert_eq!(current_niceness().unwrap(), base);
    }

    #[test]
    fn a_panic_in_a_lowered_run_reaches_the_caller() {
        let caught = std::panic::catch_unwind(|| run_lowered(|| panic!("boom")));
        assert!(caught.is_err());
    }
}
