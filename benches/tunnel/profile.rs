//! `--profile callgrind|strace`: repeatable counts for the tunnel's hot path, which wall-clock
//! figures on a shared 2-core machine are not.
//!
//! The tunnel's processes (the lab child, or proxy1 and proxy2) run under valgrind's callgrind
//! or `strace -f -c` while the client drives three fixed workloads:
//! - idle: start, one echo, stop (the fixed cost, subtracted from the others);
//! - round trips: a fixed number of 64-byte echoes, one at a time;
//! - bulk: a fixed number of bytes echoed with a bounded amount in flight.
//!
//! It prints instructions (callgrind) or system calls (strace) per round trip and per MiB,
//! and leaves the raw outputs and `callgrind_annotate` listings in `target/profile/`.

// Doc comments here are --help text, printed as written: no Markdown backticks.
#![allow(clippy::doc_markdown)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context;

use crate::client::{self, Pacing};
use crate::paths::{EchoServer, PathKind, RunningPath, Tools};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Tool {
    Callgrind,
    Strace,
    /// `perf record -e cpu-clock`: where the CPU time goes, natively (not 50× slower like
    /// callgrind, so the TUI's redraws per MiB are as in a real run); samples of user and
    /// kernel time, no hardware counters needed.
    Perf,
}

impl Tool {
    fn name(self) -> &'static str {
        match self {
            Tool::Callgrind => "callgrind",
            Tool::Strace => "strace",
            Tool::Perf => "perf",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Workload {
    Idle,
    RoundTrips(usize),
    Bulk(u64),
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::Idle => "idle",
            Workload::RoundTrips(_) => "round-trips",
            Workload::Bulk(_) => "bulk",
        }
    }
}

/// What one workload cost, summed over the tunnel's processes.
#[derive(Default)]
struct Cost {
    /// Instructions (callgrind), or system calls (strace).
    total: u64,
    /// strace: calls per system call name.
    by_syscall: BTreeMap<String, u64>,
    /// Units of work actually done (round trips, or MiB echoed intact).
    units: f64,
}

