//! proxy1: the near end of the UDP link. It accepts TCP clients, gives each a connection id,
//! asks proxy2 to open it with `C`, and then carries the client's bytes as `D` frames over
//! its one UDP socket.
//!
//! Ids go least recently used first (see [`crate::tunnel::ids`]). When every id is taken, a
//! new client waits, a bounded time, for one to free up; a client that has already sent
//! something goes before one that sits idle, and one that hangs up leaves the queue. UDP may
//! lose any datagram, so nothing here waits forever: `C` is re-sent a few times, every path
//! that ends a connection sends `X` (re-sent a few times, the id held back meanwhile), idle
//! and never-used ids are reclaimed, and ids idle for a while are probed with an empty `D`,
//! which a proxy2 that no longer knows the id answers with `X` (a restarted proxy2, say).
//!
//! A client that half-closes (FIN after its request) still gets the whole answer: proxy1
//! keeps delivering what proxy2 sends until it has been quiet for `half_close_linger`, and
//! only then sends `X` and passes the FIN on.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::peer_close_kind;
use crate::destination::{DestinationRef, Refusal};
use crate::event::{CloseKind, ConnState, EventKind, EventSink, Ignored, Level, TcpAction};
use crate::link::{LinkSocket, RECV_BUFFER, Received};
use crate::roles::access_log::{AccessLogWriter, AccessRecord, AccessResult};
use crate::roles::fronts::socks5::{self, Accepted, FrontConfig};
use crate::tasks::{SHUTDOWN_GRACE, Tasks};
use crate::topology::{Endpoint, Role};
use crate::transport::stop_and_wait::StrayCloses;
use crate::transport::totals::TallyKey;
use crate::transport::{Transport, TransportConfig};
use crate::tunnel::activity::Activity;
use crate::tunnel::finished::FinishedCloses;
use crate::tunnel::ids::{IdPool, WaitQueue};
use crate::tunnel::reliable::{self, PumpEnd, PumpSide, ReliableConn};
use crate::wire::{ConnId, Frame, FrameKind, Seq};

/// How proxy1 behaves; [`Proxy1Config::new`] gives the defaults.
#[derive(Clone, Debug)]
pub struct Proxy1Config {
    /// proxy2's UDP address: the only peer proxy1 accepts datagrams from.
    pub proxy2: SocketAddr,
    /// How many times `C` is sent before the client is given up on.
    pub connect_attempts: u32,
    /// How long to wait for `OK`/`NOK` after each `C`.
    pub connect_retry: Duration,
    /// How long a client may wait for a free id before it is closed.
    pub id_wait: Duration,
    /// An open id with no traffic either way for this long is closed (`X` sent).
    /// Changeable while the role runs (it is read at every sweep).
    pub idle_timeout: super::IdleTimeout,
    /// An open id that has carried no byte either way for this long is closed when another
    /// client waits for an id, so idle sockets cannot hold all the ids.
    pub unused_timeout: Duration,
    /// After a client's FIN, proxy1 keeps delivering proxy2's data to it until proxy2 has
    /// been quiet this long, then sends `X`.
    pub half_close_linger: Duration,
    /// How many times `X` is sent when proxy1 closes a connection (classic `X` is never
    /// acknowledged); the id is not handed out again before the last one.
    pub close_attempts: u32,
    /// The time between those sends.
    pub close_retry: Duration,
    /// An open id with no traffic for this long is probed with an empty `D` (and again every
    /// this long): a proxy2 that no longer has the id answers `X` (in the extended modes,
    /// `NOK`), and the client is closed. In the extended modes the probe is a duplicate
    /// the peer acknowledges, and what counts is hearing from proxy2 on that id.
    pub probe_after: Duration,
    /// Extended modes: a connection whose proxy2 has answered none of this many probes in a
    /// row is closed (proxy2 is gone, or the link is cut).
    pub keepalive_probes: u32,
    /// `D` frames queued toward one slow client before classic mode drops them.
    pub queue_frames: usize,
    /// The reliable modes' window and timers; the mode's defaults when `None`.
    pub transport: Option<TransportConfig>,
    /// How the SOCKS5 port (see [`run_with_socks5`]) treats its clients.
    pub socks5: Socks5Front,
}

/// The SOCKS5 front's settings at proxy1.
#[derive(Clone, Debug, Default)]
pub struct Socks5Front {
    /// Users, handshake deadline.
    pub front: FrontConfig,
    /// Where each SOCKS5 connection's record goes (`--access-log`), if anywhere. proxy1
    /// writes it: it knows the client and the user, and hears the outcome in `OK`/`NOK`.
    pub access_log: Option<AccessLogWriter>,
}

impl Proxy1Config {
    pub fn new(proxy2: SocketAddr) -> Self {
        Proxy1Config {
            proxy2,
            connect_attempts: 5,
            connect_retry: Duration::from_millis(500),
            id_wait: Duration::from_secs(10),
            idle_timeout: Duration::from_mins(5).into(),
            unused_timeout: Duration::from_secs(10),
            half_close_linger: Duration::from_millis(500),
            close_attempts: 3,
            close_retry: Duration::from_millis(100),
            probe_after: Duration::from_secs(1),
            keepalive_probes: 5,
            queue_frames: 1024,
            transport: None,
            socks5: Socks5Front::default(),
        }
    }
}

/// What a waiting client may send before proxy1 stops reading it (TCP then holds the rest).
const STASH_LIMIT: usize = 64 * 1024;

/// Why a SOCKS5 port is refused in the text formats.
pub const SOCKS5_NEEDS_EXTENDED: &str = "SOCKS5 needs an extended wire mode (--wire go-back-n or --wire selective-repeat): \
     classic and stop-and-wait frames have no room for the destination in C or the reason in NOK";

/// What the UDP side hands to a client's writer task.
enum ToClient {
    Data(Vec<u8>),
    /// No more data: close the client (FIN) after what is queued. Sent when proxy2's `X`
    /// arrives, or when proxy1 itself ends a half-closed connection.
    Finish,
}

/// The bytes a message puts on the client's socket (none for the close).
impl AsRef<[u8]> for ToClient {
    fn as_ref(&self) -> &[u8] {
        match self {
            ToClient::Data(data) => data,
            ToClient::Finish => &[],
        }
    }
}

enum Phase {
    /// `C` sent; the first `OK` (with proxy2's initial sequence number) or `NOK` (with its
    /// reason, if it gave one) goes here.
    Connecting(Option<oneshot::Sender<Answer>>),
    Open(mpsc::Sender<ToClient>),
    /// A reliable mode's open connection: its frames go to its transport.
    Reliable(Arc<ReliableConn>),
    /// `X` sent, being re-sent: whatever still arrives for the id is old news.
    Closing,
}

