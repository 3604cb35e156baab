//! `tunlab --play FILE`: a scenario run on screen, for a class. The scenario runner drives the
//! lab exactly as `--script` does; this front end draws every event, shows the step list,
//! waits for Enter before each step (or lets them go every `--play-every`), lets the usual
//! keys act between steps, and ticks the expectations at the end.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use ratatui::crossterm::event::{Event as Input, KeyCode, KeyEventKind, KeyModifiers};

use super::app::{execute, handle_key, hold_view};
use super::render;
use super::state::{PlayView, TuiState, apply_snapshot, update};
use super::terminal::{self, InputReader, TerminalSession};
use crate::event::{Event, Level};
use crate::lab::Lab;
use crate::script::report::Report;
use crate::script::runner::{self, Front};
use crate::script::scenario::{self, Step};
use crate::script::source::Source;
use crate::script::{EXIT_FAILED, EXIT_INVALID, EXIT_PASSED};

/// Redraws at most this often while a step runs.
const FRAME: Duration = Duration::from_millis(1000 / super::app::FRAMES_PER_SECOND);

struct PlayFront {
    terminal: ratatui::Terminal<terminal::ScreenBackend>,
    /// Restores the terminal when dropped.
    _session: TerminalSession,
    input: InputReader,
    state: TuiState,
    last_draw: Instant,
    /// `q` or Ctrl-C while a step runs: the runner stops the run.
    stop: tokio_util::sync::CancellationToken,
}

impl PlayFront {
    fn draw(&mut self) {
        let state = &self.state;
        let _ = self.terminal.draw(|frame| render::draw(frame, state));
        self.last_draw = Instant::now();
    }

    fn refresh(&mut self, lab: &Lab) {
        apply_snapshot(&mut self.state, &lab.snapshot());
        self.state.set_hold(hold_view(lab));
        for role in [
            crate::topology::Role::EchoServer,
            crate::topology::Role::Proxy2,
            crate::topology::Role::Proxy1,
        ] {
            self.state.set_running(role, lab.is_running(role));
        }
    }

    fn play(&mut self) -> &mut PlayView {
        self.state.play.get_or_insert_with(PlayView::default)
    }
}

impl Front for PlayFront {
    fn say(&mut self, line: String) {
        self.state.note(Level::Info, line);
    }

    fn event(&mut self, event: &Event) {
        update(&mut self.state, event.clone());
    }

    async fn before_step(&mut self, lab: &mut Lab, index: usize, _step: &Step) -> bool {
        self.play().waiting = Some(index);
        let every = self.play().every;
        let due = every.map(|every| tokio::time::Instant::now() + every);
        let mut tick = tokio::time::interval(FRAME);
        let go = loop {
            tokio::select! {
                input = self.input.events.recv() => {
                    let Some(Input::Key(key)) = input else { continue };
                    if key.kind == KeyEventKind::Release {
                        continue;
                    }
                    let ctrl_c = key.modifiers.contains(KeyModifiers::CONTROL)
                        && key.code == KeyCode::Char('c');
                    let typing = self.state.view.input.is_some();
                    if !typing && key.code == KeyCode::Enter {
                        break true;
                    }
                    if ctrl_c || (!typing && key.code == KeyCode::Char('q')) {
                        break false;
                    }
                    if let Some(command) = handle_key(&mut self.state, key)
                        && execute(lab, &mut self.state, command).await
                    {
                        break false;
                    }
                    self.refresh(lab);
                    self.draw();
                }
                _ = tick.tick() => {
                    self.refresh(lab);
                    self.draw();
                }
                () = sleep_until_or_forever(due) => break true,
            }
        };
        self.play().waiting = None;
        self.draw();
        go
    }

    fn step_done(&mut self, index: usize) {
        self.play().done = index + 1;
    }

