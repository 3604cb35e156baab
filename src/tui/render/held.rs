//! Step mode: the frames the held link holds, oldest first, in the log's place. `.` lets the
//! oldest cross, Tab chooses one, `x` drops the chosen one, `d` holds a copy behind it, `h`
//! lets everything flow again.

use ratatui::prelude::*;
use ratatui::widgets::{Block, Paragraph};

use super::{shorten_at_words, truncate};
use crate::topology::LinkDirection;
use crate::tui::state::TuiState;

pub fn render(frame: &mut Frame<'_>, area: Rect, state: &TuiState) {
    let held = &state.hold.frames;
    let title = Line::from(vec![
        Span::styled(" Link held ", Style::new().black().on_yellow().bold()),
        Span::raw(format!(
            " {} frame{} ",
            held.len(),
            if held.len() == 1 { "" } else { "s" }
        )),
    ]);
    let hints = " . release oldest · Tab choose · x drop · d duplicate · h let flow ";
    let block = Block::bordered()
        .border_style(Style::new().yellow())
        .title(title)
        .title_bottom(Line::styled(
            shorten_at_words(hints, area.width.saturating_sub(2) as usize),
            Style::new().dark_gray(),
        ));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let width = inner.width as usize;
    if held.is_empty() {
        frame.render_widget(
            Paragraph::new(Line::styled(
                shorten_at_words(
                    " nothing held yet: every frame sent from now on waits here",
                    width,
                ),
                Style::new().dark_gray(),
            )),
            inner,
        );
        return;
    }
    let chosen = state.chosen_held().map(|f| f.id);
    let rows = inner.height as usize;
    // Keep the chosen frame on screen; otherwise show the oldest (the next to go).
    let at = held.iter().position(|f| Some(f.id) == chosen).unwrap_or(0);
    let start = (at + 1).saturating_sub(rows);
    let lines: Vec<Line> = held
        .iter()
        .enumerate()
        .skip(start)
        .take(rows)
        .map(|(n, f)| {
            let is_chosen = Some(f.id) == chosen;
            let (arrow, style) = match f.direction {
                LinkDirection::ToProxy2 => ("p1→p2", Style::new().cyan()),
                LinkDirection::ToProxy1 => ("p2→p1", Style::new().magenta()),
            };
            let prefix = format!("{}{:>3} ", if is_chosen { "▶" } else { " " }, n + 1);
            let copy = if f.copy { " (copy)" } else { "" };
            let room = width.saturating_sub(prefix.chars().count() + 6 + copy.len());
            let line = Line::from(vec![
                Span::raw(prefix),
                Span::styled(arrow, style),
                Span::raw(" "),
                Span::raw(truncate(&state.held_label(f), room)),
                Span::styled(copy, Style::new().yellow()),
            ]);
            if is_chosen {
                line.style(Style::new().add_modifier(Modifier::REVERSED))
            } else {
                line
            }
        })
        .collect();
    frame.render_widget(Paragraph::new(lines), inner);
}
