//! Drives the real binary in tmux the way a person would: start the lab, add a client, send,
//! abort with RST, look at the ladder, quit; and quit by Ctrl-C and by SIGTERM. Each time the
//! terminal must come back as it was (the shell's screen, the tty settings unchanged).
//!
//! Without tmux (found by build.rs) these tests are marked ignored, "needs tmux"; with
//! `TUNLAB_REQUIRE_TMUX=1` (as in CI) a missing tmux is a build error.

use std::process::Command;
use std::time::{Duration, Instant};

/// A tmux session that is killed however the test ends.
struct Session {
    name: String,
    /// Where the lab writes its capture (not the working directory).
    captures: tempfile::TempDir,
}

impl Session {
    /// Starts `sh` in a detached `width`x`height` session, or returns `None` if tmux is missing.
    fn start(tag: &str, width: u16, height: u16) -> Option<Session> {
        // The build script found tmux (`has_tmux`), or the test would be ignored.
        assert!(
            Command::new("tmux").arg("-V").output().is_ok(),
            "tmux does not run (it was there at build time)"
        );
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!("tunlab-test-{tag}-{}-{nanos}", std::process::id());
        let status = Command::new("tmux")
            .args(["new-session", "-d", "-s", &name, "-x"])
            .arg(width.to_string())
            .arg("-y")
            .arg(height.to_string())
            .args(["env", "PS1=$ ", "TERM=xterm-256color", "sh"])
            .status()
            .expect("tmux runs");
        assert!(status.success(), "tmux new-session failed");
        Some(Session {
            name,
            captures: tempfile::tempdir().unwrap(),
        })
    }

    fn keys(&self, keys: &[&str]) {
        let status = Command::new("tmux")
            .args(["send-keys", "-t", &self.name])
            .args(keys)
            .status()
            .expect("tmux send-keys runs");
        assert!(status.success());
    }

    /// Types a line into the shell.
    fn line(&self, text: &str) {
        self.keys(&["-l", text]);
        self.keys(&["Enter"]);
    }

    fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.name])
            .output()
            .expect("tmux capture-pane runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Polls the screen until it contains every one of `texts`; a bound of 15 s, not a speed
    /// check. Returns the screen.
    fn wait_for(&self, texts: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let screen = self.screen();
            if texts.iter().all(|t| screen.contains(t)) {
                return screen;
            }
            assert!(
                Instant::now() <= deadline,
                "the screen never showed {texts:?}; it shows:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The pid of the program running in the pane's shell (Linux: through /proc).
    fn child_pid(&self) -> Option<u32> {
        let out = Command::new("tmux")
            .args(["display-message", "-p", "-t", &self.name, "#{pane_pid}"])
            .output()
            .ok()?;
        let shell: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().ok()?;
        let children =
            std::fs::read_to_string(format!("/proc/{shell}/task/{shell}/children")).ok()?;
        children.split_whitespace().next()?.parse().ok()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.name])
            .status();
    }
}

/// Starts the lab in the session's shell. When it ends, the shell prints one line with its
/// exit status and whether the tty settings are as before; the markers are put together by
/// the shell, so the typed command line itself never matches them.
fn start_lab(session: &Session, clients: u32) {
    start_lab_with(session, clients, "");
}

/// [`start_lab`] with more options.
fn start_lab_with(session: &Session, clients: u32, options: &str) {
    let bin = env!("CARGO_BIN_EXE_tunlab");
    session.line(&format!(
        "S=$(stty -g); '{bin}' --clients {clients} --server-port 0 --proxy1-port 0 --proxy2-port 0 \
         --capture-dir '{}' {options}; \
         E=$?; if [ \"$(stty -g)\" = \"$S\" ]; then R=same; else R=changed; fi; \
         echo \"RESULT\" \"exit=$E\" \"tty=$R\"",
        session.captures.path().display()
    ));
}

