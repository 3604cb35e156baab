//! `tunlab relay`'s options.

// Doc comments here are --help text, printed as written: no Markdown backticks.
#![allow(clippy::doc_markdown)]

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::{LinkArgs, StandaloneArgs};
use crate::capture::CaptureFormat;

/// Options of `tunlab relay`.
#[derive(Debug, Args)]
pub struct RelayArgs {
    /// UDP port to listen on for peers (0: any free port; the log says which).
    pub udp_port: u16,
    /// Host to forward every datagram to (a proxy2, a kcptun server, a course script).
    pub target_host: String,
    /// Its UDP port.
    pub target_udp_port: u16,
    /// Most peers served at once. Each peer (source address and port) gets a socket of its
    /// own toward the target, so the target tells peers apart as it would without the
    /// relay. Datagrams from one more peer are dropped (counted, logged) until a peer
    /// expires.
    #[arg(long, default_value_t = crate::roles::relay::DEFAULT_MAX_PEERS as u64, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=65_536), help_heading = "Relay")]
    pub max_peers: u64,
    /// A peer silent both ways this long loses its socket; its next datagram gets a new one
    /// (a new source port, which the target sees as a new peer).
    #[arg(long, default_value = "5m", value_parser = parse_peer_idle, value_name = "TIME",
          help_heading = "Relay")]
    pub peer_idle: Duration,
    #[command(flatten)]
    pub common: StandaloneArgs,
    // Applied in the middle of the link: --FLAG-to-proxy2 acts on what peers send to the
    // target, --FLAG-to-proxy1 on the target's replies.
    #[command(flatten)]
    pub link: LinkArgs,
    #[command(flatten)]
    pub capture: RelayCaptureArgs,
}

/// How the relay records what crosses it.
#[derive(Debug, Args, Clone)]
#[command(next_help_heading = "Capture")]
pub struct RelayCaptureArgs {
    /// Record both legs to FILE (replaced if it exists): each datagram as it arrived at the
    /// relay and again as the relay sent it on, so a datagram the emulator dropped shows
    /// on the arriving leg only (with a comment in pcapng). The file is complete after
    /// Ctrl-C or SIGTERM.
    #[arg(long, value_name = "FILE")]
    pub capture: Option<PathBuf>,
    /// File format of the capture [default: from FILE's extension, .pcapng or .pcap]
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub capture_format: Option<CaptureFormat>,
}

fn parse_peer_idle(text: &str) -> Result<Duration, String> {
    let idle = humantime::parse_duration(text)
        .map_err(|_| format!("'{text}' is not a duration: write it like 5m or 30s"))?;
    if idle < Duration::from_millis(10) {
        return Err(format!("{text} is too short: at least 10ms"));
    }
    Ok(idle)
}

/// What `tunlab relay --help` says before the options.
pub const LONG_ABOUT: &str = "\
Run a UDP relay: every datagram from a peer goes to TARGET_HOST:TARGET_UDP_PORT, and the
target's replies go back, through the link emulator. Put it between proxy1 and proxy2 (give
proxy1 the relay's port as its proxy2's), between two course scripts, or between a kcptun
client and server, to lose, delay, duplicate, reorder or rate-limit the link in between with
a seed that replays it.

The relay never decodes what it carries: classic, stop-and-wait, extended and sealed
(--key-file) frames, or anything else, cross untouched unless the emulator acts on them.
Emulator flags ending in -to-proxy2 act on what peers send to the target, -to-proxy1 on the
target's replies; the two-way flags on both. --corrupt flips a bit anywhere in a datagram
(the relay cannot tell a header from a payload). Each direction has one seeded decider for
all peers: with one peer, the same seed and datagrams give the same decisions.

Each peer address gets its own socket toward the target (at most --max-peers at once); a
peer silent both ways for --peer-idle loses it.";
