//! What the TUI knows: a pure fold of the lab's event stream ([`update`]) plus the lab's exact
//! counters ([`apply_snapshot`]), and what the person at the keyboard has chosen to look at.
//!
//! Nothing here touches a terminal or a socket, so every screen can be rebuilt in a test from
//! a scripted list of events. Everything that grows with traffic is a bounded [`Ring`]: a
//! tunnel carrying thousands of frames a second must not grow the UI's memory.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use crate::describe::{describe, frame_label_relative};
use crate::event::{
    ClientAction, ClientEnd, ClientId, CloseKind, ConnState, Event, EventKind, EventSink,
    FrameSummary, Level, TcpAction, TcpSegmentSummary,
};
use crate::lab::{LabAddrs, LabSnapshot};
use crate::link::LinkStatsSnapshot;
use crate::topology::{Endpoint, LinkDirection, Role};
use crate::transport::{RetransmitCause, TransportEvent, TransportStats};
use crate::tui::conn_table::ConnTable;
use crate::wire::{ConnId, FrameKind, Seq, WireMode};

/// Frames kept per connection id for its trace.
pub const TRACE_CAPACITY: usize = 512;
/// Ladder rows kept per connection id.
pub const LADDER_CAPACITY: usize = 512;
/// Points of the time-sequence graph kept per connection id (sends, retransmissions, acks).
pub const SEQ_GRAPH_CAPACITY: usize = 2048;
/// Retransmissions announced and not yet matched to their frame, per endpoint: a Go-Back-N
/// step resends at most a window, and anything older than this is stale.
const PENDING_RETRANSMITS: usize = 256;
/// Per-frame events the TUI takes one by one each second; past this its traces and ladders
/// are a sample (marked as such) while per-connection counts stay exact. A screen redrawn 30
/// times a second cannot show more, and folding every event of a tunnel at full speed cost
/// the lab more than the tunnel itself.
pub const TUI_EVENTS_PER_SECOND: u32 = 2_000;
/// Lines kept in the log pane.
pub const LOG_CAPACITY: usize = 500;
/// Accepted-but-not-yet-assigned TCP clients remembered at proxy1 (for the ladder's first
/// arrow); more than this means something outside the lab is hammering proxy1.
const PENDING_ACCEPTS: usize = 256;
/// TCP segments remembered for connections whose id is not known yet (a handshake happens
/// before proxy1 gives the client an id, and before proxy2 says it connected).
const PENDING_SEGMENTS: usize = 256;
/// Waiting clients remembered (each one is a real TCP connection at proxy1).
const WAITING_CAPACITY: usize = 256;
/// A client that waited at least this long between accept and id has waited for a free id.
const WAIT_SHOWN: Duration = Duration::from_millis(100);

/// A fixed-capacity queue that forgets its oldest entries.
#[derive(Clone, Debug)]
pub struct Ring<T> {
    items: VecDeque<T>,
    capacity: usize,
    /// Entries pushed out to make room since the last clear.
    forgotten: u64,
}

impl<T> Ring<T> {
    pub fn new(capacity: usize) -> Self {
        Ring {
            // Nothing allocated until the first push: the extended modes have 65,536 ids,
            // each with a trace, a ladder and a graph, and most never carry a frame.
            items: VecDeque::new(),
            capacity,
            forgotten: 0,
        }
    }
    pub fn push(&mut self, item: T) {
        if self.items.len() == self.capacity {
            self.items.pop_front();
            self.forgotten += 1;
        }
        self.items.push_back(item);
    }
    pub fn clear(&mut self) {
        self.items.clear();
        self.forgotten = 0;
    }
    pub fn len(&self) -> usize {
        self.items.len()
    }
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
    pub fn capacity(&self) -> usize {
        self.capacity
    }
    /// How many older entries were pushed out.
    pub fn forgotten(&self) -> u64 {
        self.forgotten
    }
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &T> + ExactSizeIterator {
        self.items.iter()
    }
    pub fn back(&self) -> Option<&T> {
        self.items.back()
    }
    pub fn back_mut(&mut self) -> Option<&mut T> {
        self.items.back_mut()
    }
}

impl<T: HasTime> Ring<T> {
    /// How many entries are at or before `time` (entries are in time order, so they are the
    /// first ones): what a paused screen shows, while newer ones keep arriving behind them.
    pub fn len_until(&self, time: Duration) -> usize {
        self.items.partition_point(|item| item.time() <= time)
    }

    /// Inserts in time order. Events from different tasks can arrive slightly out of order;
    /// they are almost always late by a few entries, so the search starts from the back.
    pub fn insert_by_time(&mut self, item: T) {
        let time = item.time();
        let position = self
            .items
            .iter()
            .rposition(|existing| existing.time() <= time)
            .map_or(0, |p| p + 1);
        if self.items.len() == self.capacity {
            if position == 0 {
                // Older than everything kept: it would be the first to go anyway.
                self.forgotten += 1;
                return;
            }
            self.items.pop_front();
            self.forgotten += 1;
            self.items.insert(position - 1, item);
        } else {
            self.items.insert(position, item);
        }
    }
}

/// Anything placed on the lab's time axis.
pub trait HasTime {
    fn time(&self) -> Duration;
}

/// A role's place in the header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleView {
    /// Where it listens (proxy1: its TCP listener).
    pub addr: Option<SocketAddr>,
    pub up: bool,
}

/// Link settings as the header shows them. The impairment issue fills `impairment` in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkView {
    pub mode: WireMode,
    /// The link is sealed (`--key-file`): the header says so.
    pub sealed: bool,
    /// `None`: the link delivers what UDP on loopback delivers.
    pub impairment: Option<String>,
}

/// The capture being written, from the capture writer's status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaptureView {
    pub path: String,
    /// Frames in the file so far.
    pub frames: u64,
    /// The writer gave up (a disk error); the file holds `frames` and no more.
    pub failed: bool,
}

/// Where the lab's monitor serves, when `--metrics` or `--admin` is on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MonitorView {
    /// `/metrics` listens here.
    pub metrics: Option<SocketAddr>,
    /// The admin protocol listens here.
    pub admin: Option<SocketAddr>,
}

/// One frame in a connection's trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TraceLine {
    Frame {
        /// Since the lab started.
        time: Duration,
        direction: LinkDirection,
        frame: FrameSummary,
        /// The sender's transport said this frame is a retransmission, and why.
        retransmit: Option<RetransmitCause>,
        /// The connection's initial sequence numbers (the sender's, the receiver's) when
        /// the frame was sent, so the label counts from them (extended modes).
        bases: Option<(Seq, Seq)>,
    },
    /// A reliable transport's event: a duplicate discarded, a frame held out of order or
    /// discarded, a give-up (retransmissions mark their frame instead).
    Transport {
        time: Duration,
        at: Endpoint,
        event: TransportEvent,
        /// The ISN the event's sequence numbers count from (the peer's: these are about
        /// frames it received), when known.
        base: Option<Seq>,
    },
    /// The id was given to a new TCP client; what follows belongs to it.
    NewConnection { time: Duration, client: SocketAddr },
    /// Frames and other per-frame events counted but not traced one by one: past the TUI's
    /// rate ([`TUI_EVENTS_PER_SECOND`]), traces are a sample and say so.
    Sampled {
        /// When the last of these counts arrived.
        time: Duration,
        to_proxy2: Flow,
        to_proxy1: Flow,
        /// TCP reads and writes and link decisions.
        other: u64,
    },
    /// The link emulator did something to a frame (dropped, delayed, duplicated…).
    Link {
        time: Duration,
        direction: LinkDirection,
        /// `D3 len=5 "hola" dropped (loss)`.
        text: String,
        dropped: bool,
    },
}

impl HasTime for TraceLine {
    fn time(&self) -> Duration {
        match self {
            TraceLine::Frame { time, .. }
            | TraceLine::NewConnection { time, .. }
            | TraceLine::Sampled { time, .. }
            | TraceLine::Link { time, .. }
            | TraceLine::Transport { time, .. } => *time,
        }
    }
}

/// The four columns of the ladder diagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Lane {
    Client,
    Proxy1,
    Proxy2,
    Server,
}

impl Lane {
    pub const ALL: [Lane; 4] = [Lane::Client, Lane::Proxy1, Lane::Proxy2, Lane::Server];
    pub fn label(self) -> &'static str {
        match self {
            Lane::Client => "client",
            Lane::Proxy1 => "proxy1",
            Lane::Proxy2 => "proxy2",
            Lane::Server => "server",
        }
    }
    pub fn index(self) -> usize {
        self as usize
    }
}

