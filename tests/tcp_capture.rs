//! `--capture-tcp`: the TCP legs read off loopback into the link's capture, through the real
//! binary. The lab runs in a namespace of its own (`--netns`), so these tests need neither
//! root nor a quiet host loopback. Where the kernel forbids user namespaces they say
//! "skipped", unless `TUNLAB_REQUIRE_NETNS=1` (as in CI) makes that a failure; the tshark checks
//! follow `TUNLAB_REQUIRE_TSHARK` the same way.

// Unsafe is allowed here, and only here: geteuid(2), to tell whether the test may open AF_PACKET
// sockets.
#![allow(unsafe_code)]

mod capture_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use capture_support::read_pcapng;
use etherparse::{SlicedPacket, TransportSlice};
use serde_json::Value;

const TUNLAB: &str = env!("CARGO_BIN_EXE_tunlab");
const DISSECTOR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/wireshark/tunlab.lua");

fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("assets/scenarios")
        .join(name)
}

fn required(var: &str) -> bool {
    std::env::var(var).as_deref() == Ok("1")
}

/// Runs the shipped fin-vs-rst scenario (TCP capture on) in its own namespace; `None` (after
/// saying "skipped") where namespaces are not allowed.
fn run_fin_vs_rst(test: &str, dir: &Path) -> Option<(Output, Value)> {
    let report = dir.join("report.json");
    let output = Command::new(TUNLAB)
        .args(["--netns", "--script"])
        .arg(scenario("fin-vs-rst.toml"))
        .arg("--report")
        .arg(&report)
        .current_dir(dir)
        .output()
        .expect("tunlab runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.code() == Some(2) && stderr.contains("cannot create a user and network") {
        assert!(
            !required("TUNLAB_REQUIRE_NETNS"),
            "{test}: --netns is not allowed here, and TUNLAB_REQUIRE_NETNS=1: {stderr}"
        );
        eprintln!("{test}: skipped (this kernel refuses user namespaces: {stderr})");
        return None;
    }
    assert_eq!(
        output.status.code(),
        Some(0),
        "stdout:\n{}\nstderr:\n{stderr}",
        String::from_utf8_lossy(&output.stdout)
    );
    assert!(stderr.contains("cannot reach it"), "the notice: {stderr}");
    let report = serde_json::from_str(&std::fs::read_to_string(report).unwrap()).unwrap();
    Some((output, report))
}

fn capture_file(report: &Value) -> PathBuf {
    let captures = report["captures"].as_array().expect("captures listed");
    assert_eq!(captures.len(), 1, "{report}");
    PathBuf::from(captures[0].as_str().unwrap())
}