/// After the lab ends: its exit status, the tty as before, and the TUI gone from the screen.
fn assert_restored(session: &Session) {
    let screen = session.wait_for(&["RESULT exit="]);
    assert!(
        screen.contains("RESULT exit=0 tty=same"),
        "after the lab:\n{screen}"
    );
    assert!(
        !screen.contains("Connections") && !screen.contains("┌"),
        "the TUI is still on the screen:\n{screen}"
    );
    assert!(screen.contains("tunlab: "), "no summary line:\n{screen}");
    // The capture is complete however the lab was asked to stop: it reads to the end and
    // holds the frames the exit line counts.
    let line = screen
        .lines()
        .find_map(|l| l.trim().strip_prefix("capture: "))
        .unwrap_or_else(|| panic!("no capture line:\n{screen}"));
    let (frames, path) = line.split_once(" frames written to ").expect(line);
    assert!(
        path.starts_with(&*session.captures.path().to_string_lossy()),
        "{line}"
    );
    let file = std::fs::File::open(path).expect("the capture file exists");
    let mut reader = pcap_file::pcap::PcapReader::new(file).expect("a pcap");
    let mut packets = 0;
    while let Some(packet) = reader.next_packet() {
        packet.expect("every packet reads");
        packets += 1;
    }
    assert_eq!(frames, packets.to_string(), "{line}");
    assert!(packets > 0, "the clients' C and OK at least");
}

#[test]
#[cfg_attr(not(has_tmux), ignore = "needs tmux (apt install tmux)")]
fn add_send_rst_ladder_quit() {
    let Some(session) = Session::start("keys", 120, 40) else {
        return;
    };
    start_lab(&session, 1);
    session.wait_for(&["Connections", "Clients (1)", "open       client 1"]);

    session.keys(&["a"]);
    session.wait_for(&["Clients (2)", "open       client 2"]);

    // Select id 1 (client 2) and send the simple message.
    session.keys(&["1"]);
    session.keys(&["s"]);
    let screen = session.wait_for(&[
        r#"p1→p2 D1 len=10 "hola mundo""#,
        r#"p2→p1 D1 len=10 "hola mundo""#,
    ]);
    assert!(
        screen.contains("Connection 1 · open · client 2"),
        "{screen}"
    );

    session.keys(&["r"]);
    session.wait_for(&["aborted with RST", "p1→p2 X1"]);

    session.keys(&["l"]);
    let ladder = session.wait_for(&["Ladder of connection 1", "RST", "proxy1 frees id 1"]);
    assert!(ladder.contains("TCP connect"), "{ladder}");

    session.keys(&["q"]);
    assert_restored(&session);
}

#[test]
#[cfg_attr(not(has_tmux), ignore = "needs tmux (apt install tmux)")]
fn ctrl_c_quits_and_restores() {
    let Some(session) = Session::start("ctrlc", 80, 24) else {
        return;
    };
    start_lab(&session, 2);
    // The compact layout at 80x24.
    session.wait_for(&["Connections", "open       client 2", "q quit ? help a add"]);
    session.keys(&["C-c"]);
    assert_restored(&session);
}

#[test]
#[cfg_attr(not(has_tmux), ignore = "needs tmux (apt install tmux)")]
fn sigterm_quits_and_restores() {
    let Some(session) = Session::start("term", 100, 30) else {
        return;
    };
    start_lab(&session, 1);
    session.wait_for(&["Connections", "open       client 1"]);
    let Some(pid) = session.child_pid() else {
        eprintln!("==== skipped: cannot find the lab's pid without /proc ====");
        return;
    };
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert_restored(&session);
}

