//! The capture writer: a dedicated thread that drains the tap's ring into the file.
//!
//! - It never loses a frame: the tap's ring ([`super::ring`]) makes taps wait while it is
//!   full, and counts how often they did.
//! - It writes in time order: records from the two proxies and the TCP reader are held for a
//!   moment ([`super::order`]) and written oldest first, so a reply never precedes its request.
//! - It keeps the file readable at all times: records are handed to the file in
//!   whole-record batches, so a reader, a Ctrl-C or a crash finds a file that ends on a
//!   record boundary.
//! - It wakes once per batch, not once per frame: it lets frames gather for [`GATHER`]
//!   (10 ms) and takes a whole half of the ring at once, so during traffic a tap's work is a
//!   copy into the ring and nothing more.
//! - It does no work per byte: the taps put finished classic pcap records in the ring
//!   ([`super::ring`]), and this thread only puts them in time order and writes runs of
//!   them with one `writev` from where they lie (pcapng and TCP segments are encoded here).
//!   The file is preallocated in large chunks ([`PREALLOCATE`]), so the file system does
//!   not allocate it block by block as it is written.
//! - It gives up loudly: on a write error it says so on stderr and as an error `Log` event,
//!   marks its [`CaptureStatus`] failed and closes the ring, so the tunnel never waits on
//!   a capture that is no longer written.
//!
//! A thread rather than a task: a slow disk then blocks only this thread, not the runtime
//! the tunnel runs on.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, IoSlice, Write};
use std::ops::Range;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc as std_mpsc};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::file::{create_in_dir, create_named, preallocate, release_preallocated};
use super::format::{CaptureFormat, Encoder, LinkBytes};
use super::order::TimeOrder;
use super::ring::{TapBatch, TapRing};
use super::tcp::{Segment, TcpCapture, TcpReader};
use super::{CapturePlan, CaptureTap, CaptureTarget, Record};
use crate::event::{EventSink, Level};
use crate::topology::Role;

/// A batch is handed to the file once it is this big even if more records are waiting, so
/// memory stays small and the file keeps up under a flood.
const BATCH_BYTES: usize = 256 * 1024;

/// TCP segments taken from their channel at once.
const RECV_BATCH: usize = 256;

/// How long the writer lets frames gather in the ring once the first one is there. Waking
/// once per frame (a futex wake-up and two context switches on the tunnel's cores) cost the
/// lab more than encoding the frame; at 10 ms a half of [`super::DEFAULT_QUEUE`] records
/// absorbs 400,000 frames a second before a tap would wait (and a half-full ring wakes the
/// writer at once), and the file lags the link by 10 ms at most.
const GATHER: Duration = Duration::from_millis(10);

/// Bytes a half of the ring holds per record of the plan's queue: a full-size classic
/// frame as a pcap record (with its headers), with room to spare.
const BYTES_PER_RECORD: usize = 1600;

/// A run of records in the ring shorter than this is copied into the writer's buffer
/// rather than given to `writev` as a piece of its own: the kernel's copy of many small
/// pieces into the page cache costs more than one copy here (BENCHMARKS.md). Runs break
/// where records from the two proxies are put in the ring out of time order.
const MIN_RUN: usize = 4096;

/// Pieces one `writev` takes at most (well under the kernel's `IOV_MAX`, 1024).
const MAX_PIECES: usize = 256;

/// The file is extended on disk this much at a time, ahead of what is written
/// (`fallocate` with `FALLOC_FL_KEEP_SIZE`: the file's size stays that of its records), so
/// that ext4 allocates a few large extents instead of doing its delayed allocation for
/// every 4 KiB block the writer fills. What is left over is given back when the writer ends.
const PREALLOCATE: u64 = 16 * 1024 * 1024;

