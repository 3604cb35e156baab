//! The command line: `tunlab` (the lab) and one subcommand per role, with the course
//! scripts' argument shapes so any piece can be swapped for a Python script.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::capture::{
    CaptureFormat, CapturePlan, CaptureTap, CaptureTarget, CaptureWriter, TcpCapture,
};
use crate::describe::describe;
use crate::event::Endpoint;
use crate::event::{EventSink, Level, Role};
use crate::impair::{LinkArgs, LinkEmulator, random_seed};
use crate::lab::{DEFAULT_PROXY1_PORT, DEFAULT_PROXY2_PORT, DEFAULT_SERVER_PORT};
use crate::link::seal::{Seal, SealKey, Side};
use crate::link::{EmulatorScope, LinkSocket, LinkStats};
use crate::monitor::{
    ConnTable, Credential, Monitor, MonitorPlan, MonitorSources, parse_listen_addr,
};
use crate::net::{bind_tcp, bind_udp, local_bind_towards, resolve};
use crate::roles::proxy1::Proxy1Config;
use crate::roles::proxy2::Proxy2Config;
use crate::roles::{echo_client, echo_server, proxy1, proxy2};
use crate::wire::WireMode;

const ABOUT: &str = "A terminal lab for tunnelling TCP connections over one UDP link";

const LONG_ABOUT: &str = "\
A terminal lab for tunnelling TCP connections over one UDP link.

With no subcommand, tunlab runs all four roles in one process on 127.0.0.1: an echo server
(TCP 1818), proxy2 (UDP 3328), proxy1 (TCP 3327) and a few echo clients. proxy1 multiplexes
its clients over one UDP socket as C/D/X frames with a connection id (0-9); proxy2 opens one
TCP connection to the server per tunnel connection.

On a terminal the lab is a live screen: a panel per connection id, a ladder diagram, and keys
to add clients, send, close with FIN or RST, and stop or restart roles (? lists them all).
With --no-tui it serves headless until stopped, logging on stderr. Piped without --no-tui,
it runs the built-in demo scenario headless and prints its summary.

Each role also runs alone as a subcommand, byte-compatible with the course's Python
scripts, so any piece can be swapped for a student's own.";

const EXAMPLES: &str = "\
Examples:
  tunlab                                   the lab, all roles in one process
  tunlab echo-server 1818                  just the echo server
  tunlab proxy2 3328 localhost 1818        proxy2 on UDP 3328, toward the server
  tunlab proxy1 3327 localhost 3328        proxy1 on TCP 3327, toward proxy2
  tunlab echo-client localhost 3327        type lines, see their echo
  tunlab --loss 10 --delay 20ms --jitter 5ms --seed 7
                                           the lab over a lossy, slow link (replayable)
  tunlab proxy1 3327 localhost 3328 --loss-to-proxy1 30
                                           proxy1 losing 30% of what proxy2 sends it
  tunlab --no-tui --proxy1-port 3327      the lab headless until Ctrl-C, for your own clients
  tunlab --netns --capture-tcp            the lab in a namespace of its own, its capture
                                           holding the TCP legs too (no root needed)
  tunlab --script assets/scenarios/basic.toml --report report.json
                                           a scenario headless, for CI
  tunlab proxy2 3328 localhost 1818 --metrics 9100 --admin 9101 --admin-user ana:s3cret
                                           proxy2 with Prometheus metrics and the admin protocol
  tunlab monitor localhost 9101            log in to an admin protocol, type commands
  tunlab socks5 1080 --socks5-user ana:s3cret --deny port=7000-7999
                                           a SOCKS5 server with no tunnel, for comparison";

#[derive(Debug, Parser)]
#[command(name = "tunlab", version, about = ABOUT, long_about = LONG_ABOUT, after_help = EXAMPLES)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub lab: LabArgs,
}

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

