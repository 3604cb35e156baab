//! The Wireshark dissector (assets/wireshark/tunlab.lua), checked with tshark against the
//! Rust decoder, frame by frame. Without tshark (found by build.rs) these tests are marked
//! ignored, "needs tshark"; `TUNLAB_REQUIRE_TSHARK=1` (as in CI) makes a missing tshark a
//! build error.

mod capture_support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::SystemTime;

use capture_support::*;
use tunlab::capture::{CaptureFormat, TapRecord};
use tunlab::describe::frame_label;
use tunlab::lab::DEFAULT_PROXY2_PORT;
use tunlab::topology::Role;
use tunlab::wire::FrameKind;

const DISSECTOR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/wireshark/tunlab.lua");

/// The fields every check reads, in this order.
const FIELDS: [&str; 14] = [
    "ip.src",
    "udp.srcport",
    "ip.dst",
    "udp.dstport",
    "tunlab.type",
    "tunlab.id",
    "tunlab.status",
    "tunlab.len",
    "tunlab.payload",
    "ip.checksum.status",
    "udp.checksum.status",
    "_ws.expert.message",
    "_ws.expert.severity",
    "_ws.col.Info",
];

/// Wireshark's expert severity for warnings (`PI_WARN`); errors are higher. Below it are
/// comments, chat (such as "Possible traceroute" when an ephemeral port falls in
/// 33434-33523) and notes, which say nothing about the capture being wrong.
const PI_WARN: u32 = 0x0060_0000;

/// One packet's tshark fields, by name.
#[derive(Debug)]
struct Row(Vec<String>);

impl Row {
    fn get(&self, name: &str) -> &str {
        let at = FIELDS
            .iter()
            .position(|f| *f == name)
            .unwrap_or_else(|| panic!("{name} is not in FIELDS"));
        &self.0[at]
    }
    /// An extra field, in the order given to [`tshark_fields`].
    fn extra(&self, n: usize) -> &str {
        &self.0[FIELDS.len() + n]
    }
    /// The most severe expert remark on this packet (0 when none).
    fn worst_severity(&self) -> u32 {
        self.get("_ws.expert.severity")
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| s.parse::<u32>().expect("numeric severity"))
            .max()
            .unwrap_or(0)
    }
}

/// Whether tshark is here. The build script found it (`has_tshark`), or this test would be
/// ignored; if it went missing since, that is a failure, never a silent pass.
fn have_tshark(test: &str) -> bool {
    let found = Command::new("tshark")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "{test}: tshark does not run (it was there at build time)"
    );
    found
}

