//! The standalone proxies' options, and the link settings the lab shares with them.

// Doc comments here are --help text, printed as written: no Markdown backticks.
#![allow(clippy::doc_markdown)]

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::capture::CaptureFormat;
use crate::link::seal::SealKey;
use crate::wire::WireMode;

use super::{LinkArgs, RuleArgs, Socks5PortArgs, StandaloneArgs};

/// How a standalone proxy records its side of the link.
#[derive(Debug, Args, Clone)]
#[command(next_help_heading = "Capture")]
pub struct ProxyCaptureArgs {
    /// Record every UDP frame this proxy sends and receives to FILE (replaced if it exists).
    /// The file is complete after Ctrl-C or SIGTERM.
    #[arg(long, value_name = "FILE")]
    pub capture: Option<PathBuf>,
    /// File format of the capture [default: from FILE's extension, .pcapng or .pcap; pcapng
    /// with --capture-tcp]
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub capture_format: Option<CaptureFormat>,
    /// Also record this proxy's TCP leg (proxy1: its clients; proxy2: the server) from the
    /// loopback interface into the same file, in time order. Needs CAP_NET_RAW (root, or the
    /// capability on the binary).
    #[arg(long, requires = "capture")]
    pub capture_tcp: bool,
}

/// Settings of the UDP link that both proxies share.
#[derive(Debug, Args, Clone)]
#[command(next_help_heading = "Tunnel")]
pub struct WireArgs {
    /// Wire format of the UDP link.
    #[arg(long, value_enum, default_value_t = WireMode::Classic)]
    pub wire: WireMode,
    /// A connection with no traffic for this long is closed, so a lost X frees its id.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration, value_name = "TIME")]
    pub idle_timeout: Duration,
    /// A connection that has carried no byte either way for this long is closed: at proxy1
    /// when another client waits for its id (idle sockets cannot hold every id), at proxy2
    /// when its proxy1 has not probed it either (a C nobody followed up).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration, value_name = "TIME")]
    pub unused_timeout: Duration,
    /// Reliable modes: frames in flight at most, and frames a receiver holds (its window).
    /// Default: 256 in selective-repeat, 64 in the other modes. Stop-and-wait always has one
    /// frame in flight. It bounds what one connection can make a proxy hold, however slowly
    /// its client reads: 2 × N frames of payload (N=256: 744 KiB; N=64: 186 KiB), plus the
    /// kernel's TCP buffers.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub window: Option<u32>,
    /// Reliable modes: a fixed retransmission timer, as the course's (10s in its solution).
    /// Without it the timer adapts to the round-trip time (RFC 6298: 1s at first, then between
    /// 200ms and 10s, doubling on each timeout).
    #[arg(long, value_parser = humantime::parse_duration, value_name = "TIME")]
    pub rto: Option<Duration>,
    /// Go-Back-N and Selective Repeat: congestion control. newreno: slow start from 10
    /// frames, one frame more per round trip after it, the window halved on a loss and one
    /// frame after a timeout; tolerant: the same, but a loss halves the window only when the
    /// round trip shows a queue (5ms or more over its lowest), so random loss cuts nothing;
    /// none: always --window frames in flight, whatever the losses.
    #[arg(long, value_enum, default_value_t = crate::transport::CongestionControl::Tolerant, value_name = "ALGORITHM")]
    pub cc: crate::transport::CongestionControl,
    /// Seal (encrypt and authenticate) every frame on the link with the key in FILE (made by
    /// `tunlab keygen FILE`; both proxies need the same one). Extended modes only
    /// (--wire go-back-n or selective-repeat); the course's formats stay plaintext. With the
    /// lab's --script, this key replaces the scenario's own `key_file`.
    #[arg(long, value_parser = parse_key_file, value_name = "FILE")]
    pub key_file: Option<KeyFile>,
}

/// A key file given with `--key-file`, read and checked while parsing.
#[derive(Clone, Debug)]
pub struct KeyFile {
    pub path: PathBuf,
    pub key: SealKey,
    /// Said on stderr: the file is readable by others.
    pub warning: Option<String>,
}

pub(super) fn parse_key_file(text: &str) -> Result<KeyFile, String> {
    let path = PathBuf::from(text);
    let (key, warning) = SealKey::load(&path).map_err(|e| e.to_string())?;
    Ok(KeyFile { path, key, warning })
}

