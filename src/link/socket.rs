//! The link socket: encode, seal, send; receive, open, decode; count and report each frame.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::net::LinkUdp;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::LinkStats;
use super::batch::{self, RecvBatch, SendOffload};
use super::emulator::{Egress, EmulatorScope, Ingress, corruptible_range, sleep_until_or_forever};
use super::seal::{self, Rejected, Seal, Sealed};
use super::tap::TapScope;
use crate::capture::CaptureTap;
use crate::event::sampling::{self, Folded};
use crate::event::{EventKind, EventSink, Flow, FrameSummary, Ignored, Level};
use crate::impair::pipeline::Pending;
use crate::impair::{DirectionEmulator, DropCause, LinkEmulator, LinkVerdict};
use crate::tasks::Tasks;
use crate::topology::{Endpoint, LinkDirection};
use crate::wire::{Frame, FrameKind, MAX_DATAGRAM, WireMode};

/// Receive buffers hold any UDP datagram (stop-and-wait accepts course peers' 4096-byte `D`
/// frames, and more), with room to spare, so that a datagram longer than its mode accepts
/// (1500 bytes in classic mode) is seen as too long and counted instead of being cut.
pub const RECV_BUFFER: usize = 65_536 + 512;

/// A datagram that arrived, as the receiving role needs it.
pub enum Received<'b> {
    /// A well-formed frame from an accepted peer.
    Frame { frame: Frame<'b>, peer: SocketAddr },
    /// Counted and reported already; nothing to do.
    Dropped,
}

/// What a link socket and its emulator timer task share.
#[derive(Debug)]
pub(super) struct Inner {
    pub(super) socket: LinkUdp,
    pub(super) local: SocketAddr,
    pub(super) endpoint: Endpoint,
    pub(super) mode: WireMode,
    pub(super) events: EventSink,
    pub(super) stats: Arc<LinkStats>,
    pub(super) tap: Option<(CaptureTap, TapScope)>,
    /// The seal (AEAD) between the codec and the socket, on a sealed link.
    pub(super) seal: Option<SealState>,
    /// Where the emulator's timer task is spawned ([`LinkSocket::with_tasks`]).
    pub(super) tasks: Tasks,
    /// Datagrams read by one `recvmmsg` and not handed out yet ([`super::batch`]).
    pub(super) received: Mutex<RecvBatch>,
    /// Whether [`LinkSocket::send_burst`] still tries UDP GSO on this socket.
    pub(super) offload: SendOffload,
    /// Malformed datagrams are reported at most once a second: a flood of junk is counted
    /// exactly but must not become a flood of log lines.
    pub(super) malformed_log: Mutex<RejectLog>,
}

/// A sealed link's state: the sans-IO [`Seal`] and the rate limit of its log lines.
#[derive(Debug)]
pub(super) struct SealState {
    pub(super) seal: Mutex<Seal>,
    pub(super) log: Mutex<RejectLog>,
}

/// Dropped sealed (or malformed) datagrams are logged at most once a second, with a count.
#[derive(Debug, Default)]
pub(super) struct RejectLog {
    pub(super) last: Option<std::time::Instant>,
    pub(super) unlogged: u64,
}

impl RejectLog {
    /// Counts one more dropped datagram; when a report is due (the first, or a second after
    /// the last report), returns how many it covers.
    pub(super) fn count_one(&mut self) -> Option<u64> {
        self.unlogged += 1;
        let now = std::time::Instant::now();
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < std::time::Duration::from_secs(1))
        {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.unlogged))
    }
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
    pub(super) inner: Arc<Inner>,
    /// The emulator for what this endpoint sends, if attached.
    pub(super) egress: Option<Arc<Egress>>,
    /// The emulator for what arrives, in a standalone proxy.
    pub(super) ingress: Option<Ingress>,
}

