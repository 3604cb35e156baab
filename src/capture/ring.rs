//! The capture tap's ring: where the link sockets put each datagram for the writer thread.
//!
//! A tap's only work on the tunnel's hot path is one uncontended lock and one copy of the
//! datagram into preallocated memory, as the finished classic pcap record: its 16-byte
//! record header and the frame's Ethernet, IP and UDP headers (from a per-flow cache,
//! [`FrameBuilder`]) are written in front of it while the datagram is still in the cache of
//! the core that sent it. No allocation, no channel message, no wake-up per frame. The ring
//! has two halves, each a [`TapBatch`] (one byte buffer of pcap records, one vector of
//! 32-byte [`RecordHeader`]s), both allocated once and reused:
//!
//! - the taps fill one half (under a mutex held for the copy only);
//! - the writer thread swaps it for the other, empty half in one step; a classic pcap file
//!   then gets the half's bytes as they are, in runs (one `writev` for many records), and
//!   the writer does no work per byte at all. pcapng wraps each prebuilt frame in a block.
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

use super::format::{PCAP_RECORD_HEADER, pcap_record_header};
use super::packet::FrameBuilder;

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

/// Bytes a record takes in a [`TapBatch`] besides its datagram: the pcap record header and
/// the largest Ethernet + IP + UDP headers (IPv6).
pub(crate) const RECORD_OVERHEAD: usize = PCAP_RECORD_HEADER + 14 + 40 + 8;

/// A record's header in a [`TapBatch`] (32 bytes: kept small, since the taps write one per
/// frame into memory the writer reads much later). Its bytes are
/// `bytes[start..start + PCAP_RECORD_HEADER + frame_len]` of the batch: a classic pcap
/// record header, then the frame.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RecordHeader {
    pub time: SystemTime,
    /// Where the record starts in the batch's bytes.
    pub start: u32,
    /// The frame's length: Ethernet, IP and UDP headers and the datagram.
    pub frame_len: u32,
    /// Length of the Ethernet, IP and UDP headers in front of the datagram; 0 when they
    /// could not be built (a datagram too long for UDP: the frame is then the bare
    /// datagram, and the writer reports the error when it reaches it).
    pub headers: u8,
    /// False for a frame the link emulator dropped before it was sent.
    pub on_wire: bool,
    /// It has a note in [`TapBatch::note`].
    pub noted: bool,
}

/// One half of the ring: records in the order the taps put them in.
#[derive(Debug, Default)]
pub(crate) struct TapBatch {
    pub records: Vec<RecordHeader>,
    /// The records' bytes, back to back: a classic pcap file's records, ready to write.
    pub bytes: Vec<u8>,
    /// The rare notes (pcapng comments), by record index, in index order.
    notes: Vec<(usize, String)>,
}

impl TapBatch {
    pub fn with_capacity(records: usize, bytes: usize) -> Self {
        TapBatch {
            records: Vec::with_capacity(records),
            bytes: Vec::with_capacity(bytes),
            notes: Vec::new(),
        }
    }

    /// Appends `frame` as a finished pcap record (see [`RecordHeader`]).
    fn push(&mut self, frames: &mut FrameBuilder, frame: &TapFrame<'_>, note: Option<String>) {
        let start = self.bytes.len();
        // The record header's place; its fields are known once the frame is built.
        self.bytes.extend_from_slice(&[0; PCAP_RECORD_HEADER]);
        let headers = frames
            .append_headers(frame.src, frame.dst, frame.datagram, &mut self.bytes)
            .map_or(0, |frame_len| frame_len - frame.datagram.len());
        self.bytes.extend_from_slice(frame.datagram);
        let frame_len = self.bytes.len() - start - PCAP_RECORD_HEADER;
        // A frame the format cannot hold keeps a zero header: the writer of a classic pcap
        // refuses it, with the reason, when it gets there.
        if let Ok(header) = pcap_record_header(frame.time, frame_len) {
            self.bytes[start..start + PCAP_RECORD_HEADER].copy_from_slice(&header);
        }
        let noted = note.is_some();
        if let Some(note) = note {
            self.notes.push((self.records.len(), note));
        }
        self.records.push(RecordHeader {
            time: frame.time,
            start: u32::try_from(start).expect("a half of the ring holds less than 4 GiB"),
            frame_len: u32::try_from(frame_len).unwrap_or(u32::MAX),
            headers: u8::try_from(headers).expect("at most 62 bytes of headers"),
            on_wire: frame.on_wire,
            noted,
        });
    }