pub fn run(
    tool: Tool,
    kind: PathKind,
    round_trips: usize,
    bulk_mib: u64,
    tools: &mut Tools,
    out_dir: &Path,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(out_dir)?;
    let label = match kind {
        PathKind::Classic => "classic".to_string(),
        PathKind::Lab(options) => crate::lab_path_name(options),
        PathKind::Binary(options) => match (options.tui, options.capture) {
            (false, false) => "bin-bare",
            (false, true) => "bin-capture",
            (true, false) => "bin-tui",
            (true, true) => "bin-tui-capture",
        }
        .to_string(),
        PathKind::Relayed(options) => crate::relay_path_name(options),
        other => anyhow::bail!(
            "only the tunnel paths can be profiled, not {}",
            other.name()
        ),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    tools.wrapper = Vec::new();
    let echo = EchoServer::start(tools)?;
    runtime.block_on(client::wait_until_echoing(
        echo.addr,
        Duration::from_secs(10),
    ))?;

    let workloads = [
        Workload::Idle,
        Workload::RoundTrips(round_trips),
        Workload::Bulk(bulk_mib << 20),
    ];
    let mut costs = Vec::new();
    for workload in workloads {
        let prefix = out_dir.join(format!("{label}-{}-{}", tool.name(), workload.name()));
        // Old outputs would be summed with the new ones.
        remove_outputs(&prefix)?;
        tools.wrapper = wrapper(tool, &prefix);
        crate::paths::progress(&format!(
            "  {label} {:<12} under {} ",
            workload.name(),
            tool.name()
        ));
        let units = runtime.block_on(drive(kind, tools, &echo, workload))?;
        let mut cost = read_outputs(tool, &prefix)?;
        cost.units = units;
        println!("{} total", cost.total);
        costs.push((workload, cost));
    }
    tools.wrapper = Vec::new();
    drop(echo);

    let idle = costs[0].1.total;
    let unit_name = |w: Workload| match w {
        Workload::RoundTrips(_) => "round trip",
        _ => "MiB",
    };
    let what = match tool {
        Tool::Callgrind => "instructions",
        Tool::Strace => "system calls",
        Tool::Perf => "CPU samples (1 ms each)",
    };
    println!(
        "\n{label}: {what} per unit of work, idle run ({idle}) subtracted, summed over the tunnel's processes"
    );
    for (workload, cost) in &costs[1..] {
        let per = (cost.total.saturating_sub(idle)) as f64 / cost.units.max(1.0);
        println!(
            "  {:<12} {:>10.1} units  {:>14.0} {what} per {}",
            workload.name(),
            cost.units,
            per,
            unit_name(*workload)
        );
        if tool == Tool::Strace {
            let idle_calls = &costs[0].1.by_syscall;
            let mut per_call: Vec<(f64, &String)> = cost
                .by_syscall
                .iter()
                .map(|(name, calls)| {
                    let base = idle_calls.get(name).copied().unwrap_or(0);
                    (
                        calls.saturating_sub(base) as f64 / cost.units.max(1.0),
                        name,
                    )
                })
                .filter(|(per, _)| *per >= 0.05)
                .collect();
            per_call.sort_by(|a, b| b.0.total_cmp(&a.0));
            let list: Vec<String> = per_call
                .iter()
                .map(|(per, name)| format!("{name} {per:.2}"))
                .collect();
            println!("      {}", list.join(", "));
        }
    }
    if matches!(tool, Tool::Callgrind | Tool::Perf) {
        for workload in &workloads[1..] {
            let prefix = out_dir.join(format!("{label}-{}-{}", tool.name(), workload.name()));
            let listing = match tool {
                Tool::Perf => perf_report(&prefix)?,
                _ => annotate(&prefix)?,
            };
            let path = PathBuf::from(format!("{}.annotate.txt", prefix.display()));
            std::fs::write(&path, &listing)?;
            println!(
                "\n{} (top functions by own instructions; full listing {}):",
                workload.name(),
                path.display()
            );
            for line in top_functions(&listing, 18) {
                println!("  {line}");
            }
        }
    }
    Ok(())
}

fn wrapper(tool: Tool, prefix: &Path) -> Vec<String> {
    let prefix = prefix.display();
    match tool {
        Tool::Callgrind => vec![
            "valgrind".into(),
            "--tool=callgrind".into(),
            "--quiet".into(),
            format!("--callgrind-out-file={prefix}.%p.callgrind"),
        ],
        Tool::Perf => vec![
            "perf".into(),
            "record".into(),
            "-e".into(),
            "cpu-clock".into(),
            "-F".into(),
            "1000".into(),
            "-q".into(),
            "-o".into(),
            format!("{prefix}.{{name}}.perf"),
        ],
        Tool::Strace => vec![
            "strace".into(),
            "-f".into(),
            "-c".into(),
            "-o".into(),
            // strace has no %p; `{name}` becomes the process's name (proxy1, proxy2, lab).
            format!("{prefix}.{{name}}.strace"),
        ],
    }
}

fn outputs(prefix: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let dir = prefix.parent().context("no output directory")?;
    let stem = format!(
        "{}.",
        prefix.file_name().context("no prefix")?.to_string_lossy()
    );
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if name.starts_with(&stem) && !name.ends_with(".annotate.txt") {
            found.push(path);
        }
    }
    found.sort();
    Ok(found)
}

fn remove_outputs(prefix: &Path) -> anyhow::Result<()> {
    for path in outputs(prefix)? {
        std::fs::remove_file(path)?;
    }
    Ok(())
}

/// Runs one workload on a freshly started path; returns the units of work done.
async fn drive(
    kind: PathKind,
    tools: &Tools,
    echo: &EchoServer,
    workload: Workload,
) -> anyhow::Result<f64> {
    let path = RunningPath::start(kind, tools, echo)?;
    // Under valgrind everything is some 50 times slower.
    let ready = client::wait_until_echoing(path.target, Duration::from_mins(1)).await;
    let units = match (ready, workload) {
        (Err(e), _) => Err(e),
        (Ok(()), Workload::Idle) => Ok(0.0),
        (Ok(()), Workload::RoundTrips(n)) => {
            let result = client::rtt(path.target, n, Duration::from_mins(5)).await;
            result.map(|r| (r.samples + client::WARM_UP) as f64)
        }
        (Ok(()), Workload::Bulk(bytes)) => {
            let result = client::goodput(
                path.target,
                Duration::from_mins(5),
                bytes,
                Pacing::InFlight(256 * 1024),
            )
            .await;
            result.map(|r| r.intact_bytes as f64 / (1u64 << 20) as f64)
        }
    };
    path.stop();
    units
}

