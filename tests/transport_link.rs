//! The reliable modes' codecs and transports on real sockets: link sockets on 127.0.0.1 with
//! the link emulator between them, driven the way the tunnel layer will drive them (frames
//! out through `LinkSocket::send`, frames in through `LinkSocket::recv`, the transport's own
//! timers on the real clock). Byte-exact delivery both ways through loss, duplication,
//! reordering and corruption; and what each mode accepts from a raw UDP peer.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{random_bytes, within};
use tokio::net::UdpSocket;
use tunlab::event::EventSink;
use tunlab::impair::LinkEmulator;
use tunlab::impair::settings::{DirectionSettings, LinkSettings, Percent};
use tunlab::link::{EmulatorScope, LinkSocket, RECV_BUFFER, Received};
use tunlab::topology::Endpoint;
use tunlab::transport::{Transport, TransportConfig};
use tunlab::wire::{ConnId, Frame, FrameKind, Seq, WireMode};

const ID: ConnId = ConnId::new(4242);

async fn link(endpoint: Endpoint, mode: WireMode) -> LinkSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    LinkSocket::new(socket, endpoint, mode, EventSink::disabled()).unwrap()
}

#[tokio::test]
async fn stop_and_wait_accepts_a_course_peers_4096_byte_d_and_classic_still_counts_oversize() {
    let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let saw = link(Endpoint::Proxy2, WireMode::StopAndWait).await;
    let mut datagram = b"D21".to_vec();
    datagram.extend(std::iter::repeat_n(b'z', 4096));
    peer.send_to(&datagram, saw.local_addr()).await.unwrap();
    let mut buf = vec![0u8; RECV_BUFFER];
    match within("the 4099-byte D", saw.recv(&mut buf, None))
        .await
        .unwrap()
    {
        Received::Frame {
            frame: Frame::Data { id, seq, payload },
            ..
        } => {
            assert_eq!((id, seq.0, payload.len()), (ConnId::new(2), 1, 4096));
            assert!(payload.iter().all(|&b| b == b'z'));
        }
        _ => panic!("not decoded as a D frame"),
    }

    let classic = link(Endpoint::Proxy2, WireMode::Classic).await;
    let mut long = b"D1".to_vec();
    long.extend(std::iter::repeat_n(b'x', 1598));
    peer.send_to(&long, classic.local_addr()).await.unwrap();
    assert!(matches!(
        within("the 1600-byte datagram", classic.recv(&mut buf, None))
            .await
            .unwrap(),
        Received::Dropped
    ));
    assert_eq!(
        classic.stats().snapshot().malformed,
        1,
        "too long in classic"
    );
}

/// What one side of the pair has done.
struct Side {
    link: LinkSocket,
    peer: SocketAddr,
    transport: Transport,
    data: Vec<u8>,
    written: usize,
    received: Vec<u8>,
}

impl Side {
    async fn pump(&mut self) {
        if self.written < self.data.len() {
            self.written += self.transport.write(&self.data[self.written..]);
            if self.written == self.data.len() {
                self.transport.finish();
            }
        }
        let mut buf = [0u8; 8192];
        loop {
            let n = self.transport.read(&mut buf);
            if n == 0 {
                break;
            }
            self.received.extend_from_slice(&buf[..n]);
        }
        let now = std::time::Instant::now();
        while let Some(out) = self.transport.poll_transmit(now) {
            self.link.send(&out.frame(ID), self.peer).await.unwrap();
        }
        while self.transport.poll_event().is_some() {}
    }

    fn on_received(&mut self, received: &Received<'_>) {
        if let Received::Frame { frame, .. } = received {
            self.transport
                .handle_frame(std::time::Instant::now(), frame);
        }
    }
}

