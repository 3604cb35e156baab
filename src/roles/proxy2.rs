//! proxy2: the far end of the UDP link. For every tunnel connection a proxy1 opens with `C`,
//! it opens one TCP connection to the server and pumps bytes both ways as `D` frames.
//!
//! Several proxy1s can share one proxy2: connections are keyed by the proxy1's UDP source
//! address *and* the id, on one socket, so two proxy1s starting at once cannot be mixed up
//! (the course's fork-per-client proxy2 could misroute a newcomer's first datagram).
//!
//! Classic frames carry nothing but an id, so the same id is reused by one connection after
//! another. Three rules keep them apart:
//! - a `C` for an id whose connection has carried data is a new connection, not a re-send
//!   (its `X` was lost): the old server connection is closed and a new one opened;
//! - every connection has a generation, and a closing old one can only remove itself, never
//!   a newer connection on the same id;
//! - a replacing connection answers `OK` only once the old one's task has stopped, so no
//!   `D` of the old server connection can follow that `OK`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{LogThrottle, peer_close_kind};
use crate::destination::{Destination, Refusal as Reason};
use crate::event::{CloseKind, ConnState, EventKind, EventSink, Ignored, Level, TcpAction};
use crate::link::{LinkSocket, RECV_BUFFER, Received};
use crate::roles::dialers::ResolverDialer;
use crate::tasks::{SHUTDOWN_GRACE, Tasks};
use crate::topology::{Endpoint, Role};
use crate::transport::stop_and_wait::StrayCloses;
use crate::transport::totals::TallyKey;
use crate::transport::{OutFrame, Transport, TransportConfig};
use crate::tunnel::activity::Activity;
use crate::tunnel::admission::{Admission, ConnKey, Decision, Limits, Refusal};
use crate::tunnel::finished::FinishedCloses;
use crate::tunnel::reliable::{self, PumpEnd, PumpSide, ReliableConn};
use crate::wire::{ConnId, Frame, FrameKind, Seq, WireMode};

/// How proxy2 behaves; [`Proxy2Config::new`] gives the defaults.
#[derive(Clone, Debug)]
pub struct Proxy2Config {
    /// The server every tunnel connection is opened to.
    pub server: SocketAddr,
    /// How long a TCP connect to the server may take before the answer is `NOK`.
    pub connect_timeout: Duration,
    /// A connection with no traffic either way for this long is closed (`X` to proxy1),
    /// so an id whose `X` was lost does not stay taken forever.
    /// Changeable while the role runs (it is read at every sweep).
    pub idle_timeout: super::IdleTimeout,
    /// A connection that has carried no byte either way, and that its proxy1 has not
    /// probed, for this long is closed: a `C` nobody follows up (a flood, a proxy1 that
    /// died) holds a server connection only this long. A live proxy1 probes its idle ids
    /// every second, so its connections stay.
    pub unused_timeout: Duration,
    /// `D` frames queued toward one slow server connection before classic mode drops them.
    pub queue_frames: usize,
    /// Who may open connections, and how many.
    pub limits: Limits,
    /// The reliable modes' window and timers; the mode's defaults when `None`.
    pub transport: Option<TransportConfig>,
    /// Opens the destinations that an extended `C` names (a SOCKS5 client's choice at
    /// proxy1): resolves names here, applies `--allow`/`--deny`, tries every address. A `C`
    /// without a destination opens [`Proxy2Config::server`], which the rules do not judge.
    pub dialer: ResolverDialer,
}

impl Proxy2Config {
    pub fn new(server: SocketAddr) -> Self {
        Proxy2Config {
            server,
            connect_timeout: Duration::from_secs(3),
            idle_timeout: Duration::from_mins(5).into(),
            unused_timeout: Duration::from_secs(10),
            queue_frames: 1024,
            limits: Limits::default(),
            transport: None,
            dialer: ResolverDialer::default(),
        }
    }
}

enum SlotState {
    /// The TCP connect to the server is under way; a duplicate `C` is ignored meanwhile,
    /// since the `OK` or `NOK` follows anyway.
    Connecting,
    /// Data flows; `D` payloads go to the server through this queue.
    Open { to_server: mpsc::Sender<Vec<u8>> },
    /// A reliable mode's connection: its frames go to its transport.
    Reliable(Arc<ReliableConn>),
}

