//! The scenario file format (TOML), read with serde and then checked as a whole, so that
//! every mistake is reported before the lab starts, with the file, line and key.
//!
//! The format in brief (the README has a complete, annotated example):
//!
//! ```toml
//! name = "basic echo"        # optional; the file name otherwise
//! deadline = "10s"           # the steps must finish within this (default 30s)
//!
//! [lab]                      # how the lab is set up
//! ports = "auto"             # "auto" (default), "course" (1818/3327/3328) or a table
//! clients = 3                # echo clients started before the first step
//! capture = "off"            # "off" (default), "pcap" or "pcapng"
//! capture_tcp = false        # also the TCP legs, off loopback (needs CAP_NET_RAW or --netns)
//! key_file = "demo.key"      # seal the link (extended modes); relative to this file
//! [lab.tunnel]               # proxy timings (the CLI's --connect-attempts etc.)
//! connect_retry = "100ms"
//!
//! [[step]]                   # steps run in order; each does one thing
//! send = "hola mundo"        # from `client` (default "all")
//! [[step]]
//! wait_for = "echoes"
//!
//! [[expect]]                 # checked at the end
//! echo_intact = "all"
//! ```
//!
//! Steps and expectations are one-action tables: the key that names the action carries its
//! main argument (`close = "rst"`, `frames = "X"`), and a few modifier keys refine it
//! (`client`, `count`, `min`, …). A table with no action, two actions, or a modifier that
//! does not go with its action is rejected with its line.

mod check;
mod raw;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::link::LinkSpec;
use super::source::{ScenarioError, Source};
use crate::event::{ClientId, CloseKind};
use crate::lab::LabConfig;
use crate::roles::proxy1::Proxy1Config;
use crate::roles::proxy2::Proxy2Config;
use crate::topology::{LinkDirection, Role};
use crate::wire::{FrameKind, WireMode};

/// Reads and checks a scenario. `source.file` names it in every message.
pub fn parse(source: &Source) -> Result<Scenario, ScenarioError> {
    parse_with(source, false)
}

/// [`parse`], but when `key_given` (the command line's `--key-file` replaces the scenario's
/// key) `key_file` is not read: the caller sets [`LabSetup::key`].
pub fn parse_with(source: &Source, key_given: bool) -> Result<Scenario, ScenarioError> {
    let raw: raw::RawScenario = toml::from_str(&source.text).map_err(|e| source.toml_error(&e))?;
    check::Checker { source, key_given }.scenario(raw)
}

/// Used when a scenario does not set `deadline`.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(30);
/// No scenario may ask for more than this: CI must always finish.
pub const MAX_DEADLINE: Duration = Duration::from_hours(1);
/// More clients than this is a load test, not a scenario.
pub const MAX_CLIENTS: u32 = 1000;
/// The largest single message a step may send.
pub const MAX_MESSAGE: usize = 16 * 1024 * 1024;

// ---------------------------------------------------------------------------------------
// The checked scenario: what the runner executes.

/// A scenario that passed every check.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub name: String,
    pub file: String,
    pub description: Option<String>,
    /// The steps must all finish within this time from the lab's start.
    pub deadline: Duration,
    pub lab: LabSetup,
    pub steps: Vec<Step>,
    pub expectations: Vec<Expectation>,
}

/// How the lab is set up before the first step.
#[derive(Clone, Debug)]
pub struct LabSetup {
    /// TCP port of the echo server (0: any free port).
    pub server_port: u16,
    /// TCP port of proxy1 (0: any free port).
    pub proxy1_port: u16,
    /// UDP port of proxy2 (0: any free port).
    pub proxy2_port: u16,
    pub wire: WireMode,
    /// Echo clients started before the first step (numbered 1..=clients).
    pub clients: u32,
    pub capture: Option<CaptureFormat>,
    /// Where capture files go.
    pub capture_dir: PathBuf,
    /// The TCP legs read off loopback into the same capture (`--capture-tcp`).
    pub capture_tcp: bool,
    pub proxy1: Proxy1Config,
    pub proxy2: Proxy2Config,
    /// Link emulator settings at start (opaque until the emulator lands).
    pub link: Option<LinkSpec>,
    /// proxy1 has a SOCKS5 port (`[lab.socks5]`; its users are in `proxy1.socks5`, the
    /// rules in `proxy2.dialer`).
    pub socks5: bool,
    /// The key that seals the link (`key_file`, or the command line's `--key-file`).
    pub key: Option<ScenarioKey>,
}

