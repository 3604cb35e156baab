//! Pieces that more than one panel draws. Panels import this, never each other.

use std::time::Duration;

use ratatui::prelude::*;

use super::{format_bytes, format_time, truncate, visible_window};
use crate::describe::{frame_label_relative, transport_event_label};
use crate::event::ConnState;
use crate::topology::{Endpoint, LinkDirection};
use crate::transport::{RetransmitCause, TransportEvent, TransportStats};
use crate::tui::state::{ConnView, TraceLine, TuiState};
use crate::wire::FrameKind;

/// A duration as a teacher reads a round trip: `0.4 ms`, `12 ms`, `1.20 s`.
pub fn format_rtt(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.1} ms")
    } else if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{:.2} s", d.as_secs_f64())
    }
}

/// Useful bytes over bytes sent, as a whole percentage: the receiver's delivered bytes over
/// the sender's payload bytes (retransmissions included). `None` before anything was sent.
pub fn efficiency(sender: &TransportStats, receiver: Option<&TransportStats>) -> Option<u64> {
    if sender.bytes_sent == 0 {
        return None;
    }
    let useful = receiver.map_or(sender.bytes_acked, |r| r.bytes_delivered);
    Some((useful.min(sender.bytes_sent) * 100) / sender.bytes_sent)
}

/// One line per direction of a reliable connection, from its pumps' last stats:
/// `p1→p2 window 12/64 · cwnd 24 avoidance · srtt 3.1 ms · rto 200 ms · ↻ 5 (3 timeout, 2 fast)
/// · delivered 256.0 KiB · efficiency 91%`. Shorter forms drop words before figures when `width` is
/// small. Empty when the connection has no reliable transport (classic mode).
pub fn reliability_lines(conn: &ConnView, width: usize) -> Vec<Line<'static>> {
    let dim = Style::new().dark_gray();
    let mut lines = Vec::new();
    for (direction, sender, receiver) in [
        (LinkDirection::ToProxy2, Endpoint::Proxy1, Endpoint::Proxy2),
        (LinkDirection::ToProxy1, Endpoint::Proxy2, Endpoint::Proxy1),
    ] {
        let Some(stats) = conn.transport.stats(sender) else {
            continue;
        };
        let peer = conn.transport.stats(receiver);
        let retransmits =
            stats.retransmits_timeout + stats.retransmits_fast + stats.retransmits_probe;
        let delivered = peer.map_or(stats.bytes_acked, |p| p.bytes_delivered);
        let efficiency = efficiency(stats, peer).map_or("–".to_string(), |e| format!("{e}%"));
        let srtt = stats.srtt.map_or("–".to_string(), format_rtt);
        let arrow_style = match direction {
            LinkDirection::ToProxy2 => Style::new().cyan(),
            LinkDirection::ToProxy1 => Style::new().magenta(),
        };
        let retransmit_style = if retransmits > 0 {
            Style::new().red()
        } else {
            Style::new()
        };
        let sep = || Span::styled(" · ", dim);
        // The congestion window (Go-Back-N, Selective Repeat): blue, like its graph line.
        let cwnd_style = Style::new().blue();
        let cwnd_full: Vec<Span<'static>> = stats
            .cwnd
            .map(|cwnd| {
                let phase = stats.congestion.map_or("", |p| p.label());
                vec![
                    sep(),
                    Span::styled(
                        format!("cwnd {cwnd} {phase}").trim_end().to_string(),
                        cwnd_style,
                    ),
                ]
            })
            .unwrap_or_default();
        let cwnd_short: Vec<Span<'static>> = stats
            .cwnd
            .map(|cwnd| vec![sep(), Span::styled(format!("cwnd {cwnd}"), cwnd_style)])
            .unwrap_or_default();
        let arrow = Span::styled(format!(" {} ", direction.arrow()), arrow_style);
        let held = peer
            .filter(|p| p.duplicates_discarded + p.out_of_order_held > 0)
            .map(|p| {
                Span::styled(
                    format!(
                        " · dup {} held {}",
                        p.duplicates_discarded, p.out_of_order_held
                    ),
                    Style::new().yellow(),
                )
            });
        // From the fullest to the barest; the first that fits the width is drawn.
        let window =
            |word: &str| Span::raw(format!("{word} {}/{}", stats.in_flight, stats.peer_window));
        let mut full = vec![arrow.clone(), window("window")];
        full.extend(cwnd_full);
        full.extend([
            sep(),
            Span::raw(format!("srtt {srtt} rto {}", format_rtt(stats.rto))),
            sep(),
            Span::styled(
                format!(
                    "↻ {retransmits} ({} timeout, {} fast{})",
                    stats.retransmits_timeout,
                    stats.retransmits_fast,
                    if stats.retransmits_probe > 0 {
                        format!(", {} probe", stats.retransmits_probe)
                    } else {
                        String::new()
                    }
                ),
                retransmit_style,
            ),
            sep(),
            Span::raw(format!("delivered {}", format_bytes(delivered))),
            sep(),
            Span::raw(format!("efficiency {efficiency}")),
        ]);
        let mut with_held = full.clone();
        with_held.extend(held);
        let mut short = vec![arrow.clone(), window("win")];
        short.extend(cwnd_short.clone());
        short.extend([
            sep(),
            Span::raw(format!("srtt {srtt} rto {}", format_rtt(stats.rto))),
            sep(),
            Span::styled(format!("↻ {retransmits}"), retransmit_style),
            sep(),
            Span::raw(format!("dlv {}", format_bytes(delivered))),
            sep(),
            Span::raw(format!("eff {efficiency}")),
        ]);
        // The short form without the delivered bytes: the timer stays beside the window.
        let mut medium = vec![arrow.clone(), window("win")];
        medium.extend(cwnd_short.clone());
        medium.extend([
            sep(),
            Span::raw(format!("srtt {srtt} rto {}", format_rtt(stats.rto))),
            sep(),
            Span::styled(format!("↻ {retransmits}"), retransmit_style),
            sep(),
            Span::raw(format!("eff {efficiency}")),
        ]);
        let mut bare = vec![arrow, window("win")];
        bare.extend(cwnd_short);
        bare.extend([
            sep(),
            Span::raw(format!("srtt {srtt}")),
            sep(),
            Span::styled(format!("↻ {retransmits}"), retransmit_style),
            sep(),
            Span::raw(format!("eff {efficiency}")),
        ]);
        let spans = [with_held, full, short, medium]
            .into_iter()
            .find(|spans| Line::from(spans.clone()).width() <= width)
            .unwrap_or(bare);
        lines.push(Line::from(spans));
    }
    lines
}

