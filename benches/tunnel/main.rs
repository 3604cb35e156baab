//! `cargo bench --bench tunnel`: tunlab side by side with direct TCP and kcptun, in one run
//! on loopback (issue 7). Use `bench/run.sh`, which installs kcptun and builds the release
//! binaries first.
//!
//! The same client measures every path to the same echo server:
//! 1. 64-byte echo round trips on one connection: p50 and p99;
//! 2. one connection's echo goodput, paced (bounded bytes in flight) and at full speed, with
//!    the fraction of bytes that came back intact;
//! 3. ten connections doing round trips at once: round trips per second;
//! 4. the in-process lab with and without an event consumer and a capture attached.
//!
//! Paths run one after another within a round, and rounds repeat, so a burst of load from
//! elsewhere on the machine hits every path alike; each figure is the median over rounds.
//! Not part of `cargo test`: speed is measured here, never asserted in tests.

// Doc comments here are --help text, printed as written: no Markdown backticks.
#![allow(clippy::doc_markdown)]

mod client;
mod lab_child;
mod paths;
mod profile;
mod report;
mod scale;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;

use client::Pacing;
use lab_child::LabOptions;
use paths::{
    BinaryOptions, EchoServer, PathKind, RelayedOptions, RelayedTunnel, RunningPath, Tools,
    find_tool, progress,
};
use report::{PathResult, Round, RunInfo};
use tunlab::wire::WireMode;

