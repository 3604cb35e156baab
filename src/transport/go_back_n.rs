//! Go-Back-N: a window of frames in flight, cumulative acks, and a receiver that keeps only
//! the frame it expects. A frame that arrives after a hole is discarded (and acked with the
//! old cumulative ack, a duplicate ack); the sender resends the whole window from the hole,
//! on its single timer or on `dup_ack_threshold` duplicate acks (fast retransmit).
//!
//! On the wire (the extended format): `D` carries its seq, `A` the next seq expected and the
//! receive window (frames it can still buffer; no SACK blocks), `X` takes the seq after the
//! last `D` and is acked like data, so a close is reliable and ordered after the data.

use super::window::{Policy, Receiver, Windowed};
use super::{Events, Inbox, OutFrame, TransportConfig, TransportEvent, TransportStats};
use crate::wire::{SackBlocks, Seq};

/// The Go-Back-N transport.
pub type GoBackN = Windowed<InOrderReceiver>;

impl GoBackN {
    pub fn new(config: TransportConfig) -> Self {
        Windowed::with_policy(config, Policy::GoBackN)
    }
}

/// Go-Back-N's receiver: delivers the expected frame, discards the rest.
#[derive(Debug)]
pub struct InOrderReceiver {
    rcv_nxt: Seq,
    inbox: Inbox,
    capacity: u32,
    peer_finished: bool,
    acks: super::AcksOwed,
    /// The window in the last ack sent.
    last_window: u32,
}

impl Receiver for InOrderReceiver {
    fn new(config: &TransportConfig) -> Self {
        InOrderReceiver {
            rcv_nxt: config.peer_initial_seq,
            inbox: Inbox::new(config.window),
            capacity: config.window.max(1),
            peer_finished: false,
            acks: super::AcksOwed::default(),
            last_window: config.window,
        }
    }

    fn on_data(
        &mut self,
        seq: Seq,
        payload: &[u8],
        fin: bool,
        stats: &mut TransportStats,
        events: &mut Events,
    ) {
        if seq.before(self.rcv_nxt) {
            stats.duplicates_discarded += 1;
            events.push(TransportEvent::DuplicateDiscarded { seq });
            self.acks.duplicate();
        } else if seq != self.rcv_nxt || self.peer_finished || (!fin && self.inbox.room() == 0) {
            stats.discarded += 1;
            events.push(TransportEvent::Discarded { seq });
            self.acks.duplicate();
        } else {
            if fin {
                self.peer_finished = true;
            } else {
                stats.bytes_delivered += payload.len() as u64;
                events.push(TransportEvent::Delivered {
                    seq,
                    len: payload.len(),
                });
                self.inbox.push(bytes::Bytes::copy_from_slice(payload));
            }
            self.rcv_nxt = self.rcv_nxt.add(1);
            self.acks.progress();
        }
    }

    fn poll_ack(&mut self) -> Option<OutFrame> {
        if !self.acks.take() {
            return None;
        }
        self.last_window = self.inbox.room();
        Some(OutFrame::Ack {
            ack: self.rcv_nxt,
            window: self.last_window,
            sack: SackBlocks::EMPTY,
        })
    }

    fn inbox_mut(&mut self) -> &mut Inbox {
        &mut self.inbox
    }

    fn after_read(&mut self) {
        if window_reopened(self.last_window, self.inbox.room(), self.capacity) {
            self.acks.progress();
        }
    }

    fn peer_finished(&self) -> bool {
        self.peer_finished
    }

    fn final_ack(&self) -> Option<OutFrame> {
        // The close is in order behind all data, so nothing above it is held: no SACK.
        self.peer_finished.then(|| OutFrame::Ack {
            ack: self.rcv_nxt,
            window: self.inbox.room(),
            sack: SackBlocks::EMPTY,
        })
    }

    fn is_drained(&self) -> bool {
        self.inbox.is_empty() && !self.acks.is_owed()
    }

