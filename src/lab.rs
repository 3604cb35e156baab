//! The lab supervisor: starts echo server, proxy2, proxy1 and echo clients in one process on
//! real loopback sockets, lets a caller poke at them (the TUI's keys, a script's steps), and
//! stops everything cleanly. This is the one API that both front ends drive.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::capture::CaptureTap;
use crate::event::{ClientAction, ClientId, CloseKind, EventKind, EventSink, FrameSummary, Level};
use crate::impair::{DirectionSettings, LinkEmulator, LinkReport, LinkSettings, random_seed};
use crate::link::{EmulatorScope, LinkSocket, LinkStats, LinkStatsSnapshot, TapScope};
use crate::net::{bind_tcp, bind_udp};
use crate::roles::echo_client::{self, ClientCommand, ClientStatus};
use crate::roles::echo_server;
use crate::roles::proxy1::{self, Proxy1Config};
use crate::roles::proxy2::{self, Proxy2Config};
use crate::tasks::{SHUTDOWN_GRACE, Tasks};
use crate::topology::{Endpoint, LinkDirection, Role};
use crate::wire::WireMode;

/// The course scripts' ports.
pub const DEFAULT_SERVER_PORT: u16 = 1818;
pub const DEFAULT_PROXY1_PORT: u16 = 3327;
pub const DEFAULT_PROXY2_PORT: u16 = 3328;

/// How long [`Lab::add_clients`] waits for proxy1 to place one client before connecting the
/// next anyway.
const CLIENT_PLACED_WAIT: Duration = Duration::from_secs(1);

/// How to set a lab up. Port 0 means "any free port".
#[derive(Clone, Debug)]
pub struct LabConfig {
    /// Every role binds this address (loopback by default).
    pub host: IpAddr,
    pub server_port: u16,
    pub proxy1_port: u16,
    pub proxy2_port: u16,
    pub mode: WireMode,
    /// proxy1's timings (its `proxy2` field is filled in by the lab).
    pub proxy1: Proxy1Config,
    /// proxy2's timings (its `server` field is filled in by the lab).
    pub proxy2: Proxy2Config,
    /// Where captured frames go, if anywhere.
    pub capture: Option<CaptureTap>,
    /// What the link emulator does from the start (nothing by default); change it live with
    /// [`Lab::set_link`].
    pub link: LinkSettings,
    /// Seed of the emulator's decisions; `None` picks one at random (the snapshot shows it).
    pub link_seed: Option<u64>,
    /// Seals the link with this key (extended modes only): each proxy start is a new
    /// session.
    pub key: Option<crate::link::seal::SealKey>,
    /// proxy1's SOCKS5 port beside its plain one (0: any free port), if any; extended modes
    /// only. Its users and access log are in `proxy1.socks5`, the rules in `proxy2.dialer`.
    pub socks5_port: Option<u16>,
    /// `--access-log`: one JSON line per SOCKS5 connection, written by proxy1 (opened when
    /// the lab starts, completed when it shuts down).
    pub access_log: Option<std::path::PathBuf>,
}

impl Default for LabConfig {
    fn default() -> Self {
        let placeholder = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        LabConfig {
            host: Ipv4Addr::LOCALHOST.into(),
            server_port: DEFAULT_SERVER_PORT,
            proxy1_port: DEFAULT_PROXY1_PORT,
            proxy2_port: DEFAULT_PROXY2_PORT,
            mode: WireMode::Classic,
            proxy1: Proxy1Config::new(placeholder),
            proxy2: Proxy2Config::new(placeholder),
            capture: None,
            link: LinkSettings::default(),
            link_seed: None,
            key: None,
            socks5_port: None,
            access_log: None,
        }
    }
}

impl LabConfig {
    /// Every port chosen by the OS: what tests and scripts with `ports = "auto"` use.
    pub fn ephemeral() -> Self {
        LabConfig {
            server_port: 0,
            proxy1_port: 0,
            proxy2_port: 0,
            ..LabConfig::default()
        }
    }
}

/// Where each role listens, once bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LabAddrs {
    pub server: SocketAddr,
    pub proxy2_udp: SocketAddr,
    pub proxy1_tcp: SocketAddr,
    pub proxy1_udp: SocketAddr,
    /// proxy1's SOCKS5 port, when the lab has one.
    pub proxy1_socks5: Option<SocketAddr>,
}

/// A running role: how to stop it and how to wait for it.
struct Running {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Running {
    async fn stop(self) {
        self.stop.cancel();
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, self.task).await;
    }
}

