//! `?`: every key, drawn over the screen.

use ratatui::prelude::*;
use ratatui::widgets::{Block, Clear, Paragraph};

use crate::tui::state::TuiState;

/// Every key the lab answers to, with what it does, the most needed first (a short terminal
/// shows the first ones): the one list both the help and the README are written from.
pub const KEYS: &[(&str, &str)] = &[
    ("q  Ctrl-C", "quit: stop every role, restore the terminal"),
    ("?", "show or hide this help (Esc hides it)"),
    ("a", "add an echo client (it gets the lowest free id)"),
    (
        "↑ ↓  j k",
        "select a connection id, or a client waiting for one",
    ),
    ("0-9", "select that connection id"),
    (":", "jump to an id: type it, then Enter (Esc cancels)"),
    ("[ ]", "move the selection 20 rows up or down"),
    ("s", "send \"hola mundo\" from the selected client"),
    ("S", "send \"hola mundo\" from every connected client"),
    (
        "L",
        "send 3000 B from the selected client: several D frames",
    ),
    (
        "t",
        "chatter: clients speak on their own, in turn (--chatter)",
    ),
    ("m", "type a message for the selected client (Enter sends)"),
    ("f", "close the selected client with FIN (shutdown)"),
    ("r", "abort the selected client with RST (SO_LINGER 0)"),
    ("p", "stop proxy2, or start it again"),
    ("e", "stop the echo server, or start it again"),
    ("+ -", "link loss up or down by 10 points, both directions"),
    ("b", "blackhole the link (drop everything), or stop"),
    ("n", "back to a clear link: no loss, no delay, nothing"),
    ("h", "hold the link (step mode); again: let it all flow"),
    (
        ". Tab x d",
        "step mode: release the oldest, choose, drop, duplicate",
    ),
    ("l", "toggle the ladder diagram of the selected id"),
    ("g", "time-sequence graph of the id: p1→p2, p2→p1, off"),
    ("space", "pause or resume the traces (nothing is lost)"),
    (
        "PgUp PgDn Home End",
        "scroll the trace or ladder (End follows new rows)",
    ),
    ("c", "clear traces, ladders and the log"),
];

/// The keys, then a note on traces when there is room. A terminal too short for one column
/// of keys gets two, side by side; too narrow for a description, it wraps at a word.
pub fn render(frame: &mut Frame<'_>, area: Rect, _state: &TuiState) {
    let key_width = KEYS
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    let note = [
        " Traces show every frame once, when it is sent: time since start, direction,",
        " type+id, length and payload (printable text as is, other bytes \\xNN).",
    ];
    let entry = |(key, what): &(&'static str, &'static str)| -> Line<'static> {
        Line::from(vec![
            Span::styled(format!(" {key:<key_width$}  "), Style::new().cyan().bold()),
            Span::raw(*what),
        ])
    };
    let rows_available = area.height.saturating_sub(2) as usize;
    let column_width = KEYS.iter().map(|k| entry(k).width()).max().unwrap_or(0) + 1;
    let two_fit = 2 * column_width + 2 <= area.width as usize;
    let columns = if KEYS.len() <= rows_available || !two_fit {
        1
    } else {
        2
    };
    let rows = KEYS.len().div_ceil(columns);
    let mut lines: Vec<Line> = (0..rows)
        .map(|row| {
            let mut spans = Vec::new();
            for column in 0..columns {
                if let Some(key) = KEYS.get(column * rows + row) {
                    let line = entry(key);
                    let pad = column_width.saturating_sub(line.width());
                    spans.extend(line.spans);
                    if column + 1 < columns {
                        spans.push(Span::raw(" ".repeat(pad)));
                    }
                }
            }
            Line::from(spans)
        })
        .collect();
    if lines.len() > rows_available {
        // Too short even for the keys: as many as fit, and a line saying what is left out.
        let kept = rows_available.saturating_sub(1);
        let hidden = lines.len() - kept;
        lines.truncate(kept);
        lines.push(Line::styled(
            format!(" … {hidden} more keys: a taller terminal shows them (and README lists them)"),
            Style::new().dark_gray(),
        ));
    } else if lines.len() + 1 + note.len() <= rows_available {
        lines.push(Line::raw(""));
        lines.extend(
            note.iter()
                .map(|n| Line::styled(*n, Style::new().dark_gray())),
        );
    }
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
