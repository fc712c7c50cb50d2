//! A disk that hangs on demand, for one replica: `shims/disk_stall.rs`,
//! preloaded into the replica's process, holds every `fdatasync` and
//! `fsync` while a file exists -- what a disk that stops answering looks
//! like to the process (its threads block in the call), without root or a
//! device-mapper target.
//!
//! The library is compiled by the test itself (with the `rustc` that built
//! the tests), into the test's own directory.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Replica;

const SHIM_SOURCE: &str = include_str!("../shims/disk_stall.rs");

pub struct DiskStall {
    library: PathBuf,
    file: PathBuf,
}

impl DiskStall {
    /// Builds the library under `dir`; the disk runs until [`DiskStall::hang`].
    pub fn build(dir: &Path) -> Self {
        let source = dir.join("disk_stall.rs");
        std::fs::write(&source, SHIM_SOURCE).expect("write the shim's source");
        let library = dir.join("libdisk_stall.so");
        let output = Command::new(rustc())
            .args(["--edition", "2024", "--crate-type", "cdylib", "-O", "-o"])
            .arg(&library)
            .arg(&source)
            .output()
            .expect("run rustc");
        assert!(
            output.status.success(),
            "cannot build the disk-stall library: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Self {
            library,
            file: dir.join("disk-stalled"),
        }
    }

    /// Preloads the library into `replica` (when it next starts).
    pub fn attach(&self, replica: &mut Replica) {
        replica
            .env
            .push(("LD_PRELOAD".into(), self.library.display().to_string()));
        replica.env.push((
            "CHAT_TEST_STALL_FILE".into(),
            self.file.display().to_string(),
        ));
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

/// The compiler cargo used, or the one on the PATH (the rustup proxy picks
/// the same toolchain in this workspace).
fn rustc() -> PathBuf {
    if let Some(rustc) = std::env::var_os("RUSTC") {
        return rustc.into();
    }
    if let Some(cargo) = std::env::var_os("CARGO") {
        let beside = Path::new(&cargo).with_file_name("rustc");
        if beside.exists() {
            return beside;
        }
    }
    "rustc".into()
}
