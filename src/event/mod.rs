//! The event stream: what every role reports about itself, for the TUI, the script runner and
//! the standalone log printer.
//!
//! Roles emit with [`EventSink::emit`], which never waits: when the consumer is slow the
//! event is dropped and counted, so a slow screen can never slow the tunnel. Anything that
//! must be exact (frame counters, the capture) does not depend on this stream.

pub mod sampling;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use tokio::sync::mpsc;

use crate::topology::{Endpoint, LinkDirection, Role};
use crate::transport::{TransportEvent, TransportStats};
use crate::wire::{ConnId, Frame, FrameKind, SackBlocks, Seq, WireMode};
use sampling::{Folded, FrameSampler, Sampled, classify};

/// At most this many payload bytes travel with a frame event: enough for a trace preview,
/// small enough that events stay cheap.
pub const PREVIEW_LEN: usize = 48;

/// The first [`PREVIEW_LEN`] payload bytes of a frame, kept inline: a frame event is built
/// for every datagram, and a heap allocation per preview was a large part of its cost.
/// Reads as a `&[u8]`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Preview {
    len: u8,
    /// Zero beyond `len`, so that the derived equality compares only the preview.
    bytes: [u8; PREVIEW_LEN],
}

impl Preview {
    /// The first [`PREVIEW_LEN`] bytes of `payload`.
    pub fn of(payload: &[u8]) -> Self {
        let len = payload.len().min(PREVIEW_LEN);
        let mut bytes = [0; PREVIEW_LEN];
        bytes[..len].copy_from_slice(&payload[..len]);
        Preview {
            len: len as u8,
            bytes,
        }
    }
}

impl std::ops::Deref for Preview {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl std::fmt::Debug for Preview {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&**self, f)
    }
}

/// The numbers a frame carries on the wire, as its mode spells them: what traces, the ladder
/// and the time-sequence graph show of a reliable mode's sequence and ack numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameNumbers {
    /// Classic frames (and the extended `NOK`) carry none.
    None,
    /// Stop-and-wait: the alternating bit, the third byte (`0` or `1`). `C`, `OK` and `NOK`
    /// carry `0`; `A<id><bit>` acks `D<id><bit>`.
    Bit(u8),
    /// Extended `C` and `OK`: the sender's initial sequence number.
    Isn(Seq),
    /// Extended `NOK` with a reason: why proxy2 could not open the connection.
    Reason(crate::destination::Refusal),
    /// Extended `D` and `X`: the frame's sequence number.
    Seq(Seq),
    /// Extended `A`: the cumulative ack (the next seq expected), the receive window in
    /// frames, and the selective-ack blocks (end exclusive).
    Ack {
        ack: Seq,
        window: u32,
        sack: SackBlocks,
    },
}

/// A frame as traces show it: type, id, size, its sequence numbers and the first bytes of
/// payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameSummary {
    pub kind: FrameKind,
    pub id: ConnId,
    /// Whole datagram length, header included.
    pub wire_len: usize,
    /// Payload length (only `D` frames have one).
    pub payload_len: usize,
    /// The first [`PREVIEW_LEN`] payload bytes.
    pub preview: Preview,
    /// Sequence, ack and window numbers, as the wire mode carries them.
    pub numbers: FrameNumbers,
    /// The destination an extended `C` carries (a SOCKS5 client's), as text:
    /// `localhost:8000`.
    pub destination: Option<Box<str>>,
}

impl FrameSummary {
    /// A classic-mode frame's summary (no numbers on its wire). For a frame of another mode
    /// use [`FrameSummary::in_mode`], which keeps its sequence numbers.
    pub fn of(frame: &Frame<'_>, wire_len: usize) -> Self {
        Self::in_mode(WireMode::Classic, frame, wire_len)
    }

    /// The summary of a frame decoded in (or encoded for) `mode`.
    pub fn in_mode(mode: WireMode, frame: &Frame<'_>, wire_len: usize) -> Self {
        let payload = frame.payload();
        FrameSummary {
            kind: frame.kind(),
            id: frame.id(),
            wire_len,
            payload_len: payload.len(),
            preview: Preview::of(payload),
            numbers: FrameNumbers::of(mode, frame),
            destination: frame.destination().map(|d| d.to_string().into_boxed_str()),
        }
    }

