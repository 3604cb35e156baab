//! Drawing: one file per panel, each a pure function of [`TuiState`].
//!
//! The screen at 100x30, the smallest "normal" layout (captured from tmux; bigger terminals
//! give the panes more room):
//!
//! ```text
//! ┌ tunlab · TCP over one UDP link ──────────────────────────────────────────────────────────────────┐
//! │ 127.0.0.1 │ server tcp :1818 ● up │ proxy2 udp :3328 ● up │ proxy1 tcp :3327 udp :54322 ● up     │ header
//! │ link classic, ids 0-9 · no impairment │ capture not recording │ clients 2 live · 1 ended         │
//! └──────────────────────────────────────────────────────────────────────────────────────────────────┘
//! ┌ Connections ─────────────────────────────┐┌ Connection 1 · free ─────────────────────────────────┐
//! │ 0 open       client 1  2↑ 2↓             ││ p1→p2 3 fr 6 B │ p2→p1 2 fr 6 B                      │ trace
//! │▶1 free                                   ││   0.005 ── id given to client 3 (127.0.0.1:35326)    │ of the
//! │ 2 open       client 2  1↑ 1↓             ││   0.005 p1→p2 C1                                     │ selected
//! │ …  one row per id, then waiting clients  ││   0.024 p2→p1 C1OK                                   │ id, or
//! │ 9 free                                   ││   2.511 p1→p2 D1 len=6 "adios\n"                     │ its
//! └──────────────────────────────────────────┘│   2.511 p2→p1 D1 len=6 "adios\n"                     │ ladder
//! ┌ Clients (3) ─────────────────────────────┐│   3.019 p1→p2 X1                                     │ (`l`)
//! │ #   now                   sent   echoed  ││                                                      │
//! │ 1   id 0                  10 B     10 B ✓││                                                      │
//! │ 3   aborted with RST       6 B      6 B ✓││                                                      │
//! └──────────────────────────────────────────┘└──────────────────────────────────────────────────────┘
//! ┌ Log ─────────────────────────────────────────────────────────────────────────────────────────────┐
//! │   3.019 proxy2: connection 1 (127.0.0.1:54322) free                                              │
//! └──────────────────────────────────────────────────────────────────────────────────────────────────┘
//!  frames 11 (p1→p2 6 · p2→p1 5) · malformed 0 · ignored 0 · UI dropped 0                             status
//!  q quit  ? help  a add  ↑↓ 0-9 select  s send  m message  f FIN  r RST  l ladder  space pause  p pro
//! ```
//!
//! - Compact (below 100x30, down to 80x24): the header loses its border, there is no clients
//!   pane, and the log shrinks; the connection list and the detail pane stay, and the ladder
//!   takes the list's place when it is shown.
//! - Large (from 160x48): the list becomes a grid with one panel per id, each with the tail of
//!   its trace, and the detail pane (trace or ladder of the selected id) sits on the right.
//!   With more connections than fit (the extended modes), the grid shows the panels around
//!   the selected one and says which.
//! - `?` draws the help over everything.

pub mod clients;
pub mod connections;
pub mod grid;
pub mod header;
pub mod held;
pub mod help;
pub mod ladder;
pub mod log;
pub mod parts;
pub mod play;
pub mod seq_graph;
pub mod status;
pub mod trace;

use std::time::Duration;

use ratatui::prelude::*;

use super::state::{Selection, TuiState};

/// Which arrangement of panels fits the terminal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScreenLayout {
    Compact,
    Normal,
    Large,
}

impl ScreenLayout {
    pub fn for_area(area: Rect) -> Self {
        if area.width >= 160 && area.height >= 48 {
            ScreenLayout::Large
        } else if area.width >= 100 && area.height >= 30 {
            ScreenLayout::Normal
        } else {
            ScreenLayout::Compact
        }
    }
}

/// Draws the whole screen.
pub fn draw(frame: &mut Frame<'_>, state: &TuiState) {
    let area = frame.area();
    match ScreenLayout::for_area(area) {
        ScreenLayout::Compact => draw_compact(frame, area, state),
        ScreenLayout::Normal => draw_normal(frame, area, state),
        ScreenLayout::Large => draw_large(frame, area, state),
    }
    if state.view.show_help {
        help::render(frame, area, state);
    }
}

fn draw_compact(frame: &mut Frame<'_>, area: Rect, state: &TuiState) {
    let log_rows = if area.height >= 22 { 5 } else { 0 };
    // No room for the clients pane: one line says each client's echo verdict instead.
    let [header_area, body, strip_area, log_area, status_area] = Layout::vertical([
        Constraint::Length(header::height(state, true)),
        Constraint::Min(6),
        Constraint::Length(1),
        Constraint::Length(log_rows),
        Constraint::Length(2),
    ])
    .areas(area);
    clients::render_strip(frame, strip_area, state);
    header::render_compact(frame, header_area, state);
    if state.view.show_ladder || state.view.graph.is_some() {
        // Four lifelines (or a graph) need the width more than the list does; ↑↓ still
        // change the id.
        detail(frame, body, state);
    } else {
        let [list_area, detail_area] =
            Layout::horizontal([Constraint::Length(30), Constraint::Min(20)]).areas(body);
        connections::render_list(frame, list_area, state);
        detail(frame, detail_area, state);
    }
    if log_rows > 0 {
        log_or_held(frame, log_area, state);
    }
    status::render(frame, status_area, state, true);
}

