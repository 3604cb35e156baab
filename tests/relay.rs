//! `tunlab relay` on real sockets: a seeded loss pattern reproduced exactly, bounded peers
//! that expire, the course's Python proxies and our sealed selective-repeat proxies through
//! it, and clear errors for bad arguments.

mod common;

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::process::Process;
use common::*;
use tokio::net::{TcpStream, UdpSocket};
use tokio_util::sync::CancellationToken;
use tunlab::impair::{Decider, DirectionSettings, LinkEmulator, LinkSettings, Percent};
use tunlab::net::{LinkUdp, bind_udp};
use tunlab::roles::relay::{self, RelayConfig, RelayStats};
use tunlab::topology::LinkDirection;

/// Datagrams sent through the relay in the seeded-loss test.
const DATAGRAMS: u32 = 400;

fn lossy(percent: f64) -> DirectionSettings {
    DirectionSettings {
        loss: Percent::new(percent).unwrap(),
        ..DirectionSettings::default()
    }
}

/// The length of datagram `i` in the loss test: varied, so that lengths play no part.
fn length_of(i: u32) -> usize {
    8 + (i as usize * 37) % 1200
}

fn numbered(i: u32) -> Vec<u8> {
    let mut datagram = vec![0xA5; length_of(i)];
    datagram[..4].copy_from_slice(&i.to_be_bytes());
    datagram
}

fn number_of(datagram: &[u8]) -> u32 {
    u32::from_be_bytes(datagram[..4].try_into().unwrap())
}

/// A relay in this process, to `target`, with `config`'s emulator; its address, counters
/// and stop switch.
async fn start_relay(config: RelayConfig) -> (SocketAddr, Arc<RelayStats>, CancellationToken) {
    let listen = bind_udp("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listen.local_addr().unwrap();
    let stats = Arc::new(RelayStats::default());
    let stop = CancellationToken::new();
    tokio::spawn(relay::run(
        listen,
        config,
        stats.clone(),
        None,
        relay::silent(),
        stop.clone(),
    ));
    (addr, stats, stop)
}

/// Echoes every datagram back to where it came from, and reports its number.
fn udp_echo(socket: UdpSocket) -> tokio::sync::mpsc::UnboundedReceiver<(u32, SocketAddr)> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        while let Ok((len, from)) = socket.recv_from(&mut buf).await {
            let _ = tx.send((number_of(&buf[..len]), from));
            if socket.send_to(&buf[..len], from).await.is_err() {
                return;
            }
        }
    });
    rx
}