/// How a connection's state reads, and its colour. A refused or unanswered id is freed at
/// once by proxy1; it shows that outcome until the id is given out again.
pub fn state_label(conn: &ConnView) -> (&'static str, Style) {
    match (conn.state, conn.last_outcome) {
        (ConnState::Free, Some(ConnState::Refused)) => ("refused", Style::new().red()),
        (ConnState::Free, Some(ConnState::Unanswered)) => ("no answer", Style::new().red()),
        (ConnState::Free, _) => ("free", Style::new().dark_gray()),
        (ConnState::Connecting, _) => ("connecting", Style::new().yellow()),
        (ConnState::Open, _) => ("open", Style::new().green()),
        (ConnState::Closing, _) => ("closing", Style::new().magenta()),
        (ConnState::Refused, _) => ("refused", Style::new().red()),
        (ConnState::Unanswered, _) => ("no answer", Style::new().red()),
    }
}

/// Who has the id: a lab client by number, anything else by address.
pub fn owner_label(state: &TuiState, conn: &ConnView) -> String {
    match conn.client {
        Some(addr) if conn.state != ConnState::Free || conn.last_outcome.is_some() => {
            state.client_label(addr)
        }
        _ => String::new(),
    }
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

/// `12,345`: counts of thousands of connections, readable at a glance.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
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
                TransportEvent::CongestionCut { .. } => ("▼", Style::new().blue()),
                // Not a cut: the window stops doubling where a queue starts.
                TransportEvent::SlowStartEnded { .. } => ("▶", Style::new().blue()),
                // The link is alive: nothing went wrong, so no cross.
                TransportEvent::KeepaliveAnswered { .. } => ("♥", Style::new().green()),
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
        RetransmitCause::Probe => "probe",
    }
}
