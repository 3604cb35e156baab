//! The header: the topology (each role, its address, up or down), the link's settings, the
//! capture, how many clients there are, and where the monitor serves when it is on.

use std::net::SocketAddr;

use ratatui::prelude::*;
use ratatui::widgets::{Block, Paragraph};

use super::{Part, border_style, fit, shorten_at_words};
use crate::tui::state::{MonitorView, RoleView, TuiState};

/// Rows the header takes: two lines (three with the monitor on), plus the border when not
/// compact.
pub fn height(state: &TuiState, compact: bool) -> u16 {
    let lines = 2 + u16::from(state.monitor.is_some());
    if compact { lines } else { lines + 2 }
}

/// The header in a bordered block (normal and large layouts): two lines inside, three with
/// the monitor on.
pub fn render(frame: &mut Frame<'_>, area: Rect, state: &TuiState) {
    let block = Block::bordered()
        .border_style(border_style(false))
        .title(Span::styled(
            " tunlab · TCP over one UDP link ",
            Style::new().bold(),
        ));
    let width = block.inner(area).width as usize;
    let mut lines = vec![topology_line(state, false), settings_line(state, width)];
    lines.extend(
        state
            .monitor
            .as_ref()
            .map(|m| monitor_line(m, false, area.width.saturating_sub(2))),
    );
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

/// The header without a border, for 80x24: the same lines, shortened.
pub fn render_compact(frame: &mut Frame<'_>, area: Rect, state: &TuiState) {
    let mut lines = vec![
        topology_line(state, true),
        settings_line(state, area.width as usize),
    ];
    lines.extend(
        state
            .monitor
            .as_ref()
            .map(|m| monitor_line(m, true, area.width)),
    );
    frame.render_widget(Paragraph::new(lines), area);
}

/// ` monitor metrics http://127.0.0.1:9100/metrics │ admin 127.0.0.1:9101 (tunlab monitor …)`;
/// the command that logs in is added when it fits in `width`.
fn monitor_line(monitor: &MonitorView, compact: bool, width: u16) -> Line<'static> {
    let label = Style::new().dark_gray();
    let mut spans = vec![Span::styled(" monitor", label)];
    if let Some(addr) = monitor.metrics {
        spans.push(Span::styled(" metrics ", label));
        spans.push(Span::raw(if compact {
            addr.to_string()
        } else {
            format!("http://{addr}/metrics")
        }));
    }
    if let Some(addr) = monitor.admin {
        if monitor.metrics.is_some() {
            spans.push(Span::styled(" │", label));
        }
        spans.push(Span::styled(" admin ", label));
        spans.push(Span::raw(addr.to_string()));
        let hint = format!(" (tunlab monitor {} {})", addr.ip(), addr.port());
        let used: usize = spans.iter().map(Span::width).sum();
        if !compact && used + hint.chars().count() <= usize::from(width) {
            spans.push(Span::styled(hint, label));
        }
    }
    Line::from(spans)
}

fn topology_line(state: &TuiState, compact: bool) -> Line<'static> {
    let hosts: Vec<_> = [&state.server, &state.proxy2, &state.proxy1]
        .iter()
        .filter_map(|r| r.addr.map(|a| a.ip()))
        .collect();
    let one_host = !hosts.is_empty() && hosts.windows(2).all(|w| w[0] == w[1]);
    let addr = |addr: Option<SocketAddr>| match addr {
        None => "?".to_string(),
        Some(a) if one_host => format!(":{}", a.port()),
        Some(a) => a.to_string(),
    };
    let mut spans = Vec::new();
    if one_host && let Some(host) = hosts.first() {
        spans.push(Span::styled(format!(" {host} "), Style::new().bold()));
        spans.push(Span::styled("│ ", Style::new().dark_gray()));
    } else {
        spans.push(Span::raw(" "));
    }
    let mut proxy1_link = match (compact, state.proxy1_udp) {
        (false, Some(udp)) => format!(" udp :{}", udp.port()),
        _ => String::new(),
    };
    // The SOCKS5 port, even when compact: it is where a browser or curl connects.
    if let Some(socks5) = state.proxy1_socks5 {
        proxy1_link.push_str(&format!(" socks5 :{}", socks5.port()));
    }
    let roles = [
        ("server", "tcp", &state.server, String::new()),
        ("proxy2", "udp", &state.proxy2, String::new()),
        ("proxy1", "tcp", &state.proxy1, proxy1_link),
    ];
    for (i, (name, proto, role, extra)) in roles.into_iter().enumerate() {
        if i > 0 {
            spans.push(Span::styled(" │ ", Style::new().dark_gray()));
        }
        spans.push(Span::styled(name, Style::new().bold()));
        if compact {
            spans.push(Span::raw(format!(" {} ", addr(role.addr))));
        } else {
            spans.push(Span::raw(format!(" {proto} {}{extra} ", addr(role.addr))));
        }
        spans.push(up_down(role));
    }
    Line::from(spans)
}

