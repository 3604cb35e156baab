//! Snapshots of every TUI panel and of whole screens, drawn from scripted events with fixed
//! times and addresses (ratatui's `TestBackend` + insta), and a key-driving test in the
//! style of bandwhich's UI tests: scripted keys, one snapshot per draw.

mod tui_support;

use insta::assert_snapshot;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use tui_support::{
    Script, classroom, classroom_snapshot, client_addr, full_house, new_extended_state, new_state,
    screen, thousands,
};
use tunlab::event::CloseKind;
use tunlab::topology::Role;
use tunlab::tui::app::{Command, handle_key};
use tunlab::tui::render::{
    self, clients, connections, grid, header, help, ladder, log, status, trace,
};
use tunlab::tui::state::{CaptureView, MonitorView, Selection, TuiState, apply_snapshot};
use tunlab::wire::ConnId;

fn classroom_state() -> TuiState {
    let mut state = new_state(3500);
    classroom().apply(&mut state);
    apply_snapshot(&mut state, &classroom_snapshot());
    state
}

fn id(n: u16) -> ConnId {
    ConnId::new(n)
}

#[test]
fn header_panel() {
    let state = classroom_state();
    assert_snapshot!(screen(120, 4, |f| header::render(f, f.area(), &state)));
}

#[test]
fn header_panel_with_a_role_down_and_a_capture() {
    let mut state = classroom_state();
    state.set_running(Role::Proxy2, false);
    state.capture = Some(CaptureView {
        path: "captures/tunlab-20250101-120000.pcap".into(),
        frames: 42,
        failed: false,
    });
    assert_snapshot!(screen(120, 4, |f| header::render(f, f.area(), &state)));
}

#[test]
fn header_panel_with_the_monitor_on() {
    let mut state = classroom_state();
    state.monitor = Some(MonitorView {
        metrics: Some("127.0.0.1:9100".parse().unwrap()),
        admin: Some("127.0.0.1:9101".parse().unwrap()),
    });
    assert_eq!(header::height(&state, false), 5);
    assert_eq!(header::height(&state, true), 3);
    assert_snapshot!(screen(120, 5, |f| header::render(f, f.area(), &state)));
    assert_snapshot!(
        "header_panel_with_the_monitor_on_compact",
        screen(80, 3, |f| header::render_compact(f, f.area(), &state))
    );
    // The whole screen makes room for the third line.
    assert_snapshot!(
        "screen_with_the_monitor_on",
        screen(100, 30, |f| render::draw(f, &state))
    );
}

#[test]
fn header_panel_compact() {
    let state = classroom_state();
    assert_snapshot!(screen(80, 2, |f| header::render_compact(
        f,
        f.area(),
        &state
    )));
}

#[test]
fn header_panel_of_a_sealed_link() {
    let mut state = classroom_state();
    state.link.mode = tunlab::wire::WireMode::SelectiveRepeat;
    state.link.sealed = true;
    let drawn = screen(120, 4, |f| header::render(f, f.area(), &state));
    assert!(drawn.contains("selective-repeat (sealed)"), "{drawn}");
    assert_snapshot!(drawn);
}

#[test]
fn connections_list() {
    let state = classroom_state();
    assert_snapshot!(screen(44, 12, |f| connections::render_list(
        f,
        f.area(),
        &state
    )));
}

#[test]
fn connections_list_with_waiting_clients() {
    let mut state = new_state(300);
    full_house().apply(&mut state);
    state.view.selected = Selection::Waiting(client_addr(12));
    assert_snapshot!(screen(44, 14, |f| connections::render_list(
        f,
        f.area(),
        &state
    )));
}

/// A TCP client from outside the lab (a student's `nc`, a load generator) has no client
/// number: the list names it by port, the detail pane by address.
#[test]
fn connections_list_names_outside_clients_by_port() {
    let mut state = classroom_state();
    let mut outside = Script::default();
    outside.opens(4000, 77, 3);
    outside.apply(&mut state);
    state.view.selected = Selection::Conn(id(3));
    assert_snapshot!(screen(100, 14, |f| {
        let [list, detail] = ratatui::layout::Layout::horizontal([
            ratatui::layout::Constraint::Length(44),
            ratatui::layout::Constraint::Min(0),
        ])
        .areas(f.area());
        connections::render_list(f, list, &state);
        trace::render(f, detail, &state, id(3));
    }));
}

