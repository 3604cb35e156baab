//! The reliable modes on screen, drawn from scripted events (real frames, encoded and
//! decoded by the selective-repeat codec): sequence and ack numbers in the trace and the
//! ladder, a retransmission marked with its cause, a duplicate discarded and a frame held out
//! of order, each direction's window, timer, retransmissions and efficiency, and the
//! time-sequence graph (`g`). Snapshots at 80x24, 100x30 and 120x40.

mod tui_support;

use std::time::Duration;

use insta::assert_snapshot;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use tui_support::{PROXY1_UDP, PROXY2_UDP, START, Script, addr, addrs, client_addr, screen};
use tunlab::event::{ClientAction, ConnState, EventKind, FrameSummary, TcpAction};
use tunlab::impair::{DropCause, LinkVerdict};
use tunlab::topology::{Endpoint, Role};
use tunlab::transport::{
    CongestionCut, CongestionPhase, RetransmitCause, TransportEvent, TransportStats,
};
use tunlab::tui::app::handle_key;
use tunlab::tui::render;
use tunlab::tui::state::{SeqPointKind, TraceLine, TuiState, update};
use tunlab::wire::{ConnId, Frame, SackBlock, SackBlocks, Seq, WireMode};

const MODE: WireMode = WireMode::SelectiveRepeat;
/// proxy1's and proxy2's initial sequence numbers: near the wrap, as random ones can be.
const ISN1: Seq = Seq(u32::MAX - 2);
const ISN2: Seq = Seq(70_000);

fn summary(frame: Frame<'_>) -> FrameSummary {
    let mut buf = [0u8; 1500];
    let len = MODE.encode_into(&frame, &mut buf).unwrap();
    let decoded = MODE.decode(&buf[..len]).unwrap();
    FrameSummary::in_mode(MODE, &decoded, len)
}

fn sent(at: Endpoint, frame: Frame<'_>) -> EventKind {
    let peer = match at {
        Endpoint::Proxy1 => addr(PROXY2_UDP),
        Endpoint::Proxy2 => addr(PROXY1_UDP),
    };
    EventKind::FrameSent {
        at,
        peer,
        frame: summary(frame),
    }
}

fn data(seq: Seq, payload: &[u8]) -> Frame<'_> {
    Frame::Data {
        id: ConnId::new(0),
        seq,
        payload,
    }
}

fn ack(ack: Seq, sack: &[(Seq, Seq)]) -> Frame<'static> {
    Frame::Ack {
        id: ConnId::new(0),
        ack,
        window: 64,
        sack: sack
            .iter()
            .map(|&(start, end)| SackBlock { start, end })
            .collect::<SackBlocks>(),
    }
}

/// proxy1 gives id 0 to the first client.
fn connecting() -> EventKind {
    EventKind::Conn {
        at: Endpoint::Proxy1,
        id: ConnId::new(0),
        state: ConnState::Connecting,
        client: Some(client_addr(1)),
    }
}

fn transport(at: Endpoint, event: TransportEvent) -> EventKind {
    EventKind::Transport {
        at,
        id: ConnId::new(0),
        event,
    }
}

fn stats(at: Endpoint, stats: TransportStats) -> EventKind {
    EventKind::TransportStats {
        at,
        id: ConnId::new(0),
        stats: Box::new(stats),
        ended: false,
    }
}

