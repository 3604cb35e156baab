//! The TUI's keys and commands: a key becomes a [`Command`] on the [`Lab`] (pure, so tests
//! script keys), carried out with the same calls a script uses; and [`run`], which sets up
//! the lab and the terminal, runs the [`ScreenLoop`] and tears everything down.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::SystemTime;

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use tokio::sync::mpsc;

use super::screen_loop::ScreenLoop;
use super::state::{MonitorView, Selection, TuiState};
use super::terminal::{self, InputReader, QuitSignals};
use crate::capture::CaptureWriter;
use crate::cli::LabArgs;
use crate::event::{ClientId, CloseKind, EventSink, Level, Role};
use crate::lab::{Lab, LabConfig};
use crate::monitor::{ConnTable, Monitor, MonitorSources};
use crate::roles::echo_client::SIMPLE_MESSAGE;
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

/// How much one press of `+` or `-` changes the loss.
pub const LOSS_STEP: f64 = 10.0;

/// Handles one key: changes what is shown, and returns what the lab should do, if anything.
/// Pure, so a test can script keys and look at each screen.
pub fn handle_key(state: &mut TuiState, key: KeyEvent) -> Option<Command> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    if ctrl && matches!(key.code, KeyCode::Char('c') | KeyCode::Char('d')) {
        return Some(Command::Quit);
    }
    if let Some(text) = state.view.input.as_mut() {
        match key.code {
            KeyCode::Esc => state.view.input = None,
            KeyCode::Enter => {
                let text = state.view.input.take().unwrap_or_default();
                if text.is_empty() {
                    state.note(Level::Warn, "empty message: nothing sent");
                    return None;
                }
                let client = selected_client(state)?;
                return Some(Command::Send {
                    client,
                    bytes: parse_message(&text),
                });
            }
            KeyCode::Backspace => {
                text.pop();
            }
            KeyCode::Char(c) if !ctrl => text.push(c),
            _ => {}
        }
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
        KeyCode::Char('l') => {
            state.view.show_ladder = !state.view.show_ladder;
            state.view.scroll = 0;
        }
        KeyCode::Char(' ') => {
            state.view.paused = !state.view.paused;
            let what = if state.view.paused {
                "traces paused: frames are still counted, not traced"
            } else {
                "traces resumed"
            };
            state.note(Level::Info, what);
        }
        KeyCode::Char('c') => state.clear(),
        KeyCode::Char(digit @ '0'..='9') => {
            let id = digit as usize - '0' as usize;
            if id < state.conns.len() {
                select(state, Selection::Conn(ConnId::new(id as u16)));
            }
        }
        KeyCode::Up | KeyCode::Char('k') => move_selection(state, -1),
        KeyCode::Down | KeyCode::Char('j') => move_selection(state, 1),
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

fn move_selection(state: &mut TuiState, step: isize) {
    let rows = state.rows();
    let current = rows
        .iter()
        .position(|r| *r == state.view.selected)
        .unwrap_or(0);
    let next = current.saturating_add_signed(step).min(rows.len() - 1);
    select(state, rows[next]);
}

/// Rows in the selected id's trace or ladder.
fn detail_rows(state: &TuiState) -> usize {
    match state.view.selected {
        Selection::Conn(id) => state.conn(id).map_or(0, |c| {
            if state.view.show_ladder {
                c.ladder.len()
            } else {
                c.trace.len()
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
/// byte can be sent from the keyboard. Anything else is taken literally (as UTF-8).
pub fn parse_message(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        match chars.peek().copied() {
            Some('n') => out.push(b'\n'),
            Some('r') => out.push(b'\r'),
            Some('t') => out.push(b'\t'),
            Some('\\') => out.push(b'\\'),
            Some('x') => {
                let mut lookahead = chars.clone();
                lookahead.next();
                let hex: String = lookahead.by_ref().take(2).collect();
                match u8::from_str_radix(&hex, 16) {
                    Ok(byte) if hex.len() == 2 => {
                        out.push(byte);
                        chars = lookahead;
                        continue;
                    }
                    _ => {
                        out.push(b'\\');
                        continue;
                    }
                }
            }
            _ => {
                out.push(b'\\');
                continue;
            }
        }
        chars.next();
    }
    out
}

/// Carries out a command on the lab and notes the outcome in the log. True means quit.
pub async fn execute(lab: &mut Lab, state: &mut TuiState, command: Command) -> bool {
    match command {
        Command::Quit => return true,
        Command::AddClient => match lab.add_client().await {
            Ok(client) => state.note(Level::Info, format!("client {client} added")),
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
                CloseKind::Fin => "closes with FIN",
                CloseKind::Rst => "aborts with RST",
            };
            match lab.client_close(client, how) {
                Ok(()) => state.note(Level::Info, format!("client {client} {what}")),
                Err(e) => state.note(Level::Warn, e.to_string()),
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
    }
    false
}

fn change_link(lab: &Lab, change: LinkChange) {
    use crate::impair::{DirectionSettings, Percent};
    let mut settings = lab.link_settings();
    for direction in [&mut settings.to_proxy2, &mut settings.to_proxy1] {
        let loss = direction.loss.get();
        match change {
            LinkChange::MoreLoss => {
                direction.loss =
                    Percent::new((loss + LOSS_STEP).min(100.0)).unwrap_or(Percent::HUNDRED)
            }
            LinkChange::LessLoss => {
                direction.loss = Percent::new((loss - LOSS_STEP).max(0.0)).unwrap_or(Percent::ZERO)
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

/// Runs the lab with the TUI until the person quits or a signal arrives.
pub async fn run(args: &LabArgs) -> anyhow::Result<ExitCode> {
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
    let capture = match args.capture.plan() {
        Some(plan) => Some(CaptureWriter::start(plan, events.clone())?),
        None => None,
    };
    let config = LabConfig {
        capture: capture.as_ref().map(CaptureWriter::tap),
        ..crate::app::lab_config(args)
    };
    let mode = config.mode;
    let start = SystemTime::now();
    // Binding errors (a port in use) print as usual, before the screen is taken over.
    let mut lab = match Lab::start(config, events).await {
        Ok(lab) => lab,
        Err(e) => {
            if let Some(capture) = capture {
                capture.abandon().await;
            }
            return Err(e);
        }
    };
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
    state.monitor = monitor.as_ref().map(|monitor| MonitorView {
        metrics: monitor.metrics_addr(),
        admin: monitor.admin_addr(),
    });
    for _ in 0..args.clients_to_start(true) {
        if let Err(e) = lab.add_client().await {
            state.note(Level::Error, format!("cannot add a client: {e}"));
        }
    }
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
