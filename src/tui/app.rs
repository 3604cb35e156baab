//! The TUI's keys and commands: a key becomes a [`Command`] on the [`Lab`] (pure, so tests
//! script keys), carried out with the same calls a script uses; and [`run`], which sets up
//! the lab and the terminal, runs the [`ScreenLoop`] and tears everything down.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use tokio::sync::mpsc;

use super::screen_loop::ScreenLoop;
use super::state::{MonitorView, Selection, TuiState};
use super::terminal::{self, InputReader, QuitSignals};
use crate::capture::{CaptureWriter, TcpCapture};
use crate::cli::LabArgs;
use crate::event::{ClientId, CloseKind, EventSink, Level};
use crate::lab::{Lab, LabConfig};
use crate::monitor::{ConnTable, Monitor, MonitorSources};
use crate::roles::echo_client::SIMPLE_MESSAGE;
use crate::topology::Role;
use crate::wire::ConnId;

/// Redraws per second, at most.
pub const FRAMES_PER_SECOND: u64 = 30;
/// Events the roles may queue for the UI before new ones are dropped (and counted).
pub const EVENT_CAPACITY: usize = 64 * 1024;
/// Rows PgUp/PgDn move the detail pane.
const PAGE: usize = 10;

/// What a key asks the lab to do. The loop carries it out with the same [`Lab`] calls a
/// script uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    AddClient,
    Send {
        client: ClientId,
        bytes: Vec<u8>,
    },
    /// The simple message from every client still connected.
    SendAll,
    Close {
        client: ClientId,
        how: CloseKind,
    },
    /// Stop the role if it runs, start it if it does not.
    ToggleRole(Role),
    /// Change the link emulator, both directions at once.
    Link(LinkChange),
    /// Step mode on or off.
    ToggleHold,
    /// Clients talking on their own, on or off.
    ToggleChatter,
    /// A [`LARGE_MESSAGE`]-byte message from one client: several `D` frames.
    SendLarge(ClientId),
    /// Let the oldest held frame cross.
    ReleaseNext,
    /// Drop a held frame (by its hold id).
    DropHeld(u64),
    /// Hold a copy right behind a held frame.
    DuplicateHeld(u64),
    Quit,
}

/// What the link keys do. Finer settings (delay, per direction…) are for flags and scenarios.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkChange {
    /// Loss up by [`LOSS_STEP`] percentage points.
    MoreLoss,
    /// Loss down by [`LOSS_STEP`] percentage points.
    LessLoss,
    /// Drop everything, or stop dropping everything.
    ToggleBlackhole,
    /// Back to a clear link.
    Clear,
}

/// Bytes the `L` key sends: more than two `D` frames' worth in every mode (at most 1498
/// bytes each in classic, 1497 in stop-and-wait, 1488 in the extended modes).
pub const LARGE_MESSAGE: usize = 3000;

/// How often clients chatter when `t` turns it on without `--chatter`.
pub const DEFAULT_CHATTER: Duration = Duration::from_secs(1);

/// The large message: printable bytes in a repeating pattern, so traces stay readable.
pub fn large_message() -> Vec<u8> {
    (0..LARGE_MESSAGE).map(|i| b'!' + (i % 94) as u8).collect()
}

/// How much one press of `+` or `-` changes the loss.
pub const LOSS_STEP: f64 = 10.0;