/// One capture holds both TCP legs of every connection (each segment once) and the link's
/// frames, in time order; the report counts the segments.
#[test]
fn fin_vs_rst_captures_the_tcp_legs_beside_the_link() {
    let dir = tempfile::tempdir().unwrap();
    let Some((output, report)) = run_fin_vs_rst(
        "fin_vs_rst_captures_the_tcp_legs_beside_the_link",
        dir.path(),
    ) else {
        return;
    };
    let path = dir.path().join(capture_file(&report));
    let file = read_pcapng(&path);
    assert_eq!(
        file.interfaces,
        ["tunlab-link", "tunlab-not-sent", "lo"],
        "the link, frames not sent, the TCP legs"
    );
    // Time order across every interface.
    assert!(
        file.times.windows(2).all(|w| w[0] <= w[1]),
        "packets out of time order: {:?}",
        file.times
    );
    assert_eq!(
        report["captured_tcp_segments"].as_u64(),
        Some(file.segments.len() as u64),
        "{report}"
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("TCP segments of the legs"), "{stdout}");

    // Each segment once: on loopback a packet socket sees every packet leaving and arriving,
    // and only the arriving copy is kept.
    let mut seen = std::collections::HashSet::new();
    for (_, frame) in &file.segments {
        assert!(seen.insert(frame.clone()), "a segment twice: {frame:02x?}");
    }
    let addrs = &report["lab"];
    let port = |key: &str| -> u16 {
        let addr: std::net::SocketAddr = addrs[key].as_str().unwrap().parse().unwrap();
        addr.port()
    };
    let (proxy1, server) = (port("proxy1_tcp"), port("server"));
    let (mut syn, mut fin, mut rst) = (Vec::new(), 0, 0);
    // When each handshake was answered: client leg (from proxy1) and server leg (from it).
    let (mut client_leg_syn_ack, mut server_leg_syn_ack) = (Vec::new(), Vec::new());
    for (time, frame) in &file.segments {
        let packet = SlicedPacket::from_ethernet(frame).unwrap();
        let Some(TransportSlice::Tcp(tcp)) = packet.transport else {
            panic!("not TCP: {frame:02x?}")
        };
        let ports = [tcp.source_port(), tcp.destination_port()];
        assert!(
            ports.contains(&proxy1) || ports.contains(&server),
            "a segment of neither leg: {ports:?}"
        );
        if tcp.syn() && !tcp.ack() {
            syn.push(tcp.destination_port());
        }
        if tcp.syn() && tcp.ack() {
            if tcp.source_port() == proxy1 {
                client_leg_syn_ack.push(*time);
            } else {
                server_leg_syn_ack.push(*time);
            }
        }
        fin += usize::from(tcp.fin());
        rst += usize::from(tcp.rst());
    }
    // Three clients: three handshakes on each leg.
    assert_eq!(syn.iter().filter(|p| **p == proxy1).count(), 3, "{syn:?}");
    assert_eq!(syn.iter().filter(|p| **p == server).count(), 3, "{syn:?}");
    assert!(fin >= 4, "FINs: {fin}");
    assert!(rst >= 1, "RSTs: {rst}");
    assert!(file.packets.len() >= 12, "the link's frames too");

    // Cause before effect, across the legs: the k-th client handshake is answered before
    // the k-th C goes out, and the k-th server handshake before the k-th OK comes back.
    let connects: Vec<Duration> = file
        .packets
        .iter()
        .filter(|p| p.datagram.len() == 2 && p.datagram[0] == b'C')
        .map(|p| p.time)
        .collect();
    let oks: Vec<Duration> = file
        .packets
        .iter()
        .filter(|p| p.datagram.starts_with(b"C") && p.datagram.ends_with(b"OK"))
        .map(|p| p.time)
        .collect();
    assert_eq!(connects.len(), 3);
    assert_eq!(oks.len(), 3);
    for k in 0..3 {
        assert!(
            client_leg_syn_ack[k] < connects[k],
            "handshake {k} after its C"
        );
        assert!(
            connects[k] < server_leg_syn_ack[k],
            "server handshake {k} before its C"
        );
        assert!(
            server_leg_syn_ack[k] < oks[k],
            "OK {k} before the server answered"
        );
    }
}

fn tshark(args: &[&str]) -> Option<String> {
    let output = Command::new("tshark").args(args).output();
    match output {
        Ok(output) => {
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(output.status.success(), "tshark failed: {stderr}");
            assert!(!stderr.to_lowercase().contains("lua"), "{stderr}");
            Some(String::from_utf8(output.stdout).unwrap())
        }
        Err(_) if required("TUNLAB_REQUIRE_TSHARK") => {
            panic!("tshark not found, and TUNLAB_REQUIRE_TSHARK=1 requires it")
        }
        Err(_) => None,
    }
}