    /// The sequence number of a `D` or `X` (stop-and-wait: its bit), if the mode has one.
    pub fn seq(&self) -> Option<Seq> {
        match (self.kind, self.numbers) {
            (FrameKind::Data | FrameKind::Close, FrameNumbers::Bit(bit)) => {
                Some(Seq(u32::from(bit)))
            }
            (_, FrameNumbers::Seq(seq)) => Some(seq),
            _ => None,
        }
    }
}

impl FrameNumbers {
    /// What `frame` carries in `mode`.
    pub fn of(mode: WireMode, frame: &Frame<'_>) -> Self {
        match mode {
            WireMode::Classic => FrameNumbers::None,
            // The bit is 0 or 1 on this wire; anything else was never decoded from it.
            WireMode::StopAndWait => FrameNumbers::Bit(match *frame {
                Frame::Data { seq, .. } | Frame::Close { seq, .. } => (seq.0 & 1) as u8,
                Frame::Ack { ack, .. } => (ack.0 & 1) as u8,
                Frame::Connect { .. } | Frame::ConnectOk { .. } | Frame::ConnectNok { .. } => 0,
            }),
            WireMode::GoBackN | WireMode::SelectiveRepeat => match *frame {
                Frame::Connect { isn, .. } | Frame::ConnectOk { isn, .. } => FrameNumbers::Isn(isn),
                Frame::ConnectNok { reason, .. } => match reason {
                    Some(reason) => FrameNumbers::Reason(reason),
                    None => FrameNumbers::None,
                },
                Frame::Data { seq, .. } | Frame::Close { seq, .. } => FrameNumbers::Seq(seq),
                Frame::Ack {
                    ack, window, sack, ..
                } => FrameNumbers::Ack { ack, window, sack },
            },
        }
    }
}

/// Why a well-formed or malformed datagram was not acted on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ignored {
    /// proxy1 only listens to its proxy2; this came from somewhere else.
    Stranger,
    /// A `D` or `X` for an id that is not open (answered with `X` where that helps).
    NotOpen(FrameKind, ConnId),
    /// A frame that makes no sense at this end (for example `OK` arriving at proxy2).
    Unexpected(FrameKind, ConnId),
    /// Data for a connection whose TCP side could not keep up; classic mode drops it.
    Overflow(ConnId),
}

/// Life of one tunnel connection id, as proxy1 (or proxy2) sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ConnState {
    /// `C` sent (or received), waiting for the server side.
    Connecting,
    /// `OK` seen: data flows.
    Open,
    /// `X` sent or received; the id is being released.
    Closing,
    /// proxy2 answered `NOK`.
    Refused,
    /// No answer to `C` after every retry.
    Unanswered,
    /// The id is free again.
    Free,
}

/// How a TCP connection ended, as the seed's capture lab contrasts them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CloseKind {
    /// Orderly: shutdown, a FIN.
    Fin,
    /// Abort: `SO_LINGER` 0 then close, a RST.
    Rst,
}

impl CloseKind {
    pub fn label(self) -> &'static str {
        match self {
            CloseKind::Fin => "FIN",
            CloseKind::Rst => "RST",
        }
    }
}

/// Something that happened on a TCP socket of the lab, for the ladder view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TcpAction {
    /// A listener accepted a connection from `peer`.
    Accepted,
    /// An outgoing connect succeeded.
    Connected,
    /// An outgoing connect succeeded from this local address (how a captured TCP segment of
    /// that connection is matched to its tunnel id).
    ConnectedFrom(SocketAddr),
    /// An outgoing connect failed.
    ConnectFailed(String),
    /// Bytes read from the socket.
    Read(usize),
    /// Bytes written to the socket.
    Wrote(usize),
    /// The peer closed (FIN seen as end of stream, or RST seen as a reset).
    PeerClosed(CloseKind),
    /// This side closed.
    Closed(CloseKind),
}

/// The flags of a TCP segment that the capture lab is about.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpFlags {
    pub syn: bool,
    pub ack: bool,
    pub fin: bool,
    pub rst: bool,
    pub psh: bool,
}

/// A TCP segment of one of the lab's legs, as the kernel carried it on loopback (read by the
/// TCP capture, `--capture-tcp`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpSegmentSummary {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub flags: TcpFlags,
    pub seq: u32,
    pub ack: u32,
    /// Bytes of data it carries.
    pub payload_len: usize,
}

