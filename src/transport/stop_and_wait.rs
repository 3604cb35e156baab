//! Stop-and-wait: the alternating-bit protocol of the course's second assignment.
//!
//! Sender: one `D<id><bit>` in flight; the next waits for `A<id><bit>`. An ack with the other
//! bit is stale (the ack of the previous frame, duplicated or late) and changes nothing: no
//! retransmission on a stale ack, so a duplicate never doubles the traffic. The frame is
//! resent when its timer expires (RFC 6298 or fixed). Receiver: acks every `D` it gets,
//! duplicates included, and delivers only the expected bit. One bit per connection and per
//! direction.
//!
//! Close: after [`finish`](crate::transport::Transport::finish) and once the last `D` is
//! acked, `X<id><bit>` goes out with the next bit. The receiver acks every `X` it gets, like a
//! `D` (`A<id><bit>`, duplicates included); an arriving `X` ends the peer's stream whatever
//! its bit (liberal: course peers differ). Course peers neither ack nor resend `X` (an `A`
//! for their `X` is, to them, a stale ack), so the close is made reliable on our side alone:
//! - our `X` is resent one RTO apart (backing off) until its ack arrives. Against a peer that
//!   never acks, we stop after `close_sends` sends once the peer's own `X` has arrived. The
//!   peer's `X` alone says nothing about ours (the two ends close independently, and `X`s
//!   cross), so until it comes ours keeps going; and a peer that resent its `X` to us is one
//!   of ours (course peers send it once), which acks: ours goes until acked.
//! - once our `X` is acked (so the peer is one of ours) and the peer's `X` has not come, we
//!   probe: our `X` again after an RTO of silence, backing off. A peer still open acks it;
//!   a peer that finished after sending its `X`s (all lost) is gone, and its proxy answers
//!   an `X` for an id it no longer has with an ack and an `X` ([`StrayCloses`]), which ends
//!   our wait.
//!
//! Every resend and probe counts toward the give-up bound (`max_timeouts` in a row with
//! nothing heard from the peer), so nothing loops forever. Before this, our `X` went
//! `close_sends` times and was never acked, so when every copy of the second closer's `X`
//! was lost (one close in 125 at 20% loss each way) the first closer waited for it until
//! the idle timeout, its id taken.

use std::collections::VecDeque;
use std::time::Instant;

use super::{
    Events, GiveUp, Inbox, OutFrame, Outbox, RetransmitCause, RtoEstimator, Segment,
    TransportConfig, TransportEvent, TransportStats, count_sent,
};
use crate::wire::{ConnId, Frame, SackBlocks, Seq};

/// The ack of an `X`, `A<id><seq>`, as a proxy answers a stray one ([`StrayCloses`]).
fn ack_of_close(id: ConnId, seq: Seq) -> Frame<'static> {
    Frame::Ack {
        id,
        ack: seq,
        window: 1,
        sack: SackBlocks::EMPTY,
    }
}

/// What a proxy answers, in stop-and-wait, to an `X` for a connection it no longer has: an
/// ack of it and an `X` of its own. A peer resending its `X` (our ack was lost after our side
/// finished) takes the ack; a peer probing because every copy of our `X` was lost takes the
/// `X`. At most one answer per key (a peer's id) per [`StrayCloses::INTERVAL`]: two proxies
/// that both dropped a connection would otherwise answer each other's answer forever.
/// No I/O: the proxy passes the time and sends what it gets back.
#[derive(Debug)]
pub struct StrayCloses<K> {
    answered: std::collections::HashMap<K, Instant>,
}

impl<K: std::hash::Hash + Eq> Default for StrayCloses<K> {
    fn default() -> Self {
        StrayCloses {
            answered: std::collections::HashMap::new(),
        }
    }
}

impl<K: std::hash::Hash + Eq> StrayCloses<K> {
    /// One answer per key at most this often: longer than any round trip a lab sees, so a
    /// ping-pong between two proxies ends after one exchange.
    pub const INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);
    /// Keys remembered at most; past it, answers wait until old ones expire.
    const CAPACITY: usize = 4096;

    /// The frames answering `X<id><seq>` for the gone connection `key`, unless that key was
    /// answered less than [`StrayCloses::INTERVAL`] ago.
    pub fn answer(
        &mut self,
        key: K,
        id: ConnId,
        seq: Seq,
        now: Instant,
    ) -> Option<[Frame<'static>; 2]> {
        let recent = |at: &Instant| now.saturating_duration_since(*at) < Self::INTERVAL;
        if self.answered.get(&key).is_some_and(recent) {
            return None;
        }
        if self.answered.len() >= Self::CAPACITY {
            self.answered.retain(|_, at| recent(at));
            if self.answered.len() >= Self::CAPACITY {
                return None;
            }
        }
        self.answered.insert(key, now);
        Some([ack_of_close(id, seq), Frame::Close { id, seq }])
    }
}