/// One echo client started by the lab.
struct LabClient {
    id: ClientId,
    commands: mpsc::UnboundedSender<ClientCommand>,
    status: Arc<Mutex<ClientStatus>>,
}

/// Errors a lab command can give the person or script that asked for it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LabError {
    #[error("there is no client {0}")]
    NoSuchClient(ClientId),
    #[error("client {0} has already ended")]
    ClientEnded(ClientId),
    #[error("{0} is already running")]
    AlreadyRunning(&'static str),
    #[error("{0} is not running")]
    NotRunning(&'static str),
    #[error("{0}")]
    Io(String),
}

/// A frame the link holds in step mode, as the screen and scenarios see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldView {
    /// Names it while it is held.
    pub id: u64,
    pub direction: LinkDirection,
    pub frame: FrameSummary,
    /// A copy made by duplicating a held frame.
    pub copy: bool,
}

/// Totals for the whole lab, exact (not from the lossy event stream).
#[derive(Clone, Debug, serde::Serialize)]
pub struct LabSnapshot {
    pub proxy1: LinkStatsSnapshot,
    pub proxy2: LinkStatsSnapshot,
    /// The link emulator: seed, settings and per-direction counters.
    pub link: LinkReport,
    /// Events the consumer was too slow for.
    pub events_dropped: u64,
    pub clients: Vec<(ClientId, ClientStatus)>,
    /// Each proxy's transport counts per connection (reliable modes; empty in classic).
    pub transport_conns: TransportConns,
}

/// Each proxy's ledger of per-connection transport counts, oldest first (exact, like the
/// totals in [`LinkStatsSnapshot::transport`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct TransportConns {
    pub proxy1: Vec<crate::transport::totals::ConnCounts>,
    pub proxy2: Vec<crate::transport::totals::ConnCounts>,
}

/// The running lab.
pub struct Lab {
    config: LabConfig,
    addrs: LabAddrs,
    events: EventSink,
    shutdown: CancellationToken,
    /// Every task of the lab: the roles, their connections, the clients, the link timers.
    tasks: Tasks,
    server: Option<Running>,
    proxy2: Option<Running>,
    proxy1: Option<Running>,
    proxy1_stats: Arc<LinkStats>,
    proxy2_stats: Arc<LinkStats>,
    /// Shared by both proxies' link sockets and kept across their restarts.
    link: Arc<LinkEmulator>,
    clients: Vec<LabClient>,
    /// The SOCKS5 access log, if the lab writes one.
    access_log: Option<crate::roles::access_log::AccessLog>,
}

impl Lab {
    /// Binds every socket (failing with a clear message if a port is taken) and starts the
    /// server, proxy2 and proxy1. Clients are added with [`Lab::add_client`].
    pub async fn start(mut config: LabConfig, events: EventSink) -> anyhow::Result<Lab> {
        let host = config.host;
        let access_log = match &config.access_log {
            Some(path) => {
                let log = crate::roles::access_log::AccessLog::open(path).map_err(|e| {
                    anyhow::anyhow!("cannot open the access log {}: {e}", path.display())
                })?;
                config.proxy1.socks5.access_log = Some(log.writer());
                Some(log)
            }
            None => None,
        };
        let server_listener = bind_tcp((host, config.server_port).into())?;
        let proxy2_socket = bind_udp((host, config.proxy2_port).into())?;
        let proxy1_listener = bind_tcp((host, config.proxy1_port).into())?;
        let proxy1_socket = bind_udp((host, 0).into())?;
        let socks5_listener = match config.socks5_port {
            Some(_) if !config.mode.is_extended() => {
                anyhow::bail!(crate::roles::proxy1::SOCKS5_NEEDS_EXTENDED)
            }
            Some(port) => Some(bind_tcp((host, port).into())?),
            None => None,
        };
        let addrs = LabAddrs {
            proxy1_socks5: match &socks5_listener {
                Some(listener) => Some(listener.local_addr()?),
                None => None,
            },
            server: server_listener.local_addr()?,
            proxy2_udp: proxy2_socket.local_addr()?,
            proxy1_tcp: proxy1_listener.local_addr()?,
            proxy1_udp: proxy1_socket.local_addr()?,
        };
        let link = LinkEmulator::new(
            config.link.clone(),
            config.link_seed.unwrap_or_else(random_seed),
        );
        let mut lab = Lab {
            config,
            addrs,
            events,
            shutdown: CancellationToken::new(),
            tasks: Tasks::new(),
            server: None,
            proxy2: None,
            proxy1: None,
            proxy1_stats: Arc::default(),
            proxy2_stats: Arc::default(),
            link,
            clients: Vec::new(),
            access_log,
        };
        lab.server = Some(lab.spawn_server(server_listener));
        lab.proxy2 = Some(lab.spawn_proxy2(proxy2_socket)?);
        lab.proxy1 = Some(lab.spawn_proxy1(proxy1_listener, socks5_listener, proxy1_socket)?);
        Ok(lab)
    }

