//! The tunnel end to end on real loopback sockets: echo clients → proxy1 → UDP → proxy2 →
//! echo server, and every rule of the classic protocol that keeps it from wedging.

mod common;

use std::time::Duration;

use common::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tunlab::event::CloseKind;
use tunlab::event::{ConnState, EventKind, EventSink, Level, TcpAction};
use tunlab::lab::{Lab, LabConfig};
use tunlab::topology::{Endpoint, Role};
use tunlab::wire::FrameKind;

const MIB: usize = 1 << 20;

async fn lab_with(config: LabConfig) -> (Lab, tokio::sync::mpsc::Receiver<tunlab::event::Event>) {
    let (events, rx) = EventSink::channel(1 << 18);
    let lab = Lab::start(config, events)
        .await
        .expect("lab starts on ephemeral ports");
    (lab, rx)
}

/// A connected client that has proven its tunnel works with one echo.
async fn open_client(lab: &Lab, tag: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(lab.addrs().proxy1_tcp).await.unwrap();
    let echoed = within("first echo", echo_through(&mut stream, tag, 4096)).await;
    assert_eq!(echoed, tag);
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_clients_each_echo_one_mib_of_binary_byte_exact() {
    let (lab, _events) = lab_with(LabConfig::ephemeral()).await;
    let proxy1 = lab.addrs().proxy1_tcp;
    let clients: Vec<_> = (0..10u64)
        .map(|seed| {
            tokio::spawn(async move {
                let data = random_bytes(seed, MIB);
                let mut stream = TcpStream::connect(proxy1).await.unwrap();
                let echoed = echo_through(&mut stream, &data, 32 * 1024).await;
                (data, echoed)
            })
        })
        .collect();
    for (n, client) in clients.into_iter().enumerate() {
        let (data, echoed) = within("1 MiB echo", client).await.unwrap();
        assert_eq!(echoed.len(), MIB, "client {n}");
        assert!(
            echoed == data,
            "client {n}: echo differs from what was sent"
        );
    }
    let stats = lab.snapshot();
    // Every D frame carries at most 1498 bytes: 10 MiB each way needs at least this many.
    let min_frames = (10 * MIB).div_ceil(1498) as u64;
    assert!(stats.proxy1.sent.data >= min_frames, "{:?}", stats.proxy1);
    assert!(stats.proxy2.sent.data >= min_frames, "{:?}", stats.proxy2);
    assert_eq!(stats.proxy1.sent.connect, 10);
    assert_eq!(stats.proxy2.malformed + stats.proxy1.malformed, 0);
    lab.shutdown().await;
}

#[tokio::test]
async fn eleventh_client_waits_for_a_free_id_and_then_proceeds() {
    let (lab, mut events) = lab_with(LabConfig::ephemeral()).await;
    let mut first_ten = Vec::new();
    for n in 0..10u8 {
        first_ten.push(open_client(&lab, &[b'a' + n]).await);
    }
    let mut eleventh = TcpStream::connect(lab.addrs().proxy1_tcp).await.unwrap();
    let eleventh_addr = eleventh.local_addr().unwrap();
    wait_for(
        &mut events,
        "the eleventh client to wait",
        |kind| match kind {
            EventKind::WaitingForId { client } if *client == eleventh_addr => Some(()),
            _ => None,
        },
    )
    .await;
    eleventh.write_all(b"patience").await.unwrap();

    // Client 3 leaves: its id (3) is the one that frees, and the eleventh gets it.
    let leaving = first_ten.remove(3);
    drop(leaving);
    let id = wait_for(
        &mut events,
        "the eleventh client to connect",
        |kind| match kind {
            EventKind::Conn {
                at: Endpoint::Proxy1,
                id,
                state: ConnState::Open,
                client: Some(c),
            } if *c == eleventh_addr => Some(*id),
            _ => None,
        },
    )
    .await;
    assert_eq!(id.index(), 3, "the lowest free id is the one just released");
    // What it wrote while waiting was buffered by TCP and now goes through.
    let echoed = within("the waiting client's echo", async {
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        while got.len() < 8 {
            let n = tokio::io::AsyncReadExt::read(&mut eleventh, &mut buf)
                .await
                .unwrap();
            assert!(n > 0);
            got.extend_from_slice(&buf[..n]);
        }
        got
    })
    .await;
    assert_eq!(echoed, b"patience");
    lab.shutdown().await;
}

#[tokio::test]
async fn a_client_that_waits_too_long_for_an_id_is_closed() {
    let mut config = LabConfig::ephemeral();
    config.proxy1.id_wait = Duration::from_millis(200);
    let (lab, mut events) = lab_with(config).await;
    let mut first_ten = Vec::new();
    for n in 0..10u8 {
        first_ten.push(open_client(&lab, &[n]).await);
    }
    let mut eleventh = TcpStream::connect(lab.addrs().proxy1_tcp).await.unwrap();
    let (got, _) = within(
        "proxy1 to close the waiting client",
        read_to_close(&mut eleventh),
    )
    .await;
    assert!(got.is_empty());
    let addr = eleventh.local_addr().unwrap();
    wait_for(&mut events, "WaitGaveUp", |kind| {
        matches!(kind, EventKind::WaitGaveUp { client } if *client == addr).then_some(())
    })
    .await;
    assert_eq!(
        lab.snapshot().proxy1.sent.connect,
        10,
        "no id was taken for it"
    );
    lab.shutdown().await;
}

#[tokio::test]
async fn server_down_means_nok_and_the_client_is_closed() {
    let (mut lab, mut events) = lab_with(LabConfig::ephemeral()).await;
    lab.stop_role(Role::EchoServer).await.unwrap();
    let mut client = TcpStream::connect(lab.addrs().proxy1_tcp).await.unwrap();
    let (got, _) = within(
        "proxy1 to close the refused client",
        read_to_close(&mut client),
    )
    .await;
    assert!(got.is_empty());
    wait_for(&mut events, "a Refused state at proxy1", |kind| {
        matches!(
            kind,
            EventKind::Conn {
                at: Endpoint::Proxy1,
                state: ConnState::Refused,
                ..
            }
        )
        .then_some(())
    })
    .await;
    let stats = lab.snapshot();
    assert_eq!(stats.proxy2.sent.nok, 1);
    assert_eq!(stats.proxy1.received.nok, 1);

    // The server comes back: the tunnel works again, on the same (freed) id.
    lab.start_role(Role::EchoServer).await.unwrap();
    let _client = open_client(&lab, b"back").await;
    lab.shutdown().await;
}

#[tokio::test]
async fn no_proxy2_means_retries_then_the_client_is_closed() {
    let mut config = LabConfig::ephemeral();
    config.proxy1.connect_attempts = 3;
    config.proxy1.connect_retry = Duration::from_millis(100);
    let (mut lab, mut events) = lab_with(config).await;
    lab.stop_role(Role::Proxy2).await.unwrap();
    let mut client = TcpStream::connect(lab.addrs().proxy1_tcp).await.unwrap();
    let (got, _) = within("proxy1 to give up", read_to_close(&mut client)).await;
    assert!(got.is_empty());
    let message = wait_for(
        &mut events,
        "an error log naming the retries",
        |kind| match kind {
            EventKind::Log {
                level: Level::Error,
                role: Role::Proxy1,
                message,
            } => Some(message.clone()),
            _ => None,
        },
    )
    .await;
    assert!(
        message.contains("did not answer C0 after 3 tries"),
        "{message}"
    );
    assert_eq!(lab.snapshot().proxy1.sent.connect, 3);

    // proxy2 comes back on the same port: new clients get through.
    lab.start_role(Role::Proxy2).await.unwrap();
    let _client = open_client(&lab, b"hello again").await;
    lab.shutdown().await;
}

#[tokio::test]
async fn a_malformed_barrage_is_counted_and_the_tunnel_keeps_working() {
    let (lab, _events) = lab_with(LabConfig::ephemeral()).await;
    let mut before = open_client(&lab, b"before").await;
    let stranger_to_proxy1 = RawPeer::new(lab.addrs().proxy1_udp).await;
    let stranger_to_proxy2 = RawPeer::new(lab.addrs().proxy2_udp).await;
    let mut barrage: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"D".to_vec(),
        b"Q1hello".to_vec(),
        b"DAhello".to_vec(),
        b"C\xff".to_vec(),
        vec![b'D'; 1600],
    ];
    barrage.extend((0..200).map(|seed| random_bytes(seed, (seed as usize * 7) % 1500)));
    for datagram in &barrage {
        stranger_to_proxy1.send(datagram).await;
        stranger_to_proxy2.send(datagram).await;
    }
    // Well-formed frames from a stranger must not reach proxy1's clients either.
    stranger_to_proxy1.send(b"D0spoofed").await;
    stranger_to_proxy1.send(b"X0").await;

    let after = open_client(&lab, b"after").await;
    let echoed = echo_through(&mut before, b"still here", 1024).await;
    assert_eq!(echoed, b"still here");
    drop(after);

    let stats = lab.snapshot();
    // Everything sent to proxy1 came from a stranger, so it was ignored before decoding.
    assert!(
        stats.proxy1.ignored as usize >= barrage.len() + 2,
        "{:?}",
        stats.proxy1
    );
    // proxy2 accepts any proxy1, so it decoded the barrage: some malformed, some not open.
    assert!(stats.proxy2.malformed >= 6, "{:?}", stats.proxy2);
    lab.shutdown().await;
}