/// What an arrow carries, so the ladder can colour it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArrowKind {
    /// A TCP connect or accept.
    TcpOpen,
    /// Bytes written on a TCP connection.
    TcpData,
    /// An orderly TCP close.
    Fin,
    /// An aborted TCP connection.
    Rst,
    /// A `C`, `OK` or `D` frame on the UDP link.
    Frame,
    /// `NOK` or a failed connect.
    Failure,
    /// An `X` frame.
    Close,
    /// A data (or close) frame sent again.
    Retransmit,
    /// A TCP segment of the handshake (SYN, SYN-ACK, its ACK), read off loopback.
    Handshake,
}

/// What an arrow says. One is made for every frame sent and every TCP read and write, but
/// only the rows on screen are ever read, so it keeps the facts and [`ArrowLabel::text`]
/// formats them when the row is drawn.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArrowLabel {
    Text(String),
    Static(&'static str),
    /// `C3`, `D3 5B "hola\n"`, `↻ D3 seq=17 1488B "…"`… (see [`ladder_label`]).
    Frame {
        frame: FrameSummary,
        /// A retransmission, and why.
        retransmit: Option<RetransmitCause>,
        /// The ISNs its numbers count from (sender's, receiver's).
        bases: Option<(Seq, Seq)>,
    },
    /// `5 B`: bytes read or written on a TCP socket.
    Bytes(usize),
}

impl ArrowLabel {
    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        match self {
            ArrowLabel::Text(text) => text.as_str().into(),
            ArrowLabel::Static(text) => (*text).into(),
            ArrowLabel::Frame {
                frame,
                retransmit,
                bases,
            } => match retransmit {
                // The cause is on a note row just above (an arrow has no room for it).
                Some(_) => format!("↻ {}", ladder_label(frame, *bases)).into(),
                None => ladder_label(frame, *bases).into(),
            },
            ArrowLabel::Bytes(n) => format!("{n} B").into(),
        }
    }
}

impl From<String> for ArrowLabel {
    fn from(text: String) -> Self {
        ArrowLabel::Text(text)
    }
}

impl From<&'static str> for ArrowLabel {
    fn from(text: &'static str) -> Self {
        ArrowLabel::Static(text)
    }
}

/// One row of the ladder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LadderEntry {
    Arrow {
        time: Duration,
        from: Lane,
        to: Lane,
        label: ArrowLabel,
        kind: ArrowKind,
    },
    /// A line across every lane (the id freed, refused…).
    Note { time: Duration, text: String },
    /// The id was given to a TCP client (named when drawn: its lab client number may only
    /// become known a moment later).
    IdGiven { time: Duration, client: SocketAddr },
    /// Frames and TCP reads and writes counted but not drawn one by one (sampled).
    Sampled {
        time: Duration,
        frames: u64,
        other: u64,
    },
}

impl HasTime for LadderEntry {
    fn time(&self) -> Duration {
        match self {
            LadderEntry::Arrow { time, .. }
            | LadderEntry::Note { time, .. }
            | LadderEntry::IdGiven { time, .. }
            | LadderEntry::Sampled { time, .. } => *time,
        }
    }
}

/// Bytes and frames of one direction of one connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flow {
    /// Every frame type.
    pub frames: u64,
    /// `D` payload bytes.
    pub bytes: u64,
}

/// One tunnel connection id.
#[derive(Clone, Debug)]
pub struct ConnView {
    pub id: ConnId,
    /// As proxy1, which owns the id, sees it.
    pub state: ConnState,
    /// As proxy2 sees it (they differ while a frame is on its way, or after a role restart).
    pub proxy2_state: ConnState,
    /// The TCP client that has (or last had) the id.
    pub client: Option<SocketAddr>,
    /// How the previous use ended when it was not a plain close (refused, unanswered): a
    /// refused connection is freed at once, and would otherwise never show as refused.
    pub last_outcome: Option<ConnState>,
    /// Since the id was last given out.
    pub to_proxy2: Flow,
    pub to_proxy1: Flow,
    pub trace: Ring<TraceLine>,
    pub ladder: Ring<LadderEntry>,
    /// The reliable transport of each end, as its pump last published it (reliable modes).
    pub transport: Reliability,
    /// The time-sequence graph's points (sends, retransmissions, acks), oldest first.
    pub seq_graph: Ring<SeqPoint>,
    /// Where a SOCKS5 client's connection leads, who it is, and why it was refused. Boxed:
    /// most ids never carry one.
    pub route: Option<Box<ConnRoute>>,
}

/// A SOCKS5 connection's destination and user, and its refusal, as the views show them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnRoute {
    /// `localhost:8000`, `[::1]:22`; empty until a route event says.
    pub destination: String,
    /// Who logged in at proxy1's SOCKS5 port (none without authentication).
    pub user: Option<String>,
    /// Why the destination was not opened: the `NOK`'s reason, and in words (proxy2's words,
    /// naming the rule or the addresses tried, when they arrived).
    pub refusal: Option<(crate::destination::Refusal, String)>,
}

/// A connection's reliable transports as their pumps publish them, and what the screen
/// needs to count sequence numbers from the start of the connection.
#[derive(Clone, Debug, Default)]
pub struct Reliability {
    /// proxy1's transport (its data goes to proxy2). Boxed as the event brought it: most of
    /// the extended modes' 65,536 ids never have one.
    pub proxy1: Option<Box<TransportStats>>,
    /// proxy2's transport.
    pub proxy2: Option<Box<TransportStats>>,
    /// The initial sequence number of each direction's data, from the extended `C`
    /// (proxy1's) and `OK` (proxy2's).
    pub isn_to_proxy2: Option<Seq>,
    pub isn_to_proxy1: Option<Seq>,
    /// Retransmissions announced by each end's transport, waiting for their `FrameSent`.
    pending_proxy1: VecDeque<(Seq, RetransmitCause)>,
    pending_proxy2: VecDeque<(Seq, RetransmitCause)>,
    /// Stop-and-wait: frames numbered as they are sent (the wire's bit cannot draw a
    /// graph): the last new data frame's number and bit, per direction.
    sw_to_proxy2: Option<(u32, Seq)>,
    sw_to_proxy1: Option<(u32, Seq)>,
    /// The last cumulative ack of each direction's data, as the graph counts it: the foot
    /// of the congestion window's edge.
    last_ack_to_proxy2: Option<u32>,
    last_ack_to_proxy1: Option<u32>,
}

impl Reliability {
    /// The stats published by `at`'s transport.
    pub fn stats(&self, at: Endpoint) -> Option<&TransportStats> {
        match at {
            Endpoint::Proxy1 => self.proxy1.as_deref(),
            Endpoint::Proxy2 => self.proxy2.as_deref(),
        }
    }

    /// The ISN of the data that travels in `direction`.
    pub fn isn(&self, direction: LinkDirection) -> Option<Seq> {
        match direction {
            LinkDirection::ToProxy2 => self.isn_to_proxy2,
            LinkDirection::ToProxy1 => self.isn_to_proxy1,
        }
    }

    /// (the sender's ISN, the receiver's) for a frame sent in `direction`, once both are
    /// known.
    pub fn bases(&self, direction: LinkDirection) -> Option<(Seq, Seq)> {
        Some((self.isn(direction)?, self.isn(direction.reverse())?))
    }

    /// Stop-and-wait: the number and bit of the last new data frame sent in `direction`.
    fn sw_counter(&self, direction: LinkDirection) -> Option<(u32, Seq)> {
        match direction {
            LinkDirection::ToProxy2 => self.sw_to_proxy2,
            LinkDirection::ToProxy1 => self.sw_to_proxy1,
        }
    }

    fn last_ack(&mut self, data: LinkDirection) -> &mut Option<u32> {
        match data {
            LinkDirection::ToProxy2 => &mut self.last_ack_to_proxy2,
            LinkDirection::ToProxy1 => &mut self.last_ack_to_proxy1,
        }
    }

    fn pending(&mut self, at: Endpoint) -> &mut VecDeque<(Seq, RetransmitCause)> {
        match at {
            Endpoint::Proxy1 => &mut self.pending_proxy1,
            Endpoint::Proxy2 => &mut self.pending_proxy2,
        }
    }
}

