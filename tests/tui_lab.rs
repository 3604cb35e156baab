//! The TUI's state and screens fed by a real lab on loopback (ephemeral ports): the same
//! commands the keys give, carried out with the same `Lab` calls, and the events they cause
//! folded in as the loop does.

mod tui_support;

use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tui_support::screen;
use tunlab::event::{ClientEnd, CloseKind, ConnState, Event, EventSink};
use tunlab::lab::{Lab, LabConfig};
use tunlab::topology::Role;
use tunlab::tui::app::{Command, execute};
use tunlab::tui::render;
use tunlab::tui::state::{Selection, TuiState, apply_snapshot, update};
use tunlab::wire::{ConnId, WireMode};

/// Folds events in until `done` holds, for at most 10 s (a bound, not a speed check).
async fn fold_until(
    state: &mut TuiState,
    rx: &mut mpsc::Receiver<Event>,
    lab: &Lab,
    what: &str,
    done: impl Fn(&TuiState) -> bool,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !done(state) {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(event)) => update(state, event),
            Ok(None) => panic!("event stream closed while waiting for {what}"),
            Err(_) => panic!("no {what} within 10 s"),
        }
        apply_snapshot(state, &lab.snapshot());
    }
}

#[tokio::test]
async fn keys_commands_drive_a_real_lab() {
    let (events, mut rx) = EventSink::channel(4096);
    let start = SystemTime::now();
    let mut lab = Lab::start(LabConfig::ephemeral(), events).await.unwrap();
    let mut state = TuiState::new(start, WireMode::Classic, Some(lab.addrs()));

    assert!(!execute(&mut lab, &mut state, Command::AddClient).await);
    fold_until(&mut state, &mut rx, &lab, "an open id 0", |s| {
        s.conns[0].state == ConnState::Open && s.client_at(s.conns[0].client.unwrap()).is_some()
    })
    .await;
    assert!(state.server.up && state.proxy2.up && state.proxy1.up);

    let send = Command::Send {
        client: 1,
        bytes: b"hola mundo".to_vec(),
    };
    assert!(!execute(&mut lab, &mut state, send).await);
    fold_until(&mut state, &mut rx, &lab, "the echo", |s| {
        s.clients.get(&1).is_some_and(|c| c.echoed == 10)
    })
    .await;
    assert!(state.clients[&1].intact);

    let close = Command::Close {
        client: 1,
        how: CloseKind::Rst,
    };
    assert!(!execute(&mut lab, &mut state, close).await);
    fold_until(&mut state, &mut rx, &lab, "id 0 freed at both ends", |s| {
        s.conns[0].state == ConnState::Free && s.conns[0].proxy2_state == ConnState::Free
    })
    .await;
    assert_eq!(
        state.clients[&1].ended,
        Some(ClientEnd::ByClient(CloseKind::Rst))
    );

    state.view.selected = Selection::Conn(ConnId::new(0));
    let trace = screen(120, 40, |f| render::draw(f, &state));
    for expected in [
        "p1→p2 C0",
        "p2→p1 C0OK",
        r#"p1→p2 D0 len=10 "hola mundo""#,
        r#"p2→p1 D0 len=10 "hola mundo""#,
        "p1→p2 X0",
        "aborted with RST",
        // C0, D0 and X0 three times (--close-attempts); OK and D back.
        "frames 7 (p1→p2 5 · p2→p1 2)",
    ] {
        assert!(trace.contains(expected), "no {expected:?} in\n{trace}");
    }
    state.view.show_ladder = true;
    let ladder = screen(120, 40, |f| render::draw(f, &state));
    for expected in ["TCP connect", "C0OK", "RST", "X0", "proxy1 frees id 0"] {
        assert!(ladder.contains(expected), "no {expected:?} in\n{ladder}");
    }

    // p stops proxy2 and starts it again.
    assert!(!execute(&mut lab, &mut state, Command::ToggleRole(Role::Proxy2)).await);
    assert!(!state.proxy2.up);
    assert!(!execute(&mut lab, &mut state, Command::ToggleRole(Role::Proxy2)).await);
    assert!(state.proxy2.up);

    // Commands on a client that has ended say so in the log instead of failing.
    let again = Command::Send {
        client: 1,
        bytes: b"late".to_vec(),
    };
    assert!(!execute(&mut lab, &mut state, again).await);
    assert!(
        state
            .log
            .iter()
            .any(|line| line.text.contains("client 1 has already ended")),
        "log: {:?}",
        state.log.iter().map(|l| &l.text).collect::<Vec<_>>()
    );
    assert!(execute(&mut lab, &mut state, Command::Quit).await);
    lab.shutdown().await;
}

