//! Selective Repeat: a window of frames in flight, a receiver that holds frames arriving
//! after a hole (within its receive window), and acks that say which ones it holds (SACK
//! blocks) on top of the cumulative ack. The sender keeps a scoreboard: held frames are never
//! resent; each other frame has its own timer (RFC 6298, backed off once per RTO), and a
//! frame with `dup_ack_threshold` frames held above it is fast-retransmitted once.
//!
//! The receiver's buffer is bounded by its window: frames held out of order plus frames
//! waiting to be read never exceed `window`, and the advertised window is what is left.

use std::collections::VecDeque;

use bytes::Bytes;

use super::go_back_n::window_reopened;
use super::window::{Policy, Receiver, Windowed};
use super::{AcksOwed, Events, Inbox, OutFrame, TransportConfig, TransportEvent, TransportStats};
use crate::wire::{SackBlock, SackBlocks, Seq};

/// The Selective Repeat transport.
pub type SelectiveRepeat = Windowed<HoldingReceiver>;

impl SelectiveRepeat {
    pub fn new(config: TransportConfig) -> Self {
        Windowed::with_policy(config, Policy::SelectiveRepeat)
    }
}

/// A frame kept until the hole before it fills.
#[derive(Debug)]
enum Held {
    Data(Bytes),
    Close,
}

/// Selective Repeat's receiver.
#[derive(Debug)]
pub struct HoldingReceiver {
    rcv_nxt: Seq,
    /// Slot `i` is sequence number `rcv_nxt + i`; slot 0 is always empty (it would have been
    /// delivered). Never longer than the window advertised when its frames arrived.
    held: VecDeque<Option<Held>>,
    held_count: u32,
    /// Payload bytes in `held`.
    held_bytes: usize,
    inbox: Inbox,
    capacity: u32,
    peer_finished: bool,
    acks: AcksOwed,
    last_window: u32,
}

impl HoldingReceiver {
    /// Frames it can take from `rcv_nxt` on: what the inbox has left.
    fn window(&self) -> u32 {
        self.inbox.room()
    }

    fn deliver(&mut self, seq: Seq, held: Held, stats: &mut TransportStats, events: &mut Events) {
        match held {
            Held::Data(bytes) => {
                stats.bytes_delivered += bytes.len() as u64;
                events.push(TransportEvent::Delivered {
                    seq,
                    len: bytes.len(),
                });
                self.inbox.push(bytes);
            }
            Held::Close => self.peer_finished = true,
        }
        self.rcv_nxt = self.rcv_nxt.add(1);
    }

    /// The runs of held frames, lowest first, as many as an ack carries.
    fn sack_blocks(&self) -> SackBlocks {
        let mut blocks = SackBlocks::EMPTY;
        let mut run: Option<u32> = None;
        for (i, slot) in (0u32..).zip(self.held.iter().chain(std::iter::once(&None))) {
            match (slot.is_some(), run) {
                (true, None) => run = Some(i),
                (false, Some(start)) => {
                    run = None;
                    let block = SackBlock {
                        start: self.rcv_nxt.add(start),
                        end: self.rcv_nxt.add(i),
                    };
                    if !blocks.push(block) {
                        break;
                    }
                }
                _ => {}
            }
        }
        blocks
    }
}

