//! The capture options of the real binary: where files go, formats, --no-capture, and clear
//! errors. Every lab here binds ephemeral ports on 127.0.0.1.

mod capture_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use capture_support::*;

const EPHEMERAL: [&str; 6] = [
    "--server-port",
    "0",
    "--proxy1-port",
    "0",
    "--proxy2-port",
    "0",
];

fn tunlab(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tunlab"))
        .current_dir(cwd)
        .args(args)
        .output()
        .expect("tunlab runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The path in the lab's final "capture: PATH (N frames)" line, and N.
fn reported_capture(stdout: &str) -> (PathBuf, usize) {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("capture: "))
        .unwrap_or_else(|| panic!("no capture line in: {stdout}"));
    let rest = line.strip_prefix("capture: ").unwrap();
    let (path, count) = rest.rsplit_once(" (").unwrap();
    let frames = count.strip_suffix(" frames)").unwrap().parse().unwrap();
    (PathBuf::from(path), frames)
}

#[test]
fn the_lab_writes_one_capture_per_run_into_the_capture_dir() {
    let dir = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for _ in 0..2 {
        let args = [&EPHEMERAL[..], &["--clients", "2", "--capture-dir", "caps"]].concat();
        let out = tunlab(dir.path(), &args);
        let stdout = text(&out.stdout);
        assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
        let (path, frames) = reported_capture(&stdout);
        assert!(stdout.contains(&format!("capturing the link to {}", path.display())));
        assert!(path.starts_with("caps"), "{}", path.display());
        let packets = read_pcap(&dir.path().join(&path));
        assert_eq!(packets.len(), frames);
        // Two clients: C, OK, D, D, X at least each.
        assert!(frames >= 10, "{frames} frames");
        paths.push(path);
    }
    // Two runs (possibly in the same second) never share a file.
    assert_ne!(paths[0], paths[1]);
    assert_eq!(
        std::fs::read_dir(dir.path().join("caps")).unwrap().count(),
        2
    );
}

#[test]
fn the_lab_writes_pcapng_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        &EPHEMERAL[..],
        &["--clients", "1", "--capture-format", "pcapng"],
    ]
    .concat();
    let out = tunlab(dir.path(), &args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (path, frames) = reported_capture(&text(&out.stdout));
    // The default directory is captures/ in the working directory.
    assert!(path.starts_with("captures") && path.extension().unwrap() == "pcapng");
    let file = read_pcapng(&dir.path().join(path));
    assert_eq!(file.packets.len(), frames);
    assert!(file.section_comment.unwrap().contains("tunlab lab"));
}

#[test]
fn no_capture_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let args = [&EPHEMERAL[..], &["--clients", "1", "--no-capture"]].concat();
    let out = tunlab(dir.path(), &args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        !text(&out.stdout).contains("capture"),
        "{}",
        text(&out.stdout)
    );
    assert!(!dir.path().join("captures").exists());
}

#[test]
fn an_unwritable_capture_dir_fails_at_start_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("plain-file"), b"").unwrap();
    let args = [&EPHEMERAL[..], &["--capture-dir", "plain-file/captures"]].concat();
    let out = tunlab(dir.path(), &args);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("cannot create the capture directory 'plain-file/captures'"),
        "{stderr}"
    );
    assert!(stderr.contains("--no-capture"), "{stderr}");
    assert!(
        text(&out.stdout).is_empty(),
        "nothing ran: {}",
        text(&out.stdout)
    );
}

#[test]
fn no_capture_and_capture_dir_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let out = tunlab(dir.path(), &["--no-capture", "--capture-dir", "x"]);
    assert_eq!(out.status.code(), Some(2), "a usage error");
    assert!(
        text(&out.stderr).contains("cannot be used with"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_standalone_proxy_rejects_a_capture_file_it_cannot_create() {
    let dir = tempfile::tempdir().unwrap();
    let out = tunlab(
        dir.path(),
        &[
            "proxy2",
            "0",
            "127.0.0.1",
            "1",
            "--capture",
            "missing-dir/p2.pcap",
        ],
    );
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("cannot create capture file 'missing-dir/p2.pcap'"),
        "{stderr}"
    );
}

#[test]
fn help_explains_the_capture_options() {
    let dir = tempfile::tempdir().unwrap();
    let lab = text(&tunlab(dir.path(), &["--help"]).stdout);
    for option in [
        "--capture-dir",
        "--no-capture",
        "--capture-format",
        "pcapng",
    ] {
        assert!(lab.contains(option), "lab --help lacks {option}");
    }
    for role in ["proxy1", "proxy2"] {
        let help = text(&tunlab(dir.path(), &[role, "--help"]).stdout);
        assert!(help.contains("--capture <FILE>"), "{role} --help: {help}");
        assert!(help.contains("--capture-format"), "{role} --help: {help}");
    }
}