/// The link keys change the emulator live, and what it does shows in the trace and header.
#[tokio::test]
async fn link_keys_turn_the_emulator_up_and_down_and_the_trace_shows_it() {
    use tunlab::event::{ClientAction, EventKind};
    use tunlab::tui::app::LinkChange;
    use tunlab::tui::state::TraceLine;

    let (events, mut rx) = EventSink::channel(4096);
    let start = SystemTime::now();
    let mut lab = Lab::start(LabConfig::ephemeral(), events).await.unwrap();
    let mut state = TuiState::new(start, WireMode::Classic, Some(lab.addrs()));
    execute(&mut lab, &mut state, Command::AddClient).await;
    fold_until(&mut state, &mut rx, &lab, "an open id 0", |s| {
        s.conns[0].state == ConnState::Open
    })
    .await;

    for _ in 0..3 {
        execute(&mut lab, &mut state, Command::Link(LinkChange::MoreLoss)).await;
    }
    execute(&mut lab, &mut state, Command::Link(LinkChange::LessLoss)).await;
    let settings = lab.link_settings();
    assert_eq!(settings.to_proxy2.loss.get(), 20.0);
    assert_eq!(settings.to_proxy1.loss.get(), 20.0);

    // A blackholed link drops the next frame, and the trace marks it.
    execute(
        &mut lab,
        &mut state,
        Command::Link(LinkChange::ToggleBlackhole),
    )
    .await;
    assert!(lab.link_settings().to_proxy2.blackhole);
    execute(
        &mut lab,
        &mut state,
        Command::Send {
            client: 1,
            bytes: b"into the void".to_vec(),
        },
    )
    .await;
    fold_until(
        &mut state,
        &mut rx,
        &lab,
        "a dropped frame in the trace",
        |s| {
            s.conns[0]
                .trace
                .iter()
                .any(|line| matches!(line, TraceLine::Link { dropped: true, .. }))
        },
    )
    .await;
    let header = state
        .link
        .impairment
        .clone()
        .expect("the header names the impairment");
    assert!(
        header.contains("blackhole") && header.contains("dropped 1↑"),
        "{header}"
    );

    // Clear again: the next message gets through.
    execute(&mut lab, &mut state, Command::Link(LinkChange::Clear)).await;
    assert!(lab.link_settings().is_clear());
    execute(
        &mut lab,
        &mut state,
        Command::Send {
            client: 1,
            bytes: b"back".to_vec(),
        },
    )
    .await;
    loop {
        let event = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("an echo")
            .unwrap();
        if matches!(
            event.kind,
            EventKind::Client {
                client: 1,
                action: ClientAction::Echoed { .. }
            }
        ) {
            break;
        }
    }
    lab.shutdown().await;
}

/// Step mode in a reliable mode, driven as the keys drive it: the log names a released or
/// copied frame as the trace does, its seq counted from the connection's ISN (it gave the
/// wire's absolute seq, a random 32-bit number).
#[tokio::test]
async fn step_mode_names_held_frames_by_their_relative_seq() {
    let (events, mut rx) = EventSink::channel(4096);
    let start = SystemTime::now();
    let mode = WireMode::SelectiveRepeat;
    let mut config = LabConfig {
        mode,
        ..LabConfig::ephemeral()
    };
    // Nothing on the held link but the frames below: no keepalive probe.
    config.proxy1.probe_after = Duration::from_mins(10);
    let mut lab = Lab::start(config, events).await.unwrap();
    let mut state = TuiState::new(start, mode, Some(lab.addrs()));
    assert!(!execute(&mut lab, &mut state, Command::AddClient).await);
    fold_until(
        &mut state,
        &mut rx,
        &lab,
        "an open id 0 with both ISNs",
        |s| {
            s.conn(ConnId::new(0)).is_some_and(|c| {
                c.state == ConnState::Open
                    && c.transport
                        .bases(tunlab::topology::LinkDirection::ToProxy2)
                        .is_some()
            })
        },
    )
    .await;
    assert!(!execute(&mut lab, &mut state, Command::ToggleHold).await);
    let send = Command::Send {
        client: 1,
        bytes: b"hola".to_vec(),
    };
    assert!(!execute(&mut lab, &mut state, send).await);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while lab.held_frames().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "no frame held");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let held = lab.held_frames()[0].clone();
    assert!(!execute(&mut lab, &mut state, Command::DuplicateHeld(held.id)).await);
    let copied = state.log.back().unwrap().text.clone();
    assert!(
        copied.starts_with("copied p1→p2 D0 seq=0 len=4 \"hola\""),
        "{copied}"
    );
    assert!(!execute(&mut lab, &mut state, Command::ReleaseNext).await);
    let released = state.log.back().unwrap().text.clone();
    assert!(
        released.starts_with("released p1→p2 D0 seq=0 len=4 \"hola\""),
        "{released}"
    );
    assert!(execute(&mut lab, &mut state, Command::Quit).await);
}