struct Slot {
    /// Tells this connection from earlier and later ones on the same key.
    generation: u64,
    state: SlotState,
    /// Cancelled when the connection must end (an `X`, idle, shutdown, replaced).
    stop: CancellationToken,
    /// Cancelled when the connection's task has ended.
    ended: CancellationToken,
    activity: Arc<Activity>,
    /// The first sequence number proxy1 put in its `C` (extended modes; zero otherwise): a
    /// `C` with another one is a new connection.
    peer_isn: Seq,
    /// The first sequence number this side sends, put in its `OK`.
    our_isn: Seq,
}

/// The connection table and the limits' bookkeeping, under one lock.
struct Table {
    slots: HashMap<ConnKey, Slot>,
    admission: Admission,
    next_generation: u64,
}

impl Table {
    /// Removes a connection and stops its task; the slot if it was there.
    fn remove(&mut self, key: ConnKey) -> Option<Slot> {
        let slot = self.slots.remove(&key)?;
        self.admission.released(key);
        slot.stop.cancel();
        Some(slot)
    }
}

struct Shared {
    link: LinkSocket,
    config: Proxy2Config,
    table: Mutex<Table>,
    /// One log line per second about refused `C`s, however many there are.
    refusals_logged: LogThrottle,
    /// Every task of every connection: awaited on shutdown, so that the UDP port is free
    /// again when `run` returns.
    tasks: Tasks,
    /// Stop-and-wait: answers to an `X` for a connection no longer open.
    stray_closes: Mutex<StrayCloses<ConnKey>>,
    /// Extended modes: the final acks of connections that closed cleanly, for an `X` that
    /// comes again because its ack was lost.
    finished: Mutex<FinishedCloses<ConnKey>>,
}

impl Shared {
    fn events(&self) -> &EventSink {
        self.link.events()
    }

    fn conn_event(&self, (peer, id): ConnKey, state: ConnState) {
        self.events().emit(EventKind::Conn {
            at: Endpoint::Proxy2,
            id,
            state,
            client: Some(peer),
        });
    }

    fn tcp_event(&self, id: ConnId, action: TcpAction) {
        self.tcp_event_with(id, self.config.server, action);
    }

    /// A TCP event of the connection to `peer` (a SOCKS5 client's destination, or the server).
    fn tcp_event_with(&self, id: ConnId, peer: SocketAddr, action: TcpAction) {
        self.events()
            .emit_tcp(Role::Proxy2, Endpoint::Proxy2, Some(id), peer, action);
    }

    fn log(&self, level: Level, message: String) {
        self.events().log(level, Role::Proxy2, message);
    }

    /// Sends a frame; a failed send is reported, since the link itself stays usable.
    async fn send(&self, frame: Frame<'_>, to: SocketAddr) {
        if let Err(e) = self.link.send(&frame, to).await {
            self.log(
                Level::Warn,
                format!("send of {} to {to} failed: {e}", frame.kind().label()),
            );
        }
    }

    /// Removes the connection `key` if it is still generation `generation` (a newer one on
    /// the same id is left alone) and stops its task; true if it was removed.
    fn forget_generation(&self, key: ConnKey, generation: u64) -> bool {
        let mut table = self.table.lock().unwrap();
        if table.slots.get(&key).map(|slot| slot.generation) != Some(generation) {
            return false;
        }
        table.remove(key).is_some()
    }
}

/// Serves the link until `shutdown` is cancelled.
pub async fn run(link: LinkSocket, config: Proxy2Config, shutdown: CancellationToken) {
    run_in(Tasks::new(), link, config, shutdown).await;
}

