//! What Go-Back-N and Selective Repeat share: a sliding-window sender over 32-bit sequence
//! numbers, and the glue between it and a receiver. The two differ in what the sender
//! resends ([`Policy`]) and in what the receiver keeps ([`Receiver`]).
//!
//! The sender keeps every unacknowledged frame (data, and the close in its place after the
//! data, like TCP's FIN) in `in_flight`, oldest first, at most `min(window, peer's window)`
//! of them; the peer's cumulative ack removes them from the front. A frame due to be resent
//! is marked (`Segment::resend`) and `poll_transmit` sends the lowest marked one first.
//!
//! Loss recovery, as a modern transport does it (RFC 8985, RACK-TLP), so that the 200 ms
//! floor of the retransmission timer is the last resort and not the common case:
//! - **Fast retransmit**: `dup_ack_threshold` duplicate acks (Go-Back-N), or that many frames
//!   selectively acked above a frame sent once (Selective Repeat, RFC 6675's `DupThresh`).
//! - **RACK** (recent acknowledgement): a frame is lost when a frame *sent after it* was
//!   delivered and a reordering window (a quarter of the smallest round trip) has passed. Send
//!   time, not sequence number, so a lost retransmission is found the same way as a lost
//!   original, by the acks of what was sent after it, instead of waiting for its timer.
//! - **Tail-loss probe**: when nothing is acked for two smoothed round trips while frames are
//!   out, one frame is sent again (once more after twice that wait if still nothing comes) (Selective Repeat: the last one; Go-Back-N: the oldest). Its
//!   ack tells what the tail lost (or that only acks were lost), and RACK repairs it: a loss
//!   among the last frames of a burst costs a few round trips, not a timeout. Not with a
//!   fixed timer (`--rto`): the course's protocol has none, and its timer is the lesson.
//! - **Timeout**: the timer (RFC 6298, backed off) catches the rest.
//!
//! Congestion control ([`super::congestion`]) bounds the frames in the network (the "pipe":
//! sent, neither acked nor selectively acked nor found lost) by the congestion window; a
//! tail-loss probe, and the first retransmission of a loss event or a timeout, go regardless
//! (RFC 6675, RFC 5681). With congestion control on, the window's frames are also paced
//! over the round trip ([`super::pacing`]) rather than sent in one burst.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::congestion::{Congestion, CongestionCut};
use super::pacing::Pacer;
use super::{
    Events, GiveUp, Inbox, OutFrame, Outbox, RetransmitCause, RtoConfig, RtoEstimator, Segment,
    TransportConfig, TransportEvent, TransportStats, count_sent,
};
use crate::wire::{Frame, SackBlocks, Seq};

/// The shortest tail-loss probe timeout: two smoothed round trips on loopback are a fraction
/// of a millisecond, below what a busy machine's scheduler can promise.
const PROBE_FLOOR: Duration = Duration::from_millis(2);

/// Tail-loss probes in a row with no news from the peer before the timer takes over. RFC 8985
/// sends one; a second (after twice the wait) still costs far less than a 200 ms timeout when
/// a probe or its ack is lost, which at 20% loss each way happens to a third of them.
const MAX_PROBES: u32 = 2;

/// How the sender recovers a loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// One timer for the oldest frame; on expiry or on `dup_ack_threshold` duplicate acks,
    /// resend everything in flight (the receiver dropped what followed the hole).
    GoBackN,
    /// A timer per frame; resend only the frames that expired, or that have
    /// `dup_ack_threshold` frames selectively acked above them (SACK evidence). Frames the
    /// peer holds are never resent.
    SelectiveRepeat,
}

/// The receiving half: turns data frames into in-order bytes and says what to ack.
pub trait Receiver: std::fmt::Debug {
    fn new(config: &TransportConfig) -> Self;
    /// A data frame (`fin`: the peer's close) arrived.
    fn on_data(
        &mut self,
        seq: Seq,
        payload: &[u8],
        fin: bool,
        stats: &mut TransportStats,
        events: &mut Events,
    );
    /// The next ack to send, if one is owed.
    fn poll_ack(&mut self) -> Option<OutFrame>;
    fn inbox_mut(&mut self) -> &mut Inbox;
    /// The application read: owe a window update if the window reopened.
    fn after_read(&mut self);
    fn peer_finished(&self) -> bool;
    /// Once the peer's close has arrived: the ack that answers a repeat of it.
    fn final_ack(&self) -> Option<OutFrame>;
    /// No ack owed and nothing left to read.
    fn is_drained(&self) -> bool;
    /// Frames held out of order now.
    fn held(&self) -> u32;
    /// Frames waiting to be read.
    fn readable(&self) -> u32;
    /// Payload bytes held: out of order, or waiting to be read.
    fn buffered_bytes(&self) -> usize;
}

/// RACK's state (RFC 8985): the most recently sent frame known to be delivered.
#[derive(Clone, Copy, Debug, Default)]
struct Rack {
    /// When the most recently sent delivered frame was (last) sent.
    xmit: Option<Instant>,
    /// The round trip of that frame.
    rtt: Duration,
    /// The smallest round trip seen: the reordering window is a quarter of it, and an ack
    /// sooner than it after a retransmission must be the original's.
    min_rtt: Option<Duration>,
    /// When a frame sent before `xmit` but too recently to be called lost will be.
    reorder_timer: Option<Instant>,
}

impl Rack {
    fn reorder_window(&self) -> Duration {
        self.min_rtt.map_or(Duration::ZERO, |rtt| rtt / 4)
    }