/// proxy1's timings.
#[derive(Debug, Args, Clone)]
#[command(next_help_heading = "proxy1")]
pub struct Proxy1Tuning {
    /// Times proxy1 sends C before giving up on a connection.
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub connect_attempts: u32,
    /// How long proxy1 waits for OK/NOK after each C.
    #[arg(long, default_value = "500ms", value_parser = humantime::parse_duration, value_name = "TIME")]
    pub connect_retry: Duration,
    /// How long a client may wait at proxy1 for a free id (all 10 busy) before it is closed.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration, value_name = "TIME")]
    pub id_wait: Duration,
    /// After a client half-closes (FIN), proxy1 keeps delivering proxy2's data to it until
    /// proxy2 has been quiet this long, then sends X.
    #[arg(long, default_value = "500ms", value_parser = humantime::parse_duration, value_name = "TIME")]
    pub half_close_linger: Duration,
    /// Times proxy1 sends X when it closes a connection (classic X is never acknowledged).
    /// The id is not handed out again before the last one.
    #[arg(long, default_value_t = 3, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub close_attempts: u32,
    /// Time between those X frames.
    #[arg(long, default_value = "100ms", value_parser = humantime::parse_duration, value_name = "TIME")]
    pub close_retry: Duration,
    /// An id with no traffic for this long is probed with an empty D (and again every this
    /// long): a proxy2 that no longer knows it (restarted) answers X (NOK in the extended
    /// modes), and the client is closed. In the extended modes a connection whose proxy2
    /// answers none of 5 probes in a row is closed too.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration, value_name = "TIME")]
    pub probe_after: Duration,
}

/// proxy2's timings.
#[derive(Debug, Args, Clone)]
#[command(next_help_heading = "proxy2")]
pub struct Proxy2Tuning {
    /// How long proxy2 tries to connect to the server before answering NOK.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration, value_name = "TIME")]
    pub server_connect_timeout: Duration,
    /// Most connections proxy2 keeps open, over all proxy1s. When full, the oldest one that
    /// has never carried a byte makes room; if none, the C is answered NOK.
    #[arg(long, default_value_t = crate::tunnel::admission::DEFAULT_MAX_CONNECTIONS as u64, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections: u64,
    /// Most proxy1 addresses (IP and port) with connections open at once. When full, the
    /// oldest one none of whose connections has carried a byte makes room.
    #[arg(long, default_value_t = 64, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_peers: u64,
    /// Accept C only from this proxy1: an IP address (any port) or IP:PORT. Repeatable;
    /// without it, any address may open connections.
    #[arg(long = "allow-proxy1", value_name = "ADDR")]
    pub allow_proxy1: Vec<crate::tunnel::admission::PeerFilter>,
}

#[derive(Debug, Args)]
pub struct Proxy2Args {
    /// UDP port to listen on for proxy1s.
    pub udp_port: u16,
    /// Host of the echo server.
    pub server_host: String,
    /// TCP port of the echo server.
    pub server_port: u16,
    #[command(flatten)]
    pub common: StandaloneArgs,
    #[command(flatten)]
    pub wire: WireArgs,
    #[command(flatten)]
    pub tuning: Proxy2Tuning,
    /// Destination rules for the C frames that name one (SOCKS5 clients at proxy1).
    #[command(flatten)]
    pub rules: RuleArgs,
    // A standalone proxy emulates both directions at its end: what it sends, and what it
    // receives as it arrives (its peer may be a course script with no emulator).
    #[command(flatten)]
    pub link: LinkArgs,
    #[command(flatten)]
    pub capture: ProxyCaptureArgs,
}

#[derive(Debug, Args)]
pub struct Proxy1Args {
    /// TCP port to listen on for clients.
    pub tcp_port: u16,
    /// Host of proxy2.
    pub proxy2_host: String,
    /// UDP port of proxy2.
    pub proxy2_udp_port: u16,
    #[command(flatten)]
    pub common: StandaloneArgs,
    #[command(flatten)]
    pub wire: WireArgs,
    #[command(flatten)]
    pub tuning: Proxy1Tuning,
    #[command(flatten)]
    pub socks5: Socks5PortArgs,
    // A standalone proxy emulates both directions at its end: what it sends, and what it
    // receives as it arrives (its peer may be a course script with no emulator).
    #[command(flatten)]
    pub link: LinkArgs,
    #[command(flatten)]
    pub capture: ProxyCaptureArgs,
}
