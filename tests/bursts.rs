//! Bursts through each proxy against a raw UDP peer: the proxies read TCP in large chunks
//! (sent as several `D` frames) and write queued frames to TCP together, so a burst must
//! still arrive complete, in order, in datagrams of at most 1500 bytes, and an `X` must
//! close the TCP side only after the data queued before it.

mod common;

use std::net::SocketAddr;

use common::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tunlab::event::EventSink;
use tunlab::link::LinkSocket;
use tunlab::net::{bind_tcp, bind_udp};
use tunlab::roles::proxy1::{self, Proxy1Config};
use tunlab::roles::proxy2::{self, Proxy2Config};
use tunlab::topology::Endpoint;
use tunlab::wire::WireMode;

/// Frames in a burst: far more than one read or one write takes at once.
const BURST_FRAMES: usize = 300;
const MAX_PAYLOAD: usize = 1498;

fn localhost() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn link(endpoint: Endpoint) -> LinkSocket {
    LinkSocket::new(
        bind_udp(localhost()).unwrap(),
        endpoint,
        WireMode::Classic,
        EventSink::disabled(),
    )
    .unwrap()
}

#[tokio::test]
async fn proxy1_delivers_a_burst_from_proxy2_in_order_and_then_closes() {
    let stop = CancellationToken::new();
    let fake_proxy2 = RawPeer::new(localhost()).await;
    let listener = bind_tcp(localhost()).unwrap();
    let tcp = listener.local_addr().unwrap();
    let config = Proxy1Config::new(fake_proxy2.socket.local_addr().unwrap());
    tokio::spawn(proxy1::run(
        listener,
        link(Endpoint::Proxy1),
        config,
        stop.clone(),
    ));

    let mut client = TcpStream::connect(tcp).await.unwrap();
    let (connect, proxy1_udp) = fake_proxy2.recv().await;
    assert_eq!(connect, b"C0");
    fake_proxy2
        .socket
        .send_to(b"C0OK", proxy1_udp)
        .await
        .unwrap();
    // Make sure the connection is open before the burst (an echo of one frame).
    client.write_all(b"?").await.unwrap();
    assert_eq!(fake_proxy2.recv().await.0, b"D0?");

    // The whole burst and the X, back to back, as fast as the socket sends them.
    let data = random_bytes(11, BURST_FRAMES * MAX_PAYLOAD);
    for payload in data.chunks(MAX_PAYLOAD) {
        let mut datagram = b"D0".to_vec();
        datagram.extend_from_slice(payload);
        fake_proxy2
            .socket
            .send_to(&datagram, proxy1_udp)
            .await
            .unwrap();
    }
    fake_proxy2.socket.send_to(b"X0", proxy1_udp).await.unwrap();

    let (received, reset) = within("the burst and the close", read_to_close(&mut client)).await;
    assert!(
        !reset,
        "proxy2's X must close the client with a FIN, not a RST"
    );
    assert_eq!(
        received.len(),
        data.len(),
        "every byte before the X arrives"
    );
    assert!(received == data, "the burst arrives in order and unchanged");
    stop.cancel();
}

#[tokio::test]
async fn proxy2_carries_a_burst_to_the_server_and_back_in_order() {
    let stop = CancellationToken::new();
    let server = start_echo_server(&stop).await;
    let proxy2_link = link(Endpoint::Proxy2);
    let proxy2_addr = proxy2_link.local_addr();
    tokio::spawn(proxy2::run(
        proxy2_link,
        Proxy2Config::new(server),
        stop.clone(),
    ));

    let fake_proxy1 = RawPeer::new(proxy2_addr).await;
    fake_proxy1.send(b"C0").await;
    assert_eq!(fake_proxy1.recv().await.0, b"C0OK");

    let data = random_bytes(12, BURST_FRAMES * MAX_PAYLOAD);
    // Send and read at the same time: the echo starts coming back while the burst is still
    // going out, and a busy machine can hold the sender back for a long time.
    let send_burst = async {
        for payload in data.chunks(MAX_PAYLOAD) {
            let mut datagram = b"D0".to_vec();
            datagram.extend_from_slice(payload);
            fake_proxy1.send(&datagram).await;
        }
    };
    let read_echo = async {
        let mut echoed = Vec::with_capacity(data.len());
        while echoed.len() < data.len() {
            let (datagram, _) = fake_proxy1.recv().await;
            assert!(
                datagram.len() <= 1500,
                "datagram of {} bytes",
                datagram.len()
            );
            assert_eq!(&datagram[..2], b"D0", "only data comes back");
            echoed.extend_from_slice(&datagram[2..]);
        }
        echoed
    };
    let ((), echoed) = tokio::join!(send_burst, read_echo);
    assert!(echoed == data, "the echo comes back in order and unchanged");
    stop.cancel();
}
