//! One connection id in detail: its state, who owns it, bytes and frames each way, and the
//! scrolling trace of its frames (time, direction, type, id, length, escaped payload).

use std::net::SocketAddr;

use ratatui::prelude::*;
use ratatui::widgets::{Block, Padding, Paragraph};

use super::parts::reliability_lines;
use super::parts::{owner_label, state_label};
use super::{border_style, format_bytes, format_time, truncate, visible_window};
use crate::describe::{frame_label_relative, transport_event_label};
use crate::event::{ConnState, LinkDirection};
use crate::transport::{RetransmitCause, TransportEvent};
use crate::tui::state::{ConnView, TraceLine, TuiState};
use crate::wire::{ConnId, FrameKind};

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

/// How far back the pane really is: never further than its oldest row allows.
pub fn effective_scroll(total: usize, height: usize, wanted: usize) -> usize {
    wanted.min(total.saturating_sub(height))
}

/// `PAUSED` (with how many rows arrived since, kept for the resume) and how far back the pane
/// is scrolled, on the bottom border of the detail pane.
pub fn pane_flags(state: &TuiState, scroll: usize, waiting: usize) -> Line<'static> {
    let mut spans = Vec::new();
    if state.view.paused {
        let text = match waiting {
            0 => " PAUSED (space resumes) ".to_string(),
            n => format!(" PAUSED · {n} new kept (space shows them) "),
        };
        spans.push(Span::styled(text, Style::new().black().on_yellow()));
    }
    if scroll > 0 {
        spans.push(Span::styled(
            format!(" ↑ {scroll} rows back (End follows) "),
            Style::new().yellow(),
        ));
    }
    Line::from(spans)
}

/// `p1→p2 3 frames 10 B │ p2→p1 3 frames 10 B │ proxy2: open`.
pub fn flow_line(conn: &ConnView, compact: bool) -> Line<'static> {
    let dim = Style::new().dark_gray();
    let flow = |frames: u64, bytes: u64| match (compact, frames) {
        (true, _) => format!("{frames} fr {}", format_bytes(bytes)),
        (false, 1) => format!("1 frame {}", format_bytes(bytes)),
        (false, _) => format!("{frames} frames {}", format_bytes(bytes)),
    };
    let mut spans = vec![
        Span::styled(" p1→p2 ", Style::new().cyan()),
        Span::raw(flow(conn.to_proxy2.frames, conn.to_proxy2.bytes)),
        Span::styled(" │ ", dim),
        Span::styled("p2→p1 ", Style::new().magenta()),
        Span::raw(flow(conn.to_proxy1.frames, conn.to_proxy1.bytes)),
    ];
    if !compact {
        let (p2, style) = match conn.proxy2_state {
            ConnState::Free => ("free", dim),
            ConnState::Connecting => ("connecting", Style::new().yellow()),
            ConnState::Open => ("open", Style::new().green()),
            ConnState::Closing => ("closing", Style::new().magenta()),
            ConnState::Refused | ConnState::Unanswered => ("refused", Style::new().red()),
        };
        spans.push(Span::styled(" │ proxy2 sees ", dim));
        spans.push(Span::styled(p2, style));
    }
    Line::from(spans)
}

/// The newest `height` trace lines of `conn` that fit `width`, `scroll` rows back.
pub fn trace_lines(
    state: &TuiState,
    conn: &ConnView,
    width: usize,
    height: usize,
    scroll: usize,
) -> Vec<Line<'static>> {
    let shown = state.shown(&conn.trace);
    if shown == 0 {
        return vec![Line::styled(" no frames yet", Style::new().dark_gray())];
    }
    let window = visible_window(shown, height, scroll);
    conn.trace
        .iter()
        .skip(window.start)
        .take(window.len())
        .map(|line| trace_line(state, line, width))
        .collect()
}

