//! One end of the UDP link: a socket that speaks frames, counts everything it does, reports
//! it on the event stream and feeds the capture tap.
//!
//! Both proxies use [`LinkSocket`], so framing, counting, tracing, capture and link
//! emulation behave the same on either side.

pub mod seal;

use std::io;
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::SystemTime;

use tokio::net::UdpSocket;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::capture::{CaptureTap, TapFrame};
use crate::event::{
    Endpoint, EventKind, EventSink, Flow, FrameSummary, Ignored, Level, LinkDirection,
};
use crate::impair::pipeline::{Pending, Pipeline};
use crate::impair::{DirectionEmulator, DropCause, LinkEmulator, LinkVerdict};
use crate::transport::totals::{TransportTotals, TransportTotalsSnapshot};
use crate::wire::{Frame, FrameKind, MAX_DATAGRAM, WireMode};
use seal::{Rejected, Seal, Sealed};

/// Receive buffers hold any UDP datagram (stop-and-wait accepts course peers' 4096-byte `D`
/// frames, and more), with room to spare, so that a datagram longer than its mode accepts
/// (1500 bytes in classic mode) is seen as too long and counted instead of being cut.
pub const RECV_BUFFER: usize = 65_536 + 512;

/// Frame counts by type, one counter per [`FrameKind`].
#[derive(Debug, Default)]
pub struct KindCounters([AtomicU64; FrameKind::ALL.len()]);

impl KindCounters {
    fn slot(kind: FrameKind) -> usize {
        match kind {
            FrameKind::Connect => 0,
            FrameKind::ConnectOk => 1,
            FrameKind::ConnectNok => 2,
            FrameKind::Data => 3,
            FrameKind::Ack => 4,
            FrameKind::Close => 5,
        }
    }
    /// Counts one frame of `kind`.
    pub fn add(&self, kind: FrameKind) {
        self.0[Self::slot(kind)].fetch_add(1, Ordering::Relaxed);
    }
    pub fn get(&self, kind: FrameKind) -> u64 {
        self.0[Self::slot(kind)].load(Ordering::Relaxed)
    }
    pub fn total(&self) -> u64 {
        self.0.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
    /// A point-in-time copy.
    pub fn snapshot(&self) -> KindCounts {
        KindCounts {
            connect: self.get(FrameKind::Connect),
            ok: self.get(FrameKind::ConnectOk),
            nok: self.get(FrameKind::ConnectNok),
            data: self.get(FrameKind::Data),
            ack: self.get(FrameKind::Ack),
            close: self.get(FrameKind::Close),
        }
    }
}

/// Exact counters of one link endpoint. These never drop, unlike the event stream.
///
/// They are the role's view: `sent` is what the role sent, `received` what it received.
/// With the link emulator on, what crossed the wire in between is in the emulator's counters
/// ([`crate::impair::DirectionReport`]): a lost frame is sent here and never received there.
#[derive(Debug, Default)]
pub struct LinkStats {
    pub sent: KindCounters,
    pub received: KindCounters,
    pub sent_bytes: AtomicU64,
    pub received_bytes: AtomicU64,
    /// Datagrams that did not decode.
    pub malformed: AtomicU64,
    /// Datagrams dropped on purpose (stranger, id not open, unexpected, overflow).
    pub ignored: AtomicU64,
    /// Connections turned away by a limit of the role (proxy2's `--max-connections`,
    /// `--max-peers`, allow-list): a `C` answered with `NOK`, or a connection that never
    /// carried a byte closed to make room for a new one.
    pub refused: AtomicU64,
    /// The reliable modes' transports at this endpoint: frames sent and retransmitted,
    /// in all and per connection (shared by every connection's pump).
    pub transport: Arc<TransportTotals>,
    /// Sealed link: datagrams that failed authentication (another key, or changed on the
    /// way), dropped and never delivered. Plaintext frames on a sealed link count here too.
    pub unauthentic: AtomicU64,
    /// Sealed link: datagrams that authenticated but were seen before, are older than the
    /// replay window, or belong to an earlier session; dropped.
    pub replayed: AtomicU64,
    /// Sealed link, proxy1: reject notices from proxy2 (it could not authenticate us).
    pub peer_rejects: AtomicU64,
}

/// A point-in-time copy of [`KindCounters`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct KindCounts {
    pub connect: u64,
    pub ok: u64,
    pub nok: u64,
    pub data: u64,
    /// Acks (`A`), in the reliable modes.
    pub ack: u64,
    pub close: u64,
}

