//! One connection id in detail: its state, who owns it, bytes and frames each way, and the
//! scrolling trace of its frames (time, direction, type, id, length, escaped payload).

use std::net::SocketAddr;

use ratatui::prelude::*;
use ratatui::widgets::{Block, Padding, Paragraph};

use super::parts::{
    effective_scroll, flow_line, owner_label, pane_flags, reliability_lines, state_label,
    trace_lines,
};
use super::{border_style, truncate};
use crate::event::ConnState;
use crate::tui::state::{ConnView, TuiState};
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
    if let Some(line) = route_line(conn, inner.width as usize) {
        header.push(line);
    }
    // Reliable modes: each direction's window, timer, retransmissions and efficiency.
    header.extend(reliability_lines(conn, inner.width as usize));
    let refusal = conn.route.as_ref().and_then(|r| r.refusal.as_ref());
    if let Some((reason, detail)) = refusal {
        // A SOCKS5 destination refused: the NOK's reason, and on a line of its own proxy2's
        // words (the rule that matched, or the addresses tried).
        let width = inner.width as usize;
        let text = format!(" refused ({:#04x} {reason}):", reason.code());
        header.push(Line::styled(truncate(&text, width), Style::new().red()));
        for line in wrap_words(detail, width.saturating_sub(3), 3) {
            header.push(Line::styled(format!("   {line}"), Style::new().red()));
        }
    } else if let Some(outcome) = conn.last_outcome {
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

/// `text` in lines of at most `width` columns, broken between words, at most `lines` of
/// them (the last one cut with `…` if the text goes on).
fn wrap_words(text: &str, width: usize, lines: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut current = String::new();
    for word in text.split_whitespace() {
        let fits =
            current.is_empty() || current.chars().count() + 1 + word.chars().count() <= width;
        if !fits {
            out.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push(' ');
        }
        current.push_str(word);
    }
    if !current.is_empty() {
        out.push(current);
    }
    if out.len() > lines {
        let rest = out.split_off(lines - 1).join(" ");
        out.push(rest);
    }
    out.into_iter().map(|line| truncate(&line, width)).collect()
}

/// `→ localhost:8000 · user ana · SOCKS5`: where a SOCKS5 client's connection leads.
pub fn route_line(conn: &ConnView, width: usize) -> Option<Line<'static>> {
    let route = conn.route.as_ref().filter(|r| !r.destination.is_empty())?;
    let user = match &route.user {
        Some(user) => format!(" · user {user}"),
        None => String::new(),
    };
    let text = truncate(&format!(" → {}{user} · SOCKS5", route.destination), width);
    Some(Line::styled(text, Style::new().cyan()))
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
            state.conns.ids()
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