/// A key that seals a scenario's link, read when the scenario is checked.
#[derive(Clone, Debug)]
pub struct ScenarioKey {
    /// The file it came from, as resolved (relative to the scenario file, for `key_file`).
    pub path: PathBuf,
    pub key: crate::link::seal::SealKey,
    /// To say on stderr before the run: the file is readable by others.
    pub warning: Option<String>,
}

impl ScenarioKey {
    /// Reads a key file; the error names the file and says what is wrong with it.
    pub fn load(path: PathBuf) -> Result<ScenarioKey, crate::link::seal::KeyFileError> {
        let (key, warning) = crate::link::seal::SealKey::load(&path)?;
        Ok(ScenarioKey { path, key, warning })
    }

    /// Why this key cannot seal `wire`, if it cannot: the course's formats stay plaintext,
    /// as with the lab's `--key-file`. `given` says where the key came from, for the message.
    pub fn refuses(wire: WireMode, given: &str) -> Option<String> {
        (!wire.is_extended()).then(|| {
            format!(
                "{given} seals the extended modes only (wire = \"go-back-n\" or \"selective-repeat\"); \
                 wire = \"{wire}\" is the course's plaintext format, which course peers must read"
            )
        })
    }
}

impl LabSetup {
    /// The lab configuration this set-up describes (the capture tap is added by the runner).
    pub fn lab_config(&self) -> LabConfig {
        LabConfig {
            server_port: self.server_port,
            proxy1_port: self.proxy1_port,
            proxy2_port: self.proxy2_port,
            mode: self.wire,
            proxy1: self.proxy1.clone(),
            proxy2: self.proxy2.clone(),
            key: self.key.as_ref().map(|key| key.key.clone()),
            socks5_port: self.socks5.then_some(0),
            ..LabConfig::ephemeral()
        }
    }
}

/// The capture file format: the capture writer's own.
pub use crate::capture::CaptureFormat;

/// One step, with the line it was written on (for logs and messages).
#[derive(Clone, Debug)]
pub struct Step {
    pub line: usize,
    /// Do not start before this long after the lab started.
    pub at: Option<Duration>,
    pub action: Action,
}

/// What a step does. Each maps onto one `Lab` call (or a wait).
#[derive(Clone, Debug)]
pub enum Action {
    StartClients(u32),
    Send {
        clients: ClientSel,
        message: Message,
        count: u32,
        interval: Duration,
    },
    Close {
        clients: ClientSel,
        how: CloseKind,
    },
    Stop(LabRole),
    Start(LabRole),
    Wait(Duration),
    WaitFor {
        condition: Condition,
        clients: ClientSel,
        timeout: Option<Duration>,
    },
    SetLink(LinkSpec),
    /// Step mode on (`true`) or off (everything held goes, in order).
    Hold(bool),
    /// Acts on a frame the held link holds, once one matching `pick` is held.
    Held {
        what: HeldAction,
        pick: FramePick,
        timeout: Option<Duration>,
    },
    /// A SOCKS5 client asks proxy1's SOCKS5 port for a destination (and, connected, may
    /// send a message and read its echo).
    Socks5(crate::script::socks5_client::Socks5Request),
}

/// What a step does to a held frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeldAction {
    /// It crosses now.
    Release,
    /// It never crosses.
    Drop,
    /// A copy is held right behind it.
    Duplicate,
}

/// Which held frame: the `occurrence`-th (from 1) of those held now, oldest first, that have
/// this type, direction and connection id (each optional).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FramePick {
    pub kind: Option<FrameKind>,
    pub direction: DirectionSel,
    pub id: Option<u16>,
    pub occurrence: u32,
}

impl FramePick {
    /// The frame this picks among `held` (oldest first), if it is held.
    pub fn find<'h>(&self, held: &'h [crate::lab::HeldView]) -> Option<&'h crate::lab::HeldView> {
        held.iter()
            .filter(|h| self.kind.is_none_or(|k| h.frame.kind == k))
            .filter(|h| self.direction.directions().contains(&h.direction))
            .filter(|h| {
                self.id
                    .is_none_or(|id| h.frame.id.index() == usize::from(id))
            })
            .nth(self.occurrence.saturating_sub(1) as usize)
    }
}

