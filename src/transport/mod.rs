//! Per-connection reliability as sans-IO state machines: no sockets, no tokio, no clock of
//! their own (the caller passes `now`), modelled on quinn-proto and smoltcp.
//!
//! One [`Transport`] carries one direction pair of one tunnel connection: the bytes its
//! application side writes go out as data frames, the data frames the peer sends come back
//! as bytes in order. The caller (the tunnel layer) drives it:
//!
//! ```text
//!  app bytes ──write()──▶ ┌───────────┐ ──poll_transmit(now)──▶ frames to send
//!  finish() ─────────────▶│ Transport │ ◀──handle_frame(now)─── data/ack/close frames
//!  app ◀──read()/poll_delivered()──── │ ◀──handle_timeout(now)─ when poll_timeout() is due
//!                         └───────────┘ ──poll_event()───────▶ trace events, stats()
//! ```
//!
//! After any input, call `poll_transmit` until it returns `None`, then sleep until
//! `poll_timeout` (or the next input). Backpressure is `write`'s return value: it takes only
//! what fits the send buffer, which empties as the peer acknowledges.
//!
//! The transports: [`classic`] (no acks, loss is loss), [`stop_and_wait`] (the course's
//! alternating bit), [`go_back_n`] (a window, cumulative acks) and [`selective_repeat`] (a
//! window, selective acks, out-of-order frames held). The C/OK/NOK lifecycle and the choice
//! of ids are not here: they are the tunnel's. The end of the stream is: [`Transport::finish`]
//! sequences a close after the data, and [`Transport::peer_finished`] says the peer's close
//! arrived in order (see each transport for how the close travels on its wire).

pub mod classic;
pub mod congestion;
pub mod go_back_n;
pub mod pacing;
pub mod rto;
pub mod selective_repeat;
pub mod stop_and_wait;
pub mod totals;
pub mod window;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::wire::{ConnId, Frame, SackBlocks, Seq, WireMode};
pub use congestion::{CongestionControl, CongestionCut, CongestionPhase};
pub use rto::{RtoConfig, RtoEstimator};

/// How a transport is sized and timed. [`TransportConfig::for_mode`] gives the defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TransportConfig {
    /// Frames in flight at most (the sender's window; stop-and-wait always has one), and
    /// frames the receiver holds at most, out of order or waiting to be read.
    pub window: u32,
    /// Bytes accepted from the application and not yet acknowledged (or, in classic mode,
    /// not yet sent): the backpressure bound of [`Transport::write`].
    pub send_buffer: usize,
    /// Stream bytes per data frame (the wire mode's maximum by default).
    pub max_payload: usize,
    /// The retransmission timer.
    pub rto: RtoConfig,
    /// Consecutive timer expiries with no ack at all from the peer before the transport gives
    /// up ([`Transport::gave_up`]). With backoff, the default 12 means about a minute and a half
    /// (at 20% loss each way, 12 misses in a row happen to one frame in 200,000; 8 to one
    /// in 3,500, which a stop-and-wait download of a few hundred frames would meet).
    pub max_timeouts: u32,
    /// Duplicate acks (or frames selectively acked above a hole) that trigger a fast
    /// retransmit.
    pub dup_ack_threshold: u32,
    /// Stop-and-wait only: how many times an unacknowledged close (`X`) is sent, one RTO
    /// apart, before we stop once the peer's own close has arrived (course peers neither ack
    /// nor resend `X`). Until then, or to a peer that resent its own (one of ours), it goes
    /// until acked or given up. See [`stop_and_wait`].
    pub close_sends: u32,
    /// The first sequence number this side sends (extended modes): the ISN of our `C` or
    /// `OK`, random per connection (tests use one near 2³² to cross the wrap).
    pub initial_seq: Seq,
    /// The first sequence number the peer sends: the ISN in its `C` or `OK`.
    pub peer_initial_seq: Seq,
    /// Go-Back-N and Selective Repeat: the congestion control (`--cc`); `NewReno` by default,
    /// `None` for the fixed window of the course.
    pub congestion: CongestionControl,
}

