//! Pieces that more than one panel draws. Panels import this, never each other.

use std::time::Duration;

use ratatui::prelude::*;

use super::format_bytes;
use crate::event::ConnState;
use crate::event::{Endpoint, LinkDirection};
use crate::transport::TransportStats;
use crate::tui::state::{ConnView, TuiState};

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
/// `p1→p2 window 12/64 · srtt 3.1 ms · rto 200 ms · ↻ 5 (3 timeout, 2 fast) · delivered
/// 256.0 KiB · efficiency 91%`. Shorter forms drop words before figures when `width` is
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
        let retransmits = stats.retransmits_timeout + stats.retransmits_fast;
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
        let full = vec![
            arrow.clone(),
            Span::raw(format!("window {}/{}", stats.in_flight, stats.peer_window)),
            sep(),
            Span::raw(format!("srtt {srtt} rto {}", format_rtt(stats.rto))),
            sep(),
            Span::styled(
                format!(
                    "↻ {retransmits} ({} timeout, {} fast)",
                    stats.retransmits_timeout, stats.retransmits_fast
                ),
                retransmit_style,
            ),
            sep(),
            Span::raw(format!("delivered {}", format_bytes(delivered))),
            sep(),
            Span::raw(format!("efficiency {efficiency}")),
        ];
        let mut with_held = full.clone();
        with_held.extend(held);
        let short = vec![
            arrow.clone(),
            Span::raw(format!("win {}/{}", stats.in_flight, stats.peer_window)),
            sep(),
            Span::raw(format!("srtt {srtt} rto {}", format_rtt(stats.rto))),
            sep(),
            Span::styled(format!("↻ {retransmits}"), retransmit_style),
            sep(),
            Span::raw(format!("dlv {}", format_bytes(delivered))),
            sep(),
            Span::raw(format!("eff {efficiency}")),
        ];
        let bare = vec![
            arrow,
            Span::raw(format!("win {}/{}", stats.in_flight, stats.peer_window)),
            sep(),
            Span::raw(format!("srtt {srtt}")),
            sep(),
            Span::styled(format!("↻ {retransmits}"), retransmit_style),
            sep(),
            Span::raw(format!("eff {efficiency}")),
        ];
        let spans = [with_held, full, short]
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