impl TcpSegmentSummary {
    /// Wireshark's way of naming it: `SYN`, `SYN, ACK`, `FIN, ACK`, `RST`, `ACK`, `PSH, ACK`.
    pub fn label(&self) -> String {
        let f = self.flags;
        let names: Vec<&str> = [
            (f.fin, "FIN"),
            (f.syn, "SYN"),
            (f.rst, "RST"),
            (f.psh, "PSH"),
            (f.ack, "ACK"),
        ]
        .into_iter()
        .filter_map(|(set, name)| set.then_some(name))
        .collect();
        names.join(", ")
    }

    /// Whether it opens or ends a connection (SYN, FIN or RST): the segments the ladder shows.
    pub fn is_control(&self) -> bool {
        self.flags.syn || self.flags.fin || self.flags.rst
    }
}

/// Identifies a lab echo client (1, 2, 3… in the order they were started).
pub type ClientId = u32;

/// What an echo client reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientAction {
    Connected {
        local: SocketAddr,
    },
    ConnectFailed(String),
    Sent(usize),
    /// Echo bytes came back; `intact` is false once any byte differed from what was sent.
    Echoed {
        len: usize,
        intact: bool,
    },
    /// The client closed, or the tunnel closed it.
    Closed {
        how: ClientEnd,
    },
}

/// How a client's connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClientEnd {
    /// The client closed with FIN or RST.
    ByClient(CloseKind),
    /// The tunnel closed it (no id, NOK, no answer, proxy2 or server closed).
    ByTunnel,
    /// A socket error.
    Error,
}

impl ClientEnd {
    /// `closed with FIN`, `closed by the tunnel`…
    pub fn describe(self) -> String {
        match self {
            ClientEnd::ByClient(how) => format!("closed with {}", how.label()),
            ClientEnd::ByTunnel => "closed by the tunnel".to_string(),
            ClientEnd::Error => "ended by a socket error".to_string(),
        }
    }
}

