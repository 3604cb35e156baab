//! The real `tunlab` binary as a standalone proxy with `--capture`, stopped by SIGINT or
//! SIGTERM in the middle of traffic: the capture must read cleanly to the end and hold the
//! frames that crossed before the signal.

// Unsafe is allowed here, and only here: signals to child processes (libc::kill): the pids are
// our own children.
#![allow(unsafe_code)]

mod capture_support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use capture_support::*;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;
use tunlab::event::EventSink;
use tunlab::link::LinkSocket;
use tunlab::net::{bind_tcp, bind_udp};
use tunlab::roles::echo_server;
use tunlab::roles::proxy1::{self, Proxy1Config};
use tunlab::roles::proxy2::{self, Proxy2Config};
use tunlab::topology::Endpoint;
use tunlab::wire::WireMode;

const CLIENTS: usize = 3;

/// A `tunlab` child process whose stderr lines are collected as they come.
struct Role {
    child: Child,
    stderr: Arc<Mutex<Vec<String>>>,
    /// Ends at the end of stderr (when the process has exited).
    reader: tokio::task::JoinHandle<()>,
}

impl Role {
    /// Starts `tunlab ARGS` and waits for its "<role> up on ADDR" line.
    async fn start(args: &[&str], role: &str) -> (Role, SocketAddr) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tunlab"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("tunlab starts");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let collected = stderr.clone();
        let (up_tx, mut up_rx) = tokio::sync::mpsc::unbounded_channel();
        let prefix = format!("{role} up on ");
        let up_prefix = prefix.clone();
        let reader = tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(addr) = line.strip_prefix(&up_prefix) {
                    let _ = up_tx.send(addr.parse::<SocketAddr>().unwrap());
                }
                collected.lock().unwrap().push(line);
            }
        });
        let addr = tokio::time::timeout(Duration::from_secs(30), up_rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no '{prefix}' line; stderr: {:?}", stderr.lock().unwrap()))
            .expect("tunlab exited early");
        let role = Role {
            child,
            stderr,
            reader,
        };
        (role, addr)
    }

    /// Sends `signal` and waits (bounded) for a clean exit.
    async fn stop_with(mut self, signal: libc::c_int) -> Vec<String> {
        let pid = self.child.id().expect("still running") as libc::pid_t;
        // SAFETY: a plain kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0, "kill");
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("tunlab exits after the signal")
            .unwrap();
        // Every line up to the end of stderr.
        tokio::time::timeout(Duration::from_secs(30), self.reader)
            .await
            .expect("stderr ends after exit")
            .unwrap();
        let stderr = self.stderr.lock().unwrap().clone();
        assert!(
            status.success(),
            "exit status {status:?}; stderr: {stderr:?}"
        );
        // Every task of the role ended within the grace period (none is named as left).
        assert!(
            !stderr.iter().any(|l| l.contains("without waiting for")),
            "{stderr:?}"
        );
        stderr
    }
}

/// Echo clients that keep sending binary messages through `proxy1` until stopped, counting
/// completed round trips.
struct Traffic {
    stop: CancellationToken,
    round_trips: Arc<AtomicU64>,
    /// Set when an echo differed from what was sent (a panic in a task would go unseen).
    damaged: Arc<std::sync::atomic::AtomicBool>,
}