/// Client 1 on id 0 sends five frames; the link drops the third; proxy2 holds the fourth
/// and fifth, SACKs them, and a duplicate of the fifth arrives; three duplicate acks make
/// proxy1 fast-retransmit the third, then a timeout resends the close.
fn lossy_transfer() -> Script {
    let id = ConnId::new(0);
    let c = client_addr(1);
    let mut s = Script::default();
    s.roles_up(0)
        .at(
            5,
            EventKind::Client {
                client: 1,
                action: ClientAction::Connected { local: c },
            },
        )
        .at(
            5,
            EventKind::Conn {
                at: Endpoint::Proxy1,
                id,
                state: ConnState::Connecting,
                client: Some(c),
            },
        )
        .at(
            5,
            sent(
                Endpoint::Proxy1,
                Frame::Connect {
                    id,
                    isn: ISN1,
                    destination: None,
                },
            ),
        )
        .at(
            6,
            EventKind::Tcp {
                role: Role::Proxy2,
                id: Some(id),
                peer: addr(1818),
                action: TcpAction::Connected,
            },
        )
        .at(
            6,
            sent(Endpoint::Proxy2, Frame::ConnectOk { id, isn: ISN2 }),
        )
        .at(
            7,
            EventKind::Conn {
                at: Endpoint::Proxy1,
                id,
                state: ConnState::Open,
                client: Some(c),
            },
        );
    let payloads: [&[u8]; 5] = [b"uno ", b"dos ", b"tres ", b"cuatro ", b"cinco\n"];
    for (i, payload) in payloads.iter().enumerate() {
        s.at(
            100 + i as u64,
            sent(Endpoint::Proxy1, data(ISN1.add(i as u32), payload)),
        );
    }
    s.at(
        102,
        EventKind::LinkDecision {
            at: Endpoint::Proxy1,
            direction: tunlab::topology::LinkDirection::ToProxy2,
            peer: addr(PROXY2_UDP),
            frame: summary(data(ISN1.add(2), b"tres ")),
            what: LinkVerdict::dropped(DropCause::Loss),
        },
    )
    .at(101, sent(Endpoint::Proxy2, ack(ISN1.add(1), &[])))
    .at(102, sent(Endpoint::Proxy2, ack(ISN1.add(2), &[])))
    .at(
        103,
        transport(
            Endpoint::Proxy2,
            TransportEvent::HeldOutOfOrder { seq: ISN1.add(3) },
        ),
    )
    .at(
        103,
        sent(
            Endpoint::Proxy2,
            ack(ISN1.add(2), &[(ISN1.add(3), ISN1.add(4))]),
        ),
    )
    .at(
        104,
        transport(
            Endpoint::Proxy2,
            TransportEvent::HeldOutOfOrder { seq: ISN1.add(4) },
        ),
    )
    .at(
        104,
        sent(
            Endpoint::Proxy2,
            ack(ISN1.add(2), &[(ISN1.add(3), ISN1.add(5))]),
        ),
    )
    .at(
        105,
        transport(
            Endpoint::Proxy2,
            TransportEvent::DuplicateDiscarded { seq: ISN1.add(4) },
        ),
    )
    .at(
        105,
        sent(
            Endpoint::Proxy2,
            ack(ISN1.add(2), &[(ISN1.add(3), ISN1.add(5))]),
        ),
    )
    .at(
        106,
        transport(
            Endpoint::Proxy1,
            TransportEvent::Retransmitted {
                seq: ISN1.add(2),
                cause: RetransmitCause::FastRetransmit,
            },
        ),
    )
    .at(106, sent(Endpoint::Proxy1, data(ISN1.add(2), b"tres ")))
    .at(
        106,
        transport(
            Endpoint::Proxy1,
            TransportEvent::CongestionCut {
                cause: CongestionCut::Loss,
                cwnd: 5,
                ssthresh: 5,
            },
        ),
    )
    .at(107, sent(Endpoint::Proxy2, ack(ISN1.add(5), &[])))
    .at(
        300,
        sent(
            Endpoint::Proxy1,
            Frame::Close {
                id,
                seq: ISN1.add(5),
            },
        ),
    )
    .at(
        520,
        transport(
            Endpoint::Proxy1,
            TransportEvent::Retransmitted {
                seq: ISN1.add(5),
                cause: RetransmitCause::Timeout,
            },
        ),
    )
    .at(
        520,
        sent(
            Endpoint::Proxy1,
            Frame::Close {
                id,
                seq: ISN1.add(5),
            },
        ),
    )
    .at(521, sent(Endpoint::Proxy2, ack(ISN1.add(6), &[])))
    .at(
        600,
        stats(
            Endpoint::Proxy1,
            TransportStats {
                frames_sent: 8,
                data_frames_sent: 6,
                retransmits_fast: 1,
                retransmits_timeout: 1,
                bytes_sent: 31,
                bytes_acked: 26,
                srtt: Some(Duration::from_micros(1400)),
                rttvar: Some(Duration::from_micros(500)),
                rto: Duration::from_millis(200),
                in_flight: 0,
                peer_window: 64,
                cwnd: Some(6),
                ssthresh: Some(5),
                congestion: Some(CongestionPhase::Avoidance),
                congestion_cuts: 1,
                ..TransportStats::default()
            },
        ),
    )
    .at(
        600,
        stats(
            Endpoint::Proxy2,
            TransportStats {
                acks_sent: 7,
                bytes_delivered: 26,
                duplicates_discarded: 1,
                out_of_order_held: 2,
                rto: Duration::from_secs(1),
                peer_window: 64,
                ..TransportStats::default()
            },
        ),
    );
    s
}