/// Acks waiting to go out; a duplicate of the last one is not queued twice.
const MAX_ACKS_OWED: usize = 2;

/// Where our close stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CloseState {
    /// Not sent yet (data may still be flowing).
    NotSent,
    /// Sent `sends` times and not acked; the next send is due at `next`, or pending now.
    Sending {
        seq: Seq,
        sends: u32,
        next: Instant,
        resend_now: bool,
    },
    /// The peer acked it (so the peer is one of ours: course peers never ack `X`). Until the
    /// peer's own `X` arrives, it is sent again as a probe after an RTO of silence (`next`).
    Acked {
        seq: Seq,
        next: Instant,
        probe_now: bool,
    },
    /// Sent `close_sends` times, never acked, and the peer's `X` arrived: a course peer, or
    /// every copy or ack lost (then the peer's probe reaches our proxy, which answers it).
    /// A late ack still counts.
    Done { seq: Seq },
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
    /// The peer resent its `X` (or acked ours): one of ours, which acks closes, so ours is
    /// sent until acked.
    peer_acks_closes: bool,
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
            peer_acks_closes: false,
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
        if !matches!(
            frame,
            Frame::Data { .. } | Frame::Ack { .. } | Frame::Close { .. }
        ) {
            return;
        }
        // With no data of ours in flight, anything from the peer says it is alive: the
        // close's resends and probes count toward the give-up bound only in silence.
        if self.in_flight.is_none() {
            self.timeouts = 0;
            if let CloseState::Acked { next, .. } = &mut self.close {
                *next = now + self.rto.rto();
            }
        }
        match *frame {
            Frame::Data { seq, payload, .. } => self.on_data(seq, payload),
            Frame::Ack { ack, .. } => self.on_ack(now, ack),
            Frame::Close { seq, .. } => self.on_close(seq),
            _ => {}
        }
    }

    /// The peer's `X`: its stream ends. Acked like a `D`, every time. A repeat says the peer
    /// resends closes (one of ours) and has not heard ours: answer if we had stopped.
    fn on_close(&mut self, seq: Seq) {
        if self.peer_finished {
            self.peer_acks_closes = true;
        }
        self.peer_finished = true;
        self.owe_ack(seq);
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
        if let CloseState::Sending { seq, .. } | CloseState::Done { seq } = self.close
            && seq == ack
        {
            self.peer_acks_closes = true;
            self.close = CloseState::Acked {
                seq,
                next: now + self.rto.rto(),
                probe_now: false,
            };
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
        match self.close {
            CloseState::NotSent if self.outbox.finished => {
                self.close = CloseState::Sending {
                    seq,
                    sends: 1,
                    next: now + rto,
                    resend_now: false,
                };
                self.after_close_sent();
                Some(OutFrame::Close {
                    seq,
                    retransmit: None,
                })
            }
            CloseState::Sending {
                seq,
                sends,
                resend_now: true,
                ..
            } => {
                self.close = CloseState::Sending {
                    seq,
                    sends: sends.saturating_add(1),
                    next: now + rto,
                    resend_now: false,
                };
                self.after_close_sent();
                Some(OutFrame::Close {
                    seq,
                    retransmit: Some(RetransmitCause::Timeout),
                })
            }
            CloseState::Acked {
                seq,
                probe_now: true,
                ..
            } => {
                self.close = CloseState::Acked {
                    seq,
                    next: now + rto,
                    probe_now: false,
                };
                Some(OutFrame::Close {
                    seq,
                    retransmit: Some(RetransmitCause::Timeout),
                })
            }
            _ => None,
        }
    }

    /// After each send of our `X`: once it has gone `close_sends` times unacked and the
    /// peer's own `X` is here, a peer not known to ack closes gets no more of them.
    fn after_close_sent(&mut self) {
        if let CloseState::Sending { seq, sends, .. } = self.close
            && sends >= self.config.close_sends
            && self.peer_finished
            && !self.peer_acks_closes
        {
            self.close = CloseState::Done { seq };
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
            CloseState::Acked {
                next,
                probe_now: false,
                ..
            } if !self.peer_finished => Some(next),
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
                let oldest = segment.seq;
                self.give_up(oldest);
                return;
            }
            self.rto.on_timeout();
            segment.resend = Some(RetransmitCause::Timeout);
        }
        match self.close {
            CloseState::Sending {
                seq,
                sends,
                next,
                resend_now: false,
            } if next <= now => {
                // Not acked: the peer may be a course peer that never acks (then we stop
                // once its X is here) or have lost ours (then it goes again).
                if sends >= self.config.close_sends && self.peer_finished && !self.peer_acks_closes
                {
                    self.after_close_sent();
                } else if self.close_timeout(seq) {
                    self.close = CloseState::Sending {
                        seq,
                        sends,
                        next,
                        resend_now: true,
                    };
                }
            }
            _ => {}
        }
        // Acked, and the peer's X still not here after an RTO of silence: probe.
        if let CloseState::Acked {
            seq,
            next,
            probe_now: false,
        } = self.close
            && next <= now
            && !self.peer_finished
            && self.close_timeout(seq)
        {
            self.close = CloseState::Acked {
                seq,
                next,
                probe_now: true,
            };
        }
    }

    /// A close resend or probe timer expired: one more timeout in a row (false: given up).
    fn close_timeout(&mut self, seq: Seq) -> bool {
        self.timeouts += 1;
        if self.timeouts >= self.config.max_timeouts {
            self.give_up(seq);
            return false;
        }
        self.rto.on_timeout();
        true
    }

    fn give_up(&mut self, oldest: Seq) {
        let give_up = GiveUp {
            timeouts: self.timeouts,
            oldest,
        };
        self.gave_up = Some(give_up);
        self.events.push(TransportEvent::GaveUp {
            timeouts: give_up.timeouts,
            oldest: give_up.oldest,
        });
    }

    pub(super) fn read(&mut self, buf: &mut [u8]) -> usize {
        self.inbox.read(buf)
    }

    pub(super) fn poll_delivered(&mut self) -> Option<bytes::Bytes> {
        self.inbox.pop()
    }

    pub(super) fn inbox_mut(&mut self) -> &mut Inbox {
        &mut self.inbox
    }

    pub(super) fn consume_delivered(&mut self, n: usize) {
        self.inbox.consume(n);
    }

    pub(super) fn events_mut(&mut self) -> &mut Events {
        &mut self.events
    }

    /// The retransmission timer, whose RTT samples the caller drains.
    pub(super) fn rto_mut(&mut self) -> &mut RtoEstimator {
        &mut self.rto
    }

    pub(super) fn peer_finished(&self) -> bool {
        self.peer_finished
    }

    pub(super) fn is_done(&self) -> bool {
        self.gave_up.is_some()
            || (matches!(
                self.close,
                CloseState::Acked { .. } | CloseState::Done { .. }
            ) && self.acks_owed.is_empty()
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
            rtt_samples: self.rto.samples(),
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
    use crate::wire::{ConnId, WireMode};

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

    /// Drains what the transport sends now, as wire bytes.
    fn sent(t: &mut Transport, now: Instant) -> Vec<Vec<u8>> {
        std::iter::from_fn(|| t.poll_transmit(now))
            .map(|o| wire(&o))
            .collect()
    }

    /// Runs the timers until nothing is due, collecting what is sent.
    fn run_timers(t: &mut Transport) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(due) = t.poll_timeout() {
            t.handle_timeout(due);
            out.extend(sent(t, due));
        }
        out
    }

    #[test]
    fn close_follows_the_data_and_is_resent_until_acked() {
        let t0 = Instant::now();
        let mut t = transport();
        t.write(b"ab");
        t.finish();
        assert_eq!(wire(&t.poll_transmit(t0).unwrap()), b"D20ab");
        assert_eq!(t.poll_transmit(t0), None, "no X before the last D is acked");
        feed(&mut t, t0, b"A20");
        assert_eq!(wire(&t.poll_transmit(t0).unwrap()), b"X21");
        // The peer has not closed: our X goes again past close_sends.
        for n in 0..5 {
            let due = t.poll_timeout().unwrap();
            t.handle_timeout(due);
            let again = t.poll_transmit(due).unwrap();
            assert_eq!(
                (wire(&again), again.retransmit()),
                (b"X21".to_vec(), Some(RetransmitCause::Timeout)),
                "resend {n}"
            );
        }
        feed(&mut t, t0, b"A21"); // acked: no more sends
        let due = t
            .poll_timeout()
            .expect("a probe timer: the peer has not closed");
        assert!(!t.is_done());
        feed(&mut t, due, b"X20"); // the peer's close, any bit: acked
        assert_eq!(sent(&mut t, due), [b"A20".to_vec()]);
        assert!(t.is_done());
        assert_eq!(t.poll_timeout(), None);
    }

    #[test]
    fn every_x_is_acked_like_a_d() {
        let t0 = Instant::now();
        let mut t = transport();
        feed(&mut t, t0, b"X21");
        assert!(t.peer_finished());
        assert_eq!(sent(&mut t, t0), [b"A21".to_vec()]);
        feed(&mut t, t0, b"X21");
        assert_eq!(sent(&mut t, t0), [b"A21".to_vec()], "a repeat too");
    }

    /// A course peer never acks X and sends its own once: after its X, ours goes
    /// `close_sends` times in all, and we are done.
    #[test]
    fn against_a_peer_that_never_acks_x_close_sends_copies_once_its_x_is_here() {
        let t0 = Instant::now();
        let mut t = transport();
        t.finish();
        assert_eq!(sent(&mut t, t0), [b"X20".to_vec()]);
        feed(&mut t, t0, b"X21");
        assert_eq!(sent(&mut t, t0), [b"A21".to_vec()]);
        let after = run_timers(&mut t);
        assert_eq!(after, [b"X20".to_vec(), b"X20".to_vec()]);
        assert!(t.is_done());
        assert!(t.gave_up().is_none());
        assert_eq!(t.stats().retransmits_timeout, 2);
        // A late ack still lands.
        feed(&mut t, t0, b"A20");
        assert!(t.is_done());
    }

    /// A peer that resends its X is one of ours: our X goes until it is acked.
    #[test]
    fn a_peer_that_resends_its_x_gets_ours_until_acked() {
        let t0 = Instant::now();
        let mut t = transport();
        t.finish();
        feed(&mut t, t0, b"X21");
        assert_eq!(sent(&mut t, t0), [b"A21".to_vec(), b"X20".to_vec()]);
        feed(&mut t, t0, b"X21"); // again: it did not get our ack or our X
        assert_eq!(sent(&mut t, t0), [b"A21".to_vec()]);
        let resends = (0..6)
            .map(|_| {
                let due = t.poll_timeout().unwrap();
                t.handle_timeout(due);
                sent(&mut t, due)
            })
            .filter(|s| s == &[b"X20".to_vec()])
            .count();
        assert_eq!(resends, 6, "past close_sends");
        assert!(!t.is_done());
        feed(&mut t, t0, b"A20");
        assert!(t.is_done());
    }

    /// A proxy answers an X for a connection it no longer has with an ack and an X, at most
    /// once a second per key: two proxies answering each other stop after one exchange.
    #[test]
    fn stray_closes_are_answered_at_most_once_a_second() {
        let t0 = Instant::now();
        let mut stray = StrayCloses::default();
        let id = ConnId::new(2);
        let bytes = |frames: [Frame<'static>; 2]| frames.map(|f| SAW.to_bytes(&f).unwrap());
        let answer = stray.answer(7u8, id, Seq(1), t0).map(bytes);
        assert_eq!(answer, Some([b"A21".to_vec(), b"X21".to_vec()]));
        assert!(
            stray
                .answer(7, id, Seq(1), t0 + Duration::from_millis(999))
                .is_none()
        );
        assert!(stray.answer(8, id, Seq(0), t0).is_some(), "another key");
        assert!(
            stray
                .answer(7, id, Seq(1), t0 + Duration::from_secs(1))
                .is_some()
        );
    }

    /// Our X acked, the peer's never came: we probe after each RTO of silence, and give up
    /// after `max_timeouts` of them unanswered.
    #[test]
    fn an_acked_close_probes_until_the_peers_x_and_gives_up_in_silence() {
        let t0 = Instant::now();
        let mut t = transport();
        t.finish();
        assert_eq!(sent(&mut t, t0), [b"X20".to_vec()]);
        feed(&mut t, t0, b"A20");
        let probe = t.poll_timeout().unwrap();
        assert_eq!(probe, t0 + Duration::from_secs(10));
        // Anything from the peer pushes the probe back.
        feed(&mut t, t0 + Duration::from_secs(5), b"A20");
        assert_eq!(t.poll_timeout(), Some(t0 + Duration::from_secs(15)));
        let probes = run_timers(&mut t);
        let bound = TransportConfig::for_mode(SAW).max_timeouts as usize;
        assert_eq!(probes.len(), bound - 1);
        assert!(probes.iter().all(|p| p == b"X20"));
        assert!(t.gave_up().is_some() && t.is_done());
    }
}
