//! The SOCKS5 front on top of the resolver dialer (the direct server, no tunnel), driven by
//! real curl and by hand-written SOCKS5 clients, against a local HTTP server on real
//! loopback sockets: files byte-exact, logins, refusals with their RFC codes, names resolved
//! at the server, the access log, malformed clients, and 500 clients at once.
//!
//! Without curl (found by build.rs) the curl tests are marked ignored, "needs curl";
//! `TUNLAB_REQUIRE_CURL=1` (as in CI) makes a missing curl a build error.

// Unsafe is allowed here, and only here: signals to child processes (libc::kill): the pids are
// our own children.
#![allow(unsafe_code)]

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use common::http::{curl, file_of, http_server, stderr};
use tunlab::roles::access_log::{AccessLog, AccessRecord, AccessResult};
use tunlab::roles::dialers::{DialerConfig, ResolverDialer, Rule, Rules};
use tunlab::roles::fronts::socks5::{FrontConfig, Socks5Users};
use tunlab::roles::socks5_direct::{self, DirectConfig};

/// The direct SOCKS5 server on an ephemeral port, its finished records, and a stop.
struct Server {
    addr: SocketAddr,
    records: Arc<std::sync::Mutex<Vec<AccessRecord>>>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn shut(self) -> Vec<AccessRecord> {
        self.stop.cancel();
        self.task.await.unwrap();
        self.records.lock().unwrap().clone()
    }

    fn records(&self) -> Vec<AccessRecord> {
        self.records.lock().unwrap().clone()
    }

    /// Waits (a bounded while) until `count` connections have ended on their own, so that
    /// stopping the server afterwards cuts nothing short.
    async fn wait_for_records(&self, count: usize) {
        for _ in 0..500 {
            if self.records.lock().unwrap().len() >= count {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "{count} connections did not end within 10 s: {:?}",
            self.records()
        );
    }
}

async fn server(
    users: &[&str],
    rules: &[Rule],
    front_timeout: Duration,
    access_log: Option<&AccessLog>,
) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let records = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = records.clone();
    let config = DirectConfig {
        front: FrontConfig {
            users: Arc::new(Socks5Users::new(users.iter().map(|u| u.parse().unwrap()))),
            handshake_timeout: front_timeout,
        },
        dialer: ResolverDialer::new(DialerConfig {
            rules: Rules::new(rules.to_vec()),
            ..DialerConfig::default()
        }),
        access_log: access_log.map(AccessLog::writer),
        on_record: Some(Arc::new(move |record: &AccessRecord| {
            sink.lock().unwrap().push(record.clone());
        })),
        ..DirectConfig::default()
    };
    let stop = CancellationToken::new();
    let task = tokio::spawn(socks5_direct::run(listener, config, stop.clone()));
    Server {
        addr,
        records,
        stop,
        task,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(has_curl), ignore = "needs curl (apt install curl)")]
async fn curl_fetches_a_file_byte_exact_by_name_with_a_password() {
    let body = Arc::new(file_of(4 << 20, 7));
    let http = http_server(
        "127.0.0.1:0",
        HashMap::from([("file.bin".to_string(), body.clone())]),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("access.log");
    let log = AccessLog::open(&log_path).unwrap();
    let socks = server(&["ana:s3cret"], &[], Duration::from_secs(10), Some(&log)).await;
    let out_path = dir.path().join("got.bin");
    let url = format!("http://localhost:{}/file.bin", http.addr.port());
    let output = curl(&[
        "--socks5-hostname",
        &socks.addr.to_string(),
        "--proxy-user",
        "ana:s3cret",
        "--output",
        out_path.to_str().unwrap(),
        &url,
    ])
    .await;
    assert!(output.status.success(), "curl failed: {}", stderr(&output));
    let got = std::fs::read(&out_path).unwrap();
    socks.wait_for_records(1).await;
    assert!(
        got == *body,
        "the file arrived changed ({} of {} bytes)",
        got.len(),
        body.len()
    );

    let records = socks.shut().await;
    assert_eq!(records.len(), 1, "{records:?}");
    let record = &records[0];
    assert_eq!(record.result, AccessResult::Ok);
    assert_eq!(record.user.as_deref(), Some("ana"));
    // curl sent the name (--socks5-hostname): the server resolved it.
    assert_eq!(
        record.destination,
        Some(format!("localhost:{}", http.addr.port()))
    );
    assert_eq!(record.address, Some(http.addr));
    assert!(
        record.bytes_down > body.len() as u64,
        "body plus headers: {record:?}"
    );
    assert!(record.bytes_up > 0);

    assert_eq!(log.finish(), 1);
    let text = std::fs::read_to_string(&log_path).unwrap();
    let line: AccessRecord = serde_json::from_str(text.trim_end()).unwrap();
    assert_eq!(&line, record, "the access log has the same record");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(has_curl), ignore = "needs curl (apt install curl)")]
