//! The header: the topology (each role, its address, up or down), the link's settings, the
//! capture, and how many clients there are.

use std::net::SocketAddr;

use ratatui::prelude::*;
use ratatui::widgets::{Block, Paragraph};

use super::border_style;
use crate::tui::state::{RoleView, TuiState};

/// The header in a bordered block (normal and large layouts): two lines inside.
pub fn render(frame: &mut Frame<'_>, area: Rect, state: &TuiState) {
    let block = Block::bordered()
        .border_style(border_style(false))
        .title(Span::styled(
            " tunlab · TCP over one UDP link ",
            Style::new().bold(),
        ));
    let lines = vec![topology_line(state, false), settings_line(state, false)];
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

/// The header without a border, for 80x24: the same two lines, shortened.
pub fn render_compact(frame: &mut Frame<'_>, area: Rect, state: &TuiState) {
    let lines = vec![topology_line(state, true), settings_line(state, true)];
    frame.render_widget(Paragraph::new(lines), area);
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
    let proxy1_link = match (compact, state.proxy1_udp) {
        (false, Some(udp)) => format!(" udp :{}", udp.port()),
        _ => String::new(),
    };
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

fn settings_line(state: &TuiState, compact: bool) -> Line<'static> {
    let label = Style::new().dark_gray();
    let mode = match state.link.mode {
        mode if compact => mode.name().to_string(),
        mode => format!("{mode}, ids 0-{}", state.conns.len().saturating_sub(1)),
    };
    let impairment = state
        .link
        .impairment
        .clone()
        .unwrap_or_else(|| "no impairment".into());
    let capture = match &state.capture {
        Some(capture) if capture.failed => {
            format!("{} FAILED after {} frames", capture.path, capture.frames)
        }
        Some(capture) => format!("{} ({} frames)", capture.path, capture.frames),
        None if compact => "off".into(),
        None => "not recording".into(),
    };
    let live = state.clients.values().filter(|c| c.ended.is_none()).count();
    let ended = state.clients.len() - live;
    let waiting = state.waiting.len();
    let clients = if waiting == 0 {
        format!("{live} live · {ended} ended")
    } else {
        format!("{live} live · {waiting} waiting · {ended} ended")
    };
    Line::from(vec![
        Span::styled(" link ", label),
        Span::raw(format!("{mode} · {impairment}")),
        Span::styled(" │ capture ", label),
        Span::raw(capture),
        Span::styled(" │ clients ", label),
        Span::raw(clients),
    ])
}