fn up_down(role: &RoleView) -> Span<'static> {
    if role.up {
        Span::styled("● up", Style::new().green())
    } else {
        Span::styled("○ down", Style::new().red().bold())
    }
}

/// The link, the capture and the clients, shortened by priority to fit `width`: the client
/// counts go last, then the link's impairment; the capture's file name and the wire mode's
/// id range go first. Nothing is cut in the middle of a word.
fn settings_line(state: &TuiState, width: usize) -> Line<'static> {
    let label = Style::new().dark_gray();
    let lead = |text: &'static str| Span::styled(text, label);
    let ids = format!("ids 0-{}", state.conns.ids().saturating_sub(1));
    let mode = if state.link.sealed {
        format!("{} (sealed)", state.link.mode.name())
    } else {
        state.link.mode.name().to_string()
    };
    let impairment = state
        .link
        .impairment
        .clone()
        .unwrap_or_else(|| "no impairment".into());
    // The impairment itself may be long (both directions differ): its last forms keep the
    // words that fit.
    // Shortened in this order (the rank of each step): the id range, the capture's file
    // name, the capture, the wire mode, the clients label, then the impairment's words.
    let room = width.saturating_sub(" link ".len());
    let link = Part::new(
        vec![
            lead(" link "),
            Span::raw(format!("{mode}, {ids} · {impairment}")),
        ],
        vec![
            (
                1,
                vec![lead(" link "), Span::raw(format!("{mode} · {impairment}"))],
            ),
            (4, vec![lead(" link "), Span::raw(impairment.clone())]),
            (
                6,
                vec![
                    lead(" link "),
                    Span::raw(shorten_at_words(&impairment, room / 2)),
                ],
            ),
        ],
    );
    let (capture_full, capture_short) = match &state.capture {
        Some(capture) if capture.failed => (
            format!("{} FAILED after {} frames", capture.path, capture.frames),
            format!("FAILED after {} frames", capture.frames),
        ),
        Some(capture) => (
            format!("{} ({} frames)", capture.path, capture.frames),
            format!("{} frames", capture.frames),
        ),
        None => ("not recording".into(), "off".into()),
    };
    let failed = state.capture.as_ref().is_some_and(|c| c.failed);
    let capture_form = |text: String| vec![lead("capture "), Span::raw(text)];
    let mut capture_steps = vec![(2, capture_form(capture_short))];
    if !failed {
        // A failure stays on screen; anything else may go when space is short.
        capture_steps.push((3, Vec::new()));
    }
    let capture = Part::new(capture_form(capture_full), capture_steps);
    let live = state.clients.values().filter(|c| c.ended.is_none()).count();
    let ended = state.clients.len() - live;
    let waiting = state.waiting.len();
    let counts = if waiting == 0 {
        format!("{live} live · {ended} ended")
    } else {
        format!("{live} live · {waiting} waiting · {ended} ended")
    };
    let short = if waiting == 0 {
        format!("{live} live")
    } else {
        format!("{live} live · {waiting} waiting")
    };
    let clients = Part::new(
        vec![lead("clients "), Span::raw(counts.clone())],
        vec![
            (5, vec![Span::raw(counts)]),
            (7, vec![lead("clients "), Span::raw(short)]),
        ],
    );
    fit(
        &[link, capture, clients],
        &Span::styled(" │ ", label),
        width,
    )
}
