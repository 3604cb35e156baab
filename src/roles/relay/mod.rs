//! `tunlab relay`: a UDP relay that sits in the middle of a link and applies the link
//! emulator to it, whatever speaks on either side.
//!
//! ```text
//!  peer (proxy1, kcptun client, a course script) ──UDP──▶ relay ──UDP──▶ target (proxy2, …)
//!                                  one upstream socket per peer address ▲
//! ```
//!
//! Every datagram from a peer is forwarded to the target from a socket of that peer's own
//! (so the target tells peers apart by address, as it would without the relay), and every
//! datagram the target sends to that socket goes back to the peer. The relay never decodes
//! what it carries: classic, stop-and-wait, extended and sealed frames, kcptun's segments,
//! anything, cross it untouched unless the emulator says otherwise.
//!
//! The emulator's two directions are the link's: [`LinkDirection::ToProxy2`] is peers to
//! target, [`LinkDirection::ToProxy1`] the target's replies to peers. Both directions are
//! shared by all peers (one seeded decider each), like one link with one set of dice: with
//! one peer, the same seed and the same datagrams give the same decisions.
//!
//! Datagrams cross in bursts: each socket reads every datagram waiting in one `recvmmsg`,
//! and a run of them for one destination leaves in one `sendmmsg` (with UDP GSO where the
//! kernel has it: [`crate::link::batch`]). Each datagram is still counted, captured and
//! decided by the emulator on its own.
//!
//! Peers are bounded ([`RelayConfig::max_peers`]): datagrams from one more address are
//! dropped, counted and logged until a peer silent both ways for [`RelayConfig::peer_idle`]
//! gives its socket back.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::net::LinkUdp;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::capture::{CaptureTap, TapFrame, TapRecord};
use crate::event::Level;
use crate::impair::pipeline::{Pending, Pipeline};
use crate::impair::{DirectionEmulator, DropCause, LinkEmulator, LinkVerdict};
use crate::link::batch::{self, RecvBatch, SendOffload};
use crate::net::{bind_udp, local_bind_towards};
use crate::topology::LinkDirection;
use crate::tunnel::activity::Activity;

/// Most peers served at once unless `--max-peers` says otherwise: each costs one socket.
pub const DEFAULT_MAX_PEERS: usize = 256;

/// How long a peer may stay silent both ways before its socket is closed, by default: as
/// long as the proxies' own idle timeout, so the relay never forgets a peer the proxies
/// still remember.
pub const DEFAULT_PEER_IDLE: Duration = Duration::from_mins(5);

/// Log lines about one kind of trouble (refused peers, refused datagrams, failed sends) come
/// at most this often, with a count of the ones in between.
const LOG_EVERY: Duration = Duration::from_secs(1);

/// What the relay does.
#[derive(Clone, Debug)]
pub struct RelayConfig {
    /// Where every peer's datagrams go.
    pub target: SocketAddr,
    /// Most peers (source addresses) with a socket at once.
    pub max_peers: usize,
    /// A peer silent both ways this long loses its socket.
    pub peer_idle: Duration,
    /// The link emulator between peers and target, if any.
    pub emulator: Option<Arc<LinkEmulator>>,
    /// Log every datagram the emulator did something to, not only peers and trouble.
    pub verbose: bool,
}

impl RelayConfig {
    /// A plain relay to `target` with the default bounds and no emulator.
    pub fn new(target: SocketAddr) -> Self {
        RelayConfig {
            target,
            max_peers: DEFAULT_MAX_PEERS,
            peer_idle: DEFAULT_PEER_IDLE,
            emulator: None,
            verbose: false,
        }
    }
}

/// Where the relay's log lines go (the standalone command prints them on stderr).
pub type RelayLog = Arc<dyn Fn(Level, &str) + Send + Sync>;

/// A log that says nothing, for tests and embedders that read the counters instead.
pub fn silent() -> RelayLog {
    Arc::new(|_, _| {})
}

