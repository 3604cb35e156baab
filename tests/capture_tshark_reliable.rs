//! The dissector on captures of real lab runs in the reliable modes (stop-and-wait,
//! go-back-n, selective-repeat) over a lossy, duplicating link: every frame decodes, with no
//! warning, its fields say what the Rust decoder reads (seq, ack, window, SACK, the CRC
//! checked), and the Info column is tunlab's own `frame_label_relative`, direction first:
//! numbers counted from the connection's ISNs once its C and OK are seen, as on the wire
//! with `-o tunlab.relative_seq:FALSE` (`frame_label`). A corrupted
//! extended frame is flagged as a checksum error. Without tshark (found by build.rs) these
//! tests are marked ignored, "needs tshark".

mod capture_support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

use capture_support::*;
use tunlab::capture::CaptureFormat;
use tunlab::describe::{frame_label, frame_label_relative};
use tunlab::event::{CloseKind, EventSink, FrameSummary};
use tunlab::impair::settings::{DirectionSettings, LinkSettings, Percent};
use tunlab::lab::{Lab, LabConfig};
use tunlab::transport::{RtoConfig, TransportConfig};
use tunlab::wire::{Frame, Seq, WireMode};

const DISSECTOR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/wireshark/tunlab.lua");

const FIELDS: [&str; 10] = [
    "udp.dstport",
    "tunlab.mode",
    "tunlab.type",
    "tunlab.seq",
    "tunlab.ack",
    "tunlab.window",
    "tunlab.sack.start",
    "tunlab.crc_ok",
    "_ws.expert.severity",
    "_ws.col.Info",
];

/// Wireshark's expert severity for warnings (`PI_WARN`).
const PI_WARN: u32 = 0x0060_0000;

fn tshark(file: &Path) -> Vec<Vec<String>> {
    tshark_with(file, &[])
}

/// [`tshark`] with more options (`-o tunlab.relative_seq:FALSE`).
fn tshark_with(file: &Path, options: &[&str]) -> Vec<Vec<String>> {
    let mut command = Command::new("tshark");
    command
        .args(["-n", "-r"])
        .arg(file)
        .args(["-X", &format!("lua_script:{DISSECTOR}")])
        .args(options)
        .args(["-T", "fields", "-E", "separator=/t", "-E", "occurrence=a"]);
    for field in FIELDS {
        command.args(["-e", field]);
    }
    let output = command
        .output()
        .expect("tshark runs (it was there at build time)");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "tshark failed: {stderr}");
    assert!(
        !stderr.to_lowercase().contains("lua"),
        "the dissector complained: {stderr}"
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}

/// Runs two clients' echoes through a lab in `mode` over a link that loses and duplicates,
/// captured to a pcap in `dir`; returns the capture's path and proxy2's UDP port.
async fn capture_a_lossy_run(dir: &Path, mode: WireMode) -> (std::path::PathBuf, u16) {
    let (events, _rx) = EventSink::channel(1 << 16);
    let capture = lab_writer(dir, CaptureFormat::Pcap, &events);
    let link = DirectionSettings {
        loss: Percent::new(10.0).unwrap(),
        dup: Percent::new(if mode == WireMode::StopAndWait {
            0.0
        } else {
            5.0
        })
        .unwrap(),
        ..DirectionSettings::default()
    };
    let mut config = LabConfig {
        mode,
        capture: Some(capture.tap()),
        link: LinkSettings::symmetric(link),
        link_seed: Some(5),
        ..LabConfig::ephemeral()
    };
    let transport = TransportConfig {
        rto: RtoConfig::Fixed(Duration::from_millis(30)),
        max_timeouts: 50,
        ..TransportConfig::for_mode(mode)
    };
    config.proxy1.transport = Some(transport);
    config.proxy2.transport = Some(transport);
    config.proxy1.connect_attempts = 12;
    let mut lab = Lab::start(config, events.clone())
        .await
        .expect("lab starts");
    let proxy2_port = lab.addrs().proxy2_udp.port();
    let ids = vec![
        lab.add_client().await.expect("client connects"),
        lab.add_client().await.expect("client connects"),
    ];
    let mut sent = [0usize; 2];
    for round in 0..8 {
        for (n, &id) in ids.iter().enumerate() {
            let bytes = payload(n, round);
            sent[n] += bytes.len();
            lab.client_send(id, bytes).unwrap();
        }
    }
    wait_until("every echo is back", || {
        ids.iter()
            .enumerate()
            .all(|(n, &id)| lab.client_status(id).unwrap().echoed_bytes >= sent[n] as u64)
    })
    .await;
    for &id in &ids {
        assert!(
            lab.client_status(id).unwrap().intact,
            "{mode:?}: intact echo"
        );
        lab.client_close(id, CloseKind::Fin).unwrap();
    }
    // Until nothing moves any more: the closes and their acks have crossed.
    let mut last = None;
    let mut still = 0;
    while still < 6 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let s = lab.snapshot();
        let now = (s.proxy1, s.proxy2);
        still = if Some(now) == last { still + 1 } else { 0 };
        last = Some(now);
    }
    lab.shutdown().await;
    let summary = capture.finish().await;
    (summary.path, proxy2_port)
}