    /// Record `index` as a classic pcap record: its header, then the frame.
    pub fn record_range(&self, index: usize) -> Range<usize> {
        let record = &self.records[index];
        let start = record.start as usize;
        start..start + PCAP_RECORD_HEADER + record.frame_len as usize
    }

    /// Whether the tap wrote record `index`'s pcap record header. One the format cannot hold
    /// keeps a zero header; a written one never has a zero captured length (the Ethernet,
    /// IP and UDP headers alone are 42 bytes).
    pub fn has_pcap_header(&self, index: usize) -> bool {
        let start = self.records[index].start as usize;
        // Bytes 8..12 of a pcap record header: the captured length.
        self.bytes[start + 8..start + 12] != [0; 4]
    }

    /// The frame of record `index`: Ethernet, IP and UDP headers, then the datagram.
    pub fn frame(&self, index: usize) -> &[u8] {
        &self.bytes[self.record_range(index)][PCAP_RECORD_HEADER..]
    }

    /// The datagram of record `index`, as the tap was given it.
    #[cfg(test)]
    pub fn datagram(&self, index: usize) -> &[u8] {
        &self.frame(index)[usize::from(self.records[index].headers)..]
    }

    /// The note of record `index`, if it has one.
    pub fn note(&self, index: usize) -> Option<&str> {
        if !self.records[index].noted {
            return None;
        }
        self.notes
            .binary_search_by_key(&index, |(at, _)| *at)
            .ok()
            .map(|at| self.notes[at].1.as_str())
    }

