//! The TUI's loop, whatever terminal it draws on: keys become [`Command`]s on the [`Lab`],
//! events fold into the state, and the screen is redrawn on a clock, at most
//! [`FRAMES_PER_SECOND`] times a second and only when something on it changed.
//!
//! The data path never waits for the screen: roles `try_send` into a bounded channel (and
//! count what they drop), and this loop drains it on its clock, just before it would draw:
//! nothing is drawn between ticks, so folding events any sooner would show nothing sooner,
//! and a loop that waited on the channel was woken (a futex call on the sender's thread and
//! a context switch) for every event sent, hundreds to thousands of times a second under
//! traffic. An idle lab draws nothing at all: with no event, key or counter change, a tick
//! only reads the lab's counters.
//!
//! Generic over the ratatui backend, so a test can run the real loop on a `TestBackend` and
//! count its draws, and the benchmark can run it on a crossterm backend writing to a sink.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ratatui::Terminal;
use ratatui::backend::Backend;
use ratatui::crossterm::event::Event as Input;
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;

use super::app::{Chatter, FRAMES_PER_SECOND, execute, handle_key, hold_view};
use super::render;
use super::state::{CaptureView, TuiState, apply_snapshot, update};
use crate::capture::CaptureStatus;
use crate::event::{Event, Level};
use crate::lab::Lab;
use crate::topology::Role;

/// Events folded per tick at most, so a burst cannot hold up keys and the screen for long
/// (the rest wait in the channel for the next tick); the channel holds
/// [`super::app::EVENT_CAPACITY`].
const MAX_EVENTS_PER_TICK: usize = 64 * 1024;

/// The lab, what the screen knows of it, and the terminal it is drawn on.
pub struct ScreenLoop<B: Backend> {
    pub terminal: Terminal<B>,
    pub lab: Lab,
    pub state: TuiState,
    events: mpsc::Receiver<Event>,
    inputs: mpsc::UnboundedReceiver<Input>,
    capture: Option<Arc<CaptureStatus>>,
    /// Clients talking on their own (`--chatter`, `t`).
    chatter: Chatter,
    draws: Arc<AtomicU64>,
}

impl<B: Backend> ScreenLoop<B> {
    /// `events` is the receiving end of the sink the lab was started with; `inputs` are the
    /// terminal's keys (and resizes); `capture` is the running capture's status, if any.
    pub fn new(
        terminal: Terminal<B>,
        lab: Lab,
        state: TuiState,
        events: mpsc::Receiver<Event>,
        inputs: mpsc::UnboundedReceiver<Input>,
        capture: Option<Arc<CaptureStatus>>,
    ) -> Self {
        ScreenLoop {
            terminal,
            lab,
            state,
            events,
            inputs,
            capture,
            chatter: Chatter::default(),
            draws: Arc::default(),
        }
    }

    /// How many times the screen has been drawn so far, readable while the loop runs.
    pub fn draw_counter(&self) -> Arc<AtomicU64> {
        self.draws.clone()
    }

    /// Runs until the person quits (a key), `quit` resolves (a signal), or drawing fails.
    pub async fn run(&mut self, quit: impl Future<Output = ()>) -> Result<(), B::Error> {
        tokio::pin!(quit);
        let mut tick = tokio::time::interval(Duration::from_millis(1000 / FRAMES_PER_SECOND));
        tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let mut events_open = true;
        let mut inputs_open = true;
        let mut dirty = true;
        loop {
            tokio::select! {
                // Order matters: quitting, keys and the redraw clock come before draining
                // events, so a flood of events never starves them.
                biased;
                () = &mut quit => return Ok(()),
                input = self.inputs.recv(), if inputs_open => {
                    let Some(input) = input else {
                        inputs_open = false;
                        continue;
                    };
                    match input {
                        Input::Key(key) => {
                            if let Some(command) = handle_key(&mut self.state, key)
                                && execute(&mut self.lab, &mut self.state, command).await
                            {
                                return Ok(());
                            }
                            dirty = true;
                        }
                        // The next draw fills the new size (ratatui resizes on draw).
                        Input::Resize(..) => dirty = true,
                        _ => {}
                    }
                }
                () = self.chatter.due(self.state.chatter) => {
                    self.chatter.speak(&self.lab, &mut self.state);
                }
                _ = tick.tick() => {
                    // Counts that stood in for per-frame events past the TUI's rate join
                    // the stream, behind what is queued; then the queue is folded.
                    self.lab.events().flush_folded();
                    if events_open {
                        let (folded, open) = self.fold_queued_events();
                        dirty |= folded;
                        events_open = open;
                    }
                    dirty |= self.refresh();
                    if dirty {
                        let state = &self.state;
                        self.terminal
                            .draw(|frame| render::draw(frame, state))?;
                        self.draws.fetch_add(1, Ordering::Relaxed);
                        dirty = false;
                    }
                }
            }
        }
    }

    /// Folds what the channel holds into the state, without waiting; whether anything was
    /// folded, and whether the channel is still open.
    fn fold_queued_events(&mut self) -> (bool, bool) {
        let mut folded = false;
        for _ in 0..MAX_EVENTS_PER_TICK {
            match self.events.try_recv() {
                Ok(event) => {
                    update(&mut self.state, event);
                    folded = true;
                }
                Err(mpsc::error::TryRecvError::Empty) => return (folded, true),
                Err(mpsc::error::TryRecvError::Disconnected) => return (folded, false),
            }
        }
        (folded, true)
    }

    /// Takes what the lab knows exactly (counters, clients, roles, capture, other threads'
    /// panics); true when any of it changed what the screen shows.
    fn refresh(&mut self) -> bool {
        let state = &mut self.state;
        let mut changed = apply_snapshot(state, &self.lab.snapshot());
        if let Some(status) = &self.capture {
            // The file name only: the header is narrow, and the whole path is printed when
            // the lab ends.
            let name = status.path().file_name().unwrap_or_default();
            let view = CaptureView {
                path: name.to_string_lossy().into_owned(),
                frames: status.frames_written(),
                failed: status.failed(),
            };
            if state.capture.as_ref() != Some(&view) {
                state.capture = Some(view);
                changed = true;
            }
        }
        for role in [Role::EchoServer, Role::Proxy2, Role::Proxy1] {
            changed |= state.set_running(role, self.lab.is_running(role));
        }
        let hold = hold_view(&self.lab);
        if hold != state.hold {
            changed = true;
        }
        state.set_hold(hold);
        for panic in super::terminal::take_other_panics() {
            state.note(Level::Error, panic);
            changed = true;
        }
        changed
    }
}
