//! The capture options of the real binary: where files go, formats, --no-capture, and clear
//! errors. Without a terminal (as here) the lab runs its built-in demo scenario headless, which
//! captures as the lab's options say; `--script` scenarios capture as they say. Every lab here
//! binds ephemeral ports on 127.0.0.1 and writes only into a temporary directory.

mod capture_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use capture_support::*;

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

/// The path and frame count in the headless summary's "capture: N frames written to PATH".
fn reported_capture(stdout: &str) -> (PathBuf, usize) {
    let line = stdout
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("capture: "))
        .unwrap_or_else(|| panic!("no capture line in: {stdout}"));
    let rest = line.strip_prefix("capture: ").unwrap();
    let (count, path) = rest.split_once(" frames written to ").unwrap();
    (PathBuf::from(path), count.parse().unwrap())
}

#[test]
fn the_lab_writes_one_capture_per_run_into_the_capture_dir() {
    let dir = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for _ in 0..2 {
        let out = tunlab(dir.path(), &["--capture-dir", "caps"]);
        let stdout = text(&out.stdout);
        assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
        let (path, frames) = reported_capture(&stdout);
        assert!(path.starts_with("caps"), "{}", path.display());
        let packets = read_pcap(&dir.path().join(&path));
        assert_eq!(packets.len(), frames);
        // The demo's three clients: C, OK, D, D, X at least each.
        assert!(frames >= 15, "{frames} frames");
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
    let out = tunlab(dir.path(), &["--capture-format", "pcapng"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (path, frames) = reported_capture(&text(&out.stdout));
    // The default directory is captures/ in the working directory.
    assert!(path.starts_with("captures") && path.extension().unwrap() == "pcapng");
    let file = read_pcapng(&dir.path().join(path));
    assert_eq!(file.packets.len(), frames);
    let description = file.section_comment.unwrap();
    assert!(
        description.contains("tunlab scenario \"basic echo\""),
        "{description}"
    );
}

#[test]
fn no_capture_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = tunlab(dir.path(), &["--no-capture"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        !text(&out.stdout).contains("capture:"),
        "{}",
        text(&out.stdout)
    );
    assert!(!dir.path().join("captures").exists());
}

#[test]
fn an_unwritable_capture_dir_fails_at_start_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("plain-file"), b"").unwrap();
    let out = tunlab(dir.path(), &["--capture-dir", "plain-file/captures"]);
    assert_eq!(out.status.code(), Some(2), "the lab could not start");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("cannot create the capture directory 'plain-file/captures'"),
        "{stderr}"
    );
    assert!(stderr.contains("--no-capture"), "{stderr}");
    let stdout = text(&out.stdout);
    assert!(!stdout.contains("lab up"), "nothing ran: {stdout}");
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

/// A scenario with `capture = "pcapng"` writes its file where it says, and the file holds
/// exactly the frames the report counted on the link.
#[test]
fn a_script_scenario_writes_its_capture_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("capture.toml"),
        r#"
name = "capture check"
[lab]
clients = 2
capture = "pcapng"
capture_dir = "scenario-captures"

[[step]]
send = "hola mundo"

[[step]]
wait_for = "echoes"

[[step]]
close = "rst"

[[step]]
wait_for = "ids-free"
"#,
    )
    .unwrap();
    let args = ["--script", "capture.toml", "--report", "report.json"];
    let out = tunlab(dir.path(), &args);
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let report = std::fs::read_to_string(dir.path().join("report.json")).unwrap();
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    let captures = report["captures"].as_array().unwrap();
    assert_eq!(captures.len(), 1, "{report}");
    let path = PathBuf::from(captures[0].as_str().unwrap());
    assert!(path.starts_with("scenario-captures"), "{}", path.display());
    let file = read_pcapng(&dir.path().join(&path));
    assert!(file.section_comment.unwrap().contains("\"capture check\""));
    let link = &report["link"];
    let on_the_link =
        link["to_proxy2"]["sent"].as_u64().unwrap() + link["to_proxy1"]["sent"].as_u64().unwrap();
    assert_eq!(file.packets.len() as u64, on_the_link);
    assert_eq!(report["captured_frames"].as_u64().unwrap(), on_the_link);
    // Both clients' message, there and back.
    let data: Vec<_> = file
        .packets
        .iter()
        .filter(|p| p.datagram.starts_with(b"D"))
        .collect();
    assert_eq!(data.len(), 4);
    assert!(data.iter().all(|p| &p.datagram[2..] == b"hola mundo"));
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
