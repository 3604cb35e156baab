//! The delay line of one direction at one socket: when each accepted datagram may go, in
//! which order. It only does arithmetic on instants; the link socket asks it what is due and
//! does the sending, and a timer task wakes up at [`Pipeline::next_wake`]. So nothing ever
//! sleeps in the path of another frame.
//!
//! Order rules, in words:
//! - a frame's send time is now + its delay (with jitter), after any rate-limit queueing;
//! - no frame goes before one accepted earlier (so jitter never reorders);
//! - a frame picked for reordering is held back and goes right after the next frame that is
//!   accepted without being held (its duplicate, if any, with it); frames picked while
//!   others are held join them, in order. If no such frame comes within `reorder_wait`,
//!   held frames go anyway: late, but not reordered;
//! - a duplicate goes right behind its original.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;

use tokio::time::Instant;

use super::counters::DirectionCounters;
use super::decide::{Decision, DropCause};
use super::settings::DirectionSettings;
use super::verdict::LinkVerdict;

/// Most datagrams one delay line holds, whatever the settings: with a long delay and heavy
/// traffic, memory stays bounded and the excess is dropped as [`DropCause::QueueFull`].
pub const MAX_PENDING: usize = 10_000;

/// A datagram waiting in the emulator.
#[derive(Debug)]
pub struct Pending {
    pub datagram: Vec<u8>,
    /// Where it goes (sending) or where it came from (arriving).
    pub addr: SocketAddr,
    pub verdict: LinkVerdict,
}

/// A frame held back for reordering, with its copy.
#[derive(Debug)]
struct Held {
    offered: Instant,
    /// When it would have gone had it not been held.
    natural: Instant,
    datagrams: Vec<Pending>,
}

/// What became of an accepted frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accepted {
    /// When it is due to go; `None` while it is held back for reordering.
    pub release: Option<Instant>,
    /// What the emulator did to it so far (delay, corruption, duplication).
    pub verdict: LinkVerdict,
}

#[derive(Debug, Default)]
pub struct Pipeline {
    /// Datagrams by send time, then by the order they were queued.
    queue: BTreeMap<(Instant, u64), Pending>,
    next_seq: u64,
    /// Send time of the frame queued last: nothing queued later may go earlier.
    last_release: Option<Instant>,
    /// When the rate-limited link has sent everything given to it so far.
    link_free_at: Option<Instant>,
    /// When each frame in the rate limiter's queue will have been sent.
    rate_queue: VecDeque<Instant>,
    held: Vec<Held>,
    /// When held frames stop waiting to be overtaken.
    held_deadline: Option<Instant>,
}

