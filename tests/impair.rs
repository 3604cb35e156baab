//! The link emulator through real loopback sockets: every test binds 127.0.0.1:0, sends
//! frames through a `LinkSocket` with fixed seeds, and checks what actually arrives.
//!
//! Exactness comes from the seeded `Decider`: a test runs its own decider with the same seed
//! beside the link and predicts, frame by frame, what the receiving socket must see. Timing
//! checks use tokio's paused clock, so they are exact and never depend on machine load.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use tokio::net::UdpSocket;
use tokio::time::{Instant, timeout};

use tunlab::capture::{CaptureTap, TapRecord};
use tunlab::cli::{Cli, Command};
use tunlab::event::{ClientEnd, EventKind, EventSink};
use tunlab::impair::{
    BitRate, Decider, DirectionReport, DirectionSettings, DropCause, LinkEmulator, LinkSettings,
    Percent,
};
use tunlab::lab::{Lab, LabConfig};
use tunlab::link::{EmulatorScope, LinkSocket, RECV_BUFFER, Received, TapScope};
use tunlab::topology::{Endpoint, LinkDirection};
use tunlab::wire::{ConnId, Frame, Seq, WireMode};

const CLASSIC: WireMode = WireMode::Classic;

fn pct(value: f64) -> Percent {
    Percent::new(value).unwrap()
}

/// Bounds every wait: a bug fails the test instead of hanging it.
async fn within<F: std::future::Future>(what: &str, future: F) -> F::Output {
    timeout(Duration::from_secs(10), future)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

async fn udp() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").await.unwrap()
}

/// proxy1's end of the link, emulating what it sends (p1→p2), and a plain socket standing in
/// for proxy2.
async fn proxy1_link(
    settings: DirectionSettings,
    seed: u64,
) -> (LinkSocket, UdpSocket, Arc<LinkEmulator>) {
    let emulator = LinkEmulator::new(
        LinkSettings {
            to_proxy2: settings,
            ..LinkSettings::default()
        },
        seed,
    );
    let link = LinkSocket::new(
        udp().await,
        Endpoint::Proxy1,
        CLASSIC,
        EventSink::disabled(),
    )
    .unwrap()
    .with_emulator(emulator.clone(), EmulatorScope::Sent);
    (link, udp().await, emulator)
}

/// A `D0` frame whose payload is the sequence number `n`.
fn numbered(n: u32) -> [u8; 4] {
    n.to_be_bytes()
}

async fn send_numbered(link: &LinkSocket, n: u32, to: SocketAddr) {
    let payload = numbered(n);
    link.send(
        &Frame::Data {
            id: ConnId::new(0),
            seq: Seq::ZERO,
            payload: &payload,
        },
        to,
    )
    .await
    .unwrap();
}

/// Reads one datagram from a plain socket and returns its sequence number.
async fn recv_numbered(socket: &UdpSocket) -> u32 {
    let mut buf = [0u8; RECV_BUFFER];
    let (len, _) = within("a datagram", socket.recv_from(&mut buf))
        .await
        .unwrap();
    assert_eq!(len, 6, "a numbered D frame is 6 bytes");
    assert_eq!(&buf[..2], b"D0");
    u32::from_be_bytes(buf[2..6].try_into().unwrap())
}

/// The payload range corruption may touch in a numbered frame.
const PAYLOAD: std::ops::Range<usize> = 2..6;

/// Sends `frames` numbered frames in batches and, after each batch, reads exactly what the
/// emulator says it put on the wire (so the receiver's kernel buffer can never overflow and
/// blur the count). Returns the sequence numbers in arrival order.
async fn send_and_collect(
    link: &LinkSocket,
    receiver: &UdpSocket,
    emulator: &LinkEmulator,
    numbers: impl IntoIterator<Item = u32>,
) -> Vec<u32> {
    let to = receiver.local_addr().unwrap();
    let counters = emulator.direction(LinkDirection::ToProxy2).counters();
    let delivered_before = counters.delivered.get();
    let mut arrived = Vec::new();
    let mut numbers = numbers.into_iter().peekable();
    while numbers.peek().is_some() {
        for n in numbers.by_ref().take(64) {
            send_numbered(link, n, to).await;
        }
        while (arrived.len() as u64) < counters.delivered.get() - delivered_before {
            arrived.push(recv_numbered(receiver).await);
        }
    }
    arrived
}