/// Handles one key: changes what is shown, and returns what the lab should do, if anything.
/// Pure, so a test can script keys and look at each screen.
pub fn handle_key(state: &mut TuiState, key: KeyEvent) -> Option<Command> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    if ctrl && matches!(key.code, KeyCode::Char('c' | 'd')) {
        return Some(Command::Quit);
    }
    if let Some(text) = state.view.input.as_mut() {
        match key.code {
            KeyCode::Esc => state.view.input = None,
            KeyCode::Enter => {
                if text.is_empty() {
                    state.view.input = None;
                    state.note(Level::Warn, "empty message: nothing sent");
                    return None;
                }
                // A bad escape keeps the text open for fixing, and says what is wrong.
                let bytes = match parse_message(text) {
                    Ok(bytes) => bytes,
                    Err(why) => {
                        state.note(Level::Warn, format!("not sent: {why}"));
                        return None;
                    }
                };
                state.view.input = None;
                let client = selected_client(state)?;
                return Some(Command::Send { client, bytes });
            }
            KeyCode::Backspace => {
                text.pop();
            }
            KeyCode::Char(c) if !ctrl => text.push(c),
            _ => {}
        }
        return None;
    }
    if state.view.jump.is_some() {
        jump_key(state, key.code);
        return None;
    }
    if state.view.show_help {
        match key.code {
            KeyCode::Char('q') => return Some(Command::Quit),
            KeyCode::Char('?') | KeyCode::Esc | KeyCode::Enter => state.view.show_help = false,
            _ => {}
        }
        return None;
    }
    match key.code {
        KeyCode::Char('q') => return Some(Command::Quit),
        KeyCode::Char('?') => state.view.show_help = true,
        KeyCode::Char('a') => return Some(Command::AddClient),
        KeyCode::Char('s') => {
            let client = selected_client(state)?;
            return Some(Command::Send {
                client,
                bytes: SIMPLE_MESSAGE.to_vec(),
            });
        }
        KeyCode::Char('S') => return Some(Command::SendAll),
        KeyCode::Char('m') => {
            selected_client(state)?;
            state.view.input = Some(String::new());
        }
        KeyCode::Char('f') => {
            let client = selected_client(state)?;
            return Some(Command::Close {
                client,
                how: CloseKind::Fin,
            });
        }
        KeyCode::Char('r') => {
            let client = selected_client(state)?;
            return Some(Command::Close {
                client,
                how: CloseKind::Rst,
            });
        }
        KeyCode::Char('p') => return Some(Command::ToggleRole(Role::Proxy2)),
        KeyCode::Char('e') => return Some(Command::ToggleRole(Role::EchoServer)),
        KeyCode::Char('+') => return Some(Command::Link(LinkChange::MoreLoss)),
        KeyCode::Char('-') => return Some(Command::Link(LinkChange::LessLoss)),
        KeyCode::Char('b') => return Some(Command::Link(LinkChange::ToggleBlackhole)),
        KeyCode::Char('n') => return Some(Command::Link(LinkChange::Clear)),
        KeyCode::Char('h') => return Some(Command::ToggleHold),
        KeyCode::Char('t') => return Some(Command::ToggleChatter),
        KeyCode::Char('L') => {
            let client = selected_client(state)?;
            return Some(Command::SendLarge(client));
        }
        KeyCode::Char('.' | 'x' | 'd') | KeyCode::Tab if !state.hold.holding => {
            state.note(Level::Warn, "the link is not held: h holds it (step mode)");
        }
        KeyCode::Char('.') => return Some(Command::ReleaseNext),
        KeyCode::Tab => {
            // Cycle the choice through the held frames, oldest first.
            let frames = &state.hold.frames;
            let next = match state.chosen_held() {
                Some(chosen) => {
                    let at = frames.iter().position(|f| f.id == chosen.id).unwrap_or(0);
                    frames.get((at + 1) % frames.len().max(1)).map(|f| f.id)
                }
                None => None,
            };
            state.view.held_choice = next;
        }
        KeyCode::Char('x' | 'd') => {
            let Some(chosen) = state.chosen_held() else {
                state.note(Level::Warn, "nothing is held yet");
                return None;
            };
            let id = chosen.id;
            return Some(if key.code == KeyCode::Char('x') {
                Command::DropHeld(id)
            } else {
                Command::DuplicateHeld(id)
            });
        }
        KeyCode::Char('l') => {
            state.view.show_ladder = !state.view.show_ladder;
            state.view.graph = None;
            state.view.scroll = 0;
        }
        KeyCode::Char('g') => {
            // proxy1's data, then proxy2's (the echo), then back to the trace or ladder.
            state.view.graph = match state.view.graph {
                None => Some(crate::topology::LinkDirection::ToProxy2),
                Some(crate::topology::LinkDirection::ToProxy2) => {
                    Some(crate::topology::LinkDirection::ToProxy1)
                }
                Some(crate::topology::LinkDirection::ToProxy1) => None,
            };
        }
        KeyCode::Char(' ') => {
            state.set_paused(!state.view.paused);
            let what = if state.view.paused {
                "traces paused: what arrives meanwhile is kept, and shows on resume"
            } else {
                "traces resumed, with everything that arrived meanwhile"
            };
            state.note(Level::Info, what);
        }
        KeyCode::Char('c') => state.clear(),
        KeyCode::Char(digit @ '0'..='9') => {
            let id = digit as usize - '0' as usize;
            if id < state.conns.ids() {
                select(state, Selection::Conn(ConnId::new(id as u16)));
            }
        }
        KeyCode::Char(':') => state.view.jump = Some(String::new()),
        KeyCode::Up | KeyCode::Char('k') => move_selection(state, -1),
        KeyCode::Down | KeyCode::Char('j') => move_selection(state, 1),
        KeyCode::Char('[') => move_selection(state, -LIST_PAGE),
        KeyCode::Char(']') => move_selection(state, LIST_PAGE),
        KeyCode::PageUp => state.view.scroll += PAGE,
        KeyCode::PageDown => state.view.scroll = state.view.scroll.saturating_sub(PAGE),
        KeyCode::Home => state.view.scroll = detail_rows(state),
        KeyCode::End => state.view.scroll = 0,
        KeyCode::Esc => state.view.scroll = 0,
        _ => {}
    }
    // Scrolling further back than the pane holds means nothing.
    state.view.scroll = state.view.scroll.min(detail_rows(state));
    None
}

