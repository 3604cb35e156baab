//! The lab's echo clients: which id each has, whether it waits for one, what it sent and got
//! back (and whether the echo was intact), and how it ended.

use ratatui::prelude::*;
use ratatui::widgets::{Block, Paragraph};

use super::{border_style, format_bytes, truncate, visible_window};
use crate::event::{ClientEnd, CloseKind};
use crate::tui::state::{ClientView, EchoVerdict, TuiState};

pub fn render(frame: &mut Frame<'_>, area: Rect, state: &TuiState) {
    let block = Block::bordered()
        .border_style(border_style(false))
        .title(format!(" Clients ({}) ", state.clients.len()));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if state.clients.is_empty() {
        frame.render_widget(
            Paragraph::new(Line::styled(" none yet: press a", Style::new().dark_gray())),
            inner,
        );
        return;
    }
    let selected_addr = state.selected_client_addr();
    let is_selected = |c: &ClientView| c.local.is_some() && c.local == selected_addr;
    let width = inner.width as usize;
    let clients: Vec<&ClientView> = state.clients.values().collect();
    let rows = (inner.height as usize).saturating_sub(1);
    // When not every client has a row, the last row lists the others' verdicts in short.
    let height = if clients.len() > rows {
        rows.saturating_sub(1)
    } else {
        rows
    };
    // The newest at the bottom, like the other panes, unless the selected client is older.
    let mut window = visible_window(clients.len(), height, 0);
    if let Some(index) = clients.iter().position(|c| is_selected(c))
        && !window.contains(&index)
    {
        let start = index.saturating_sub(height / 2);
        window = start..(start + height).min(clients.len());
    }
    // One verdict column for every row shown: long verdicts when the status column keeps
    // room for a few words, the marks alone otherwise.
    let hidden: Vec<&ClientView> = clients[..window.start]
        .iter()
        .chain(&clients[window.end..])
        .copied()
        .collect();
    let shown = &clients[window];
    let column = |long: bool| {
        shown
            .iter()
            .map(|c| {
                let (l, s, _) = verdict(c);
                let text = if long {
                    l.chars().count()
                } else {
                    s.chars().count()
                };
                if text == 0 { 0 } else { text + 1 }
            })
            .max()
            .unwrap_or(0)
    };
    // The client number's column: 3 wide, wider for thousands of clients ("2501 ").
    let number = state
        .clients
        .keys()
        .next_back()
        .map_or(3, |id| (id.to_string().len() + 1).max(3));
    let number_width = 1 + number;
    let long = width.saturating_sub(number_width + BYTES_WIDTH + column(true)) >= MIN_STATUS;
    let verdict_width = column(long);
    let status_width = width.saturating_sub(number_width + BYTES_WIDTH + verdict_width);
    let mut lines = vec![Line::styled(
        format!(
            " {:<number$}{:<status_width$}{:>8}{:>8}",
            "#", "now", "sent", "echoed"
        ),
        Style::new().dark_gray(),
    )];
    lines.extend(shown.iter().map(|client| {
        let columns = (number, status_width);
        client_line(state, client, columns, long, is_selected(client))
    }));
    if !hidden.is_empty() {
        lines.push(strip_line(" also", &hidden, width));
    }
    frame.render_widget(Paragraph::new(lines), inner);
}

/// The status column never gets narrower than this while verdicts are spelled out.
const MIN_STATUS: usize = 10;
/// The two byte columns (`  1.2 kB` each).
const BYTES_WIDTH: usize = 16;

/// The echo verdict: a long form and a short one (the mark alone), and its style.
pub fn verdict(client: &ClientView) -> (String, &'static str, Style) {
    let red = Style::new().red().bold();
    match client.echo_verdict() {
        EchoVerdict::NothingSent => (String::new(), "", Style::new()),
        EchoVerdict::Intact => ("✓".into(), "✓", Style::new().green()),
        EchoVerdict::Damaged => ("✗ damaged".into(), "✗", red),
        EchoVerdict::Short {
            missing,
            ended: true,
        } => (format!("✗ {} lost", format_bytes(missing)), "✗", red),
        EchoVerdict::Short {
            missing,
            ended: false,
        } => (
            format!("… {} due", format_bytes(missing)),
            "…",
            Style::new().yellow(),
        ),
    }
}

