//! The scenario's capture: the lab's capture tap, what reached it, and the file it went to.
//!
//! Every tapped frame is counted by type (for `captured` expectations) as the tap hands it
//! to the capture writer, which writes the pcap/pcapng file named in the report.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::scenario::CaptureFormat;
use crate::capture::{CapturePlan, CaptureTap, CaptureTarget, CaptureWriter, TapFrame, TcpCapture};
use crate::event::EventSink;
use crate::link::{KindCounters, KindCounts};
use crate::topology::Role;
use crate::wire::{FrameKind, WireMode};

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
    /// TCP segments read off loopback into the file (`capture_tcp`).
    pub tcp_segments: u64,
}

#[derive(Debug, Default)]
struct Counters {
    frames: AtomicU64,
    by_kind: KindCounters,
}

impl Counters {
    fn count(&self, kind: FrameKind) {
        self.by_kind.add(kind);
    }

    fn by_kind(&self) -> KindCounts {
        self.by_kind.snapshot()
    }
}

/// A running capture.
pub struct CaptureRun {
    tap: CaptureTap,
    format: CaptureFormat,
    counters: Arc<Counters>,
    writer: CaptureWriter,
}

impl CaptureRun {
    /// Creates the capture file in `dir` (a clear error if it cannot) and starts consuming
    /// the tap. `name` is the scenario's, for the pcapng description; the writer reports a
    /// failure on `events`.
    pub fn start(
        format: CaptureFormat,
        dir: &std::path::Path,
        mode: WireMode,
        name: &str,
        events: &EventSink,
        tcp: bool,
    ) -> anyhow::Result<CaptureRun> {
        let what = if tcp {
            "every UDP frame between proxy1 and proxy2, and the TCP legs"
        } else {
            "every UDP frame between proxy1 and proxy2"
        };
        let plan = CapturePlan::new(
            CaptureTarget::Dir(dir.to_path_buf()),
            format,
            format!("tunlab scenario \"{name}\": {what}"),
            Role::Proxy1,
        )
        .with_tcp(tcp);
        let writer = CaptureWriter::start(plan, events.clone())?;
        let counters = Arc::new(Counters::default());
        let seen = counters.clone();
        // Counted as the tap takes each frame, on its way into the writer's ring.
        let tap = writer.tap().observed(Arc::new(move |frame: &TapFrame<'_>| {
            // A frame the link emulator dropped never crossed the wire: it is not counted,
            // and the writer only keeps it as a pcapng comment.
            if frame.on_wire {
                seen.frames.fetch_add(1, Ordering::Relaxed);
                if let Ok(decoded) = mode.decode(frame.datagram) {
                    seen.count(decoded.kind());
                }
            }
        }));
        Ok(CaptureRun {
            tap,
            format,
            counters,
            writer,
        })
    }

    /// Stops and deletes the file: the lab could not start, so it would stay empty.
    pub async fn abandon(self) {
        self.writer.abandon().await;
    }

    /// Starts reading the TCP legs (`ports`) off loopback into the file.
    pub fn capture_tcp(
        &mut self,
        tcp: TcpCapture,
        ports: &[u16],
        events: EventSink,
    ) -> std::io::Result<()> {
        self.writer.capture_tcp(tcp, ports, events)
    }

    /// The tap to hand to the lab.
    pub fn tap(&self) -> CaptureTap {
        self.tap.clone()
    }

    /// The file writer's status (frames written so far), for the monitor.
    pub fn status(&self) -> Arc<crate::capture::CaptureStatus> {
        self.writer.status()
    }

    /// Waits (briefly) for every tapped frame to be taken in, once the lab has shut down.
    pub async fn finish(self) -> CaptureOutcome {
        let CaptureRun {
            tap,
            format,
            counters,
            writer,
        } = self;
        drop(tap);
        // A writer that failed has already said so on stderr and in the event log.
        let written = writer.finish().await;
        CaptureOutcome {
            path: Some(written.path),
            format: Some(format),
            frames: counters.frames.load(Ordering::Relaxed),
            by_kind: counters.by_kind(),
            tcp_segments: written.tcp_segments,
        }
    }
}