/// [`run`] with its tasks spawned in `tasks`, a group of its own (a child of the lab's, so
/// the lab waits for them too), waited for when it stops.
pub async fn run_in(
    tasks: Tasks,
    link: LinkSocket,
    config: Proxy2Config,
    shutdown: CancellationToken,
) {
    link.events().emit(EventKind::RoleUp {
        role: Role::Proxy2,
        addr: link.local_addr(),
    });
    let shared = Arc::new(Shared {
        link,
        table: Mutex::new(Table {
            slots: HashMap::new(),
            admission: Admission::new(config.limits.clone()),
            next_generation: 0,
        }),
        config,
        refusals_logged: LogThrottle::new(Duration::from_secs(1)),
        tasks,
        stray_closes: Mutex::new(StrayCloses::default()),
        finished: Mutex::new(FinishedCloses::default()),
    });
    let mut buf = vec![0u8; RECV_BUFFER];
    let mut sweep = tokio::time::interval(sweep_period(
        shared
            .config
            .idle_timeout
            .get()
            .min(shared.config.unused_timeout),
    ));
    // One cancellation future for the whole loop: making a new one per read registers and
    // unregisters a waiter (two lock round trips) for every datagram or TCP read.
    let cancelled = shutdown.cancelled();
    tokio::pin!(cancelled);
    loop {
        tokio::select! {
            () = &mut cancelled => break,
            _ = sweep.tick() => reclaim_expired(&shared).await,
            received = shared.link.recv(&mut buf, None) => match received {
                Ok(Received::Frame { frame, peer }) => {
                    on_frame(&shared, frame, peer, &shutdown).await;
                }
                Ok(Received::Dropped) => {}
                // ICMP errors from earlier sends surface here on some systems; keep serving.
                Err(e) => shared.log(Level::Warn, format!("receive failed: {e}")),
            },
        }
    }
    for (_, slot) in shared.table.lock().unwrap().slots.drain() {
        slot.stop.cancel();
    }
    let left = shared.tasks.wait(SHUTDOWN_GRACE).await;
    if !left.is_empty() {
        shared.log(Level::Warn, format!("stopped without waiting for: {left}"));
    }
    shared
        .events()
        .emit(EventKind::RoleDown { role: Role::Proxy2 });
}

/// How often expired connections are looked for: often enough to reclaim close to the
/// timeout.
pub(crate) fn sweep_period(timeout: Duration) -> Duration {
    (timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(5))
}

/// What a `C` leads to, decided under the table's lock.
enum OnConnect {
    /// Opening (a new connection, or a replacement for one whose `X` was lost).
    Opening {
        replaced: bool,
    },
    /// A re-sent `C` for a connection that is open and has carried nothing (or, in the
    /// extended modes, carries the same initial sequence number): say `OK` again.
    RepeatOk(Seq),
    /// A re-sent `C` while the server connect is under way: the answer follows anyway.
    Pending,
    Refused(Refusal),
}

