//! Headless scenarios: `tunlab --script FILE [--report FILE]`.
//!
//! A scenario (TOML, see [`scenario`]) sets a lab up, drives it step by step through the same
//! [`Lab`](crate::lab::Lab) API the TUI's keys use, and checks expectations at the end. The
//! run prints a summary and, when asked, writes a JSON report. Every run is bounded by the
//! scenario's deadline, so CI can never hang on one.
//!
//! Exit codes: [`EXIT_PASSED`] (0) when every expectation holds, [`EXIT_FAILED`] (1) when one
//! does not, [`EXIT_INVALID`] (2) when the scenario is invalid or the lab cannot start.
//!
//! Engine side only: nothing here draws on a terminal.

pub mod capture;
pub mod expect;
pub mod fold;
pub mod link;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod socks5_client;
pub mod source;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::monitor::MonitorPlan;
use report::Report;
use source::{ScenarioError, Source};

pub const EXIT_PASSED: u8 = 0;
pub const EXIT_FAILED: u8 = 1;
pub const EXIT_INVALID: u8 = 2;

/// The demo that runs when tunlab has no terminal to draw on and no `--script`.
pub const DEMO_SCENARIO: &str = include_str!("../../assets/scenarios/basic.toml");
const DEMO_NAME: &str = "built-in demo (assets/scenarios/basic.toml)";

/// Runs the scenario in `path`, printing the summary; writes the JSON report to `report`,
/// and serves what `monitor` asks while it runs. `key`, the command line's `--key-file`,
/// seals the link instead of the scenario's own `key_file` (the command line wins).
pub async fn run_file(
    path: &Path,
    report: Option<&Path>,
    monitor: &MonitorPlan,
    key: Option<scenario::ScenarioKey>,
) -> ExitCode {
    let file = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let key_given = key.is_some();
            run_adjusted(
                &Source::new(file, text),
                key_given,
                report,
                monitor,
                |scenario| {
                    let Some(key) = key else { return Ok(()) };
                    if let Some(why) =
                        scenario::ScenarioKey::refuses(scenario.lab.wire, "--key-file")
                    {
                        return Err(why);
                    }
                    scenario.lab.key = Some(key);
                    Ok(())
                },
            )
            .await
        }
        Err(e) => invalid(&ScenarioError::whole_file(
            file,
            format!("cannot read the scenario: {e}"),
        )),
    }
}

/// How the demo captures, from the lab's options.
#[derive(Clone, Debug)]
pub struct DemoCapture {
    pub format: scenario::CaptureFormat,
    pub dir: PathBuf,
    /// `--capture-tcp`: the TCP legs too.
    pub tcp: bool,
}

/// Runs the built-in demo scenario. It is the lab run when there is no terminal, so it
/// captures as the lab's options say (`None` for `--no-capture`).
pub async fn run_demo(
    report: Option<&Path>,
    capture: Option<DemoCapture>,
    monitor: &MonitorPlan,
) -> ExitCode {
    let source = Source::new(DEMO_NAME, DEMO_SCENARIO);
    run_adjusted(&source, false, report, monitor, |scenario| {
        scenario.lab.capture = capture.as_ref().map(|capture| capture.format);
        if let Some(capture) = capture {
            scenario.lab.capture_dir = capture.dir;
            scenario.lab.capture_tcp = capture.tcp;
        }
        Ok(())
    })
    .await
}

/// Checks and runs a scenario from its text.
pub async fn run_source(source: &Source, report_path: Option<&Path>) -> ExitCode {
    run_adjusted(source, false, report_path, &MonitorPlan::default(), |_| {
        Ok(())
    })
    .await
}

/// Checks a scenario, lets `adjust` change it (or refuse it, with the message to print), and
/// runs it. `key_given`: `adjust` sets the key, so the scenario's `key_file` is not read.
async fn run_adjusted(
    source: &Source,
    key_given: bool,
    report_path: Option<&Path>,
    monitor: &MonitorPlan,
    adjust: impl FnOnce(&mut scenario::Scenario) -> Result<(), String>,
) -> ExitCode {
    let mut scenario = match scenario::parse_with(source, key_given) {
        Ok(scenario) => scenario,
        Err(error) => return invalid(&error),
    };
    if let Err(why) = adjust(&mut scenario) {
        eprintln!("error: {}: {why}", scenario.file);
        return ExitCode::from(EXIT_INVALID);
    }
    if let Some(warning) = scenario
        .lab
        .key
        .as_ref()
        .and_then(|key| key.warning.as_ref())
    {
        eprintln!("warning: {warning}");
    }
    // Create the report file first, so a path that cannot be written fails before the run.
    let mut report_file = match report_path {
        Some(path) => match std::fs::File::create(path) {
            Ok(file) => Some((path, file)),
            Err(e) => {
                eprintln!("error: cannot write the report {}: {e}", path.display());
                return ExitCode::from(EXIT_INVALID);
            }
        },
        None => None,
    };
    println!(
        "scenario \"{}\" ({}): {}, {}, deadline {}",
        scenario.name,
        scenario.file,
        counted(scenario.steps.len(), "step"),
        counted(scenario.expectations.len(), "expectation"),
        humantime::format_duration(scenario.deadline)
    );
    if let Some(description) = &scenario.description {
        println!("  {}", description.trim());
    }
    if let Some(key) = &scenario.lab.key {
        println!(
            "  the link is sealed with the key in {}",
            key.path.display()
        );
    }
    // Listening from here: a signal while the lab starts also stops the run cleanly.
    let signals = crate::shutdown::SignalToken::new();
    let outcome = match runner::run(&scenario, monitor, signals.token()).await {
        Ok(outcome) => outcome,
        Err(e) => {
            eprintln!("error: {}: the lab could not start: {e:#}", scenario.file);
            if let Some((path, file)) = report_file.take() {
                drop(file);
                let _ = std::fs::remove_file(path);
            }
            return ExitCode::from(EXIT_INVALID);
        }
    };
    let report = Report::build(&scenario, &outcome);
    print!("{}", report.summary());
    if let Some((path, file)) = report_file {
        match write_report(file, &report) {
            Ok(()) => println!("report: {}", path.display()),
            Err(e) => {
                eprintln!("error: cannot write the report {}: {e}", path.display());
                return ExitCode::from(EXIT_INVALID);
            }
        }
    }
    ExitCode::from(if report.passed {
        EXIT_PASSED
    } else {
        EXIT_FAILED
    })
}

/// Writes the JSON report into `file`.
pub fn write_report(file: std::fs::File, report: &Report) -> std::io::Result<()> {
    let mut writer = std::io::BufWriter::new(file);
    serde_json::to_writer_pretty(&mut writer, report)
        .map_err(std::io::Error::from)
        .and_then(|()| writeln!(writer))
        .and_then(|()| writer.flush())
}

/// "1 step", "3 steps".
fn counted(n: usize, noun: &str) -> String {
    format!("{n} {noun}{}", if n == 1 { "" } else { "s" })
}

fn invalid(error: &ScenarioError) -> ExitCode {
    eprintln!("error: invalid scenario {error}");
    ExitCode::from(EXIT_INVALID)
}