fn select(state: &mut TuiState, selection: Selection) {
    if state.view.selected != selection {
        state.view.selected = selection;
        state.view.scroll = 0;
    }
}

/// Rows `[` and `]` move the selection in the connection list.
const LIST_PAGE: isize = 20;

fn move_selection(state: &mut TuiState, step: isize) {
    let rows = state.rows();
    if rows.is_empty() {
        return;
    }
    let current = rows
        .iter()
        .position(|r| *r == state.view.selected)
        .unwrap_or(0);
    let next = current.saturating_add_signed(step).min(rows.len() - 1);
    select(state, rows[next]);
}

/// A key while `:` asks for an id: digits, Backspace, Enter to go, Esc to give up. An id
/// with no connection (never used, or closed long ago) selects the nearest one listed.
fn jump_key(state: &mut TuiState, code: KeyCode) {
    let Some(typed) = state.view.jump.as_mut() else {
        return;
    };
    match code {
        KeyCode::Char(digit @ '0'..='9') if typed.len() < 5 => typed.push(digit),
        KeyCode::Backspace => {
            typed.pop();
        }
        KeyCode::Esc => state.view.jump = None,
        KeyCode::Enter => {
            let typed = state.view.jump.take().unwrap_or_default();
            let Ok(n) = typed.parse::<usize>() else {
                return;
            };
            let ids = state.conns.ids();
            if n >= ids {
                state.note(
                    Level::Warn,
                    format!("no connection {n}: this wire mode has ids 0-{}", ids - 1),
                );
                return;
            }
            let id = ConnId::new(n as u16);
            if state.conns.get(id).is_some() {
                select(state, Selection::Conn(id));
            } else if let Some(near) = state.conns.nearest(id) {
                state.note(
                    Level::Info,
                    format!("connection {id} is not in use: connection {near} is the nearest"),
                );
                select(state, Selection::Conn(near));
            } else {
                state.note(Level::Info, format!("connection {id} is not in use"));
            }
        }
        _ => {}
    }
}

/// Rows in the selected id's trace or ladder.
fn detail_rows(state: &TuiState) -> usize {
    match state.view.selected {
        Selection::Conn(id) => state.conn(id).map_or(0, |c| {
            if state.view.show_ladder {
                state.shown(&c.ladder)
            } else {
                state.shown(&c.trace)
            }
        }),
        Selection::Waiting(_) => 0,
    }
}

/// The lab client behind the selected row; says why in the log when there is none.
fn selected_client(state: &mut TuiState) -> Option<ClientId> {
    let addr = match state.selected_client_addr() {
        Some(addr) => addr,
        None => {
            let text = match state.view.selected {
                Selection::Conn(id) => {
                    format!(
                        "connection {id} is free: select an open one (↑↓, 0-9) or add a client (a)"
                    )
                }
                Selection::Waiting(addr) => format!("{addr} is no longer waiting"),
            };
            state.note(Level::Warn, text);
            return None;
        }
    };
    match state.client_at(addr) {
        Some(client) => Some(client),
        None => {
            state.note(
                Level::Warn,
                format!("{addr} is not one of the lab's clients: the lab can only drive its own"),
            );
            None
        }
    }
}