impl KindCounts {
    pub fn get(&self, kind: FrameKind) -> u64 {
        match kind {
            FrameKind::Connect => self.connect,
            FrameKind::ConnectOk => self.ok,
            FrameKind::ConnectNok => self.nok,
            FrameKind::Data => self.data,
            FrameKind::Ack => self.ack,
            FrameKind::Close => self.close,
        }
    }
    pub fn total(&self) -> u64 {
        self.connect + self.ok + self.nok + self.data + self.ack + self.close
    }
}

/// A point-in-time copy of [`LinkStats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct LinkStatsSnapshot {
    pub sent: KindCounts,
    pub received: KindCounts,
    pub sent_bytes: u64,
    pub received_bytes: u64,
    pub malformed: u64,
    pub ignored: u64,
    pub refused: u64,
    pub transport: TransportTotalsSnapshot,
    pub unauthentic: u64,
    pub replayed: u64,
    pub peer_rejects: u64,
}

impl LinkStats {
    pub fn snapshot(&self) -> LinkStatsSnapshot {
        LinkStatsSnapshot {
            sent: self.sent.snapshot(),
            received: self.received.snapshot(),
            sent_bytes: self.sent_bytes.load(Ordering::Relaxed),
            received_bytes: self.received_bytes.load(Ordering::Relaxed),
            malformed: self.malformed.load(Ordering::Relaxed),
            ignored: self.ignored.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            transport: self.transport.snapshot(),
            unauthentic: self.unauthentic.load(Ordering::Relaxed),
            replayed: self.replayed.load(Ordering::Relaxed),
            peer_rejects: self.peer_rejects.load(Ordering::Relaxed),
        }
    }
}

/// Which datagrams the capture tap records at this endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TapScope {
    /// Only what this endpoint sends. In the lab both proxies tap their sends, so every frame
    /// on the link is recorded exactly once, at the moment it left.
    Sent,
    /// Everything this endpoint sends and receives: a standalone proxy sees the whole link.
    SentAndReceived,
}

/// Which traffic the link emulator acts on at this endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmulatorScope {
    /// Only what this endpoint sends (its own direction). In the lab both proxies do this,
    /// so each direction is emulated exactly once.
    Sent,
    /// What it sends and what it receives (the other direction, as it arrives): a standalone
    /// proxy whose peer may be a course script with no emulator, like the course's
    /// send_loss/recv_loss helpers.
    SentAndReceived,
}

/// A datagram that arrived, as the receiving role needs it.
pub enum Received<'b> {
    /// A well-formed frame from an accepted peer.
    Frame { frame: Frame<'b>, peer: SocketAddr },
    /// Counted and reported already; nothing to do.
    Dropped,
}

/// What a link socket and its emulator timer task share.
#[derive(Debug)]
struct Inner {
    socket: UdpSocket,
    local: SocketAddr,
    endpoint: Endpoint,
    mode: WireMode,
    events: EventSink,
    stats: Arc<LinkStats>,
    tap: Option<(CaptureTap, TapScope)>,
    /// The seal (AEAD) between the codec and the socket, on a sealed link.
    seal: Option<SealState>,
}

/// A sealed link's state: the sans-IO [`Seal`] and the rate limit of its log lines.
#[derive(Debug)]
struct SealState {
    seal: Mutex<Seal>,
    log: Mutex<RejectLog>,
}

/// Dropped sealed datagrams are logged at most once a second, with a count.
#[derive(Debug, Default)]
struct RejectLog {
    last: Option<std::time::Instant>,
    unlogged: u64,
}

/// What a sealed end reports about its session, for proxy1's log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SealStatus {
    /// proxy2 answered our hello (an authenticated hello-ack arrived).
    pub established: bool,
    /// Reject notices received from proxy2.
    pub rejects_received: u64,
}

/// One end of the UDP link.
#[derive(Debug)]
pub struct LinkSocket {
    inner: Arc<Inner>,
    /// The emulator for what this endpoint sends, if attached.
    egress: Option<Arc<Egress>>,
    /// The emulator for what arrives, in a standalone proxy.
    ingress: Option<Ingress>,
}

impl LinkSocket {
    pub fn new(
        socket: UdpSocket,
        endpoint: Endpoint,
        mode: WireMode,
        events: EventSink,
    ) -> io::Result<Self> {
        Ok(LinkSocket {
            inner: Arc::new(Inner {
                local: socket.local_addr()?,
                socket,
                endpoint,
                mode,
                events,
                stats: Arc::default(),
                tap: None,
                seal: None,
            }),
            egress: None,
            ingress: None,
        })
    }

    /// The shared part, while the socket is still being set up (before its first send).
    fn setup(&mut self) -> &mut Inner {
        Arc::get_mut(&mut self.inner).expect("a link socket is configured before it is used")
    }

    /// Records datagrams to a capture.
    pub fn with_capture(mut self, tap: CaptureTap, scope: TapScope) -> Self {
        self.setup().tap = Some((tap, scope));
        self
    }

