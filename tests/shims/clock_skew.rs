//! An `LD_PRELOAD` library that sets a process's wall clock off by an
//! amount that may change while it runs, for tests: every reading of
//! `CLOCK_REALTIME` (what `SystemTime::now` reads) gets the milliseconds
//! written in the file named by `CHAT_TEST_CLOCK_OFFSET_FILE` added (none
//! while the file is missing or unreadable). Monotonic clocks are left
//! alone, so timers and timeouts run as usual. Built by the test that uses
//! it (`chat_tests::clock_skew`), with no dependencies.

use std::ffi::{c_char, c_int, c_long, c_void};
use std::sync::OnceLock;

unsafe extern "C" {
    fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
}

/// glibc's `RTLD_NEXT`: the next definition after this library's.
const RTLD_NEXT: *mut c_void = -1isize as *mut c_void;
const CLOCK_REALTIME: c_int = 0;
const CLOCK_REALTIME_COARSE: c_int = 5;
const NANOS_PER_SEC: i128 = 1_000_000_000;

#[repr(C)]
pub struct Timespec {
    tv_sec: i64,
    tv_nsec: c_long,
}

type ClockFn = unsafe extern "C" fn(c_int, *mut Timespec) -> c_int;

fn next() -> ClockFn {
    static NEXT: OnceLock<usize> = OnceLock::new();
    let f = *NEXT.get_or_init(|| {
        // SAFETY: the name is NUL-terminated.
        let f = unsafe { dlsym(RTLD_NEXT, c"clock_gettime".as_ptr()) };
        assert!(!f.is_null(), "no next definition of clock_gettime");
        f as usize
    });
    // SAFETY: the C library's clock_gettime has exactly this signature.
    unsafe { std::mem::transmute::<usize, ClockFn>(f) }
}

/// The offset the test asks for, in milliseconds.
fn offset_ms() -> Option<i64> {
    static FILE: OnceLock<Option<std::ffi::OsString>> = OnceLock::new();
    let path = FILE
        .get_or_init(|| std::env::var_os("CHAT_TEST_CLOCK_OFFSET_FILE"))
        .as_ref()?;
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

#[unsafe(no_mangle)]
pub extern "C" fn clock_gettime(clock: c_int, tp: *mut Timespec) -> c_int {
    // SAFETY: the C library's clock_gettime, with the caller's arguments.
    let rc = unsafe { next()(clock, tp) };
    if rc == 0
        && !tp.is_null()
        && (clock == CLOCK_REALTIME || clock == CLOCK_REALTIME_COARSE)
        && let Some(ms) = offset_ms()
    {
        // SAFETY: the C library just filled in `*tp`.
        let t = unsafe { &mut *tp };
        let nanos = i128::from(t.tv_sec) * NANOS_PER_SEC
            + i128::from(t.tv_nsec)
            + i128::from(ms) * 1_000_000;
        t.tv_sec = nanos.div_euclid(NANOS_PER_SEC) as i64;
        t.tv_nsec = nanos.rem_euclid(NANOS_PER_SEC) as c_long;
    }
    rc
}