fn draw_normal(frame: &mut Frame<'_>, area: Rect, state: &TuiState) {
    // The body first needs every id and a few clients; the log gets what is left, 4 to 8 rows.
    let log_rows = area
        .height
        .saturating_sub(header::height(state, false) + 2 + 12 + 6)
        .clamp(4, 8);
    let [header_area, body, log_area, status_area] = Layout::vertical([
        Constraint::Length(header::height(state, false)),
        Constraint::Min(10),
        Constraint::Length(log_rows),
        Constraint::Length(2),
    ])
    .areas(area);
    header::render(frame, header_area, state);
    let [left, detail_area] =
        Layout::horizontal([Constraint::Length(44), Constraint::Min(30)]).areas(body);
    let list_rows = connections::list_height(state).min(left.height.saturating_sub(5));
    let [list_area, clients_area] =
        Layout::vertical([Constraint::Length(list_rows), Constraint::Min(3)]).areas(left);
    connections::render_list(frame, list_area, state);
    clients::render(frame, clients_area, state);
    detail(frame, detail_area, state);
    log_or_held(frame, log_area, state);
    status::render(frame, status_area, state, false);
}

fn draw_large(frame: &mut Frame<'_>, area: Rect, state: &TuiState) {
    let [header_area, body, bottom, status_area] = Layout::vertical([
        Constraint::Length(header::height(state, false)),
        Constraint::Min(20),
        Constraint::Length(10),
        Constraint::Length(2),
    ])
    .areas(area);
    header::render(frame, header_area, state);
    let [grid_area, detail_area] =
        Layout::horizontal([Constraint::Percentage(58), Constraint::Percentage(42)]).areas(body);
    grid::render(frame, grid_area, state);
    detail(frame, detail_area, state);
    let [clients_area, log_area] =
        Layout::horizontal([Constraint::Percentage(40), Constraint::Percentage(60)]).areas(bottom);
    clients::render(frame, clients_area, state);
    log_or_held(frame, log_area, state);
    status::render(frame, status_area, state, false);
}

/// The log; in step mode the frames the link holds; with `--play` the scenario's steps (the
/// log keeps filling meanwhile).
fn log_or_held(frame: &mut Frame<'_>, area: Rect, state: &TuiState) {
    if state.hold.holding && state.play.is_some() {
        // A scenario stepping a held link: its steps and what the link holds, side by side.
        let [steps, held_area] =
            Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)])
                .areas(area);
        play::render(frame, steps, state);
        held::render(frame, held_area, state);
    } else if state.hold.holding {
        held::render(frame, area, state);
    } else if state.play.is_some() {
        play::render(frame, area, state);
    } else {
        log::render(frame, area, state);
    }
}

/// The detail pane: the selected id's trace or ladder, or what a waiting client is doing.
fn detail(frame: &mut Frame<'_>, area: Rect, state: &TuiState) {
    match state.view.selected {
        Selection::Conn(id) if let Some(direction) = state.view.graph => {
            seq_graph::render(frame, area, state, id, direction);
        }
        Selection::Conn(id) if state.view.show_ladder => ladder::render(frame, area, state, id),
        Selection::Conn(id) => trace::render(frame, area, state, id),
        Selection::Waiting(addr) => trace::render_waiting(frame, area, state, addr),
    }
}

/// Seconds since the lab started, millisecond precision, right-aligned: `   1.234`.
pub fn format_time(time: Duration) -> String {
    format!("{:>8.3}", time.as_secs_f64())
}

/// `1.2 kB`-style sizes for narrow columns.
pub fn format_bytes(bytes: u64) -> String {
    match bytes {
        0..1_000 => format!("{bytes} B"),
        1_000..1_000_000 => format!("{:.1} kB", bytes as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1} MB", bytes as f64 / 1e6),
        _ => format!("{:.1} GB", bytes as f64 / 1e9),
    }
}

/// Cuts `text` to at most `width` terminal columns, marking the cut with `…`. Columns, not
/// characters: a payload shown as text may hold wide characters (`日本`, `⚡`).
pub fn truncate(text: &str, width: usize) -> String {
    use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};
    if text.width() <= width {
        return text.to_string();
    }
    if width == 0 {
        return String::new();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in text.chars() {
        let w = c.width().unwrap_or(0);
        if used + w > width - 1 {
            break;
        }
        out.push(c);
        used += w;
    }
    out.push('…');
    out
}

/// The rows of a list of `total` that fit `height`, scrolled `scroll` rows up from the newest.
pub fn visible_window(total: usize, height: usize, scroll: usize) -> std::ops::Range<usize> {
    let end = total.saturating_sub(scroll.min(total.saturating_sub(height)));
    end.saturating_sub(height)..end
}

