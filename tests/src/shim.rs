//! `LD_PRELOAD` libraries that put a fault into one replica process (a
//! hung disk, a wrong clock), compiled by the test that uses them -- with
//! the `rustc` that built the tests, into the test's own directory -- from
//! the single-file sources in `tests/shims/`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Replica;

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

/// Preloads `library` into `replica` (when it next starts), with the
/// shim's control file named to it in the variable `var`. Several shims may
/// be preloaded into one replica: each adds itself to `LD_PRELOAD`.
pub fn preload(replica: &mut Replica, library: &Path, var: &str, file: &Path) {
    let library = library.display().to_string();
    match replica.env.iter_mut().find(|(k, _)| k == "LD_PRELOAD") {
        Some((_, libs)) => {
            libs.push(':');
            libs.push_str(&library);
        }
        None => replica.env.push(("LD_PRELOAD".into(), library)),
    }
    replica
        .env
        .push((var.to_string(), file.display().to_string()));
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
