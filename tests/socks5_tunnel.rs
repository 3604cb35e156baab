//! The SOCKS5 front wired into the tunnel: real curl (and hand-written SOCKS5 clients) →
//! proxy1's SOCKS5 port → the UDP link in selective-repeat with 2% emulated loss each way →
//! proxy2, which resolves and dials the destination the `C` frame carries → a local HTTP
//! server. Everything on real loopback sockets.
//!
//! Without curl (found by build.rs) the curl tests are marked ignored, "needs curl";
//! `TUNLAB_REQUIRE_CURL=1` (as in CI) makes a missing curl a build error.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::http::{curl, file_of, http_server, stderr};
use common::within;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tunlab::destination::{Host, Refusal};
use tunlab::event::{Event, EventKind, EventSink};
use tunlab::impair::settings::{DirectionSettings, LinkSettings, Percent};
use tunlab::lab::{Lab, LabConfig};
use tunlab::roles::access_log::{AccessRecord, AccessResult};
use tunlab::roles::dialers::{DialerConfig, ResolverDialer, Rule, Rules};
use tunlab::roles::fronts::socks5::{FrontConfig, Socks5Users};
use tunlab::topology::Endpoint;
use tunlab::transport::{RtoConfig, TransportConfig};
use tunlab::wire::{FrameKind, WireMode};

/// A selective-repeat lab with a SOCKS5 port, `loss` percent lost each way, these users and
/// proxy2 rules, and an access log in `dir`. Its events come out of the receiver.
async fn lab(
    loss: f64,
    users: &[&str],
    rules: Vec<Rule>,
    dir: &std::path::Path,
) -> (Lab, mpsc::Receiver<Event>) {
    let (events, rx) = EventSink::channel(64 * 1024);
    let events = events.without_frame_events();
    let mode = WireMode::SelectiveRepeat;
    let mut config = LabConfig {
        mode,
        link: LinkSettings::symmetric(DirectionSettings {
            loss: Percent::new(loss).unwrap(),
            ..DirectionSettings::default()
        }),
        link_seed: Some(13),
        socks5_port: Some(0),
        access_log: Some(dir.join("access.log")),
        ..LabConfig::ephemeral()
    };
    // Loopback answers in well under a millisecond: a short fixed timer keeps the tests
    // quick (the default RFC 6298 timer never goes below 200 ms).
    let transport = TransportConfig {
        rto: RtoConfig::Fixed(Duration::from_millis(20)),
        max_timeouts: 50,
        ..TransportConfig::for_mode(mode)
    };
    config.proxy1.transport = Some(transport);
    config.proxy2.transport = Some(transport);
    config.proxy1.connect_attempts = 12;
    config.proxy1.connect_retry = Duration::from_millis(200);
    config.proxy1.socks5.front = FrontConfig {
        users: Arc::new(Socks5Users::new(users.iter().map(|u| u.parse().unwrap()))),
        handshake_timeout: Duration::from_secs(30),
    };
    config.proxy2.dialer = ResolverDialer::new(DialerConfig {
        rules: Rules::new(rules),
        ..DialerConfig::default()
    });
    let lab = Lab::start(config, events).await.expect("lab starts");
    (lab, rx)
}

fn socks5_addr(lab: &Lab) -> String {
    lab.addrs()
        .proxy1_socks5
        .expect("a SOCKS5 port")
        .to_string()
}

