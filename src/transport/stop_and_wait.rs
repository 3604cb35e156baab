//! Stop-and-wait: the alternating-bit protocol of the course's second assignment.
//!
//! Sender: one `D<id><bit>` in flight; the next waits for `A<id><bit>`. An ack with the other
//! bit is stale (the ack of the previous frame, duplicated or late) and changes nothing: no
//! retransmission on a stale ack, so a duplicate never doubles the traffic. The frame is
//! resent when its timer expires (RFC 6298 or fixed). Receiver: acks every `D` it gets,
//! duplicates included, and delivers only the expected bit. One bit per connection and per
//! direction.
//!
//! Close: after [`finish`](crate::transport::Transport::finish) and once the last `D` is acked, `X<id><bit>`
//! goes out with the next bit. Course peers neither ack nor resend `X`, so ours is sent
//! `close_sends` times, one RTO apart, and stops early only when an `A<id><bit>` for it
//! arrives (from a peer that acks closes). The peer's own `X` does not stop it: that `X` may
//! have been sent before ours arrived (the two ends close independently), and a lost last
//! `X` left the other end waiting for the idle timeout. An arriving `X` ends the peer's
//! stream whatever its bit (liberal: course peers differ), and is not acked.

use std::collections::VecDeque;
use std::time::Instant;

use super::{
    Events, GiveUp, Inbox, OutFrame, Outbox, RetransmitCause, RtoEstimator, Segment,
    TransportConfig, TransportEvent, TransportStats, count_sent,
};
use crate::wire::{Frame, Seq};

/// Acks waiting to go out; a duplicate of the last one is not queued twice.
const MAX_ACKS_OWED: usize = 2;

/// Where our close stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CloseState {
    /// Not sent yet (data may still be flowing).
    NotSent,
    /// Sent `sends` times; the next send is due at `next`, or pending now.
    Sending {
        seq: Seq,
        sends: u32,
        next: Instant,
        resend_now: bool,
    },
    /// Sent as often as needed.
    Done,
}

/// The stop-and-wait transport.
#[derive(Debug)]
pub struct StopAndWait {
    config: TransportConfig,
    rto: RtoEstimator,
    outbox: Outbox,
    /// The bit of the next new frame.
    send_bit: u32,
    in_flight: Option<Segment>,
    /// When the frame in flight is resent.
    timer: Option<Instant>,
    close: CloseState,
    /// Timer expiries in a row with no ack from the peer.
    timeouts: u32,
    gave_up: Option<GiveUp>,
    /// The bit the receiver delivers next.
    expected: u32,
    acks_owed: VecDeque<Seq>,
    inbox: Inbox,
    peer_finished: bool,
    events: Events,
    stats: TransportStats,
}

impl StopAndWait {
    pub fn new(config: TransportConfig) -> Self {
        StopAndWait {
            config,
            rto: RtoEstimator::new(config.rto),
            outbox: Outbox::default(),
            send_bit: 0,
            in_flight: None,
            timer: None,
            close: CloseState::NotSent,
            timeouts: 0,
            gave_up: None,
            expected: 0,
            acks_owed: VecDeque::new(),
            inbox: Inbox::new(config.window),
            peer_finished: false,
            events: Events::default(),
            stats: TransportStats::default(),
        }
    }

    pub(super) fn buffered_bytes(&self) -> usize {
        let in_flight = self.in_flight.as_ref().map_or(0, |s| s.payload.len());
        self.outbox.len() + in_flight + self.inbox.bytes()
    }