impl Level {
    pub fn label(self) -> &'static str {
        match self {
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

/// Log severity for [`EventKind::Log`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Info,
    Warn,
    Error,
}

/// Everything the lab reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// A role is listening or bound on `addr`.
    RoleUp { role: Role, addr: SocketAddr },
    /// A role stopped.
    RoleDown { role: Role },
    /// This endpoint sent a frame. With the link emulator on, that is the moment the role
    /// handed it to the link: a `LinkDecision` follows if the link dropped it (at once) or
    /// delayed, duplicated, reordered or corrupted it (when it actually crossed).
    FrameSent {
        at: Endpoint,
        peer: SocketAddr,
        frame: FrameSummary,
    },
    /// A frame arrived at this endpoint's UDP socket and decoded.
    FrameReceived {
        at: Endpoint,
        peer: SocketAddr,
        frame: FrameSummary,
    },
    /// The link emulator did something to a frame of `direction` at endpoint `at` (the
    /// sender; or the receiver, for a standalone proxy emulating what arrives). A drop is
    /// reported when it happens (after the sender's `FrameSent`; a frame dropped on arrival
    /// has no `FrameReceived`); any other effect (delay, copy, reorder, corruption) when the
    /// datagram actually crosses (sending side) or reaches the role (arrival side, right after
    /// its `FrameReceived`). `frame` is the datagram as it crossed, corrupted bytes included.
    LinkDecision {
        at: Endpoint,
        direction: LinkDirection,
        peer: SocketAddr,
        frame: FrameSummary,
        what: crate::impair::LinkVerdict,
    },
    /// A datagram that is not a frame.
    FrameMalformed {
        at: Endpoint,
        peer: SocketAddr,
        len: usize,
        error: String,
    },
    /// A datagram that was dropped on purpose.
    FrameIgnored {
        at: Endpoint,
        peer: SocketAddr,
        why: Ignored,
    },
    /// A connection id changed state. `client` is the TCP client (proxy1) or the proxy1
    /// address (proxy2) that owns it.
    Conn {
        at: Endpoint,
        id: ConnId,
        state: ConnState,
        client: Option<SocketAddr>,
    },
    /// Where a tunnel connection leads, when its client named it (a SOCKS5 request), and who
    /// logged in (proxy1 knows; proxy2 says `None`). Connections of the plain port lead to
    /// proxy2's fixed server and have no such event.
    Route {
        at: Endpoint,
        id: ConnId,
        destination: crate::destination::Destination,
        user: Option<String>,
        /// As in [`EventKind::Conn`]: the TCP client (proxy1) or the proxy1 (proxy2).
        client: Option<SocketAddr>,
    },
    /// A connection's destination (or proxy2's fixed server) could not be opened: `reason`
    /// is what the `NOK` carried (the SOCKS5 reply code), `detail` the words for it (at
    /// proxy2: the rule that matched or the addresses tried).
    Refused {
        at: Endpoint,
        id: ConnId,
        reason: crate::destination::Refusal,
        detail: String,
    },
    /// A TCP client is waiting at proxy1 because all ids are taken.
    WaitingForId { client: SocketAddr },
    /// A waiting client got no id in time and was closed.
    WaitGaveUp { client: SocketAddr },
    /// Something happened on a TCP socket. `id` is the tunnel id where one is known.
    Tcp {
        role: Role,
        id: Option<ConnId>,
        peer: SocketAddr,
        action: TcpAction,
    },
    /// A TCP segment of a lab leg crossed loopback (TCP capture on). The event's time is the
    /// kernel's stamp of the segment.
    TcpSegment { segment: TcpSegmentSummary },
    /// A lab echo client did something.
    Client {
        client: ClientId,
        action: ClientAction,
    },
    /// A reliable connection's transport reported something a trace shows: a retransmission
    /// and its cause, a duplicate discarded, a frame held out of order or discarded, a give-up.
    /// Emitted by the connection's pump only when frame events are wanted, right before the
    /// frames that the same step sends (so a `Retransmitted` precedes its `FrameSent`).
    /// `Delivered` is not emitted: one per data frame, and the stats carry the bytes.
    Transport {
        at: Endpoint,
        id: ConnId,
        event: TransportEvent,
    },
    /// A reliable connection's counters and timers (window in use, SRTT, RTO,
    /// retransmissions, bytes sent and delivered), published by its pump at most every
    /// [`TRANSPORT_STATS_EVERY`] while they change, and once more when it ends (`ended`).
    TransportStats {
        at: Endpoint,
        id: ConnId,
        stats: Box<TransportStats>,
        ended: bool,
    },
    /// Per-frame events of one endpoint and id that a sampling sink counted instead of
    /// sending (see [`EventSink::sampled_past`]): what they would have added, exactly.
    FramesFolded {
        at: Endpoint,
        id: ConnId,
        /// Frames sent, and their payload bytes.
        frames: u64,
        payload_bytes: u64,
        /// Other per-frame events: frames received, TCP reads and writes, link decisions.
        other: u64,
    },
    /// A human-readable message.
    Log {
        level: Level,
        role: Role,
        message: String,
    },
}

/// How often a reliable connection's pump publishes its [`EventKind::TransportStats`] at most.
pub const TRANSPORT_STATS_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// One event with its wall-clock time (the same clock the capture uses).
#[derive(Clone, Debug)]
pub struct Event {
    pub time: SystemTime,
    pub kind: EventKind,
}

/// Which way bytes went, seen from the role that counts them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Flow {
    /// Received (from the link, or read from a TCP peer).
    In,
    /// Sent (to the link, or written to a TCP peer).
    Out,
}

/// Sees every event as it is emitted, before the bounded channel can drop it, plus per-frame
/// byte counts that the stream does not carry when frame events are off. For a consumer that
/// must be exact whatever the screen keeps up with: the monitor's connection table.
///
/// Called on the roles' hot paths, so an implementation must be quick and never wait.
pub trait EventObserver: Send + Sync + std::fmt::Debug {
    /// An event, as it is emitted.
    fn observe(&self, event: &EventKind);
    /// Payload bytes of tunnel connection `id` that endpoint `at` sent to (`Out`) or received
    /// from (`In`) the link peer `peer`.
    fn link_payload(&self, at: Endpoint, peer: SocketAddr, id: ConnId, flow: Flow, bytes: usize);
    /// Bytes a TCP role read from (`In`) or wrote to (`Out`) its connection with `peer`.
    fn tcp_bytes(&self, role: Role, peer: SocketAddr, flow: Flow, bytes: usize);
}