async fn exchange_over_an_impaired_link(mode: WireMode, bytes: usize) {
    let impaired = DirectionSettings {
        loss: Percent::new(10.0).unwrap(),
        dup: Percent::new(2.0).unwrap(),
        reorder: Percent::new(5.0).unwrap(),
        corrupt: Percent::new(3.0).unwrap(),
        ..DirectionSettings::default()
    };
    let emulator = LinkEmulator::new(LinkSettings::symmetric(impaired), 11);
    let a = link(Endpoint::Proxy1, mode)
        .await
        .with_emulator(emulator.clone(), EmulatorScope::Sent);
    let b = link(Endpoint::Proxy2, mode)
        .await
        .with_emulator(emulator.clone(), EmulatorScope::Sent);
    let (a_addr, b_addr) = (a.local_addr(), b.local_addr());
    // Each side's own ISN, as the C and OK of a connection would carry them; one wraps.
    let config = TransportConfig {
        initial_seq: Seq(u32::MAX - 10),
        peer_initial_seq: Seq(123_456),
        ..TransportConfig::for_mode(mode)
    };
    let swapped = TransportConfig {
        initial_seq: config.peer_initial_seq,
        peer_initial_seq: config.initial_seq,
        ..config
    };
    let mut sides = [
        Side {
            link: a,
            peer: b_addr,
            transport: Transport::new(mode, config),
            data: random_bytes(1, bytes),
            written: 0,
            received: Vec::new(),
        },
        Side {
            link: b,
            peer: a_addr,
            transport: Transport::new(mode, swapped),
            data: random_bytes(2, bytes),
            written: 0,
            received: Vec::new(),
        },
    ];
    let mut buf_a = vec![0u8; RECV_BUFFER];
    let mut buf_b = vec![0u8; RECV_BUFFER];
    let run = async {
        // Bounded: an endless loop is a failure, not a hang.
        for _ in 0..1_000_000 {
            for side in &mut sides {
                side.pump().await;
            }
            if sides.iter().all(|s| s.transport.is_done()) {
                return;
            }
            let wake = sides
                .iter()
                .filter_map(|s| s.transport.poll_timeout())
                .min()
                .map(tokio::time::Instant::from_std);
            let [a, b] = &mut sides;
            tokio::select! {
                received = a.link.recv(&mut buf_a, None) => a.on_received(&received.unwrap()),
                received = b.link.recv(&mut buf_b, None) => b.on_received(&received.unwrap()),
                () = async {
                    match wake {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                } => {
                    let now = std::time::Instant::now();
                    for side in &mut sides {
                        side.transport.handle_timeout(now);
                    }
                }
            }
        }
        panic!("still not done after a million steps");
    };
    tokio::time::timeout(Duration::from_mins(3), run)
        .await
        .unwrap_or_else(|_| panic!("{mode}: the exchange did not finish within 180 s"));
    for (i, side) in sides.iter().enumerate() {
        assert!(
            side.transport.gave_up().is_none(),
            "{mode}: side {i} gave up"
        );
        let other = &sides[1 - i];
        assert!(
            side.received == other.data,
            "{mode}: side {i} received {} bytes, not the {} the other side wrote",
            side.received.len(),
            other.data.len()
        );
        let stats = side.transport.stats();
        assert!(
            stats.retransmits_timeout + stats.retransmits_fast > 0,
            "{mode}: 10% loss and no retransmission?"
        );
        let counters = side.link.stats().snapshot();
        assert!(
            counters.sent.get(FrameKind::Ack) > 0,
            "{mode}: acks are counted"
        );
    }
    let report = emulator.report();
    let corrupted = report.to_proxy1.corrupted + report.to_proxy2.corrupted;
    let malformed: u64 = sides
        .iter()
        .map(|s| s.link.stats().snapshot().malformed)
        .sum();
    assert_eq!(
        corrupted > 0,
        malformed > 0,
        "{mode}: every corrupted frame fails the checksum ({corrupted} corrupted, {malformed} malformed)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_back_n_delivers_byte_exact_over_an_impaired_link() {
    exchange_over_an_impaired_link(WireMode::GoBackN, 256 * 1024).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selective_repeat_delivers_byte_exact_over_an_impaired_link() {
    exchange_over_an_impaired_link(WireMode::SelectiveRepeat, 256 * 1024).await;
}