fn read_outputs(tool: Tool, prefix: &Path) -> anyhow::Result<Cost> {
    let mut cost = Cost::default();
    let files = outputs(prefix)?;
    anyhow::ensure!(
        !files.is_empty(),
        "no {tool:?} output at {}.*",
        prefix.display()
    );
    for file in files {
        if tool == Tool::Perf {
            cost.total += perf_lines(&file)?
                .iter()
                .filter_map(|line| line.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>();
            continue;
        }
        let text = std::fs::read_to_string(&file)?;
        match tool {
            Tool::Perf => unreachable!("read above"),
            Tool::Callgrind => {
                let total = text
                    .lines()
                    .find_map(|l| l.strip_prefix("totals:").or(l.strip_prefix("summary:")))
                    .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
                    .with_context(|| format!("no totals in {}", file.display()))?;
                cost.total += total;
            }
            Tool::Strace => {
                for line in text.lines() {
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    // "% time seconds usecs/call calls [errors] syscall"; the total row has
                    // no usecs/call.
                    if fields.len() < 5 || fields[0].parse::<f64>().is_err() {
                        continue;
                    }
                    let name = fields[fields.len() - 1];
                    if name == "total" {
                        continue;
                    }
                    let calls: u64 = fields[3].parse().unwrap_or(0);
                    *cost.by_syscall.entry(name.to_string()).or_default() += calls;
                    cost.total += calls;
                }
            }
        }
    }
    Ok(cost)
}

/// `perf report` of one recording: one line per symbol (share, samples, where, symbol),
/// most samples first.
fn perf_lines(file: &Path) -> anyhow::Result<Vec<String>> {
    let out = Command::new("perf")
        .args([
            "report",
            "--stdio",
            "-q",
            "-n",
            "--sort",
            "dso,symbol",
            "-i",
        ])
        .arg(file)
        .output()
        .context("cannot run perf report")?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|line| line.trim_start().starts_with(|c: char| c.is_ascii_digit()))
        .map(str::to_string)
        .collect())
}

/// `perf report` over every process's recording of one workload, in the listing format
/// [`top_functions`] reads.
fn perf_report(prefix: &Path) -> anyhow::Result<String> {
    let mut listing = String::new();
    for file in outputs(prefix)? {
        listing.push_str(&format!("==== {}\n", file.display()));
        // The header top_functions looks for.
        listing.push_str("share samples where file:function\n");
        for line in perf_lines(&file)? {
            listing.push_str(&line);
            listing.push('\n');
        }
    }
    Ok(listing)
}

/// `callgrind_annotate` over every process's output of one workload.
fn annotate(prefix: &Path) -> anyhow::Result<String> {
    let mut listing = String::new();
    for file in outputs(prefix)? {
        let out = Command::new("callgrind_annotate")
            .arg(&file)
            .output()
            .context("cannot run callgrind_annotate")?;
        listing.push_str(&format!("==== {}\n", file.display()));
        listing.push_str(&String::from_utf8_lossy(&out.stdout));
    }
    Ok(listing)
}

/// The first `n` function lines of each listing in `annotate`'s output.
fn top_functions(listing: &str, n: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut in_table = false;
    let mut taken = 0;
    for line in listing.lines() {
        if line.starts_with("==== ") {
            lines.push(line.trim_start_matches("==== ").to_string());
            in_table = false;
            taken = 0;
            continue;
        }
        if line.contains("file:function") {
            in_table = true;
            continue;
        }
        if in_table && taken < n && line.trim_start().starts_with(|c: char| c.is_ascii_digit()) {
            lines.push(shorten(line));
            taken += 1;
        }
    }
    lines
}

/// Cuts long Rust symbol paths down to something readable on one line.
fn shorten(line: &str) -> String {
    let line = line.trim();
    if line.len() > 160 {
        format!("{}…", &line[..line.floor_char_boundary(160)])
    } else {
        line.to_string()
    }
}
