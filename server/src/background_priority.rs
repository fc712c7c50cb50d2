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
//! to run code on the threads it starts, so [`lower_threads_named`] finds
//! them by name among the process's threads (`/proc/self/task`) once the
//! database is open. The database is *opened* at normal priority: opening
//! replays the journal (up to 64 MB, a second or more of CPU), and a
//! replica restarting beside busy neighbours -- other replicas, other
//! programs -- must not wait behind all of them: opened on a lowered
//! thread, a replica restarted by the fault-injection test sat over a
//! minute replaying its journal while its two peers kept both cores busy.
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

/// Lowers every thread of this process named `name` to
/// [`BACKGROUND_NICENESS`] and returns how many it lowered, or `None` where
/// niceness is not per thread (not Linux: nothing is done). A thread names
/// itself as it starts, so one spawned a moment ago may not carry its name
/// yet: the threads are looked for again, for at most `within`, until
/// `expected` are found. (In a process holding several stores -- `verify`,
/// tests -- each opening lowers every worker it finds by then.)
pub fn lower_threads_named(
    name: &str,
    expected: usize,
    within: std::time::Duration,
) -> io::Result<Option<usize>> {
    if !cfg!(target_os = "linux") {
        return Ok(None);
    }
    let deadline = std::time::Instant::now() + within;
    loop {
        let lowered = imp::lower_named(name)?;
        if lowered >= expected || std::time::Instant::now() >= deadline {
            return Ok(Some(lowered));
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

#[cfg(target_os = "linux")]
mod imp {
    use std::io;

    pub fn current_thread() -> libc::id_t {
        // SAFETY: gettid has no preconditions and cannot fail.
        unsafe { libc::gettid() as libc::id_t }
    }

    pub fn lower_current() -> io::Result<()> {
        lower(current_thread())
    }

    fn lower(thread: libc::id_t) -> io::Result<()> {
        // PRIO_PROCESS with a thread id sets that one thread's niceness
        // (setpriority(2), "Linux notes").
        // SAFETY: plain system call on integer arguments.
        let rc =
            unsafe { libc::setpriority(libc::PRIO_PROCESS, thread, super::BACKGROUND_NICENESS) };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    pub fn lower_named(name: &str) -> io::Result<usize> {
        let mut lowered = 0;
        for task in std::fs::read_dir("/proc/self/task")? {
            let task = task?;
            let Some(tid) = task
                .file_name()
                .to_str()
                .and_then(|t| t.parse::<libc::id_t>().ok())
            else {
                continue;
            };
            // A thread that ended meanwhile has no comm any more: skip it.
            let Ok(comm) = std::fs::read_to_string(task.path().join("comm")) else {
                continue;
            };
            if comm.trim_end_matches('\n') == name {
                match lower(tid) {
                    Ok(()) => lowered += 1,
                    // It ended between the two reads.
                    Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(lowered)
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use std::io;

    pub fn lower_current() -> io::Result<()> {
        Ok(())
    }

    pub fn lower_named(_name: &str) -> io::Result<usize> {
        Ok(0)
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
    fn threads_are_lowered_by_name_and_no_others() {
        let base = current_niceness().unwrap();
        let (report, reports) = std::sync::mpsc::channel();
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let probe = std::thread::Builder::new()
            .name("nice-probe".into())
            .spawn(move || {
                wait.recv().unwrap();
                report.send(current_niceness().unwrap()).unwrap();
            })
            .unwrap();
        let other = std::thread::spawn(|| current_niceness().unwrap());
        let lowered =
            lower_threads_named("nice-probe", 1, std::time::Duration::from_secs(5)).unwrap();
        assert_eq!(lowered, Some(1));
        go.send(()).unwrap();
        assert_eq!(reports.recv().unwrap(), BACKGROUND_NICENESS);
        probe.join().unwrap();
        assert_eq!(other.join().unwrap(), base);
        assert_eq!(current_niceness().unwrap(), base);
        // None of that name left: nothing lowered, after the wait.
        assert_eq!(
            lower_threads_named("nice-probe", 1, std::time::Duration::from_millis(20)).unwrap(),
            Some(0)
        );
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
}