impl fmt::Display for FramePick {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nth = match self.occurrence {
            1 => "the first".to_string(),
            n => format!("held frame #{n} of"),
        };
        let kind = self
            .kind
            .map_or("frame".to_string(), |k| format!("{} frame", k.label()));
        write!(f, "{nth} {kind}")?;
        if let Some(id) = self.id {
            write!(f, " of id {id}")?;
        }
        if self.direction != DirectionSel::Both {
            write!(f, " {}", self.direction.label())?;
        }
        write!(f, " held")
    }
}

/// What a send step sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    Text(String),
    /// This many bytes of a printable repeating pattern.
    Size(usize),
}

impl Message {
    /// The bytes of a message that starts at byte `offset` of its client's stream.
    ///
    /// Generated data (`send_size`) depends on the position in the stream and has no short
    /// period, so a lost, duplicated or reordered frame (or a whole message sent twice)
    /// changes what the client gets back and `echo_intact` sees it: the check is byte-exact.
    pub fn bytes_at(&self, offset: u64) -> Vec<u8> {
        match self {
            Message::Text(text) => text.as_bytes().to_vec(),
            Message::Size(size) => (offset..offset + *size as u64)
                .map(generated_byte)
                .collect(),
        }
    }

    /// The bytes of a message at the start of a stream.
    pub fn bytes(&self) -> Vec<u8> {
        self.bytes_at(0)
    }
}

/// Byte `position` of a client's generated stream: '!'..='~' (printable, so previews and
/// captures stay readable), from a hash of the position (splitmix64's finaliser).
fn generated_byte(position: u64) -> u8 {
    let mut z = position.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    b'!' + (z % 94) as u8
}

/// Which clients a step or expectation is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientSel {
    All,
    Some(Vec<ClientId>),
}

/// The roles a step can stop and start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LabRole {
    #[serde(alias = "echo-server")]
    Server,
    Proxy1,
    Proxy2,
}

impl LabRole {
    pub fn role(self) -> Role {
        match self {
            LabRole::Server => Role::EchoServer,
            LabRole::Proxy1 => Role::Proxy1,
            LabRole::Proxy2 => Role::Proxy2,
        }
    }
}

/// What a `wait_for` step waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Condition {
    /// Every selected client got back all it sent.
    Echoes,
    /// The selected clients' connections are closed.
    Closed,
    /// The selected clients have an open tunnel connection.
    Open,
    /// The selected clients are waiting at proxy1 for a free id.
    Waiting,
    /// Every tunnel id is free again at both proxies.
    IdsFree,
}

impl Condition {
    fn takes_clients(self) -> bool {
        self != Condition::IdsFree
    }
}

/// One expectation, with its line and an optional name from the file.
#[derive(Clone, Debug)]
pub struct Expectation {
    pub line: usize,
    pub name: Option<String>,
    pub check: Check,
}

/// What an expectation checks at the end of the run.
#[derive(Clone, Debug)]
pub enum Check {
    /// Every byte the clients sent came back, unchanged and in order.
    EchoIntact(ClientSel),
    /// proxy2 answered `NOK` (the server was unreachable).
    Refused(ClientSel),
    /// proxy2 never answered `C`, and proxy1 gave up.
    Unanswered(ClientSel),
    /// The client had to wait at proxy1 for a free id.
    Waited(ClientSel),
    /// The client waited for an id and was closed when none came in time.
    GaveUpWaiting(ClientSel),
    /// The client's tunnel connection opened (`OK`), with this id if given.
    Opened(ClientSel, Option<u16>),
    /// The client's id is free again at both proxies.
    IdFreed(ClientSel),
    /// The client's connection ended, the given way.
    Closed(ClientSel, HowClosed),
    /// Frames of a type crossed the link in a direction, counted at one end.
    Frames {
        kind: FrameSel,
        direction: DirectionSel,
        counted: Counted,
        bounds: Bounds,
    },
    /// Frames of a type in the capture.
    Captured { kind: FrameSel, bounds: Bounds },
    /// Frames of a type the link emulator dropped in a direction (any cause).
    Dropped {
        kind: FrameSel,
        direction: DirectionSel,
        bounds: Bounds,
    },
    /// Data or close frames the transports sent again (reliable modes), counted where they
    /// were sent: in all (`clients` is `None`), or on each selected client's connection.
    Retransmits {
        cause: RetransmitSel,
        clients: Option<ClientSel>,
        direction: DirectionSel,
        bounds: Bounds,
    },
    /// No datagram on the link failed to decode.
    NoMalformed,
    /// SOCKS5 client `client` (numbered by its step, from 1) got this reply; "succeeded"
    /// also needs its message's echo intact, if it sent one.
    Socks5Reply {
        client: usize,
        reply: crate::script::socks5_client::Socks5Reply,
    },
}