/// What a point of the time-sequence graph is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeqPointKind {
    /// A data frame sent for the first time.
    Sent,
    /// A data frame sent again.
    Retransmitted(RetransmitCause),
    /// An ack: its cumulative number (the next frame expected).
    Ack,
    /// A selective-ack block's last frame (held above the ack).
    Sack,
    /// The link emulator dropped a data frame.
    Dropped,
    /// The congestion window's edge: the last ack plus the sender's congestion window, the
    /// highest frame it may send (from its published stats and its window cuts).
    CwndEdge,
}

/// One point of the time-sequence graph: sequence numbers of one direction's data, counted
/// from its ISN (stop-and-wait: frames counted as sent), over time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeqPoint {
    pub time: Duration,
    /// Whose data: the direction the data frames travel (acks travel the other way).
    pub data: LinkDirection,
    pub seq: u32,
    pub kind: SeqPointKind,
}

impl HasTime for SeqPoint {
    fn time(&self) -> Duration {
        self.time
    }
}

impl ConnView {
    pub(crate) fn new(id: ConnId) -> Self {
        ConnView {
            id,
            state: ConnState::Free,
            proxy2_state: ConnState::Free,
            client: None,
            last_outcome: None,
            to_proxy2: Flow::default(),
            to_proxy1: Flow::default(),
            trace: Ring::new(TRACE_CAPACITY),
            ladder: Ring::new(LADDER_CAPACITY),
            transport: Reliability::default(),
            seq_graph: Ring::new(SEQ_GRAPH_CAPACITY),
            route: None,
        }
    }
}

/// One lab echo client.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientView {
    pub id: ClientId,
    /// Its TCP address: how proxy1's events name it.
    pub local: Option<SocketAddr>,
    pub sent: u64,
    pub echoed: u64,
    /// Every echoed byte equal to what was sent, so far.
    pub intact: bool,
    pub ended: Option<ClientEnd>,
    /// proxy1 closed it after it waited too long for an id.
    pub gave_up_waiting: bool,
    pub connect_error: Option<String>,
}

/// What a client's echo says so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EchoVerdict {
    /// It has sent nothing yet.
    NothingSent,
    /// Every byte it sent came back, unchanged.
    Intact,
    /// What came back is unchanged, but `missing` bytes have not come back: still on their
    /// way (`ended` false), or lost for good (the client has ended).
    Short { missing: u64, ended: bool },
    /// A byte came back different from what was sent (or more came back than was sent).
    Damaged,
}

impl ClientView {
    /// ✓ only when every byte sent came back intact.
    pub fn echo_verdict(&self) -> EchoVerdict {
        if !self.intact || self.echoed > self.sent {
            EchoVerdict::Damaged
        } else if self.sent == 0 {
            EchoVerdict::NothingSent
        } else if self.echoed == self.sent {
            EchoVerdict::Intact
        } else {
            EchoVerdict::Short {
                missing: self.sent - self.echoed,
                ended: self.ended.is_some(),
            }
        }
    }
}

/// One line of the log pane.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    pub time: Duration,
    pub level: Level,
    pub text: String,
}

/// Exact totals from the lab, refreshed every tick; the event stream may drop, these don't.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub proxy1: LinkStatsSnapshot,
    pub proxy2: LinkStatsSnapshot,
    /// Events the UI was too slow to receive.
    pub events_dropped: u64,
    /// Events the UI received (not part of the snapshot).
    pub events_seen: u64,
    /// Per-frame events counted instead of traced (sampled), as folded so far.
    pub events_sampled: u64,
}

impl Counters {
    /// Frames sent proxy1 → proxy2.
    pub fn frames_to_proxy2(&self) -> u64 {
        self.proxy1.sent.total()
    }
    /// Frames sent proxy2 → proxy1.
    pub fn frames_to_proxy1(&self) -> u64 {
        self.proxy2.sent.total()
    }
    pub fn frames(&self) -> u64 {
        self.frames_to_proxy2() + self.frames_to_proxy1()
    }
    pub fn malformed(&self) -> u64 {
        self.proxy1.malformed + self.proxy2.malformed
    }
    pub fn ignored(&self) -> u64 {
        self.proxy1.ignored + self.proxy2.ignored
    }
    /// Connections a limit of proxy2 turned away (`--max-connections`, `--max-peers`,
    /// allow-list).
    pub fn refused(&self) -> u64 {
        self.proxy1.refused + self.proxy2.refused
    }
}

/// Step mode as the screen shows it: whether the link is held, and what it holds (from the
/// lab, exact, every tick).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HoldView {
    pub holding: bool,
    /// Oldest first.
    pub frames: Vec<crate::lab::HeldView>,
}

/// `--play`: a scenario stepped through on screen.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlayView {
    /// The scenario's name.
    pub name: String,
    /// Each step as the step log says it: `line 12  send "hola" from client 1`.
    pub steps: Vec<String>,
    /// Steps done so far (they are done in order).
    pub done: usize,
    /// The step that waits for Enter (or for its time), if one does.
    pub waiting: Option<usize>,
    /// Steps go by themselves this often; `None`: one per Enter.
    pub every: Option<Duration>,
    /// Once the run is over: each expectation, held or not, and what was seen.
    pub verdicts: Option<Vec<(bool, String)>>,
}

/// A row of the connection list: an id, or a client waiting for one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Selection {
    Conn(ConnId),
    Waiting(SocketAddr),
}

/// What the person is looking at and typing; changed only by keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ViewState {
    pub selected: Selection,
    /// Traces and ladders show nothing newer than `paused_at` (counters and states keep
    /// going, and what arrives meanwhile is kept: it shows on resume).
    pub paused: bool,
    /// Since the lab started, when the screen was paused.
    pub paused_at: Duration,
    /// The detail pane shows the ladder instead of the frame trace.
    pub show_ladder: bool,
    /// The detail pane shows the time-sequence graph of the data going this way (`g`),
    /// instead of the trace or the ladder.
    pub graph: Option<LinkDirection>,
    pub show_help: bool,
    /// `Some` while a custom message is being typed.
    pub input: Option<String>,
    /// Rows scrolled up from the newest in the detail pane (0 follows new frames).
    pub scroll: usize,
    /// The held frame chosen for `x` (drop) and `d` (duplicate), by its hold id.
    pub held_choice: Option<u64>,
    /// `Some` while `:` asks for an id to jump to: the digits typed so far.
    pub jump: Option<String>,
}

impl Default for ViewState {
    fn default() -> Self {
        ViewState {
            selected: Selection::Conn(ConnId::new(0)),
            paused: false,
            paused_at: Duration::ZERO,
            show_ladder: false,
            graph: None,
            show_help: false,
            input: None,
            scroll: 0,
            held_choice: None,
            jump: None,
        }
    }
}

/// Everything the screen is drawn from.
#[derive(Clone, Debug)]
pub struct TuiState {
    /// Times on screen are relative to this.
    pub start: SystemTime,
    pub server: RoleView,
    pub proxy2: RoleView,
    pub proxy1: RoleView,
    /// proxy1's end of the UDP link.
    pub proxy1_udp: Option<SocketAddr>,
    /// proxy1's SOCKS5 port, when it has one.
    pub proxy1_socks5: Option<SocketAddr>,
    pub link: LinkView,
    pub capture: Option<CaptureView>,
    /// The monitor's addresses, when it is on.
    pub monitor: Option<MonitorView>,
    /// The connections in view: every id in the ten-id modes, the live and recently closed
    /// ones in the extended modes (storage follows the connections, not the 65,536 ids).
    pub conns: ConnTable,
    pub clients: BTreeMap<ClientId, ClientView>,
    /// TCP clients waiting at proxy1 for a free id, in arrival order.
    pub waiting: Vec<SocketAddr>,
    pub counters: Counters,
    pub log: Ring<LogLine>,
    pub view: ViewState,
    /// Step mode: the held link.
    pub hold: HoldView,
    /// `--play`: the scenario on screen.
    pub play: Option<PlayView>,
    /// Roles seen up at least once: seen up again, they restarted.
    roles_started: Vec<Role>,
    /// Clients talk on their own every this long (`t`); `None`: they don't.
    pub chatter: Option<Duration>,
    /// The interval `--chatter` gave, for `t` to turn it back on.
    pub chatter_interval: Option<Duration>,
    /// When set, the UI's own log lines are stamped with this time instead of the clock's,
    /// so that tests (and replays) draw the same screen every time.
    pub fixed_now: Option<SystemTime>,
    /// Lab clients by their TCP address.
    client_by_addr: HashMap<SocketAddr, ClientId>,
    /// The last id each TCP client was given.
    conn_by_addr: HashMap<SocketAddr, ConnId>,
    /// When proxy1 accepted each TCP client that has no id yet.
    pending_accepts: HashMap<SocketAddr, Duration>,
    /// The id of each of proxy2's connections to the server, by proxy2's end of it.
    conn_by_server_leg: HashMap<SocketAddr, ConnId>,
    /// Captured TCP segments whose connection has no id yet, by the far end's address (the
    /// client's, or proxy2's end of a server connection), oldest first.
    pending_segments: HashMap<SocketAddr, Vec<(Duration, TcpSegmentSummary)>>,
    /// Connections whose handshake has had its SYN-ACK, so the next ACK completes it.
    handshakes: std::collections::HashSet<(SocketAddr, SocketAddr)>,
}