impl LabArgs {
    /// How many echo clients the lab starts: `--clients`, else 3 on the screen (something to
    /// watch) and none headless (every id stays free for clients from outside).
    pub fn clients_to_start(&self, with_screen: bool) -> u32 {
        self.clients.unwrap_or(if with_screen { 3 } else { 0 })
    }
}

impl LabCaptureArgs {
    /// The format asked for, or the default: pcapng when TCP segments join the file (its
    /// interfaces then say which packets are the link's and which the TCP legs').
    pub fn format(&self) -> CaptureFormat {
        self.capture_format.unwrap_or(if self.capture_tcp {
            CaptureFormat::Pcapng
        } else {
            CaptureFormat::Pcap
        })
    }

    /// The capture to start, if any.
    pub fn plan(&self) -> Option<CapturePlan> {
        (!self.no_capture).then(|| {
            let description = if self.capture_tcp {
                "tunlab lab: every UDP frame between proxy1 and proxy2, and the TCP legs"
            } else {
                "tunlab lab: every UDP frame between proxy1 and proxy2"
            };
            CapturePlan::new(
                CaptureTarget::Dir(self.capture_dir.clone()),
                self.format(),
                description,
                // The writer's messages appear under proxy1, the link's client end.
                Role::Proxy1,
            )
            .with_tcp(self.capture_tcp)
        })
    }
}

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

impl MonitorArgs {
    /// What to serve.
    pub fn plan(&self) -> MonitorPlan {
        MonitorPlan {
            metrics: self.metrics,
            admin: self.admin,
            users: self.admin_user.clone(),
            limits: Default::default(),
        }
    }
}

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

impl ProxyCaptureArgs {
    /// The format asked for; otherwise the one the file name's extension says; otherwise
    /// pcapng with TCP capture and pcap without.
    pub fn format(&self) -> CaptureFormat {
        let by_extension = self.capture.as_ref().and_then(|file| {
            match file.extension()?.to_str()?.to_ascii_lowercase().as_str() {
                "pcapng" => Some(CaptureFormat::Pcapng),
                "pcap" => Some(CaptureFormat::Pcap),
                _ => None,
            }
        });
        self.capture_format
            .or(by_extension)
            .unwrap_or(if self.capture_tcp {
                CaptureFormat::Pcapng
            } else {
                CaptureFormat::Pcap
            })
    }

    /// The capture to start, if any; `role` names the proxy in the file and the log.
    pub fn plan(&self, role: Role) -> Option<CapturePlan> {
        self.capture.as_ref().map(|file| {
            CapturePlan::new(
                CaptureTarget::File(file.clone()),
                self.format(),
                format!(
                    "tunlab {} (standalone): every UDP frame it sent and received",
                    role.label()
                ),
                role,
            )
            .with_tcp(self.capture_tcp)
        })
    }
}

/// Opens the packet socket for `--capture-tcp` when asked, before anything starts: without
/// the permission the run stops here with a message that says how to get it (exit code 2).
pub fn open_tcp_capture(wanted: bool) -> Result<Option<TcpCapture>, ExitCode> {
    if !wanted {
        return Ok(None);
    }
    TcpCapture::open().map(Some).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(crate::script::EXIT_INVALID)
    })
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
    /// Stop-and-wait always has one frame in flight. It bounds what one connection can make a
    /// proxy hold, however slowly its client reads: (2 × N + 1) frames of payload (N=64:
    /// 188 KiB in the extended modes), plus the kernel's TCP buffers.
    #[arg(long, default_value_t = 64, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub window: u32,
    /// Reliable modes: a fixed retransmission timer, as the course's (10s in its solution).
    /// Without it the timer adapts to the round-trip time (RFC 6298: 1s at first, then between
    /// 200ms and 10s, doubling on each timeout).
    #[arg(long, value_parser = humantime::parse_duration, value_name = "TIME")]
    pub rto: Option<Duration>,
    /// Seal (encrypt and authenticate) every frame on the link with the key in FILE (made by
    /// `tunlab keygen FILE`; both proxies need the same one). Extended modes only
    /// (--wire go-back-n or selective-repeat); the course's formats stay plaintext.
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