    fn held(&self) -> u32 {
        0
    }

    fn buffered_bytes(&self) -> usize {
        self.inbox.bytes()
    }

    fn readable(&self) -> u32 {
        self.inbox.frames()
    }
}

/// Whether a read reopened the window enough to tell the peer: from shut, or by half the
/// capacity (a window update; the sender's probe covers a lost one).
pub(super) fn window_reopened(advertised: u32, room: u32, capacity: u32) -> bool {
    room > advertised && (advertised == 0 || room - advertised >= capacity.div_ceil(2))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::transport::{RetransmitCause, RtoConfig, Transport};
    use crate::wire::{ConnId, Frame, WireMode};

    const GBN: WireMode = WireMode::GoBackN;
    const ID: ConnId = ConnId::new(1);

    fn config() -> TransportConfig {
        let mut config = TransportConfig::for_mode(GBN);
        config.window = 4;
        config.max_payload = 1;
        config.rto = RtoConfig::Fixed(Duration::from_secs(1));
        // The window mechanics alone; congestion control has tests of its own (window.rs).
        config.congestion = crate::transport::CongestionControl::None;
        config
    }

    fn drain(t: &mut Transport, now: Instant) -> Vec<OutFrame> {
        std::iter::from_fn(|| t.poll_transmit(now)).collect()
    }

    fn ack(ack: u32, window: u32) -> Frame<'static> {
        Frame::Ack {
            id: ID,
            ack: Seq(ack),
            window,
            sack: SackBlocks::EMPTY,
        }
    }

    #[test]
    fn sends_a_window_then_waits() {
        let t0 = Instant::now();
        let mut t = Transport::new(GBN, config());
        assert_eq!(t.write(b"abcdefg"), 7);
        let out = drain(&mut t, t0);
        let seqs: Vec<u32> = out.iter().map(|o| o.seq().0).collect();
        assert_eq!(seqs, [0, 1, 2, 3]);
        assert_eq!(t.stats().in_flight, 4);
        t.handle_frame(t0, &ack(2, 4));
        let seqs: Vec<u32> = drain(&mut t, t0).iter().map(|o| o.seq().0).collect();
        assert_eq!(seqs, [4, 5]);
    }

    #[test]
    fn a_timeout_resends_the_whole_window() {
        let t0 = Instant::now();
        let mut t = Transport::new(GBN, config());
        t.write(b"abcd");
        drain(&mut t, t0);
        t.handle_frame(t0, &ack(1, 4));
        let due = t.poll_timeout().unwrap();
        t.handle_timeout(due);
        let out = drain(&mut t, due);
        let resent: Vec<(u32, Option<RetransmitCause>)> =
            out.iter().map(|o| (o.seq().0, o.retransmit())).collect();
        let timeout = Some(RetransmitCause::Timeout);
        assert_eq!(resent, [(1, timeout), (2, timeout), (3, timeout)]);
        assert_eq!(t.stats().retransmits_timeout, 3);
    }

    #[test]
    fn three_duplicate_acks_go_back_once() {
        let t0 = Instant::now();
        let mut t = Transport::new(GBN, config());
        t.write(b"abcd");
        drain(&mut t, t0);
        for _ in 0..3 {
            t.handle_frame(t0, &ack(0, 4));
        }
        let out = drain(&mut t, t0);
        assert_eq!(out.len(), 4);
        assert!(
            out.iter()
                .all(|o| o.retransmit() == Some(RetransmitCause::FastRetransmit))
        );
        // More duplicates of the same loss event do not go back again.
        for _ in 0..5 {
            t.handle_frame(t0, &ack(0, 4));
        }
        assert!(drain(&mut t, t0).is_empty());
    }

    #[test]
    fn the_receiver_discards_out_of_order_and_acks_cumulatively() {
        let t0 = Instant::now();
        let mut t = Transport::new(GBN, config());
        let data = |seq, payload| Frame::Data {
            id: ID,
            seq: Seq(seq),
            payload,
        };
        t.handle_frame(t0, &data(0, b"a"));
        t.handle_frame(t0, &data(2, b"c")); // after a hole: discarded
        t.handle_frame(t0, &data(0, b"a")); // duplicate
        let acks: Vec<_> = drain(&mut t, t0);
        assert_eq!(acks.len(), 2, "one per out-of-order or duplicate frame");
        assert!(acks.iter().all(|a| a.seq() == Seq(1)));
        t.handle_frame(t0, &data(1, b"b"));
        t.handle_frame(t0, &data(2, b"c"));
        let mut buf = [0u8; 8];
        let n = t.read(&mut buf);
        assert_eq!(&buf[..n], b"abc");
        let stats = t.stats();
        assert_eq!((stats.discarded, stats.duplicates_discarded), (1, 1));
        t.handle_frame(
            t0,
            &Frame::Close {
                id: ID,
                seq: Seq(3),
            },
        );
        assert!(t.peer_finished());
        assert_eq!(drain(&mut t, t0).last().map(OutFrame::seq), Some(Seq(4)));
    }

    #[test]
    fn a_full_receiver_shuts_the_window_and_reopens_it_when_read() {
        let t0 = Instant::now();
        let mut config = config();
        config.window = 2;
        let mut t = Transport::new(GBN, config);
        for seq in 0..3 {
            t.handle_frame(
                t0,
                &Frame::Data {
                    id: ID,
                    seq: Seq(seq),
                    payload: b"x",
                },
            );
        }
        let acks = drain(&mut t, t0);
        match acks.last() {
            Some(OutFrame::Ack { ack, window, .. }) => assert_eq!((*ack, *window), (Seq(2), 0)),
            other => panic!("{other:?}"),
        }
        let mut buf = [0u8; 8];
        assert_eq!(t.read(&mut buf), 2);
        match drain(&mut t, t0).as_slice() {
            [OutFrame::Ack { window, .. }] => assert_eq!(*window, 2),
            other => panic!("a window update: {other:?}"),
        }
    }

    #[test]
    fn a_shut_window_still_lets_one_probe_out() {
        let t0 = Instant::now();
        let mut t = Transport::new(GBN, config());
        t.write(b"abc");
        drain(&mut t, t0);
        t.handle_frame(t0, &ack(3, 0));
        t.write(b"de");
        let out = drain(&mut t, t0);
        assert_eq!(out.len(), 1, "one probe while the window is shut");
        assert_eq!(t.stats().peer_window, 0);
    }

    #[test]
    fn close_is_sequenced_after_the_data_and_acked() {
        let t0 = Instant::now();
        let mut t = Transport::new(GBN, config());
        t.write(b"ab");
        t.finish();
        let out = drain(&mut t, t0);
        assert!(matches!(
            out.last(),
            Some(OutFrame::Close { seq: Seq(2), .. })
        ));
        t.handle_frame(t0, &ack(3, 4));
        assert_eq!(t.stats().in_flight, 0);
        assert!(!t.is_done(), "the peer has not closed");
        t.handle_frame(
            t0,
            &Frame::Close {
                id: ID,
                seq: Seq(0),
            },
        );
        drain(&mut t, t0);
        assert!(t.is_done());
    }

    #[test]
    fn sequence_numbers_wrap() {
        let t0 = Instant::now();
        let mut config = config();
        config.initial_seq = Seq(u32::MAX - 1);
        let mut t = Transport::new(GBN, config);
        t.write(b"abcd");
        let seqs: Vec<u32> = drain(&mut t, t0).iter().map(|o| o.seq().0).collect();
        assert_eq!(seqs, [u32::MAX - 1, u32::MAX, 0, 1]);
        t.handle_frame(t0, &ack(1, 4));
        assert_eq!(t.stats().in_flight, 1);
        assert_eq!(t.stats().bytes_acked, 3);
    }
}
