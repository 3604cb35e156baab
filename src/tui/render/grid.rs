//! The grid for large terminals: one panel per connection, two columns, each with its counts
//! and the tail of its trace. With more connections than fit, it shows the rows of panels
//! around the selected one, under a line saying which and how many.

use ratatui::prelude::*;
use ratatui::widgets::{Block, Paragraph};

use super::border_style;
use super::parts::{flow_line, owner_label, route_label, state_label, thousands, trace_lines};
use crate::tui::state::{ConnView, Selection, TuiState};

/// Panels two abreast.
const COLUMNS: usize = 2;

/// A panel's smallest height: its border, its counts and one line of trace.
const MIN_PANEL_HEIGHT: u16 = 4;

/// Draws the panels that fit `area`.
pub fn render(frame: &mut Frame<'_>, area: Rect, state: &TuiState) {
    let views: Vec<&ConnView> = state.conns.iter().collect();
    let rows_needed = views.len().div_ceil(COLUMNS).max(1);
    let rows_fit = usize::from(area.height / MIN_PANEL_HEIGHT).max(1);
    let (first_row, rows, area) = if rows_needed <= rows_fit {
        (0, rows_needed, area)
    } else {
        // One line says what is shown; the panels take the rest.
        let [line_area, panels] =
            Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(area);
        let rows = usize::from(panels.height / MIN_PANEL_HEIGHT).max(1);
        let selected_row = match state.view.selected {
            Selection::Conn(id) => state.conns.position(id).unwrap_or(0) / COLUMNS,
            Selection::Waiting(_) => 0,
        };
        // The selected row in the middle, as far as the ends allow.
        let first = selected_row
            .saturating_sub(rows / 2)
            .min(rows_needed.saturating_sub(rows));
        let shown = &views[first * COLUMNS..((first + rows) * COLUMNS).min(views.len())];
        let counts = state.conns.counts();
        let text = format!(
            " ids {}-{}: {} of {} shown · {} open · {} connecting · {} closing · ↑↓ [ ] : to move",
            shown.first().map_or(0, |v| v.id.get()),
            shown.last().map_or(0, |v| v.id.get()),
            shown.len(),
            thousands(views.len()),
            thousands(counts.open),
            thousands(counts.connecting),
            thousands(counts.closing),
        );
        frame.render_widget(
            Paragraph::new(Line::styled(text, Style::new().dark_gray())),
            line_area,
        );
        (first, rows, panels)
    };
    if views.is_empty() {
        frame.render_widget(
            Paragraph::new(Line::styled(
                " no connection yet (a adds a client)",
                Style::new().dark_gray(),
            )),
            area,
        );
        return;
    }
    let row_areas = Layout::vertical(vec![Constraint::Ratio(1, rows as u32); rows]).split(area);
    for (row, row_area) in row_areas.iter().enumerate() {
        let cells = Layout::horizontal(vec![Constraint::Ratio(1, COLUMNS as u32); COLUMNS])
            .split(*row_area);
        for (column, cell) in cells.iter().enumerate() {
            if let Some(conn) = views.get((first_row + row) * COLUMNS + column) {
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