struct Slot {
    client: SocketAddr,
    phase: Phase,
    stop: CancellationToken,
    /// Bytes either way.
    activity: Arc<Activity>,
    /// Bytes from proxy2 only: the half-close linger waits for these to stop.
    from_proxy2: Arc<Activity>,
    /// Set when proxy2's `X` arrives: proxy2 has forgotten the id, so proxy1 sends no `X`.
    closed_by_proxy2: Arc<AtomicBool>,
    /// When the id was last probed with an empty `D`.
    probed: Option<Instant>,
    /// Extended modes: probes sent since proxy2 was last heard from on this id.
    unanswered: u32,
    /// Extended modes: the connection's count of frames from proxy2 at the last sweep (a
    /// count, not a time: an answer can come within the millisecond of its probe).
    heard: u64,
    /// Frames of this id that came after proxy2's `OK` and before the connection's task
    /// switched it open, as encoded on the wire (at most [`EARLY_FRAMES`]): a server that
    /// speaks first (a banner) has its first `D` right behind the `OK`. Replayed once open.
    early: Vec<Vec<u8>>,
}

/// Frames kept for a connection between proxy2's `OK` and its switch to open: more than
/// proxy2's first flight (its initial congestion window is 10 frames). Past it they are
/// dropped, and the reliable modes resend them.
const EARLY_FRAMES: usize = 32;

/// The ids and the clients waiting for one.
struct Ids {
    pool: IdPool,
    queue: WaitQueue,
    /// Where to hand each waiting client its id, by ticket.
    grants: HashMap<u64, oneshot::Sender<ConnId>>,
    next_ticket: u64,
}

impl Ids {
    /// Hands free ids to waiting clients.
    fn dispatch(&mut self) {
        while self.pool.free() > 0 {
            let Some(waiter) = self.queue.pop_next() else {
                return;
            };
            let id = self.pool.take().expect("an id is free");
            let handed = self
                .grants
                .remove(&waiter.ticket)
                .is_some_and(|grant| grant.send(id).is_ok());
            if !handed {
                self.pool.untake(id);
            }
        }
    }
}

struct Shared {
    link: LinkSocket,
    config: Proxy1Config,
    slots: Mutex<HashMap<ConnId, Slot>>,
    ids: Mutex<Ids>,
    /// Cancelled when proxy1 stops: closing connections then send one `X` and do not wait.
    shutdown: CancellationToken,
    /// Every task proxy1 spawns (a task per client, a writer per open connection).
    tasks: Tasks,
    /// Stop-and-wait: answers to an `X` for an id no longer open.
    stray_closes: Mutex<StrayCloses<ConnId>>,
    /// Extended modes: the final acks of connections that closed cleanly, for an `X` that
    /// comes again because its ack was lost.
    finished: Mutex<FinishedCloses<ConnId>>,
}

impl Shared {
    fn events(&self) -> &EventSink {
        self.link.events()
    }

    fn log(&self, level: Level, message: String) {
        self.events().log(level, Role::Proxy1, message);
    }

    fn conn_event(&self, id: ConnId, state: ConnState, client: SocketAddr) {
        self.events().emit(EventKind::Conn {
            at: Endpoint::Proxy1,
            id,
            state,
            client: Some(client),
        });
    }

    fn tcp_event(&self, id: Option<ConnId>, client: SocketAddr, action: TcpAction) {
        self.events()
            .emit_tcp(Role::Proxy1, Endpoint::Proxy1, id, client, action);
    }

    async fn send(&self, frame: Frame<'_>) {
        if let Err(e) = self.link.send(&frame, self.config.proxy2).await {
            self.log(
                Level::Warn,
                format!(
                    "send of {} to proxy2 {} failed: {e}",
                    frame.kind().label(),
                    self.config.proxy2
                ),
            );
        }
    }

    /// An id now, or a place in the queue: its ticket and where the id will come.
    fn request_id(&self) -> Result<ConnId, (u64, oneshot::Receiver<ConnId>)> {
        let mut ids = self.ids.lock().unwrap();
        if ids.queue.is_empty()
            && let Some(id) = ids.pool.take()
        {
            return Ok(id);
        }
        let (grant, granted) = oneshot::channel();
        ids.next_ticket += 1;
        let ticket = ids.next_ticket;
        ids.queue.push(ticket);
        ids.grants.insert(ticket, grant);
        Err((ticket, granted))
    }

    /// Takes a client out of the queue; an id handed to it meanwhile goes back.
    fn leave_queue(&self, ticket: u64, mut granted: oneshot::Receiver<ConnId>) {
        let mut ids = self.ids.lock().unwrap();
        ids.queue.remove(ticket);
        ids.grants.remove(&ticket);
        if let Ok(id) = granted.try_recv() {
            ids.pool.untake(id);
            ids.dispatch();
        }
    }

    /// Gives an id back to the pool (as the most recently used) and to a waiting client.
    fn release_id(&self, id: ConnId) {
        self.slots.lock().unwrap().remove(&id);
        let mut ids = self.ids.lock().unwrap();
        ids.pool.give_back(id);
        ids.dispatch();
    }
}

/// Serves TCP clients and the link until `shutdown` is cancelled.
pub async fn run(
    listener: TcpListener,
    link: LinkSocket,
    config: Proxy1Config,
    shutdown: CancellationToken,
) {
    run_with_socks5(listener, None, link, config, shutdown).await;
}

/// [`run`], plus a SOCKS5 port beside the plain one: its clients name their destination,
/// which travels to proxy2 inside `C`. Only the extended modes have room for it: in classic
/// and stop-and-wait the SOCKS5 port is closed at once, with an error in the log (the
/// command line refuses that combination before starting).
pub async fn run_with_socks5(
    listener: TcpListener,
    socks5_listener: Option<TcpListener>,
    link: LinkSocket,
    config: Proxy1Config,
    shutdown: CancellationToken,
) {
    run_in(
        Tasks::new(),
        listener,
        socks5_listener,
        link,
        config,
        shutdown,
    )
    .await;
}

