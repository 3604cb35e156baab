//! proxy2: the far end of the UDP link. For every tunnel connection a proxy1 opens with `C`,
//! it opens one TCP connection to the server and pumps bytes both ways as `D` frames.
//!
//! Several proxy1s can share one proxy2: connections are keyed by the proxy1's UDP source
//! address *and* the id, on one socket, so two proxy1s starting at once cannot be mixed up
//! (the course's fork-per-client proxy2 could misroute a newcomer's first datagram).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::peer_close_kind;
use crate::event::{
    CloseKind, ConnState, Endpoint, EventKind, EventSink, Ignored, Level, Role, TcpAction,
};
use crate::link::{LinkSocket, RECV_BUFFER, Received};
use crate::roles::Activity;
use crate::wire::{ConnId, Frame, FrameKind, Seq};

/// How proxy2 behaves; [`Proxy2Config::new`] gives the defaults.
#[derive(Clone, Debug)]
pub struct Proxy2Config {
    /// The server every tunnel connection is opened to.
    pub server: SocketAddr,
    /// How long a TCP connect to the server may take before the answer is `NOK`.
    pub connect_timeout: Duration,
    /// A connection with no traffic either way for this long is closed (`X` to proxy1),
    /// so an id whose `X` was lost does not stay taken forever.
    pub idle_timeout: Duration,
    /// `D` frames queued toward one slow server connection before classic mode drops them.
    pub queue_frames: usize,
}

impl Proxy2Config {
    pub fn new(server: SocketAddr) -> Self {
        Proxy2Config {
            server,
            connect_timeout: Duration::from_secs(3),
            idle_timeout: Duration::from_secs(300),
            queue_frames: 1024,
        }
    }
}

/// A tunnel connection is named by the proxy1 it belongs to and its id on that link.
type Key = (SocketAddr, ConnId);

enum SlotState {
    /// The TCP connect to the server is under way; a duplicate `C` is ignored meanwhile,
    /// since the `OK` or `NOK` follows anyway.
    Connecting,
    /// Data flows; `D` payloads go to the server through this queue.
    Open { to_server: mpsc::Sender<Vec<u8>> },
}

struct Slot {
    state: SlotState,
    /// Cancelled when the connection must end (an `X`, idle, shutdown).
    stop: CancellationToken,
    activity: Arc<Activity>,
}

struct Shared {
    link: LinkSocket,
    config: Proxy2Config,
    table: Mutex<HashMap<Key, Slot>>,
}

impl Shared {
    fn events(&self) -> &EventSink {
        self.link.events()
    }

    fn conn_event(&self, (peer, id): Key, state: ConnState) {
        self.events().emit(EventKind::Conn {
            at: Endpoint::Proxy2,
            id,
            state,
            client: Some(peer),
        });
    }

    fn tcp_event(&self, id: ConnId, action: TcpAction) {
        if matches!(action, TcpAction::Read(_) | TcpAction::Wrote(_))
            && !self.events().wants_frame_events()
        {
            return;
        }
        self.events().emit(EventKind::Tcp {
            role: Role::Proxy2,
            id: Some(id),
            peer: self.config.server,
            action,
        });
    }

    /// Sends a frame; a failed send is reported, since the link itself stays usable.
    async fn send(&self, frame: Frame<'_>, to: SocketAddr) {
        if let Err(e) = self.link.send(&frame, to).await {
            self.events().log(
                Level::Warn,
                Role::Proxy2,
                format!("send of {} to {to} failed: {e}", frame.kind().label()),
            );
        }
    }

    /// Removes a connection from the table and stops its tasks; true if it was there.
    fn forget(&self, key: Key) -> bool {
        let slot = self.table.lock().unwrap().remove(&key);
        match slot {
            Some(slot) => {
                slot.stop.cancel();
                true
            }
            None => false,
        }
    }
}