#[derive(Debug, Parser)]
#[command(
    name = "tunnel bench",
    about = "tunlab vs direct TCP vs kcptun on loopback; writes BENCHMARKS.md"
)]
struct Args {
    /// Rounds over all paths; each figure is the median over rounds.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Timed 64-byte round trips per path and round (after 200 warm-up ones).
    #[arg(long, default_value_t = 3000)]
    round_trips: usize,
    /// Seconds of each goodput test.
    #[arg(long, default_value_t = 2.0)]
    goodput_secs: f64,
    /// Seconds of the concurrent round-trip test.
    #[arg(long, default_value_t = 2.0)]
    concurrent_secs: f64,
    /// Bytes the paced goodput writer keeps in flight, in KiB.
    #[arg(long, default_value_t = 256)]
    window_kib: usize,
    /// A short smoke run (1 round, few round trips, half-second tests); not for the record.
    #[arg(long)]
    quick: bool,
    /// Only these paths (comma-separated: direct, kcptun, classic, lab, lab-events,
    /// lab-capture, lab-both, bin-bare, bin-capture, bin-tui, bin-tui-capture, and with
    /// TUNLAB_BENCH_BEFORE=<another tunlab build> the same four as bin-*-before; `modes` for
    /// the reliable-modes table with direct TCP and the lab as baselines, or one cell of it
    /// such as selective-repeat-5, selective-repeat-5-ccnone for --cc none (-ccnewreno for --cc newreno), or
    /// selective-repeat-10mbit[-w128][-ccnone] for the rate-limited rows; `relay` for
    /// selective-repeat and kcptun through `tunlab relay` at each of its losses, or one of
    /// them such as relay-kcptun-5). Default: all.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Markdown file to write the results into (between its bench markers).
    #[arg(long, default_value = "BENCHMARKS.md")]
    out: PathBuf,
    /// Do not write the Markdown file, only print.
    #[arg(long)]
    no_write: bool,
    /// Instead of the benchmark: profile the tunnel's processes under this tool with fixed
    /// workloads (see bench/profile.sh).
    #[arg(long, value_enum, value_name = "TOOL")]
    profile: Option<profile::Tool>,
    /// The path to profile: classic (proxy1 and proxy2 processes), lab (the in-process lab,
    /// no consumers), lab-events, lab-capture, lab-both, a reliable mode's lab
    /// (<wire mode>-<loss>, such as selective-repeat-0), or a tunnel through tunlab relay
    /// (relay-selective-repeat-0, relay-kcptun-5: its three processes, relay included).
    #[arg(long, default_value = "lab", value_name = "PATH")]
    profile_path: String,
    /// Round trips in the profile's round-trip workload (plus 200 warm-up ones).
    #[arg(long, default_value_t = 2000, value_name = "N")]
    profile_round_trips: usize,
    /// MiB echoed in the profile's bulk workload.
    #[arg(long, default_value_t = 16, value_name = "MIB")]
    profile_mib: u64,
    /// Instead of the benchmark: the scale benchmark (idle memory per connection, many
    /// concurrent connections, a burst of 10,000), written into its own BENCHMARKS.md section.
    #[arg(long)]
    scale: bool,
    /// Connections of the scale benchmark's idle-memory and concurrent tests.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    scale_connections: usize,
    /// Connections opened at once in the scale benchmark's last test.
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    scale_burst: usize,
    /// In the scale benchmark's paced test, each connection's pause between round trips.
    #[arg(long, default_value_t = 100, value_name = "MS")]
    scale_pace_ms: u64,
    /// Check the goodput record parser and exit.
    #[arg(long)]
    self_check: bool,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// Emulated loss (percent, each way) of the reliable-modes table.
pub const MODE_LOSSES: [u8; 4] = [0, 1, 5, 20];

/// Loss (percent, each way) at `tunlab relay` in the relay table (issue 12).
pub const RELAY_LOSSES: [u8; 3] = [0, 1, 5];

/// The `--only` name of a relay path: `relay-selective-repeat-5`, `relay-kcptun-0`.
pub fn relay_path_name(options: RelayedOptions) -> String {
    format!("relay-{}-{}", options.tunnel.key(), options.loss)
}
/// The rate limit (Mbit/s each way) of the rate-limited rows.
pub const RATE_MBIT: u16 = 10;

/// The window of most rate-limited rows: with echo traffic both queues fill, the acks wait
/// behind a full queue of data, and the round trip holds more than 64 frames.
pub const RATE_WINDOW: u32 = 128;

/// The rate-limited rows' goodput test lasts this many times the others': at 10 Mbit/s the
/// client's 256 KiB in flight take ~0.2 s to come back, which a 2 s test would count as a
/// tenth of the link idle.
pub const RATE_TIME_FACTOR: u32 = 4;

/// The `--only` name of an in-process lab path: `lab`, `lab-events`, `lab-capture`,
/// `lab-both`, or `<wire mode>-<loss>` for a cell of the modes table (`selective-repeat-5`).
pub fn lab_path_name(options: LabOptions) -> String {
    if is_mode_cell(options) {
        let cc = match options.cc {
            tunlab::transport::CongestionControl::Tolerant => "",
            tunlab::transport::CongestionControl::NewReno => "-ccnewreno",
            tunlab::transport::CongestionControl::None => "-ccnone",
        };
        if options.rate_mbit > 0 {
            let window = if options.window > 0 {
                format!("-w{}", options.window)
            } else {
                String::new()
            };
            return format!(
                "{}-{}mbit{window}{cc}",
                options.wire.name(),
                options.rate_mbit
            );
        }
        return format!("{}-{}{cc}", options.wire.name(), options.loss);
    }
    match (options.events, options.capture) {
        (false, false) => "lab",
        (true, false) => "lab-events",
        (false, true) => "lab-capture",
        (true, true) => "lab-both",
    }
    .to_string()
}

/// A cell of the modes table: a lab with no consumers in another mode or over a lossy link
/// (measured for goodput only). Classic at 0% loss is the plain `lab` path.
pub fn is_mode_cell(options: LabOptions) -> bool {
    options.wire != WireMode::Classic || options.loss > 0 || options.rate_mbit > 0
}

fn all_paths() -> Vec<(String, PathKind)> {
    let lab = |events, capture| PathKind::Lab(LabOptions::plain(events, capture));
    let bin = |tui, capture| {
        PathKind::Binary(BinaryOptions {
            tui,
            capture,
            before: false,
        })
    };
    let mut paths = vec![
        ("direct".to_string(), PathKind::Direct),
        ("kcptun".to_string(), PathKind::Kcptun),
        ("classic".to_string(), PathKind::Classic),
    ];
    for kind in [
        lab(false, false),
        lab(true, false),
        lab(false, true),
        lab(true, true),
    ] {
        if let PathKind::Lab(options) = kind {
            paths.push((lab_path_name(options), kind));
        }
    }
    for (name, kind) in [
        ("bin-bare", bin(false, false)),
        ("bin-capture", bin(false, true)),
        ("bin-tui", bin(true, false)),
        ("bin-tui-capture", bin(true, true)),
    ] {
        paths.push((name.to_string(), kind));
        // The same paths on the build named by TUNLAB_BENCH_BEFORE, side by side in one run.
        if std::env::var_os("TUNLAB_BENCH_BEFORE").is_some()
            && let PathKind::Binary(options) = kind
        {
            let before = BinaryOptions {
                before: true,
                ..options
            };
            paths.push((format!("{name}-before"), PathKind::Binary(before)));
        }
    }
    for wire in WireMode::ALL {
        for loss in MODE_LOSSES {
            let options = LabOptions {
                wire,
                loss,
                ..LabOptions::plain(false, false)
            };
            if is_mode_cell(options) {
                paths.push((lab_path_name(options), PathKind::Lab(options)));
            }
        }
    }
    for loss in RELAY_LOSSES {
        for tunnel in RelayedTunnel::ALL {
            let options = RelayedOptions { tunnel, loss };
            paths.push((relay_path_name(options), PathKind::Relayed(options)));
        }
        // The build named by TUNLAB_BENCH_BEFORE through the same relay, in the same rounds.
        if std::env::var_os("TUNLAB_BENCH_BEFORE").is_some() {
            let options = RelayedOptions {
                tunnel: RelayedTunnel::SelectiveRepeatBefore,
                loss,
            };
            paths.push((relay_path_name(options), PathKind::Relayed(options)));
        }
    }
    // The windowed modes again with NewReno and with a fixed window (--cc none), under the
    // same losses, and both ways over a rate-limited link.
    for cc in [
        tunlab::transport::CongestionControl::NewReno,
        tunlab::transport::CongestionControl::None,
    ] {
        for wire in [WireMode::GoBackN, WireMode::SelectiveRepeat] {
            for loss in MODE_LOSSES {
                let options = LabOptions {
                    wire,
                    loss,
                    cc,
                    ..LabOptions::plain(false, false)
                };
                paths.push((lab_path_name(options), PathKind::Lab(options)));
            }
        }
    }
    for cc in [
        tunlab::transport::CongestionControl::Tolerant,
        tunlab::transport::CongestionControl::NewReno,
        tunlab::transport::CongestionControl::None,
    ] {
        for wire in [WireMode::GoBackN, WireMode::SelectiveRepeat] {
            let options = LabOptions {
                wire,
                cc,
                rate_mbit: RATE_MBIT,
                window: RATE_WINDOW,
                ..LabOptions::plain(false, false)
            };
            paths.push((lab_path_name(options), PathKind::Lab(options)));
        }
    }
    // And Selective Repeat with the default window, both ways.
    for cc in [
        tunlab::transport::CongestionControl::Tolerant,
        tunlab::transport::CongestionControl::NewReno,
        tunlab::transport::CongestionControl::None,
    ] {
        let options = LabOptions {
            wire: WireMode::SelectiveRepeat,
            cc,
            rate_mbit: RATE_MBIT,
            ..LabOptions::plain(false, false)
        };
        paths.push((lab_path_name(options), PathKind::Lab(options)));
    }
    paths
}

/// Whether `--only` picked the path called `name`: by its name, or `modes` for the whole
/// modes table with its two baselines (direct TCP and the plain lab).
fn picked(only: &[String], name: &str, kind: PathKind) -> bool {
    only.is_empty()
        || only.iter().any(|o| o == name)
        || (only.iter().any(|o| o == "relay") && matches!(kind, PathKind::Relayed(_)))
        || (only.iter().any(|o| o == "modes")
            && match kind {
                PathKind::Direct => true,
                PathKind::Lab(options) => is_mode_cell(options) || name == "lab",
                _ => false,
            })
}

fn main() -> anyhow::Result<()> {
    let raw: Vec<String> = std::env::args().collect();
    if raw.get(1).map(String::as_str) == Some("--lab-child") {
        return lab_child::run(&raw[1..]);
    }
    let mut args = Args::parse();
    if args.self_check {
        client::self_check()?;
        println!("goodput record parser: ok");
        return Ok(());
    }
    if args.quick {
        args.rounds = 1;
        args.round_trips = 500;
        args.goodput_secs = 0.5;
        args.concurrent_secs = 0.5;
    }
    let selected: Vec<PathKind> = all_paths()
        .into_iter()
        .filter(|(name, kind)| picked(&args.only, name, *kind))
        .map(|(_, kind)| kind)
        .collect();
    anyhow::ensure!(
        !selected.is_empty(),
        "--only matched no path; names: direct, kcptun, classic, lab, lab-events, lab-capture, \
         lab-both, bin-bare, bin-capture, bin-tui, bin-tui-capture, modes, or <wire mode>-<loss> \
         such as selective-repeat-5, relay, or relay-<selective-repeat|kcptun>-<loss>"
    );

    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let logs = manifest.join("target/bench-logs");
    std::fs::create_dir_all(&logs)?;
    let needs_kcptun = selected.iter().any(|kind| {
        matches!(
            kind,
            PathKind::Kcptun
                | PathKind::Relayed(RelayedOptions {
                    tunnel: RelayedTunnel::Kcptun,
                    ..
                })
        )
    }) && args.profile.is_none()
        && !args.scale;
    let mut tools = Tools {
        // TUNLAB_BENCH_TUNLAB: another build of `tunlab` (an older commit's, for a before
        // and after of the bin-* paths); the in-process lab paths always run this build.
        tunlab: std::env::var_os("TUNLAB_BENCH_TUNLAB")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_tunlab"))),
        // TUNLAB_BENCH_BEFORE: another build whose bin-* paths run as bin-*-before in the
        // same run (interleaved per round), for a before and after side by side.
        tunlab_before: std::env::var_os("TUNLAB_BENCH_BEFORE").map(PathBuf::from),
        kcptun_client: if needs_kcptun {
            find_tool("kcptun-client")?
        } else {
            PathBuf::new()
        },
        kcptun_server: if needs_kcptun {
            find_tool("kcptun-server")?
        } else {
            PathBuf::new()
        },
        logs: logs.clone(),
        wrapper: Vec::new(),
    };
    if let Some(tool) = args.profile {
        let kind = all_paths()
            .into_iter()
            .find(|(name, kind)| {
                *name == args.profile_path
                    && matches!(
                        kind,
                        PathKind::Classic
                            | PathKind::Lab(_)
                            | PathKind::Binary(_)
                            | PathKind::Relayed(_)
                    )
            })
            .map(|(_, kind)| kind)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "--profile-path is one of classic, lab, lab-events, lab-capture, lab-both, bin-bare, \
                     bin-capture, bin-tui, bin-tui-capture, <wire mode>-<loss> \
                     (selective-repeat-0) or relay-<selective-repeat|kcptun>-<loss>; not {:?}",
                    args.profile_path
                )
            })?;
        return profile::run(
            tool,
            kind,
            args.profile_round_trips,
            args.profile_mib,
            &mut tools,
            &manifest.join("target/profile"),
        );
    }

    if args.scale {
        let command = std::env::var("TUNLAB_BENCH_COMMAND")
            .unwrap_or_else(|_| format!("cargo bench --bench tunnel -- {}", raw[1..].join(" ")));
        let section = scale::run(
            &tools,
            &scale::ScaleArgs {
                connections: args.scale_connections,
                burst: args.scale_burst,
                secs: args.concurrent_secs,
                pace: Duration::from_millis(args.scale_pace_ms),
            },
            &command,
        )?;
        println!("\n{section}");
        if !args.no_write {
            scale::write(&manifest.join(&args.out), &section)?;
            println!("written to {}", args.out.display());
        }
        return Ok(());
    }

    let started_at = Instant::now();
    let started = std::time::SystemTime::now();
    let load_before = load_average();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let echo = EchoServer::start(&tools)?;
    runtime.block_on(client::wait_until_echoing(
        echo.addr,
        Duration::from_secs(10),
    ))?;

    let window = Pacing::InFlight(args.window_kib * 1024);
    let goodput_time = Duration::from_secs_f64(args.goodput_secs);
    let concurrent_time = Duration::from_secs_f64(args.concurrent_secs);
    const CONNECTIONS: usize = 10;
    let mut results: Vec<PathResult> = selected
        .iter()
        .map(|&kind| PathResult {
            kind,
            rounds: Vec::new(),
        })
        .collect();
    for round in 1..=args.rounds {
        println!("round {round}/{}", args.rounds);
        for result in &mut results {
            progress(&format!("  {:<48}", result.kind.name()));
            let measured = runtime.block_on(measure_path(
                result.kind,
                &tools,
                &echo,
                &args,
                window,
                goodput_time,
                concurrent_time,
                CONNECTIONS,
            ));
            println!("{}", one_line(&measured));
            result.rounds.push(measured);
        }
    }
    drop(echo);

    let info = RunInfo {
        command: std::env::var("TUNLAB_BENCH_COMMAND").unwrap_or_else(|_| {
            format!(
                "cargo bench --bench tunnel -- {}",
                raw[1..]
                    .iter()
                    .filter(|a| *a != "--bench")
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        }),
        started: humantime::format_rfc3339_seconds(started).to_string(),
        cores: std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
        cpu: cpu_model(),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "?".into()),
        load_before,
        load_after: load_average(),
        rounds: args.rounds,
        rtt_count: args.round_trips,
        goodput_time,
        concurrent_time,
        connections: CONNECTIONS,
        window,
        elapsed: started_at.elapsed(),
    };
    let markdown = report::render(&info, &results);
    println!("\n{markdown}");
    if !args.no_write && !args.quick {
        let out = if args.out.is_absolute() {
            args.out.clone()
        } else {
            manifest.join(&args.out)
        };
        report::write_markdown(&out, &markdown)?;
        println!("written to {}", out.display());
    } else {
        println!("(not written: --quick or --no-write)");
    }
    println!("process logs: {}", logs.display());
    Ok(())
}

