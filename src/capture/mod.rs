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
mod ring;
pub mod tcp;
mod writer;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::mpsc;

use crate::topology::Role;

pub use file::local_timestamp;
pub use format::{
    CaptureFormat, PCAPNG_INTERFACE_NAME, PCAPNG_LOOPBACK_INTERFACE, PCAPNG_NOT_SENT_INTERFACE,
};
pub use order::HOLD as ORDER_HOLD;
pub use packet::ethernet_udp;
pub use ring::TapFrame;
use ring::TapRing;
pub use tcp::{Segment, TcpCapture, TcpCaptureError};

pub use writer::{CaptureStatus, CaptureSummary, CaptureWriter};

/// Records each half of the tap's ring holds by default (with up to 1.5 kB of datagram
/// each, about 6 MB): the writer takes a half every few milliseconds, so this rides out a
/// slow disk moment without holding up the tunnel.
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

/// One datagram on the link, owned (see [`TapFrame`] for the borrowed form the link sockets
/// hand over).
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

/// What the writer puts in the file: a datagram of the link (still in the tap's ring, in
/// batch `batch` at `index`), or a TCP segment off loopback.
pub(crate) enum Record {
    Link {
        time: SystemTime,
        batch: u64,
        index: usize,
    },
    Segment(Segment),
}

impl order::Stamped for Record {
    fn stamp(&self) -> SystemTime {
        match self {
            Record::Link { time, .. } => *time,
            Record::Segment(segment) => segment.time,
        }
    }
}

/// Something that sees every frame a tap takes, before it is written (the scenario runner
/// counts them by type).
pub type TapObserver = Arc<dyn Fn(&TapFrame<'_>) + Send + Sync>;

/// Where a tap puts frames.
#[derive(Clone, Debug)]
enum TapTarget {
    /// The capture writer's ring ([`ring`]): no allocation or message per frame.
    Ring(Arc<TapRing>),
    /// A channel of owned records, for a program (or test) that inspects them itself.
    Channel(mpsc::Sender<TapRecord>),
}

/// What a link socket records its datagrams through: a handle on the capture writer's ring
/// (or on a channel, [`CaptureTap::channel`]). Cheap to clone.
#[derive(Clone)]
pub struct CaptureTap {
    target: TapTarget,
    observer: Option<TapObserver>,
}

impl std::fmt::Debug for CaptureTap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaptureTap")
            .field("target", &self.target)
            .field("observed", &self.observer.is_some())
            .finish()
    }
}

impl CaptureTap {
    /// A tap whose records arrive, owned, on the returned channel (bounded: the tap waits
    /// while it is full), for a consumer other than the capture writer.
    pub fn channel(capacity: usize) -> (CaptureTap, mpsc::Receiver<TapRecord>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (
            CaptureTap {
                target: TapTarget::Channel(tx),
                observer: None,
            },
            rx,
        )
    }

    pub(crate) fn ring(ring: Arc<TapRing>) -> CaptureTap {
        CaptureTap {
            target: TapTarget::Ring(ring),
            observer: None,
        }
    }

    /// The same tap, with `observer` shown every frame before it goes on.
    pub fn observed(mut self, observer: TapObserver) -> CaptureTap {
        self.observer = Some(observer);
        self
    }

    /// Hands one datagram to the writer if that takes no waiting, without building a
    /// future: a ring with room (or closed), and no observer. Returns the frame, untouched,
    /// otherwise; [`CaptureTap::frame`] then does all of it.
    pub fn try_frame<'a>(&self, frame: TapFrame<'a>) -> Option<TapFrame<'a>> {
        match (&self.target, &self.observer) {
            (TapTarget::Ring(ring), None) => ring.put_now(frame),
            _ => Some(frame),
        }
    }

    /// Hands one datagram to the writer (copied into its ring); waits only while the ring
    /// is full, so no frame is ever dropped for a slow disk.
    pub async fn frame(&self, frame: TapFrame<'_>) {
        if let Some(observer) = &self.observer {
            observer(&frame);
        }
        match &self.target {
            TapTarget::Ring(ring) => ring.put(frame).await,
            TapTarget::Channel(tx) => {
                // A closed channel means its consumer is gone.
                let _ = tx
                    .send(TapRecord {
                        time: frame.time,
                        src: frame.src,
                        dst: frame.dst,
                        datagram: frame.datagram.to_vec(),
                        note: frame.note,
                        on_wire: frame.on_wire,
                    })
                    .await;
            }
        }
    }

    /// Hands one owned record to the writer, like [`CaptureTap::frame`].
    pub async fn record(&self, record: TapRecord) {
        self.frame(TapFrame {
            time: record.time,
            src: record.src,
            dst: record.dst,
            datagram: &record.datagram,
            note: record.note,
            on_wire: record.on_wire,
        })
        .await;
    }
}
