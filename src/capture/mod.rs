//! Captures: every UDP frame of the link, exactly as it crossed the wire, to a pcap or pcapng
//! file that opens in Wireshark; with [`CaptureWriter::capture_tcp`], the TCP legs too, read off
//! loopback ([`tcp`]), in time order with the link's frames.
//!
//! The link sockets feed a [`CaptureTap`]; a [`CaptureWriter`] drains it into the file.
//! Unlike the event stream, the tap must never lose a frame, so [`CaptureTap::record`] waits
//! for room in a bounded buffer (bounded, so a slow disk cannot grow memory without limit).
//!
//! The lab and the standalone proxies set a capture up the same way:
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use tunlab::capture::{CapturePlan, CaptureTarget, CaptureFormat, CaptureWriter};
//! use tunlab::event::EventSink;
//! use tunlab::topology::Role;
//! let plan = CapturePlan::new(CaptureTarget::Dir("captures".into()), CaptureFormat::Pcap,
//!                             "tunlab lab", Role::Proxy1);
//! let capture = CaptureWriter::start(plan, EventSink::disabled())?;
//! let tap = capture.tap(); // give it to the link sockets (LabConfig::capture)
//! // … run the lab, then stop it …
//! let summary = capture.finish().await;
//! println!("capture: {} ({} frames)", summary.path.display(), summary.frames);
//! # Ok(()) }
//! ```

mod file;
mod format;
mod order;
mod packet;
pub mod tcp;
mod writer;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::sync::mpsc;

use crate::topology::Role;

pub use file::local_timestamp;
pub use format::{
    CaptureFormat, PCAPNG_INTERFACE_NAME, PCAPNG_LOOPBACK_INTERFACE, PCAPNG_NOT_SENT_INTERFACE,
};
pub use order::HOLD as ORDER_HOLD;
pub use packet::ethernet_udp;
pub use tcp::{Segment, TcpCapture, TcpCaptureError};

pub use writer::{CaptureStatus, CaptureSummary, CaptureWriter};

/// Records buffered between the link and the disk by default: about 6 MB of full-size
/// datagrams, enough to ride out a slow disk moment without holding up the tunnel.
pub const DEFAULT_QUEUE: usize = 4096;

/// Where a capture file goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CaptureTarget {
    /// A new file in this directory (created if missing), named by the start time:
    /// `tunlab-20261122-184501.pcap`, never overwriting an existing one.
    Dir(PathBuf),
    /// Exactly this file, replaced if it exists (what `--capture FILE` asks for).
    File(PathBuf),
}

/// What a capture should be: the one set-up the lab and the standalone proxies share.
#[derive(Clone, Debug)]
pub struct CapturePlan {
    pub target: CaptureTarget,
    pub format: CaptureFormat,
    /// Names the capture in a pcapng's section and interface description.
    pub description: String,
    /// The role whose log shows the writer's own messages (a failure, for example).
    pub log_as: Role,
    /// Records buffered before the tunnel waits for the disk ([`DEFAULT_QUEUE`]).
    pub queue: usize,
    /// Whether TCP segments from loopback join the file ([`CaptureWriter::capture_tcp`]):
    /// a pcapng then describes a second interface, `lo`, that they were read from.
    pub tcp: bool,
}

impl CapturePlan {
    pub fn new(
        target: CaptureTarget,
        format: CaptureFormat,
        description: impl Into<String>,
        log_as: Role,
    ) -> Self {
        CapturePlan {
            target,
            format,
            description: description.into(),
            log_as,
            queue: DEFAULT_QUEUE,
            tcp: false,
        }
    }

    /// The same plan with TCP segments from loopback in the file too.
    pub fn with_tcp(mut self, tcp: bool) -> Self {
        self.tcp = tcp;
        self
    }
}

/// One datagram on the link.
#[derive(Clone, Debug)]
pub struct TapRecord {
    /// When the datagram was handed to the socket, or read from it (for a dropped frame:
    /// when it was dropped). Stamped before the send, so a reply can never be stamped before
    /// its request.
    pub time: SystemTime,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    /// The exact bytes on the wire (for a dropped frame: the bytes that would have gone).
    pub datagram: Vec<u8>,
    /// What the lab did to this frame, if anything notable (pcapng comments).
    pub note: Option<String>,
    /// False for a frame the link emulator dropped before it was sent: it never crossed the
    /// wire, so a classic pcap skips it, and pcapng keeps it only to carry its `note`.
    pub on_wire: bool,
}

/// What the writer puts in the file: a datagram of the link, or a TCP segment off loopback.
pub(crate) enum Record {
    Link(TapRecord),
    Segment(Segment),
}

impl order::Stamped for Record {
    fn stamp(&self) -> SystemTime {
        match self {
            Record::Link(record) => record.time,
            Record::Segment(segment) => segment.time,
        }
    }
}

/// Datagram buffers the writer hands back once their records are in the file, for the taps
/// to copy the next datagrams into: a tap then allocates nothing per frame (a 1.5 kB block,
/// freed on another thread, cost as much as the rest of the tap). Holds at most as many as
/// the queue, so it never keeps more memory than a full queue would.
#[derive(Debug)]
pub(crate) struct BufferPool {
    free: Mutex<Vec<Vec<u8>>>,
    keep: usize,
}

impl BufferPool {
    fn new(keep: usize) -> Self {
        BufferPool {
            free: Mutex::new(Vec::with_capacity(keep)),
            keep,
        }
    }

    /// A copy of `bytes` in a reused buffer when there is one.
    fn copy(&self, bytes: &[u8]) -> Vec<u8> {
        let reused = self.free.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut buffer = reused.unwrap_or_else(|| Vec::with_capacity(crate::wire::MAX_DATAGRAM));
        buffer.clear();
        buffer.extend_from_slice(bytes);
        buffer
    }

    /// Takes back the buffers of written records (all at once: one lock per batch).
    pub(crate) fn give_back(&self, spent: &mut Vec<Vec<u8>>) {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        let room = self.keep.saturating_sub(free.len());
        free.extend(spent.drain(..).take(room));
        spent.clear();
    }
}

/// The sending side of the capture writer's channel.
#[derive(Clone, Debug)]
pub struct CaptureTap {
    tx: mpsc::Sender<TapRecord>,
    pool: Arc<BufferPool>,
}

impl CaptureTap {
    pub fn channel(capacity: usize) -> (CaptureTap, mpsc::Receiver<TapRecord>) {
        let (tx, rx) = mpsc::channel(capacity);
        let pool = Arc::new(BufferPool::new(capacity));
        (CaptureTap { tx, pool }, rx)
    }

    /// The buffers this tap copies datagrams into (the writer gives them back).
    pub(crate) fn pool(&self) -> Arc<BufferPool> {
        self.pool.clone()
    }

    /// A copy of a datagram for a [`TapRecord`], in a buffer the writer gave back when it
    /// has one (no allocation per frame once traffic flows).
    pub fn copy(&self, datagram: &[u8]) -> Vec<u8> {
        self.pool.copy(datagram)
    }

    /// Hands one datagram to the writer; waits only while the bounded buffer is full.
    pub async fn record(&self, record: TapRecord) {
        // A closed channel means the writer gave up; it has already said so loudly.
        let _ = self.tx.send(record).await;
    }
}
