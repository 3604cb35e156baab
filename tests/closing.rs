//! The extended modes' close when the last ack is lost. Each side's `X` is acked; a side is
//! done once its own `X` is acked and the peer's has arrived, and then it forgets the
//! connection. If the ack it sent for the peer's `X` is lost, the peer resends that `X` to a
//! proxy that no longer has the connection: it must still get its ack (as TCP's TIME-WAIT
//! re-acks a repeated FIN), or it resends until it gives up, holding the id all that time.
//!
//! A raw UDP socket plays the other proxy, so the lost ack is exactly the one we choose.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tunlab::event::{ConnState, Event, EventKind, EventSink};
use tunlab::link::LinkSocket;
use tunlab::net::{bind_tcp, bind_udp};
use tunlab::roles::proxy1::{self, Proxy1Config};
use tunlab::roles::proxy2::{self, Proxy2Config};
use tunlab::topology::Endpoint;
use tunlab::wire::{ConnId, Frame, SackBlocks, Seq, WireMode};

/// The id the raw proxy1 picks (proxy1 picks its own).
const ID: ConnId = ConnId::new(7);
/// The raw peer's initial sequence number.
const OUR_ISN: Seq = Seq(5_000);

fn link(endpoint: Endpoint, mode: WireMode, events: EventSink) -> LinkSocket {
    LinkSocket::new(bind_udp(localhost()).unwrap(), endpoint, mode, events).unwrap()
}

async fn send(peer: &RawPeer, mode: WireMode, frame: &Frame<'_>, to: SocketAddr) {
    let bytes = mode.to_bytes(frame).unwrap();
    peer.socket.send_to(&bytes, to).await.unwrap();
}

/// What the proxy sent, as much of it as these tests look at.
#[derive(Debug, PartialEq)]
enum Got {
    Connect(ConnId),
    ConnectOk,
    Ack { id: ConnId, ack: Seq },
    Close(Seq),
    Other(String),
}

fn got(mode: WireMode, bytes: &[u8]) -> Got {
    match mode.decode(bytes).expect("a well-formed frame") {
        Frame::Connect { id, .. } => Got::Connect(id),
        Frame::ConnectOk { .. } => Got::ConnectOk,
        Frame::Ack { id, ack, .. } => Got::Ack { id, ack },
        Frame::Close { seq, .. } => Got::Close(seq),
        other => Got::Other(format!("{other:?}")),
    }
}

/// The next frame from the proxy, and where it came from.
async fn next_frame(peer: &RawPeer, mode: WireMode) -> (Got, SocketAddr) {
    let (bytes, from) = peer.recv().await;
    (got(mode, &bytes), from)
}

fn ack(id: ConnId, ack: Seq) -> Frame<'static> {
    Frame::Ack {
        id,
        ack,
        window: 64,
        sack: SackBlocks::EMPTY,
    }
}

/// Waits until `at` says connection `id` is free again.
async fn wait_until_free(events: &mut mpsc::Receiver<Event>, at: Endpoint, id: ConnId) {
    wait_for(
        events,
        "the connection to be forgotten",
        |kind| match kind {
            EventKind::Conn {
                at: where_,
                id: freed,
                state: ConnState::Free,
                ..
            } if *where_ == at && *freed == id => Some(()),
            _ => None,
        },
    )
    .await;
}

/// Sends `frame` (twice, half a second apart) as if its ack had been lost, and returns what
/// the proxy answered.
async fn resend_after_forgotten(
    peer: &RawPeer,
    mode: WireMode,
    frame: &Frame<'_>,
    to: SocketAddr,
) -> Vec<Got> {
    let mut answers = Vec::new();
    for _ in 0..2 {
        send(peer, mode, frame, to).await;
        while let Some(bytes) = peer.recv_quiet(Duration::from_millis(500)).await {
            answers.push(got(mode, &bytes));
        }
    }
    answers
}

