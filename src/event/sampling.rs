//! Per-frame events past a rate: folded into counters instead of sent one by one.
//!
//! A screen shows a few dozen trace rows; a tunnel at full speed makes a hundred thousand
//! per-frame events a second. Building, queueing and folding each of them cost the lab more
//! than the tunnel itself (BENCHMARKS.md, issue 18). So a sink with a [`FrameSampler`] lets
//! through at most a set number of per-frame events a second (frames sent and received, TCP
//! reads and writes, client sends and echoes, link decisions) and, past it, only counts them:
//! per endpoint and connection id, frames, payload bytes and other events. The counts reach
//! the consumer as [`EventKind::FramesFolded`] events, so per-connection totals stay exact
//! while traces show a sample, marked as such.
//!
//! Order is kept where it matters: the counts of an id are flushed into the stream before any
//! event of that id that does get through (its next traced frame, or a change of state, after
//! which the id may belong to a new client), and whenever the consumer asks
//! ([`crate::event::EventSink::flush_folded`], the TUI does on every tick).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use crate::event::{ClientAction, EventKind, TcpAction};
use crate::topology::{Endpoint, Role};
use crate::wire::ConnId;

/// The sampler's clock: admissions are counted per window of this length.
const WINDOW: Duration = Duration::from_millis(100);

/// Milliseconds on the kernel's coarse monotonic clock: the time of its last tick (a few
/// milliseconds old at most), read from memory the kernel shares (vDSO) without touching
/// the CPU's time stamp counter. Every per-frame event asks the sampler, so its clock is
/// read a hundred thousand times a second at full speed; a 100 ms window needs no finer
/// clock than this, and a precise read cost more than the rest of `admit` together.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)] // one libc call, no safe wrapper in std or our dependencies
fn coarse_millis() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec to write to; CLOCK_MONOTONIC_COARSE exists on
    // every Linux since 2.6.32 and cannot fail with a valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &raw mut now) };
    now.tv_sec as u64 * 1000 + now.tv_nsec as u64 / 1_000_000
}

#[cfg(not(target_os = "linux"))]
fn coarse_millis() -> u64 {
    use std::sync::OnceLock;
    static START: OnceLock<std::time::Instant> = OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as u64
}

/// Ids with their own counters. Classic mode has ten; frames of higher ids (a future wider
/// mode) are counted under the last slot's neighbour [`OTHER_IDS`], not per id.
pub const FOLDED_IDS: usize = 16;
/// The slot of frames whose id has no slot of its own.
const OTHER_IDS: usize = FOLDED_IDS;

/// What folding one event adds to its id's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Folded {
    /// Frames sent (`FrameSent`).
    pub frames: u64,
    /// Their payload bytes.
    pub payload_bytes: u64,
    /// Other per-frame events: frames received, TCP reads and writes, link decisions.
    pub other: u64,
}

impl Folded {
    /// What folding a frame sent with `payload_len` payload bytes adds.
    pub fn frame_sent(payload_len: usize) -> Self {
        Folded {
            frames: 1,
            payload_bytes: payload_len as u64,
            other: 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.frames == 0 && self.other == 0
    }
}

/// One id's counters at one endpoint.
#[derive(Debug, Default)]
struct Slot {
    frames: AtomicU64,
    payload_bytes: AtomicU64,
    other: AtomicU64,
}

impl Slot {
    fn add(&self, folded: Folded) {
        if folded.frames > 0 {
            self.frames.fetch_add(folded.frames, Ordering::Relaxed);
            self.payload_bytes
                .fetch_add(folded.payload_bytes, Ordering::Relaxed);
        }
        if folded.other > 0 {
            self.other.fetch_add(folded.other, Ordering::Relaxed);
        }
    }

    fn pending(&self) -> bool {
        self.frames.load(Ordering::Relaxed) > 0 || self.other.load(Ordering::Relaxed) > 0
    }