impl Pipeline {
    /// Datagrams waiting (queued or held), copies included.
    pub fn len(&self) -> usize {
        self.queue.len() + self.held.iter().map(|h| h.datagrams.len()).sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// When something next becomes due, if anything waits.
    pub fn next_wake(&self) -> Option<Instant> {
        let queued = self.queue.keys().next().map(|(at, _)| *at);
        match (queued, self.held_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Takes a decided, not dropped frame. `Err` means the queue was full and it was dropped
    /// (the datagram comes back, for the capture's note).
    pub fn offer(
        &mut self,
        now: Instant,
        decision: &Decision,
        settings: &DirectionSettings,
        mut datagram: Vec<u8>,
        addr: SocketAddr,
        counters: &DirectionCounters,
    ) -> Result<Accepted, (DropCause, Vec<u8>)> {
        let copies = if decision.duplicate { 2 } else { 1 };
        if self.len() + copies > MAX_PENDING {
            return Err((DropCause::QueueFull, datagram));
        }
        // Rate limit: the frame waits for the link to finish what is ahead of it.
        let mut release = now;
        if let Some(rate) = settings.rate {
            while self.rate_queue.front().is_some_and(|done| *done <= now) {
                self.rate_queue.pop_front();
            }
            if self.rate_queue.len() >= settings.queue.max(1) {
                return Err((DropCause::QueueFull, datagram));
            }
            let start = self.link_free_at.map_or(now, |free| free.max(now));
            let done = start + rate.transmit_time(datagram.len() * copies);
            self.link_free_at = Some(done);
            self.rate_queue.push_back(done);
            release = done;
        }
        release += decision.delay.min(super::settings::MAX_DELAY);
        if let Some(last) = self.last_release {
            release = release.max(last);
        }

        if let Some(corruption) = decision.corrupt {
            corruption.apply(&mut datagram);
            counters.corrupted.add();
        }
        let verdict = LinkVerdict {
            corrupted: decision.corrupt,
            duplicated: decision.duplicate,
            ..LinkVerdict::default()
        };
        let mut datagrams = Vec::with_capacity(copies);
        if decision.duplicate {
            counters.duplicated.add();
            datagrams.push(Pending {
                datagram: datagram.clone(),
                addr,
                verdict: LinkVerdict {
                    copy: true,
                    duplicated: false,
                    ..verdict.clone()
                },
            });
        }
        datagrams.insert(
            0,
            Pending {
                datagram,
                addr,
                verdict,
            },
        );
        counters.queued.add_n(copies as u64);

        if decision.reorder {
            if self.held.is_empty() {
                self.held_deadline = Some(release + settings.reorder_wait);
            }
            let verdict = datagrams[0].verdict.clone();
            self.held.push(Held {
                offered: now,
                natural: release,
                datagrams,
            });
            return Ok(Accepted {
                release: None,
                verdict,
            });
        }
        let verdict = LinkVerdict {
            held_for: release.saturating_duration_since(now),
            ..datagrams[0].verdict.clone()
        };
        self.schedule(now, release, datagrams, counters);
        // Whatever was held goes right behind this frame: it has been overtaken.
        for held in std::mem::take(&mut self.held) {
            let release = release.max(held.natural);
            self.release_held(held, release, true, counters);
        }
        self.held_deadline = None;
        Ok(Accepted {
            release: Some(release),
            verdict,
        })
    }

    /// Queues `datagrams` (an original and maybe its copy) to go at `release`.
    fn schedule(
        &mut self,
        offered: Instant,
        release: Instant,
        datagrams: Vec<Pending>,
        counters: &DirectionCounters,
    ) {
        if release > offered {
            counters.delayed.add();
        }
        for mut pending in datagrams {
            pending.verdict.held_for = release.saturating_duration_since(offered);
            self.queue.insert((release, self.next_seq), pending);
            self.next_seq += 1;
        }
        self.last_release = Some(release);
    }

    fn release_held(
        &mut self,
        held: Held,
        release: Instant,
        overtaken: bool,
        counters: &DirectionCounters,
    ) {
        let mut datagrams = held.datagrams;
        if overtaken {
            counters.reordered.add();
            for pending in &mut datagrams {
                pending.verdict.reordered = true;
            }
        }
        self.schedule(held.offered, release, datagrams, counters);
    }

    /// Takes the next datagram whose time has come.
    pub fn pop_due(&mut self, now: Instant, counters: &DirectionCounters) -> Option<Pending> {
        if self.held_deadline.is_some_and(|deadline| deadline <= now) {
            // Nothing overtook them in time: they go now, in order, not reordered.
            self.held_deadline = None;
            for held in std::mem::take(&mut self.held) {
                let release = [Some(now), Some(held.natural), self.last_release]
                    .into_iter()
                    .flatten()
                    .max()
                    .unwrap_or(now);
                self.release_held(held, release, false, counters);
            }
        }
        let entry = self.queue.first_entry()?;
        if entry.key().0 > now {
            return None;
        }
        counters.queued.sub();
        Some(entry.remove())
    }

    /// Empties the line because its endpoint stopped: everything waiting is counted as
    /// dropped ([`DropCause::Stopped`]). Returns how many datagrams that was.
    /// `kind_of` reads a datagram's frame type, for the per-type drop counts.
    pub fn discard_all(
        &mut self,
        counters: &DirectionCounters,
        kind_of: impl Fn(&[u8]) -> Option<crate::wire::FrameKind>,
    ) -> usize {
        let discarded = self.len();
        let waiting = self
            .queue
            .values()
            .chain(self.held.iter().flat_map(|h| &h.datagrams));
        for kind in waiting.filter_map(|pending| kind_of(&pending.datagram)) {
            counters.drop_kind(kind);
        }
        self.queue.clear();
        self.held.clear();
        self.held_deadline = None;
        counters.queued.sub_n(discarded as u64);
        counters.drop_n(DropCause::Stopped, discarded as u64);
        discarded
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::impair::decide::Corruption;
    use crate::impair::settings::BitRate;

    fn addr() -> SocketAddr {
        "127.0.0.1:9".parse().unwrap()
    }

    fn plain() -> Decision {
        Decision::default()
    }

    fn offer(
        pipeline: &mut Pipeline,
        now: Instant,
        decision: Decision,
        settings: &DirectionSettings,
        tag: u8,
        counters: &DirectionCounters,
    ) -> Result<Option<Instant>, DropCause> {
        pipeline
            .offer(
                now,
                &decision,
                settings,
                vec![b'D', b'0', tag],
                addr(),
                counters,
            )
            .map(|accepted| accepted.release)
            .map_err(|(cause, _)| cause)
    }

    fn drain(pipeline: &mut Pipeline, now: Instant, counters: &DirectionCounters) -> Vec<u8> {
        std::iter::from_fn(|| pipeline.pop_due(now, counters))
            .map(|p| p.datagram[2])
            .collect()
    }

    #[test]
    fn plain_frames_are_due_at_once_and_in_order() {
        let counters = DirectionCounters::default();
        let settings = DirectionSettings::default();
        let mut pipeline = Pipeline::default();
        let now = Instant::now();
        for tag in 0..5 {
            assert_eq!(
                offer(&mut pipeline, now, plain(), &settings, tag, &counters),
                Ok(Some(now))
            );
        }
        assert_eq!(drain(&mut pipeline, now, &counters), vec![0, 1, 2, 3, 4]);
        assert_eq!(counters.snapshot().queued, 0);
        assert_eq!(counters.snapshot().delayed, 0);
    }

    #[test]
    fn delayed_frames_wait_and_jitter_cannot_reorder() {
        let counters = DirectionCounters::default();
        let settings = DirectionSettings::default();
        let mut pipeline = Pipeline::default();
        let now = Instant::now();
        let slow = Decision {
            delay: Duration::from_millis(30),
            ..plain()
        };
        let fast = Decision {
            delay: Duration::from_millis(10),
            ..plain()
        };
        offer(&mut pipeline, now, slow, &settings, 1, &counters).unwrap();
        offer(&mut pipeline, now, fast, &settings, 2, &counters).unwrap();
        assert_eq!(pipeline.next_wake(), Some(now + Duration::from_millis(30)));
        assert!(drain(&mut pipeline, now + Duration::from_millis(29), &counters).is_empty());
        assert_eq!(
            drain(&mut pipeline, now + Duration::from_millis(30), &counters),
            vec![1, 2]
        );
        assert_eq!(counters.snapshot().delayed, 2);
    }

    #[test]
    fn a_held_frame_goes_right_after_the_next_one() {
        let counters = DirectionCounters::default();
        let settings = DirectionSettings::default();
        let mut pipeline = Pipeline::default();
        let now = Instant::now();
        let reorder = Decision {
            reorder: true,
            ..plain()
        };
        assert_eq!(
            offer(&mut pipeline, now, reorder, &settings, 1, &counters),
            Ok(None)
        );
        assert!(drain(&mut pipeline, now, &counters).is_empty());
        offer(&mut pipeline, now, reorder, &settings, 2, &counters).unwrap();
        offer(&mut pipeline, now, plain(), &settings, 3, &counters).unwrap();
        offer(&mut pipeline, now, plain(), &settings, 4, &counters).unwrap();
        assert_eq!(drain(&mut pipeline, now, &counters), vec![3, 1, 2, 4]);
        assert_eq!(counters.snapshot().reordered, 2);
    }

    #[test]
    fn a_held_frame_with_nothing_behind_it_goes_after_the_wait() {
        let counters = DirectionCounters::default();
        let settings = DirectionSettings::default();
        let mut pipeline = Pipeline::default();
        let now = Instant::now();
        let reorder = Decision {
            reorder: true,
            ..plain()
        };
        offer(&mut pipeline, now, reorder, &settings, 1, &counters).unwrap();
        let deadline = now + settings.reorder_wait;
        assert_eq!(pipeline.next_wake(), Some(deadline));
        assert!(
            drain(
                &mut pipeline,
                deadline - Duration::from_millis(1),
                &counters
            )
            .is_empty()
        );
        let sent = pipeline.pop_due(deadline, &counters).unwrap();
        assert_eq!(sent.datagram[2], 1);
        assert!(!sent.verdict.reordered);
        assert_eq!(sent.verdict.held_for, settings.reorder_wait);
        assert_eq!(counters.snapshot().reordered, 0);
        assert_eq!(counters.snapshot().delayed, 1);
    }

    #[test]
    fn duplicates_follow_their_original_and_share_its_corruption() {
        let counters = DirectionCounters::default();
        let settings = DirectionSettings::default();
        let mut pipeline = Pipeline::default();
        let now = Instant::now();
        let decision = Decision {
            duplicate: true,
            corrupt: Some(Corruption { offset: 2, bit: 0 }),
            ..plain()
        };
        offer(&mut pipeline, now, decision, &settings, 8, &counters).unwrap();
        offer(&mut pipeline, now, plain(), &settings, 2, &counters).unwrap();
        let first = pipeline.pop_due(now, &counters).unwrap();
        let copy = pipeline.pop_due(now, &counters).unwrap();
        assert_eq!(first.datagram, b"D0\x09");
        assert_eq!(copy.datagram, first.datagram);
        assert!(first.verdict.duplicated && !first.verdict.copy);
        assert!(copy.verdict.copy);
        assert_eq!(drain(&mut pipeline, now, &counters), vec![2]);
        let counts = counters.snapshot();
        assert_eq!((counts.duplicated, counts.corrupted), (1, 1));
    }

    #[test]
    fn the_rate_limiter_spaces_frames_and_drops_when_its_queue_is_full() {
        let counters = DirectionCounters::default();
        let settings = DirectionSettings {
            rate: Some(BitRate::new(8_000).unwrap()), // 3-byte frames: 3ms each
            queue: 3,
            ..DirectionSettings::default()
        };
        let mut pipeline = Pipeline::default();
        let now = Instant::now();
        let results: Vec<_> = (0..5)
            .map(|tag| offer(&mut pipeline, now, plain(), &settings, tag, &counters))
            .collect();
        let ms = |n| now + Duration::from_millis(n);
        assert_eq!(
            results,
            vec![
                Ok(Some(ms(3))),
                Ok(Some(ms(6))),
                Ok(Some(ms(9))),
                Err(DropCause::QueueFull),
                Err(DropCause::QueueFull),
            ]
        );
        assert_eq!(drain(&mut pipeline, ms(3), &counters), vec![0]);
        // The first frame has gone: there is room for one more, behind the others.
        assert_eq!(
            offer(&mut pipeline, ms(3), plain(), &settings, 5, &counters),
            Ok(Some(ms(12)))
        );
        assert_eq!(drain(&mut pipeline, ms(12), &counters), vec![1, 2, 5]);
    }

    #[test]
    fn discarding_counts_everything_waiting() {
        let counters = DirectionCounters::default();
        let settings = DirectionSettings::default();
        let mut pipeline = Pipeline::default();
        let now = Instant::now();
        let late = Decision {
            delay: Duration::from_secs(1),
            duplicate: true,
            ..plain()
        };
        offer(&mut pipeline, now, late, &settings, 1, &counters).unwrap();
        let held = Decision {
            reorder: true,
            ..plain()
        };
        offer(&mut pipeline, now, held, &settings, 2, &counters).unwrap();
        assert_eq!(pipeline.discard_all(&counters, |_| None), 3);
        assert!(pipeline.is_empty());
        assert_eq!(pipeline.next_wake(), None);
        let counts = counters.snapshot();
        assert_eq!((counts.queued, counts.dropped_by.stopped), (0, 3));
    }
}
