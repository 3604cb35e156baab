//! The command line: `tunlab` (the lab) and one subcommand per role, with the course
//! scripts' argument shapes so any piece can be swapped for a Python script.
//!
//! Clap definitions only: what the values mean to the lab and the roles is `app`'s
//! business (it builds configurations from them and runs them).

// Doc comments here are --help text, printed as written: no Markdown backticks.
#![allow(clippy::doc_markdown)]

mod lab;
mod link;
mod proxy;
mod relay;
mod roles;
mod rules;
mod socks5;
mod values;

use clap::{Parser, Subcommand};

pub use lab::{CHATTER_RANGE, LabArgs, LabCaptureArgs};
pub use link::LinkArgs;
pub use proxy::{
    KeyFile, Proxy1Args, Proxy1Tuning, Proxy2Args, Proxy2Tuning, ProxyCaptureArgs, WireArgs,
};
pub use relay::{RelayArgs, RelayCaptureArgs};
pub use roles::{
    DecryptArgs, EchoClientArgs, EchoServerArgs, KeygenArgs, MonitorArgs, MonitorClientArgs,
    Socks5Args, StandaloneArgs,
};
pub use rules::RuleArgs;
pub use socks5::{Socks5FrontArgs, Socks5PortArgs};

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
                                           a SOCKS5 server with no tunnel, for comparison
  tunlab relay 4000 localhost 3328 --loss 5 --seed 7
                                           a lossy UDP relay in front of proxy2 (give
                                           proxy1 port 4000)";

#[derive(Debug, Parser)]
#[command(name = "tunlab", version, about = ABOUT, long_about = LONG_ABOUT, after_help = EXAMPLES)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub lab: LabArgs,
    /// Threads that run the roles [default: 1 for a subcommand, one per core for the lab].
    /// One thread serves a single role best: a proxy's work per frame is a few microseconds,
    /// less than a wake-up that crosses threads costs, and the other cores are left to its
    /// peers (the server, the clients, the other proxy). Through tunlab relay on two cores,
    /// one thread per proxy carried 10-17% more than two, at the same echo p50
    /// (BENCHMARKS.md).
    #[arg(long, global = true, value_name = "N", help_heading = "Runtime",
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: Option<u16>,
}

impl Cli {
    /// How many threads the runtime gets (see `--threads`).
    pub fn runtime_threads(&self) -> usize {
        match self.threads {
            Some(threads) => usize::from(threads),
            None if self.command.is_some() => 1,
            None => std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
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
    /// It runs without the tunnel: the baseline for proxy1's SOCKS5 port (--socks5), which
    /// carries the same requests over the UDP link.
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
    /// Run a UDP relay between a peer and a target, with the link emulator in the middle.
    #[command(long_about = relay::LONG_ABOUT)]
    Relay(RelayArgs),
}