    pub fn addrs(&self) -> LabAddrs {
        self.addrs
    }
    pub fn config(&self) -> &LabConfig {
        &self.config
    }
    pub fn events(&self) -> &EventSink {
        &self.events
    }
    /// Every task the lab runs (a handle on the group: it outlives [`Lab::shutdown`], which
    /// waits for them all, so a test can check that none is left).
    pub fn tasks(&self) -> &Tasks {
        &self.tasks
    }

    fn link_socket(
        &self,
        socket: tokio::net::UdpSocket,
        endpoint: Endpoint,
        stats: &Arc<LinkStats>,
    ) -> std::io::Result<LinkSocket> {
        // Each proxy emulates the direction it sends: every frame is emulated exactly once.
        let link = LinkSocket::new(socket, endpoint, self.config.mode, self.events.clone())?
            .with_stats(stats.clone())
            .with_tasks(self.tasks.clone())
            .with_emulator(self.link.clone(), EmulatorScope::Sent);
        // A fresh session per start, so a restarted proxy never reuses a nonce.
        let link = match &self.config.key {
            Some(key) if self.config.mode.is_extended() => {
                let side = match endpoint {
                    Endpoint::Proxy1 => crate::link::seal::Side::Proxy1,
                    Endpoint::Proxy2 => crate::link::seal::Side::Proxy2,
                };
                link.with_seal(crate::link::seal::Seal::new(key.clone(), side))
            }
            _ => link,
        };
        // Both ends tap what they send: every frame on the link is recorded once.
        Ok(match &self.config.capture {
            Some(tap) => link.with_capture(tap.clone(), TapScope::Sent),
            None => link,
        })
    }

    fn spawn_server(&self, listener: tokio::net::TcpListener) -> Running {
        let stop = self.shutdown.child_token();
        let task = self.tasks.spawn(
            "echo server",
            echo_server::run_in(
                self.tasks.child(),
                listener,
                self.events.clone(),
                stop.clone(),
            ),
        );
        Running { stop, task }
    }

    fn spawn_proxy2(&self, socket: tokio::net::UdpSocket) -> anyhow::Result<Running> {
        let link = self.link_socket(socket, Endpoint::Proxy2, &self.proxy2_stats)?;
        let config = Proxy2Config {
            server: self.addrs.server,
            ..self.config.proxy2.clone()
        };
        let stop = self.shutdown.child_token();
        let task = self.tasks.spawn(
            "proxy2",
            proxy2::run_in(self.tasks.child(), link, config, stop.clone()),
        );
        Ok(Running { stop, task })
    }

    fn spawn_proxy1(
        &self,
        listener: tokio::net::TcpListener,
        socks5: Option<tokio::net::TcpListener>,
        socket: tokio::net::UdpSocket,
    ) -> anyhow::Result<Running> {
        let link = self.link_socket(socket, Endpoint::Proxy1, &self.proxy1_stats)?;
        let config = Proxy1Config {
            proxy2: self.addrs.proxy2_udp,
            ..self.config.proxy1.clone()
        };
        let stop = self.shutdown.child_token();
        let task = self.tasks.spawn(
            "proxy1",
            proxy1::run_in(
                self.tasks.child(),
                listener,
                socks5,
                link,
                config,
                stop.clone(),
            ),
        );
        Ok(Running { stop, task })
    }

    /// Whether a role is running now.
    pub fn is_running(&self, role: Role) -> bool {
        match role {
            Role::EchoServer => self.server.is_some(),
            Role::Proxy2 => self.proxy2.is_some(),
            Role::Proxy1 => self.proxy1.is_some(),
            Role::Client => self
                .clients
                .iter()
                .any(|c| c.status.lock().unwrap().ended.is_none()),
        }
    }