impl TuiState {
    /// A lab that has not reported anything yet; `addrs` are where its roles were bound.
    pub fn new(start: SystemTime, mode: WireMode, addrs: Option<LabAddrs>) -> Self {
        let role = |addr: Option<SocketAddr>| RoleView { addr, up: false };
        TuiState {
            start,
            server: role(addrs.map(|a| a.server)),
            proxy2: role(addrs.map(|a| a.proxy2_udp)),
            proxy1: role(addrs.map(|a| a.proxy1_tcp)),
            proxy1_udp: addrs.map(|a| a.proxy1_udp),
            proxy1_socks5: addrs.and_then(|a| a.proxy1_socks5),
            link: LinkView {
                mode,
                sealed: false,
                impairment: None,
            },
            capture: None,
            monitor: None,
            conns: ConnTable::new(mode),
            clients: BTreeMap::new(),
            waiting: Vec::new(),
            counters: Counters::default(),
            log: Ring::new(LOG_CAPACITY),
            view: ViewState::default(),
            hold: HoldView::default(),
            play: None,
            roles_started: Vec::new(),
            chatter: None,
            chatter_interval: None,
            fixed_now: None,
            client_by_addr: HashMap::new(),
            conn_by_addr: HashMap::new(),
            pending_accepts: HashMap::new(),
            conn_by_server_leg: HashMap::new(),
            pending_segments: HashMap::new(),
            handshakes: std::collections::HashSet::new(),
        }
    }

    /// The lab client at a TCP address, if it is one of ours.
    pub fn client_at(&self, addr: SocketAddr) -> Option<ClientId> {
        self.client_by_addr.get(&addr).copied()
    }

    /// "client 2", or the address of a TCP client from outside the lab.
    pub fn client_label(&self, addr: SocketAddr) -> String {
        match self.client_at(addr) {
            Some(id) => format!("client {id}"),
            None => addr.to_string(),
        }
    }

    /// "client 2 (127.0.0.1:50002)", or just the address of a client from outside the lab.
    pub fn client_description(&self, addr: SocketAddr) -> String {
        match self.client_at(addr) {
            Some(id) => format!("client {id} ({addr})"),
            None => addr.to_string(),
        }
    }

    /// The id a client has (or last had).
    pub fn conn_of_client(&self, client: &ClientView) -> Option<ConnId> {
        client
            .local
            .and_then(|a| self.conn_by_addr.get(&a).copied())
    }

    pub fn is_waiting(&self, client: &ClientView) -> bool {
        client.local.is_some_and(|a| self.waiting.contains(&a))
    }

    pub fn conn(&self, id: ConnId) -> Option<&ConnView> {
        self.conns.get(id)
    }

    /// A frame the held link holds, as the trace labels it: in the extended modes its
    /// numbers counted from its connection's ISNs.
    pub fn held_label(&self, held: &crate::lab::HeldView) -> String {
        let bases = self
            .conn(held.frame.id)
            .and_then(|conn| conn.transport.bases(held.direction));
        crate::describe::frame_label_relative(&held.frame, bases)
    }

    /// The rows of the connection list, in order: every id, then the waiting clients.
    pub fn rows(&self) -> Vec<Selection> {
        self.conns
            .iter()
            .map(|c| Selection::Conn(c.id))
            .chain(self.waiting.iter().map(|&a| Selection::Waiting(a)))
            .collect()
    }

    /// The TCP client behind the selected row, if any.
    pub fn selected_client_addr(&self) -> Option<SocketAddr> {
        match self.view.selected {
            Selection::Conn(id) => self
                .conn(id)
                .filter(|c| c.state != ConnState::Free)
                .and_then(|c| c.client),
            Selection::Waiting(addr) => Some(addr),
        }
    }

    /// Time since the lab started.
    pub fn since_start(&self, time: SystemTime) -> Duration {
        time.duration_since(self.start).unwrap_or_default()
    }

    /// A line in the log pane from the UI itself (a key's result, an error).
    pub fn note(&mut self, level: Level, text: impl Into<String>) {
        let time = self.since_start(self.fixed_now.unwrap_or_else(SystemTime::now));
        self.log.push(LogLine {
            time,
            level,
            text: text.into(),
        });
    }

    /// The held frame `x` and `d` act on: the one chosen with Tab while it is still held,
    /// else the oldest.
    pub fn chosen_held(&self) -> Option<&crate::lab::HeldView> {
        let frames = &self.hold.frames;
        self.view
            .held_choice
            .and_then(|id| frames.iter().find(|f| f.id == id))
            .or_else(|| frames.first())
    }

    /// Takes the lab's held frames; keeps the choice while its frame is still held.
    pub fn set_hold(&mut self, hold: HoldView) {
        if let Some(id) = self.view.held_choice
            && !hold.frames.iter().any(|f| f.id == id)
        {
            self.view.held_choice = None;
        }
        self.hold = hold;
    }

    /// How many entries of a trace or ladder the screen shows: all of them, or while paused
    /// only those up to the pause (the rest are kept, and show on resume).
    pub fn shown<T: HasTime>(&self, ring: &Ring<T>) -> usize {
        if self.view.paused {
            ring.len_until(self.view.paused_at)
        } else {
            ring.len()
        }
    }

    /// Pauses or resumes what traces and ladders show.
    pub fn set_paused(&mut self, paused: bool) {
        self.view.paused = paused;
        self.view.paused_at = self.since_start(self.fixed_now.unwrap_or_else(SystemTime::now));
    }

    /// Empties traces, ladders and the log. Counters are the lab's exact totals and stay.
    pub fn clear(&mut self) {
        for conn in self.conns.iter_mut() {
            conn.trace.clear();
            conn.ladder.clear();
            conn.seq_graph.clear();
        }
        self.log.clear();
        self.view.scroll = 0;
    }

    fn client_mut(&mut self, id: ClientId) -> &mut ClientView {
        self.clients.entry(id).or_insert_with(|| ClientView {
            id,
            intact: true,
            ..ClientView::default()
        })
    }

    fn role_mut(&mut self, role: Role) -> Option<&mut RoleView> {
        match role {
            Role::EchoServer => Some(&mut self.server),
            Role::Proxy2 => Some(&mut self.proxy2),
            Role::Proxy1 => Some(&mut self.proxy1),
            Role::Client => None,
        }
    }

    /// Sets a role's up/down from the lab itself (the event saying so may have been dropped).
    /// Returns whether that changed anything.
    pub fn set_running(&mut self, role: Role, up: bool) -> bool {
        let Some(view) = self.role_mut(role) else {
            return false;
        };
        let changed = view.up != up;
        let stopped = view.up && !up;
        view.up = up;
        if stopped && role == Role::Proxy2 {
            // A stopped proxy2 forgets its table without a word per id.
            let ids: Vec<ConnId> = self
                .conns
                .iter_mut()
                .map(|conn| {
                    conn.proxy2_state = ConnState::Free;
                    conn.id
                })
                .collect();
            for id in ids {
                self.conns.settle(id);
            }
        }
        changed
    }

    fn ladder(&mut self, id: ConnId, entry: LadderEntry) {
        if let Some(conn) = self.conns.view_mut(id) {
            conn.ladder.insert_by_time(entry);
        }
    }

    /// A note across the ladder of every id that has a history.
    fn mark_ladders(&mut self, time: Duration, text: String) {
        for conn in self.conns.iter_mut() {
            if !conn.ladder.is_empty() || conn.state != ConnState::Free {
                conn.ladder.insert_by_time(LadderEntry::Note {
                    time,
                    text: text.clone(),
                });
            }
        }
    }

