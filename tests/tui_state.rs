//! The TUI state as a fold of events: who owns which id, what each id's trace and ladder
//! hold, and that nothing grows without bound however many frames go by.

mod tui_support;

use std::time::Duration;

use tui_support::{
    START, Script, classroom, classroom_snapshot, client_addr, full_house, new_state,
};
use tunlab::event::{
    ClientEnd, CloseKind, ConnState, Event, EventKind, FrameSummary, Preview, TcpAction,
};
use tunlab::topology::{Endpoint, Role};
use tunlab::tui::app::parse_message;
use tunlab::tui::state::{
    HasTime, LADDER_CAPACITY, LOG_CAPACITY, LadderEntry, Lane, Ring, Selection, TRACE_CAPACITY,
    TraceLine, apply_snapshot, update,
};
use tunlab::wire::{ConnId, FrameKind};

fn data_frame(id: u16, payload: &[u8]) -> FrameSummary {
    FrameSummary {
        kind: FrameKind::Data,
        id: ConnId::new(id),
        wire_len: 2 + payload.len(),
        payload_len: payload.len(),
        preview: Preview::of(payload),
        numbers: tunlab::event::FrameNumbers::None,
        destination: None,
    }
}

/// A flood of frames, reads and log lines leaves every buffer at its capacity, while the
/// per-connection counters still count everything.
#[test]
fn a_flood_of_events_stays_bounded() {
    let mut state = new_state(0);
    let mut script = Script::default();
    script.roles_up(0).client_connects(1, 1).opens(2, 1, 0);
    script.apply(&mut state);
    let frames = 50_000u64;
    for i in 0..frames {
        let time = START + Duration::from_micros(10_000 + i * 20);
        update(
            &mut state,
            Event {
                time,
                kind: EventKind::FrameSent {
                    at: Endpoint::Proxy1,
                    peer: tui_support::addr(tui_support::PROXY2_UDP),
                    frame: data_frame(0, b"0123456789"),
                },
            },
        );
        update(
            &mut state,
            Event {
                time,
                kind: EventKind::Tcp {
                    role: Role::Proxy1,
                    id: Some(ConnId::new(0)),
                    peer: client_addr(1),
                    action: TcpAction::Read(10),
                },
            },
        );
        // A non-frame event, which the log keeps.
        update(
            &mut state,
            Event {
                time,
                kind: EventKind::Log {
                    level: tunlab::event::Level::Warn,
                    role: Role::Proxy1,
                    message: "a warning".into(),
                },
            },
        );
    }
    let conn = &state.conns[0];
    assert_eq!(conn.to_proxy2.frames, frames + 1, "C plus every D");
    assert_eq!(conn.to_proxy2.bytes, frames * 10);
    assert_eq!(conn.trace.len(), TRACE_CAPACITY);
    assert_eq!(conn.ladder.len(), LADDER_CAPACITY);
    assert_eq!(state.log.len(), LOG_CAPACITY);
    assert!(conn.trace.forgotten() >= frames - TRACE_CAPACITY as u64);
    // The newest frame is the last one kept.
    match conn.trace.back() {
        Some(TraceLine::Frame { time, .. }) => {
            assert_eq!(*time, Duration::from_micros(10_000 + (frames - 1) * 20));
        }
        other => panic!("last trace line is {other:?}"),
    }
}

/// Events from different tasks arrive slightly out of order; traces and ladders are in time
/// order anyway.
#[test]
fn late_events_are_placed_in_time_order() {
    let mut state = new_state(0);
    let mut script = Script::default();
    script.roles_up(0).client_connects(1, 1).opens(2, 1, 0);
    // proxy2's echo (at 1502) is reported before proxy1's send (at 1500) reached the UI.
    let mut late = Script::default();
    late.echo(1500, 1, 0, b"x");
    let mut events = late.events.clone();
    events.reverse();
    script.events.extend(events);
    script.apply(&mut state);
    let times: Vec<_> = state.conns[0].ladder.iter().map(HasTime::time).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    let trace_times: Vec<_> = state.conns[0].trace.iter().map(HasTime::time).collect();
    assert!(trace_times.windows(2).all(|w| w[0] <= w[1]));
}