    /// Seals every datagram with an AEAD (see [`seal`]). Only the extended modes may be
    /// sealed: the course's text formats stay byte-compatible with course peers.
    pub fn with_seal(mut self, seal: Seal) -> Self {
        assert!(
            self.inner.mode.is_extended(),
            "only the extended modes are sealed"
        );
        self.setup().seal = Some(SealState {
            seal: Mutex::new(seal),
            log: Mutex::default(),
        });
        self
    }

    /// Whether this link is sealed.
    pub fn is_sealed(&self) -> bool {
        self.inner.seal.is_some()
    }

    /// The session state of a sealed link (`None` when not sealed).
    pub fn seal_status(&self) -> Option<SealStatus> {
        self.inner.seal.as_ref().map(|state| {
            let seal = state.seal.lock().unwrap();
            SealStatus {
                established: seal.is_established(),
                rejects_received: seal.rejects_received(),
            }
        })
    }

    /// The most stream bytes one `D` frame carries on this link: the mode's, less the seal's
    /// overhead on a sealed link, so that no datagram exceeds 1500 bytes.
    pub fn max_payload(&self) -> usize {
        let max = self.inner.mode.max_payload();
        if self.is_sealed() {
            max - seal::OVERHEAD
        } else {
            max
        }
    }

    /// Counts into an existing [`LinkStats`] (so a restarted role keeps its totals).
    pub fn with_stats(mut self, stats: Arc<LinkStats>) -> Self {
        self.setup().stats = stats;
        self
    }

    /// Puts the link emulator on this endpoint's traffic: what it sends (its own direction),
    /// and with [`EmulatorScope::SentAndReceived`] also what it receives.
    pub fn with_emulator(mut self, emulator: Arc<LinkEmulator>, scope: EmulatorScope) -> Self {
        let sent = LinkDirection::sent_by(self.inner.endpoint);
        if scope == EmulatorScope::SentAndReceived {
            self.ingress = Some(Ingress {
                emulator: emulator.clone(),
                direction: sent.reverse(),
                pipeline: Mutex::default(),
            });
        }
        self.egress = Some(Arc::new(Egress {
            emulator,
            direction: sent,
            pipeline: Mutex::default(),
            turn: tokio::sync::Mutex::new(()),
            wake: Notify::new(),
            timer_started: AtomicBool::new(false),
            stop: CancellationToken::new(),
        }));
        self
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local
    }
    pub fn mode(&self) -> WireMode {
        self.inner.mode
    }
    /// Which side of the link this socket is.
    pub fn endpoint(&self) -> Endpoint {
        self.inner.endpoint
    }
    pub fn stats(&self) -> &Arc<LinkStats> {
        &self.inner.stats
    }
    pub fn events(&self) -> &EventSink {
        &self.inner.events
    }
    /// The emulator acting on this socket, if any.
    pub fn emulator(&self) -> Option<&Arc<LinkEmulator>> {
        self.egress.as_ref().map(|egress| &egress.emulator)
    }