#[test]
fn connections_grid() {
    let state = classroom_state();
    assert_snapshot!(screen(100, 30, |f| grid::render(f, f.area(), &state)));
}

#[test]
fn trace_panel_of_an_open_connection() {
    let mut state = classroom_state();
    state.view.selected = Selection::Conn(id(1));
    assert_snapshot!(screen(80, 10, |f| trace::render(
        f,
        f.area(),
        &state,
        id(1)
    )));
}

#[test]
fn trace_panel_of_a_refused_connection() {
    let state = classroom_state();
    assert_snapshot!(screen(80, 8, |f| trace::render(f, f.area(), &state, id(2))));
}

#[test]
fn trace_panel_of_a_waiting_client() {
    let mut state = new_state(300);
    full_house().apply(&mut state);
    assert_snapshot!(screen(70, 8, |f| trace::render_waiting(
        f,
        f.area(),
        &state,
        client_addr(11)
    )));
}

#[test]
fn ladder_of_a_connection_aborted_with_rst() {
    let state = classroom_state();
    assert_snapshot!(screen(90, 20, |f| ladder::render(
        f,
        f.area(),
        &state,
        id(0)
    )));
}

/// With TCP capture on, each leg's handshake, FIN and RST segments are arrows of their own.
#[test]
fn ladder_with_captured_tcp_segments() {
    let mut state = tui_support::new_state(0);
    tui_support::with_tcp_capture().apply(&mut state);
    assert_snapshot!(screen(90, 22, |f| ladder::render(
        f,
        f.area(),
        &state,
        id(0)
    )));
}

/// PgUp/Home scroll back, but never past the oldest row, and the border says how far back.
#[test]
fn ladder_scrolled_to_the_top() {
    let mut state = classroom_state();
    state.view.show_ladder = true;
    handle_key(&mut state, key(KeyCode::Home));
    assert_eq!(state.view.scroll, state.conns[0].ladder.len());
    assert_snapshot!(screen(90, 10, |f| ladder::render(
        f,
        f.area(),
        &state,
        id(0)
    )));
    handle_key(&mut state, key(KeyCode::End));
    assert_eq!(state.view.scroll, 0);
}

#[test]
fn ladder_of_a_refused_connection_narrow() {
    let state = classroom_state();
    assert_snapshot!(screen(60, 12, |f| ladder::render(
        f,
        f.area(),
        &state,
        id(2)
    )));
}

#[test]
fn clients_panel() {
    let state = classroom_state();
    assert_snapshot!(screen(44, 6, |f| clients::render(f, f.area(), &state)));
}

#[test]
fn log_panel() {
    let state = classroom_state();
    assert_snapshot!(screen(100, 8, |f| log::render(f, f.area(), &state)));
}

#[test]
fn status_panel() {
    let mut state = classroom_state();
    state.view.paused = true;
    state.counters.events_dropped = 1234;
    assert_snapshot!(screen(120, 2, |f| status::render(
        f,
        f.area(),
        &state,
        false
    )));
}

#[test]
fn status_panel_while_typing_compact() {
    let mut state = classroom_state();
    state.view.selected = Selection::Conn(id(1));
    state.view.input = Some("hola\\x00".into());
    assert_snapshot!(screen(80, 2, |f| status::render(f, f.area(), &state, true)));
}

#[test]
fn help_overlay() {
    let mut state = classroom_state();
    state.view.show_help = true;
    assert_snapshot!(screen(100, 26, |f| help::render(f, f.area(), &state)));
}

/// The README's key table is the help's, word for word.
#[test]
fn readme_lists_every_key_of_the_help() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    for (key, what) in help::KEYS {
        let row = format!("| `{key}` | {what} |");
        assert!(readme.contains(&row), "README.md lacks the row {row}");
    }
}

#[test]
fn whole_screen_80x24() {
    let state = classroom_state();
    assert_snapshot!(screen(80, 24, |f| render::draw(f, &state)));
}