#[test]
fn ring_insert_by_time_when_full_drops_the_oldest() {
    #[derive(Debug)]
    struct At(Duration);
    impl tunlab::tui::state::HasTime for At {
        fn time(&self) -> Duration {
            self.0
        }
    }
    let ms = Duration::from_millis;
    let mut ring = Ring::new(3);
    for t in [10, 20, 30] {
        ring.insert_by_time(At(ms(t)));
    }
    ring.insert_by_time(At(ms(25)));
    let kept: Vec<_> = ring.iter().map(|a| a.0).collect();
    assert_eq!(kept, [ms(20), ms(25), ms(30)]);
    // Older than everything kept: forgotten at once.
    ring.insert_by_time(At(ms(1)));
    assert_eq!(
        ring.iter().map(|a| a.0).collect::<Vec<_>>(),
        [ms(20), ms(25), ms(30)]
    );
    assert_eq!(ring.forgotten(), 2);
}

/// The client ↔ id mapping holds whichever of the client's and proxy1's events comes first.
#[test]
fn clients_map_to_ids_in_either_order() {
    let mut state = new_state(0);
    let mut script = Script::default();
    // proxy1 gives the id before the client's own "connected" event is seen.
    script.roles_up(0).opens(5, 1, 4).client_connects(6, 1);
    script.apply(&mut state);
    let conn = &state.conns[4];
    assert_eq!(conn.state, ConnState::Open);
    assert_eq!(conn.proxy2_state, ConnState::Open);
    assert_eq!(conn.client, Some(client_addr(1)));
    assert_eq!(state.client_at(client_addr(1)), Some(1));
    let client = &state.clients[&1];
    assert_eq!(state.conn_of_client(client), Some(ConnId::new(4)));
    // The ladder names the client although it was not known when the id was given.
    assert!(conn.ladder.iter().any(|e| matches!(
        e,
        LadderEntry::IdGiven { client, .. } if state.client_label(*client) == "client 1"
    )));
}

/// The ladder has one arrow per step of a connection's life, between the right lanes.
#[test]
fn ladder_of_a_whole_connection() {
    let mut state = new_state(0);
    classroom().apply(&mut state);
    let arrows: Vec<(Lane, Lane, String)> = state.conns[0]
        .ladder
        .iter()
        .filter_map(|e| match e {
            LadderEntry::Arrow {
                from, to, label, ..
            } => Some((*from, *to, label.text().into_owned())),
            _ => None,
        })
        .collect();
    use Lane::*;
    let expected = [
        (Client, Proxy1, "TCP connect"),
        (Proxy1, Proxy2, "C0"),
        (Proxy2, Server, "TCP connect"),
        (Proxy2, Proxy1, "C0OK"),
        (Client, Proxy1, "10 B"),
        (Proxy1, Proxy2, "D0 10B \"hola mundo\""),
        (Proxy2, Server, "10 B"),
        (Server, Proxy2, "10 B"),
        (Proxy2, Proxy1, "D0 10B \"hola mundo\""),
        (Proxy1, Client, "10 B"),
        (Client, Proxy1, "RST"),
        (Proxy1, Proxy2, "X0"),
        (Proxy2, Server, "FIN"),
    ];
    let got: Vec<(Lane, Lane, &str)> = arrows
        .iter()
        .map(|(a, b, l)| (*a, *b, l.as_str()))
        .collect();
    assert_eq!(got, expected);
}

