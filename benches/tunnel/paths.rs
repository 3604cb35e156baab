//! The paths under test, each started as real processes on 127.0.0.1 and stopped (killed and
//! reaped) when dropped:
//!
//! ```text
//! direct     client ──TCP──▶ echo-server
//! classic    client ──TCP──▶ tunlab proxy1 ══UDP══▶ tunlab proxy2 ──TCP──▶ echo-server
//! lab        client ──TCP──▶ [bench --lab-child: Lab = proxy1 ══UDP══▶ proxy2 ──▶ echo server]
//! kcptun     client ──TCP──▶ kcptun-client ══UDP (KCP)══▶ kcptun-server ──TCP──▶ echo-server
//! bin-*      client ──TCP──▶ [`tunlab` itself: --no-tui, or its TUI on a 120×40 pty]
//! relay-*    client ──TCP──▶ proxy1 | kcptun-client ══UDP══▶ tunlab relay (seeded loss)
//!                                      ══UDP══▶ proxy2 | kcptun-server ──TCP──▶ echo-server
//! ```
//!
//! direct, classic and kcptun share one `tunlab echo-server` process. The lab always runs its
//! own echo server (that is what the in-process lab is); it is the same code.

// Unsafe is allowed here, and only here: signals to our own child processes, sysconf for the clock tick, and
// openpty for the TUI path's terminal (descriptors we own from then on).
#![allow(unsafe_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::lab_child::{LabOptions, LabSummary};

/// kcptun's settings: no encryption, no compression, its fastest profile, large windows
/// (in packets). FEC stays at kcptun's default (10 data + 3 parity shards).
pub const KCPTUN_FLAGS: &[&str] = &[
    "--crypt", "none", "--nocomp", "--mode", "fast3", "--sndwnd", "2048", "--rcvwnd", "2048",
    "--quiet",
];

/// Extra kcptun flags from `TUNLAB_BENCH_KCPTUN_EXTRA` (space-separated), for trying other
/// settings; the report quotes them.
pub fn kcptun_extra() -> Vec<String> {
    std::env::var("TUNLAB_BENCH_KCPTUN_EXTRA")
        .unwrap_or_default()
        .split_whitespace()
        .map(String::from)
        .collect()
}

/// A path to measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathKind {
    Direct,
    Kcptun,
    /// proxy1 and proxy2 as separate `tunlab` processes.
    Classic,
    /// The in-process lab with or without its consumers.
    Lab(LabOptions),
    /// The `tunlab` binary's own lab, as people run it (issue 18).
    Binary(BinaryOptions),
    /// A tunnel's two processes with `tunlab relay` between them (issue 12).
    Relayed(RelayedOptions),
}

/// What crosses `tunlab relay` in the relay table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelayedTunnel {
    Kcptun,
    /// tunlab proxy1 and proxy2, `--wire selective-repeat`, default transport settings.
    SelectiveRepeat,
    /// The same with `--cc newreno`: the congestion control that was the default before
    /// `tolerant`, measured in the same run.
    SelectiveRepeatNewReno,
    /// The same on the build named by `TUNLAB_BENCH_BEFORE` (proxies and relay), for a
    /// before and after side by side in one run.
    SelectiveRepeatBefore,
}

impl RelayedTunnel {
    pub const ALL: [RelayedTunnel; 3] = [
        RelayedTunnel::SelectiveRepeat,
        RelayedTunnel::SelectiveRepeatNewReno,
        RelayedTunnel::Kcptun,
    ];

    /// Its part of an `--only` name: `relay-<this>-<loss>`.
    pub fn key(self) -> &'static str {
        match self {
            RelayedTunnel::Kcptun => "kcptun",
            RelayedTunnel::SelectiveRepeat => "selective-repeat",
            RelayedTunnel::SelectiveRepeatNewReno => "selective-repeat-ccnewreno",
            RelayedTunnel::SelectiveRepeatBefore => "selective-repeat-before",
        }
    }

    /// The flags both tunlab proxies get besides the wire mode.
    fn tunlab_flags(self) -> Vec<String> {
        let mut flags = match self {
            RelayedTunnel::SelectiveRepeatNewReno => vec!["--cc".into(), "newreno".into()],
            _ => Vec::new(),
        };
        flags.extend(selective_repeat_extra());
        flags
    }
}