    fn arrow(
        &mut self,
        id: ConnId,
        time: Duration,
        (from, to): (Lane, Lane),
        label: impl Into<ArrowLabel>,
        kind: ArrowKind,
    ) {
        self.ladder(
            id,
            LadderEntry::Arrow {
                time,
                from,
                to,
                label: label.into(),
                kind,
            },
        );
    }
}

/// The ladder's short name for a frame: `C3`, `C3OK`, `D3 5B "hola"`, `X3`; in the reliable
/// modes with its numbers (`D31 5B …`, `A31`; `D3 seq=17 5B …`, `A3 ack=18`, `X3 seq=40`,
/// counted from `bases` when given, as [`crate::describe::frame_label_relative`] does).
pub fn ladder_label(frame: &FrameSummary, bases: Option<(Seq, Seq)>) -> String {
    use crate::event::FrameNumbers;
    let id = frame.id;
    let own = |seq: Seq| seq.shown_from(bases.map(|(own, _)| own));
    let peer = |seq: Seq| seq.shown_from(bases.map(|(_, peer)| peer));
    let head = match (frame.kind, frame.numbers) {
        (FrameKind::Data, FrameNumbers::Bit(bit)) => format!("D{id}{bit}"),
        (FrameKind::Data, FrameNumbers::Seq(seq)) => format!("D{id} seq={}", own(seq)),
        (FrameKind::Data, _) => format!("D{id}"),
        (FrameKind::Ack, FrameNumbers::Ack { ack, .. }) => format!("A{id} ack={}", peer(ack)),
        (FrameKind::Close, FrameNumbers::Seq(seq)) => format!("X{id} seq={}", own(seq)),
        (FrameKind::Connect, FrameNumbers::Isn(_)) => format!("C{id}"),
        (FrameKind::ConnectOk, FrameNumbers::Isn(_)) => format!("C{id}OK"),
        _ => crate::describe::frame_label(frame),
    };
    match frame.kind {
        FrameKind::Data => format!(
            "{head} {}B \"{}\"",
            frame.payload_len,
            crate::describe::preview_text(frame)
        ),
        _ => head,
    }
}

fn close_label(how: CloseKind) -> (&'static str, ArrowKind) {
    match how {
        CloseKind::Fin => ("FIN", ArrowKind::Fin),
        CloseKind::Rst => ("RST", ArrowKind::Rst),
    }
}

fn lane_of(endpoint: Endpoint) -> Lane {
    match endpoint {
        Endpoint::Proxy1 => Lane::Proxy1,
        Endpoint::Proxy2 => Lane::Proxy2,
    }
}

/// The lab's event stream as [`update`] needs it: without what it ignores, so the roles do
/// not build and queue those events at all, and sampled past [`TUI_EVENTS_PER_SECOND`]. Each frame is traced once, when it is sent
/// (`FrameReceived` adds nothing on screen), and the proxy2 ↔ server arrows come from proxy2's
/// side, so the echo server's per-read and per-write events are not wanted either.
pub fn events_for_tui(sink: EventSink) -> EventSink {
    sink.without_frames_received()
        .without_echo_server_io()
        .sampled_past(TUI_EVENTS_PER_SECOND)
}

/// Whether an event gets its own line in the log pane: one line per happening. Several roles
/// see the same happening, and only one of them says it:
/// - TCP accepts, connects and closes are drawn in the ladder; the lab client's own
///   `connected` and `closed` lines say them once (a failed connect is said by proxy2's
///   warning, which gives the reason);
/// - proxy1 logs a waiting client, one that gave up, and a refused or unanswered `C` with
///   the reason, so their bare events add nothing;
/// - proxy2's view of an id is said only when it forgets it (its `NOK` has its warning).
fn worth_a_log_line(kind: &EventKind) -> bool {
    match kind {
        EventKind::Tcp { .. } | EventKind::WaitingForId { .. } | EventKind::WaitGaveUp { .. } => {
            false
        }
        EventKind::Conn {
            at: Endpoint::Proxy1,
            state,
            ..
        } => !matches!(state, ConnState::Refused | ConnState::Unanswered),
        EventKind::Conn {
            at: Endpoint::Proxy2,
            state,
            ..
        } => *state == ConnState::Free,
        _ => true,
    }
}

/// Folds one event into the state. Pure: the same events give the same screen.
pub fn update(state: &mut TuiState, event: Event) {
    state.counters.events_seen += 1;
    let time = state.since_start(event.time);
    if let Some(text) = describe(&event.kind, false).filter(|_| worth_a_log_line(&event.kind)) {
        let level = match &event.kind {
            EventKind::Log { level, .. } => *level,
            EventKind::FrameMalformed { .. }
            | EventKind::FrameIgnored { .. }
            | EventKind::WaitGaveUp { .. } => Level::Warn,
            EventKind::Tcp {
                action: TcpAction::ConnectFailed(_),
                ..
            } => Level::Warn,
            EventKind::Conn {
                state: ConnState::Refused | ConnState::Unanswered,
                ..
            } => Level::Warn,
            _ => Level::Info,
        };
        state.log.push(LogLine { time, level, text });
    }
    let state_changed = match &event.kind {
        EventKind::Conn { id, .. } => Some(*id),
        _ => None,
    };
    match event.kind {
        EventKind::RoleUp { role, addr } => {
            if let Some(view) = state.role_mut(role) {
                view.addr = Some(addr);
                view.up = true;
            }
            // Up again after being up once: a restart, which every ladder marks (what an id
            // did before and after it are different lives of that role).
            if state.roles_started.contains(&role) {
                state.mark_ladders(time, format!("↻ {} restarted", role.label()));
            } else {
                state.roles_started.push(role);
            }
        }
        EventKind::RoleDown { role } => {
            state.set_running(role, false);
            if matches!(role, Role::Proxy2 | Role::EchoServer) {
                state.mark_ladders(time, format!("✕ {} stopped", role.label()));
            }
        }
        EventKind::FrameSent { at, frame, .. } => on_frame_sent(state, time, at, frame),
        // Each frame is traced once, when it leaves; the receiving side adds nothing new on a
        // lossless link, and the counters say how many arrived.
        EventKind::FrameReceived { .. }
        | EventKind::FrameMalformed { .. }
        | EventKind::FrameIgnored { .. } => {}
        EventKind::Conn {
            at: Endpoint::Proxy1,
            id,
            state: conn_state,
            client,
        } => on_proxy1_conn(state, time, id, conn_state, client),
        EventKind::Conn {
            at: Endpoint::Proxy2,
            id,
            state: conn_state,
            ..
        } => {
            if let Some(conn) = state.conns.view_mut(id) {
                conn.proxy2_state = conn_state;
            }
            if conn_state == ConnState::Free {
                state.ladder(
                    id,
                    LadderEntry::Note {
                        time,
                        text: format!("proxy2 forgets id {id}"),
                    },
                );
            }
        }
        EventKind::WaitingForId { client } => {
            if !state.waiting.contains(&client) && state.waiting.len() < WAITING_CAPACITY {
                state.waiting.push(client);
            }
        }
        EventKind::Route {
            at,
            id,
            destination,
            user,
            ..
        } => {
            if let Some(conn) = state.conns.view_mut(id) {
                let route = conn.route.get_or_insert_with(Box::default);
                // proxy1 knows the user; proxy2 only the destination (the same one).
                if at == Endpoint::Proxy1 || route.destination.is_empty() {
                    route.destination = destination.to_string();
                }
                if user.is_some() {
                    route.user = user;
                }
            }
        }
        EventKind::Refused {
            at,
            id,
            reason,
            detail,
        } => {
            if let Some(conn) = state.conns.view_mut(id) {
                let route = conn.route.get_or_insert_with(Box::default);
                // proxy2's words name the rule or the addresses; proxy1 only has the byte.
                if at == Endpoint::Proxy2 || route.refusal.is_none() {
                    route.refusal = Some((reason, detail));
                }
            }
        }
        EventKind::WaitGaveUp { client } => {
            stop_waiting(state, client, None);
            if let Some(id) = state.client_at(client) {
                state.client_mut(id).gave_up_waiting = true;
            }
        }
        EventKind::Tcp {
            role,
            id,
            peer,
            action,
        } => on_tcp(state, time, role, id, peer, action),
        EventKind::Client { client, action } => on_client(state, client, action),
        EventKind::TcpSegment { segment } => on_tcp_segment(state, time, segment),
        EventKind::LinkDecision {
            direction,
            frame,
            what,
            ..
        } => on_link_decision(state, time, direction, frame, what),
        EventKind::Transport { at, id, event } => on_transport_event(state, time, at, id, event),
        EventKind::TransportStats { at, id, stats, .. } => {
            if let Some(conn) = state.conns.view_mut(id) {
                if let Some(cwnd) = stats.cwnd {
                    push_cwnd_edge(conn, time, at, cwnd);
                }
                match at {
                    Endpoint::Proxy1 => conn.transport.proxy1 = Some(stats),
                    Endpoint::Proxy2 => conn.transport.proxy2 = Some(stats),
                }
            }
        }
        EventKind::FramesFolded {
            at,
            id,
            frames,
            payload_bytes,
            other,
        } => on_frames_folded(state, time, at, id, (frames, payload_bytes), other),
        EventKind::Log { .. } => {}
    }
    if let Some(id) = state_changed {
        state.conns.settle(id);
    }
    let selected = match state.view.selected {
        Selection::Conn(id) => Some(id),
        Selection::Waiting(_) => None,
    };
    state.conns.trim(selected);
}

