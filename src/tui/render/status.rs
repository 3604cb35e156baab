//! The status lines: the lab's exact counters (frames each way, malformed, ignored, events the
//! UI dropped), then the key hints, or the input line while a message is being typed.

use ratatui::prelude::*;
use ratatui::widgets::Paragraph;

use crate::tui::state::TuiState;

/// Key hints, most needed first: a narrow terminal drops whole hints from the end, never
/// half of one; `?` lists every key.
const HINTS: &[(&str, &str)] = &[
    ("q", "quit"),
    ("?", "help"),
    ("a", "add"),
    ("↑↓ 0-9", "select"),
    ("s", "send"),
    ("m", "message"),
    ("f", "FIN"),
    ("r", "RST"),
    ("l", "ladder"),
    ("space", "pause"),
    ("h", "hold"),
    ("p", "proxy2"),
    ("e", "server"),
];
/// The same hints, shorter, for 80 columns.
const HINTS_COMPACT: &[(&str, &str)] = &[
    ("q", "quit"),
    ("?", "help"),
    ("a", "add"),
    ("↑↓", "select"),
    ("s", "send"),
    ("m", "msg"),
    ("f", "FIN"),
    ("r", "RST"),
    ("l", "ladder"),
    ("spc", "pause"),
    ("h", "hold"),
    ("p", "proxy2"),
    ("e", "server"),
];

/// As many whole hints as fit `width`, after a leading space. With thousands of ids
/// (`many_ids`), selecting says `:` (jump to an id) instead of `0-9`.
pub fn hints_line(width: usize, compact: bool, many_ids: bool) -> String {
    let (hints, gap) = if compact {
        (HINTS_COMPACT, " ")
    } else {
        (HINTS, "  ")
    };
    let mut line = String::new();
    for &(key, what) in hints {
        let key = match key {
            "↑↓ 0-9" | "↑↓" if many_ids => "↑↓ :",
            key => key,
        };
        let hint = format!("{gap}{key} {what}");
        let hint = if line.is_empty() {
            format!(" {key} {what}")
        } else {
            hint
        };
        if Span::raw(line.as_str()).width() + Span::raw(hint.as_str()).width() > width {
            break;
        }
        line.push_str(&hint);
    }
    line
}

pub fn render(frame: &mut Frame<'_>, area: Rect, state: &TuiState, compact: bool) {
    let c = &state.counters;
    let dim = Style::new().dark_gray();
    let warn = |n: u64| {
        if n > 0 {
            Style::new().yellow().bold()
        } else {
            Style::new()
        }
    };
    let frames = if compact {
        c.frames().to_string()
    } else {
        format!(
            "{} (p1→p2 {} · p2→p1 {})",
            c.frames(),
            c.frames_to_proxy2(),
            c.frames_to_proxy1()
        )
    };
    let mut counters = vec![
        Span::styled(" frames ", dim),
        Span::raw(frames),
        Span::styled(" · malformed ", dim),
        Span::styled(c.malformed().to_string(), warn(c.malformed())),
        Span::styled(" · ignored ", dim),
        Span::styled(c.ignored().to_string(), warn(c.ignored())),
        Span::styled(" · UI dropped ", dim),
        Span::styled(c.events_dropped.to_string(), warn(c.events_dropped)),
    ];
    // Only a flood or a misconfigured proxy1 makes these: shown when there are any.
    if c.refused() > 0 {
        counters.push(Span::styled(" · refused by limits ", dim));
        counters.push(Span::styled(c.refused().to_string(), warn(c.refused())));
    }
    if c.events_sampled > 0 {
        // Past the TUI's rate, traces are a sample; the counts above stay exact.
        counters.push(Span::styled(" · sampled ", dim));
        counters.push(Span::raw(c.events_sampled.to_string()));
    }
    if state.view.paused {
        counters.push(Span::styled(" · PAUSED", Style::new().black().on_yellow()));
    }
    if let Some(every) = state.chatter {
        counters.push(Span::styled(
            format!(" · chatter {}", humantime::format_duration(every)),
            Style::new().cyan(),
        ));
    }
    if state.hold.holding {
        counters.push(Span::styled(
            format!(" · HELD {}", state.hold.frames.len()),
            Style::new().black().on_yellow(),
        ));
    }
    let second = match &state.view.input {
        None if let Some(typed) = &state.view.jump => Line::from(vec![
            Span::styled(" jump to connection: ", Style::new().cyan()),
            Span::raw(typed.clone()),
            Span::styled("█", Style::new().cyan()),
            Span::styled(
                format!(
                    "  Enter goes · Esc cancels · ids 0-{}",
                    state.conns.ids() - 1
                ),
                dim,
            ),
        ]),
        Some(text) => {
            let target = state
                .selected_client_addr()
                .map(|a| state.client_label(a))
                .unwrap_or_else(|| "no client".into());
            Line::from(vec![
                Span::styled(format!(" message from {target}: "), Style::new().cyan()),
                Span::raw(text.clone()),
                Span::styled("█", Style::new().cyan()),
                Span::styled(
                    if compact {
                        "  Enter send · Esc cancel · \\xNN"
                    } else {
                        "  Enter sends · Esc cancels · \\n \\r \\t \\xNN escapes"
                    },
                    dim,
                ),
            ])
        }
        None => Line::styled(
            hints_line(area.width as usize, compact, !state.conns.lists_every_id()),
            dim,
        ),
    };
    frame.render_widget(Paragraph::new(vec![Line::from(counters), second]), area);
}