/// Spent halves of the ring the writer keeps for reuse (more are freed). The time order
/// stage keeps a half until its last record is written, up to [`super::ORDER_HOLD`] (500
/// ms): under a flood that is two or three full halves, under light traffic up to one per
/// [`GATHER`] with a few records each (a reused half only touches the memory it fills).
/// Freeing and allocating halves instead showed in `perf` as page faults on the tunnel's
/// path (a fresh half's pages are first touched by the taps).
const KEEP_HALVES: usize = 64;

/// How long [`CaptureWriter::finish`] waits for the queue to reach the disk.
const FINISH_WAIT: Duration = Duration::from_secs(10);

/// How long dropping an unfinished writer (an early return, a panic unwinding) waits.
const DROP_WAIT: Duration = Duration::from_secs(5);

/// A cheap, shareable view of a running capture for the TUI header and the script report.
#[derive(Debug)]
pub struct CaptureStatus {
    path: PathBuf,
    format: CaptureFormat,
    /// Frames handed to the file (not merely queued).
    frames: AtomicU64,
    /// Of those, TCP segments read off loopback.
    segments: AtomicU64,
    /// Records that reached the writer later than [`super::ORDER_HOLD`] after a younger one:
    /// written, but out of time order.
    late: AtomicU64,
    /// Size of the file: headers plus every frame written.
    bytes: AtomicU64,
    failed: AtomicBool,
    error: Mutex<Option<String>>,
    /// The tap's ring, for its counts of waits and refusals.
    ring: Arc<TapRing>,
}