/// Asserts that resending `what` to a proxy that finished connection `id` got the final ack
/// (`final_ack`: one past our `X`) and nothing else.
fn assert_acked(answers: &[Got], id: ConnId, final_ack: Seq, who: &str, what: &str) {
    let wanted = Got::Ack { id, ack: final_ack };
    assert!(
        answers.contains(&wanted),
        "{who} must answer a resent {what} of a connection it finished with its final ack \
         (ack {}); answered {answers:?}",
        final_ack.0
    );
    assert!(
        answers.iter().all(|f| *f == wanted),
        "only the final ack answers a resent {what}: {answers:?}"
    );
}

/// Drains what `peer` has been sent until it is quiet for 100 ms.
async fn drain(peer: &RawPeer) {
    while peer.recv_quiet(Duration::from_millis(100)).await.is_some() {}
}

/// An echo server and a proxy2 in front of it, until `stop`: proxy2's events and address.
async fn proxy2_with_echo_server(
    mode: WireMode,
    stop: &CancellationToken,
) -> (mpsc::Receiver<Event>, SocketAddr) {
    let server = start_echo_server(stop).await;
    let (events, rx) = EventSink::channel(4096);
    let proxy2_link = link(Endpoint::Proxy2, mode, events);
    let proxy2_addr = proxy2_link.local_addr();
    tokio::spawn(proxy2::run(
        proxy2_link,
        Proxy2Config::new(server),
        stop.clone(),
    ));
    (rx, proxy2_addr)
}

/// A raw socket playing proxy1, with connection [`ID`] open at proxy2 (our ISN [`OUR_ISN`]).
async fn raw_proxy1_with_connection(mode: WireMode, proxy2_addr: SocketAddr) -> RawPeer {
    let fake_proxy1 = RawPeer::new(proxy2_addr).await;
    let connect = Frame::Connect {
        id: ID,
        isn: OUR_ISN,
        destination: None,
    };
    send(&fake_proxy1, mode, &connect, proxy2_addr).await;
    assert_eq!(next_frame(&fake_proxy1, mode).await.0, Got::ConnectOk);
    fake_proxy1
}

/// What both raw peers send before their `X`: one `D` at our ISN.
const OUR_DATA: &[u8] = b"hello";

/// After a clean close, proxy2 forgets the connection. We (proxy1) pretend that its acks of
/// our data and of our `X` were lost, and resend both: each must get the final ack again.
/// The `D` matters as much as the `X`: a sender resends its oldest unacked frame first.
#[tokio::test]
async fn proxy2_re_acks_resent_data_and_x_after_it_forgot_the_connection() {
    for mode in [WireMode::SelectiveRepeat, WireMode::GoBackN] {
        let stop = CancellationToken::new();
        let (mut rx, proxy2_addr) = proxy2_with_echo_server(mode, &stop).await;
        let fake_proxy1 = raw_proxy1_with_connection(mode, proxy2_addr).await;

        // Our data, then our X at once: proxy2 acks both, echoes the data (we ack it),
        // closes the server side, and the echo server's close comes back as proxy2's X.
        let our_data = Frame::Data {
            id: ID,
            seq: OUR_ISN,
            payload: OUR_DATA,
        };
        send(&fake_proxy1, mode, &our_data, proxy2_addr).await;
        let our_close = Frame::Close {
            id: ID,
            seq: OUR_ISN.add(1),
        };
        send(&fake_proxy1, mode, &our_close, proxy2_addr).await;
        let final_ack = OUR_ISN.add(2);
        let (mut acked, mut echoed, mut their_close) = (false, 0, None);
        while !(acked && echoed == OUR_DATA.len() && their_close.is_some()) {
            let (bytes, _) = within("proxy2's answers", fake_proxy1.recv()).await;
            match mode.decode(&bytes).expect("a well-formed frame") {
                Frame::Ack { ack, .. } if ack == final_ack => acked = true,
                Frame::Data { seq, payload, .. } if !payload.is_empty() => {
                    echoed += payload.len();
                    send(&fake_proxy1, mode, &ack(ID, seq.add(1)), proxy2_addr).await;
                }
                Frame::Close { seq, .. } => their_close = Some(seq),
                _ => {}
            }
        }
        // We ack proxy2's X: it is done and forgets the connection, while (we pretend) its
        // acks of our data and our X were lost.
        let their_close = their_close.unwrap();
        send(
            &fake_proxy1,
            mode,
            &ack(ID, their_close.add(1)),
            proxy2_addr,
        )
        .await;
        wait_until_free(&mut rx, Endpoint::Proxy2, ID).await;
        drain(&fake_proxy1).await;

        let who = format!("proxy2 ({})", mode.name());
        for (frame, what) in [(&our_close, "X"), (&our_data, "D")] {
            let answers = resend_after_forgotten(&fake_proxy1, mode, frame, proxy2_addr).await;
            assert_acked(&answers, ID, final_ack, &who, what);
        }
        stop.cancel();
    }
}