impl Receiver for HoldingReceiver {
    fn new(config: &TransportConfig) -> Self {
        HoldingReceiver {
            rcv_nxt: config.peer_initial_seq,
            held: VecDeque::new(),
            held_count: 0,
            held_bytes: 0,
            inbox: Inbox::new(config.window),
            capacity: config.window.max(1),
            peer_finished: false,
            acks: AcksOwed::default(),
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
        let offset = seq.since(self.rcv_nxt);
        let in_window = offset < self.window() || (fin && offset == 0);
        if seq.before(self.rcv_nxt) {
            stats.duplicates_discarded += 1;
            events.push(TransportEvent::DuplicateDiscarded { seq });
            self.acks.duplicate();
            return;
        }
        if !in_window || self.peer_finished {
            stats.discarded += 1;
            events.push(TransportEvent::Discarded { seq });
            self.acks.duplicate();
            return;
        }
        let frame = if fin {
            Held::Close
        } else {
            Held::Data(Bytes::copy_from_slice(payload))
        };
        let offset = offset as usize;
        if offset > 0 {
            if self.held.len() <= offset {
                self.held.resize_with(offset + 1, || None);
            }
            if self.held[offset].is_some() {
                stats.duplicates_discarded += 1;
                events.push(TransportEvent::DuplicateDiscarded { seq });
            } else {
                self.held_bytes += payload.len();
                self.held[offset] = Some(frame);
                self.held_count += 1;
                stats.out_of_order_held += 1;
                events.push(TransportEvent::HeldOutOfOrder { seq });
            }
            self.acks.duplicate();
            return;
        }
        self.held.pop_front();
        self.deliver(seq, frame, stats, events);
        while let Some(Some(_)) = self.held.front() {
            let Some(Some(next)) = self.held.pop_front() else {
                unreachable!("front checked");
            };
            self.held_count -= 1;
            if let Held::Data(bytes) = &next {
                self.held_bytes -= bytes.len();
            }
            self.deliver(self.rcv_nxt, next, stats, events);
        }
        // Slot 0 is now the next hole, or nothing is held.
        self.acks.progress();
    }

    fn poll_ack(&mut self) -> Option<OutFrame> {
        if !self.acks.take() {
            return None;
        }
        self.last_window = self.window();
        Some(OutFrame::Ack {
            ack: self.rcv_nxt,
            window: self.last_window,
            sack: self.sack_blocks(),
        })
    }

    fn inbox_mut(&mut self) -> &mut Inbox {
        &mut self.inbox
    }

    fn after_read(&mut self) {
        if window_reopened(self.last_window, self.window(), self.capacity) {
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
            window: self.window(),
            sack: SackBlocks::EMPTY,
        })
    }

    fn is_drained(&self) -> bool {
        self.inbox.is_empty() && !self.acks.is_owed()
    }

    fn held(&self) -> u32 {
        self.held_count
    }

    fn buffered_bytes(&self) -> usize {
        self.held_bytes + self.inbox.bytes()
    }

    fn readable(&self) -> u32 {
        self.inbox.frames()
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::transport::{RetransmitCause, RtoConfig, Transport};
    use crate::wire::{ConnId, Frame, WireMode};

    const SR: WireMode = WireMode::SelectiveRepeat;
    const ID: ConnId = ConnId::new(7);

    fn config() -> TransportConfig {
        let mut config = TransportConfig::for_mode(SR);
        config.window = 8;
        config.max_payload = 1;
        config.rto = RtoConfig::Fixed(Duration::from_secs(1));
        // The window mechanics alone; congestion control has tests of its own (window.rs).
        config.congestion = crate::transport::CongestionControl::None;
        config
    }

    fn drain(t: &mut Transport, now: Instant) -> Vec<OutFrame> {
        std::iter::from_fn(|| t.poll_transmit(now)).collect()
    }

    fn data(seq: u32, payload: &[u8]) -> Frame<'_> {
        Frame::Data {
            id: ID,
            seq: Seq(seq),
            payload,
        }
    }

