//! The subcommands: each role alone, the SOCKS5 server, keygen, decrypt and the monitor client.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::capture::{CapturePlan, CaptureTap, CaptureWriter, TcpCapture};
use crate::cli::{Command, LinkArgs, Socks5Args, Socks5PortArgs, StandaloneArgs, WireArgs};
use crate::describe::describe;
use crate::event::{EventSink, Level};
use crate::impair::{LinkEmulator, random_seed};
use crate::link::seal::{Seal, SealKey, Side};
use crate::link::{EmulatorScope, LinkSocket, LinkStats};
use crate::monitor::{ConnTable, Monitor, MonitorSources};
use crate::net::{bind_tcp, bind_udp, local_bind_towards, resolve};
use crate::roles::{echo_client, echo_server, proxy1, proxy2};
use crate::shutdown::SignalToken;
use crate::tasks::{SHUTDOWN_GRACE, Tasks};
use crate::topology::{Endpoint, Role};
use crate::wire::WireMode;

use super::open_tcp_capture;

/// Runs one subcommand until it ends (or until Ctrl-C or SIGTERM for the roles).
pub async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::EchoServer(args) => {
            let listener = bind_tcp((args.common.bind, args.port).into())?;
            let sources = |events, conns, _capture| {
                MonitorSources::new("echo-server", Role::EchoServer, events, conns)
            };
            run_standalone(
                &args.common,
                None,
                None,
                sources,
                |events, stop, _, tasks| echo_server::run_in(tasks, listener, events, stop),
            )
            .await
        }
        Command::Proxy2(args) => {
            let server = resolve(&args.server_host, args.server_port).await?;
            let socket = bind_udp((args.common.bind, args.udp_port).into())?;
            let mut config = args.tuning.config(&args.wire, server);
            config.dialer = args.rules.dialer(&config);
            let emulator = standalone_emulator(&args.link, args.common.monitor.admin.is_some());
            let capture = args.capture.plan(Role::Proxy2);
            let tcp = match open_tcp_capture(args.capture.capture_tcp) {
                Ok(tcp) => tcp.map(|tcp| (tcp, vec![server.port()])),
                Err(code) => return Ok(code),
            };
            let link = StandaloneLink::new(Endpoint::Proxy2, &args.wire, &emulator);
            let sources = proxy_sources(
                Endpoint::Proxy2,
                &link.stats,
                &emulator,
                config.idle_timeout.clone(),
                server,
            );
            let code = run_standalone(
                &args.common,
                capture,
                tcp,
                sources,
                |events, stop, tap, tasks| async move {
                    match link.open(socket, events, tap, &tasks) {
                        Ok(link) => proxy2::run_in(tasks, link, config, stop).await,
                        Err(e) => eprintln!("error: {e}"),
                    }
                },
            )
            .await;
            report_emulator(emulator.as_deref());
            code
        }
        Command::Proxy1(args) => {
            let proxy2_addr = resolve(&args.proxy2_host, args.proxy2_udp_port).await?;
            let mut config = args.tuning.config(&args.wire, proxy2_addr);
            // SOCKS5 (issue 13): checked before anything binds; the log finishes at the end.
            let socks5 = match Socks5Port::open(&args.socks5, args.wire.wire, args.common.bind) {
                Ok(socks5) => socks5,
                Err(e) => {
                    eprintln!("error: {e}");
                    return Ok(ExitCode::from(2));
                }
            };
            config.socks5 = socks5.front.clone();
            let listener = bind_tcp((args.common.bind, args.tcp_port).into())?;
            let socket = bind_udp(local_bind_towards(proxy2_addr))?;
            let emulator = standalone_emulator(&args.link, args.common.monitor.admin.is_some());
            let capture = args.capture.plan(Role::Proxy1);
            let client_port = listener.local_addr()?.port();
            let tcp = match open_tcp_capture(args.capture.capture_tcp) {
                Ok(tcp) => tcp.map(|tcp| (tcp, vec![client_port])),
                Err(code) => return Ok(code),
            };
            let link = StandaloneLink::new(Endpoint::Proxy1, &args.wire, &emulator);
            let sources = proxy_sources(
                Endpoint::Proxy1,
                &link.stats,
                &emulator,
                config.idle_timeout.clone(),
                proxy2_addr,
            );
            let code = run_standalone(
                &args.common,
                capture,
                tcp,
                sources,
                |events, stop, tap, tasks| async move {
                    match link.open(socket, events, tap, &tasks) {
                        Ok(link) => {
                            proxy1::run_in(tasks, listener, socks5.listener, link, config, stop)
                                .await;
                        }
                        Err(e) => eprintln!("error: {e}"),
                    }
                },
            )
            .await;
            report_emulator(emulator.as_deref());
            if let Some(log) = socks5.access_log {
                let path = log.path().display().to_string();
                eprintln!(
                    "socks5: {} access log lines written to {path}",
                    log.finish()
                );
            }
            code
        }
        Command::EchoClient(args) => {
            let server = resolve(&args.host, args.port).await?;
            echo_client::run_interactive(server, args.echo_timeout).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Socks5(args) => run_socks5(args).await,
        Command::Relay(args) => super::relay::run(args).await,
        Command::Keygen(args) => match SealKey::generate_file(&args.file) {
            Ok(()) => {
                eprintln!(
                    "wrote a fresh 256-bit key to {} (mode 0600); give both proxies --key-file {}",
                    args.file.display(),
                    args.file.display()
                );
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("error: {e}");
                Ok(ExitCode::FAILURE)
            }
        },
        Command::Decrypt(args) => {
            match crate::link::decrypt::decrypt_file(&args.input, &args.output, &args.key_file.key)
            {
                Ok(summary) => {
                    eprintln!("{summary}");
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("error: {e:#}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::Monitor(args) => {
            // A blocking client: it waits on a person, not on sockets of its own.
            tokio::task::spawn_blocking(move || crate::monitor::client::run(&args.host, args.port))
                .await?
        }
    }
}

/// `tunlab socks5`: the direct SOCKS5 server until Ctrl-C or SIGTERM.
async fn run_socks5(args: Socks5Args) -> anyhow::Result<ExitCode> {
    use crate::roles::access_log::AccessLog;
    use crate::roles::dialers::{DialerConfig, ResolverDialer};
    use crate::roles::socks5_direct::{self, DirectConfig};

    let front = args.front.config().map_err(|e| anyhow::anyhow!(e))?;
    let access_log =
        match &args.access_log {
            Some(path) => Some(AccessLog::open(path).map_err(|e| {
                anyhow::anyhow!("cannot open the access log {}: {e}", path.display())
            })?),
            None => None,
        };
    let listener = bind_tcp((args.bind, args.port).into())?;
    let users = match front.users.len() {
        0 => "no authentication".to_string(),
        n => format!("{n} user(s), username/password required"),
    };
    let rules = args.rules.rules;
    let rule_list = if rules.is_empty() {
        "no rules (every destination allowed)".to_string()
    } else {
        let list: Vec<String> = rules.iter().map(ToString::to_string).collect();
        format!("rules {} (then allowed)", list.join(" "))
    };
    eprintln!(
        "socks5: listening on {} ({users}; {rule_list})",
        listener.local_addr()?
    );
    if let Some(log) = &access_log {
        eprintln!("socks5: access log {}", log.path().display());
    }
    let config = DirectConfig {
        front,
        dialer: ResolverDialer::new(DialerConfig {
            rules,
            connect_timeout: args.connect_timeout,
            ..DialerConfig::default()
        }),
        access_log: access_log.as_ref().map(AccessLog::writer),
        on_record: Some(Arc::new(
            |record: &crate::roles::access_log::AccessRecord| {
                eprintln!("socks5: {}", record.describe());
            },
        )),
        max_clients: usize::try_from(args.max_clients).unwrap_or(usize::MAX),
    };
    let signals = SignalToken::new();
    let stop = signals.token();
    let tasks = Tasks::new();
    let server = tokio::spawn(socks5_direct::run_in(
        tasks.clone(),
        listener,
        config,
        stop.clone(),
    ));
    stop.cancelled().await;
    let _ = server.await;
    if !tasks.is_empty() {
        eprintln!("socks5: stopped without waiting for: {}", tasks.running());
    }
    if let Some(log) = access_log {
        let path = log.path().display().to_string();
        let written = log.finish();
        eprintln!("socks5: {written} access log lines written to {path}");
    }
    Ok(ExitCode::SUCCESS)
}

/// How a standalone proxy's monitor finds its counters: `destination` is where its
/// connections lead (proxy1: its proxy2; proxy2: the server).
fn proxy_sources(
    endpoint: Endpoint,
    stats: &Arc<LinkStats>,
    emulator: &Option<Arc<LinkEmulator>>,
    idle_timeout: crate::roles::IdleTimeout,
    destination: SocketAddr,
) -> impl FnOnce(EventSink, Arc<ConnTable>, Option<Arc<crate::capture::CaptureStatus>>) -> MonitorSources
+ use<> {
    let stats = stats.clone();
    let emulator = emulator.clone();
    move |events, conns, capture| {
        conns.set_destination(endpoint.role(), destination);
        let sources = MonitorSources::new(endpoint.label(), endpoint.role(), events, conns)
            .with_link(endpoint, stats)
            .with_capture(capture)
            .with_idle_timeout(idle_timeout);
        match emulator {
            Some(emulator) => sources.with_emulator(emulator),
            None => sources,
        }
    }
}

/// The emulator a standalone proxy runs, if its flags ask for one or the admin protocol may
/// change it (`CONFIG loss 10`; a clear emulator costs next to nothing). It says so on
/// stderr, with the seed that replays it.
pub(super) fn standalone_emulator(args: &LinkArgs, admin: bool) -> Option<Arc<LinkEmulator>> {
    let settings = args.settings();
    if settings.is_clear() && !admin {
        return None;
    }
    let clear = settings.is_clear();
    let emulator = LinkEmulator::new(settings, args.seed.unwrap_or_else(random_seed));
    if clear {
        return Some(emulator);
    }
    let settings = emulator.settings();
    eprintln!(
        "link emulator (seed {}; replay with --seed {}): p1→p2 {} | p2→p1 {}",
        emulator.seed(),
        emulator.seed(),
        settings.to_proxy2.summary(),
        settings.to_proxy1.summary()
    );
    Some(emulator)
}

/// How a standalone proxy's end of the link is put together: its wire mode, seal, counters
/// and emulator. A standalone proxy is the only one of the pair in this process, so its
/// emulator acts on both directions and its capture records both: the whole link.
struct StandaloneLink {
    endpoint: Endpoint,
    wire: WireMode,
    seal: Option<Seal>,
    stats: Arc<LinkStats>,
    emulator: Option<Arc<LinkEmulator>>,
}

impl StandaloneLink {
    fn new(endpoint: Endpoint, wire: &WireArgs, emulator: &Option<Arc<LinkEmulator>>) -> Self {
        let side = match endpoint {
            Endpoint::Proxy1 => Side::Proxy1,
            Endpoint::Proxy2 => Side::Proxy2,
        };
        StandaloneLink {
            endpoint,
            wire: wire.wire,
            seal: wire.seal(side),
            stats: Arc::default(),
            emulator: emulator.clone(),
        }
    }

    /// The link socket on `socket`, reporting to `events`, recording to `tap`, its emulator's
    /// timer a task of `tasks`.
    fn open(
        self,
        socket: tokio::net::UdpSocket,
        events: EventSink,
        tap: Option<CaptureTap>,
        tasks: &Tasks,
    ) -> std::io::Result<LinkSocket> {
        let mut link = LinkSocket::new(socket, self.endpoint, self.wire, events)?
            .with_stats(self.stats)
            .with_tasks(tasks.clone());
        if let Some(seal) = self.seal {
            link = link.with_seal(seal);
        }
        if let Some(emulator) = self.emulator {
            link = link.with_emulator(emulator, EmulatorScope::SentAndReceived);
        }
        if let Some(tap) = tap {
            link = link.with_capture(tap, crate::link::TapScope::SentAndReceived);
        }
        Ok(link)
    }
}

/// The emulator's counters when a standalone proxy stops.
pub(super) fn report_emulator(emulator: Option<&LinkEmulator>) {
    if let Some(emulator) = emulator {
        for line in emulator.report().lines() {
            eprintln!("{line}");
        }
    }
}

/// Runs one role until Ctrl-C or SIGTERM (which cancel its token, a [`SignalToken`]'s), its
/// tasks in one group waited for, a bounded time, before the process ends. It prints its
/// events on stderr, records its link frames when `capture` says so (the file is finished
/// after the role has stopped), and serves its metrics and admin protocol when
/// `common.monitor` asks, from what `sources` gathers.
pub(super) async fn run_standalone<S, F, Fut>(
    common: &StandaloneArgs,
    capture: Option<CapturePlan>,
    tcp: Option<(TcpCapture, Vec<u16>)>,
    sources: S,
    role: F,
) -> anyhow::Result<ExitCode>
where
    S: FnOnce(
        EventSink,
        Arc<ConnTable>,
        Option<Arc<crate::capture::CaptureStatus>>,
    ) -> MonitorSources,
    F: FnOnce(EventSink, CancellationToken, Option<CaptureTap>, Tasks) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    // Listening before anything starts, so an early signal still stops the role cleanly.
    let signals = SignalToken::new();
    let stop = signals.token();
    let (events, mut rx) = EventSink::channel(16 * 1024);
    // The connection table sees every event, before the log's channel could drop one.
    let plan = common.monitor.plan();
    let conns = plan.is_on().then(|| Arc::new(ConnTable::new()));
    let events = match &conns {
        Some(conns) => events.with_observer(conns.clone()),
        None => events,
    };
    let verbose = common.verbose;
    // Without -v the log shows no frames, so the roles need not build an event per datagram.
    let events = if verbose {
        events
    } else {
        events.without_frame_events()
    };
    let printer = tokio::spawn(async move {
        while let Some(event) = rx.recv().await {
            if let Some(line) = describe(&event.kind, verbose) {
                eprintln!("{line}");
            }
        }
    });
    let mut capture = match capture {
        Some(plan) => Some(CaptureWriter::start(plan, events.clone())?),
        None => None,
    };
    if let Some(capture) = &mut capture {
        eprintln!(
            "capturing the link to {}",
            capture.status().path().display()
        );
        if let Some((tcp, ports)) = tcp {
            capture.capture_tcp(tcp, &ports, events.clone())?;
            let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
            eprintln!(
                "capturing TCP port {} on {} too",
                ports.join(", "),
                crate::capture::tcp::LOOPBACK
            );
        }
    }
    let monitor = match conns {
        Some(conns) => {
            let status = capture.as_ref().map(CaptureWriter::status);
            match Monitor::start(&plan, sources(events.clone(), conns, status)).await {
                Ok(monitor) => Some(monitor),
                Err(e) => {
                    if let Some(capture) = capture {
                        capture.abandon().await;
                    }
                    return Err(e);
                }
            }
        }
        None => None,
    };
    if let Some(line) = monitor.as_ref().and_then(Monitor::describe) {
        eprintln!("{line}");
    }
    let tap = capture.as_ref().map(CaptureWriter::tap);
    let tasks = Tasks::new();
    tasks.spawn(
        "role",
        role(events.clone(), stop.clone(), tap, tasks.child()),
    );
    stop.cancelled().await;
    let left = tasks.wait(SHUTDOWN_GRACE).await;
    if !left.is_empty() {
        eprintln!(
            "{}: stopped without waiting for: {left}",
            Level::Warn.label()
        );
    }
    if let Some(monitor) = monitor {
        let left = monitor.stop().await;
        if !left.is_empty() {
            eprintln!(
                "{}: the monitor stopped without waiting for: {left}",
                Level::Warn.label()
            );
        }
    }
    if let Some(capture) = capture {
        eprintln!("{}", capture.finish().await.describe());
    }
    let dropped = events.dropped();
    drop(events);
    let _ = tokio::time::timeout(Duration::from_secs(1), printer).await;
    if dropped > 0 {
        eprintln!(
            "{}: {dropped} log events were dropped (output too slow)",
            Level::Warn.label()
        );
    }
    Ok(ExitCode::SUCCESS)
}

// ---- SOCKS5 on proxy1 (issue 13) ----

/// proxy1's SOCKS5 port as the command line asks for it: the front's settings (with the
/// access log's writer), the bound listener and the access log to finish at the end.
struct Socks5Port {
    front: crate::roles::proxy1::Socks5Front,
    listener: Option<tokio::net::TcpListener>,
    access_log: Option<crate::roles::access_log::AccessLog>,
}

impl Socks5Port {
    /// Checks the flags (an extended mode; users and log only with the port), reads the
    /// users file, opens the access log and binds the port.
    fn open(
        args: &Socks5PortArgs,
        mode: WireMode,
        bind: std::net::IpAddr,
    ) -> Result<Socks5Port, String> {
        let front = args.check(mode)?;
        let access_log = match &args.access_log {
            Some(path) => Some(
                crate::roles::access_log::AccessLog::open(path)
                    .map_err(|e| format!("cannot open the access log {}: {e}", path.display()))?,
            ),
            None => None,
        };
        let listener = match args.port {
            Some(port) => Some(bind_tcp((bind, port).into()).map_err(|e| e.to_string())?),
            None => None,
        };
        Ok(Socks5Port {
            front: crate::roles::proxy1::Socks5Front {
                front,
                access_log: access_log
                    .as_ref()
                    .map(crate::roles::access_log::AccessLog::writer),
            },
            listener,
            access_log,
        })
    }
}