/// [`run_with_socks5`] with its tasks spawned in `tasks`, a group of its own (a child of the
/// lab's, so the lab waits for them too), waited for when it stops.
pub async fn run_in(
    tasks: Tasks,
    listener: TcpListener,
    socks5_listener: Option<TcpListener>,
    link: LinkSocket,
    config: Proxy1Config,
    shutdown: CancellationToken,
) {
    if let Ok(addr) = listener.local_addr() {
        link.events().emit(EventKind::RoleUp {
            role: Role::Proxy1,
            addr,
        });
    }
    let socks5_listener = match socks5_listener {
        Some(socks5) if !link.mode().is_extended() => {
            link.events().log(
                Level::Error,
                Role::Proxy1,
                format!(
                    "{}: not serving SOCKS5 on {}",
                    SOCKS5_NEEDS_EXTENDED,
                    socks5
                        .local_addr()
                        .map_or_else(|_| "?".into(), |a| a.to_string())
                ),
            );
            None
        }
        socks5 => socks5,
    };
    if let Some(addr) = socks5_listener.as_ref().and_then(|l| l.local_addr().ok()) {
        let users = match config.socks5.front.users.len() {
            0 => "no authentication".to_string(),
            n => format!("{n} user(s), username/password required"),
        };
        link.events().log(
            Level::Info,
            Role::Proxy1,
            format!("SOCKS5 clients on {addr} ({users})"),
        );
    }
    let ids = link.mode().max_connections();
    let shared = Arc::new(Shared {
        link,
        config,
        slots: Mutex::new(HashMap::new()),
        ids: Mutex::new(Ids {
            pool: IdPool::new(ids),
            queue: WaitQueue::default(),
            grants: HashMap::new(),
            next_ticket: 0,
        }),
        shutdown: shutdown.clone(),
        tasks,
        stray_closes: Mutex::new(StrayCloses::default()),
        finished: Mutex::new(FinishedCloses::default()),
    });
    let mut buf = vec![0u8; RECV_BUFFER];
    let mut sweep = tokio::time::interval(sweep_period(&shared.config));
    // One cancellation future for the whole loop: making a new one per read registers and
    // unregisters a waiter (two lock round trips) for every datagram or TCP read.
    let cancelled = shutdown.cancelled();
    tokio::pin!(cancelled);
    loop {
        tokio::select! {
            () = &mut cancelled => break,
            _ = sweep.tick() => sweep_ids(&shared).await,
            accepted = listener.accept() => match accepted {
                Ok((stream, client)) => {
                    shared.tasks.spawn("proxy1 client", serve_client(shared.clone(), stream, client, shutdown.child_token(), None));
                }
                Err(e) => {
                    shared.log(Level::Warn, format!("accept failed: {}", crate::fd_limit::describe_io_error(&e)));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            accepted = accept_if_any(socks5_listener.as_ref()) => match accepted {
                Ok((stream, client)) => {
                    shared.tasks.spawn("proxy1 socks5 client", serve_socks5_client(shared.clone(), stream, client, shutdown.child_token()));
                }
                Err(e) => {
                    shared.log(Level::Warn, format!("SOCKS5 accept failed: {e}"));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            received = shared.link.recv(&mut buf, Some(shared.config.proxy2)) => match received {
                Ok(Received::Frame { frame, .. }) => on_frame(&shared, frame).await,
                Ok(Received::Dropped) => {}
                // "Connection refused" from a proxy2 that is not there shows up here; the
                // retries of `C` deal with it.
                Err(_) => {}
            },
        }
    }
    drop(listener);
    drop(socks5_listener);
    // Every client task sees the cancellation, sends its X once and ends; waiting for them
    // means the UDP port is free again when this returns (a restart can bind it).
    let left = shared.tasks.wait(SHUTDOWN_GRACE).await;
    if !left.is_empty() {
        shared.log(Level::Warn, format!("stopped without waiting for: {left}"));
    }
    shared
        .events()
        .emit(EventKind::RoleDown { role: Role::Proxy1 });
}

/// How often ids are checked for expiry and probing.
fn sweep_period(config: &Proxy1Config) -> Duration {
    super::proxy2::sweep_period(
        config
            .idle_timeout
            .get()
            .min(config.unused_timeout)
            .min(config.probe_after * 2),
    )
}

/// Switches `id` open (`phase`: `Open` or `Reliable`), then handles the frames that came
/// between proxy2's `OK` and now, in order, as if they arrived now.
async fn switch_open(shared: &Shared, id: ConnId, phase: Phase) {
    let early = shared
        .slots
        .lock()
        .unwrap()
        .get_mut(&id)
        .map(|slot| {
            slot.phase = phase;
            std::mem::take(&mut slot.early)
        })
        .unwrap_or_default();
    for bytes in early {
        if let Ok(frame) = shared.link.mode().decode(&bytes) {
            on_frame(shared, frame).await;
        }
    }
}

async fn on_frame(shared: &Shared, frame: Frame<'_>) {
    let id = frame.id();
    let peer = shared.config.proxy2;
    // Decide under the lock, act (send, report) after releasing it.
    enum Action {
        None,
        Ignore(Ignored),
        AnswerClose,
        /// Stop-and-wait: an `X` for an id already closed here (see below).
        AnswerStrayClose(Seq),
        /// Extended modes: a `D` or `X` for an id not open here (see below).
        AnswerNotOpen(FrameKind, Seq),
        Closed(SocketAddr),
        Forgotten(SocketAddr),
    }
    let action = {
        let mut slots = shared.slots.lock().unwrap();
        match (frame, slots.get_mut(&id)) {
            // Extended modes: proxy2 answers a D or A for a connection it does not have
            // (it restarted) with NOK. Nothing of it is left there: close the client.
            (Frame::ConnectNok { .. }, Some(slot)) if matches!(slot.phase, Phase::Reliable(_)) => {
                slot.closed_by_proxy2.store(true, Ordering::Relaxed);
                slot.stop.cancel();
                Action::Forgotten(slot.client)
            }
            (Frame::ConnectOk { .. } | Frame::ConnectNok { .. }, Some(slot)) => {
                match &mut slot.phase {
                    Phase::Connecting(reply) => {
                        if let Some(reply) = reply.take() {
                            let _ = reply.send(match frame {
                                Frame::ConnectOk { isn, .. } => Ok(isn),
                                _ => Err(frame.reason()),
                            });
                        }
                        Action::None
                    }
                    // A second OK for a re-sent C: harmless.
                    Phase::Open(_) | Phase::Reliable(_) | Phase::Closing => {
                        Action::Ignore(Ignored::Unexpected(frame.kind(), id))
                    }
                }
            }
            // proxy2 answered OK and sent on at once (a banner), while the connection's task
            // has not yet switched the id open: kept, replayed once it has.
            (Frame::Data { .. } | Frame::Ack { .. } | Frame::Close { .. }, Some(slot))
                if matches!(slot.phase, Phase::Connecting(None))
                    && slot.early.len() < EARLY_FRAMES =>
            {
                if let Ok(bytes) = shared.link.mode().to_bytes(&frame) {
                    slot.early.push(bytes);
                }
                Action::None
            }
            (Frame::Data { .. } | Frame::Ack { .. } | Frame::Close { .. }, Some(slot))
                if matches!(slot.phase, Phase::Reliable(_)) =>
            {
                if let Phase::Reliable(conn) = &slot.phase {
                    slot.from_proxy2.touch();
                    conn.on_frame(&frame);
                }
                Action::None
            }
            (Frame::Data { payload, .. }, Some(slot)) => match &slot.phase {
                Phase::Open(_) if payload.is_empty() => Action::None,
                Phase::Open(to_client) => {
                    slot.activity.touch();
                    slot.from_proxy2.touch();
                    match to_client.try_send(ToClient::Data(payload.to_vec())) {
                        Ok(()) => Action::None,
                        Err(_) => Action::Ignore(Ignored::Overflow(id)),
                    }
                }
                Phase::Connecting(_) | Phase::Closing | Phase::Reliable(_) => {
                    Action::Ignore(Ignored::NotOpen(FrameKind::Data, id))
                }
            },
            (Frame::Close { .. }, Some(slot)) => match &slot.phase {
                Phase::Open(to_client) => {
                    slot.closed_by_proxy2.store(true, Ordering::Relaxed);
                    // Queued behind the data that came before it; if the queue is full, stop now.
                    if to_client.try_send(ToClient::Finish).is_err() {
                        slot.stop.cancel();
                    }
                    Action::Closed(slot.client)
                }
                Phase::Connecting(_) | Phase::Closing | Phase::Reliable(_) => {
                    Action::Ignore(Ignored::Unexpected(FrameKind::Close, id))
                }
            },
            // Extended modes: a resend from a connection that finished here (the acks of
            // proxy2's last data were lost, or of its X), or one proxy2 must hear is gone.
            (Frame::Data { seq, .. } | Frame::Close { seq, .. }, None)
                if shared.link.mode().is_extended() =>
            {
                Action::AnswerNotOpen(frame.kind(), seq)
            }
            // Data for an id we do not have open: proxy2 still thinks it is; tell it otherwise.
            (Frame::Data { .. }, None) => Action::AnswerClose,
            // Stop-and-wait: proxy2 resends its X until acked and probes for ours (every copy
            // of ours lost) after our side finished: answer with an ack and an X.
            (Frame::Close { seq, .. }, None)
                if shared.link.mode() == crate::wire::WireMode::StopAndWait =>
            {
                Action::AnswerStrayClose(seq)
            }
            (_, None) => Action::Ignore(Ignored::NotOpen(frame.kind(), id)),
            (Frame::Connect { .. } | Frame::Ack { .. }, Some(_)) => {
                Action::Ignore(Ignored::Unexpected(frame.kind(), id))
            }
        }
    };
    match action {
        Action::None => {}
        Action::Ignore(why) => shared.link.ignore(peer, why),
        Action::AnswerClose => {
            shared
                .link
                .ignore(peer, Ignored::NotOpen(FrameKind::Data, id));
            shared.send(Frame::Close { id, seq: Seq::ZERO }).await;
        }
        Action::AnswerStrayClose(seq) => {
            shared
                .link
                .ignore(peer, Ignored::NotOpen(FrameKind::Close, id));
            let answer =
                shared
                    .stray_closes
                    .lock()
                    .unwrap()
                    .answer(id, id, seq, std::time::Instant::now());
            for frame in answer.into_iter().flatten() {
                shared.send(frame).await;
            }
        }
        Action::AnswerNotOpen(kind, seq) => {
            // A frame the finished connection took gets its final ack again, which covers
            // everything proxy2 sent. Otherwise a `D` means proxy2 holds a connection we do
            // not (we restarted, or gave up on it): `NOK` says so, as proxy2 says it to us. A
            // stray `X` has nothing left to close.
            let again =
                shared
                    .finished
                    .lock()
                    .unwrap()
                    .answer_resend(&id, seq, std::time::Instant::now());
            match again {
                Some(ack) => shared.send(ack.frame(id)).await,
                None => {
                    shared.link.ignore(peer, Ignored::NotOpen(kind, id));
                    if kind == FrameKind::Data {
                        shared.send(Frame::ConnectNok { id, reason: None }).await;
                    }
                }
            }
        }
        Action::Closed(client) => shared.conn_event(id, ConnState::Closing, client),
        Action::Forgotten(client) => shared.log(
            Level::Warn,
            format!(
                "proxy2 no longer has connection {id} (it answered NOK: restarted?): closing client {client}"
            ),
        ),
    }
}

/// What a client did while it waited (for an id, or for proxy2's answer).
enum ClientNews {
    /// It sent its first bytes.
    Sent,
    /// It closed its sending side after sending something: it still waits for an answer.
    HalfClosed,
    /// It hung up (FIN with nothing sent, or a reset).
    Left(CloseKind),
}

/// What a client sent before its connection was open, kept to send once it is.
#[derive(Default)]
struct Lobby {
    stash: Vec<u8>,
    /// The client half-closed.
    eof: bool,
}

impl Lobby {
    /// Reads the client while it waits, so a hang-up is seen at once. Never returns again
    /// after the client's FIN or once [`STASH_LIMIT`] bytes wait (TCP holds the rest).
    async fn watch(&mut self, stream: &TcpStream) -> ClientNews {
        let mut chunk = [0u8; 4096];
        loop {
            if self.eof || self.stash.len() >= STASH_LIMIT {
                return std::future::pending().await;
            }
            if stream.readable().await.is_err() {
                return ClientNews::Left(CloseKind::Rst);
            }
            let room = (STASH_LIMIT - self.stash.len()).min(chunk.len());
            match stream.try_read(&mut chunk[..room]) {
                Ok(0) => {
                    self.eof = true;
                    return if self.stash.is_empty() {
                        ClientNews::Left(CloseKind::Fin)
                    } else {
                        ClientNews::HalfClosed
                    };
                }
                Ok(n) => {
                    let first = self.stash.is_empty();
                    self.stash.extend_from_slice(&chunk[..n]);
                    if first {
                        return ClientNews::Sent;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return ClientNews::Left(CloseKind::Rst),
            }
        }
    }
}

/// A SOCKS5 client whose handshake is done: where it goes, who it is, what it sent after its
/// request, and its access-log record so far.
struct Socks5Request {
    accepted: Accepted,
    /// The destination as the extended `C` carries it.
    encoded: Vec<u8>,
    record: AccessRecord,
    started: std::time::Instant,
}

impl Socks5Request {
    /// Tells the client how its request went; a client that left meanwhile is noted.
    async fn answer(&mut self, stream: &mut TcpStream, outcome: Result<(), Refusal>) {
        if let Err(reason) = outcome {
            self.record.result = AccessResult::Refused;
            self.record.reason = Some(reason.tag().to_string());
        }
        // The bound address (RFC 1928's BND) is proxy2's, out of sight here: 0.0.0.0:0.
        if let Err(e) = socks5::answer(stream, outcome.map(|()| None)).await {
            self.record.detail = Some(format!("the client left before the reply: {e}"));
        }
    }
}

/// Accepts on the SOCKS5 listener, if there is one; never returns without one.
async fn accept_if_any(listener: Option<&TcpListener>) -> std::io::Result<(TcpStream, SocketAddr)> {
    match listener {
        Some(listener) => listener.accept().await,
        None => std::future::pending().await,
    }
}

/// A client of the SOCKS5 port: the handshake (within its deadline), then the same life as
/// a plain client, with the destination in its `C` and the SOCKS5 reply once proxy2 has
/// answered. Every client ends in one access-log record and one log line.
async fn serve_socks5_client(
    shared: Arc<Shared>,
    mut stream: TcpStream,
    client: SocketAddr,
    stop: CancellationToken,
) {
    shared.tcp_event(None, client, TcpAction::Accepted);
    let started = std::time::Instant::now();
    let mut record = AccessRecord::new(client, std::time::SystemTime::now());
    let accepted = tokio::select! {
        () = stop.cancelled() => {
            record.detail = Some("proxy1 stopped".into());
            return finish_record(&shared, record, started);
        }
        accepted = socks5::accept(&mut stream, &shared.config.socks5.front) => accepted,
    };
    match accepted {
        Ok(accepted) => {
            record.user.clone_from(&accepted.user);
            record.destination = Some(accepted.destination.to_string());
            let mut encoded = Vec::new();
            accepted.destination.encode(&mut encoded);
            let request = Socks5Request {
                accepted,
                encoded,
                record,
                started,
            };
            serve_client(shared, stream, client, stop, Some(request)).await;
        }
        Err(rejected) => {
            record.user = rejected.user().map(str::to_string);
            record.result = AccessResult::Rejected;
            record.reason = Some(rejected.tag().to_string());
            record.detail = Some(rejected.to_string());
            // The front has answered where the RFC has an answer; what is left is the close.
            close_politely(&shared, stream, client).await;
            finish_record(&shared, record, started);
        }
    }
}

/// Logs a SOCKS5 connection's record and appends it to the access log.
fn finish_record(shared: &Shared, mut record: AccessRecord, started: std::time::Instant) {
    record.lasted(started.elapsed());
    let level = match record.result {
        AccessResult::Ok => Level::Info,
        AccessResult::Refused | AccessResult::Rejected => Level::Warn,
    };
    shared.log(level, format!("socks5: {}", record.describe()));
    if let Some(log) = &shared.config.socks5.access_log {
        log.record(&record);
    }
}

/// One TCP client from accept to close; `socks5` when it came through the SOCKS5 port.
async fn serve_client(
    shared: Arc<Shared>,
    mut stream: TcpStream,
    client: SocketAddr,
    stop: CancellationToken,
    mut socks5: Option<Socks5Request>,
) {
    if socks5.is_none() {
        shared.tcp_event(None, client, TcpAction::Accepted);
    }
    let _ = stream.set_nodelay(true);
    let mut lobby = Lobby::default();
    if let Some(request) = &mut socks5 {
        // What the client sent right behind its request goes first, like a waiting
        // client's stash.
        lobby.stash = std::mem::take(&mut request.accepted.early_data);
    }
    let Some(id) = acquire_id(&shared, &stream, client, &mut lobby, &stop).await else {
        if let Some(mut request) = socks5 {
            request.record.detail = Some("no free connection id in time".into());
            request
                .answer(&mut stream, Err(Refusal::GeneralFailure))
                .await;
            close_politely(&shared, stream, client).await;
            finish_record(&shared, request.record, request.started);
        } else {
            close_politely(&shared, stream, client).await;
        }
        return;
    };

    let (reply_tx, reply_rx) = oneshot::channel();
    let activity = Arc::new(Activity::default());
    let from_proxy2 = Arc::new(Activity::default());
    let closed_by_proxy2 = Arc::new(AtomicBool::new(false));
    shared.slots.lock().unwrap().insert(
        id,
        Slot {
            client,
            phase: Phase::Connecting(Some(reply_tx)),
            stop: stop.clone(),
            activity: activity.clone(),
            from_proxy2: from_proxy2.clone(),
            closed_by_proxy2: closed_by_proxy2.clone(),
            probed: None,
            unanswered: 0,
            heard: 0,
            early: Vec::new(),
        },
    );
    shared.conn_event(id, ConnState::Connecting, client);
    // After Connecting, which starts the id's new life in the views.
    if let Some(request) = &socks5 {
        shared.events().emit(EventKind::Route {
            at: Endpoint::Proxy1,
            id,
            destination: request.accepted.destination.clone(),
            user: request.accepted.user.clone(),
            client: Some(client),
        });
    }
    // Whether proxy2 may have the id open, so that an X must tell it to forget it.
    // The extended modes' connection generation on the wire: a random first sequence number.
    let our_isn = if shared.link.mode().is_extended() {
        Seq(rand::random())
    } else {
        Seq::ZERO
    };
    let destination = socks5
        .as_ref()
        .map(|request| DestinationRef::exactly(&request.encoded).expect("encoded here"));
    let request = ConnectRequest {
        id,
        isn: our_isn,
        destination,
    };
    let opening = open(&shared, request, reply_rx, &stream, &mut lobby, &stop).await;
    let proxy2_may_have_it = match opening {
        Opening::Ok(peer_isn) if shared.link.mode().is_reliable() => {
            // The client hears "succeeded" only now that proxy2 has opened the destination.
            if let Some(request) = &mut socks5 {
                request.answer(&mut stream, Ok(())).await;
                request.record.result = AccessResult::Ok;
            }
            let base = shared
                .config
                .transport
                .unwrap_or_else(|| TransportConfig::for_mode(shared.link.mode()));
            let config = TransportConfig {
                initial_seq: our_isn,
                peer_initial_seq: peer_isn,
                // A sealed link carries less per frame (the seal's header and tag).
                max_payload: base.max_payload.min(shared.link.max_payload()),
                ..base
            };
            let conn = Arc::new(ReliableConn::new(Transport::new(
                shared.link.mode(),
                config,
            )));
            switch_open(&shared, id, Phase::Reliable(conn.clone())).await;
            shared.conn_event(id, ConnState::Open, client);
            let side = PumpSide {
                link: &shared.link,
                peer: shared.config.proxy2,
                id,
                role: Role::Proxy1,
                events: shared.events(),
                stop: &stop,
                activity: &activity,
                key: TallyKey {
                    id,
                    local_isn: our_isn,
                    peer_isn,
                    client: Some(client),
                },
            };
            let end = reliable::pump(&conn, side, stream, &lobby.stash, lobby.eof).await;
            if let PumpEnd::GaveUp(why) = end {
                shared.log(
                    Level::Warn,
                    format!("connection {id}: {why}: closing client {client}"),
                );
            }
            // Before the slot goes: a repeat of proxy2's X finds one or the other.
            if let Some(ack) = conn.closing_ack() {
                let now = std::time::Instant::now();
                shared.finished.lock().unwrap().remember(id, ack, now);
            }
            if let Some(request) = &mut socks5 {
                let stats = conn.stats();
                request.record.bytes_up = stats.bytes_acked;
                request.record.bytes_down = stats.bytes_delivered;
                match end {
                    PumpEnd::Done => {}
                    PumpEnd::GaveUp(why) => request.record.detail = Some(why.to_string()),
                    PumpEnd::Reset => {
                        request.record.detail = Some("ended by a reset".to_string());
                    }
                    PumpEnd::Stopped => request.record.detail = Some("proxy1 stopped".into()),
                }
            }
            // The transport closed its side in order; nothing more to tell proxy2.
            false
        }
        Opening::Ok(_) => {
            // Not reached with SOCKS5 (extended modes only), but a client is never left
            // without its reply.
            if let Some(request) = &mut socks5 {
                request.answer(&mut stream, Ok(())).await;
                request.record.result = AccessResult::Ok;
            }
            let conn = Conn {
                shared: &shared,
                id,
                client,
                stop: &stop,
                activity: &activity,
                from_proxy2: &from_proxy2,
            };
            pump(conn, stream, lobby).await;
            !closed_by_proxy2.load(Ordering::Relaxed)
        }
        Opening::Refused(reason) => {
            let said = reason.map_or_else(String::new, |r| format!(" ({r})"));
            let what = match &socks5 {
                Some(request) => format!("destination {}", request.accepted.destination),
                None => "the server is unreachable".to_string(),
            };
            shared.log(
                Level::Warn,
                format!(
                    "proxy2 answered NOK{said} for connection {id}: {what}; closing client {client}"
                ),
            );
            if let Some(reason) = reason {
                shared.events().emit(EventKind::Refused {
                    at: Endpoint::Proxy1,
                    id,
                    reason,
                    detail: format!("proxy2 answered NOK: {reason}"),
                });
            }
            shared.conn_event(id, ConnState::Refused, client);
            if let Some(request) = &mut socks5 {
                let reason = reason.unwrap_or(Refusal::GeneralFailure);
                request.record.detail = Some(format!("proxy2 answered NOK: {reason}"));
                request.answer(&mut stream, Err(reason)).await;
            }
            close_politely(&shared, stream, client).await;
            false
        }
        Opening::Unanswered => {
            let (proxy2, tries) = (shared.config.proxy2, shared.config.connect_attempts);
            // On a sealed link, say why no answer authenticated (see link/seal.rs).
            let message = match shared.link.seal_status() {
                Some(seal) if !seal.established && seal.rejects_received > 0 => format!(
                    "proxy2 rejects our frames: wrong key? (proxy2 at {proxy2} sent {} rejects and no authenticated answer to C{id} after {tries} tries): closing client {client}",
                    seal.rejects_received
                ),
                Some(seal) if !seal.established => format!(
                    "no authenticated answer from proxy2 at {proxy2} to C{id} after {tries} tries (is it down, or not sealed?): closing client {client}"
                ),
                _ => format!(
                    "proxy2 at {proxy2} did not answer C{id} after {tries} tries: closing client {client}"
                ),
            };
            shared.log(Level::Error, message);
            shared.conn_event(id, ConnState::Unanswered, client);
            if let Some(request) = &mut socks5 {
                // proxy2 out of reach is the SOCKS server failing, not the destination.
                request.record.detail = Some(format!("proxy2 did not answer C{id}"));
                request
                    .answer(&mut stream, Err(Refusal::GeneralFailure))
                    .await;
            }
            close_politely(&shared, stream, client).await;
            // A C may have arrived with only its OK lost.
            true
        }
        Opening::ClientLeft(how) => {
            shared.tcp_event(Some(id), client, TcpAction::PeerClosed(how));
            shared.log(
                Level::Info,
                format!("client {client} hung up while connection {id} was opening"),
            );
            if let Some(request) = &mut socks5 {
                request.record.detail = Some("the client left before proxy2 answered".into());
            }
            true
        }
        Opening::Stopped => {
            if let Some(request) = &mut socks5 {
                request.record.detail = Some("proxy1 stopped".into());
            }
            true
        }
    };
    if proxy2_may_have_it {
        send_close(&shared, id, our_isn, client).await;
    }
    shared.release_id(id);
    shared.conn_event(id, ConnState::Free, client);
    if let Some(request) = socks5 {
        finish_record(&shared, request.record, request.started);
    }
}

/// Waits for an id, in arrival order (a client that has sent data first), for a bounded
/// time, watching the client meanwhile. `None` if it got none (and was told why).
async fn acquire_id(
    shared: &Shared,
    stream: &TcpStream,
    client: SocketAddr,
    lobby: &mut Lobby,
    stop: &CancellationToken,
) -> Option<ConnId> {
    let (ticket, mut granted) = match shared.request_id() {
        Ok(id) => return Some(id),
        Err(waiting) => waiting,
    };
    shared.events().emit(EventKind::WaitingForId { client });
    shared.log(
        Level::Info,
        format!(
            "all {} ids busy: client {client} waits up to {:?}",
            shared.link.mode().max_connections(),
            shared.config.id_wait
        ),
    );
    let deadline = tokio::time::sleep(shared.config.id_wait);
    tokio::pin!(deadline);
    let why = loop {
        tokio::select! {
            () = stop.cancelled() => break None,
            () = &mut deadline => break Some(format!(
                "client {client} got no free id within {:?}: closing it",
                shared.config.id_wait
            )),
            id = &mut granted => match id {
                Ok(id) => return Some(id),
                Err(_) => break None,
            },
            news = lobby.watch(stream) => match news {
                ClientNews::Sent => shared.ids.lock().unwrap().queue.mark_ready(ticket),
                ClientNews::HalfClosed => {}
                ClientNews::Left(how) => {
                    shared.tcp_event(None, client, TcpAction::PeerClosed(how));
                    break Some(format!(
                        "client {client} hung up ({}) while waiting for an id: it leaves the queue",
                        how.label()
                    ));
                }
            },
        }
    };
    shared.leave_queue(ticket, granted);
    shared.events().emit(EventKind::WaitGaveUp { client });
    if let Some(why) = why {
        shared.log(Level::Warn, why);
    }
    None
}

/// proxy2's answer to `C`: `OK` with its initial sequence number, or `NOK` with its reason
/// (if it gave one).
type Answer = Result<Seq, Option<Refusal>>;

/// How opening a connection went.
enum Opening {
    /// `OK`, with proxy2's initial sequence number.
    Ok(Seq),
    /// `NOK`, with the reason proxy2 gave, if any.
    Refused(Option<Refusal>),
    Unanswered,
    ClientLeft(CloseKind),
    Stopped,
}

/// What each `C` of one connection says.
struct ConnectRequest<'a> {
    id: ConnId,
    isn: Seq,
    /// A SOCKS5 client's destination; `None` for proxy2's fixed server.
    destination: Option<DestinationRef<'a>>,
}

/// Sends `C` until proxy2 answers, watching the client meanwhile.
async fn open(
    shared: &Shared,
    request: ConnectRequest<'_>,
    mut reply: oneshot::Receiver<Answer>,
    stream: &TcpStream,
    lobby: &mut Lobby,
    stop: &CancellationToken,
) -> Opening {
    let ConnectRequest {
        id,
        isn,
        destination,
    } = request;
    for _ in 0..shared.config.connect_attempts.max(1) {
        shared
            .send(Frame::Connect {
                id,
                isn,
                destination,
            })
            .await;
        let retry = tokio::time::sleep(shared.config.connect_retry);
        tokio::pin!(retry);
        loop {
            tokio::select! {
                () = stop.cancelled() => return Opening::Stopped,
                answer = &mut reply => return match answer {
                    Ok(Ok(isn)) => Opening::Ok(isn),
                    Ok(Err(reason)) => Opening::Refused(reason),
                    Err(_) => Opening::Stopped,
                },
                news = lobby.watch(stream) => match news {
                    // Extended modes: proxy2 may have opened already, and only a close in
                    // sequence ends its side; so go on opening, and the pump closes at once
                    // (the lobby keeps the FIN). A reset still abandons the connection.
                    ClientNews::Left(CloseKind::Fin) if shared.link.mode().is_extended() => {
                        continue;
                    }
                    ClientNews::Left(how) => return Opening::ClientLeft(how),
                    ClientNews::Sent | ClientNews::HalfClosed => continue,
                },
                () = &mut retry => break,
            }
        }
    }
    Opening::Unanswered
}

/// Sends `X` for an id proxy1 is closing: a few times in classic mode, where nothing
/// acknowledges it, holding the id meanwhile so that no new connection takes it while an
/// `X` for the old one may still be on its way. Once when proxy1 itself is stopping.
///
/// `seq` is our initial sequence number: nothing was sent, so that is where our close goes
/// in the extended modes (an `X` anywhere else is outside proxy2's window and ignored); zero
/// in the course's modes, as before.
async fn send_close(shared: &Shared, id: ConnId, seq: Seq, client: SocketAddr) {
    if let Some(slot) = shared.slots.lock().unwrap().get_mut(&id) {
        slot.phase = Phase::Closing;
    }
    shared.conn_event(id, ConnState::Closing, client);
    for attempt in 0..shared.config.close_attempts.max(1) {
        if attempt > 0 {
            tokio::select! {
                () = shared.shutdown.cancelled() => return,
                () = tokio::time::sleep(shared.config.close_retry) => {}
            }
        }
        shared.send(Frame::Close { id, seq }).await;
    }
}

/// Closes a client that is not (or no longer) served: a FIN, and its unread bytes read
/// first, since closing a socket with unread data sends a RST instead.
async fn close_politely(shared: &Shared, mut stream: TcpStream, client: SocketAddr) {
    let _ = stream.shutdown().await;
    let mut drained = 0usize;
    let mut chunk = [0u8; 4096];
    loop {
        match stream.try_read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
        if drained > STASH_LIMIT {
            shared.log(
                Level::Info,
                format!("client {client} keeps sending while being closed: it may see a RST"),
            );
            break;
        }
    }
    shared.tcp_event(None, client, TcpAction::Closed(CloseKind::Fin));
}

/// An open connection, as its pump needs it.
struct Conn<'a> {
    shared: &'a Arc<Shared>,
    id: ConnId,
    client: SocketAddr,
    stop: &'a CancellationToken,
    activity: &'a Activity,
    from_proxy2: &'a Activity,
}

/// Carries an open connection's bytes both ways until the client or proxy2 closes it, or
/// proxy1 ends it. The caller sends `X` afterwards, unless proxy2 closed it.
async fn pump(conn: Conn<'_>, stream: TcpStream, lobby: Lobby) {
    let Conn {
        shared,
        id,
        client,
        stop,
        activity,
        from_proxy2,
    } = conn;
    let (to_client_tx, mut to_client_rx) = mpsc::channel(shared.config.queue_frames);
    let finish = to_client_tx.clone();
    switch_open(shared, id, Phase::Open(to_client_tx)).await;
    shared.conn_event(id, ConnState::Open, client);
    let (mut from_client, mut to_client) = stream.into_split();

    // Writer: proxy2's data to the client, then a FIN when the connection is finished. A
    // failed write (the client is gone) stops the whole connection.
    let writer_shared = shared.clone();
    let writer_stop = stop.clone();
    let writer = shared.tasks.spawn("proxy1 writer", async move {
        let cancelled = writer_stop.cancelled();
        tokio::pin!(cancelled);
        let mut queued = Vec::with_capacity(super::FRAMES_PER_WRITE);
        let mut scratch = Vec::new();
        'serve: loop {
            let received = tokio::select! {
                () = &mut cancelled => break,
                received = to_client_rx.recv_many(&mut queued, super::FRAMES_PER_WRITE) => received,
            };
            // Data queued before the finish goes out (in one write), then the FIN.
            let finished_at = queued
                .iter()
                .position(|message| matches!(message, ToClient::Finish));
            let data = &queued[..finished_at.unwrap_or(queued.len())];
            if !data.is_empty() {
                match super::write_coalesced(&mut to_client, data, &mut scratch).await {
                    Ok(n) => writer_shared.tcp_event(Some(id), client, TcpAction::Wrote(n)),
                    Err(e) => {
                        writer_shared.log(
                            Level::Info,
                            format!("connection {id}: writing to client {client} failed ({e}): closing it"),
                        );
                        break 'serve;
                    }
                }
            }
            queued.clear();
            if received == 0 || finished_at.is_some() {
                let _ = to_client.shutdown().await;
                writer_shared.tcp_event(Some(id), client, TcpAction::Closed(CloseKind::Fin));
                break;
            }
        }
        writer_stop.cancel();
    });

    let max_payload = shared.link.max_payload();
    // What the client sent while it waited goes first.
    for payload in lobby.stash.chunks(max_payload) {
        activity.touch();
        shared
            .send(Frame::Data {
                id,
                seq: Seq::ZERO,
                payload,
            })
            .await;
    }
    let half_closed =
        lobby.eof || read_client(shared, id, client, &mut from_client, stop, activity).await;
    if half_closed && !stop.is_cancelled() {
        linger(shared, stop, from_proxy2).await;
        // The FIN follows what is queued; a full queue can't take it, so stop instead.
        if finish.try_send(ToClient::Finish).is_err() {
            stop.cancel();
        }
    } else {
        stop.cancel();
    }
    let _ = writer.await;
    stop.cancel();
}

/// Reads the client into `D` frames until it closes or the connection is stopped; true if
/// the client half-closed (FIN), false otherwise (a reset, or stopped).
async fn read_client(
    shared: &Shared,
    id: ConnId,
    client: SocketAddr,
    from_client: &mut tokio::net::tcp::OwnedReadHalf,
    stop: &CancellationToken,
    activity: &Activity,
) -> bool {
    let max_payload = shared.link.max_payload();
    let mut buf = vec![0u8; max_payload * super::FRAMES_PER_READ];
    // One cancellation future for the whole loop: making a new one per read registers and
    // unregisters a waiter (two lock round trips) for every datagram or TCP read.
    let cancelled = stop.cancelled();
    tokio::pin!(cancelled);
    loop {
        let read = tokio::select! {
            () = &mut cancelled => return false,
            read = from_client.read(&mut buf) => read,
        };
        if let Some(how) = peer_close_kind(&read) {
            shared.tcp_event(Some(id), client, TcpAction::PeerClosed(how));
            return how == CloseKind::Fin;
        }
        let n = read.unwrap_or(0);
        activity.touch();
        shared.tcp_event(Some(id), client, TcpAction::Read(n));
        for payload in buf[..n].chunks(max_payload) {
            shared
                .send(Frame::Data {
                    id,
                    seq: Seq::ZERO,
                    payload,
                })
                .await;
        }
    }
}

/// After the client's FIN: waits until proxy2 has sent nothing for the linger time (counted
/// from the FIN at the earliest), or the connection is stopped (proxy2's `X`, a failed
/// write, proxy1 stopping).
async fn linger(shared: &Shared, stop: &CancellationToken, from_proxy2: &Activity) {
    let fin_at = Instant::now();
    loop {
        let last_data = Instant::from_std(from_proxy2.last_touch());
        let deadline = fin_at.max(last_data) + shared.config.half_close_linger;
        if Instant::now() >= deadline {
            return;
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep_until(deadline) => {}
        }
    }
}

/// Ends connections that have expired (idle, or never used) and probes the ones that have
/// been quiet for a while.
async fn sweep_ids(shared: &Shared) {
    let config = &shared.config;
    let now = Instant::now();
    let mut expired = Vec::new();
    let mut probes = Vec::new();
    let mut keepalives = Vec::new();
    // A connection that never carried a byte gives its id back only to a client that waits
    // for one: an idle lab client (or a telnet left open) is no harm while ids are free.
    let unused_timeout = if shared.ids.lock().unwrap().queue.is_empty() {
        Duration::MAX
    } else {
        config.unused_timeout
    };
    {
        let mut slots = shared.slots.lock().unwrap();
        for (id, slot) in slots.iter_mut() {
            if let Phase::Reliable(conn) = &slot.phase {
                // The transport keeps its own timers; the idle timeout and the keepalive
                // apply here.
                if slot.activity.idle_for() >= config.idle_timeout.get() {
                    slot.stop.cancel();
                    expired.push((*id, slot.client, "idle"));
                    continue;
                }
                let heard = conn.frames_received();
                if heard != slot.heard {
                    slot.heard = heard;
                    slot.unanswered = 0;
                }
                let due = slot.from_proxy2.idle_for() >= config.probe_after
                    && slot
                        .probed
                        .is_none_or(|at| now.duration_since(at) >= config.probe_after);
                if !due {
                    continue;
                }
                if slot.unanswered >= config.keepalive_probes {
                    slot.stop.cancel();
                    expired.push((*id, slot.client, "unanswered"));
                } else if let Some(seq) = conn.keepalive_seq() {
                    slot.probed = Some(now);
                    slot.unanswered += 1;
                    keepalives.push((*id, seq));
                }
                continue;
            }
            if !matches!(slot.phase, Phase::Open(_)) {
                continue;
            }
            if let Some(why) = slot
                .activity
                .expired(config.idle_timeout.get(), unused_timeout)
            {
                slot.stop.cancel();
                expired.push((*id, slot.client, why));
            } else if slot.activity.idle_for() >= config.probe_after
                && slot
                    .probed
                    .is_none_or(|at| now.duration_since(at) >= config.probe_after)
            {
                slot.probed = Some(now);
                probes.push(*id);
            }
        }
    }
    for (id, client, why) in expired {
        if why == "unanswered" {
            shared.log(
                Level::Warn,
                format!(
                    "connection {id} (client {client}): proxy2 answered none of {} keepalive probes ({:?} apart): closing it",
                    config.keepalive_probes, config.probe_after
                ),
            );
            continue;
        }
        let timeout = if why == "idle" {
            config.idle_timeout.get()
        } else {
            config.unused_timeout
        };
        shared.log(
            Level::Info,
            format!("connection {id} (client {client}) {why} for {timeout:?}: closing it"),
        );
    }
    for (id, seq) in keepalives {
        // An empty D that proxy2's transport has seen already: it acks it, or, if it no
        // longer has the connection, answers NOK.
        shared
            .send(Frame::Data {
                id,
                seq,
                payload: &[],
            })
            .await;
    }
    for id in probes {
        // An empty D: proxy2 answers X if it no longer has the id; a course proxy2 writes
        // zero bytes to its server, which is nothing.
        shared
            .send(Frame::Data {
                id,
                seq: Seq::ZERO,
                payload: &[],
            })
            .await;
    }
}