/// The same at proxy1, with a raw socket playing proxy2.
#[tokio::test]
async fn proxy1_re_acks_resent_data_and_x_after_it_forgot_the_connection() {
    for mode in [WireMode::SelectiveRepeat, WireMode::GoBackN] {
        let stop = CancellationToken::new();
        let fake_proxy2 = RawPeer::new(localhost()).await;
        let listener = bind_tcp(localhost()).unwrap();
        let tcp = listener.local_addr().unwrap();
        let (events, mut rx) = EventSink::channel(4096);
        tokio::spawn(proxy1::run(
            listener,
            link(Endpoint::Proxy1, mode, events),
            Proxy1Config::new(fake_proxy2.socket.local_addr().unwrap()),
            stop.clone(),
        ));

        let mut client = TcpStream::connect(tcp).await.unwrap();
        let (connect, proxy1_udp) = next_frame(&fake_proxy2, mode).await;
        let Got::Connect(id) = connect else {
            panic!("expected C, got {connect:?}");
        };
        let ok = Frame::ConnectOk { id, isn: OUR_ISN };
        send(&fake_proxy2, mode, &ok, proxy1_udp).await;
        let our_data = Frame::Data {
            id,
            seq: OUR_ISN,
            payload: OUR_DATA,
        };
        // Resent until acked, as a real proxy2 would: a D that overtakes proxy1's switch to
        // open is ignored.
        within("proxy1's ack of our data", async {
            loop {
                send(&fake_proxy2, mode, &our_data, proxy1_udp).await;
                while let Some(bytes) = fake_proxy2.recv_quiet(Duration::from_millis(200)).await {
                    if got(mode, &bytes)
                        == (Got::Ack {
                            id,
                            ack: OUR_ISN.add(1),
                        })
                    {
                        return;
                    }
                }
            }
        })
        .await;
        let mut received = vec![0u8; OUR_DATA.len()];
        within(
            "our data at the client",
            tokio::io::AsyncReadExt::read_exact(&mut client, &mut received),
        )
        .await
        .unwrap();
        assert_eq!(received, OUR_DATA);

        // The client closes: proxy1 sends its X; we ack it and send ours; proxy1 acks ours
        // (we pretend that ack, and the one of our data, are lost), passes the close to the
        // client, and forgets.
        client.shutdown().await.unwrap();
        let their_close = loop {
            if let (Got::Close(seq), _) = next_frame(&fake_proxy2, mode).await {
                break seq;
            }
        };
        send(&fake_proxy2, mode, &ack(id, their_close.add(1)), proxy1_udp).await;
        let our_close = Frame::Close {
            id,
            seq: OUR_ISN.add(1),
        };
        send(&fake_proxy2, mode, &our_close, proxy1_udp).await;
        let (rest, reset) = within("the client's close", read_to_close(&mut client)).await;
        assert!(rest.is_empty() && !reset, "a clean close after our data");
        wait_until_free(&mut rx, Endpoint::Proxy1, id).await;
        drain(&fake_proxy2).await;

        let who = format!("proxy1 ({})", mode.name());
        for (frame, what) in [(&our_close, "X"), (&our_data, "D")] {
            let answers = resend_after_forgotten(&fake_proxy2, mode, frame, proxy1_udp).await;
            assert_acked(&answers, id, OUR_ISN.add(2), &who, what);
        }
        stop.cancel();
    }
}