/// Where roles send events. Cheap to clone; a disabled sink discards everything.
#[derive(Clone, Debug, Default)]
pub struct EventSink {
    tx: Option<mpsc::Sender<Event>>,
    dropped: Arc<AtomicU64>,
    /// Sees every event before the channel (see [`EventObserver`]).
    observer: Option<Arc<dyn EventObserver>>,
    /// Whether per-frame and per-read events are wanted (see [`EventSink::wants_frame_events`]).
    frame_events: bool,
    /// Whether `FrameReceived` is wanted, on top of `frame_events`.
    frames_received: bool,
    /// Whether the echo server's per-read and per-write `Tcp` events are wanted, on top of
    /// `frame_events`.
    echo_server_io: bool,
    /// Past a rate, per-frame events are counted instead of sent.
    sampler: Option<Arc<FrameSampler>>,
}

impl EventSink {
    /// A bounded stream of `capacity` events and the receiving end for the consumer.
    pub fn channel(capacity: usize) -> (EventSink, mpsc::Receiver<Event>) {
        let (tx, rx) = mpsc::channel(capacity);
        (
            EventSink {
                tx: Some(tx),
                dropped: Arc::default(),
                observer: None,
                frame_events: true,
                frames_received: true,
                echo_server_io: true,
                sampler: None,
            },
            rx,
        )
    }

    /// A sink with no consumer.
    pub fn disabled() -> Self {
        EventSink::default()
    }

    /// Whether anyone is listening (lets hot paths skip building events nobody reads).
    pub fn is_enabled(&self) -> bool {
        self.tx.as_ref().is_some_and(|tx| !tx.is_closed())
    }

    /// The same stream without per-frame events: for a consumer that only shows connections
    /// and errors (a standalone role's log without `-v`), so the hot path does not build,
    /// send and discard several events per datagram.
    pub fn without_frame_events(mut self) -> Self {
        self.frame_events = false;
        self
    }

    /// Whether per-frame events are wanted: frames sent and received, TCP reads and writes,
    /// client sends and echoes. Hot paths check this before building one.
    pub fn wants_frame_events(&self) -> bool {
        self.frame_events && self.is_enabled()
    }

    /// The same stream without `FrameReceived`: for a consumer that traces each frame once,
    /// when it is sent (the TUI), so the receiving side does not build one per datagram.
    pub fn without_frames_received(mut self) -> Self {
        self.frames_received = false;
        self
    }

    /// Whether `FrameReceived` events are wanted (implies [`EventSink::wants_frame_events`]).
    pub fn wants_frames_received(&self) -> bool {
        self.frames_received && self.wants_frame_events()
    }

    /// The same stream without the echo server's per-read and per-write `Tcp` events: for a
    /// consumer that draws the server side from proxy2's events (the TUI). The server's
    /// accepts and closes still come.
    pub fn without_echo_server_io(mut self) -> Self {
        self.echo_server_io = false;
        self
    }

    /// Whether the echo server's reads and writes are wanted (implies
    /// [`EventSink::wants_frame_events`]).
    pub fn wants_echo_server_io(&self) -> bool {
        self.echo_server_io && self.wants_frame_events()
    }

    /// The same stream with at most `per_second` per-frame events a second (frames sent
    /// and received, TCP reads and writes, client sends and echoes, link decisions); the
    /// rest are counted per endpoint and id and arrive as [`EventKind::FramesFolded`], so a
    /// consumer's totals stay exact while its traces become a sample. Other events (state
    /// changes, logs, errors) always go through.
    pub fn sampled_past(mut self, per_second: u32) -> Self {
        self.sampler = Some(Arc::new(FrameSampler::new(per_second)));
        self
    }