/// A transport's event: a retransmission waits for its frame (which it marks); the others
/// get a trace line of their own.
fn on_transport_event(
    state: &mut TuiState,
    time: Duration,
    at: Endpoint,
    id: ConnId,
    event: TransportEvent,
) {
    let Some(conn) = state.conns.view_mut(id) else {
        return;
    };
    match event {
        TransportEvent::Retransmitted { seq, cause } => {
            let pending = conn.transport.pending(at);
            if pending.len() >= PENDING_RETRANSMITS {
                pending.pop_front();
            }
            pending.push_back((seq, cause));
        }
        TransportEvent::Delivered { .. } => {}
        TransportEvent::CongestionCut { .. } | TransportEvent::SlowStartEnded { .. } => {
            // A cut moves the graph's congestion-window line; the end of slow start does not.
            if let TransportEvent::CongestionCut { cwnd, .. } = event {
                push_cwnd_edge(conn, time, at, cwnd);
            }
            conn.trace.insert_by_time(TraceLine::Transport {
                time,
                at,
                event,
                base: None,
            });
        }
        TransportEvent::DuplicateDiscarded { .. }
        | TransportEvent::KeepaliveAnswered { .. }
        | TransportEvent::HeldOutOfOrder { .. }
        | TransportEvent::Discarded { .. }
        | TransportEvent::Overflow { .. }
        | TransportEvent::GaveUp { .. } => {
            // About frames `at` received: the peer's data, counted from the peer's ISN; a
            // give-up is about `at`'s own data.
            let sent_by_at = LinkDirection::sent_by(at);
            let base = if matches!(event, TransportEvent::GaveUp { .. }) {
                conn.transport.isn(sent_by_at)
            } else {
                conn.transport.isn(sent_by_at.reverse())
            };
            conn.trace.insert_by_time(TraceLine::Transport {
                time,
                at,
                event,
                base,
            });
            // The ladder says it too, across the lanes, like a link drop.
            conn.ladder.insert_by_time(LadderEntry::Note {
                time,
                text: format!(
                    "{}: {}",
                    at.label(),
                    crate::describe::transport_event_label(&event, base)
                ),
            });
        }
    }
}

/// Where a frame goes on the time-sequence graph, if it is data, a close or an ack of a
/// reliable mode; notes the ISNs of `C` and `OK`. Returns whether the frame is a
/// retransmission the transport announced, and why.
fn seq_graph_frame(
    conn: &mut ConnView,
    time: Duration,
    at: Endpoint,
    frame: &FrameSummary,
) -> Option<RetransmitCause> {
    use crate::event::FrameNumbers;
    let direction = LinkDirection::sent_by(at);
    let retransmit = frame.seq().and_then(|seq| {
        let pending = conn.transport.pending(at);
        let position = pending.iter().position(|&(s, _)| s == seq)?;
        // Anything announced before it was sent already (or its event was lost).
        let (_, cause) = pending.drain(..=position).next_back()?;
        Some(cause)
    });
    let point = |data, seq, kind| SeqPoint {
        time,
        data,
        seq,
        kind,
    };
    let data_kind = match retransmit {
        Some(cause) => SeqPointKind::Retransmitted(cause),
        None => SeqPointKind::Sent,
    };
    match (frame.kind, frame.numbers) {
        (FrameKind::Connect, FrameNumbers::Isn(isn)) => conn.transport.isn_to_proxy2 = Some(isn),
        (FrameKind::ConnectOk, FrameNumbers::Isn(isn)) => conn.transport.isn_to_proxy1 = Some(isn),
        // An empty D is a keepalive probe (extended modes): it re-uses the seq before the
        // window, which from a connection that sent nothing yet lies before its ISN, and it
        // carries no data to graph. The trace and the ladder show it.
        (FrameKind::Data, FrameNumbers::Seq(_)) if frame.payload_len == 0 => {}
        (FrameKind::Data | FrameKind::Close, FrameNumbers::Seq(seq)) => {
            let base = conn.transport.isn(direction).unwrap_or(seq);
            let rel = seq.since(base);
            conn.seq_graph.push(point(direction, rel, data_kind));
        }
        (FrameKind::Ack, FrameNumbers::Ack { ack, sack, .. }) => {
            let data = direction.reverse();
            if let Some(base) = conn.transport.isn(data) {
                *conn.transport.last_ack(data) = Some(ack.since(base));
                conn.seq_graph
                    .push(point(data, ack.since(base), SeqPointKind::Ack));
                for block in sack.iter() {
                    let last = block.end.since(base).wrapping_sub(1);
                    conn.seq_graph.push(point(data, last, SeqPointKind::Sack));
                }
            }
        }
        // Stop-and-wait: one bit on the wire, so frames are numbered as they are sent: a
        // new bit is the next frame, a retransmission (or the same bit again) the same one.
        (FrameKind::Data, FrameNumbers::Bit(bit)) => {
            let counter = match direction {
                LinkDirection::ToProxy2 => &mut conn.transport.sw_to_proxy2,
                LinkDirection::ToProxy1 => &mut conn.transport.sw_to_proxy1,
            };
            let bit = Seq(u32::from(bit));
            let number = match *counter {
                Some((n, last)) if last == bit => n,
                Some((n, _)) => n + 1,
                None => 0,
            };
            *counter = Some((number, bit));
            conn.seq_graph.push(point(direction, number, data_kind));
        }
        (FrameKind::Ack, FrameNumbers::Bit(bit)) => {
            let data = direction.reverse();
            let counter = match data {
                LinkDirection::ToProxy2 => conn.transport.sw_to_proxy2,
                LinkDirection::ToProxy1 => conn.transport.sw_to_proxy1,
            };
            // An ack of the last frame sent says the next one is expected; an ack of the
            // other bit re-acks the one before.
            if let Some((n, last)) = counter {
                let next = if last == Seq(u32::from(bit)) {
                    n + 1
                } else {
                    n
                };
                conn.seq_graph.push(point(data, next, SeqPointKind::Ack));
            }
        }
        _ => {}
    }
    retransmit
}

/// A point of `at`'s congestion window edge on the graph: its data's last ack plus `cwnd`
/// (nothing before the first ack, which gives the edge its foot).
fn push_cwnd_edge(conn: &mut ConnView, time: Duration, at: Endpoint, cwnd: u32) {
    let data = LinkDirection::sent_by(at);
    if let Some(ack) = *conn.transport.last_ack(data) {
        conn.seq_graph.push(SeqPoint {
            time,
            data,
            seq: ack.wrapping_add(cwnd),
            kind: SeqPointKind::CwndEdge,
        });
    }
}