    fn tick(&mut self, lab: &Lab) {
        // While a step runs, only quitting is heard (a step may wait a long time).
        while let Ok(input) = self.input.events.try_recv() {
            if let Input::Key(key) = input
                && key.kind != KeyEventKind::Release
                && (key.code == KeyCode::Char('q')
                    || (key.modifiers.contains(KeyModifiers::CONTROL)
                        && key.code == KeyCode::Char('c')))
            {
                self.state.note(Level::Warn, "stopping the run (q)");
                self.stop.cancel();
            }
        }
        if self.last_draw.elapsed() >= FRAME {
            self.refresh(lab);
            self.draw();
        }
    }

    fn deadline_applies(&self) -> bool {
        false
    }

    fn stop(&self) -> Option<tokio_util::sync::CancellationToken> {
        Some(self.stop.clone())
    }
}

async fn sleep_until_or_forever(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Runs the scenario in `file` on screen; `every` lets steps go by themselves.
/// `report` receives the JSON report, as with `--script`.
pub async fn run(
    file: &Path,
    every: Option<Duration>,
    report_path: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let name = file.display().to_string();
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("error: cannot read the scenario {name}: {e}");
            return Ok(ExitCode::from(EXIT_INVALID));
        }
    };
    // A broken file is reported before the screen is taken over.
    let scenario = match scenario::parse(&Source::new(name, text)) {
        Ok(scenario) => scenario,
        Err(error) => {
            eprintln!("error: invalid scenario {error}");
            return Ok(ExitCode::from(EXIT_INVALID));
        }
    };
    // A report path that cannot be written fails before the run, as with --script.
    let report_file = match report_path {
        Some(path) => match std::fs::File::create(path) {
            Ok(file) => Some((path, file)),
            Err(e) => {
                eprintln!("error: cannot write the report {}: {e}", path.display());
                return Ok(ExitCode::from(EXIT_INVALID));
            }
        },
        None => None,
    };
    let mut state = TuiState::new(SystemTime::now(), scenario.lab.wire, None);
    state.play = Some(PlayView {
        name: scenario.name.clone(),
        steps: scenario
            .steps
            .iter()
            .map(|step| format!("line {:<3} {}", step.line, step.action.describe()))
            .collect(),
        every,
        ..PlayView::default()
    });
    let (screen, session) = terminal::enter()?;
    let input = InputReader::spawn()?;
    let mut front = PlayFront {
        terminal: screen,
        _session: session,
        input,
        state,
        last_draw: Instant::now(),
        stop: tokio_util::sync::CancellationToken::new(),
    };
    // A played scenario serves no monitor: the screen is the monitor.
    let monitor = crate::monitor::MonitorPlan::default();
    let signals = crate::shutdown::SignalToken::new();
    let outcome = match runner::run_with(&scenario, &monitor, signals.token(), &mut front).await {
        Ok(outcome) => outcome,
        Err(e) => {
            drop(front);
            eprintln!("error: {}: the lab could not start: {e:#}", scenario.file);
            return Ok(ExitCode::from(EXIT_INVALID));
        }
    };
    let report = Report::build(&scenario, &outcome);
    front.play().verdicts = Some(
        report
            .expectations
            .iter()
            .map(|e| (e.passed, format!("{} — {}", e.name, e.detail)))
            .collect(),
    );
    front.draw();
    // The verdicts stay on screen until the person has read them.
    while let Some(input) = front.input.events.recv().await {
        if let Input::Key(key) = input
            && key.kind != KeyEventKind::Release
            && matches!(key.code, KeyCode::Char('q') | KeyCode::Esc | KeyCode::Enter)
        {
            break;
        }
        if let Input::Resize(..) = input {
            front.draw();
        }
    }
    drop(front);
    let _ = write!(std::io::stdout(), "{}", report.summary());
    if let Some((path, file)) = report_file {
        match crate::script::write_report(file, &report) {
            Ok(()) => println!("report: {}", path.display()),
            Err(e) => {
                eprintln!("error: cannot write the report {}: {e}", path.display());
                return Ok(ExitCode::from(EXIT_INVALID));
            }
        }
    }
    Ok(ExitCode::from(if report.passed {
        EXIT_PASSED
    } else {
        EXIT_FAILED
    }))
}