    /// Encodes and sends one frame to `to`.
    ///
    /// With an emulator attached, the frame may be dropped, or go later than this call
    /// returns (delay, rate limit, reordering): other frames keep flowing meanwhile, and a
    /// failed send is then reported on the event stream by the link itself.
    pub async fn send(&self, frame: &Frame<'_>, to: SocketAddr) -> io::Result<()> {
        // Encoded on the stack: only the emulator's delay line and the capture keep a copy.
        let mut encoded = [0u8; MAX_DATAGRAM];
        let len = self
            .inner
            .mode
            .encode_into(frame, &mut encoded)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let datagram = &encoded[..len];
        if self.is_sealed() && len + seal::OVERHEAD > MAX_DATAGRAM {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a {len}-byte frame does not fit a sealed datagram"),
            ));
        }
        let Some(egress) = &self.egress else {
            // Stamped as it is handed to the socket: the reply it causes comes later.
            let handed = SystemTime::now();
            self.inner
                .transmit(datagram, to, None, handed, None)
                .await?;
            self.inner.sent_by_role(frame, len, to);
            return Ok(());
        };
        // The role has sent it, whatever the link then does to it.
        self.inner.sent_by_role(frame, len, to);
        if egress
            .emulator
            .hold()
            .try_hold(egress.direction, datagram, to)
            .is_some()
        {
            // Step mode: it waits here until a key or a step lets it go. It counts as
            // offered and waiting, like a frame in the delay line.
            let counters = egress.emulated().counters();
            counters.offered.add();
            counters.queued.add();
            egress.start_timer(&self.inner);
            return Ok(());
        }
        if egress.send_if_clear(&self.inner, datagram, to).await {
            return Ok(());
        }
        let corruptible = corruptible_range(self.inner.mode, datagram);
        let offered = {
            let mut pipeline = egress.pipeline.lock().unwrap();
            egress.emulated().offer(
                &mut pipeline,
                Instant::now(),
                datagram.to_vec(),
                corruptible,
                to,
            )
        };
        match offered {
            Err((cause, datagram)) => {
                self.inner
                    .dropped_before_sending(egress.emulated(), datagram, to, cause)
                    .await;
            }
            Ok(_) => {
                egress.flush(&self.inner).await;
                egress.arm(&self.inner);
            }
        }
        Ok(())
    }

    /// Receives one datagram into `buf` (at least [`RECV_BUFFER`] long) and decodes it.
    ///
    /// With `only_from`, datagrams from any other address are counted as strangers and
    /// dropped. Malformed datagrams are counted and reported, never returned. With an
    /// emulator on what arrives, datagrams are handed over when the emulator lets them go;
    /// cancelling this call loses nothing that has arrived.
    pub async fn recv<'b>(
        &self,
        buf: &'b mut [u8],
        only_from: Option<SocketAddr>,
    ) -> io::Result<Received<'b>> {
        let Some(ingress) = &self.ingress else {
            loop {
                let (len, peer) = self.inner.socket.recv_from(buf).await?;
                self.inner
                    .tap_arrival(SystemTime::now(), &buf[..len], peer, None)
                    .await;
                if let Some(len) = self.inner.open(buf, len, peer).await {
                    return Ok(self.accept(buf, len, peer, only_from));
                }
            }
        };
        loop {
            if ingress.emulated().is_clear() && ingress.pipeline.lock().unwrap().is_empty() {
                // Nothing held to overtake, nothing to do to it: straight through, counted.
                // Only this call feeds the delay line, so it stays empty meanwhile.
                let (len, peer) = self.inner.socket.recv_from(buf).await?;
                let read = SystemTime::now();
                // On a sealed link the capture keeps what crossed the wire (ciphertext).
                let raw = self.inner.seal.is_some().then(|| buf[..len].to_vec());
                let Some(len) = self.inner.open(buf, len, peer).await else {
                    if let Some(raw) = raw {
                        self.inner.tap_arrival(read, &raw, peer, None).await;
                    }
                    continue;
                };
                if ingress.emulated().is_clear() {
                    let emulated = ingress.emulated();
                    emulated.passed_clear();
                    emulated.counters().delivered.add();
                    let wire = raw.as_deref().unwrap_or(&buf[..len]);
                    self.inner.tap_arrival(read, wire, peer, None).await;
                    return Ok(self.accept(buf, len, peer, only_from));
                }
                // Impaired while it was on its way: it is emulated like any later arrival.
                self.on_arrival(ingress, read, &buf[..len], raw.as_deref(), peer)
                    .await;
                continue;
            }
            let due = ingress
                .pipeline
                .lock()
                .unwrap()
                .pop_due(Instant::now(), ingress.emulated().counters());
            if let Some(Pending {
                datagram,
                addr,
                verdict,
            }) = due
            {
                ingress.emulated().counters().delivered.add();
                let len = datagram.len().min(buf.len());
                buf[..len].copy_from_slice(&datagram[..len]);
                let received = self.accept(buf, len, addr, only_from);
                if let Received::Frame { frame, peer } = &received
                    && !verdict.is_plain()
                {
                    self.inner.events.emit(EventKind::LinkDecision {
                        at: self.inner.endpoint,
                        direction: ingress.direction,
                        peer: *peer,
                        frame: FrameSummary::in_mode(self.inner.mode, frame, len),
                        what: verdict,
                    });
                }
                return Ok(received);
            }
            let next = ingress.pipeline.lock().unwrap().next_wake();
            tokio::select! {
                received = self.inner.socket.recv_from(buf) => {
                    let (len, peer) = received?;
                    let read = SystemTime::now();
                    let raw = self.inner.seal.is_some().then(|| buf[..len].to_vec());
                    match self.inner.open(buf, len, peer).await {
                        Some(len) => {
                            self.on_arrival(ingress, read, &buf[..len], raw.as_deref(), peer)
                                .await;
                        }
                        None => {
                            if let Some(raw) = raw {
                                self.inner.tap_arrival(read, &raw, peer, None).await;
                            }
                        }
                    }
                }
                _ = sleep_until_or_forever(next) => {}
            }
        }
    }

    /// Gives an arriving datagram to the emulator; the capture records it as it arrived
    /// (it did cross the wire: `raw`, the sealed bytes, on a sealed link), with a note
    /// saying what the emulator made of it.
    async fn on_arrival(
        &self,
        ingress: &Ingress,
        read: SystemTime,
        datagram: &[u8],
        raw: Option<&[u8]>,
        peer: SocketAddr,
    ) {
        let now = Instant::now();
        let corruptible = corruptible_range(self.inner.mode, datagram);
        let offered = {
            let mut pipeline = ingress.pipeline.lock().unwrap();
            ingress
                .emulated()
                .offer(&mut pipeline, now, datagram.to_vec(), corruptible, peer)
        };
        let note = match &offered {
            Err((cause, _)) => {
                let verdict = LinkVerdict::dropped(*cause);
                if let Some(kind) = self.inner.kind_of(datagram) {
                    ingress.emulated().counters().drop_kind(kind);
                }
                if let Ok(frame) = self.inner.mode.decode(datagram) {
                    self.inner.events.emit(EventKind::LinkDecision {
                        at: self.inner.endpoint,
                        direction: ingress.direction,
                        peer,
                        frame: FrameSummary::in_mode(self.inner.mode, &frame, datagram.len()),
                        what: verdict.clone(),
                    });
                }
                verdict.capture_note(true)
            }
            Ok(accepted) => {
                let note = accepted.verdict.capture_note(true);
                if accepted.release.is_none() {
                    let held = "held back to be reordered";
                    Some(match note {
                        Some(note) => format!("{note}, {held}"),
                        None => format!("link emulator (on arrival): {held}"),
                    })
                } else {
                    note
                }
            }
        };
        self.inner
            .tap_arrival(read, raw.unwrap_or(datagram), peer, note)
            .await;
    }

    /// Decodes, counts and reports a datagram that reached this endpoint.
    fn accept<'b>(
        &self,
        buf: &'b [u8],
        len: usize,
        peer: SocketAddr,
        only_from: Option<SocketAddr>,
    ) -> Received<'b> {
        let inner = &self.inner;
        if only_from.is_some_and(|expected| expected != peer) {
            self.ignore(peer, Ignored::Stranger);
            return Received::Dropped;
        }
        match inner.mode.decode(&buf[..len]) {
            Ok(frame) => {
                inner.stats.received.add(frame.kind());
                inner
                    .stats
                    .received_bytes
                    .fetch_add(len as u64, Ordering::Relaxed);
                inner.observe_payload(&frame, peer, Flow::In);
                if inner.events.wants_frames_received() {
                    inner.events.emit(EventKind::FrameReceived {
                        at: inner.endpoint,
                        peer,
                        frame: FrameSummary::in_mode(inner.mode, &frame, len),
                    });
                }
                Received::Frame { frame, peer }
            }
            Err(error) => {
                inner.stats.malformed.fetch_add(1, Ordering::Relaxed);
                inner.events.emit(EventKind::FrameMalformed {
                    at: inner.endpoint,
                    peer,
                    len,
                    error: error.to_string(),
                });
                Received::Dropped
            }
        }
    }

    /// Counts and reports a datagram that the role chose not to act on.
    pub fn ignore(&self, peer: SocketAddr, why: Ignored) {
        self.inner.stats.ignored.fetch_add(1, Ordering::Relaxed);
        self.inner.events.emit(EventKind::FrameIgnored {
            at: self.inner.endpoint,
            peer,
            why,
        });
    }
}

