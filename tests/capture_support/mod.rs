//! Shared by the capture tests: reading capture files back (pcap-file + etherparse, checking
//! every header on the way), and running a lab with real traffic while recording what the
//! event stream says happened.

#![allow(dead_code)] // each test binary uses a different part

use std::collections::BTreeMap;
use std::fs::File;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use etherparse::{LinkSlice, NetSlice, SlicedPacket, TransportSlice};
use pcap_file::DataLink;
use pcap_file::pcap::PcapReader;
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketOption;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
use pcap_file::pcapng::blocks::section_header::SectionHeaderOption;
use pcap_file::pcapng::{Block, PcapNgReader};
use tunlab::capture::{
    CaptureFormat, CapturePlan, CaptureSummary, CaptureTap, CaptureTarget, CaptureWriter,
    PCAPNG_INTERFACE_NAME, PCAPNG_LOOPBACK_INTERFACE, PCAPNG_NOT_SENT_INTERFACE, TapRecord,
};
use tunlab::event::{CloseKind, EventKind, EventSink, FrameSummary};
use tunlab::lab::{Lab, LabAddrs, LabConfig, LabSnapshot};
use tunlab::topology::{Endpoint, Role};
use tunlab::wire::{FrameKind, WireMode};

/// One packet of a capture file, headers already checked.
#[derive(Clone, Debug)]
pub struct Captured {
    pub time: Duration,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    /// The UDP payload: the tunnel datagram.
    pub datagram: Vec<u8>,
    /// pcapng packet comment.
    pub comment: Option<String>,
}

impl Captured {
    /// The datagram as tunlab's traces summarise it.
    pub fn summary(&self) -> FrameSummary {
        let frame = WireMode::Classic
            .decode(&self.datagram)
            .unwrap_or_else(|e| {
                panic!("captured datagram {:?} is not a frame: {e}", self.datagram)
            });
        FrameSummary::of(&frame, self.datagram.len())
    }
}

/// Parses Ethernet II + IPv4/IPv6 + UDP and checks what a capture must get right: the
/// all-zero loopback MACs, the IPv4 header checksum, the UDP length, and the UDP checksum:
/// over IPv4 absent (0, "none", RFC 768: what the capture writes, DESIGN.md) or right (what
/// `tunlab decrypt` rebuilds), over IPv6 right (it is mandatory there).
pub fn parse_frame(data: &[u8]) -> (SocketAddr, SocketAddr, Vec<u8>) {
    let packet = SlicedPacket::from_ethernet(data)
        .unwrap_or_else(|e| panic!("packet does not parse as Ethernet/IP/UDP: {e}"));
    match &packet.link {
        Some(LinkSlice::Ethernet2(eth)) => {
            assert_eq!(eth.source(), [0; 6]);
            assert_eq!(eth.destination(), [0; 6]);
        }
        other => panic!("not Ethernet II: {other:?}"),
    }
    let Some(TransportSlice::Udp(udp)) = &packet.transport else {
        panic!("not UDP: {:?}", packet.transport)
    };
    let payload = udp.payload().to_vec();
    assert_eq!(udp.length() as usize, 8 + payload.len(), "UDP length field");
    let header = udp.to_header();
    let (src_ip, dst_ip, expected) = match &packet.net {
        Some(NetSlice::Ipv4(ip)) => {
            let ip = ip.header().to_header();
            assert_eq!(
                ip.header_checksum,
                ip.calc_header_checksum(),
                "IPv4 header checksum"
            );
            (
                std::net::IpAddr::from(ip.source),
                std::net::IpAddr::from(ip.destination),
                header.calc_checksum_ipv4(&ip, &payload).unwrap(),
            )
        }
        Some(NetSlice::Ipv6(ip)) => {
            let ip = ip.header().to_header();
            (
                std::net::IpAddr::from(ip.source),
                std::net::IpAddr::from(ip.destination),
                header.calc_checksum_ipv6(&ip, &payload).unwrap(),
            )
        }
        other => panic!("not IP: {other:?}"),
    };
    if matches!(packet.net, Some(NetSlice::Ipv4(_))) && udp.checksum() == 0 {
        // No checksum: nothing to verify.
    } else {
        assert_eq!(udp.checksum(), expected, "UDP checksum");
        // And by hand (RFC 768/1071), so the check does not rest on the library that wrote
        // it.
        let mut pseudo = Vec::new();
        for ip in [src_ip, dst_ip] {
            match ip {
                std::net::IpAddr::V4(v4) => pseudo.extend_from_slice(&v4.octets()),
                std::net::IpAddr::V6(v6) => pseudo.extend_from_slice(&v6.octets()),
            }
        }
        let udp_len = (8 + payload.len()) as u16;
        pseudo.extend_from_slice(&[0, 17]);
        pseudo.extend_from_slice(&udp_len.to_be_bytes());
        pseudo.extend_from_slice(&udp.source_port().to_be_bytes());
        pseudo.extend_from_slice(&udp.destination_port().to_be_bytes());
        pseudo.extend_from_slice(&udp_len.to_be_bytes());
        pseudo.extend_from_slice(&udp.checksum().to_be_bytes());
        pseudo.extend_from_slice(&payload);
        assert_eq!(
            ones_complement_sum(&pseudo),
            0xffff,
            "UDP checksum (RFC 1071)"
        );
    }
    if let Some(NetSlice::Ipv4(ip)) = &packet.net {
        assert_eq!(
            ones_complement_sum(ip.header().slice()),
            0xffff,
            "IPv4 header checksum (RFC 1071)"
        );
    }
    (
        SocketAddr::new(src_ip, udp.source_port()),
        SocketAddr::new(dst_ip, udp.destination_port()),
        payload,
    )
}