/// A retransmission cause, or any.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetransmitSel(pub Option<crate::transport::RetransmitCause>);

impl fmt::Display for RetransmitSel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(cause) => write!(f, "{}", cause.label()),
            None => write!(f, "any"),
        }
    }
}

/// How a client's connection ended, for `closed` expectations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HowClosed {
    /// The client closed with a FIN.
    Fin,
    /// The client aborted with a RST.
    Rst,
    /// The tunnel closed it (NOK, no answer, no free id, an `X` from proxy2).
    Tunnel,
    /// Any of these.
    Any,
}

/// A frame type, or any.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameSel(pub Option<FrameKind>);

impl fmt::Display for FrameSel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(kind) => write!(f, "{}", kind.label()),
            None => write!(f, "any"),
        }
    }
}

/// A link direction, or both.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DirectionSel {
    ToProxy2,
    ToProxy1,
    Both,
}

impl DirectionSel {
    /// `p1→p2`, `p2→p1`, `both ways`.
    pub fn label(self) -> &'static str {
        match self {
            DirectionSel::ToProxy2 => "p1→p2",
            DirectionSel::ToProxy1 => "p2→p1",
            DirectionSel::Both => "both ways",
        }
    }
    pub fn directions(self) -> &'static [LinkDirection] {
        match self {
            DirectionSel::ToProxy2 => &[LinkDirection::ToProxy2],
            DirectionSel::ToProxy1 => &[LinkDirection::ToProxy1],
            DirectionSel::Both => &[LinkDirection::ToProxy2, LinkDirection::ToProxy1],
        }
    }
}

/// Whether frames are counted where they left or where they arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Counted {
    Sent,
    Received,
}

/// Bounds on a count: `exactly`, or `min` and/or `max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    pub min: Option<u64>,
    pub max: Option<u64>,
}

impl Bounds {
    pub fn holds(&self, value: u64) -> bool {
        self.min.is_none_or(|min| value >= min) && self.max.is_none_or(|max| value <= max)
    }
}

impl fmt::Display for Bounds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.min, self.max) {
            (Some(min), Some(max)) if min == max => write!(f, "exactly {min}"),
            (Some(min), Some(max)) => write!(f, "{min} to {max}"),
            (Some(min), None) => write!(f, "at least {min}"),
            (None, Some(max)) => write!(f, "at most {max}"),
            (None, None) => write!(f, "any number"),
        }
    }
}

// ---------------------------------------------------------------------------------------
// How steps and expectations read in logs and reports.

impl fmt::Display for ClientSel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientSel::All => write!(f, "all clients"),
            ClientSel::Some(list) if list.len() == 1 => write!(f, "client {}", list[0]),
            ClientSel::Some(list) => {
                let list: Vec<String> = list.iter().map(ClientId::to_string).collect();
                write!(f, "clients {}", list.join(", "))
            }
        }
    }
}

impl LabRole {
    pub fn label(self) -> &'static str {
        self.role().label()
    }
}

fn close_label(how: CloseKind) -> &'static str {
    match how {
        CloseKind::Fin => "FIN",
        CloseKind::Rst => "RST",
    }
}

