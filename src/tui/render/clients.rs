//! The lab's echo clients: which id each has, whether it waits for one, what it sent and got
//! back (and whether the echo was intact), and how it ended.

use ratatui::prelude::*;
use ratatui::widgets::{Block, Paragraph};

use super::{border_style, format_bytes, truncate, visible_window};
use crate::event::{ClientEnd, CloseKind};
use crate::tui::state::{ClientView, TuiState};

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
    let height = (inner.height as usize).saturating_sub(1);
    // The newest at the bottom, like the other panes, unless the selected client is older.
    let mut window = visible_window(clients.len(), height, 0);
    if let Some(index) = clients.iter().position(|c| is_selected(c))
        && !window.contains(&index)
    {
        let start = index.saturating_sub(height / 2);
        window = start..(start + height).min(clients.len());
    }
    let mut lines = vec![Line::styled(
        format!(
            " {:<4}{:<STATUS_WIDTH$}{:>9}{:>9}",
            "#", "now", "sent", "echoed"
        ),
        Style::new().dark_gray(),
    )];
    lines.extend(
        clients[window]
            .iter()
            .map(|client| client_line(state, client, width, is_selected(client))),
    );
    frame.render_widget(Paragraph::new(lines), inner);
}

/// Room for `aborted with RST`.
const STATUS_WIDTH: usize = 17;

/// ` 2   id 0                 10 B     10 B ✓`
fn client_line(
    state: &TuiState,
    client: &ClientView,
    width: usize,
    selected: bool,
) -> Line<'static> {
    let (status, style) = status(state, client);
    let (check, check_style) = match (client.echoed, client.intact) {
        (0, _) => ("", Style::new()),
        (_, true) => (" ✓", Style::new().green()),
        (_, false) => (" ✗ damaged", Style::new().red().bold()),
    };
    let line = Line::from(vec![
        Span::raw(if selected { "▶" } else { " " }),
        Span::styled(format!("{:<4}", client.id), Style::new().bold()),
        Span::styled(
            format!("{:<STATUS_WIDTH$}", truncate(&status, STATUS_WIDTH - 1)),
            style,
        ),
        Span::raw(format!(
            "{:>9}{:>9}",
            format_bytes(client.sent),
            format_bytes(client.echoed)
        )),
        Span::styled(
            truncate(check, width.saturating_sub(1 + 4 + STATUS_WIDTH + 18)),
            check_style,
        ),
    ]);
    if selected {
        line.style(Style::new().add_modifier(Modifier::REVERSED))
    } else {
        line
    }
}

/// `id 3`, `waits for an id`, `aborted with RST`…
fn status(state: &TuiState, client: &ClientView) -> (String, Style) {
    if let Some(end) = client.ended {
        let how = match end {
            ClientEnd::ByClient(CloseKind::Fin) => "closed with FIN".to_string(),
            ClientEnd::ByClient(CloseKind::Rst) => "aborted with RST".to_string(),
            ClientEnd::ByTunnel if client.gave_up_waiting => "got no id".to_string(),
            ClientEnd::ByTunnel => "closed by tunnel".to_string(),
            ClientEnd::Error => match &client.connect_error {
                Some(_) => "cannot connect".to_string(),
                None => "socket error".to_string(),
            },
        };
        return (how, Style::new().dark_gray());
    }
    if state.is_waiting(client) {
        return ("waits for an id".into(), Style::new().yellow());
    }
    match state.conn_of_client(client) {
        Some(id) => (format!("id {id}"), Style::new().green()),
        None => ("connecting".into(), Style::new().yellow()),
    }
}
