//! The in-process lab path: this same bench binary, started again with `--lab-child`, runs
//! `tunlab::lab::Lab` in its own process (like `tunlab` itself would), so the client never
//! shares a runtime or an allocator with the tunnel it measures.
//!
//! Two optional consumers are attached the way the real front ends attach them:
//! - events: an [`EventSink::channel`] drained by a task that does TUI-like work per event;
//! - capture: `LabConfig.capture` with a [`CaptureTap`] drained to a file.
//!
//! The real TUI and capture writer are separate issues. Until they merge, the stand-ins below
//! are used, and the report says so ([`EVENT_CONSUMER`], [`CAPTURE_WRITER`]). To switch, replace
//! the body of [`spawn_event_consumer`] or [`spawn_capture_writer`]; nothing else changes.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use tokio::sync::mpsc;
use tunlab::capture::{CaptureTap, TapRecord};
use tunlab::describe::describe;
use tunlab::event::{Endpoint, Event, EventKind, EventSink};
use tunlab::lab::{Lab, LabConfig};
use tunlab::wire::ConnId;

/// Which event consumer the "events on" rows use.
pub const EVENT_CONSUMER: &str = "bench stand-in for the TUI: `describe()` of every event (frames \
     included) into a 2000-line scroll-back, plus per-connection frame counters";

/// Which capture writer the "capture on" rows use.
pub const CAPTURE_WRITER: &str = "bench stand-in for the capture writer: every TapRecord \
     (timestamp, addresses, datagram) appended to a file through a 256 KiB BufWriter on its own \
     thread";

/// Event channel capacity, as `tunlab`'s own lab front end uses.
const EVENT_CAPACITY: usize = 64 * 1024;
/// Capture tap capacity.
const CAPTURE_CAPACITY: usize = 8 * 1024;

/// What the child was asked to attach.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LabOptions {
    pub events: bool,
    pub capture: bool,
}

impl LabOptions {
    pub fn to_args(self) -> Vec<String> {
        let on_off = |b: bool| if b { "on" } else { "off" }.to_string();
        vec![
            "--lab-child".into(),
            "--events".into(),
            on_off(self.events),
            "--capture".into(),
            on_off(self.capture),
        ]
    }

    fn from_args(args: &[String]) -> anyhow::Result<Self> {
        let flag = |name: &str| -> anyhow::Result<bool> {
            let at = args
                .iter()
                .position(|a| a == name)
                .ok_or_else(|| anyhow::anyhow!("missing {name}"))?;
            match args.get(at + 1).map(String::as_str) {
                Some("on") => Ok(true),
                Some("off") => Ok(false),
                other => anyhow::bail!("{name} wants on or off, got {other:?}"),
            }
        };
        Ok(LabOptions {
            events: flag("--events")?,
            capture: flag("--capture")?,
        })
    }
}

/// What the child reports when it stops: proof that the consumers did their work.
#[derive(Clone, Debug, Default)]
pub struct LabSummary {
    pub events_seen: u64,
    pub events_dropped: u64,
    pub capture_records: u64,
    pub capture_bytes: u64,
}

impl LabSummary {
    pub fn to_line(&self) -> String {
        format!(
            "SUMMARY events_seen={} events_dropped={} capture_records={} capture_bytes={}",
            self.events_seen, self.events_dropped, self.capture_records, self.capture_bytes
        )
    }

    pub fn parse(line: &str) -> Option<Self> {
        let rest = line.strip_prefix("SUMMARY ")?;
        let mut summary = LabSummary::default();
        for field in rest.split_whitespace() {
            let (key, value) = field.split_once('=')?;
            let value: u64 = value.parse().ok()?;
            match key {
                "events_seen" => summary.events_seen = value,
                "events_dropped" => summary.events_dropped = value,
                "capture_records" => summary.capture_records = value,
                "capture_bytes" => summary.capture_bytes = value,
                _ => {}
            }
        }
        Some(summary)
    }
}

/// The TUI stand-in's state: roughly what a live view keeps per event.
#[derive(Default)]
struct ViewState {
    lines: VecDeque<String>,
    frames_per_connection: HashMap<(Endpoint, ConnId), u64>,
    seen: u64,
}

impl ViewState {
    const SCROLLBACK: usize = 2000;

