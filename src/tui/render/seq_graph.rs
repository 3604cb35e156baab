//! `g`: the time-sequence graph of the selected connection, as Wireshark's Stevens graph
//! draws TCP: one direction's data, sequence number (counted from its ISN) over time, with
//! each first send, each retransmission (by cause), what the link dropped, and the acks
//! (and SACK blocks) coming back. A step of the ack line that stalls while sends climb is
//! the window filling; a retransmission below the send line is a hole being filled. The
//! congestion window's edge (the last ack plus the sender's congestion window, as tcptrace
//! draws the receive window) is the ceiling the sends climb to: it steepens in slow start,
//! creeps up in congestion avoidance and drops when a loss halves the window.
//!
//! Stop-and-wait has one bit on the wire, so its frames are numbered as they are sent.

use ratatui::prelude::*;
use ratatui::symbols::Marker;
use ratatui::widgets::{Axis, Block, Chart, Dataset, GraphType, LegendPosition, Paragraph};

use super::border_style;
use super::parts::reliability_lines;
use crate::topology::LinkDirection;
use crate::transport::RetransmitCause;
use crate::tui::state::{SeqPointKind, TuiState};
use crate::wire::ConnId;

/// Draws the graph of connection `id`'s data going `direction`.
pub fn render(
    frame: &mut Frame<'_>,
    area: Rect,
    state: &TuiState,
    id: ConnId,
    direction: LinkDirection,
) {
    let Some(conn) = state.conn(id) else { return };
    let hint = match direction {
        LinkDirection::ToProxy2 => " g: the other way ",
        LinkDirection::ToProxy1 => " g: back to the trace ",
    };
    let block = Block::bordered()
        .border_style(border_style(true))
        .title(format!(
            " Time-sequence graph · id {id} · {} data ",
            direction.arrow()
        ))
        .title_bottom(Line::styled(hint, Style::new().dark_gray()));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let header: Vec<Line> = reliability_lines(conn, inner.width as usize)
        .into_iter()
        .filter(|line| {
            line.spans
                .first()
                .is_some_and(|s| s.content.contains(direction.arrow()))
        })
        .collect();
    let [header_area, chart_area] =
        Layout::vertical([Constraint::Length(header.len() as u16), Constraint::Min(0)])
            .areas(inner);
    frame.render_widget(Paragraph::new(header), header_area);

    let shown = state.shown(&conn.seq_graph);
    let points: Vec<_> = conn
        .seq_graph
        .iter()
        .take(shown)
        .filter(|p| p.data == direction)
        .collect();
    if points.is_empty() {
        let text = if state.link.mode.is_reliable() {
            " no data frames yet in this direction"
        } else {
            " classic mode has no sequence numbers: nothing to graph (try --wire selective-repeat)"
        };
        frame.render_widget(
            Paragraph::new(Line::styled(text, Style::new().dark_gray())),
            chart_area,
        );
        return;
    }
    let t0 = points.first().map_or(0.0, |p| p.time.as_secs_f64());
    let t1 = points.last().map_or(0.0, |p| p.time.as_secs_f64());
    let span = (t1 - t0).max(0.001);
    let seq_min = points.iter().map(|p| p.seq).min().unwrap_or(0);
    let seq_max = points
        .iter()
        .map(|p| p.seq)
        .max()
        .unwrap_or(0)
        .max(seq_min + 1);
    let of = |kind: fn(SeqPointKind) -> bool| -> Vec<(f64, f64)> {
        points
            .iter()
            .filter(|p| kind(p.kind))
            .map(|p| (p.time.as_secs_f64() - t0, f64::from(p.seq)))
            .collect()
    };
    let sent = of(|k| k == SeqPointKind::Sent);
    let timeouts = of(|k| k == SeqPointKind::Retransmitted(RetransmitCause::Timeout));
    let fast = of(|k| k == SeqPointKind::Retransmitted(RetransmitCause::FastRetransmit));
    let acks = of(|k| k == SeqPointKind::Ack);
    let sacks = of(|k| k == SeqPointKind::Sack);
    let dropped = of(|k| k == SeqPointKind::Dropped);
    let probes = of(|k| k == SeqPointKind::Retransmitted(RetransmitCause::Probe));
    let cwnd_edge = of(|k| k == SeqPointKind::CwndEdge);
    let mut datasets = vec![
        Dataset::default()
            .name(format!("sent {}", sent.len()))
            .marker(Marker::Dot)
            .graph_type(GraphType::Scatter)
            .style(Style::new().cyan())
            .data(&sent),
        Dataset::default()
            .name(format!("acked {}", acks.len()))
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(Style::new().green())
            .data(&acks),
    ];
    if !cwnd_edge.is_empty() {
        datasets.push(
            Dataset::default()
                .name("cwnd edge")
                .marker(Marker::Braille)
                .graph_type(GraphType::Line)
                .style(Style::new().blue())
                .data(&cwnd_edge),
        );
    }
    // Only what happened gets a legend entry, so a clean run's legend stays short.
    for (name, data, marker, style) in [
        ("sack", &sacks, Marker::Dot, Style::new().green().dim()),
        ("dropped", &dropped, Marker::Bar, Style::new().red().dim()),
        ("↻ timeout", &timeouts, Marker::Block, Style::new().red()),
        ("↻ fast", &fast, Marker::Block, Style::new().yellow()),
        ("↻ probe", &probes, Marker::Block, Style::new().magenta()),
    ] {
        if !data.is_empty() {
            datasets.push(
                Dataset::default()
                    .name(format!("{name} {}", data.len()))
                    .marker(marker)
                    .graph_type(GraphType::Scatter)
                    .style(style)
                    .data(data),
            );
        }
    }
    let dim = Style::new().dark_gray();
    let chart = Chart::new(datasets)
        .x_axis(
            Axis::default()
                .title(Span::styled("s", dim))
                .style(dim)
                .bounds([0.0, span])
                .labels([format!("{t0:.2}"), format!("{t1:.2}")]),
        )
        .y_axis(
            Axis::default()
                .title(Span::styled("seq", dim))
                .style(dim)
                .bounds([f64::from(seq_min), f64::from(seq_max)])
                .labels([seq_min.to_string(), seq_max.to_string()]),
        )
        .legend_position(Some(LegendPosition::BottomRight))
        // Up to seven entries (sends, acks, the cwnd edge, sacks, drops, three causes) must fit a
        // 100x30 screen's graph.
        .hidden_legend_constraints((Constraint::Percentage(60), Constraint::Percentage(75)));
    frame.render_widget(chart, chart_area);
}