/// What a student does in Wireshark: the handshakes, the FIN and the RST, the tunnel's frames
/// between them, and one client's conversation followed on its own.
#[test]
#[cfg_attr(not(has_tshark), ignore = "needs tshark (apt install tshark)")]
fn tshark_reads_the_whole_story_and_follows_one_client() {
    let test = "tshark_reads_the_whole_story_and_follows_one_client";
    let dir = tempfile::tempdir().unwrap();
    let Some((_, report)) = run_fin_vs_rst(test, dir.path()) else {
        return;
    };
    let path = dir.path().join(capture_file(&report));
    let path = path.to_str().unwrap();
    let lua = format!("lua_script:{DISSECTOR}");
    let Some(rows) = tshark(&[
        "-n",
        "-r",
        path,
        "-X",
        &lua,
        "-T",
        "fields",
        "-E",
        "separator=/t",
        "-e",
        "frame.time_epoch",
        "-e",
        "_ws.col.Protocol",
        "-e",
        "tcp.flags.syn",
        "-e",
        "tcp.flags.ack",
        "-e",
        "tcp.flags.fin",
        "-e",
        "tcp.flags.reset",
        "-e",
        "_ws.col.Info",
    ]) else {
        eprintln!("{test}: skipped (no tshark)");
        return;
    };
    let rows: Vec<Vec<&str>> = rows.lines().map(|l| l.split('\t').collect()).collect();
    let set = |v: &str| v == "1" || v == "True";
    let times: Vec<f64> = rows.iter().map(|r| r[0].parse().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "time order");
    let syns = rows.iter().filter(|r| set(r[2]) && !set(r[3])).count();
    assert!(syns >= 4, "two legs per connection: {syns} SYNs");
    assert!(rows.iter().any(|r| set(r[4])), "a FIN");
    assert!(rows.iter().any(|r| set(r[5])), "a RST");
    let infos: Vec<&str> = rows
        .iter()
        .filter(|r| r[1] == "TUNLAB")
        .map(|r| r[6])
        .collect();
    for frame in ["p1→p2 C0", "p2→p1 C0OK", "p1→p2 X0", "p1→p2 X1"] {
        assert!(infos.contains(&frame), "{frame} in {infos:?}");
    }
    // The RST's X: client 2 aborted, and its X follows its RST in the file.
    let rst_at = rows.iter().position(|r| set(r[5])).unwrap();
    let client2_id = report["connections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["client"] == 2)
        .unwrap()["id"]
        .as_u64()
        .unwrap();
    let x = format!("p1→p2 X{client2_id}");
    let x_at = rows.iter().position(|r| r[6] == x).unwrap();
    assert!(rst_at < x_at, "RST at {rst_at}, {x} at {x_at}");

    // Client 3 got id 0 after client 1 or 2 had it: its stream is the last one of id 0.
    let streams = tshark(&[
        "-n",
        "-r",
        path,
        "-X",
        &lua,
        "-Y",
        "tunlab.type == \"C\"",
        "-T",
        "fields",
        "-e",
        "tunlab.id",
        "-e",
        "tunlab.stream",
    ])
    .unwrap();
    let by_client = |client: u64| -> u32 {
        let id = report["connections"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["client"] == client)
            .unwrap()["id"]
            .to_string();
        let streams: Vec<u32> = streams
            .lines()
            .filter_map(|l| l.split_once('\t'))
            .filter(|(i, _)| *i == id)
            .map(|(_, s)| s.parse().unwrap())
            .collect();
        // Clients 1 and 2 took ids 0 and 1 first; client 3 took a freed one later.
        if client == 3 {
            *streams.last().unwrap()
        } else {
            streams[0]
        }
    };
    for (client, said) in [(3, "otra vez"), (1, "hola mundo"), (2, "hola mundo")] {
        let stream = by_client(client);
        let followed = tshark(&[
            "-n",
            "-q",
            "-r",
            path,
            "-X",
            &lua,
            "-z",
            &format!("follow,tunlab,ascii,{stream}"),
        ])
        .unwrap();
        let body: Vec<&str> = followed
            .lines()
            .skip_while(|l| !l.starts_with("Node 1:"))
            .skip(1)
            .take_while(|l| !l.starts_with("====="))
            .collect();
        let len = said.len().to_string();
        let tabbed = (format!("\t{len}"), format!("\t{said}"));
        assert_eq!(
            body,
            [len.as_str(), said, tabbed.0.as_str(), tabbed.1.as_str()],
            "client {client}, stream {stream}: what it sent, then exactly its echo\n{followed}"
        );
    }
}

/// Without `CAP_NET_RAW` and without --netns, `--capture-tcp` stops before anything starts,
/// with exit code 2 and a message naming the three ways to get the capability.
#[test]
fn without_the_capability_capture_tcp_says_how_to_get_it() {
    let test = "without_the_capability_capture_tcp_says_how_to_get_it";
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("p1.pcapng");
    let pcap = pcap.to_str().unwrap();
    let runs: [(&str, Vec<String>); 3] = [
        ("the lab", vec!["--capture-tcp".into()]),
        (
            "a scenario",
            vec![
                "--script".into(),
                scenario("fin-vs-rst.toml").display().to_string(),
            ],
        ),
        (
            "proxy1",
            vec![
                "proxy1".into(),
                "0".into(),
                "127.0.0.1".into(),
                "9".into(),
                "--capture".into(),
                pcap.into(),
                "--capture-tcp".into(),
            ],
        ),
    ];
    for (what, args) in runs {
        // As root, `unshare -r` keeps the host's network namespace but leaves its user
        // namespace, so the capability over the host's loopback is gone; anyone else simply
        // lacks it.
        let (program, prefix): (&str, &[&str]) = if is_root() {
            ("unshare", &["-r", TUNLAB])
        } else {
            (TUNLAB, &[])
        };
        let output = Command::new(program)
            .args(prefix)
            .args(&args)
            .current_dir(dir.path())
            .output()
            .expect("runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        if program == "unshare" && stderr.contains("unshare failed") {
            assert!(
                !required("TUNLAB_REQUIRE_NETNS"),
                "{test}: unshare -r is refused here: {stderr}"
            );
            eprintln!("{test}: skipped (unshare -r refused: {stderr})");
            return;
        }
        assert_eq!(output.status.code(), Some(2), "{what}: {stderr}");
        for needed in ["CAP_NET_RAW", "root", "setcap cap_net_raw+ep", "--netns"] {
            assert!(stderr.contains(needed), "{what}: {needed} in {stderr}");
        }
        assert!(
            std::fs::read_dir(dir.path()).unwrap().next().is_none(),
            "{what}: nothing was started or written"
        );
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The lab in its own namespace is alone there: the course's ports are free inside even
/// while the host holds one of them.
#[test]
fn netns_puts_the_lab_on_a_loopback_of_its_own() {
    let test = "netns_puts_the_lab_on_a_loopback_of_its_own";
    // Hold the course's echo server port on the host, for the whole run.
    let Ok(held) = std::net::TcpListener::bind("127.0.0.1:1818") else {
        eprintln!("{test}: skipped (port 1818 is busy on this host already)");
        return;
    };
    held.set_nonblocking(true).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("course-ports.toml");
    let text = std::fs::read_to_string(self::scenario("basic.toml"))
        .unwrap()
        .replace("ports = \"auto\"", "ports = \"course\"");
    assert!(text.contains("ports = \"course\""));
    std::fs::write(&scenario, text).unwrap();
    let output = Command::new(TUNLAB)
        .arg("--netns")
        .arg("--script")
        .arg(&scenario)
        .current_dir(dir.path())
        .output()
        .expect("tunlab runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.code() == Some(2) && stderr.contains("cannot create a user and network") {
        assert!(
            !required("TUNLAB_REQUIRE_NETNS"),
            "{test}: --netns is not allowed here: {stderr}"
        );
        eprintln!("{test}: skipped ({stderr})");
        return;
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("127.0.0.1:1818"), "{stdout}");
    assert!(stderr.contains("cannot reach it"), "{stderr}");
    // Nothing of the lab ever knocked on the host's 1818.
    std::thread::sleep(Duration::from_millis(10));
    assert!(held.accept().is_err(), "the lab reached the host");
}

/// `--netns` is for the lab: a standalone role alone in a namespace could reach no one.
#[test]
fn netns_with_a_role_subcommand_is_refused() {
    let output = Command::new(TUNLAB)
        .args(["--netns", "echo-server", "0"])
        .output()
        .expect("tunlab runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--netns is for the lab"), "{stderr}");
}
