//! A disk that hangs on demand, for one replica: `shims/disk_stall.rs`,
//! preloaded into the replica's process, holds every `fdatasync` and
//! `fsync` while a file exists -- what a disk that stops answering looks
//! like to the process (its threads block in the call), without root or a
//! device-mapper target.
//!
//! The library is compiled by the test itself (`crate::shim`).

use std::path::{Path, PathBuf};

use crate::Replica;

const SHIM_SOURCE: &str = include_str!("../shims/disk_stall.rs");

pub struct DiskStall {
    library: PathBuf,
    file: PathBuf,
}

impl DiskStall {
    /// Builds the library under `dir`; the disk runs until [`DiskStall::hang`].
    pub fn build(dir: &Path) -> Self {
        Self {
            library: crate::shim::build(dir, "disk_stall", SHIM_SOURCE),
            file: dir.join("disk-stalled"),
        }
    }

    /// Preloads the library into `replica` (when it next starts).
    pub fn attach(&self, replica: &mut Replica) {
        crate::shim::preload(replica, &self.library, "CHAT_TEST_STALL_FILE", &self.file);
    }

    /// From now on every fdatasync and fsync of the attached replica waits.
    pub fn hang(&self) {
        std::fs::write(&self.file, b"").expect("create the stall file");
    }

    /// The waiting calls go on, and later ones do not wait.
    pub fn release(&self) {
        let _ = std::fs::remove_file(&self.file);
    }
}

impl Drop for DiskStall {
    fn drop(&mut self) {
        self.release();
    }
}
