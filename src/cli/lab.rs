//! The lab's options (no subcommand).

// Doc comments here are --help text, printed as written: no Markdown backticks.
#![allow(clippy::doc_markdown)]

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use clap::Args;

use crate::capture::CaptureFormat;
use crate::lab::{DEFAULT_PROXY1_PORT, DEFAULT_PROXY2_PORT, DEFAULT_SERVER_PORT};

use super::{
    LinkArgs, MonitorArgs, Proxy1Tuning, Proxy2Tuning, RuleArgs, Socks5PortArgs, WireArgs,
};

/// Options of the lab (no subcommand).
#[derive(Debug, Args)]
#[command(next_help_heading = "Lab")]
pub struct LabArgs {
    /// Echo clients to start with [default: 3 with the screen, 0 with --no-tui].
    #[arg(long, value_name = "N")]
    pub clients: Option<u32>,
    /// Clients talk on their own: every INTERVAL (`1s`, `300ms`) the next live client, in
    /// turn, sends a short line, so the screen keeps moving during a talk. `t` switches it on
    /// and off (at this interval, or every second).
    #[arg(long, value_parser = parse_chatter, value_name = "INTERVAL")]
    pub chatter: Option<std::time::Duration>,
    /// Address every role binds (keep it on loopback unless you mean otherwise).
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST), value_name = "ADDR")]
    pub host: IpAddr,
    /// Echo server TCP port (0: any free port).
    #[arg(long, default_value_t = DEFAULT_SERVER_PORT, value_name = "PORT")]
    pub server_port: u16,
    /// proxy1 TCP port, where clients connect (0: any free port).
    #[arg(long, default_value_t = DEFAULT_PROXY1_PORT, value_name = "PORT")]
    pub proxy1_port: u16,
    /// proxy2 UDP port (0: any free port).
    #[arg(long, default_value_t = DEFAULT_PROXY2_PORT, value_name = "PORT")]
    pub proxy2_port: u16,
    #[command(flatten)]
    pub wire: WireArgs,
    #[command(flatten)]
    pub proxy1: Proxy1Tuning,
    #[command(flatten)]
    pub proxy2: Proxy2Tuning,
    #[command(flatten)]
    pub link: LinkArgs,
    #[command(flatten)]
    pub capture: LabCaptureArgs,
    /// Run the lab in a new user and network namespace of its own (no root needed where the
    /// kernel allows unprivileged user namespaces), where --capture-tcp may read its loopback.
    /// Programs outside the namespace cannot reach the lab there, nor it them.
    #[arg(long)]
    pub netns: bool,
    #[command(flatten)]
    pub monitor: MonitorArgs,
    // SOCKS5 (issue 13): proxy1's SOCKS5 port, and proxy2's destination rules.
    #[command(flatten)]
    pub socks5: Socks5PortArgs,
    #[command(flatten)]
    pub rules: RuleArgs,
    /// Run the lab without a screen until Ctrl-C or SIGTERM: every role as usual, capturing as
    /// configured, connections and errors logged on stderr, totals printed on stdout at the
    /// end. For a server or a CI job where your own clients connect to proxy1.
    #[arg(long, help_heading = "Headless", conflicts_with_all = ["script", "report", "play"])]
    pub no_tui: bool,
    /// Run this scenario headless instead of the interactive lab: exit code 0 when every
    /// expectation holds, 1 when one fails, 2 when the scenario is invalid. The scenario sets
    /// up its own lab (ports, clients, timings), so the other lab options do not apply.
    #[arg(long, value_name = "FILE", help_heading = "Headless")]
    pub script: Option<PathBuf>,
    /// Run this scenario on screen, for a class: the step list in the log's place, Enter runs
    /// the next step (the usual keys work in between), the expectations are ticked at the
    /// end, and the summary follows on the terminal. Exit codes as for --script.
    #[arg(
        long,
        value_name = "FILE",
        help_heading = "Classroom",
        conflicts_with = "script"
    )]
    pub play: Option<PathBuf>,
    /// With --play: run the next step by itself after this long (Enter still runs it sooner).
    #[arg(
        long,
        value_parser = humantime::parse_duration,
        value_name = "TIME",
        requires = "play",
        help_heading = "Classroom"
    )]
    pub play_every: Option<std::time::Duration>,
    /// Write a JSON report of the scenario's run (a --script or --play, or the built-in demo
    /// that runs when stdout is not a terminal).
    #[arg(long, value_name = "FILE", help_heading = "Headless")]
    pub report: Option<PathBuf>,
}

/// How the lab records the link.
#[derive(Debug, Args, Clone)]
#[command(next_help_heading = "Capture")]
pub struct LabCaptureArgs {
    /// Directory for captures: one file per run, named by its start time, e.g.
    /// tunlab-20261122-184501.pcap (created if missing; nothing is overwritten).
    #[arg(long, default_value = "captures", value_name = "DIR")]
    pub capture_dir: PathBuf,
    /// Do not record the link.
    #[arg(long, conflicts_with_all = ["capture_dir", "capture_tcp"])]
    pub no_capture: bool,
    /// File format of the capture [default: pcap, or pcapng with --capture-tcp]
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub capture_format: Option<CaptureFormat>,
    /// Also record the TCP legs (client-proxy1 and proxy2-server: handshakes, data, FIN and
    /// RST) from the loopback interface, in time order with the link's frames in one file.
    /// Needs CAP_NET_RAW: run as root, give the binary the capability, or add --netns.
    #[arg(long)]
    pub capture_tcp: bool,
}

/// The shortest and longest `--chatter` interval: faster would flood the traces, slower
/// would not look like chatter.
pub const CHATTER_RANGE: std::ops::RangeInclusive<std::time::Duration> =
    std::time::Duration::from_millis(50)..=std::time::Duration::from_mins(10);

fn parse_chatter(text: &str) -> Result<std::time::Duration, String> {
    let interval = humantime::parse_duration(text)
        .map_err(|_| format!("'{text}' is not a duration: write it like 1s or 300ms"))?;
    if CHATTER_RANGE.contains(&interval) {
        Ok(interval)
    } else {
        Err(format!(
            "{text} is outside {} to {}",
            humantime::format_duration(*CHATTER_RANGE.start()),
            humantime::format_duration(*CHATTER_RANGE.end())
        ))
    }
}