/// Serves the link until `shutdown` is cancelled.
pub async fn run(link: LinkSocket, config: Proxy2Config, shutdown: CancellationToken) {
    link.events().emit(EventKind::RoleUp {
        role: Role::Proxy2,
        addr: link.local_addr(),
    });
    let shared = Arc::new(Shared {
        link,
        config,
        table: Mutex::default(),
    });
    let mut buf = vec![0u8; RECV_BUFFER];
    let mut sweep = tokio::time::interval(sweep_period(shared.config.idle_timeout));
    // One cancellation future for the whole loop: making a new one per read registers and
    // unregisters a waiter (two lock round trips) for every datagram or TCP read.
    let cancelled = shutdown.cancelled();
    tokio::pin!(cancelled);
    loop {
        tokio::select! {
            _ = &mut cancelled => break,
            _ = sweep.tick() => reclaim_idle(&shared).await,
            received = shared.link.recv(&mut buf, None) => match received {
                Ok(Received::Frame { frame, peer }) => {
                    on_frame(&shared, frame, peer, &shutdown).await;
                }
                Ok(Received::Dropped) => {}
                // ICMP errors from earlier sends surface here on some systems; keep serving.
                Err(e) => shared.events().log(Level::Warn, Role::Proxy2, format!("receive failed: {e}")),
            },
        }
    }
    for (_, slot) in shared.table.lock().unwrap().drain() {
        slot.stop.cancel();
    }
    shared
        .events()
        .emit(EventKind::RoleDown { role: Role::Proxy2 });
}

/// How often idle connections are looked for: often enough to reclaim close to the timeout.
pub(crate) fn sweep_period(idle_timeout: Duration) -> Duration {
    (idle_timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(5))
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
        Frame::Connect { .. } => {
            let already_open = {
                let mut table = shared.table.lock().unwrap();
                match table.get(&key).map(|slot| &slot.state) {
                    Some(SlotState::Open { .. }) => Some(true),
                    Some(SlotState::Connecting) => Some(false),
                    None => {
                        let slot = Slot {
                            state: SlotState::Connecting,
                            stop: shutdown.child_token(),
                            activity: Arc::default(),
                        };
                        tokio::spawn(serve_connection(
                            shared.clone(),
                            key,
                            slot.stop.clone(),
                            slot.activity.clone(),
                        ));
                        table.insert(key, slot);
                        None
                    }
                }
            };
            match already_open {
                // A duplicate C: our OK was probably lost, so say it again.
                Some(true) => shared.send(Frame::ConnectOk { id }, peer).await,
                Some(false) => {}
                None => shared.conn_event(key, ConnState::Connecting),
            }
        }
        Frame::Data { payload, .. } => {
            let queue = {
                let table = shared.table.lock().unwrap();
                table.get(&key).map(|slot| match &slot.state {
                    SlotState::Open { to_server } => {
                        slot.activity.touch();
                        Some(to_server.clone())
                    }
                    SlotState::Connecting => None,
                })
            };
            match queue {
                Some(Some(to_server)) => {
                    if to_server.try_send(payload.to_vec()).is_err() {
                        shared.link.ignore(peer, Ignored::Overflow(id));
                    }
                }
                Some(None) => shared
                    .link
                    .ignore(peer, Ignored::NotOpen(FrameKind::Data, id)),
                None => {
                    // Data for a connection we do not have: tell proxy1 it is gone.
                    shared
                        .link
                        .ignore(peer, Ignored::NotOpen(FrameKind::Data, id));
                    shared.send(Frame::Close { id, seq: Seq::ZERO }, peer).await;
                }
            }
        }
        Frame::Close { .. } => {
            if shared.forget(key) {
                shared.conn_event(key, ConnState::Free);
            } else {
                shared
                    .link
                    .ignore(peer, Ignored::NotOpen(FrameKind::Close, id));
            }
        }
        Frame::ConnectOk { .. } | Frame::ConnectNok { .. } | Frame::Ack { .. } => {
            shared
                .link
                .ignore(peer, Ignored::Unexpected(frame.kind(), id));
        }
    }
}

