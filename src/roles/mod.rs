//! The four roles. Each is an async function that takes already-bound sockets and a
//! shutdown token, so the lab, the standalone subcommands and the tests all start them the
//! same way (tests bind `127.0.0.1:0` and read the real ports).

pub mod access_log;
pub mod dialers;
pub mod echo_client;
pub mod echo_server;
pub mod fronts;
pub mod proxy1;
pub mod proxy2;
pub mod relay;
pub mod socks5_direct;

use std::io;

use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::event::CloseKind;

/// A proxy reads up to this many frames' worth from a TCP connection at once and sends it
/// as that many `D` frames: one read system call per burst instead of one per datagram.
pub(crate) const FRAMES_PER_READ: usize = 32;

/// A proxy's writer takes up to this many queued frames at once and writes their payloads
/// to TCP in one go: one write system call per burst instead of one per datagram.
pub(crate) const FRAMES_PER_WRITE: usize = 64;

/// Writes `chunks` in order with one `write_all`: a single chunk as it is, several copied
/// together into `scratch` first. Returns the bytes written.
pub(crate) async fn write_coalesced<W: AsyncWrite + Unpin, C: AsRef<[u8]>>(
    writer: &mut W,
    chunks: &[C],
    scratch: &mut Vec<u8>,
) -> io::Result<usize> {
    match chunks {
        [] => Ok(0),
        [one] => {
            let one = one.as_ref();
            writer.write_all(one).await.map(|()| one.len())
        }
        many => {
            scratch.clear();
            for chunk in many {
                scratch.extend_from_slice(chunk.as_ref());
            }
            writer.write_all(scratch).await.map(|()| scratch.len())
        }
    }
}

/// Reads what a TCP read result says about how the peer closed, if it did.
pub(crate) fn peer_close_kind(result: &io::Result<usize>) -> Option<CloseKind> {
    match result {
        Ok(0) => Some(CloseKind::Fin),
        Ok(_) => None,
        Err(_) => Some(CloseKind::Rst),
    }
}

/// Lets through one log line per period about a thing that can happen thousands of times a
/// second (a flood), and counts the ones it held back, so the log stays readable.
#[derive(Debug)]
pub(crate) struct LogThrottle {
    period: std::time::Duration,
    state: std::sync::Mutex<(Option<std::time::Instant>, u64)>,
}

impl LogThrottle {
    pub(crate) fn new(period: std::time::Duration) -> Self {
        LogThrottle {
            period,
            state: std::sync::Mutex::new((None, 0)),
        }
    }

    /// `Some(n)` when a line may be written now, `n` being how many were held back since
    /// the last one; `None` when this one is held back.
    pub(crate) fn allow(&self) -> Option<u64> {
        let mut state = self.state.lock().unwrap();
        let now = std::time::Instant::now();
        match state.0 {
            Some(last) if now.duration_since(last) < self.period => {
                state.1 += 1;
                None
            }
            _ => {
                let held = std::mem::take(&mut state.1);
                state.0 = Some(now);
                Some(held)
            }
        }
    }
}

/// An idle timeout that can change while the role runs (the admin protocol's
/// `CONFIG idle_timeout`). Clones share one value, so whoever holds a clone of a role's
/// config can change it; a role reads it at every idle sweep.
#[derive(Clone, Debug)]
pub struct IdleTimeout(std::sync::Arc<std::sync::atomic::AtomicU64>);

impl IdleTimeout {
    /// A timeout of `timeout` (kept to the millisecond).
    pub fn new(timeout: std::time::Duration) -> Self {
        IdleTimeout(std::sync::Arc::new(std::sync::atomic::AtomicU64::new(
            timeout.as_millis().min(u128::from(u64::MAX)) as u64,
        )))
    }

    /// The timeout in force now.
    pub fn get(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.0.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Changes the timeout for every clone, from the next sweep on.
    pub fn set(&self, timeout: std::time::Duration) {
        self.0.store(
            timeout.as_millis().min(u128::from(u64::MAX)) as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
    }
}

impl From<std::time::Duration> for IdleTimeout {
    fn from(timeout: std::time::Duration) -> Self {
        IdleTimeout::new(timeout)
    }
}
