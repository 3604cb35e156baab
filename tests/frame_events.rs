//! A sink made with `without_frame_events` (a standalone role's log without `-v`) gets no
//! per-frame events, yet connection events and the exact counters are unchanged; a full sink
//! (the TUI's) still gets every frame.

mod common;

use std::net::SocketAddr;

use common::within;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tunlab::event::{Event, EventKind, EventSink, Ignored, TcpAction};
use tunlab::link::LinkSocket;
use tunlab::net::{bind_tcp, bind_udp};
use tunlab::roles::echo_server;
use tunlab::topology::Endpoint;
use tunlab::wire::{ConnId, Frame, Seq, WireMode};

fn localhost() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn drain(rx: &mut mpsc::Receiver<Event>) -> Vec<EventKind> {
    let mut kinds = Vec::new();
    while let Ok(event) = rx.try_recv() {
        kinds.push(event.kind);
    }
    kinds
}

fn is_per_frame(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::FrameSent { .. }
            | EventKind::FrameReceived { .. }
            | EventKind::Tcp {
                action: TcpAction::Read(_) | TcpAction::Wrote(_),
                ..
            }
    )
}

/// Sends one `D` frame from a link socket with `sink` to a plain link socket, and returns
/// the events `sink` produced plus the sender's exact count of data frames.
async fn send_one_frame(sink: EventSink, mut rx: mpsc::Receiver<Event>) -> (Vec<EventKind>, u64) {
    let sender = LinkSocket::new(
        bind_udp(localhost()).unwrap(),
        Endpoint::Proxy1,
        WireMode::Classic,
        sink,
    )
    .unwrap();
    let receiver = LinkSocket::new(
        bind_udp(localhost()).unwrap(),
        Endpoint::Proxy2,
        WireMode::Classic,
        EventSink::disabled(),
    )
    .unwrap();
    let frame = Frame::Data {
        id: ConnId::new(3),
        seq: Seq::ZERO,
        payload: b"hola",
    };
    sender.send(&frame, receiver.local_addr()).await.unwrap();
    let mut buf = vec![0u8; tunlab::link::RECV_BUFFER];
    within("the frame to arrive", receiver.recv(&mut buf, None))
        .await
        .unwrap();
    // A connection-level event from the same socket, which must always get through.
    sender.ignore(receiver.local_addr(), Ignored::Stranger);
    let data_frames = sender.stats().snapshot().sent.data;
    (drain(&mut rx), data_frames)
}

#[tokio::test]
async fn a_sink_without_frame_events_skips_frames_but_keeps_the_rest() {
    let (sink, rx) = EventSink::channel(64);
    let sink = sink.without_frame_events();
    assert!(sink.is_enabled());
    assert!(!sink.wants_frame_events());
    let (kinds, data_frames) = send_one_frame(sink, rx).await;
    assert_eq!(data_frames, 1, "the exact counters never depend on events");
    assert!(
        !kinds.iter().any(is_per_frame),
        "no per-frame events expected, got {kinds:?}"
    );
    assert!(
        kinds
            .iter()
            .any(|k| matches!(k, EventKind::FrameIgnored { .. })),
        "connection-level events still arrive, got {kinds:?}"
    );
}

#[tokio::test]
async fn a_full_sink_still_gets_every_frame() {
    let (sink, rx) = EventSink::channel(64);
    assert!(sink.wants_frame_events());
    let (kinds, data_frames) = send_one_frame(sink, rx).await;
    assert_eq!(data_frames, 1);
    assert!(
        kinds
            .iter()
            .any(|k| matches!(k, EventKind::FrameSent { frame, .. } if frame.payload_len == 4)),
        "the D frame is reported, got {kinds:?}"
    );
}

#[tokio::test]
async fn the_echo_server_reports_reads_only_when_asked() {
    for wants_frames in [false, true] {
        let (sink, mut rx) = EventSink::channel(256);
        let sink = if wants_frames {
            sink
        } else {
            sink.without_frame_events()
        };
        let stop = CancellationToken::new();
        let listener = bind_tcp(localhost()).unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(echo_server::run(listener, sink, stop.clone()));
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(b"hola\n").await.unwrap();
        let mut back = [0u8; 5];
        within("the echo", stream.read_exact(&mut back))
            .await
            .unwrap();
        assert_eq!(&back, b"hola\n");
        drop(stream);
        stop.cancel();
        within("the server to stop", server).await.unwrap();
        let kinds = drain(&mut rx);
        assert!(
            kinds.iter().any(|k| matches!(
                k,
                EventKind::Tcp {
                    action: TcpAction::Accepted,
                    ..
                }
            )),
            "the accept is always reported, got {kinds:?}"
        );
        assert_eq!(
            kinds.iter().any(is_per_frame),
            wants_frames,
            "reads and writes reported only to a sink that wants them, got {kinds:?}"
        );
    }
}

/// The TUI's sink (`events_for_tui`): frames are reported once, when sent, and the echo
/// server's reads and writes are not built at all; its accept still is.
#[tokio::test]
async fn the_tuis_sink_gets_frames_sent_but_not_received_nor_the_servers_reads() {
    let (sink, mut rx) = EventSink::channel(256);
    let sink = tunlab::tui::state::events_for_tui(sink);
    assert!(sink.wants_frame_events());
    assert!(!sink.wants_frames_received());
    assert!(!sink.wants_echo_server_io());
    let sender = LinkSocket::new(
        bind_udp(localhost()).unwrap(),
        Endpoint::Proxy1,
        WireMode::Classic,
        sink.clone(),
    )
    .unwrap();
    let receiver = LinkSocket::new(
        bind_udp(localhost()).unwrap(),
        Endpoint::Proxy2,
        WireMode::Classic,
        sink.clone(),
    )
    .unwrap();
    let frame = Frame::Data {
        id: ConnId::new(3),
        seq: Seq::ZERO,
        payload: b"hola",
    };
    sender.send(&frame, receiver.local_addr()).await.unwrap();
    let mut buf = vec![0u8; tunlab::link::RECV_BUFFER];
    within("the frame to arrive", receiver.recv(&mut buf, None))
        .await
        .unwrap();
    assert_eq!(receiver.stats().snapshot().received.data, 1);

    let stop = CancellationToken::new();
    let listener = bind_tcp(localhost()).unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(echo_server::run(listener, sink, stop.clone()));
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"hola\n").await.unwrap();
    let mut back = [0u8; 5];
    within("the echo", stream.read_exact(&mut back))
        .await
        .unwrap();
    assert_eq!(&back, b"hola\n");
    drop(stream);
    stop.cancel();
    within("the server to stop", server).await.unwrap();

    let kinds = drain(&mut rx);
    let count = |f: fn(&EventKind) -> bool| kinds.iter().filter(|k| f(k)).count();
    assert_eq!(
        count(|k| matches!(k, EventKind::FrameSent { frame, .. } if frame.payload_len == 4)),
        1,
        "the D frame is reported when sent, got {kinds:?}"
    );
    assert_eq!(
        count(|k| matches!(k, EventKind::FrameReceived { .. })),
        0,
        "no frame-received events for the TUI, got {kinds:?}"
    );
    assert_eq!(
        count(|k| matches!(
            k,
            EventKind::Tcp {
                action: TcpAction::Read(_) | TcpAction::Wrote(_),
                ..
            }
        )),
        0,
        "no server reads or writes for the TUI, got {kinds:?}"
    );
    assert_eq!(
        count(|k| matches!(
            k,
            EventKind::Tcp {
                action: TcpAction::Accepted,
                ..
            }
        )),
        1,
        "the server's accept still arrives, got {kinds:?}"
    );
}