/// The ISNs of each id's connection as a reader of the file learns them in order: proxy1's
/// from its `C` (one with another ISN opens a new connection, whose `OK` is still to come),
/// proxy2's from its `OK`.
#[derive(Default)]
struct Isns(std::collections::HashMap<u16, (Seq, Option<Seq>)>);

impl Isns {
    fn learn(&mut self, frame: &Frame<'_>) {
        match *frame {
            // A re-sent C (the same ISN) changes nothing.
            Frame::Connect { id, isn, .. }
                if self.0.get(&id.get()).is_none_or(|&(p1, _)| p1 != isn) =>
            {
                self.0.insert(id.get(), (isn, None));
            }
            Frame::ConnectOk { id, isn } => {
                if let Some(entry) = self.0.get_mut(&id.get()) {
                    entry.1 = Some(isn);
                }
            }
            _ => {}
        }
    }

    /// (the sender's ISN, the receiver's), once both are known.
    fn bases(&self, frame: &Frame<'_>, from_proxy1: bool) -> Option<(Seq, Seq)> {
        let &(p1, p2) = self.0.get(&frame.id().get())?;
        let p2 = p2?;
        Some(if from_proxy1 { (p1, p2) } else { (p2, p1) })
    }
}

/// Every packet of a `mode` capture: tshark's Info is `frame_label_relative` of what the Rust
/// decoder reads (counted from the ISNs learned so far; with `-o tunlab.relative_seq:FALSE`,
/// `frame_label`, as on the wire), and its fields agree. Returns the Info column.
fn assert_capture_decodes(mode: WireMode, path: &Path, proxy2_port: u16) -> Vec<String> {
    let infos = assert_capture_decodes_with(mode, path, proxy2_port, true);
    let on_the_wire = assert_capture_decodes_with(mode, path, proxy2_port, false);
    assert_eq!(infos.len(), on_the_wire.len());
    infos
}

