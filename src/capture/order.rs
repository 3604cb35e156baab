//! Puts capture records back in time order before they reach the file.
//!
//! Records reach the writer from several producers: proxy1 and proxy2 each tap what they
//! send, and the TCP reader ([`super::tcp`]) adds the kernel's segments. Each is stamped at
//! the moment it was handed to (or read from) a socket, but it is queued a moment later, so a
//! reply can reach the writer before its request does. Wireshark lists packets in file order,
//! so a file written in arrival order would show a reply above its request.
//!
//! [`TimeOrder`] holds each record for [`HOLD`] (or until [`MAX_HELD`] are held) and hands
//! them out oldest first: a record that arrives later than that is still written, just out of
//! place, and counted in [`TimeOrder::late`].
//!
//! Records arrive almost in order (each producer's are in order; only the interleaving of
//! producers is not), so they are kept in a sorted deque: an in-order record is a push at the
//! back, an out-of-order one a binary search and a short shift near the back, and the oldest
//! is always at the front. A binary heap did the same with a dozen sift steps per record on
//! push and on pop, which `perf` showed as a sizeable part of the capture writer's time.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

/// How long a record waits for older ones that are still on their way. Producers queue a
/// record right after the socket call it is stamped at (the TCP reader, after a wake-up), so
/// their lag is the scheduling delay of one thread; this is far above that even on a loaded
/// machine, and small enough for a live look at the file.
pub const HOLD: Duration = Duration::from_millis(500);

/// Records held at most: past this the oldest goes at once, so a flood cannot grow memory
/// (about what the tap's queue holds, [`super::DEFAULT_QUEUE`]).
pub const MAX_HELD: usize = 4096;

/// Anything with a capture timestamp.
pub trait Stamped {
    fn stamp(&self) -> SystemTime;
}

/// One held record.
struct Held<T> {
    time: SystemTime,
    record: T,
}

/// The reorder stage: no I/O, the caller passes the clock.
pub struct TimeOrder<T> {
    /// Sorted by time; records with the same time in arrival order.
    held: VecDeque<Held<T>>,
    /// The newest stamp handed out so far.
    released_up_to: Option<SystemTime>,
    late: u64,
}

impl<T: Stamped> Default for TimeOrder<T> {
    fn default() -> Self {
        TimeOrder {
            held: VecDeque::new(),
            released_up_to: None,
            late: 0,
        }
    }
}

impl<T: Stamped> TimeOrder<T> {
    /// Takes a record in.
    pub fn push(&mut self, record: T) {
        let time = record.stamp();
        if self.released_up_to.is_some_and(|released| time < released) {
            // Older than something already written: it can only go out of place now.
            self.late += 1;
        }
        let held = Held { time, record };
        match self.held.back() {
            Some(newest) if newest.time > time => {
                // After every record of the same time or older: ties keep arrival order.
                let at = self.held.partition_point(|h| h.time <= time);
                self.held.insert(at, held);
            }
            _ => self.held.push_back(held),
        }
    }

    /// Takes several records in.
    pub fn extend(&mut self, records: impl IntoIterator<Item = T>) {
        for record in records {
            self.push(record);
        }
    }

    /// The next record that may go at `now`: held for [`HOLD`] already, or pushed out by
    /// [`MAX_HELD`].
    pub fn pop_ready(&mut self, now: SystemTime) -> Option<T> {
        let oldest = self.held.front()?;
        let matured = now.duration_since(oldest.time).is_ok_and(|age| age >= HOLD);
        if matured || self.held.len() > MAX_HELD {
            self.pop()
        } else {
            None
        }
    }

    /// The oldest record, whether it has waited or not (on finishing).
    pub fn pop(&mut self) -> Option<T> {
        let held = self.held.pop_front()?;
        self.released_up_to = Some(self.released_up_to.map_or(held.time, |t| t.max(held.time)));
        Some(held.record)
    }

    /// How long until the oldest record may go (`None` when nothing is held).
    pub fn next_due(&self, now: SystemTime) -> Option<Duration> {
        let oldest = self.held.front()?;
        let age = now.duration_since(oldest.time).unwrap_or_default();
        Some(HOLD.saturating_sub(age))
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.held.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Records that arrived after a younger one had already been handed out.
    pub fn late(&self) -> u64 {
        self.late
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[derive(Debug, PartialEq)]
    struct R(u64, &'static str);
    impl Stamped for R {
        fn stamp(&self) -> SystemTime {
            UNIX_EPOCH + Duration::from_millis(self.0)
        }
    }
    fn at(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(ms)
    }

    #[test]
    fn records_come_out_oldest_first_once_held_long_enough() {
        let hold = HOLD.as_millis() as u64;
        let mut order = TimeOrder::default();
        order.push(R(1000, "reply"));
        order.push(R(999, "request"));
        order.push(R(1000, "second at the same time"));
        assert_eq!(order.pop_ready(at(1100)), None, "not held long enough");
        assert_eq!(
            order.next_due(at(1100)),
            Some(HOLD - Duration::from_millis(101))
        );
        assert_eq!(order.pop_ready(at(999 + hold)), Some(R(999, "request")));
        assert_eq!(order.pop_ready(at(999 + hold)), None);
        assert_eq!(order.pop_ready(at(1000 + hold)), Some(R(1000, "reply")));
        assert_eq!(
            order.pop_ready(at(1000 + hold)),
            Some(R(1000, "second at the same time")),
            "ties keep arrival order"
        );
        assert!(order.is_empty());
        assert_eq!(order.late(), 0);
    }

    #[test]
    fn a_record_later_than_the_hold_is_kept_and_counted() {
        let mut order = TimeOrder::default();
        order.push(R(1000, "a"));
        assert_eq!(order.pop_ready(at(5000)), Some(R(1000, "a")));
        order.push(R(500, "very late"));
        assert_eq!(order.late(), 1);
        assert_eq!(order.pop(), Some(R(500, "very late")));
    }

    #[test]
    fn interleaved_producers_come_out_sorted_and_stable() {
        // Two producers, each in order, interleaved with lag; same-time records keep their
        // arrival order.
        let mut order = TimeOrder::default();
        let mut pushed = Vec::new();
        for i in 0..500u64 {
            let a = (1_000 + i * 3, if i % 7 == 0 { "a-tie" } else { "a" });
            let b = (1_000 + i * 3 + (i % 5) * 2, "b");
            // b's record of this step arrives first although it may be younger; every few
            // steps a's record is a tie with an earlier b.
            for record in [b, a] {
                order.push(R(record.0, record.1));
                pushed.push(record);
            }
        }
        let mut out = Vec::new();
        while let Some(R(ms, tag)) = order.pop() {
            out.push((ms, tag));
        }
        let mut expected = pushed.clone();
        expected.sort_by_key(|(ms, _)| *ms); // stable: ties in arrival order
        assert_eq!(out, expected);
    }

    #[test]
    fn a_flood_is_bounded() {
        let mut order = TimeOrder::default();
        for i in 0..=MAX_HELD as u64 {
            order.push(R(1_000_000 + i, "x"));
        }
        // Nothing has matured, but one too many is held: the oldest goes.
        assert_eq!(order.pop_ready(at(1_000_000)), Some(R(1_000_000, "x")));
        assert_eq!(order.pop_ready(at(1_000_000)), None);
        assert_eq!(order.len(), MAX_HELD);
    }
}