fn trace_line(state: &TuiState, line: &TraceLine, width: usize) -> Line<'static> {
    match line {
        TraceLine::NewConnection { time, client } => {
            let text = format!(
                "{} ── id given to {}",
                format_time(*time),
                state.client_description(*client)
            );
            Line::styled(truncate(&text, width), Style::new().dark_gray())
        }
        TraceLine::Sampled {
            time,
            to_proxy2,
            to_proxy1,
            other,
        } => {
            let text = format!(
                "{} ⋯ sampled, not traced one by one: p1→p2 {} fr {} · p2→p1 {} fr {} · {other} \
                 TCP reads/writes",
                format_time(*time),
                to_proxy2.frames,
                format_bytes(to_proxy2.bytes),
                to_proxy1.frames,
                format_bytes(to_proxy1.bytes),
            );
            Line::styled(truncate(&text, width), Style::new().dark_gray().italic())
        }
        TraceLine::Link {
            time,
            direction,
            text,
            dropped,
        } => {
            let prefix = format!("{} ", format_time(*time));
            // "p1→p2 ⚡ ": the arrow is 5 columns, the bolt 2, and two spaces.
            let room = width.saturating_sub(prefix.chars().count() + 9);
            let style = if *dropped {
                Style::new().red()
            } else {
                Style::new().yellow()
            };
            Line::from(vec![
                Span::styled(prefix, Style::new().dark_gray()),
                Span::styled(direction.arrow(), Style::new().dark_gray()),
                Span::styled(" ⚡ ", style),
                Span::styled(truncate(text, room), style),
            ])
        }
        TraceLine::Frame {
            time,
            direction,
            frame,
            retransmit,
            bases,
        } => {
            let (arrow, arrow_style) = match direction {
                LinkDirection::ToProxy2 => ("p1→p2", Style::new().cyan()),
                LinkDirection::ToProxy1 => ("p2→p1", Style::new().magenta()),
            };
            let kind_style = match frame.kind {
                FrameKind::Connect => Style::new().yellow(),
                FrameKind::ConnectOk => Style::new().green(),
                FrameKind::ConnectNok => Style::new().red(),
                FrameKind::Data => Style::new(),
                FrameKind::Ack => Style::new().cyan(),
                FrameKind::Close => Style::new().magenta(),
            };
            let prefix = format!("{} ", format_time(*time));
            let mut room = width.saturating_sub(prefix.chars().count() + 6);
            let mut spans = vec![
                Span::styled(prefix, Style::new().dark_gray()),
                Span::styled(arrow, arrow_style),
                Span::raw(" "),
            ];
            // The mark goes first, so a long payload preview never hides it.
            if let Some(cause) = retransmit {
                let mark = format!("↻ {} ", retransmit_mark(*cause));
                room = room.saturating_sub(mark.chars().count());
                spans.push(Span::styled(mark, Style::new().red().bold()));
            }
            spans.push(Span::styled(
                truncate(&frame_label_relative(frame, *bases), room),
                kind_style,
            ));
            Line::from(spans)
        }
        TraceLine::Transport {
            time,
            at,
            event,
            base,
        } => {
            let prefix = format!("{} ", format_time(*time));
            let (mark, style) = match event {
                TransportEvent::HeldOutOfOrder { .. } => ("⏸", Style::new().yellow()),
                TransportEvent::GaveUp { .. } => ("✕", Style::new().red().bold()),
                _ => ("✗", Style::new().yellow()),
            };
            let head = format!("{} {mark} ", at.label());
            let room = width.saturating_sub(prefix.chars().count() + head.chars().count());
            Line::from(vec![
                Span::styled(prefix, Style::new().dark_gray()),
                Span::styled(head, style),
                Span::styled(truncate(&transport_event_label(event, *base), room), style),
            ])
        }
    }
}

/// The short name of a retransmission's cause, for the mark on its frame.
pub fn retransmit_mark(cause: RetransmitCause) -> &'static str {
    match cause {
        RetransmitCause::Timeout => "timeout",
        RetransmitCause::FastRetransmit => "fast",
    }
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