fn assert_capture_decodes_with(
    mode: WireMode,
    path: &Path,
    proxy2_port: u16,
    relative: bool,
) -> Vec<String> {
    let packets = read_pcap(path);
    // Decoded as tunlab on proxy2's port whatever Wireshark registers there: the lab's
    // ports are ephemeral, and one of them (47000, "hcrt") once took the capture's frames
    // before the heuristic could (capture_tshark.rs tests the heuristic).
    let decode_as = decode_as(proxy2_port);
    let mut options = vec!["-d", decode_as.as_str()];
    if !relative {
        options.extend(["-o", "tunlab.relative_seq:FALSE"]);
    }
    let rows = tshark_with(path, &options);
    let mut isns = Isns::default();
    assert_eq!(
        rows.len(),
        packets.len(),
        "{mode:?}: tshark sees every packet"
    );
    let mode_name = if mode.is_extended() {
        "extended"
    } else {
        mode.name()
    };
    let mut infos = Vec::new();
    for (n, (row, packet)) in rows.iter().zip(&packets).enumerate() {
        let at = format!("{mode:?} packet {}", n + 1);
        let frame = mode
            .decode(&packet.datagram)
            .unwrap_or_else(|e| panic!("{at}: {e}"));
        let summary = FrameSummary::in_mode(mode, &frame, packet.datagram.len());
        isns.learn(&frame);
        let severity = row[8]
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| s.parse::<u32>().unwrap())
            .max()
            .unwrap_or(0);
        assert!(severity < PI_WARN, "{at}: tshark warns ({row:?})");
        assert_eq!(row[1], mode_name, "{at}: mode");
        let direction = if row[0] == proxy2_port.to_string() {
            "p1→p2"
        } else {
            "p2→p1"
        };
        let label = if relative && mode.is_extended() {
            frame_label_relative(&summary, isns.bases(&frame, direction == "p1→p2"))
        } else {
            frame_label(&summary)
        };
        assert_eq!(row[9], format!("{direction} {label}"), "{at}: Info");
        match frame {
            Frame::Data { seq, .. } => assert_eq!(row[3], seq.0.to_string(), "{at}: seq"),
            Frame::Ack {
                ack, window, sack, ..
            } => {
                assert_eq!(row[4], ack.0.to_string(), "{at}: ack");
                if mode.is_extended() {
                    assert_eq!(row[5], window.to_string(), "{at}: window");
                    let starts: Vec<String> = sack.iter().map(|b| b.start.0.to_string()).collect();
                    assert_eq!(row[6], starts.join(","), "{at}: SACK starts");
                }
            }
            _ => {}
        }
        if mode.is_extended() {
            assert!(
                row[7] == "1" || row[7] == "True",
                "{at}: CRC checked ({})",
                row[7]
            );
        }
        infos.push(row[9].clone());
    }
    infos
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(has_tshark), ignore = "needs tshark (apt install tshark)")]
async fn tshark_decodes_stop_and_wait_captures() {
    let dir = tempfile::tempdir().unwrap();
    let (path, port) = capture_a_lossy_run(dir.path(), WireMode::StopAndWait).await;
    let infos = assert_capture_decodes(WireMode::StopAndWait, &path, port);
    assert!(
        infos
            .iter()
            .any(|i| i.starts_with("p1→p2 C") && i.ends_with('0')),
        "C<id>0"
    );
    assert!(infos.iter().any(|i| i.ends_with("0OK")), "C<id>0OK");
    assert!(infos.iter().any(|i| i.contains(" A")), "acks");
    assert!(infos.iter().any(|i| i.contains(" X")), "closes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(has_tshark), ignore = "needs tshark (apt install tshark)")]
async fn tshark_decodes_go_back_n_and_selective_repeat_captures() {
    for mode in [WireMode::GoBackN, WireMode::SelectiveRepeat] {
        let dir = tempfile::tempdir().unwrap();
        let (path, port) = capture_a_lossy_run(dir.path(), mode).await;
        let infos = assert_capture_decodes(mode, &path, port);
        assert!(infos.iter().any(|i| i.contains(" isn=")), "{mode:?}: ISNs");
        assert!(infos.iter().any(|i| i.contains(" seq=")), "{mode:?}: seqs");
        // Counted from the ISNs: each connection's first data frame is seq 0.
        assert!(
            infos.iter().any(|i| i.contains(" seq=0 len=")),
            "{mode:?}: relative seqs"
        );
        // The relative fields hold the numbers the Info column shows (checked above against
        // tunlab's own labels).
        let rows = tshark_fields(
            &path,
            &["tunlab.seq_relative", "tunlab.ack_relative", "_ws.col.Info"],
            &["-d", &decode_as(port)],
        );
        let (mut seqs, mut acks) = (0, 0);
        for row in &rows {
            if !row[0].is_empty() {
                seqs += 1;
                let word = format!("seq={}", row[0]);
                assert!(row[2].split(' ').any(|w| w == word), "{row:?}");
            }
            if !row[1].is_empty() {
                acks += 1;
                let word = format!("ack={}", row[1]);
                assert!(row[2].split(' ').any(|w| w == word), "{row:?}");
            }
        }
        assert!(
            seqs > 0 && acks > 0,
            "{mode:?}: relative fields ({seqs}, {acks})"
        );
        assert!(infos.iter().any(|i| i.contains(" win=")), "{mode:?}: acks");
        if mode == WireMode::SelectiveRepeat {
            assert!(
                infos.iter().any(|i| i.contains(" sack=")),
                "SACK blocks at 10% loss"
            );
        }
    }
}

/// An extended frame with one bit flipped is a checksum error, said as such.
#[tokio::test]
#[cfg_attr(not(has_tshark), ignore = "needs tshark (apt install tshark)")]
async fn a_corrupted_extended_frame_is_flagged() {
    let dir = tempfile::tempdir().unwrap();
    let (events, _rx) = EventSink::channel(16);
    let capture = lab_writer(dir.path(), CaptureFormat::Pcap, &events);
    let mode = WireMode::SelectiveRepeat;
    let mut encoded = [0u8; 1500];
    let frame = Frame::Data {
        id: tunlab::wire::ConnId::new(300),
        seq: tunlab::wire::Seq(17),
        payload: b"hola",
    };
    let len = mode.encode_into(&frame, &mut encoded).unwrap();
    let good = encoded[..len].to_vec();
    let mut bad = good.clone();
    bad[9] ^= 0x01;
    let p1 = "127.0.0.1:40000".parse().unwrap();
    let p2 = "127.0.0.1:3328".parse().unwrap();
    for datagram in [good, bad] {
        tap_at(&capture.tap(), SystemTime::now(), p1, p2, datagram).await;
    }
    let summary = capture.finish().await;
    let rows = tshark(&summary.path);
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0][9], "p1→p2 D300 seq=17 len=4 \"hola\"");
    assert!(rows[1][9].contains("checksum mismatch"), "{:?}", rows[1]);
}