impl TransportConfig {
    /// The default window (`--window`) of a mode, in frames. Selective Repeat: 256, so that
    /// the holes a lossy link makes do not stall the sender (at 5% loss, 64 frames gave about
    /// 1.9× kcptun's goodput and 256 about 2.3×; BENCHMARKS.md). Go-Back-N: 64, since it
    /// resends everything behind each loss, a larger window costs more than it gains.
    /// Stop-and-wait sends one frame at a time whatever the window, which then only bounds
    /// what its receiver holds.
    pub const fn default_window(mode: WireMode) -> u32 {
        match mode {
            WireMode::SelectiveRepeat => 256,
            _ => 64,
        }
    }

    /// Defaults for a mode: a window of [`TransportConfig::default_window`] frames, a send
    /// buffer of one window of full frames, the mode's largest payload, an RFC 6298 timer.
    pub fn for_mode(mode: WireMode) -> Self {
        let window = Self::default_window(mode);
        TransportConfig {
            window,
            send_buffer: window as usize * mode.max_payload(),
            max_payload: mode.max_payload(),
            rto: RtoConfig::default(),
            max_timeouts: 12,
            dup_ack_threshold: 3,
            close_sends: 3,
            initial_seq: Seq::ZERO,
            peer_initial_seq: Seq::ZERO,
            congestion: CongestionControl::default(),
        }
    }
}

/// Why a frame was sent again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RetransmitCause {
    /// Its retransmission timer expired.
    Timeout,
    /// Duplicate acks, selective acks above it, or acks of frames sent after it (RACK) said
    /// it was lost.
    FastRetransmit,
    /// Nothing was acked for two round trips with frames out: the last one (Go-Back-N: the
    /// oldest) is sent again to draw an ack that shows what the tail lost (RFC 8985's TLP).
    Probe,
}

impl RetransmitCause {
    pub fn label(self) -> &'static str {
        match self {
            RetransmitCause::Timeout => "timeout",
            RetransmitCause::FastRetransmit => "fast retransmit",
            RetransmitCause::Probe => "tail-loss probe",
        }
    }
}

/// A frame the transport wants sent. It owns its bytes: a data frame may be sent again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutFrame {
    Data {
        seq: Seq,
        payload: Bytes,
        /// Set when this is a retransmission, with its cause.
        retransmit: Option<RetransmitCause>,
    },
    Ack {
        ack: Seq,
        window: u32,
        sack: SackBlocks,
    },
    Close {
        seq: Seq,
        retransmit: Option<RetransmitCause>,
    },
}

impl OutFrame {
    /// The wire frame for connection `id`, borrowing the payload.
    pub fn frame(&self, id: ConnId) -> Frame<'_> {
        match self {
            OutFrame::Data { seq, payload, .. } => Frame::Data {
                id,
                seq: *seq,
                payload,
            },
            OutFrame::Ack { ack, window, sack } => Frame::Ack {
                id,
                ack: *ack,
                window: *window,
                sack: *sack,
            },
            OutFrame::Close { seq, .. } => Frame::Close { id, seq: *seq },
        }
    }

    /// The sequence number of a data or close frame; the ack number of an ack.
    pub fn seq(&self) -> Seq {
        match self {
            OutFrame::Data { seq, .. } | OutFrame::Close { seq, .. } => *seq,
            OutFrame::Ack { ack, .. } => *ack,
        }
    }

    /// Whether (and why) this is a retransmission.
    pub fn retransmit(&self) -> Option<RetransmitCause> {
        match self {
            OutFrame::Data { retransmit, .. } | OutFrame::Close { retransmit, .. } => *retransmit,
            OutFrame::Ack { .. } => None,
        }
    }
}