    /// The same stream, with `observer` seeing every event first (and the byte counts the
    /// link and the TCP roles report to it).
    pub fn with_observer(mut self, observer: Arc<dyn EventObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// The observer, if one is attached: hot paths report byte counts to it directly.
    pub fn observer(&self) -> Option<&dyn EventObserver> {
        self.observer.as_deref()
    }

    /// Sends without waiting; a full or closed stream counts the event as dropped. The
    /// observer, if any, sees it first, whatever happens to it in the channel. Past the
    /// sampling rate (if any), a per-frame event is counted instead of sent.
    pub fn emit(&self, kind: EventKind) {
        // The clock is read only for an event that is sent: past the sampling rate most
        // per-frame events are only counted.
        self.emit_stamped(SystemTime::now, kind);
    }

    /// Like [`EventSink::emit`], for something that happened at `time` (a packet the kernel
    /// stamped, read a moment later).
    pub fn emit_at(&self, time: SystemTime, kind: EventKind) {
        self.emit_stamped(|| time, kind);
    }

    fn emit_stamped(&self, time: impl FnOnce() -> SystemTime, kind: EventKind) {
        if let Some(observer) = &self.observer {
            observer.observe(&kind);
        }
        let Some(tx) = &self.tx else { return };
        if let Some(sampler) = &self.sampler {
            match classify(&kind) {
                Sampled::Always => {
                    if let EventKind::Conn { id, .. } = &kind {
                        // What the id carried so far goes before its change of state: after
                        // it, the id may belong to another client.
                        self.flush_id(tx, sampler, *id);
                    }
                }
                Sampled::Frame(at, id, folded) => {
                    if !self.frame_admitted(tx, sampler, at, id, folded) {
                        return;
                    }
                }
                Sampled::Uncounted => {
                    if !sampler.admit() {
                        sampler.fold_uncounted();
                        return;
                    }
                }
            }
        }
        self.send(tx, time(), kind);
    }

    /// Like [`EventSink::emit`] for a per-frame event of endpoint `at` and connection `id`
    /// that adds `folded` to their counts when it is folded (what [`sampling::classify`] says
    /// of the event `build` makes). The event is built only if it will be sent: past the
    /// sampling rate, which at full speed is nearly every frame, a hot path pays for a count
    /// instead of building a summary (with its payload preview) to throw away.
    pub fn emit_frame_event(
        &self,
        at: Endpoint,
        id: ConnId,
        folded: Folded,
        build: impl FnOnce() -> EventKind,
    ) {
        // An observer sees every event, so it is built whatever the sampler says.
        if self.observer.is_none()
            && let (Some(tx), Some(sampler)) = (&self.tx, &self.sampler)
        {
            if self.frame_admitted(tx, sampler, at, id, folded) {
                let kind = build();
                debug_assert_eq!(classify(&kind), Sampled::Frame(at, id, folded));
                self.send(tx, SystemTime::now(), kind);
            }
            return;
        }
        self.emit(build());
    }

    /// A TCP event of a proxy (`role`, at link endpoint `at`) on its side of connection `id`
    /// with `peer`. A read or a write happens once per frame or so: it goes only when frame
    /// events are wanted, and (for a connection with an id) sampled like a frame.
    pub fn emit_tcp(
        &self,
        role: Role,
        at: Endpoint,
        id: Option<ConnId>,
        peer: SocketAddr,
        action: TcpAction,
    ) {
        let per_frame = matches!(action, TcpAction::Read(_) | TcpAction::Wrote(_));
        if per_frame && !self.wants_frame_events() {
            return;
        }
        let event = || EventKind::Tcp {
            role,
            id,
            peer,
            action,
        };
        match id {
            Some(id) if per_frame => self.emit_frame_event(at, id, sampling::OTHER, event),
            _ => self.emit(event()),
        }
    }

    /// Whether a per-frame event of `at` and `id` goes through the sampler; if not, it is
    /// counted as `folded`. One that goes has the id's counts sent ahead of it.
    fn frame_admitted(
        &self,
        tx: &mpsc::Sender<Event>,
        sampler: &FrameSampler,
        at: Endpoint,
        id: ConnId,
        folded: Folded,
    ) -> bool {
        if !sampler.admit() {
            sampler.fold(at, id, folded);
            return false;
        }
        if sampler.pending(id) {
            self.flush_id(tx, sampler, id);
        }
        true
    }

    fn send(&self, tx: &mpsc::Sender<Event>, time: SystemTime, kind: EventKind) {
        let event = Event { time, kind };
        if tx.try_send(event).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Sends one id's folded counts, both endpoints.
    fn flush_id(&self, tx: &mpsc::Sender<Event>, sampler: &FrameSampler, id: ConnId) {
        for at in [Endpoint::Proxy1, Endpoint::Proxy2] {
            self.send_folded(tx, sampler, at, id);
        }
    }

    fn send_folded(
        &self,
        tx: &mpsc::Sender<Event>,
        sampler: &FrameSampler,
        at: Endpoint,
        id: ConnId,
    ) {
        let folded = sampler.take(at, id);
        if folded.is_empty() {
            return;
        }
        let Folded {
            frames,
            payload_bytes,
            other,
        } = folded;
        let event = Event {
            time: SystemTime::now(),
            kind: EventKind::FramesFolded {
                at,
                id,
                frames,
                payload_bytes,
                other,
            },
        };
        // A full stream keeps the counts for the next flush: they are never lost.
        if tx.try_send(event).is_err() {
            sampler.put_back(at, id, folded);
        }
    }

    /// Sends every count the sampler holds as [`EventKind::FramesFolded`] events, behind
    /// whatever is already queued. A consumer of a sampled stream calls it regularly (the
    /// TUI: every tick), so counts reach it even when traffic stops.
    pub fn flush_folded(&self) {
        let (Some(tx), Some(sampler)) = (&self.tx, &self.sampler) else {
            return;
        };
        for (at, id) in sampler.pending_slots().collect::<Vec<_>>() {
            self.send_folded(tx, sampler, at, id);
        }
    }

    /// Per-frame events counted instead of sent, since the start (0 without sampling).
    pub fn folded(&self) -> u64 {
        self.sampler.as_ref().map_or(0, |s| s.total_folded())
    }

    pub fn log(&self, level: Level, role: Role, message: impl Into<String>) {
        self.emit(EventKind::Log {
            level,
            role,
            message: message.into(),
        });
    }

    /// Events lost because the consumer was slow (or gone).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    fn tcp_read(id: ConnId) -> EventKind {
        EventKind::Tcp {
            role: Role::Proxy1,
            id: Some(id),
            peer: "127.0.0.1:9".parse().unwrap(),
            action: TcpAction::Read(10),
        }
    }

    #[test]
    fn a_frame_event_past_the_rate_is_counted_and_never_built() {
        let (sink, mut rx) = EventSink::channel(1024);
        // One event per 100 ms window: the first goes, the rest of this quick test is folded
        // (unless it straddles a window's edge, which lets one more through).
        let sink = sink.sampled_past(10);
        let id = ConnId::new(2);
        let built = Cell::new(0);
        for _ in 0..100 {
            sink.emit_frame_event(Endpoint::Proxy1, id, sampling::OTHER, || {
                built.set(built.get() + 1);
                tcp_read(id)
            });
        }
        assert!((1..=2).contains(&built.get()), "built {}", built.get());
        assert_eq!(sink.folded(), 100 - built.get());
        sink.flush_folded();
        let mut sent = 0;
        let mut folded = 0;
        while let Ok(event) = rx.try_recv() {
            match event.kind {
                EventKind::Tcp { .. } => sent += 1,
                EventKind::FramesFolded { at, other, .. } => {
                    assert_eq!(at, Endpoint::Proxy1);
                    folded += other;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!((sent, folded), (built.get(), 100 - built.get()));
    }

    #[derive(Debug, Default)]
    struct CountingObserver(AtomicU64);

    impl EventObserver for CountingObserver {
        fn observe(&self, _: &EventKind) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
        fn link_payload(&self, _: Endpoint, _: SocketAddr, _: ConnId, _: Flow, _: usize) {}
        fn tcp_bytes(&self, _: Role, _: SocketAddr, _: Flow, _: usize) {}
    }

    #[test]
    fn an_observer_sees_every_frame_event_even_past_the_rate() {
        let (sink, _rx) = EventSink::channel(1024);
        let observer = Arc::new(CountingObserver::default());
        let sink = sink.sampled_past(10).with_observer(observer.clone());
        let id = ConnId::new(0);
        for _ in 0..100 {
            sink.emit_frame_event(Endpoint::Proxy1, id, sampling::OTHER, || tcp_read(id));
        }
        assert_eq!(observer.0.load(Ordering::Relaxed), 100);
        assert!(sink.folded() >= 98, "still sampled: {}", sink.folded());
    }
}
