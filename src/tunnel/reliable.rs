//! The pump of one connection in a reliable mode (stop-and-wait, Go-Back-N, Selective
//! Repeat): between a TCP stream and the connection's [`Transport`], shared by both proxies.
//!
//! The link's receive loop feeds the transport the frames of this connection
//! ([`ReliableConn::on_frame`]) and wakes the pump; the pump does everything else: it writes
//! what the TCP side reads into the transport (only as much as the send buffer takes, so TCP
//! backpressure reaches the client), sends what the transport wants sent, writes what it
//! delivers to the TCP side (while that write waits, nothing more is taken from the
//! transport, whose receive window then closes: flow control), and runs its timer.
//!
//! A TCP FIN becomes the transport's close after the data; the peer's close becomes a FIN on
//! this TCP side once everything before it is written: a real half-close each way.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::event::{EventKind, EventSink, Level, TRANSPORT_STATS_EVERY};
use crate::link::LinkSocket;
use crate::topology::Role;
use crate::transport::totals::TallyKey;
use crate::transport::{GiveUp, OutFrame, Transport, TransportEvent, TransportStats};
use crate::wire::{ConnId, Frame};

/// How long a connection whose TCP side is gone keeps closing its transport (sending its
/// close, waiting for the peer's) before it is dropped.
const ABORT_GRACE: Duration = Duration::from_secs(10);

/// A connection's transport, shared between the link's receive loop and its pump.
#[derive(Debug)]
pub struct ReliableConn {
    transport: Mutex<Transport>,
    wake: Notify,
    /// Frames of this connection that arrived from the peer, ever: the keepalive's proof
    /// that the peer answered.
    received: std::sync::atomic::AtomicU64,
}