/// Exact counters of the relay. What the emulator did (dropped, delayed…) is in the
/// emulator's own per-direction counters; these count what crossed the relay's sockets.
#[derive(Debug, Default)]
pub struct RelayStats {
    /// Datagrams that arrived from peers, and their bytes.
    pub from_peers: AtomicU64,
    pub from_peers_bytes: AtomicU64,
    /// Datagrams forwarded to the target, and their bytes.
    pub to_target: AtomicU64,
    pub to_target_bytes: AtomicU64,
    /// Datagrams that arrived from the target, and their bytes.
    pub from_target: AtomicU64,
    pub from_target_bytes: AtomicU64,
    /// Datagrams forwarded to peers, and their bytes.
    pub to_peers: AtomicU64,
    pub to_peers_bytes: AtomicU64,
    /// Peers given a socket of their own, ever.
    pub peers_opened: AtomicU64,
    /// Peers whose socket was closed after `peer_idle` of silence.
    pub peers_expired: AtomicU64,
    /// Datagrams dropped because `max_peers` peers already had a socket.
    pub peers_refused: AtomicU64,
    /// The target answered with ICMP "port unreachable" (nothing listens there).
    pub target_refused: AtomicU64,
    /// Sends the operating system refused (other than the target's refusals).
    pub send_failed: AtomicU64,
    /// Peers with a socket now.
    pub peers_now: AtomicU64,
}

/// A point-in-time copy of [`RelayStats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RelayStatsSnapshot {
    pub from_peers: u64,
    pub from_peers_bytes: u64,
    pub to_target: u64,
    pub to_target_bytes: u64,
    pub from_target: u64,
    pub from_target_bytes: u64,
    pub to_peers: u64,
    pub to_peers_bytes: u64,
    pub peers_opened: u64,
    pub peers_expired: u64,
    pub peers_refused: u64,
    pub target_refused: u64,
    pub send_failed: u64,
    pub peers_now: u64,
}

impl RelayStats {
    pub fn snapshot(&self) -> RelayStatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        RelayStatsSnapshot {
            from_peers: get(&self.from_peers),
            from_peers_bytes: get(&self.from_peers_bytes),
            to_target: get(&self.to_target),
            to_target_bytes: get(&self.to_target_bytes),
            from_target: get(&self.from_target),
            from_target_bytes: get(&self.from_target_bytes),
            to_peers: get(&self.to_peers),
            to_peers_bytes: get(&self.to_peers_bytes),
            peers_opened: get(&self.peers_opened),
            peers_expired: get(&self.peers_expired),
            peers_refused: get(&self.peers_refused),
            target_refused: get(&self.target_refused),
            send_failed: get(&self.send_failed),
            peers_now: get(&self.peers_now),
        }
    }
}

impl RelayStatsSnapshot {
    /// Two lines for a terminal: what crossed each way, and what happened to peers.
    pub fn describe(&self) -> String {
        format!(
            "relay peers→target: received {} ({} B), forwarded {} ({} B) | target→peers: received {} ({} B), forwarded {} ({} B)\n\
             relay peers: {} opened, {} expired, {} datagrams refused (--max-peers); target refused {} datagrams; {} sends failed",
            self.from_peers,
            self.from_peers_bytes,
            self.to_target,
            self.to_target_bytes,
            self.from_target,
            self.from_target_bytes,
            self.to_peers,
            self.to_peers_bytes,
            self.peers_opened,
            self.peers_expired,
            self.peers_refused,
            self.target_refused,
            self.send_failed,
        )
    }
}

fn add(counter: &AtomicU64, n: usize) {
    counter.fetch_add(n as u64, Ordering::Relaxed);
}

/// One peer: its address, its socket toward the target, its activity.
#[derive(Debug)]
struct Peer {
    addr: SocketAddr,
    upstream: LinkUdp,
    /// The upstream socket's own address, for the capture.
    local: SocketAddr,
    /// Whether bursts to the target still try UDP GSO on `upstream`.
    offload: SendOffload,
    activity: Activity,
    stop: CancellationToken,
}

/// At most one log line per [`LOG_EVERY`] for one kind of trouble.
#[derive(Debug, Default)]
struct Throttle {
    last: Option<std::time::Instant>,
    unlogged: u64,
}

impl Throttle {
    /// Counts one occurrence; `Some(count)` when it is time to log (the count includes it).
    fn hit(&mut self) -> Option<u64> {
        self.unlogged += 1;
        let now = std::time::Instant::now();
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < LOG_EVERY)
        {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.unlogged))
    }
}