impl CaptureStatus {
    fn new(path: PathBuf, format: CaptureFormat, bytes: u64, ring: Arc<TapRing>) -> Self {
        CaptureStatus {
            ring,
            path,
            format,
            frames: AtomicU64::new(0),
            segments: AtomicU64::new(0),
            late: AtomicU64::new(0),
            bytes: AtomicU64::new(bytes),
            failed: AtomicBool::new(false),
            error: Mutex::new(None),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn format(&self) -> CaptureFormat {
        self.format
    }
    /// Frames in the file so far.
    pub fn frames_written(&self) -> u64 {
        self.frames.load(Ordering::Relaxed)
    }
    /// TCP segments in the file so far (with `--capture-tcp`).
    pub fn segments_written(&self) -> u64 {
        self.segments.load(Ordering::Relaxed)
    }
    /// Records written out of time order because they reached the writer too late.
    pub fn late(&self) -> u64 {
        self.late.load(Ordering::Relaxed)
    }
    /// Bytes in the file so far.
    pub fn bytes_written(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
    /// Whether the writer gave up (the file is complete up to [`Self::frames_written`]).
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }
    /// Times a link socket found the capture's ring full and waited for the writer (the
    /// capture never drops a frame; under a flood it slows the tunnel instead).
    pub fn tap_waits(&self) -> u64 {
        self.ring.waits()
    }
    /// Frames that reached the tap after the writer had stopped (finished or failed), and
    /// so are not in the file.
    pub fn refused(&self) -> u64 {
        self.ring.refused()
    }
    /// Why it gave up.
    pub fn error(&self) -> Option<String> {
        self.error.lock().unwrap().clone()
    }

    /// A copy for reports.
    pub fn summary(&self) -> CaptureSummary {
        CaptureSummary {
            path: self.path.clone(),
            format: self.format,
            frames: self.frames_written(),
            tcp_segments: self.segments_written(),
            out_of_order: self.late(),
            bytes: self.bytes_written(),
            error: self.error(),
        }
    }

    fn wrote(&self, (frames, segments): (u64, u64), bytes: usize) {
        self.frames.fetch_add(frames, Ordering::Relaxed);
        self.segments.fetch_add(segments, Ordering::Relaxed);
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    fn fail(&self, message: String) {
        *self.error.lock().unwrap() = Some(message);
        self.failed.store(true, Ordering::Relaxed);
    }
}

/// A capture's outcome, as the script report and the exit message show it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct CaptureSummary {
    pub path: PathBuf,
    pub format: CaptureFormat,
    /// Packets in the file, TCP segments included.
    pub frames: u64,
    /// Of those, TCP segments read off loopback (`--capture-tcp`).
    pub tcp_segments: u64,
    /// Records that reached the writer too late to be put in time order (0 unless the
    /// machine stalled a producer for longer than [`super::ORDER_HOLD`]).
    pub out_of_order: u64,
    pub bytes: u64,
    /// Set when the writer gave up.
    pub error: Option<String>,
}

impl CaptureSummary {
    /// One line for the end of a run, as the headless summary says it too:
    /// `capture: 42 frames written to captures/tunlab-….pcap`.
    pub fn describe(&self) -> String {
        let mut frames = match self.frames {
            1 => "1 frame".to_string(),
            n => format!("{n} frames"),
        };
        if self.tcp_segments > 0 {
            frames = format!("{frames} ({} of them TCP segments)", self.tcp_segments);
        }
        let mut line = format!("capture: {frames} written to {}", self.path.display());
        if self.out_of_order > 0 {
            line = format!(
                "{line} ({} reached the writer too late to be put in time order)",
                self.out_of_order
            );
        }
        match &self.error {
            None => line,
            Some(_) => format!("{line}, then the capture FAILED (see the error above)"),
        }
    }
}

/// The running capture: hands out taps, shows its status, and finishes the file.
///
/// Dropping it without [`CaptureWriter::finish`] (an early return, a panic unwinding) still
/// writes what is queued, waiting a few seconds at most.
#[derive(Debug)]
pub struct CaptureWriter {
    tap: CaptureTap,
    /// Where the TCP reader sends segments; dropped on finishing, so the writer sees the end.
    segments: Option<mpsc::Sender<Segment>>,
    /// The TCP reader, once [`CaptureWriter::capture_tcp`] started it.
    tcp: Option<TcpReader>,
    status: Arc<CaptureStatus>,
    stop: CancellationToken,
    /// Disconnects when the writer thread has ended (the thread holds the sender).
    ended: Option<std_mpsc::Receiver<()>>,
}

impl CaptureWriter {
    /// Creates the file, writes its header (so a clear error comes now, not later) and starts
    /// the writer thread.
    pub fn start(plan: CapturePlan, events: EventSink) -> anyhow::Result<CaptureWriter> {
        let (path, file) = match &plan.target {
            CaptureTarget::Dir(dir) => create_in_dir(dir, SystemTime::now(), plan.format)?,
            CaptureTarget::File(path) => (path.clone(), create_named(path)?),
        };
        let mut sink = FileSink::new(file);
        let header =
            Encoder::new(plan.format, &plan.description, plan.tcp).and_then(|mut encoder| {
                let header = encoder.take();
                sink.commit(&mut [IoSlice::new(&header)])
                    .map(|()| (encoder, header.len()))
            });
        let (encoder, header_len) = match header {
            Ok(ok) => ok,
            Err(e) => {
                if matches!(plan.target, CaptureTarget::Dir(_)) {
                    // We made this file; leave no empty husk behind.
                    let _ = std::fs::remove_file(&path);
                }
                return Err(e)
                    .with_context(|| format!("cannot write capture file '{}'", path.display()));
            }
        };
        // Each half holds half the plan's queue: the filling half and the one being written
        // hold about what the queue says.
        let queue = plan.queue.div_ceil(2).max(1);
        let (ring, spare) = TapRing::new(queue, queue * BYTES_PER_RECORD);
        let ring = Arc::new(ring);
        let status = Arc::new(CaptureStatus::new(
            path,
            plan.format,
            header_len as u64,
            ring.clone(),
        ));
        let tap = CaptureTap::ring(ring.clone());
        let (segments_tx, segments) = mpsc::channel(plan.queue.max(1));
        let stop = CancellationToken::new();
        let (ended_tx, ended_rx) = std_mpsc::channel::<()>();
        let thread = Thread {
            ring,
            free: vec![spare],
            half_capacity: (queue, queue * BYTES_PER_RECORD),
            held: VecDeque::new(),
            first_batch: 0,
            segments,
            order: TimeOrder::default(),
            stop: stop.clone(),
            encoder,
            pieces: Vec::with_capacity(MAX_PIECES),
            pending_bytes: 0,
            sink,
            status: status.clone(),
            events,
            log_as: plan.log_as,
        };
        std::thread::Builder::new()
            .name("tunlab-capture".into())
            .spawn(move || {
                let _ended = ended_tx;
                thread.run();
            })
            .context("cannot start the capture writer thread")?;
        Ok(CaptureWriter {
            tap,
            segments: Some(segments_tx),
            tcp: None,
            status,
            stop,
            ended: Some(ended_rx),
        })
    }

    /// A tap for a [`crate::link::LinkSocket`] (or for `LabConfig::capture`).
    pub fn tap(&self) -> CaptureTap {
        self.tap.clone()
    }

    /// The live status, cheap to clone and read from anywhere.
    pub fn status(&self) -> Arc<CaptureStatus> {
        self.status.clone()
    }

    /// Starts reading the TCP segments to and from `ports` off loopback into this file, in
    /// time order with the link's frames. `capture` was opened (and the permission checked)
    /// before the lab started; `events` gets each segment for the ladder.
    pub fn capture_tcp(
        &mut self,
        capture: TcpCapture,
        ports: &[u16],
        events: EventSink,
    ) -> io::Result<()> {
        let sender = self
            .segments
            .clone()
            .ok_or_else(|| io::Error::other("the capture has finished"))?;
        self.tcp = Some(capture.start(ports, sender, events)?);
        Ok(())
    }

    /// Stops the TCP reader (after it has read what is queued) and closes the segment input.
    fn stop_tcp(&mut self) {
        if let Some(reader) = self.tcp.take() {
            reader.stop();
        }
        self.segments = None;
    }

    /// Stops taking frames, writes everything queued and waits for the file to be complete.
    /// Call it after the roles have stopped, so that no frame is still on its way.
    pub async fn finish(mut self) -> CaptureSummary {
        // The reader's last reads may wait for room in the queue, which this thread's
        // writer makes: so it is stopped off the runtime.
        let reader = self.tcp.take();
        self.segments = None;
        if let Some(reader) = reader {
            let _ = tokio::task::spawn_blocking(move || reader.stop()).await;
        }
        self.stop.cancel();
        if let Some(ended) = self.ended.take() {
            let waited = tokio::task::spawn_blocking(move || ended.recv_timeout(FINISH_WAIT)).await;
            if matches!(waited, Ok(Err(std_mpsc::RecvTimeoutError::Timeout))) {
                let message = format!(
                    "the capture writer did not finish within {}s; '{}' may lack the last frames",
                    FINISH_WAIT.as_secs(),
                    self.status.path.display()
                );
                eprintln!("error: {message}");
                self.status.fail(message);
            }
        }
        self.status.summary()
    }

    /// Stops and deletes the file: for a run that failed before any traffic (a port in use),
    /// so that no empty capture is left behind.
    pub async fn abandon(self) {
        let path = self.status.path.clone();
        self.finish().await;
        let _ = std::fs::remove_file(path);
    }
}

impl Drop for CaptureWriter {
    fn drop(&mut self) {
        self.stop_tcp();
        if let Some(ended) = self.ended.take() {
            self.stop.cancel();
            let _ = ended.recv_timeout(DROP_WAIT);
        }
    }
}

/// The file, and how much of it holds whole records.
struct FileSink {
    file: File,
    committed: u64,
    /// How far the file is allocated on disk ([`PREALLOCATE`]); `None` once preallocation
    /// failed (a file system without it, a pipe): then the file grows as it is written.
    allocated: Option<u64>,
}

impl FileSink {
    fn new(file: File) -> FileSink {
        FileSink {
            file,
            committed: 0,
            allocated: Some(0),
        }
    }

    /// Writes whole records in one go. If the write fails half way, the partial tail is cut
    /// off again, so the file still ends on a record boundary.
    fn commit(&mut self, mut slices: &mut [IoSlice<'_>]) -> io::Result<()> {
        let total: usize = slices.iter().map(|slice| slice.len()).sum();
        if total == 0 {
            return Ok(());
        }
        self.preallocate(self.committed + total as u64);
        let mut left = total;
        while left > 0 {
            match self.file.write_vectored(slices) {
                Ok(0) => {
                    let _ = self.file.set_len(self.committed);
                    return Err(io::ErrorKind::WriteZero.into());
                }
                Ok(n) => {
                    left -= n;
                    IoSlice::advance_slices(&mut slices, n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // Best effort: a pipe or device has no length to set.
                    let _ = self.file.set_len(self.committed);
                    return Err(e);
                }
            }
        }
        self.committed += total as u64;
        Ok(())
    }

    /// Makes sure the file is allocated on disk up to `end`, [`PREALLOCATE`] at a time.
    fn preallocate(&mut self, end: u64) {
        let Some(allocated) = self.allocated else {
            return;
        };
        if end <= allocated {
            return;
        }
        let to = end.next_multiple_of(PREALLOCATE);
        // Not supported, or the disk is full: the writes themselves will say so, if it
        // matters.
        self.allocated = preallocate(&self.file, allocated, to - allocated)
            .is_ok()
            .then_some(to);
    }
}

impl Drop for FileSink {
    /// Gives back the preallocated space past the last record.
    fn drop(&mut self) {
        let Some(allocated) = self.allocated else {
            return;
        };
        if allocated <= self.committed {
            return;
        }
        let _ = release_preallocated(&self.file, self.committed);
    }
}

/// A piece of the file's next write, in file order.
#[derive(Debug)]
enum Piece {
    /// Records as they lie in held batch number `batch`.
    Ring { batch: u64, range: Range<usize> },
    /// Bytes in the encoder's pending buffer.
    Encoded(Range<usize>),
}

/// What the writer thread owns.
struct Thread {
    /// Where the link sockets put their datagrams.
    ring: Arc<TapRing>,
    /// Empty halves to swap into the ring.
    free: Vec<TapBatch>,
    /// Records and bytes a half holds: a new half is allocated this big at once, so the
    /// taps never grow it (a reallocation on the tunnel's path).
    half_capacity: (usize, usize),
    /// Halves taken from the ring whose records are not all in the file yet, oldest first;
    /// the first is batch number `first_batch` (the order stage refers to records by batch
    /// number and index, so a datagram is never copied out of its half).
    held: VecDeque<HeldBatch>,
    first_batch: u64,
    segments: mpsc::Receiver<Segment>,
    /// Records wait here until older ones can no longer arrive.
    order: TimeOrder<Record>,
    stop: CancellationToken,
    encoder: Encoder,
    /// What the next write holds, in file order.
    pieces: Vec<Piece>,
    /// Bytes in `pieces`.
    pending_bytes: usize,
    sink: FileSink,
    status: Arc<CaptureStatus>,
    events: EventSink,
    log_as: Role,
}

/// A half of the ring the writer took, and how many of its records are still to write.
struct HeldBatch {
    batch: TapBatch,
    unwritten: usize,
}

/// What the writer waits for.
enum Next {
    /// Link records are in the ring.
    Records,
    /// TCP segments arrived (in the segment batch vector).
    Segments,
    /// [`CaptureWriter::finish`] (or drop): write what is queued, then end.
    Stop,
    /// The TCP reader is gone (or never started) and its queue is empty.
    SegmentsClosed,
    /// The oldest held record may go now.
    Due,
}

impl Thread {
    fn run(mut self) {
        let outcome = catch_unwind(AssertUnwindSafe(|| self.write_all()));
        let problem = match outcome {
            Ok(Ok(())) => return,
            Ok(Err(e)) => e.to_string(),
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(std::string::ToString::to_string)
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                format!("the capture writer crashed ({what})")
            }
        };
        // Close first: from now on the tap returns at once and never holds up the tunnel.
        self.ring.close();
        self.segments.close();
        let message = format!(
            "capture to '{}' stopped: {problem}. {} frames were saved and the file is readable up \
             to there; the lab keeps running without capture",
            self.status.path.display(),
            self.status.frames_written(),
        );
        self.status.fail(message.clone());
        eprintln!("error: {message}");
        self.events.log(Level::Error, self.log_as, message);
    }

    fn write_all(&mut self) -> io::Result<()> {
        // A tiny runtime of its own, only to wait on the inputs, the stop signal and the
        // reorder timer together; all file I/O is plain blocking I/O on this thread.
        let waiter = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()?;
        let mut stopping = false;
        let (mut records_open, mut segments_open) = (true, true);
        // Reused for every batch, so receiving allocates nothing.
        let mut segment_batch = Vec::with_capacity(RECV_BATCH);
        loop {
            let due = self.order.next_due(SystemTime::now());
            let (stop, ring, segments) = (&self.stop, &self.ring, &mut self.segments);
            let next = waiter.block_on(async {
                tokio::select! {
                    biased;
                    () = stop.cancelled(), if !stopping => Next::Stop,
                    () = ring.ready.notified(), if records_open => Next::Records,
                    n = segments.recv_many(&mut segment_batch, RECV_BATCH), if segments_open => {
                        if n == 0 { Next::SegmentsClosed } else { Next::Segments }
                    }
                    () = tokio::time::sleep(due.unwrap_or_default()), if due.is_some() => Next::Due,
                }
            });
            match next {
                Next::Stop => {
                    // No new records: what the taps put in before the close is all there is.
                    stopping = true;
                    self.ring.close();
                    self.take_from_ring();
                    records_open = false;
                    self.segments.close();
                }
                Next::SegmentsClosed => segments_open = false,
                Next::Records => {
                    // Let the next frames gather instead of waking for each one: the taps
                    // wake this thread only for the first record of a half, or when a half
                    // is half full (then it goes at once).
                    let ring = &self.ring;
                    waiter.block_on(async {
                        let _ = tokio::time::timeout(GATHER, ring.ready.notified()).await;
                    });
                    self.take_from_ring();
                }
                Next::Segments => {
                    self.order
                        .extend(segment_batch.drain(..).map(Record::Segment));
                }
                Next::Due => {}
            }
            if !records_open && !segments_open {
                // Everything has arrived: the rest goes in time order, then the file is done.
                return self.release(None);
            }
            self.release(Some(SystemTime::now()))?;
        }
    }

    /// Takes the ring's filling half (swapping in an empty one) into the order stage.
    fn take_from_ring(&mut self) {
        let (records, bytes) = self.half_capacity;
        let empty = self
            .free
            .pop()
            .unwrap_or_else(|| TapBatch::with_capacity(records, bytes));
        let full = self.ring.take(empty);
        if full.is_empty() {
            self.free.push(full);
            return;
        }
        let number = self.first_batch + self.held.len() as u64;
        self.order.extend(
            full.records
                .iter()
                .enumerate()
                .map(|(index, record)| Record::Link {
                    time: record.time,
                    batch: number,
                    index,
                }),
        );
        self.held.push_back(HeldBatch {
            unwritten: full.len(),
            batch: full,
        });
    }

    /// Writes the held records that may go at `now` (all of them with `None`), in time
    /// order, and hands them to the file.
    fn release(&mut self, now: Option<SystemTime>) -> io::Result<()> {
        let mut counts = (0, 0);
        loop {
            let record = match now {
                Some(now) => self.order.pop_ready(now),
                None => self.order.pop(),
            };
            let Some(record) = record else { break };
            match record {
                Record::Link { batch, index, .. } => {
                    let held = &mut self.held[(batch - self.first_batch) as usize];
                    held.unwritten -= 1;
                    let before = self.encoder.pending();
                    match self.encoder.encode_link(&held.batch, index)? {
                        LinkBytes::Skipped => {}
                        LinkBytes::InRing => {
                            let range = held.batch.record_range(index);
                            self.push_ring(batch, range);
                            counts.0 += 1;
                        }
                        LinkBytes::Encoded => {
                            self.push_encoded(before);
                            counts.0 += 1;
                        }
                    }
                }
                Record::Segment(segment) => {
                    self.close_run();
                    let before = self.encoder.pending();
                    self.encoder.encode_segment(&segment)?;
                    self.push_encoded(before);
                    counts.0 += 1;
                    counts.1 += 1;
                }
            }
            if self.pending_bytes >= BATCH_BYTES || self.pieces.len() >= MAX_PIECES {
                self.commit(counts)?;
                counts = (0, 0);
            }
        }
        self.status.late.store(self.order.late(), Ordering::Relaxed);
        self.commit(counts)?;
        // Halves whose records are all written go back for reuse (oldest first: the order
        // stage refers to the others by their place in `held`).
        while self.held.front().is_some_and(|held| held.unwritten == 0) {
            let mut spent = self.held.pop_front().expect("checked").batch;
            self.first_batch += 1;
            if self.free.len() < KEEP_HALVES {
                spent.clear();
                self.free.push(spent);
            }
        }
        Ok(())
    }

    /// Adds a record that lies in the ring at `range` of held batch `batch`: it extends the
    /// last piece if it follows it there, or starts a new run.
    fn push_ring(&mut self, batch: u64, range: Range<usize>) {
        self.pending_bytes += range.len();
        if let Some(Piece::Ring {
            batch: last_batch,
            range: last,
        }) = self.pieces.last_mut()
            && *last_batch == batch
            && last.end == range.start
        {
            last.end = range.end;
            return;
        }
        self.close_run();
        self.pieces.push(Piece::Ring { batch, range });
    }

    /// Adds what the encoder encoded since it held `before` bytes. The encoder's bytes must
    /// follow the pieces in file order, so [`Self::close_run`] came first.
    fn push_encoded(&mut self, before: usize) {
        let range = before..self.encoder.pending();
        self.pending_bytes += range.len();
        if let Some(Piece::Encoded(last)) = self.pieces.last_mut()
            && last.end == range.start
        {
            last.end = range.end;
            return;
        }
        if !range.is_empty() {
            self.pieces.push(Piece::Encoded(range));
        }
    }

    /// Ends the run of ring records at the end of the pieces: a short one is copied into
    /// the encoder's buffer ([`MIN_RUN`]), which then holds the following encoded bytes.
    fn close_run(&mut self) {
        let Some(Piece::Ring { batch, range }) = self.pieces.last() else {
            return;
        };
        if range.len() >= MIN_RUN {
            return;
        }
        let (batch, range) = (*batch, range.clone());
        self.pieces.pop();
        self.pending_bytes -= range.len();
        let bytes = &self.held[(batch - self.first_batch) as usize].batch.bytes[range];
        let before = self.encoder.pending();
        self.encoder.append_encoded(bytes);
        self.push_encoded(before);
    }

    /// Hands the pieces to the file in one vectored write.
    fn commit(&mut self, counts: (u64, u64)) -> io::Result<()> {
        if self.pieces.is_empty() {
            return Ok(());
        }
        let (pieces, held, first_batch, sink) =
            (&self.pieces, &self.held, self.first_batch, &mut self.sink);
        let bytes = self.encoder.drain_into(|encoded| {
            let mut slices: Vec<IoSlice<'_>> = pieces
                .iter()
                .map(|piece| match piece {
                    Piece::Ring { batch, range } => IoSlice::new(
                        &held[(batch - first_batch) as usize].batch.bytes[range.clone()],
                    ),
                    Piece::Encoded(range) => IoSlice::new(&encoded[range.clone()]),
                })
                .collect();
            sink.commit(&mut slices)?;
            Ok(self.pending_bytes)
        })?;
        self.pieces.clear();
        self.pending_bytes = 0;
        self.status.wrote(counts, bytes);
        Ok(())
    }
}