impl ReliableConn {
    pub fn new(transport: Transport) -> Self {
        ReliableConn {
            transport: Mutex::new(transport),
            wake: Notify::new(),
            received: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// A data, ack or close frame of this connection arrived from the peer.
    pub fn on_frame(&self, frame: &Frame<'_>) {
        self.received
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.transport
            .lock()
            .unwrap()
            .handle_frame(Instant::now(), frame);
        self.wake.notify_one();
    }

    /// The transport's counters now.
    pub fn stats(&self) -> crate::transport::TransportStats {
        self.transport.lock().unwrap().stats()
    }

    /// How many frames of this connection have arrived from the peer so far.
    pub fn frames_received(&self) -> u64 {
        self.received.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The seq of a keepalive probe now, if this connection should be probed (see
    /// [`Transport::keepalive_seq`]).
    pub fn keepalive_seq(&self) -> Option<crate::wire::Seq> {
        self.transport.lock().unwrap().keepalive_seq()
    }

    /// After a clean close, the ack that answers a repeat of the peer's `X` (see
    /// [`Transport::closing_ack`]).
    pub fn closing_ack(&self) -> Option<crate::transport::OutFrame> {
        self.transport.lock().unwrap().closing_ack()
    }
}

/// How a reliable connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PumpEnd {
    /// Both directions closed in order: everything was delivered.
    Done,
    /// The peer stopped acknowledging.
    GaveUp(GiveUp),
    /// The TCP side reset or failed; the transport was closed as far as it could be.
    Reset,
    /// The proxy is stopping.
    Stopped,
}

/// Where the pump sends frames and says what happened.
pub(crate) struct PumpSide<'a> {
    pub link: &'a LinkSocket,
    pub peer: SocketAddr,
    pub id: ConnId,
    pub role: Role,
    pub events: &'a EventSink,
    pub stop: &'a CancellationToken,
    /// Called whenever bytes move, for idle accounting.
    pub activity: &'a crate::tunnel::activity::Activity,
    /// Which connection this is, for the endpoint's exact transport counters
    /// ([`crate::link::LinkStats::transport`]).
    pub key: TallyKey,
}

/// Pumps `stream` through `conn` until both directions are closed (or the peer gives no
/// sign of life, or the stream fails, or `stop`). `first` is what the TCP side sent before
/// the connection opened, and `eof` whether it had already half-closed.
pub(crate) async fn pump(
    conn: &ReliableConn,
    side: PumpSide<'_>,
    stream: TcpStream,
    first: &[u8],
    eof: bool,
) -> PumpEnd {
    // Every frame the transport hands out is counted as it is sent: exact totals at any time.
    let tally = side.link.stats().transport.open(side.key);
    let (mut from_tcp, mut to_tcp) = stream.into_split();
    // Two timers for the whole pump, moved rather than made anew at every pass.
    let mut transport_timer = Alarm::new();
    let mut report_timer = Alarm::new();
    let mut read_closed = eof;
    let mut wrote_fin = false;
    let mut first = first;
    // Set once the TCP side is gone: what the peer delivers is dropped, and the pump only
    // lets the transport close.
    let mut aborted_at: Option<Instant> = None;
    let mut report = Report::new(&side);
    // Reused from pass to pass: the frames one pass sends, the chunks one write takes.
    let mut frames = Vec::new();
    let mut chunks = Vec::with_capacity(WRITE_CHUNKS);
    let end = loop {
        let (timeout, room, peer_finished, done, gave_up, unread) = {
            let mut t = conn.transport.lock().unwrap();
            if !first.is_empty() {
                let taken = t.write(first);
                first = &first[taken..];
            }
            if first.is_empty() && read_closed {
                t.finish();
            }
            let now = Instant::now();
            frames.clear();
            while let Some(out) = t.poll_transmit(now) {
                frames.push(out);
            }
            if aborted_at.is_some() {
                // Nowhere to write what the peer delivers: dropped.
                t.consume_delivered(usize::MAX);
            }
            report.collect(&mut t);
            // Each round-trip sample into the endpoint's exact histogram (atomics only).
            while let Some(rtt) = t.poll_rtt_sample() {
                tally.record_rtt(rtt);
            }
            // What is delivered and not yet written stays in the transport (it counts it).
            tally.set_buffered(t.buffered_bytes());
            (
                t.poll_timeout(),
                t.send_room(),
                t.peer_finished(),
                t.is_done(),
                t.gave_up(),
                t.unread_bytes(),
            )
        };
        // What the peer delivered goes to the TCP side before the acks go out, as far as the
        // socket takes it now: a small echo's next hop (the server, or the client) starts
        // sooner. `unread` is then zero only when the transport has nothing more (the close
        // below relies on that); after a write the loop goes round again instead of waiting,
        // so the acks that the freed receive window calls for go out at once.
        let mut wrote_now = false;
        let mut unread = unread;
        if aborted_at.is_none() && unread > 0 {
            match write_delivered(conn, &to_tcp, &mut chunks) {
                Ok((written, left)) => {
                    if written > 0 {
                        side.activity.touch();
                        wrote_now = true;
                    }
                    unread = left;
                }
                Err(_) => aborted_at = Some(abort(conn)),
            }
        }
        // Before the frames: a retransmission's event comes before its `FrameSent`.
        report.emit(&side);
        for out in &frames {
            tally.record(out);
        }
        send(&side, &frames).await;
        if let Some(why) = gave_up {
            break PumpEnd::GaveUp(why);
        }
        if let Some(at) = aborted_at {
            if done || at.elapsed() >= ABORT_GRACE {
                break PumpEnd::Reset;
            }
        } else if unread == 0 && peer_finished && !wrote_fin {
            // Everything the peer sent before its close is written: pass the close on.
            let _ = to_tcp.shutdown().await;
            wrote_fin = true;
        }
        if done && unread == 0 && aborted_at.is_none() {
            break PumpEnd::Done;
        }
        if wrote_now {
            continue;
        }
        transport_timer.set(timeout.map(tokio::time::Instant::from_std));
        report_timer.set(report.due());
        let can_read = aborted_at.is_none() && !read_closed && first.is_empty() && room > 0;
        let writing = aborted_at.is_none() && unread > 0;
        tokio::select! {
            () = side.stop.cancelled() => break PumpEnd::Stopped,
            () = conn.wake.notified() => {}
            () = report_timer.ring() => {
                report.publish(&side, &conn.transport.lock().unwrap().stats(), false);
            }
            () = transport_timer.ring() => {
                conn.transport.lock().unwrap().handle_timeout(Instant::now());
            }
            () = tokio::time::sleep(ABORT_GRACE), if aborted_at.is_some() => {}
            // Read into the thread's scratch buffer once the socket is readable: an idle
            // connection holds no read buffer of its own (thousands of them would cost
            // 64 KiB each).
            read = std::future::poll_fn(|cx| poll_read_into(conn, &mut from_tcp, room, cx)), if can_read => match read {
                Ok(0) => read_closed = true,
                Ok(_) => side.activity.touch(),
                Err(_) => aborted_at = Some(abort(conn)),
            },
            // The TCP side has room again: the next pass writes.
            ready = to_tcp.writable(), if writing => if ready.is_err() {
                aborted_at = Some(abort(conn));
            },
        }
    };
    let stats = {
        let mut t = conn.transport.lock().unwrap();
        // Acks that arrived after the last step still measured something.
        while let Some(rtt) = t.poll_rtt_sample() {
            tally.record_rtt(rtt);
        }
        t.stats()
    };
    report.publish(&side, &stats, true);
    tally.set_buffered(0);
    end
}

/// The most one TCP read takes.
const READ_CHUNK: usize = 64 * 1024;

/// The most delivered chunks (frames' payloads) one TCP write takes: 64 of 1,488 bytes is
/// about what one read takes. One write per frame cost a system call and a wake-up of the
/// reader per 1,488 bytes: most of a proxy's time in a bulk transfer.
const WRITE_CHUNKS: usize = 64;

/// Writes what the transport delivered to the TCP side, as much as the socket takes now, in
/// vectored writes of up to [`WRITE_CHUNKS`] chunks. The chunks stay in the transport until
/// written (so its receive window counts them), and the lock is not held across the system
/// call. Returns the bytes written and the bytes still unread.
fn write_delivered(
    conn: &ReliableConn,
    to_tcp: &tokio::net::tcp::OwnedWriteHalf,
    chunks: &mut Vec<Bytes>,
) -> std::io::Result<(usize, usize)> {
    let mut written = 0;
    let outcome = loop {
        chunks.clear();
        let unread = {
            let mut t = conn.transport.lock().unwrap();
            t.peek_delivered(WRITE_CHUNKS, chunks);
            t.unread_bytes()
        };
        if chunks.is_empty() {
            break Ok((written, 0));
        }
        // On the stack: no allocation per write (`chunks` is the pump's, reused).
        let mut slices = [std::io::IoSlice::new(&[]); WRITE_CHUNKS];
        for (slice, chunk) in slices.iter_mut().zip(chunks.iter()) {
            *slice = std::io::IoSlice::new(chunk);
        }
        let offered: usize = chunks.iter().map(Bytes::len).sum();
        match to_tcp.try_write_vectored(&slices[..chunks.len()]) {
            Ok(0) => break Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                written += n;
                let left = {
                    let mut t = conn.transport.lock().unwrap();
                    t.consume_delivered(n);
                    t.unread_bytes()
                };
                // A short write: the socket is full.
                if n < offered || left == 0 {
                    break Ok((written, left));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break Ok((written, unread)),
            Err(e) => break Err(e),
        }
    };
    // The clones go now: kept until the next write, they would hold the written frames'
    // memory (and a waiting connection's) for nothing.
    chunks.clear();
    outcome
}

thread_local! {
    /// Every pump on this thread reads into this one buffer and copies what it read into its
    /// transport before it yields: the memory is per thread, not per connection.
    static READ_SCRATCH: std::cell::RefCell<Box<[u8]>> =
        std::cell::RefCell::new(vec![0u8; READ_CHUNK].into_boxed_slice());
}

/// Reads what the TCP side has (at most `room` bytes, not zero) into the transport, once
/// there is something; `Ok(0)` is the end of the stream. The read borrows the thread's
/// scratch buffer only within one poll, never across a wait. A read shorter than the buffer
/// proves the socket drained, and the runtime then forgets its readiness: the next wait goes
/// to the poller at once instead of spending a read to learn `EAGAIN` (one per message of an
/// echo, on its path).
fn poll_read_into(
    conn: &ReliableConn,
    from_tcp: &mut tokio::net::tcp::OwnedReadHalf,
    room: usize,
    cx: &mut std::task::Context<'_>,
) -> std::task::Poll<std::io::Result<usize>> {
    use tokio::io::AsyncRead;
    READ_SCRATCH.with_borrow_mut(|scratch| {
        let mut buf = tokio::io::ReadBuf::new(&mut scratch[..room.min(READ_CHUNK)]);
        std::task::ready!(std::pin::Pin::new(from_tcp).poll_read(cx, &mut buf))?;
        let read = buf.filled();
        let taken = conn.transport.lock().unwrap().write(read);
        debug_assert_eq!(
            taken,
            read.len(),
            "read no more than the send buffer's room"
        );
        std::task::Poll::Ready(Ok(read.len()))
    })
}

/// What the pump tells the event stream about its transport: the trace events (when frame
/// events are wanted) and, at most every [`TRANSPORT_STATS_EVERY`], the counters. Both are
/// gathered under the lock the pump takes anyway, and emitted after it is released.
struct Report {
    /// Trace events drained from the transport, waiting to be emitted.
    events: Vec<TransportEvent>,
    /// Whether anyone wants trace events (frame events on).
    trace: bool,
    /// Whether anyone listens at all (stats are cheap: a few a second per connection).
    stats: bool,
    /// When the counters were last published.
    published: Option<Instant>,
    /// Counters gathered at the last step and not yet published.
    latest: Option<TransportStats>,
    /// The last published counters, so an idle connection publishes nothing.
    last: Option<TransportStats>,
}

impl Report {
    fn new(side: &PumpSide<'_>) -> Self {
        Report {
            events: Vec::new(),
            trace: side.events.wants_frame_events(),
            stats: side.events.is_enabled(),
            published: None,
            latest: None,
            last: None,
        }
    }

    /// Drains the transport's trace events and notes its counters (under the pump's lock).
    fn collect(&mut self, t: &mut Transport) {
        while let Some(event) = t.poll_event() {
            // One `Delivered` per data frame would add a third event to every frame for
            // nothing the trace draws; `bytes_delivered` in the stats says it.
            if self.trace && !matches!(event, TransportEvent::Delivered { .. }) {
                self.events.push(event);
            }
        }
        if self.stats {
            let stats = t.stats();
            if self.last != Some(stats) {
                self.latest = Some(stats);
            }
        }
    }

    /// Emits the trace events collected, and the counters if their time has come.
    fn emit(&mut self, side: &PumpSide<'_>) {
        let at = side.link.endpoint();
        for event in self.events.drain(..) {
            side.events.emit(EventKind::Transport {
                at,
                id: side.id,
                event,
            });
        }
        if let Some(stats) = self.latest
            && self
                .due()
                .is_some_and(|due| due <= tokio::time::Instant::now())
        {
            self.publish(side, &stats, false);
        }
    }

    /// When the next publication may go; `None` when no counters wait to be published.
    fn due(&self) -> Option<tokio::time::Instant> {
        self.latest?;
        Some(match self.published {
            Some(at) => tokio::time::Instant::from_std(at + TRANSPORT_STATS_EVERY),
            None => tokio::time::Instant::now(),
        })
    }

    fn publish(&mut self, side: &PumpSide<'_>, stats: &TransportStats, ended: bool) {
        if !self.stats {
            return;
        }
        side.events.emit(EventKind::TransportStats {
            at: side.link.endpoint(),
            id: side.id,
            stats: Box::new(*stats),
            ended,
        });
        self.published = Some(Instant::now());
        self.latest = None;
        self.last = Some(*stats);
    }
}

/// The TCP side is gone: the transport closes its direction after what it already took.
fn abort(conn: &ReliableConn) -> Instant {
    conn.transport.lock().unwrap().finish();
    Instant::now()
}

/// Sends a pass's frames as one burst (one system call for many frames where the kernel
/// allows: [`LinkSocket::send_burst`]); a frame that failed is logged, and the transport's
/// timer sends it again.
async fn send(side: &PumpSide<'_>, frames: &[OutFrame]) {
    let wire: Vec<Frame<'_>> = frames.iter().map(|out| out.frame(side.id)).collect();
    for (index, e) in side.link.send_burst(&wire, side.peer).await {
        side.events.log(
            Level::Warn,
            side.role,
            format!(
                "connection {}: send of {} to {} failed: {e}",
                side.id,
                wire[index].kind().label(),
                side.peer
            ),
        );
    }
}

/// A timer the pump keeps across its passes, moved only when its deadline does. A fresh
/// `sleep` at every pass registered a new timer each time, and the runtime woke its I/O
/// driver (an `eventfd` write, then an extra `epoll_wait`) for each one due sooner than its
/// next wake-up: two system calls per frame of an echo. Moving a timer later costs nothing
/// of the kind, and with no deadline it is left where it was, unpolled: if it fires, the
/// pump makes one pass for nothing.
struct Alarm {
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
    deadline: Option<tokio::time::Instant>,
}

impl Alarm {
    fn new() -> Self {
        Alarm {
            // Registered with the runtime only when first polled, so never for an unset one.
            sleep: Box::pin(tokio::time::sleep(Duration::from_hours(24))),
            deadline: None,
        }
    }

    /// Sets the deadline (`None`: none).
    fn set(&mut self, deadline: Option<tokio::time::Instant>) {
        if let Some(at) = deadline
            && self.sleep.deadline() != at
        {
            self.sleep.as_mut().reset(at);
        }
        self.deadline = deadline;
    }

    /// Completes once the deadline has come; never if there is none.
    async fn ring(&mut self) {
        if self.deadline.is_some() {
            self.sleep.as_mut().await;
        } else {
            std::future::pending::<()>().await;
        }
    }
}
