//! The capture tap's ring: where the link sockets put each datagram for the writer thread.
//!
//! A tap's only work on the tunnel's hot path is one uncontended lock and one copy of the
//! datagram into preallocated memory: no allocation, no channel message, no wake-up per
//! frame. The ring has two halves, each a [`TapBatch`] (one byte buffer for the datagrams,
//! one vector of fixed-size record headers), both allocated once and reused:
//!
//! - the taps fill one half (under a mutex held for the copy only);
//! - the writer thread swaps it for the other, empty half in one step and then encodes,
//!   checksums and writes the full half without holding anything the taps need.
//!
//! The writer is woken only when a half goes from empty to non-empty (it then lets frames
//! gather for a few milliseconds) or passes half its capacity (so it takes the half before
//! the taps have to wait). When a half is full, taps wait for the swap: **backpressure, never
//! a drop**, since a capture must hold every frame the counters saw. How often a tap had to
//! wait is counted ([`TapRing::waits`]), so a capture slower than the link shows. After the
//! writer stops (finished, or given up on a write error) nothing is written any more; what
//! reaches a closed ring is counted too ([`TapRing::refused`]).

use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use tokio::sync::Notify;

/// One tapped datagram, borrowed: what a link socket hands to [`super::CaptureTap::frame`].
#[derive(Clone, Debug)]
pub struct TapFrame<'a> {
    /// When the datagram was handed to the socket, or read from it (for a dropped frame:
    /// when it was dropped).
    pub time: SystemTime,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    /// The exact bytes on the wire.
    pub datagram: &'a [u8],
    /// What the lab did to this frame, if anything notable (pcapng comments). Rare: only
    /// frames the link emulator acted on carry one.
    pub note: Option<String>,
    /// False for a frame the link emulator dropped before it was sent.
    pub on_wire: bool,
}

/// A record's header in a [`TapBatch`]; its datagram is `bytes[range]` of the batch.
#[derive(Debug)]
pub(crate) struct RecordHeader {
    pub time: SystemTime,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub range: Range<usize>,
    pub note: Option<String>,
    pub on_wire: bool,
}

/// One half of the ring: records in the order the taps put them in.
#[derive(Debug, Default)]
pub(crate) struct TapBatch {
    pub records: Vec<RecordHeader>,
    pub bytes: Vec<u8>,
}

impl TapBatch {
    pub fn with_capacity(records: usize, bytes: usize) -> Self {
        TapBatch {
            records: Vec::with_capacity(records),
            bytes: Vec::with_capacity(bytes),
        }
    }

    /// The datagram of record `index`.
    pub fn datagram(&self, index: usize) -> &[u8] {
        &self.bytes[self.records[index].range.clone()]
    }