/// Every echo verdict at once: client 1 got all 10 B back (✓), client 2 sent 30 B and has
/// 10 B back so far (…), client 3 sent nothing, client 4's echo came back changed (✗) and
/// client 5 ended with 12 B never echoed (✗ lost). A capture is on, so the header is full.
fn verdicts_state() -> TuiState {
    use tunlab::event::{ClientEnd, CloseKind};
    use tunlab::roles::echo_client::ClientStatus;
    let mut state = new_state(3500);
    classroom().apply(&mut state);
    let mut snapshot = classroom_snapshot();
    let status = |n: u32, sent, echoed, intact, ended| {
        (
            n,
            ClientStatus {
                local: Some(client_addr(n)),
                sent_bytes: sent,
                echoed_bytes: echoed,
                matched_bytes: if intact { echoed } else { 0 },
                intact,
                ended,
            },
        )
    };
    snapshot.clients = vec![
        status(1, 10, 10, true, Some(ClientEnd::ByClient(CloseKind::Rst))),
        status(2, 30, 10, true, None),
        status(3, 0, 0, true, Some(ClientEnd::ByTunnel)),
        status(4, 5, 5, false, None),
        status(
            5,
            1200,
            1188,
            true,
            Some(ClientEnd::ByClient(CloseKind::Fin)),
        ),
    ];
    apply_snapshot(&mut state, &snapshot);
    state.capture = Some(CaptureView {
        path: "tunlab-20261129-151500.pcap".into(),
        frames: 31,
        failed: false,
    });
    state
}

/// Every line of a screen with no word cut at its right edge: each line ends in a border,
/// a space, or a whole word that the next column does not continue.
fn assert_verdicts_visible(screen: &str) {
    assert!(screen.contains("✗"), "no ✗ on screen:\n{screen}");
    assert!(screen.contains("✓"), "no ✓ on screen:\n{screen}");
    assert!(
        screen.contains("…"),
        "no … (echo still due) on screen:\n{screen}"
    );
    for cut in ["ende\"", "end│", "clien│", " p pro\""] {
        assert!(!screen.contains(cut), "a word is cut ({cut}):\n{screen}");
    }
}

#[test]
fn echo_verdicts_at_80x24() {
    let state = verdicts_state();
    let screen = screen(80, 24, |f| render::draw(f, &state));
    assert_verdicts_visible(&screen);
    assert!(screen.contains(" echo  1 ✓  2 … 20 B due  3 –  4 ✗ damaged  5 ✗ 12 B lost"));
    assert_snapshot!(screen);
}

#[test]
fn echo_verdicts_at_100x30() {
    let state = verdicts_state();
    let screen = screen(100, 30, |f| render::draw(f, &state));
    assert_verdicts_visible(&screen);
    assert!(screen.contains("✗ damaged"), "{screen}");
    assert_snapshot!(screen);
}

#[test]
fn echo_verdicts_at_120x40() {
    let state = verdicts_state();
    let screen = screen(120, 40, |f| render::draw(f, &state));
    assert_verdicts_visible(&screen);
    assert!(screen.contains("✗ 12 B lost"), "{screen}");
    assert_snapshot!(screen);
}

/// The smallest terminal that gets the normal layout (clients pane, bordered header).
#[test]
fn whole_screen_100x30() {
    let state = classroom_state();
    assert_snapshot!(screen(100, 30, |f| render::draw(f, &state)));
}

#[test]
fn whole_screen_120x40() {
    let state = classroom_state();
    assert_snapshot!(screen(120, 40, |f| render::draw(f, &state)));
}

#[test]
fn whole_screen_120x40_with_ladder() {
    let mut state = classroom_state();
    state.view.show_ladder = true;
    assert_snapshot!(screen(120, 40, |f| render::draw(f, &state)));
}

#[test]
fn whole_screen_180x52() {
    let mut state = classroom_state();
    state.view.show_ladder = true;
    assert_snapshot!(screen(180, 52, |f| render::draw(f, &state)));
}

