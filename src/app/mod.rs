//! Wiring: the command line's values become the lab, the roles or the script runner, and run.
//!
//! The lab front end chosen by the command line: the TUI on a terminal, the headless lab with
//! `--no-tui`, the headless demo otherwise. Each subcommand runs its role alone
//! ([`standalone`]).

mod args;
mod relay;
pub mod standalone;

use std::io::IsTerminal;
use std::process::ExitCode;

use crate::cli::{Cli, Command, LabArgs, WireArgs};
use crate::lab::LabConfig;

pub use args::open_tcp_capture;

/// Checks what parsing cannot, and enters the lab's network namespace (`--netns`): all before
/// the async runtime starts. `Err` is the exit code to stop with (the message is printed).
pub fn prepare(cli: &Cli) -> Result<(), ExitCode> {
    // Every tunnel connection costs each proxy a descriptor: lift the soft limit (often 1024)
    // to the hard one before anything opens.
    crate::fd_limit::raise_to_hard();
    let wire = match &cli.command {
        // With --script the scenario names the wire mode; its run checks the key against it.
        None if cli.lab.script.is_some() => None,
        None => Some(&cli.lab.wire),
        Some(Command::Proxy1(args)) => Some(&args.wire),
        Some(Command::Proxy2(args)) => Some(&args.wire),
        Some(_) => None,
    };
    if let Some(Err(message)) = wire.map(WireArgs::check_seal) {
        eprintln!("error: {message}");
        return Err(ExitCode::from(crate::script::EXIT_INVALID));
    }
    if cli.command.is_some() && cli.lab.netns {
        eprintln!(
            "error: --netns is for the lab (no subcommand): a standalone role in a namespace of \
             its own could reach no one; give a proxy CAP_NET_RAW for --capture-tcp instead"
        );
        return Err(ExitCode::from(crate::script::EXIT_INVALID));
    }
    if cli.command.is_none() && cli.lab.netns {
        // Before the runtime: unshare refuses a new user namespace to a threaded process.
        if let Err(e) = crate::netns::enter() {
            eprintln!("error: {e}");
            return Err(ExitCode::from(crate::script::EXIT_INVALID));
        }
        eprintln!("{}", crate::netns::NOTICE);
    }
    Ok(())
}

/// Runs what the command line asks for: the lab, or one subcommand.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        None => run_lab(cli.lab).await,
        Some(command) => standalone::run(command).await,
    }
}

/// Builds the lab's configuration from the command line.
pub fn lab_config(args: &LabArgs) -> LabConfig {
    LabConfig {
        host: args.host,
        server_port: args.server_port,
        proxy1_port: args.proxy1_port,
        proxy2_port: args.proxy2_port,
        mode: args.wire.wire,
        capture: None,
        link: args.link.settings(),
        link_seed: args.link.seed,
        key: args.wire.key_file.as_ref().map(|file| file.key.clone()),
        ..socks5_config(args)
    }
}

/// The lab's SOCKS5 settings (issue 13): proxy1's port and front, proxy2's rules. The
/// command line was checked by [`check_socks5`] first.
fn socks5_config(args: &LabArgs) -> LabConfig {
    let mut config = LabConfig {
        socks5_port: args.socks5.port,
        access_log: args.socks5.access_log.clone(),
        proxy1: args
            .proxy1
            .config(&args.wire, LabConfig::default().proxy1.proxy2),
        proxy2: args
            .proxy2
            .config(&args.wire, LabConfig::default().proxy2.server),
        ..LabConfig::default()
    };
    config.proxy1.socks5.front = args.socks5.config().unwrap_or_default();
    config.proxy2.dialer = args.rules.dialer(&config.proxy2);
    config
}

/// The lab's SOCKS5 flags make sense together (an extended mode; users and log only with the
/// port) and the users file reads; otherwise the message for exit code 2.
fn check_socks5(args: &LabArgs) -> Result<(), String> {
    args.socks5.check(args.wire.wire).map(drop)
}