/// A `D` for an id proxy1 does not have (it restarted, or gave up on it) gets `NOK`, and a
/// proxy2 that gets `NOK` for an open connection closes it: neither side waits for the other
/// to give up. (Before, proxy1 answered with the course's `X` seq 0, which proxy2's transport
/// discards as out of window.)
#[tokio::test]
async fn a_proxy1_without_the_connection_answers_nok_and_proxy2_closes_it() {
    for mode in [WireMode::SelectiveRepeat, WireMode::GoBackN] {
        // proxy1's half: a D for an id it never had.
        let stop = CancellationToken::new();
        let fake_proxy2 = RawPeer::new(localhost()).await;
        let listener = bind_tcp(localhost()).unwrap();
        let proxy1_link = link(Endpoint::Proxy1, mode, EventSink::disabled());
        let proxy1_udp = proxy1_link.local_addr();
        tokio::spawn(proxy1::run(
            listener,
            proxy1_link,
            Proxy1Config::new(fake_proxy2.socket.local_addr().unwrap()),
            stop.clone(),
        ));
        let stray = Frame::Data {
            id: ID,
            seq: OUR_ISN,
            payload: OUR_DATA,
        };
        let answers = resend_after_forgotten(&fake_proxy2, mode, &stray, proxy1_udp).await;
        assert!(
            !answers.is_empty()
                && answers
                    .iter()
                    .all(|a| matches!(a, Got::Other(f) if f.starts_with("ConnectNok"))),
            "proxy1 ({}) answers a D for an unknown id with NOK only: {answers:?}",
            mode.name()
        );

        // proxy2's half: it has the connection, and proxy1 says it does not.
        let (mut rx, proxy2_addr) = proxy2_with_echo_server(mode, &stop).await;
        let fake_proxy1 = raw_proxy1_with_connection(mode, proxy2_addr).await;
        let nok = Frame::ConnectNok {
            id: ID,
            reason: None,
        };
        send(&fake_proxy1, mode, &nok, proxy2_addr).await;
        wait_until_free(&mut rx, Endpoint::Proxy2, ID).await;
        stop.cancel();
    }
}

/// End to end, on a lossy link: ten clients echo and close, and every connection is gone at
/// both proxies soon after (under 100 ms here). Before finished connections re-acked a
/// repeated `X`, a lost last ack kept the peer's id until it gave up: 3 to 5 of the first
/// seed's ten connections were still open after 10 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_id_is_freed_soon_after_closing_at_twenty_percent_loss() {
    use std::sync::Arc;
    use tunlab::impair::settings::{DirectionSettings, LinkSettings, Percent};
    use tunlab::lab::{Lab, LabConfig};
    use tunlab::monitor::ConnTable;
    use tunlab::topology::Role;
    use tunlab::transport::{RtoConfig, TransportConfig};
    let lossy = DirectionSettings {
        loss: Percent::new(20.0).unwrap(),
        ..DirectionSettings::default()
    };
    for mode in [WireMode::SelectiveRepeat, WireMode::GoBackN] {
        for seed in 0..3 {
            // Every event is kept, to tell what happened to a connection that stays open.
            let (events, mut rx) = EventSink::channel(4096);
            let trace = Arc::new(std::sync::Mutex::new(Vec::<Event>::new()));
            let kept = trace.clone();
            tokio::spawn(async move {
                while let Some(event) = rx.recv().await {
                    kept.lock().unwrap().push(event);
                }
            });
            let conns = Arc::new(ConnTable::new());
            let mut config = LabConfig {
                mode,
                link: LinkSettings::symmetric(lossy.clone()),
                link_seed: Some(seed),
                ..LabConfig::ephemeral()
            };
            // At 20% loss each way a C or its OK is lost 36% of the time.
            config.proxy1.connect_attempts = 12;
            // A short fixed timer keeps every exchange quick on a loaded machine (the
            // adaptive one backs off to seconds after a few losses in a row); a give-up
            // only after 1,000 silent timeouts (20 s) keeps the old bug visible here.
            let transport = TransportConfig {
                rto: RtoConfig::Fixed(Duration::from_millis(20)),
                max_timeouts: 1_000,
                ..TransportConfig::for_mode(mode)
            };
            config.proxy1.transport = Some(transport);
            config.proxy2.transport = Some(transport);
            let lab = Lab::start(config, events.with_observer(conns.clone()))
                .await
                .expect("lab starts");
            let proxy1 = lab.addrs().proxy1_tcp;
            let clients: Vec<_> = (0..10u64)
                .map(|n| {
                    tokio::spawn(async move {
                        let data = random_bytes(seed * 10 + n, 6000);
                        let mut stream = TcpStream::connect(proxy1).await.unwrap();
                        let echoed = echo_through(&mut stream, &data, usize::MAX).await;
                        assert!(echoed == data, "client {n}: the echo differs");
                        // Dropped here: a FIN, and the close exchange starts.
                    })
                })
                .collect();
            let started = std::time::Instant::now();
            for client in clients {
                within("an echo", client).await.unwrap();
            }
            let echoed = started.elapsed();
            let freed = until_no_connection_is_open(&conns, Duration::from_secs(10)).await;
            eprintln!(
                "{} seed {seed}: echoed in {echoed:.1?}, every id free {:.1?} later",
                mode.name(),
                started.elapsed() - echoed
            );
            if !freed {
                explain_what_stays_open(&conns, &trace.lock().unwrap());
            }
            assert!(
                freed,
                "{} seed {seed}: {} connection(s) still open 10 s after the clients closed",
                mode.name(),
                conns.totals(Role::Proxy1).current + conns.totals(Role::Proxy2).current
            );
            lab.shutdown().await;
        }
    }
}

