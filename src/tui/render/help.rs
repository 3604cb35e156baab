//! `?`: every key, drawn over the screen.

use ratatui::prelude::*;
use ratatui::widgets::{Block, Clear, Paragraph};

use crate::tui::state::TuiState;

/// Every key the lab answers to, with what it does: the one list both the help and the
/// README are written from.
pub const KEYS: &[(&str, &str)] = &[
    (
        "a",
        "add an echo client (it connects to proxy1 and gets the lowest free id)",
    ),
    (
        "↑ ↓  j k",
        "select a connection id, or a client waiting for one",
    ),
    ("0-9", "select that connection id"),
    (
        "s",
        "send the simple message \"hola mundo\" from the selected client",
    ),
    (
        "S",
        "send \"hola mundo\" from every client that is still connected",
    ),
    (
        "m",
        "type a message for the selected client (Enter sends, Esc cancels)",
    ),
    ("f", "close the selected client with FIN (shutdown)"),
    ("r", "abort the selected client with RST (SO_LINGER 0)"),
    ("p", "stop proxy2, or start it again"),
    ("e", "stop the echo server, or start it again"),
    ("+ -", "link loss up or down by 10 points, both directions"),
    ("b", "blackhole the link (drop everything), or stop"),
    ("n", "back to a clear link: no loss, no delay, nothing"),
    ("h", "hold the link (step mode); again: let it all flow"),
    (".", "step mode: let the oldest held frame cross"),
    ("Tab", "step mode: choose a held frame"),
    (
        "x",
        "step mode: drop the chosen held frame (it never crosses)",
    ),
    ("d", "step mode: hold a copy right behind the chosen frame"),
    ("l", "toggle the ladder diagram of the selected id"),
    ("space", "pause or resume the traces (nothing is lost)"),
    (
        "PgUp PgDn Home End",
        "scroll the trace or ladder (End follows new rows)",
    ),
    ("c", "clear traces, ladders and the log"),
    ("?", "show or hide this help (Esc hides it)"),
    ("q  Ctrl-C", "quit: stop every role, restore the terminal"),
];

pub fn render(frame: &mut Frame<'_>, area: Rect, _state: &TuiState) {
    let key_width = KEYS
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    let mut lines: Vec<Line> = KEYS
        .iter()
        .map(|(key, what)| {
            Line::from(vec![
                Span::styled(format!(" {key:<key_width$}  "), Style::new().cyan().bold()),
                Span::raw(*what),
            ])
        })
        .collect();
    lines.push(Line::raw(""));
    lines.push(Line::styled(
        " Traces show every frame once, when it is sent: time since start, direction,",
        Style::new().dark_gray(),
    ));
    lines.push(Line::styled(
        " type+id, length and payload with non-printable bytes escaped (\\n, \\xNN).",
        Style::new().dark_gray(),
    ));
    let width = (lines.iter().map(Line::width).max().unwrap_or(0) as u16 + 2).min(area.width);
    let height = (lines.len() as u16 + 2).min(area.height);
    let popup = area.centered(Constraint::Length(width), Constraint::Length(height));
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines).block(
            Block::bordered()
                .border_style(Style::new().cyan())
                .title(" Keys · ? or Esc closes "),
        ),
        popup,
    );
}
