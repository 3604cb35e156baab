//! The ladder (sequence) diagram of one connection id: four lifelines (client, proxy1,
//! proxy2, server) and one arrow per event in time order, the way Wireshark's flow graph
//! draws a conversation.
//!
//! ```text
//!     time   client      proxy1      proxy2      server
//!    0.001     │─TCP con…▶│           │           │
//!    0.002     │          │─── C0 ───▶│           │
//!    0.003     │          │           │─TCP con…▶│
//! ```

use ratatui::prelude::*;
use ratatui::widgets::{Block, Paragraph};

use super::parts::{effective_scroll, pane_flags, state_label};
use super::{border_style, format_time, truncate, visible_window};
use crate::tui::state::{ArrowKind, LadderEntry, Lane, TuiState};
use crate::wire::ConnId;

/// Width of the time column, its trailing space included.
const TIME_WIDTH: usize = 9;

pub fn render(frame: &mut Frame<'_>, area: Rect, state: &TuiState, id: ConnId) {
    let Some(conn) = state.conn(id) else { return };
    let (label, style) = state_label(conn);
    let block = Block::bordered()
        .border_style(border_style(true))
        .title(Line::from(vec![
            Span::raw(format!(" Ladder of connection {id} · ")),
            Span::styled(label, style),
            Span::raw(" "),
        ]));
    let inner = block.inner(area);
    let width = inner.width as usize;
    let lanes_width = width.saturating_sub(TIME_WIDTH);
    let mut lines = vec![lane_header(lanes_width)];
    let height = (inner.height as usize).saturating_sub(1);
    let shown = state.shown(&conn.ladder);
    let scroll = effective_scroll(shown, height, state.view.scroll);
    let waiting = conn.ladder.len() - shown;
    frame.render_widget(block.title_bottom(pane_flags(state, scroll, waiting)), area);
    if shown == 0 {
        lines.push(Line::styled(
            " nothing on this id yet",
            Style::new().dark_gray(),
        ));
    } else {
        let window = visible_window(shown, height, scroll);
        lines.extend(
            conn.ladder
                .iter()
                .skip(window.start)
                .take(window.len())
                .map(|entry| ladder_row(state, entry, lanes_width)),
        );
    }
    frame.render_widget(Paragraph::new(lines), inner);
}

/// Where each lane's lifeline sits in a lanes area `width` wide: the middle of four equal
/// columns.
fn lane_x(lane: Lane, width: usize) -> usize {
    width * (2 * lane.index() + 1) / 8
}

fn lane_header(width: usize) -> Line<'static> {
    let mut cells = vec![' '; width];
    for lane in Lane::ALL {
        let name: Vec<char> = lane.label().chars().collect();
        let start = lane_x(lane, width).saturating_sub(name.len() / 2);
        for (i, c) in name.into_iter().enumerate() {
            if let Some(cell) = cells.get_mut(start + i) {
                *cell = c;
            }
        }
    }
    Line::from(vec![
        Span::styled(format!("{:>8} ", "time"), Style::new().dark_gray()),
        Span::styled(cells.into_iter().collect::<String>(), Style::new().bold()),
    ])
}

fn arrow_style(kind: ArrowKind) -> Style {
    match kind {
        ArrowKind::TcpOpen => Style::new().green(),
        ArrowKind::TcpData => Style::new(),
        ArrowKind::Fin => Style::new().yellow(),
        ArrowKind::Rst => Style::new().red().bold(),
        ArrowKind::Frame => Style::new().cyan(),
        ArrowKind::Failure => Style::new().red(),
        ArrowKind::Close => Style::new().magenta(),
        ArrowKind::Retransmit => Style::new().red().bold(),
        ArrowKind::Handshake => Style::new().green().dim(),
    }
}

/// One row: the time, every lifeline, and the arrow (or note) drawn over them.
pub fn ladder_row(state: &TuiState, entry: &LadderEntry, width: usize) -> Line<'static> {
    let lifeline = Style::new().dark_gray();
    let mut cells: Vec<(char, Style)> = vec![(' ', Style::new()); width];
    for lane in Lane::ALL {
        if let Some(cell) = cells.get_mut(lane_x(lane, width)) {
            *cell = ('│', lifeline);
        }
    }
    let time = match entry {
        LadderEntry::Arrow {
            time,
            from,
            to,
            label,
            kind,
        } => {
            draw_arrow(
                &mut cells,
                width,
                *from,
                *to,
                &label.text(),
                arrow_style(*kind),
            );
            *time
        }
        LadderEntry::Note { time, text } => {
            draw_note(&mut cells, width, text);
            *time
        }
        LadderEntry::Sampled {
            time,
            frames,
            other,
        } => {
            draw_note(
                &mut cells,
                width,
                &format!("⋯ sampled: {frames} frames, {other} TCP reads/writes not drawn"),
            );
            *time
        }
        LadderEntry::IdGiven { time, client } => {
            draw_note(
                &mut cells,
                width,
                &format!("id given to {}", state.client_label(*client)),
            );
            *time
        }
    };
    let mut spans = vec![Span::styled(
        format!("{} ", format_time(time)),
        Style::new().dark_gray(),
    )];
    // Merge runs of one style into one span.
    let mut run = String::new();
    let mut run_style = None;
    for (c, style) in cells {
        if run_style != Some(style) && !run.is_empty() {
            spans.push(Span::styled(std::mem::take(&mut run), run_style.unwrap()));
        }
        run_style = Some(style);
        run.push(c);
    }
    if let Some(style) = run_style {
        spans.push(Span::styled(run, style));
    }
    Line::from(spans)
}

/// Text centred across the lanes, over the lifelines.
fn draw_note(cells: &mut [(char, Style)], width: usize, text: &str) {
    let text = format!(" {} ", truncate(text, width.saturating_sub(8)));
    let start = width.saturating_sub(text.chars().count()) / 2;
    for (i, c) in text.chars().enumerate() {
        if let Some(cell) = cells.get_mut(start + i) {
            *cell = (c, Style::new().dark_gray().italic());
        }
    }
}

/// `│──── C0 ───▶│` between two lifelines, the label centred on the shaft.
fn draw_arrow(
    cells: &mut [(char, Style)],
    width: usize,
    from: Lane,
    to: Lane,
    label: &str,
    style: Style,
) {
    let (a, b) = (lane_x(from, width), lane_x(to, width));
    let (left, right) = (a.min(b), a.max(b));
    if right <= left + 1 {
        return;
    }
    for cell in cells.iter_mut().take(right).skip(left + 1) {
        *cell = ('─', style);
    }
    if b > a {
        cells[right - 1] = ('▶', style);
    } else {
        cells[left + 1] = ('◀', style);
    }
    // Room between the head and the tail, with a dash and a space on each side of the label.
    let shaft = right - left - 1;
    let room = shaft.saturating_sub(4);
    if room == 0 {
        return;
    }
    let text = format!(" {} ", truncate(label, room));
    let start = left + 1 + (shaft - text.chars().count()) / 2;
    for (i, c) in text.chars().enumerate() {
        cells[start + i] = (c, style);
    }
}
