//! `LD_PRELOAD` libraries that put a fault into one replica process (a
//! hung disk, a wrong clock), compiled by the test that uses them -- with
//! the `rustc` that built the tests, into the test's own directory -- from
//! the single-file sources in `tests/shims/`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Compiles `source` (the file's text) into `dir/lib{name}.so`.
pub fn build(dir: &Path, name: &str, source: &str) -> PathBuf {
    let source_path = dir.join(format!("{name}.rs"));
    std::fs::write(&source_path, source).expect("write the shim's source");
    let library = dir.join(format!("lib{name}.so"));
    let output = Command::new(rustc())
        .args(["--edition", "2024", "--crate-type", "cdylib", "-O", "-o"])
        .arg(&library)
        .arg(&source_path)
        .output()
        .expect("run rustc");
    assert!(
        output.status.success(),
        "cannot build the {name} library: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    library
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