/// With TCP capture on, the kernel's segments join the ladder on their leg: the handshakes
/// (which happen before the id is known: they wait for it), FIN and RST; data segments and
/// plain ACKs do not (the read and write arrows say that), nor segments of other ports.
#[test]
fn captured_tcp_segments_show_on_their_leg_of_the_ladder() {
    let script = tui_support::with_tcp_capture();
    let mut state = new_state(0);
    script.apply(&mut state);
    let segments: Vec<(Lane, Lane, String)> = state.conns[0]
        .ladder
        .iter()
        .filter_map(|e| match e {
            LadderEntry::Arrow {
                from, to, label, ..
            } if label.text().starts_with('[') => Some((*from, *to, label.text().into_owned())),
            _ => None,
        })
        .collect();
    use Lane::*;
    let expected = [
        (Client, Proxy1, "[SYN]"),
        (Proxy1, Client, "[SYN, ACK]"),
        (Client, Proxy1, "[ACK]"),
        (Proxy2, Server, "[SYN]"),
        (Server, Proxy2, "[SYN, ACK]"),
        (Proxy2, Server, "[ACK]"),
        (Client, Proxy1, "[FIN, ACK]"),
        (Proxy2, Server, "[RST, ACK]"),
    ];
    let got: Vec<(Lane, Lane, &str)> = segments
        .iter()
        .map(|(a, b, l)| (*a, *b, l.as_str()))
        .collect();
    assert_eq!(got, expected);
    assert!(
        state.conns.iter().skip(1).all(|c| c.ladder.is_empty()),
        "nothing on other ids"
    );
}

/// A refused id is freed at once by proxy1; the state keeps the outcome until the id is
/// given out again, and then starts its counters afresh.
#[test]
fn refused_outcome_lasts_until_the_id_is_reused() {
    let mut state = new_state(0);
    classroom().apply(&mut state);
    assert_eq!(state.conns[2].state, ConnState::Free);
    assert_eq!(state.conns[2].last_outcome, Some(ConnState::Refused));
    let mut again = Script::default();
    again.client_connects(5000, 4).opens(5001, 4, 2);
    again.apply(&mut state);
    let conn = &state.conns[2];
    assert_eq!(conn.state, ConnState::Open);
    assert_eq!(conn.last_outcome, None);
    assert_eq!(conn.to_proxy2.frames, 1, "only the new C");
    assert_eq!(conn.client, Some(client_addr(4)));
}

/// Waiting clients are listed; when one gets an id while selected, the selection follows it.
#[test]
fn a_selected_waiting_client_is_followed_to_its_id() {
    let mut state = new_state(0);
    full_house().apply(&mut state);
    assert_eq!(state.waiting, [client_addr(11), client_addr(12)]);
    state.view.selected = Selection::Waiting(client_addr(11));
    let mut freed = Script::default();
    freed
        .client_closes(300, 3, 2, CloseKind::Fin)
        .opens(310, 11, 2);
    freed.apply(&mut state);
    assert_eq!(state.waiting, [client_addr(12)]);
    assert_eq!(state.view.selected, Selection::Conn(ConnId::new(2)));
    assert_eq!(state.conns[2].client, Some(client_addr(11)));
    // Its accept is drawn where it got the id, with how long it waited.
    let connects: Vec<_> = state.conns[2]
        .ladder
        .iter()
        .filter_map(|e| match e {
            LadderEntry::Arrow {
                label,
                time,
                from: Lane::Client,
                ..
            } => Some((label.text().into_owned(), *time)),
            _ => None,
        })
        .collect();
    assert_eq!(
        connects.last(),
        Some(&(
            "TCP connect, waited 0.1 s".to_string(),
            Duration::from_millis(310)
        ))
    );
    // One that gives up is no longer listed.
    let mut gave_up = Script::default();
    gave_up.at(
        400,
        EventKind::WaitGaveUp {
            client: client_addr(12),
        },
    );
    gave_up.apply(&mut state);
    assert!(state.waiting.is_empty());
    assert!(state.clients[&12].gave_up_waiting);
}

