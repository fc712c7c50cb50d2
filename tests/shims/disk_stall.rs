//! An `LD_PRELOAD` library that makes a process's disk hang on demand, for
//! tests: while the file named by `CHAT_TEST_STALL_FILE` exists, every
//! `fdatasync` and `fsync` waits (as on a disk that stopped answering);
//! once it is gone, they go on to the C library's. Built by the test that
//! uses it (`chat_tests::disk_stall_shim`), with no dependencies.

use std::ffi::{c_char, c_int, c_void};
use std::time::Duration;

unsafe extern "C" {
    fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
}

/// glibc's `RTLD_NEXT`: the next definition after this library's.
const RTLD_NEXT: *mut c_void = -1isize as *mut c_void;

type SyncFn = unsafe extern "C" fn(c_int) -> c_int;

fn stall() {
    let Some(path) = std::env::var_os("CHAT_TEST_STALL_FILE") else {
        return;
    };
    while std::path::Path::new(&path).exists() {
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn next(name: &'static [u8]) -> SyncFn {
    // SAFETY: `name` is NUL-terminated, and the symbols looked up are
    // functions of exactly this signature.
    unsafe {
        let f = dlsym(RTLD_NEXT, name.as_ptr().cast());
        assert!(!f.is_null(), "no next definition of a sync function");
        std::mem::transmute::<*mut c_void, SyncFn>(f)
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn fdatasync(fd: c_int) -> c_int {
    stall();
    // SAFETY: the C library's fdatasync, with the caller's argument.
    unsafe { next(b"fdatasync\0")(fd) }
}

#[unsafe(no_mangle)]
pub extern "C" fn fsync(fd: c_int) -> c_int {
    stall();
    // SAFETY: the C library's fsync, with the caller's argument.
    unsafe { next(b"fsync\0")(fd) }
}