fn parse_key_file(text: &str) -> Result<KeyFile, String> {
    let path = PathBuf::from(text);
    let (key, warning) = SealKey::load(&path).map_err(|e| e.to_string())?;
    Ok(KeyFile { path, key, warning })
}

impl WireArgs {
    /// Checks that a key goes with a mode that can be sealed, and warns about a key file
    /// others can read. The error is the message to print.
    pub fn check_seal(&self) -> Result<(), String> {
        let Some(file) = &self.key_file else {
            return Ok(());
        };
        if !self.wire.is_extended() {
            return Err(format!(
                "--key-file seals the extended modes only (--wire go-back-n or selective-repeat); \
                 --wire {} is the course's plaintext format, which course peers must read",
                self.wire
            ));
        }
        if let Some(warning) = &file.warning {
            eprintln!("{}: {warning}", Level::Warn.label());
        }
        Ok(())
    }

    /// The seal for one end of the link, when a key was given.
    pub fn seal(&self, side: Side) -> Option<Seal> {
        self.key_file
            .as_ref()
            .map(|file| Seal::new(file.key.clone(), side))
    }
}

impl WireArgs {
    /// The reliable modes' transport settings these flags ask for.
    pub fn transport(&self) -> crate::transport::TransportConfig {
        let defaults = crate::transport::TransportConfig::for_mode(self.wire);
        crate::transport::TransportConfig {
            window: self.window,
            send_buffer: self.window as usize * defaults.max_payload,
            rto: self
                .rto
                .map_or(defaults.rto, crate::transport::RtoConfig::Fixed),
            ..defaults
        }
    }
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
    /// long): a proxy2 that no longer knows it (restarted) answers X, and the client is closed.
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

impl Proxy1Tuning {
    pub fn config(&self, wire: &WireArgs, proxy2: SocketAddr) -> Proxy1Config {
        Proxy1Config {
            connect_attempts: self.connect_attempts,
            connect_retry: self.connect_retry,
            id_wait: self.id_wait,
            idle_timeout: wire.idle_timeout.into(),
            unused_timeout: wire.unused_timeout,
            half_close_linger: self.half_close_linger,
            close_attempts: self.close_attempts,
            close_retry: self.close_retry,
            probe_after: self.probe_after,
            transport: Some(wire.transport()),
            ..Proxy1Config::new(proxy2)
        }
    }
}

impl Proxy2Tuning {
    pub fn config(&self, wire: &WireArgs, server: SocketAddr) -> Proxy2Config {
        Proxy2Config {
            connect_timeout: self.server_connect_timeout,
            idle_timeout: wire.idle_timeout.into(),
            unused_timeout: wire.unused_timeout,
            limits: crate::tunnel::admission::Limits {
                max_connections: usize::try_from(self.max_connections).unwrap_or(usize::MAX),
                max_peers: usize::try_from(self.max_peers).unwrap_or(usize::MAX),
                allowed: (!self.allow_proxy1.is_empty()).then(|| self.allow_proxy1.clone()),
            },
            transport: Some(wire.transport()),
            ..Proxy2Config::new(server)
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run only the echo server (like server_echo2.py).
    EchoServer(EchoServerArgs),
    /// Run only proxy2: UDP from proxy1s, one TCP connection to the server per tunnel connection.
    ///
    /// With link emulator flags, proxy2 emulates both directions at its end: what it sends
    /// (p2→p1) and what it receives, as it arrives (p1→p2), since its proxy1 may be a course
    /// script with no emulator. Give the flags to one side only when both proxies are tunlab's.
    Proxy2(Proxy2Args),
    /// Run only proxy1: TCP clients in, multiplexed over one UDP socket to proxy2.
    ///
    /// With link emulator flags, proxy1 emulates both directions at its end: what it sends
    /// (p1→p2) and what it receives, as it arrives (p2→p1), since its proxy2 may be a course
    /// script with no emulator. Give the flags to one side only when both proxies are tunlab's.
    Proxy1(Proxy1Args),
    /// Run one interactive echo client (like client_echo2.py): each stdin line is sent and its echo printed.
    EchoClient(EchoClientArgs),
    /// Talk to a lab's or role's admin protocol (--admin): log in, then type commands (like the SOCKS5 project's monitor_client).
    ///
    /// It asks for NAME:PASS, then reads commands with line editing and history (up and down
    /// arrows): STATS, CONNECTIONS, USERS, ACCESS_LOG (of one USER if given), CONFIG (PARAM VALUE to
    /// change one), HELP, QUIT.
    /// With stdin not a terminal it reads one line at a time, so it can be scripted.
    Monitor(MonitorClientArgs),
    /// Run a SOCKS5 server with no tunnel: the SOCKS5 front straight on top of the dialer.
    ///
    /// Clients (curl --socks5-hostname, a browser) ask for any destination by address or
    /// name; the server resolves names itself, applies --allow/--deny, connects, and relays.
    /// CONNECT to IPv4, IPv6 and names (RFC 1928), with "no authentication" or, once users
    /// are given, username/password (RFC 1929). BIND and UDP ASSOCIATE are answered
    /// "command not supported". Each connection is logged on stderr (and in --access-log).
    /// It runs without the tunnel: the baseline a SOCKS5 front over the tunnel will be
    /// compared with (that front is not wired into proxy1 yet).
    Socks5(Socks5Args),
    /// Write a fresh 256-bit key for --key-file to FILE (mode 0600; never overwrites).
    ///
    /// The file is one line of 64 hex digits. Copy it to both proxies' machines over a
    /// channel you trust (scp, not chat or mail).
    Keygen(KeygenArgs),
    /// Write a copy of a capture with the sealed link's frames opened, for Wireshark.
    ///
    /// Reads a pcap or pcapng capture of a link sealed with --key-file and writes the same
    /// capture (same format, times, comments) where every sealed frame the key opens is
    /// replaced by the extended frame inside, with its UDP and IP lengths and checksums
    /// recomputed. Handshake messages and frames the key does not open stay as they are.
    Decrypt(DecryptArgs),
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
    pub front: crate::roles::fronts::socks5::args::Socks5FrontArgs,
    /// How long each address of a destination gets to connect before the next is tried
    /// (the client hears "TTL expired" if none answers).
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration, value_name = "TIME", help_heading = "Destinations")]
    pub connect_timeout: Duration,
    #[command(flatten)]
    pub rules: crate::roles::dialers::args::RuleArgs,
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
    // A standalone proxy emulates both directions at its end: what it sends, and what it
    // receives as it arrives (its peer may be a course script with no emulator).
    #[command(flatten)]
    pub link: LinkArgs,
    #[command(flatten)]
    pub capture: ProxyCaptureArgs,
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

/// Parses the command line and runs it; the binary's whole `main`.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // Every tunnel connection costs each proxy a descriptor: lift the soft limit (often 1024)
    // to the hard one before anything opens.
    crate::fd_limit::raise_to_hard();
    let wire = match &cli.command {
        None => Some(&cli.lab.wire),
        Some(Command::Proxy1(args)) => Some(&args.wire),
        Some(Command::Proxy2(args)) => Some(&args.wire),
        Some(_) => None,
    };
    if let Some(Err(message)) = wire.map(WireArgs::check_seal) {
        eprintln!("error: {message}");
        return ExitCode::from(crate::script::EXIT_INVALID);
    }
    if cli.command.is_some() && cli.lab.netns {
        eprintln!(
            "error: --netns is for the lab (no subcommand): a standalone role in a namespace of \
             its own could reach no one; give a proxy CAP_NET_RAW for --capture-tcp instead"
        );
        return ExitCode::from(crate::script::EXIT_INVALID);
    }
    if cli.command.is_none() && cli.lab.netns {
        // Before the runtime: unshare refuses a new user namespace to a threaded process.
        if let Err(e) = crate::netns::enter() {
            eprintln!("error: {e}");
            return ExitCode::from(crate::script::EXIT_INVALID);
        }
        eprintln!("{}", crate::netns::NOTICE);
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        None => crate::app::run_lab(cli.lab).await,
        Some(Command::EchoServer(args)) => {
            let listener = bind_tcp((args.common.bind, args.port).into())?;
            let sources = |events, conns, _capture| {
                MonitorSources::new("echo-server", Role::EchoServer, events, conns)
            };
            run_standalone(&args.common, None, None, sources, |events, stop, _| {
                echo_server::run(listener, events, stop)
            })
            .await
        }
        Some(Command::Proxy2(args)) => {
            let server = resolve(&args.server_host, args.server_port).await?;
            let socket = bind_udp((args.common.bind, args.udp_port).into())?;
            let config = args.tuning.config(&args.wire, server);
            let emulator = standalone_emulator(&args.link, args.common.monitor.admin.is_some());
            let capture = args.capture.plan(Role::Proxy2);
            let tcp = match open_tcp_capture(args.capture.capture_tcp) {
                Ok(tcp) => tcp.map(|tcp| (tcp, vec![server.port()])),
                Err(code) => return Ok(code),
            };
            let link = StandaloneLink::new(Endpoint::Proxy2, &args.wire, &emulator);
            let sources = proxy_sources(
                Endpoint::Proxy2,
                &link.stats,
                &emulator,
                config.idle_timeout.clone(),
                server,
            );
            let code = run_standalone(
                &args.common,
                capture,
                tcp,
                sources,
                |events, stop, tap| async move {
                    match link.open(socket, events, tap) {
                        Ok(link) => proxy2::run(link, config, stop).await,
                        Err(e) => eprintln!("error: {e}"),
                    }
                },
            )
            .await;
            report_emulator(emulator.as_deref());
            code
        }
        Some(Command::Proxy1(args)) => {
            let proxy2_addr = resolve(&args.proxy2_host, args.proxy2_udp_port).await?;
            let listener = bind_tcp((args.common.bind, args.tcp_port).into())?;
            let socket = bind_udp(local_bind_towards(proxy2_addr))?;
            let config = args.tuning.config(&args.wire, proxy2_addr);
            let emulator = standalone_emulator(&args.link, args.common.monitor.admin.is_some());
            let capture = args.capture.plan(Role::Proxy1);
            let client_port = listener.local_addr()?.port();
            let tcp = match open_tcp_capture(args.capture.capture_tcp) {
                Ok(tcp) => tcp.map(|tcp| (tcp, vec![client_port])),
                Err(code) => return Ok(code),
            };
            let link = StandaloneLink::new(Endpoint::Proxy1, &args.wire, &emulator);
            let sources = proxy_sources(
                Endpoint::Proxy1,
                &link.stats,
                &emulator,
                config.idle_timeout.clone(),
                proxy2_addr,
            );
            let code = run_standalone(
                &args.common,
                capture,
                tcp,
                sources,
                |events, stop, tap| async move {
                    match link.open(socket, events, tap) {
                        Ok(link) => proxy1::run(listener, link, config, stop).await,
                        Err(e) => eprintln!("error: {e}"),
                    }
                },
            )
            .await;
            report_emulator(emulator.as_deref());
            code
        }
        Some(Command::EchoClient(args)) => {
            let server = resolve(&args.host, args.port).await?;
            echo_client::run_interactive(server, args.echo_timeout).await?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Socks5(args)) => run_socks5(args).await,
        Some(Command::Keygen(args)) => match SealKey::generate_file(&args.file) {
            Ok(()) => {
                eprintln!(
                    "wrote a fresh 256-bit key to {} (mode 0600); give both proxies --key-file {}",
                    args.file.display(),
                    args.file.display()
                );
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("error: {e}");
                Ok(ExitCode::FAILURE)
            }
        },
        Some(Command::Decrypt(args)) => {
            match crate::capture::decrypt::decrypt_file(
                &args.input,
                &args.output,
                &args.key_file.key,
            ) {
                Ok(summary) => {
                    eprintln!("{summary}");
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("error: {e:#}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Some(Command::Monitor(args)) => {
            // A blocking client: it waits on a person, not on sockets of its own.
            tokio::task::spawn_blocking(move || crate::monitor::client::run(&args.host, args.port))
                .await?
        }
    }
}

/// `tunlab socks5`: the direct SOCKS5 server until Ctrl-C or SIGTERM.
async fn run_socks5(args: Socks5Args) -> anyhow::Result<ExitCode> {
    use crate::roles::access_log::AccessLog;
    use crate::roles::dialers::{DialerConfig, ResolverDialer};
    use crate::roles::socks5_direct::{self, DirectConfig};

    let front = args.front.config().map_err(|e| anyhow::anyhow!(e))?;
    let access_log =
        match &args.access_log {
            Some(path) => Some(AccessLog::open(path).map_err(|e| {
                anyhow::anyhow!("cannot open the access log {}: {e}", path.display())
            })?),
            None => None,
        };
    let listener = bind_tcp((args.bind, args.port).into())?;
    let users = match front.users.len() {
        0 => "no authentication".to_string(),
        n => format!("{n} user(s), username/password required"),
    };
    let rules = args.rules.rules;
    let rule_list = if rules.is_empty() {
        "no rules (every destination allowed)".to_string()
    } else {
        let list: Vec<String> = rules.iter().map(ToString::to_string).collect();
        format!("rules {} (then allowed)", list.join(" "))
    };
    eprintln!(
        "socks5: listening on {} ({users}; {rule_list})",
        listener.local_addr()?
    );
    if let Some(log) = &access_log {
        eprintln!("socks5: access log {}", log.path().display());
    }
    let config = DirectConfig {
        front,
        dialer: ResolverDialer::new(DialerConfig {
            rules,
            connect_timeout: args.connect_timeout,
            ..DialerConfig::default()
        }),
        access_log: access_log.as_ref().map(AccessLog::writer),
        on_record: Some(Arc::new(
            |record: &crate::roles::access_log::AccessRecord| {
                eprintln!("socks5: {}", record.describe());
            },
        )),
        max_clients: usize::try_from(args.max_clients).unwrap_or(usize::MAX),
    };
    let stop = CancellationToken::new();
    let server = tokio::spawn(socks5_direct::run(listener, config, stop.clone()));
    wait_for_signal().await;
    stop.cancel();
    let _ = server.await;
    if let Some(log) = access_log {
        let path = log.path().display().to_string();
        let written = log.finish();
        eprintln!("socks5: {written} access log lines written to {path}");
    }
    Ok(ExitCode::SUCCESS)
}

/// How a standalone proxy's monitor finds its counters: `destination` is where its
/// connections lead (proxy1: its proxy2; proxy2: the server).
fn proxy_sources(
    endpoint: Endpoint,
    stats: &Arc<LinkStats>,
    emulator: &Option<Arc<LinkEmulator>>,
    idle_timeout: crate::roles::IdleTimeout,
    destination: SocketAddr,
) -> impl FnOnce(EventSink, Arc<ConnTable>, Option<Arc<crate::capture::CaptureStatus>>) -> MonitorSources
+ use<> {
    let stats = stats.clone();
    let emulator = emulator.clone();
    move |events, conns, capture| {
        conns.set_destination(endpoint.role(), destination);
        let sources = MonitorSources::new(endpoint.label(), endpoint.role(), events, conns)
            .with_link(endpoint, stats)
            .with_capture(capture)
            .with_idle_timeout(idle_timeout);
        match emulator {
            Some(emulator) => sources.with_emulator(emulator),
            None => sources,
        }
    }
}

/// The emulator a standalone proxy runs, if its flags ask for one or the admin protocol may
/// change it (`CONFIG loss 10`; a clear emulator costs next to nothing). It says so on
/// stderr, with the seed that replays it.
fn standalone_emulator(args: &LinkArgs, admin: bool) -> Option<Arc<LinkEmulator>> {
    let settings = args.settings();
    if settings.is_clear() && !admin {
        return None;
    }
    let clear = settings.is_clear();
    let emulator = LinkEmulator::new(settings, args.seed.unwrap_or_else(random_seed));
    if clear {
        return Some(emulator);
    }
    let settings = emulator.settings();
    eprintln!(
        "link emulator (seed {}; replay with --seed {}): p1→p2 {} | p2→p1 {}",
        emulator.seed(),
        emulator.seed(),
        settings.to_proxy2.summary(),
        settings.to_proxy1.summary()
    );
    Some(emulator)
}

/// How a standalone proxy's end of the link is put together: its wire mode, seal, counters
/// and emulator. A standalone proxy is the only one of the pair in this process, so its
/// emulator acts on both directions and its capture records both: the whole link.
struct StandaloneLink {
    endpoint: Endpoint,
    wire: WireMode,
    seal: Option<Seal>,
    stats: Arc<LinkStats>,
    emulator: Option<Arc<LinkEmulator>>,
}

impl StandaloneLink {
    fn new(endpoint: Endpoint, wire: &WireArgs, emulator: &Option<Arc<LinkEmulator>>) -> Self {
        let side = match endpoint {
            Endpoint::Proxy1 => Side::Proxy1,
            Endpoint::Proxy2 => Side::Proxy2,
        };
        StandaloneLink {
            endpoint,
            wire: wire.wire,
            seal: wire.seal(side),
            stats: Arc::default(),
            emulator: emulator.clone(),
        }
    }

    /// The link socket on `socket`, reporting to `events` and recording to `tap`.
    fn open(
        self,
        socket: tokio::net::UdpSocket,
        events: EventSink,
        tap: Option<CaptureTap>,
    ) -> std::io::Result<LinkSocket> {
        let mut link =
            LinkSocket::new(socket, self.endpoint, self.wire, events)?.with_stats(self.stats);
        if let Some(seal) = self.seal {
            link = link.with_seal(seal);
        }
        if let Some(emulator) = self.emulator {
            link = link.with_emulator(emulator, EmulatorScope::SentAndReceived);
        }
        if let Some(tap) = tap {
            link = link.with_capture(tap, crate::link::TapScope::SentAndReceived);
        }
        Ok(link)
    }
}

/// The emulator's counters when a standalone proxy stops.
fn report_emulator(emulator: Option<&LinkEmulator>) {
    if let Some(emulator) = emulator {
        for line in emulator.report().lines() {
            eprintln!("{line}");
        }
    }
}

/// Runs one role until Ctrl-C or SIGTERM, printing its events on stderr, records its link
/// frames when `capture` says so (the file is finished after the role has stopped), and
/// serves its metrics and admin protocol when `common.monitor` asks, from what `sources`
/// gathers.
async fn run_standalone<S, F, Fut>(
    common: &StandaloneArgs,
    capture: Option<CapturePlan>,
    tcp: Option<(TcpCapture, Vec<u16>)>,
    sources: S,
    role: F,
) -> anyhow::Result<ExitCode>
where
    S: FnOnce(
        EventSink,
        Arc<ConnTable>,
        Option<Arc<crate::capture::CaptureStatus>>,
    ) -> MonitorSources,
    F: FnOnce(EventSink, CancellationToken, Option<CaptureTap>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    // Listening before anything starts, so an early signal still stops the role cleanly.
    let mut signals = StopSignals::new();
    let (events, mut rx) = EventSink::channel(16 * 1024);
    // The connection table sees every event, before the log's channel could drop one.
    let plan = common.monitor.plan();
    let conns = plan.is_on().then(|| Arc::new(ConnTable::new()));
    let events = match &conns {
        Some(conns) => events.with_observer(conns.clone()),
        None => events,
    };
    let verbose = common.verbose;
    // Without -v the log shows no frames, so the roles need not build an event per datagram.
    let events = if verbose {
        events
    } else {
        events.without_frame_events()
    };
    let printer = tokio::spawn(async move {
        while let Some(event) = rx.recv().await {
            if let Some(line) = describe(&event.kind, verbose) {
                eprintln!("{line}");
            }
        }
    });
    let mut capture = match capture {
        Some(plan) => Some(CaptureWriter::start(plan, events.clone())?),
        None => None,
    };
    if let Some(capture) = &mut capture {
        eprintln!(
            "capturing the link to {}",
            capture.status().path().display()
        );
        if let Some((tcp, ports)) = tcp {
            capture.capture_tcp(tcp, &ports, events.clone())?;
            let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
            eprintln!(
                "capturing TCP port {} on {} too",
                ports.join(", "),
                crate::capture::tcp::LOOPBACK
            );
        }
    }
    let monitor = match conns {
        Some(conns) => {
            let status = capture.as_ref().map(CaptureWriter::status);
            match Monitor::start(&plan, sources(events.clone(), conns, status)).await {
                Ok(monitor) => Some(monitor),
                Err(e) => {
                    if let Some(capture) = capture {
                        capture.abandon().await;
                    }
                    return Err(e);
                }
            }
        }
        None => None,
    };
    if let Some(line) = monitor.as_ref().and_then(Monitor::describe) {
        eprintln!("{line}");
    }
    let stop = CancellationToken::new();
    let tap = capture.as_ref().map(CaptureWriter::tap);
    let task = tokio::spawn(role(events.clone(), stop.clone(), tap));
    signals.recv().await;
    stop.cancel();
    let _ = task.await;
    if let Some(monitor) = monitor {
        monitor.stop().await;
    }
    if let Some(capture) = capture {
        eprintln!("{}", capture.finish().await.describe());
    }
    let dropped = events.dropped();
    drop(events);
    let _ = tokio::time::timeout(Duration::from_secs(1), printer).await;
    if dropped > 0 {
        eprintln!(
            "{}: {dropped} log events were dropped (output too slow)",
            Level::Warn.label()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Ctrl-C (SIGINT) and SIGTERM, listened for from the moment this is made: a signal that
/// arrives before [`StopSignals::recv`] is awaited is not lost (and does not kill the process).
pub struct StopSignals {
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
}

impl StopSignals {
    /// Starts listening. Must be called inside the runtime.
    pub fn new() -> StopSignals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            StopSignals {
                interrupt: signal(SignalKind::interrupt()).ok(),
                terminate: signal(SignalKind::terminate()).ok(),
            }
        }
        #[cfg(not(unix))]
        StopSignals {}
    }

    /// Resolves on the next Ctrl-C or SIGTERM.
    pub async fn recv(&mut self) {
        #[cfg(unix)]
        {
            async fn next(signal: Option<&mut tokio::signal::unix::Signal>) {
                match signal {
                    Some(signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            }
            tokio::select! {
                _ = next(self.interrupt.as_mut()) => {}
                _ = next(self.terminate.as_mut()) => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

impl Default for StopSignals {
    fn default() -> Self {
        StopSignals::new()
    }
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM received from now on.
pub async fn wait_for_signal() {
    StopSignals::new().recv().await;
}

/// The shortest and longest `--chatter` interval: faster would flood the traces, slower
/// would not look like chatter.
pub const CHATTER_RANGE: std::ops::RangeInclusive<std::time::Duration> =
    std::time::Duration::from_millis(50)..=std::time::Duration::from_secs(600);

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