/// The lab's snapshot is exact and wins over what the (lossy) events said.
#[test]
fn snapshots_override_counted_events() {
    let mut state = new_state(0);
    // No events at all: as if the UI had dropped every one of them.
    let snapshot = classroom_snapshot();
    apply_snapshot(&mut state, &snapshot);
    assert_eq!(state.counters.frames(), 11);
    assert_eq!(state.counters.malformed(), 1);
    assert_eq!(state.counters.ignored(), 1);
    let client = &state.clients[&1];
    assert_eq!(client.sent, 10);
    assert_eq!(client.echoed, 10);
    assert_eq!(client.ended, Some(ClientEnd::ByClient(CloseKind::Rst)));
    assert_eq!(state.client_at(client_addr(2)), Some(2));
}

#[test]
fn role_up_and_down() {
    let mut state = new_state(0);
    assert!(!state.proxy2.up);
    let mut script = Script::default();
    script.roles_up(0).client_connects(1, 1).opens(2, 1, 0);
    script.apply(&mut state);
    assert_eq!(state.conns[0].proxy2_state, ConnState::Open);
    let mut down = Script::default();
    down.at(10, EventKind::RoleDown { role: Role::Proxy2 });
    down.apply(&mut state);
    assert!(!state.proxy2.up);
    assert!(state.server.up && state.proxy1.up);
    // proxy2 forgets its connections when it stops; proxy1 still thinks id 0 is open.
    assert_eq!(state.conns[0].proxy2_state, ConnState::Free);
    assert_eq!(state.conns[0].state, ConnState::Open);
}

#[test]
fn typed_messages_understand_escapes() {
    assert_eq!(parse_message("hola mundo").unwrap(), b"hola mundo");
    assert_eq!(parse_message("a\\nb\\r\\t\\\\").unwrap(), b"a\nb\r\t\\");
    assert_eq!(parse_message("\\x00\\xff\\x41").unwrap(), [0, 0xff, b'A']);
    assert_eq!(parse_message("adiós").unwrap(), "adiós".as_bytes());
}

#[test]
fn typed_messages_with_a_bad_escape_are_refused_with_the_reason() {
    for (text, reason) in [
        ("\\xZZ", "\\xZZ is not a byte"),
        ("ab\\x4", "\\x4 is not a byte"),
        ("\\x+1", "\\x+1 is not a byte"),
        ("\\q", "\\q is not an escape"),
        ("end\\", "lone \\"),
    ] {
        let err = parse_message(text).unwrap_err();
        assert!(err.contains(reason), "{text}: {err}");
    }
}

#[test]
fn a_check_mark_only_when_every_byte_sent_came_back_intact() {
    use tunlab::tui::state::{ClientView, EchoVerdict};
    let client = |sent, echoed, intact, ended| ClientView {
        sent,
        echoed,
        intact,
        ended,
        ..ClientView::default()
    };
    let fin = Some(tunlab::event::ClientEnd::ByClient(
        tunlab::event::CloseKind::Fin,
    ));
    assert_eq!(
        client(0, 0, true, None).echo_verdict(),
        EchoVerdict::NothingSent
    );
    assert_eq!(
        client(30, 30, true, None).echo_verdict(),
        EchoVerdict::Intact
    );
    // 30 B sent and 10 B echoed is not ✓: 20 B are still due, or lost once the client ended.
    assert_eq!(
        client(30, 10, true, None).echo_verdict(),
        EchoVerdict::Short {
            missing: 20,
            ended: false
        }
    );
    assert_eq!(
        client(30, 10, true, fin).echo_verdict(),
        EchoVerdict::Short {
            missing: 20,
            ended: true
        }
    );
    assert_eq!(
        client(30, 30, false, None).echo_verdict(),
        EchoVerdict::Damaged
    );
    assert_eq!(
        client(10, 12, true, None).echo_verdict(),
        EchoVerdict::Damaged
    );
}