/// A tunnel through the relay, and the loss the relay's emulator applies each way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RelayedOptions {
    pub tunnel: RelayedTunnel,
    /// Percent lost each way, seeded with [`RELAY_SEED`]; 0 runs the relay with no emulator.
    pub loss: u8,
}

/// The relay's emulator seed: the same losses in every round and every run.
pub const RELAY_SEED: u64 = 2026;

/// Extra flags for both tunlab proxies of the relay paths, from `TUNLAB_BENCH_SR_EXTRA`
/// (space-separated: `--window 256`), for trying other settings; the report quotes them.
pub fn selective_repeat_extra() -> Vec<String> {
    std::env::var("TUNLAB_BENCH_SR_EXTRA")
        .unwrap_or_default()
        .split_whitespace()
        .map(String::from)
        .collect()
}

/// How the `tunlab` binary runs its lab.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BinaryOptions {
    /// Its TUI, drawn on a 120×40 pseudo-terminal whose other end this bench reads and
    /// discards (the terminal's cost to the lab: its writes); otherwise `--no-tui`.
    pub tui: bool,
    /// Capturing to a file (classic pcap, in the system's temporary directory); otherwise
    /// `--no-capture`.
    pub capture: bool,
    /// The other build named by `TUNLAB_BENCH_BEFORE` (an older commit's), for a before and
    /// after in one run; otherwise this build.
    pub before: bool,
}

impl BinaryOptions {
    /// The bare lab: `--no-tui --no-capture`, the baseline of the watching costs.
    pub const BARE: BinaryOptions = BinaryOptions {
        tui: false,
        capture: false,
        before: false,
    };

    /// The bare lab of the same build: the baseline of this path's watching costs.
    pub fn bare(self) -> BinaryOptions {
        BinaryOptions {
            before: self.before,
            ..BinaryOptions::BARE
        }
    }
}

impl PathKind {
    pub fn name(self) -> String {
        match self {
            PathKind::Direct => "direct TCP".into(),
            PathKind::Kcptun => "kcptun (fast3, no crypt)".into(),
            PathKind::Classic => "tunlab classic, proxy1+proxy2 processes".into(),
            PathKind::Binary(BinaryOptions {
                tui,
                capture,
                before,
            }) => {
                let name = match (tui, capture) {
                    (false, false) => "tunlab --no-tui --no-capture (bare)",
                    (false, true) => "tunlab --no-tui, capture on",
                    (true, false) => "tunlab TUI 120×40 (pty), --no-capture",
                    (true, true) => "tunlab TUI 120×40 (pty), capture on",
                };
                if before {
                    format!("{name} [before]")
                } else {
                    name.into()
                }
            }
            PathKind::Relayed(RelayedOptions { tunnel, loss }) => match tunnel {
                RelayedTunnel::Kcptun => format!("kcptun via relay, {loss}% loss each way"),
                RelayedTunnel::SelectiveRepeat => {
                    format!("selective-repeat via relay, {loss}% loss each way")
                }
                RelayedTunnel::SelectiveRepeatNewReno => {
                    format!("selective-repeat --cc newreno via relay, {loss}% loss each way")
                }
                RelayedTunnel::SelectiveRepeatBefore => {
                    format!("selective-repeat via relay, {loss}% loss each way [before]")
                }
            },
            PathKind::Lab(LabOptions {
                events,
                capture,
                wire,
                loss,
                cc,
                rate_mbit,
                window: lab_window,
            }) => {
                let mut name = "tunlab in-process lab".to_string();
                let cc = if wire.is_extended() {
                    format!(", --cc {cc}")
                } else {
                    String::new()
                };
                if rate_mbit > 0 {
                    let window = if lab_window > 0 {
                        format!(", --window {lab_window}")
                    } else {
                        String::new()
                    };
                    return format!(
                        "tunlab lab, {wire}{cc}{window}, {rate_mbit}mbit each way, queue {}",
                        crate::lab_child::RATE_QUEUE
                    );
                }
                if wire != tunlab::wire::WireMode::Classic || loss > 0 {
                    return format!("tunlab lab, {wire}{cc}, {loss}% loss each way");
                }
                match (events, capture) {
                    (false, false) => name.push_str(" (no consumers)"),
                    (true, false) => name.push_str(" + event consumer"),
                    (false, true) => name.push_str(" + capture"),
                    (true, true) => name.push_str(" + events + capture"),
                }
                name
            }
        }
    }
}

/// A child process that is killed and reaped when dropped.
pub struct Process {
    name: String,
    child: Child,
}