/// The 16-bit one's complement sum of `bytes`; data with a correct checksum inside sums to
/// 0xffff.
pub fn ones_complement_sum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// Reads a classic pcap; every packet must read cleanly (no truncated tail).
pub fn read_pcap(path: &Path) -> Vec<Captured> {
    let mut reader = PcapReader::new(File::open(path).unwrap())
        .unwrap_or_else(|e| panic!("{} is not a pcap: {e}", path.display()));
    let header = reader.header();
    assert_eq!(header.datalink, DataLink::ETHERNET);
    assert_eq!(header.ts_resolution, pcap_file::TsResolution::MicroSecond);
    let mut out = Vec::new();
    while let Some(packet) = reader.next_packet() {
        let packet = packet.unwrap_or_else(|e| {
            panic!(
                "{}: packet {} does not read: {e}",
                path.display(),
                out.len() + 1
            )
        });
        assert_eq!(
            packet.orig_len as usize,
            packet.data.len(),
            "nothing is cut"
        );
        let (src, dst, datagram) = parse_frame(&packet.data);
        out.push(Captured {
            time: packet.timestamp,
            src,
            dst,
            datagram,
            comment: None,
        });
    }
    out
}

/// A pcapng file's descriptions and packets.
#[derive(Debug, Default)]
pub struct PcapNgFile {
    pub section_comment: Option<String>,
    pub application: Option<String>,
    /// The link's interface (the first).
    pub interface_name: Option<String>,
    pub interface_description: Option<String>,
    /// Every interface's name, in order (interface ids index it).
    pub interfaces: Vec<String>,
    pub packets: Vec<Captured>,
    /// Frames the link emulator dropped before they were sent, on the not-sent interface.
    pub not_sent: Vec<NotSent>,
    /// TCP segments read off loopback (with TCP capture): time and Ethernet frame.
    pub segments: Vec<(Duration, Vec<u8>)>,
    /// Every packet's time, in file order, whatever its interface.
    pub times: Vec<Duration>,
}

/// A frame that never crossed the wire, as pcapng keeps it.
#[derive(Debug)]
pub struct NotSent {
    pub time: Duration,
    /// What the frame would have been on the wire.
    pub original_len: u32,
    pub comment: String,
    /// The frame as it would have crossed.
    pub packet: Captured,
}