/// Starts one path, runs every test on it, stops it. Failures are recorded, not fatal, so
/// one broken path still leaves a table for the others.
#[allow(clippy::too_many_arguments)]
async fn measure_path(
    kind: PathKind,
    tools: &Tools,
    echo: &EchoServer,
    args: &Args,
    window: Pacing,
    goodput_time: Duration,
    concurrent_time: Duration,
    connections: usize,
) -> Round {
    let mut round = Round::default();
    let mut path = match RunningPath::start(kind, tools, echo) {
        Ok(path) => path,
        Err(e) => {
            round.errors.push(format!("start: {e:#}"));
            return round;
        }
    };
    let target = path.target;
    if let Err(e) = client::wait_until_echoing(target, Duration::from_secs(10)).await {
        round.errors.push(format!("{e:#}"));
        let _ = path
            .check_alive()
            .map_err(|e| round.errors.push(format!("{e:#}")));
        round.lab = path.stop();
        return round;
    }
    if let PathKind::Lab(options) = kind
        && is_mode_cell(options)
    {
        // The modes table: goodput only (a sane client, bounded bytes in flight).
        let time = if options.rate_mbit > 0 {
            goodput_time * RATE_TIME_FACTOR
        } else {
            goodput_time
        };
        match client::goodput(target, time, u64::MAX, window).await {
            Ok(r) => round.goodput_bounded = Some(r),
            Err(e) => round.errors.push(format!("goodput (paced): {e:#}")),
        }
        if let Err(e) = path.check_alive() {
            round.errors.push(format!("{e:#}"));
        }
        round.lab = path.stop();
        return round;
    }
    if let PathKind::Relayed(_) = kind {
        // The relay table: latency and paced goodput, with the intact check.
        match client::rtt(target, args.round_trips, Duration::from_secs(20)).await {
            Ok(r) => round.rtt = Some(r),
            Err(e) => round.errors.push(format!("round trips: {e:#}")),
        }
        settle().await;
        match client::goodput(target, goodput_time, u64::MAX, window).await {
            Ok(r) => round.goodput_bounded = Some(r),
            Err(e) => round.errors.push(format!("goodput (paced): {e:#}")),
        }
        if let Err(e) = path.check_alive() {
            round.errors.push(format!("{e:#}"));
        }
        round.lab = path.stop();
        return round;
    }
    let rtt_budget = Duration::from_secs(20);
    match client::rtt(target, args.round_trips, rtt_budget).await {
        Ok(r) => round.rtt = Some(r),
        Err(e) => round.errors.push(format!("round trips: {e:#}")),
    }
    settle().await;
    match client::concurrent(target, connections, concurrent_time).await {
        Ok(r) => round.concurrent = Some(r),
        Err(e) => round.errors.push(format!("concurrent: {e:#}")),
    }
    settle().await;
    let cpu_before = path.cpu_time();
    match client::goodput(target, goodput_time, u64::MAX, window).await {
        Ok(r) => round.goodput_bounded = Some(r),
        Err(e) => round.errors.push(format!("goodput (paced): {e:#}")),
    }
    round.cpu_goodput_bounded = path
        .cpu_time()
        .zip(cpu_before)
        .map(|(after, before)| after.saturating_sub(before));
    settle().await;
    // Last: at full speed classic mode may leave queues full of stale data.
    let drops_before = udp_receive_buffer_drops();
    match client::goodput(target, goodput_time, u64::MAX, Pacing::FullSpeed).await {
        Ok(r) => round.goodput_full = Some(r),
        Err(e) => round.errors.push(format!("goodput (full speed): {e:#}")),
    }
    round.udp_drops_full_speed = udp_receive_buffer_drops()
        .zip(drops_before)
        .map(|(after, before)| after.saturating_sub(before));
    if let Err(e) = path.check_alive() {
        round.errors.push(format!("{e:#}"));
    }
    round.lab = path.stop();
    round
}