impl Drop for LinkSocket {
    /// Frames still waiting in the emulator die with their endpoint (counted as dropped,
    /// [`DropCause::Stopped`]), and the emulator's timer task ends.
    fn drop(&mut self) {
        if let Some(egress) = &self.egress {
            egress.stop.cancel();
            if let Ok(mut pipeline) = egress.pipeline.lock() {
                pipeline.discard_all(egress.emulated().counters(), |d| self.inner.kind_of(d));
            }
            // Frames held in step mode for this direction die with it too.
            let counters = egress.emulated().counters();
            for datagram in egress.emulator.hold().discard_direction(egress.direction) {
                counters.queued.sub();
                counters.drop(DropCause::Stopped);
                if let Some(kind) = self.inner.kind_of(&datagram) {
                    counters.drop_kind(kind);
                }
            }
        }
        if let Some(ingress) = &self.ingress
            && let Ok(mut pipeline) = ingress.pipeline.lock()
        {
            pipeline.discard_all(ingress.emulated().counters(), |d| self.inner.kind_of(d));
        }
    }
}

impl Inner {
    /// The type of a datagram this link speaks, if it decodes.
    fn kind_of(&self, datagram: &[u8]) -> Option<FrameKind> {
        self.mode.decode(datagram).ok().map(|frame| frame.kind())
    }