async fn on_frame(
    shared: &Arc<Shared>,
    frame: Frame<'_>,
    peer: SocketAddr,
    shutdown: &CancellationToken,
) {
    let id = frame.id();
    let key = (peer, id);
    match frame {
        Frame::Connect {
            isn, destination, ..
        } => match on_connect(
            shared,
            key,
            isn,
            destination.map(|d| d.to_destination()),
            shutdown,
        ) {
            OnConnect::Opening { replaced } => {
                if replaced {
                    shared.log(
                        Level::Info,
                        format!(
                            "C{id} from {peer} for a connection that has carried data: its X was lost; \
                             closing the old server connection and opening a new one"
                        ),
                    );
                }
            }
            // Our OK was probably lost, so say it again.
            OnConnect::RepeatOk(isn) => shared.send(Frame::ConnectOk { id, isn }, peer).await,
            OnConnect::Pending => {}
            OnConnect::Refused(why) => {
                shared.link.stats().refused.fetch_add(1, Ordering::Relaxed);
                if let Some(held) = shared.refusals_logged.allow() {
                    let more = if held > 0 {
                        format!(" ({held} more refused since the last such line)")
                    } else {
                        String::new()
                    };
                    shared.log(
                        Level::Warn,
                        format!(
                            "refused C{id} from {peer}: {}; answering NOK{more}",
                            why.describe()
                        ),
                    );
                }
                let reason = Some(Reason::GeneralFailure);
                shared.send(Frame::ConnectNok { id, reason }, peer).await;
            }
        },
        Frame::Data { payload, .. } => {
            let queue = {
                let mut table = shared.table.lock().unwrap();
                let first_bytes = table.slots.get(&key).map(|slot| {
                    // An empty `D` is proxy1's probe ("do you still have this id?"): proxy1
                    // still holds the connection, so it stays, but it has carried nothing.
                    if payload.is_empty() {
                        slot.activity.keepalive();
                        return false;
                    }
                    let first = !slot.activity.carried();
                    slot.activity.touch();
                    first
                });
                if first_bytes == Some(true) {
                    table.admission.used(key);
                }
                table.slots.get(&key).map(|slot| match &slot.state {
                    SlotState::Open { to_server } => Some(Ok(to_server.clone())),
                    SlotState::Reliable(conn) => Some(Err(conn.clone())),
                    SlotState::Connecting => None,
                })
            };
            let queue = match queue {
                Some(Some(Err(conn))) => {
                    conn.on_frame(&frame);
                    return;
                }
                Some(Some(Ok(to_server))) => Some(Some(to_server)),
                Some(None) => Some(None),
                None => None,
            };
            match queue {
                Some(Some(_)) if payload.is_empty() => {}
                Some(Some(to_server)) => {
                    if to_server.try_send(payload.to_vec()).is_err() {
                        shared.link.ignore(peer, Ignored::Overflow(id));
                    }
                }
                Some(None) => shared
                    .link
                    .ignore(peer, Ignored::NotOpen(FrameKind::Data, id)),
                None => {
                    shared
                        .link
                        .ignore(peer, Ignored::NotOpen(FrameKind::Data, id));
                    // Extended modes: a resend from a connection that finished here (the
                    // acks of proxy1's last data were lost): its final ack covers it.
                    if let Frame::Data { seq, .. } = frame
                        && let Some(ack) = finished_answer(shared, key, seq)
                    {
                        shared.send(ack.frame(id), peer).await;
                        return;
                    }
                    // Data (or a probe) for a connection we do not have: tell proxy1 it is gone.
                    shared.send(forgotten(shared, id), peer).await;
                }
            }
        }
        Frame::Close { .. } | Frame::Ack { .. } if reliable_conn(shared, key).is_some() => {
            if let Some(conn) = reliable_conn(shared, key) {
                conn.on_frame(&frame);
            }
        }
        Frame::Close { seq, .. } => {
            let removed = shared.table.lock().unwrap().remove(key).is_some();
            if removed {
                shared.conn_event(key, ConnState::Free);
            } else {
                shared
                    .link
                    .ignore(peer, Ignored::NotOpen(FrameKind::Close, id));
                // Extended modes: the ack of proxy1's X was lost after we finished; it
                // resends that X, and gets the same ack again.
                if let Some(ack) = finished_answer(shared, key, seq) {
                    shared.send(ack.frame(id), peer).await;
                }
                // Stop-and-wait: proxy1 resends its X until acked and probes for ours (every
                // copy of ours lost) after our side finished: answer with an ack and an X.
                if shared.link.mode() == WireMode::StopAndWait {
                    let answer = shared.stray_closes.lock().unwrap().answer(
                        key,
                        id,
                        seq,
                        std::time::Instant::now(),
                    );
                    for frame in answer.into_iter().flatten() {
                        shared.send(frame, peer).await;
                    }
                }
            }
        }
        Frame::Ack { .. }
            if shared.link.mode().is_extended()
                && !shared.table.lock().unwrap().slots.contains_key(&key) =>
        {
            shared
                .link
                .ignore(peer, Ignored::NotOpen(FrameKind::Ack, id));
            // A late copy of an ack for a connection that finished here needs no answer;
            // otherwise we do not have it (we restarted) and proxy1 still does.
            let finished_here = shared
                .finished
                .lock()
                .unwrap()
                .contains(&key, std::time::Instant::now());
            if !finished_here {
                shared.send(forgotten(shared, id), peer).await;
            }
        }
        // Extended modes: proxy1 answers our `D` for a connection it does not have (it
        // restarted, or gave up on it) with NOK, as we do. Nothing is left there to close.
        Frame::ConnectNok { .. } if shared.link.mode().is_extended() => {
            let removed = shared.table.lock().unwrap().remove(key).is_some();
            if removed {
                shared.conn_event(key, ConnState::Free);
                shared.log(
                    Level::Warn,
                    format!(
                        "proxy1 {peer} no longer has connection {id} (it answered NOK: restarted?): \
                         closing the server connection"
                    ),
                );
            } else {
                shared
                    .link
                    .ignore(peer, Ignored::Unexpected(FrameKind::ConnectNok, id));
            }
        }
        Frame::ConnectOk { .. } | Frame::ConnectNok { .. } | Frame::Ack { .. } => {
            shared
                .link
                .ignore(peer, Ignored::Unexpected(frame.kind(), id));
        }
    }
}

