//! proxy1: the near end of the UDP link. It accepts TCP clients, gives each the lowest free
//! connection id, asks proxy2 to open it with `C`, and then carries the client's bytes as
//! `D` frames over its one UDP socket.
//!
//! When every id is taken, a new client waits (a bounded time, in arrival order) for one to
//! free up. UDP may lose any datagram, so nothing here waits forever: `C` is re-sent a few
//! times, and idle ids are reclaimed.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::{Activity, peer_close_kind};
use crate::event::{
    CloseKind, ConnState, Endpoint, EventKind, EventSink, Ignored, Level, Role, TcpAction,
};
use crate::link::{LinkSocket, RECV_BUFFER, Received};
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
    pub idle_timeout: Duration,
    /// `D` frames queued toward one slow client before classic mode drops them.
    pub queue_frames: usize,
}

impl Proxy1Config {
    pub fn new(proxy2: SocketAddr) -> Self {
        Proxy1Config {
            proxy2,
            connect_attempts: 5,
            connect_retry: Duration::from_millis(500),
            id_wait: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            queue_frames: 1024,
        }
    }
}

/// What the UDP side hands to a client's writer task.
enum ToClient {
    Data(Vec<u8>),
    /// proxy2 sent `X`: close the client after the data queued before it.
    PeerClosed,
}

/// The bytes a message puts on the client's socket (none for the close).
impl AsRef<[u8]> for ToClient {
    fn as_ref(&self) -> &[u8] {
        match self {
            ToClient::Data(data) => data,
            ToClient::PeerClosed => &[],
        }
    }
}

enum Phase {
    /// `C` sent; the first `OK` (true) or `NOK` (false) goes here.
    Connecting(Option<oneshot::Sender<bool>>),
    Open(mpsc::Sender<ToClient>),
}

struct Slot {
    client: SocketAddr,
    phase: Phase,
    stop: CancellationToken,
    activity: Arc<Activity>,
    /// Set when proxy2's `X` arrives, so that the client's own close, racing with it, does
    /// not send a redundant `X` for an id proxy2 has already forgotten.
    closed_by_proxy2: Arc<AtomicBool>,
}

struct Shared {
    link: LinkSocket,
    config: Proxy1Config,
    /// One entry per id; `None` is a free id.
    slots: Mutex<Vec<Option<Slot>>>,
    /// One permit per id. Waiting clients queue here, first come first served.
    free_ids: Arc<Semaphore>,
}

impl Shared {
    fn events(&self) -> &EventSink {
        self.link.events()
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
        if matches!(action, TcpAction::Read(_) | TcpAction::Wrote(_))
            && !self.events().wants_frame_events()
        {
            return;
        }
        self.events().emit(EventKind::Tcp {
            role: Role::Proxy1,
            id,
            peer: client,
            action,
        });
    }

    async fn send(&self, frame: Frame<'_>) {
        if let Err(e) = self.link.send(&frame, self.config.proxy2).await {
            self.events().log(
                Level::Warn,
                Role::Proxy1,
                format!(
                    "send of {} to proxy2 {} failed: {e}",
                    frame.kind().label(),
                    self.config.proxy2
                ),
            );
        }
    }

    /// Takes the lowest free id for `client`.
    fn claim_id(
        &self,
        client: SocketAddr,
        reply: oneshot::Sender<bool>,
        stop: CancellationToken,
    ) -> (ConnId, Arc<Activity>, Arc<AtomicBool>) {
        let mut slots = self.slots.lock().unwrap();
        let index = slots
            .iter()
            .position(Option::is_none)
            .expect("a permit guarantees a free id");
        let activity = Arc::new(Activity::default());
        let closed_by_proxy2 = Arc::new(AtomicBool::new(false));
        slots[index] = Some(Slot {
            client,
            phase: Phase::Connecting(Some(reply)),
            stop,
            activity: activity.clone(),
            closed_by_proxy2: closed_by_proxy2.clone(),
        });
        (ConnId::new(index as u16), activity, closed_by_proxy2)
    }

    fn release_id(&self, id: ConnId) {
        self.slots.lock().unwrap()[id.index()] = None;
    }
}