    /// Tells the event observer (the monitor's connection table), if any, about a `D`
    /// frame's payload: its per-connection byte counts do not depend on frame events.
    fn observe_payload(&self, frame: &Frame<'_>, peer: SocketAddr, flow: Flow) {
        if let (Some(observer), Frame::Data { id, payload, .. }) = (self.events.observer(), frame) {
            observer.link_payload(self.endpoint, peer, *id, flow, payload.len());
        }
    }

    /// Counts and reports a frame the role sent (handed to the link).
    fn sent_by_role(&self, frame: &Frame<'_>, wire_len: usize, to: SocketAddr) {
        self.stats.sent.add(frame.kind());
        self.stats
            .sent_bytes
            .fetch_add(wire_len as u64, Ordering::Relaxed);
        self.observe_payload(frame, to, Flow::Out);
        if self.events.wants_frame_events() {
            self.events.emit(EventKind::FrameSent {
                at: self.endpoint,
                peer: to,
                frame: FrameSummary::in_mode(self.mode, frame, wire_len),
            });
        }
    }

    /// Puts one datagram on the wire (sealed first, on a sealed link) and captures what
    /// crossed it, stamped `handed`, with `note`. With `emulated`, it came out of the
    /// emulator: it is counted as delivered (or as a failed send), and its verdict is
    /// reported.
    async fn transmit(
        &self,
        datagram: &[u8],
        to: SocketAddr,
        emulated: Option<(&DirectionEmulator, &LinkVerdict)>,
        handed: SystemTime,
        note: Option<String>,
    ) -> io::Result<()> {
        let sealed;
        let wire = match &self.seal {
            None => datagram,
            Some(state) => {
                let outcome =
                    state
                        .seal
                        .lock()
                        .unwrap()
                        .seal(datagram, to, std::time::Instant::now());
                match outcome {
                    Sealed::Now(bytes) => {
                        sealed = bytes;
                        &sealed[..]
                    }
                    Sealed::Held { hello } => {
                        // The frame waits for proxy2's answer to our hello; it goes when
                        // that arrives (see `open`). It has left the role and the emulator.
                        if let Some(hello) = hello {
                            self.put_raw(&hello, to).await;
                        }
                        if let Some((direction, _)) = emulated {
                            direction.counters().delivered.add();
                        }
                        return Ok(());
                    }
                    Sealed::NoSession => {
                        self.seal_dropped(
                            to,
                            "no sealed session with this proxy1 (it never said hello): not sent",
                        );
                        return Ok(());
                    }
                }
            }
        };
        if let Err(e) = self.socket.send_to(wire, to).await {
            if let Some((direction, _)) = emulated {
                direction.counters().drop(DropCause::SendFailed);
                if let Some(kind) = self.kind_of(datagram) {
                    direction.counters().drop_kind(kind);
                }
                self.events.log(
                    Level::Warn,
                    self.endpoint.role(),
                    format!(
                        "{}: send of a {}-byte frame to {to} failed: {e}",
                        self.endpoint.label(),
                        datagram.len()
                    ),
                );
            }
            return Err(e);
        }
        if let Some((direction, verdict)) = emulated {
            direction.counters().delivered.add();
            // Everything this socket sends was encoded here, and the emulator only flips
            // payload bits, so it decodes; the summary shows the bytes as they crossed.
            if !verdict.is_plain()
                && self.events.is_enabled()
                && let Ok(frame) = self.mode.decode(datagram)
            {
                self.events.emit(EventKind::LinkDecision {
                    at: self.endpoint,
                    direction: direction.direction(),
                    peer: to,
                    frame: FrameSummary::in_mode(self.mode, &frame, datagram.len()),
                    what: verdict.clone(),
                });
            }
        }
        self.tap_sent(handed, wire, to, note, true).await;
        Ok(())
    }

    /// Sends bytes that are already what goes on the wire (a seal's hello, answer or held
    /// frame) and captures them. A failed send is like a lost datagram: the seal and the
    /// transports try again.
    async fn put_raw(&self, wire: &[u8], to: SocketAddr) {
        let handed = SystemTime::now();
        if self.socket.send_to(wire, to).await.is_ok() {
            self.tap_sent(handed, wire, to, None, true).await;
        }
    }