/// Small terminals still draw (nothing panics, the list and the detail pane stay).
#[test]
fn tiny_terminals_do_not_panic() {
    let state = classroom_state();
    for (w, h) in [(1, 1), (20, 5), (40, 10), (79, 23), (99, 29), (159, 47)] {
        let text = screen(w, h, |f| render::draw(f, &state));
        assert_eq!(text.lines().count(), h as usize);
    }
}

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

fn ch(c: char) -> KeyEvent {
    key(KeyCode::Char(c))
}

/// bandwhich-style: a scripted session of keys, with the command each key asks of the lab
/// and a snapshot of each screen. Events the lab would produce for those commands are fed
/// in between, as the loop does.
#[test]
fn keys_drive_the_lab() {
    let mut state = new_state(1000);
    let mut lab = Script::default();
    lab.roles_up(0)
        .client_connects(5, 1)
        .opens(6, 1, 0)
        .client_connects(10, 2)
        .opens(11, 2, 1);
    lab.apply(&mut state);
    let draw = |state: &TuiState| screen(80, 24, |f| render::draw(f, state));
    assert_snapshot!("keys_0_start", draw(&state));

    // Down selects id 1 (client 2); s sends the simple message from it.
    assert_eq!(handle_key(&mut state, key(KeyCode::Down)), None);
    assert_eq!(
        handle_key(&mut state, ch('s')),
        Some(Command::Send {
            client: 2,
            bytes: b"hola mundo".to_vec()
        })
    );
    let mut echoed = Script::default();
    echoed.echo(1500, 2, 1, b"hola mundo");
    echoed.apply(&mut state);
    assert_snapshot!("keys_1_sent_from_client_2", draw(&state));

    // l shows the ladder of the selected id.
    assert_eq!(handle_key(&mut state, ch('l')), None);
    assert_snapshot!("keys_2_ladder", draw(&state));

    // m, a message with an escaped byte, Enter.
    assert_eq!(handle_key(&mut state, ch('m')), None);
    for c in "hi\\x00!".chars() {
        assert_eq!(handle_key(&mut state, ch(c)), None);
    }
    assert_snapshot!("keys_3_typing", draw(&state));
    assert_eq!(
        handle_key(&mut state, key(KeyCode::Enter)),
        Some(Command::Send {
            client: 2,
            bytes: b"hi\x00!".to_vec()
        })
    );

    // r aborts client 2 with a RST; the lab's events follow.
    assert_eq!(
        handle_key(&mut state, ch('r')),
        Some(Command::Close {
            client: 2,
            how: CloseKind::Rst
        })
    );
    let mut closed = Script::default();
    closed.client_closes(2000, 2, 1, CloseKind::Rst);
    closed.apply(&mut state);
    assert_snapshot!("keys_4_rst", draw(&state));

    // s on a free id does nothing to the lab and says why.
    assert_eq!(handle_key(&mut state, ch('s')), None);
    // 0 selects id 0; space pauses; ? opens help.
    assert_eq!(handle_key(&mut state, ch('0')), None);
    assert_eq!(state.view.selected, Selection::Conn(id(0)));
    assert_eq!(handle_key(&mut state, ch(' ')), None);
    assert_eq!(handle_key(&mut state, ch('?')), None);
    assert_snapshot!("keys_5_paused_with_help", draw(&state));

    // Esc closes help; p and e toggle roles; a adds a client; q quits.
    assert_eq!(handle_key(&mut state, key(KeyCode::Esc)), None);
    assert!(!state.view.show_help);
    assert_eq!(
        handle_key(&mut state, ch('p')),
        Some(Command::ToggleRole(Role::Proxy2))
    );
    assert_eq!(
        handle_key(&mut state, ch('e')),
        Some(Command::ToggleRole(Role::EchoServer))
    );
    assert_eq!(handle_key(&mut state, ch('a')), Some(Command::AddClient));
    assert_eq!(
        handle_key(
            &mut state,
            KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)
        ),
        Some(Command::Quit)
    );
    assert_eq!(handle_key(&mut state, ch('q')), Some(Command::Quit));
}