/// Closing the terminal (the window goes away: SIGHUP, a dead tty) ends the lab; it must not
/// linger, let alone spin on the dead tty.
#[test]
#[cfg_attr(not(has_tmux), ignore = "needs tmux (apt install tmux)")]
fn closing_the_terminal_ends_the_lab() {
    let Some(session) = Session::start("hangup", 100, 30) else {
        return;
    };
    start_lab(&session, 1);
    session.wait_for(&["Connections", "open       client 1"]);
    let Some(pid) = session.child_pid() else {
        eprintln!("==== skipped: cannot find the lab's pid without /proc ====");
        return;
    };
    drop(session);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // A zombie has ended; only its parent's wait is missing.
        if state.split_whitespace().nth(2) == Some("Z") {
            break;
        }
        if Instant::now() > deadline {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("the lab (pid {pid}) still runs 10 s after its terminal closed");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The lab with `--metrics` and `--admin`: the header shows both addresses, /metrics answers,
/// and a change made with `tunlab monitor` shows on the screen.
#[test]
#[cfg_attr(not(has_tmux), ignore = "needs tmux (apt install tmux)")]
fn the_header_shows_the_monitor_and_it_answers() {
    let Some(session) = Session::start("monitor", 120, 40) else {
        return;
    };
    start_lab_with(&session, 1, "--metrics 0 --admin 0 --admin-user ana:pw");
    let screen = session.wait_for(&["open       client 1", "monitor metrics http://"]);
    let addr_after = |prefix: &str| -> std::net::SocketAddr {
        let at = screen.find(prefix).expect(prefix) + prefix.len();
        let rest = &screen[at..];
        let end = rest.find([' ', '/']).unwrap();
        rest[..end].parse().unwrap()
    };
    let metrics = addr_after("metrics http://");
    let admin = addr_after("admin ");

    use std::io::{Read, Write};
    let mut http = std::net::TcpStream::connect(metrics).unwrap();
    http.set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    http.write_all(b"GET /metrics HTTP/1.1\r\nHost: lab\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    http.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    assert!(
        response.contains("tunlab_connections_open{role=\"proxy1\"} 1"),
        "{response}"
    );

    let mut monitor = Command::new(env!("CARGO_BIN_EXE_tunlab"))
        .args([
            "monitor",
            &admin.ip().to_string(),
            &admin.port().to_string(),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    monitor
        .stdin
        .take()
        .unwrap()
        .write_all(b"ana:pw\nCONFIG loss 40\nQUIT\n")
        .unwrap();
    let output = monitor.wait_with_output().unwrap();
    assert!(output.status.success());
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(out.contains("loss set to 40"), "{out}");
    // The lab's screen shows the new setting and who made it.
    session.wait_for(&["loss 40%", "admin ana: loss set to 40"]);

    session.keys(&["q"]);
    assert_restored(&session);
}

/// Step mode by hand: hold the link, send, drop the held `D`: classic mode never gets that
/// echo back, and the screen says so. Then the link flows again and the next echo comes back.
#[test]
#[cfg_attr(not(has_tmux), ignore = "needs tmux (apt install tmux)")]
fn step_mode_drop_a_d_and_the_echo_is_lost() {
    let Some(session) = Session::start("step", 120, 40) else {
        return;
    };
    start_lab(&session, 1);
    session.wait_for(&["Connections", "open       client 1"]);

    session.keys(&["h"]);
    session.wait_for(&["Link held", "nothing held yet", "HELD 0"]);
    session.keys(&["s"]);
    let held = session.wait_for(&[r#"1 p1→p2 D0 len=10 "hola mundo""#, "HELD 1"]);
    assert!(
        held.contains("▶  1 p1→p2 D0"),
        "the only frame is chosen:\n{held}"
    );
    session.keys(&["x"]);
    // The trace says it was dropped by hand; the client waits for 10 bytes that never come.
    session.wait_for(&["dropped (by hand)", "HELD 0", "… 10 B due"]);

    // Let it flow again: the next message is echoed; the first one stays lost.
    session.keys(&["h"]);
    session.wait_for(&["Log", "link flows again"]);
    session.keys(&["s"]);
    let screen = session.wait_for(&[r#"p2→p1 D0 len=10 "hola mundo""#, "20 B    10 B"]);
    assert!(screen.contains("… 10 B due"), "{screen}");
    assert!(
        !screen.contains(" ✓"),
        "the lost echo is not intact:\n{screen}"
    );

    session.keys(&["q"]);
    assert_restored(&session);
}

/// `--chatter`: the clients speak on their own, in turn, and `t` stops them; `L` sends 3000
/// bytes, which cross as several `D` frames and come back whole.
#[test]
#[cfg_attr(not(has_tmux), ignore = "needs tmux (apt install tmux)")]
fn chatter_and_a_large_message() {
    let Some(session) = Session::start("chatter", 120, 40) else {
        return;
    };
    start_lab_with(&session, 2, "--chatter 100ms");
    session.wait_for(&["open       client 2", "chatter 100ms"]);
    // Both clients speak, each in turn.
    session.wait_for(&[r#""chatter 1 from client 1\n""#]);
    session.keys(&["1"]);
    session.wait_for(&[r#"from client 2\n""#]);
    session.keys(&["t"]);
    session.wait_for(&["chatter off"]);

    session.keys(&["0"]);
    session.keys(&["L"]);
    let screen = session.wait_for(&["sends 3000 bytes", "D0 len=1498"]);
    assert!(
        !screen.contains("chatter 100ms"),
        "chatter is off:\n{screen}"
    );
    // Client 1's echo: its chatter lines and the 3000 bytes, all back.
    // Only client 1 sent kilobytes: its row ends "… kB ✓" once every byte is back.
    session.wait_for(&["kB ✓"]);

    session.keys(&["q"]);
    assert_restored(&session);
}

/// Starts `tunlab --play FILE …` in the session's shell; like [`start_lab`], the shell then
/// prints its exit status and whether the tty is as before.
fn start_play(session: &Session, scenario: &str, options: &str) {
    let bin = env!("CARGO_BIN_EXE_tunlab");
    let file = if scenario.starts_with('/') {
        scenario.to_string()
    } else {
        format!("{}/assets/scenarios/{scenario}", env!("CARGO_MANIFEST_DIR"))
    };
    session.line(&format!(
        "S=$(stty -g); '{bin}' --play '{file}' {options}; \
         E=$?; if [ \"$(stty -g)\" = \"$S\" ]; then R=same; else R=changed; fi; \
         echo \"RESULT\" \"exit=$E\" \"tty=$R\""
    ));
}

/// `--play`: the scenario's steps on screen, one per Enter, the held link beside them, and
/// the expectations ticked at the end; q leaves, and the summary follows on the terminal.
#[test]
#[cfg_attr(not(has_tmux), ignore = "needs tmux (apt install tmux)")]
fn play_steps_a_scenario_one_enter_at_a_time() {
    let Some(session) = Session::start("play", 100, 30) else {
        return;
    };
    start_play(&session, "lost-echo.toml", "");
    let first = session.wait_for(&["lost echo · step 1 of 11", "▶  1 line"]);
    assert!(first.contains("Enter runs the next step"), "{first}");
    // Nothing happens until Enter: the link is not held yet.
    assert!(!first.contains("Link held"), "{first}");
    for step in 1..=10 {
        session.keys(&["Enter"]);
        session.wait_for(&[&format!("step {} of 11", step + 1)]);
    }
    // Step 8 dropped the echo: the held pane showed it beside the steps on the way.
    session.keys(&["Enter"]);
    let end = session.wait_for(&["PASSED: 5 of 5 expectations hold"]);
    assert!(
        end.contains("✓ the echo of hola was dropped by hand"),
        "{end}"
    );
    session.keys(&["q"]);
    let after = session.wait_for(&["RESULT exit="]);
    assert!(after.contains("RESULT exit=0 tty=same"), "{after}");
    assert!(after.contains("PASSED: 5 of 5"), "{after}");
}

/// `--play-every`: the steps go by themselves; `--report` writes the JSON report.
#[test]
#[cfg_attr(not(has_tmux), ignore = "needs tmux (apt install tmux)")]
fn play_every_runs_the_steps_by_themselves() {
    let Some(session) = Session::start("playevery", 80, 24) else {
        return;
    };
    let report = session.captures.path().join("report.json");
    start_play(
        &session,
        "lost-echo.toml",
        &format!("--play-every 50ms --report '{}'", report.display()),
    );
    session.wait_for(&["PASSED: 5 of 5"]);
    session.keys(&["q"]);
    let after = session.wait_for(&["RESULT exit="]);
    assert!(after.contains("RESULT exit=0 tty=same"), "{after}");
    // The same JSON report as --script writes.
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(report["passed"], true);
    assert_eq!(report["link"]["to_proxy1"]["dropped_by"]["by_hand"], 1);
}

/// A pause keeps everything: what crosses while the screen stands still is not traced on
/// screen, the pane says how much waits, and it all shows on resume.
#[test]
#[cfg_attr(not(has_tmux), ignore = "needs tmux (apt install tmux)")]
fn a_pause_keeps_the_frames_that_arrive_and_shows_them_on_resume() {
    let Some(session) = Session::start("pause", 120, 40) else {
        return;
    };
    start_lab(&session, 1);
    session.wait_for(&["open       client 1", "p2→p1 C0OK"]);
    session.keys(&["Space"]);
    session.wait_for(&["PAUSED (space resumes)"]);
    session.keys(&["s"]);
    // The echo comes back (the clients pane is live), but the trace stands still.
    let paused = session.wait_for(&["10 B    10 B ✓", "new kept (space shows them)"]);
    assert!(!paused.contains(r#"D0 len=10 "hola mundo""#), "{paused}");
    session.keys(&["Space"]);
    session.wait_for(&[
        r#"p1→p2 D0 len=10 "hola mundo""#,
        r#"p2→p1 D0 len=10 "hola mundo""#,
    ]);
    session.keys(&["q"]);
    assert_restored(&session);
}

/// A step that would wait for an hour: q stops the run in the middle of it, the verdicts say
/// so, and the exit code is 1.
#[test]
#[cfg_attr(not(has_tmux), ignore = "needs tmux (apt install tmux)")]
fn q_stops_a_played_scenario_in_the_middle_of_a_step() {
    let Some(session) = Session::start("playstop", 100, 30) else {
        return;
    };
    let file = session.captures.path().join("long.toml");
    std::fs::write(
        &file,
        "name = \"long\"\n[lab]\nclients = 1\n[[step]]\nwait = \"1h\"\n[[expect]]\nopened = 1\n",
    )
    .unwrap();
    start_play(&session, &file.display().to_string(), "");
    session.wait_for(&["long · step 1 of 1"]);
    session.keys(&["Enter"]);
    session.wait_for(&["the step is running"]);
    session.keys(&["q"]);
    let end = session.wait_for(&["FAILED: 1 of 2 expectations hold"]);
    assert!(end.contains("✗ every step finished"), "{end}");
    session.keys(&["q"]);
    let after = session.wait_for(&["RESULT exit="]);
    assert!(after.contains("RESULT exit=1 tty=same"), "{after}");
    assert!(
        after.contains("0 of 1 steps done; stopped during"),
        "the summary says why:\n{after}"
    );
}

/// Selective Repeat over a lossy link, as a class would watch it: the trace shows sequence
/// and ack numbers and marks a retransmission with its cause, the detail pane says each
/// direction's window, timer and efficiency, and `g` draws the time-sequence graph.
#[test]
#[cfg_attr(not(has_tmux), ignore = "needs tmux (apt install tmux)")]
fn selective_repeat_shows_retransmissions_and_the_graph() {
    let Some(session) = Session::start("reliable", 120, 40) else {
        return;
    };
    start_lab_with(&session, 1, "--wire selective-repeat --loss 25 --seed 3");
    session.wait_for(&["link selective-repeat", "open       client 1"]);
    // 3000 bytes at a time until the link has cost a retransmission (bounded: each `L` is
    // three data frames and their acks at 25% loss each way).
    let mut screen = String::new();
    // After each `L`, watch for up to 2 s (a retransmission waits for its timer, and a
    // loaded machine is slow) before sending more, so the mark can't scroll away unseen.
    'sending: for _ in 0..20 {
        session.keys(&["L"]);
        for _ in 0..20 {
            std::thread::sleep(Duration::from_millis(100));
            screen = session.screen();
            if screen.contains("↻ timeout") || screen.contains("↻ fast") {
                break 'sending;
            }
        }
    }
    assert!(
        screen.contains("↻ timeout") || screen.contains("↻ fast"),
        "no retransmission marked:\n{screen}"
    );
    assert!(screen.contains("D0 seq="), "{screen}");
    assert!(screen.contains("A0 ack="), "{screen}");
    assert!(
        screen.contains("srtt") && screen.contains("eff"),
        "{screen}"
    );

    session.keys(&["g"]);
    let graph = session.wait_for(&["Time-sequence graph · id 0 · p1→p2 data", "sent ", "acked "]);
    assert!(graph.contains("g: the other way"), "{graph}");
    session.keys(&["g"]);
    session.wait_for(&["Time-sequence graph · id 0 · p2→p1 data"]);
    session.keys(&["g"]);
    session.wait_for(&["Connection 0 · open"]);

    session.keys(&["q"]);
    assert_restored(&session);
}