    fn sack(ack: u32, blocks: &[(u32, u32)]) -> Frame<'static> {
        Frame::Ack {
            id: ID,
            ack: Seq(ack),
            window: 8,
            sack: blocks
                .iter()
                .map(|&(start, end)| SackBlock {
                    start: Seq(start),
                    end: Seq(end),
                })
                .collect(),
        }
    }

    #[test]
    fn the_receiver_holds_out_of_order_frames_and_says_so() {
        let t0 = Instant::now();
        let mut t = Transport::new(SR, config());
        t.handle_frame(t0, &data(1, b"b"));
        t.handle_frame(t0, &data(2, b"c"));
        t.handle_frame(t0, &data(4, b"e"));
        t.handle_frame(t0, &data(4, b"e"));
        assert_eq!(t.stats().held, 3);
        let acks = drain(&mut t, t0);
        let Some(OutFrame::Ack { ack, sack, window }) = acks.last() else {
            panic!("{acks:?}")
        };
        assert_eq!((*ack, *window), (Seq(0), 8));
        let blocks: Vec<(u32, u32)> = sack.iter().map(|b| (b.start.0, b.end.0)).collect();
        assert_eq!(blocks, [(1, 3), (4, 5)]);
        let mut buf = [0u8; 8];
        assert_eq!(t.read(&mut buf), 0, "nothing in order yet");
        t.handle_frame(t0, &data(0, b"a"));
        let n = t.read(&mut buf);
        assert_eq!(&buf[..n], b"abc");
        assert_eq!(t.stats().held, 1);
        t.handle_frame(t0, &data(3, b"d"));
        let n = t.read(&mut buf);
        assert_eq!(&buf[..n], b"de");
        let stats = t.stats();
        assert_eq!(
            (stats.out_of_order_held, stats.duplicates_discarded),
            (3, 1)
        );
        assert_eq!(stats.held, 0);
    }

    #[test]
    fn the_receiver_never_holds_more_than_its_window() {
        let t0 = Instant::now();
        let mut t = Transport::new(SR, config());
        for seq in 1..40 {
            t.handle_frame(t0, &data(seq, b"x"));
        }
        assert_eq!(t.stats().held, 7);
        assert_eq!(t.stats().discarded, 32);
    }

    #[test]
    fn sack_evidence_resends_only_the_hole_once() {
        let t0 = Instant::now();
        let mut t = Transport::new(SR, config());
        t.write(b"abcdef");
        assert_eq!(drain(&mut t, t0).len(), 6);
        t.handle_frame(t0, &sack(0, &[(1, 3)]));
        assert!(drain(&mut t, t0).is_empty(), "two above the hole: not yet");
        t.handle_frame(t0, &sack(0, &[(1, 4)]));
        let out = drain(&mut t, t0);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].seq(), Seq(0));
        assert_eq!(out[0].retransmit(), Some(RetransmitCause::FastRetransmit));
        t.handle_frame(t0, &sack(0, &[(1, 5)]));
        assert!(drain(&mut t, t0).is_empty(), "once per frame");
        assert_eq!(t.stats().retransmits_fast, 1);
    }

    #[test]
    fn nonsense_sack_blocks_are_ignored() {
        let t0 = Instant::now();
        let mut t = Transport::new(SR, config());
        t.write(b"abcd");
        drain(&mut t, t0);
        // Inverted, and beyond what was sent: neither may mark anything held.
        t.handle_frame(t0, &sack(0, &[(3, 1), (2, 9)]));
        let due = t.poll_timeout().unwrap();
        t.handle_timeout(due);
        assert_eq!(drain(&mut t, due).len(), 4, "every frame is still resent");
    }

    #[test]
    fn timers_resend_only_unheld_frames() {
        let t0 = Instant::now();
        let mut t = Transport::new(SR, config());
        t.write(b"abcd");
        drain(&mut t, t0);
        t.handle_frame(t0, &sack(0, &[(2, 3)]));
        let due = t.poll_timeout().unwrap();
        assert_eq!(due, t0 + Duration::from_secs(1));
        t.handle_timeout(due);
        let resent: Vec<u32> = drain(&mut t, due).iter().map(|o| o.seq().0).collect();
        assert_eq!(resent, [0, 1, 3]);
        assert_eq!(t.stats().retransmits_timeout, 3);
    }

    #[test]
    fn rtt_samples_skip_retransmitted_frames() {
        let t0 = Instant::now();
        let mut config = config();
        config.rto = RtoConfig::default();
        let mut t = Transport::new(SR, config);
        t.write(b"ab");
        drain(&mut t, t0);
        let due = t.poll_timeout().unwrap();
        t.handle_timeout(due);
        drain(&mut t, due);
        t.handle_frame(due + Duration::from_millis(3), &sack(2, &[]));
        assert_eq!(t.stats().srtt, None);
        t.write(b"c");
        let t1 = due + Duration::from_millis(10);
        drain(&mut t, t1);
        t.handle_frame(t1 + Duration::from_millis(30), &sack(3, &[]));
        assert_eq!(t.stats().srtt, Some(Duration::from_millis(30)));
    }
}