#[test]
fn a_bad_escape_keeps_the_message_open_and_says_why() {
    use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
    use tunlab::tui::app::{Command, handle_key};
    let mut state = new_state(100);
    let mut script = tui_support::Script::default();
    script.roles_up(0).client_connects(1, 1).opens(2, 1, 0);
    script.apply(&mut state);
    let key = |code| KeyEvent::new(code, KeyModifiers::NONE);
    assert_eq!(handle_key(&mut state, key(KeyCode::Char('m'))), None);
    for c in "a\\xZZ".chars() {
        handle_key(&mut state, key(KeyCode::Char(c)));
    }
    assert_eq!(handle_key(&mut state, key(KeyCode::Enter)), None);
    assert_eq!(
        state.view.input.as_deref(),
        Some("a\\xZZ"),
        "kept for fixing"
    );
    let last = state.log.back().unwrap();
    assert!(last.text.contains("\\xZZ is not a byte"), "{}", last.text);
    for _ in 0..3 {
        handle_key(&mut state, key(KeyCode::Backspace));
    }
    for c in "x41".chars() {
        handle_key(&mut state, key(KeyCode::Char(c)));
    }
    assert_eq!(
        handle_key(&mut state, key(KeyCode::Enter)),
        Some(Command::Send {
            client: 1,
            bytes: b"aA".to_vec()
        })
    );
    assert_eq!(state.view.input, None);
}

/// One log line per happening: a connection's whole life, a refused one and a client that
/// waits, each said once, by the role that knows most about it.
#[test]
fn one_log_line_per_happening() {
    let mut state = new_state(0);
    tui_support::classroom().apply(&mut state);
    let mut script = tui_support::Script::default();
    script.waits(4000, 4);
    script.apply(&mut state);
    let log: Vec<String> = state
        .log
        .iter()
        .map(|l| format!("{:.3} {}", l.time.as_secs_f64(), l.text))
        .collect();
    assert_eq!(
        log,
        [
            "0.000 server up on 127.0.0.1:1818",
            "0.000 proxy2 up on 127.0.0.1:3328",
            "0.000 proxy1 up on 127.0.0.1:3327",
            "0.005 client 1: connected from 127.0.0.1:50001",
            "0.006 proxy1: connection 0 (127.0.0.1:50001) connecting",
            "0.009 proxy1: connection 0 (127.0.0.1:50001) open",
            "0.010 client 2: connected from 127.0.0.1:50002",
            "0.011 proxy1: connection 1 (127.0.0.1:50002) connecting",
            "0.014 proxy1: connection 1 (127.0.0.1:50002) open",
            "2.000 client 3: connected from 127.0.0.1:50003",
            "2.001 proxy1: connection 2 (127.0.0.1:50003) connecting",
            "2.003 proxy2: connection 2 (127.0.0.1:40000) free",
            "2.004 proxy1: connection 2 (127.0.0.1:50003) free",
            "2.004 client 3: closed by the tunnel",
            "3.000 client 1: closed with RST",
            "3.000 proxy1: connection 0 (127.0.0.1:50001) closing",
            "3.001 proxy1: connection 0 (127.0.0.1:50001) free",
            "3.001 proxy2: connection 0 (127.0.0.1:40000) free",
        ]
    );
}

fn ladder_notes(state: &tunlab::tui::state::TuiState, id: usize) -> Vec<String> {
    state.conns[id]
        .ladder
        .iter()
        .filter_map(|entry| match entry {
            tunlab::tui::state::LadderEntry::Note { text, .. } => Some(text.clone()),
            _ => None,
        })
        .collect()
}