impl Process {
    pub fn spawn(name: &str, command: &mut Command, log: &Path) -> anyhow::Result<Process> {
        let log_file = std::fs::File::create(log)
            .with_context(|| format!("cannot create log {}", log.display()))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("cannot start {name} ({command:?})"))?;
        Ok(Process {
            name: name.into(),
            child,
        })
    }

    /// The process id (for `/proc/PID/status`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The process's threads' time on a CPU so far (from /proc; precise to the nanosecond
    /// through schedstat, where the kernel has it).
    fn cpu_time(&self) -> Option<Duration> {
        cpu_time_of(self.child.id())
    }

    /// Fails if the process has already exited (a port clash, a bad flag).
    fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            anyhow::bail!("{} exited early with {status}", self.name);
        }
        Ok(())
    }
}

impl Process {
    /// Asks the process to stop (SIGTERM: the roles shut down cleanly, and a profiler in
    /// front of them writes its results), then waits a bounded time before killing it.
    fn terminate(&mut self, within: Duration) {
        // Behind a tracer (strace) the role is the child's child: signal the role itself, so
        // the tracer sees it exit and writes its summary.
        let pid = self.child.id();
        let children =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        let mut targets: Vec<libc::pid_t> = children
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
        if targets.is_empty() {
            targets.push(pid as libc::pid_t);
        }
        for target in targets {
            // SAFETY: kill(2) on our own child (or its child); no memory is involved.
            unsafe {
                libc::kill(target, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU time used so far by process `pid`, all its live threads summed: `/proc/PID/task/*/
/// schedstat` (nanoseconds), or `/proc/PID/stat` (clock ticks) where schedstat is missing.
pub fn cpu_time_of(pid: u32) -> Option<Duration> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut total = 0u64;
    let mut any = false;
    for task in tasks.flatten() {
        let schedstat = std::fs::read_to_string(task.path().join("schedstat")).ok();
        if let Some(ns) = schedstat.and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok()) {
            total += ns;
            any = true;
        }
    }
    if any {
        return Some(Duration::from_nanos(total));
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no memory effects.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(Duration::from_nanos(ticks * 1_000_000_000 / per_second))
}

/// A port that was free a moment ago (the bind is released before the child takes it).
pub fn free_tcp_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

pub fn free_udp_port() -> anyhow::Result<u16> {
    Ok(UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

fn localhost(port: u16) -> SocketAddr {
    (Ipv4Addr::LOCALHOST, port).into()
}

/// Where the pieces are.
pub struct Tools {
    pub tunlab: PathBuf,
    /// The `tunlab` build of the `before` binary paths (`TUNLAB_BENCH_BEFORE`).
    pub tunlab_before: Option<PathBuf>,
    pub kcptun_client: PathBuf,
    pub kcptun_server: PathBuf,
    pub logs: PathBuf,
    /// A command put in front of the tunnel's own processes (proxies, lab child), such as
    /// `valgrind --tool=callgrind`; empty for a normal run.
    pub wrapper: Vec<String>,
}

impl Tools {
    /// A command for one of the tunnel's processes, behind the wrapper if there is one
    /// (`{name}` in the wrapper's arguments becomes `name`).
    fn tunnel_command(&self, program: &Path, name: &str) -> Command {
        match self.wrapper.split_first() {
            Some((first, rest)) => {
                let mut command = Command::new(first);
                command
                    .args(rest.iter().map(|arg| arg.replace("{name}", name)))
                    .arg(program);
                command
            }
            None => Command::new(program),
        }
    }
}

/// The shared echo server process.
pub struct EchoServer {
    pub addr: SocketAddr,
    _process: Process,
}

impl EchoServer {
    pub fn start(tools: &Tools) -> anyhow::Result<EchoServer> {
        let port = free_tcp_port()?;
        let process = Process::spawn(
            "tunlab echo-server",
            Command::new(&tools.tunlab).args(["echo-server", &port.to_string()]),
            &tools.logs.join("echo-server.log"),
        )?;
        Ok(EchoServer {
            addr: localhost(port),
            _process: process,
        })
    }
}

/// A started path: where the client connects, and what must stay alive meanwhile.
pub struct RunningPath {
    pub target: SocketAddr,
    processes: Vec<Process>,
    lab: Option<LabHandle>,
    /// A directory of the path's own (captures), removed when it stops.
    scratch: Option<PathBuf>,
}

struct LabHandle {
    process: Process,
    stdin: Option<ChildStdin>,
    /// The child's stdout lines, read on a thread so that waiting for them can time out.
    lines: mpsc::Receiver<String>,
}

impl RunningPath {
    pub fn start(kind: PathKind, tools: &Tools, echo: &EchoServer) -> anyhow::Result<RunningPath> {
        let log = |name: &str| tools.logs.join(format!("{name}.log"));
        let mut running = RunningPath {
            target: echo.addr,
            processes: Vec::new(),
            lab: None,
            scratch: None,
        };
        match kind {
            PathKind::Direct => {}
            PathKind::Classic => {
                let udp = free_udp_port()?.to_string();
                let tcp = free_tcp_port()?;
                running.processes.push(Process::spawn(
                    "tunlab proxy2",
                    tools.tunnel_command(&tools.tunlab, "proxy2").args([
                        "proxy2",
                        &udp,
                        "127.0.0.1",
                        &echo.addr.port().to_string(),
                    ]),
                    &log("proxy2"),
                )?);
                running.processes.push(Process::spawn(
                    "tunlab proxy1",
                    tools.tunnel_command(&tools.tunlab, "proxy1").args([
                        "proxy1",
                        &tcp.to_string(),
                        "127.0.0.1",
                        &udp,
                    ]),
                    &log("proxy1"),
                )?);
                running.target = localhost(tcp);
            }
            PathKind::Kcptun => {
                let udp = free_udp_port()?;
                let tcp = free_tcp_port()?;
                running.processes.push(Process::spawn(
                    "kcptun-server",
                    Command::new(&tools.kcptun_server)
                        .args(["-t", &echo.addr.to_string()])
                        .args(["-l", &localhost(udp).to_string()])
                        .args(KCPTUN_FLAGS)
                        .args(kcptun_extra()),
                    &log("kcptun-server"),
                )?);
                running.processes.push(Process::spawn(
                    "kcptun-client",
                    Command::new(&tools.kcptun_client)
                        .args(["-r", &localhost(udp).to_string()])
                        .args(["-l", &localhost(tcp).to_string()])
                        .args(KCPTUN_FLAGS)
                        .args(kcptun_extra()),
                    &log("kcptun-client"),
                )?);
                running.target = localhost(tcp);
            }
            PathKind::Relayed(options) => {
                running.target = start_relayed(options, tools, echo, &mut running.processes)?;
            }
            PathKind::Binary(options) => {
                if options.capture {
                    let dir = std::env::temp_dir()
                        .join(format!("tunlab-bench-captures-{}", std::process::id()));
                    std::fs::create_dir_all(&dir)?;
                    running.scratch = Some(dir);
                }
                let (process, target) = start_binary_lab(
                    options,
                    tools,
                    running.scratch.as_deref(),
                    &log("binary-lab"),
                )?;
                running.processes.push(process);
                running.target = target;
            }
            PathKind::Lab(options) => {
                let lab = LabHandle::start(options, tools, &log("lab"))?;
                running.lab = Some(lab.0);
                running.target = lab.1;
            }
        }
        Ok(running)
    }

    /// CPU time used so far by the path's own processes (not the echo server, not the
    /// client); `None` for direct TCP, which has none.
    pub fn cpu_time(&self) -> Option<Duration> {
        let mut times: Vec<Option<Duration>> =
            self.processes.iter().map(Process::cpu_time).collect();
        if let Some(lab) = &self.lab {
            times.push(lab.process.cpu_time());
        }
        if times.is_empty() {
            return None;
        }
        times.into_iter().sum()
    }

    /// Fails if any process of the path died.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        for process in &mut self.processes {
            process.check_alive()?;
        }
        if let Some(lab) = &mut self.lab {
            lab.process.check_alive()?;
        }
        Ok(())
    }

    /// Stops the path; for the lab, returns what its consumers did.
    pub fn stop(mut self) -> Option<LabSummary> {
        // proxy1 first, so proxy2 does not see its peer vanish mid-way through stopping.
        for process in self.processes.iter_mut().rev() {
            process.terminate(Duration::from_secs(30));
        }
        if let Some(dir) = self.scratch.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
        self.lab.take().and_then(LabHandle::stop)
    }
}

/// Starts a tunnel's server side, `tunlab relay` in front of it, and the client side talking
/// to the relay; returns where clients connect. The processes go into `processes` in that
/// order, so stopping in reverse stops the client side first.
fn start_relayed(
    options: RelayedOptions,
    tools: &Tools,
    echo: &EchoServer,
    processes: &mut Vec<Process>,
) -> anyhow::Result<SocketAddr> {
    let log = |name: &str| {
        tools.logs.join(format!(
            "relay-{}-{}-{name}.log",
            options.tunnel.key(),
            options.loss
        ))
    };
    let server_udp = free_udp_port()?;
    let relay_udp = free_udp_port()?;
    let tcp = free_tcp_port()?;
    let wire = ["--wire", "selective-repeat"];
    let tunlab = match (options.tunnel, &tools.tunlab_before) {
        (RelayedTunnel::SelectiveRepeatBefore, Some(before)) => before,
        (RelayedTunnel::SelectiveRepeatBefore, None) => {
            anyhow::bail!("the before paths need TUNLAB_BENCH_BEFORE=<another tunlab build>")
        }
        _ => &tools.tunlab,
    };
    match options.tunnel {
        RelayedTunnel::Kcptun => processes.push(Process::spawn(
            "kcptun-server",
            Command::new(&tools.kcptun_server)
                .args(["-t", &echo.addr.to_string()])
                .args(["-l", &localhost(server_udp).to_string()])
                .args(KCPTUN_FLAGS)
                .args(kcptun_extra()),
            &log("kcptun-server"),
        )?),
        RelayedTunnel::SelectiveRepeat
        | RelayedTunnel::SelectiveRepeatNewReno
        | RelayedTunnel::SelectiveRepeatBefore => {
            processes.push(Process::spawn(
                "tunlab proxy2",
                tools
                    .tunnel_command(tunlab, "proxy2")
                    .args(["proxy2", &server_udp.to_string(), "127.0.0.1"])
                    .arg(echo.addr.port().to_string())
                    .args(wire)
                    .args(options.tunnel.tunlab_flags()),
                &log("proxy2"),
            )?);
        }
    }
    let mut relay = tools.tunnel_command(tunlab, "relay");
    relay.args([
        "relay",
        &relay_udp.to_string(),
        "127.0.0.1",
        &server_udp.to_string(),
    ]);
    if options.loss > 0 {
        relay.args([
            "--loss",
            &options.loss.to_string(),
            "--seed",
            &RELAY_SEED.to_string(),
        ]);
    }
    processes.push(Process::spawn("tunlab relay", &mut relay, &log("relay"))?);
    match options.tunnel {
        RelayedTunnel::Kcptun => processes.push(Process::spawn(
            "kcptun-client",
            Command::new(&tools.kcptun_client)
                .args(["-r", &localhost(relay_udp).to_string()])
                .args(["-l", &localhost(tcp).to_string()])
                .args(KCPTUN_FLAGS)
                .args(kcptun_extra()),
            &log("kcptun-client"),
        )?),
        RelayedTunnel::SelectiveRepeat
        | RelayedTunnel::SelectiveRepeatNewReno
        | RelayedTunnel::SelectiveRepeatBefore => {
            processes.push(Process::spawn(
                "tunlab proxy1",
                tools
                    .tunnel_command(tunlab, "proxy1")
                    .args([
                        "proxy1",
                        &tcp.to_string(),
                        "127.0.0.1",
                        &relay_udp.to_string(),
                    ])
                    .args(wire)
                    .args(options.tunnel.tunlab_flags()),
                &log("proxy1"),
            )?);
        }
    }
    Ok(localhost(tcp))
}

/// Starts `tunlab`'s own lab on free ports with no lab clients, headless or on a pty, and
/// returns it with proxy1's address.
fn start_binary_lab(
    options: BinaryOptions,
    tools: &Tools,
    capture_dir: Option<&Path>,
    log: &Path,
) -> anyhow::Result<(Process, SocketAddr)> {
    let proxy1 = free_tcp_port()?;
    let program = match (&tools.tunlab_before, options.before) {
        (Some(before), true) => before,
        _ => &tools.tunlab,
    };
    let mut command = tools.tunnel_command(program, "lab");
    command.args(["--clients", "0", "--proxy1-port", &proxy1.to_string()]);
    command.args(["--server-port", &free_tcp_port()?.to_string()]);
    command.args(["--proxy2-port", &free_udp_port()?.to_string()]);
    match capture_dir {
        Some(dir) if options.capture => {
            command.arg("--capture-dir").arg(dir);
        }
        _ => {
            command.arg("--no-capture");
        }
    }
    let process = if options.tui {
        pty::spawn(&mut command, 120, 40, log)?
    } else {
        command.arg("--no-tui");
        Process::spawn("tunlab --no-tui", &mut command, log)?
    };
    Ok((process, localhost(proxy1)))
}

/// A child on a pseudo-terminal, the way a terminal emulator runs it.
mod pty {
    use std::fs::File;
    use std::io::Read;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::os::unix::process::CommandExt;
    use std::path::Path;
    use std::process::{Command, Stdio};

    use anyhow::Context;

    use super::Process;

    /// Starts `command` with a `columns`×`rows` pty as its controlling terminal and stdin,
    /// stdout and stderr. A thread reads everything it draws and throws it away, as fast as
    /// it comes (a terminal that keeps up); the first 64 KiB go to `log`.
    pub fn spawn(
        command: &mut Command,
        columns: u16,
        rows: u16,
        log: &Path,
    ) -> anyhow::Result<Process> {
        let size = libc::winsize {
            ws_row: rows,
            ws_col: columns,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let (mut master, mut slave) = (0, 0);
        // SAFETY: openpty writes two fds into the given ints and reads the winsize.
        let opened = unsafe {
            libc::openpty(
                &raw mut master,
                &raw mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                &raw const size,
            )
        };
        anyhow::ensure!(
            opened == 0,
            "openpty failed: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: both fds were just opened and are owned here alone.
        let (master, slave) =
            unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        let slave_fd = slave.as_raw_fd();
        command
            .stdin(Stdio::from(slave.try_clone()?))
            .stdout(Stdio::from(slave.try_clone()?))
            .stderr(Stdio::from(slave.try_clone()?));
        // SAFETY: setsid and ioctl are async-signal-safe, as pre_exec requires.
        unsafe {
            command.pre_exec(move || {
                if libc::setsid() < 0 || libc::ioctl(slave_fd, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().context("cannot start tunlab on a pty")?;
        drop(slave);
        let mut log = File::create(log)?;
        let mut master = File::from(master);
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            let mut logged = 0;
            // Ends with EIO once the child has exited and the slave is closed.
            while let Ok(n) = master.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if logged < buf.len() {
                    let _ = std::io::Write::write_all(&mut log, &buf[..n.min(buf.len() - logged)]);
                    logged += n;
                }
            }
        });
        Ok(Process {
            name: "tunlab TUI (pty)".into(),
            child,
        })
    }
}

impl LabHandle {
    fn start(
        options: LabOptions,
        tools: &Tools,
        log: &Path,
    ) -> anyhow::Result<(LabHandle, SocketAddr)> {
        let exe = std::env::current_exe().context("cannot find the bench binary")?;
        let log_file = std::fs::File::create(log)?;
        let mut child = tools
            .tunnel_command(&exe, "lab")
            .args(options.to_args())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .context("cannot start the lab child")?;
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let handle = LabHandle {
            process: Process {
                name: "lab child".into(),
                child,
            },
            stdin,
            lines,
        };
        // The lab binds and starts in milliseconds (seconds under valgrind); a silent child
        // is broken.
        let line = handle
            .lines
            .recv_timeout(Duration::from_secs(30))
            .context("the lab child did not say READY within 30 s")?;
        let addr = line
            .strip_prefix("READY ")
            .and_then(|rest| rest.trim().parse().ok())
            .ok_or_else(|| anyhow::anyhow!("the lab child said {line:?} instead of READY"))?;
        Ok((handle, addr))
    }

    /// Closes the child's stdin (its signal to stop), reads its summary, and waits for it to
    /// exit (a profiler in front of it writes its results on exit).
    fn stop(mut self) -> Option<LabSummary> {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut summary = None;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(parsed) = LabSummary::parse(line.trim()) {
                        summary = Some(parsed);
                    }
                }
                // stdout closed: the child is exiting.
                Err(_) => break,
            }
        }
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.process.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        summary
    }
}

/// Installs nothing; tells what is missing so `bench/run.sh` can install it.
pub fn find_tool(name: &str) -> anyhow::Result<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "{name} is not installed; run bench/run.sh (it installs the Debian package kcptun)"
            )
        })
}

/// Flushes stdout so progress lines show while a long step runs.
pub fn progress(message: &str) {
    print!("{message}");
    let _ = std::io::stdout().flush();
}