/// What tells proxy1 that we do not have connection `id`: `X` in the course's formats (a
/// course proxy1 closes on it); `NOK` in the extended ones, where an `X` carries a
/// sequence number and would be taken for a close after data we never had.
fn forgotten(shared: &Shared, id: ConnId) -> Frame<'static> {
    if shared.link.mode().is_extended() {
        Frame::ConnectNok { id, reason: None }
    } else {
        Frame::Close { id, seq: Seq::ZERO }
    }
}

/// The final ack of `key`, a connection that finished here, if it covers `seq` (see
/// [`FinishedCloses::answer_resend`]).
fn finished_answer(shared: &Shared, key: ConnKey, seq: Seq) -> Option<OutFrame> {
    shared
        .finished
        .lock()
        .unwrap()
        .answer_resend(&key, seq, std::time::Instant::now())
}

/// The transport of `key`, if it is a reliable mode's open connection.
fn reliable_conn(shared: &Shared, key: ConnKey) -> Option<Arc<ReliableConn>> {
    match &shared.table.lock().unwrap().slots.get(&key)?.state {
        SlotState::Reliable(conn) => Some(conn.clone()),
        _ => None,
    }
}

/// Decides what a `C` for `key` means and, for a new connection, starts it.
fn on_connect(
    shared: &Arc<Shared>,
    key: ConnKey,
    isn: Seq,
    destination: Option<Destination>,
    shutdown: &CancellationToken,
) -> OnConnect {
    let extended = shared.link.mode().is_extended();
    let mut table = shared.table.lock().unwrap();
    let previous = match table.slots.get(&key) {
        Some(slot) => match slot.state {
            SlotState::Connecting => return OnConnect::Pending,
            // A re-sent C: the same connection (the text formats cannot tell a re-sent C
            // from a new one but by whether data has flowed; the extended C says by its
            // initial sequence number).
            _ if isn == slot.peer_isn && (extended || !slot.activity.carried()) => {
                return OnConnect::RepeatOk(slot.our_isn);
            }
            // Data has flowed on it, or another initial sequence number: this C opens a
            // new connection on a reused id.
            _ => table.remove(key).map(|old| old.ended),
        },
        None => {
            match table.admission.decide(key) {
                Decision::Refuse(why) => return OnConnect::Refused(why),
                Decision::Admit { evict } => {
                    for old in evict {
                        if table.remove(old).is_some() {
                            // Told like an idle close: proxy1 frees the id. Counted with
                            // the refusals: a limit turned it away.
                            shared.link.stats().refused.fetch_add(1, Ordering::Relaxed);
                            let task = shared.clone();
                            shared.tasks.spawn("proxy2 eviction", async move {
                                let shared = task;
                                shared
                                    .send(
                                        Frame::Close {
                                            id: old.1,
                                            seq: Seq::ZERO,
                                        },
                                        old.0,
                                    )
                                    .await;
                                shared.conn_event(old, ConnState::Free);
                            });
                        }
                    }
                }
            }
            None
        }
    };
    let replaced = previous.is_some();
    table.next_generation += 1;
    let slot = Slot {
        generation: table.next_generation,
        state: SlotState::Connecting,
        stop: shutdown.child_token(),
        ended: CancellationToken::new(),
        activity: Arc::default(),
        peer_isn: isn,
        our_isn: if extended {
            Seq(rand::random())
        } else {
            Seq::ZERO
        },
    };
    // Said before the task starts: a refusal by rule comes at once, and must follow it.
    shared.conn_event(key, ConnState::Connecting);
    if let Some(destination) = &destination {
        shared.events().emit(EventKind::Route {
            at: Endpoint::Proxy2,
            id: key.1,
            destination: destination.clone(),
            user: None,
            client: Some(key.0),
        });
    }
    let start = Starting {
        generation: slot.generation,
        stop: slot.stop.clone(),
        ended: slot.ended.clone(),
        activity: slot.activity.clone(),
        previous,
        our_isn: slot.our_isn,
        peer_isn: slot.peer_isn,
        destination,
    };
    shared.tasks.spawn(
        "proxy2 connection",
        serve_connection(shared.clone(), key, start),
    );
    table.slots.insert(key, slot);
    table.admission.admitted(key);
    OnConnect::Opening { replaced }
}