impl Traffic {
    async fn start(proxy1: SocketAddr) -> Traffic {
        let stop = CancellationToken::new();
        let round_trips = Arc::new(AtomicU64::new(0));
        let damaged = Arc::new(std::sync::atomic::AtomicBool::new(false));
        for client in 0..CLIENTS {
            let mut stream = TcpStream::connect(proxy1).await.expect("client connects");
            let (stop, round_trips, damaged) = (stop.clone(), round_trips.clone(), damaged.clone());
            tokio::spawn(async move {
                let mut echo = Vec::new();
                for round in 0.. {
                    let message = payload(client, round);
                    echo.resize(message.len(), 0);
                    let trip = async {
                        stream.write_all(&message).await?;
                        stream.read_exact(&mut echo).await
                    };
                    tokio::select! {
                        () = stop.cancelled() => return,
                        // The proxy going away mid-trip ends the client; that is expected.
                        result = trip => if result.is_err() { return },
                    }
                    if echo != message {
                        damaged.store(true, Ordering::Relaxed);
                        return;
                    }
                    round_trips.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        Traffic {
            stop,
            round_trips,
            damaged,
        }
    }

    async fn wait_for(&self, trips: u64) -> u64 {
        wait_until("round trips through the tunnel", || {
            self.round_trips.load(Ordering::Relaxed) >= trips
        })
        .await;
        self.round_trips.load(Ordering::Relaxed)
    }
}

/// Checks a standalone proxy's capture: clean to the end, every packet a frame between the
/// two proxies, data streams that are prefixes of what the clients sent, at least the frames
/// of the round trips completed before the signal, and the count the exit line reported.
fn check_capture(
    packets: &[Captured],
    proxy2: SocketAddr,
    trips_before: u64,
    stderr: &[String],
    path: &Path,
) {
    assert!(!packets.is_empty());
    let proxy1 = if packets[0].src == proxy2 {
        packets[0].dst
    } else {
        packets[0].src
    };
    let mut streams: BTreeMap<(SocketAddr, u8), Vec<u8>> = BTreeMap::new();
    for (n, p) in packets.iter().enumerate() {
        assert!(
            (p.src, p.dst) == (proxy1, proxy2) || (p.src, p.dst) == (proxy2, proxy1),
            "packet {} {} -> {}",
            n + 1,
            p.src,
            p.dst
        );
        let summary = p.summary(); // panics unless it is a frame
        if p.datagram[0] == b'D' {
            streams
                .entry((p.src, p.datagram[1]))
                .or_default()
                .extend_from_slice(&p.datagram[2..]);
            assert_eq!(summary.payload_len, p.datagram.len() - 2);
        }
    }
    // Each round trip put at least one D frame on the link each way.
    let data = packets.iter().filter(|p| p.datagram[0] == b'D').count() as u64;
    assert!(
        data >= 2 * trips_before,
        "{data} D frames for {trips_before} round trips"
    );
    // Each connection's data, in capture order, is a prefix of one client's byte stream.
    let client_streams: Vec<Vec<u8>> = (0..CLIENTS)
        .map(|c| (0..2000).flat_map(|r| payload(c, r)).collect())
        .collect();
    for ((src, id), stream) in &streams {
        assert!(
            client_streams.iter().any(|c| c.starts_with(stream)),
            "data of id {} from {src} ({} bytes) is not what a client sent",
            *id as char,
            stream.len()
        );
    }
    let exit_line = format!(
        "capture: {} frames written to {}",
        packets.len(),
        path.display()
    );
    assert!(
        stderr.contains(&exit_line),
        "no '{exit_line}' in {stderr:?}"
    );
    eprintln!("{trips_before} round trips before the signal; {exit_line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_proxy1_capture_survives_sigint() {
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("proxy1.pcap");
    let stop = CancellationToken::new();
    // The server and proxy2 run in this process, on real sockets.
    let server = bind_tcp("127.0.0.1:0".parse().unwrap()).unwrap();
    let server_addr = server.local_addr().unwrap();
    tokio::spawn(echo_server::run(
        server,
        EventSink::disabled(),
        stop.clone(),
    ));
    let link = LinkSocket::new(
        bind_udp("127.0.0.1:0".parse().unwrap()).unwrap(),
        Endpoint::Proxy2,
        WireMode::Classic,
        EventSink::disabled(),
    )
    .unwrap();
    let proxy2_addr = link.local_addr();
    tokio::spawn(proxy2::run(
        link,
        Proxy2Config::new(server_addr),
        stop.clone(),
    ));

    let port = proxy2_addr.port().to_string();
    let args = [
        "proxy1",
        "0",
        "127.0.0.1",
        &port,
        "--capture",
        capture.to_str().unwrap(),
    ];
    let (proxy1, proxy1_addr) = Role::start(&args, "proxy1").await;
    let traffic = Traffic::start(proxy1_addr).await;
    let trips = traffic.wait_for(60).await;
    let stderr = proxy1.stop_with(libc::SIGINT).await; // clients are still sending
    traffic.stop.cancel();
    stop.cancel();
    assert!(
        !traffic.damaged.load(Ordering::Relaxed),
        "an echo came back damaged"
    );

    assert!(
        stderr.iter().any(|l| l.contains("capturing the link to")),
        "{stderr:?}"
    );
    check_capture(&read_pcap(&capture), proxy2_addr, trips, &stderr, &capture);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_proxy2_pcapng_capture_survives_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("proxy2.pcapng");
    let stop = CancellationToken::new();
    let server = bind_tcp("127.0.0.1:0".parse().unwrap()).unwrap();
    let server_port = server.local_addr().unwrap().port().to_string();
    tokio::spawn(echo_server::run(
        server,
        EventSink::disabled(),
        stop.clone(),
    ));

    let args = [
        "proxy2",
        "0",
        "127.0.0.1",
        &server_port,
        // No --capture-format: the .pcapng extension asks for pcapng.
        "--capture",
        capture.to_str().unwrap(),
    ];
    let (proxy2, proxy2_addr) = Role::start(&args, "proxy2").await;
    // proxy1 runs in this process.
    let listener = bind_tcp("127.0.0.1:0".parse().unwrap()).unwrap();
    let proxy1_addr = listener.local_addr().unwrap();
    let link = LinkSocket::new(
        bind_udp("127.0.0.1:0".parse().unwrap()).unwrap(),
        Endpoint::Proxy1,
        WireMode::Classic,
        EventSink::disabled(),
    )
    .unwrap();
    tokio::spawn(proxy1::run(
        listener,
        link,
        Proxy1Config::new(proxy2_addr),
        stop.clone(),
    ));

    let traffic = Traffic::start(proxy1_addr).await;
    let trips = traffic.wait_for(60).await;
    let stderr = proxy2.stop_with(libc::SIGTERM).await;
    traffic.stop.cancel();
    stop.cancel();
    assert!(
        !traffic.damaged.load(Ordering::Relaxed),
        "an echo came back damaged"
    );

    let file = read_pcapng(&capture);
    assert!(
        file.section_comment
            .unwrap()
            .contains("proxy2 (standalone)")
    );
    check_capture(&file.packets, proxy2_addr, trips, &stderr, &capture);
}

/// A standalone proxy1 with `--capture-tcp` records its clients' TCP leg in the same file:
/// pcapng by the file's extension, the handshakes of the clients beside the link's frames, in
/// time order (FIN and RST are checked in `tests/tcp_capture.rs`, where the closes are scripted). It needs `CAP_NET_RAW` on this machine's loopback (root, as in CI).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_proxy1_captures_its_tcp_leg_too() {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!(
            "standalone_proxy1_captures_its_tcp_leg_too: skipped (not root: no CAP_NET_RAW on \
             this loopback; tests/tcp_capture.rs covers --capture-tcp in a namespace)"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("proxy1.pcapng");
    let stop = CancellationToken::new();
    let server = bind_tcp("127.0.0.1:0".parse().unwrap()).unwrap();
    let server_addr = server.local_addr().unwrap();
    tokio::spawn(echo_server::run(
        server,
        EventSink::disabled(),
        stop.clone(),
    ));
    let link = LinkSocket::new(
        bind_udp("127.0.0.1:0".parse().unwrap()).unwrap(),
        Endpoint::Proxy2,
        WireMode::Classic,
        EventSink::disabled(),
    )
    .unwrap();
    let proxy2_addr = link.local_addr();
    tokio::spawn(proxy2::run(
        link,
        Proxy2Config::new(server_addr),
        stop.clone(),
    ));
    let port = proxy2_addr.port().to_string();
    let args = [
        "proxy1",
        "0",
        "127.0.0.1",
        &port,
        "--capture",
        capture.to_str().unwrap(),
        "--capture-tcp",
    ];
    let (proxy1, proxy1_addr) = Role::start(&args, "proxy1").await;
    let traffic = Traffic::start(proxy1_addr).await;
    traffic.wait_for(20).await;
    traffic.stop.cancel();
    let stderr = proxy1.stop_with(libc::SIGINT).await;
    stop.cancel();
    assert!(
        stderr.iter().any(|l| l.contains("capturing TCP port")),
        "{stderr:?}"
    );
    let file = read_pcapng(&capture);
    assert!(file.times.windows(2).all(|w| w[0] <= w[1]), "time order");
    assert!(!file.packets.is_empty(), "the link's frames");
    let ports: Vec<(u16, u16, bool)> = file
        .segments
        .iter()
        .map(|(_, frame)| {
            let packet = etherparse::SlicedPacket::from_ethernet(frame).unwrap();
            let Some(etherparse::TransportSlice::Tcp(tcp)) = packet.transport else {
                panic!("not TCP")
            };
            (tcp.source_port(), tcp.destination_port(), tcp.syn())
        })
        .collect();
    assert!(
        ports
            .iter()
            .all(|(s, d, ..)| *s == proxy1_addr.port() || *d == proxy1_addr.port()),
        "only proxy1's leg: {ports:?}"
    );
    let syns = ports
        .iter()
        .filter(|(_, d, syn)| *syn && *d == proxy1_addr.port());
    assert_eq!(syns.count(), CLIENTS, "one handshake per client");
}
