//! One connection id in detail: its state, who owns it, bytes and frames each way, and the
//! scrolling trace of its frames (time, direction, type, id, length, escaped payload).

use std::net::SocketAddr;

use ratatui::prelude::*;
use ratatui::widgets::{Block, Padding, Paragraph};

use super::border_style;
use super::parts::{
    effective_scroll, flow_line, owner_label, pane_flags, reliability_lines, state_label,
    trace_lines,
};
use crate::event::ConnState;
use crate::tui::state::TuiState;
use crate::wire::ConnId;

/// The detail pane for connection `id`.
pub fn render(frame: &mut Frame<'_>, area: Rect, state: &TuiState, id: ConnId) {
    let Some(conn) = state.conn(id) else { return };
    let (label, style) = state_label(conn);
    let mut title = vec![
        Span::raw(format!(" Connection {id} · ")),
        Span::styled(label, style),
    ];
    if let Some(addr) = conn.client.filter(|_| !owner_label(state, conn).is_empty()) {
        title.push(Span::raw(format!(" · {}", state.client_description(addr))));
    }
    title.push(Span::raw(" "));
    let block = Block::bordered()
        .border_style(border_style(true))
        .title(Line::from(title));
    let inner = block.inner(area);

    let mut header = vec![flow_line(conn, inner.width < 60)];
    // Reliable modes: each direction's window, timer, retransmissions and efficiency.
    header.extend(reliability_lines(conn, inner.width as usize));
    if let Some(outcome) = conn.last_outcome {
        let why = match outcome {
            ConnState::Refused => "refused: proxy2 answered NOK (server unreachable)",
            _ => "unanswered: no OK/NOK from proxy2 after every retry",
        };
        header.push(Line::styled(format!(" last use {why}"), Style::new().red()));
    }
    if conn.trace.forgotten() > 0 {
        header.push(Line::styled(
            format!(" … {} older frames no longer kept", conn.trace.forgotten()),
            Style::new().dark_gray(),
        ));
    }
    let [header_area, trace_area] =
        Layout::vertical([Constraint::Length(header.len() as u16), Constraint::Min(0)])
            .areas(inner);
    let height = trace_area.height as usize;
    let scroll = effective_scroll(state.shown(&conn.trace), height, state.view.scroll);
    let waiting = conn.trace.len() - state.shown(&conn.trace);
    frame.render_widget(block.title_bottom(pane_flags(state, scroll, waiting)), area);
    frame.render_widget(Paragraph::new(header), header_area);
    let lines = trace_lines(state, conn, trace_area.width as usize, height, scroll);
    frame.render_widget(Paragraph::new(lines), trace_area);
}

/// The detail pane when the selected row is a client waiting for an id.
pub fn render_waiting(frame: &mut Frame<'_>, area: Rect, state: &TuiState, addr: SocketAddr) {
    let block = Block::bordered()
        .border_style(border_style(true))
        .padding(Padding::horizontal(1))
        .title(format!(" {} · waiting ", state.client_label(addr)));
    let who = state.client_description(addr);
    let busy = state
        .conns
        .iter()
        .filter(|c| c.state != ConnState::Free)
        .count();
    let lines = vec![
        Line::raw(format!(
            "{who} is connected to proxy1, but {busy} of {} ids are taken: it waits for one \
             to free up.",
            state.conns.len()
        )),
        Line::raw(""),
        Line::styled(
            "Close another connection (f, r) to let it in. proxy1 closes it if no id frees up \
             within --id-wait.",
            Style::new().dark_gray(),
        ),
    ];
    frame.render_widget(
        Paragraph::new(lines)
            .block(block)
            .wrap(ratatui::widgets::Wrap { trim: true }),
        area,
    );
}