    fn take(&self) -> Folded {
        Folded {
            frames: self.frames.swap(0, Ordering::Relaxed),
            payload_bytes: self.payload_bytes.swap(0, Ordering::Relaxed),
            other: self.other.swap(0, Ordering::Relaxed),
        }
    }
}

/// The counters one endpoint's sender writes, on cache lines of their own (proxy1 and proxy2
/// run on different threads).
#[derive(Debug, Default)]
#[repr(align(128))]
struct EndpointSlots {
    ids: [Slot; FOLDED_IDS + 1],
    /// Per-frame events of this endpoint folded since the start (never reset).
    folded: AtomicU64,
}

/// A counter on a cache line of its own.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Padded(AtomicU64);

/// Where an event over the rate is counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sampled {
    /// Not a per-frame event: always sent.
    Always,
    /// A per-frame event of this endpoint and id, with what it adds when folded.
    Frame(Endpoint, ConnId, Folded),
    /// A per-frame event that no id's counters need (the lab's own exact counters have it:
    /// client sends and echoes, the echo server's reads and writes).
    Uncounted,
}

/// Classifies an event for the sampler.
pub fn classify(kind: &EventKind) -> Sampled {
    let endpoint_of = |role: Role| match role {
        Role::Proxy1 => Some(Endpoint::Proxy1),
        Role::Proxy2 => Some(Endpoint::Proxy2),
        Role::EchoServer | Role::Client => None,
    };
    match kind {
        EventKind::FrameSent { at, frame, .. } => {
            Sampled::Frame(*at, frame.id, Folded::frame_sent(frame.payload_len))
        }
        EventKind::FrameReceived { at, frame, .. } | EventKind::LinkDecision { at, frame, .. } => {
            Sampled::Frame(*at, frame.id, OTHER)
        }
        EventKind::Tcp {
            role,
            id,
            action: TcpAction::Read(_) | TcpAction::Wrote(_),
            ..
        } => match (endpoint_of(*role), id) {
            (Some(at), Some(id)) => Sampled::Frame(at, *id, OTHER),
            _ => Sampled::Uncounted,
        },
        EventKind::Client {
            action: ClientAction::Sent(_) | ClientAction::Echoed { .. },
            ..
        } => Sampled::Uncounted,
        // A transport's trace events come with frames (a retransmission, a duplicate): one
        // per frame at worst, so they are sampled like frames. A give-up always goes.
        EventKind::Transport {
            event: crate::transport::TransportEvent::GaveUp { .. },
            ..
        } => Sampled::Always,
        EventKind::Transport { at, id, .. } => Sampled::Frame(*at, *id, OTHER),
        _ => Sampled::Always,
    }
}

/// What folding a per-frame event other than a frame sent adds: one "other".
pub const OTHER: Folded = Folded {
    frames: 0,
    payload_bytes: 0,
    other: 1,
};

/// Admits per-frame events up to a rate and counts the rest. Shared by every clone of a sink.
#[derive(Debug)]
pub struct FrameSampler {
    per_window: u32,
    /// The window `used` counts for.
    window: AtomicU64,
    used: AtomicU32,
    slots: [EndpointSlots; 2],
    /// Per-frame events with no endpoint (the echo server's, the lab clients') folded since
    /// the start. The endpoints count theirs in their own slots: one counter shared by every
    /// sender's thread, added to on every folded event, was a cache line they fought over.
    uncounted_folded: Padded,
}

impl FrameSampler {
    /// At most `per_second` per-frame events get through each second (in 100 ms windows).
    pub fn new(per_second: u32) -> Self {
        let per_window = (u64::from(per_second) * WINDOW.as_millis() as u64 / 1000).max(1);
        FrameSampler {
            per_window: per_window as u32,
            window: AtomicU64::new(0),
            used: AtomicU32::new(0),
            slots: Default::default(),
            uncounted_folded: Padded::default(),
        }
    }

