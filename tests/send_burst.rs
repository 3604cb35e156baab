//! `LinkSocket::send_burst` on real loopback sockets: a burst of frames of mixed sizes
//! (runs of full frames, shorter ones, acks, an empty `D`) arrives at a plain UDP peer whole
//! and in order, with UDP GSO and with it forced off; the counters, the capture tap and the
//! `FrameSent` events see every datagram; a sealed link still round-trips bursts, each
//! datagram sealed on its own; and an emulator on the link still counts (clear) or decides
//! (lossy) every frame of a burst.

mod common;

use std::net::SocketAddr;

use common::*;
use tokio::net::UdpSocket;
use tunlab::capture::CaptureTap;
use tunlab::event::{EventKind, EventSink};
use tunlab::impair::{DirectionSettings, LinkEmulator, LinkSettings, Percent};
use tunlab::link::seal::{Seal, SealKey, Side};
use tunlab::link::{EmulatorScope, LinkSocket, Received, TapScope};
use tunlab::net::bind_udp;
use tunlab::topology::{Endpoint, LinkDirection};
use tunlab::wire::{ConnId, Frame, Seq, WireMode};

const MODE: WireMode = WireMode::SelectiveRepeat;

/// Payload sizes of a burst: full frames in runs (one GSO message each, the last of a run
/// shorter), lone odd sizes, and an empty `D`. `None` is an ack.
fn burst_shape(full: usize) -> Vec<Option<usize>> {
    let mut shape = Vec::new();
    for run in [1usize, 2, 7, 70] {
        shape.extend(std::iter::repeat_n(Some(full), run));
        shape.push(Some(full / 3));
    }
    shape.extend([None, None, Some(0), Some(1), Some(full), None, Some(17)]);
    shape.extend(std::iter::repeat_n(Some(full), 5));
    shape.extend([Some(full - 1), Some(full - 1), Some(full), None]);
    shape
}

/// The payloads of `shape` (distinct bytes in each), kept for the frames to borrow.
fn payloads(shape: &[Option<usize>], seed: u64) -> Vec<Vec<u8>> {
    shape
        .iter()
        .enumerate()
        .map(|(n, size)| random_bytes(seed + n as u64, size.unwrap_or(0)))
        .collect()
}

fn frames<'a>(shape: &[Option<usize>], payloads: &'a [Vec<u8>]) -> Vec<Frame<'a>> {
    shape
        .iter()
        .zip(payloads)
        .enumerate()
        .map(|(n, (size, payload))| match size {
            Some(_) => Frame::Data {
                id: ConnId::new(3),
                seq: Seq(n as u32),
                payload,
            },
            None => Frame::Ack {
                id: ConnId::new(3),
                ack: Seq(n as u32),
                window: 64,
                sack: Default::default(),
            },
        })
        .collect()
}

fn encode(frame: &Frame<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    MODE.encode(frame, &mut out).unwrap();
    out
}

/// Reads `count` datagrams at `socket` (bounded in time), in the order they arrived.
async fn receive(socket: UdpSocket, count: usize) -> Vec<(Vec<u8>, SocketAddr)> {
    within("every datagram of the burst", async move {
        let mut got = Vec::with_capacity(count);
        let mut buf = vec![0u8; 65_536];
        while got.len() < count {
            let (len, from) = socket.recv_from(&mut buf).await.unwrap();
            got.push((buf[..len].to_vec(), from));
        }
        got
    })
    .await
}