/// Something a teacher wants to see in the trace. Drained with [`Transport::poll_event`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "event")]
pub enum TransportEvent {
    /// A data (or close) frame was sent again.
    Retransmitted { seq: Seq, cause: RetransmitCause },
    /// A data frame arrived that was already delivered (or held): acked again, dropped.
    DuplicateDiscarded { seq: Seq },
    /// An empty data frame below the window arrived: the peer's keepalive probe (see
    /// [`Transport::keepalive_seq`]), answered with an ack. Not a duplicate: nothing was
    /// sent twice.
    KeepaliveAnswered { seq: Seq },
    /// A data frame arrived ahead of a gap and is kept until the gap fills (Selective Repeat).
    HeldOutOfOrder { seq: Seq },
    /// A data frame arrived that this receiver cannot keep: ahead of a gap in Go-Back-N,
    /// beyond the window, or with the receive buffer full. The sender will send it again.
    Discarded { seq: Seq },
    /// Classic only: a data frame was dropped because the application is not reading.
    Overflow { len: usize },
    /// In-order bytes were handed to the application side.
    Delivered { seq: Seq, len: usize },
    /// Data stayed unacknowledged through `max_timeouts` expiries in a row: the transport
    /// stopped.
    GaveUp { timeouts: u32, oldest: Seq },
    /// The congestion window was cut (Go-Back-N, Selective Repeat with `--cc tolerant` or
    /// `newreno`): halved on a loss, down to one frame on a timeout (`tolerant`: halved on a
    /// timeout without a queue). `ssthresh` is the new slow-start threshold.
    CongestionCut {
        cause: CongestionCut,
        cwnd: u32,
        ssthresh: u32,
    },
    /// Slow start ended before any loss: a round's smallest round trip grew by
    /// `rise_micros` over the last round's, a queue building (`HyStart++`, see
    /// [`congestion`]). The window stays at `cwnd` and grows by one frame per round trip.
    SlowStartEnded { cwnd: u32, rise_micros: u64 },
}

/// Why a transport stopped trying.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct GiveUp {
    /// Consecutive timer expiries with no ack from the peer.
    pub timeouts: u32,
    /// The oldest unacknowledged sequence number.
    pub oldest: Seq,
}

impl std::fmt::Display for GiveUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "no ack from the peer after {} retransmission timeouts in a row (oldest unacked seq {})",
            self.timeouts, self.oldest
        )
    }
}

/// What one transport has done so far, and where it stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct TransportStats {
    /// Every frame handed out by `poll_transmit`: data, acks, closes, retransmissions.
    pub frames_sent: u64,
    /// Data frames, retransmissions included.
    pub data_frames_sent: u64,
    pub acks_sent: u64,
    /// Retransmissions whose timer expired.
    pub retransmits_timeout: u64,
    /// Retransmissions on duplicate or selective-ack evidence (and RACK's).
    pub retransmits_fast: u64,
    /// Tail-loss probes: a frame sent again when nothing was acked for two round trips.
    pub retransmits_probe: u64,
    /// Payload bytes sent, retransmissions included (efficiency = delivered at the peer over
    /// this).
    pub bytes_sent: u64,
    /// Payload bytes the peer acknowledged.
    pub bytes_acked: u64,
    /// Data frames received again and dropped.
    pub duplicates_discarded: u64,
    /// Data frames held out of order (Selective Repeat), each counted once.
    pub out_of_order_held: u64,
    /// Data frames dropped on arrival (out of order in Go-Back-N, beyond the window, no room,
    /// or classic overflow).
    pub discarded: u64,
    /// In-order payload bytes handed to the application side.
    pub bytes_delivered: u64,
    /// Smoothed round-trip time, once measured.
    pub srtt: Option<Duration>,
    /// Round-trip time variation, once measured.
    pub rttvar: Option<Duration>,
    /// Round-trip samples taken so far (frames acked that were sent once: Karn's rule). Each
    /// one is handed out by [`Transport::poll_rtt_sample`].
    pub rtt_samples: u64,
    /// The current retransmission timeout.
    pub rto: Duration,
    /// Frames sent and not yet acknowledged (the window in use).
    pub in_flight: u32,
    /// The peer's last advertised receive window, in frames.
    pub peer_window: u32,
    /// The congestion window, in frames (Go-Back-N and Selective Repeat; with `--cc none`
    /// the fixed window).
    pub cwnd: Option<u32>,
    /// The slow-start threshold, once a loss set it.
    pub ssthresh: Option<u32>,
    /// Where the congestion controller stands.
    pub congestion: Option<CongestionPhase>,
    /// Times the congestion window was cut (losses and timeouts).
    pub congestion_cuts: u64,
    /// `--cc tolerant`: loss events and timeouts that came without a queue in the round
    /// trip, so random loss: the window was not cut (a timeout among them halved it).
    pub random_losses: u64,
    /// Frames held out of order right now.
    pub held: u32,
    /// Frames delivered in order and not yet read by the application.
    pub readable: u32,
    /// Events dropped because nobody drained [`Transport::poll_event`].
    pub events_dropped: u64,
}