fn reliable_state() -> TuiState {
    let mut state = TuiState::new(START, MODE, Some(addrs()));
    state.fixed_now = Some(START + Duration::from_millis(700));
    lossy_transfer().apply(&mut state);
    state
}

fn press(state: &mut TuiState, c: char) {
    handle_key(state, KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE));
}

#[test]
fn the_fold_marks_the_retransmission_and_counts_from_the_isns() {
    let state = reliable_state();
    let conn = &state.conns[0];
    let retransmits: Vec<_> = conn
        .trace
        .iter()
        .filter_map(|line| match line {
            TraceLine::Frame {
                retransmit: Some(cause),
                frame,
                ..
            } => Some((*cause, frame.seq())),
            _ => None,
        })
        .collect();
    assert_eq!(
        retransmits,
        [
            (RetransmitCause::FastRetransmit, Some(ISN1.add(2))),
            (RetransmitCause::Timeout, Some(ISN1.add(5))),
        ]
    );
    // The graph: six first sends (five D and the X), two retransmissions at their relative
    // seq, the drop, and the acks counted from proxy1's ISN across the wrap.
    let of = |kind: SeqPointKind| -> Vec<u32> {
        conn.seq_graph
            .iter()
            .filter(|p| p.kind == kind)
            .map(|p| p.seq)
            .collect()
    };
    assert_eq!(of(SeqPointKind::Sent), [0, 1, 2, 3, 4, 5]);
    assert_eq!(
        of(SeqPointKind::Retransmitted(RetransmitCause::FastRetransmit)),
        [2]
    );
    assert_eq!(
        of(SeqPointKind::Retransmitted(RetransmitCause::Timeout)),
        [5]
    );
    assert_eq!(of(SeqPointKind::Dropped), [2]);
    assert_eq!(of(SeqPointKind::Ack), [1, 2, 2, 2, 2, 5, 6]);
    assert_eq!(of(SeqPointKind::Sack), [3, 4, 4]);
    // The congestion window's edge: last ack + cwnd, at the cut (2 + 5) and from the stats
    // (6 + 6).
    assert_eq!(of(SeqPointKind::CwndEdge), [7, 12]);
    assert_eq!(
        conn.transport
            .stats(Endpoint::Proxy1)
            .unwrap()
            .retransmits_fast,
        1
    );
}

#[test]
fn reliable_trace_at_80x24() {
    let state = reliable_state();
    let screen = screen(80, 24, |f| render::draw(f, &state));
    assert!(screen.contains("↻ fast"), "{screen}");
    assert_snapshot!(screen);
}

#[test]
fn reliable_trace_at_100x30() {
    let state = reliable_state();
    let screen = screen(100, 30, |f| render::draw(f, &state));
    assert!(screen.contains("↻ timeout"), "{screen}");
    assert!(
        screen.contains("efficiency") || screen.contains("eff "),
        "{screen}"
    );
    assert_snapshot!(screen);
}