    /// Empties it, keeping its memory.
    pub fn clear(&mut self) {
        self.records.clear();
        self.bytes.clear();
        self.notes.clear();
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
    /// Each flow's Ethernet, IP and UDP headers, built once.
    frames: FrameBuilder,
    /// The writer has stopped: nothing more is taken.
    closed: bool,
}

/// The ring between the taps and the writer thread.
#[derive(Debug)]
pub(crate) struct TapRing {
    filling: Mutex<Filling>,
    /// Records a half holds at most.
    max_records: usize,
    /// Record bytes a half holds at most (an empty half takes any one datagram).
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
    /// A ring whose halves hold `max_records` records and `max_bytes` of records each;
    /// both halves are allocated now.
    pub fn new(max_records: usize, max_bytes: usize) -> (TapRing, TapBatch) {
        let max_records = max_records.max(1);
        let ring = TapRing {
            filling: Mutex::new(Filling {
                batch: TapBatch::with_capacity(max_records, max_bytes),
                frames: FrameBuilder::default(),
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

    /// Puts one datagram in the ring if that takes no waiting (there is room, or the ring
    /// is closed and refuses it, counted); returns the frame, untouched, when the filling
    /// half is full. No future is built: the tap's path for almost every frame.
    pub fn put_now<'a>(&self, mut frame: TapFrame<'a>) -> Option<TapFrame<'a>> {
        let mut note = frame.note.take();
        match self.try_put(&frame, &mut note) {
            Put::Done => None,
            Put::Closed => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                None
            }
            Put::Full => {
                frame.note = note;
                Some(frame)
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
        let Filling { batch, frames, .. } = &mut *filling;
        let used = batch.bytes.len();
        let fits = batch.records.len() < self.max_records
            && used + RECORD_OVERHEAD + frame.datagram.len() <= self.max_bytes;
        if !fits && !batch.is_empty() {
            return Put::Full;
        }
        batch.push(frames, frame, note.take());
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

    /// A frame classic pcap cannot hold (stamped after 2106, past its 32-bit seconds) keeps
    /// a zero record header, and the encoder refuses it with the reason; the next one is
    /// taken as it lies in the ring.
    #[tokio::test]
    async fn a_record_the_format_cannot_hold_is_refused_with_the_reason() {
        use crate::capture::CaptureFormat;
        use crate::capture::format::{Encoder, LinkBytes};
        use std::time::Duration;

        let (ring, spare) = TapRing::new(4, 1 << 16);
        let mut too_late = frame(b"D1late");
        too_late.time = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::from(u32::MAX) + 1);
        ring.put(too_late).await;
        ring.put(frame(b"D1now")).await;
        let batch = ring.take(spare);
        assert!(!batch.has_pcap_header(0));
        assert!(batch.has_pcap_header(1));
        let mut encoder = Encoder::new(CaptureFormat::Pcap, "test", false).unwrap();
        let error = encoder.encode_link(&batch, 0).unwrap_err();
        assert!(error.to_string().contains("timestamp_secs"), "{error}");
        assert_eq!(encoder.encode_link(&batch, 1).unwrap(), LinkBytes::InRing);
    }

    /// The ring's bytes are a classic pcap file's records, byte for byte what pcap-file
    /// writes for the frames etherparse builds (the IPv4 UDP checksum left out, 0); each
    /// record's frame, datagram and note are found again.
    #[tokio::test]
    async fn a_half_holds_the_pcap_records_pcap_file_would_write() {
        use crate::capture::packet::capture_frame;
        use pcap_file::pcap::{PcapPacket, PcapWriter};
        use std::time::Duration;

        let at = |micros: u64| {
            SystemTime::UNIX_EPOCH + Duration::from_micros(1_763_900_000_000_000 + micros)
        };
        let datagrams: [(&[u8], u64, &str, &str); 5] = [
            (b"D3hola\n", 1, "127.0.0.1:40000", "127.0.0.1:3328"),
            (b"C1", 2, "127.0.0.1:3328", "127.0.0.1:40000"),
            (&[0xA5; 1500], 999_999, "127.0.0.1:40000", "127.0.0.1:3328"),
            (b"", 1_000_000, "[::1]:40000", "[::1]:3328"),
            (b"X1", 1_000_001, "127.0.0.1:40000", "[::1]:3328"),
        ];
        let (ring, spare) = TapRing::new(8, 1 << 16);
        for (i, (datagram, micros, src, dst)) in datagrams.iter().enumerate() {
            ring.put(TapFrame {
                time: at(*micros),
                src: src.parse().unwrap(),
                dst: dst.parse().unwrap(),
                datagram,
                note: (i == 1).then(|| "dropped by the emulator".to_string()),
                on_wire: i != 1,
            })
            .await;
        }
        let half = ring.take(spare);
        assert_eq!(half.len(), datagrams.len());
        let mut reference = Vec::new();
        for (i, (datagram, micros, src, dst)) in datagrams.iter().enumerate() {
            let frame = capture_frame(src.parse().unwrap(), dst.parse().unwrap(), datagram);
            assert_eq!(half.frame(i), &frame[..], "record {i}");
            assert_eq!(half.datagram(i), *datagram);
            assert_eq!(half.note(i), (i == 1).then_some("dropped by the emulator"));
            assert_eq!(half.records[i].on_wire, i != 1);
            let mut writer = PcapWriter::with_header(
                Vec::new(),
                pcap_file::pcap::PcapHeader {
                    endianness: pcap_file::Endianness::native(),
                    ..Default::default()
                },
            )
            .unwrap();
            let since = at(*micros).duration_since(SystemTime::UNIX_EPOCH).unwrap();
            writer
                .write_packet(&PcapPacket::new(since, frame.len() as u32, &frame))
                .unwrap();
            let file = writer.into_writer();
            reference.extend_from_slice(&file[24..]); // the record, without the file header
        }
        assert_eq!(half.bytes, reference, "back to back, ready to write");
        assert_eq!(half.record_range(4).end, half.bytes.len());
    }

    #[test]
    fn a_record_header_is_small() {
        assert!(std::mem::size_of::<RecordHeader>() <= 32);
    }

    #[tokio::test]
    async fn records_keep_their_bytes_and_order_across_swaps() {
        let (ring, mut spare) = TapRing::new(4, 1024);
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

    /// The tap's synchronous path: taken while there is room; given back untouched (its
    /// note too) when the half is full, and taken once the writer swapped halves; a closed
    /// ring refuses it and counts it.
    #[test]
    fn put_now_takes_a_frame_with_room_and_gives_it_back_when_full() {
        let (ring, spare) = TapRing::new(1, 1024);
        assert!(ring.put_now(frame(b"D0one")).is_none(), "taken");
        let mut noted = frame(b"D0two");
        noted.note = Some("delayed 5ms".into());
        let back = ring.put_now(noted).expect("given back: the half is full");
        assert_eq!(
            (back.datagram, back.note.as_deref()),
            (&b"D0two"[..], Some("delayed 5ms"))
        );
        let full = ring.take(spare);
        assert_eq!(full.datagram(0), b"D0one");
        assert!(ring.put_now(back).is_none());
        let next = ring.take(full);
        assert_eq!(
            (next.datagram(0), next.note(0)),
            (&b"D0two"[..], Some("delayed 5ms"))
        );
        ring.close();
        assert!(
            ring.put_now(frame(b"D0late")).is_none(),
            "refused, not given back"
        );
        assert_eq!(ring.refused(), 1);
        assert_eq!(ring.waits(), 0, "nothing waited");
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