    /// Opens a datagram that arrived on a sealed link, in place: the plaintext is then
    /// `buf[..n]` for the returned `n`. `None` when there is nothing to decode (a handshake
    /// message, or a datagram that was counted and dropped). Unsealed links pass `len`
    /// through.
    async fn open(&self, buf: &mut [u8], len: usize, peer: SocketAddr) -> Option<usize> {
        let Some(state) = &self.seal else {
            return Some(len);
        };
        let opened =
            state
                .seal
                .lock()
                .unwrap()
                .open(&mut buf[..len], peer, std::time::Instant::now());
        if let Some(reply) = &opened.reply {
            self.put_raw(reply, peer).await;
        }
        for (held, to) in &opened.release {
            self.put_raw(held, *to).await;
        }
        if let Some(range) = opened.frame {
            let plain = range.len();
            buf.copy_within(range, 0);
            return Some(plain);
        }
        if let Some(why) = opened.rejected {
            let (counter, what) = match why {
                Rejected::Unauthentic => (
                    &self.stats.unauthentic,
                    "failed authentication (another key, or changed on the way): dropped",
                ),
                Rejected::NotSealed => (
                    &self.stats.unauthentic,
                    "not sealed (is the peer running without --key-file?): dropped",
                ),
                Rejected::Replayed => (
                    &self.stats.replayed,
                    "replayed, or from an earlier session: dropped",
                ),
                Rejected::PeerRejects => (
                    &self.stats.peer_rejects,
                    "proxy2 rejects our frames: wrong key?",
                ),
            };
            counter.fetch_add(1, Ordering::Relaxed);
            self.seal_dropped(peer, what);
        }
        None
    }

    /// Logs a datagram the seal dropped, at most once a second (with how many since).
    fn seal_dropped(&self, peer: SocketAddr, what: &str) {
        let Some(state) = &self.seal else { return };
        let mut log = state.log.lock().unwrap();
        log.unlogged += 1;
        let now = std::time::Instant::now();
        if log
            .last
            .is_some_and(|last| now.duration_since(last) < std::time::Duration::from_secs(1))
        {
            return;
        }
        let count = std::mem::take(&mut log.unlogged);
        log.last = Some(now);
        drop(log);
        self.events.log(
            Level::Warn,
            self.endpoint.role(),
            format!(
                "{count} sealed datagram{} from {peer}: {what}",
                if count == 1 { "" } else { "s" }
            ),
        );
    }

    /// Captures a datagram this endpoint sent (`on_wire`), or one the emulator dropped
    /// before it could be sent (not `on_wire`: pcapng shows it as a comment, pcap skips it).
    async fn tap_sent(
        &self,
        time: SystemTime,
        datagram: &[u8],
        to: SocketAddr,
        note: Option<String>,
        on_wire: bool,
    ) {
        if let Some((tap, _)) = &self.tap {
            tap.frame(TapFrame {
                time,
                src: self.local,
                dst: to,
                datagram,
                note,
                on_wire,
            })
            .await;
        }
    }

    /// Reports a frame the emulator dropped before it was sent: an event, and a capture
    /// record marked as not on the wire (pcapng shows it as a comment; pcap skips it).
    async fn dropped_before_sending(
        &self,
        emulated: &DirectionEmulator,
        datagram: Vec<u8>,
        to: SocketAddr,
        cause: DropCause,
    ) {
        let direction = emulated.direction();
        let verdict = LinkVerdict::dropped(cause);
        if let Some(kind) = self.kind_of(&datagram) {
            emulated.counters().drop_kind(kind);
        }
        if self.events.is_enabled()
            && let Ok(frame) = self.mode.decode(&datagram)
        {
            self.events.emit(EventKind::LinkDecision {
                at: self.endpoint,
                direction,
                peer: to,
                frame: FrameSummary::in_mode(self.mode, &frame, datagram.len()),
                what: verdict.clone(),
            });
        }
        // A sealed link's capture holds no plaintext, so a frame that never crossed the
        // wire is not recorded there.
        if self.seal.is_none() {
            self.tap_sent(
                SystemTime::now(),
                &datagram,
                to,
                verdict.capture_note(false),
                false,
            )
            .await;
        }
    }

    /// Captures a datagram as it arrived, if this endpoint taps what it receives.
    async fn tap_arrival(
        &self,
        time: SystemTime,
        datagram: &[u8],
        peer: SocketAddr,
        note: Option<String>,
    ) {
        if let Some((tap, TapScope::SentAndReceived)) = &self.tap {
            tap.frame(TapFrame {
                time,
                src: peer,
                dst: self.local,
                datagram,
                note,
                on_wire: true,
            })
            .await;
        }
    }
}

/// The emulator of what one endpoint sends: its delay line, and the order of sending.
#[derive(Debug)]
struct Egress {
    emulator: Arc<LinkEmulator>,
    direction: LinkDirection,
    pipeline: Mutex<Pipeline>,
    /// Held by whoever sends due datagrams (a `send` call or the timer task), so they leave
    /// in the delay line's order even when several connections send at once.
    turn: tokio::sync::Mutex<()>,
    /// Tells the timer task that the delay line changed.
    wake: Notify,
    timer_started: AtomicBool,
    /// Cancelled when the socket is dropped.
    stop: CancellationToken,
}

impl Egress {
    fn emulated(&self) -> &DirectionEmulator {
        self.emulator.direction(self.direction)
    }

