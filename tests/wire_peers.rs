//! Each proxy on its own, against a raw UDP socket playing the other proxy: checks the exact
//! bytes on the wire and the rules for lost and duplicated datagrams.

mod common;

use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tunlab::net::bind_tcp;
use tunlab::roles::proxy1::Proxy1Config;
use tunlab::roles::proxy2::Proxy2Config;

const QUIET: Duration = Duration::from_millis(300);

#[tokio::test]
async fn proxy2_speaks_the_seed_protocol_byte_for_byte() {
    let stop = CancellationToken::new();
    let server = start_echo_server(&stop).await;
    let (proxy2, _) = start_proxy2(Proxy2Config::new(server), &stop).await;
    let p1 = RawPeer::new(proxy2).await;

    p1.send(b"C1").await;
    assert_eq!(p1.recv().await.0, b"C1OK");
    // A duplicate C (our OK was lost, say) is answered with OK again, on the same connection.
    p1.send(b"C1").await;
    assert_eq!(p1.recv().await.0, b"C1OK");
    p1.send(b"D1hola").await;
    assert_eq!(p1.recv().await.0, b"D1hola");
    // Binary payloads pass untouched, including bytes that look like headers.
    let binary = [b'D', b'1', 0, 255, b'X', b'1', b'\n', 0x80];
    p1.send(&binary).await;
    assert_eq!(p1.recv().await.0, binary);
    // Data for an id that is not open is answered with X.
    p1.send(b"D5lost").await;
    assert_eq!(p1.recv().await.0, b"X5");
    // An X for an unknown id is ignored (no ping-pong of X frames).
    p1.send(b"X7").await;
    assert_eq!(p1.recv_quiet(QUIET).await, None);
    // X closes; data after it is refused with X.
    p1.send(b"X1").await;
    p1.send(b"D1late").await;
    assert_eq!(p1.recv().await.0, b"X1");
    stop.cancel();
}

#[tokio::test]
async fn proxy2_answers_nok_when_the_server_is_unreachable() {
    let stop = CancellationToken::new();
    // A port that was just free: nothing listens there.
    let dead = bind_tcp(localhost()).unwrap().local_addr().unwrap();
    let (proxy2, stats) = start_proxy2(Proxy2Config::new(dead), &stop).await;
    let p1 = RawPeer::new(proxy2).await;
    p1.send(b"C4").await;
    assert_eq!(p1.recv().await.0, b"C4NOK");
    // The id is not kept: data for it is answered with X.
    p1.send(b"D4x").await;
    assert_eq!(p1.recv().await.0, b"X4");
    assert_eq!(stats.snapshot().sent.nok, 1);
    stop.cancel();
}

#[tokio::test]
async fn proxy2_keeps_two_proxy1s_apart_even_when_they_start_together() {
    let stop = CancellationToken::new();
    let server = start_echo_server(&stop).await;
    let (proxy2, _) = start_proxy2(Proxy2Config::new(server), &stop).await;
    let a = RawPeer::new(proxy2).await;
    let b = RawPeer::new(proxy2).await;
    // Both use id 0 and send their C at the same moment.
    a.send(b"C0").await;
    b.send(b"C0").await;
    assert_eq!(a.recv().await.0, b"C0OK");
    assert_eq!(b.recv().await.0, b"C0OK");
    a.send(b"D0from a").await;
    b.send(b"D0from b").await;
    assert_eq!(a.recv().await.0, b"D0from a");
    assert_eq!(b.recv().await.0, b"D0from b");
    // Closing a's connection 0 leaves b's open.
    a.send(b"X0").await;
    b.send(b"D0still b").await;
    assert_eq!(b.recv().await.0, b"D0still b");
    stop.cancel();
}

