//! Every connection id at a glance: a list (one row per id, then the clients waiting for an
//! id) for small and normal terminals, or a grid with one panel per id on large ones.

use ratatui::prelude::*;
use ratatui::widgets::{Block, Paragraph};

use super::parts::{flow_line, owner_label, state_label, trace_lines};
use super::{border_style, truncate};
use crate::event::ConnState;
use crate::tui::state::{ConnView, Selection, TuiState};

/// Rows the list needs with its border: one per id, one per waiting client.
pub fn list_height(state: &TuiState) -> u16 {
    // Saturating: the extended modes have 65,536 ids, more rows than a u16 counts.
    u16::try_from(state.conns.len() + state.waiting.len() + 2).unwrap_or(u16::MAX)
}

/// `→ localhost:8000 (ana)`: where a SOCKS5 connection leads, and who asked; `None` for the
/// plain port's connections (they all lead to proxy2's server).
pub fn route_label(conn: &ConnView) -> Option<String> {
    let route = conn.route.as_ref().filter(|r| !r.destination.is_empty())?;
    Some(match &route.user {
        Some(user) => format!("→ {} ({user})", route.destination),
        None => format!("→ {}", route.destination),
    })
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

/// The list: `▶3 open       client 2   4↑ 4↓`.
pub fn render_list(frame: &mut Frame<'_>, area: Rect, state: &TuiState) {
    let block = Block::bordered()
        .border_style(border_style(true))
        .title(" Connections ");
    let inner_width = area.width.saturating_sub(2) as usize;
    let show_counts = inner_width >= 34;
    let mut lines: Vec<Line> = Vec::new();
    // As wide as the largest id, and a space: "9 " in classic, "65535 " in the extended modes.
    let id_width = state.conns.len().saturating_sub(1).to_string().len() + 1;
    for conn in &state.conns {
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
                "{:<9}",
                truncate(&short_owner_label(state, conn), 9)
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
    for &addr in &state.waiting {
        let selected = state.view.selected == Selection::Waiting(addr);
        let text = format!("   {} waiting for id", state.client_label(addr));
        let line = Line::from(vec![
            Span::raw(if selected { "▶" } else { " " }),
            Span::styled(truncate(&text, inner_width - 1), Style::new().yellow()),
        ]);
        lines.push(highlight(line, selected));
    }
    // Keep the selected row on screen when waiting clients overflow the pane.
    let height = area.height.saturating_sub(2) as usize;
    let selected_row = state
        .rows()
        .iter()
        .position(|r| *r == state.view.selected)
        .unwrap_or(0);
    let skip = (selected_row + 1).saturating_sub(height);
    frame.render_widget(
        Paragraph::new(lines).block(block).scroll((skip as u16, 0)),
        area,
    );
}

fn highlight(line: Line<'static>, selected: bool) -> Line<'static> {
    if selected {
        line.style(Style::new().add_modifier(Modifier::REVERSED))
    } else {
        line
    }
}

/// The grid: one panel per id, two columns, each with its counts and the tail of its trace.
pub fn render_grid(frame: &mut Frame<'_>, area: Rect, state: &TuiState) {
    let columns = 2;
    let rows = state.conns.len().div_ceil(columns).max(1);
    let row_areas = Layout::vertical(vec![Constraint::Ratio(1, rows as u32); rows]).split(area);
    for (row, row_area) in row_areas.iter().enumerate() {
        let cells = Layout::horizontal(vec![Constraint::Ratio(1, columns as u32); columns])
            .split(*row_area);
        for (column, cell) in cells.iter().enumerate() {
            if let Some(conn) = state.conns.get(row * columns + column) {
                render_panel(frame, *cell, state, conn);
            }
        }
    }
}

/// One id's panel in the grid.
fn render_panel(frame: &mut Frame<'_>, area: Rect, state: &TuiState, conn: &ConnView) {
    let selected = state.view.selected == Selection::Conn(conn.id);
    let (label, style) = state_label(conn);
    let owner = owner_label(state, conn);
    let mut title = vec![
        Span::raw(if selected { " ▶" } else { " " }),
        Span::styled(format!("{} ", conn.id), Style::new().bold()),
        Span::styled(label, style),
    ];
    if !owner.is_empty() {
        title.push(Span::raw(format!(" · {owner}")));
    }
    if let Some(route) = route_label(conn) {
        title.push(Span::styled(format!(" {route}"), Style::new().cyan()));
    }
    title.push(Span::raw(" "));
    let block = Block::bordered()
        .border_style(border_style(selected))
        .title(Line::from(title));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if inner.height == 0 {
        return;
    }
    let [summary_area, trace_area] =
        Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(inner);
    frame.render_widget(Paragraph::new(flow_line(conn, true)), summary_area);
    let lines = trace_lines(
        state,
        conn,
        trace_area.width as usize,
        trace_area.height as usize,
        0,
    );
    frame.render_widget(Paragraph::new(lines), trace_area);
}