/// Serves TCP clients and the link until `shutdown` is cancelled.
pub async fn run(
    listener: TcpListener,
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
    let ids = link.mode().max_connections();
    let shared = Arc::new(Shared {
        link,
        config,
        slots: Mutex::new((0..ids).map(|_| None).collect()),
        free_ids: Arc::new(Semaphore::new(ids)),
    });
    let mut buf = vec![0u8; RECV_BUFFER];
    let mut sweep = tokio::time::interval(super::proxy2::sweep_period(shared.config.idle_timeout));
    // One cancellation future for the whole loop: making a new one per read registers and
    // unregisters a waiter (two lock round trips) for every datagram or TCP read.
    let cancelled = shutdown.cancelled();
    tokio::pin!(cancelled);
    loop {
        tokio::select! {
            _ = &mut cancelled => break,
            _ = sweep.tick() => reclaim_idle(&shared).await,
            accepted = listener.accept() => match accepted {
                Ok((stream, client)) => {
                    tokio::spawn(serve_client(shared.clone(), stream, client, shutdown.child_token()));
                }
                Err(e) => {
                    shared.events().log(Level::Warn, Role::Proxy1, format!("accept failed: {e}"));
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
    // Closing the semaphore wakes waiting clients so they end at once.
    shared.free_ids.close();
    shared
        .events()
        .emit(EventKind::RoleDown { role: Role::Proxy1 });
}

async fn on_frame(shared: &Shared, frame: Frame<'_>) {
    let id = frame.id();
    let peer = shared.config.proxy2;
    // Decide under the lock, act (send, report) after releasing it.
    enum Action {
        None,
        Ignore(Ignored),
        AnswerClose,
        Closed(SocketAddr),
    }
    let action = {
        let mut slots = shared.slots.lock().unwrap();
        let slot = slots.get_mut(id.index()).and_then(Option::as_mut);
        match (frame, slot) {
            (Frame::ConnectOk { .. } | Frame::ConnectNok { .. }, Some(slot)) => {
                match &mut slot.phase {
                    Phase::Connecting(reply) => {
                        if let Some(reply) = reply.take() {
                            let _ = reply.send(matches!(frame, Frame::ConnectOk { .. }));
                        }
                        Action::None
                    }
                    // A second OK for a re-sent C: harmless.
                    Phase::Open(_) => Action::Ignore(Ignored::Unexpected(frame.kind(), id)),
                }
            }
            (Frame::Data { payload, .. }, Some(slot)) => match &slot.phase {
                Phase::Open(to_client) => {
                    slot.activity.touch();
                    match to_client.try_send(ToClient::Data(payload.to_vec())) {
                        Ok(()) => Action::None,
                        Err(_) => Action::Ignore(Ignored::Overflow(id)),
                    }
                }
                Phase::Connecting(_) => Action::Ignore(Ignored::NotOpen(FrameKind::Data, id)),
            },
            (Frame::Close { .. }, Some(slot)) => match &slot.phase {
                Phase::Open(to_client) => {
                    slot.closed_by_proxy2.store(true, Ordering::Relaxed);
                    // Queued behind the data that came before it; if the queue is full, stop now.
                    if to_client.try_send(ToClient::PeerClosed).is_err() {
                        slot.stop.cancel();
                    }
                    Action::Closed(slot.client)
                }
                Phase::Connecting(_) => Action::Ignore(Ignored::Unexpected(FrameKind::Close, id)),
            },
            // Data for an id we do not have open: proxy2 still thinks it is; tell it otherwise.
            (Frame::Data { .. }, None) => Action::AnswerClose,
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
        Action::Closed(client) => shared.conn_event(id, ConnState::Closing, client),
    }
}

/// One TCP client from accept to close.
async fn serve_client(
    shared: Arc<Shared>,
    stream: TcpStream,
    client: SocketAddr,
    stop: CancellationToken,
) {
    shared.tcp_event(None, client, TcpAction::Accepted);
    let _ = stream.set_nodelay(true);

    // Wait for an id, in arrival order, for a bounded time.
    let permit = match shared.free_ids.clone().try_acquire_owned() {
        Ok(permit) => permit,
        Err(_) => {
            shared.events().emit(EventKind::WaitingForId { client });
            shared.events().log(
                Level::Info,
                Role::Proxy1,
                format!(
                    "all {} ids busy: client {client} waits up to {:?}",
                    shared.link.mode().max_connections(),
                    shared.config.id_wait
                ),
            );
            let wait = tokio::time::timeout(
                shared.config.id_wait,
                shared.free_ids.clone().acquire_owned(),
            );
            let acquired = tokio::select! {
                _ = stop.cancelled() => None,
                acquired = wait => acquired.ok().and_then(Result::ok),
            };
            match acquired {
                Some(permit) => permit,
                None => {
                    shared.events().emit(EventKind::WaitGaveUp { client });
                    shared.events().log(
                        Level::Warn,
                        Role::Proxy1,
                        format!(
                            "client {client} got no free id within {:?}: closing it",
                            shared.config.id_wait
                        ),
                    );
                    shared.tcp_event(None, client, TcpAction::Closed(CloseKind::Fin));
                    return;
                }
            }
        }
    };

    let (reply_tx, reply_rx) = oneshot::channel();
    let (id, activity, closed_by_proxy2) = shared.claim_id(client, reply_tx, stop.clone());
    shared.conn_event(id, ConnState::Connecting, client);
    let end_state = match open(&shared, id, reply_rx, &stop).await {
        Some(true) => {
            pump(
                &shared,
                id,
                stream,
                client,
                &stop,
                &activity,
                &closed_by_proxy2,
            )
            .await;
            ConnState::Free
        }
        Some(false) => {
            shared.events().log(
                Level::Warn,
                Role::Proxy1,
                format!("proxy2 answered NOK for connection {id}: the server is unreachable; closing client {client}"),
            );
            shared.conn_event(id, ConnState::Refused, client);
            ConnState::Free
        }
        None if stop.is_cancelled() => ConnState::Free,
        None => {
            shared.events().log(
                Level::Error,
                Role::Proxy1,
                format!(
                    "proxy2 at {} did not answer C{id} after {} tries: closing client {client}",
                    shared.config.proxy2, shared.config.connect_attempts
                ),
            );
            shared.conn_event(id, ConnState::Unanswered, client);
            ConnState::Free
        }
    };
    shared.release_id(id);
    shared.conn_event(id, end_state, client);
    drop(permit);
}

/// Sends `C` until proxy2 answers. `Some(ok)` is the answer; `None` means no answer at all.
async fn open(
    shared: &Shared,
    id: ConnId,
    mut reply: oneshot::Receiver<bool>,
    stop: &CancellationToken,
) -> Option<bool> {
    for _ in 0..shared.config.connect_attempts.max(1) {
        shared.send(Frame::Connect { id }).await;
        tokio::select! {
            _ = stop.cancelled() => return None,
            answer = &mut reply => return answer.ok(),
            _ = tokio::time::sleep(shared.config.connect_retry) => {}
        }
    }
    None
}

/// Carries an open connection's bytes both ways until the client or proxy2 closes it.
async fn pump(
    shared: &Arc<Shared>,
    id: ConnId,
    stream: TcpStream,
    client: SocketAddr,
    stop: &CancellationToken,
    activity: &Activity,
    closed_by_proxy2: &AtomicBool,
) {
    let (to_client_tx, mut to_client_rx) = mpsc::channel(shared.config.queue_frames);
    if let Some(slot) = shared.slots.lock().unwrap()[id.index()].as_mut() {
        slot.phase = Phase::Open(to_client_tx);
    }
    shared.conn_event(id, ConnState::Open, client);
    let (mut from_client, mut to_client) = stream.into_split();

    // Writer: proxy2's data to the client, then a FIN when proxy2 closes the connection.
    let writer_shared = shared.clone();
    let writer_stop = stop.clone();
    let writer = tokio::spawn(async move {
        let cancelled = writer_stop.cancelled();
        tokio::pin!(cancelled);
        let mut queued = Vec::with_capacity(super::FRAMES_PER_WRITE);
        let mut scratch = Vec::new();
        'serve: loop {
            let received = tokio::select! {
                _ = &mut cancelled => break,
                received = to_client_rx.recv_many(&mut queued, super::FRAMES_PER_WRITE) => received,
            };
            // Data queued before proxy2's X goes out (in one write), then the FIN.
            let closed_at = queued
                .iter()
                .position(|message| matches!(message, ToClient::PeerClosed));
            let data = &queued[..closed_at.unwrap_or(queued.len())];
            if !data.is_empty() {
                match super::write_coalesced(&mut to_client, data, &mut scratch).await {
                    Ok(n) => writer_shared.tcp_event(Some(id), client, TcpAction::Wrote(n)),
                    Err(_) => break 'serve,
                }
            }
            queued.clear();
            if received == 0 || closed_at.is_some() {
                let _ = to_client.shutdown().await;
                writer_shared.tcp_event(Some(id), client, TcpAction::Closed(CloseKind::Fin));
                break;
            }
        }
        writer_stop.cancel();
    });

    let max_payload = shared.link.mode().max_payload();
    let mut buf = vec![0u8; max_payload * super::FRAMES_PER_READ];
    // One cancellation future for the whole loop: making a new one per read registers and
    // unregisters a waiter (two lock round trips) for every datagram or TCP read.
    let cancelled = stop.cancelled();
    tokio::pin!(cancelled);
    loop {
        let read = tokio::select! {
            _ = &mut cancelled => break,
            read = from_client.read(&mut buf) => read,
        };
        if let Some(how) = peer_close_kind(&read) {
            shared.tcp_event(Some(id), client, TcpAction::PeerClosed(how));
            if !closed_by_proxy2.load(Ordering::Relaxed) {
                shared.conn_event(id, ConnState::Closing, client);
                shared.send(Frame::Close { id, seq: Seq::ZERO }).await;
            }
            break;
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
    stop.cancel();
    let _ = writer.await;
}

async fn reclaim_idle(shared: &Shared) {
    let idle: Vec<(ConnId, SocketAddr)> = {
        let slots = shared.slots.lock().unwrap();
        slots
            .iter()
            .enumerate()
            .filter_map(|(index, slot)| slot.as_ref().map(|slot| (index, slot)))
            .filter(|(_, slot)| {
                matches!(slot.phase, Phase::Open(_))
                    && slot.activity.idle_for() >= shared.config.idle_timeout
            })
            .map(|(index, slot)| {
                slot.stop.cancel();
                (ConnId::new(index as u16), slot.client)
            })
            .collect()
    };
    for (id, client) in idle {
        shared.events().log(
            Level::Info,
            Role::Proxy1,
            format!(
                "connection {id} (client {client}) idle for {:?}: closing it",
                shared.config.idle_timeout
            ),
        );
        shared.conn_event(id, ConnState::Closing, client);
        shared.send(Frame::Close { id, seq: Seq::ZERO }).await;
    }
}
