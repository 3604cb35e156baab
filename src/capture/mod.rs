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
//! use tunlab::event::{EventSink, Role};
//! let plan = CapturePlan::new(CaptureTarget::Dir("captures".into()), CaptureFormat::Pcap,
//!                             "tunlab lab", Role::Proxy1);
//! let capture = CaptureWriter::start(plan, EventSink::disabled())?;
//! let tap = capture.tap(); // give it to the link sockets (LabConfig::capture)
//! // … run the lab, then stop it …
//! let summary = capture.finish().await;
//! println!("capture: {} ({} frames)", summary.path.display(), summary.frames);
//! # Ok(()) }
//! ```

pub mod decrypt;
mod file;
mod format;
mod order;
mod packet;
pub mod tcp;
mod writer;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::SystemTime;

use tokio::sync::mpsc;

use crate::event::Role;

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

/// The sending side of the capture writer's channel.
#[derive(Clone, Debug)]
pub struct CaptureTap {
    tx: mpsc::Sender<TapRecord>,
}

impl CaptureTap {
    pub fn channel(capacity: usize) -> (CaptureTap, mpsc::Receiver<TapRecord>) {
        let (tx, rx) = mpsc::channel(capacity);
        (CaptureTap { tx }, rx)
    }

    /// Hands one datagram to the writer; waits only while the bounded buffer is full.
    pub async fn record(&self, record: TapRecord) {
        // A closed channel means the writer gave up; it has already said so loudly.
        let _ = self.tx.send(record).await;
    }
}