/// What a connection's task starts with: its slot's handles.
struct Starting {
    generation: u64,
    stop: CancellationToken,
    ended: CancellationToken,
    activity: Arc<Activity>,
    /// The connection this one replaces on the same key: `OK` waits until it has stopped.
    previous: Option<CancellationToken>,
    our_isn: Seq,
    peer_isn: Seq,
    /// Where the `C` asked to go; `None`: the fixed server.
    destination: Option<Destination>,
}

/// One tunnel connection: connect to the server, answer `OK`/`NOK`, then pump server bytes
/// into `D` frames until either side closes. `previous` is the connection this one
/// replaces on the same key: `OK` waits until it has stopped.
async fn serve_connection(shared: Arc<Shared>, key: ConnKey, start: Starting) {
    let Starting {
        generation,
        stop,
        ended,
        activity,
        previous,
        our_isn,
        peer_isn,
        destination,
    } = start;
    let _ended = ended.drop_guard();
    let (peer, id) = key;
    let (stream, reached) = tokio::select! {
        () = stop.cancelled() => return,
        result = connect(&shared, destination.as_ref()) => match result {
            Ok(connected) => connected,
            Err((reason, why)) => {
                let target = Target(destination.as_ref(), shared.config.server);
                return refuse(&shared, key, generation, &target, reason, why).await;
            }
        },
    };
    if let Some(previous) = previous {
        // It was cancelled when this one was created, and stops at its next step.
        tokio::select! {
            () = stop.cancelled() => return,
            () = previous.cancelled() => {}
        }
    }
    let _ = stream.set_nodelay(true);
    // proxy2's end of the connection names it in a TCP capture (the ladder's server leg).
    let connected = match stream.local_addr() {
        Ok(local) => TcpAction::ConnectedFrom(local),
        Err(_) => TcpAction::Connected,
    };
    shared.tcp_event_with(id, reached, connected);
    let mode = shared.link.mode();
    if mode.is_reliable() {
        let base = shared
            .config
            .transport
            .unwrap_or_else(|| TransportConfig::for_mode(mode));
        let config = TransportConfig {
            initial_seq: our_isn,
            peer_initial_seq: peer_isn,
            // A sealed link carries less per frame (the seal's header and tag).
            max_payload: base.max_payload.min(shared.link.max_payload()),
            ..base
        };
        let conn = Arc::new(ReliableConn::new(Transport::new(mode, config)));
        {
            let mut table = shared.table.lock().unwrap();
            match table.slots.get_mut(&key) {
                Some(slot) if slot.generation == generation => {
                    slot.state = SlotState::Reliable(conn.clone());
                }
                _ => return, // an X arrived while connecting
            }
        }
        shared
            .send(Frame::ConnectOk { id, isn: our_isn }, peer)
            .await;
        shared.conn_event(key, ConnState::Open);
        let side = PumpSide {
            link: &shared.link,
            peer,
            id,
            role: Role::Proxy2,
            events: shared.events(),
            stop: &stop,
            activity: &activity,
            key: TallyKey {
                id,
                local_isn: our_isn,
                peer_isn,
                client: None,
            },
        };
        let end = reliable::pump(&conn, side, stream, &[], false).await;
        if let PumpEnd::GaveUp(why) = end {
            shared.log(
                Level::Warn,
                format!("connection {id} from {peer}: {why}: closing the server connection"),
            );
        }
        // Before the slot goes: a repeat of proxy1's X finds one or the other.
        if let Some(ack) = conn.closing_ack() {
            let now = std::time::Instant::now();
            shared.finished.lock().unwrap().remember(key, ack, now);
        }
        if shared.forget_generation(key, generation) {
            shared.conn_event(key, ConnState::Free);
        }
        return;
    }
    let (mut from_server, mut to_server) = stream.into_split();
    let (queue_tx, mut queue_rx) = mpsc::channel::<Vec<u8>>(shared.config.queue_frames);
    {
        let mut table = shared.table.lock().unwrap();
        match table.slots.get_mut(&key) {
            Some(slot) if slot.generation == generation => {
                slot.state = SlotState::Open {
                    to_server: queue_tx,
                }
            }
            _ => return, // an X arrived while connecting
        }
    }
    shared
        .send(Frame::ConnectOk { id, isn: our_isn }, peer)
        .await;
    shared.conn_event(key, ConnState::Open);

    // Writer: proxy1's data to the server. It ends when the slot (and so the queue's
    // sender) is dropped, and then closes the server connection with a FIN.
    let writer_shared = shared.clone();
    let writer = shared.tasks.spawn("proxy2 writer", async move {
        let mut queued = Vec::with_capacity(super::FRAMES_PER_WRITE);
        let mut scratch = Vec::new();
        while queue_rx
            .recv_many(&mut queued, super::FRAMES_PER_WRITE)
            .await
            > 0
        {
            let written = super::write_coalesced(&mut to_server, &queued, &mut scratch).await;
            queued.clear();
            match written {
                Ok(n) => writer_shared.tcp_event(id, TcpAction::Wrote(n)),
                Err(_) => break,
            }
        }
        let _ = to_server.shutdown().await;
    });

    let max_payload = shared.link.max_payload();
    let mut buf = vec![0u8; max_payload * super::FRAMES_PER_READ];
    // One cancellation future for the whole loop: making a new one per read registers and
    // unregisters a waiter (two lock round trips) for every datagram or TCP read.
    let cancelled = stop.cancelled();
    tokio::pin!(cancelled);
    'pump: loop {
        let read = tokio::select! {
            () = &mut cancelled => {
                shared.tcp_event(id, TcpAction::Closed(CloseKind::Fin));
                break;
            }
            read = from_server.read(&mut buf) => read,
        };
        if let Some(how) = peer_close_kind(&read) {
            // The server closed: tell proxy1, and forget the id (if it is still ours).
            shared.tcp_event(id, TcpAction::PeerClosed(how));
            if shared.forget_generation(key, generation) {
                shared.conn_event(key, ConnState::Closing);
                shared.send(Frame::Close { id, seq: Seq::ZERO }, peer).await;
                shared.conn_event(key, ConnState::Free);
            }
            break;
        }
        let n = read.unwrap_or(0);
        if !activity.carried() {
            let mut table = shared.table.lock().unwrap();
            if table.slots.get(&key).map(|s| s.generation) == Some(generation) {
                table.admission.used(key);
            }
        }
        activity.touch();
        shared.tcp_event(id, TcpAction::Read(n));
        for payload in buf[..n].chunks(max_payload) {
            // Once stopped (an X, or replaced by a new connection on this id), not one more
            // frame: it would reach whoever has the id now.
            if stop.is_cancelled() {
                shared.tcp_event(id, TcpAction::Closed(CloseKind::Fin));
                break 'pump;
            }
            shared
                .send(
                    Frame::Data {
                        id,
                        seq: Seq::ZERO,
                        payload,
                    },
                    peer,
                )
                .await;
        }
    }
    // Queue senders are gone once the slot is forgotten; the writer then flushes and closes.
    drop(writer);
}