    /// Sends everything that is due now.
    async fn flush(&self, inner: &Inner) {
        let _turn = self.turn.lock().await;
        loop {
            let due = self
                .pipeline
                .lock()
                .unwrap()
                .pop_due(Instant::now(), self.emulated().counters());
            let Some(Pending {
                datagram,
                addr,
                verdict,
            }) = due
            else {
                break;
            };
            // A failure is counted and reported inside; the next datagram still goes.
            let handed = SystemTime::now();
            let note = verdict.capture_note(false);
            let _ = inner
                .transmit(
                    &datagram,
                    addr,
                    Some((self.emulated(), &verdict)),
                    handed,
                    note,
                )
                .await;
        }
    }

    /// Sends `datagram` straight away if this direction is clear and nothing waits in its
    /// delay line; false (nothing done) otherwise, and the frame goes through the emulator.
    ///
    /// The turn is taken first, so no flush is between taking a datagram out of the delay
    /// line and sending it (the delay line would look empty, and this frame would overtake
    /// it). If a flush holds the turn, the frame takes the emulator's path, which for clear
    /// settings makes no draws either: it queues behind what is held and goes at once.
    async fn send_if_clear(&self, inner: &Inner, datagram: &[u8], to: SocketAddr) -> bool {
        let emulated = self.emulated();
        if !emulated.is_clear() {
            return false;
        }
        let Ok(_turn) = self.turn.try_lock() else {
            return false;
        };
        if !self.pipeline.lock().unwrap().is_empty() {
            return false;
        }
        emulated.passed_clear();
        // Counted as delivered, or as a failed send (reported on the event stream), inside.
        let handed = SystemTime::now();
        let _ = inner
            .transmit(
                datagram,
                to,
                Some((emulated, &LinkVerdict::default())),
                handed,
                None,
            )
            .await;
        true
    }

    /// Makes sure the timer task will wake when something in the delay line is due.
    fn arm(self: &Arc<Self>, inner: &Arc<Inner>) {
        if self.pipeline.lock().unwrap().next_wake().is_none() {
            return;
        }
        self.start_timer(inner);
        self.wake.notify_one();
    }

    /// Starts the timer task if it is not running: it sends what the delay line makes due
    /// and what step mode releases.
    fn start_timer(self: &Arc<Self>, inner: &Arc<Inner>) {
        if !self.timer_started.swap(true, Ordering::AcqRel) {
            tokio::spawn(egress_timer(self.clone(), Arc::downgrade(inner)));
        }
    }

    /// Sends what step mode has released for this direction, in order: at once, with none
    /// of the other impairments (the person chose to let it go).
    async fn send_released(&self, inner: &Inner) {
        let _turn = self.turn.lock().await;
        while let Some(released) = self.emulator.hold().take_released(self.direction) {
            let emulated = self.emulated();
            emulated.counters().queued.sub();
            let verdict = LinkVerdict {
                held_for: released.since.elapsed(),
                copy: released.copy,
                ..LinkVerdict::default()
            };
            let handed = SystemTime::now();
            let note = verdict
                .capture_note(false)
                .map(|n| format!("{n} (step mode)"));
            let _ = inner
                .transmit(
                    &released.datagram,
                    released.addr,
                    Some((emulated, &verdict)),
                    handed,
                    note,
                )
                .await;
        }
    }
}

/// Sends delayed datagrams when they are due. It holds the socket only while sending, so a
/// stopped role's port is free again at once.
async fn egress_timer(egress: Arc<Egress>, inner: Weak<Inner>) {
    loop {
        let next = egress.pipeline.lock().unwrap().next_wake();
        tokio::select! {
            _ = egress.stop.cancelled() => return,
            _ = egress.wake.notified() => {}
            _ = egress.emulator.hold().released(egress.direction) => {
                let Some(inner) = inner.upgrade() else { return };
                egress.send_released(&inner).await;
            }
            _ = sleep_until_or_forever(next) => {
                let Some(inner) = inner.upgrade() else { return };
                egress.flush(&inner).await;
            }
        }
    }
}

/// The emulator of what a standalone endpoint receives.
#[derive(Debug)]
struct Ingress {
    emulator: Arc<LinkEmulator>,
    direction: LinkDirection,
    pipeline: Mutex<Pipeline>,
}

impl Ingress {
    fn emulated(&self) -> &DirectionEmulator {
        self.emulator.direction(self.direction)
    }
}

async fn sleep_until_or_forever(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The bytes of a datagram that corruption may flip: a `D` frame's payload, never its
/// header (so a corrupted frame still reaches its connection), and nothing of other frames.
fn corruptible_range(mode: WireMode, datagram: &[u8]) -> Range<usize> {
    mode.payload_range(datagram).unwrap_or(0..0)
}