    pub(super) fn send_room(&self) -> usize {
        let in_flight = self.in_flight.as_ref().map_or(0, |s| s.payload.len());
        self.config
            .send_buffer
            .saturating_sub(self.outbox.len() + in_flight)
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
            Frame::Data { seq, payload, .. } => self.on_data(seq, payload),
            Frame::Ack { ack, .. } => self.on_ack(now, ack),
            Frame::Close { .. } => self.peer_finished = true,
            _ => {}
        }
    }

    fn on_data(&mut self, seq: Seq, payload: &[u8]) {
        if self.peer_finished {
            return;
        }
        if seq.0 != self.expected {
            // Our ack of it was lost (or it was duplicated): ack again, deliver nothing.
            self.stats.duplicates_discarded += 1;
            self.events.push(TransportEvent::DuplicateDiscarded { seq });
            self.owe_ack(seq);
            return;
        }
        if self.inbox.room() == 0 {
            // No ack: the peer sends it again once the application has read.
            self.stats.discarded += 1;
            self.events.push(TransportEvent::Discarded { seq });
            return;
        }
        self.stats.bytes_delivered += payload.len() as u64;
        self.events.push(TransportEvent::Delivered {
            seq,
            len: payload.len(),
        });
        self.inbox.push(bytes::Bytes::copy_from_slice(payload));
        self.expected ^= 1;
        self.owe_ack(seq);
    }

    fn owe_ack(&mut self, seq: Seq) {
        if self.acks_owed.back() == Some(&seq) {
            return;
        }
        if self.acks_owed.len() == MAX_ACKS_OWED {
            self.acks_owed.pop_front();
        }
        self.acks_owed.push_back(seq);
    }

    fn on_ack(&mut self, now: Instant, ack: Seq) {
        // The peer is alive, whatever this ack says.
        self.timeouts = 0;
        if let CloseState::Sending { seq, .. } = self.close
            && seq == ack
        {
            self.close = CloseState::Done;
            return;
        }
        let Some(segment) = &self.in_flight else {
            return;
        };
        if segment.seq != ack {
            return; // stale: the ack of the previous frame
        }
        if !segment.retransmitted {
            self.rto
                .on_sample(now.saturating_duration_since(segment.first_sent));
        }
        self.stats.bytes_acked += segment.payload.len() as u64;
        self.in_flight = None;
        self.timer = None;
        self.send_bit ^= 1;
    }

    pub(super) fn poll_transmit(&mut self, now: Instant) -> Option<OutFrame> {
        let out = self.next_frame(now)?;
        count_sent(&mut self.stats, &mut self.events, &out);
        Some(out)
    }

    fn next_frame(&mut self, now: Instant) -> Option<OutFrame> {
        if let Some(ack) = self.acks_owed.pop_front() {
            return Some(OutFrame::Ack {
                ack,
                window: 1,
                sack: crate::wire::SackBlocks::EMPTY,
            });
        }
        if self.gave_up.is_some() {
            return None;
        }
        let rto = self.rto.rto();
        if let Some(segment) = &mut self.in_flight {
            let cause = segment.resend.take()?;
            segment.retransmitted = true;
            segment.last_sent = now;
            self.timer = Some(now + rto);
            return Some(segment.out(Some(cause)));
        }
        let seq = Seq(self.send_bit);
        if let Some(payload) = self.outbox.take(self.config.max_payload) {
            let segment = Segment::new(seq, payload, false, now);
            let out = segment.out(None);
            self.in_flight = Some(segment);
            self.timer = Some(now + rto);
            return Some(out);
        }
        match &mut self.close {
            CloseState::NotSent if self.outbox.finished => {
                self.close = if self.config.close_sends <= 1 {
                    CloseState::Done
                } else {
                    CloseState::Sending {
                        seq,
                        sends: 1,
                        next: now + rto,
                        resend_now: false,
                    }
                };
                Some(OutFrame::Close {
                    seq,
                    retransmit: None,
                })
            }
            CloseState::Sending {
                seq,
                sends,
                next,
                resend_now,
            } if *resend_now => {
                *resend_now = false;
                *sends += 1;
                *next = now + rto;
                let seq = *seq;
                if *sends >= self.config.close_sends {
                    self.close = CloseState::Done;
                }
                Some(OutFrame::Close {
                    seq,
                    retransmit: Some(RetransmitCause::Timeout),
                })
            }
            _ => None,
        }
    }

    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        if self.gave_up.is_some() {
            return None;
        }
        let close = match self.close {
            CloseState::Sending {
                next,
                resend_now: false,
                ..
            } => Some(next),
            _ => None,
        };
        match (self.timer, close) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub(super) fn handle_timeout(&mut self, now: Instant) {
        if self.gave_up.is_some() {
            return;
        }
        if let Some(timer) = self.timer
            && timer <= now
            && let Some(segment) = &mut self.in_flight
        {
            self.timer = None;
            self.timeouts += 1;
            if self.timeouts >= self.config.max_timeouts {
                let give_up = GiveUp {
                    timeouts: self.timeouts,
                    oldest: segment.seq,
                };
                self.gave_up = Some(give_up);
                self.events.push(TransportEvent::GaveUp {
                    timeouts: give_up.timeouts,
                    oldest: give_up.oldest,
                });
                return;
            }
            self.rto.on_timeout();
            segment.resend = Some(RetransmitCause::Timeout);
        }
        if let CloseState::Sending {
            next, resend_now, ..
        } = &mut self.close
            && *next <= now
        {
            *resend_now = true;
        }
    }

    pub(super) fn read(&mut self, buf: &mut [u8]) -> usize {
        self.inbox.read(buf)
    }

    pub(super) fn poll_delivered(&mut self) -> Option<bytes::Bytes> {
        self.inbox.pop()
    }

    pub(super) fn events_mut(&mut self) -> &mut Events {
        &mut self.events
    }

    pub(super) fn peer_finished(&self) -> bool {
        self.peer_finished
    }

    pub(super) fn is_done(&self) -> bool {
        self.gave_up.is_some()
            || (self.close == CloseState::Done
                && self.acks_owed.is_empty()
                && self.peer_finished
                && self.inbox.is_empty())
    }

    pub(super) fn gave_up(&self) -> Option<GiveUp> {
        self.gave_up
    }

    pub(super) fn stats(&self) -> TransportStats {
        TransportStats {
            srtt: self.rto.srtt(),
            rttvar: self.rto.rttvar(),
            rto: self.rto.rto(),
            in_flight: u32::from(self.in_flight.is_some()),
            peer_window: 1,
            readable: self.inbox.frames(),
            events_dropped: self.events.dropped,
            ..self.stats
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::transport::{RtoConfig, Transport};
    use crate::wire::{ConnId, SackBlocks, WireMode};

    const SAW: WireMode = WireMode::StopAndWait;

    fn wire(out: &OutFrame) -> Vec<u8> {
        SAW.to_bytes(&out.frame(ConnId::new(2))).unwrap()
    }

    fn transport() -> Transport {
        let mut config = TransportConfig::for_mode(SAW);
        config.rto = RtoConfig::Fixed(Duration::from_secs(10));
        config.max_payload = 4;
        Transport::new(SAW, config)
    }

    fn feed(t: &mut Transport, now: Instant, bytes: &[u8]) {
        t.handle_frame(now, &SAW.decode(bytes).unwrap());
    }

    #[test]
    fn one_frame_in_flight_alternating_bits() {
        let t0 = Instant::now();
        let mut t = transport();
        t.write(b"holamundo");
        assert_eq!(wire(&t.poll_transmit(t0).unwrap()), b"D20hola");
        assert_eq!(t.poll_transmit(t0), None, "waits for the ack");
        feed(&mut t, t0, b"A21"); // stale: changes nothing
        assert_eq!(t.poll_transmit(t0), None);
        feed(&mut t, t0, b"A20");
        assert_eq!(wire(&t.poll_transmit(t0).unwrap()), b"D21mund");
        feed(&mut t, t0, b"A21");
        assert_eq!(wire(&t.poll_transmit(t0).unwrap()), b"D20o");
        assert_eq!(t.stats().in_flight, 1);
        assert_eq!(t.stats().retransmits_timeout, 0);
    }

    #[test]
    fn resends_on_the_fixed_timer_and_gives_up_after_the_bound() {
        let t0 = Instant::now();
        let mut t = transport();
        t.write(b"hi");
        assert_eq!(wire(&t.poll_transmit(t0).unwrap()), b"D20hi");
        let due = t.poll_timeout().unwrap();
        assert_eq!(due, t0 + Duration::from_secs(10));
        t.handle_timeout(due - Duration::from_millis(1));
        assert_eq!(t.poll_transmit(due), None, "not yet");
        t.handle_timeout(due);
        let again = t.poll_transmit(due).unwrap();
        assert_eq!(again.retransmit(), Some(RetransmitCause::Timeout));
        assert_eq!(wire(&again), b"D20hi");
        assert_eq!(
            t.poll_event(),
            Some(TransportEvent::Retransmitted {
                seq: Seq(0),
                cause: RetransmitCause::Timeout
            })
        );
        // Fixed: no backoff.
        assert_eq!(t.poll_timeout(), Some(due + Duration::from_secs(10)));
        for _ in 0..20 {
            let Some(now) = t.poll_timeout() else { break };
            t.handle_timeout(now);
            while t.poll_transmit(now).is_some() {}
        }
        let bound = TransportConfig::for_mode(WireMode::StopAndWait).max_timeouts;
        let gave_up = t.gave_up().expect("gives up");
        assert_eq!(gave_up.timeouts, bound);
        assert!(t.is_done());
        assert_eq!(t.poll_timeout(), None);
        assert_eq!(t.stats().retransmits_timeout, u64::from(bound - 1));
    }

    #[test]
    fn receiver_acks_every_frame_and_delivers_only_the_expected_bit() {
        let t0 = Instant::now();
        let mut t = transport();
        feed(&mut t, t0, b"D20uno");
        feed(&mut t, t0, b"D20uno"); // duplicate: our ack was lost
        let acks: Vec<_> = std::iter::from_fn(|| t.poll_transmit(t0))
            .map(|o| wire(&o))
            .collect();
        assert_eq!(
            acks,
            [&b"A20"[..]],
            "duplicates of one pending ack coalesce"
        );
        feed(&mut t, t0, b"D20uno");
        assert_eq!(wire(&t.poll_transmit(t0).unwrap()), b"A20");
        feed(&mut t, t0, b"D21dos");
        assert_eq!(wire(&t.poll_transmit(t0).unwrap()), b"A21");
        let mut buf = [0u8; 16];
        let n = t.read(&mut buf);
        assert_eq!(&buf[..n], b"unodos");
        assert_eq!(t.stats().duplicates_discarded, 2);
        assert_eq!(t.stats().bytes_delivered, 6);
    }

    #[test]
    fn karn_no_sample_from_a_retransmitted_frame() {
        let t0 = Instant::now();
        let mut config = TransportConfig::for_mode(SAW);
        config.rto = RtoConfig::default();
        let mut t = Transport::new(SAW, config);
        t.write(b"a");
        t.poll_transmit(t0);
        let due = t.poll_timeout().unwrap();
        t.handle_timeout(due);
        t.poll_transmit(due);
        feed(&mut t, due + Duration::from_millis(5), b"A00");
        assert_eq!(t.stats().srtt, None, "ambiguous ack: no sample");
        t.write(b"b");
        let t1 = due + Duration::from_millis(10);
        t.poll_transmit(t1);
        feed(&mut t, t1 + Duration::from_millis(40), b"A01");
        assert_eq!(t.stats().srtt, Some(Duration::from_millis(40)));
    }

    #[test]
    fn close_follows_the_data_and_is_resent_until_the_peer_closes() {
        let t0 = Instant::now();
        let mut t = transport();
        t.write(b"ab");
        t.finish();
        assert_eq!(wire(&t.poll_transmit(t0).unwrap()), b"D20ab");
        assert_eq!(t.poll_transmit(t0), None, "no X before the last D is acked");
        feed(&mut t, t0, b"A20");
        assert_eq!(wire(&t.poll_transmit(t0).unwrap()), b"X21");
        let due = t.poll_timeout().unwrap();
        t.handle_timeout(due);
        let again = t.poll_transmit(due).unwrap();
        assert_eq!(
            (wire(&again), again.retransmit()),
            (b"X21".to_vec(), Some(RetransmitCause::Timeout))
        );
        assert!(!t.is_done());
        feed(&mut t, due, b"X20"); // the peer's own close, any bit
        assert!(t.peer_finished());
        // The peer's X does not say ours arrived: the last send still goes.
        assert!(!t.is_done());
        let last = t.poll_timeout().unwrap();
        t.handle_timeout(last);
        assert_eq!(wire(&t.poll_transmit(last).unwrap()), b"X21");
        assert_eq!(t.poll_timeout(), None);
        assert!(t.is_done());
    }

    #[test]
    fn close_sends_are_bounded() {
        let t0 = Instant::now();
        let mut t = transport();
        t.finish();
        assert_eq!(wire(&t.poll_transmit(t0).unwrap()), b"X20");
        let mut closes = 1;
        while let Some(due) = t.poll_timeout() {
            t.handle_timeout(due);
            while t.poll_transmit(due).is_some() {
                closes += 1;
            }
        }
        assert_eq!(closes, 3);
        // Done sending; the peer's stream is still open.
        assert!(!t.is_done());
        t.handle_frame(
            t0,
            &Frame::Ack {
                id: ConnId::new(2),
                ack: Seq(1),
                window: 1,
                sack: SackBlocks::EMPTY,
            },
        );
        assert!(t.gave_up().is_none());
    }
}