/// Turns what was typed into bytes: `\n`, `\r`, `\t`, `\\` and `\xNN` are escapes, so any
/// byte can be sent from the keyboard; anything else is taken literally (as UTF-8). Any
/// other backslash (`\xZZ`, `\q`, a `\` at the end) is refused with the reason, so a typo
/// is never sent as if it were meant.
pub fn parse_message(text: &str) -> Result<Vec<u8>, String> {
    const HOW: &str = "escapes: \\n \\r \\t \\\\ \\xNN";
    let mut out = Vec::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        match chars.next() {
            Some('n') => out.push(b'\n'),
            Some('r') => out.push(b'\r'),
            Some('t') => out.push(b'\t'),
            Some('\\') => out.push(b'\\'),
            Some('x') => {
                let hex: String = chars.clone().take(2).collect();
                match u8::from_str_radix(&hex, 16) {
                    Ok(byte) if hex.len() == 2 && hex.chars().all(|c| c.is_ascii_hexdigit()) => {
                        out.push(byte);
                        chars.nth(1);
                    }
                    _ => return Err(format!("\\x{hex} is not a byte: {HOW}")),
                }
            }
            Some(other) => return Err(format!("\\{other} is not an escape: {HOW}")),
            None => return Err(format!("a message cannot end with a lone \\: {HOW}")),
        }
    }
    Ok(out)
}

/// Carries out a command on the lab and notes the outcome in the log. True means quit.
pub async fn execute(lab: &mut Lab, state: &mut TuiState, command: Command) -> bool {
    match command {
        Command::Quit => return true,
        Command::AddClient => match lab.add_client().await {
            // The client's own "connected" line follows.
            Ok(_) => {}
            Err(e) => state.note(Level::Error, format!("cannot add a client: {e}")),
        },
        Command::Send { client, bytes } => send(lab, state, client, bytes),
        Command::SendAll => {
            let mut sent = 0;
            for client in lab.client_ids() {
                let live = lab
                    .client_status(client)
                    .is_ok_and(|status| status.ended.is_none());
                if live && lab.client_send(client, SIMPLE_MESSAGE.to_vec()).is_ok() {
                    sent += 1;
                }
            }
            state.note(
                Level::Info,
                format!(
                    "{sent} clients send \"{}\"",
                    String::from_utf8_lossy(SIMPLE_MESSAGE)
                ),
            );
        }
        Command::Close { client, how } => {
            let what = match how {
                CloseKind::Fin => "cannot close with FIN",
                CloseKind::Rst => "cannot abort with RST",
            };
            // On success the client's own "closed" line says it.
            if let Err(e) = lab.client_close(client, how) {
                state.note(Level::Warn, format!("client {client} {what}: {e}"));
            }
        }
        Command::ToggleRole(role) => {
            let result = if lab.is_running(role) {
                lab.stop_role(role).await
            } else {
                lab.start_role(role).await
            };
            if let Err(e) = result {
                state.note(Level::Error, e.to_string());
            }
            state.set_running(role, lab.is_running(role));
        }
        Command::Link(change) => change_link(lab, change),
        // The lab logs the change; the held pane shows what is held.
        Command::ToggleHold => lab.set_hold(!lab.is_holding()),
        Command::SendLarge(client) => {
            let bytes = large_message();
            match lab.client_send(client, bytes) {
                Ok(()) => state.note(
                    Level::Info,
                    format!(
                        "client {client} sends {LARGE_MESSAGE} bytes: more than a D frame holds ({}), so several cross",
                        lab.config().mode.max_payload()
                    ),
                ),
                Err(e) => state.note(Level::Warn, e.to_string()),
            }
        }
        Command::ToggleChatter => {
            state.chatter = match state.chatter {
                Some(_) => {
                    state.note(Level::Info, "chatter off");
                    None
                }
                None => {
                    let every = state.chatter_interval.unwrap_or(DEFAULT_CHATTER);
                    state.note(
                        Level::Info,
                        format!(
                            "chatter on: a client speaks every {}, in turn",
                            humantime::format_duration(every)
                        ),
                    );
                    Some(every)
                }
            };
        }
        Command::ReleaseNext => match lab.release_held(None) {
            Some(frame) => state.note(
                Level::Info,
                format!(
                    "released {} {}",
                    frame.direction.arrow(),
                    state.held_label(&frame)
                ),
            ),
            None => state.note(Level::Warn, "nothing is held yet"),
        },
        // A drop is traced (and laddered) from the lab's own event.
        Command::DropHeld(id) => {
            if lab.drop_held(id).is_none() {
                state.note(Level::Warn, "that frame is no longer held");
            }
        }
        Command::DuplicateHeld(id) => match lab.duplicate_held(id) {
            Some(copy) => state.note(
                Level::Info,
                format!(
                    "copied {} {}: the copy is held right behind it",
                    copy.direction.arrow(),
                    state.held_label(&copy)
                ),
            ),
            None => state.note(Level::Warn, "that frame is no longer held"),
        },
    }
    state.set_hold(hold_view(lab));
    false
}

