//! What Go-Back-N and Selective Repeat share: a sliding-window sender over 32-bit sequence
//! numbers, and the glue between it and a receiver. The two differ in what the sender
//! resends ([`Policy`]) and in what the receiver keeps ([`Receiver`]).
//!
//! The sender keeps every unacknowledged frame (data, and the close in its place after the
//! data, like TCP's FIN) in `in_flight`, oldest first, at most `min(window, peer's window)`
//! of them; the peer's cumulative ack removes them from the front. A frame due to be resent
//! is marked (`Segment::resend`) and `poll_transmit` sends the lowest marked one first.

use std::collections::VecDeque;
use std::time::Instant;

use super::{
    Events, GiveUp, Inbox, OutFrame, Outbox, RetransmitCause, RtoEstimator, Segment,
    TransportConfig, TransportEvent, TransportStats, count_sent,
};
use crate::wire::{Frame, SackBlocks, Seq};

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
    /// No ack owed and nothing left to read.
    fn is_drained(&self) -> bool;
    /// Frames held out of order now.
    fn held(&self) -> u32;
    /// Frames waiting to be read.
    fn readable(&self) -> u32;
}

/// A windowed transport: the shared sender and a receiver `R`.
#[derive(Debug)]
pub struct Windowed<R> {
    config: TransportConfig,
    policy: Policy,
    rto: RtoEstimator,
    outbox: Outbox,
    /// The oldest unacknowledged sequence number (the front of `in_flight`).
    snd_una: Seq,
    /// The next new sequence number.
    snd_nxt: Seq,
    in_flight: VecDeque<Segment>,
    /// Payload bytes in `in_flight`.
    in_flight_bytes: usize,
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
    /// Timer expiries in a row with no ack from the peer.
    timeouts: u32,
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
            outbox: Outbox::default(),
            snd_una: config.initial_seq,
            snd_nxt: config.initial_seq,
            in_flight: VecDeque::new(),
            in_flight_bytes: 0,
            fin_queued: false,
            peer_window: config.window,
            timer: None,
            dup_acks: 0,
            last_backoff: None,
            timeouts: 0,
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

    fn on_ack(&mut self, now: Instant, ack: Seq, window: u32, sack: &SackBlocks) {
        // The peer is alive, whatever this ack says.
        self.timeouts = 0;
        if ack.before(self.snd_una) || self.snd_nxt.before(ack) {
            return; // older than what we know, or acking what we never sent
        }
        let window_changed = window != self.peer_window;
        self.peer_window = window;
        let mut sample = None;
        let advanced = ack != self.snd_una;
        while self.snd_una.before(ack) {
            let segment = self
                .in_flight
                .pop_front()
                .expect("in flight down to snd_una");
            self.in_flight_bytes -= segment.payload.len();
            self.stats.bytes_acked += segment.payload.len() as u64;
            if !segment.retransmitted {
                sample = Some(segment.first_sent);
            }
            self.snd_una = self.snd_una.add(1);
        }
        let mut new_sacks = false;
        if self.policy == Policy::SelectiveRepeat {
            // A block must lie within what is in flight; anything else is a confused peer.
            let valid = |b: &crate::wire::SackBlock| {
                self.snd_una.before(b.end)
                    && b.start.before(b.end)
                    && !self.snd_nxt.before(b.end)
                    && !b.start.before(self.snd_una)
            };
            for block in sack.iter().filter(valid) {
                for segment in &mut self.in_flight {
                    if !segment.sacked
                        && segment
                            .seq
                            .within(block.start, block.end.since(block.start))
                    {
                        segment.sacked = true;
                        segment.resend = None;
                        new_sacks = true;
                        if !segment.retransmitted {
                            sample = Some(sample.map_or(segment.first_sent, |s: Instant| {
                                s.max(segment.first_sent)
                            }));
                        }
                    }
                }
            }
        }
        if let Some(sent) = sample {
            self.rto.on_sample(now.saturating_duration_since(sent));
            self.last_backoff = None;
        }
        if advanced {
            self.dup_acks = 0;
            self.timer = (!self.in_flight.is_empty()).then(|| now + self.rto.rto());
        } else if !self.in_flight.is_empty() && !window_changed && !new_sacks {
            self.dup_acks += 1;
        }
        match self.policy {
            Policy::GoBackN => {
                if self.dup_acks == self.config.dup_ack_threshold {
                    self.mark_all(RetransmitCause::FastRetransmit);
                }
            }
            Policy::SelectiveRepeat => self.detect_sack_losses(),
        }
    }

