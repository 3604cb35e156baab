//! The tunnel at scale, on real loopback sockets: thousands of connections through one
//! proxy1/proxy2 pair each echo intact, and flow control bounds what a client that never
//! reads makes each proxy hold while another connection keeps echoing.
//!
//! Counts and times are bounded (2,000 connections; every wait has a deadline). Nothing here
//! asserts a speed: `bench/run.sh` measures that.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Barrier;
use tunlab::event::EventSink;
use tunlab::lab::{Lab, LabConfig};
use tunlab::topology::Endpoint;
use tunlab::transport::TransportConfig;
use tunlab::wire::WireMode;

/// How many connections are open at once in the scale test.
const CONNECTIONS: usize = 2_000;

/// The whole scale test must finish within this (CI has two cores).
const SCALE_DEADLINE: Duration = Duration::from_secs(50);

async fn lab(mode: WireMode) -> Lab {
    let (events, rx) = EventSink::channel(16);
    std::mem::forget(rx);
    let config = LabConfig {
        mode,
        ..LabConfig::ephemeral()
    };
    Lab::start(config, events).await.expect("lab starts")
}

/// Descriptors the test process needs for `connections` through an in-process lab: four per
/// connection (client, proxy1's accepted socket, proxy2's server connection, the server's
/// accepted socket), and some to spare.
fn need_descriptors(connections: usize) {
    let limit = tunlab::fd_limit::raise_to_hard().expect("Linux reports RLIMIT_NOFILE");
    let needed = 4 * connections as u64 + 256;
    assert!(
        limit.soft >= needed,
        "this test needs {needed} file descriptors and the hard limit is {} (raise it: \
         `ulimit -Hn {needed}` as root, or LimitNOFILE); it does not pass silently",
        limit.hard
    );
}

/// 2,000 connections open at once through one proxy1/proxy2 pair in Selective Repeat, each
/// echoing its own bytes intact while all the others are open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_concurrent_connections_each_echo_intact() {
    need_descriptors(CONNECTIONS);
    let lab = lab(WireMode::SelectiveRepeat).await;
    let proxy1 = lab.addrs().proxy1_tcp;
    // Everyone connects, then everyone echoes, then everyone closes: all 2,000 are open at
    // the same time while they echo.
    let connected = Arc::new(Barrier::new(CONNECTIONS));
    let echoed = Arc::new(Barrier::new(CONNECTIONS));
    let run = async {
        let tasks: Vec<_> = (0..CONNECTIONS)
            .map(|n| {
                let (connected, echoed) = (connected.clone(), echoed.clone());
                tokio::spawn(async move {
                    let mut stream = TcpStream::connect(proxy1).await.expect("connect to proxy1");
                    connected.wait().await;
                    // Each its own bytes, some larger than one frame.
                    let data = random_bytes(n as u64, 100 + (n * 37) % 3_000);
                    let back = echo_through(&mut stream, &data, usize::MAX).await;
                    let intact = back == data;
                    echoed.wait().await;
                    drop(stream);
                    intact
                })
            })
            .collect();
        let mut intact = 0;
        for task in tasks {
            if task.await.expect("client task") {
                intact += 1;
            }
        }
        intact
    };
    let intact = tokio::time::timeout(SCALE_DEADLINE, run)
        .await
        .unwrap_or_else(|_| {
            panic!("{CONNECTIONS} connections did not all echo in {SCALE_DEADLINE:?}")
        });
    assert_eq!(intact, CONNECTIONS, "every echo intact");
    let snapshot = lab.snapshot();
    let connects = snapshot.proxy1.sent.connect;
    assert!(
        connects >= CONNECTIONS as u64,
        "proxy1 opened {connects} tunnel connections"
    );
    assert_eq!(snapshot.proxy2.refused, 0, "proxy2 turned none away");
    lab.shutdown().await;
}

/// What one connection may make one proxy hold in the extended modes with the default
/// transport: a full send buffer, a full receive window, and the one chunk the pump has
/// taken out of it to write (README, "Flow control").
fn per_connection_bound(mode: WireMode) -> u64 {
    let config = TransportConfig::for_mode(mode);
    (config.send_buffer + config.window as usize * config.max_payload) as u64
}