/// Polls `done` every 5 ms until it holds (bounded by `within`).
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    within(what, async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

/// Sends the numbered datagrams through a relay losing 30% each way with `seed`, to a
/// target that echoes them, `burst` at a time (one `sendmmsg`, so the relay reads and
/// forwards them as a batch): which numbers reached the target, and which came back.
async fn run_loss_pattern(seed: u64, burst: u32) -> (Vec<u32>, Vec<u32>) {
    let settings = LinkSettings {
        to_proxy2: lossy(30.0),
        to_proxy1: lossy(30.0),
    };
    let emulator = LinkEmulator::new(settings, seed);
    let target = bind_udp("127.0.0.1:0".parse().unwrap()).unwrap();
    let target_addr = target.local_addr().unwrap();
    let mut arrivals = udp_echo(target);
    let (relay_addr, _stats, stop) = start_relay(RelayConfig {
        emulator: Some(emulator.clone()),
        ..RelayConfig::new(target_addr)
    })
    .await;
    let peer = LinkUdp::try_from(bind_udp("127.0.0.1:0".parse().unwrap()).unwrap()).unwrap();
    let mut returned = Vec::new();
    let mut buf = vec![0u8; 65_536];
    let offload = tunlab::link::batch::SendOffload::default();
    // A burst at a time, each after the relay has taken the one before: nothing can be
    // lost anywhere but in the emulator, whatever the machine's load.
    for first in (0..DATAGRAMS).step_by(burst as usize) {
        let last = (first + burst).min(DATAGRAMS);
        let datagrams: Vec<Vec<u8>> = (first..last).map(numbered).collect();
        let datagrams: Vec<&[u8]> = datagrams.iter().map(Vec::as_slice).collect();
        let failed =
            tunlab::link::batch::send_burst(&peer, &offload, Some(relay_addr), &datagrams).await;
        assert!(failed.is_empty(), "{failed:?}");
        let offered = |d| emulator.direction(d).counters().snapshot();
        // Their fates decided (and, for those that crossed, their echoes' too).
        until("the datagrams' fate both ways", || {
            let up = offered(LinkDirection::ToProxy2);
            let down = offered(LinkDirection::ToProxy1);
            up.delivered + up.dropped == u64::from(last)
                && down.delivered + down.dropped == up.delivered
        })
        .await;
        let down = offered(LinkDirection::ToProxy1);
        while (returned.len() as u64) < down.delivered {
            let (len, _) = within("the echo", peer.recv_from(&mut buf)).await.unwrap();
            returned.push(number_of(&buf[..len]));
        }
    }
    stop.cancel();
    let mut reached = Vec::new();
    while let Ok((n, _)) = arrivals.try_recv() {
        reached.push(n);
    }
    (reached, returned)
}

/// What the emulator's own deciders say for `seed`: the numbers kept going, and of those,
/// the ones kept coming back.
fn predicted(seed: u64) -> (Vec<u32>, Vec<u32>) {
    let settings = lossy(30.0);
    let mut up = Decider::new(seed, LinkDirection::ToProxy2);
    let mut down = Decider::new(seed, LinkDirection::ToProxy1);
    let reached: Vec<u32> = (0..DATAGRAMS)
        .filter(|i| up.decide(&settings, 0..length_of(*i)).drop.is_none())
        .collect();
    let returned = reached
        .iter()
        .copied()
        .filter(|i| down.decide(&settings, 0..length_of(*i)).drop.is_none())
        .collect();
    (reached, returned)
}

#[tokio::test]
async fn the_relay_drops_exactly_what_the_seeded_emulator_decides() {
    let seed = 20_261_129;
    let first = run_loss_pattern(seed, 1).await;
    let expected = predicted(seed);
    assert_eq!(
        first, expected,
        "the relay's drops differ from the decider's"
    );
    // Loss happened both ways, so the comparison means something.
    assert!(expected.0.len() < DATAGRAMS as usize && expected.1.len() < expected.0.len());
    // Another seed decides otherwise: the comparison can fail.
    assert_ne!(predicted(seed + 1), expected);
    let second = run_loss_pattern(seed, 1).await;
    assert_eq!(second, first, "two runs with one seed differ");
}

/// The same decisions when datagrams arrive in bursts: the relay reads them with one
/// `recvmmsg` and sends the survivors with one `sendmmsg`, but decides each on its own.
#[tokio::test]
async fn bursts_get_the_same_seeded_decisions_datagram_by_datagram() {
    let seed = 20_261_129;
    assert_eq!(
        run_loss_pattern(seed, 25).await,
        predicted(seed),
        "the relay's drops differ from the decider's"
    );
}

/// Without an emulator, bursts of mixed sizes cross both ways whole and in order, and the
/// counters and the capture see every datagram on both legs.
#[tokio::test]
async fn bursts_cross_whole_in_order_counted_and_captured() {
    const BURST: u32 = 40;
    const BURSTS: u32 = 8;
    let target = bind_udp("127.0.0.1:0".parse().unwrap()).unwrap();
    let target_addr = target.local_addr().unwrap();
    let mut arrivals = udp_echo(target);
    let listen = bind_udp("127.0.0.1:0".parse().unwrap()).unwrap();
    let relay_addr = listen.local_addr().unwrap();
    let stats = Arc::new(RelayStats::default());
    let stop = CancellationToken::new();
    let (tap, mut records) = tunlab::capture::CaptureTap::channel(4 * (BURST * BURSTS) as usize);
    tokio::spawn(relay::run(
        listen,
        RelayConfig::new(target_addr),
        stats.clone(),
        Some(tap),
        relay::silent(),
        stop.clone(),
    ));
    let peer = LinkUdp::try_from(bind_udp("127.0.0.1:0".parse().unwrap()).unwrap()).unwrap();
    let peer_addr = peer.local_addr().unwrap();
    let offload = tunlab::link::batch::SendOffload::default();
    let mut buf = vec![0u8; 65_536];
    let mut bytes = 0;
    for burst in 0..BURSTS {
        // Runs of one length (one GSO message each) and odd lengths between them.
        let datagrams: Vec<Vec<u8>> = (burst * BURST..(burst + 1) * BURST)
            .map(|i| {
                let mut datagram = numbered(i);
                datagram.resize(if i % 10 < 7 { 1200 } else { length_of(i) }, 0x5A);
                datagram
            })
            .collect();
        let slices: Vec<&[u8]> = datagrams.iter().map(Vec::as_slice).collect();
        let failed =
            tunlab::link::batch::send_burst(&peer, &offload, Some(relay_addr), &slices).await;
        assert!(failed.is_empty(), "{failed:?}");
        for want in &datagrams {
            let (len, from) = within("the echo", peer.recv_from(&mut buf)).await.unwrap();
            assert_eq!(from, relay_addr);
            assert_eq!(&buf[..len], &want[..], "echo of {}", number_of(want));
            bytes += len as u64;
        }
    }
    let total = u64::from(BURST * BURSTS);
    let mut reached = Vec::new();
    while let Ok((n, _)) = arrivals.try_recv() {
        reached.push(n);
    }
    assert_eq!(
        reached,
        (0..BURST * BURSTS).collect::<Vec<_>>(),
        "in order at the target"
    );
    until("the last counts", || {
        stats.to_peers.load(Ordering::Relaxed) == total
    })
    .await;
    let counts = stats.snapshot();
    assert_eq!(
        (
            counts.from_peers,
            counts.to_target,
            counts.from_target,
            counts.to_peers
        ),
        (total, total, total, total)
    );
    assert_eq!(
        (counts.from_peers_bytes, counts.to_peers_bytes),
        (bytes, bytes)
    );
    stop.cancel();
    // Each datagram four times: arriving from the peer, leaving to the target, arriving
    // from the target, leaving to the peer; each leg in order.
    let mut legs: std::collections::HashMap<(SocketAddr, SocketAddr), Vec<u32>> =
        std::collections::HashMap::new();
    while let Ok(record) = records.try_recv() {
        assert!(record.on_wire);
        legs.entry((record.src, record.dst))
            .or_default()
            .push(number_of(&record.datagram));
    }
    let in_order: Vec<u32> = (0..BURST * BURSTS).collect();
    assert_eq!(legs.len(), 4, "four legs: {:?}", legs.keys());
    for (leg, numbers) in &legs {
        assert_eq!(numbers, &in_order, "leg {leg:?}");
    }
    assert_eq!(legs[&(peer_addr, relay_addr)], in_order);
}

#[tokio::test]
async fn peers_get_sockets_of_their_own_up_to_the_bound_and_lose_them_when_idle() {
    let target = bind_udp("127.0.0.1:0".parse().unwrap()).unwrap();
    let target_addr = target.local_addr().unwrap();
    let mut arrivals = udp_echo(target);
    let (relay_addr, stats, stop) = start_relay(RelayConfig {
        max_peers: 2,
        peer_idle: Duration::from_millis(300),
        ..RelayConfig::new(target_addr)
    })
    .await;
    let peers: Vec<UdpSocket> = (0..3)
        .map(|_| bind_udp("127.0.0.1:0".parse().unwrap()).unwrap())
        .collect();
    let mut buf = vec![0u8; 2048];
    // Two peers: each reaches the target from its own address, and gets its own echo.
    let mut sources = Vec::new();
    for (n, peer) in peers[..2].iter().enumerate() {
        peer.send_to(&numbered(n as u32), relay_addr).await.unwrap();
        let (number, from) = within("the datagram at the target", arrivals.recv())
            .await
            .unwrap();
        assert_eq!(number, n as u32);
        sources.push(from);
        let (len, _) = within("the echo", peer.recv_from(&mut buf)).await.unwrap();
        assert_eq!(number_of(&buf[..len]), n as u32);
    }
    assert_ne!(
        sources[0], sources[1],
        "two peers share one upstream socket"
    );
    // A third peer, while two have sockets: dropped, counted.
    peers[2].send_to(&numbered(2), relay_addr).await.unwrap();
    until("the third peer to be refused", || {
        stats.peers_refused.load(Ordering::Relaxed) == 1
    })
    .await;
    assert!(
        arrivals.try_recv().is_err(),
        "a refused peer's datagram reached the target"
    );
    // Silent, both expire; then the third peer is served.
    until("both peers to expire", || {
        stats.peers_expired.load(Ordering::Relaxed) == 2
    })
    .await;
    peers[2].send_to(&numbered(7), relay_addr).await.unwrap();
    let (number, _) = within("the third peer's datagram", arrivals.recv())
        .await
        .unwrap();
    assert_eq!(number, 7);
    let (len, _) = within("its echo", peers[2].recv_from(&mut buf))
        .await
        .unwrap();
    assert_eq!(number_of(&buf[..len]), 7);
    let counts = stats.snapshot();
    assert_eq!((counts.peers_opened, counts.peers_now), (3, 1));
    stop.cancel();
}

/// Three clients at once, each echoing `len` bytes of `data(n)` through `proxy1_port`.
async fn echo_clients(proxy1_port: u16, len: usize, data: fn(u64, usize) -> Vec<u8>) {
    let clients: Vec<_> = (0..3u64)
        .map(|n| {
            tokio::spawn(async move {
                let data = data(n, len);
                let mut stream = TcpStream::connect(("127.0.0.1", proxy1_port))
                    .await
                    .unwrap();
                let echoed = echo_through(&mut stream, &data, 16 * 1024).await;
                assert!(echoed == data, "the echo through the relay differs");
            })
        })
        .collect();
    for client in clients {
        within("an echo through the relay", client).await.unwrap();
    }
}

#[tokio::test]
#[cfg_attr(not(has_python3), ignore = "needs python3")]
async fn the_course_python_proxies_echo_intact_through_the_relay() {
    let server = Process::tunlab(&["echo-server", "0"]).await;
    let proxy2 = Process::python(&["proxy2", "0", "127.0.0.1", &server.port.to_string()]).await;
    // Delayed both ways, with jitter: the emulator acts on every datagram, and loses none
    // (classic mode loses data with the link, as the course says).
    let relay = Process::tunlab(&[
        "relay",
        "0",
        "127.0.0.1",
        &proxy2.port.to_string(),
        "--delay",
        "2ms",
        "--jitter",
        "1ms",
        "--seed",
        "5",
    ])
    .await;
    let proxy1 = Process::python(&["proxy1", "0", "127.0.0.1", &relay.port.to_string()]).await;
    echo_clients(proxy1.port, 100 * 1024, |n, len| random_bytes(300 + n, len)).await;
    let log = relay.stop().await;
    let delayed = log
        .iter()
        .find(|l| l.starts_with("link p1→p2"))
        .unwrap_or_else(|| panic!("no emulator summary in {log:?}"));
    // Nothing lost on the way; at most a datagram still waiting when the relay stopped
    // (the Python proxy1 sends its X as the clients leave).
    let dropped = count_after(delayed, "dropped ");
    assert_eq!(dropped, count_after(delayed, "stopped "), "{delayed}");
    assert!(dropped <= 3, "{delayed}");
    assert!(count_after(delayed, "delayed ") > 100, "{delayed}");
}

/// The number after `label` in a summary line (0 when absent).
fn count_after(line: &str, label: &str) -> u64 {
    line.split_once(label).map_or(0, |(_, rest)| {
        rest.split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    })
}

/// Text with a marker that must never show in a sealed link's capture.
fn marked_text(n: u64, len: usize) -> Vec<u8> {
    format!("PLAINTEXT-MARKER client {n} says hello; ")
        .into_bytes()
        .into_iter()
        .cycle()
        .take(len)
        .collect()
}

#[tokio::test]
async fn sealed_selective_repeat_crosses_a_lossy_relay_intact_and_ciphered() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("link.key");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_tunlab"))
        .args(["keygen", key.to_str().unwrap()])
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let key = key.to_str().unwrap();
    let capture = dir.path().join("relay.pcap");
    let sealed = ["--wire", "selective-repeat", "--key-file", key];
    let server = Process::tunlab(&["echo-server", "0"]).await;
    let proxy2 = Process::tunlab(
        &[
            &["proxy2", "0", "127.0.0.1", &server.port.to_string()][..],
            &sealed,
        ]
        .concat(),
    )
    .await;
    let relay = Process::tunlab(&[
        "relay",
        "0",
        "127.0.0.1",
        &proxy2.port.to_string(),
        "--loss",
        "5",
        "--seed",
        "11",
        "--capture",
        capture.to_str().unwrap(),
    ])
    .await;
    let proxy1 = Process::tunlab(
        &[
            &["proxy1", "0", "127.0.0.1", &relay.port.to_string()][..],
            &sealed,
        ]
        .concat(),
    )
    .await;
    echo_clients(proxy1.port, 256 * 1024, marked_text).await;
    let log = relay.stop().await;
    // The emulator did lose datagrams both ways, and the transport made up for them.
    for arrow in ["p1→p2", "p2→p1"] {
        let line = log
            .iter()
            .find(|l| l.starts_with(&format!("link {arrow}")))
            .unwrap_or_else(|| panic!("no {arrow} summary in {log:?}"));
        assert!(!line.contains("dropped 0"), "{line}");
    }
    let bytes = std::fs::read(&capture).unwrap();
    // Both legs of 3 x 256 KiB each way, at least.
    assert!(
        bytes.len() > 4 * 3 * 256 * 1024,
        "capture of {} bytes",
        bytes.len()
    );
    let marker = b"PLAINTEXT-MARKER";
    assert!(
        !bytes.windows(marker.len()).any(|w| w == marker),
        "the relay's capture holds plaintext"
    );
    drop(proxy1);
}