/// Every frame offered is accounted for: `sent + duplicated = delivered + dropped + queued`.
fn assert_adds_up(report: &DirectionReport) {
    assert_eq!(
        report.sent + report.duplicated,
        report.delivered + report.dropped + report.queued,
        "counters do not add up: {report:?}"
    );
}

#[tokio::test]
async fn thirty_percent_loss_drops_between_28_and_32_percent_of_10000_frames() {
    const FRAMES: u32 = 10_000;
    const SEED: u64 = 30;
    let settings = DirectionSettings {
        loss: pct(30.0),
        ..DirectionSettings::default()
    };
    let (link, receiver, emulator) = proxy1_link(settings.clone(), SEED).await;
    let arrived = send_and_collect(&link, &receiver, &emulator, 0..FRAMES).await;

    let lost = FRAMES as usize - arrived.len();
    assert!(
        (2_800..=3_200).contains(&lost),
        "{lost} of {FRAMES} frames lost at 30% loss"
    );
    // Exactly the frames the seeded decisions kept arrived, in order.
    let mut decider = Decider::new(SEED, LinkDirection::ToProxy2);
    let expected: Vec<u32> = (0..FRAMES)
        .filter(|_| decider.decide(&settings, PAYLOAD).drop.is_none())
        .collect();
    assert_eq!(arrived, expected);

    let report = emulator.report().to_proxy2;
    assert_eq!(report.sent, u64::from(FRAMES));
    assert_eq!(report.delivered, arrived.len() as u64);
    assert_eq!(report.dropped_by.loss, lost as u64);
    assert_eq!(report.dropped, lost as u64);
    assert_adds_up(&report);
    // The endpoint's own counters are the role's view: it sent every frame.
    assert_eq!(link.stats().snapshot().sent.data, u64::from(FRAMES));
}

#[tokio::test]
async fn duplication_and_reordering_arrive_exactly_as_the_seeded_decisions_say() {
    const FRAMES: u32 = 3_000;
    const SEED: u64 = 4242;
    let settings = DirectionSettings {
        loss: pct(5.0),
        dup: pct(10.0),
        reorder: pct(10.0),
        // Long enough that a held frame always waits for the next one: no timing involved.
        reorder_wait: Duration::from_mins(1),
        ..DirectionSettings::default()
    };
    let (link, receiver, emulator) = proxy1_link(settings.clone(), SEED).await;
    let mut arrived = send_and_collect(&link, &receiver, &emulator, 0..FRAMES).await;
    // A last frame with the emulator cleared releases whatever is still held.
    let sentinel = u32::MAX;
    emulator.set_direction(LinkDirection::ToProxy2, DirectionSettings::default());
    arrived.extend(send_and_collect(&link, &receiver, &emulator, [sentinel]).await);

    // The rule, from the settings' documentation: a held frame (and its copy) goes right
    // after the next frame that is not held; a copy goes right behind its original.
    let mut decider = Decider::new(SEED, LinkDirection::ToProxy2);
    let (mut expected, mut held) = (Vec::new(), Vec::new());
    let (mut duplicated, mut reordered) = (0, 0);
    let frames = (0..FRAMES).map(|n| (n, &settings));
    let clear = DirectionSettings::default();
    for (n, settings) in frames.chain([(sentinel, &clear)]) {
        let decision = decider.decide(settings, PAYLOAD);
        if decision.drop.is_some() {
            continue;
        }
        let copies = if decision.duplicate {
            vec![n, n]
        } else {
            vec![n]
        };
        duplicated += copies.len() - 1;
        if decision.reorder {
            held.extend(copies);
        } else {
            expected.extend(copies);
            reordered += held.iter().collect::<std::collections::BTreeSet<_>>().len();
            expected.append(&mut held);
        }
    }
    assert!(held.is_empty());
    assert!(
        duplicated > 200 && reordered > 200,
        "the seed exercises both"
    );
    assert_eq!(arrived.len(), expected.len());
    assert_eq!(arrived, expected);

    let report = emulator.report().to_proxy2;
    assert_eq!(report.duplicated, duplicated as u64);
    assert_eq!(report.reordered, reordered as u64);
    assert_eq!(report.queued, 0);
    assert_adds_up(&report);
}