/// Opens the connection's TCP side: the destination its `C` named, through the dialer (names
/// resolved here, rules applied, every address tried), or the fixed server. A failure says
/// why, as the reason the `NOK` carries, and in words.
async fn connect(
    shared: &Shared,
    destination: Option<&Destination>,
) -> Result<(TcpStream, SocketAddr), (Reason, String)> {
    if let Some(destination) = destination {
        return match shared.config.dialer.dial(destination).await {
            Ok(dialed) => Ok((dialed.stream, dialed.peer)),
            Err(e) => Err((e.refusal, e.detail)),
        };
    }
    let server = shared.config.server;
    let connect = tokio::time::timeout(shared.config.connect_timeout, TcpStream::connect(server));
    match connect.await {
        Ok(Ok(stream)) => Ok((stream, server)),
        Ok(Err(e)) => Err((
            crate::roles::dialers::classify(&e),
            crate::fd_limit::describe_io_error(&e),
        )),
        Err(_) => Err((Reason::TtlExpired, "timed out".into())),
    }
}

/// How a log line names where a connection was going: `server 127.0.0.1:1818` or
/// `destination example.org:80`.
struct Target<'a>(Option<&'a Destination>, SocketAddr);

impl std::fmt::Display for Target<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(destination) => write!(f, "destination {destination}"),
            None => write!(f, "server {}", self.1),
        }
    }
}