async fn burst_reaches_a_plain_peer(gso: bool) {
    let (events, mut event_rx) = EventSink::channel(4096);
    let shape = burst_shape(MODE.max_payload());
    let (tap, mut tap_rx) = CaptureTap::channel(2 * shape.len() + 16);
    let mut link = LinkSocket::new(
        bind_udp(localhost()).unwrap(),
        Endpoint::Proxy1,
        MODE,
        events,
    )
    .unwrap()
    .with_capture(tap, TapScope::Sent);
    if !gso {
        link = link.without_gso();
    }
    let peer = bind_udp(localhost()).unwrap();
    let peer_addr = peer.local_addr().unwrap();
    let payloads = payloads(&shape, 7);
    let frames = frames(&shape, &payloads);
    let expected: Vec<Vec<u8>> = frames.iter().map(encode).collect();
    // Read while the burst goes out: nothing waits on the kernel's buffer.
    let reader = tokio::spawn(receive(peer, 2 * frames.len()));

    // Twice: the second burst finds the socket in the state the first left it.
    for round in 0..2 {
        let failed = within("the burst to go out", link.send_burst(&frames, peer_addr)).await;
        assert!(failed.is_empty(), "round {round}: {failed:?}");
    }
    let got = within("the reader", reader).await.unwrap();
    assert_eq!(got.len(), 2 * expected.len());
    for (n, ((bytes, from), want)) in got.iter().zip(expected.iter().cycle()).enumerate() {
        let n = n % expected.len();
        assert_eq!(bytes, want, "datagram {n} (shape {:?})", shape[n]);
        assert_eq!(*from, link.local_addr());
    }
    if gso {
        assert!(
            link.gso(),
            "the kernel refused UDP GSO on loopback (Linux has it since 4.18)"
        );
    } else {
        assert!(!link.gso());
    }

    let stats = link.stats().snapshot();
    let acks = shape.iter().filter(|s| s.is_none()).count() as u64;
    assert_eq!(stats.sent.ack, 2 * acks);
    assert_eq!(stats.sent.data, 2 * (shape.len() as u64 - acks));
    let bytes: usize = expected.iter().map(Vec::len).sum();
    assert_eq!(stats.sent_bytes, 2 * bytes as u64);

    for round in 0..2 {
        for (n, want) in expected.iter().enumerate() {
            let record = tap_rx.try_recv().unwrap_or_else(|_| {
                panic!("round {round}: the capture has no record of datagram {n}")
            });
            assert_eq!(&record.datagram, want, "round {round}, capture record {n}");
            assert_eq!((record.src, record.dst), (link.local_addr(), peer_addr));
            assert!(record.on_wire);
        }
    }
    assert!(
        tap_rx.try_recv().is_err(),
        "one capture record per datagram"
    );

    let mut sent = Vec::new();
    while let Ok(event) = event_rx.try_recv() {
        if let EventKind::FrameSent { frame, peer, .. } = event.kind {
            assert_eq!(peer, peer_addr);
            sent.push(frame.wire_len);
        }
    }
    let lens: Vec<usize> = expected.iter().chain(&expected).map(Vec::len).collect();
    assert_eq!(sent, lens, "one FrameSent per datagram, in order");
}

#[tokio::test]
async fn a_burst_arrives_whole_and_in_order_with_gso() {
    burst_reaches_a_plain_peer(true).await;
}

#[tokio::test]
async fn a_burst_arrives_whole_and_in_order_with_gso_forced_off() {
    burst_reaches_a_plain_peer(false).await;
}

/// Two sealed ends with one key: bursts before the session exists (held until proxy2's
/// answer) and after it (sealed one by one, sent batched) all open at proxy2, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_bursts_round_trip() {
    let key = SealKey::generate().unwrap();
    let p2 = LinkSocket::new(
        bind_udp(localhost()).unwrap(),
        Endpoint::Proxy2,
        MODE,
        EventSink::disabled(),
    )
    .unwrap()
    .with_seal(Seal::new(key.clone(), Side::Proxy2));
    let p1 = std::sync::Arc::new(
        LinkSocket::new(
            bind_udp(localhost()).unwrap(),
            Endpoint::Proxy1,
            MODE,
            EventSink::disabled(),
        )
        .unwrap()
        .with_seal(Seal::new(key, Side::Proxy1)),
    );
    let p2_addr = p2.local_addr();
    // proxy1 reads too: proxy2's answer to its hello releases what was held.
    let p1_reader = {
        let p1 = p1.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; tunlab::link::RECV_BUFFER];
            loop {
                let _ = p1.recv(&mut buf, None).await;
            }
        })
    };
    let shape = burst_shape(p1.max_payload());
    let payloads = payloads(&shape, 99);
    let frames = frames(&shape, &payloads);

    let mut buf = vec![0u8; tunlab::link::RECV_BUFFER];
    for round in 0..3 {
        let failed = within("the burst to go out", p1.send_burst(&frames, p2_addr)).await;
        assert!(failed.is_empty(), "round {round}: {failed:?}");
        for (n, want) in frames.iter().enumerate() {
            let got = within("a sealed frame", async {
                loop {
                    if let Received::Frame { frame, .. } = p2.recv(&mut buf, None).await.unwrap() {
                        return encode(&frame);
                    }
                }
            })
            .await;
            assert_eq!(got, encode(want), "round {round}, frame {n}");
        }
    }
    let stats = p2.stats().snapshot();
    assert_eq!(stats.received.total(), 3 * frames.len() as u64);
    assert_eq!((stats.unauthentic, stats.replayed), (0, 0));
    assert!(p1.seal_status().unwrap().established);
    p1_reader.abort();
}

