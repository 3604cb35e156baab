//! The in-process lab path: this same bench binary, started again with `--lab-child`, runs
//! `tunlab::lab::Lab` in its own process (like `tunlab` itself would), so the client never
//! shares a runtime or an allocator with the tunnel it measures.
//!
//! Two optional consumers are attached the way `tunlab`'s TUI attaches them:
//! - events: an [`EventSink::channel`] folded by the TUI's own `update`, with the TUI's
//!   refresh (lab snapshot and a full redraw, 30 times a second) drawn into an off-screen
//!   120×40 terminal instead of a real one;
//! - capture: the real [`CaptureWriter`] (classic pcap) on `LabConfig.capture`.
//!
//! The loop below has the shape of `tunlab::tui::app::run`, minus keys and the terminal.

use std::io::{BufRead, Write};
use std::time::{Duration, SystemTime};

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use tunlab::capture::{CaptureFormat, CapturePlan, CaptureTarget, CaptureWriter};
use tunlab::event::{EventSink, Role};
use tunlab::impair::{DirectionSettings, LinkSettings, Percent};
use tunlab::lab::{Lab, LabConfig};
use tunlab::tui::render;
use tunlab::tui::state::{TuiState, apply_snapshot, events_for_tui, update};
use tunlab::wire::WireMode;

/// Which event consumer the "events on" rows use.
pub const EVENT_CONSUMER: &str = "the TUI's own event fold (`tui::state::update`, batches of up \
     to 4096 events as its loop takes them) and its refresh (lab snapshot plus `tui::render::draw` \
     of the whole screen at 30 frames a second, into an off-screen 120×40 ratatui TestBackend)";

/// Which capture writer the "capture on" rows use.
pub const CAPTURE_WRITER: &str = "the real capture writer (`capture::CaptureWriter`, classic \
     pcap, default queue) writing to a file in the system's temporary directory, deleted after \
     each run";

/// Event channel capacity and batch size, as the TUI uses them.
const EVENT_CAPACITY: usize = tunlab::tui::app::EVENT_CAPACITY;
const BATCH: usize = 4096;

/// What the child was asked to attach, and how its link runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LabOptions {
    pub events: bool,
    pub capture: bool,
    /// The lab's wire mode (`--wire`).
    pub wire: WireMode,
    /// Emulated loss each way, in percent (the link emulator, seeded: [`LOSS_SEED`]).
    pub loss: u8,
}

/// The emulator's seed for lossy runs: the same losses in every round and every mode.
pub const LOSS_SEED: u64 = 2026;

impl LabOptions {
    /// No consumers, classic mode, a clear link.
    pub const fn plain(events: bool, capture: bool) -> Self {
        LabOptions {
            events,
            capture,
            wire: WireMode::Classic,
            loss: 0,
        }
    }

    pub fn to_args(self) -> Vec<String> {
        let on_off = |b: bool| if b { "on" } else { "off" }.to_string();
        vec![
            "--lab-child".into(),
            "--events".into(),
            on_off(self.events),
            "--capture".into(),
            on_off(self.capture),
            "--wire".into(),
            self.wire.name().into(),
            "--loss".into(),
            self.loss.to_string(),
        ]
    }

    fn from_args(args: &[String]) -> anyhow::Result<Self> {
        let value = |name: &str| -> anyhow::Result<&str> {
            let at = args
                .iter()
                .position(|a| a == name)
                .ok_or_else(|| anyhow::anyhow!("missing {name}"))?;
            args.get(at + 1)
                .map(String::as_str)
                .ok_or_else(|| anyhow::anyhow!("{name} wants a value"))
        };
        let flag = |name: &str| -> anyhow::Result<bool> {
            match value(name)? {
                "on" => Ok(true),
                "off" => Ok(false),
                other => anyhow::bail!("{name} wants on or off, got {other:?}"),
            }
        };
        let wire = value("--wire")?;
        Ok(LabOptions {
            events: flag("--events")?,
            capture: flag("--capture")?,
            wire: WireMode::ALL
                .into_iter()
                .find(|mode| mode.name() == wire)
                .ok_or_else(|| anyhow::anyhow!("unknown --wire {wire:?}"))?,
            loss: value("--loss")?.parse()?,
        })
    }
}

/// What the child reports when it stops: proof that the consumers did their work.
#[derive(Clone, Debug, Default)]
pub struct LabSummary {
    pub events_seen: u64,
    pub events_dropped: u64,
    pub redraws: u64,
    pub capture_records: u64,
    pub capture_bytes: u64,
    /// Data frames the transports sent, at both proxies (reliable modes).
    pub data_frames: u64,
    /// Of those, retransmissions.
    pub retransmits: u64,
}