#[tokio::test]
async fn corruption_flips_exactly_the_decided_payload_bit_and_never_a_header() {
    const SEED: u64 = 77;
    let settings = DirectionSettings {
        corrupt: pct(50.0),
        ..DirectionSettings::default()
    };
    let (link, receiver, emulator) = proxy1_link(settings.clone(), SEED).await;
    let to = receiver.local_addr().unwrap();
    let mut decider = Decider::new(SEED, LinkDirection::ToProxy2);
    let mut buf = [0u8; RECV_BUFFER];
    let mut corrupted = 0;
    for n in 0..400u32 {
        // Every fourth frame is a C: it has no payload, so it must come through untouched.
        let (frame, corruptible) = if n % 4 == 0 {
            (
                Frame::Connect {
                    id: ConnId::new(3),
                    isn: Seq::ZERO,
                    destination: None,
                },
                0..0,
            )
        } else {
            let payload = numbered(n);
            let frame = Frame::Data {
                id: ConnId::new(3),
                seq: Seq::ZERO,
                payload: &payload,
            };
            let sent = CLASSIC.to_bytes(&frame).unwrap();
            link.send(&frame, to).await.unwrap();
            let (len, _) = within("a D frame", receiver.recv_from(&mut buf))
                .await
                .unwrap();
            let mut expected = sent;
            if let Some(corruption) = decider.decide(&settings, PAYLOAD).corrupt {
                assert!(corruption.offset >= 2, "the header is never touched");
                corruption.apply(&mut expected);
                corrupted += 1;
            }
            assert_eq!(&buf[..len], &expected[..], "frame {n}");
            continue;
        };
        link.send(&frame, to).await.unwrap();
        let (len, _) = within("a C frame", receiver.recv_from(&mut buf))
            .await
            .unwrap();
        assert_eq!(decider.decide(&settings, corruptible).corrupt, None);
        assert_eq!(&buf[..len], b"C3");
    }
    assert!(corrupted > 100, "{corrupted} corrupted");
    assert_eq!(emulator.report().to_proxy2.corrupted, corrupted);
}

#[tokio::test(start_paused = true)]
async fn delay_adds_at_least_the_configured_time_without_stalling_the_sender() {
    let settings = DirectionSettings {
        delay: Duration::from_millis(250),
        ..DirectionSettings::default()
    };
    let (link, receiver, emulator) = proxy1_link(settings, 1).await;
    let to = receiver.local_addr().unwrap();
    let start = Instant::now();
    send_numbered(&link, 1, to).await;
    // send() queued the frame and returned at once: nothing sleeps in the sending path.
    assert_eq!(Instant::now(), start);
    let mut buf = [0u8; RECV_BUFFER];
    assert!(
        timeout(Duration::from_millis(249), receiver.recv_from(&mut buf))
            .await
            .is_err(),
        "the frame arrived before its delay"
    );
    assert_eq!(recv_numbered(&receiver).await, 1);
    assert!(start.elapsed() >= Duration::from_millis(250));
    let report = emulator.report().to_proxy2;
    assert_eq!((report.delivered, report.delayed, report.queued), (1, 1, 0));
}

#[tokio::test(start_paused = true)]
async fn jitter_varies_the_delay_within_bounds_and_keeps_order() {
    let settings = DirectionSettings {
        delay: Duration::from_millis(100),
        jitter: Duration::from_millis(50),
        ..DirectionSettings::default()
    };
    let (link, receiver, _) = proxy1_link(settings, 2).await;
    let to = receiver.local_addr().unwrap();
    let start = Instant::now();
    for n in 0..50 {
        send_numbered(&link, n, to).await;
    }
    let mut arrivals = Vec::new();
    for n in 0..50 {
        assert_eq!(recv_numbered(&receiver).await, n, "jitter reordered frames");
        arrivals.push(start.elapsed());
    }
    assert!(arrivals.iter().all(|t| *t >= Duration::from_millis(50)));
    assert!(arrivals.iter().all(|t| *t <= Duration::from_millis(150)));
    assert!(
        arrivals.first() != arrivals.last(),
        "jitter varies the delay"
    );
}