/// What the link holds now, for the screen.
pub fn hold_view(lab: &Lab) -> super::state::HoldView {
    super::state::HoldView {
        holding: lab.is_holding(),
        frames: lab.held_frames(),
    }
}

fn change_link(lab: &Lab, change: LinkChange) {
    use crate::impair::{DirectionSettings, Percent};
    let mut settings = lab.link_settings();
    for direction in [&mut settings.to_proxy2, &mut settings.to_proxy1] {
        let loss = direction.loss.get();
        match change {
            LinkChange::MoreLoss => {
                direction.loss =
                    Percent::new((loss + LOSS_STEP).min(100.0)).unwrap_or(Percent::HUNDRED);
            }
            LinkChange::LessLoss => {
                direction.loss = Percent::new((loss - LOSS_STEP).max(0.0)).unwrap_or(Percent::ZERO);
            }
            LinkChange::ToggleBlackhole => direction.blackhole = !direction.blackhole,
            LinkChange::Clear => *direction = DirectionSettings::default(),
        }
    }
    // The lab logs the new settings of each direction; the log pane shows them.
    lab.set_link(settings);
}

fn send(lab: &Lab, state: &mut TuiState, client: ClientId, bytes: Vec<u8>) {
    let shown = crate::describe::escape_bytes(&bytes);
    let len = bytes.len();
    match lab.client_send(client, bytes) {
        Ok(()) => state.note(
            Level::Info,
            format!("client {client} sends {len} bytes: \"{shown}\""),
        ),
        Err(e) => state.note(Level::Warn, e.to_string()),
    }
}

/// Clients talking on their own: every interval, the next live client (in turn) sends a line.
#[derive(Default)]
pub struct Chatter {
    next_at: Option<tokio::time::Instant>,
    /// The last client that spoke.
    last: ClientId,
    lines: u64,
}

impl Chatter {
    /// Resolves when the next line is due; never while chatter is off.
    pub async fn due(&mut self, every: Option<Duration>) {
        let Some(every) = every else {
            self.next_at = None;
            return std::future::pending().await;
        };
        let at = *self
            .next_at
            .get_or_insert_with(|| tokio::time::Instant::now() + every);
        tokio::time::sleep_until(at).await;
        self.next_at = Some(at + every);
    }

    /// The next live client after the last one says a numbered line.
    pub fn speak(&mut self, lab: &Lab, state: &mut TuiState) {
        let live: Vec<ClientId> = lab
            .client_ids()
            .into_iter()
            .filter(|&c| lab.client_status(c).is_ok_and(|s| s.ended.is_none()))
            .collect();
        let Some(&client) = live
            .iter()
            .find(|&&c| c > self.last)
            .or_else(|| live.first())
        else {
            return;
        };
        self.last = client;
        self.lines += 1;
        let line = format!("chatter {} from client {client}\n", self.lines);
        if let Err(e) = lab.client_send(client, line.into_bytes()) {
            state.note(Level::Warn, e.to_string());
        }
    }
}