/// While paused the screen stands still, but nothing is lost: frames that arrive meanwhile
/// are counted and kept, and show when it resumes. Clear empties traces and the log.
#[test]
fn pause_keeps_what_arrives_and_shows_it_on_resume_and_clear_empties() {
    let mut state = new_state(50);
    let mut start = Script::default();
    start.roles_up(0).client_connects(5, 1).opens(6, 1, 0);
    start.apply(&mut state);
    let traced = state.conns[0].trace.len();
    let laddered = state.conns[0].ladder.len();
    handle_key(&mut state, ch(' '));
    let mut more = Script::default();
    more.echo(100, 1, 0, b"while paused");
    more.apply(&mut state);
    assert_eq!(
        state.shown(&state.conns[0].trace),
        traced,
        "the screen stood still"
    );
    assert_eq!(
        state.conns[0].trace.len(),
        traced + 2,
        "and kept both frames"
    );
    assert!(state.conns[0].ladder.len() > laddered);
    assert_eq!(state.conns[0].to_proxy2.bytes, 12, "counters kept counting");
    let paused = screen(100, 30, |f| render::draw(f, &state));
    assert!(!paused.contains("while paused"), "{paused}");
    assert!(
        paused.contains("PAUSED · 2 new kept (space shows them)"),
        "{paused}"
    );
    handle_key(&mut state, ch(' '));
    let resumed = screen(100, 30, |f| render::draw(f, &state));
    assert!(
        resumed.contains(r#"p1→p2 D0 len=12 "while paused""#)
            && resumed.contains(r#"p2→p1 D0 len=12 "while paused""#),
        "{resumed}"
    );
    handle_key(&mut state, ch('l'));
    let ladder = screen(120, 40, |f| render::draw(f, &state));
    assert!(ladder.contains("D0 12B"), "{ladder}");
    handle_key(&mut state, ch('c'));
    assert!(state.conns[0].trace.is_empty());
    assert!(state.conns[0].ladder.is_empty());
    assert!(state.log.is_empty());
}

/// Past the TUI's rate, what was not traced one by one is counted and marked: one line in
/// the trace, one note across the ladder, for a run of folded counts (merged, not repeated),
/// and the connection's counts include them.
#[test]
fn sampled_frames_are_marked_in_the_trace_and_the_ladder() {
    use tunlab::event::EventKind;
    use tunlab::topology::Endpoint;
    let mut state = new_state(3500);
    let mut script = classroom();
    for (ms, at, frames) in [
        (3000, Endpoint::Proxy1, 700),
        (3100, Endpoint::Proxy2, 650),
        (3200, Endpoint::Proxy1, 300),
    ] {
        script.at(
            ms,
            EventKind::FramesFolded {
                at,
                id: id(1),
                frames,
                payload_bytes: frames * 1498,
                other: frames / 10,
            },
        );
    }
    script.apply(&mut state);
    apply_snapshot(&mut state, &classroom_snapshot());
    state.view.selected = Selection::Conn(id(1));
    assert_eq!(state.conns[1].to_proxy2.frames, 2 + 1000);
    assert_eq!(state.counters.events_sampled, 1650 + 165);
    assert_snapshot!(screen(100, 10, |f| trace::render(
        f,
        f.area(),
        &state,
        id(1)
    )));
    assert_snapshot!(screen(100, 10, |f| ladder::render(
        f,
        f.area(),
        &state,
        id(1)
    )));
}

/// Step mode: the held frames replace the log, in order, the chosen one marked; Tab moves the
/// choice, `x` drops the chosen one and `d` copies it, `.` lets the oldest go.
#[test]
fn step_mode_lists_the_held_frames_and_keys_act_on_the_chosen_one() {
    use tunlab::event::{FrameSummary, Preview};
    use tunlab::lab::HeldView;
    use tunlab::topology::LinkDirection;
    use tunlab::tui::state::HoldView;
    use tunlab::wire::FrameKind;
    let held = |id: u64, direction, kind, conn: u16, payload: &[u8], copy| HeldView {
        id,
        direction,
        frame: FrameSummary {
            kind,
            id: ConnId::new(conn),
            wire_len: 2 + payload.len(),
            payload_len: payload.len(),
            preview: Preview::of(payload),
            numbers: tunlab::event::FrameNumbers::None,
            destination: None,
        },
        copy,
    };
    let mut state = classroom_state();
    state.set_hold(HoldView {
        holding: true,
        frames: vec![
            held(
                4,
                LinkDirection::ToProxy2,
                FrameKind::Data,
                1,
                b"adi\xc3\xb3s\n",
                false,
            ),
            held(
                5,
                LinkDirection::ToProxy2,
                FrameKind::Data,
                1,
                b"adi\xc3\xb3s\n",
                true,
            ),
            held(7, LinkDirection::ToProxy1, FrameKind::Close, 1, b"", false),
        ],
    });
    let key = |code| KeyEvent::new(code, KeyModifiers::NONE);
    assert_eq!(
        handle_key(&mut state, key(KeyCode::Char('.'))),
        Some(Command::ReleaseNext)
    );
    assert_eq!(handle_key(&mut state, key(KeyCode::Tab)), None);
    assert_eq!(handle_key(&mut state, key(KeyCode::Tab)), None);
    assert_eq!(
        handle_key(&mut state, key(KeyCode::Char('x'))),
        Some(Command::DropHeld(7))
    );
    assert_eq!(
        handle_key(&mut state, key(KeyCode::Char('d'))),
        Some(Command::DuplicateHeld(7))
    );
    assert_eq!(
        handle_key(&mut state, key(KeyCode::Char('h'))),
        Some(Command::ToggleHold)
    );
    let wide = screen(100, 30, |f| render::draw(f, &state));
    assert!(wide.contains(" 3 p2→p1 X1"), "{wide}");
    assert!(wide.contains("HELD 3"), "{wide}");
    assert_snapshot!("step_mode_100x30", wide);
    let narrow = screen(80, 24, |f| render::draw(f, &state));
    assert!(narrow.contains("Link held"), "{narrow}");
    assert_snapshot!("step_mode_80x24", narrow);
}

#[test]
fn step_keys_say_so_when_the_link_is_not_held() {
    let mut state = classroom_state();
    let key = |code| KeyEvent::new(code, KeyModifiers::NONE);
    for code in [
        KeyCode::Char('.'),
        KeyCode::Char('x'),
        KeyCode::Char('d'),
        KeyCode::Tab,
    ] {
        assert_eq!(handle_key(&mut state, key(code)), None);
        assert!(
            state.log.back().unwrap().text.contains("h holds it"),
            "{code:?}"
        );
    }
}

/// `--play`: the step list in the log's place (done ✓, next ▶), the held link beside it while
/// a step holds it, and at the end every expectation ticked or crossed.
#[test]
fn play_shows_the_steps_and_then_the_verdicts() {
    use tunlab::tui::state::{HoldView, PlayView};
    let mut state = classroom_state();
    state.play = Some(PlayView {
        name: "lost echo".into(),
        steps: vec![
            "line 13  hold the link (step mode)".into(),
            "line 16  start 1 client".into(),
            "line 20  release the first C frame held".into(),
            "line 24  release the first OK frame p2→p1 held".into(),
            "line 44  drop the first D frame of id 0 p2→p1 held".into(),
        ],
        done: 3,
        waiting: Some(3),
        every: None,
        verdicts: None,
    });
    state.set_hold(HoldView {
        holding: true,
        frames: Vec::new(),
    });
    let stepping = screen(100, 30, |f| render::draw(f, &state));
    assert!(stepping.contains("lost echo · step 4 of 5"), "{stepping}");
    assert!(stepping.contains("✓  3 line 20"), "{stepping}");
    assert!(stepping.contains("▶  4 line 24"), "{stepping}");
    assert!(stepping.contains("Link held"), "{stepping}");
    assert_snapshot!("play_stepping_100x30", stepping);

    state.set_hold(HoldView::default());
    if let Some(play) = state.play.as_mut() {
        play.done = 5;
        play.waiting = None;
        play.verdicts = Some(vec![
            (
                true,
                "the echo of hola was dropped by hand — 1 dropped".into(),
            ),
            (
                false,
                "echo intact (client 1) — client 1 got 8 of 12 bytes back".into(),
            ),
        ]);
    }
    let end = screen(80, 24, |f| render::draw(f, &state));
    assert!(end.contains("FAILED: 1 of 2 expectations hold"), "{end}");
    assert!(
        end.contains("✓ the echo of hola") && end.contains("✗ echo intact"),
        "{end}"
    );
    assert_snapshot!("play_verdicts_80x24", end);
}

fn thousands_state() -> TuiState {
    let mut state = new_extended_state(100);
    thousands().apply(&mut state);
    state
}

/// 3,012 connections in an extended mode: the list sums them up in its title and shows the
/// rows around the selected one.
#[test]
fn connections_list_of_thousands() {
    let mut state = thousands_state();
    state.view.selected = Selection::Conn(id(1_500));
    assert_snapshot!(screen(44, 14, |f| connections::render_list(
        f,
        f.area(),
        &state
    )));
}

/// The grid shows the panels that fit, around the selected connection, and says which.
#[test]
fn connections_grid_of_thousands() {
    let mut state = thousands_state();
    state.view.selected = Selection::Conn(id(2_999));
    assert_snapshot!(screen(100, 26, |f| grid::render(f, f.area(), &state)));
}

/// The whole large screen with thousands of connections stays readable.
#[test]
fn whole_screen_180x52_with_thousands() {
    let mut state = thousands_state();
    state.view.selected = Selection::Conn(id(102));
    assert_snapshot!(screen(180, 52, |f| render::draw(f, &state)));
}

/// `:` then digits and Enter selects that id; an id not in use lands on the nearest one; an
/// id the mode does not have says so; Esc gives up. The prompt shows in the status line.
#[test]
fn colon_jumps_to_an_id() {
    let mut state = thousands_state();
    for code in [
        KeyCode::Char(':'),
        KeyCode::Char('2'),
        KeyCode::Char('9'),
        KeyCode::Char('9'),
    ] {
        assert_eq!(handle_key(&mut state, key(code)), None);
    }
    assert_eq!(state.view.jump.as_deref(), Some("299"));
    assert_snapshot!(
        "colon_jump_prompt",
        screen(100, 2, |f| status::render(f, f.area(), &state, false))
    );
    handle_key(&mut state, key(KeyCode::Char('9')));
    handle_key(&mut state, key(KeyCode::Enter));
    assert_eq!(state.view.selected, Selection::Conn(id(2_999)));
    assert_eq!(state.view.jump, None);
    // Ids 200-239 were closed, and their views kept: they are still there to look at.
    for code in [':', '2', '2', '0'].map(KeyCode::Char) {
        handle_key(&mut state, key(code));
    }
    handle_key(&mut state, key(KeyCode::Enter));
    assert_eq!(state.view.selected, Selection::Conn(id(220)));
    // 5000 was never used: the nearest listed is 3011 (the last one).
    for code in [':', '5', '0', '0', '0'].map(KeyCode::Char) {
        handle_key(&mut state, key(code));
    }
    handle_key(&mut state, key(KeyCode::Enter));
    assert_eq!(state.view.selected, Selection::Conn(id(3_011)));
    for code in [':', '9', '9', '9', '9', '9'].map(KeyCode::Char) {
        handle_key(&mut state, key(code));
    }
    handle_key(&mut state, key(KeyCode::Enter));
    assert_eq!(state.view.selected, Selection::Conn(id(3_011)));
    let last = state.log.iter().last().map(|l| l.text.clone()).unwrap();
    assert!(last.contains("ids 0-65535"), "{last}");
    handle_key(&mut state, key(KeyCode::Char(':')));
    handle_key(&mut state, key(KeyCode::Char('1')));
    handle_key(&mut state, key(KeyCode::Esc));
    assert_eq!(state.view.jump, None);
    assert_eq!(state.view.selected, Selection::Conn(id(3_011)));
    // `[` and `]` move by 20 rows.
    handle_key(&mut state, key(KeyCode::Char('[')));
    let twenty_up = state.conns.iter().rev().nth(20).map(|c| c.id).unwrap();
    assert_eq!(state.view.selected, Selection::Conn(twenty_up));
}
