//! Classic mode under abuse, on real loopback sockets: ids reused by new clients, lost `X`
//! frames, half-closed clients, floods of `C`, a restarted proxy2, idle sockets holding every
//! id, clients that give up while they wait. Each test pins one rule of the hardened tunnel;
//! every wait is bounded.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tunlab::event::EventSink;
use tunlab::impair::settings::{DirectionSettings, LinkSettings, Percent};
use tunlab::lab::{Lab, LabConfig};
use tunlab::roles::proxy1::Proxy1Config;
use tunlab::roles::proxy2::Proxy2Config;

/// Reads whatever arrives within `quiet` of the last byte, up to `limit` bytes.
async fn read_for(stream: &mut TcpStream, quiet: Duration, limit: usize) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    while got.len() < limit {
        match tokio::time::timeout(quiet, stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    got
}

/// Reads until at least `wanted` bytes came, or the peer closed.
async fn read_at_least(stream: &mut TcpStream, wanted: usize) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    while got.len() < wanted {
        match stream.read(&mut buf).await {
            Ok(n) if n > 0 => got.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    got
}

/// A client's own bytes, unlike anybody else's: its tag repeated.
fn tagged(tag: &str, len: usize) -> Vec<u8> {
    tag.bytes().cycle().take(len).collect()
}

/// A TCP server whose k-th connection (from 1) streams the byte `k` without pause and
/// reads and discards what it gets; it counts the connections it saw end.
struct StreamingServer {
    addr: SocketAddr,
    ended: Arc<AtomicUsize>,
}

async fn streaming_server(stop: &CancellationToken) -> StreamingServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let ended = Arc::new(AtomicUsize::new(0));
    let counter = ended.clone();
    let stop = stop.clone();
    tokio::spawn(async move {
        let mut serial = 0u8;
        loop {
            let (stream, _) = tokio::select! {
                () = stop.cancelled() => return,
                accepted = listener.accept() => accepted.unwrap(),
            };
            serial += 1;
            let ended = counter.clone();
            tokio::spawn(async move {
                let (mut reader, mut writer) = stream.into_split();
                let chunk = [serial; 700];
                let writing = async {
                    loop {
                        if writer.write_all(&chunk).await.is_err() {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                };
                let reading = async {
                    let mut buf = [0u8; 4096];
                    while matches!(reader.read(&mut buf).await, Ok(n) if n > 0) {}
                };
                tokio::select! {
                    () = writing => {}
                    () = reading => {}
                }
                ended.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    StreamingServer { addr, ended }
}

#[tokio::test]
async fn a_c_after_data_opens_a_new_connection_and_no_old_byte_follows_its_ok() {
    let stop = CancellationToken::new();
    let server = streaming_server(&stop).await;
    let (proxy2, _) = start_proxy2(Proxy2Config::new(server.addr), &stop).await;
    let p1 = RawPeer::new(proxy2).await;

    p1.send(b"C4").await;
    assert_eq!(p1.recv().await.0, b"C4OK");
    // The first server connection streams 1s.
    let (frame, _) = p1.recv().await;
    assert_eq!(&frame[..2], b"D4");
    assert!(frame[2..].iter().all(|&b| b == 1));

    // proxy1 reused id 4 for a new client and its X for the old one was lost: a C after
    // data has flowed is a new connection, not a re-sent one.
    p1.send(b"C4").await;
    let mut after_ok = false;
    let mut new_bytes = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(600);
    while tokio::time::Instant::now() < deadline {
        let Some(frame) = p1.recv_quiet(Duration::from_millis(300)).await else {
            break;
        };
        if frame == b"C4OK" {
            after_ok = true;
            continue;
        }
        assert_eq!(&frame[..2], b"D4", "{frame:?}");
        if after_ok {
            assert!(
                frame[2..].iter().all(|&b| b == 2),
                "a byte of the old server connection reached the new one after its OK"
            );
            new_bytes += frame.len() - 2;
        }
    }
    assert!(after_ok, "proxy2 answered the new C with OK");
    assert!(new_bytes > 0, "the new server connection carries data");
    within("the old server connection closed", async {
        while server.ended.load(Ordering::SeqCst) < 1 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    stop.cancel();
}

#[tokio::test]
async fn a_resent_c_before_any_data_gets_ok_on_the_same_connection() {
    let stop = CancellationToken::new();
    let server = start_echo_server(&stop).await;
    let (proxy2, _) = start_proxy2(Proxy2Config::new(server), &stop).await;
    let p1 = RawPeer::new(proxy2).await;
    p1.send(b"C2").await;
    assert_eq!(p1.recv().await.0, b"C2OK");
    p1.send(b"C2").await;
    assert_eq!(p1.recv().await.0, b"C2OK");
    p1.send(b"D2uno").await;
    assert_eq!(p1.recv().await.0, b"D2uno");
    stop.cancel();
}

/// The adversarial trial's reproduction: client A sends 4 MiB without reading and vanishes;
/// client B takes A's freed id (the other nine are held by idle clients so that it must).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_takes_a_freed_id_never_receives_the_previous_clients_bytes() {
    let (events, _rx) = EventSink::channel(16);
    let lab = Lab::start(LabConfig::ephemeral(), events).await.unwrap();
    let proxy1 = lab.addrs().proxy1_tcp;
    let mut holders = Vec::new();
    for n in 0..9 {
        holders.push(open_echoing(proxy1, &format!("holder{n}")).await);
    }
    for trial in 0..20 {
        let mut a = TcpStream::connect(proxy1).await.unwrap();
        let flood = tagged("AAAA", 4 << 20);
        // A's writes may stall once nothing reads its echo; it gives up after a while.
        let _ = tokio::time::timeout(Duration::from_millis(400), a.write_all(&flood)).await;
        drop(a);
        let tag = format!("<B{trial:02}>");
        let mine = tagged(&tag, 200);
        let mut b = within("B connects", TcpStream::connect(proxy1))
            .await
            .unwrap();
        b.write_all(&mine).await.unwrap();
        // Wait as long as it takes for B's own echo (a loaded machine is slow), then
        // listen a little longer: foreign bytes would come with it or right after.
        let mut got = within("B's echo", read_at_least(&mut b, mine.len())).await;
        got.extend(read_for(&mut b, Duration::from_millis(300), 1 << 20).await);
        assert!(
            mine.starts_with(&got),
            "trial {trial}: B received {} bytes that are not its own echo (first: {:?})",
            got.len(),
            String::from_utf8_lossy(&got[..got.len().min(40)])
        );
        assert_eq!(got.len(), mine.len(), "trial {trial}: B's echo is complete");
    }
    drop(holders);
    lab.shutdown().await;
}

/// At 20% loss each way, 2,000 short echo cycles by ten clients at a time: whatever a client
/// gets back (loss may cut it short) is its own bytes, never another's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_twenty_percent_loss_no_client_ever_receives_foreign_bytes() {
    // A little delay keeps part of each echo on the link when its client hangs up.
    let lossy = DirectionSettings {
        loss: Percent::new(20.0).unwrap(),
        delay: Duration::from_millis(5),
        ..DirectionSettings::default()
    };
    let config = LabConfig {
        link: LinkSettings::symmetric(lossy),
        link_seed: Some(20),
        ..LabConfig::ephemeral()
    };
    let (events, _rx) = EventSink::channel(16);
    let lab = Lab::start(config, events).await.unwrap();
    let proxy1 = lab.addrs().proxy1_tcp;
    let workers: Vec<_> = (0..10u32)
        .map(|worker| {
            tokio::spawn(async move {
                let mut cycles = 0;
                for cycle in 0..200u32 {
                    // Enough that part of the echo is still on its way when the client
                    // hangs up: that part is what a careless tunnel hands the next client.
                    // Every client's bytes are one value, unlike those of the 249 clients
                    // around it in time, so a frame lost from the echo still leaves a check.
                    let mark = 1 + (worker * 25 + cycle % 25) as u8;
                    let mine = vec![mark; 16 * 1024];
                    let Ok(Ok(mut stream)) =
                        tokio::time::timeout(PATIENCE, TcpStream::connect(proxy1)).await
                    else {
                        panic!("worker {worker}: proxy1 stopped accepting");
                    };
                    if stream.write_all(&mine).await.is_err() {
                        continue;
                    }
                    let got = read_for(&mut stream, Duration::from_millis(30), 2048).await;
                    let foreign = got.iter().find(|&&b| b != mark);
                    assert!(
                        foreign.is_none(),
                        "worker {worker} cycle {cycle}: received a byte {foreign:?} of another client"
                    );
                    cycles += 1;
                }
                cycles
            })
        })
        .collect();
    let mut total = 0;
    for worker in workers {
        total += within("a worker's 200 cycles", worker).await.unwrap();
    }
    assert_eq!(total, 2000);
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_closed_client_gets_its_whole_echo() {
    let (events, _rx) = EventSink::channel(16);
    let lab = Lab::start(LabConfig::ephemeral(), events).await.unwrap();
    let proxy1 = lab.addrs().proxy1_tcp;
    for (n, len) in [10usize, 1_000, 64 * 1024, 1 << 20].into_iter().enumerate() {
        let data = random_bytes(n as u64, len);
        let mut stream = TcpStream::connect(proxy1).await.unwrap();
        let (mut reader, mut writer) = stream.split();
        let send = async {
            writer.write_all(&data).await.unwrap();
            // Like `nc -N` or an HTTP/1.0 client: FIN after the request, then read to EOF.
            writer.shutdown().await.unwrap();
        };
        let receive = async {
            let mut got = Vec::new();
            reader.read_to_end(&mut got).await.unwrap();
            got
        };
        let ((), got) = within("the echo to EOF", async { tokio::join!(send, receive) }).await;
        assert_eq!(got.len(), len, "{len} bytes sent, {} echoed", got.len());
        assert!(got == data, "the echo of {len} bytes differs");
    }
    lab.shutdown().await;
}

/// proxy2 dies with connections in flight and comes back on the same port: proxy1 learns
/// from its probes that the ids are gone and closes those clients; new clients are served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_proxy2_restart_stale_connections_close_and_new_clients_are_served() {
    let (events, _rx) = EventSink::channel(16);
    let mut lab = Lab::start(LabConfig::ephemeral(), events).await.unwrap();
    let proxy1 = lab.addrs().proxy1_tcp;
    let mut stale = Vec::new();
    for n in 0..10 {
        stale.push(open_echoing(proxy1, &format!("in flight {n}")).await);
    }
    lab.stop_role(tunlab::topology::Role::Proxy2).await.unwrap();
    lab.start_role(tunlab::topology::Role::Proxy2)
        .await
        .unwrap();
    let restarted = tokio::time::Instant::now();
    // Every id was taken by a connection proxy2 no longer knows: the new client can only
    // be served once proxy1 has found that out.
    let mut fresh = within("a new client served", async {
        loop {
            let mut stream = TcpStream::connect(proxy1).await.unwrap();
            stream.write_all(b"new").await.unwrap();
            let got = read_for(&mut stream, Duration::from_secs(5), 3).await;
            if got == b"new" {
                return stream;
            }
        }
    })
    .await;
    let served_after = restarted.elapsed();
    for (n, stream) in stale.iter_mut().enumerate() {
        let (_, _) = within("a stale client closed", read_to_close(stream)).await;
        let _ = n;
    }
    eprintln!("a new client was served {served_after:?} after proxy2 came back");
    let echoed = within("echo", echo_through(&mut fresh, b" and more", 64)).await;
    assert_eq!(echoed, b" and more");
    lab.shutdown().await;
}

/// 5,000 connections that never send a byte take every id and fill the queue; a client that
/// does send gets an id once the unused ones give theirs back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sockets_cannot_hold_the_ids_from_a_real_client() {
    let stop = CancellationToken::new();
    let server = start_echo_server(&stop).await;
    let (proxy2, _) = start_proxy2(Proxy2Config::new(server), &stop).await;
    let config = Proxy1Config {
        unused_timeout: Duration::from_secs(1),
        id_wait: Duration::from_secs(20),
        ..Proxy1Config::new(proxy2)
    };
    let (proxy1, _, _) = start_proxy1(config, &stop).await;
    let mut idle = Vec::with_capacity(5000);
    for _ in 0..5000 {
        idle.push(TcpStream::connect(proxy1).await.unwrap());
    }
    let mut real = TcpStream::connect(proxy1).await.unwrap();
    let echoed = within("the real client's echo", async {
        echo_through(&mut real, b"let me through", 64).await
    })
    .await;
    assert_eq!(echoed, b"let me through");
    drop(idle);
    stop.cancel();
}

#[test]
fn by_default_an_unused_connection_gives_its_id_back_within_thirty_seconds() {
    let config = Proxy1Config::new("127.0.0.1:1".parse().unwrap());
    assert!(config.unused_timeout <= Duration::from_secs(30));
    assert!(config.close_attempts > 1, "classic X is re-sent");
}

/// All ten ids busy: a client that hangs up while it waits leaves the queue, and never costs
/// a `C`; the one behind it gets the next id.
#[tokio::test]
async fn a_waiting_client_that_hangs_up_leaves_the_queue() {
    let stop = CancellationToken::new();
    let server = start_echo_server(&stop).await;
    let (proxy2, proxy2_stats) = start_proxy2(Proxy2Config::new(server), &stop).await;
    let (proxy1, _, _) = start_proxy1(Proxy1Config::new(proxy2), &stop).await;
    let mut busy = Vec::new();
    for n in 0..10 {
        busy.push(open_echoing(proxy1, &format!("busy {n}")).await);
    }
    let quitter = TcpStream::connect(proxy1).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(quitter);
    let mut patient = TcpStream::connect(proxy1).await.unwrap();
    patient.write_all(b"patient").await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // One id frees up: it goes to the patient client, not to the one that left.
    busy.pop().unwrap().shutdown().await.unwrap();
    let got = within("the patient client's echo", async {
        read_for(&mut patient, Duration::from_secs(5), 7).await
    })
    .await;
    assert_eq!(got, b"patient");
    let connects = proxy2_stats.received.get(tunlab::wire::FrameKind::Connect);
    assert_eq!(
        connects, 11,
        "ten busy clients and the patient one sent C; the quitter none"
    );
    stop.cancel();
}

/// A client that hangs up while proxy1 waits for proxy2's answer: proxy1 sends `X` (proxy2
/// may have opened the connection) and stops re-sending `C`.
#[tokio::test]
async fn a_client_that_hangs_up_before_ok_is_closed_with_x() {
    let stop = CancellationToken::new();
    let fake_proxy2 = RawPeer::new("127.0.0.1:9".parse().unwrap()).await;
    let addr = fake_proxy2.socket.local_addr().unwrap();
    let (proxy1, _, _) = start_proxy1(Proxy1Config::new(addr), &stop).await;
    let client = TcpStream::connect(proxy1).await.unwrap();
    assert_eq!(fake_proxy2.recv().await.0, b"C0");
    drop(client);
    assert_eq!(fake_proxy2.recv().await.0, b"X0");
    stop.cancel();
}

/// A client refused (NOK, or no id in time) after it has sent data is closed with a FIN,
/// not a RST: it reads the end of the stream, not a reset.
#[tokio::test]
async fn refused_clients_that_sent_data_see_a_fin_not_a_reset() {
    let stop = CancellationToken::new();
    // A proxy2 whose server is not there: every C is answered NOK.
    let nowhere = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = nowhere.local_addr().unwrap();
    drop(nowhere);
    let (proxy2, _) = start_proxy2(Proxy2Config::new(dead), &stop).await;
    let (proxy1, _, _) = start_proxy1(Proxy1Config::new(proxy2), &stop).await;
    let mut refused = TcpStream::connect(proxy1).await.unwrap();
    refused.write_all(&[7u8; 3000]).await.unwrap();
    let (_, reset) = within("NOK closes the client", read_to_close(&mut refused)).await;
    assert!(!reset, "closed with RST after NOK");

    // No id in time: ten clients hold every id of a working tunnel.
    let server = start_echo_server(&stop).await;
    let (proxy2, _) = start_proxy2(Proxy2Config::new(server), &stop).await;
    let config = Proxy1Config {
        id_wait: Duration::from_millis(300),
        ..Proxy1Config::new(proxy2)
    };
    let (proxy1, _, _) = start_proxy1(config, &stop).await;
    let mut busy = Vec::new();
    for n in 0..10 {
        busy.push(open_echoing(proxy1, &format!("busy {n}")).await);
    }
    let mut late = TcpStream::connect(proxy1).await.unwrap();
    late.write_all(&[9u8; 3000]).await.unwrap();
    let (_, reset) = within("the wait gives up", read_to_close(&mut late)).await;
    assert!(!reset, "closed with RST after waiting for an id");
    stop.cancel();
}

/// An idle client keeps its id while nobody waits for one (the lab's clients during a talk),
/// and proxy2 keeps an unused connection that its proxy1 probes; one that nobody probes (a `C`
/// no proxy1 followed up) goes after the unused timeout.
#[tokio::test]
async fn unused_connections_stay_while_harmless_and_go_when_abandoned() {
    let stop = CancellationToken::new();
    let server = start_echo_server(&stop).await;
    let unused = Duration::from_millis(400);
    let (proxy2, _) = start_proxy2(
        Proxy2Config {
            unused_timeout: unused,
            ..Proxy2Config::new(server)
        },
        &stop,
    )
    .await;
    let (proxy1, _, _) = start_proxy1(
        Proxy1Config {
            unused_timeout: unused,
            probe_after: Duration::from_millis(100),
            ..Proxy1Config::new(proxy2)
        },
        &stop,
    )
    .await;
    let mut idle = TcpStream::connect(proxy1).await.unwrap();
    // An abandoned C from somewhere else, never followed up and never probed.
    let stray = RawPeer::new(proxy2).await;
    stray.send(b"C7").await;
    assert_eq!(stray.recv().await.0, b"C7OK");
    tokio::time::sleep(unused * 4).await;
    assert_eq!(
        stray.recv().await.0,
        b"X7",
        "proxy2 closed the abandoned connection"
    );
    // The idle client is still served, on the connection it has had all along.
    let echoed = within("a late echo", echo_through(&mut idle, b"still here", 64)).await;
    assert_eq!(echoed, b"still here");
    stop.cancel();
}

/// A flood of junk datagrams at proxy2 is counted exactly, but reported as a handful of
/// events (at most one a second, with a count), not one log line per datagram.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_malformed_datagrams_is_counted_exactly_and_reported_sparingly() {
    let (events, mut rx) = EventSink::channel(64 * 1024);
    let lab = Lab::start(LabConfig::ephemeral(), events).await.unwrap();
    let junk = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    const FLOOD: u64 = 2_000;
    for n in 0..FLOOD {
        // A first byte no format starts with; UDP on loopback may still drop under load,
        // so the exact count is read back from proxy2's own counter below.
        junk.send_to(&[0xff, n as u8], lab.addrs().proxy2_udp)
            .await
            .unwrap();
    }
    let counted = within("the flood counted", async {
        loop {
            let malformed = lab.snapshot().proxy2.malformed;
            tokio::time::sleep(Duration::from_millis(200)).await;
            if malformed > 0 && lab.snapshot().proxy2.malformed == malformed {
                break malformed;
            }
        }
    })
    .await;
    let mut reported = 0;
    while let Ok(event) = rx.try_recv() {
        if matches!(event.kind, tunlab::event::EventKind::FrameMalformed { .. }) {
            reported += 1;
        }
    }
    assert!(
        counted > FLOOD / 2,
        "most of the flood arrived and was counted: {counted}"
    );
    assert!(
        (1..=5).contains(&reported),
        "{counted} malformed datagrams became {reported} reports"
    );
    lab.shutdown().await;
}