/// The reliability machine of one tunnel connection, one variant per [`WireMode`].
///
/// An enum rather than a trait object: the tunnel stores one per connection by value, calls
/// are static, and every mode answers the same questions.
#[derive(Debug)]
pub enum Transport {
    Classic(classic::Classic),
    StopAndWait(stop_and_wait::StopAndWait),
    GoBackN(go_back_n::GoBackN),
    SelectiveRepeat(selective_repeat::SelectiveRepeat),
}

macro_rules! each {
    ($self:ident, $t:ident => $body:expr) => {
        match $self {
            Transport::Classic($t) => $body,
            Transport::StopAndWait($t) => $body,
            Transport::GoBackN($t) => $body,
            Transport::SelectiveRepeat($t) => $body,
        }
    };
}

impl Transport {
    /// A fresh transport for `mode`.
    pub fn new(mode: WireMode, config: TransportConfig) -> Self {
        match mode {
            WireMode::Classic => Transport::Classic(classic::Classic::new(config)),
            WireMode::StopAndWait => {
                Transport::StopAndWait(stop_and_wait::StopAndWait::new(config))
            }
            WireMode::GoBackN => Transport::GoBackN(go_back_n::GoBackN::new(config)),
            WireMode::SelectiveRepeat => {
                Transport::SelectiveRepeat(selective_repeat::SelectiveRepeat::new(config))
            }
        }
    }

    /// Takes as many of `data`'s bytes as the send buffer has room for and returns how many:
    /// the rest must wait (backpressure). Nothing is taken after [`Transport::finish`].
    pub fn write(&mut self, data: &[u8]) -> usize {
        each!(self, t => t.write(data))
    }

    /// Bytes [`Transport::write`] would take right now.
    pub fn send_room(&self) -> usize {
        each!(self, t => t.send_room())
    }

    /// The application has no more to send: a close follows the data.
    pub fn finish(&mut self) {
        each!(self, t => t.finish());
    }

    /// Feeds a frame of this connection from the peer. Data, ack and close frames are the
    /// transport's; C/OK/NOK are the tunnel's and are ignored here.
    pub fn handle_frame(&mut self, now: Instant, frame: &Frame<'_>) {
        each!(self, t => t.handle_frame(now, frame));
    }