    /// A frame last sent at `sent` (sent again if `retransmitted`) was delivered at `now`.
    fn on_delivered(&mut self, sent: Instant, retransmitted: bool, now: Instant) {
        let rtt = now.saturating_duration_since(sent);
        // An ack sooner than the shortest round trip after a retransmission is the
        // original's: it says nothing about when the retransmission was delivered.
        if retransmitted && self.min_rtt.is_some_and(|min| rtt < min) {
            return;
        }
        if self.xmit.is_none_or(|xmit| sent > xmit) {
            self.xmit = Some(sent);
            self.rtt = rtt;
        }
    }

    fn on_rtt_sample(&mut self, rtt: Duration) {
        self.min_rtt = Some(self.min_rtt.map_or(rtt, |min| min.min(rtt)));
    }
}

/// A windowed transport: the shared sender and a receiver `R`.
#[derive(Debug)]
pub struct Windowed<R> {
    config: TransportConfig,
    policy: Policy,
    rto: RtoEstimator,
    congestion: Congestion,
    rack: Rack,
    outbox: Outbox,
    /// The oldest unacknowledged sequence number (the front of `in_flight`).
    snd_una: Seq,
    /// The next new sequence number.
    snd_nxt: Seq,
    in_flight: VecDeque<Segment>,
    /// Payload bytes in `in_flight`.
    in_flight_bytes: usize,
    /// Frames in `in_flight` the peer holds (selectively acked).
    sacked_count: u32,
    /// Frames in `in_flight` marked to be sent again.
    marked_count: u32,
    /// Retransmissions that may go whatever the congestion window: the first of a loss
    /// event and of a timeout.
    cwnd_bypass: u32,
    /// The close has its place in the sequence.
    fin_queued: bool,
    /// The peer's last advertised window, in frames from `snd_una`.
    peer_window: u32,
    /// Go-Back-N's single timer (for the oldest frame).
    timer: Option<Instant>,
    /// Duplicate acks in a row at the current `snd_una`. A fast retransmit fires when this
    /// reaches the threshold, so at most once per hole: the duplicates that keep coming for
    /// the same hole cannot fire it again, and a new hole (a new `snd_una`) can.
    dup_acks: u32,
    /// Selective Repeat: when the RTO was last backed off (at most once per RTO).
    last_backoff: Option<Instant>,
    /// When the tail-loss probe's timer started: the last data sent or ack that told
    /// something new.
    probe_base: Option<Instant>,
    /// Probes sent since an ack last told something new: at most [`MAX_PROBES`], each
    /// waiting twice as long as the one before, then the timer's turn.
    probes_out: u32,
    /// Timer expiries in a row with no ack from the peer.
    timeouts: u32,
    /// Spreads the window's frames over the round trip; made at the first round-trip sample.
    pacer: Option<Pacer>,
    /// When the pacer lets the frame it held back go (none held back: `None`).
    paced_until: Option<Instant>,
    gave_up: Option<GiveUp>,
    receiver: R,
    events: Events,
    stats: TransportStats,
}

impl<R: Receiver> Windowed<R> {
    pub fn with_policy(config: TransportConfig, policy: Policy) -> Self {
        Windowed {
            config,
            policy,
            rto: RtoEstimator::new(config.rto),
            congestion: Congestion::new(config.congestion, config.window),
            rack: Rack::default(),
            outbox: Outbox::default(),
            snd_una: config.initial_seq,
            snd_nxt: config.initial_seq,
            in_flight: VecDeque::new(),
            in_flight_bytes: 0,
            sacked_count: 0,
            marked_count: 0,
            cwnd_bypass: 0,
            fin_queued: false,
            peer_window: config.window,
            timer: None,
            dup_acks: 0,
            last_backoff: None,
            probe_base: None,
            probes_out: 0,
            timeouts: 0,
            pacer: None,
            paced_until: None,
            gave_up: None,
            receiver: R::new(&config),
            events: Events::default(),
            stats: TransportStats::default(),
        }
    }

    pub(super) fn send_room(&self) -> usize {
        self.config
            .send_buffer
            .saturating_sub(self.outbox.len() + self.in_flight_bytes)
    }

    pub(super) fn write(&mut self, data: &[u8]) -> usize {
        if self.gave_up.is_some() {
            return 0;
        }
        let room = self.send_room();
        self.outbox.write(data, room)
    }

    pub(super) fn finish(&mut self) {
        self.outbox.finished = true;
    }

    pub(super) fn handle_frame(&mut self, now: Instant, frame: &Frame<'_>) {
        if self.gave_up.is_some() {
            return;
        }
        match *frame {
            Frame::Data { seq, payload, .. } => {
                self.receiver
                    .on_data(seq, payload, false, &mut self.stats, &mut self.events);
            }
            Frame::Close { seq, .. } => {
                self.receiver
                    .on_data(seq, &[], true, &mut self.stats, &mut self.events);
            }
            Frame::Ack {
                ack, window, sack, ..
            } => self.on_ack(now, ack, window, &sack),
            _ => {}
        }
    }

    /// Frames in the network as far as the sender knows: sent, not acked, not held by the
    /// peer, not found lost (RFC 6675's pipe).
    fn pipe(&self) -> u32 {
        u32::try_from(self.in_flight.len())
            .unwrap_or(u32::MAX)
            .saturating_sub(self.sacked_count + self.marked_count)
    }

    /// Marks a segment to be sent again; false if it already is or the peer holds it.
    fn mark(&mut self, index: usize, cause: RetransmitCause) -> bool {
        let segment = &mut self.in_flight[index];
        if segment.sacked || segment.resend.is_some() {
            return false;
        }
        segment.resend = Some(cause);
        self.marked_count += 1;
        true
    }

