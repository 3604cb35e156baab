//! The TUI state as a fold of events: who owns which id, what each id's trace and ladder
//! hold, and that nothing grows without bound however many frames go by.

mod tui_support;

use std::time::Duration;

use tui_support::{
    START, Script, classroom, classroom_snapshot, client_addr, full_house, new_state,
};
use tunlab::event::{
    ClientEnd, CloseKind, ConnState, Endpoint, Event, EventKind, FrameSummary, Preview, Role,
    TcpAction,
};
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
                kind: EventKind::WaitGaveUp {
                    client: client_addr(99),
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
            assert_eq!(*time, Duration::from_micros(10_000 + (frames - 1) * 20))
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
    assert_eq!(parse_message("hola mundo"), b"hola mundo");
    assert_eq!(parse_message("a\\nb\\r\\t\\\\"), b"a\nb\r\t\\");
    assert_eq!(parse_message("\\x00\\xff\\x41"), [0, 0xff, b'A']);
    // Not an escape: taken literally.
    assert_eq!(parse_message("\\xZZ \\q \\"), b"\\xZZ \\q \\");
    assert_eq!(parse_message("ñ"), "ñ".as_bytes());
}
