//! A SOCKS5 server with no tunnel: the SOCKS5 front straight on top of the resolver dialer
//! (`tunlab socks5 PORT`). Useful on its own, as the baseline a class compares the tunnel
//! with, and to test the front, the rules and the access log end to end with real clients.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::roles::access_log::{AccessLogWriter, AccessRecord, AccessResult};
use crate::roles::dialers::ResolverDialer;
use crate::roles::fronts::socks5::{self, FrontConfig};
use crate::tasks::{SHUTDOWN_GRACE, Tasks};

/// Most clients served at once, by default; more wait in the listen queue.
pub const DEFAULT_MAX_CLIENTS: usize = 4096;

/// Bytes moved per read while relaying (the seed's SOCKS5 server measured 16 KiB best).
const RELAY_CHUNK: usize = 16 * 1024;

/// Called with each finished connection's record (the standalone server prints it).
pub type OnRecord = Arc<dyn Fn(&AccessRecord) + Send + Sync>;

/// The direct server's settings.
#[derive(Clone)]
pub struct DirectConfig {
    pub front: FrontConfig,
    pub dialer: ResolverDialer,
    /// Where each connection's record goes, if anywhere.
    pub access_log: Option<AccessLogWriter>,
    /// Also told of each record (the log on stderr).
    pub on_record: Option<OnRecord>,
    /// Most clients served at once.
    pub max_clients: usize,
}

impl Default for DirectConfig {
    fn default() -> Self {
        DirectConfig {
            front: FrontConfig::default(),
            dialer: ResolverDialer::default(),
            access_log: None,
            on_record: None,
            max_clients: DEFAULT_MAX_CLIENTS,
        }
    }
}

impl std::fmt::Debug for DirectConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectConfig")
            .field("front", &self.front)
            .field("dialer", &self.dialer)
            .field("access_log", &self.access_log.is_some())
            .field("max_clients", &self.max_clients)
            .finish()
    }
}

/// Serves SOCKS5 clients on `listener` until `stop`; returns once every connection task
/// has ended (they end at `stop` too), or after [`SHUTDOWN_GRACE`].
pub async fn run(listener: TcpListener, config: DirectConfig, stop: CancellationToken) {
    run_in(Tasks::new(), listener, config, stop).await;
}

