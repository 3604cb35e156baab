//! The reliable modes end to end on real loopback sockets: echo clients → proxy1 → UDP (with
//! the link emulator) → proxy2 → echo server, byte-exact through loss, duplication,
//! reordering and corruption, and a real half-close.

mod common;

use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tunlab::event::EventSink;
use tunlab::impair::settings::{DirectionSettings, LinkSettings, Percent};
use tunlab::lab::{Lab, LabConfig};
use tunlab::transport::{RtoConfig, TransportConfig};
use tunlab::wire::WireMode;

async fn lab(mode: WireMode, link: DirectionSettings, seed: u64) -> Lab {
    let (events, _rx) = EventSink::channel(16);
    std::mem::forget(_rx);
    lab_with(mode, link, seed, events).await
}

async fn lab_with(mode: WireMode, link: DirectionSettings, seed: u64, events: EventSink) -> Lab {
    let mut config = LabConfig {
        mode,
        link: LinkSettings::symmetric(link),
        link_seed: Some(seed),
        ..LabConfig::ephemeral()
    };
    // Loopback answers in well under a millisecond: a short fixed timer keeps the tests
    // quick (the default RFC 6298 timer never goes below 200 ms). Except in Selective
    // Repeat: on a loaded machine the round trip often exceeds 20 ms, and a fixed 20 ms timer
    // then resends its whole window on every tick (10 x 4 MiB took 78-91 s and sent 23 times
    // the frames needed, 95% of them timeout resends); its adaptive timer follows the real
    // round trip (33 s, 11% resent). Go-Back-N goes the other way: with the adaptive timer
    // (200 ms floor) it did not finish 10 x 4 MiB in 400 s, with 20 ms in 58 s.
    let rto = if mode == WireMode::SelectiveRepeat {
        RtoConfig::default()
    } else {
        RtoConfig::Fixed(Duration::from_millis(20))
    };
    let transport = TransportConfig {
        rto,
        max_timeouts: 50,
        ..TransportConfig::for_mode(mode)
    };
    config.proxy1.transport = Some(transport);
    config.proxy2.transport = Some(transport);
    // At 20% loss each way a C or its OK is lost 36% of the time: five tries fail for one
    // client in 170, which ten clients would meet now and then.
    config.proxy1.connect_attempts = 12;
    Lab::start(config, events).await.expect("lab starts")
}

fn impaired() -> DirectionSettings {
    DirectionSettings {
        loss: Percent::new(10.0).unwrap(),
        dup: Percent::new(2.0).unwrap(),
        reorder: Percent::new(5.0).unwrap(),
        corrupt: Percent::new(1.0).unwrap(),
        ..DirectionSettings::default()
    }
}

/// The full size for the windowed modes: 4 MiB per client. With the congestion
/// control and loss recovery of issue 12 this takes 7 s (selective-repeat) and 14 s
/// (go-back-n) in a debug build here; before them, 58 s and 78-91 s.
const FULL_SIZE: usize = 4 << 20;

/// How long the ten echoes may take together: a hang guard, not a speed check (a loaded machine can be
/// several times slower than an idle one).
const ECHO_BOUND: Duration = Duration::from_mins(5);