    /// The next frame to send, if any. Call until `None` after every input.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<OutFrame> {
        each!(self, t => t.poll_transmit(now))
    }

    /// When [`Transport::handle_timeout`] should be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        each!(self, t => t.poll_timeout())
    }

    /// The time given by [`Transport::poll_timeout`] has come (calling it early is harmless).
    pub fn handle_timeout(&mut self, now: Instant) {
        each!(self, t => t.handle_timeout(now));
    }

    /// Copies delivered in-order bytes into `buf`; returns how many (0: nothing to read).
    pub fn read(&mut self, buf: &mut [u8]) -> usize {
        each!(self, t => t.read(buf))
    }

    /// The next chunk of delivered in-order bytes, without copying.
    pub fn poll_delivered(&mut self) -> Option<Bytes> {
        each!(self, t => t.poll_delivered())
    }

    /// Up to `max` chunks of delivered in-order bytes, oldest first, into `out`, without
    /// taking them (clones of `Bytes`: reference counts, no bytes copied): for one vectored
    /// write. The transport still counts them as unread, so its receive window stays what the
    /// peer was told while the write is tried; [`Transport::consume_delivered`] then takes what
    /// the write took.
    pub fn peek_delivered(&mut self, max: usize, out: &mut Vec<Bytes>) {
        each!(self, t => t.inbox_mut().peek(max, out));
    }

    /// Takes the first `n` delivered bytes (a write took them), as [`Transport::read`] would.
    pub fn consume_delivered(&mut self, n: usize) {
        each!(self, t => t.consume_delivered(n));
    }

    /// Delivered in-order bytes not yet read.
    pub fn unread_bytes(&mut self) -> usize {
        each!(self, t => t.inbox_mut().bytes())
    }

    /// Whether the peer's close arrived, after all its data (which may still be unread).
    pub fn peer_finished(&self) -> bool {
        each!(self, t => t.peer_finished())
    }

    /// Whether everything is over both ways: our data and close acknowledged (or, without
    /// acks, sent), the peer's close received and all its data read. Also true after a
    /// give-up.
    pub fn is_done(&self) -> bool {
        each!(self, t => t.is_done())
    }

    /// Set once the transport stopped because the peer stopped acknowledging.
    pub fn gave_up(&self) -> Option<GiveUp> {
        each!(self, t => t.gave_up())
    }

    /// The extended modes' keepalive: the sequence number an empty `D` should carry to
    /// probe an idle connection (a duplicate the peer acknowledges; a peer that lost the
    /// connection answers `NOK`). `None` while data is in flight, after a give-up, and in
    /// the course's modes (classic probes differently; stop-and-wait does not probe).
    pub fn keepalive_seq(&self) -> Option<Seq> {
        match self {
            Transport::GoBackN(t) => t.keepalive_seq(),
            Transport::SelectiveRepeat(t) => t.keepalive_seq(),
            Transport::Classic(_) | Transport::StopAndWait(_) => None,
        }
    }

    /// The extended modes, once [`Transport::is_done`] after a clean close: the ack this side
    /// sent for the peer's `X`, which a proxy keeps after forgetting the connection to answer
    /// a repeat of that `X` (its ack may have been lost; see [`crate::tunnel::finished`]).
    /// `None` before, after a give-up, and in the course's modes (stop-and-wait answers a
    /// stray `X` by its own rule, classic does not ack).
    pub fn closing_ack(&self) -> Option<OutFrame> {
        match self {
            Transport::GoBackN(t) => t.closing_ack(),
            Transport::SelectiveRepeat(t) => t.closing_ack(),
            Transport::Classic(_) | Transport::StopAndWait(_) => None,
        }
    }

    /// Counters and the current timer and window figures.
    pub fn stats(&self) -> TransportStats {
        each!(self, t => t.stats())
    }

    /// The next trace event, oldest first.
    pub fn poll_event(&mut self) -> Option<TransportEvent> {
        each!(self, t => t.events_mut().pop())
    }

    /// The next round-trip sample the retransmission timer took, oldest first: one per
    /// frame acked that was sent only once (Karn's rule). Classic mode has no acks and never
    /// has one. The tunnel's pump drains these into the endpoint's RTT histogram.
    pub fn poll_rtt_sample(&mut self) -> Option<Duration> {
        match self {
            Transport::Classic(_) => None,
            Transport::StopAndWait(t) => t.rto_mut().take_sample(),
            Transport::GoBackN(t) => t.rto_mut().take_sample(),
            Transport::SelectiveRepeat(t) => t.rto_mut().take_sample(),
        }
    }

    /// Payload bytes this transport holds right now: taken with [`Transport::write`] and not
    /// yet acknowledged (without acks: not yet sent), plus received and not yet read (in
    /// order, or held out of order). Bounded by `send_buffer` + `window` × the largest
    /// payload the peer may send: the flow-control bound of one connection.
    pub fn buffered_bytes(&self) -> usize {
        each!(self, t => t.buffered_bytes())
    }
}