#[test]
fn reliable_trace_at_120x40() {
    let state = reliable_state();
    let screen = screen(120, 40, |f| render::draw(f, &state));
    assert!(screen.contains("sack=3-4"), "{screen}");
    assert!(screen.contains("held out of order"), "{screen}");
    assert!(screen.contains("duplicate seq=4 discarded"), "{screen}");
    assert_snapshot!(screen);
}

#[test]
fn reliable_ladder_at_120x40() {
    let mut state = reliable_state();
    press(&mut state, 'l');
    let screen = screen(120, 40, |f| render::draw(f, &state));
    assert!(screen.contains("↻ D0 seq=2"), "{screen}");
    assert!(screen.contains("↻ X0 seq=5"), "{screen}");
    assert!(
        screen.contains("proxy1: retransmitted seq=2 (fast retransmit)"),
        "{screen}"
    );
    assert!(
        screen.contains("proxy1: retransmitted seq=5 (timeout)"),
        "{screen}"
    );
    assert!(
        screen.contains("proxy2: duplicate seq=4 discarded"),
        "{screen}"
    );
    assert!(
        screen.contains("proxy2: seq=3 held out of order"),
        "{screen}"
    );
    assert_snapshot!(screen);
}

#[test]
fn time_sequence_graph_at_100x30_and_120x40() {
    let mut state = reliable_state();
    press(&mut state, 'g');
    let at_100 = screen(100, 30, |f| render::draw(f, &state));
    assert!(
        at_100.contains("Time-sequence graph · id 0 · p1→p2"),
        "{at_100}"
    );
    assert!(at_100.contains("↻ fast"), "{at_100}");
    assert_snapshot!("graph_100x30", at_100);
    let at_120 = screen(120, 40, |f| render::draw(f, &state));
    assert_snapshot!("graph_120x40", at_120);
    // g again: the other direction (proxy2 sent no data), then off.
    press(&mut state, 'g');
    let other = screen(80, 24, |f| render::draw(f, &state));
    assert!(
        other.contains("no data frames yet in this direction"),
        "{other}"
    );
    assert_snapshot!("graph_other_way_80x24", other);
    press(&mut state, 'g');
    assert_eq!(state.view.graph, None);
}

/// The traces keep every frame within their rings whatever the transports report.
#[test]
fn the_graph_is_bounded() {
    let mut state = reliable_state();
    let mut s = Script::default();
    for i in 0..10_000u32 {
        s.at(
            1000 + u64::from(i),
            sent(Endpoint::Proxy1, data(ISN1.add(6 + i), b"x")),
        );
    }
    for event in s.events {
        update(&mut state, event);
    }
    let conn = &state.conns[0];
    assert_eq!(conn.seq_graph.len(), tunlab::tui::state::SEQ_GRAPH_CAPACITY);
    assert!(conn.seq_graph.forgotten() > 0);
}

