//! Helpers shared by the integration tests: real sockets on 127.0.0.1, bounded waits.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tunlab::event::{Event, EventKind, EventSink};
use tunlab::link::{LinkSocket, LinkStats};
use tunlab::net::{bind_tcp, bind_udp};
use tunlab::roles::echo_server;
use tunlab::roles::proxy1::{self, Proxy1Config};
use tunlab::roles::proxy2::{self, Proxy2Config};
use tunlab::topology::Endpoint;
use tunlab::wire::WireMode;

pub mod http;

/// Every wait in these tests is bounded by this; a hang becomes a clear failure, not a stuck CI.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Awaits `future` or panics naming what did not happen.
pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, future)
        .await
        .unwrap_or_else(|_| panic!("timed out after {PATIENCE:?} waiting for {what}"))
}

/// Deterministic pseudo-random bytes (xorshift64*), so a failing run can be replayed.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Sends `data` through an echo path and reads it all back, keeping at most `window` bytes
/// in flight the way a well-behaved client does (classic mode has no flow control).
pub async fn echo_through(stream: &mut TcpStream, data: &[u8], window: usize) -> Vec<u8> {
    let (mut reader, mut writer) = stream.split();
    let mut echoed = Vec::with_capacity(data.len());
    let mut sent = 0;
    let mut buf = vec![0u8; 64 * 1024];
    while echoed.len() < data.len() {
        if sent < data.len() && sent - echoed.len() < window {
            let end = (sent + 4096).min(data.len()).min(echoed.len() + window);
            writer
                .write_all(&data[sent..end])
                .await
                .expect("write to tunnel");
            sent = end;
            continue;
        }
        let n = reader.read(&mut buf).await.expect("read echo");
        assert!(
            n > 0,
            "tunnel closed after {} of {} bytes echoed",
            echoed.len(),
            data.len()
        );
        echoed.extend_from_slice(&buf[..n]);
    }
    echoed
}

/// Waits for an event matching `pick`, returning what it extracts.
pub async fn wait_for<T>(
    events: &mut mpsc::Receiver<Event>,
    what: &str,
    mut pick: impl FnMut(&EventKind) -> Option<T>,
) -> T {
    within(what, async {
        loop {
            let event = events.recv().await.expect("event stream ended");
            if let Some(found) = pick(&event.kind) {
                return found;
            }
        }
    })
    .await
}

/// Reads until the peer closes; returns what arrived and whether it ended with a reset.
pub async fn read_to_close(stream: &mut TcpStream) -> (Vec<u8>, bool) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) => return (got, false),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => return (got, true),
        }
    }
}

/// A raw UDP socket that plays proxy1 or proxy2 by hand, to check bytes on the wire. It asks
/// for the same large buffers as a link socket, so a burst the test has not read yet waits in
/// the kernel instead of being dropped (classic mode has no flow control to slow it down).
pub struct RawPeer {
    pub socket: UdpSocket,
    pub target: SocketAddr,
}

impl RawPeer {
    pub async fn new(target: SocketAddr) -> RawPeer {
        RawPeer {
            socket: bind_udp("127.0.0.1:0".parse().unwrap()).unwrap(),
            target,
        }
    }
    pub async fn send(&self, datagram: &[u8]) {
        self.socket.send_to(datagram, self.target).await.unwrap();
    }
    /// The next datagram, from anyone.
    pub async fn recv(&self) -> (Vec<u8>, SocketAddr) {
        let mut buf = vec![0u8; 4096];
        let (n, from) = within("a datagram", self.socket.recv_from(&mut buf))
            .await
            .unwrap();
        buf.truncate(n);
        (buf, from)
    }
    /// The next datagram, or None if nothing arrives for `quiet`.
    pub async fn recv_quiet(&self, quiet: Duration) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; 4096];
        match tokio::time::timeout(quiet, self.socket.recv_from(&mut buf)).await {
            Ok(Ok((n, _))) => Some(buf[..n].to_vec()),
            _ => None,
        }
    }
}

/// An ephemeral port on 127.0.0.1.
pub fn localhost() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// Starts the role alone on ephemeral ports.
pub async fn start_echo_server(stop: &CancellationToken) -> SocketAddr {
    let listener = bind_tcp(localhost()).unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(echo_server::run(
        listener,
        EventSink::disabled(),
        stop.clone(),
    ));
    addr
}

/// Starts the role alone on ephemeral ports.
pub async fn start_proxy2(
    config: Proxy2Config,
    stop: &CancellationToken,
) -> (SocketAddr, std::sync::Arc<LinkStats>) {
    let link = LinkSocket::new(
        bind_udp(localhost()).unwrap(),
        Endpoint::Proxy2,
        WireMode::Classic,
        EventSink::disabled(),
    )
    .unwrap();
    let addr = link.local_addr();
    let stats = link.stats().clone();
    tokio::spawn(proxy2::run(link, config, stop.clone()));
    (addr, stats)
}

/// Starts the role alone on ephemeral ports.
pub async fn start_proxy1(
    config: Proxy1Config,
    stop: &CancellationToken,
) -> (SocketAddr, SocketAddr, std::sync::Arc<LinkStats>) {
    let listener = bind_tcp(localhost()).unwrap();
    let tcp = listener.local_addr().unwrap();
    let link = LinkSocket::new(
        bind_udp(localhost()).unwrap(),
        Endpoint::Proxy1,
        WireMode::Classic,
        EventSink::disabled(),
    )
    .unwrap();
    let udp = link.local_addr();
    let stats = link.stats().clone();
    tokio::spawn(proxy1::run(listener, link, config, stop.clone()));
    (tcp, udp, stats)
}

/// A client that has proven its tunnel works, then sits idle.
pub async fn open_echoing(proxy1: SocketAddr, tag: &str) -> TcpStream {
    let mut stream = TcpStream::connect(proxy1).await.unwrap();
    let echoed = within(
        "first echo",
        echo_through(&mut stream, tag.as_bytes(), 4096),
    )
    .await;
    assert_eq!(echoed, tag.as_bytes());
    stream
}
pub mod process;

/// Waits up to `limit` until neither proxy has a connection open (as the lab's connection
/// table, an event observer, counts them); says whether it came to that.
pub async fn until_no_connection_is_open(
    conns: &tunlab::monitor::ConnTable,
    limit: Duration,
) -> bool {
    use tunlab::topology::Role;
    let open = || conns.totals(Role::Proxy1).current + conns.totals(Role::Proxy2).current;
    tokio::time::timeout(limit, async {
        while open() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .is_ok()
}