    fn on_ack(&mut self, now: Instant, ack: Seq, window: u32, sack: &SackBlocks) {
        // The peer is alive, whatever this ack says.
        self.timeouts = 0;
        if ack.before(self.snd_una) || self.snd_nxt.before(ack) {
            return; // older than what we know, or acking what we never sent
        }
        let window_changed = window != self.peer_window;
        self.peer_window = window;
        let mut sample = None;
        let mut newly_delivered = 0u32;
        let advanced = ack != self.snd_una;
        while self.snd_una.before(ack) {
            let segment = self
                .in_flight
                .pop_front()
                .expect("in flight down to snd_una");
            self.in_flight_bytes -= segment.payload.len();
            self.stats.bytes_acked += segment.payload.len() as u64;
            if segment.sacked {
                self.sacked_count -= 1;
            } else {
                newly_delivered += 1;
                self.rack
                    .on_delivered(segment.last_sent, segment.retransmitted, now);
            }
            if segment.resend.is_some() {
                self.marked_count -= 1;
            }
            if !segment.retransmitted {
                sample = Some(segment.first_sent);
            }
            self.snd_una = self.snd_una.add(1);
        }
        if self.policy == Policy::SelectiveRepeat {
            // A block must lie within what is in flight; anything else is a confused peer.
            let valid = |b: &crate::wire::SackBlock| {
                self.snd_una.before(b.end)
                    && b.start.before(b.end)
                    && !self.snd_nxt.before(b.end)
                    && !b.start.before(self.snd_una)
            };
            for block in sack.iter().filter(valid) {
                let first = block.start.since(self.snd_una) as usize;
                let last = (block.end.since(self.snd_una) as usize).min(self.in_flight.len());
                for segment in self.in_flight.range_mut(first..last) {
                    if segment.sacked {
                        continue;
                    }
                    segment.sacked = true;
                    self.sacked_count += 1;
                    if segment.resend.take().is_some() {
                        self.marked_count -= 1;
                    }
                    newly_delivered += 1;
                    self.rack
                        .on_delivered(segment.last_sent, segment.retransmitted, now);
                    if !segment.retransmitted {
                        sample =
                            Some(sample.map_or(segment.first_sent, |s: Instant| {
                                s.max(segment.first_sent)
                            }));
                    }
                }
            }
        }
        if let Some(sent) = sample {
            let rtt = now.saturating_duration_since(sent);
            self.rto.on_sample(rtt);
            self.rack.on_rtt_sample(rtt);
            if let Some(rise) = self.congestion.on_rtt_sample(rtt) {
                self.events.push(TransportEvent::SlowStartEnded {
                    cwnd: self.congestion.window(),
                    rise_micros: u64::try_from(rise.as_micros()).unwrap_or(u64::MAX),
                });
            }
            self.last_backoff = None;
        }
        if newly_delivered > 0 {
            // Something new arrived: a probe did its job (or was not needed).
            self.probes_out = 0;
            self.probe_base = Some(now);
        }
        if advanced {
            self.dup_acks = 0;
            self.timer = (!self.in_flight.is_empty()).then(|| now + self.rto.rto());
        } else if !self.in_flight.is_empty() && !window_changed && newly_delivered == 0 {
            self.dup_acks += 1;
        }
        self.congestion
            .on_ack(newly_delivered, self.snd_una, self.snd_nxt);
        let lost = match self.policy {
            Policy::GoBackN => {
                let dup_acks = self.go_back_on_dup_acks(now);
                let rack = self.detect_rack_losses(now);
                // The receiver dropped everything after a lost frame: one loss means the
                // whole window goes again.
                let rest = if dup_acks || rack > 0 {
                    self.mark_all(RetransmitCause::FastRetransmit)
                } else {
                    0
                };
                rack + rest > 0
            }
            Policy::SelectiveRepeat => self.detect_sack_losses() + self.detect_rack_losses(now) > 0,
        };
        if lost {
            self.on_congestion(CongestionCut::Loss);
        }
    }

    /// Go-Back-N: whether the duplicate acks say the oldest frame is lost. The first
    /// `dup_ack_threshold` of them do; after the frame was sent again, duplicates keep coming
    /// for a round trip from what was sent before it, so only those arriving later, from
    /// frames sent after it, say that the retransmission was lost too (RACK's reasoning with
    /// duplicate acks, since this receiver delivers nothing after a hole).
    fn go_back_on_dup_acks(&mut self, now: Instant) -> bool {
        if self.dup_acks < self.config.dup_ack_threshold {
            return false;
        }
        let Some(front) = self.in_flight.front() else {
            return false;
        };
        let settled = !front.retransmitted
            || self.rto.srtt().is_some_and(|srtt| {
                front.last_sent + self.rack.rtt.max(srtt) + self.rack.reorder_window() <= now
            });
        if settled {
            // Counted afresh: the next threshold of duplicates is news.
            self.dup_acks = 0;
        }
        settled
    }

    /// The congestion controller hears of a loss (or a timeout) and the trace of the cut.
    fn on_congestion(&mut self, cause: CongestionCut) {
        let flight = u32::try_from(self.in_flight.len()).unwrap_or(u32::MAX);
        let cut = match cause {
            CongestionCut::Loss => self
                .congestion
                .on_loss(flight, self.snd_nxt.add(u32::MAX))
                .then_some(CongestionCut::Loss),
            CongestionCut::Timeout | CongestionCut::RandomTimeout => {
                self.congestion.on_timeout(flight)
            }
        };
        if let Some(cause) = cut {
            // The first retransmission of this event goes at once.
            self.cwnd_bypass = 1;
            self.stats.congestion_cuts += 1;
            self.events.push(TransportEvent::CongestionCut {
                cause,
                cwnd: self.congestion.window(),
                ssthresh: self.congestion.ssthresh().unwrap_or(u32::MAX),
            });
        }
    }

