//! Ctrl-C or SIGTERM during a headless run: the run stops early but cleanly, with a report
//! that says so and a capture file that is complete and readable.

use std::time::Duration;

use std::process::{Command, Stdio};

fn scenario(dir: &std::path::Path) -> String {
    format!(
        r#"
name = "interrupted"
deadline = "60s"

[lab]
clients = 2
capture = "pcap"
capture_dir = "{}"

[[step]]
send_size = 3000
count = 1000
interval = "20ms"
"#,
        dir.display()
    )
}

fn interrupt_a_running_scenario(signal: libc::c_int) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("interrupted.toml");
    std::fs::write(&path, scenario(dir.path())).unwrap();
    let report = dir.path().join("report.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_tunlab"))
        .arg("--script")
        .arg(&path)
        .arg("--report")
        .arg(&report)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // Let traffic flow for a while (the scenario would run for 20 s).
    std::thread::sleep(Duration::from_millis(800));
    // SAFETY: sending a signal to our own child process.
    #[allow(unsafe_code)]
    let sent = unsafe { libc::kill(child.id() as libc::pid_t, signal) };
    assert_eq!(sent, 0);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "tunlab did not stop after the signal"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(1), "an interrupted run did not pass");

    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(report["passed"], false);
    let first = &report["expectations"][0];
    assert!(
        first["detail"]
            .as_str()
            .unwrap()
            .contains("interrupted by a signal"),
        "{first}"
    );
    let captures = report["captures"].as_array().unwrap();
    assert_eq!(captures.len(), 1, "{report}");

    // The capture holds every frame the lab tapped, and reads to the end cleanly.
    let file = std::fs::File::open(captures[0].as_str().unwrap()).unwrap();
    let mut reader = pcap_file::pcap::PcapReader::new(file).unwrap();
    let mut frames = 0u64;
    while let Some(packet) = reader.next_packet() {
        packet.expect("every packet reads cleanly");
        frames += 1;
    }
    assert!(frames > 10, "traffic was flowing: {frames} frames");
    assert_eq!(
        report["captured_frames"].as_u64(),
        Some(frames),
        "nothing was lost on the way to disk"
    );
}

#[test]
fn sigint_stops_a_headless_run_with_a_full_capture_and_report() {
    interrupt_a_running_scenario(libc::SIGINT);
}

#[test]
fn sigterm_stops_a_headless_run_with_a_full_capture_and_report() {
    interrupt_a_running_scenario(libc::SIGTERM);
}
