//! Shutdown waits for every task it spawned (src/tasks.rs): after the lab, or a role on its
//! own, has stopped, none of its tasks is left running, and every TCP connection it held is
//! closed (the peer reads the end), on real loopback sockets.

mod common;

use std::time::Duration;

use common::{PATIENCE, echo_through, localhost, read_to_close, within};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tunlab::event::EventSink;
use tunlab::impair::{DirectionSettings, LinkSettings};
use tunlab::lab::{Lab, LabConfig};
use tunlab::link::LinkSocket;
use tunlab::net::{bind_tcp, bind_udp};
use tunlab::roles::echo_server;
use tunlab::roles::proxy1::{self, Proxy1Config};
use tunlab::roles::proxy2::{self, Proxy2Config};
use tunlab::tasks::Tasks;
use tunlab::topology::Endpoint;
use tunlab::wire::WireMode;

/// Reads `stream` to its end and says that it ended (a FIN or a reset, not a hang).
async fn assert_closed(what: &str, mut stream: TcpStream) {
    within(what, read_to_close(&mut stream)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_lab_leaves_no_task_running_and_closes_every_connection() {
    let config = LabConfig {
        // A delay, so each proxy's emulator timer task runs too.
        link: LinkSettings::symmetric(DirectionSettings {
            delay: Duration::from_millis(5),
            ..DirectionSettings::default()
        }),
        ..LabConfig::ephemeral()
    };
    let (events, _rx) = EventSink::channel(65536);
    let mut lab = Lab::start(config, events).await.unwrap();
    let addrs = lab.addrs();
    let clients = lab.add_clients(2).await.unwrap();
    for &client in &clients {
        lab.client_send(client, b"hello".to_vec()).unwrap();
    }
    // A client of our own through the tunnel, and one straight to the echo server.
    let mut through = TcpStream::connect(addrs.proxy1_tcp).await.unwrap();
    let echoed = within("the echo through the tunnel", async {
        echo_through(&mut through, b"through", 4096).await
    })
    .await;
    assert_eq!(echoed, b"through");
    let mut direct = TcpStream::connect(addrs.server).await.unwrap();
    let echoed = within("the echo from the server", async {
        echo_through(&mut direct, b"direct", 4096).await
    })
    .await;
    assert_eq!(echoed, b"direct");
    within("the lab's clients to be echoed", async {
        while clients
            .iter()
            .any(|&c| lab.client_status(c).unwrap().echoed_bytes < 5)
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;

    let tasks = lab.tasks().clone();
    let running = tasks.running().to_string();
    for name in [
        "echo server",
        "proxy1",
        "proxy2",
        "proxy1 client",
        "proxy1 writer",
        "proxy2 connection",
        "proxy2 writer",
        "echo server connection",
        "echo client",
        "echo client reader",
        "link timer",
    ] {
        assert!(
            running
                .split(", ")
                .any(|n| n.split(" ×").next() == Some(name)),
            "no {name:?} task among {running}"
        );
    }

    lab.shutdown().await;
    assert!(
        tasks.is_empty(),
        "tasks left after the lab stopped: {}",
        tasks.running()
    );
    assert_closed("proxy1 to close our client", through).await;
    assert_closed("the echo server to close our connection", direct).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_alone_waits_for_its_connections_before_it_returns() {
    let stop = CancellationToken::new();
    let (server_tasks, proxy2_tasks, proxy1_tasks) = (Tasks::new(), Tasks::new(), Tasks::new());

    let listener = bind_tcp(localhost()).unwrap();
    let server = listener.local_addr().unwrap();
    let server_run = tokio::spawn(echo_server::run_in(
        server_tasks.clone(),
        listener,
        EventSink::disabled(),
        stop.child_token(),
    ));
    let link = LinkSocket::new(
        bind_udp(localhost()).unwrap(),
        Endpoint::Proxy2,
        WireMode::Classic,
        EventSink::disabled(),
    )
    .unwrap();
    let proxy2_addr = link.local_addr();
    let proxy2_run = tokio::spawn(proxy2::run_in(
        proxy2_tasks.clone(),
        link,
        Proxy2Config::new(server),
        stop.child_token(),
    ));
    let listener = bind_tcp(localhost()).unwrap();
    let proxy1_addr = listener.local_addr().unwrap();
    let link = LinkSocket::new(
        bind_udp(localhost()).unwrap(),
        Endpoint::Proxy1,
        WireMode::Classic,
        EventSink::disabled(),
    )
    .unwrap();
    let proxy1_run = tokio::spawn(proxy1::run_in(
        proxy1_tasks.clone(),
        listener,
        None,
        link,
        Proxy1Config {
            // Still lingering on the half-closed client below when it is stopped.
            half_close_linger: Duration::from_mins(10),
            ..Proxy1Config::new(proxy2_addr)
        },
        stop.child_token(),
    ));

    let mut streams = Vec::new();
    for tag in ["one", "two", "three"] {
        let mut stream = TcpStream::connect(proxy1_addr).await.unwrap();
        let echoed = within("an echo", echo_through(&mut stream, tag.as_bytes(), 4096)).await;
        assert_eq!(echoed, tag.as_bytes());
        streams.push(stream);
    }
    // A connection that half-closed: proxy1 lingers on it until it is stopped.
    streams[2].shutdown().await.unwrap();
    let running = proxy1_tasks.running().to_string();
    assert!(running.contains("proxy1 client ×3"), "{running}");
    assert!(!proxy2_tasks.is_empty());
    assert!(!server_tasks.is_empty());

    stop.cancel();
    for (name, run, tasks) in [
        ("the echo server", server_run, &server_tasks),
        ("proxy2", proxy2_run, &proxy2_tasks),
        ("proxy1", proxy1_run, &proxy1_tasks),
    ] {
        tokio::time::timeout(PATIENCE, run)
            .await
            .unwrap_or_else(|_| panic!("{name} did not stop"))
            .unwrap();
        assert!(
            tasks.is_empty(),
            "{name} returned with tasks running: {}",
            tasks.running()
        );
    }
    for stream in streams {
        assert_closed("proxy1 to close a client", stream).await;
    }
}