impl LabSummary {
    pub fn to_line(&self) -> String {
        format!(
            "SUMMARY events_seen={} events_dropped={} redraws={} capture_records={} capture_bytes={} data_frames={} retransmits={}",
            self.events_seen,
            self.events_dropped,
            self.redraws,
            self.capture_records,
            self.capture_bytes,
            self.data_frames,
            self.retransmits
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
                "redraws" => summary.redraws = value,
                "capture_records" => summary.capture_records = value,
                "capture_bytes" => summary.capture_bytes = value,
                "data_frames" => summary.data_frames = value,
                "retransmits" => summary.retransmits = value,
                _ => {}
            }
        }
        Some(summary)
    }
}

/// The child's `main`: start the lab, print `READY <proxy1 address>`, run until stdin
/// closes, then print the [`LabSummary`].
pub fn run(args: &[String]) -> anyhow::Result<()> {
    let options = LabOptions::from_args(args)?;
    // The same runtime `tunlab` builds for itself.
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let (events, rx) = if options.events {
            let (sink, rx) = EventSink::channel(EVENT_CAPACITY);
            (events_for_tui(sink), Some(rx))
        } else {
            (EventSink::disabled(), None)
        };
        let capture_path =
            std::env::temp_dir().join(format!("tunlab-bench-{}.pcap", std::process::id()));
        let capture = if options.capture {
            let plan = CapturePlan::new(
                CaptureTarget::File(capture_path.clone()),
                CaptureFormat::Pcap,
                "tunlab bench",
                Role::Proxy1,
            );
            Some(CaptureWriter::start(plan, events.clone())?)
        } else {
            None
        };
        let config = LabConfig {
            capture: capture.as_ref().map(CaptureWriter::tap),
            mode: options.wire,
            link: LinkSettings::symmetric(DirectionSettings {
                loss: Percent::new(f64::from(options.loss)).map_err(anyhow::Error::msg)?,
                ..Default::default()
            }),
            link_seed: Some(LOSS_SEED),
            ..LabConfig::ephemeral()
        };
        let lab = Lab::start(config, events.clone()).await?;
        println!("READY {}", lab.addrs().proxy1_tcp);
        std::io::stdout().flush()?;

        // The parent closes our stdin to stop us (and it closes when the parent dies).
        let mut stdin_closed = tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            while std::io::stdin().lock().read_line(&mut line).unwrap_or(0) > 0 {
                line.clear();
            }
        });
        let mut summary = LabSummary::default();
        match rx {
            None => {
                let _ = (&mut stdin_closed).await;
            }
            Some(mut rx) => {
                // The TUI's loop without keys: fold events as they come, redraw on the tick.
                let mut state = TuiState::new(SystemTime::now(), options.wire, Some(lab.addrs()));
                let mut terminal = Terminal::new(TestBackend::new(120, 40))?;
                let mut tick = tokio::time::interval(Duration::from_millis(
                    1000 / tunlab::tui::app::FRAMES_PER_SECOND,
                ));
                let mut batch = Vec::with_capacity(BATCH);
                let mut dirty = true;
                loop {
                    tokio::select! {
                        _ = &mut stdin_closed => break,
                        _ = tick.tick() => {
                            apply_snapshot(&mut state, &lab.snapshot());
                            if dirty {
                                terminal.draw(|frame| render::draw(frame, &state))?;
                                summary.redraws += 1;
                                dirty = false;
                            }
                        }
                        received = rx.recv_many(&mut batch, BATCH) => {
                            if received == 0 {
                                let _ = (&mut stdin_closed).await;
                                break;
                            }
                            summary.events_seen += received as u64;
                            for event in batch.drain(..) {
                                update(&mut state, event);
                            }
                            dirty = true;
                        }
                    }
                }
            }
        }

        summary.events_dropped = lab.events().dropped();
        let snapshot = lab.snapshot();
        let transport = snapshot
            .proxy1
            .transport
            .counts
            .plus(snapshot.proxy2.transport.counts);
        summary.data_frames = transport.data_frames_sent;
        summary.retransmits = transport.total();
        lab.shutdown().await;
        drop(events);
        // After the roles have stopped, so every frame they sent is in the file.
        if let Some(capture) = capture {
            let captured = capture.finish().await;
            if let Some(error) = &captured.error {
                eprintln!("capture failed: {error}");
            }
            summary.capture_records = captured.frames;
            summary.capture_bytes = captured.bytes;
            let _ = std::fs::remove_file(&capture_path);
        }
        println!("{}", summary.to_line());
        std::io::stdout().flush()?;
        Ok(())
    })
}
