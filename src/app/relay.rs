//! `tunlab relay` as a command: resolve and check the target, bind, then run the relay with
//! the standalone roles' plumbing (signals, log, capture, metrics and admin protocol).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use crate::capture::{CapturePlan, CaptureTarget};
use crate::cli::{ProxyCaptureArgs, RelayArgs};
use crate::roles::relay::{self, RelayConfig, RelayLog, RelayStats};

use super::standalone::{report_emulator, run_standalone, standalone_emulator};
use crate::monitor::MonitorSources;
use crate::net::{bind_udp, resolve, unspecified_for};
use crate::topology::Role;

/// Runs `tunlab relay` until Ctrl-C or SIGTERM; prints the counters at the end.
pub(super) async fn run(args: RelayArgs) -> anyhow::Result<ExitCode> {
    let target = resolve(&args.target_host, args.target_udp_port).await?;
    check_route(target)?;
    let listen = bind_udp((args.common.bind, args.udp_port).into())?;
    let local = listen.local_addr()?;
    if local == target
        || (local.port() == target.port()
            && target.ip().is_loopback()
            && local.ip().is_unspecified())
    {
        anyhow::bail!(
            "the target {target} is this relay's own address: it would send every datagram to itself"
        );
    }
    let emulator = standalone_emulator(&args.link, args.common.monitor.admin.is_some());
    let capture = args.capture.capture.as_ref().map(|file| {
        let format = ProxyCaptureArgs {
            capture: Some(file.clone()),
            capture_format: args.capture.capture_format,
            capture_tcp: false,
        }
        .format();
        CapturePlan::new(
            CaptureTarget::File(file.clone()),
            format,
            "tunlab relay: each datagram as it arrived at the relay and as the relay sent it on",
            // The writer's own messages appear under proxy1, the peers' side.
            Role::Proxy1,
        )
    });
    let stats = Arc::new(RelayStats::default());
    let config = RelayConfig {
        target,
        max_peers: usize::try_from(args.max_peers).unwrap_or(usize::MAX),
        peer_idle: args.peer_idle,
        emulator: emulator.clone(),
        verbose: args.common.verbose,
    };
    let sources = {
        let emulator = emulator.clone();
        let stats = stats.clone();
        move |events, conns, capture| {
            let sources = MonitorSources::new("relay", Role::Proxy1, events, conns)
                .with_capture(capture)
                .with_relay(stats);
            match emulator {
                Some(emulator) => sources.with_emulator(emulator),
                None => sources,
            }
        }
    };
    let log: RelayLog = Arc::new(|level, message| eprintln!("{} {message}", level.label()));
    let relay_stats = stats.clone();
    let code = run_standalone(&args.common, capture, None, sources, move |_events, stop, tap, _tasks| async move {
        eprintln!(
            "relay: forwarding to {target}, one socket per peer (at most {}, closed after {} of silence)",
            config.max_peers,
            humantime::format_duration(config.peer_idle)
        );
        eprintln!("relay up on {local}");
        if let Err(e) = relay::run(listen, config, relay_stats, tap, log, stop).await {
            eprintln!("error: relay: {e}");
        }
    })
    .await;
    report_emulator(emulator.as_deref());
    eprintln!("{}", stats.snapshot().describe());
    code
}

/// Fails with a clear message when this machine has no route to `target` (UDP itself would
/// only lose every datagram in silence).
fn check_route(target: SocketAddr) -> anyhow::Result<()> {
    let socket = std::net::UdpSocket::bind(unspecified_for(target))
        .map_err(|e| anyhow::anyhow!("cannot open a socket toward the target {target}: {e}"))?;
    socket
        .connect(target)
        .map_err(|e| anyhow::anyhow!("cannot reach the target {target}: {e}"))?;
    Ok(())
}