    /// Stops the echo server or proxy2 (closing their connections), to show what the tunnel
    /// does when a role dies.
    pub async fn stop_role(&mut self, role: Role) -> Result<(), LabError> {
        let running = match role {
            Role::EchoServer => self.server.take(),
            Role::Proxy2 => self.proxy2.take(),
            Role::Proxy1 => self.proxy1.take(),
            Role::Client => return Err(LabError::Io("clients are closed one by one".into())),
        };
        match running {
            // The role's own "down" event says it stopped.
            Some(running) => {
                running.stop().await;
                Ok(())
            }
            None => Err(LabError::NotRunning(role.label())),
        }
    }

    /// Starts a stopped role again on the same address.
    pub async fn start_role(&mut self, role: Role) -> Result<(), LabError> {
        if self.is_running(role) && role != Role::Client {
            return Err(LabError::AlreadyRunning(role.label()));
        }
        let io = |e: anyhow::Error| LabError::Io(format!("{e:#}"));
        match role {
            Role::EchoServer => {
                let listener = bind_tcp(self.addrs.server).map_err(io)?;
                self.server = Some(self.spawn_server(listener));
            }
            Role::Proxy2 => {
                let socket = bind_udp(self.addrs.proxy2_udp).map_err(io)?;
                self.proxy2 = Some(self.spawn_proxy2(socket).map_err(io)?);
            }
            Role::Proxy1 => {
                let listener = bind_tcp(self.addrs.proxy1_tcp).map_err(io)?;
                let socket = bind_udp(self.addrs.proxy1_udp).map_err(io)?;
                let socks5 = match self.addrs.proxy1_socks5 {
                    Some(addr) => Some(bind_tcp(addr).map_err(io)?),
                    None => None,
                };
                self.proxy1 = Some(self.spawn_proxy1(listener, socks5, socket).map_err(io)?);
            }
            Role::Client => {
                self.add_client().await?;
                return Ok(());
            }
        }
        // The role's own "up" event says it started.
        Ok(())
    }

    /// Connects a new echo client to proxy1. Its id is returned at once; whether it gets a
    /// tunnel connection shows in the event stream.
    pub async fn add_client(&mut self) -> Result<ClientId, LabError> {
        let id = self.clients.len() as ClientId + 1;
        let status = Arc::new(Mutex::new(ClientStatus::default()));
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let stream = match tokio::net::TcpStream::connect(self.addrs.proxy1_tcp).await {
            Ok(stream) => stream,
            Err(e) => {
                let why = crate::fd_limit::describe_io_error(&e);
                self.events.emit(EventKind::Client {
                    client: id,
                    action: ClientAction::ConnectFailed(why.clone()),
                });
                return Err(LabError::Io(format!(
                    "client {id} cannot connect to proxy1: {why}"
                )));
            }
        };
        self.tasks.spawn(
            "echo client",
            echo_client::run(
                id,
                stream,
                commands_rx,
                status.clone(),
                self.events.clone(),
                self.shutdown.child_token(),
                self.tasks.clone(),
            ),
        );
        self.clients.push(LabClient {
            id,
            commands,
            status,
        });
        Ok(id)
    }