/// Bytes the application wrote that are not yet in a frame.
#[derive(Debug, Default)]
pub struct Outbox {
    unsent: BytesMut,
    finished: bool,
}

impl Outbox {
    /// Takes what fits `room` bytes.
    fn write(&mut self, data: &[u8], room: usize) -> usize {
        if self.finished {
            return 0;
        }
        let n = data.len().min(room);
        self.unsent.extend_from_slice(&data[..n]);
        n
    }

    /// The next frame's payload, up to `max` bytes.
    fn take(&mut self, max: usize) -> Option<Bytes> {
        if self.unsent.is_empty() {
            return None;
        }
        let n = self.unsent.len().min(max);
        Some(self.unsent.split_to(n).freeze())
    }

    fn len(&self) -> usize {
        self.unsent.len()
    }
}

/// In-order bytes waiting for the application, at most `capacity` frames' worth.
#[derive(Debug)]
pub struct Inbox {
    chunks: VecDeque<Bytes>,
    capacity: u32,
    /// Bytes in `chunks`.
    bytes: usize,
}

impl Inbox {
    fn new(capacity: u32) -> Self {
        Inbox {
            chunks: VecDeque::new(),
            capacity: capacity.max(1),
            bytes: 0,
        }
    }

    /// Frames it can still take.
    fn room(&self) -> u32 {
        self.capacity.saturating_sub(self.frames())
    }

    fn frames(&self) -> u32 {
        u32::try_from(self.chunks.len()).unwrap_or(u32::MAX)
    }

    fn push(&mut self, bytes: Bytes) {
        if !bytes.is_empty() {
            self.bytes += bytes.len();
            self.chunks.push_back(bytes);
        }
    }

    fn pop(&mut self) -> Option<Bytes> {
        let chunk = self.chunks.pop_front()?;
        self.bytes -= chunk.len();
        Some(chunk)
    }

    /// Bytes waiting to be read.
    fn bytes(&self) -> usize {
        self.bytes
    }

    /// Clones up to `max` chunks, oldest first, into `out`, leaving them here.
    fn peek(&self, max: usize, out: &mut Vec<Bytes>) {
        out.extend(self.chunks.iter().take(max).cloned());
    }

    /// Drops the first `n` bytes (all of them if there are fewer).
    fn consume(&mut self, mut n: usize) {
        while n > 0 {
            let Some(front) = self.chunks.front_mut() else {
                break;
            };
            let take = front.len().min(n);
            bytes::Buf::advance(front, take);
            n -= take;
            self.bytes -= take;
            if front.is_empty() {
                self.chunks.pop_front();
            }
        }
    }

    fn read(&mut self, buf: &mut [u8]) -> usize {
        let mut n = 0;
        while n < buf.len() {
            let Some(front) = self.chunks.front_mut() else {
                break;
            };
            let take = front.len().min(buf.len() - n);
            buf[n..n + take].copy_from_slice(&front.split_to(take));
            n += take;
            self.bytes -= take;
            if front.is_empty() {
                self.chunks.pop_front();
            }
        }
        n
    }

    fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }
}

/// The trace events not yet drained, bounded.
#[derive(Debug, Default)]
pub struct Events {
    queue: VecDeque<TransportEvent>,
    dropped: u64,
}

impl Events {
    /// Events kept for the caller at most; older ones are kept, newer ones counted and lost.
    const CAPACITY: usize = 1024;

