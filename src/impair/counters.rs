//! Exact per-direction counters of the link emulator. Like [`crate::link::LinkStats`], they
//! never depend on the lossy event stream.
//!
//! They add up: `sent + duplicated = delivered + dropped + queued` at every quiet moment
//! (each duplicate is one more datagram to account for).

use std::sync::atomic::{AtomicU64, Ordering};

use super::decide::DropCause;
use crate::wire::FrameKind;

/// One counter (or gauge) updated without a lock.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn add(&self) {
        self.add_n(1);
    }
    pub fn add_n(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn sub(&self) {
        self.sub_n(1);
    }
    pub fn sub_n(&self, n: u64) {
        self.0.fetch_sub(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Every drop cause, in report order.
const CAUSES: [DropCause; 7] = [
    DropCause::Loss,
    DropCause::Burst,
    DropCause::Blackhole,
    DropCause::QueueFull,
    DropCause::Stopped,
    DropCause::SendFailed,
    DropCause::ByHand,
];

/// The live counters of one direction.
#[derive(Debug, Default)]
pub struct DirectionCounters {
    /// Frames offered to this direction of the link.
    pub offered: Counter,
    /// Datagrams that went on the wire (or, emulating on arrival, reached the receiver).
    pub delivered: Counter,
    dropped: [Counter; CAUSES.len()],
    pub duplicated: Counter,
    pub reordered: Counter,
    pub corrupted: Counter,
    pub delayed: Counter,
    /// Datagrams waiting in a delay line right now.
    pub queued: Counter,
    /// Dropped frames by type, counted by the link socket, which can read them.
    dropped_kinds: [Counter; FrameKind::ALL.len()],
}

impl DirectionCounters {
    fn slot(cause: DropCause) -> usize {
        CAUSES
            .iter()
            .position(|c| *c == cause)
            .expect("every cause has a slot")
    }
    pub fn drop(&self, cause: DropCause) {
        self.drop_n(cause, 1);
    }
    pub fn drop_n(&self, cause: DropCause, n: u64) {
        self.dropped[Self::slot(cause)].add_n(n);
    }
    pub fn dropped(&self, cause: DropCause) -> u64 {
        self.dropped[Self::slot(cause)].get()
    }
    /// Counts the type of a frame whose drop was counted with [`DirectionCounters::drop`].
    pub fn drop_kind(&self, kind: FrameKind) {
        self.dropped_kinds[TypeCounts::slot(kind)].add();
    }

    pub fn snapshot(&self) -> DirectionReport {
        let dropped_by = DropCounts {
            loss: self.dropped(DropCause::Loss),
            burst: self.dropped(DropCause::Burst),
            blackhole: self.dropped(DropCause::Blackhole),
            queue_full: self.dropped(DropCause::QueueFull),
            stopped: self.dropped(DropCause::Stopped),
            send_failed: self.dropped(DropCause::SendFailed),
            by_hand: self.dropped(DropCause::ByHand),
        };
        DirectionReport {
            sent: self.offered.get(),
            delivered: self.delivered.get(),
            dropped: dropped_by.total(),
            dropped_by,
            duplicated: self.duplicated.get(),
            reordered: self.reordered.get(),
            corrupted: self.corrupted.get(),
            delayed: self.delayed.get(),
            queued: self.queued.get(),
            malformed: 0,
            dropped_types: TypeCounts {
                counts: self.dropped_kinds.each_ref().map(Counter::get),
            },
        }
    }
}

/// Drops of one direction by cause.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DropCounts {
    pub loss: u64,
    pub burst: u64,
    pub blackhole: u64,
    pub queue_full: u64,
    /// Still waiting when the sending (or receiving) endpoint stopped.
    pub stopped: u64,
    /// The operating system refused to send it.
    pub send_failed: u64,
    /// Held in step mode and dropped by hand.
    pub by_hand: u64,
}

impl DropCounts {
    /// ` (loss 2, queue full 1)`, or nothing when nothing was dropped: for summaries.
    pub fn causes(&self) -> String {
        let causes: Vec<String> = [
            ("loss", self.loss),
            ("burst", self.burst),
            ("blackhole", self.blackhole),
            ("queue full", self.queue_full),
            ("stopped", self.stopped),
            ("send failed", self.send_failed),
            ("by hand", self.by_hand),
        ]
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(cause, n)| format!("{cause} {n}"))
        .collect();
        if causes.is_empty() {
            String::new()
        } else {
            format!(" ({})", causes.join(", "))
        }
    }

    pub fn total(&self) -> u64 {
        self.loss
            + self.burst
            + self.blackhole
            + self.queue_full
            + self.stopped
            + self.send_failed
            + self.by_hand
    }
}

/// A point-in-time copy of one direction's counters: what the TUI header and the JSON report
/// show as `link.to_proxy2` / `link.to_proxy1`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DirectionReport {
    /// Frames offered to the link in this direction.
    pub sent: u64,
    /// Datagrams that crossed (duplicates included, so this matches the capture).
    pub delivered: u64,
    /// Frames (or, for `stopped`, datagrams) the emulator dropped, all causes.
    pub dropped: u64,
    pub dropped_by: DropCounts,
    /// Extra copies sent.
    pub duplicated: u64,
    /// Frames a later frame overtook.
    pub reordered: u64,
    /// Frames with a flipped payload bit.
    pub corrupted: u64,
    /// Frames that went out later than they were offered (delay, rate queue, reorder wait).
    pub delayed: u64,
    /// Datagrams waiting in the emulator at the time of the snapshot.
    pub queued: u64,
    /// Datagrams the receiving end could not decode. The emulator never makes one (it only
    /// corrupts payload); the lab fills this in from the receiving endpoint's counters.
    pub malformed: u64,
    /// Frames the emulator dropped, by type: `{"C": 0, "OK": 0, "NOK": 0, "D": 3, "X": 1}`.
    pub dropped_types: TypeCounts,
}

/// A count per frame type, written with the types' labels (`C`, `OK`, `NOK`, `D`, `A`, `X`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TypeCounts {
    counts: [u64; FrameKind::ALL.len()],
}

impl TypeCounts {
    const KINDS: [FrameKind; FrameKind::ALL.len()] = FrameKind::ALL;
    fn slot(kind: FrameKind) -> usize {
        Self::KINDS
            .iter()
            .position(|k| *k == kind)
            .expect("every frame type has a slot")
    }
    pub fn get(&self, kind: FrameKind) -> u64 {
        self.counts[Self::slot(kind)]
    }
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }
}

impl serde::Serialize for TypeCounts {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(Self::KINDS.len()))?;
        for (kind, count) in Self::KINDS.iter().zip(self.counts) {
            map.serialize_entry(kind.label(), &count)?;
        }
        map.end()
    }
}