    /// Marks every frame in flight (that the peer does not hold) for resending.
    fn mark_all(&mut self, cause: RetransmitCause) {
        for segment in &mut self.in_flight {
            if !segment.sacked && segment.resend.is_none() {
                segment.resend = Some(cause);
            }
        }
    }

    /// A frame with `dup_ack_threshold` frames selectively acked above it is lost (RFC 6675's
    /// DupThresh): resend it once now; if that is lost too, its timer will.
    fn detect_sack_losses(&mut self) {
        let threshold = self.config.dup_ack_threshold;
        let mut sacked_above = 0;
        for segment in self.in_flight.iter_mut().rev() {
            if segment.sacked {
                sacked_above += 1;
            } else if sacked_above >= threshold
                && !segment.fast_retransmitted
                && segment.resend.is_none()
            {
                segment.fast_retransmitted = true;
                segment.resend = Some(RetransmitCause::FastRetransmit);
            }
        }
    }

    pub(super) fn poll_transmit(&mut self, now: Instant) -> Option<OutFrame> {
        let out = self.next_frame(now)?;
        count_sent(&mut self.stats, &mut self.events, &out);
        Some(out)
    }

    fn next_frame(&mut self, now: Instant) -> Option<OutFrame> {
        if let Some(ack) = self.receiver.poll_ack() {
            return Some(ack);
        }
        if self.gave_up.is_some() {
            return None;
        }
        let rto = self.rto.rto();
        if let Some(index) = self.in_flight.iter().position(|s| s.resend.is_some()) {
            let segment = &mut self.in_flight[index];
            let cause = segment.resend.take();
            segment.retransmitted = true;
            segment.last_sent = now;
            if index == 0 && self.policy == Policy::GoBackN {
                self.timer = Some(now + rto);
            }
            return Some(segment.out(cause));
        }
        let window = self.config.window.min(self.peer_window) as usize;
        // With the peer's window shut, one frame still goes out as a probe, so that a lost
        // window update cannot stall the connection forever.
        let open = self.in_flight.len() < window.max(1);
        if !open {
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
        self.snd_nxt = self.snd_nxt.add(1);
        if self.timer.is_none() {
            self.timer = Some(now + rto);
        }
        let out = segment.out(None);
        self.in_flight.push_back(segment);
        Some(out)
    }

    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        if self.gave_up.is_some() || self.in_flight.is_empty() {
            return None;
        }
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

    pub(super) fn handle_timeout(&mut self, now: Instant) {
        if self.gave_up.is_some() || self.in_flight.is_empty() {
            return;
        }
        let rto = self.rto.rto();
        let expired = match self.policy {
            Policy::GoBackN => self.timer.is_some_and(|t| t <= now),
            // `last_sent + rto <= now`, with the subtraction done once.
            Policy::SelectiveRepeat => now.checked_sub(rto).is_some_and(|sent_by| {
                self.in_flight
                    .iter()
                    .any(|s| !s.sacked && s.resend.is_none() && s.last_sent <= sent_by)
            }),
        };
        if !expired {
            return;
        }
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
        }
        self.dup_acks = 0;
        match self.policy {
            Policy::GoBackN => {
                self.mark_all(RetransmitCause::Timeout);
                self.timer = Some(now + self.rto.rto());
            }
            Policy::SelectiveRepeat => {
                for segment in &mut self.in_flight {
                    if !segment.sacked && segment.resend.is_none() && segment.last_sent + rto <= now
                    {
                        segment.resend = Some(RetransmitCause::Timeout);
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

    pub(super) fn events_mut(&mut self) -> &mut Events {
        &mut self.events
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

    /// The sequence number for a keepalive probe: one before the oldest frame not yet
    /// acknowledged, which the peer's receiver has already passed, so an empty `D` with it
    /// is a duplicate that the peer acknowledges and never delivers. `None` while frames
    /// are in flight (their own retransmissions probe the peer) or after a give-up.
    pub(super) fn keepalive_seq(&self) -> Option<Seq> {
        (self.in_flight.is_empty() && self.gave_up.is_none())
            .then(|| Seq(self.snd_una.0.wrapping_sub(1)))
    }

    pub(super) fn stats(&self) -> TransportStats {
        TransportStats {
            srtt: self.rto.srtt(),
            rttvar: self.rto.rttvar(),
            rto: self.rto.rto(),
            in_flight: u32::try_from(self.in_flight.len()).unwrap_or(u32::MAX),
            peer_window: self.peer_window,
            held: self.receiver.held(),
            readable: self.receiver.readable(),
            events_dropped: self.events.dropped,
            ..self.stats
        }
    }
}