impl LinkSocket {
    /// A link end on `socket` (a tokio or std UDP socket, or a [`LinkUdp`]: it is
    /// registered with the runtime for reading only, see [`LinkUdp`]).
    pub fn new(
        socket: impl TryInto<LinkUdp, Error = io::Error>,
        endpoint: Endpoint,
        mode: WireMode,
        events: EventSink,
    ) -> io::Result<Self> {
        let socket = socket.try_into()?;
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
                tasks: Tasks::new(),
                received: Mutex::default(),
                offload: SendOffload::default(),
                malformed_log: Mutex::default(),
            }),
            egress: None,
            ingress: None,
        })
    }

    /// The shared part, while the socket is still being set up (before its first send).
    pub(super) fn setup(&mut self) -> &mut Inner {
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

    /// Sends bursts one datagram per message, never with UDP GSO (the fallback, forced):
    /// for tests and measurements.
    pub fn without_gso(mut self) -> Self {
        self.setup().offload = SendOffload::new(false);
        self
    }

    /// Whether [`LinkSocket::send_burst`] sends with UDP GSO on this socket (on until the
    /// kernel refuses it once, or [`LinkSocket::without_gso`]).
    pub fn gso(&self) -> bool {
        self.inner.offload.gso()
    }

    /// Spawns the emulator's timer task in `tasks` (the lab's), so shutdown waits for it.
    pub fn with_tasks(mut self, tasks: Tasks) -> Self {
        self.setup().tasks = tasks;
        self
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
                    .dropped_before_sending(egress.emulated(), frame, datagram, to, cause)
                    .await;
            }
            Ok(_) => {
                egress.flush(&self.inner).await;
                egress.arm(&self.inner);
            }
        }
        Ok(())
    }

    /// Encodes and sends `frames` to `to`, in order, with as few system calls as the
    /// kernel allows (UDP GSO and `sendmmsg`: see [`super::batch`]). Every frame is still
    /// its own datagram, sealed on its own on a sealed link, counted, captured and reported
    /// as [`LinkSocket::send`] does. Returns the frames that could not be sent, by index.
    ///
    /// With an emulator attached, the burst is batched only while its direction is clear,
    /// nothing waits in its delay line and step mode holds nothing (each frame is then
    /// counted as having passed it, as `send` counts it); otherwise each frame takes
    /// [`LinkSocket::send`]'s path, so its per-frame decisions, delay line and step mode
    /// stay exactly as they are.
    pub async fn send_burst(
        &self,
        frames: &[Frame<'_>],
        to: SocketAddr,
    ) -> Vec<(usize, io::Error)> {
        if frames.len() > 1 {
            let Some(egress) = &self.egress else {
                return self.send_batched(frames, to, None).await;
            };
            let emulated = egress.emulated();
            if emulated.is_clear()
                && !egress.emulator.hold().is_holding()
                && let Ok(_turn) = egress.turn.try_lock()
                && egress.pipeline.lock().unwrap().is_empty()
            {
                // As `send_if_clear`, for the whole burst: with the turn held, nothing can
                // enter the delay line ahead of it.
                return self.send_batched(frames, to, Some(emulated)).await;
            }
        }
        let mut failed = Vec::new();
        for (index, frame) in frames.iter().enumerate() {
            if let Err(e) = self.send(frame, to).await {
                failed.push((index, e));
            }
        }
        failed
    }

    /// [`LinkSocket::send_burst`]'s batched path. With `emulated` (a clear direction), each
    /// frame counts as offered and delivered there, and a failed send as the emulator's
    /// failed send (reported on the event stream, not returned), as `transmit` does.
    async fn send_batched(
        &self,
        frames: &[Frame<'_>],
        to: SocketAddr,
        emulated: Option<&DirectionEmulator>,
    ) -> Vec<(usize, io::Error)> {
        let mut failed = Vec::new();
        // Every frame's encoding, one after the other.
        let mut encoded = Vec::with_capacity(frames.len() * 256);
        let mut ends = Vec::with_capacity(frames.len());
        let mut scratch = [0u8; MAX_DATAGRAM];
        for (index, frame) in frames.iter().enumerate() {
            match self.inner.mode.encode_into(frame, &mut scratch) {
                Ok(len) if self.is_sealed() && len + seal::OVERHEAD > MAX_DATAGRAM => {
                    failed.push((
                        index,
                        io::Error::new(
                            io::ErrorKind::InvalidInput,
                            format!("a {len}-byte frame does not fit a sealed datagram"),
                        ),
                    ));
                }
                Ok(len) => encoded.extend_from_slice(&scratch[..len]),
                Err(e) => failed.push((index, io::Error::new(io::ErrorKind::InvalidInput, e))),
            }
            ends.push(encoded.len());
        }
        let datagram = |index: usize| {
            let start = if index == 0 { 0 } else { ends[index - 1] };
            &encoded[start..ends[index]]
        };
        let encodable = |index: &usize| !failed.iter().any(|(bad, _)| bad == index);
        let handed = SystemTime::now();
        // What goes on the wire: the encoding, or its sealed form (each sealed on its own).
        let mut sealed: Vec<Vec<u8>> = Vec::new();
        let mut wire_of: Vec<(usize, Option<usize>)> = Vec::with_capacity(frames.len());
        for index in (0..frames.len()).filter(encodable) {
            match self.inner.on_wire(datagram(index), to).await {
                OnWire::Plain => wire_of.push((index, None)),
                OnWire::Sealed(bytes) => {
                    sealed.push(bytes);
                    wire_of.push((index, Some(sealed.len() - 1)));
                }
                outcome @ (OnWire::Held | OnWire::NoSession) => {
                    // Counted as `send` counts it: the role sent it, and a held frame has
                    // also left the (clear) emulator.
                    if let Some(emulated) = emulated {
                        emulated.passed_clear();
                        if matches!(outcome, OnWire::Held) {
                            emulated.counters().delivered.add();
                        }
                    }
                    self.inner
                        .sent_by_role(&frames[index], datagram(index).len(), to);
                }
            }
        }
        let wires: Vec<&[u8]> = wire_of
            .iter()
            .map(|&(index, sealed_at)| match sealed_at {
                None => datagram(index),
                Some(at) => &sealed[at][..],
            })
            .collect();
        let refused =
            batch::send_burst(&self.inner.socket, &self.inner.offload, Some(to), &wires).await;
        let mut refused = refused.into_iter().peekable();
        for (at, (&(index, _), wire)) in wire_of.iter().zip(&wires).enumerate() {
            let frame = &frames[index];
            let len = datagram(index).len();
            let error = refused
                .next_if(|(bad, _)| *bad == at)
                .map(|(_, error)| error);
            let Some(emulated) = emulated else {
                match error {
                    Some(error) => failed.push((index, error)),
                    None => {
                        self.inner.tap_sent(handed, wire, to, None, true).await;
                        self.inner.sent_by_role(frame, len, to);
                    }
                }
                continue;
            };
            // It passed the (clear) emulator; what happens at the socket is the link's.
            emulated.passed_clear();
            self.inner.sent_by_role(frame, len, to);
            match error {
                Some(error) => {
                    self.inner
                        .count_send_failed(emulated, Some(frame.kind()), len, to, &error);
                }
                None => {
                    emulated.counters().delivered.add();
                    self.inner.tap_sent(handed, wire, to, None, true).await;
                }
            }
        }
        failed.sort_by_key(|(index, _)| *index);
        failed
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
                let (len, peer) = self.inner.recv_from(buf).await?;
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
                let (len, peer) = self.inner.recv_from(buf).await?;
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
                received = self.inner.recv_from(buf) => {
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
                () = sleep_until_or_forever(next) => {}
            }
        }
    }

    /// Gives an arriving datagram to the emulator; the capture records it as it arrived
    /// (it did cross the wire: `raw`, the sealed bytes, on a sealed link), with a note
    /// saying what the emulator made of it.
    pub(super) async fn on_arrival(
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
                // Decoded once, for the per-type drop count and the event.
                if let Ok(frame) = self.inner.mode.decode(datagram) {
                    ingress.emulated().counters().drop_kind(frame.kind());
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
    pub(super) fn accept<'b>(
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
                    inner.events.emit_frame_event(
                        inner.endpoint,
                        frame.id(),
                        sampling::OTHER,
                        || EventKind::FrameReceived {
                            at: inner.endpoint,
                            peer,
                            frame: FrameSummary::in_mode(inner.mode, &frame, len),
                        },
                    );
                }
                Received::Frame { frame, peer }
            }
            Err(error) => {
                inner.stats.malformed.fetch_add(1, Ordering::Relaxed);
                let due = inner.malformed_log.lock().unwrap().count_one();
                if let Some(count) = due {
                    let error = match count {
                        1 => error.to_string(),
                        _ => format!(
                            "{error} (and {} more since the last report, all counted)",
                            count - 1
                        ),
                    };
                    inner.events.emit(EventKind::FrameMalformed {
                        at: inner.endpoint,
                        peer,
                        len,
                        error,
                    });
                }
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
    /// Receives one datagram, batched underneath ([`super::batch`]).
    async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        batch::recv_from(&self.socket, &self.received, buf).await
    }

    /// The type of a datagram this link speaks, if it decodes.
    pub(super) fn kind_of(&self, datagram: &[u8]) -> Option<FrameKind> {
        self.mode.decode(datagram).ok().map(|frame| frame.kind())
    }

    /// Tells the event observer (the monitor's connection table), if any, about a `D`
    /// frame's payload: its per-connection byte counts do not depend on frame events.
    pub(super) fn observe_payload(&self, frame: &Frame<'_>, peer: SocketAddr, flow: Flow) {
        if let (Some(observer), Frame::Data { id, payload, .. }) = (self.events.observer(), frame) {
            observer.link_payload(self.endpoint, peer, *id, flow, payload.len());
        }
    }

    /// Counts and reports a frame the role sent (handed to the link).
    pub(super) fn sent_by_role(&self, frame: &Frame<'_>, wire_len: usize, to: SocketAddr) {
        self.stats.sent.add(frame.kind());
        self.stats
            .sent_bytes
            .fetch_add(wire_len as u64, Ordering::Relaxed);
        self.observe_payload(frame, to, Flow::Out);
        if self.events.wants_frame_events() {
            let folded = Folded::frame_sent(frame.payload().len());
            self.events
                .emit_frame_event(self.endpoint, frame.id(), folded, || EventKind::FrameSent {
                    at: self.endpoint,
                    peer: to,
                    frame: FrameSummary::in_mode(self.mode, frame, wire_len),
                });
        }
    }

    /// What goes on the wire for `datagram`: itself on a plain link, its sealed form on a
    /// sealed one. A frame the seal holds until the handshake is done sends the hello
    /// meanwhile; one with no session for `to` is reported dropped. Both send paths
    /// ([`LinkSocket::send`]'s `transmit` and the batched one) seal through here.
    async fn on_wire(&self, datagram: &[u8], to: SocketAddr) -> OnWire {
        let Some(state) = &self.seal else {
            return OnWire::Plain;
        };
        let outcome = state
            .seal
            .lock()
            .unwrap()
            .seal(datagram, to, std::time::Instant::now());
        match outcome {
            Sealed::Now(bytes) => OnWire::Sealed(bytes),
            Sealed::Held { hello } => {
                if let Some(hello) = hello {
                    self.put_raw(&hello, to).await;
                }
                OnWire::Held
            }
            Sealed::NoSession => {
                self.seal_dropped(
                    to,
                    "no sealed session with this proxy1 (it never said hello): not sent",
                );
                OnWire::NoSession
            }
        }
    }

    /// A frame that passed the emulator but failed at the socket: the emulator's failed
    /// send, counted and logged (the role's own counters already have it as sent).
    fn count_send_failed(
        &self,
        direction: &DirectionEmulator,
        kind: Option<FrameKind>,
        len: usize,
        to: SocketAddr,
        error: &io::Error,
    ) {
        direction.counters().drop(DropCause::SendFailed);
        if let Some(kind) = kind {
            direction.counters().drop_kind(kind);
        }
        self.events.log(
            Level::Warn,
            self.endpoint.role(),
            format!(
                "{}: send of a {len}-byte frame to {to} failed: {error}",
                self.endpoint.label()
            ),
        );
    }

    /// Puts one datagram on the wire (sealed first, on a sealed link) and captures what
    /// crossed it, stamped `handed`, with `note`. With `emulated`, it came out of the
    /// emulator: it is counted as delivered (or as a failed send), and its verdict is
    /// reported.
    pub(super) async fn transmit(
        &self,
        datagram: &[u8],
        to: SocketAddr,
        emulated: Option<(&DirectionEmulator, &LinkVerdict)>,
        handed: SystemTime,
        note: Option<String>,
    ) -> io::Result<()> {
        let sealed;
        let wire = match self.on_wire(datagram, to).await {
            OnWire::Plain => datagram,
            OnWire::Sealed(bytes) => {
                sealed = bytes;
                &sealed[..]
            }
            OnWire::Held => {
                // The frame waits for proxy2's answer to our hello; it goes when that
                // arrives (see `open`). It has left the role and the emulator.
                if let Some((direction, _)) = emulated {
                    direction.counters().delivered.add();
                }
                return Ok(());
            }
            OnWire::NoSession => return Ok(()),
        };
        if let Err(e) = self.socket.send_to(wire, to).await {
            if let Some((direction, _)) = emulated {
                let kind = self.kind_of(datagram);
                self.count_send_failed(direction, kind, datagram.len(), to, &e);
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
    pub(super) async fn put_raw(&self, wire: &[u8], to: SocketAddr) {
        let handed = SystemTime::now();
        if self.socket.send_to(wire, to).await.is_ok() {
            self.tap_sent(handed, wire, to, None, true).await;
        }
    }

    /// Opens a datagram that arrived on a sealed link, in place: the plaintext is then
    /// `buf[..n]` for the returned `n`. `None` when there is nothing to decode (a handshake
    /// message, or a datagram that was counted and dropped). Unsealed links pass `len`
    /// through.
    pub(super) async fn open(&self, buf: &mut [u8], len: usize, peer: SocketAddr) -> Option<usize> {
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
    pub(super) fn seal_dropped(&self, peer: SocketAddr, what: &str) {
        let Some(state) = &self.seal else { return };
        let Some(count) = state.log.lock().unwrap().count_one() else {
            return;
        };
        self.events.log(
            Level::Warn,
            self.endpoint.role(),
            format!(
                "{count} sealed datagram{} from {peer}: {what}",
                if count == 1 { "" } else { "s" }
            ),
        );
    }
}

/// What [`Inner::on_wire`] made of a datagram.
enum OnWire {
    /// A plain link: the datagram goes as it is.
    Plain,
    /// A sealed link: this goes instead.
    Sealed(Vec<u8>),
    /// The seal holds it until the session is set up (proxy1); it goes then.
    Held,
    /// No sealed session with the peer (proxy2): dropped, and reported.
    NoSession,
}