    /// Empties it, keeping its memory.
    pub fn clear(&mut self) {
        self.records.clear();
        self.bytes.clear();
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

/// What the taps share under the lock.
#[derive(Debug)]
struct Filling {
    batch: TapBatch,
    /// The writer has stopped: nothing more is taken.
    closed: bool,
}

/// The ring between the taps and the writer thread.
#[derive(Debug)]
pub(crate) struct TapRing {
    filling: Mutex<Filling>,
    /// Records a half holds at most.
    max_records: usize,
    /// Datagram bytes a half holds at most (an empty half takes any one datagram).
    max_bytes: usize,
    /// Wakes the writer: the filling half got its first record, passed half its capacity,
    /// or the ring closed.
    pub(crate) ready: Notify,
    /// Wakes taps waiting for room: the writer took the filling half, or closed the ring.
    room: Notify,
    waits: AtomicU64,
    refused: AtomicU64,
}

/// What a try to put a record in found.
enum Put {
    Done,
    Full,
    Closed,
}

impl TapRing {
    /// A ring whose halves hold `max_records` records and `max_bytes` of datagrams each;
    /// both halves are allocated now.
    pub fn new(max_records: usize, max_bytes: usize) -> (TapRing, TapBatch) {
        let max_records = max_records.max(1);
        let ring = TapRing {
            filling: Mutex::new(Filling {
                batch: TapBatch::with_capacity(max_records, max_bytes),
                closed: false,
            }),
            max_records,
            max_bytes,
            ready: Notify::new(),
            room: Notify::new(),
            waits: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        };
        (ring, TapBatch::with_capacity(max_records, max_bytes))
    }

    /// Puts one datagram in the ring, waiting only while the filling half is full.
    pub async fn put(&self, mut frame: TapFrame<'_>) {
        let mut note = frame.note.take();
        // The common case first, without registering for a wake-up: a `Notified` that is
        // enabled locks the `Notify`'s waiter list twice (to enter it and to leave it), a
        // lock both proxies' threads would share on every frame.
        match self.try_put(&frame, &mut note) {
            Put::Done => return,
            Put::Closed => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Put::Full => {}
        }
        let mut waited = false;
        loop {
            let room = self.room.notified();
            tokio::pin!(room);
            // Registered before looking, so a swap between the look and the wait still
            // wakes this tap.
            room.as_mut().enable();
            match self.try_put(&frame, &mut note) {
                Put::Done => return,
                Put::Closed => {
                    self.refused.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Put::Full => {
                    if !waited {
                        waited = true;
                        self.waits.fetch_add(1, Ordering::Relaxed);
                    }
                    // The writer may be gathering; tell it a half is full.
                    self.ready.notify_one();
                    room.await;
                }
            }
        }
    }

    fn try_put(&self, frame: &TapFrame<'_>, note: &mut Option<String>) -> Put {
        let mut filling = self
            .filling
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if filling.closed {
            return Put::Closed;
        }
        let batch = &mut filling.batch;
        let used = batch.bytes.len();
        let fits =
            batch.records.len() < self.max_records && used + frame.datagram.len() <= self.max_bytes;
        if !fits && !batch.is_empty() {
            return Put::Full;
        }
        batch.bytes.extend_from_slice(frame.datagram);
        batch.records.push(RecordHeader {
            time: frame.time,
            src: frame.src,
            dst: frame.dst,
            range: used..batch.bytes.len(),
            note: note.take(),
            on_wire: frame.on_wire,
        });
        let first = batch.records.len() == 1;
        let half_records = batch.records.len() == self.max_records / 2;
        let half_bytes = used < self.max_bytes / 2 && batch.bytes.len() >= self.max_bytes / 2;
        drop(filling);
        if first || half_records || half_bytes {
            self.ready.notify_one();
        }
        Put::Done
    }

    /// Swaps the filling half for `empty` (emptied first) and returns the full one.
    pub fn take(&self, mut empty: TapBatch) -> TapBatch {
        empty.clear();
        let full = {
            let mut filling = self
                .filling
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            std::mem::replace(&mut filling.batch, empty)
        };
        if !full.is_empty() {
            self.room.notify_waiters();
        }
        full
    }

    /// Takes nothing more; taps waiting for room return (their records refused, counted).
    pub fn close(&self) {
        self.filling
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .closed = true;
        self.room.notify_waiters();
    }

    /// Times a tap found the filling half full and waited for the writer.
    pub fn waits(&self) -> u64 {
        self.waits.load(Ordering::Relaxed)
    }

    /// Records that reached the ring after it closed (the writer had finished or failed).
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    fn frame(bytes: &[u8]) -> TapFrame<'_> {
        TapFrame {
            time: SystemTime::UNIX_EPOCH,
            src: "127.0.0.1:1".parse().unwrap(),
            dst: "127.0.0.1:2".parse().unwrap(),
            datagram: bytes,
            note: None,
            on_wire: true,
        }
    }

    #[tokio::test]
    async fn records_keep_their_bytes_and_order_across_swaps() {
        let (ring, mut spare) = TapRing::new(4, 64);
        ring.put(frame(b"C0")).await;
        ring.put(frame(b"D0hola")).await;
        let full = ring.take(std::mem::take(&mut spare));
        assert_eq!(full.len(), 2);
        assert_eq!(
            (full.datagram(0), full.datagram(1)),
            (&b"C0"[..], &b"D0hola"[..])
        );
        ring.put(frame(b"X0")).await;
        let next = ring.take(full);
        assert_eq!(next.datagram(0), b"X0");
        assert_eq!(next.len(), 1, "the reused half was emptied");
    }

    #[tokio::test]
    async fn a_full_half_makes_the_tap_wait_until_the_writer_takes_it() {
        let (ring, spare) = TapRing::new(2, 1024);
        let ring = Arc::new(ring);
        ring.put(frame(b"1")).await;
        ring.put(frame(b"2")).await;
        let third = tokio::spawn({
            let ring = ring.clone();
            async move { ring.put(frame(b"3")).await }
        });
        // The tap cannot finish while the half is full: it is still waiting after many
        // turns of the runtime (no clock involved: nothing else can make room).
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        assert!(!third.is_finished(), "the third record waits for room");
        assert_eq!(ring.waits(), 1);
        let full = ring.take(spare);
        assert_eq!(full.len(), 2);
        tokio::time::timeout(Duration::from_secs(10), third)
            .await
            .expect("woken by the swap")
            .unwrap();
        let after = ring.take(full);
        assert_eq!(after.datagram(0), b"3", "nothing was dropped");
        assert_eq!(ring.refused(), 0);
    }

    #[tokio::test]
    async fn an_empty_half_takes_a_datagram_larger_than_its_byte_budget() {
        let (ring, spare) = TapRing::new(8, 16);
        let big = vec![7u8; 65_507];
        ring.put(frame(&big)).await;
        let full = ring.take(spare);
        assert_eq!(full.datagram(0), &big[..]);
    }

    #[tokio::test]
    async fn a_closed_ring_refuses_and_counts_and_releases_waiting_taps() {
        let (ring, _spare) = TapRing::new(1, 1024);
        let ring = Arc::new(ring);
        ring.put(frame(b"1")).await;
        let waiting = tokio::spawn({
            let ring = ring.clone();
            async move { ring.put(frame(b"2")).await }
        });
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        ring.close();
        tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .expect("released by the close")
            .unwrap();
        ring.put(frame(b"3")).await;
        assert_eq!(ring.refused(), 2);
    }
}
