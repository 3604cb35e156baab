//! The other subcommands' options, and those every standalone role shares.

// Doc comments here are --help text, printed as written: no Markdown backticks.
#![allow(clippy::doc_markdown)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::lab::DEFAULT_SERVER_PORT;
use crate::monitor::{Credential, parse_listen_addr};

use super::proxy::parse_key_file;
use super::{KeyFile, RuleArgs, Socks5FrontArgs};

/// Monitoring from outside: Prometheus metrics and the admin protocol.
#[derive(Debug, Args, Clone, Default)]
#[command(next_help_heading = "Monitoring")]
pub struct MonitorArgs {
    /// Serve Prometheus metrics at http://ADDR/metrics (exact counters: frames, bytes,
    /// connections, emulator drops, capture). A bare PORT listens on 127.0.0.1 only; give
    /// 0.0.0.0:PORT to let other machines scrape.
    #[arg(long, value_name = "ADDR", value_parser = parse_listen_addr)]
    pub metrics: Option<SocketAddr>,
    /// Serve the admin protocol on ADDR (the SOCKS5 project's: a login, then STATS,
    /// CONNECTIONS, USERS, ACCESS_LOG, CONFIG, QUIT); `tunlab monitor HOST PORT` talks to it.
    /// A bare PORT listens on 127.0.0.1 only. Needs --admin-user.
    #[arg(long, value_name = "ADDR", value_parser = parse_listen_addr, requires = "admin_user")]
    pub admin: Option<SocketAddr>,
    /// Who may log in to the admin protocol, as NAME:PASS; repeat it for more users.
    #[arg(long, value_name = "NAME:PASS", requires = "admin")]
    pub admin_user: Vec<Credential>,
}

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Where to write the key (refused if it exists).
    pub file: PathBuf,
}

#[derive(Debug, Args)]
pub struct DecryptArgs {
    /// The capture to read (pcap or pcapng).
    pub input: PathBuf,
    /// Where to write the decrypted copy (refused if it exists).
    #[arg(short, long, value_name = "OUT")]
    pub output: PathBuf,
    /// The link's key file.
    #[arg(long, value_parser = parse_key_file, value_name = "FILE")]
    pub key_file: KeyFile,
}

#[derive(Debug, Args)]
pub struct Socks5Args {
    /// TCP port to listen on for SOCKS5 clients (0: any free port; the log says which).
    #[arg(default_value_t = 1080)]
    pub port: u16,
    /// Address to listen on (0.0.0.0 to accept from other machines).
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST), value_name = "ADDR")]
    pub bind: IpAddr,
    /// Append one JSON line per connection to FILE: time, client, user, destination, the
    /// address reached, bytes each way, duration, result (ok, refused, rejected) and reason.
    #[arg(long, value_name = "FILE")]
    pub access_log: Option<PathBuf>,
    /// Most clients served at once; more wait to be accepted.
    #[arg(long, default_value_t = crate::roles::socks5_direct::DEFAULT_MAX_CLIENTS as u64, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_clients: u64,
    #[command(flatten)]
    pub front: Socks5FrontArgs,
    /// How long each address of a destination gets to connect before the next is tried
    /// (the client hears "TTL expired" if none answers).
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration, value_name = "TIME", help_heading = "Destinations")]
    pub connect_timeout: Duration,
    #[command(flatten)]
    pub rules: RuleArgs,
}

#[derive(Debug, Args)]
pub struct MonitorClientArgs {
    /// Host of the admin protocol.
    pub host: String,
    /// Its TCP port.
    pub port: u16,
}

/// Options every standalone role shares.
#[derive(Debug, Args, Clone)]
pub struct StandaloneArgs {
    /// Address to listen on (0.0.0.0 to accept from other machines).
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST), value_name = "ADDR")]
    pub bind: IpAddr,
    /// Also log every frame and TCP read/write, not only connections and errors.
    #[arg(short, long)]
    pub verbose: bool,
    #[command(flatten)]
    pub monitor: MonitorArgs,
}

#[derive(Debug, Args)]
pub struct EchoServerArgs {
    /// TCP port to listen on.
    #[arg(default_value_t = DEFAULT_SERVER_PORT)]
    pub port: u16,
    #[command(flatten)]
    pub common: StandaloneArgs,
}

#[derive(Debug, Args)]
pub struct EchoClientArgs {
    /// Host to connect to (proxy1, or the echo server directly).
    pub host: String,
    /// TCP port to connect to.
    pub port: u16,
    /// How long to wait for each line's echo.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration, value_name = "TIME")]
    pub echo_timeout: Duration,
}