    fn update(&mut self, event: Event) {
        self.seen += 1;
        if let EventKind::FrameSent { at, frame, .. } | EventKind::FrameReceived { at, frame, .. } =
            &event.kind
        {
            *self
                .frames_per_connection
                .entry((*at, frame.id))
                .or_default() += 1;
        }
        if let Some(line) = describe(&event.kind, true) {
            if self.lines.len() == Self::SCROLLBACK {
                self.lines.pop_front();
            }
            self.lines.push_back(line);
        }
    }
}

fn spawn_event_consumer(mut rx: mpsc::Receiver<Event>) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let mut view = ViewState::default();
        while let Some(event) = rx.recv().await {
            view.update(event);
        }
        view.seen
    })
}

/// Records and datagram bytes the capture writer has written so far.
#[derive(Default)]
struct CaptureCounts {
    records: AtomicU64,
    bytes: AtomicU64,
}

/// Drains the tap to `path` on a dedicated thread, counting as it goes.
fn spawn_capture_writer(
    mut rx: mpsc::Receiver<TapRecord>,
    path: PathBuf,
    counts: Arc<CaptureCounts>,
) -> std::thread::JoinHandle<std::io::Result<()>> {
    std::thread::spawn(move || {
        let file = std::fs::File::create(&path)?;
        let mut out = std::io::BufWriter::with_capacity(256 * 1024, file);
        while let Some(record) = rx.blocking_recv() {
            let micros = record
                .time
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_micros() as u64;
            out.write_all(&micros.to_le_bytes())?;
            out.write_all(record.src.to_string().as_bytes())?;
            out.write_all(b" ")?;
            out.write_all(record.dst.to_string().as_bytes())?;
            out.write_all(&(record.datagram.len() as u32).to_le_bytes())?;
            out.write_all(&record.datagram)?;
            counts.records.fetch_add(1, Ordering::Relaxed);
            counts
                .bytes
                .fetch_add(record.datagram.len() as u64, Ordering::Relaxed);
        }
        out.flush()?;
        drop(out);
        std::fs::remove_file(&path)
    })
}

/// The child's `main`: start the lab, print `READY <proxy1 address>`, run until stdin
/// closes, then print the [`LabSummary`].
pub fn run(args: &[String]) -> anyhow::Result<()> {
    let options = LabOptions::from_args(args)?;
    // The same runtime `tunlab` builds for itself.
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let (events, consumer) = if options.events {
            let (sink, rx) = EventSink::channel(EVENT_CAPACITY);
            (sink, Some(spawn_event_consumer(rx)))
        } else {
            (EventSink::disabled(), None)
        };
        let capture_counts = Arc::new(CaptureCounts::default());
        let (tap, writer) = if options.capture {
            let (tap, rx) = CaptureTap::channel(CAPTURE_CAPACITY);
            let path = std::env::temp_dir()
                .join(format!("tunlab-bench-capture-{}.raw", std::process::id()));
            let writer = spawn_capture_writer(rx, path, capture_counts.clone());
            (Some(tap), Some(writer))
        } else {
            (None, None)
        };
        let config = LabConfig {
            capture: tap,
            ..LabConfig::ephemeral()
        };
        let lab = Lab::start(config, events.clone()).await?;
        println!("READY {}", lab.addrs().proxy1_tcp);
        std::io::stdout().flush()?;

        // The parent closes our stdin to stop us (and it closes when the parent dies).
        tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            while std::io::stdin().lock().read_line(&mut line).unwrap_or(0) > 0 {
                line.clear();
            }
        })
        .await?;

        let events_dropped = lab.events().dropped();
        lab.shutdown().await;
        drop(events);
        let events_seen = match consumer {
            Some(task) => tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or(0),
            None => 0,
        };
        // The writer ends once every tap clone is dropped; wait for that, boundedly.
        if let Some(writer) = writer {
            let joined = tokio::time::timeout(
                Duration::from_secs(3),
                tokio::task::spawn_blocking(move || writer.join()),
            )
            .await;
            match joined {
                Ok(Ok(Ok(Ok(())))) => {}
                Ok(Ok(Ok(Err(e)))) => eprintln!("capture writer failed: {e}"),
                Ok(_) => eprintln!("capture writer panicked"),
                Err(_) => eprintln!("capture writer still running after shutdown"),
            }
        }
        let capture_records = capture_counts.records.load(Ordering::Relaxed);
        let capture_bytes = capture_counts.bytes.load(Ordering::Relaxed);
        let summary = LabSummary {
            events_seen,
            events_dropped,
            capture_records,
            capture_bytes,
        };
        println!("{}", summary.to_line());
        std::io::stdout().flush()?;
        Ok(())
    })
}