impl Action {
    /// One line for the step log.
    pub fn describe(&self) -> String {
        match self {
            Action::StartClients(1) => "start 1 client".into(),
            Action::StartClients(n) => format!("start {n} clients"),
            Action::Send {
                clients,
                message,
                count,
                interval,
            } => {
                let what = match message {
                    Message::Text(text) => format!(
                        "\"{}\" ({} bytes)",
                        crate::describe::escape_bytes(text.as_bytes()),
                        text.len()
                    ),
                    Message::Size(size) => format!("{size} bytes"),
                };
                let times = match (*count, interval.is_zero()) {
                    (1, _) => String::new(),
                    (n, true) => format!(" x{n}"),
                    (n, false) => {
                        format!(" x{n} every {}", humantime::format_duration(*interval))
                    }
                };
                format!("send {what}{times} from {clients}")
            }
            Action::Close { clients, how } => {
                format!("close {clients} with {}", close_label(*how))
            }
            Action::Stop(role) => format!("stop {}", role.label()),
            Action::Start(role) => format!("start {}", role.label()),
            Action::Wait(duration) => format!("wait {}", humantime::format_duration(*duration)),
            Action::WaitFor {
                condition,
                clients,
                timeout,
            } => {
                let what = match condition {
                    Condition::Echoes => format!("every echo is back ({clients})"),
                    Condition::Closed => format!("{clients} closed"),
                    Condition::Open => format!("{clients} open through the tunnel"),
                    Condition::Waiting => format!("{clients} waiting for a free id"),
                    Condition::IdsFree => "every tunnel id is free".into(),
                };
                match timeout {
                    Some(t) => format!(
                        "wait until {what} (at most {})",
                        humantime::format_duration(*t)
                    ),
                    None => format!("wait until {what}"),
                }
            }
            Action::SetLink(spec) => spec.describe(),
            Action::Hold(true) => "hold the link (step mode)".into(),
            Action::Hold(false) => "let the link flow (release everything held)".into(),
            Action::Held { what, pick, .. } => {
                let verb = match what {
                    HeldAction::Release => "release",
                    HeldAction::Drop => "drop",
                    HeldAction::Duplicate => "duplicate",
                };
                format!("{verb} {pick}")
            }
            Action::Socks5(request) => {
                let target = match &request.target {
                    crate::script::socks5_client::Socks5Target::Server => {
                        "the echo server".to_string()
                    }
                    crate::script::socks5_client::Socks5Target::Named(d) => d.to_string(),
                };
                let user = match &request.login {
                    Some((name, _)) => format!(" as {name}"),
                    None => String::new(),
                };
                let message = match &request.message {
                    Some(message) => format!(
                        ", then send \"{}\"",
                        crate::describe::escape_bytes(message.as_bytes())
                    ),
                    None => String::new(),
                };
                format!("a SOCKS5 client asks for {target}{user}{message}")
            }
        }
    }
}

impl Check {
    /// What the expectation says, for the summary and the report.
    pub fn describe(&self) -> String {
        match self {
            Check::EchoIntact(clients) => format!("every echo intact ({clients})"),
            Check::Refused(clients) => format!("{clients} refused by proxy2 (NOK)"),
            Check::Unanswered(clients) => format!("{clients} unanswered (no OK/NOK)"),
            Check::Waited(clients) => format!("{clients} waited for a free id"),
            Check::GaveUpWaiting(clients) => {
                format!("{clients} closed after waiting in vain for an id")
            }
            Check::Opened(clients, None) => format!("{clients} opened through the tunnel"),
            Check::Opened(clients, Some(id)) => {
                format!("{clients} opened through the tunnel with id {id}")
            }
            Check::IdFreed(clients) => format!("id of {clients} freed at both proxies"),
            Check::Closed(clients, how) => match how {
                HowClosed::Fin => format!("{clients} closed with FIN"),
                HowClosed::Rst => format!("{clients} aborted with RST"),
                HowClosed::Tunnel => format!("{clients} closed by the tunnel"),
                HowClosed::Any => format!("{clients} closed"),
            },
            Check::Frames {
                kind,
                direction,
                counted,
                bounds,
            } => {
                let direction = direction.label();
                let counted = match counted {
                    Counted::Sent => "sent",
                    Counted::Received => "received",
                };
                format!("{kind} frames {counted} {direction}: {bounds}")
            }
            Check::Captured { kind, bounds } => format!("{kind} frames captured: {bounds}"),
            Check::Dropped {
                kind,
                direction,
                bounds,
            } => format!(
                "{kind} frames the link emulator dropped {}: {bounds}",
                direction.label()
            ),
            Check::Retransmits {
                cause,
                clients,
                direction,
                bounds,
            } => {
                let cause = match cause.0 {
                    Some(cause) => format!(" ({})", cause.label()),
                    None => String::new(),
                };
                let whose = match clients {
                    None => "in all".to_string(),
                    Some(clients) => format!("on the connection of each of {clients}"),
                };
                format!(
                    "retransmissions{cause} {}, {whose}: {bounds}",
                    direction.label()
                )
            }
            Check::NoMalformed => "no malformed frames".into(),
            Check::Socks5Reply { client, reply } => {
                format!("SOCKS5 client {client} gets \"{}\"", reply.name())
            }
        }
    }
}
