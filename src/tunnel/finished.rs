//! Connections that ended cleanly, remembered for a while so that a resent `X` or `D` still
//! gets its ack: the extended modes' TIME-WAIT.
//!
//! A side is done once its own `X` is acked and the peer's `X` has arrived (and been acked),
//! and then it forgets the connection. If that last ack is lost, the peer resends its `X` to
//! a proxy that no longer has the connection; unanswered, it would resend until it gives up
//! (about a minute and a half) and hold its id all that time. The same holds when the acks of
//! the peer's last data were lost too: the peer resends its oldest unacked `D` first, not its
//! `X`. TCP keeps a closed connection in TIME-WAIT to re-ack any repeated segment; here the
//! proxy keeps only its last ack, a few dozen bytes per connection, in a bounded table, and
//! the id is free for a new client at once. That ack is cumulative: it covers every frame the
//! peer sent, its `X` included, so it is the right answer to a resend of any of them.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::time::{Duration, Instant};

use crate::transport::OutFrame;
use crate::wire::Seq;

/// Finished connections' final acks, by connection key, bounded in time and count.
#[derive(Debug)]
pub struct FinishedCloses<K> {
    acks: HashMap<K, Remembered>,
    /// Keys in the order they were remembered, to expire and evict the oldest first. A key
    /// remembered again appears twice; the older entry is skipped when its turn comes.
    order: VecDeque<(K, Instant)>,
}

#[derive(Debug)]
struct Remembered {
    ack: OutFrame,
    at: Instant,
}

impl<K: Hash + Eq + Clone> Default for FinishedCloses<K> {
    fn default() -> Self {
        FinishedCloses {
            acks: HashMap::new(),
            order: VecDeque::new(),
        }
    }
}

impl<K: Hash + Eq + Clone> FinishedCloses<K> {
    /// How long a finished connection's ack is kept: longer than a peer keeps resending its
    /// `X` before giving up (12 backed-off timeouts, about 90 s with the default timer).
    pub const LINGER: Duration = Duration::from_mins(2);
    /// Connections remembered at most (proxy2's default connection limit); past it the
    /// oldest is forgotten first, and its peer falls back to giving up.
    pub const CAPACITY: usize = 16_384;

    /// Remembers `ack`, the ack a finished connection sent for the peer's `X`
    /// ([`crate::transport::Transport::closing_ack`]).
    pub fn remember(&mut self, key: K, ack: OutFrame, now: Instant) {
        self.expire(now);
        while self.acks.len() >= Self::CAPACITY {
            self.forget_oldest();
        }
        self.acks.insert(key.clone(), Remembered { ack, at: now });
        self.order.push_back((key, now));
    }

    /// The ack to send for a `D` or `X` with `seq` on `key`, a connection that is gone: the
    /// final ack again, if it covers `seq` (a resend of a frame the connection already took).
    /// A frame past it is not this connection's, and not ours to answer.
    pub fn answer_resend(&mut self, key: &K, seq: Seq, now: Instant) -> Option<OutFrame> {
        self.expire(now);
        let remembered = self.acks.get(key)?;
        seq.before(remembered.ack.seq())
            .then(|| remembered.ack.clone())
    }

    /// Whether `key` finished here less than [`Self::LINGER`] ago.
    pub fn contains(&mut self, key: &K, now: Instant) -> bool {
        self.expire(now);
        self.acks.contains_key(key)
    }

    /// Connections remembered now.
    pub fn len(&self) -> usize {
        self.acks.len()
    }

    /// Whether none is remembered.
    pub fn is_empty(&self) -> bool {
        self.acks.is_empty()
    }

    fn expire(&mut self, now: Instant) {
        while let Some((_, at)) = self.order.front() {
            if now.saturating_duration_since(*at) < Self::LINGER {
                break;
            }
            self.forget_oldest();
        }
    }

    fn forget_oldest(&mut self) {
        let Some((key, at)) = self.order.pop_front() else {
            return;
        };
        // Only if it was not remembered again since.
        if self.acks.get(&key).is_some_and(|r| r.at == at) {
            self.acks.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::SackBlocks;

    fn ack(next: u32) -> OutFrame {
        OutFrame::Ack {
            ack: Seq(next),
            window: 64,
            sack: SackBlocks::EMPTY,
        }
    }

    #[test]
    fn a_resent_frame_gets_the_final_ack_and_no_frame_past_it_does() {
        let mut finished = FinishedCloses::default();
        let t0 = Instant::now();
        finished.remember(1u16, ack(101), t0);
        // The X (seq 100) and data before it, as far back as the wraparound allows.
        for seq in [100, 99, 7, 0, u32::MAX - 5] {
            assert_eq!(
                finished.answer_resend(&1, Seq(seq), t0).map(|a| a.seq()),
                Some(Seq(101)),
                "seq {seq}"
            );
        }
        assert!(
            finished.answer_resend(&1, Seq(101), t0).is_none(),
            "past the X"
        );
        assert!(
            finished.answer_resend(&1, Seq(5_000), t0).is_none(),
            "further on"
        );
        assert!(
            finished.answer_resend(&2, Seq(100), t0).is_none(),
            "another id"
        );
        assert!(finished.contains(&1, t0) && !finished.contains(&2, t0));
    }

    #[test]
    fn it_forgets_after_the_linger() {
        let mut finished = FinishedCloses::default();
        let t0 = Instant::now();
        finished.remember(1u16, ack(101), t0);
        let almost = t0 + FinishedCloses::<u16>::LINGER - Duration::from_millis(1);
        assert!(finished.answer_resend(&1, Seq(100), almost).is_some());
        let after = t0 + FinishedCloses::<u16>::LINGER;
        assert!(finished.answer_resend(&1, Seq(100), after).is_none());
        assert!(finished.is_empty());
    }

    #[test]
    fn it_stays_within_its_capacity_forgetting_the_oldest_first() {
        let mut finished = FinishedCloses::default();
        let t0 = Instant::now();
        let cap = FinishedCloses::<u32>::CAPACITY as u32;
        for key in 0..cap + 10 {
            finished.remember(key, ack(key + 1), t0);
        }
        assert_eq!(finished.len(), FinishedCloses::<u32>::CAPACITY);
        assert!(
            finished.answer_resend(&0, Seq(0), t0).is_none(),
            "the oldest went"
        );
        assert!(
            finished
                .answer_resend(&(cap + 9), Seq(cap + 9), t0)
                .is_some()
        );
    }

    #[test]
    fn a_key_remembered_again_keeps_its_newest_ack_when_the_old_entry_expires() {
        let mut finished = FinishedCloses::default();
        let t0 = Instant::now();
        finished.remember(1u16, ack(101), t0);
        let t1 = t0 + Duration::from_secs(100);
        finished.remember(1u16, ack(201), t1);
        let t2 = t0 + FinishedCloses::<u16>::LINGER;
        assert!(finished.answer_resend(&1, Seq(200), t2).is_some());
        assert_eq!(finished.len(), 1);
    }
}