/// [`run`] with one task per client in `tasks`, which still holds, when this returns, the
/// tasks that did not end within the grace period.
pub async fn run_in(
    tasks: Tasks,
    listener: TcpListener,
    config: DirectConfig,
    stop: CancellationToken,
) {
    let config = Arc::new(config);
    let slots = Arc::new(Semaphore::new(config.max_clients.max(1)));
    loop {
        let slot = tokio::select! {
            () = stop.cancelled() => break,
            slot = slots.clone().acquire_owned() => slot.expect("never closed"),
        };
        let accepted = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(_) => {
                // Out of descriptors, most likely: let some close before trying again.
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let config = config.clone();
        let stop = stop.clone();
        tasks.spawn("socks5 client", async move {
            let _slot = slot;
            serve(stream, peer, &config, &stop).await;
        });
    }
    drop(listener);
    tasks.wait(SHUTDOWN_GRACE).await;
}

/// One client, from the handshake to the close, and its record.
async fn serve(
    client: TcpStream,
    peer: SocketAddr,
    config: &DirectConfig,
    stop: &CancellationToken,
) {
    let started = Instant::now();
    let mut record = AccessRecord::new(peer, SystemTime::now());
    let _ = client.set_nodelay(true);
    handle(client, config, &mut record, stop).await;
    record.lasted(started.elapsed());
    if let Some(log) = &config.access_log {
        log.record(&record);
    }
    if let Some(on_record) = &config.on_record {
        on_record(&record);
    }
}

async fn handle(
    mut client: TcpStream,
    config: &DirectConfig,
    record: &mut AccessRecord,
    stop: &CancellationToken,
) {
    // Each phase watches `stop` itself, so whatever the relay counted reaches the record.
    let accepted = tokio::select! {
        () = stop.cancelled() => return stopped(record),
        accepted = socks5::accept(&mut client, &config.front) => accepted,
    };
    let accepted = match accepted {
        Ok(accepted) => accepted,
        Err(rejected) => {
            record.user = rejected.user().map(str::to_string);
            record.result = AccessResult::Rejected;
            record.reason = Some(rejected.tag().to_string());
            record.detail = Some(rejected.to_string());
            return;
        }
    };
    record.user = accepted.user.clone();
    record.destination = Some(accepted.destination.to_string());
    let dialed = tokio::select! {
        () = stop.cancelled() => return stopped(record),
        dialed = config.dialer.dial(&accepted.destination) => dialed,
    };
    let dialed = match dialed {
        Ok(dialed) => dialed,
        Err(e) => {
            record.result = AccessResult::Refused;
            record.reason = Some(e.refusal.tag().to_string());
            record.detail = Some(e.detail.clone());
            let _ = socks5::answer(&mut client, Err(e.refusal)).await;
            return;
        }
    };
    record.address = Some(dialed.peer);
    record.result = AccessResult::Ok;
    let bound = dialed.stream.local_addr().ok();
    if let Err(e) = socks5::answer(&mut client, Ok(bound)).await {
        record.detail = Some(format!("the client left before the reply: {e}"));
        return;
    }
    let relayed = relay(client, dialed.stream, &accepted.early_data, stop).await;
    record.bytes_up = relayed.up;
    record.bytes_down = relayed.down;
    record.detail = match relayed.error {
        Some(e) => Some(format!("ended by a socket error: {e}")),
        None if relayed.stopped => Some("the server stopped".to_string()),
        None => None,
    };
}

fn stopped(record: &mut AccessRecord) {
    record.detail = Some("the server stopped".to_string());
}

/// What a relay moved, and the socket error that ended it, if one did.
#[derive(Debug, Default)]
pub struct Relayed {
    pub up: u64,
    pub down: u64,
    pub error: Option<io::Error>,
    /// `stop` ended it while both sides were still open.
    pub stopped: bool,
}

/// Copies both ways between `client` and `server` until both sides have closed (a FIN one
/// way is passed on as a FIN, and the other way keeps going), either fails, or `stop`.
/// `early` is sent to the server first.
pub async fn relay(
    client: TcpStream,
    server: TcpStream,
    early: &[u8],
    stop: &CancellationToken,
) -> Relayed {
    let up = AtomicU64::new(0);
    let down = AtomicU64::new(0);
    let (client_read, client_write) = client.into_split();
    let (server_read, mut server_write) = server.into_split();
    let mut error = None;
    let mut stopped = false;
    if !early.is_empty() {
        match server_write.write_all(early).await {
            Ok(()) => {
                up.fetch_add(early.len() as u64, Ordering::Relaxed);
            }
            Err(e) => error = Some(e),
        }
    }
    if error.is_none() {
        let upward = pump(client_read, server_write, &up);
        let downward = pump(server_read, client_write, &down);
        tokio::pin!(upward, downward);
        let (mut up_done, mut down_done) = (false, false);
        while !(up_done && down_done) {
            let result = tokio::select! {
                () = stop.cancelled() => {
                    stopped = true;
                    break;
                }
                result = &mut upward, if !up_done => { up_done = true; result }
                result = &mut downward, if !down_done => { down_done = true; result }
            };
            if let Err(e) = result {
                // One side is broken: the other way has nowhere to go either.
                error = Some(e);
                break;
            }
        }
    }
    Relayed {
        up: up.load(Ordering::Relaxed),
        down: down.load(Ordering::Relaxed),
        error,
        stopped,
    }
}

async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    moved: &AtomicU64,
) -> io::Result<()> {
    let mut buffer = vec![0u8; RELAY_CHUNK];
    loop {
        let n = from.read(&mut buffer).await?;
        if n == 0 {
            // Pass the FIN on; the other direction carries on until it closes too.
            return to.shutdown().await;
        }
        to.write_all(&buffer[..n]).await?;
        moved.fetch_add(n as u64, Ordering::Relaxed);
    }
}
