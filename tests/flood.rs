//! A flood of `C` frames against proxy2, alone in its own test binary: it counts this
//! process's open descriptors, which tests running beside it would disturb.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;
use tunlab::roles::proxy1::Proxy1Config;
use tunlab::roles::proxy2::Proxy2Config;

/// `C0`-`C9` from 3,000 source ports within about a second, while a legitimate proxy1's
/// client keeps echoing; afterwards proxy2 still serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_c_frames_neither_exhausts_proxy2_nor_turns_away_a_real_client() {
    let stop = CancellationToken::new();
    let server = start_echo_server(&stop).await;
    let config = Proxy2Config {
        limits: tunlab::tunnel::admission::Limits {
            max_connections: 256,
            max_peers: 32,
            allowed: None,
        },
        ..Proxy2Config::new(server)
    };
    let (proxy2, proxy2_stats) = start_proxy2(config, &stop).await;
    let (proxy1, _, _) = start_proxy1(Proxy1Config::new(proxy2), &stop).await;
    let mut client = open_echoing(proxy1, "before the flood").await;

    let flood = tokio::spawn(async move {
        let mut sockets = Vec::new();
        for _ in 0..3000 {
            sockets.push(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        }
        for (n, socket) in sockets.iter().enumerate() {
            for id in b'0'..=b'9' {
                let _ = socket.send_to(&[b'C', id], proxy2).await;
            }
            if n % 100 == 99 {
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
        }
        sockets
    });
    let mut during = 0;
    while !flood.is_finished() {
        let line = format!("during the flood {during}");
        let echoed = within("an echo during the flood", async {
            echo_through(&mut client, line.as_bytes(), 4096).await
        })
        .await;
        assert_eq!(echoed, line.as_bytes());
        during += 1;
    }
    let sockets = flood.await.unwrap();
    assert!(during > 0, "the client echoed while the flood went on");
    // The flood's connections only displaced each other: proxy2 counts them.
    assert!(
        proxy2_stats.refused.load(Ordering::Relaxed) > 1000,
        "proxy2 turned away most of the flood"
    );
    let mut fresh = open_echoing(proxy1, "a new client after the flood").await;
    let echoed = within("echo after", echo_through(&mut fresh, b"still served", 64)).await;
    assert_eq!(echoed, b"still served");
    // Bounded: once the flood's sockets are gone and the displaced connections have closed,
    // this process (both proxies, the echo server, the clients) holds about two descriptors
    // per connection proxy2 keeps, at most 256 of them; the flood asked for 30,000.
    drop(sockets);
    within("the descriptors to settle under the limit", async {
        loop {
            let open_fds = std::fs::read_dir("/proc/self/fd").unwrap().count();
            if open_fds < 2 * 256 + 300 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    stop.cancel();
}