async fn close_propagates_as_x(how: CloseKind) {
    let (lab, mut events) = lab_with(LabConfig::ephemeral()).await;
    let client = open_client(&lab, b"bye soon").await;
    let addr = client.local_addr().unwrap();
    match how {
        CloseKind::Fin => {
            let mut client = client;
            client.shutdown().await.unwrap();
            // Keep the socket until proxy1 has seen the FIN.
            wait_for(&mut events, "proxy1 to see the FIN", |kind| {
                matches!(kind, EventKind::Tcp { role: Role::Proxy1, action: TcpAction::PeerClosed(CloseKind::Fin), peer, .. } if *peer == addr).then_some(())
            })
            .await;
        }
        CloseKind::Rst => {
            socket2::SockRef::from(&client)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
            drop(client);
            wait_for(&mut events, "proxy1 to see the RST", |kind| {
                matches!(kind, EventKind::Tcp { role: Role::Proxy1, action: TcpAction::PeerClosed(CloseKind::Rst), peer, .. } if *peer == addr).then_some(())
            })
            .await;
        }
    }
    // proxy2 received the X and freed the id on its side.
    wait_for(&mut events, "proxy2 to free id 0", |kind| {
        matches!(kind, EventKind::Conn { at: Endpoint::Proxy2, state: ConnState::Free, id, .. } if id.index() == 0).then_some(())
    })
    .await;
    let stats = lab.snapshot();
    // X goes out at once, and twice more while the id is held back (--close-attempts).
    assert!((1..=3).contains(&stats.proxy1.sent.close), "{stats:?}");
    assert!(stats.proxy2.received.close >= 1, "{stats:?}");
    // The next client gets the least recently used id: one never used, not the freed 0.
    let next = TcpStream::connect(lab.addrs().proxy1_tcp).await.unwrap();
    let next_addr = next.local_addr().unwrap();
    let id = wait_for(&mut events, "the next client to open", |kind| match kind {
        EventKind::Conn {
            at: Endpoint::Proxy1,
            id,
            state: ConnState::Open,
            client: Some(c),
        } if *c == next_addr => Some(*id),
        _ => None,
    })
    .await;
    assert_eq!(id.index(), 1);
    lab.shutdown().await;
}