/// One tunnel connection: connect to the server, answer `OK`/`NOK`, then pump server bytes
/// into `D` frames until either side closes.
async fn serve_connection(
    shared: Arc<Shared>,
    key: Key,
    stop: CancellationToken,
    activity: Arc<Activity>,
) {
    let (peer, id) = key;
    let connect = tokio::time::timeout(
        shared.config.connect_timeout,
        TcpStream::connect(shared.config.server),
    );
    let stream = tokio::select! {
        _ = stop.cancelled() => return,
        result = connect => match result {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return refuse(&shared, key, e.to_string()).await,
            Err(_) => return refuse(&shared, key, "timed out".into()).await,
        },
    };
    let _ = stream.set_nodelay(true);
    shared.tcp_event(id, TcpAction::Connected);
    let (mut from_server, mut to_server) = stream.into_split();
    let (queue_tx, mut queue_rx) = mpsc::channel::<Vec<u8>>(shared.config.queue_frames);
    {
        let mut table = shared.table.lock().unwrap();
        match table.get_mut(&key) {
            Some(slot) => {
                slot.state = SlotState::Open {
                    to_server: queue_tx,
                }
            }
            None => return, // an X arrived while connecting
        }
    }
    shared.send(Frame::ConnectOk { id }, peer).await;
    shared.conn_event(key, ConnState::Open);

    // Writer: proxy1's data to the server. It ends when the slot (and so the queue's
    // sender) is dropped, and then closes the server connection with a FIN.
    let writer_shared = shared.clone();
    let writer = tokio::spawn(async move {
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

    let max_payload = shared.link.mode().max_payload();
    let mut buf = vec![0u8; max_payload * super::FRAMES_PER_READ];
    // One cancellation future for the whole loop: making a new one per read registers and
    // unregisters a waiter (two lock round trips) for every datagram or TCP read.
    let cancelled = stop.cancelled();
    tokio::pin!(cancelled);
    loop {
        let read = tokio::select! {
            _ = &mut cancelled => {
                shared.tcp_event(id, TcpAction::Closed(CloseKind::Fin));
                break;
            }
            read = from_server.read(&mut buf) => read,
        };
        if let Some(how) = peer_close_kind(&read) {
            // The server closed: tell proxy1, and forget the id.
            shared.tcp_event(id, TcpAction::PeerClosed(how));
            if shared.forget(key) {
                shared.conn_event(key, ConnState::Closing);
                shared.send(Frame::Close { id, seq: Seq::ZERO }, peer).await;
                shared.conn_event(key, ConnState::Free);
            }
            break;
        }
        let n = read.unwrap_or(0);
        activity.touch();
        shared.tcp_event(id, TcpAction::Read(n));
        for payload in buf[..n].chunks(max_payload) {
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

async fn refuse(shared: &Shared, key: Key, why: String) {
    let (peer, id) = key;
    shared.tcp_event(id, TcpAction::ConnectFailed(why.clone()));
    shared.events().log(
        Level::Warn,
        Role::Proxy2,
        format!(
            "connection {id} from {peer}: cannot reach server {}: {why}; answering NOK",
            shared.config.server
        ),
    );
    if shared.forget(key) {
        shared.send(Frame::ConnectNok { id }, peer).await;
        shared.conn_event(key, ConnState::Refused);
        shared.conn_event(key, ConnState::Free);
    }
}

async fn reclaim_idle(shared: &Shared) {
    let idle: Vec<Key> = {
        let table = shared.table.lock().unwrap();
        table
            .iter()
            .filter(|(_, slot)| slot.activity.idle_for() >= shared.config.idle_timeout)
            .map(|(key, _)| *key)
            .collect()
    };
    for key in idle {
        if shared.forget(key) {
            shared.events().log(
                Level::Info,
                Role::Proxy2,
                format!(
                    "connection {} from {} idle for {:?}: closing",
                    key.1, key.0, shared.config.idle_timeout
                ),
            );
            shared
                .send(
                    Frame::Close {
                        id: key.1,
                        seq: Seq::ZERO,
                    },
                    key.0,
                )
                .await;
            shared.conn_event(key, ConnState::Free);
        }
    }
}