#[tokio::test]
async fn proxy2_reclaims_an_idle_id_with_x() {
    let stop = CancellationToken::new();
    let server = start_echo_server(&stop).await;
    let mut config = Proxy2Config::new(server);
    config.idle_timeout = Duration::from_millis(200).into();
    let (proxy2, _) = start_proxy2(config, &stop).await;
    let p1 = RawPeer::new(proxy2).await;
    p1.send(b"C2").await;
    assert_eq!(p1.recv().await.0, b"C2OK");
    // Its X got lost, say: after the idle timeout proxy2 closes it by itself.
    assert_eq!(p1.recv().await.0, b"X2");
    stop.cancel();
}

#[tokio::test]
async fn proxy1_resends_an_unanswered_c_and_speaks_the_seed_protocol() {
    let stop = CancellationToken::new();
    let fake_proxy2 = RawPeer::new(localhost()).await;
    let proxy2_addr = fake_proxy2.socket.local_addr().unwrap();
    let mut config = Proxy1Config::new(proxy2_addr);
    config.connect_retry = Duration::from_millis(100);
    let (tcp, _, stats) = start_proxy1(config, &stop).await;

    let mut client = TcpStream::connect(tcp).await.unwrap();
    let (first, from) = fake_proxy2.recv().await;
    assert_eq!(first, b"C0");
    // Pretend the first C was lost: proxy1 must send it again.
    let (second, _) = fake_proxy2.recv().await;
    assert_eq!(second, b"C0");
    fake_proxy2.socket.send_to(b"C0OK", from).await.unwrap();
    // A second OK (for the re-sent C) is harmless.
    fake_proxy2.socket.send_to(b"C0OK", from).await.unwrap();

    client.write_all(b"hola").await.unwrap();
    let (data, _) = fake_proxy2.recv().await;
    assert_eq!(data, b"D0hola");
    fake_proxy2.socket.send_to(b"D0hola", from).await.unwrap();
    let mut buf = [0u8; 4];
    within("the echo at the client", client.read_exact(&mut buf))
        .await
        .unwrap();
    assert_eq!(&buf, b"hola");

    // proxy1 listens to its proxy2 only: the same frame from elsewhere is ignored.
    let stranger = RawPeer::new(from).await;
    stranger.send(b"D0spoofed").await;
    // Data for an id proxy1 does not have is answered with X.
    fake_proxy2.socket.send_to(b"D6ghost", from).await.unwrap();
    assert_eq!(fake_proxy2.recv().await.0, b"X6");
    // proxy2 closes the connection: the client sees its end of stream.
    fake_proxy2.socket.send_to(b"X0", from).await.unwrap();
    let (rest, reset) = within("the client to be closed", read_to_close(&mut client)).await;
    assert_eq!(
        (rest.as_slice(), reset),
        (&b""[..], false),
        "nothing spoofed reached the client"
    );
    assert!(stats.snapshot().ignored >= 1);
    stop.cancel();
}

#[tokio::test]
async fn proxy1_never_sends_a_datagram_over_1500_bytes() {
    let stop = CancellationToken::new();
    let fake_proxy2 = RawPeer::new(localhost()).await;
    let proxy2_addr = fake_proxy2.socket.local_addr().unwrap();
    let (tcp, _, _) = start_proxy1(Proxy1Config::new(proxy2_addr), &stop).await;
    let mut client = TcpStream::connect(tcp).await.unwrap();
    let (_, from) = fake_proxy2.recv().await;
    fake_proxy2.socket.send_to(b"C0OK", from).await.unwrap();
    let data = random_bytes(7, 64 * 1024);
    client.write_all(&data).await.unwrap();
    let mut carried = Vec::new();
    while carried.len() < data.len() {
        let (datagram, _) = fake_proxy2.recv().await;
        assert!(
            datagram.len() <= 1500,
            "datagram of {} bytes",
            datagram.len()
        );
        assert_eq!(&datagram[..2], b"D0");
        carried.extend_from_slice(&datagram[2..]);
    }
    assert_eq!(carried, data);
    stop.cancel();
}