#[tokio::test]
async fn a_fin_from_the_client_becomes_x_and_frees_the_id() {
    close_propagates_as_x(CloseKind::Fin).await;
}

#[tokio::test]
async fn a_rst_from_the_client_becomes_x_and_frees_the_id() {
    close_propagates_as_x(CloseKind::Rst).await;
}

#[tokio::test]
async fn an_idle_connection_is_reclaimed_on_both_sides() {
    let mut config = LabConfig::ephemeral();
    config.proxy1.idle_timeout = Duration::from_millis(300).into();
    let (lab, mut events) = lab_with(config).await;
    let mut client = open_client(&lab, b"then silence").await;
    let (_, _) = within(
        "proxy1 to close the idle client",
        read_to_close(&mut client),
    )
    .await;
    wait_for(&mut events, "proxy2 to free the id", |kind| {
        matches!(
            kind,
            EventKind::Conn {
                at: Endpoint::Proxy2,
                state: ConnState::Free,
                ..
            }
        )
        .then_some(())
    })
    .await;
    assert_eq!(lab.snapshot().proxy1.sent.close, 1);
    lab.shutdown().await;
}

#[tokio::test]
async fn the_server_closing_sends_x_and_closes_the_client() {
    let (mut lab, mut events) = lab_with(LabConfig::ephemeral()).await;
    let mut client = open_client(&lab, b"server will go").await;
    // Stopping the server closes its connections: proxy2 sees that and sends X.
    lab.stop_role(Role::EchoServer).await.unwrap();
    let (_, _) = within("the client to be closed", read_to_close(&mut client)).await;
    wait_for(&mut events, "proxy1 to free the id", |kind| {
        matches!(
            kind,
            EventKind::Conn {
                at: Endpoint::Proxy1,
                state: ConnState::Free,
                ..
            }
        )
        .then_some(())
    })
    .await;
    let stats = lab.snapshot();
    assert_eq!(stats.proxy2.sent.close, 1);
    assert_eq!(stats.proxy1.received.close, 1);
    assert_eq!(stats.proxy1.received.get(FrameKind::Close), 1);
    lab.shutdown().await;
}