/// The ladder marks a restart of proxy2 or the server on every id with a history, so what an
/// id did before and after reads as two lives of that role.
#[test]
fn the_ladder_marks_a_stop_and_a_restart() {
    let mut state = new_state(0);
    let mut script = Script::default();
    script.roles_up(0).client_connects(1, 1).opens(2, 1, 0);
    script
        .at(100, EventKind::RoleDown { role: Role::Proxy2 })
        .at(
            200,
            EventKind::RoleUp {
                role: Role::Proxy2,
                addr: tui_support::addr(tui_support::PROXY2_UDP),
            },
        )
        .at(
            300,
            EventKind::RoleDown {
                role: Role::EchoServer,
            },
        )
        .at(
            400,
            EventKind::RoleUp {
                role: Role::EchoServer,
                addr: tui_support::addr(tui_support::SERVER),
            },
        );
    script.apply(&mut state);
    assert_eq!(
        ladder_notes(&state, 0),
        [
            "✕ proxy2 stopped",
            "↻ proxy2 restarted",
            "✕ server stopped",
            "↻ server restarted"
        ]
    );
    assert!(ladder_notes(&state, 5).is_empty(), "an id with no history");
}

/// A new client's id that proxy2 still holds for the last one (its X was lost): the ladder
/// says the id was reused stale.
#[test]
fn the_ladder_marks_a_reused_stale_id() {
    let mut state = new_state(0);
    let mut script = Script::default();
    let c1 = client_addr(1);
    script.roles_up(0).client_connects(1, 1).opens(2, 1, 0);
    // Client 1 leaves; proxy1 frees id 0 and sends X, which is lost: no "proxy2 free".
    script
        .at(
            100,
            EventKind::Conn {
                at: Endpoint::Proxy1,
                id: ConnId::new(0),
                state: ConnState::Free,
                client: Some(c1),
            },
        )
        .client_connects(500, 2)
        .at(
            501,
            EventKind::Conn {
                at: Endpoint::Proxy1,
                id: ConnId::new(0),
                state: ConnState::Connecting,
                client: Some(client_addr(2)),
            },
        );
    script.apply(&mut state);
    let notes = ladder_notes(&state, 0);
    assert!(
        notes.contains(&"⚠ id 0 reused while proxy2 still holds its last connection".to_string()),
        "{notes:?}"
    );
    // A clean reuse (proxy2 freed it first) is not marked.
    let mut clean = new_state(0);
    let mut script = Script::default();
    script
        .roles_up(0)
        .client_connects(1, 1)
        .opens(2, 1, 0)
        .client_closes(100, 1, 0, tunlab::event::CloseKind::Fin)
        .client_connects(500, 2)
        .opens(501, 2, 0);
    script.apply(&mut clean);
    assert!(
        !ladder_notes(&clean, 0).iter().any(|n| n.contains("reused")),
        "{:?}",
        ladder_notes(&clean, 0)
    );
}

/// The extended modes' 65,536 ids cost nothing until used: the screen keeps a view per
/// connection in use (10,000 here) and forgets closed ones past the newest few hundred.
#[test]
fn extended_mode_storage_follows_the_connections_in_use() {
    use tunlab::tui::conn_table::ConnTable;
    let mut state = tui_support::new_extended_state(0);
    assert_eq!(state.conns.len(), 0, "nothing made up front");
    assert_eq!(state.conns.ids(), 65_536);
    let mut script = Script::default();
    for id in 0..10_000u16 {
        script.conn_state(1, id, ConnState::Open, 10_000 + id % 50_000);
    }
    script.apply(&mut state);
    assert_eq!(state.conns.len(), 10_000);
    assert_eq!(state.conns.counts().open, 10_000);
    let mut script = Script::default();
    for id in 0..10_000u16 {
        script.conn_state(2, id, ConnState::Free, 10_000 + id % 50_000);
    }
    script.apply(&mut state);
    // The newest closed ones, and the selected id 0 (the default selection).
    assert!(
        state.conns.len() <= ConnTable::KEEP_FREED + 1,
        "{} views kept",
        state.conns.len()
    );
    assert!(state.conns.get(ConnId::new(9_999)).is_some());
    assert!(
        state.conns.get(ConnId::new(0)).is_some(),
        "the selected view stays"
    );
    assert!(state.conns.get(ConnId::new(5_000)).is_none());
}