/// `▶2  id 0            10 B    10 B ✓`: the verdict always shows; a status that does not fit
/// its column takes its short form (`RST` for `aborted with RST`), never a cut word.
fn client_line(
    state: &TuiState,
    client: &ClientView,
    (number, status_width): (usize, usize),
    long_verdict: bool,
    selected: bool,
) -> Line<'static> {
    let (status, short_status, style) = status(state, client);
    let status = if status.chars().count() < status_width {
        status
    } else {
        short_status
    };
    let (long, short, verdict_style) = verdict(client);
    let verdict = if long_verdict {
        long
    } else {
        short.to_string()
    };
    let line = Line::from(vec![
        Span::raw(if selected { "▶" } else { " " }),
        Span::styled(format!("{:<number$}", client.id), Style::new().bold()),
        Span::styled(
            format!("{:<status_width$}", truncate(&status, status_width)),
            style,
        ),
        Span::raw(format!(
            "{:>8}{:>8}",
            format_bytes(client.sent),
            format_bytes(client.echoed)
        )),
        Span::styled(
            if verdict.is_empty() {
                String::new()
            } else {
                format!(" {verdict}")
            },
            verdict_style,
        ),
    ]);
    if selected {
        line.style(Style::new().add_modifier(Modifier::REVERSED))
    } else {
        line
    }
}

/// `id 3`, `waits for an id`, `aborted with RST`…, with a short form for narrow panes.
fn status(state: &TuiState, client: &ClientView) -> (String, String, Style) {
    if let Some(end) = client.ended {
        let dim = Style::new().dark_gray();
        let (long, short) = match end {
            ClientEnd::ByClient(CloseKind::Fin) => ("closed with FIN", "FIN"),
            ClientEnd::ByClient(CloseKind::Rst) => ("aborted with RST", "RST"),
            ClientEnd::ByTunnel if client.gave_up_waiting => ("got no id", "no id"),
            ClientEnd::ByTunnel => ("closed by tunnel", "closed"),
            ClientEnd::Error => match &client.connect_error {
                Some(_) => ("cannot connect", "no conn"),
                None => ("socket error", "error"),
            },
        };
        return (long.to_string(), short.to_string(), dim);
    }
    if state.is_waiting(client) {
        return (
            "waits for an id".into(),
            "waits".into(),
            Style::new().yellow(),
        );
    }
    match state.conn_of_client(client) {
        Some(id) => (format!("id {id}"), format!("id {id}"), Style::new().green()),
        None => ("connecting".into(), "conn…".into(), Style::new().yellow()),
    }
}

/// One line for terminals too small for the clients pane (80x24): every client's number and
/// echo verdict, ` echo  1 ✓  2 … 9 B due  3 ✗ damaged`; short marks when they do not fit,
/// and `+N` for the newest ones that still don't.
pub fn render_strip(frame: &mut Frame<'_>, area: Rect, state: &TuiState) {
    let dim = Style::new().dark_gray();
    let line = if state.clients.is_empty() {
        Line::from(vec![
            Span::styled(" echo", dim),
            Span::styled("  no clients yet: press a", dim),
        ])
    } else {
        let clients: Vec<&ClientView> = state.clients.values().collect();
        strip_line(" echo", &clients, area.width as usize)
    };
    frame.render_widget(Paragraph::new(line), area);
}

/// `lead` then each client's number and verdict: long forms if they all fit, marks alone
/// otherwise, and `+N` for the last ones that still don't.
fn strip_line(lead: &'static str, clients: &[&ClientView], width: usize) -> Line<'static> {
    let dim = Style::new().dark_gray();
    let entries: Vec<(String, String, String, Style)> = clients
        .iter()
        .map(|client| {
            let (long, short, style) = verdict(client);
            let (long, short) = if long.is_empty() {
                ("–".to_string(), "–")
            } else {
                (long, short)
            };
            (client.id.to_string(), long, short.to_string(), style)
        })
        .collect();
    let used = |long: bool, n: usize| -> usize {
        lead.chars().count()
            + entries[..n]
                .iter()
                .map(|(id, l, s, _)| 2 + id.len() + 1 + if long { l } else { s }.chars().count())
                .sum::<usize>()
    };
    let long = used(true, entries.len()) <= width;
    let more = |shown: usize| match entries.len() - shown {
        0 => 0,
        hidden => format!("  +{hidden}").len(),
    };
    let mut shown = entries.len();
    while shown > 0 && used(long, shown) + more(shown) > width {
        shown -= 1;
    }
    let mut spans = vec![Span::styled(lead, dim)];
    for (id, l, s, style) in &entries[..shown] {
        spans.push(Span::raw(format!("  {id} ")));
        spans.push(Span::styled(
            if long { l.clone() } else { s.clone() },
            *style,
        ));
    }
    if shown < entries.len() {
        spans.push(Span::styled(format!("  +{}", entries.len() - shown), dim));
    }
    Line::from(spans)
}