/// Prints each connection still open and the events of its id, so a failure says which side
/// held on and why.
fn explain_what_stays_open(conns: &tunlab::monitor::ConnTable, trace: &[Event]) {
    for row in conns.snapshot().rows {
        eprintln!("still open: {row:?}");
        let Some(id) = row.key.id() else { continue };
        for event in trace {
            let of_id = match &event.kind {
                EventKind::FrameSent { frame, .. }
                | EventKind::FrameReceived { frame, .. }
                | EventKind::LinkDecision { frame, .. } => frame.id == id,
                EventKind::Conn { id: of, .. }
                | EventKind::Transport { id: of, .. }
                | EventKind::TransportStats { id: of, .. } => *of == id,
                EventKind::FrameIgnored { why, .. } => {
                    format!("{why:?}").contains(&format!("{id:?}"))
                }
                _ => false,
            };
            if of_id {
                eprintln!("  {:?} {:?}", event.time, event.kind);
            }
        }
    }
}

/// A client that connects and hangs up at once (a port check, a health probe) often leaves
/// while its connection is opening. In the extended modes the close must still be one
/// proxy2's transport takes (in sequence), or proxy2 keeps the server connection open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_hang_up_at_once_leave_nothing_open_at_either_proxy() {
    use std::sync::Arc;
    use tunlab::lab::{Lab, LabConfig};
    use tunlab::monitor::ConnTable;
    use tunlab::topology::Role;
    for mode in [WireMode::SelectiveRepeat, WireMode::GoBackN] {
        let (events, mut rx) = EventSink::channel(4096);
        tokio::spawn(async move { while rx.recv().await.is_some() {} });
        let conns = Arc::new(ConnTable::new());
        let config = LabConfig {
            mode,
            ..LabConfig::ephemeral()
        };
        let lab = Lab::start(config, events.with_observer(conns.clone()))
            .await
            .expect("lab starts");
        let proxy1 = lab.addrs().proxy1_tcp;
        for _ in 0..20 {
            let stream = TcpStream::connect(proxy1).await.unwrap();
            // Let proxy1 send its C, so the hang-up races proxy2's OK.
            tokio::time::sleep(Duration::from_micros(300)).await;
            drop(stream);
        }
        let freed = until_no_connection_is_open(&conns, Duration::from_secs(10)).await;
        assert!(
            freed,
            "{}: {} connection(s) at proxy1 and {} at proxy2 still open 10 s after 20 clients hung up",
            mode.name(),
            conns.totals(Role::Proxy1).current,
            conns.totals(Role::Proxy2).current
        );
        lab.shutdown().await;
    }
}