/// Counts that stood in for per-frame events: the flows stay exact, and the trace and the
/// ladder say that some frames were not traced (one marker for a run of them).
fn on_frames_folded(
    state: &mut TuiState,
    time: Duration,
    at: Endpoint,
    id: ConnId,
    (frames, payload_bytes): (u64, u64),
    other: u64,
) {
    state.counters.events_sampled += frames + other;
    let paused = state.view.paused;
    let Some(conn) = state.conns.view_mut(id) else {
        return;
    };
    let direction = LinkDirection::sent_by(at);
    let added = Flow {
        frames,
        bytes: payload_bytes,
    };
    let flow = match direction {
        LinkDirection::ToProxy2 => &mut conn.to_proxy2,
        LinkDirection::ToProxy1 => &mut conn.to_proxy1,
    };
    flow.frames += added.frames;
    flow.bytes += added.bytes;
    if paused {
        return;
    }
    let mut sampled = match conn.trace.back_mut() {
        Some(TraceLine::Sampled {
            time: last,
            to_proxy2,
            to_proxy1,
            other: last_other,
        }) => {
            *last = time.max(*last);
            *last_other += other;
            Some((to_proxy2, to_proxy1))
        }
        _ => None,
    };
    match sampled.as_mut() {
        Some((to_proxy2, to_proxy1)) => {
            let flow = match direction {
                LinkDirection::ToProxy2 => to_proxy2,
                LinkDirection::ToProxy1 => to_proxy1,
            };
            flow.frames += added.frames;
            flow.bytes += added.bytes;
        }
        None => {
            let (to_proxy2, to_proxy1) = match direction {
                LinkDirection::ToProxy2 => (added, Flow::default()),
                LinkDirection::ToProxy1 => (Flow::default(), added),
            };
            conn.trace.insert_by_time(TraceLine::Sampled {
                time,
                to_proxy2,
                to_proxy1,
                other,
            });
        }
    }
    match conn.ladder.back_mut() {
        Some(LadderEntry::Sampled {
            time: last,
            frames: last_frames,
            other: last_other,
        }) => {
            *last = time.max(*last);
            *last_frames += frames;
            *last_other += other;
        }
        _ => conn.ladder.insert_by_time(LadderEntry::Sampled {
            time,
            frames,
            other,
        }),
    }
}

fn on_frame_sent(state: &mut TuiState, time: Duration, at: Endpoint, frame: FrameSummary) {
    let direction = LinkDirection::sent_by(at);
    let id = frame.id;
    let Some(conn) = state.conns.view_mut(id) else {
        return;
    };
    let flow = match direction {
        LinkDirection::ToProxy2 => &mut conn.to_proxy2,
        LinkDirection::ToProxy1 => &mut conn.to_proxy1,
    };
    flow.frames += 1;
    flow.bytes += frame.payload_len as u64;
    let from = lane_of(at);
    let to = match from {
        Lane::Proxy1 => Lane::Proxy2,
        _ => Lane::Proxy1,
    };
    let retransmit = seq_graph_frame(conn, time, at, &frame);
    let bases = conn.transport.bases(direction);
    let kind = match frame.kind {
        _ if retransmit.is_some() => ArrowKind::Retransmit,
        FrameKind::ConnectNok => ArrowKind::Failure,
        FrameKind::Close => ArrowKind::Close,
        _ => ArrowKind::Frame,
    };
    if let (Some(cause), Some(seq)) = (retransmit, frame.seq()) {
        let event = TransportEvent::Retransmitted { seq, cause };
        let text = format!(
            "{}: {}",
            at.label(),
            crate::describe::transport_event_label(&event, conn.transport.isn(direction))
        );
        conn.ladder.insert_by_time(LadderEntry::Note { time, text });
    }
    let label = ArrowLabel::Frame {
        frame: frame.clone(),
        retransmit,
        bases,
    };
    conn.trace.insert_by_time(TraceLine::Frame {
        time,
        direction,
        frame,
        retransmit,
        bases,
    });
    state.arrow(id, time, (from, to), label, kind);
}

/// Marks what the link emulator did in the connection's trace, and a lost frame in its ladder.
fn on_link_decision(
    state: &mut TuiState,
    time: Duration,
    direction: LinkDirection,
    frame: FrameSummary,
    what: crate::impair::LinkVerdict,
) {
    let id = frame.id;
    let Some(conn) = state.conns.view_mut(id) else {
        return;
    };
    let dropped = what.dropped.is_some();
    let bases = conn.transport.bases(direction);
    if dropped
        && frame.kind == FrameKind::Data
        && let Some(seq) = frame.seq()
    {
        // Extended: counted from the ISN. Stop-and-wait: the frame just sent with that bit
        // (its `FrameSent` came first), as the graph numbers them.
        let number = match frame.numbers {
            crate::event::FrameNumbers::Bit(_) => conn
                .transport
                .sw_counter(direction)
                .filter(|&(_, bit)| bit == seq)
                .map(|(n, _)| n),
            _ => conn.transport.isn(direction).map(|base| seq.since(base)),
        };
        if let Some(number) = number {
            conn.seq_graph.push(SeqPoint {
                time,
                data: direction,
                seq: number,
                kind: SeqPointKind::Dropped,
            });
        }
    }
    let text = format!(
        "{} {}",
        frame_label_relative(&frame, bases),
        what.describe()
    );
    if dropped {
        state.ladder(
            id,
            LadderEntry::Note {
                time,
                text: format!("link {}: {text}", direction.arrow()),
            },
        );
    }
    let Some(conn) = state.conns.view_mut(id) else {
        return;
    };
    conn.trace.insert_by_time(TraceLine::Link {
        time,
        direction,
        text,
        dropped,
    });
}

fn stop_waiting(state: &mut TuiState, client: SocketAddr, got: Option<ConnId>) {
    if let Some(position) = state.waiting.iter().position(|&a| a == client) {
        state.waiting.remove(position);
        if state.view.selected == Selection::Waiting(client) {
            // Keep following the client the person picked.
            state.view.selected = match got {
                Some(id) => Selection::Conn(id),
                None => Selection::Conn(ConnId::new(0)),
            };
        }
    }
}

fn on_proxy1_conn(
    state: &mut TuiState,
    time: Duration,
    id: ConnId,
    new_state: ConnState,
    client: Option<SocketAddr>,
) {
    let Some(conn) = state.conns.view_mut(id) else {
        return;
    };
    let previous = conn.state;
    conn.state = new_state;
    match new_state {
        ConnState::Connecting => {
            // proxy2 still holds the id's previous connection (its X was lost, or is still on
            // its way): the new client's C lands on a stale id.
            let stale = conn.proxy2_state != ConnState::Free && previous == ConnState::Free;
            conn.client = client;
            conn.last_outcome = None;
            conn.route = None;
            conn.to_proxy2 = Flow::default();
            conn.to_proxy1 = Flow::default();
            conn.transport = Reliability::default();
            if let Some(addr) = client {
                conn.trace
                    .insert_by_time(TraceLine::NewConnection { time, client: addr });
                state.conn_by_addr.insert(addr, id);
                stop_waiting(state, addr, Some(id));
                flush_pending_segments(state, addr, id);
                state.ladder(id, LadderEntry::IdGiven { time, client: addr });
                if stale {
                    state.ladder(
                        id,
                        LadderEntry::Note {
                            time,
                            text: format!(
                                "⚠ id {id} reused while proxy2 still holds its last connection"
                            ),
                        },
                    );
                }
                // The accept is drawn when it happened, unless the client then waited for an
                // id: then the arrow would land in the previous owner's history, so it goes
                // here and says how long the client waited.
                let accepted = state.pending_accepts.remove(&addr).unwrap_or(time);
                let waited = time.saturating_sub(accepted);
                let (at, label): (_, ArrowLabel) = if waited >= WAIT_SHOWN {
                    (
                        time,
                        format!("TCP connect, waited {:.1} s", waited.as_secs_f64()).into(),
                    )
                } else {
                    (accepted, "TCP connect".into())
                };
                state.arrow(
                    id,
                    at,
                    (Lane::Client, Lane::Proxy1),
                    label,
                    ArrowKind::TcpOpen,
                );
            }
        }
        ConnState::Free => {
            if matches!(previous, ConnState::Refused | ConnState::Unanswered) {
                conn.last_outcome = Some(previous);
            }
            state.ladder(
                id,
                LadderEntry::Note {
                    time,
                    text: format!("proxy1 frees id {id}"),
                },
            );
        }
        ConnState::Refused | ConnState::Unanswered => {
            let text = if new_state == ConnState::Refused {
                "refused: proxy2 cannot reach the server"
            } else {
                "no answer from proxy2"
            };
            state.ladder(
                id,
                LadderEntry::Note {
                    time,
                    text: text.into(),
                },
            );
        }
        ConnState::Open | ConnState::Closing => {}
    }
}