/// The access log's records, once the lab has shut down (and so written them all).
fn access_log(dir: &std::path::Path) -> Vec<AccessRecord> {
    std::fs::read_to_string(dir.join("access.log"))
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// The events received so far.
fn drain(rx: &mut mpsc::Receiver<Event>) -> Vec<EventKind> {
    let mut events = Vec::new();
    while let Ok(event) = rx.try_recv() {
        events.push(event.kind);
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(has_curl), ignore = "needs curl (apt install curl)")]
async fn curl_downloads_20_mib_byte_exact_by_name_through_a_lossy_selective_repeat_tunnel() {
    let body = Arc::new(file_of(20 << 20, 11));
    let http = http_server(
        "127.0.0.1:0",
        HashMap::from([("big.bin".to_string(), body.clone())]),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (lab, mut rx) = lab(2.0, &["ana:s3cret"], vec![], dir.path()).await;
    let out_path = dir.path().join("got.bin");
    // --socks5-hostname: curl sends the name; proxy1 passes it on in C, proxy2 resolves it.
    let url = format!("http://localhost:{}/big.bin", http.addr.port());
    let output = curl(&[
        "--max-time",
        "240",
        "--socks5-hostname",
        &socks5_addr(&lab),
        "--proxy-user",
        "ana:s3cret",
        "--output",
        out_path.to_str().unwrap(),
        &url,
    ])
    .await;
    assert!(output.status.success(), "curl failed: {}", stderr(&output));
    let got = std::fs::read(&out_path).unwrap();
    assert!(
        got == *body,
        "the file arrived changed ({} of {} bytes)",
        got.len(),
        body.len()
    );
    let snapshot = lab.snapshot();
    let dropped = snapshot.link.to_proxy1.dropped + snapshot.link.to_proxy2.dropped;
    assert!(dropped > 100, "the link lost frames: {dropped}");
    lab.shutdown().await;

    // proxy2 got the name, not an address: the C carried `localhost`, resolved on its side.
    let events = drain(&mut rx);
    let routes: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            EventKind::Route {
                at,
                destination,
                user,
                ..
            } => Some((*at, destination.clone(), user.clone())),
            _ => None,
        })
        .collect();
    let name = Host::Name("localhost".into());
    assert!(
        routes
            .iter()
            .any(|(at, d, user)| *at == Endpoint::Proxy2 && d.host == name && user.is_none()),
        "{routes:?}"
    );
    assert!(
        routes.iter().any(|(at, d, user)| *at == Endpoint::Proxy1
            && d.host == name
            && user.as_deref() == Some("ana")),
        "{routes:?}"
    );

    let records = access_log(dir.path());
    assert_eq!(records.len(), 1, "{records:?}");
    let record = &records[0];
    assert_eq!(record.result, AccessResult::Ok, "{record:?}");
    assert_eq!(record.user.as_deref(), Some("ana"));
    assert_eq!(
        record.destination,
        Some(format!("localhost:{}", http.addr.port()))
    );
    assert!(
        record.bytes_down > body.len() as u64 && record.bytes_up > 0,
        "body plus headers: {record:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(has_curl), ignore = "needs curl (apt install curl)")]
async fn curl_with_a_wrong_password_is_rejected_at_proxy1() {
    let http = http_server("127.0.0.1:0", HashMap::new()).await;
    let dir = tempfile::tempdir().unwrap();
    let (lab, _rx) = lab(2.0, &["ana:s3cret"], vec![], dir.path()).await;
    let url = format!("http://127.0.0.1:{}/", http.addr.port());
    let output = curl(&[
        "--socks5",
        &socks5_addr(&lab),
        "--proxy-user",
        "ana:wrong",
        &url,
    ])
    .await;
    assert_eq!(
        output.status.code(),
        Some(97),
        "curl's proxy error: {}",
        stderr(&output)
    );
    assert!(
        stderr(&output).contains("User was rejected by the SOCKS5 server"),
        "{}",
        stderr(&output)
    );
    let sent_c = lab.snapshot().proxy1.sent.get(FrameKind::Connect);
    lab.shutdown().await;
    assert_eq!(sent_c, 0, "a rejected login opens no tunnel connection");
    assert_eq!(http.connections.load(Ordering::SeqCst), 0);
    let records = access_log(dir.path());
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].result, AccessResult::Rejected);
    assert_eq!(records[0].reason.as_deref(), Some("auth-failed"));
    assert_eq!(records[0].user.as_deref(), Some("ana"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(has_curl), ignore = "needs curl (apt install curl)")]
async fn a_destination_denied_at_proxy2_reaches_curl_as_the_ruleset_code() {
    let http = http_server(
        "127.0.0.1:0",
        HashMap::from([("x".to_string(), Arc::new(b"x".to_vec()))]),
    )
    .await;
    let port = http.addr.port();
    // Denied by address and port, asked for by name: checked after proxy2 resolves it.
    let rule = Rule::deny(format!("127.0.0.1:{port}").parse().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let (lab, mut rx) = lab(2.0, &[], vec![rule], dir.path()).await;
    let url = format!("http://localhost:{port}/x");
    let output = curl(&["--socks5-hostname", &socks5_addr(&lab), &url]).await;
    assert_eq!(output.status.code(), Some(97), "{}", stderr(&output));
    let message = stderr(&output);
    assert!(
        message.contains("connection to localhost. (2)")
            || message.to_lowercase().contains("not allowed"),
        "curl names the ruleset code: {message}"
    );
    assert_eq!(
        http.connections.load(Ordering::SeqCst),
        0,
        "a denied destination is never dialed"
    );
    lab.shutdown().await;
    // Both ends say why: proxy2 with the rule, proxy1 with the NOK's reason byte.
    let refusals: Vec<_> = drain(&mut rx)
        .into_iter()
        .filter_map(|e| match e {
            EventKind::Refused {
                at, reason, detail, ..
            } => Some((at, reason, detail)),
            _ => None,
        })
        .collect();
    let expected_detail =
        format!("localhost:{port} resolves to 127.0.0.1:{port}, denied by --deny 127.0.0.1:{port}");
    assert!(
        refusals.contains(&(Endpoint::Proxy2, Refusal::NotAllowed, expected_detail)),
        "{refusals:?}"
    );
    assert!(
        refusals
            .iter()
            .any(|(at, reason, _)| *at == Endpoint::Proxy1 && *reason == Refusal::NotAllowed),
        "{refusals:?}"
    );
    let records = access_log(dir.path());
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].result, AccessResult::Refused);
    assert_eq!(records[0].reason.as_deref(), Some("not-allowed"));
    assert_eq!(records[0].destination, Some(format!("localhost:{port}")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(has_curl), ignore = "needs curl (apt install curl)")]
async fn a_closed_port_behind_proxy2_reaches_curl_as_connection_refused() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (lab, _rx) = lab(0.0, &[], vec![], dir.path()).await;
    let output = curl(&[
        "--socks5",
        &socks5_addr(&lab),
        &format!("http://127.0.0.1:{}/", closed.port()),
    ])
    .await;
    assert_eq!(output.status.code(), Some(97), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("(5)") || stderr(&output).to_lowercase().contains("refused"),
        "{}",
        stderr(&output)
    );
    lab.shutdown().await;
    let records = access_log(dir.path());
    assert_eq!(records[0].reason.as_deref(), Some("connection-refused"));
}