    /// Connects `n` new echo clients one after the other, each only once proxy1 has placed
    /// the one before (sent its `C`, or made it wait), so the first clients of a fresh lab
    /// get ids in their own order: client 1 id 0, client 2 id 1… proxy1 serves each accepted
    /// client in its own task, so clients connected back to back would race for the ids.
    pub async fn add_clients(&mut self, n: u32) -> Result<Vec<ClientId>, LabError> {
        let ids = self.config.mode.max_connections();
        let mut added = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let connects = self.proxy1_stats.sent.get(crate::wire::FrameKind::Connect);
            // Counting live clients walks them all: only worth it once there could be more
            // clients than ids (thousands of clients in the extended modes never are).
            let live = if self.clients.len() < ids {
                self.clients.len()
            } else {
                self.clients
                    .iter()
                    .filter(|c| c.status.lock().unwrap().ended.is_none())
                    .count()
            };
            let client = self.add_client().await?;
            added.push(client);
            if live >= ids {
                // It will wait for an id (or another client's id frees first): no C to wait for.
                continue;
            }
            let placed = async {
                loop {
                    let sent = self.proxy1_stats.sent.get(crate::wire::FrameKind::Connect);
                    let ended = self
                        .client_status(client)
                        .is_ok_and(|status| status.ended.is_some());
                    if sent > connects || ended {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            };
            // Bounded: a proxy1 that places nobody must not stall the lab's start.
            let _ = tokio::time::timeout(CLIENT_PLACED_WAIT, placed).await;
        }
        Ok(added)
    }

    fn client(&self, id: ClientId) -> Result<&LabClient, LabError> {
        self.clients
            .iter()
            .find(|c| c.id == id)
            .ok_or(LabError::NoSuchClient(id))
    }

    fn command(&self, id: ClientId, command: ClientCommand) -> Result<(), LabError> {
        self.client(id)?
            .commands
            .send(command)
            .map_err(|_| LabError::ClientEnded(id))
    }

    /// Sends bytes from a client through the tunnel.
    pub fn client_send(&self, id: ClientId, bytes: Vec<u8>) -> Result<(), LabError> {
        self.command(id, ClientCommand::Send(bytes))
    }

    /// Closes a client with a FIN or a RST.
    pub fn client_close(&self, id: ClientId, how: CloseKind) -> Result<(), LabError> {
        self.command(id, ClientCommand::Close(how))
    }

    /// The status of one client.
    pub fn client_status(&self, id: ClientId) -> Result<ClientStatus, LabError> {
        Ok(self.client(id)?.status.lock().unwrap().clone())
    }

    /// Every client started so far, oldest first.
    pub fn client_ids(&self) -> Vec<ClientId> {
        self.clients.iter().map(|c| c.id).collect()
    }

    /// The exact counters of one link endpoint (kept across the role's restarts).
    pub fn link_stats(&self, endpoint: Endpoint) -> &Arc<LinkStats> {
        match endpoint {
            Endpoint::Proxy1 => &self.proxy1_stats,
            Endpoint::Proxy2 => &self.proxy2_stats,
        }
    }

    /// The link emulator (settings, seed, counters), shared by both proxies.
    pub fn link_emulator(&self) -> &Arc<LinkEmulator> {
        &self.link
    }

    /// The emulator settings in force now.
    pub fn link_settings(&self) -> LinkSettings {
        self.link.settings()
    }

    /// The seed of the emulator's decisions (replay a run with `--seed`).
    pub fn link_seed(&self) -> u64 {
        self.link.seed()
    }

    /// Changes what the link emulator does, both directions, from the next frame on. The log
    /// says it in one line when both directions get the same settings.
    pub fn set_link(&self, settings: LinkSettings) {
        if settings.to_proxy2 == settings.to_proxy1 && self.link.settings() != settings {
            self.link.set(settings.clone());
            self.events.log(
                Level::Info,
                Role::Proxy1,
                format!("link emulator both ways: {}", settings.to_proxy2.summary()),
            );
            return;
        }
        for direction in [LinkDirection::ToProxy2, LinkDirection::ToProxy1] {
            self.set_link_direction(direction, settings.direction(direction).clone());
        }
    }

    /// Changes what the link emulator does to one direction, from its next frame on.
    pub fn set_link_direction(&self, direction: LinkDirection, settings: DirectionSettings) {
        let emulated = self.link.direction(direction);
        if emulated.settings() == settings {
            return;
        }
        let summary = settings.summary();
        emulated.set(settings);
        let sender = match direction {
            LinkDirection::ToProxy2 => Role::Proxy1,
            LinkDirection::ToProxy1 => Role::Proxy2,
        };
        self.events.log(
            Level::Info,
            sender,
            format!("link emulator {}: {summary}", direction.arrow()),
        );
    }

    /// Step mode on (`true`): from the next frame on, the link holds every frame, both ways,
    /// until it is released, dropped or duplicated by hand. Off: everything held goes, in
    /// order.
    pub fn set_hold(&self, holding: bool) {
        let hold = self.link.hold();
        if hold.is_holding() == holding {
            return;
        }
        let released = hold.set_holding(holding);
        let text = if holding {
            "link held (step mode): every frame waits to be released, dropped or duplicated"
                .to_string()
        } else {
            format!("link flows again: {released} held frames released in order")
        };
        self.events.log(Level::Info, Role::Proxy1, text);
    }

    /// Whether the link is held (step mode).
    pub fn is_holding(&self) -> bool {
        self.link.hold().is_holding()
    }

    /// The frames the link holds, oldest first.
    pub fn held_frames(&self) -> Vec<HeldView> {
        self.link
            .hold()
            .held()
            .into_iter()
            .filter_map(|held| {
                let frame = self.config.mode.decode(&held.datagram).ok()?;
                Some(HeldView {
                    id: held.id,
                    direction: held.direction,
                    frame: FrameSummary::in_mode(self.config.mode, &frame, held.datagram.len()),
                    copy: held.copy,
                })
            })
            .collect()
    }

    /// Lets a held frame cross: `None` the oldest. Returns it, if there was one.
    pub fn release_held(&self, id: Option<u64>) -> Option<HeldView> {
        let view = self.held_view(id)?;
        self.link.hold().release(Some(view.id))?;
        Some(view)
    }

    /// Drops a held frame: it never crosses (counted as dropped "by hand", and traced).
    pub fn drop_held(&self, id: u64) -> Option<HeldView> {
        let view = self.held_view(Some(id))?;
        let held = self.link.hold().discard(id)?;
        let counters = self.link.direction(held.direction).counters();
        counters.queued.sub();
        counters.drop(crate::impair::DropCause::ByHand);
        counters.drop_kind(view.frame.kind);
        let sender = match held.direction {
            LinkDirection::ToProxy2 => Endpoint::Proxy1,
            LinkDirection::ToProxy1 => Endpoint::Proxy2,
        };
        self.events.emit(EventKind::LinkDecision {
            at: sender,
            direction: held.direction,
            peer: held.addr,
            frame: view.frame.clone(),
            what: crate::impair::LinkVerdict::dropped(crate::impair::DropCause::ByHand),
        });
        Some(view)
    }

    /// Puts a copy of a held frame right behind it (counted as a duplicate). Returns the copy.
    pub fn duplicate_held(&self, id: u64) -> Option<HeldView> {
        self.held_view(Some(id))?;
        let copy = self.link.hold().duplicate(id)?;
        let counters = self.link.direction(copy.direction).counters();
        counters.duplicated.add();
        counters.queued.add();
        self.held_view(Some(copy.id))
    }

    fn held_view(&self, id: Option<u64>) -> Option<HeldView> {
        let held = self.held_frames();
        match id {
            None => held.into_iter().next(),
            Some(id) => held.into_iter().find(|h| h.id == id),
        }
    }

    /// Exact totals right now.
    pub fn snapshot(&self) -> LabSnapshot {
        let proxy1 = self.proxy1_stats.snapshot();
        let proxy2 = self.proxy2_stats.snapshot();
        let mut link = self.link.report();
        // What a direction's receiver could not decode.
        link.to_proxy2.malformed = proxy2.malformed;
        link.to_proxy1.malformed = proxy1.malformed;
        LabSnapshot {
            proxy1,
            proxy2,
            link,
            events_dropped: self.events.dropped(),
            clients: self
                .clients
                .iter()
                .map(|c| (c.id, c.status.lock().unwrap().clone()))
                .collect(),
            transport_conns: TransportConns {
                proxy1: self.proxy1_stats.transport.connections(),
                proxy2: self.proxy2_stats.transport.connections(),
            },
        }
    }

    /// Stops every role and client and waits (briefly) for them to finish.
    ///
    /// proxy1 stops first, while proxy2 still listens: the `X` it sends for each open id is
    /// received (and captured as delivered), as when proxy1 alone is restarted.
    pub async fn shutdown(mut self) {
        self.stop_everything().await;
    }

    /// Stops everything like [`Lab::shutdown`], then returns the exact totals: taken after the
    /// roles have stopped, they count every frame that was sent (and so captured).
    pub async fn shutdown_with_totals(mut self) -> LabSnapshot {
        self.stop_everything().await;
        self.snapshot()
    }

    async fn stop_everything(&mut self) {
        if let Some(proxy1) = self.proxy1.take() {
            proxy1.stop().await;
        }
        // proxy1 has written its last record: the file is complete.
        if let Some(log) = self.access_log.take() {
            log.finish();
        }
        self.shutdown.cancel();
        for running in [self.proxy2.take(), self.server.take()]
            .into_iter()
            .flatten()
        {
            running.stop().await;
        }
        self.wait_for_link_sockets(Duration::from_secs(2)).await;
        let left = self.tasks.wait(SHUTDOWN_GRACE).await;
        if !left.is_empty() {
            self.events.log(
                Level::Warn,
                Role::Proxy1,
                format!("lab stopped without waiting for: {left}"),
            );
        }
    }

    /// Waits, at most `within`, until no link socket of the lab is left. A role's task ends
    /// first, while its per-connection tasks wind down a moment later and may still send a
    /// last frame (an `X`); only once every socket is gone are the counters final and every
    /// frame handed to the capture. Each socket holds a clone of its endpoint's [`LinkStats`],
    /// so the lab's own clones being the last ones says that.
    async fn wait_for_link_sockets(&self, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        while (Arc::strong_count(&self.proxy1_stats) > 1
            || Arc::strong_count(&self.proxy2_stats) > 1)
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}