/// Reads a pcapng; every block must read cleanly.
pub fn read_pcapng(path: &Path) -> PcapNgFile {
    let mut reader = PcapNgReader::new(File::open(path).unwrap())
        .unwrap_or_else(|e| panic!("{} is not a pcapng: {e}", path.display()));
    let mut out = PcapNgFile::default();
    for option in &reader.section().options {
        match option {
            SectionHeaderOption::Comment(c) => out.section_comment = Some(c.to_string()),
            SectionHeaderOption::UserApplication(a) => out.application = Some(a.to_string()),
            _ => {}
        }
    }
    let mut resolution = None;
    while let Some(block) = reader.next_block() {
        let block =
            block.unwrap_or_else(|e| panic!("{}: block does not read: {e}", path.display()));
        match block {
            Block::InterfaceDescription(idb) => {
                assert_eq!(idb.linktype, DataLink::ETHERNET);
                let first = out.interfaces.is_empty();
                for option in &idb.options {
                    match option {
                        InterfaceDescriptionOption::IfName(n) => {
                            out.interfaces.push(n.to_string());
                            if first {
                                out.interface_name = Some(n.to_string());
                            }
                        }
                        InterfaceDescriptionOption::IfDescription(d) if first => {
                            out.interface_description = Some(d.to_string());
                        }
                        InterfaceDescriptionOption::IfTsResol(r) => resolution = Some(*r),
                        _ => {}
                    }
                }
            }
            Block::EnhancedPacket(epb) => {
                let comment = epb.options.iter().find_map(|o| match o {
                    EnhancedPacketOption::Comment(c) => Some(c.to_string()),
                    _ => None,
                });
                assert_eq!(epb.original_len as usize, epb.data.len(), "nothing is cut");
                out.times.push(epb.timestamp);
                let interface = out.interfaces.get(epb.interface_id as usize).cloned();
                match interface.as_deref() {
                    Some(name) if name == PCAPNG_LOOPBACK_INTERFACE => {
                        out.segments.push((epb.timestamp, epb.data.to_vec()));
                        continue;
                    }
                    Some(name)
                        if name == PCAPNG_INTERFACE_NAME || name == PCAPNG_NOT_SENT_INTERFACE => {}
                    other => panic!("packet on an unknown interface {other:?}"),
                }
                let (src, dst, datagram) = parse_frame(&epb.data);
                let packet = Captured {
                    time: epb.timestamp,
                    src,
                    dst,
                    datagram,
                    comment: comment.clone(),
                };
                if interface.as_deref() == Some(PCAPNG_NOT_SENT_INTERFACE) {
                    out.not_sent.push(NotSent {
                        time: epb.timestamp,
                        original_len: epb.original_len,
                        comment: comment.expect("a frame not sent says why in a comment"),
                        packet,
                    });
                    continue;
                }
                out.packets.push(packet);
            }
            other => panic!("unexpected block {other:?}"),
        }
    }
    // pcap-file reads and writes packet times in nanoseconds; the interface must say so or
    // Wireshark shows every time 1000 times off.
    assert_eq!(resolution, Some(9), "if_tsresol must declare nanoseconds");
    out
}

/// A capture into the file at `path`, with no event stream: what a test taps by hand.
pub fn file_capture(
    path: &Path,
    format: CaptureFormat,
    description: &str,
    role: Role,
) -> CaptureWriter {
    let plan = CapturePlan::new(
        CaptureTarget::File(path.to_path_buf()),
        format,
        description,
        role,
    );
    CaptureWriter::start(plan, EventSink::disabled()).unwrap()
}

/// proxy1's and proxy2's addresses in the captures tests tap by hand.
pub const TAP_PROXY1: &str = "127.0.0.1:40000";
pub const TAP_PROXY2: &str = "127.0.0.1:3328";

/// Taps `datagram` from `src` to `dst` at `time`, as a link socket taps a frame it sent.
pub async fn tap_at(
    tap: &CaptureTap,
    time: SystemTime,
    src: SocketAddr,
    dst: SocketAddr,
    datagram: Vec<u8>,
) {
    tap.record(TapRecord {
        time,
        src,
        dst,
        datagram,
        note: None,
        on_wire: true,
    })
    .await;
}

/// [`tap_at`] now, from proxy1 to proxy2 (`from_proxy1`) or back.
pub async fn tap_between(
    tap: &CaptureTap,
    (proxy1, proxy2): (SocketAddr, SocketAddr),
    from_proxy1: bool,
    datagram: Vec<u8>,
) {
    let (src, dst) = if from_proxy1 {
        (proxy1, proxy2)
    } else {
        (proxy2, proxy1)
    };
    tap_at(tap, SystemTime::now(), src, dst, datagram).await;
}

/// A capture writer on a file of `format` in `dir`, as the lab starts it.
pub fn lab_writer(dir: &Path, format: CaptureFormat, events: &EventSink) -> CaptureWriter {
    let plan = CapturePlan::new(
        CaptureTarget::Dir(dir.to_path_buf()),
        format,
        "tunlab lab: every UDP frame between proxy1 and proxy2",
        Role::Proxy1,
    );
    CaptureWriter::start(plan, events.clone()).expect("capture starts")
}

/// Deterministic binary test data: every byte value shows up, and sizes straddle the
/// 48-byte preview and the 1498-byte frame limit.
pub fn payload(client: usize, round: usize) -> Vec<u8> {
    const SIZES: [usize; 8] = [1, 47, 48, 49, 700, 1498, 1499, 4000];
    let len = SIZES[(client + round) % SIZES.len()];
    let mut state = (client as u32 + 1).wrapping_mul(2_654_435_761) ^ (round as u32 + 7);
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state >> 24) as u8
        })
        .collect()
}