/// One row of tshark's field output per packet, named by [`FIELDS`] (plus any `extra`).
fn tshark_fields(file: &Path, decode_port: Option<u16>, extra: &[&str]) -> Vec<Row> {
    let mut command = Command::new("tshark");
    command
        .args(["-n", "-r"])
        .arg(file)
        .args(["-X", &format!("lua_script:{DISSECTOR}")])
        .args([
            "-o",
            "udp.check_checksum:TRUE",
            "-o",
            "ip.check_checksum:TRUE",
        ])
        .args(["-T", "fields", "-E", "separator=/t", "-E", "occurrence=a"]);
    if let Some(port) = decode_port {
        command.args(["-d", &format!("udp.port=={port},tunlab")]);
    }
    for field in FIELDS.iter().chain(extra) {
        command.args(["-e", field]);
    }
    let output = command.output().expect("tshark runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "tshark failed: {stderr}");
    // Lua errors do not fail tshark; they show on stderr.
    assert!(
        !stderr.to_lowercase().contains("lua"),
        "the dissector complained: {stderr}"
    );
    String::from_utf8(output.stdout)
        .expect("UTF-8 output")
        .lines()
        .map(|line| Row(line.split('\t').map(str::to_string).collect()))
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks one tshark row against what the Rust decoder makes of the same packet; `proxy2`
/// is the link's proxy2 end, which sets the direction the Info column shows.
fn assert_row_matches(n: usize, row: &Row, packet: &Captured, proxy2: SocketAddr) {
    let get = |name: &str| row.get(name);
    let at = format!("packet {}", n + 1);
    assert_eq!(get("ip.src"), packet.src.ip().to_string(), "{at}");
    assert_eq!(get("udp.srcport"), packet.src.port().to_string(), "{at}");
    assert_eq!(get("ip.dst"), packet.dst.ip().to_string(), "{at}");
    assert_eq!(get("udp.dstport"), packet.dst.port().to_string(), "{at}");
    // 1 is "Good": tshark recomputed the checksum and agreed; 3 is "Not present": an IPv4
    // UDP checksum of 0, which the capture writes (RFC 768's "none", DESIGN.md), and which
    // tshark accepts without a warning (checked below). Over IPv6 it must be there and right.
    assert_eq!(get("ip.checksum.status"), "1", "{at}: IP checksum");
    let udp_checksum = if packet.src.is_ipv4() { "3" } else { "1" };
    assert_eq!(
        get("udp.checksum.status"),
        udp_checksum,
        "{at}: UDP checksum"
    );
    // No warnings or errors from any dissector (a bad checksum or a malformed frame would be).
    assert!(
        row.worst_severity() < PI_WARN,
        "{at}: tshark warns: {}",
        get("_ws.expert.message")
    );
    // Wireshark lists a packet comment among the expert remarks.
    if let Some(comment) = &packet.comment {
        assert!(get("_ws.expert.message").contains(comment.as_str()), "{at}");
    }

    let summary = packet.summary();
    let kind = &packet.datagram[..1];
    assert_eq!(get("tunlab.type").as_bytes(), kind, "{at}: type");
    assert_eq!(get("tunlab.id"), summary.id.to_string(), "{at}: id");
    let status = match summary.kind {
        FrameKind::ConnectOk => "OK",
        FrameKind::ConnectNok => "NOK",
        _ => "",
    };
    assert_eq!(get("tunlab.status"), status, "{at}: status");
    let payload = &packet.datagram[2..];
    if summary.kind == FrameKind::Data {
        assert_eq!(get("tunlab.len"), payload.len().to_string(), "{at}: len");
        assert_eq!(get("tunlab.payload"), hex(payload), "{at}: payload");
    } else {
        assert_eq!(get("tunlab.len"), "", "{at}");
        assert_eq!(get("tunlab.payload"), "", "{at}");
    }
    let direction = if packet.dst == proxy2 {
        "p1→p2"
    } else {
        assert_eq!(packet.src, proxy2, "{at}: a frame of this link");
        "p2→p1"
    };
    assert_eq!(
        get("_ws.col.Info"),
        format!("{direction} {}", frame_label(&summary)),
        "{at}: Info column"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(has_tshark), ignore = "needs tshark (apt install tshark)")]
async fn tshark_decodes_every_frame_of_a_lab_pcap() {
    if !have_tshark("tshark_decodes_every_frame_of_a_lab_pcap") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let run = run_lab_traffic(dir.path(), CaptureFormat::Pcap, 3, 8, None).await;
    let packets = read_pcap(&run.summary.path);
    assert_capture_matches_events(&run, &packets);
    // No `-d`: the lab's ports are the OS's choice, and the dissector finds the tunnel by its
    // opening C frame.
    let rows = tshark_fields(&run.summary.path, None, &[]);
    assert_eq!(rows.len(), packets.len(), "tshark sees every packet");
    for (n, (row, packet)) in rows.iter().zip(&packets).enumerate() {
        assert_row_matches(n, row, packet, run.addrs.proxy2_udp);
    }
    // The traffic covered what the dissector must get right.
    let infos: Vec<&str> = rows.iter().map(|r| r.get("_ws.col.Info")).collect();
    assert!(infos.iter().any(|i| i.ends_with("OK")), "C<id>OK seen");
    assert!(
        infos.iter().any(|i| i.contains("\\x")),
        "binary payload escaped"
    );
    assert!(
        infos.iter().any(|i| i.ends_with("…\"")),
        "long payload cut after 48 bytes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(has_tshark), ignore = "needs tshark (apt install tshark)")]
async fn tshark_shows_pcapng_comments() {
    if !have_tshark("tshark_shows_pcapng_comments") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let note = "dropped by link emulator";
    let run = run_lab_traffic(
        dir.path(),
        CaptureFormat::Pcapng,
        2,
        2,
        Some((note, b"D1gone")),
    )
    .await;
    let packets = read_pcapng(&run.summary.path).packets;
    let rows = tshark_fields(
        &run.summary.path,
        Some(run.addrs.proxy2_udp.port()),
        &["frame.comment"],
    );
    assert_eq!(rows.len(), packets.len());
    for (n, (row, packet)) in rows.iter().zip(&packets).enumerate() {
        assert_row_matches(n, row, packet, run.addrs.proxy2_udp);
        let comment = row.extra(0);
        assert_eq!(
            comment,
            packet.comment.as_deref().unwrap_or(""),
            "packet {}",
            n + 1
        );
    }
    assert_eq!(rows.iter().filter(|r| r.extra(0) == note).count(), 1);
}

/// Without `-d`, the dissector claims the lab's default proxy2 port, and it flags what is not
/// a frame instead of failing.
#[tokio::test]
#[cfg_attr(not(has_tshark), ignore = "needs tshark (apt install tshark)")]
async fn dissector_claims_port_3328_and_flags_malformed_datagrams() {
    if !have_tshark("dissector_claims_port_3328_and_flags_malformed_datagrams") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("default-port.pcap");
    let capture = file_capture(&path, CaptureFormat::Pcap, "dissector test", Role::Proxy2);
    // A port in traceroute's range: Wireshark adds a "Possible traceroute" chat remark, which
    // must not count as a problem (ephemeral ports land there now and then).
    let proxy1: SocketAddr = "127.0.0.1:33440".parse().unwrap();
    let proxy2: SocketAddr = ([127, 0, 0, 1], DEFAULT_PROXY2_PORT).into();
    let too_long = [b"D1".as_slice(), &[b'x'; 1499]].concat();
    let datagrams: Vec<(&[u8], bool)> = vec![
        (b"C5", true),
        (b"C5OK", false),
        (b"C5NOK", false),
        (b"D5", true),
        (b"D5\x00\x01\n\"\\\x7f\xff", true),
        (b"X5", false),
        (b"Z1", true),
        (b"D", true),
        (b"Da", true),
        (&too_long, true),
    ];
    for (datagram, from_proxy1) in &datagrams {
        tap_between(
            &capture.tap(),
            (proxy1, proxy2),
            *from_proxy1,
            datagram.to_vec(),
        )
        .await;
    }
    let summary = capture.finish().await;
    let packets = read_pcap(&summary.path);
    let rows = tshark_fields(&path, None, &[]);
    assert_eq!(rows.len(), datagrams.len());
    assert!(
        rows[0].get("_ws.expert.message").contains("traceroute"),
        "{:?}",
        rows[0]
    );
    let info = |n: usize| rows[n].get("_ws.col.Info");
    let expert = |n: usize| rows[n].get("_ws.expert.message");
    // The well-formed ones decode exactly as in a lab capture.
    for n in [0, 1, 3, 4, 5] {
        assert_row_matches(n, &rows[n], &packets[n], proxy2);
    }
    assert_eq!(info(4), r#"p1→p2 D5 len=7 "\x00\x01\n\"\\\x7f\xff""#);
    // NOK decodes too, with a note-level remark.
    assert_eq!(info(2), "p2→p1 C5NOK");
    assert_eq!(rows[2].get("tunlab.status"), "NOK");
    assert!(expert(2).contains("NOK"), "{:?}", rows[2]);
    // Malformed datagrams are flagged, with the same reasons the Rust decoder gives.
    assert!(
        expert(6).contains("unknown frame type byte 0x5a"),
        "{:?}",
        rows[6]
    );
    assert!(
        expert(7).contains("shorter than the 2-byte header"),
        "{:?}",
        rows[7]
    );
    assert!(
        expert(8).contains("bad connection id byte 0x61"),
        "{:?}",
        rows[8]
    );
    for n in [6, 7, 8] {
        assert!(info(n).starts_with("tunlab malformed"), "{}", info(n));
        assert_eq!(
            rows[n].get("tunlab.type"),
            "",
            "no type for a malformed datagram"
        );
        assert_eq!(rows[n].worst_severity(), 0x0080_0000, "an error (PI_ERROR)");
    }
    // Over 1500 bytes: still decoded, and warned about.
    assert_eq!(rows[9].get("tunlab.len"), "1499");
    assert!(expert(9).contains("longer than 1500"), "{:?}", rows[9]);
}

/// On ports it is not registered for, the dissector takes a UDP conversation only once it has
/// seen the tunnel's opening frame (exactly C<id>, C<id>OK or C<id>NOK), and leaves other
/// traffic alone.
#[tokio::test]
#[cfg_attr(not(has_tshark), ignore = "needs tshark (apt install tshark)")]
async fn dissector_finds_a_tunnel_on_any_port_by_its_opening_frame_only() {
    if !have_tshark("dissector_finds_a_tunnel_on_any_port_by_its_opening_frame_only") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("any-port.pcap");
    let capture = file_capture(&path, CaptureFormat::Pcap, "heuristic test", Role::Proxy1);
    let addr = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    let (tunnel_a, tunnel_b) = (addr(50000), addr(50001));
    let (other_a, other_b) = (addr(50010), addr(50011));
    let (almost_a, almost_b) = (addr(50020), addr(50021));
    let records: [(SocketAddr, SocketAddr, &[u8]); 8] = [
        // Not a tunnel: data and close with no opening exchange, and an ordinary datagram.
        (other_a, other_b, b"D1abc"),
        (other_b, other_a, b"X1"),
        (other_a, other_b, b"hello"),
        // Nearly an opening frame, but with trailing bytes: not enough to claim the flow.
        (almost_a, almost_b, b"C1junk"),
        // A tunnel on ports nobody registered.
        (tunnel_a, tunnel_b, b"C4"),
        (tunnel_b, tunnel_a, b"C4OK"),
        (tunnel_a, tunnel_b, b"D4hi"),
        (tunnel_b, tunnel_a, b"X4"),
    ];
    for (src, dst, datagram) in records {
        tap_at(
            &capture.tap(),
            SystemTime::now(),
            src,
            dst,
            datagram.to_vec(),
        )
        .await;
    }
    let summary = capture.finish().await;
    let packets = read_pcap(&summary.path);
    let rows = tshark_fields(&path, None, &["_ws.col.Protocol"]);
    assert_eq!(rows.len(), records.len());
    for (n, row) in rows.iter().enumerate().take(4) {
        assert_ne!(
            row.extra(0),
            "TUNLAB",
            "packet {} was claimed: {row:?}",
            n + 1
        );
        assert_eq!(row.get("tunlab.type"), "", "packet {}", n + 1);
    }
    for n in 4..8 {
        assert_eq!(
            rows[n].extra(0),
            "TUNLAB",
            "packet {}: {:?}",
            n + 1,
            rows[n]
        );
        assert_row_matches(n, &rows[n], &packets[n], tunnel_b);
    }
}

/// A frame the link emulator dropped before sending is named in pcapng like any frame (type,
/// id, direction, length, addresses), marked as not sent with the reason, and left out of the
/// stream a follow shows.
#[tokio::test]
#[cfg_attr(not(has_tshark), ignore = "needs tshark (apt install tshark)")]
async fn a_frame_that_was_not_sent_is_named_and_marked() {
    if !have_tshark("a_frame_that_was_not_sent_is_named_and_marked") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("not-sent.pcapng");
    let capture = file_capture(&path, CaptureFormat::Pcapng, "not-sent test", Role::Proxy1);
    let proxy1: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let proxy2: SocketAddr = ([127, 0, 0, 1], DEFAULT_PROXY2_PORT).into();
    let note = "link emulator: dropped (loss); not sent";
    let records: [(&[u8], bool, bool); 4] = [
        (b"C1", true, true),
        (b"D1hola\n", false, true),
        (b"D1ok", true, true),
        (b"X1", true, true),
    ];
    for (datagram, on_wire, from_proxy1) in records {
        let (src, dst) = if from_proxy1 {
            (proxy1, proxy2)
        } else {
            (proxy2, proxy1)
        };
        capture
            .tap()
            .record(TapRecord {
                time: SystemTime::now(),
                src,
                dst,
                datagram: datagram.to_vec(),
                note: (!on_wire).then(|| note.to_string()),
                on_wire,
            })
            .await;
    }
    capture.finish().await;
    let rows = tshark_fields(
        &path,
        None,
        &[
            "_ws.col.Protocol",
            "frame.cap_len",
            "frame.interface_name",
            "tunlab.not_sent",
        ],
    );
    assert_eq!(rows.len(), 4);
    assert_eq!(rows[0].get("_ws.col.Info"), "p1→p2 C1");
    assert_eq!(rows[3].get("_ws.col.Info"), "p1→p2 X1");
    let gone = &rows[1];
    assert_eq!(
        gone.get("_ws.col.Info"),
        format!("[not sent] p1→p2 D1 len=5 \"hola\\n\" — {note}"),
        "{gone:?}"
    );
    assert_eq!(gone.get("ip.src"), "127.0.0.1");
    assert_eq!(gone.get("udp.dstport"), DEFAULT_PROXY2_PORT.to_string());
    assert_eq!(gone.get("tunlab.type"), "D");
    assert_eq!(gone.get("tunlab.id"), "1");
    assert_eq!(gone.extra(0), "TUNLAB");
    assert_eq!(
        gone.extra(1),
        (14 + 20 + 8 + 7).to_string(),
        "the whole frame"
    );
    assert_eq!(gone.extra(2), tunlab::capture::PCAPNG_NOT_SENT_INTERFACE);
    assert!(gone.extra(3) == "1" || gone.extra(3) == "True", "{gone:?}");
    assert!(gone.worst_severity() < PI_WARN, "{gone:?}");
    // What crossed, only.
    let followed = follow_stream(&path, 0);
    assert_eq!(followed, (b"ok".to_vec(), Vec::new()));
}

/// `tshark -z follow,tunlab,raw,N`: the bytes of stream N from proxy1's side (node 0) and
/// from proxy2's (node 1).
fn follow_stream(file: &Path, stream: u32) -> (Vec<u8>, Vec<u8>) {
    let output = Command::new("tshark")
        .args(["-n", "-q", "-r"])
        .arg(file)
        .args(["-X", &format!("lua_script:{DISSECTOR}")])
        .args(["-z", &format!("follow,tunlab,raw,{stream}")])
        .output()
        .expect("tshark runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "tshark failed: {stderr}");
    assert!(!stderr.to_lowercase().contains("lua"), "{stderr}");
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("Follow: tunlab,raw"), "{text}");
    let unhex = |line: &str| -> Vec<u8> {
        (0..line.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&line[i..i + 2], 16).unwrap())
            .collect()
    };
    let (mut from_proxy1, mut from_proxy2) = (Vec::new(), Vec::new());
    let body = text
        .lines()
        .skip_while(|l| !l.starts_with("Node 1:"))
        .skip(1)
        .take_while(|l| !l.starts_with("====="));
    for line in body {
        match line.strip_prefix('\t') {
            Some(hex) => from_proxy2.extend(unhex(hex)),
            None => from_proxy1.extend(unhex(line)),
        }
    }
    (from_proxy1, from_proxy2)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(has_tshark), ignore = "needs tshark (apt install tshark)")]
async fn tshark_finds_the_udp_checksum_present_and_right_over_ipv6() {
    if !have_tshark("tshark_finds_the_udp_checksum_present_and_right_over_ipv6") {
        return;
    }
    // Over IPv4 the capture leaves the UDP checksum out (RFC 768 allows it); over IPv6 it
    // is mandatory, so the writer computes it: tshark must recompute it and agree, for
    // payloads of every parity and the frames of a whole conversation.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v6.pcap");
    let capture = file_capture(&path, CaptureFormat::Pcap, "ipv6 test", Role::Proxy1);
    let tap = capture.tap();
    let proxy1: SocketAddr = "[::1]:40000".parse().unwrap();
    let proxy2: SocketAddr = format!("[::1]:{DEFAULT_PROXY2_PORT}").parse().unwrap();
    let mut frames: Vec<(SocketAddr, SocketAddr, Vec<u8>)> = vec![
        (proxy1, proxy2, b"C1".to_vec()),
        (proxy2, proxy1, b"C1OK".to_vec()),
    ];
    for len in [1usize, 2, 7, 64, 255, 1000, 1497] {
        let mut data = b"D1".to_vec();
        data.extend((0..len).map(|i| u8::try_from(i % 251).unwrap()));
        frames.push((proxy1, proxy2, data.clone()));
        frames.push((proxy2, proxy1, data));
    }
    frames.push((proxy1, proxy2, b"X1".to_vec()));
    for (src, dst, datagram) in &frames {
        tap_at(&tap, SystemTime::now(), *src, *dst, datagram.clone()).await;
    }
    let summary = capture.finish().await;
    assert_eq!(summary.error, None);
    let rows = tshark_fields(&path, None, &["ipv6.src", "ipv6.dst", "udp.length"]);
    assert_eq!(rows.len(), frames.len(), "tshark sees every packet");
    for (n, (row, (src, dst, datagram))) in rows.iter().zip(&frames).enumerate() {
        let at = format!("packet {}", n + 1);
        assert_eq!(row.extra(0), src.ip().to_string(), "{at}");
        assert_eq!(row.extra(1), dst.ip().to_string(), "{at}");
        assert_eq!(row.extra(2), (datagram.len() + 8).to_string(), "{at}");
        // 1 is "Good": present, recomputed by tshark and equal.
        assert_eq!(row.get("udp.checksum.status"), "1", "{at}: UDP checksum");
        assert!(
            row.worst_severity() < PI_WARN,
            "{at}: tshark warns: {}",
            row.get("_ws.expert.message")
        );
        assert_eq!(row.get("tunlab.id"), "1", "{at}: the dissector decodes it");
    }
}

/// The course's stop-and-wait peers send `D` frames of 4,096 bytes of data: decoded, and not
/// warned about as the 1,500-byte limit of the other formats would be.
#[tokio::test]
#[cfg_attr(not(has_tshark), ignore = "needs tshark (apt install tshark)")]
async fn a_course_stop_and_wait_peers_long_d_is_not_warned_about() {
    if !have_tshark("a_course_stop_and_wait_peers_long_d_is_not_warned_about") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stop-and-wait.pcap");
    let capture = file_capture(&path, CaptureFormat::Pcap, "long D test", Role::Proxy2);
    let proxy1: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let proxy2: SocketAddr = ([127, 0, 0, 1], DEFAULT_PROXY2_PORT).into();
    let long_d = [b"D00".as_slice(), &[b'a'; 4096]].concat();
    let datagrams: [(&[u8], bool); 4] = [
        (b"C00", true),
        (b"C00OK", false),
        (&long_d, true),
        (b"A00", false),
    ];
    let tap = capture.tap();
    for (datagram, from_proxy1) in datagrams {
        tap_between(&tap, (proxy1, proxy2), from_proxy1, datagram.to_vec()).await;
    }
    assert_eq!(capture.finish().await.error, None);
    let rows = tshark_fields(&path, None, &[]);
    assert_eq!(rows.len(), 4);
    assert_eq!(rows[2].get("tunlab.len"), "4096", "{:?}", rows[2]);
    assert!(
        rows.iter().all(|row| row.worst_severity() < PI_WARN),
        "{rows:?}"
    );
}
