//! The measuring client: the same code drives every path (direct TCP, tunlab, kcptun), so
//! differences come from the path and not from the client.
//!
//! Every loop here is bounded twice, by a count and by a deadline, and every read has a
//! timeout: a path that loses data (classic mode over UDP may) costs a timeout, never a hang.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;

/// Size of one echo message in the latency tests.
pub const MESSAGE_LEN: usize = 64;

/// How long one echo may take before it counts as lost.
const ECHO_TIMEOUT: Duration = Duration::from_secs(1);

/// A path that loses more echoes than this in one test is given up on for that test.
const MAX_LOST: usize = 20;

async fn connect(addr: SocketAddr) -> anyhow::Result<TcpStream> {
    let stream = tokio::time::timeout(Duration::from_secs(3), TcpStream::connect(addr))
        .await
        .with_context(|| format!("connect to {addr} timed out"))?
        .with_context(|| format!("cannot connect to {addr}"))?;
    // Small messages must leave at once, on every path alike.
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Sends `message` and waits for exactly its echo. `Ok(false)`: lost or damaged.
async fn echo_once(stream: &mut TcpStream, message: &[u8], back: &mut [u8]) -> io::Result<bool> {
    stream.write_all(message).await?;
    let mut got = 0;
    while got < message.len() {
        match tokio::time::timeout(ECHO_TIMEOUT, stream.read(&mut back[got..message.len()])).await {
            Ok(Ok(0)) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(Ok(n)) => got += n,
            Ok(Err(e)) => return Err(e),
            Err(_) => return Ok(false),
        }
    }
    Ok(back[..message.len()] == *message)
}

/// Waits until `addr` echoes one byte back, so a path is measured only once it works end to
/// end (proxies up, tunnel connection open).
pub async fn wait_until_echoing(addr: SocketAddr, within: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    let mut last_error = anyhow::anyhow!("no attempt made");
    while Instant::now() < deadline {
        match connect(addr).await {
            Ok(mut stream) => {
                let mut back = [0u8; 1];
                match echo_once(&mut stream, b"?", &mut back).await {
                    Ok(true) => return Ok(()),
                    Ok(false) => last_error = anyhow::anyhow!("no echo from {addr}"),
                    Err(e) => last_error = anyhow::anyhow!("echo via {addr} failed: {e}"),
                }
            }
            Err(e) => last_error = e,
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(last_error.context(format!("{addr} did not start echoing within {within:?}")))
}

/// A 64-byte message that differs from the previous one, so a stale echo cannot pass.
fn message(n: u64) -> [u8; MESSAGE_LEN] {
    let mut message = [b'.'; MESSAGE_LEN];
    message[..8].copy_from_slice(&n.to_le_bytes());
    message[MESSAGE_LEN - 1] = b'\n';
    message
}

/// Untimed round trips before [`rtt`] starts timing.
pub const WARM_UP: usize = 200;

/// Round-trip times of one connection.
#[derive(Clone, Debug, Default)]
pub struct RttResult {
    /// Round trips timed (warm-up excluded).
    pub samples: usize,
    /// Echoes that did not come back within [`ECHO_TIMEOUT`] or came back damaged.
    pub lost: usize,
    pub p50: Duration,
    pub p99: Duration,
}

/// Times `count` round trips of 64 bytes, one at a time, on one connection (after a short
/// warm-up). A lost echo leaves the stream out of step, so the connection is replaced.
pub async fn rtt(addr: SocketAddr, count: usize, within: Duration) -> anyhow::Result<RttResult> {
    let deadline = Instant::now() + within;
    let mut stream = connect(addr).await?;
    let mut back = [0u8; MESSAGE_LEN];
    let mut samples = Vec::with_capacity(count);
    let mut lost = 0;
    let mut n = 0u64;
    while samples.len() < count && Instant::now() < deadline && lost <= MAX_LOST {
        n += 1;
        let message = message(n);
        let start = Instant::now();
        if echo_once(&mut stream, &message, &mut back).await? {
            if n as usize > WARM_UP {
                samples.push(start.elapsed());
            }
        } else {
            lost += 1;
            stream = connect(addr).await?;
        }
    }
    anyhow::ensure!(!samples.is_empty(), "no round trip completed via {addr}");
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    Ok(RttResult {
        samples: samples.len(),
        lost,
        p50: at(0.50),
        p99: at(0.99),
    })
}

/// Round trips of many connections at once.
#[derive(Clone, Debug, Default)]
pub struct ConcurrentResult {
    pub round_trips: u64,
    pub lost: u64,
    pub per_second: f64,
}

/// `connections` connections each doing 64-byte round trips back to back for `duration`.
pub async fn concurrent(
    addr: SocketAddr,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<ConcurrentResult> {
    // Connect everyone first, so the timed part is only round trips.
    let mut streams = Vec::with_capacity(connections);
    for _ in 0..connections {
        let mut stream = connect(addr).await?;
        let mut back = [0u8; 1];
        anyhow::ensure!(
            echo_once(&mut stream, b"!", &mut back).await?,
            "a connection via {addr} did not echo before the concurrent test"
        );
        streams.push(stream);
    }
    let start = Instant::now();
    let deadline = start + duration;
    let tasks: Vec<_> = streams
        .into_iter()
        .map(|mut stream| {
            tokio::spawn(async move {
                let mut back = [0u8; MESSAGE_LEN];
                let (mut done, mut lost) = (0u64, 0u64);
                let mut n = 0u64;
                // The count bound is far above what a few seconds allow; it only guards.
                while Instant::now() < deadline && n < 50_000_000 && lost <= MAX_LOST as u64 {
                    n += 1;
                    match echo_once(&mut stream, &message(n), &mut back).await {
                        Ok(true) => done += 1,
                        Ok(false) => {
                            lost += 1;
                            match connect(addr).await {
                                Ok(fresh) => stream = fresh,
                                Err(_) => break,
                            }
                        }
                        Err(_) => break,
                    }
                }
                (done, lost)
            })
        })
        .collect();
    let mut result = ConcurrentResult::default();
    for task in tasks {
        let (done, lost) = task.await?;
        result.round_trips += done;
        result.lost += lost;
    }
    result.per_second = result.round_trips as f64 / start.elapsed().as_secs_f64();
    Ok(result)
}

/// The goodput stream is made of records: an 8-byte marker, an 8-byte sequence number and a
/// body that depends on the sequence number. A record that comes back unchanged is intact;
/// after a loss the reader finds the next marker, so one lost datagram costs only the
/// records it touched.
pub const RECORD_LEN: usize = 1024;
const RECORD_MARK: &[u8; 8] = b"tunlabRC";
const BODY_LEN: usize = RECORD_LEN - 16;
/// Records written per `write_all`.
const RECORDS_PER_WRITE: usize = 64;

/// Pseudo-random bytes the record bodies are cut from.
fn body_source() -> Vec<u8> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    (0..2 * RECORD_LEN)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

fn body_of(source: &[u8], seq: u64) -> &[u8] {
    let offset = (seq as usize).wrapping_mul(7) % RECORD_LEN;
    &source[offset..offset + BODY_LEN]
}

/// How the goodput writer paces itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pacing {
    /// Write as fast as the socket takes it; on a path without flow control (classic mode)
    /// whatever the far end cannot absorb is lost.
    FullSpeed,
    /// Keep at most this many bytes sent and not yet echoed (or given up as lost).
    InFlight(usize),
}

impl Pacing {
    pub fn label(self) -> String {
        match self {
            Pacing::FullSpeed => "full speed".into(),
            Pacing::InFlight(bytes) => format!("≤{} KiB in flight", bytes / 1024),
        }
    }
}

/// One connection's echo goodput.
#[derive(Clone, Debug, Default)]
pub struct GoodputResult {
    pub sent_bytes: u64,
    /// Bytes of records that came back unchanged, in order, not duplicated.
    pub intact_bytes: u64,
    /// Intact bytes that came back within the timed window.
    pub intact_in_window: u64,
    /// Intact bytes per second over the timed window, in MB/s (10^6 bytes).
    pub mb_per_s: f64,
}

impl GoodputResult {
    /// Fraction of the bytes sent that came back intact.
    pub fn intact_fraction(&self) -> f64 {
        if self.sent_bytes == 0 {
            0.0
        } else {
            self.intact_bytes as f64 / self.sent_bytes as f64
        }
    }
}

/// What the reader has learnt, shared with the writer for pacing.
#[derive(Default)]
struct Progress {
    /// Sequence number after the highest one seen: everything below is back or lost.
    next_seq: AtomicU64,
    changed: Notify,
    writer_done: AtomicBool,
    sent_bytes: AtomicU64,
}

/// Writes records for `duration` (or until `max_bytes` are written, if sooner) while reading
/// the echo back on the same connection.
pub async fn goodput(
    addr: SocketAddr,
    duration: Duration,
    max_bytes: u64,
    pacing: Pacing,
) -> anyhow::Result<GoodputResult> {
    // After the writer stops, what is still on its way has this long to come back.
    const DRAIN: Duration = Duration::from_secs(1);
    // A window that sees no progress this long gives its records up as lost.
    const STALL: Duration = Duration::from_millis(200);
    let stream = connect(addr).await?;
    let (mut reader, mut writer) = stream.into_split();
    let progress = Arc::new(Progress::default());
    let source: Arc<[u8]> = body_source().into();
    let start = Instant::now();
    let window_end = start + duration;

    let writer_progress = progress.clone();
    let writer_source = source.clone();
    let write_task = tokio::spawn(async move {
        let progress = writer_progress;
        let mut chunk = vec![0u8; RECORDS_PER_WRITE * RECORD_LEN];
        let mut seq = 0u64;
        // Records below this are given up on (a stalled window after a loss).
        let mut written_off = 0u64;
        while Instant::now() < window_end && seq * (RECORD_LEN as u64) < max_bytes {
            if let Pacing::InFlight(limit) = pacing {
                let limit = limit.max(chunk.len());
                loop {
                    // Registered before looking, so a notification in between is not missed.
                    let changed = progress.changed.notified();
                    let settled = progress.next_seq.load(Ordering::Acquire).max(written_off);
                    let in_flight = seq.saturating_sub(settled) as usize * RECORD_LEN;
                    if in_flight + chunk.len() <= limit || Instant::now() >= window_end {
                        break;
                    }
                    if tokio::time::timeout(STALL, changed).await.is_err() {
                        written_off = seq;
                    }
                }
                if Instant::now() >= window_end {
                    break;
                }
            }
            for record in chunk.chunks_exact_mut(RECORD_LEN) {
                record[..8].copy_from_slice(RECORD_MARK);
                record[8..16].copy_from_slice(&seq.to_le_bytes());
                record[16..].copy_from_slice(body_of(&writer_source, seq));
                seq += 1;
            }
            if writer.write_all(&chunk).await.is_err() {
                break;
            }
            progress
                .sent_bytes
                .fetch_add(chunk.len() as u64, Ordering::Release);
        }
        progress.writer_done.store(true, Ordering::Release);
        // Keep the write half open until the reader is done: closing it would end the
        // echo (proxies close a tunnel connection on FIN).
        writer
    });

    let mut result = GoodputResult::default();
    let mut pending: Vec<u8> = Vec::with_capacity(4 * RECORD_LEN * RECORDS_PER_WRITE);
    let mut buf = vec![0u8; 256 * 1024];
    let mut last_data = Instant::now();
    let hard_stop = window_end + DRAIN + Duration::from_secs(2);
    loop {
        let writer_done = progress.writer_done.load(Ordering::Acquire);
        let sent = progress.sent_bytes.load(Ordering::Acquire);
        let settled = progress.next_seq.load(Ordering::Acquire) * RECORD_LEN as u64;
        if writer_done && (settled >= sent || last_data.elapsed() > DRAIN) {
            break;
        }
        if Instant::now() > hard_stop {
            break;
        }
        let n = match tokio::time::timeout(Duration::from_millis(100), reader.read(&mut buf)).await
        {
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(n)) => n,
            Err(_) => continue,
        };
        last_data = Instant::now();
        let in_window = last_data <= window_end;
        pending.extend_from_slice(&buf[..n]);
        let intact = take_records(&mut pending, &source, &progress.next_seq);
        result.intact_bytes += intact;
        if in_window {
            result.intact_in_window += intact;
        }
        progress.changed.notify_one();
    }
    let writer = write_task.await?;
    drop(writer);
    result.sent_bytes = progress.sent_bytes.load(Ordering::Acquire);
    result.mb_per_s = result.intact_in_window as f64 / duration.as_secs_f64() / 1e6;
    Ok(result)
}

/// Consumes whole records from the front of `pending`; returns the bytes of intact ones.
/// Damaged bytes are skipped up to the next record marker.
fn take_records(pending: &mut Vec<u8>, source: &[u8], next_seq: &AtomicU64) -> u64 {
    let mut intact = 0u64;
    let mut at = 0;
    while pending.len() - at >= RECORD_LEN {
        let record = &pending[at..at + RECORD_LEN];
        let seq = u64::from_le_bytes(record[8..16].try_into().unwrap());
        let expected = next_seq.load(Ordering::Relaxed);
        if record[..8] == *RECORD_MARK && record[16..] == *body_of(source, seq) {
            // A duplicate or an old record is not new goodput.
            if seq >= expected {
                intact += RECORD_LEN as u64;
                next_seq.store(seq + 1, Ordering::Release);
            }
            at += RECORD_LEN;
        } else {
            // Skip to the next marker (never the one we are on).
            match pending[at + 1..]
                .windows(RECORD_MARK.len())
                .position(|w| w == RECORD_MARK)
            {
                Some(skip) => at += 1 + skip,
                None => {
                    at = pending.len() - (RECORD_MARK.len() - 1);
                    break;
                }
            }
        }
    }
    pending.drain(..at);
    intact
}

/// Checks the record parser on its own: intact records count, a cut-out span costs only
/// the records it touched, duplicates do not count. Run with `--self-check`.
pub fn self_check() -> anyhow::Result<()> {
    let source = body_source();
    let mut stream = Vec::new();
    for seq in 0..10u64 {
        stream.extend_from_slice(RECORD_MARK);
        stream.extend_from_slice(&seq.to_le_bytes());
        stream.extend_from_slice(body_of(&source, seq));
    }
    let next = AtomicU64::new(0);
    let mut all = stream.clone();
    anyhow::ensure!(take_records(&mut all, &source, &next) == 10 * RECORD_LEN as u64);
    // Lose 1498 bytes (one datagram) from the middle of record 2 into record 3.
    let mut lossy = stream.clone();
    lossy.drain(2 * RECORD_LEN + 100..2 * RECORD_LEN + 100 + 1498);
    let next = AtomicU64::new(0);
    let got = take_records(&mut lossy, &source, &next);
    anyhow::ensure!(
        got == 8 * RECORD_LEN as u64,
        "a 1498-byte loss should cost two records, cost {}",
        10 - got / RECORD_LEN as u64
    );
    // A duplicated record counts once.
    let mut duplicated = stream[..2 * RECORD_LEN].to_vec();
    duplicated.extend_from_slice(&stream[RECORD_LEN..2 * RECORD_LEN]);
    let next = AtomicU64::new(0);
    anyhow::ensure!(take_records(&mut duplicated, &source, &next) == 2 * RECORD_LEN as u64);
    Ok(())
}