/// What happened in one lab run with a capture.
pub struct TrafficRun {
    pub addrs: LabAddrs,
    pub started: SystemTime,
    pub ended: SystemTime,
    /// `FrameSent` events: where, to whom, what.
    pub sent: Vec<(Endpoint, SocketAddr, FrameSummary)>,
    /// `FrameReceived` events.
    pub received: Vec<(Endpoint, SocketAddr, FrameSummary)>,
    pub events_dropped: u64,
    /// Every byte each client sent, in order.
    pub client_streams: Vec<Vec<u8>>,
    pub snapshot: LabSnapshot,
    pub summary: CaptureSummary,
}

/// Runs a lab with a capture, `clients` clients each sending `rounds` binary messages and
/// checking the echo, then closing (odd clients with FIN, even with RST). `note`, if given,
/// is recorded as one extra note-bearing record from proxy1 to proxy2 (what the link
/// impairment will do for a frame it drops).
pub async fn run_lab_traffic(
    dir: &Path,
    format: CaptureFormat,
    clients: usize,
    rounds: usize,
    note: Option<(&str, &[u8])>,
) -> TrafficRun {
    let started = SystemTime::now();
    // Big enough that nothing is dropped: the test compares every frame event.
    let (events, mut rx) = EventSink::channel(1 << 20);
    let capture = lab_writer(dir, format, &events);
    let config = LabConfig {
        capture: Some(capture.tap()),
        ..LabConfig::ephemeral()
    };
    let mut lab = Lab::start(config, events.clone())
        .await
        .expect("lab starts");
    let addrs = lab.addrs();
    let mut ids = Vec::new();
    for _ in 0..clients {
        ids.push(lab.add_client().await.expect("client connects"));
    }
    let mut client_streams = vec![Vec::new(); clients];
    for round in 0..rounds {
        for (n, &id) in ids.iter().enumerate() {
            let bytes = payload(n, round);
            client_streams[n].extend_from_slice(&bytes);
            lab.client_send(id, bytes).unwrap();
        }
    }
    wait_until("every echo is back", || {
        ids.iter().enumerate().all(|(n, &id)| {
            lab.client_status(id).unwrap().echoed_bytes >= client_streams[n].len() as u64
        })
    })
    .await;
    for &id in &ids {
        let s = lab.client_status(id).unwrap();
        assert!(
            s.intact && s.echoed_bytes == s.sent_bytes,
            "client {id}: {s:?}"
        );
    }
    for &id in &ids {
        let how = if id % 2 == 1 {
            CloseKind::Fin
        } else {
            CloseKind::Rst
        };
        lab.client_close(id, how).unwrap();
    }
    // Each close sends X `close_attempts` times (after the half-close linger for a FIN).
    let n = clients as u64 * u64::from(lab.config().proxy1.close_attempts);
    wait_until("every X has crossed the link", || {
        let s = lab.snapshot();
        s.proxy1.sent.close >= n && s.proxy2.received.close >= n
    })
    .await;
    // Then until nothing moves any more, so no frame is still on its way at shutdown.
    let mut last = None;
    let mut still = 0;
    while still < 3 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let s = lab.snapshot();
        let now = (s.proxy1, s.proxy2);
        still = if Some(now) == last { still + 1 } else { 0 };
        last = Some(now);
    }
    if let Some((note, datagram)) = note {
        capture
            .tap()
            .record(TapRecord {
                time: SystemTime::now(),
                src: addrs.proxy1_udp,
                dst: addrs.proxy2_udp,
                datagram: datagram.to_vec(),
                note: Some(note.to_string()),
                on_wire: true,
            })
            .await;
    }
    let snapshot = lab.snapshot();
    lab.shutdown().await;
    let summary = capture.finish().await;
    let ended = SystemTime::now();
    let events_dropped = events.dropped();
    drop(events);
    let (mut sent, mut received) = (Vec::new(), Vec::new());
    while let Ok(event) = rx.try_recv() {
        match event.kind {
            EventKind::FrameSent { at, peer, frame } => sent.push((at, peer, frame)),
            EventKind::FrameReceived { at, peer, frame } => received.push((at, peer, frame)),
            _ => {}
        }
    }
    TrafficRun {
        addrs,
        started,
        ended,
        sent,
        received,
        events_dropped,
        client_streams,
        snapshot,
        summary,
    }
}