    fn push(&mut self, event: TransportEvent) {
        if self.queue.len() < Self::CAPACITY {
            self.queue.push_back(event);
        } else {
            self.dropped += 1;
        }
    }

    fn pop(&mut self) -> Option<TransportEvent> {
        self.queue.pop_front()
    }
}

/// A frame sent and not yet acknowledged: a data payload, or the close (`fin`).
#[derive(Debug)]
pub struct Segment {
    seq: Seq,
    payload: Bytes,
    fin: bool,
    /// When it was first sent: the RTT sample's start, if it is never sent again.
    first_sent: Instant,
    /// When it was last sent: its own timer's start (Selective Repeat).
    last_sent: Instant,
    /// Sent more than once: no RTT sample from it (Karn's rule).
    retransmitted: bool,
    /// Selective Repeat: the peer holds it (a SACK block covered it).
    sacked: bool,
    /// Waiting to be sent again, and why.
    resend: Option<RetransmitCause>,
}

impl Segment {
    fn new(seq: Seq, payload: Bytes, fin: bool, now: Instant) -> Self {
        Segment {
            seq,
            payload,
            fin,
            first_sent: now,
            last_sent: now,
            retransmitted: false,
            sacked: false,
            resend: None,
        }
    }

    /// The frame that (re)sends it.
    fn out(&self, retransmit: Option<RetransmitCause>) -> OutFrame {
        if self.fin {
            OutFrame::Close {
                seq: self.seq,
                retransmit,
            }
        } else {
            OutFrame::Data {
                seq: self.seq,
                payload: self.payload.clone(),
                retransmit,
            }
        }
    }
}

/// Counts a frame handed to the caller, and traces it if it is a retransmission.
fn count_sent(stats: &mut TransportStats, events: &mut Events, frame: &OutFrame) {
    if let Some(cause) = frame.retransmit() {
        events.push(TransportEvent::Retransmitted {
            seq: frame.seq(),
            cause,
        });
    }
    stats.frames_sent += 1;
    match frame {
        OutFrame::Data {
            payload,
            retransmit,
            ..
        } => {
            stats.data_frames_sent += 1;
            stats.bytes_sent += payload.len() as u64;
            count_retransmit(stats, *retransmit);
        }
        OutFrame::Ack { .. } => stats.acks_sent += 1,
        OutFrame::Close { retransmit, .. } => count_retransmit(stats, *retransmit),
    }
}

fn count_retransmit(stats: &mut TransportStats, retransmit: Option<RetransmitCause>) {
    match retransmit {
        Some(RetransmitCause::Timeout) => stats.retransmits_timeout += 1,
        Some(RetransmitCause::FastRetransmit) => stats.retransmits_fast += 1,
        Some(RetransmitCause::Probe) => stats.retransmits_probe += 1,
        None => {}
    }
}

/// Acks owed to the peer by a windowed receiver: one for in-order progress (coalesced),
/// and one each, up to a bound, for frames that arrived out of order or twice (the sender
/// counts those as duplicate acks).
#[derive(Debug, Default)]
pub struct AcksOwed {
    progress: bool,
    duplicates: u32,
}

impl AcksOwed {
    /// Enough duplicate acks to trigger any sane fast-retransmit threshold.
    const MAX_DUPLICATES: u32 = 8;

    fn progress(&mut self) {
        self.progress = true;
    }

    fn duplicate(&mut self) {
        self.duplicates = (self.duplicates + 1).min(Self::MAX_DUPLICATES);
    }

    fn is_owed(&self) -> bool {
        self.progress || self.duplicates > 0
    }

    /// Takes one owed ack, if any.
    fn take(&mut self) -> bool {
        if self.duplicates > 0 {
            self.duplicates -= 1;
            self.progress = false;
            true
        } else {
            std::mem::take(&mut self.progress)
        }
    }
}

#[cfg(test)]
mod sim;