#[tokio::test(start_paused = true)]
async fn the_rate_limit_spaces_frames_and_its_queue_drops_when_full() {
    let settings = DirectionSettings {
        rate: Some(BitRate::new(8_000).unwrap()), // 1000 bytes per second
        queue: 5,
        ..DirectionSettings::default()
    };
    let (link, receiver, emulator) = proxy1_link(settings, 3).await;
    let to = receiver.local_addr().unwrap();
    let payload = [b'x'; 98]; // 100-byte datagrams: 100ms each at this rate
    let start = Instant::now();
    for _ in 0..20 {
        let frame = Frame::Data {
            id: ConnId::new(0),
            seq: Seq::ZERO,
            payload: &payload,
        };
        link.send(&frame, to).await.unwrap();
    }
    let mut buf = [0u8; RECV_BUFFER];
    for k in 1..=5u64 {
        within("a rate-limited frame", receiver.recv_from(&mut buf))
            .await
            .unwrap();
        assert!(
            start.elapsed() >= Duration::from_millis(100 * k),
            "frame {k}"
        );
    }
    let report = emulator.report().to_proxy2;
    assert_eq!(report.delivered, 5);
    assert_eq!(report.dropped_by.queue_full, 15);
    assert_adds_up(&report);
    // Nothing else was on its way.
    assert!(
        timeout(Duration::from_secs(5), receiver.recv_from(&mut buf))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn dropped_frames_reach_the_capture_only_as_notes_and_copies_twice() {
    let (tap, mut records) = CaptureTap::channel(64);
    let (events, mut event_rx) = EventSink::channel(64);
    let emulator = LinkEmulator::new(
        LinkSettings {
            to_proxy2: DirectionSettings {
                loss: Percent::HUNDRED,
                ..DirectionSettings::default()
            },
            ..LinkSettings::default()
        },
        5,
    );
    let link = LinkSocket::new(udp().await, Endpoint::Proxy1, CLASSIC, events)
        .unwrap()
        .with_capture(tap, TapScope::Sent)
        .with_emulator(emulator.clone(), EmulatorScope::Sent);
    let receiver = udp().await;
    let to = receiver.local_addr().unwrap();
    send_numbered(&link, 1, to).await;
    emulator.set_direction(
        LinkDirection::ToProxy2,
        DirectionSettings {
            dup: Percent::HUNDRED,
            ..DirectionSettings::default()
        },
    );
    send_numbered(&link, 2, to).await;
    assert_eq!(recv_numbered(&receiver).await, 2);
    assert_eq!(recv_numbered(&receiver).await, 2);

    let mut taken: Vec<TapRecord> = Vec::new();
    for _ in 0..3 {
        taken.push(within("a tap record", records.recv()).await.unwrap());
    }
    let [dropped, original, copy] = <[TapRecord; 3]>::try_from(taken).unwrap();
    assert!(!dropped.on_wire);
    assert_eq!(dropped.datagram, b"D0\0\0\0\x01");
    assert_eq!(
        dropped.note.as_deref(),
        Some("link emulator: dropped (loss); not sent")
    );
    assert!(original.on_wire && copy.on_wire);
    assert_eq!(original.datagram, b"D0\0\0\0\x02");
    assert_eq!(copy.datagram, original.datagram);
    assert_eq!(
        original.note.as_deref(),
        Some("link emulator: duplicated (a copy follows)")
    );
    assert_eq!(copy.note.as_deref(), Some("link emulator: duplicate copy"));

    // The event stream marks the same frames for the traces.
    let mut decisions = Vec::new();
    while let Ok(event) = event_rx.try_recv() {
        if let EventKind::LinkDecision {
            direction, what, ..
        } = event.kind
        {
            assert_eq!(direction, LinkDirection::ToProxy2);
            decisions.push(what);
        }
    }
    assert_eq!(decisions.len(), 3);
    assert_eq!(decisions[0].dropped, Some(DropCause::Loss));
    assert!(decisions[1].duplicated && decisions[2].copy);
}

/// A standalone proxy1 emulates what arrives from proxy2 (which may be a course script).
#[tokio::test]
async fn a_standalone_proxy_emulates_what_it_receives() {
    const SEED: u64 = 12;
    let settings = DirectionSettings {
        loss: pct(30.0),
        dup: pct(10.0),
        ..DirectionSettings::default()
    };
    let emulator = LinkEmulator::new(
        LinkSettings {
            to_proxy1: settings.clone(),
            ..LinkSettings::default()
        },
        SEED,
    );
    let link = LinkSocket::new(
        udp().await,
        Endpoint::Proxy1,
        CLASSIC,
        EventSink::disabled(),
    )
    .unwrap()
    .with_emulator(emulator.clone(), EmulatorScope::SentAndReceived);
    let proxy2 = udp().await;
    let to = link.local_addr();

    let mut decider = Decider::new(SEED, LinkDirection::ToProxy1);
    let mut buf = vec![0u8; RECV_BUFFER];
    let mut arrived = 0;
    for batch in 0..20u32 {
        let numbers: Vec<u32> = (batch * 50..(batch + 1) * 50).collect();
        let mut expected = Vec::new();
        for &n in &numbers {
            let mut datagram = b"D0".to_vec();
            datagram.extend_from_slice(&numbered(n));
            proxy2.send_to(&datagram, to).await.unwrap();
            let decision = decider.decide(&settings, PAYLOAD);
            if decision.drop.is_none() {
                expected.push(n);
                if decision.duplicate {
                    expected.push(n);
                }
            }
        }
        for &n in &expected {
            match within("a frame from proxy2", link.recv(&mut buf, None))
                .await
                .unwrap()
            {
                Received::Frame { frame, .. } => {
                    assert_eq!(frame.payload(), numbered(n));
                }
                Received::Dropped => panic!("frame {n} was dropped at the socket"),
            }
        }
        arrived += expected.len() as u64;
    }
    let report = emulator.report().to_proxy1;
    assert_eq!(report.sent, 1_000);
    assert_eq!(report.delivered, arrived);
    assert!((250..=350).contains(&report.dropped_by.loss));
    assert_adds_up(&report);
    // What it sends is emulated too (p1→p2, clear here): it goes straight out.
    link.send(
        &Frame::Connect {
            id: ConnId::new(1),
            isn: Seq::ZERO,
            destination: None,
        },
        proxy2.local_addr().unwrap(),
    )
    .await
    .unwrap();
    let (len, _) = within("C1", proxy2.recv_from(&mut buf)).await.unwrap();
    assert_eq!(&buf[..len], b"C1");
    assert_eq!(emulator.report().to_proxy2.delivered, 1);
}

#[tokio::test(start_paused = true)]
async fn delay_on_arrival_holds_the_frame_back_from_the_receiving_role() {
    let emulator = LinkEmulator::new(
        LinkSettings {
            to_proxy2: DirectionSettings {
                delay: Duration::from_millis(100),
                ..DirectionSettings::default()
            },
            ..LinkSettings::default()
        },
        1,
    );
    let link = LinkSocket::new(
        udp().await,
        Endpoint::Proxy2,
        CLASSIC,
        EventSink::disabled(),
    )
    .unwrap()
    .with_emulator(emulator, EmulatorScope::SentAndReceived);
    let proxy1 = udp().await;
    let start = Instant::now();
    proxy1.send_to(b"C4", link.local_addr()).await.unwrap();
    let mut buf = vec![0u8; RECV_BUFFER];
    assert!(
        timeout(Duration::from_millis(99), link.recv(&mut buf, None))
            .await
            .is_err(),
        "handed over before its delay"
    );
    let received = within("C4", link.recv(&mut buf, None)).await.unwrap();
    assert!(
        matches!(received, Received::Frame { frame: Frame::Connect { id, .. }, .. } if id == ConnId::new(4))
    );
    assert!(start.elapsed() >= Duration::from_millis(100));
}

/// Waits (bounded) until `done` holds for the lab.
async fn wait_for(lab: &Lab, what: &str, done: impl Fn(&Lab) -> bool) {
    within(what, async {
        while !done(lab) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn loss_to_100_percent_and_back_leaves_the_tunnel_working_for_new_connections() {
    let mut config = LabConfig::ephemeral();
    config.proxy1.connect_attempts = 3;
    config.proxy1.connect_retry = Duration::from_millis(50);
    config.link_seed = Some(100);
    let mut lab = Lab::start(config, EventSink::disabled()).await.unwrap();
    assert_eq!(lab.link_seed(), 100);

    lab.set_link(LinkSettings::symmetric(DirectionSettings {
        loss: Percent::HUNDRED,
        ..DirectionSettings::default()
    }));
    let cut_off = lab.add_client().await.unwrap();
    wait_for(&lab, "proxy1 to give up on the cut-off client", |lab| {
        lab.client_status(cut_off).unwrap().ended.is_some()
    })
    .await;
    assert_eq!(
        lab.client_status(cut_off).unwrap().ended,
        Some(ClientEnd::ByTunnel)
    );
    let during = lab.snapshot().link;
    assert_eq!(during.to_proxy2.delivered, 0);
    assert!(during.to_proxy2.dropped_by.loss >= 3, "every C was lost");

    lab.set_link(LinkSettings::default());
    assert!(lab.link_settings().is_clear());
    let mut clients = Vec::new();
    for _ in 0..3 {
        let client = lab.add_client().await.unwrap();
        lab.client_send(client, b"hola mundo".to_vec()).unwrap();
        clients.push(client);
    }
    wait_for(&lab, "every new client's echo", |lab| {
        clients.iter().all(|&c| {
            let status = lab.client_status(c).unwrap();
            status.echoed_bytes == 10
        })
    })
    .await;
    for &client in &clients {
        let status = lab.client_status(client).unwrap();
        assert!(status.intact && status.ended.is_none());
    }

    let snapshot = lab.snapshot();
    let link = &snapshot.link;
    assert!(link.to_proxy2.delivered > 0 && link.to_proxy1.delivered > 0);
    // What each proxy sent is what the link was offered; what crossed is what the other
    // proxy received.
    assert_eq!(link.to_proxy2.sent, snapshot.proxy1.sent.total());
    assert_eq!(link.to_proxy1.sent, snapshot.proxy2.sent.total());
    assert_eq!(link.to_proxy2.delivered, snapshot.proxy2.received.total());
    assert_eq!(link.to_proxy1.delivered, snapshot.proxy1.received.total());
    assert_adds_up(&link.to_proxy2);
    assert_adds_up(&link.to_proxy1);
    // The JSON report carries these per direction.
    let json = serde_json::to_value(&snapshot).unwrap();
    for direction in ["to_proxy2", "to_proxy1"] {
        for field in [
            "sent",
            "delivered",
            "dropped",
            "duplicated",
            "reordered",
            "corrupted",
            "malformed",
        ] {
            assert!(
                json["link"][direction][field].is_u64(),
                "link.{direction}.{field} missing"
            );
        }
    }
    assert_eq!(json["link"]["seed"], 100);
    lab.shutdown().await;
}

#[test]
fn cli_flags_build_per_direction_settings() {
    let cli = Cli::try_parse_from([
        "tunlab",
        "--loss",
        "10",
        "--loss-to-proxy1",
        "5",
        "--delay",
        "20ms",
        "--jitter",
        "5ms",
        "--dup",
        "1",
        "--reorder",
        "2",
        "--corrupt",
        "0.5",
        "--rate",
        "2mbit",
        "--blackhole-to-proxy2",
        "--burst",
        "1,25",
        "--seed",
        "9",
    ])
    .unwrap();
    let settings = cli.lab.link.settings();
    assert_eq!(cli.lab.link.seed, Some(9));
    assert_eq!(settings.to_proxy2.loss, pct(10.0));
    assert_eq!(settings.to_proxy1.loss, pct(5.0));
    for direction in [&settings.to_proxy2, &settings.to_proxy1] {
        assert_eq!(direction.delay, Duration::from_millis(20));
        assert_eq!(direction.jitter, Duration::from_millis(5));
        assert_eq!(direction.dup, pct(1.0));
        assert_eq!(direction.reorder, pct(2.0));
        assert_eq!(direction.corrupt, pct(0.5));
        assert_eq!(direction.rate, Some(BitRate::new(2_000_000).unwrap()));
        assert_eq!(direction.burst.unwrap().leave, pct(25.0));
    }
    assert!(settings.to_proxy2.blackhole && !settings.to_proxy1.blackhole);
    assert!(
        Cli::try_parse_from(["tunlab"])
            .unwrap()
            .lab
            .link
            .settings()
            .is_clear()
    );
}

#[test]
fn standalone_proxies_take_the_same_flags() {
    let cli = Cli::try_parse_from([
        "tunlab",
        "proxy1",
        "3327",
        "localhost",
        "3328",
        "--loss-to-proxy1",
        "30",
    ])
    .unwrap();
    let Some(Command::Proxy1(args)) = cli.command else {
        panic!("not proxy1")
    };
    assert_eq!(args.link.settings().to_proxy1.loss, pct(30.0));
    let cli = Cli::try_parse_from([
        "tunlab",
        "proxy2",
        "3328",
        "localhost",
        "1818",
        "--delay",
        "1s",
    ])
    .unwrap();
    let Some(Command::Proxy2(args)) = cli.command else {
        panic!("not proxy2")
    };
    assert_eq!(args.link.settings().to_proxy2.delay, Duration::from_secs(1));
}

#[test]
fn bad_flag_values_are_refused_with_the_reason() {
    let cases = [
        (
            vec!["--loss", "150"],
            "150 is not a percentage from 0 to 100",
        ),
        (vec!["--dup-to-proxy2", "abc"], "not a number"),
        (vec!["--rate", "2mbps"], "unknown rate unit"),
        (vec!["--delay", "5m"], "longer than the 60s"),
        (vec!["--burst", "1,0"], "never end"),
        (vec!["--queue", "0"], "out of range"),
    ];
    for (args, reason) in cases {
        let err = Cli::try_parse_from(std::iter::once("tunlab").chain(args.iter().copied()))
            .unwrap_err()
            .to_string();
        assert!(err.contains(reason), "{args:?}: {err}");
    }
}

/// What a standalone proxy captures of what arrives: the datagram as it crossed the wire,
/// with a comment saying what the emulator then did before the proxy read it.
#[tokio::test(start_paused = true)]
async fn arrivals_are_captured_as_they_crossed_with_a_note() {
    let (tap, mut records) = CaptureTap::channel(64);
    let emulator = LinkEmulator::new(
        LinkSettings {
            to_proxy1: DirectionSettings {
                corrupt: Percent::HUNDRED,
                dup: Percent::HUNDRED,
                ..DirectionSettings::default()
            },
            ..LinkSettings::default()
        },
        8,
    );
    let link = LinkSocket::new(
        udp().await,
        Endpoint::Proxy1,
        CLASSIC,
        EventSink::disabled(),
    )
    .unwrap()
    .with_capture(tap, TapScope::SentAndReceived)
    .with_emulator(emulator.clone(), EmulatorScope::SentAndReceived);
    let proxy2 = udp().await;
    proxy2.send_to(b"D0abcd", link.local_addr()).await.unwrap();
    let mut buf = vec![0u8; RECV_BUFFER];
    let mut payloads = Vec::new();
    for _ in 0..2 {
        match within("the frame and its copy", link.recv(&mut buf, None))
            .await
            .unwrap()
        {
            Received::Frame { frame, .. } => payloads.push(frame.payload().to_vec()),
            Received::Dropped => panic!("dropped"),
        }
    }
    assert_eq!(payloads[0], payloads[1]);
    let flipped: u32 = payloads[0]
        .iter()
        .zip(b"abcd")
        .map(|(a, b)| (a ^ b).count_ones())
        .sum();
    assert_eq!(flipped, 1, "exactly one bit differs from what crossed");

    let arrived = within("the arrival record", records.recv()).await.unwrap();
    assert!(arrived.on_wire);
    assert_eq!(
        arrived.datagram, b"D0abcd",
        "the capture holds what crossed the wire"
    );
    let note = arrived.note.unwrap();
    assert!(
        note.starts_with("link emulator (on arrival): corrupted (byte ")
            && note.ends_with("flipped), duplicated (a copy follows)"),
        "{note}"
    );

    emulator.set_direction(
        LinkDirection::ToProxy1,
        DirectionSettings {
            loss: Percent::HUNDRED,
            ..DirectionSettings::default()
        },
    );
    proxy2.send_to(b"X0", link.local_addr()).await.unwrap();
    // Nothing reaches proxy1: the wait ends on the (paused) clock, not by a delivery.
    assert!(
        timeout(Duration::from_secs(1), link.recv(&mut buf, None))
            .await
            .is_err()
    );
    let lost = within("the lost frame's record", records.recv())
        .await
        .unwrap();
    assert!(
        lost.on_wire,
        "it did cross the wire; proxy1 just never saw it"
    );
    assert_eq!(lost.datagram, b"X0");
    assert_eq!(
        lost.note.as_deref(),
        Some("link emulator (on arrival): dropped (loss)")
    );
    let report = emulator.report().to_proxy1;
    assert_eq!(
        (report.sent, report.delivered, report.dropped_by.loss),
        (2, 2, 1)
    );
}

/// The scenario snippet in the README's "Live changes" section is a valid scenario that runs.
#[test]
fn the_readme_link_example_is_a_valid_scenario() {
    let readme =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
            .unwrap();
    let section = readme
        .split("### Live changes")
        .nth(1)
        .expect("the README has a Live changes section");
    let start = section.find("```toml\n").expect("with a toml example") + "```toml\n".len();
    let end = start + section[start..].find("```").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("link.toml");
    std::fs::write(
        &path,
        format!("deadline = \"10s\"\n{}", &section[start..end]),
    )
    .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tunlab"))
        .arg("--script")
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("link loss = 100"), "{stdout}");
}

/// A frame held back for reordering that nothing overtakes goes after `reorder_wait`, sent by
/// the emulator's timer (no later send needed), and counts as delayed, not reordered.
#[tokio::test(start_paused = true)]
async fn a_held_frame_that_nothing_overtakes_goes_after_the_wait() {
    let settings = DirectionSettings {
        reorder: Percent::HUNDRED,
        reorder_wait: Duration::from_millis(50),
        ..DirectionSettings::default()
    };
    let (link, receiver, emulator) = proxy1_link(settings, 4).await;
    let start = Instant::now();
    send_numbered(&link, 9, receiver.local_addr().unwrap()).await;
    assert_eq!(recv_numbered(&receiver).await, 9);
    assert!(start.elapsed() >= Duration::from_millis(50));
    let report = emulator.report().to_proxy2;
    assert_eq!(
        (report.delivered, report.reordered, report.delayed),
        (1, 0, 1)
    );
}

/// A clear link sends without asking the decider: frames that cross it make no draws, so the
/// decisions after it are the seed's first ones, as the README's "Seeds and replay" says.
/// They are still counted: sent, delivered, and it all adds up.
#[tokio::test]
async fn a_clear_period_makes_no_draws_and_is_still_counted() {
    const SEED: u64 = 31;
    let (link, receiver, emulator) = proxy1_link(DirectionSettings::default(), SEED).await;
    let clear = send_and_collect(&link, &receiver, &emulator, 0..500).await;
    assert_eq!(clear, (0..500).collect::<Vec<_>>());

    let lossy = DirectionSettings {
        loss: pct(30.0),
        ..DirectionSettings::default()
    };
    emulator.set_direction(LinkDirection::ToProxy2, lossy.clone());
    let arrived = send_and_collect(&link, &receiver, &emulator, 500..1500).await;
    let mut decider = Decider::new(SEED, LinkDirection::ToProxy2);
    let expected: Vec<u32> = (500..1500)
        .filter(|_| decider.decide(&lossy, PAYLOAD).drop.is_none())
        .collect();
    assert!(expected.len() < 900, "the seed loses frames");
    assert_eq!(arrived, expected);

    let report = emulator.report().to_proxy2;
    assert_eq!(report.sent, 1500);
    assert_eq!(report.delivered, 500 + expected.len() as u64);
    assert_eq!(report.dropped_by.loss, 1000 - expected.len() as u64);
    assert_adds_up(&report);
}

/// Clearing the link while frames are still held: later frames must not overtake them (the
/// fast path waits until the delay line is empty), and once it is, frames go straight out.
#[tokio::test(start_paused = true)]
async fn frames_sent_after_clearing_never_overtake_frames_still_held() {
    let delayed = DirectionSettings {
        delay: Duration::from_millis(50),
        ..DirectionSettings::default()
    };
    let (link, receiver, emulator) = proxy1_link(delayed, 8).await;
    let to = receiver.local_addr().unwrap();
    for n in 0..5 {
        send_numbered(&link, n, to).await;
    }
    emulator.set_direction(LinkDirection::ToProxy2, DirectionSettings::default());
    for n in 5..10 {
        send_numbered(&link, n, to).await;
    }
    let mut arrived = Vec::new();
    for _ in 0..10 {
        arrived.push(recv_numbered(&receiver).await);
    }
    assert_eq!(arrived, (0..10).collect::<Vec<_>>());
    let counters = emulator.direction(LinkDirection::ToProxy2).counters();
    assert_eq!(counters.queued.get(), 0);

    // The delay line is empty now: straight through, in order, counted.
    for n in 10..20 {
        send_numbered(&link, n, to).await;
    }
    for n in 10..20 {
        assert_eq!(recv_numbered(&receiver).await, n);
    }
    let report = emulator.report().to_proxy2;
    assert_eq!((report.sent, report.delivered, report.queued), (20, 20, 0));
    // The first five were delayed; the next five waited behind them.
    assert!(report.delayed >= 5, "{report:?}");
    assert_adds_up(&report);
}