/// A client pushes data and never reads its echo: backpressure must stop it, neither proxy
/// may hold more than the per-connection bound, and another connection keeps echoing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_bounded_and_others_keep_echoing() {
    let mode = WireMode::SelectiveRepeat;
    let bound = per_connection_bound(mode);
    let lab = lab(mode).await;
    let proxy1 = lab.addrs().proxy1_tcp;
    let transports = |at: Endpoint| lab.link_stats(at).transport.clone();

    // The pusher: writes as fast as the tunnel takes it and never reads, until told to stop.
    // Byte `p` of its stream is `p % 251`, so the echo can be checked wherever it is cut.
    let mut pusher = TcpStream::connect(proxy1).await.unwrap();
    let (written_tx, written) = tokio::sync::watch::channel(0u64);
    let stop_pushing = Arc::new(tokio::sync::Notify::new());
    let stop = stop_pushing.clone();
    let push = tokio::spawn(async move {
        let pattern: Vec<u8> = (0..251u32 * 64).map(|p| (p % 251) as u8).collect();
        let mut total = 0u64;
        loop {
            let at = (total % 251) as usize;
            tokio::select! {
                () = stop.notified() => return (pusher, total),
                n = pusher.write(&pattern[at..]) => {
                    total += n.expect("write to proxy1") as u64;
                    let _ = written_tx.send(total);
                }
            }
        }
    });

    // Wait until the pusher stalls: no progress for two seconds in a row (one could be a
    // pause of a loaded machine). The kernel's buffers on the way fill first (megabytes), so
    // this takes a moment; it must happen within the deadline.
    let stalled = async {
        let (mut last, mut still) = (0, 0);
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = *written.borrow();
            still = if now > 0 && now == last { still + 1 } else { 0 };
            if still == 2 {
                return now;
            }
            last = now;
        }
    };
    let pushed = within(
        "the non-reading client to be stopped by backpressure",
        stalled,
    )
    .await;

    // Both proxies hold the stalled connection's data, up to the bound and no more.
    for at in [Endpoint::Proxy1, Endpoint::Proxy2] {
        let held = transports(at).buffered_bytes();
        assert!(
            held >= bound / 4,
            "{at:?} holds {held} bytes of a stalled connection: the window should be full"
        );
        assert!(held <= bound, "{at:?} holds {held} > {bound}");
    }

    // Meanwhile another connection echoes, every round trip.
    let mut other = TcpStream::connect(proxy1).await.unwrap();
    let rounds = 200;
    for round in 0..rounds {
        let message = random_bytes(round, 1 + (round as usize * 53) % 2_000);
        let back = within(
            "an echo beside the stalled connection",
            echo_through(&mut other, &message, usize::MAX),
        )
        .await;
        assert!(back == message, "round {round}: the echo differs");
    }
    // The pusher is still stalled, and no connection ever made a proxy hold more than the
    // bound (the peak is per connection, kept by the pumps at every step).
    assert_eq!(*written.borrow(), pushed, "the pusher stayed stopped");
    for at in [Endpoint::Proxy1, Endpoint::Proxy2] {
        let peak = transports(at).buffered_peak_per_connection();
        assert!(
            peak <= bound,
            "{at:?}: one connection held {peak} > {bound} bytes"
        );
    }

    // The pusher stops, half-closes and reads at last: every byte comes back, in order, and
    // once both directions have closed the proxies hold nothing.
    stop_pushing.notify_one();
    let (mut pusher, total) = within("the pusher to stop", push).await.unwrap();
    assert_eq!(total, pushed);
    drop(other);
    pusher.shutdown().await.unwrap();
    let (echoed, reset) = within("the held bytes to drain", read_to_close(&mut pusher)).await;
    assert!(!reset, "the echo ended with a FIN, not a reset");
    assert_eq!(echoed.len() as u64, total, "every pushed byte came back");
    assert!(
        echoed
            .iter()
            .enumerate()
            .all(|(p, &b)| b == (p % 251) as u8),
        "the echo differs from what was pushed"
    );
    within("the proxies to hold nothing", async {
        loop {
            let held = transports(Endpoint::Proxy1).buffered_bytes()
                + transports(Endpoint::Proxy2).buffered_bytes();
            if held == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    lab.shutdown().await;
}

/// A client that reads slowly gets every byte in Go-Back-N: its window closes and reopens
/// many times, and flow control never drops data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_gets_every_byte() {
    let lab = lab(WireMode::GoBackN).await;
    let mut stream = TcpStream::connect(lab.addrs().proxy1_tcp).await.unwrap();
    let data = random_bytes(5, 2 << 20);
    let (mut reader, mut writer) = stream.split();
    let write = async {
        writer.write_all(&data).await.unwrap();
        writer.shutdown().await.unwrap();
    };
    let read = async {
        let mut back = Vec::with_capacity(data.len());
        let mut buf = [0u8; 4096];
        loop {
            let n = reader.read(&mut buf).await.unwrap();
            if n == 0 {
                return back;
            }
            back.extend_from_slice(&buf[..n]);
            // Slower than the tunnel: the window closes and reopens many times.
            if back.len() % (256 * 1024) < 4096 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let ((), back) = within("a slow 2 MiB echo", async { tokio::join!(write, read) }).await;
    assert_eq!(back.len(), data.len());
    assert!(back == data, "the echo differs");
    lab.shutdown().await;
}

/// An idle client's connection is not "unused" in the reliable modes: proxy1 does not probe
/// it (its transport has its own timers), so proxy2 must not reclaim it after
/// `--unused-timeout` either; it used to, and the X it sent could not reach proxy1's
/// transport, leaving the two proxies disagreeing until the transport gave up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_reliable_connection_outlives_the_unused_timeout() {
    let (events, rx) = EventSink::channel(16);
    std::mem::forget(rx);
    let mut config = LabConfig {
        mode: WireMode::SelectiveRepeat,
        ..LabConfig::ephemeral()
    };
    config.proxy1.unused_timeout = Duration::from_millis(200);
    config.proxy2.unused_timeout = Duration::from_millis(200);
    let lab = Lab::start(config, events).await.expect("lab starts");
    let mut idle = TcpStream::connect(lab.addrs().proxy1_tcp).await.unwrap();
    // Opened (C, OK), then nothing for many unused timeouts.
    within("the connection to open", async {
        while lab.snapshot().proxy1.received.ok == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let message = random_bytes(3, 3_000);
    let back = within("an echo after a long silence", async {
        echo_through(&mut idle, &message, usize::MAX).await
    })
    .await;
    assert!(back == message, "the echo differs");
    assert_eq!(lab.snapshot().proxy2.sent.close, 0, "proxy2 closed nothing");
    lab.shutdown().await;
}