/// Runs `tunlab ARGS` to its end: exit code and stderr.
fn run_to_end(args: &[&str]) -> (i32, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tunlab"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn bad_arguments_are_refused_with_a_reason() {
    let (code, err) = run_to_end(&["relay", "0", "no-such-host.invalid", "9"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("cannot resolve host 'no-such-host.invalid'"),
        "{err}"
    );

    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let (code, err) = run_to_end(&["relay", &port, "127.0.0.1", "9"]);
    assert_ne!(code, 0);
    assert!(
        err.contains(&format!("cannot bind UDP 127.0.0.1:{port}")),
        "{err}"
    );
    assert!(
        err.contains("another program already uses this port"),
        "{err}"
    );
    drop(taken);

    for (args, says) in [
        (&["relay", "0", "127.0.0.1"][..], "TARGET_UDP_PORT"),
        (&["relay", "0", "127.0.0.1", "70000"][..], "70000"),
        (
            &["relay", "0", "127.0.0.1", "9", "--loss", "150"][..],
            "150 is not a percentage",
        ),
        (
            &["relay", "0", "127.0.0.1", "9", "--max-peers", "0"][..],
            "--max-peers",
        ),
        (
            &["relay", "0", "127.0.0.1", "9", "--peer-idle", "1ms"][..],
            "at least 10ms",
        ),
    ] {
        let (code, err) = run_to_end(args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

#[tokio::test]
async fn a_target_with_nothing_listening_is_reported() {
    // A port that was free a moment ago: nothing listens there.
    let closed = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port().to_string();
    drop(closed);
    let relay = Process::tunlab(&["relay", "0", "127.0.0.1", &closed_port]).await;
    let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    // Each datagram draws an ICMP "port unreachable" that the next receive reports.
    let lines = relay.lines.clone();
    within("the relay to report the refusal", async {
        loop {
            peer.send_to(b"anyone?", ("127.0.0.1", relay.port))
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
            if lines
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.contains("is anything listening on that UDP port?"))
            {
                return;
            }
        }
    })
    .await;
    let log = relay.stop().await;
    let summary = log.iter().find(|l| l.starts_with("relay peers:")).unwrap();
    assert!(!summary.contains("target refused 0 "), "{summary}");
}

#[tokio::test]
async fn metrics_show_the_relays_exact_counters() {
    use tunlab::event::EventSink;
    use tunlab::monitor::{ConnTable, MonitorSources};
    use tunlab::topology::Role;

    let target = bind_udp("127.0.0.1:0".parse().unwrap()).unwrap();
    let target_addr = target.local_addr().unwrap();
    let _arrivals = udp_echo(target);
    let emulator = LinkEmulator::new(
        LinkSettings {
            to_proxy2: lossy(0.0),
            to_proxy1: lossy(50.0),
        },
        9,
    );
    let (relay_addr, stats, stop) = start_relay(RelayConfig {
        emulator: Some(emulator.clone()),
        ..RelayConfig::new(target_addr)
    })
    .await;
    let peer = LinkUdp::try_from(bind_udp("127.0.0.1:0".parse().unwrap()).unwrap()).unwrap();
    for i in 0..20 {
        peer.send_to(&numbered(i), relay_addr).await.unwrap();
    }
    let echoes = |d| emulator.direction(d).counters().snapshot();
    until("every echo decided", || {
        let down = echoes(LinkDirection::ToProxy1);
        down.delivered + down.dropped == 20
    })
    .await;
    let sources = MonitorSources::new(
        "relay",
        Role::Proxy1,
        EventSink::disabled(),
        Arc::new(ConnTable::new()),
    )
    .with_emulator(emulator.clone())
    .with_relay(stats.clone());
    let text = tunlab::monitor::metrics::render(&sources);
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    let value = |metric: &str, labels: &[(&str, &str)]| -> u64 {
        let sample = scrape
            .samples
            .iter()
            .find(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .unwrap_or_else(|| panic!("no {metric}{labels:?} in\n{text}"));
        match sample.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v) => v as u64,
            ref other => panic!("{metric}: {other:?}"),
        }
    };
    let counts = stats.snapshot();
    let datagrams = |leg| value("tunlab_relay_datagrams_total", &[("leg", leg)]);
    assert_eq!(datagrams("from_peers"), 20);
    assert_eq!(datagrams("to_target"), 20);
    assert_eq!(datagrams("from_target"), 20);
    let delivered = echoes(LinkDirection::ToProxy1).delivered;
    assert!(
        delivered > 0 && delivered < 20,
        "50% loss delivered {delivered}"
    );
    assert_eq!(datagrams("to_peers"), delivered);
    assert_eq!(
        value("tunlab_relay_bytes_total", &[("leg", "to_target")]),
        counts.to_target_bytes
    );
    assert_eq!(value("tunlab_relay_peers", &[]), 1);
    assert_eq!(value("tunlab_relay_peers_opened_total", &[]), 1);
    assert_eq!(
        value(
            "tunlab_emulator_dropped_frames_total",
            &[("direction", "to_proxy1"), ("cause", "loss")]
        ),
        20 - delivered
    );
    stop.cancel();
}