/// Sends one burst from a proxy1 link with an emulator on what it sends (`to_proxy2`) to a
/// plain peer: the emulator's report for that direction, the link's sent count, and the
/// datagrams that arrived (read until `expect` arrived, then until quiet).
async fn burst_through_emulator(
    to_proxy2: DirectionSettings,
) -> (
    tunlab::impair::DirectionReport,
    u64,
    Vec<Vec<u8>>,
    Vec<Vec<u8>>,
) {
    let emulator = LinkEmulator::new(
        LinkSettings {
            to_proxy2,
            to_proxy1: DirectionSettings::default(),
        },
        2026,
    );
    let link = LinkSocket::new(
        bind_udp(localhost()).unwrap(),
        Endpoint::Proxy1,
        MODE,
        EventSink::disabled(),
    )
    .unwrap()
    .with_emulator(emulator.clone(), EmulatorScope::Sent);
    let peer = bind_udp(localhost()).unwrap();
    let peer_addr = peer.local_addr().unwrap();
    let shape = burst_shape(link.max_payload());
    let payloads = payloads(&shape, 5);
    let frames = frames(&shape, &payloads);
    let expected: Vec<Vec<u8>> = frames.iter().map(encode).collect();
    let failed = within("the burst to go out", link.send_burst(&frames, peer_addr)).await;
    assert!(failed.is_empty(), "{failed:?}");
    let report = emulator
        .direction(LinkDirection::ToProxy2)
        .counters()
        .snapshot();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65_536];
    while (got.len() as u64) < report.delivered {
        let (len, _) = within("a datagram", peer.recv_from(&mut buf))
            .await
            .unwrap();
        got.push(buf[..len].to_vec());
    }
    (report, link.stats().snapshot().sent.total(), got, expected)
}

/// Through a clear emulator the burst is batched, and each frame still counts as offered
/// and delivered there.
#[tokio::test]
async fn a_clear_emulator_counts_every_frame_of_a_batched_burst() {
    let (report, sent, got, expected) = burst_through_emulator(DirectionSettings::default()).await;
    let n = expected.len() as u64;
    assert_eq!((report.sent, report.delivered, report.dropped), (n, n, 0));
    assert_eq!(sent, n);
    assert_eq!(got, expected);
}

/// Through a lossy emulator each frame is decided on its own, as `send` decides it: the
/// survivors arrive in order, and exactly as many as the emulator delivered.
#[tokio::test]
async fn a_lossy_emulator_decides_each_frame_of_a_burst() {
    let lossy = DirectionSettings {
        loss: Percent::new(30.0).unwrap(),
        ..DirectionSettings::default()
    };
    let (report, sent, got, expected) = burst_through_emulator(lossy).await;
    let n = expected.len() as u64;
    assert_eq!(report.sent, n);
    assert_eq!(report.delivered + report.dropped, n);
    assert!(report.dropped > 0 && report.delivered > 0, "{report:?}");
    assert_eq!(sent, n, "the role sent every frame, whatever the link did");
    // In order: what arrived is a subsequence of what was sent.
    let mut rest = expected.iter();
    for datagram in &got {
        assert!(
            rest.any(|want| want == datagram),
            "a datagram out of order or changed"
        );
    }
}