    /// Marks every frame in flight (that the peer does not hold) for resending; returns how
    /// many were newly marked.
    fn mark_all(&mut self, cause: RetransmitCause) -> u32 {
        let mut marked = 0;
        for index in 0..self.in_flight.len() {
            marked += u32::from(self.mark(index, cause));
        }
        marked
    }

    /// A frame sent once with `dup_ack_threshold` frames selectively acked above it is lost
    /// (RFC 6675's DupThresh): resend it once now. Returns how many were marked.
    fn detect_sack_losses(&mut self) -> u32 {
        let threshold = self.config.dup_ack_threshold;
        if self.sacked_count < threshold {
            return 0;
        }
        let mut sacked_above = 0;
        let mut marked = 0;
        for index in (0..self.in_flight.len()).rev() {
            let segment = &self.in_flight[index];
            if segment.sacked {
                sacked_above += 1;
            } else if sacked_above >= threshold && !segment.retransmitted {
                marked += u32::from(self.mark(index, RetransmitCause::FastRetransmit));
            }
        }
        marked
    }

    /// RACK: a frame sent a reordering window before a frame that was delivered is lost,
    /// once that window has passed since the delivered frame's round trip would have brought
    /// its ack. Frames sent too recently to tell get the reorder timer. Returns how many
    /// were marked.
    fn detect_rack_losses(&mut self, now: Instant) -> u32 {
        self.rack.reorder_timer = None;
        let Some(xmit) = self.rack.xmit else {
            return 0;
        };
        let wait = self.rack.rtt + self.rack.reorder_window();
        let mut marked = 0;
        let mut timer: Option<Instant> = None;
        for index in 0..self.in_flight.len() {
            let segment = &self.in_flight[index];
            if segment.sacked || segment.resend.is_some() || segment.last_sent >= xmit {
                continue;
            }
            let due = segment.last_sent + wait;
            if due <= now {
                marked += u32::from(self.mark(index, RetransmitCause::FastRetransmit));
            } else {
                timer = Some(timer.map_or(due, |t| t.min(due)));
            }
        }
        self.rack.reorder_timer = timer;
        marked
    }

    pub(super) fn poll_transmit(&mut self, now: Instant) -> Option<OutFrame> {
        let out = self.next_frame(now)?;
        count_sent(&mut self.stats, &mut self.events, &out);
        Some(out)
    }

    /// Whether the pacer holds the next data frame back now (then `paced_until` says until
    /// when). Nothing is paced before the first round-trip sample, nor without congestion
    /// control (`--cc none` is the naive sender, bursts and all).
    fn paced(&mut self, now: Instant) -> bool {
        if !self.congestion.paces() {
            return false;
        }
        let Some(srtt) = self.rto.srtt() else {
            return false;
        };
        let window = self.congestion.window();
        let pacer = self
            .pacer
            .get_or_insert_with(|| Pacer::new(srtt, window, now));
        self.paced_until = pacer.delay(now, srtt, window);
        self.paced_until.is_some()
    }

    fn spend_pacing(&mut self) {
        if let Some(pacer) = &mut self.pacer {
            pacer.on_send();
        }
    }

    fn next_frame(&mut self, now: Instant) -> Option<OutFrame> {
        // Acks are never paced: they go as soon as there is one.
        if let Some(ack) = self.receiver.poll_ack() {
            return Some(ack);
        }
        self.paced_until = None;
        if self.gave_up.is_some() {
            return None;
        }
        let rto = self.rto.rto();
        let cwnd_open = self.pipe() < self.congestion.window();
        if self.marked_count > 0
            && let Some(index) = self.in_flight.iter().position(|s| s.resend.is_some())
        {
            let probe = self.in_flight[index].resend == Some(RetransmitCause::Probe);
            if cwnd_open || probe || self.cwnd_bypass > 0 {
                // A probe, and the first resend of a loss, go at once; the rest are paced.
                if cwnd_open && !probe && self.paced(now) {
                    return None;
                }
                if !(cwnd_open || probe) {
                    self.cwnd_bypass -= 1;
                }
                self.spend_pacing();
                let segment = &mut self.in_flight[index];
                let cause = segment.resend.take();
                self.marked_count -= 1;
                segment.retransmitted = true;
                segment.last_sent = now;
                if index == 0 && self.policy == Policy::GoBackN {
                    self.timer = Some(now + rto);
                }
                self.probe_base = Some(now);
                return Some(self.in_flight[index].out(cause));
            }
            // Lost frames wait for room in the congestion window, before any new data.
            return None;
        }
        let window = self.config.window.min(self.peer_window) as usize;
        // With the peer's window shut, one frame still goes out as a probe, so that a lost
        // window update cannot stall the connection forever.
        let open = self.in_flight.len() < window.max(1);
        if !open || !cwnd_open {
            return None;
        }
        let has_more = self.outbox.len() > 0 || (self.outbox.finished && !self.fin_queued);
        if has_more && self.paced(now) {
            return None;
        }
        let segment = if let Some(payload) = self.outbox.take(self.config.max_payload) {
            self.in_flight_bytes += payload.len();
            Segment::new(self.snd_nxt, payload, false, now)
        } else if self.outbox.finished && !self.fin_queued {
            self.fin_queued = true;
            Segment::new(self.snd_nxt, bytes::Bytes::new(), true, now)
        } else {
            return None;
        };
        self.spend_pacing();
        self.snd_nxt = self.snd_nxt.add(1);
        if self.timer.is_none() {
            self.timer = Some(now + rto);
        }
        self.probe_base = Some(now);
        let out = segment.out(None);
        self.in_flight.push_back(segment);
        Some(out)
    }

