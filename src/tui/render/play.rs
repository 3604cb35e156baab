//! `--play`: the scenario's steps, done (✓), waiting for Enter (▶) and still to come, in the
//! log's place; at the end, each expectation ticked (✓) or crossed (✗).

use ratatui::prelude::*;
use ratatui::widgets::{Block, Paragraph};

use super::{shorten_at_words, truncate};
use crate::tui::state::{PlayView, TuiState};

pub fn render(frame: &mut Frame<'_>, area: Rect, state: &TuiState) {
    let Some(play) = &state.play else { return };
    let (title, hint) = title(play);
    let block = Block::bordered()
        .border_style(Style::new().cyan())
        .title(Line::from(vec![
            Span::styled(format!(" ▶ {} ", play.name), Style::new().bold()),
            Span::raw(title),
        ]))
        .title_bottom(Line::styled(
            shorten_at_words(&hint, area.width.saturating_sub(2) as usize),
            Style::new().dark_gray(),
        ));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let width = inner.width as usize;
    let rows = inner.height as usize;
    let lines: Vec<Line> = match &play.verdicts {
        Some(verdicts) => verdicts
            .iter()
            .map(|(passed, text)| {
                let (mark, style) = if *passed {
                    ("✓", Style::new().green())
                } else {
                    ("✗", Style::new().red().bold())
                };
                Line::from(vec![
                    Span::styled(format!(" {mark} "), style),
                    Span::raw(truncate(text, width.saturating_sub(3))),
                ])
            })
            .collect(),
        None => {
            // Keep the step that runs next in view, with what came just before it.
            let focus = play.waiting.unwrap_or(play.done).min(play.steps.len());
            let start = focus.saturating_sub(rows.saturating_sub(1) / 2);
            play.steps
                .iter()
                .enumerate()
                .skip(start)
                .take(rows)
                .map(|(i, step)| {
                    let (mark, style) = if i < play.done {
                        ("✓", Style::new().green())
                    } else if Some(i) == play.waiting {
                        ("▶", Style::new().cyan().bold())
                    } else if i == play.done {
                        ("…", Style::new().yellow())
                    } else {
                        (" ", Style::new().dark_gray())
                    };
                    let text = format!("{:>3} {step}", i + 1);
                    Line::from(vec![
                        Span::styled(format!(" {mark}"), style),
                        Span::styled(truncate(&text, width.saturating_sub(2)), style),
                    ])
                })
                .collect()
        }
    };
    frame.render_widget(Paragraph::new(lines), inner);
}

/// The title after the name, and the hint on the bottom border.
fn title(play: &PlayView) -> (String, String) {
    let total = play.steps.len();
    match &play.verdicts {
        Some(verdicts) => {
            let held = verdicts.iter().filter(|(passed, _)| *passed).count();
            let verdict = if held == verdicts.len() {
                "PASSED"
            } else {
                "FAILED"
            };
            (
                format!(
                    "· {verdict}: {held} of {} expectations hold ",
                    verdicts.len()
                ),
                " q quits (the report follows on the terminal) ".into(),
            )
        }
        None => {
            let step = format!("· step {} of {total} ", (play.done + 1).min(total));
            let hint = match (play.waiting, play.every) {
                (Some(_), None) => " Enter runs the next step · q quits · other keys as usual ",
                (Some(_), Some(_)) => " steps go by themselves · Enter now · q quits ",
                (None, _) => " the step is running… ",
            };
            (step, hint.into())
        }
    }
}
