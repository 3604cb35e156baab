//! Keepalive and dead-peer detection in the extended modes, with the real binary: an idle
//! connection is probed and stays; a proxy2 that restarts (a new process on the same port)
//! is noticed, its old connections closed on proxy1's side, and new connections work; a
//! proxy2 that vanishes is noticed after the configured number of unanswered probes.

mod common;

use std::time::{Duration, Instant};

use common::process::Process;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Probes every this long in these tests (proxy1's `--probe-after`).
const PROBE_AFTER: &str = "100ms";

async fn echo_once(stream: &mut TcpStream, message: &[u8]) {
    stream.write_all(message).await.unwrap();
    let mut back = vec![0u8; message.len()];
    within("the echo", stream.read_exact(&mut back))
        .await
        .unwrap();
    assert_eq!(back, message);
}

/// Waits until the proxy closes `stream`: a read gives end of file (or a reset).
async fn closed_by_proxy(stream: &mut TcpStream) {
    let mut buf = [0u8; 64];
    match within("proxy1 to close the old client", stream.read(&mut buf)).await {
        Ok(0) | Err(_) => {}
        Ok(n) => panic!("{n} unexpected bytes instead of a close"),
    }
}

async fn proxy2_on(port: u16, server: u16, wire: &str, extra: &[&str]) -> Process {
    let (port, server) = (port.to_string(), server.to_string());
    let args = [
        &["proxy2", &port, "127.0.0.1", &server, "--wire", wire][..],
        extra,
    ]
    .concat();
    Process::tunlab(&args).await
}

async fn proxy1_to(proxy2: u16, wire: &str, extra: &[&str]) -> Process {
    let proxy2 = proxy2.to_string();
    let args = [
        &[
            "proxy1",
            "0",
            "127.0.0.1",
            &proxy2,
            "--wire",
            wire,
            "--probe-after",
            PROBE_AFTER,
        ][..],
        extra,
    ]
    .concat();
    Process::tunlab(&args).await
}

/// The restart test in one wire mode, optionally sealed.
async fn a_restarted_proxy2_is_noticed(wire: &str, sealed: &[&str]) {
    let server = Process::tunlab(&["echo-server", "0"]).await;
    let proxy2 = proxy2_on(0, server.port, wire, sealed).await;
    let proxy2_port = proxy2.port;
    let proxy1 = proxy1_to(proxy2_port, wire, sealed).await;
    let mut old = TcpStream::connect(("127.0.0.1", proxy1.port))
        .await
        .unwrap();
    echo_once(&mut old, b"before the restart").await;
    // Idle for many probe intervals, more than the unanswered-probe limit (5): it stays,
    // so the probes were answered.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    echo_once(&mut old, b"still here after idling").await;

    proxy2.kill().await;
    let proxy2 = proxy2_on(proxy2_port, server.port, wire, sealed).await;
    let back = Instant::now();
    closed_by_proxy(&mut old).await;
    let noticed = back.elapsed();
    let mut new = TcpStream::connect(("127.0.0.1", proxy1.port))
        .await
        .unwrap();
    echo_once(&mut new, b"after the restart").await;
    let served = back.elapsed();
    eprintln!(
        "{wire}: old client closed {noticed:?} and a new one served {served:?} after proxy2 came back"
    );
    // The bound, with probes every 100 ms: a generous 20 probe intervals.
    assert!(
        noticed < Duration::from_secs(2) && served < Duration::from_secs(2),
        "noticed after {noticed:?}, new client served after {served:?}"
    );
    assert!(
        proxy1.said("proxy2 no longer has connection"),
        "proxy1 did not say why it closed the client"
    );
    drop(proxy2);
}

#[tokio::test]
async fn selective_repeat_notices_a_restarted_proxy2() {
    a_restarted_proxy2_is_noticed("selective-repeat", &[]).await;
}

#[tokio::test]
async fn go_back_n_notices_a_restarted_proxy2() {
    a_restarted_proxy2_is_noticed("go-back-n", &[]).await;
}

#[tokio::test]
async fn a_sealed_link_notices_a_restarted_proxy2() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("link.key");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_tunlab"))
        .args(["keygen", key.to_str().unwrap()])
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    a_restarted_proxy2_is_noticed("selective-repeat", &["--key-file", key.to_str().unwrap()]).await;
}

#[tokio::test]
async fn a_vanished_proxy2_is_noticed_after_the_unanswered_probes() {
    let server = Process::tunlab(&["echo-server", "0"]).await;
    let proxy2 = proxy2_on(0, server.port, "selective-repeat", &[]).await;
    let proxy1 = proxy1_to(proxy2.port, "selective-repeat", &[]).await;
    let mut client = TcpStream::connect(("127.0.0.1", proxy1.port))
        .await
        .unwrap();
    echo_once(&mut client, b"hello").await;
    proxy2.kill().await;
    closed_by_proxy(&mut client).await;
    let log = proxy1.stop().await;
    assert!(
        log.iter()
            .any(|l| l.contains("proxy2 answered none of 5 keepalive probes")),
        "{log:?}"
    );
}