/// A SOCKS5 CONNECT over a raw socket, greeting, login and request in one write (as a
/// client may); returns the stream once the reply says "succeeded".
async fn socks_connect(server: SocketAddr, target: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(server).await.unwrap();
    let mut hello = vec![5, 1, 2, 1, 3, b'a', b'n', b'a', 2, b'p', b'w', 5, 1, 0, 1];
    let SocketAddr::V4(v4) = target else {
        panic!("IPv4 target")
    };
    hello.extend_from_slice(&v4.ip().octets());
    hello.extend_from_slice(&target.port().to_be_bytes());
    stream.write_all(&hello).await.unwrap();
    let mut answer = [0u8; 4 + 10];
    stream.read_exact(&mut answer).await.unwrap();
    assert_eq!(
        &answer[..6],
        [5, 2, 1, 0, 5, 0],
        "login and CONNECT succeeded"
    );
    stream
}

/// An echo server on 127.0.0.1 as the SOCKS5 destination.
async fn echo_server() -> SocketAddr {
    let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = echo.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = echo.accept().await {
            tokio::spawn(async move {
                let (mut read, mut write) = stream.into_split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_sent_right_behind_the_request_is_not_lost() {
    let echo = echo_server().await;
    let dir = tempfile::tempdir().unwrap();
    let (lab, _rx) = lab(2.0, &["ana:pw"], vec![], dir.path()).await;
    let mut stream = TcpStream::connect(lab.addrs().proxy1_socks5.unwrap())
        .await
        .unwrap();
    // Greeting, login, request and the first data in one write, before any reply.
    let mut hello = vec![5, 1, 2, 1, 3, b'a', b'n', b'a', 2, b'p', b'w', 5, 1, 0, 1];
    let SocketAddr::V4(v4) = echo else {
        panic!("IPv4")
    };
    hello.extend_from_slice(&v4.ip().octets());
    hello.extend_from_slice(&echo.port().to_be_bytes());
    hello.extend_from_slice(b"early bird");
    stream.write_all(&hello).await.unwrap();
    // Method choice (2), login answer (2), CONNECT reply (10), then the echo.
    let mut answer = [0u8; 2 + 2 + 10 + 10];
    within("the replies and the echo", stream.read_exact(&mut answer))
        .await
        .unwrap();
    assert_eq!(&answer[..4], [5, 2, 1, 0]);
    assert_eq!(&answer[4..6], [5, 0], "succeeded");
    assert_eq!(&answer[14..], b"early bird");
    drop(stream);
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_socks5_clients_at_once_are_all_served_through_the_tunnel() {
    const CLIENTS: usize = 500;
    let echo = echo_server().await;
    let dir = tempfile::tempdir().unwrap();
    let (lab, _rx) = lab(2.0, &["ana:pw"], vec![], dir.path()).await;
    let proxy1 = lab.addrs().proxy1_socks5.unwrap();
    let all_connected = Arc::new(tokio::sync::Barrier::new(CLIENTS));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let all_connected = all_connected.clone();
            tokio::spawn(async move {
                let mut stream = socks_connect(proxy1, echo).await;
                let message = format!("client {i:04} says hello through the tunnel\n");
                stream.write_all(message.as_bytes()).await.unwrap();
                let mut echoed = vec![0u8; message.len()];
                stream.read_exact(&mut echoed).await.unwrap();
                assert_eq!(echoed, message.as_bytes());
                // Every client holds its connection open until all 500 have been served:
                // they really are concurrent tunnel connections.
                all_connected.wait().await;
                stream.shutdown().await.unwrap();
                let mut rest = Vec::new();
                stream.read_to_end(&mut rest).await.unwrap();
                assert!(rest.is_empty());
            })
        })
        .collect();
    let all = async {
        for client in clients {
            client.await.expect("a client failed");
        }
    };
    tokio::time::timeout(Duration::from_mins(3), all)
        .await
        .expect("500 clients were not all served within 3 minutes");
    lab.shutdown().await;
    let records = access_log(dir.path());
    assert_eq!(records.len(), CLIENTS);
    let message_len = "client 0000 says hello through the tunnel\n".len() as u64;
    assert!(
        records.iter().all(|r| r.result == AccessResult::Ok
            && r.user.as_deref() == Some("ana")
            && r.bytes_up == message_len
            && r.bytes_down == message_len),
        "{:?}",
        records
            .iter()
            .find(|r| r.bytes_up != message_len || r.bytes_down != message_len)
    );
}

#[tokio::test]
async fn the_text_formats_refuse_a_socks5_port() {
    for mode in [WireMode::Classic, WireMode::StopAndWait] {
        let config = LabConfig {
            mode,
            socks5_port: Some(0),
            ..LabConfig::ephemeral()
        };
        let error = Lab::start(config, EventSink::disabled())
            .await
            .err()
            .expect("refused");
        assert!(
            error
                .to_string()
                .contains("SOCKS5 needs an extended wire mode"),
            "{error}"
        );
    }
}