/// Runs the lab with the TUI until the person quits or a signal arrives.
/// `config` is the lab the command line asks for (less its capture tap, added here); `tcp` is
/// the packet socket `--capture-tcp` opened (the permission already checked).
pub async fn run(
    args: &LabArgs,
    config: LabConfig,
    tcp: Option<TcpCapture>,
) -> anyhow::Result<ExitCode> {
    let (events, rx) = EventSink::channel(EVENT_CAPACITY);
    let events = crate::tui::state::events_for_tui(events);
    // With a monitor on, its connection table sees every event before the screen's channel
    // could drop one (or the sampling count it instead).
    let monitor_plan = args.monitor.plan();
    let conns = monitor_plan.is_on().then(|| Arc::new(ConnTable::new()));
    let events = match &conns {
        Some(conns) => events.with_observer(conns.clone()),
        None => events,
    };
    // A capture directory that cannot be written is an error before the screen is taken over.
    let mut capture = match args.capture.plan() {
        Some(plan) => Some(CaptureWriter::start(plan, events.clone())?),
        None => None,
    };
    let config = LabConfig {
        capture: capture.as_ref().map(CaptureWriter::tap),
        ..config
    };
    let mode = config.mode;
    let start = SystemTime::now();
    // Binding errors (a port in use) print as usual, before the screen is taken over.
    let tcp_events = events.clone();
    let mut lab = match Lab::start(config, events).await {
        Ok(lab) => lab,
        Err(e) => {
            if let Some(capture) = capture {
                capture.abandon().await;
            }
            return Err(e);
        }
    };
    if let (Some(capture), Some(tcp)) = (&mut capture, tcp) {
        let addrs = lab.addrs();
        capture.capture_tcp(
            tcp,
            &[addrs.proxy1_tcp.port(), addrs.server.port()],
            tcp_events,
        )?;
    }
    let capture_status = capture.as_ref().map(CaptureWriter::status);
    // Errors (a port in use, no --admin-user) print as usual, before the screen is taken over.
    let monitor = match conns {
        Some(conns) => match Monitor::start(
            &monitor_plan,
            MonitorSources::for_lab(&lab, conns, capture_status.clone()),
        )
        .await
        {
            Ok(monitor) => Some(monitor),
            Err(e) => {
                lab.shutdown().await;
                if let Some(capture) = capture {
                    capture.abandon().await;
                }
                return Err(e);
            }
        },
        None => None,
    };
    let mut state = TuiState::new(start, mode, Some(lab.addrs()));
    state.link.sealed = lab.config().key.is_some();
    if args.netns {
        state.note(Level::Info, crate::netns::NOTICE);
    }
    state.monitor = monitor.as_ref().map(|monitor| MonitorView {
        metrics: monitor.metrics_addr(),
        admin: monitor.admin_addr(),
    });
    // In order, so client N gets id N-1 on a fresh lab.
    if let Err(e) = lab.add_clients(args.clients_to_start(true)).await {
        state.note(Level::Error, format!("cannot add a client: {e}"));
    }
    state.chatter_interval = args.chatter;
    state.chatter = args.chatter;
    let mut signals = QuitSignals::new()?;
    let (screen_terminal, session) = terminal::enter()?;
    let mut input = InputReader::spawn()?;
    // The loop takes the keys; the reader keeps its thread until it is dropped.
    let inputs = std::mem::replace(&mut input.events, mpsc::unbounded_channel().1);
    let mut screen = ScreenLoop::new(screen_terminal, lab, state, rx, inputs, capture_status);
    let outcome = screen.run(signals.recv()).await;
    drop(input);
    drop(session);
    let lab = screen.lab;
    if let Some(monitor) = monitor {
        monitor.stop().await;
    }
    outcome?;
    // Taken once every role has stopped: the totals match the capture frame for frame.
    let snapshot = lab.shutdown_with_totals().await;
    // After the roles have stopped, so every frame they sent is in the file.
    let captured = match capture {
        Some(capture) => Some(capture.finish().await),
        None => None,
    };
    // The terminal may be gone (its window closed): printing must not panic then.
    for panic in terminal::take_other_panics() {
        let _ = writeln!(std::io::stderr(), "{panic}");
    }
    crate::headless::print_totals(&snapshot, captured.as_ref(), "events the screen dropped");
    Ok(ExitCode::SUCCESS)
}