/// Stop-and-wait has one bit on the wire: the graph numbers its frames as they are sent, a
/// retransmission keeps its frame's number, and an ack of the last frame points at the next.
#[test]
fn stop_and_wait_frames_are_numbered_as_they_are_sent() {
    let sw = WireMode::StopAndWait;
    let id = ConnId::new(1);
    let summary = |frame: Frame<'_>| {
        let mut buf = [0u8; 1500];
        let len = sw.encode_into(&frame, &mut buf).unwrap();
        FrameSummary::in_mode(sw, &sw.decode(&buf[..len]).unwrap(), len)
    };
    let sent = |at: Endpoint, frame: Frame<'_>| EventKind::FrameSent {
        at,
        peer: addr(PROXY2_UDP),
        frame: summary(frame),
    };
    let d = |bit: u32, payload: &'static [u8]| Frame::Data {
        id,
        seq: Seq(bit),
        payload,
    };
    let a = |bit: u32| Frame::Ack {
        id,
        ack: Seq(bit),
        window: 1,
        sack: SackBlocks::EMPTY,
    };
    let mut state = TuiState::new(START, sw, Some(addrs()));
    let mut s = Script::default();
    s.at(
        1,
        sent(
            Endpoint::Proxy1,
            Frame::Connect {
                id,
                isn: Seq(0),
                destination: None,
            },
        ),
    )
    .at(
        2,
        sent(Endpoint::Proxy2, Frame::ConnectOk { id, isn: Seq(0) }),
    )
    .at(10, sent(Endpoint::Proxy1, d(0, b"a")))
    .at(
        10,
        EventKind::LinkDecision {
            at: Endpoint::Proxy1,
            direction: tunlab::topology::LinkDirection::ToProxy2,
            peer: addr(PROXY2_UDP),
            frame: summary(d(0, b"a")),
            what: LinkVerdict::dropped(DropCause::Loss),
        },
    )
    .at(
        310,
        EventKind::Transport {
            at: Endpoint::Proxy1,
            id,
            event: TransportEvent::Retransmitted {
                seq: Seq(0),
                cause: RetransmitCause::Timeout,
            },
        },
    )
    .at(310, sent(Endpoint::Proxy1, d(0, b"a")))
    .at(311, sent(Endpoint::Proxy2, a(0)))
    .at(320, sent(Endpoint::Proxy1, d(1, b"b")))
    .at(321, sent(Endpoint::Proxy2, a(1)));
    s.apply(&mut state);
    let conn = &state.conns[1];
    let of = |kind: SeqPointKind| -> Vec<u32> {
        conn.seq_graph
            .iter()
            .filter(|p| p.kind == kind)
            .map(|p| p.seq)
            .collect()
    };
    assert_eq!(of(SeqPointKind::Sent), [0, 1]);
    assert_eq!(
        of(SeqPointKind::Retransmitted(RetransmitCause::Timeout)),
        [0]
    );
    assert_eq!(of(SeqPointKind::Dropped), [0]);
    assert_eq!(of(SeqPointKind::Ack), [1, 2]);
    let labels: Vec<String> = conn
        .trace
        .iter()
        .filter_map(|line| match line {
            TraceLine::Frame { frame, .. } => Some(tunlab::describe::frame_label(frame)),
            _ => None,
        })
        .collect();
    assert_eq!(
        labels,
        [
            "C10",
            "C10OK",
            "D10 len=1 \"a\"",
            "D10 len=1 \"a\"",
            "A10",
            "D11 len=1 \"b\"",
            "A11"
        ]
    );
}

#[test]
fn a_keepalive_probe_is_not_graphed_as_data() {
    // An empty D re-uses the seq before the window: from a connection that has sent nothing
    // that lies before its ISN, and counted from the ISN it would wrap to the top of the
    // graph's axis (the y axis then spanned all 2^32 seqs).
    let mut state = reliable_state();
    let before = state.conns[0].seq_graph.len();
    let mut s = Script::default();
    s.at(800, sent(Endpoint::Proxy1, data(ISN1.add(u32::MAX), b"")))
        .at(810, sent(Endpoint::Proxy2, data(ISN2.add(u32::MAX), b"")));
    s.apply(&mut state);
    let conn = &state.conns[0];
    assert_eq!(conn.seq_graph.len(), before, "no point for a probe");
    assert!(
        conn.seq_graph.iter().all(|p| p.seq < 1_000),
        "no wrapped seq"
    );
    // It still shows in the trace.
    let probes = conn
        .trace
        .iter()
        .filter(|line| matches!(line, TraceLine::Frame { frame, .. } if frame.payload_len == 0 && frame.kind == tunlab::wire::FrameKind::Data))
        .count();
    assert_eq!(probes, 2);
}

