//! The scenario's capture: the lab's capture tap, and what reached it.
//!
//! The capture writer (pcap/pcapng files) is its own issue. Until it lands, a scenario with
//! `capture = "pcap"` still taps every frame of the link and counts what the tap received,
//! by frame type, so `captured` expectations check real traffic; no file is written and the
//! report's `captures` list stays empty. Connecting the writer means replacing the body of
//! [`CaptureRun::start`]'s task and filling `path`, nothing else.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::task::JoinHandle;

use super::scenario::CaptureFormat;
use crate::capture::CaptureTap;
use crate::link::KindCounts;
use crate::wire::{FrameKind, WireMode};

/// Frames the tap may hold before the lab's senders wait for the consumer.
const TAP_CAPACITY: usize = 16 * 1024;

/// What the capture ended up with.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CaptureOutcome {
    /// The file written, if any.
    pub path: Option<PathBuf>,
    pub format: Option<CaptureFormat>,
    /// Datagrams the capture received.
    pub frames: u64,
    /// Of those, the ones that decode, by type.
    pub by_kind: KindCounts,
}

#[derive(Debug, Default)]
struct Counters {
    frames: AtomicU64,
    connect: AtomicU64,
    ok: AtomicU64,
    nok: AtomicU64,
    data: AtomicU64,
    close: AtomicU64,
}

impl Counters {
    fn count(&self, kind: FrameKind) {
        let counter = match kind {
            FrameKind::Connect => &self.connect,
            FrameKind::ConnectOk => &self.ok,
            FrameKind::ConnectNok => &self.nok,
            FrameKind::Data => &self.data,
            FrameKind::Close => &self.close,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn by_kind(&self) -> KindCounts {
        KindCounts {
            connect: self.connect.load(Ordering::Relaxed),
            ok: self.ok.load(Ordering::Relaxed),
            nok: self.nok.load(Ordering::Relaxed),
            data: self.data.load(Ordering::Relaxed),
            close: self.close.load(Ordering::Relaxed),
        }
    }
}

/// A running capture.
pub struct CaptureRun {
    tap: CaptureTap,
    format: CaptureFormat,
    counters: Arc<Counters>,
    task: JoinHandle<()>,
}

impl CaptureRun {
    /// Starts consuming the tap. `_dir` is where the writer will put its file.
    pub fn start(format: CaptureFormat, _dir: &std::path::Path, mode: WireMode) -> CaptureRun {
        let (tap, mut records) = CaptureTap::channel(TAP_CAPACITY);
        let counters = Arc::new(Counters::default());
        let task_counters = counters.clone();
        let task = tokio::spawn(async move {
            while let Some(record) = records.recv().await {
                task_counters.frames.fetch_add(1, Ordering::Relaxed);
                if let Ok(frame) = mode.decode(&record.datagram) {
                    task_counters.count(frame.kind());
                }
            }
        });
        CaptureRun {
            tap,
            format,
            counters,
            task,
        }
    }

    /// The tap to hand to the lab.
    pub fn tap(&self) -> CaptureTap {
        self.tap.clone()
    }

    /// Waits (briefly) for every tapped frame to be taken in, once the lab has shut down.
    pub async fn finish(self) -> CaptureOutcome {
        let CaptureRun {
            tap,
            format,
            counters,
            task,
        } = self;
        drop(tap);
        // The lab's sockets hold the other taps; after its shutdown the channel closes. If a
        // role lingers, count what arrived so far rather than wait.
        let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
        CaptureOutcome {
            path: None,
            format: Some(format),
            frames: counters.frames.load(Ordering::Relaxed),
            by_kind: counters.by_kind(),
        }
    }
}