/// One direction through the relay: its emulator, its delay line, and whose turn it is to
/// send (so datagrams leave in the delay line's order even when several tasks forward).
struct Path {
    direction: LinkDirection,
    emulator: Option<Arc<LinkEmulator>>,
    pipeline: Mutex<Pipeline>,
    turn: tokio::sync::Mutex<()>,
    wake: Notify,
}

impl Path {
    fn new(direction: LinkDirection, emulator: Option<Arc<LinkEmulator>>) -> Self {
        Path {
            direction,
            emulator,
            pipeline: Mutex::default(),
            turn: tokio::sync::Mutex::new(()),
            wake: Notify::new(),
        }
    }

    fn emulated(&self) -> Option<&DirectionEmulator> {
        self.emulator
            .as_deref()
            .map(|emulator| emulator.direction(self.direction))
    }
}

/// The relay's shared state.
struct Relay {
    config: RelayConfig,
    listen: LinkUdp,
    local: SocketAddr,
    /// Whether bursts to peers still try UDP GSO on `listen`.
    offload: SendOffload,
    /// What upstream sockets bind: the local address that reaches the target, any port.
    upstream_bind: SocketAddr,
    peers: Mutex<HashMap<SocketAddr, Arc<Peer>>>,
    stats: Arc<RelayStats>,
    tap: Option<CaptureTap>,
    log: RelayLog,
    to_target: Path,
    to_peers: Path,
    tasks: TaskTracker,
    stop: CancellationToken,
    refused_peers: Mutex<Throttle>,
    refused_by_target: Mutex<Throttle>,
    failed_sends: Mutex<Throttle>,
}

/// Runs the relay on `listen` until `stop`: peers' datagrams to `config.target`, the
/// target's replies back, through the emulator when there is one. `stats` counts what
/// crossed; `tap` records both legs (see the README's relay section).
pub async fn run(
    listen: impl TryInto<LinkUdp, Error = io::Error>,
    config: RelayConfig,
    stats: Arc<RelayStats>,
    tap: Option<CaptureTap>,
    log: RelayLog,
    stop: CancellationToken,
) -> io::Result<()> {
    let listen = listen.try_into()?;
    let local = listen.local_addr()?;
    let relay = Arc::new(Relay {
        upstream_bind: local_bind_towards(config.target),
        to_target: Path::new(LinkDirection::ToProxy2, config.emulator.clone()),
        to_peers: Path::new(LinkDirection::ToProxy1, config.emulator.clone()),
        config,
        listen,
        local,
        offload: SendOffload::default(),
        peers: Mutex::default(),
        stats,
        tap,
        log,
        tasks: TaskTracker::new(),
        stop,
        refused_peers: Mutex::default(),
        refused_by_target: Mutex::default(),
        failed_sends: Mutex::default(),
    });
    if relay.config.emulator.is_some() {
        relay.tasks.spawn(delay_line(relay.clone(), Leg::ToTarget));
        relay.tasks.spawn(delay_line(relay.clone(), Leg::ToPeers));
    }
    relay.tasks.spawn(expire_idle_peers(relay.clone()));
    let result = relay.clone().listen_loop().await;
    relay.stop.cancel();
    let peers: Vec<_> = relay.peers.lock().unwrap().drain().collect();
    for (_, peer) in peers {
        peer.stop.cancel();
    }
    relay.stats.peers_now.store(0, Ordering::Relaxed);
    relay.tasks.close();
    relay.tasks.wait().await;
    // What still waited in the delay lines never crossed: counted as dropped (stopped).
    for path in [&relay.to_target, &relay.to_peers] {
        if let Some(emulated) = path.emulated() {
            path.pipeline
                .lock()
                .unwrap()
                .discard_all(emulated.counters(), |_| None);
        }
    }
    result
}

/// Which way a datagram goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Leg {
    ToTarget,
    ToPeers,
}

impl Relay {
    fn path(&self, leg: Leg) -> &Path {
        match leg {
            Leg::ToTarget => &self.to_target,
            Leg::ToPeers => &self.to_peers,
        }
    }