#[test]
fn a_keepalive_probe_reads_seq_minus_one_and_its_answer_is_no_fault() {
    // A connection that has sent nothing yet is probed with the seq before its ISN: counted
    // from the ISN that is -1 (it read 4294967295), and proxy2 answering it is the link
    // being alive, not a cross like a duplicate discarded.
    let mut state = TuiState::new(START, MODE, Some(addrs()));
    state.fixed_now = Some(START + Duration::from_secs(2));
    let mut s = Script::default();
    let probe_seq = ISN1.add(u32::MAX);
    s.roles_up(0)
        .at(5, connecting())
        .at(
            6,
            sent(
                Endpoint::Proxy1,
                Frame::Connect {
                    id: ConnId::new(0),
                    isn: ISN1,
                    destination: None,
                },
            ),
        )
        .at(
            7,
            sent(
                Endpoint::Proxy2,
                Frame::ConnectOk {
                    id: ConnId::new(0),
                    isn: ISN2,
                },
            ),
        )
        .at(1_007, sent(Endpoint::Proxy1, data(probe_seq, b"")))
        .at(
            1_008,
            transport(
                Endpoint::Proxy2,
                TransportEvent::KeepaliveAnswered { seq: probe_seq },
            ),
        )
        .at(1_008, sent(Endpoint::Proxy2, ack(ISN1, &[])));
    s.apply(&mut state);
    let screen = screen(120, 40, |f| render::draw(f, &state));
    assert!(
        screen.contains("D0 seq=-1 len=0 (keepalive probe)"),
        "{screen}"
    );
    assert!(
        screen.contains("proxy2 ♥ keepalive probe seq=-1 answered (acked)"),
        "{screen}"
    );
    assert!(!screen.contains("4294967295"), "{screen}");
    assert!(screen.contains("A0 ack=0"), "{screen}");
}

#[test]
fn the_end_of_slow_start_is_a_line_of_the_trace() {
    // Not a cut (no ▼): the window stops doubling where the round trip shows a queue.
    let mut state = TuiState::new(START, MODE, Some(addrs()));
    state.fixed_now = Some(START + Duration::from_secs(1));
    let mut s = Script::default();
    s.roles_up(0).at(5, connecting()).at(
        6,
        transport(
            Endpoint::Proxy1,
            TransportEvent::SlowStartEnded {
                cwnd: 24,
                rise_micros: 5_200,
            },
        ),
    );
    s.apply(&mut state);
    let screen = screen(120, 40, |f| render::draw(f, &state));
    assert!(
        screen.contains("proxy1 ▶ slow start ended at 24 frames (round trip +5.2 ms)"),
        "{screen}"
    );
}

#[test]
fn the_held_link_numbers_frames_as_the_trace_does() {
    use tunlab::lab::HeldView;
    use tunlab::topology::LinkDirection;
    use tunlab::tui::state::HoldView;
    // Step mode in a reliable mode: a held frame's seq and ack are counted from the
    // connection's ISNs, as in the trace beside it (they were the wire's absolute numbers:
    // seq=0 here, where ISN1 + 3 wraps, and ack=1).
    let mut state = reliable_state();
    state.set_hold(HoldView {
        holding: true,
        frames: vec![
            HeldView {
                id: 1,
                direction: LinkDirection::ToProxy2,
                frame: summary(data(ISN1.add(3), b"hola")),
                copy: false,
            },
            HeldView {
                id: 2,
                direction: LinkDirection::ToProxy1,
                frame: summary(ack(ISN1.add(4), &[])),
                copy: false,
            },
        ],
    });
    let screen = screen(120, 40, |f| render::draw(f, &state));
    assert!(screen.contains("Link held"), "{screen}");
    assert!(screen.contains("p1→p2 D0 seq=3 len=4 \"hola\""), "{screen}");
    assert!(screen.contains("p2→p1 A0 ack=4"), "{screen}");
    assert!(!screen.contains(&ISN1.0.to_string()), "{screen}");
}