/// Answers `NOK` with `reason` (the extended formats carry it; the text formats have no room
/// for it), and says why in the log, the trace and the connection's events.
async fn refuse(
    shared: &Shared,
    key: ConnKey,
    generation: u64,
    target: &Target<'_>,
    reason: Reason,
    why: String,
) {
    let (peer, id) = key;
    // A named destination that failed may have no address at all: its Refused event and
    // the log line say what happened.
    if target.0.is_none() {
        shared.tcp_event(id, TcpAction::ConnectFailed(why.clone()));
    }
    let verb = if reason == Reason::NotAllowed {
        "refuses"
    } else {
        "cannot reach"
    };
    shared.log(
        Level::Warn,
        format!("connection {id} from {peer}: {verb} {target}: {why}; answering NOK ({reason})"),
    );
    if shared.forget_generation(key, generation) {
        shared.events().emit(EventKind::Refused {
            at: Endpoint::Proxy2,
            id,
            reason,
            detail: why,
        });
        let reason = Some(reason);
        shared.send(Frame::ConnectNok { id, reason }, peer).await;
        shared.conn_event(key, ConnState::Refused);
        shared.conn_event(key, ConnState::Free);
    }
}

/// Closes connections that have been idle past the idle timeout, or have never carried a
/// byte past the unused timeout, and tells their proxy1.
async fn reclaim_expired(shared: &Shared) {
    let expired: Vec<(ConnKey, &'static str)> = {
        let mut table = shared.table.lock().unwrap();
        let expired: Vec<(ConnKey, &'static str)> = table
            .slots
            .iter()
            .filter_map(|(key, slot)| {
                // As at proxy1: an open reliable connection has its transport's own timers
                // (and proxy1's keepalive, which needs a live proxy1), so an idle client's
                // connection must not count as abandoned; only the idle timeout applies.
                // The X sent here could not reach proxy1's transport anyway: it carries no
                // sequence number. Never-used ones still make room under --max-connections.
                let unused_timeout = if matches!(slot.state, SlotState::Reliable(_)) {
                    Duration::MAX
                } else {
                    shared.config.unused_timeout
                };
                slot.activity
                    .expired(shared.config.idle_timeout.get(), unused_timeout)
                    .map(|why| (*key, why))
            })
            .collect();
        for (key, _) in &expired {
            table.remove(*key);
        }
        expired
    };
    // After a flood, hundreds can expire at once: one line for them all.
    let one_line_each = expired.len() <= 5;
    if !one_line_each {
        shared.log(
            Level::Info,
            format!(
                "closing {} connections idle for {:?} or unused for {:?}",
                expired.len(),
                shared.config.idle_timeout.get(),
                shared.config.unused_timeout
            ),
        );
    }
    for ((peer, id), why) in expired {
        if one_line_each {
            let timeout = if why == "idle" {
                shared.config.idle_timeout.get()
            } else {
                shared.config.unused_timeout
            };
            shared.log(
                Level::Info,
                format!("connection {id} from {peer} {why} for {timeout:?}: closing"),
            );
        }
        shared.send(Frame::Close { id, seq: Seq::ZERO }, peer).await;
        shared.conn_event((peer, id), ConnState::Free);
    }
}
