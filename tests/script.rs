//! The headless scenario runner, through the real binary: every shipped scenario passes and
//! its report says what happened; a false expectation exits 1; a broken file exits 2 naming
//! its line; the deadline stops a scenario that would hang; the JSON shape is pinned.
//!
//! Every lab here binds 127.0.0.1 on ports the OS picks ("auto"), so tests run in parallel.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const TUNLAB: &str = env!("CARGO_BIN_EXE_tunlab");

fn scenario_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("assets/scenarios")
        .join(name)
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
    report: Option<Value>,
}

/// Runs `tunlab --script FILE --report …` and reads the report back, if one was written.
fn run_script(scenario: &Path) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let report_path = dir.path().join("report.json");
    let output = Command::new(TUNLAB)
        .arg("--script")
        .arg(scenario)
        .arg("--report")
        .arg(&report_path)
        // Anything the scenario writes (captures) stays in the temporary directory.
        .current_dir(dir.path())
        .output()
        .expect("tunlab runs");
    finish(output, &report_path)
}

fn finish(output: Output, report_path: &Path) -> Run {
    let report = std::fs::read_to_string(report_path)
        .ok()
        .map(|text| serde_json::from_str(&text).expect("the report is JSON"));
    Run {
        code: output.status.code().expect("tunlab exited normally"),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        report,
    }
}