/// A SOCKS5 client's `C` shows its destination (name, IPv4, IPv6) and a `NOK` its reason,
/// in the Info column exactly as tunlab's own `frame_label` says them and in the fields; a `C`
/// whose destination does not parse is flagged as malformed.
#[tokio::test]
#[cfg_attr(not(has_tshark), ignore = "needs tshark (apt install tshark)")]
async fn destinations_in_c_and_reasons_in_nok_are_shown() {
    use tunlab::destination::{Destination, DestinationRef, Refusal};
    use tunlab::wire::{ConnId, Seq};
    let dir = tempfile::tempdir().unwrap();
    let (events, _rx) = EventSink::channel(16);
    let capture = lab_writer(dir.path(), CaptureFormat::Pcap, &events);
    let mode = WireMode::SelectiveRepeat;
    let destinations = [
        Destination::name(b"localhost", 8000).unwrap(),
        Destination::ip("10.1.2.3".parse().unwrap(), 80),
        Destination::ip("fd00::1".parse().unwrap(), 22),
    ];
    let p1: std::net::SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let p2: std::net::SocketAddr = "127.0.0.1:3328".parse().unwrap();
    let mut datagrams = Vec::new();
    let mut frames_sent = Vec::new();
    for (n, destination) in destinations.iter().enumerate() {
        let mut encoded = Vec::new();
        destination.encode(&mut encoded);
        let frame = Frame::Connect {
            id: ConnId::new(n as u16),
            isn: Seq(1000 + n as u32),
            destination: Some(DestinationRef::exactly(&encoded).unwrap()),
        };
        let wire = mode.to_bytes(&frame).unwrap();
        frames_sent.push((p1, p2, FrameSummary::in_mode(mode, &frame, wire.len())));
        datagrams.push((p1, p2, wire));
    }
    for reason in [Some(Refusal::NotAllowed), None] {
        let frame = Frame::ConnectNok {
            id: ConnId::new(0),
            reason,
        };
        let wire = mode.to_bytes(&frame).unwrap();
        frames_sent.push((p2, p1, FrameSummary::in_mode(mode, &frame, wire.len())));
        datagrams.push((p2, p1, wire));
    }
    // A C whose destination has an unknown address type.
    let mut bad = vec![0xE1, 0x01, 0x00, 0x07, 0, 0, 0, 1, 0x08, 1, 2, 3, 4, 0, 80];
    let crc = crc32c::crc32c(&bad);
    bad.extend_from_slice(&crc.to_be_bytes());
    datagrams.push((p1, p2, bad));
    for (src, dst, datagram) in datagrams {
        tap_at(&capture.tap(), SystemTime::now(), src, dst, datagram).await;
    }
    let summary = capture.finish().await;
    let rows = tshark(&summary.path);
    assert_eq!(rows.len(), 6);
    for (row, (src, _, frame)) in rows.iter().zip(&frames_sent) {
        let direction = if *src == p1 { "p1→p2" } else { "p2→p1" };
        assert_eq!(row[9], format!("{direction} {}", frame_label(frame)));
    }
    assert_eq!(rows[0][9], "p1→p2 C0 isn=1000 → localhost:8000");
    assert_eq!(rows[1][9], "p1→p2 C1 isn=1001 → 10.1.2.3:80");
    assert_eq!(rows[2][9], "p1→p2 C2 isn=1002 → [fd00::1]:22");
    assert_eq!(
        rows[3][9],
        "p2→p1 C0NOK reason=0x02 (not allowed by ruleset)"
    );
    assert_eq!(rows[4][9], "p2→p1 C0NOK");
    assert!(
        rows[5][9].contains("destination does not parse"),
        "{:?}",
        rows[5]
    );
    // The fields themselves.
    let fields = tshark_fields(
        &summary.path,
        &[
            "tunlab.destination",
            "tunlab.destination.host",
            "tunlab.destination.port",
            "tunlab.reason",
        ],
        &[],
    );
    assert_eq!(fields[0], ["localhost:8000", "localhost", "8000", ""]);
    assert_eq!(fields[2], ["[fd00::1]:22", "[fd00::1]", "22", ""]);
    assert_eq!(fields[3], ["", "", "", "0x02"]);
}

/// tshark's `-d` value that decodes proxy2's UDP port as tunlab.
fn decode_as(proxy2_port: u16) -> String {
    format!("udp.port=={proxy2_port},tunlab")
}

/// The given fields of every packet, as tshark with the dissector (and `options`) reads them.
fn tshark_fields(file: &Path, fields: &[&str], options: &[&str]) -> Vec<Vec<String>> {
    let mut command = Command::new("tshark");
    command
        .args(["-n", "-r"])
        .arg(file)
        .args(["-X", &format!("lua_script:{DISSECTOR}")])
        .args(options)
        .args(["-T", "fields", "-E", "separator=/t"]);
    for field in fields {
        command.args(["-e", field]);
    }
    let output = command.output().expect("tshark runs");
    assert!(output.status.success());
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}