async fn curl_reaches_an_ipv6_destination_without_authentication() {
    let body = Arc::new(file_of(100_000, 3));
    let http = http_server("[::1]:0", HashMap::from([("v6".to_string(), body.clone())])).await;
    let socks = server(&[], &[], Duration::from_secs(10), None).await;
    let url = format!("http://[::1]:{}/v6", http.addr.port());
    // --socks5 (not -hostname): curl sends the IPv6 address itself (ATYP 0x04).
    let output = curl(&["--globoff", "--socks5", &socks.addr.to_string(), &url]).await;
    assert!(output.status.success(), "curl failed: {}", stderr(&output));
    assert!(output.stdout == *body, "the body arrived changed");
    socks.wait_for_records(1).await;
    let records = socks.shut().await;
    assert_eq!(
        records[0].destination,
        Some(format!("[::1]:{}", http.addr.port()))
    );
    assert_eq!(records[0].user, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(has_curl), ignore = "needs curl (apt install curl)")]
async fn curl_with_a_wrong_password_is_rejected() {
    let http = http_server("127.0.0.1:0", HashMap::new()).await;
    let socks = server(&["ana:s3cret"], &[], Duration::from_secs(10), None).await;
    let url = format!("http://127.0.0.1:{}/", http.addr.port());
    let output = curl(&[
        "--socks5",
        &socks.addr.to_string(),
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
    // And without credentials at all, once users exist, "no authentication" is refused.
    let output = curl(&["--socks5", &socks.addr.to_string(), &url]).await;
    assert_eq!(output.status.code(), Some(97));
    assert!(
        stderr(&output).contains("No authentication method was acceptable"),
        "{}",
        stderr(&output)
    );
    assert_eq!(
        http.connections.load(Ordering::SeqCst),
        0,
        "nothing reached the server"
    );
    let records = socks.shut().await;
    let reasons: Vec<_> = records
        .iter()
        .map(|r| {
            (
                r.result,
                r.reason.clone().unwrap_or_default(),
                r.user.clone(),
            )
        })
        .collect();
    assert!(
        reasons.contains(&(
            AccessResult::Rejected,
            "auth-failed".into(),
            Some("ana".into())
        )),
        "{reasons:?}"
    );
    assert!(
        reasons.contains(&(AccessResult::Rejected, "no-acceptable-method".into(), None)),
        "{reasons:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(has_curl), ignore = "needs curl (apt install curl)")]
async fn curl_to_a_denied_destination_gets_the_ruleset_code() {
    let http = http_server(
        "127.0.0.1:0",
        HashMap::from([("x".to_string(), Arc::new(b"x".to_vec()))]),
    )
    .await;
    let port = http.addr.port();
    // The seed's blocklist, by address and port; asked for by name, checked after resolution.
    let rule = Rule::deny(format!("127.0.0.1:{port}").parse().unwrap());
    let socks = server(&[], &[rule], Duration::from_secs(10), None).await;
    let url = format!("http://localhost:{port}/x");
    let output = curl(&["--socks5-hostname", &socks.addr.to_string(), &url]).await;
    assert_eq!(output.status.code(), Some(97), "{}", stderr(&output));
    // curl 7.x prints the reply code; newer ones may spell it out.
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
    let records = socks.shut().await;
    assert_eq!(records[0].result, AccessResult::Refused);
    assert_eq!(records[0].reason.as_deref(), Some("not-allowed"));
    assert_eq!(
        records[0].detail.as_deref(),
        Some(
            format!(
                "localhost:{port} resolves to 127.0.0.1:{port}, denied by --deny 127.0.0.1:{port}"
            )
            .as_str()
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(has_curl), ignore = "needs curl (apt install curl)")]
async fn curl_to_a_closed_port_or_a_bad_name_gets_their_codes() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let socks = server(&[], &[], Duration::from_secs(10), None).await;
    let output = curl(&[
        "--socks5-hostname",
        &socks.addr.to_string(),
        &format!("http://localhost:{}/", closed.port()),
    ])
    .await;
    assert_eq!(output.status.code(), Some(97));
    assert!(
        stderr(&output).contains("(5)") || stderr(&output).to_lowercase().contains("refused"),
        "{}",
        stderr(&output)
    );
    let output = curl(&[
        "--socks5-hostname",
        &socks.addr.to_string(),
        "http://no-such-host.invalid/",
    ])
    .await;
    assert_eq!(output.status.code(), Some(97));
    assert!(
        stderr(&output).contains("(4)") || stderr(&output).to_lowercase().contains("unreachable"),
        "{}",
        stderr(&output)
    );
    let reasons: Vec<_> = socks
        .shut()
        .await
        .into_iter()
        .map(|r| r.reason.unwrap_or_default())
        .collect();
    assert_eq!(reasons, ["connection-refused", "host-unreachable"]);
}

/// Sends `bytes` to a fresh connection to the server and returns everything it answers
/// until it closes (bounded by a generous timeout so a stuck server fails the test).
async fn exchange(server: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(server).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut answer))
        .await
        .expect("the server closes the connection")
        .unwrap_or_default();
    answer
}

#[tokio::test]
async fn malformed_clients_get_the_rfcs_answer_and_a_close() {
    let socks = server(&[], &[], Duration::from_secs(10), None).await;
    let s = socks.addr;
    let failure = |code: u8| vec![5, code, 0, 1, 0, 0, 0, 0, 0, 0];
    let mut expect = vec![5, 0];
    expect.extend(failure(7));
    // BIND and UDP ASSOCIATE: command not supported.
    assert_eq!(
        exchange(s, &[5, 1, 0, 5, 2, 0, 1, 127, 0, 0, 1, 0, 80]).await,
        expect
    );
    assert_eq!(
        exchange(s, &[5, 1, 0, 5, 3, 0, 1, 127, 0, 0, 1, 0, 80]).await,
        expect
    );
    // An unknown address type: 0x08.
    let mut expect = vec![5, 0];
    expect.extend(failure(8));
    assert_eq!(
        exchange(s, &[5, 1, 0, 5, 1, 0, 7, 1, 2, 3, 4, 0, 80]).await,
        expect
    );
    // SOCKS4, or HTTP to the wrong port: closed without a word.
    assert_eq!(exchange(s, &[4, 1, 0, 80, 127, 0, 0, 1, 0]).await, b"");
    assert_eq!(exchange(s, b"GET / HTTP/1.1\r\n\r\n").await, b"");
    // A request of the wrong version after a good greeting: closed after the method reply.
    assert_eq!(
        exchange(s, &[5, 1, 0, 4, 1, 0, 1, 127, 0, 0, 1, 0, 80]).await,
        [5, 0]
    );
    // No methods at all: "no acceptable methods".
    assert_eq!(exchange(s, &[5, 0]).await, [5, 0xff]);
    // An empty host name: general failure.
    let mut expect = vec![5, 0];
    expect.extend(failure(1));
    assert_eq!(exchange(s, &[5, 1, 0, 5, 1, 0, 3, 0, 0, 80]).await, expect);
    let records = socks.shut().await;
    assert_eq!(records.len(), 8);
    assert!(
        records.iter().all(|r| r.result == AccessResult::Rejected),
        "{records:?}"
    );
}

#[tokio::test]
async fn a_slow_handshake_is_closed_at_the_deadline() {
    let socks = server(&["ana:pw"], &[], Duration::from_millis(300), None).await;
    // A greeting, then silence in the middle of the login.
    let answer = exchange(socks.addr, &[5, 1, 2, 1, 3, b'a']).await;
    assert_eq!(answer, [5, 2], "greeting answered, then closed");
    let records = socks.shut().await;
    assert_eq!(records[0].reason.as_deref(), Some("handshake-timeout"));
}

#[tokio::test]
async fn a_login_over_a_raw_socket_then_data_both_ways() {
    let http = http_server(
        "127.0.0.1:0",
        HashMap::from([("a".to_string(), Arc::new(b"hello".to_vec()))]),
    )
    .await;
    let socks = server(&["ana:pw"], &[], Duration::from_secs(10), None).await;
    let mut request = vec![
        5, 1, 2, 1, 3, b'a', b'n', b'a', 2, b'p', b'w', 5, 1, 0, 1, 127, 0, 0, 1,
    ];
    request.extend_from_slice(&http.addr.port().to_be_bytes());
    // Sent in one write, with the HTTP request right behind the SOCKS request: the early
    // bytes are passed on, not lost.
    request.extend_from_slice(b"GET /a HTTP/1.0\r\n\r\n");
    let answer = exchange(socks.addr, &request).await;
    assert_eq!(&answer[..4], [5, 2, 1, 0], "method, then login ok");
    assert_eq!(&answer[4..7], [5, 0, 0], "request succeeded");
    let text = String::from_utf8_lossy(&answer[4 + 10..]);
    assert!(
        text.starts_with("HTTP/1.1 200 OK") && text.ends_with("hello"),
        "{text}"
    );
    socks.shut().await;
}

/// One SOCKS5 client written out by hand: login, CONNECT to `target`, returns the stream.
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_clients_at_once_are_all_served() {
    const CLIENTS: usize = 500;
    // An echo server as the destination.
    let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let echo_addr = echo.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = echo.accept().await {
            tokio::spawn(async move {
                let (mut read, mut write) = stream.into_split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
            });
        }
    });
    let socks = server(&["ana:pw"], &[], Duration::from_secs(30), None).await;
    let all_connected = Arc::new(tokio::sync::Barrier::new(CLIENTS));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let all_connected = all_connected.clone();
            let server = socks.addr;
            tokio::spawn(async move {
                let mut stream = socks_connect(server, echo_addr).await;
                let message = format!("client {i:04} says hello through SOCKS5\n");
                stream.write_all(message.as_bytes()).await.unwrap();
                let mut echoed = vec![0u8; message.len()];
                stream.read_exact(&mut echoed).await.unwrap();
                assert_eq!(echoed, message.as_bytes());
                // Every client holds its relay open until all 500 have been served: they
                // really are concurrent.
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
    tokio::time::timeout(Duration::from_mins(2), all)
        .await
        .expect("500 clients were not all served within 2 minutes");
    // Every relay ends with its client's close; give the server the moment it needs to log.
    socks.wait_for_records(CLIENTS).await;
    let records = socks.shut().await;
    assert_eq!(records.len(), CLIENTS);
    assert!(
        records.iter().all(|r| r.result == AccessResult::Ok
            && r.bytes_up == r.bytes_down
            && r.bytes_up == 38),
        "{:?}",
        records.iter().find(|r| r.bytes_up != 38)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(has_curl), ignore = "needs curl (apt install curl)")]
async fn the_binary_serves_curl_and_writes_the_access_log_on_sigterm() {
    let http = http_server(
        "127.0.0.1:0",
        HashMap::from([("f".to_string(), Arc::new(file_of(50_000, 9)))]),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.txt");
    std::fs::write(&users, "# the class\nana:s3cret\nbo:pw\n").unwrap();
    let log = dir.path().join("access.log");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tunlab"))
        .args(["socks5", "0", "--socks5-users"])
        .arg(&users)
        .args(["--deny", "port=7000-7999", "--access-log"])
        .arg(&log)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = tokio::io::BufReader::new(child.stderr.take().unwrap());
    let mut first = String::new();
    tokio::time::timeout(
        Duration::from_secs(30),
        tokio::io::AsyncBufReadExt::read_line(&mut err, &mut first),
    )
    .await
    .expect("the server says where it listens")
    .unwrap();
    assert!(
        first.contains("2 user(s)") && first.contains("--deny port=7000-7999"),
        "{first}"
    );
    let addr = first
        .split_whitespace()
        .find_map(|w| w.parse::<SocketAddr>().ok())
        .expect("an address in the first line");
    let url = format!("http://localhost:{}/f", http.addr.port());
    let output = curl(&[
        "--socks5-hostname",
        &addr.to_string(),
        "--proxy-user",
        "bo:pw",
        &url,
    ])
    .await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(output.stdout, file_of(50_000, 9));
    let output = curl(&[
        "--socks5-hostname",
        &addr.to_string(),
        "--proxy-user",
        "bo:pw",
        "http://localhost:7001/",
    ])
    .await;
    assert_eq!(output.status.code(), Some(97));

    let pid = child.id().unwrap() as i32;
    // SAFETY: sends SIGTERM to the child this test started.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
    let mut rest = String::new();
    err.read_to_string(&mut rest).await.unwrap();
    assert!(rest.contains("2 access log lines written"), "{rest}");
    assert!(
        rest.contains("bo 127.0.0.1:"),
        "each connection is logged: {rest}"
    );
    let lines: Vec<AccessRecord> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(
        (lines[0].result, lines[0].user.as_deref()),
        (AccessResult::Ok, Some("bo"))
    );
    assert_eq!(lines[1].reason.as_deref(), Some("not-allowed"));
}

#[tokio::test]
async fn stopping_the_server_ends_open_relays_and_logs_them() {
    let http = http_server("127.0.0.1:0", HashMap::new()).await;
    let socks = server(&["ana:pw"], &[], Duration::from_secs(10), None).await;
    // A relay that stays open (the HTTP server waits for a request that never comes) and a
    // client stuck in its handshake.
    let relay = socks_connect(socks.addr, http.addr).await;
    let mut stuck = TcpStream::connect(socks.addr).await.unwrap();
    stuck.write_all(&[5, 1, 2, 1]).await.unwrap();
    let mut method = [0u8; 2];
    stuck.read_exact(&mut method).await.unwrap();
    assert_eq!(
        method,
        [5, 2],
        "the server has it, in the middle of its login"
    );
    // shut() returns only once every connection task has ended.
    let records = tokio::time::timeout(Duration::from_secs(20), socks.shut())
        .await
        .expect("the server stops with connections open");
    assert_eq!(records.len(), 2, "{records:?}");
    assert!(
        records
            .iter()
            .all(|r| r.detail.as_deref() == Some("the server stopped")),
        "{records:?}"
    );
    assert!(
        records
            .iter()
            .any(|r| r.result == AccessResult::Ok && r.user.as_deref() == Some("ana"))
    );
    drop(relay);
}
