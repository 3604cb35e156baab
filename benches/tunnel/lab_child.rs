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
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;
use tunlab::capture::{CaptureTap, TapRecord};
use tunlab::describe::{describe, frame_label};
use tunlab::event::{Endpoint, Event, EventKind, EventSink, FrameSummary, TcpAction};
use tunlab::lab::{Lab, LabConfig};
use tunlab::wire::ConnId;

/// Which event consumer the "events on" rows use.
pub const EVENT_CONSUMER: &str = "bench stand-in for the TUI's event fold (until the TUI merges): \
     batches of up to 4096 events (`recv_many`, as the TUI's loop does); per event a log line \
     from `describe()` when it has one, per-connection frame and byte counters, and for each \
     frame sent or TCP read/write a trace entry plus a formatted ladder label in 512-entry rings";

/// Which capture writer the "capture on" rows use.
pub const CAPTURE_WRITER: &str = "bench stand-in for the capture writer (until issue 3 merges), \
     shaped like it: a dedicated thread takes a record, then whatever else is queued, encodes \
     each as a classic-pcap record (Ethernet, IPv4 and UDP headers with checksums) and writes \
     the batch to a file in one write; tap queue of 8192 records";

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

/// A bounded queue that forgets its oldest entries, like the TUI's rings.
struct Ring<T> {
    items: VecDeque<T>,
    capacity: usize,
}

impl<T> Ring<T> {
    fn new(capacity: usize) -> Self {
        Ring {
            items: VecDeque::with_capacity(capacity),
            capacity,
        }
    }
    fn push(&mut self, item: T) {
        if self.items.len() == self.capacity {
            self.items.pop_front();
        }
        self.items.push_back(item);
    }
}

/// What a live view keeps per connection id.
struct ConnView {
    frames: u64,
    bytes: u64,
    trace: Ring<(Duration, FrameSummary)>,
    ladder: Ring<(Duration, String)>,
}

impl Default for ConnView {
    fn default() -> Self {
        ConnView {
            frames: 0,
            bytes: 0,
            trace: Ring::new(512),
            ladder: Ring::new(512),
        }
    }
}

/// The TUI stand-in's state: the work the TUI's `update` does per event, without a screen.
struct ViewState {
    started: SystemTime,
    log: Ring<(Duration, String)>,
    conns: HashMap<(Endpoint, ConnId), ConnView>,
    seen: u64,
}

impl ViewState {
    fn new() -> Self {
        ViewState {
            started: SystemTime::now(),
            log: Ring::new(500),
            conns: HashMap::new(),
            seen: 0,
        }
    }

    fn update(&mut self, event: Event) {
        self.seen += 1;
        let time = event.time.duration_since(self.started).unwrap_or_default();
        if let Some(line) = describe(&event.kind, false) {
            self.log.push((time, line));
        }
        match event.kind {
            EventKind::FrameSent { at, frame, .. } => {
                let conn = self.conns.entry((at, frame.id)).or_default();
                conn.frames += 1;
                conn.bytes += frame.payload_len as u64;
                conn.ladder.push((time, frame_label(&frame)));
                conn.trace.push((time, frame));
            }
            EventKind::Tcp {
                id: Some(id),
                action: TcpAction::Read(n) | TcpAction::Wrote(n),
                ..
            } => {
                let conn = self.conns.entry((Endpoint::Proxy1, id)).or_default();
                conn.ladder.push((time, format!("{n} B")));
            }
            _ => {}
        }
    }
}

fn spawn_event_consumer(mut rx: mpsc::Receiver<Event>) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        const BATCH: usize = 4096;
        let mut view = ViewState::new();
        let mut batch = Vec::with_capacity(BATCH);
        while rx.recv_many(&mut batch, BATCH).await > 0 {
            for event in batch.drain(..) {
                view.update(event);
            }
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
        let mut out = file;
        let encode = |out: &mut Vec<u8>, record: TapRecord| {
            pcap_record(out, &record);
            counts.records.fetch_add(1, Ordering::Relaxed);
            counts
                .bytes
                .fetch_add(record.datagram.len() as u64, Ordering::Relaxed);
        };
        let mut batch = Vec::with_capacity(256 * 1024);
        while let Some(first) = rx.blocking_recv() {
            encode(&mut batch, first);
            while let Ok(record) = rx.try_recv() {
                encode(&mut batch, record);
            }
            // The queue is momentarily empty: what we have goes to the file now.
            out.write_all(&batch)?;
            batch.clear();
        }
        out.flush()?;
        drop(out);
        std::fs::remove_file(&path)
    })
}

/// Appends one classic-pcap record: record header, Ethernet II, IPv4 and UDP headers with
/// valid checksums, then the datagram: the work a pcap writer does per frame.
fn pcap_record(out: &mut Vec<u8>, record: &TapRecord) {
    fn octets(addr: std::net::SocketAddr) -> [u8; 4] {
        match addr.ip() {
            std::net::IpAddr::V4(ip) => ip.octets(),
            std::net::IpAddr::V6(_) => [0; 4],
        }
    }
    fn sum(bytes: &[u8], mut acc: u32) -> u32 {
        let mut pairs = bytes.chunks_exact(2);
        for pair in &mut pairs {
            acc += u32::from(u16::from_be_bytes([pair[0], pair[1]]));
        }
        if let [last] = pairs.remainder() {
            acc += u32::from(*last) << 8;
        }
        acc
    }
    fn fold(mut acc: u32) -> u16 {
        while acc > 0xffff {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        !(acc as u16)
    }
    let since = record.time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let payload = &record.datagram;
    let udp_len = 8 + payload.len() as u16;
    let ip_len = 20 + udp_len;
    let frame_len = 14 + u32::from(ip_len);
    let (src, dst) = (octets(record.src), octets(record.dst));
    out.extend_from_slice(&(since.as_secs() as u32).to_le_bytes());
    out.extend_from_slice(&since.subsec_micros().to_le_bytes());
    out.extend_from_slice(&frame_len.to_le_bytes());
    out.extend_from_slice(&frame_len.to_le_bytes());
    out.extend_from_slice(&[0; 12]);
    out.extend_from_slice(&[0x08, 0x00]);
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&src);
    ip[16..20].copy_from_slice(&dst);
    let ip_checksum = fold(sum(&ip, 0));
    ip[10..12].copy_from_slice(&ip_checksum.to_be_bytes());
    out.extend_from_slice(&ip);
    let mut udp = [0u8; 8];
    udp[0..2].copy_from_slice(&record.src.port().to_be_bytes());
    udp[2..4].copy_from_slice(&record.dst.port().to_be_bytes());
    udp[4..6].copy_from_slice(&udp_len.to_be_bytes());
    let pseudo = sum(&src, sum(&dst, 17 + u32::from(udp_len)));
    let udp_checksum = fold(sum(payload, sum(&udp, pseudo)));
    udp[6..8].copy_from_slice(&udp_checksum.to_be_bytes());
    out.extend_from_slice(&udp);
    out.extend_from_slice(payload);
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
