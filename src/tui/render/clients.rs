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
    let width = inner.width as usize;
    let clients: Vec<&ClientView> = state.clients.values().collect();
    // Newest at the bottom, like the other panes; the selected client stays visible.
    let selected_index = clients
        .iter()
        .position(|c| c.local.is_some() && c.local == selected_addr);
    let height = inner.height as usize;
    let mut window = visible_window(clients.len(), height, 0);
    if let Some(index) = selected_index
        && !window.contains(&index)
    {
        window = index.saturating_sub(height / 2)
            ..(index.saturating_sub(height / 2) + height).min(clients.len());
    }
    let lines: Vec<Line> = clients[window]
        .iter()
        .map(|client| {
            client_line(
                state,
                client,
                width,
                client.local.is_some() && client.local == selected_addr,
            )
        })
        .collect();
    frame.render_widget(Paragraph::new(lines), inner);
}

fn client_line(
    state: &TuiState,
    client: &ClientView,
    width: usize,
    selected: bool,
) -> Line<'static> {
    let (status, style) = status(state, client);
    let echo_style = if client.intact {
        Style::new()
    } else {
        Style::new().red().bold()
    };
    let echo = if client.echoed == 0 {
        String::new()
    } else if client.intact {
        " intact".to_string()
    } else {
        " DAMAGED".to_string()
    };
    let head = format!(
        "{}{:<3} {}/{}",
        if selected { "▶" } else { " " },
        client.id,
        format_bytes(client.sent),
        format_bytes(client.echoed),
    );
    let room = width.saturating_sub(head.chars().count() + echo.chars().count() + 1);
    let line = Line::from(vec![
        Span::raw(head),
        Span::styled(echo, echo_style),
        Span::raw(" "),
        Span::styled(truncate(&status, room), style),
    ]);
    if selected {
        line.style(Style::new().add_modifier(Modifier::REVERSED))
    } else {
        line
    }
}

/// `id 3`, `waits for an id`, `ended: RST by client`…
fn status(state: &TuiState, client: &ClientView) -> (String, Style) {
    if let Some(end) = client.ended {
        let how = match end {
            ClientEnd::ByClient(CloseKind::Fin) => "closed with FIN".to_string(),
            ClientEnd::ByClient(CloseKind::Rst) => "aborted with RST".to_string(),
            ClientEnd::ByTunnel if client.gave_up_waiting => "no free id in time".to_string(),
            ClientEnd::ByTunnel => "closed by the tunnel".to_string(),
            ClientEnd::Error => match &client.connect_error {
                Some(e) => format!("cannot connect: {e}"),
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