    /// Whether one more per-frame event may go through now. Past the rate this only reads
    /// two shared atomics, so the senders' threads do not fight over a cache line.
    pub fn admit(&self) -> bool {
        let window = coarse_millis() / WINDOW.as_millis() as u64;
        let current = self.window.load(Ordering::Relaxed);
        if window != current {
            if self
                .window
                .compare_exchange(current, window, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            {
                self.used.store(0, Ordering::Relaxed);
            }
        } else if self.used.load(Ordering::Relaxed) >= self.per_window {
            return false;
        }
        self.used.fetch_add(1, Ordering::Relaxed) < self.per_window
    }

    fn slot(&self, at: Endpoint, id: ConnId) -> &Slot {
        let endpoint = match at {
            Endpoint::Proxy1 => 0,
            Endpoint::Proxy2 => 1,
        };
        &self.slots[endpoint].ids[id.index().min(OTHER_IDS)]
    }

    /// Counts an event that was not let through.
    pub fn fold(&self, at: Endpoint, id: ConnId, folded: Folded) {
        let endpoint = &self.slots[at as usize];
        endpoint.ids[id.index().min(OTHER_IDS)].add(folded);
        endpoint
            .folded
            .fetch_add(folded.frames + folded.other, Ordering::Relaxed);
    }

    /// Counts a per-frame event nobody needs per id.
    pub fn fold_uncounted(&self) {
        self.uncounted_folded.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether `id` has counts waiting at either endpoint.
    pub fn pending(&self, id: ConnId) -> bool {
        [Endpoint::Proxy1, Endpoint::Proxy2]
            .into_iter()
            .any(|at| self.slot(at, id).pending())
    }

    /// Takes the counts of one endpoint and id (zeroing them).
    pub fn take(&self, at: Endpoint, id: ConnId) -> Folded {
        self.slot(at, id).take()
    }

    /// Puts counts back (the stream was full when they were to be sent).
    pub fn put_back(&self, at: Endpoint, id: ConnId, folded: Folded) {
        self.slot(at, id).add(folded);
    }

    /// Every (endpoint, id) with counts waiting; ids without a slot of their own come last,
    /// under the first id past the slots.
    pub fn pending_slots(&self) -> impl Iterator<Item = (Endpoint, ConnId)> + '_ {
        [Endpoint::Proxy1, Endpoint::Proxy2]
            .into_iter()
            .flat_map(move |at| {
                (0..=OTHER_IDS)
                    .filter(move |&index| self.slots[at as usize].ids[index].pending())
                    .map(move |index| (at, ConnId::new(index as u16)))
            })
    }

    /// Per-frame events folded instead of sent, since the start.
    pub fn total_folded(&self) -> u64 {
        self.slots
            .iter()
            .map(|endpoint| endpoint.folded.load(Ordering::Relaxed))
            .sum::<u64>()
            + self.uncounted_folded.0.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_up_to_the_rate_in_a_window_then_refuses() {
        let sampler = FrameSampler::new(100);
        // 10 per 100 ms window; a test this quick stays in one window or crosses one edge.
        let admitted = (0..1000).filter(|_| sampler.admit()).count();
        assert!((10..=20).contains(&admitted), "{admitted}");
    }

    #[test]
    fn folded_counts_are_taken_once_and_can_be_put_back() {
        let sampler = FrameSampler::new(1);
        let id = ConnId::new(3);
        let one = Folded {
            frames: 1,
            payload_bytes: 1000,
            other: 0,
        };
        sampler.fold(Endpoint::Proxy1, id, one);
        sampler.fold(Endpoint::Proxy1, id, one);
        sampler.fold(Endpoint::Proxy2, id, OTHER);
        assert!(sampler.pending(id));
        assert_eq!(
            sampler.pending_slots().collect::<Vec<_>>(),
            vec![(Endpoint::Proxy1, id), (Endpoint::Proxy2, id)]
        );
        let taken = sampler.take(Endpoint::Proxy1, id);
        assert_eq!(
            taken,
            Folded {
                frames: 2,
                payload_bytes: 2000,
                other: 0
            }
        );
        assert_eq!(sampler.take(Endpoint::Proxy1, id), Folded::default());
        sampler.put_back(Endpoint::Proxy1, id, taken);
        assert_eq!(sampler.take(Endpoint::Proxy1, id), taken);
        assert_eq!(sampler.take(Endpoint::Proxy2, id), OTHER);
        assert!(!sampler.pending(id));
        assert_eq!(sampler.total_folded(), 3);
    }
}