/// Ten clients each echo `bytes` of pseudo-random binary through `mode`, byte-exact.
async fn ten_clients_echo(mode: WireMode, link: DirectionSettings, bytes: usize) {
    let lab = lab(mode, link, 7).await;
    let proxy1 = lab.addrs().proxy1_tcp;
    let clients: Vec<_> = (0..10u64)
        .map(|seed| {
            tokio::spawn(async move {
                let data = random_bytes(seed, bytes);
                let mut stream = TcpStream::connect(proxy1).await.unwrap();
                // No window needed: the reliable modes have flow control end to end.
                let echoed = echo_through(&mut stream, &data, usize::MAX).await;
                (data, echoed)
            })
        })
        .collect();
    let started = std::time::Instant::now();
    let bound = ECHO_BOUND;
    let deadline = tokio::time::Instant::now() + bound;
    for (n, client) in clients.into_iter().enumerate() {
        let (data, echoed) = tokio::time::timeout_at(deadline, client)
            .await
            .unwrap_or_else(|_| {
                panic!("{mode:?}: not every echo of {bytes} bytes within {bound:?}")
            })
            .unwrap();
        assert_eq!(echoed.len(), data.len(), "{mode:?} client {n}");
        assert!(echoed == data, "{mode:?} client {n}: the echo differs");
    }
    // Not asserted (no timed assertions in cargo test): said, for whoever sizes the bound.
    let snapshot = lab.snapshot();
    let (p1, p2) = (
        snapshot.proxy1.transport.counts,
        snapshot.proxy2.transport.counts,
    );
    eprintln!(
        "{mode:?}: 10 x {bytes} bytes echoed byte-exact in {:.1} s; data frames sent {} + {}, \
         resent on timeout {} + {}, fast {} + {} (proxy1 + proxy2)",
        started.elapsed().as_secs_f64(),
        p1.data_frames_sent,
        p2.data_frames_sent,
        p1.retransmits_timeout,
        p2.retransmits_timeout,
        p1.retransmits_fast,
        p2.retransmits_fast,
    );
    let link = snapshot.link;
    assert!(
        link.to_proxy2.dropped + link.to_proxy1.dropped > 0 || bytes == 0,
        "the link did lose frames"
    );
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selective_repeat_carries_ten_clients_byte_exact_through_an_impaired_link() {
    ten_clients_echo(WireMode::SelectiveRepeat, impaired(), FULL_SIZE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_back_n_carries_ten_clients_byte_exact_through_an_impaired_link() {
    ten_clients_echo(WireMode::GoBackN, impaired(), FULL_SIZE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_and_wait_carries_ten_clients_byte_exact_at_twenty_percent_loss() {
    let lossy = DirectionSettings {
        loss: Percent::new(20.0).unwrap(),
        ..DirectionSettings::default()
    };
    ten_clients_echo(WireMode::StopAndWait, lossy, 64 << 10).await;
}

/// A client that sends, half-closes and reads to the end gets everything, in every
/// reliable mode: the FIN travels as the transport's close, after the data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_close_travels_in_order_in_every_reliable_mode() {
    for mode in [
        WireMode::StopAndWait,
        WireMode::GoBackN,
        WireMode::SelectiveRepeat,
    ] {
        // Stop-and-wait has no checksum (a corrupted D is delivered, as in the course) and
        // one alternating bit (a late duplicate passes for new data once the bit has come
        // round): its link only loses and duplicates.
        let link = if mode == WireMode::StopAndWait {
            DirectionSettings {
                corrupt: Percent::new(0.0).unwrap(),
                reorder: Percent::new(0.0).unwrap(),
                ..impaired()
            }
        } else {
            impaired()
        };
        let lab = lab(mode, link, 3).await;
        let data = random_bytes(9, 300_000);
        let mut stream = TcpStream::connect(lab.addrs().proxy1_tcp).await.unwrap();
        let (mut reader, mut writer) = stream.split();
        let send = async {
            writer.write_all(&data).await.unwrap();
            writer.shutdown().await.unwrap();
        };
        let receive = async {
            let mut got = Vec::new();
            reader.read_to_end(&mut got).await.unwrap();
            got
        };
        let what = format!("the {mode:?} echo to EOF");
        let ((), got) = within(&what, async { tokio::join!(send, receive) }).await;
        assert_eq!(got.len(), data.len(), "{mode:?}");
        assert!(got == data, "{mode:?}: the echo differs");
        tokio::time::sleep(Duration::from_millis(10)).await;
        lab.shutdown().await;
    }
}

/// Issue 11: at 20% loss each way, a stop-and-wait close whose last `X` copies were all lost
/// held its id until the idle timeout (5 min): about one connection in sixty. Each `X` is now
/// acked and resent until it is, and a finished side's proxy answers a probe. Over several
/// seeds, ten clients echo and close, and every connection is gone at both proxies well
/// before any idle timeout (80 connections: the old close failed this most of the time).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_and_wait_frees_every_id_after_closing_at_twenty_percent_loss() {
    use std::sync::Arc;
    use tunlab::monitor::ConnTable;
    use tunlab::topology::Role;
    let lossy = DirectionSettings {
        loss: Percent::new(20.0).unwrap(),
        ..DirectionSettings::default()
    };
    for seed in 0..8 {
        let (events, mut rx) = EventSink::channel(4096);
        tokio::spawn(async move { while rx.recv().await.is_some() {} });
        let conns = Arc::new(ConnTable::new());
        let lab = lab_with(
            WireMode::StopAndWait,
            lossy.clone(),
            seed,
            events.with_observer(conns.clone()),
        )
        .await;
        let proxy1 = lab.addrs().proxy1_tcp;
        let clients: Vec<_> = (0..10u64)
            .map(|n| {
                tokio::spawn(async move {
                    let data = random_bytes(seed * 10 + n, 6000);
                    let mut stream = TcpStream::connect(proxy1).await.unwrap();
                    let echoed = echo_through(&mut stream, &data, usize::MAX).await;
                    assert!(echoed == data, "seed {seed} client {n}: the echo differs");
                    // Dropped here: a FIN, and the close exchange starts.
                })
            })
            .collect();
        for client in clients {
            within("an echo", client).await.unwrap();
        }
        let freed = until_no_connection_is_open(&conns, Duration::from_secs(15)).await;
        let open = conns.totals(Role::Proxy1).current + conns.totals(Role::Proxy2).current;
        assert!(
            freed,
            "seed {seed}: {open} connection(s) still open 15 s after the clients closed"
        );
        lab.shutdown().await;
    }
}
