//! Finds the external tools some tests need (tshark, tmux, python3, curl) and tells the
//! compiler which are here, as `has_tshark`, `has_tmux`, `has_python3` and `has_curl`. A test that needs a missing
//! tool is then marked ignored, with the reason, so `cargo test` lists it as
//! `ignored, needs tshark` instead of passing over it in silence.
//!
//! `TUNLAB_REQUIRE_TSHARK=1` (or `_TMUX`, `_PYTHON3`, `_CURL`) makes a missing tool a build error: CI
//! sets them, so there the tests always run.

use std::env;
use std::path::PathBuf;

/// Each tool: the cfg it sets, the program, and the variable that makes it required.
const TOOLS: [(&str, &str, &str); 4] = [
    ("has_tshark", "tshark", "TUNLAB_REQUIRE_TSHARK"),
    ("has_tmux", "tmux", "TUNLAB_REQUIRE_TMUX"),
    ("has_python3", "python3", "TUNLAB_REQUIRE_PYTHON3"),
    ("has_curl", "curl", "TUNLAB_REQUIRE_CURL"),
];

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=PATH");
    let path = env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> = env::split_paths(&path).collect();
    for (cfg, program, require) in TOOLS {
        println!("cargo::rustc-check-cfg=cfg({cfg})");
        println!("cargo::rerun-if-env-changed={require}");
        let found = dirs
            .iter()
            .map(|dir| dir.join(program))
            .find(|candidate| is_executable(candidate));
        match found {
            Some(binary) => {
                println!("cargo::rustc-cfg={cfg}");
                // Noticed if it is removed or replaced.
                println!("cargo::rerun-if-changed={}", binary.display());
            }
            None => {
                assert!(
                    env::var(require).as_deref() != Ok("1"),
                    "{program} is not on PATH, and {require}=1 requires it (install it, or unset {require})"
                );
                println!(
                    "cargo::warning={program} not found: the tests that need it are marked ignored ({require}=1 makes this an error)"
                );
                // Noticed when it is installed into one of these.
                for dir in dirs.iter().filter(|dir| dir.is_dir()) {
                    println!("cargo::rerun-if-changed={}", dir.display());
                }
            }
        }
    }
}

fn is_executable(path: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