/// Lets closed connections finish closing (proxy1 frees their ids) before the next test.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(200)).await;
}

fn one_line(round: &Round) -> String {
    let mut parts = Vec::new();
    if let Some(r) = &round.rtt {
        parts.push(format!(
            "p50 {:.0} µs p99 {:.0} µs",
            r.p50.as_secs_f64() * 1e6,
            r.p99.as_secs_f64() * 1e6
        ));
    }
    if let Some(c) = &round.concurrent {
        parts.push(format!("{:.0} rt/s", c.per_second));
    }
    for g in [&round.goodput_bounded, &round.goodput_full]
        .into_iter()
        .flatten()
    {
        parts.push(format!(
            "{:.1} MB/s ({:.1}% intact)",
            g.mb_per_s,
            g.intact_fraction() * 100.0
        ));
    }
    for e in &round.errors {
        parts.push(format!("ERROR {e}"));
    }
    parts.join(" | ")
}

/// The kernel's count of UDP datagrams dropped because a socket's receive buffer was full
/// (machine-wide: `RcvbufErrors` in /proc/net/snmp).
fn udp_receive_buffer_drops() -> Option<u64> {
    let snmp = std::fs::read_to_string("/proc/net/snmp").ok()?;
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (names, values) = (udp.next()?, udp.next()?);
    let at = names.split_whitespace().position(|n| n == "RcvbufErrors")?;
    values.split_whitespace().nth(at)?.parse().ok()
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, model)| model.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}
