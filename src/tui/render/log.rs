//! The log: connection changes, role starts and stops, warnings, and what each key did.
//! Per-frame and per-read events are left to the traces, or they would drown everything else.

use ratatui::prelude::*;
use ratatui::widgets::{Block, Paragraph};

use super::{border_style, format_time, truncate, visible_window};
use crate::event::Level;
use crate::tui::state::TuiState;

pub fn render(frame: &mut Frame<'_>, area: Rect, state: &TuiState) {
    let block = Block::bordered()
        .border_style(border_style(false))
        .title(" Log ");
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let width = inner.width as usize;
    let window = visible_window(state.log.len(), inner.height as usize, 0);
    let lines: Vec<Line> = state
        .log
        .iter()
        .skip(window.start)
        .take(window.len())
        .map(|line| {
            let style = match line.level {
                Level::Info => Style::new(),
                Level::Warn => Style::new().yellow(),
                Level::Error => Style::new().red().bold(),
            };
            let time = format!("{} ", format_time(line.time));
            let room = width.saturating_sub(time.len());
            Line::from(vec![
                Span::styled(time, Style::new().dark_gray()),
                Span::styled(truncate(&line.text, room), style),
            ])
        })
        .collect();
    frame.render_widget(Paragraph::new(lines), inner);
}
