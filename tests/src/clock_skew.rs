//! A wall clock that is off on demand, for one replica:
//! `shims/clock_skew.rs`, preloaded into the replica's process, adds the
//! offset in a file to every reading of the real-time clock -- what an
//! unsynchronized host's clock looks like to the process, without root and
//! without touching the machine's clock.

use std::path::{Path, PathBuf};

use crate::Replica;

const SHIM_SOURCE: &str = include_str!("../shims/clock_skew.rs");

pub struct ClockSkew {
    library: PathBuf,
    file: PathBuf,
}

impl ClockSkew {
    /// Builds the library under `dir`, named `name` (one per replica whose
    /// clock is to be set apart); the clock is right until [`ClockSkew::set`].
    pub fn build(dir: &Path, name: &str) -> Self {
        let library = crate::shim::build(dir, "clock_skew", SHIM_SOURCE);
        Self {
            library,
            file: dir.join(format!("{name}-clock-offset-ms")),
        }
    }

    /// Another replica's clock, with the same library.
    pub fn another(&self, name: &str) -> Self {
        Self {
            library: self.library.clone(),
            file: self.file.with_file_name(format!("{name}-clock-offset-ms")),
        }
    }

    /// Preloads the library into `replica` (when it next starts).
    pub fn attach(&self, replica: &mut Replica) {
        crate::shim::preload(
            replica,
            &self.library,
            "CHAT_TEST_CLOCK_OFFSET_FILE",
            &self.file,
        );
    }

    /// From now on the attached replica's clock reads `offset_ms` later
    /// than the real time (negative: earlier).
    pub fn set(&self, offset_ms: i64) {
        std::fs::write(&self.file, offset_ms.to_string()).expect("write the clock offset");
    }

    /// The attached replica's clock is right again.
    pub fn reset(&self) {
        let _ = std::fs::remove_file(&self.file);
    }
}