    fn log(&self, level: Level, message: &str) {
        (self.log)(level, message);
    }

    /// Logs `what` (given the count since the last line) if the throttle allows.
    fn log_throttled(
        &self,
        throttle: &Mutex<Throttle>,
        level: Level,
        what: impl FnOnce(u64) -> String,
    ) {
        let due = throttle.lock().unwrap().hit();
        if let Some(count) = due {
            self.log(level, &what(count));
        }
    }

    /// Receives from peers until stopped; consecutive datagrams from one peer are forwarded
    /// as one burst.
    async fn listen_loop(self: Arc<Self>) -> io::Result<()> {
        let mut batch = RecvBatch::default();
        loop {
            let received = tokio::select! {
                () = self.stop.cancelled() => return Ok(()),
                received = batch.recv(&self.listen) => received,
            };
            if let Err(e) = received {
                // An unconnected socket reports little; whatever it is, keep serving.
                self.log_throttled(&self.failed_sends, Level::Warn, |n| {
                    format!("relay: receive on {} failed ({n}x): {e}", self.local)
                });
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
            let read = SystemTime::now();
            let mut run: Vec<&[u8]> = Vec::new();
            let mut run_peer: Option<Arc<Peer>> = None;
            for (datagram, from) in batch.datagrams() {
                add(&self.stats.from_peers, 1);
                add(&self.stats.from_peers_bytes, datagram.len());
                if run_peer.as_ref().is_none_or(|peer| peer.addr != from) {
                    if let Some(peer) = run_peer.take() {
                        self.forward(Leg::ToTarget, &run, &peer, read).await;
                        run.clear();
                    }
                    run_peer = self.peer_for(from).await;
                }
                if let Some(peer) = &run_peer {
                    peer.activity.touch();
                    run.push(datagram);
                }
            }
            if let Some(peer) = run_peer {
                self.forward(Leg::ToTarget, &run, &peer, read).await;
            }
        }
    }

    /// The peer at `from`, given a socket of its own if it is new and there is room.
    async fn peer_for(self: &Arc<Self>, from: SocketAddr) -> Option<Arc<Peer>> {
        if let Some(peer) = self.peers.lock().unwrap().get(&from) {
            return Some(peer.clone());
        }
        if self.peers.lock().unwrap().len() >= self.config.max_peers {
            add(&self.stats.peers_refused, 1);
            self.log_throttled(&self.refused_peers, Level::Warn, |n| {
                format!(
                    "relay: {n} datagram(s) from {from} dropped: {} peers already have a socket \
                     (--max-peers); one frees up after --peer-idle {} of silence",
                    self.config.max_peers,
                    humantime::format_duration(self.config.peer_idle)
                )
            });
            return None;
        }
        let upstream = match self.open_upstream().await {
            Ok(upstream) => upstream,
            Err(e) => {
                add(&self.stats.send_failed, 1);
                self.log_throttled(&self.failed_sends, Level::Error, |n| {
                    format!(
                        "relay: no socket toward {} for {from} ({n}x): {e:#}",
                        self.config.target
                    )
                });
                return None;
            }
        };
        let local = upstream.local_addr().ok()?;
        let peer = Arc::new(Peer {
            addr: from,
            upstream,
            local,
            offload: SendOffload::default(),
            activity: Activity::default(),
            stop: self.stop.child_token(),
        });
        self.peers.lock().unwrap().insert(from, peer.clone());
        add(&self.stats.peers_opened, 1);
        self.stats.peers_now.fetch_add(1, Ordering::Relaxed);
        self.log(
            Level::Info,
            &format!(
                "relay: new peer {from}, forwarded to {} from {local}",
                self.config.target
            ),
        );
        self.tasks.spawn(self.clone().upstream_loop(peer.clone()));
        Some(peer)
    }

    async fn open_upstream(&self) -> anyhow::Result<LinkUdp> {
        let socket = LinkUdp::try_from(bind_udp(self.upstream_bind)?)?;
        socket.connect(self.config.target)?;
        Ok(socket)
    }

    /// Receives the target's replies to one peer until the peer expires or the relay stops;
    /// what one `recvmmsg` read goes back as one burst.
    async fn upstream_loop(self: Arc<Self>, peer: Arc<Peer>) {
        let mut batch = RecvBatch::default();
        loop {
            let received = tokio::select! {
                () = peer.stop.cancelled() => return,
                received = batch.recv(&peer.upstream) => received,
            };
            match received {
                Ok(()) => {
                    let read = SystemTime::now();
                    let run: Vec<&[u8]> = batch.datagrams().map(|(datagram, _)| datagram).collect();
                    add(&self.stats.from_target, run.len());
                    add(
                        &self.stats.from_target_bytes,
                        run.iter().map(|d| d.len()).sum(),
                    );
                    peer.activity.touch();
                    self.forward(Leg::ToPeers, &run, &peer, read).await;
                }
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    self.target_refused();
                }
                Err(e) => {
                    self.log_throttled(&self.failed_sends, Level::Warn, |n| {
                        format!(
                            "relay: receive from {} failed ({n}x): {e}",
                            self.config.target
                        )
                    });
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }

    /// The target answered a datagram with ICMP "port unreachable".
    fn target_refused(&self) {
        add(&self.stats.target_refused, 1);
        self.log_throttled(&self.refused_by_target, Level::Warn, |n| {
            format!(
                "relay: the target {} refused {n} datagram(s) (ICMP port unreachable): \
                 is anything listening on that UDP port?",
                self.config.target
            )
        });
    }

    /// Takes datagrams that arrived together for `leg` from or for one peer through the
    /// emulator (if any; its decisions are per datagram) and sends what is due, as one
    /// burst. The capture records each as it arrived, with what the emulator made of it.
    async fn forward(&self, leg: Leg, datagrams: &[&[u8]], peer: &Peer, read: SystemTime) {
        let path = self.path(leg);
        let mut out = Vec::with_capacity(datagrams.len());
        let Some(emulated) = path.emulated() else {
            for datagram in datagrams {
                self.tap_arrival(leg, peer, datagram, read, None).await;
                out.push(Outgoing {
                    datagram: Cow::Borrowed(*datagram),
                    addr: peer.addr,
                    verdict: None,
                });
            }
            self.send_out(leg, Some(peer), &out).await;
            return;
        };
        let _turn = path.turn.lock().await;
        for datagram in datagrams {
            if emulated.is_clear() && path.pipeline.lock().unwrap().is_empty() {
                // Nothing to do to it and nothing to overtake: straight through, counted.
                emulated.passed_clear();
                self.tap_arrival(leg, peer, datagram, read, None).await;
                out.push(Outgoing {
                    datagram: Cow::Borrowed(*datagram),
                    addr: peer.addr,
                    verdict: Some(LinkVerdict::default()),
                });
                continue;
            }
            // The relay does not know the format, so a flipped bit may land anywhere.
            let corruptible = 0..datagram.len();
            let offered = {
                let mut pipeline = path.pipeline.lock().unwrap();
                emulated.offer(
                    &mut pipeline,
                    Instant::now(),
                    datagram.to_vec(),
                    corruptible,
                    peer.addr,
                )
            };
            let note = match &offered {
                Err((cause, _)) => {
                    let verdict = LinkVerdict::dropped(*cause);
                    self.log_verdict(leg, peer.addr, datagram.len(), &verdict);
                    Some(format!(
                        "relay's link emulator: {}; not forwarded",
                        verdict.describe()
                    ))
                }
                Ok(accepted) if accepted.release.is_none() => {
                    Some("relay's link emulator: held back to be reordered".to_string())
                }
                Ok(_) => None,
            };
            self.tap_arrival(leg, peer, datagram, read, note).await;
            self.take_due(leg, &mut out);
        }
        self.send_out(leg, Some(peer), &out).await;
        path.wake.notify_one();
    }

    /// With `--verbose`, one log line for what the emulator did to a datagram of `len`
    /// bytes from or to `peer`.
    fn log_verdict(&self, leg: Leg, peer: SocketAddr, len: usize, verdict: &LinkVerdict) {
        if !self.config.verbose {
            return;
        }
        let who = match leg {
            Leg::ToTarget => format!("from {peer}"),
            Leg::ToPeers => format!("to {peer}"),
        };
        let arrow = self.path(leg).direction.arrow();
        let line = format!("relay {arrow} {len} B {who}: {}", verdict.describe());
        self.log(Level::Info, &line);
    }

    /// Moves everything due in `leg`'s delay line to `out`, in its order. The caller holds
    /// the path's turn.
    fn take_due(&self, leg: Leg, out: &mut Vec<Outgoing<'_>>) {
        let path = self.path(leg);
        let Some(emulated) = path.emulated() else {
            return;
        };
        loop {
            let due = path
                .pipeline
                .lock()
                .unwrap()
                .pop_due(Instant::now(), emulated.counters());
            let Some(Pending {
                datagram,
                addr,
                verdict,
            }) = due
            else {
                return;
            };
            if !verdict.is_plain() {
                self.log_verdict(leg, addr, datagram.len(), &verdict);
            }
            out.push(Outgoing {
                datagram: Cow::Owned(datagram),
                addr,
                verdict: Some(verdict),
            });
        }
    }

    /// Sends everything due in `leg`'s delay line. The caller holds the path's turn.
    async fn flush(&self, leg: Leg) {
        let mut out = Vec::new();
        self.take_due(leg, &mut out);
        self.send_out(leg, None, &out).await;
    }

    /// Sends datagrams on their way, in order: to the target from their peer's socket, or
    /// to their peer from the listening socket; each run for one peer as one burst.
    /// `known` spares the peer table a look-up; a peer that expired while its datagram
    /// waited in the delay line loses it (counted as stopped).
    async fn send_out(&self, leg: Leg, known: Option<&Peer>, out: &[Outgoing<'_>]) {
        let emulated = self.path(leg).emulated();
        let mut rest = out;
        while let Some(first) = rest.first() {
            let addr = first.addr;
            let run = rest.iter().take_while(|o| o.addr == addr).count();
            let (group, after) = rest.split_at(run);
            rest = after;
            let wires: Vec<&[u8]> = group.iter().map(|o| &o.datagram[..]).collect();
            let handed = SystemTime::now();
            let (refused, src, dst) = match leg {
                Leg::ToTarget => {
                    let found;
                    let upstream = match known.filter(|peer| peer.addr == addr) {
                        Some(peer) => peer,
                        None => {
                            found = self.peers.lock().unwrap().get(&addr).cloned();
                            if let Some(peer) = &found {
                                peer
                            } else {
                                if let Some(emulated) = emulated {
                                    for _ in group.iter().filter(|o| o.verdict.is_some()) {
                                        emulated.counters().drop(DropCause::Stopped);
                                    }
                                }
                                continue;
                            }
                        }
                    };
                    (
                        batch::send_burst(&upstream.upstream, &upstream.offload, None, &wires)
                            .await,
                        upstream.local,
                        self.config.target,
                    )
                }
                Leg::ToPeers => (
                    batch::send_burst(&self.listen, &self.offload, Some(addr), &wires).await,
                    self.local,
                    addr,
                ),
            };
            let mut refused = refused.into_iter().peekable();
            for (at, outgoing) in group.iter().enumerate() {
                let emulated = emulated.filter(|_| outgoing.verdict.is_some());
                if refused.peek().is_some_and(|(bad, _)| *bad == at) {
                    let (_, e) = refused.next().expect("peeked");
                    self.send_failed(leg, &outgoing.datagram, dst, emulated, &e);
                } else {
                    self.sent(leg, outgoing, src, dst, emulated, handed).await;
                }
            }
        }
    }

    /// Counts and captures one datagram that went out.
    async fn sent(
        &self,
        leg: Leg,
        outgoing: &Outgoing<'_>,
        src: SocketAddr,
        dst: SocketAddr,
        emulated: Option<&DirectionEmulator>,
        handed: SystemTime,
    ) {
        if let Some(emulated) = emulated {
            emulated.counters().delivered.add();
        }
        let (count, bytes) = match leg {
            Leg::ToTarget => (&self.stats.to_target, &self.stats.to_target_bytes),
            Leg::ToPeers => (&self.stats.to_peers, &self.stats.to_peers_bytes),
        };
        add(count, 1);
        add(bytes, outgoing.datagram.len());
        let note = outgoing.verdict.as_ref().and_then(|verdict| {
            verdict
                .capture_note(false)
                .map(|n| n.replacen("link emulator", "relay's link emulator", 1))
        });
        self.tap(
            TapRecord {
                time: handed,
                src,
                dst,
                datagram: Vec::new(),
                note,
                on_wire: true,
            },
            &outgoing.datagram,
        )
        .await;
    }

    /// Counts and reports one datagram the operating system refused to send.
    fn send_failed(
        &self,
        leg: Leg,
        datagram: &[u8],
        dst: SocketAddr,
        emulated: Option<&DirectionEmulator>,
        e: &io::Error,
    ) {
        if let Some(emulated) = emulated {
            emulated.counters().drop(DropCause::SendFailed);
        }
        if leg == Leg::ToTarget && e.kind() == io::ErrorKind::ConnectionRefused {
            self.target_refused();
        } else {
            add(&self.stats.send_failed, 1);
            self.log_throttled(&self.failed_sends, Level::Warn, |n| {
                format!(
                    "relay: send of a {}-byte datagram to {dst} failed ({n}x): {e}",
                    datagram.len()
                )
            });
        }
    }

    /// Records a datagram as it arrived at the relay (the incoming leg).
    async fn tap_arrival(
        &self,
        leg: Leg,
        peer: &Peer,
        datagram: &[u8],
        read: SystemTime,
        note: Option<String>,
    ) {
        let (src, dst) = match leg {
            Leg::ToTarget => (peer.addr, self.local),
            Leg::ToPeers => (self.config.target, peer.local),
        };
        self.tap(
            TapRecord {
                time: read,
                src,
                dst,
                datagram: Vec::new(),
                note,
                on_wire: true,
            },
            datagram,
        )
        .await;
    }

    /// Hands the datagram to the capture's ring (copied there; `record.datagram` unused).
    async fn tap(&self, record: TapRecord, datagram: &[u8]) {
        if let Some(tap) = &self.tap {
            tap.frame(TapFrame {
                time: record.time,
                src: record.src,
                dst: record.dst,
                datagram,
                note: record.note,
                on_wire: record.on_wire,
            })
            .await;
        }
    }
}

/// A datagram on its way out of the relay: borrowed from what was read, or out of a delay
/// line; `verdict` when it crossed the emulator (counted as delivered or failed there).
struct Outgoing<'a> {
    datagram: Cow<'a, [u8]>,
    addr: SocketAddr,
    verdict: Option<LinkVerdict>,
}

/// Sends what a delay line makes due, when it is due (the forwarding tasks send what is due
/// when they offer; this covers delays, rate limits and held frames).
async fn delay_line(relay: Arc<Relay>, leg: Leg) {
    let path = relay.path(leg);
    loop {
        let next = path.pipeline.lock().unwrap().next_wake();
        tokio::select! {
            () = relay.stop.cancelled() => return,
            () = path.wake.notified() => {}
            () = sleep_until_or_forever(next) => {
                let _turn = path.turn.lock().await;
                relay.flush(leg).await;
            }
        }
    }
}

async fn sleep_until_or_forever(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Closes the sockets of peers silent both ways for `peer_idle`.
async fn expire_idle_peers(relay: Arc<Relay>) {
    let every =
        (relay.config.peer_idle / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = relay.stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let expired: Vec<Arc<Peer>> = {
            let mut peers = relay.peers.lock().unwrap();
            let idle: Vec<SocketAddr> = peers
                .values()
                .filter(|peer| peer.activity.idle_for() >= relay.config.peer_idle)
                .map(|peer| peer.addr)
                .collect();
            idle.iter().filter_map(|addr| peers.remove(addr)).collect()
        };
        for peer in expired {
            peer.stop.cancel();
            add(&relay.stats.peers_expired, 1);
            relay.stats.peers_now.fetch_sub(1, Ordering::Relaxed);
            relay.log(
                Level::Info,
                &format!(
                    "relay: peer {} silent for {}: its socket {} closed",
                    peer.addr,
                    humantime::format_duration(relay.config.peer_idle),
                    peer.local
                ),
            );
        }
    }
}