/// Runs the lab: a scenario file headless when one is given; the lab headless until stopped
/// with `--no-tui`; the built-in demo scenario headless when stdout is not a terminal;
/// otherwise the TUI.
pub async fn run_lab(args: LabArgs) -> anyhow::Result<ExitCode> {
    if let Err(e) = check_socks5(&args) {
        eprintln!("error: {e}");
        return Ok(ExitCode::from(2));
    }
    // Headless: a scenario file, or the built-in demo scenario when there is no terminal.
    if let Some(script) = &args.script {
        let monitor = args.monitor.plan();
        // The command line's key, if any, replaces the scenario's own `key_file`.
        let key = args
            .wire
            .key_file
            .as_ref()
            .map(|file| crate::script::scenario::ScenarioKey {
                path: file.path.clone(),
                key: file.key.clone(),
                warning: file.warning.clone(),
            });
        return Ok(crate::script::run_file(script, args.report.as_deref(), &monitor, key).await);
    }
    if let Some(play) = &args.play {
        if !std::io::stdout().is_terminal() {
            eprintln!(
                "error: --play draws the scenario on a terminal, and stdout is not one; \
                 run it headless with --script {}",
                play.display()
            );
            return Ok(ExitCode::from(crate::script::EXIT_INVALID));
        }
        return crate::tui::play::run(play, args.play_every, args.report.as_deref()).await;
    }
    // Thousands of clients need four descriptors each: say so now rather than stall later.
    let clients = args.clients_to_start(!args.no_tui && std::io::stdout().is_terminal());
    if let Err(message) = crate::fd_limit::room_for_lab_clients(clients) {
        eprintln!("error: {message}");
        return Ok(ExitCode::from(crate::script::EXIT_INVALID));
    }
    // Without the permission to read loopback, stop before anything starts (exit code 2).
    let tcp = match open_tcp_capture(args.capture.capture_tcp) {
        Ok(tcp) => tcp,
        Err(code) => return Ok(code),
    };
    if args.no_tui {
        // Listening before the lab starts: a signal as soon as proxy1 is announced still
        // stops the lab cleanly, with the capture finished.
        let signals = crate::shutdown::SignalToken::new();
        return crate::headless::run(&args, lab_config(&args), tcp, signals.token()).await;
    }
    if !std::io::stdout().is_terminal() {
        // The demo is the lab's run without a terminal: it captures as the lab would.
        let capture = &args.capture;
        let capture = (!capture.no_capture).then(|| crate::script::DemoCapture {
            format: capture.format(),
            dir: capture.capture_dir.clone(),
            tcp: capture.capture_tcp,
        });
        warn_about_ignored_options(&args);
        let monitor = args.monitor.plan();
        return Ok(crate::script::run_demo(args.report.as_deref(), capture, &monitor).await);
    }
    crate::tui::run(&args, lab_config(&args), tcp).await
}

/// The headless demo runs its scenario as written; say so when the command line asked for
/// something it will not do, rather than ignore it silently.
fn warn_about_ignored_options(args: &LabArgs) {
    use crate::lab::{DEFAULT_PROXY1_PORT, DEFAULT_PROXY2_PORT, DEFAULT_SERVER_PORT};
    let mut ignored = Vec::new();
    if args.clients.is_some() {
        ignored.push("--clients");
    }
    if args.chatter.is_some() {
        ignored.push("--chatter");
    }
    if (args.server_port, args.proxy1_port, args.proxy2_port)
        != (
            DEFAULT_SERVER_PORT,
            DEFAULT_PROXY1_PORT,
            DEFAULT_PROXY2_PORT,
        )
    {
        ignored.push("the port options");
    }
    if !args.link.settings().is_clear() || args.link.seed.is_some() {
        ignored.push("the link emulator options");
    }
    if !ignored.is_empty() {
        eprintln!(
            "note: stdout is not a terminal, so tunlab runs its built-in demo scenario as written \
             and ignores {}; run it on a terminal for the interactive lab, with --no-tui for \
             the lab headless until stopped, or write a scenario for --script",
            ignored.join(", ")
        );
    }
}
