//! `tunlab --no-tui`: the lab with no screen, serving until Ctrl-C or SIGTERM (a cancelled
//! token, from [`crate::shutdown::SignalToken`]).
//!
//! Everything the TUI lab runs (echo server, proxy2, proxy1, the capture) runs here too, but
//! nothing is drawn: connections, role changes and errors are logged on stderr, one line
//! each, so the lab can sit on a server or in a CI job while people point their own clients
//! (or the course's scripts) at proxy1. Per-frame events are not built at all, as for a
//! standalone role without `-v`: a log nobody reads frame by frame must not cost the tunnel.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::capture::{CaptureSummary, CaptureWriter, TcpCapture};
use crate::cli::LabArgs;
use crate::describe::describe;
use crate::event::{EventSink, Level};
use crate::lab::{Lab, LabConfig, LabSnapshot};
use crate::monitor::{ConnTable, Monitor, MonitorSources};

/// Log events queued for stderr before new ones are dropped (and counted).
const LOG_CAPACITY: usize = 16 * 1024;

/// Runs the lab headless until `stop` is cancelled (by a signal: see
/// [`crate::shutdown::SignalToken`]); prints the run's totals on stdout at the end.
/// Exits 0 after a clean stop, 1 when the capture failed (its file is short of frames).
/// `config` is the lab the command line asks for (less its capture tap, added here); `tcp` is
/// the packet socket `--capture-tcp` opened (the permission already checked).
pub async fn run(
    args: &LabArgs,
    config: LabConfig,
    tcp: Option<TcpCapture>,
    stop: CancellationToken,
) -> anyhow::Result<ExitCode> {
    let (events, mut rx) = EventSink::channel(LOG_CAPACITY);
    // With a monitor on, its connection table sees every event (and gets byte counts from
    // the hot paths directly); the log wants no per-frame events either way.
    let monitor_plan = args.monitor.plan();
    let conns = monitor_plan.is_on().then(|| Arc::new(ConnTable::new()));
    let events = match &conns {
        Some(conns) => events.with_observer(conns.clone()),
        None => events,
    }
    .without_frame_events();
    let printer = tokio::spawn(async move {
        let mut stderr = std::io::stderr();
        while let Some(event) = rx.recv().await {
            if let Some(line) = describe(&event.kind, false) {
                // A closed stderr must not end the lab: the capture and the tunnel carry on.
                let _ = writeln!(stderr, "{line}");
            }
        }
    });
    let mut capture = match args.capture.plan() {
        Some(plan) => Some(CaptureWriter::start(plan, events.clone())?),
        None => None,
    };
    let config = LabConfig {
        capture: capture.as_ref().map(CaptureWriter::tap),
        ..config
    };
    let tcp_events = events.clone();
    let mut lab = match Lab::start(config, events.clone()).await {
        Ok(lab) => lab,
        Err(e) => {
            if let Some(capture) = capture {
                capture.abandon().await;
            }
            return Err(e);
        }
    };
    if let (Some(capture), Some(tcp)) = (&mut capture, tcp) {
        let addrs = lab.addrs();
        capture.capture_tcp(
            tcp,
            &[addrs.proxy1_tcp.port(), addrs.server.port()],
            tcp_events,
        )?;
    }
    let monitor = match conns {
        Some(conns) => {
            let status = capture.as_ref().map(CaptureWriter::status);
            match Monitor::start(&monitor_plan, MonitorSources::for_lab(&lab, conns, status)).await
            {
                Ok(monitor) => Some(monitor),
                Err(e) => {
                    lab.shutdown().await;
                    if let Some(capture) = capture {
                        capture.abandon().await;
                    }
                    return Err(e);
                }
            }
        }
        None => None,
    };
    let addrs = lab.addrs();
    eprintln!(
        "tunlab: lab up without a screen: clients connect to proxy1 at {} (server tcp {}, proxy2 \
         udp {}, proxy1 udp {}); Ctrl-C or SIGTERM stops it",
        addrs.proxy1_tcp, addrs.server, addrs.proxy2_udp, addrs.proxy1_udp
    );
    if let Some(socks5) = addrs.proxy1_socks5 {
        eprintln!("tunlab: SOCKS5 clients connect to proxy1 at {socks5}");
    }
    if let Some(capture) = &capture {
        eprintln!(
            "tunlab: capturing the link to {}",
            capture.status().path().display()
        );
    }
    if let Some(monitor) = &monitor {
        if let Some(addr) = monitor.metrics_addr() {
            eprintln!("tunlab: metrics at http://{addr}/metrics");
        }
        if let Some(addr) = monitor.admin_addr() {
            eprintln!("tunlab: admin protocol on {addr}");
        }
    }
    for _ in 0..args.clients_to_start(false) {
        if let Err(e) = lab.add_client().await {
            eprintln!("{}: cannot add a client: {e}", Level::Error.label());
        }
    }
    stop.cancelled().await;
    eprintln!("tunlab: stopping");
    if let Some(monitor) = monitor {
        let left = monitor.stop().await;
        if !left.is_empty() {
            eprintln!("tunlab: the monitor stopped without waiting for: {left}");
        }
    }
    let snapshot = lab.shutdown_with_totals().await;
    // After the roles have stopped, so every frame they sent is in the file.
    let captured = match capture {
        Some(capture) => Some(capture.finish().await),
        None => None,
    };
    drop(events);
    // The printer ends when the last sink is gone (the roles have dropped theirs by now).
    let _ = tokio::time::timeout(Duration::from_secs(1), printer).await;
    print_totals(&snapshot, captured.as_ref(), "log lines dropped");
    Ok(match captured {
        Some(captured) if captured.error.is_some() => ExitCode::FAILURE,
        _ => ExitCode::SUCCESS,
    })
}

/// The closing lines of a lab run (TUI or headless) on stdout: the link's exact totals and the
/// capture. `dropped_what` names what the dropped events were for ("events the screen dropped").
pub fn print_totals(snapshot: &LabSnapshot, captured: Option<&CaptureSummary>, dropped_what: &str) {
    // Printing must not panic when stdout is gone (a closed pipe, a closed terminal).
    let mut stdout = std::io::stdout();
    let _ = writeln!(
        stdout,
        "tunlab: {} clients; {} frames on the link (p1→p2 {}, p2→p1 {}); {} malformed, {} \
         ignored; {} {dropped_what}",
        snapshot.clients.len(),
        snapshot.proxy1.sent.total() + snapshot.proxy2.sent.total(),
        snapshot.proxy1.sent.total(),
        snapshot.proxy2.sent.total(),
        snapshot.proxy1.malformed + snapshot.proxy2.malformed,
        snapshot.proxy1.ignored + snapshot.proxy2.ignored,
        snapshot.events_dropped,
    );
    if let Some(captured) = captured {
        let _ = writeln!(stdout, "{}", captured.describe());
    }
}