/// Polls `done` until it holds; gives up (failing the test) after a generous bound, so a
/// broken tunnel fails instead of hanging. Not a timing assertion.
pub async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_mins(1);
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Checks a capture of a lab run against the run's event stream: same frames, same bytes.
/// `captured` must hold only the link's own frames (leave out injected note records).
pub fn assert_capture_matches_events(run: &TrafficRun, captured: &[Captured]) {
    let (p1, p2) = (run.addrs.proxy1_udp, run.addrs.proxy2_udp);
    assert_eq!(run.events_dropped, 0, "the test needs every event");
    assert!(!captured.is_empty());

    // Every packet is between the two proxies' real addresses, at a real time of the run.
    let since = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap();
    // Classic pcap keeps microseconds: allow the start to be rounded down.
    let (from, to) = (
        since(run.started)
            .checked_sub(Duration::from_micros(1))
            .unwrap(),
        since(run.ended),
    );
    for (n, c) in captured.iter().enumerate() {
        assert!(
            (c.src, c.dst) == (p1, p2) || (c.src, c.dst) == (p2, p1),
            "packet {} goes {} -> {}, not between proxy1 {p1} and proxy2 {p2}",
            n + 1,
            c.src,
            c.dst
        );
        assert!(
            from <= c.time && c.time <= to,
            "packet {} time {:?} is outside the run",
            n + 1,
            c.time
        );
    }

    // Same frames as the FrameSent events of each endpoint (as multisets: two connections'
    // tasks may hand their frames to the tap in a different order than they emitted events).
    let key = |src: SocketAddr, dst: SocketAddr, f: &FrameSummary| format!("{src}->{dst} {f:?}");
    let mut from_capture: Vec<String> = captured
        .iter()
        .map(|c| key(c.src, c.dst, &c.summary()))
        .collect();
    let mut from_events: Vec<String> = run
        .sent
        .iter()
        .map(|(at, peer, f)| match at {
            Endpoint::Proxy1 => key(p1, *peer, f),
            Endpoint::Proxy2 => key(p2, *peer, f),
        })
        .collect();
    from_capture.sort();
    from_events.sort();
    assert_eq!(
        from_capture.len(),
        from_events.len(),
        "frame count: capture vs FrameSent events"
    );
    assert_eq!(from_capture, from_events, "capture vs FrameSent events");

    // On loopback with large socket buffers nothing is lost: what one side received is what
    // the other sent, so the capture also matches the FrameReceived events.
    let mut from_received: Vec<String> = run
        .received
        .iter()
        .map(|(at, peer, f)| match at {
            Endpoint::Proxy1 => key(*peer, p1, f),
            Endpoint::Proxy2 => key(*peer, p2, f),
        })
        .collect();
    from_received.sort();
    assert_eq!(
        from_capture, from_received,
        "capture vs FrameReceived events"
    );

    // And the exact counters agree.
    let from = |addr| captured.iter().filter(|c| c.src == addr).count() as u64;
    assert_eq!(from(p1), run.snapshot.proxy1.sent.total());
    assert_eq!(from(p2), run.snapshot.proxy2.sent.total());
    let kinds = |addr, kind| {
        captured
            .iter()
            .filter(|c| c.src == addr && c.summary().kind == kind)
            .count() as u64
    };
    for kind in [
        FrameKind::Connect,
        FrameKind::ConnectOk,
        FrameKind::Data,
        FrameKind::Close,
    ] {
        assert_eq!(
            kinds(p1, kind),
            run.snapshot.proxy1.sent.get(kind),
            "{kind:?} from proxy1"
        );
        assert_eq!(
            kinds(p2, kind),
            run.snapshot.proxy2.sent.get(kind),
            "{kind:?} from proxy2"
        );
    }

    // Full payloads: per direction and id, the D payloads in capture order are exactly one
    // client's byte stream (each client holds its own id for the whole run).
    for (src, direction) in [(p1, "proxy1 -> proxy2"), (p2, "proxy2 -> proxy1")] {
        let mut streams: BTreeMap<u16, Vec<u8>> = BTreeMap::new();
        for c in captured
            .iter()
            .filter(|c| c.src == src && c.datagram[0] == b'D')
        {
            let id = u16::from(c.datagram[1] - b'0');
            streams
                .entry(id)
                .or_default()
                .extend_from_slice(&c.datagram[2..]);
        }
        let mut got: Vec<Vec<u8>> = streams.into_values().collect();
        let mut want = run.client_streams.clone();
        got.sort();
        want.sort();
        assert_eq!(
            got.len(),
            want.len(),
            "{direction}: one data stream per client"
        );
        assert!(
            got == want,
            "{direction}: captured payloads differ from what the clients sent"
        );
    }
}