    /// The retransmission timer: when the oldest frame (Go-Back-N) or the earliest frame
    /// still in the network (Selective Repeat) expires.
    fn rto_deadline(&self) -> Option<Instant> {
        match self.policy {
            Policy::GoBackN => self.timer,
            Policy::SelectiveRepeat => {
                // The earliest send plus one RTO: the RTO is added once, not per frame (this
                // runs after every input, over the whole window).
                let earliest = self
                    .in_flight
                    .iter()
                    .filter(|s| !s.sacked && s.resend.is_none())
                    .map(|s| s.last_sent)
                    .min()?;
                Some(earliest + self.rto.rto())
            }
        }
    }

    /// When a tail-loss probe is due: two smoothed round trips after the last frame sent or
    /// the last ack that told something new, with frames in the network and no resend about
    /// to go (frames marked lost but held back by the congestion window count as waiting:
    /// if the acks that would open it never come, the probe is what moves things).
    fn probe_deadline(&self) -> Option<Instant> {
        let resend_due = self.marked_count > 0 && self.pipe() < self.congestion.window();
        if self.probes_out >= MAX_PROBES || resend_due || self.pipe() == 0 {
            return None;
        }
        // A pinned timer (`--rto`, the course's) is the lesson: no probe gets ahead of it.
        if matches!(self.config.rto, RtoConfig::Fixed(_)) {
            return None;
        }
        let srtt = self.rto.srtt()?;
        let timeout = (srtt * 2).max(PROBE_FLOOR) * (1 << self.probes_out);
        if timeout >= self.rto.rto() {
            return None;
        }
        Some(self.probe_base? + timeout)
    }

    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        if self.gave_up.is_some() {
            return None;
        }
        if self.in_flight.is_empty() {
            return self.paced_until;
        }
        [
            self.rto_deadline(),
            self.probe_deadline(),
            self.rack.reorder_timer,
            self.paced_until,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    pub(super) fn handle_timeout(&mut self, now: Instant) {
        // The frame the pacer held back goes at the next `poll_transmit`.
        if self.paced_until.is_some_and(|t| t <= now) {
            self.paced_until = None;
        }
        if self.gave_up.is_some() || self.in_flight.is_empty() {
            return;
        }
        if self.rack.reorder_timer.is_some_and(|t| t <= now) {
            let lost = self.detect_rack_losses(now) > 0;
            if lost && self.policy == Policy::GoBackN {
                self.mark_all(RetransmitCause::FastRetransmit);
            }
            if lost {
                self.on_congestion(CongestionCut::Loss);
            }
        }
        if self.rto_deadline().is_some_and(|t| t <= now) {
            self.on_rto(now);
            return;
        }
        if self.probe_deadline().is_some_and(|t| t <= now) {
            let index = match self.policy {
                // The receiver keeps only the frame it expects: probe with that one.
                Policy::GoBackN => Some(0),
                // The last frame not held: its ack shows what the tail lost.
                Policy::SelectiveRepeat => self.in_flight.iter().rposition(|s| !s.sacked),
            };
            if let Some(index) = index {
                let segment = &mut self.in_flight[index];
                // Already marked (held back by the congestion window): it goes now, as the
                // probe.
                if segment.resend.replace(RetransmitCause::Probe).is_none() {
                    self.marked_count += 1;
                }
            }
            self.probes_out += 1;
        }
    }

    /// The retransmission timer expired.
    fn on_rto(&mut self, now: Instant) {
        let rto = self.rto.rto();
        // Selective Repeat's frames expire one by one: back off (and count an expiry
        // towards giving up) once per RTO, not once per frame.
        let backoff = match self.policy {
            Policy::GoBackN => true,
            Policy::SelectiveRepeat => self.last_backoff.is_none_or(|t| t + rto <= now),
        };
        if backoff {
            self.timeouts += 1;
            if self.timeouts >= self.config.max_timeouts {
                let give_up = GiveUp {
                    timeouts: self.timeouts,
                    oldest: self.snd_una,
                };
                self.gave_up = Some(give_up);
                self.events.push(TransportEvent::GaveUp {
                    timeouts: give_up.timeouts,
                    oldest: give_up.oldest,
                });
                return;
            }
            self.rto.on_timeout();
            self.last_backoff = Some(now);
            self.on_congestion(CongestionCut::Timeout);
        }
        self.dup_acks = 0;
        self.probes_out = 0;
        match self.policy {
            Policy::GoBackN => {
                self.mark_all(RetransmitCause::Timeout);
                self.timer = Some(now + self.rto.rto());
            }
            Policy::SelectiveRepeat => {
                for index in 0..self.in_flight.len() {
                    if self.in_flight[index].last_sent + rto <= now {
                        self.mark(index, RetransmitCause::Timeout);
                    }
                }
            }
        }
    }

    pub(super) fn read(&mut self, buf: &mut [u8]) -> usize {
        let n = self.receiver.inbox_mut().read(buf);
        self.receiver.after_read();
        n
    }

    pub(super) fn poll_delivered(&mut self) -> Option<bytes::Bytes> {
        let chunk = self.receiver.inbox_mut().pop();
        self.receiver.after_read();
        chunk
    }

    pub(super) fn inbox_mut(&mut self) -> &mut Inbox {
        self.receiver.inbox_mut()
    }

    pub(super) fn consume_delivered(&mut self, n: usize) {
        self.receiver.inbox_mut().consume(n);
        self.receiver.after_read();
    }

    pub(super) fn events_mut(&mut self) -> &mut Events {
        &mut self.events
    }

    /// The retransmission timer, whose RTT samples the caller drains.
    pub(super) fn rto_mut(&mut self) -> &mut RtoEstimator {
        &mut self.rto
    }

    pub(super) fn peer_finished(&self) -> bool {
        self.receiver.peer_finished()
    }

    pub(super) fn is_done(&self) -> bool {
        self.gave_up.is_some()
            || (self.fin_queued
                && self.in_flight.is_empty()
                && self.receiver.peer_finished()
                && self.receiver.is_drained())
    }

    pub(super) fn gave_up(&self) -> Option<GiveUp> {
        self.gave_up
    }

    pub(super) fn buffered_bytes(&self) -> usize {
        self.outbox.len() + self.in_flight_bytes + self.receiver.buffered_bytes()
    }

    /// The sequence number for a keepalive probe: one before the oldest frame not yet
    /// acknowledged, which the peer's receiver has already passed, so an empty `D` with it
    /// is a duplicate that the peer acknowledges and never delivers. `None` while frames
    /// are in flight (their own retransmissions probe the peer) or after a give-up.
    pub(super) fn closing_ack(&self) -> Option<OutFrame> {
        // Both closes are through: ours acknowledged, the peer's taken and everything before
        // it read. Not `is_done`: a repeat of the peer's X that arrives after the pump's last
        // step (its ack was lost) makes an ack owed again, and the final ack is the answer
        // to it; asking `is_done` here forgot the connection, and the peer resent its X to
        // a proxy that no longer answered, until it gave up.
        let closed = self.gave_up.is_none()
            && self.fin_queued
            && self.in_flight.is_empty()
            && self.receiver.readable() == 0;
        if !closed {
            return None;
        }
        self.receiver.final_ack()
    }

    pub(super) fn keepalive_seq(&self) -> Option<Seq> {
        (self.in_flight.is_empty() && self.gave_up.is_none())
            .then(|| Seq(self.snd_una.0.wrapping_sub(1)))
    }

    pub(super) fn stats(&self) -> TransportStats {
        TransportStats {
            srtt: self.rto.srtt(),
            rttvar: self.rto.rttvar(),
            rtt_samples: self.rto.samples(),
            rto: self.rto.rto(),
            in_flight: u32::try_from(self.in_flight.len()).unwrap_or(u32::MAX),
            peer_window: self.peer_window,
            cwnd: Some(self.congestion.window()),
            ssthresh: self.congestion.ssthresh(),
            congestion: Some(self.congestion.phase()),
            random_losses: self.congestion.random_losses(),
            held: self.receiver.held(),
            readable: self.receiver.readable(),
            events_dropped: self.events.dropped,
            ..self.stats
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use crate::transport::{
        CongestionControl, CongestionPhase, OutFrame, RetransmitCause, RtoConfig, Transport,
        TransportConfig, TransportEvent,
    };
    use crate::wire::{ConnId, Frame, SackBlock, SackBlocks, Seq, WireMode};

    const ID: ConnId = ConnId::new(3);

    fn config(mode: WireMode, congestion: CongestionControl) -> TransportConfig {
        let mut config = TransportConfig::for_mode(mode);
        config.window = 8;
        config.max_payload = 1;
        config.congestion = congestion;
        config
    }

    fn drain(t: &mut Transport, now: Instant) -> Vec<OutFrame> {
        std::iter::from_fn(|| t.poll_transmit(now)).collect()
    }

    fn sent(frames: &[OutFrame]) -> Vec<(u32, Option<RetransmitCause>)> {
        frames
            .iter()
            .filter(|f| !matches!(f, OutFrame::Ack { .. }))
            .map(|f| (f.seq().0, f.retransmit()))
            .collect()
    }

    fn ack(ack: u32, blocks: &[(u32, u32)]) -> Frame<'static> {
        Frame::Ack {
            id: ID,
            ack: Seq(ack),
            window: 64,
            sack: blocks
                .iter()
                .map(|&(start, end)| SackBlock {
                    start: Seq(start),
                    end: Seq(end),
                })
                .collect::<SackBlocks>(),
        }
    }

    /// A Selective Repeat sender with a window of 64 and 200 one-byte frames to send.
    fn bulk_sender(congestion: CongestionControl) -> Transport {
        let mode = WireMode::SelectiveRepeat;
        let mut config = config(mode, congestion);
        config.window = 64;
        config.send_buffer = 1000;
        let mut t = Transport::new(mode, config);
        t.write(&[7u8; 200]);
        t
    }

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    #[test]
    fn a_lost_tail_is_probed_and_repaired_before_the_timer() {
        let t0 = Instant::now();
        let mode = WireMode::SelectiveRepeat;
        let mut t = Transport::new(mode, config(mode, CongestionControl::NewReno));
        t.write(b"abcd");
        assert_eq!(drain(&mut t, t0).len(), 4);
        // The first frame's ack comes back (SRTT 1 ms); the three after it are lost.
        t.handle_frame(t0 + us(1000), &ack(1, &[]));
        let probe_at = t.poll_timeout().unwrap();
        assert_eq!(probe_at, t0 + us(3000), "two round trips, at least 2 ms");
        assert!(probe_at < t0 + t.stats().rto);
        t.handle_timeout(probe_at);
        let probe = drain(&mut t, probe_at);
        assert_eq!(sent(&probe), [(3, Some(RetransmitCause::Probe))]);
        // Its ack says the peer now holds seq 3 only: 1 and 2, sent before it, are lost.
        t.handle_frame(probe_at + us(1000), &ack(1, &[(3, 4)]));
        let repaired = drain(&mut t, probe_at + us(1000));
        let fast = Some(RetransmitCause::FastRetransmit);
        assert_eq!(sent(&repaired), [(1, fast), (2, fast)]);
        let stats = t.stats();
        assert_eq!(
            (
                stats.retransmits_probe,
                stats.retransmits_fast,
                stats.retransmits_timeout
            ),
            (1, 2, 0)
        );
        assert_eq!(stats.congestion_cuts, 1, "one loss event, one cut");
    }

    #[test]
    fn a_probe_after_lost_acks_needs_no_retransmission() {
        let t0 = Instant::now();
        let mode = WireMode::SelectiveRepeat;
        let mut t = Transport::new(mode, config(mode, CongestionControl::NewReno));
        t.write(b"abc");
        drain(&mut t, t0);
        t.handle_frame(t0 + us(1000), &ack(1, &[]));
        let probe_at = t.poll_timeout().unwrap();
        t.handle_timeout(probe_at);
        assert_eq!(
            sent(&drain(&mut t, probe_at)),
            [(2, Some(RetransmitCause::Probe))]
        );
        // Everything had arrived; only the acks were lost.
        t.handle_frame(probe_at + us(1000), &ack(3, &[]));
        assert!(drain(&mut t, probe_at + us(1000)).is_empty());
        assert_eq!(t.stats().in_flight, 0);
        assert_eq!(t.stats().congestion_cuts, 0, "no loss, no cut");
        assert_eq!(t.poll_timeout(), None);
    }

    #[test]
    fn go_back_n_probes_with_its_oldest_frame() {
        let t0 = Instant::now();
        let mode = WireMode::GoBackN;
        let mut t = Transport::new(mode, config(mode, CongestionControl::NewReno));
        t.write(b"abcd");
        drain(&mut t, t0);
        t.handle_frame(t0 + us(1000), &ack(1, &[]));
        let probe_at = t.poll_timeout().unwrap();
        t.handle_timeout(probe_at);
        assert_eq!(
            sent(&drain(&mut t, probe_at)),
            [(1, Some(RetransmitCause::Probe))]
        );
        // The receiver took it (it was the hole) and discarded 2 and 3, sent before it:
        // everything after goes again at once.
        t.handle_frame(probe_at + us(1000), &ack(2, &[]));
        let fast = Some(RetransmitCause::FastRetransmit);
        assert_eq!(
            sent(&drain(&mut t, probe_at + us(1000))),
            [(2, fast), (3, fast)]
        );
    }

    #[test]
    fn a_fixed_timer_sends_no_probe() {
        let t0 = Instant::now();
        let mode = WireMode::SelectiveRepeat;
        let mut config = config(mode, CongestionControl::NewReno);
        config.rto = RtoConfig::Fixed(Duration::from_secs(1));
        let mut t = Transport::new(mode, config);
        t.write(b"ab");
        drain(&mut t, t0);
        t.handle_frame(t0 + us(1000), &ack(1, &[]));
        assert_eq!(t.poll_timeout(), Some(t0 + Duration::from_secs(1)));
    }

    #[test]
    fn a_lost_retransmission_is_found_by_what_was_sent_after_it() {
        let t0 = Instant::now();
        let mode = WireMode::SelectiveRepeat;
        let mut t = Transport::new(mode, config(mode, CongestionControl::None));
        t.write(b"abcdef");
        drain(&mut t, t0);
        // 0 is lost: three frames held above it.
        let t1 = t0 + us(1000);
        t.handle_frame(t1, &ack(0, &[(1, 4)]));
        let fast = Some(RetransmitCause::FastRetransmit);
        assert_eq!(sent(&drain(&mut t, t1)), [(0, fast)]);
        // New data after the retransmission...
        let t2 = t1 + us(500);
        t.write(b"g");
        assert_eq!(sent(&drain(&mut t, t2)), [(6, None)]);
        // ...arrives, and the retransmission of 0 (and 5, sent long before) did not: both
        // are found lost by this ack, without a timer.
        let t3 = t2 + us(1000);
        t.handle_frame(t3, &ack(0, &[(1, 5), (6, 7)]));
        assert_eq!(sent(&drain(&mut t, t3)), [(0, fast), (5, fast)]);
        assert_eq!(t.stats().retransmits_timeout, 0);
    }

    #[test]
    fn a_reordered_frame_is_given_a_quarter_round_trip() {
        let t0 = Instant::now();
        let mode = WireMode::SelectiveRepeat;
        let mut t = Transport::new(mode, config(mode, CongestionControl::None));
        t.write(b"a");
        drain(&mut t, t0);
        t.handle_frame(t0 + us(4000), &ack(1, &[])); // min RTT 4 ms: a 1 ms reorder window
        let t1 = t0 + us(10000);
        t.write(b"b");
        drain(&mut t, t1);
        t.write(b"c");
        drain(&mut t, t1 + us(500));
        // 2 overtook 1: not lost yet, a reorder timer instead.
        let t2 = t1 + us(4500);
        t.handle_frame(t2, &ack(1, &[(2, 3)]));
        assert!(drain(&mut t, t2).is_empty());
        let timer = t.poll_timeout().unwrap();
        assert_eq!(
            timer,
            t1 + us(4000) + us(1000),
            "sent + RACK's RTT + a quarter"
        );
        // 1 arrives in the meantime: nothing is resent.
        t.handle_frame(timer - us(100), &ack(3, &[]));
        assert!(drain(&mut t, timer).is_empty());
        assert_eq!(t.stats().retransmits_fast, 0);
    }

    #[test]
    fn slow_start_opens_the_window_as_acks_come() {
        let t0 = Instant::now();
        let mut t = bulk_sender(CongestionControl::NewReno);
        assert_eq!(drain(&mut t, t0).len(), 10, "the initial window");
        assert_eq!(t.stats().cwnd, Some(10));
        t.handle_frame(t0 + us(1000), &ack(10, &[]));
        assert_eq!(drain(&mut t, t0 + us(1000)).len(), 20, "doubled");
        t.handle_frame(t0 + us(2000), &ack(30, &[]));
        assert_eq!(drain(&mut t, t0 + us(2000)).len(), 40, "doubled again");
        t.handle_frame(t0 + us(3000), &ack(70, &[]));
        assert_eq!(
            drain(&mut t, t0 + us(3000)).len(),
            64,
            "up to the window of 64"
        );
        let stats = t.stats();
        assert_eq!((stats.cwnd, stats.in_flight), (Some(64), 64));
    }

    #[test]
    fn a_window_on_a_long_round_trip_leaves_in_paced_bursts() {
        let t0 = Instant::now();
        let mut t = bulk_sender(CongestionControl::NewReno);
        // No round trip known yet: the initial window goes at once.
        assert_eq!(drain(&mut t, t0).len(), 10);
        // A 100 ms round trip and a window of 20: 250 frames/s, in bursts of ten.
        let t1 = t0 + Duration::from_millis(100);
        t.handle_frame(t1, &ack(10, &[]));
        assert_eq!(t.stats().cwnd, Some(20));
        assert_eq!(drain(&mut t, t1).len(), 10, "one burst");
        let next = t1 + Duration::from_millis(40);
        assert_eq!(t.poll_timeout(), Some(next), "ten frames at 250 a second");
        // 3 ms later not one frame's worth has come back into the bucket (one takes 4 ms).
        assert!(drain(&mut t, t1 + Duration::from_millis(3)).is_empty());
        t.handle_timeout(next);
        assert_eq!(drain(&mut t, next).len(), 10, "the second burst");
        assert_eq!(t.stats().in_flight, 20);
        // Without congestion control the whole window goes at once, as before.
        let mut t = bulk_sender(CongestionControl::None);
        assert_eq!(drain(&mut t, t0).len(), 64);
        t.handle_frame(t1, &ack(64, &[]));
        assert_eq!(drain(&mut t, t1).len(), 64);
    }

    #[test]
    fn a_round_trip_that_grows_by_a_queue_ends_slow_start_with_an_event() {
        let t0 = Instant::now();
        let mut t = bulk_sender(CongestionControl::NewReno);
        // A first round at 1 ms: ten frames, each acked on its own.
        assert_eq!(drain(&mut t, t0).len(), 10);
        let t1 = t0 + us(1000);
        let mut sent = 10;
        for acked in 1..=10 {
            t.handle_frame(t1, &ack(acked, &[]));
            sent += drain(&mut t, t1).len() as u32;
        }
        assert_eq!(t.stats().congestion, Some(CongestionPhase::SlowStart));
        while t.poll_event().is_some() {}
        // The next round's frames come back after 7 ms: a queue of 6 ms built up.
        let t2 = t1 + us(7000);
        for acked in 11..sent {
            t.handle_frame(t2, &ack(acked, &[]));
        }
        let ended: Vec<_> = std::iter::from_fn(|| t.poll_event())
            .filter(|e| matches!(e, TransportEvent::SlowStartEnded { .. }))
            .collect();
        assert_eq!(ended.len(), 1, "{ended:?}");
        let TransportEvent::SlowStartEnded { rise_micros, .. } = ended[0] else {
            unreachable!()
        };
        assert_eq!(rise_micros, 6000);
        assert_eq!(t.stats().congestion, Some(CongestionPhase::Avoidance));
    }

    #[test]
    fn a_repeat_of_the_peers_close_after_the_end_keeps_the_final_ack() {
        let t0 = Instant::now();
        let mode = WireMode::SelectiveRepeat;
        let mut a = Transport::new(mode, config(mode, CongestionControl::NewReno));
        let mut b = Transport::new(mode, config(mode, CongestionControl::NewReno));
        a.write(b"x");
        a.finish();
        b.finish();
        let mut b_close = None;
        for _ in 0..10 {
            for out in drain(&mut a, t0) {
                b.handle_frame(t0, &out.frame(ID));
            }
            for out in drain(&mut b, t0) {
                if matches!(out, OutFrame::Close { .. }) {
                    b_close = Some(out.clone());
                }
                a.handle_frame(t0, &out.frame(ID));
            }
            let mut buf = [0u8; 8];
            while b.read(&mut buf) > 0 {}
        }
        assert!(a.is_done() && b.is_done());
        let final_ack = a.closing_ack().expect("a finished cleanly");
        // b's X again (the ack of it was lost): a owes an ack, and still knows its final one.
        a.handle_frame(t0, &b_close.unwrap().frame(ID));
        assert!(!a.is_done(), "an ack is owed");
        assert_eq!(a.closing_ack(), Some(final_ack));
    }

    #[test]
    fn after_a_loss_the_window_is_halved_and_the_hole_goes_first() {
        let t0 = Instant::now();
        let mode = WireMode::SelectiveRepeat;
        let mut t = Transport::new(mode, config(mode, CongestionControl::NewReno));
        t.write(b"abcdefghijkl");
        assert_eq!(drain(&mut t, t0).len(), 8);
        // 0 lost, 1..4 held: the window halves to 4, 0 goes at once (pipe 3 < 4).
        let t1 = t0 + us(1000);
        t.handle_frame(t1, &ack(0, &[(1, 5)]));
        let stats = t.stats();
        assert_eq!((stats.cwnd, stats.ssthresh), (Some(4), Some(4)));
        let out = drain(&mut t, t1);
        assert_eq!(sent(&out), [(0, Some(RetransmitCause::FastRetransmit))]);
        // Everything acked: recovery is over, new data flows within the window.
        let t2 = t1 + us(1000);
        t.handle_frame(t2, &ack(8, &[]));
        assert_eq!(t.stats().congestion, Some(CongestionPhase::Avoidance));
        assert_eq!(drain(&mut t, t2).len(), 4);
    }
}
