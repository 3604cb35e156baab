//! The connection list for small and normal terminals: one row per id (in the extended modes,
//! per connection in use or recently closed), then the clients waiting for an id. Large
//! terminals draw [`super::grid`] instead.

use ratatui::prelude::*;
use ratatui::widgets::{Block, Paragraph};

use super::parts::{owner_label, route_label, state_label, thousands};
use super::{border_style, truncate};
use crate::event::ConnState;
use crate::tui::state::{ConnView, Selection, TuiState};

/// Rows the list needs with its border: one per view, one per waiting client, and in the
/// extended modes the summary (or the "no connection yet" line).
pub fn list_height(state: &TuiState) -> u16 {
    let summary = if state.conns.lists_every_id() { 0 } else { 2 };
    // Saturating: thousands of connections are more rows than a u16 counts.
    u16::try_from(state.conns.len() + state.waiting.len() + 2 + summary).unwrap_or(u16::MAX)
}

/// [`owner_label`] for a narrow column: a TCP client from outside the lab on the lab's own
/// host is named by its port alone (`:54792`).
fn short_owner_label(state: &TuiState, conn: &ConnView) -> String {
    let label = owner_label(state, conn);
    match conn.client {
        Some(addr) if state.client_at(addr).is_none() && !label.is_empty() => {
            let same_host = state.proxy1.addr.is_some_and(|p| p.ip() == addr.ip());
            if same_host {
                format!(":{}", addr.port())
            } else {
                label
            }
        }
        _ => label,
    }
}

/// The list: `▶3 open       client 2   4↑ 4↓`. Only the rows on screen are drawn, so
/// thousands of connections cost what fits the pane; the selected row stays in view.
pub fn render_list(frame: &mut Frame<'_>, area: Rect, state: &TuiState) {
    let block = Block::bordered()
        .border_style(border_style(true))
        .title(title(state));
    let inner_width = area.width.saturating_sub(2) as usize;
    let show_counts = inner_width >= 34;
    let mut lines: Vec<Line> = Vec::new();
    if !state.conns.lists_every_id() && area.height > 3 {
        lines.push(summary(state, inner_width));
    }
    let height = (area.height.saturating_sub(2) as usize).saturating_sub(lines.len());
    let selected_row = match state.view.selected {
        Selection::Conn(id) => state.conns.position(id),
        Selection::Waiting(addr) => state
            .waiting
            .iter()
            .position(|&a| a == addr)
            .map(|i| state.conns.len() + i),
    }
    .unwrap_or(0);
    let skip = (selected_row + 1).saturating_sub(height);
    // As wide as the largest id, and a space: "9 " in classic, "65535 " in the extended modes.
    let id_width = state.conns.ids().saturating_sub(1).to_string().len() + 1;
    // "client 2501" with thousands of lab clients, when the pane has the room.
    let owner_width = if id_width > 2 && inner_width >= id_width + 32 {
        12
    } else {
        9
    };
    let rows_start = lines.len();
    for conn in state.conns.iter().skip(skip).take(height) {
        let selected = state.view.selected == Selection::Conn(conn.id);
        let (label, style) = state_label(conn);
        let mut spans = vec![
            Span::raw(if selected { "▶" } else { " " }),
            Span::styled(
                format!("{:<id_width$}", conn.id.to_string()),
                Style::new().bold(),
            ),
            Span::styled(format!("{label:<10} "), style),
            Span::raw(format!(
                "{:<owner_width$}",
                truncate(&short_owner_label(state, conn), owner_width)
            )),
        ];
        if show_counts && conn.state != ConnState::Free {
            spans.push(Span::styled(
                format!(" {}↑ {}↓", conn.to_proxy2.frames, conn.to_proxy1.frames),
                Style::new().dark_gray(),
            ));
        }
        // A SOCKS5 connection's destination (and user), where the row has room.
        let used: usize = spans.iter().map(Span::width).sum();
        let in_use = conn.state != ConnState::Free || conn.last_outcome.is_some();
        if let Some(route) = route_label(conn).filter(|_| in_use)
            && inner_width > used + 8
        {
            spans.push(Span::styled(
                truncate(&format!(" {route}"), inner_width - used),
                Style::new().cyan(),
            ));
        }
        lines.push(highlight(Line::from(spans), selected));
    }
    let waiting_skip = skip.saturating_sub(state.conns.len());
    for &addr in state.waiting.iter().skip(waiting_skip) {
        if lines.len() - rows_start >= height {
            break;
        }
        let selected = state.view.selected == Selection::Waiting(addr);
        let text = format!("   {} waiting for id", state.client_label(addr));
        let line = Line::from(vec![
            Span::raw(if selected { "▶" } else { " " }),
            Span::styled(truncate(&text, inner_width - 1), Style::new().yellow()),
        ]);
        lines.push(highlight(line, selected));
    }
    if lines.len() == rows_start && state.conns.is_empty() && state.waiting.is_empty() {
        lines.push(Line::styled(
            " no connection yet (a adds a client)",
            Style::new().dark_gray(),
        ));
    }
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

/// ` Connections ` for the ten-id modes (every id is a row); with the extended modes' many
/// ids, how many rows there are: ` Connections 3,012 `.
fn title(state: &TuiState) -> String {
    if state.conns.lists_every_id() {
        " Connections ".to_string()
    } else {
        format!(" Connections {} ", thousands(state.conns.len()))
    }
}

/// The extended modes' first row: how many connections are in each state, so thousands of
/// them read at a glance: `2,956 open · 12 connecting · 4 closing`.
fn summary(state: &TuiState, width: usize) -> Line<'static> {
    let counts = state.conns.counts();
    let mut parts = Vec::new();
    for (n, what, style) in [
        (counts.open, "open", Style::new().green()),
        (counts.connecting, "connecting", Style::new().yellow()),
        (counts.closing, "closing", Style::new().magenta()),
        (state.waiting.len(), "waiting", Style::new().yellow()),
    ] {
        if n > 0 || what == "open" {
            parts.push((format!("{} {what}", thousands(n)), style));
        }
    }
    let mut spans = vec![Span::raw(" ")];
    let mut used = 1;
    for (i, (text, style)) in parts.into_iter().enumerate() {
        let sep = if i == 0 { "" } else { " · " };
        let text = truncate(&format!("{sep}{text}"), width.saturating_sub(used));
        used += Span::raw(text.as_str()).width();
        spans.push(Span::styled(text, style));
    }
    Line::from(spans)
}

fn highlight(line: Line<'static>, selected: bool) -> Line<'static> {
    if selected {
        line.style(Style::new().add_modifier(Modifier::REVERSED))
    } else {
        line
    }
}