/// The style every panel uses for its border, brighter when it holds the selection.
pub fn border_style(focused: bool) -> Style {
    if focused {
        Style::new().fg(Color::Cyan)
    } else {
        Style::new().fg(Color::DarkGray)
    }
}

/// One piece of a line that [`fit`] may shorten: its forms from longest to shortest (an empty
/// form lets it disappear). Each shorter form comes with a rank: when the line is too wide,
/// the step with the lowest rank among all parts is taken first.
#[derive(Clone, Debug)]
pub struct Part {
    pub full: Vec<Span<'static>>,
    pub shorter: Vec<(u8, Vec<Span<'static>>)>,
}

impl Part {
    pub fn new(full: Vec<Span<'static>>, shorter: Vec<(u8, Vec<Span<'static>>)>) -> Self {
        Part { full, shorter }
    }
    fn form(&self, step: usize) -> &[Span<'static>] {
        match step {
            0 => &self.full,
            n => &self.shorter[n - 1].1,
        }
    }
}

/// Lays `parts` out on one line of `width` columns, joined by `separator`: while the line is
/// too wide, the shortening step with the lowest rank is taken. Words are never cut; a line
/// whose parts are all at their shortest may still be too wide (the terminal clips it).
pub fn fit(parts: &[Part], separator: &Span<'static>, width: usize) -> Line<'static> {
    let form_width = |spans: &[Span<'static>]| spans.iter().map(Span::width).sum::<usize>();
    let mut chosen = vec![0usize; parts.len()];
    let line_width = |chosen: &[usize]| -> usize {
        let widths: Vec<usize> = parts
            .iter()
            .zip(chosen)
            .map(|(part, &step)| form_width(part.form(step)))
            .filter(|&w| w > 0)
            .collect();
        widths.iter().sum::<usize>() + widths.len().saturating_sub(1) * separator.width()
    };
    while line_width(&chosen) > width {
        let next = parts
            .iter()
            .enumerate()
            .filter_map(|(i, part)| part.shorter.get(chosen[i]).map(|(rank, _)| (*rank, i)))
            .min();
        match next {
            Some((_, i)) => chosen[i] += 1,
            None => break,
        }
    }
    let mut spans = Vec::new();
    for (part, &step) in parts.iter().zip(&chosen) {
        let form = part.form(step);
        if form_width(form) == 0 {
            continue;
        }
        if !spans.is_empty() {
            spans.push(separator.clone());
        }
        spans.extend(form.iter().cloned());
    }
    Line::from(spans)
}

/// Shortens `text` to `width` columns at a word boundary (a space), marking the cut with `…`;
/// unlike [`truncate`], it never leaves half a word.
pub fn shorten_at_words(text: &str, width: usize) -> String {
    if Span::raw(text).width() <= width {
        return text.to_string();
    }
    let mut best = String::new();
    for (i, c) in text.char_indices() {
        if c == ' ' {
            let head = text[..i].trim_end_matches([' ', '·', ',', '│']).trim_end();
            if Span::raw(head).width() + 2 <= width {
                best = format!("{head} …");
            } else {
                break;
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_takes_the_lowest_ranked_step_first_and_never_cuts_a_word() {
        let parts = [
            Part::new(
                vec![Span::raw("link classic, ids 0-9 · loss 10%")],
                vec![(1, vec![Span::raw("link loss 10%")])],
            ),
            Part::new(
                vec![Span::raw("capture file.pcap")],
                vec![(2, vec![Span::raw("capture on")]), (3, vec![])],
            ),
            Part::new(
                vec![Span::raw("clients 3 live · 1 ended")],
                vec![(4, vec![Span::raw("3 live")])],
            ),
        ];
        let sep = Span::raw(" │ ");
        let text = |width| fit(&parts, &sep, width).to_string();
        assert_eq!(
            text(200),
            "link classic, ids 0-9 · loss 10% │ capture file.pcap │ clients 3 live · 1 ended"
        );
        assert_eq!(
            text(70),
            "link loss 10% │ capture file.pcap │ clients 3 live · 1 ended"
        );
        assert_eq!(
            text(55),
            "link loss 10% │ capture on │ clients 3 live · 1 ended"
        );
        assert_eq!(text(50), "link loss 10% │ clients 3 live · 1 ended");
        assert_eq!(text(25), "link loss 10% │ 3 live");
    }

    #[test]
    fn truncation_counts_columns() {
        assert_eq!(truncate("hola", 4), "hola");
        assert_eq!(truncate("hola mundo", 5), "hola…");
        // Each of these takes two columns.
        assert_eq!(truncate("日本語です", 5), "日本…");
        assert_eq!(Span::raw(truncate("⚡ dropped", 6)).width(), 6);
    }

    #[test]
    fn shortening_stops_at_a_word() {
        assert_eq!(
            shorten_at_words("loss 10% · dropped 3↑ 0↓", 40),
            "loss 10% · dropped 3↑ 0↓"
        );
        assert_eq!(
            shorten_at_words("loss 10% · dropped 3↑ 0↓", 14),
            "loss 10% …"
        );
        assert_eq!(shorten_at_words("unbreakable", 5), "");
    }
}