fn on_tcp(
    state: &mut TuiState,
    time: Duration,
    role: Role,
    id: Option<ConnId>,
    peer: SocketAddr,
    action: TcpAction,
) {
    let (near, far) = match role {
        // proxy1's peer is the client; proxy2's is the server. The echo server's own events
        // carry no id (it cannot know one), so the proxy2 ↔ server arrows are drawn from
        // proxy2's side, which sees every byte and close of that connection too.
        Role::Proxy1 => (Lane::Proxy1, Lane::Client),
        Role::Proxy2 => (Lane::Proxy2, Lane::Server),
        Role::EchoServer | Role::Client => return,
    };
    let Some(id) = id else {
        if role == Role::Proxy1 && action == TcpAction::Accepted {
            if state.pending_accepts.len() >= PENDING_ACCEPTS {
                state.pending_accepts.clear();
            }
            state.pending_accepts.insert(peer, time);
        }
        return;
    };
    if let TcpAction::ConnectedFrom(local) = action {
        state.conn_by_server_leg.insert(local, id);
        flush_pending_segments(state, local, id);
    }
    let (lanes, label, kind): (_, ArrowLabel, _) = match action {
        TcpAction::Accepted => ((far, near), "TCP connect".into(), ArrowKind::TcpOpen),
        TcpAction::Connected | TcpAction::ConnectedFrom(_) => {
            ((near, far), "TCP connect".into(), ArrowKind::TcpOpen)
        }
        TcpAction::ConnectFailed(why) => (
            (near, far),
            format!("connect ✗ {why}").into(),
            ArrowKind::Failure,
        ),
        TcpAction::Read(n) => ((far, near), ArrowLabel::Bytes(n), ArrowKind::TcpData),
        TcpAction::Wrote(n) => ((near, far), ArrowLabel::Bytes(n), ArrowKind::TcpData),
        TcpAction::PeerClosed(how) => {
            let (label, kind) = close_label(how);
            ((far, near), label.into(), kind)
        }
        TcpAction::Closed(how) => {
            let (label, kind) = close_label(how);
            ((near, far), label.into(), kind)
        }
    };
    state.arrow(id, time, lanes, label, kind);
}

/// A TCP segment read off loopback: the handshake (SYN, SYN-ACK and the ACK that completes
/// it), FIN and RST segments become arrows on their leg of the connection's ladder. Data and
/// plain ACKs are left to the TCP read and write arrows.
fn on_tcp_segment(state: &mut TuiState, time: Duration, segment: TcpSegmentSummary) {
    let flow = (segment.src, segment.dst);
    let completes_handshake = !segment.is_control()
        && segment.flags.ack
        && state.handshakes.remove(&(segment.dst, segment.src));
    if segment.flags.syn && segment.flags.ack {
        if state.handshakes.len() >= PENDING_SEGMENTS {
            state.handshakes.clear();
        }
        state.handshakes.insert(flow);
    }
    if !segment.is_control() && !completes_handshake {
        return;
    }
    // Which leg: the client's (one end is proxy1's listener) or the server's.
    let far_end =
        if Some(segment.dst) == state.proxy1.addr || Some(segment.src) == state.proxy1.addr {
            [segment.src, segment.dst]
                .into_iter()
                .find(|a| Some(*a) != state.proxy1.addr)
        } else if Some(segment.dst) == state.server.addr || Some(segment.src) == state.server.addr {
            [segment.src, segment.dst]
                .into_iter()
                .find(|a| Some(*a) != state.server.addr)
        } else {
            None
        };
    let Some(far_end) = far_end else { return };
    let id = state
        .conn_by_addr
        .get(&far_end)
        .or_else(|| state.conn_by_server_leg.get(&far_end))
        .copied();
    match id {
        Some(id) => segment_arrow(state, id, time, &segment),
        None => {
            if state.pending_segments.len() >= PENDING_SEGMENTS
                && !state.pending_segments.contains_key(&far_end)
            {
                state.pending_segments.clear();
            }
            let pending = state.pending_segments.entry(far_end).or_default();
            if pending.len() < 16 {
                pending.push((time, segment));
            }
        }
    }
}

/// Segments that came before their connection had an id go to its ladder now.
fn flush_pending_segments(state: &mut TuiState, far_end: SocketAddr, id: ConnId) {
    if let Some(pending) = state.pending_segments.remove(&far_end) {
        for (time, segment) in pending {
            segment_arrow(state, id, time, &segment);
        }
    }
}

fn segment_arrow(state: &mut TuiState, id: ConnId, time: Duration, segment: &TcpSegmentSummary) {
    let lane = |addr: SocketAddr| {
        if Some(addr) == state.proxy1.addr {
            Lane::Proxy1
        } else if Some(addr) == state.server.addr {
            Lane::Server
        } else if state.conn_by_server_leg.contains_key(&addr) {
            Lane::Proxy2
        } else {
            Lane::Client
        }
    };
    let lanes = (lane(segment.src), lane(segment.dst));
    let kind = if segment.flags.rst {
        ArrowKind::Rst
    } else if segment.flags.fin {
        ArrowKind::Fin
    } else {
        ArrowKind::Handshake
    };
    state.arrow(id, time, lanes, format!("[{}]", segment.label()), kind);
}

fn on_client(state: &mut TuiState, client: ClientId, action: ClientAction) {
    match action {
        ClientAction::Connected { local } => {
            state.client_by_addr.insert(local, client);
            state.client_mut(client).local = Some(local);
        }
        ClientAction::ConnectFailed(why) => {
            let view = state.client_mut(client);
            view.connect_error = Some(why);
            view.ended = Some(ClientEnd::Error);
        }
        ClientAction::Sent(n) => state.client_mut(client).sent += n as u64,
        ClientAction::Echoed { len, intact } => {
            let view = state.client_mut(client);
            view.echoed += len as u64;
            view.intact &= intact;
        }
        ClientAction::Closed { how } => {
            let view = state.client_mut(client);
            view.ended = Some(how);
            if let Some(local) = view.local {
                stop_waiting(state, local, None);
            }
        }
    }
}

/// Takes the lab's exact numbers: link counters, dropped events and client totals. Returns
/// whether any of them changed (the screen needs a redraw only then).
pub fn apply_snapshot(state: &mut TuiState, snapshot: &LabSnapshot) -> bool {
    let counters_before = state.counters;
    state.counters.proxy1 = snapshot.proxy1;
    state.counters.proxy2 = snapshot.proxy2;
    state.counters.events_dropped = snapshot.events_dropped;
    let mut changed = state.counters != counters_before;
    let impairment = link_summary(&snapshot.link);
    if state.link.impairment != impairment {
        state.link.impairment = impairment;
        changed = true;
    }
    for (id, status) in &snapshot.clients {
        if let Some(local) = status.local {
            state.client_by_addr.insert(local, *id);
        }
        let view = state.client_mut(*id);
        let before = view.clone();
        view.local = status.local.or(view.local);
        view.sent = status.sent_bytes;
        view.echoed = status.echoed_bytes;
        // A client that has not started yet reports `intact: false`; nothing came back wrong.
        view.intact = status.intact || status.echoed_bytes == 0;
        if status.ended.is_some() {
            view.ended = status.ended;
        }
        changed |= *view != before;
    }
    changed
}

/// The header's one-line account of the link emulator: its settings and what it dropped.
fn link_summary(link: &crate::impair::LinkReport) -> Option<String> {
    let dropped = |direction| link.direction(direction).dropped;
    let (to_proxy2, to_proxy1) = (&link.settings.to_proxy2, &link.settings.to_proxy1);
    let settings = if to_proxy2 == to_proxy1 {
        (!to_proxy2.is_clear()).then(|| to_proxy2.summary())
    } else {
        let side = |d: &crate::impair::DirectionSettings| {
            if d.is_clear() {
                "clear".to_string()
            } else {
                d.summary()
            }
        };
        Some(format!(
            "p1→p2 {} · p2→p1 {}",
            side(to_proxy2),
            side(to_proxy1)
        ))
    };
    let lost = dropped(LinkDirection::ToProxy2) + dropped(LinkDirection::ToProxy1);
    match (settings, lost) {
        (None, 0) => None,
        (None, _) => Some(format!("clear now · {lost} frames dropped so far")),
        (Some(settings), _) => Some(format!(
            "{settings} · dropped {}↑ {}↓",
            dropped(LinkDirection::ToProxy2),
            dropped(LinkDirection::ToProxy1)
        )),
    }
}