/// Writes a scenario into a temporary directory (kept alive by the returned guard).
fn temp_scenario(name: &str, text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

impl Run {
    fn report(&self) -> &Value {
        self.report.as_ref().unwrap_or_else(|| {
            panic!(
                "no report written\nstdout:\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    /// Asserts exit 0 and that the report agrees, with the output on failure.
    fn assert_passed(&self) {
        assert_eq!(
            self.code, 0,
            "expected a pass\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        let report = self.report();
        assert_eq!(report["passed"], true);
        for expectation in report["expectations"].as_array().unwrap() {
            assert_eq!(expectation["passed"], true, "{expectation}");
        }
        assert!(self.stdout.contains("PASSED"), "{}", self.stdout);
    }

    /// The report's entry for lab client `n`.
    fn connection(&self, n: u64) -> &Value {
        self.report()["connections"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["client"] == n)
            .unwrap_or_else(|| panic!("no connection for client {n}"))
    }
}

#[test]
fn basic_echo_scenario_passes_and_reports_every_connection() {
    let run = run_script(&scenario_path("basic.toml"));
    run.assert_passed();
    let report = run.report();
    assert_eq!(report["scenario"], "basic echo");
    let connections = report["connections"].as_array().unwrap();
    assert_eq!(connections.len(), 3);
    let mut ids = BTreeSet::new();
    for c in connections {
        assert_eq!(c["intact"], true, "{c}");
        assert_eq!(c["close"], "fin", "{c}");
        assert_eq!(c["sent_bytes"], c["echoed_bytes"], "{c}");
        assert_eq!(c["bytes_to_proxy2"], c["sent_bytes"], "{c}");
        assert_eq!(c["bytes_to_proxy1"], c["sent_bytes"], "{c}");
        ids.insert(c["id"].as_u64().unwrap());
    }
    assert_eq!(ids.len(), 3, "three distinct tunnel ids");
    // Client 2 sent "hola mundo" and 4000 bytes: at least 1 + 3 D frames, plus C and X.
    assert!(run.connection(2)["frames_to_proxy2"].as_u64().unwrap() >= 6);
    for direction in ["to_proxy2", "to_proxy1"] {
        let link = &report["link"][direction];
        assert_eq!(link["sent"], link["delivered"], "{link}");
        assert_eq!(link["dropped"], 0);
        assert_eq!(link["malformed"], 0);
    }
    // Three closes, each X sent three times (--close-attempts).
    assert_eq!(report["frames"]["to_proxy2"]["sent"]["close"], 9);
    assert_eq!(report["captures"], serde_json::json!([]));
    // The step log and the summary table are on stdout.
    assert!(run.stdout.contains("send \"hola mundo\""), "{}", run.stdout);
    assert!(run.stdout.contains("connections"), "{}", run.stdout);
}

#[test]
fn ten_plus_one_scenario_shows_the_waiting_client_proceed_and_the_next_give_up() {
    let run = run_script(&scenario_path("ten-plus-one.toml"));
    run.assert_passed();
    let connections = run.report()["connections"].as_array().unwrap();
    assert_eq!(connections.len(), 12);
    let eleventh = run.connection(11);
    assert_eq!(eleventh["waited"], true);
    assert_eq!(eleventh["intact"], true);
    assert!(eleventh["id"].is_u64(), "{eleventh}");
    let twelfth = run.connection(12);
    assert_eq!(twelfth["waited"], true);
    assert_eq!(twelfth["id"], Value::Null, "it never got an id");
    assert_eq!(twelfth["close"], "no-free-id");
    for n in 1..=10 {
        assert_eq!(run.connection(n)["waited"], false);
    }
}

#[test]
fn fin_versus_rst_scenario_shows_both_as_x_and_frees_both_ids() {
    // It captures the TCP legs too, which needs CAP_NET_RAW: its own namespace gives it that
    // (tests/tcp_capture.rs checks the capture itself).
    let dir = tempfile::tempdir().unwrap();
    let report_path = dir.path().join("report.json");
    let output = Command::new(TUNLAB)
        .arg("--netns")
        .arg("--script")
        .arg(scenario_path("fin-vs-rst.toml"))
        .arg("--report")
        .arg(&report_path)
        .current_dir(dir.path())
        .output()
        .expect("tunlab runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    if stderr.contains("cannot create a user and network namespace") {
        assert!(
            std::env::var("TUNLAB_REQUIRE_NETNS").as_deref() != Ok("1"),
            "--netns is refused here, and TUNLAB_REQUIRE_NETNS=1: {stderr}"
        );
        eprintln!("fin_versus_rst: skipped (no user namespaces here: {stderr})");
        return;
    }
    let run = finish(output, &report_path);
    run.assert_passed();
    assert!(run.report()["captured_tcp_segments"].as_u64().unwrap() > 0);
    assert_eq!(run.connection(1)["close"], "fin");
    assert_eq!(run.connection(2)["close"], "rst");
    // Client 3 got the least recently used id: 2, never used, not the just-freed 0 or 1.
    assert_eq!(run.connection(3)["id"], 2);
    let frames = &run.report()["frames"];
    // Three closes, each X sent three times (--close-attempts).
    assert_eq!(frames["to_proxy2"]["sent"]["close"], 9);
    assert_eq!(frames["to_proxy2"]["received"]["close"], 9);
    assert_eq!(frames["to_proxy1"]["sent"]["close"], 0);
}

#[test]
fn server_down_scenario_refuses_with_nok() {
    let run = run_script(&scenario_path("server-down.toml"));
    run.assert_passed();
    assert_eq!(run.connection(1)["close"], "tunnel");
    assert_eq!(run.connection(2)["close"], "refused");
    assert_eq!(run.connection(3)["intact"], true);
    assert_eq!(run.report()["frames"]["to_proxy1"]["sent"]["nok"], 1);
}

#[test]
fn proxy2_down_scenario_retries_then_closes_the_client() {
    let run = run_script(&scenario_path("proxy2-down.toml"));
    run.assert_passed();
    assert_eq!(run.connection(2)["close"], "unanswered");
    assert_eq!(run.connection(1)["close"], "tunnel");
    assert_eq!(run.connection(3)["intact"], true);
    // The three C frames sent while proxy2 was down never arrived, nor the X frames proxy1
    // then sent in case a C had arrived and only its OK was lost: the first at least (the
    // other two may find proxy2 back).
    let to_proxy2 = &run.report()["link"]["to_proxy2"];
    let dropped = to_proxy2["dropped"].as_u64().unwrap();
    assert!((4..=6).contains(&dropped), "{to_proxy2}");
}

#[test]
fn lossy_link_scenario_shows_the_loss_and_the_tunnel_recovers() {
    let run = run_script(&scenario_path("lossy-link.toml"));
    run.assert_passed();
    let report = run.report();
    let to_proxy2 = &report["link"]["to_proxy2"];
    let lost = to_proxy2["dropped_by"]["loss"].as_u64().unwrap();
    // Client 2's three C frames, and part of client 1's data.
    assert!(lost > 3, "{to_proxy2}");
    assert_eq!(
        to_proxy2["dropped"], lost,
        "nothing lost beyond the emulator"
    );
    assert_eq!(
        to_proxy2["sent"].as_u64().unwrap(),
        to_proxy2["delivered"].as_u64().unwrap() + lost
    );
    assert_eq!(report["link"]["to_proxy1"]["dropped"], 0);
    assert_eq!(report["link"]["seed"], 81);
    assert_eq!(
        report["link"]["settings"]["to_proxy2"]["loss"], 0.0,
        "cleared at the end"
    );
    // By type, from the emulator's own counters: the dark period's three C frames (and the
    // X proxy1 then sends for client 2), the lossy period's D frames; together every frame
    // it dropped.
    let types = &to_proxy2["dropped_types"];
    assert_eq!(types["C"], 3, "{types}");
    let by_type: u64 = ["C", "OK", "NOK", "D", "X"]
        .iter()
        .map(|t| types[t].as_u64().unwrap())
        .sum();
    assert_eq!(
        by_type,
        to_proxy2["dropped_by"]["loss"].as_u64().unwrap(),
        "{to_proxy2}"
    );
    // The report has the settings at the start (clear) as well as at the end.
    assert_eq!(report["link_at_start"]["to_proxy2"]["loss"], 0.0);
    assert_eq!(run.connection(1)["intact"], false, "client 1 lost data");
    assert_eq!(run.connection(3)["intact"], true);
    assert!(
        run.stdout.contains("link emulator, seed 81:"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("link to_proxy2 = { loss = 30 }"),
        "{}",
        run.stdout
    );
}

#[test]
fn any_seed_tunlab_takes_fits_a_scenario_and_the_report_shows_both_link_settings() {
    let (_dir, path) = temp_scenario(
        "seed.toml",
        r#"
[lab]
clients = 1
[lab.link]
seed = "18446744073709551615"
to_proxy1 = { delay = "1ms" }
[[step]]
wait_for = "open"
[[step]]
link = { to_proxy1 = { blackhole = true } }
[[step]]
send = "hola"
[[step]]
wait = "200ms"
[[step]]
link = { clear = true }
[[expect]]
dropped = "D"
direction = "to-proxy1"
exactly = 1
[[expect]]
dropped = "any"
direction = "to-proxy2"
exactly = 0
"#,
    );
    let run = run_script(&path);
    run.assert_passed();
    let report = run.report();
    assert_eq!(report["link"]["seed"], u64::MAX);
    assert_eq!(report["link_at_start"]["to_proxy1"]["delay"], "1ms");
    assert_eq!(report["link"]["settings"]["to_proxy1"]["delay"], "0s");
    assert_eq!(report["link"]["to_proxy1"]["dropped_types"]["D"], 1);
    assert!(
        run.stdout
            .contains("at start: p1→p2 clear · p2→p1 delay 1ms"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("at end:   p1→p2 clear · p2→p1 clear"),
        "{}",
        run.stdout
    );

    // Unquoted, a seed above 2^63 - 1 is not a TOML integer: the message says what to write.
    let (_dir, path) = temp_scenario("big.toml", "[lab.link]\nseed = 18446744073709551615\n");
    let run = run_script(&path);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("write a larger seed in quotes"),
        "{}",
        run.stderr
    );
}

/// After a lossy period `wait_for = "ids-free"` may wait for an `X` that was lost: the step
/// says which id, at which proxy, and that the idle timeout frees it; with a short
/// `idle_timeout` it then holds.
#[test]
fn ids_free_after_a_lost_x_says_why_and_the_idle_timeout_frees_it() {
    let scenario = |idle: &str| {
        format!(
            r#"
[lab]
clients = 1
[lab.tunnel]
idle_timeout = "{idle}"
close_attempts = 1
[[step]]
wait_for = "open"
[[step]]
link = {{ to_proxy2 = {{ blackhole = true }} }}
[[step]]
close = "rst"
[[step]]
wait = "800ms"
[[step]]
link = {{ clear = true }}
[[step]]
wait_for = "ids-free"
timeout = "1500ms"
[[expect]]
dropped = "X"
direction = "to-proxy2"
exactly = 1
"#
        )
    };
    let (_dir, path) = temp_scenario("lost-x.toml", &scenario("5m"));
    let run = run_script(&path);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(
        run.stdout.contains(
            "id 0 still taken at proxy2 (if proxy1's X0 was lost, proxy2 frees it after idle_timeout, 5m)"
        ),
        "{}",
        run.stdout
    );
    let (_dir, path) = temp_scenario("lost-x-short-idle.toml", &scenario("500ms"));
    run_script(&path).assert_passed();
}

#[test]
fn lost_echo_scenario_steps_the_link_and_classic_mode_loses_the_echo() {
    let run = run_script(&scenario_path("lost-echo.toml"));
    run.assert_passed();
    let report = run.report();
    let to_proxy1 = &report["link"]["to_proxy1"];
    assert_eq!(to_proxy1["dropped_by"]["by_hand"], 1, "{to_proxy1}");
    assert_eq!(to_proxy1["dropped_types"]["D"], 1, "{to_proxy1}");
    // "hola" (4 B) never came back; "otra vez" (8 B) did, and is compared with "hola…".
    let client = run.connection(1);
    assert_eq!(client["sent_bytes"], 12);
    assert_eq!(client["echoed_bytes"], 8);
    assert_eq!(client["intact"], false);
    for line in [
        "hold the link (step mode)",
        "release the first C frame held",
        "drop the first D frame of id 0 p2→p1 held",
        "let the link flow (release everything held)",
    ] {
        assert!(run.stdout.contains(line), "{line}:\n{}", run.stdout);
    }
}

#[test]
fn a_held_frame_step_without_a_hold_is_refused_and_one_that_never_comes_fails_clearly() {
    let (_dir, path) = temp_scenario(
        "nohold.toml",
        "[lab]\nclients = 1\n[[step]]\ndrop = \"D\"\n",
    );
    let run = run_script(&path);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("add a step `hold = true`"),
        "{}",
        run.stderr
    );

    let (_dir, path) = temp_scenario(
        "never.toml",
        "[lab]\nclients = 1\n[[step]]\nwait_for = \"open\"\n[[step]]\nhold = true\n[[step]]\ndrop = \"X\"\ntimeout = \"300ms\"\n",
    );
    let run = run_script(&path);
    assert_eq!(run.code, 1);
    assert!(
        run.stdout
            .contains("the first X frame held did not come within 300ms; nothing is held"),
        "{}",
        run.stdout
    );
}

/// A held-frame step that fails names what is held as the trace does: in the extended modes,
/// with sequence numbers counted from the connection's ISNs (the first data frame is seq 0).
#[test]
fn a_failed_held_frame_step_numbers_the_held_frames_as_the_trace_does() {
    let (_dir, path) = temp_scenario(
        "held.toml",
        r#"[lab]
clients = 1
wire = "selective-repeat"
[[step]]
wait_for = "open"
[[step]]
hold = true
[[step]]
send = "hola"
[[step]]
drop = "X"
timeout = "500ms"
"#,
    );
    let run = run_script(&path);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(
        run.stdout.contains(
            "the first X frame held did not come within 500ms; held: p1→p2 D0 seq=0 len=4 \"hola\""
        ),
        "{}",
        run.stdout
    );
}

/// The report's exact transport totals: (data frames, retransmits by timeout, fast) at
/// proxy1 then proxy2.
fn transport_totals(report: &Value) -> [(u64, u64, u64); 2] {
    ["proxy1", "proxy2"].map(|at| {
        let t = &report["transport"][at];
        let n = |key: &str| {
            t[key]
                .as_u64()
                .unwrap_or_else(|| panic!("transport.{at}.{key} in {t}"))
        };
        (
            n("data_frames_sent"),
            n("retransmits_timeout"),
            n("retransmits_fast"),
        )
    })
}

fn retransmits(report: &Value) -> u64 {
    transport_totals(report)
        .iter()
        .map(|(_, timeout, fast)| timeout + fast)
        .sum()
}

#[test]
fn stop_and_wait_scenario_makes_every_loss_good_on_the_timer() {
    let run = run_script(&scenario_path("stop-and-wait-loss.toml"));
    run.assert_passed();
    let report = run.report();
    let [p1, p2] = transport_totals(report);
    // 12,000 generated bytes each way per client: at least 9 frames of at most 1497 bytes.
    assert!(p1.0 >= 2 * 9 && p2.0 >= 2 * 9, "{p1:?} {p2:?}");
    assert!(p1.1 + p2.1 > 0, "the timer resent frames");
    assert_eq!(p1.2 + p2.2, 0, "no fast retransmit in stop-and-wait");
    // Every data frame beyond the first copies is a retransmission: the frames the link
    // lost were all sent again (each D lost needs one more send; a lost A too).
    let lost_d = report["link"]["to_proxy2"]["dropped_types"]["D"]
        .as_u64()
        .unwrap()
        + report["link"]["to_proxy1"]["dropped_types"]["D"]
            .as_u64()
            .unwrap();
    assert!(retransmits(report) >= lost_d, "{report}");
    // The per-client numbers are each connection's share of the totals.
    let per_client: u64 = [1, 2]
        .iter()
        .map(|&n| {
            let c = run.connection(n);
            assert_eq!(c["intact"], true, "{c}");
            c["retransmits_to_proxy2"].as_u64().unwrap()
                + c["retransmits_to_proxy1"].as_u64().unwrap()
        })
        .sum();
    assert_eq!(per_client, retransmits(report));
    assert!(run.stdout.contains("transport p1→p2:"), "{}", run.stdout);
}

/// Go-Back-N and Selective Repeat under the same seeded loss and the same traffic: both
/// deliver every byte, and Selective Repeat sends fewer frames again.
#[test]
fn selective_repeat_resends_fewer_frames_than_go_back_n_under_the_same_loss() {
    let gbn = run_script(&scenario_path("go-back-n-loss.toml"));
    let sr = run_script(&scenario_path("selective-repeat-loss.toml"));
    gbn.assert_passed();
    sr.assert_passed();
    for run in [&gbn, &sr] {
        let report = run.report();
        assert_eq!(report["link"]["seed"], 11);
        assert_eq!(report["link_at_start"]["to_proxy2"]["loss"], 3.0);
        assert_eq!(run.connection(1)["sent_bytes"], 16 * 16384);
        assert_eq!(run.connection(1)["intact"], true);
    }
    let (gbn_resent, sr_resent) = (retransmits(gbn.report()), retransmits(sr.report()));
    assert!(
        sr_resent > 0,
        "the loss cost Selective Repeat something too"
    );
    assert!(
        sr_resent * 2 < gbn_resent,
        "Selective Repeat resent {sr_resent} frames, Go-Back-N {gbn_resent}"
    );
    // The data frames tell the same: Go-Back-N's extra sends are its retransmissions.
    let data = |run: &Run| -> u64 { transport_totals(run.report()).iter().map(|t| t.0).sum() };
    assert!(data(&sr) < data(&gbn), "{} vs {}", data(&sr), data(&gbn));
}

/// The round-trip samples are in the JSON report as on `/metrics`: counted, with a mean
/// that is a plausible loopback round trip, and cumulative buckets up to the count.
#[test]
fn the_report_carries_each_proxys_round_trip_samples() {
    let run = run_script(&scenario_path("selective-repeat-reorder.toml"));
    run.assert_passed();
    for proxy in ["proxy1", "proxy2"] {
        let rtt = &run.report()["transport"][proxy]["rtt"];
        let samples = rtt["samples"].as_u64().unwrap();
        assert!(samples > 0, "{proxy}: {rtt}");
        let mean = rtt["mean_seconds"].as_f64().unwrap();
        assert!(mean > 0.0 && mean < 10.0, "{proxy}: {rtt}");
        let cumulative: Vec<u64> = rtt["buckets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["samples"].as_u64().unwrap())
            .collect();
        assert_eq!(cumulative.len(), 16, "{proxy}: {rtt}");
        assert!(cumulative.is_sorted(), "cumulative: {cumulative:?}");
        assert!(*cumulative.last().unwrap() <= samples);
    }
    // Classic has no acks, so no samples and no mean.
    let classic = run_script(&scenario_path("basic.toml"));
    let rtt = &classic.report()["transport"]["proxy1"]["rtt"];
    assert_eq!(rtt["samples"], 0, "{rtt}");
    assert!(rtt["mean_seconds"].is_null(), "{rtt}");
}

#[test]
fn selective_repeat_scenario_survives_reordering_and_duplication() {
    let run = run_script(&scenario_path("selective-repeat-reorder.toml"));
    run.assert_passed();
    let report = run.report();
    for direction in ["to_proxy2", "to_proxy1"] {
        let link = &report["link"][direction];
        assert!(link["reordered"].as_u64().unwrap() > 0, "{link}");
        assert!(link["duplicated"].as_u64().unwrap() > 0, "{link}");
    }
    for n in 1..=3 {
        let c = run.connection(n);
        assert_eq!(c["sent_bytes"], 4 * 20000, "{c}");
        assert_eq!(c["intact"], true, "{c}");
    }
}

#[test]
fn a_retransmits_expectation_fails_when_its_bound_does_not_hold() {
    let (_dir, path) = temp_scenario(
        "strict.toml",
        r#"
[lab]
wire = "selective-repeat"
clients = 1

[lab.tunnel]
window = 8
rto = "20ms"

[lab.link]
seed = 3
to_proxy2 = { loss = 30 }

[[step]]
send_size = 30000

[[step]]
wait_for = "echoes"

[[expect]]
echo_intact = 1

[[expect]]
name = "impossible: no retransmission at 30% loss"
retransmits = "any"
client = 1
direction = "to-proxy2"
exactly = 0

# Any cause: whether a lost frame is resent on the timer, after duplicate acks or as a
# probe depends on timing (a loaded CI machine saw no timeout at all).
[[expect]]
name = "some, in all"
retransmits = "any"
min = 1
"#,
    );
    let run = run_script(&path);
    assert_eq!(run.code, 1, "{}", run.stdout);
    let verdicts = run.report()["expectations"].as_array().unwrap();
    let by_name = |name: &str| {
        verdicts
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no verdict {name}"))
    };
    assert_eq!(by_name("every echo intact (client 1)")["passed"], true);
    let impossible = by_name("impossible: no retransmission at 30% loss");
    assert_eq!(impossible["passed"], false, "{impossible}");
    assert!(
        impossible["detail"]
            .as_str()
            .unwrap()
            .contains("client 1's connection:"),
        "{impossible}"
    );
    assert_eq!(by_name("some, in all")["passed"], true);
}

#[test]
fn every_shipped_scenario_has_a_test_here() {
    let tested = [
        "basic.toml",
        "fin-vs-rst.toml",
        "lossy-link.toml",
        "lost-echo.toml",
        "proxy2-down.toml",
        "server-down.toml",
        "ten-plus-one.toml",
        "stop-and-wait-loss.toml",
        "go-back-n-loss.toml",
        "selective-repeat-loss.toml",
        "selective-repeat-reorder.toml",
        "sealed-link.toml",
        "socks5-blocklist.toml",
    ];
    let shipped: BTreeSet<String> =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/scenarios"))
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".toml"))
            .collect();
    let tested: BTreeSet<String> = tested
        .iter()
        .map(std::string::ToString::to_string)
        .collect();
    assert_eq!(shipped, tested, "add a test for each new scenario");
}

#[test]
fn the_capture_sees_every_frame_of_the_link() {
    let (_dir, path) = temp_scenario(
        "capture.toml",
        r#"
[lab]
clients = 2
capture = "pcap"

[[step]]
send = "hola mundo"

[[step]]
wait_for = "echoes"

[[step]]
close = "fin"

[[step]]
wait_for = "ids-free"

# Two closes, each X sent three times (--close-attempts).
[[expect]]
captured = "X"
exactly = 6

[[expect]]
captured = "OK"
exactly = 2
"#,
    );
    let run = run_script(&path);
    run.assert_passed();
    let report = run.report();
    let link = &report["link"];
    let on_the_link =
        link["to_proxy2"]["sent"].as_u64().unwrap() + link["to_proxy1"]["sent"].as_u64().unwrap();
    assert_eq!(report["captured_frames"], on_the_link);
}

#[test]
fn a_false_expectation_exits_1_and_the_report_says_which() {
    let (_dir, path) = temp_scenario(
        "false.toml",
        r#"
[lab]
clients = 1

[[step]]
send = "hola mundo"

[[step]]
wait_for = "echoes"

[[expect]]
echo_intact = "all"

[[expect]]
name = "a deliberately false count"
frames = "C"
direction = "to-proxy2"
exactly = 99
"#,
    );
    let run = run_script(&path);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let report = run.report();
    assert_eq!(report["passed"], false);
    let expectations = report["expectations"].as_array().unwrap();
    assert_eq!(expectations.len(), 3, "the steps check plus two");
    assert_eq!(expectations[0]["passed"], true, "the steps finished");
    assert_eq!(expectations[1]["passed"], true, "the echo was intact");
    let wrong = &expectations[2];
    assert_eq!(wrong["name"], "a deliberately false count");
    assert_eq!(wrong["passed"], false);
    assert_eq!(wrong["line"], 14);
    assert_eq!(wrong["detail"], "1 counted");
    assert!(run.stdout.contains("FAIL"), "{}", run.stdout);
    assert!(run.stdout.contains("FAILED"), "{}", run.stdout);
}

#[test]
fn a_broken_file_exits_2_naming_file_line_and_key() {
    let (_dir, path) = temp_scenario(
        "broken.toml",
        "[lab]\nclients = 2\n\n[[step]]\nsend = \"hola\"\nclinet = 1\n",
    );
    let dir = tempfile::tempdir().unwrap();
    let report_path = dir.path().join("report.json");
    let output = Command::new(TUNLAB)
        .arg("--script")
        .arg(&path)
        .arg("--report")
        .arg(&report_path)
        .output()
        .unwrap();
    let run = finish(output, &report_path);
    assert_eq!(run.code, 2, "{}", run.stderr);
    let expected = format!("{}:6:1:", path.display());
    assert!(run.stderr.contains(&expected), "{}", run.stderr);
    assert!(run.stderr.contains("`step.clinet`"), "{}", run.stderr);
    assert!(run.stderr.contains("[[step]] #1"), "{}", run.stderr);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    assert!(run.report.is_none(), "nothing ran, so no report");
}

#[test]
fn a_scenario_that_makes_no_sense_exits_2_naming_the_line() {
    let (_dir, path) = temp_scenario(
        "nonsense.toml",
        "[lab]\nclients = 2\n\n[[step]]\nclose = \"fin\"\nclient = 3\n",
    );
    let run = run_script(&path);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("nonsense.toml:6:10:"), "{}", run.stderr);
    assert!(run.stderr.contains("no client 3"), "{}", run.stderr);
}

#[test]
fn a_missing_file_exits_2() {
    let run = run_script(Path::new("/nonexistent/scenario.toml"));
    assert_eq!(run.code, 2);
    assert!(
        run.stderr
            .contains("/nonexistent/scenario.toml: cannot read"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_lab_that_cannot_start_exits_2() {
    // Hold a port so the scenario's fixed server port is taken.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let (_dir, path) = temp_scenario(
        "taken.toml",
        &format!("[lab]\nports = {{ server = {port} }}\nclients = 1\n"),
    );
    let run = run_script(&path);
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("could not start"), "{}", run.stderr);
    assert!(run.stderr.contains(&port.to_string()), "{}", run.stderr);
}

#[test]
fn the_deadline_fails_a_scenario_that_would_hang() {
    let (_dir, path) = temp_scenario(
        "slow.toml",
        r#"
deadline = "300ms"
[lab]
clients = 1
[[step]]
send = "hola"
[[step]]
wait = "1h"
[[expect]]
echo_intact = 1
"#,
    );
    let run = run_script(&path);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let steps = &run.report()["expectations"][0];
    assert_eq!(steps["passed"], false);
    let detail = steps["detail"].as_str().unwrap();
    assert!(
        detail.contains("deadline of 300ms passed during the step at line 7 (wait 1h)"),
        "{detail}"
    );
    assert!(detail.starts_with("1 of 2 steps done"), "{detail}");
    // What happened before the deadline is still checked and reported.
    assert_eq!(run.report()["expectations"][1]["passed"], true);
}

#[test]
fn without_a_terminal_tunlab_runs_the_built_in_demo() {
    let dir = tempfile::tempdir().unwrap();
    let report_path = dir.path().join("demo.json");
    // `output()` pipes stdout: not a terminal.
    let output = Command::new(TUNLAB)
        .arg("--report")
        .arg(&report_path)
        // The demo captures into captures/ as the lab would: keep that in the temporary dir.
        .current_dir(dir.path())
        .output()
        .unwrap();
    let run = finish(output, &report_path);
    run.assert_passed();
    assert!(run.stdout.contains("built-in demo"), "{}", run.stdout);
    assert_eq!(run.report()["scenario"], "basic echo");
}

/// The annotated example in the README's "Headless scenarios" section.
fn readme_example() -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let section = readme
        .split("## Headless scenarios")
        .nth(1)
        .expect("the README has a Headless scenarios section");
    let start = section.find("```toml\n").expect("with a toml example") + "```toml\n".len();
    let end = start + section[start..].find("```").unwrap();
    section[start..end].to_string()
}

#[test]
fn the_readme_example_scenario_runs_and_passes() {
    let (dir, path) = temp_scenario("readme.toml", &readme_example());
    let report_path = dir.path().join("report.json");
    let output = Command::new(TUNLAB)
        .arg("--script")
        .arg(&path)
        .arg("--report")
        .arg(&report_path)
        // Anything the example writes (captures) stays in the temporary directory.
        .current_dir(dir.path())
        .output()
        .unwrap();
    let run = finish(output, &report_path);
    run.assert_passed();
    assert_eq!(run.report()["scenario"], "readme example");
    assert_eq!(run.connection(3)["close"], "refused");
}

#[test]
fn help_explains_the_headless_options() {
    let output = Command::new(TUNLAB).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(help.contains("--script <FILE>"), "{help}");
    assert!(help.contains("--report <FILE>"), "{help}");
    assert!(help.contains("1 when one fails, 2 when"), "{help}");
}

/// Every key path in the report with the JSON types seen there, one per line: the shape,
/// without the values that change from run to run (ports, times).
fn shape(value: &Value) -> String {
    fn walk(value: &Value, path: &str, out: &mut BTreeSet<String>) {
        let kind = match value {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(items) => {
                for item in items {
                    walk(item, &format!("{path}[]"), out);
                }
                "array"
            }
            Value::Object(map) => {
                for (key, item) in map {
                    let path = if path.is_empty() {
                        key.clone()
                    } else {
                        format!("{path}.{key}")
                    };
                    walk(item, &path, out);
                }
                "object"
            }
        };
        if !path.is_empty() {
            out.insert(format!("{path}: {kind}"));
        }
    }
    let mut out = BTreeSet::new();
    walk(value, "", &mut out);
    out.into_iter().collect::<Vec<_>>().join("\n")
}

#[test]
fn the_report_json_shape_is_pinned() {
    let run = run_script(&scenario_path("basic.toml"));
    run.assert_passed();
    insta::assert_snapshot!("report_json_shape", shape(run.report()));
}

#[test]
fn socks5_clients_get_their_replies_through_the_tunnel() {
    let run = run_script(&scenario_path("socks5-blocklist.toml"));
    run.assert_passed();
    let clients = run.report()["socks5_clients"].as_array().unwrap();
    let replies: Vec<&str> = clients
        .iter()
        .map(|c| c["reply"].as_str().unwrap())
        .collect();
    assert_eq!(replies, ["succeeded", "not-allowed", "login-refused"]);
    assert_eq!(clients[0]["echo_intact"], true);
    // Two connections asked proxy2 for a destination (a lost C is sent again).
    let connects = run.report()["frames"]["to_proxy2"]["sent"]["connect"]
        .as_u64()
        .unwrap();
    assert!(connects >= 2, "{connects} C frames");
    assert!(
        run.stdout.contains("SOCKS5 client 2: not-allowed"),
        "{}",
        run.stdout
    );
}

#[test]
fn a_wrong_socks5_expectation_fails_and_says_what_came() {
    let (_dir, path) = temp_scenario(
        "socks5-wrong.toml",
        r#"
[lab]
wire = "go-back-n"

[lab.socks5]
rules = ["deny port=7000-7999"]

[[step]]
socks5 = "127.0.0.1:7001"

[[expect]]
socks5_reply = 0
socks5_client = 1
"#,
    );
    let run = run_script(&path);
    assert_eq!(run.code, 1, "{}", run.stdout);
    let verdict = &run.report()["expectations"].as_array().unwrap()[1];
    assert_eq!(verdict["passed"], false);
    assert_eq!(verdict["detail"], "it got \"not-allowed\"");
}

#[test]
fn socks5_in_a_text_mode_or_without_the_port_is_invalid() {
    let (_dir, path) = temp_scenario(
        "socks5-classic.toml",
        "[lab]\nwire = \"classic\"\n\n[lab.socks5]\nusers = [\"ana:pw\"]\n",
    );
    let run = run_script(&path);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("SOCKS5 needs an extended wire mode"),
        "{}",
        run.stderr
    );
    let (_dir, path) = temp_scenario(
        "socks5-no-port.toml",
        "[lab]\nwire = \"selective-repeat\"\n\n[[step]]\nsocks5 = \"server\"\n",
    );
    let run = run_script(&path);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("add [lab.socks5]"), "{}", run.stderr);
}

/// Runs `tunlab --script FILE --report … EXTRA…` in `dir` (captures land there).
fn run_script_in(dir: &Path, scenario: &Path, extra: &[&std::ffi::OsStr]) -> Run {
    let report_path = dir.join("report.json");
    let output = Command::new(TUNLAB)
        .arg("--script")
        .arg(scenario)
        .arg("--report")
        .arg(&report_path)
        .args(extra)
        .current_dir(dir)
        .output()
        .expect("tunlab runs");
    finish(output, &report_path)
}

/// Every capture file under `dir/captures`, read whole.
fn captures_in(dir: &Path) -> Vec<Vec<u8>> {
    let files: Vec<Vec<u8>> = std::fs::read_dir(dir.join("captures"))
        .map(|entries| {
            entries
                .map(|entry| std::fs::read(entry.unwrap().path()).unwrap())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(files.len(), 1, "one capture in {}", dir.display());
    files
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// `tunlab keygen` into `path`.
fn keygen(path: &Path) {
    let status = Command::new(TUNLAB)
        .arg("keygen")
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

/// The shipped sealed scenario runs headless with its capture: the expectations hold, the
/// run says which key sealed it, and the capture holds none of the text the clients sent.
#[test]
fn sealed_link_scenario_passes_and_its_capture_holds_no_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = scenario_path("sealed-link.toml");
    let run = run_script_in(dir.path(), &scenario, &[]);
    run.assert_passed();
    let key = scenario_path("sealed-link.key");
    assert!(
        run.stdout.contains(&format!(
            "the link is sealed with the key in {}",
            key.display()
        )),
        "{}",
        run.stdout
    );
    let capture = &captures_in(dir.path())[0];
    assert!(capture.len() > 24 + 20 * 60, "frames were captured");
    assert!(
        !contains(capture, b"attack at dawn"),
        "plaintext in the capture"
    );
    // The same scenario unsealed (key_file removed) does show the text: the check can fail.
    let text = std::fs::read_to_string(&scenario)
        .unwrap()
        .replace("key_file = \"sealed-link.key\"", "");
    let (plain_dir, plain) = temp_scenario("plain.toml", &text);
    run_script_in(plain_dir.path(), &plain, &[]).assert_passed();
    assert!(contains(
        &captures_in(plain_dir.path())[0],
        b"attack at dawn"
    ));
}

const SEALED: &str = r#"
[lab]
wire = "go-back-n"
clients = 1
capture = "pcap"
key_file = "keys/lab.key"
[[step]]
send = "the eagle has landed"
[[step]]
wait_for = "echoes"
[[expect]]
echo_intact = "all"
[[expect]]
no_malformed = true
"#;

/// A key generated at test time, named relative to the scenario file (the run's working
/// directory is elsewhere): sealed, intact, no plaintext captured.
#[test]
fn key_file_is_relative_to_the_scenario_file() {
    let (scenario_dir, scenario) = temp_scenario("sealed.toml", SEALED);
    std::fs::create_dir(scenario_dir.path().join("keys")).unwrap();
    let key = scenario_dir.path().join("keys/lab.key");
    keygen(&key);
    let elsewhere = tempfile::tempdir().unwrap();
    let run = run_script_in(elsewhere.path(), &scenario, &[]);
    run.assert_passed();
    assert!(
        run.stdout
            .contains(&format!("sealed with the key in {}", key.display())),
        "{}",
        run.stdout
    );
    // keygen makes it 0600: no warning.
    assert!(!run.stderr.contains("readable by others"), "{}", run.stderr);
    let capture = &captures_in(elsewhere.path())[0];
    assert!(!contains(capture, b"the eagle has landed"));
}

/// A missing or bad key file stops the scenario before the lab starts (exit 2), naming the
/// file and the key; so does a key for a course format.
#[test]
fn a_missing_bad_or_misplaced_key_file_exits_2_naming_it() {
    let (dir, scenario) = temp_scenario("sealed.toml", SEALED);
    let run = run_script_in(dir.path(), &scenario, &[]);
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    let missing = dir.path().join("keys/lab.key");
    assert!(
        run.stderr
            .contains(&format!("cannot read key file {}", missing.display())),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("lab.key_file"), "{}", run.stderr);
    assert!(run.report.is_none(), "no run, no report");

    std::fs::create_dir(dir.path().join("keys")).unwrap();
    std::fs::write(&missing, "not a key\n").unwrap();
    let run = run_script_in(dir.path(), &scenario, &[]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr
            .contains(&format!("key file {} is not hex", missing.display())),
        "{}",
        run.stderr
    );

    std::fs::remove_file(&missing).unwrap();
    keygen(&missing);
    let course = SEALED.replace("go-back-n", "stop-and-wait");
    let (dir, scenario) = temp_scenario("course.toml", &course);
    std::fs::create_dir(dir.path().join("keys")).unwrap();
    std::fs::copy(&missing, dir.path().join("keys/lab.key")).unwrap();
    let run = run_script_in(dir.path(), &scenario, &[]);
    assert_eq!(run.code, 2, "{}", run.stdout);
    assert!(
        run.stderr.contains(
            "key_file seals the extended modes only (wire = \"go-back-n\" or \"selective-repeat\"); \
             wire = \"stop-and-wait\" is the course's plaintext format"
        ),
        "{}",
        run.stderr
    );
}

/// `--key-file` on the command line replaces the scenario's key: the run says so and works
/// when the scenario names a key file that does not exist; a course-format scenario refuses it.
#[test]
fn the_command_line_key_file_replaces_the_scenarios() {
    let (dir, scenario) = temp_scenario("sealed.toml", SEALED);
    let key = dir.path().join("mine.key");
    keygen(&key);
    let args = [std::ffi::OsStr::new("--key-file"), key.as_os_str()];
    let run = run_script_in(dir.path(), &scenario, &args);
    run.assert_passed();
    assert!(
        run.stdout
            .contains(&format!("sealed with the key in {}", key.display())),
        "{}",
        run.stdout
    );
    assert!(!contains(
        &captures_in(dir.path())[0],
        b"the eagle has landed"
    ));
    // A scenario without key_file is sealed by it too.
    let unsealed = SEALED.replace("key_file = \"keys/lab.key\"", "");
    let (dir, scenario) = temp_scenario("unsealed.toml", &unsealed);
    let run = run_script_in(dir.path(), &scenario, &args);
    run.assert_passed();
    assert!(!contains(
        &captures_in(dir.path())[0],
        b"the eagle has landed"
    ));
    // A scenario in a course format refuses it, as the lab's --key-file does.
    let course = unsealed.replace("go-back-n", "stop-and-wait");
    let (dir, scenario) = temp_scenario("course.toml", &course);
    let run = run_script_in(dir.path(), &scenario, &args);
    assert_eq!(run.code, 2, "{}", run.stdout);
    assert!(
        run.stderr
            .contains("--key-file seals the extended modes only"),
        "{}",
        run.stderr
    );
}
