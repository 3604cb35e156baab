//! The in-process lab path: this same bench binary, started again with `--lab-child`, runs
//! `tunlab::lab::Lab` in its own process (like `tunlab` itself would), so the client never
//! shares a runtime or an allocator with the tunnel it measures.
//!
//! Two optional consumers are attached the way `tunlab`'s TUI attaches them:
//! - events: the TUI's own loop ([`ScreenLoop`]: the sampled event stream folded by the TUI's
//!   `update`, a redraw on its clock whenever something shown changed) drawing a 120×40
//!   screen through ratatui's crossterm backend into /dev/null (the escape sequences are
//!   built and written; no terminal parses them);
//! - capture: the real [`CaptureWriter`] (classic pcap) on `LabConfig.capture`.

use std::io::{BufRead, Write};
use std::time::SystemTime;

use ratatui::backend::CrosstermBackend;
use ratatui::layout::Rect;
use ratatui::{Terminal, TerminalOptions, Viewport};
use tunlab::capture::{CaptureFormat, CapturePlan, CaptureTarget, CaptureWriter};
use tunlab::event::EventSink;
use tunlab::impair::{BitRate, DirectionSettings, LinkSettings, Percent};
use tunlab::lab::{Lab, LabConfig};
use tunlab::topology::Role;
use tunlab::transport::{CongestionControl, TransportConfig};
use tunlab::tui::screen_loop::ScreenLoop;
use tunlab::tui::state::{TuiState, events_for_tui};
use tunlab::wire::WireMode;

/// Which event consumer the "events on" rows use.
pub const EVENT_CONSUMER: &str = "the TUI's own loop (`tui::screen_loop::ScreenLoop`: its \
     sampled event stream folded by `tui::state::update`, the screen redrawn when something on it \
     changed, at most 30 times a second) drawing 120×40 through ratatui's crossterm backend into \
     /dev/null";

/// Which capture writer the "capture on" rows use.
pub const CAPTURE_WRITER: &str = "the real capture writer (`capture::CaptureWriter`, classic \
     pcap, default queue) writing to a file in the system's temporary directory, deleted after \
     each run";

/// Event channel capacity, as the TUI uses it.
const EVENT_CAPACITY: usize = tunlab::tui::app::EVENT_CAPACITY;

/// What the child was asked to attach, and how its link runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LabOptions {
    pub events: bool,
    pub capture: bool,
    /// The lab's wire mode (`--wire`).
    pub wire: WireMode,
    /// Emulated loss each way, in percent (the link emulator, seeded: [`LOSS_SEED`]).
    pub loss: u8,
    /// The windowed modes' congestion control (`--cc`).
    pub cc: CongestionControl,
    /// The link emulator's rate limit each way in Mbit/s (`--rate`), with a queue of
    /// [`RATE_QUEUE`] frames; 0: none.
    pub rate_mbit: u16,
    /// The reliable modes' window in frames (`--window`); 0: the default (64).
    pub window: u32,
}

/// The rate limiter's queue in the rate-limited paths, in frames: the emulator's default
/// (`--queue 100`). With echo traffic the acks wait behind a full queue of data, so the round
/// trip holds about a queue's worth of frames, and `NewReno`'s halving keeps the link busy only
/// when the queue is at least that deep (with 32 frames it reached 0.82× of the rate); the
/// rows use a window of 128, which a fixed window overflows.
pub const RATE_QUEUE: usize = 100;

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
            cc: CongestionControl::Tolerant,
            rate_mbit: 0,
            window: 0,
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
            "--cc".into(),
            self.cc.name().into(),
            "--rate-mbit".into(),
            self.rate_mbit.to_string(),
            "--window".into(),
            self.window.to_string(),
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
            cc: <CongestionControl as clap::ValueEnum>::from_str(value("--cc")?, false)
                .map_err(|e| anyhow::anyhow!("--cc: {e}"))?,
            rate_mbit: value("--rate-mbit")?.parse()?,
            window: value("--window")?.parse()?,
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
        let mut config = LabConfig {
            capture: capture.as_ref().map(CaptureWriter::tap),
            mode: options.wire,
            link: LinkSettings::symmetric(DirectionSettings {
                loss: Percent::new(f64::from(options.loss)).map_err(anyhow::Error::msg)?,
                rate: (options.rate_mbit > 0)
                    .then(|| BitRate::new(u64::from(options.rate_mbit) * 1_000_000))
                    .transpose()
                    .map_err(anyhow::Error::msg)?,
                queue: RATE_QUEUE,
                ..Default::default()
            }),
            link_seed: Some(LOSS_SEED),
            ..LabConfig::ephemeral()
        };
        if options.wire.is_reliable() {
            let defaults = TransportConfig::for_mode(options.wire);
            let window = if options.window > 0 {
                options.window
            } else {
                defaults.window
            };
            let transport = TransportConfig {
                congestion: options.cc,
                window,
                send_buffer: window as usize * defaults.max_payload,
                ..defaults
            };
            config.proxy1.transport = Some(transport);
            config.proxy2.transport = Some(transport);
        }
        let mut lab = Lab::start(config, events.clone()).await?;
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
            Some(rx) => {
                let state = TuiState::new(SystemTime::now(), options.wire, Some(lab.addrs()));
                let sink = std::fs::OpenOptions::new().write(true).open("/dev/null")?;
                let terminal = Terminal::with_options(
                    CrosstermBackend::new(sink),
                    TerminalOptions {
                        viewport: Viewport::Fixed(Rect::new(0, 0, 120, 40)),
                    },
                )?;
                // No keys: the sender stays alive so the loop keeps listening for none.
                let (_keys, inputs) = tokio::sync::mpsc::unbounded_channel();
                let mut screen = ScreenLoop::new(terminal, lab, state, rx, inputs, None);
                let draws = screen.draw_counter();
                screen
                    .run(async {
                        let _ = (&mut stdin_closed).await;
                    })
                    .await?;
                summary.redraws = draws.load(std::sync::atomic::Ordering::Relaxed);
                summary.events_seen = screen.state.counters.events_seen;
                lab = screen.lab;
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
