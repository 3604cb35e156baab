//! One end of the UDP link: a socket that speaks frames, counts everything it does, reports
//! it on the event stream and feeds the capture tap.
//!
//! Both proxies use [`LinkSocket`], so framing, counting, tracing and capture behave the
//! same on either side.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use tokio::net::UdpSocket;

use crate::capture::{CaptureTap, TapRecord};
use crate::event::{Endpoint, EventKind, EventSink, FrameSummary, Ignored};
use crate::wire::{Frame, FrameKind, MAX_DATAGRAM, WireMode};

/// Receive buffers are a little larger than [`MAX_DATAGRAM`] so that an oversized datagram
/// is seen as too long (and counted) instead of being silently cut.
pub const RECV_BUFFER: usize = MAX_DATAGRAM + 512;

/// Frame counts by type, one counter per [`FrameKind`].
#[derive(Debug, Default)]
pub struct KindCounters([AtomicU64; 5]);

impl KindCounters {
    fn slot(kind: FrameKind) -> usize {
        match kind {
            FrameKind::Connect => 0,
            FrameKind::ConnectOk => 1,
            FrameKind::ConnectNok => 2,
            FrameKind::Data => 3,
            FrameKind::Close => 4,
        }
    }
    fn add(&self, kind: FrameKind) {
        self.0[Self::slot(kind)].fetch_add(1, Ordering::Relaxed);
    }
    pub fn get(&self, kind: FrameKind) -> u64 {
        self.0[Self::slot(kind)].load(Ordering::Relaxed)
    }
    pub fn total(&self) -> u64 {
        self.0.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
    fn snapshot(&self) -> KindCounts {
        KindCounts {
            connect: self.get(FrameKind::Connect),
            ok: self.get(FrameKind::ConnectOk),
            nok: self.get(FrameKind::ConnectNok),
            data: self.get(FrameKind::Data),
            close: self.get(FrameKind::Close),
        }
    }
}

/// Exact counters of one link endpoint. These never drop, unlike the event stream.
#[derive(Debug, Default)]
pub struct LinkStats {
    pub sent: KindCounters,
    pub received: KindCounters,
    pub sent_bytes: AtomicU64,
    pub received_bytes: AtomicU64,
    /// Datagrams that did not decode.
    pub malformed: AtomicU64,
    /// Datagrams dropped on purpose (stranger, id not open, unexpected, overflow).
    pub ignored: AtomicU64,
}

/// A point-in-time copy of [`KindCounters`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct KindCounts {
    pub connect: u64,
    pub ok: u64,
    pub nok: u64,
    pub data: u64,
    pub close: u64,
}

impl KindCounts {
    pub fn get(&self, kind: FrameKind) -> u64 {
        match kind {
            FrameKind::Connect => self.connect,
            FrameKind::ConnectOk => self.ok,
            FrameKind::ConnectNok => self.nok,
            FrameKind::Data => self.data,
            FrameKind::Close => self.close,
        }
    }
    pub fn total(&self) -> u64 {
        self.connect + self.ok + self.nok + self.data + self.close
    }
}

/// A point-in-time copy of [`LinkStats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct LinkStatsSnapshot {
    pub sent: KindCounts,
    pub received: KindCounts,
    pub sent_bytes: u64,
    pub received_bytes: u64,
    pub malformed: u64,
    pub ignored: u64,
}

impl LinkStats {
    pub fn snapshot(&self) -> LinkStatsSnapshot {
        LinkStatsSnapshot {
            sent: self.sent.snapshot(),
            received: self.received.snapshot(),
            sent_bytes: self.sent_bytes.load(Ordering::Relaxed),
            received_bytes: self.received_bytes.load(Ordering::Relaxed),
            malformed: self.malformed.load(Ordering::Relaxed),
            ignored: self.ignored.load(Ordering::Relaxed),
        }
    }
}

/// Which datagrams the capture tap records at this endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TapScope {
    /// Only what this endpoint sends. In the lab both proxies tap their sends, so every frame
    /// on the link is recorded exactly once, at the moment it left.
    Sent,
    /// Everything this endpoint sends and receives: a standalone proxy sees the whole link.
    SentAndReceived,
}

/// A datagram that arrived, as the receiving role needs it.
pub enum Received<'b> {
    /// A well-formed frame from an accepted peer.
    Frame { frame: Frame<'b>, peer: SocketAddr },
    /// Counted and reported already; nothing to do.
    Dropped,
}

/// One end of the UDP link.
#[derive(Debug)]
pub struct LinkSocket {
    socket: UdpSocket,
    local: SocketAddr,
    endpoint: Endpoint,
    mode: WireMode,
    events: EventSink,
    stats: Arc<LinkStats>,
    tap: Option<(CaptureTap, TapScope)>,
}

impl LinkSocket {
    pub fn new(
        socket: UdpSocket,
        endpoint: Endpoint,
        mode: WireMode,
        events: EventSink,
    ) -> io::Result<Self> {
        Ok(LinkSocket {
            local: socket.local_addr()?,
            socket,
            endpoint,
            mode,
            events,
            stats: Arc::default(),
            tap: None,
        })
    }

    /// Records datagrams to a capture.
    pub fn with_capture(mut self, tap: CaptureTap, scope: TapScope) -> Self {
        self.tap = Some((tap, scope));
        self
    }

    /// Counts into an existing [`LinkStats`] (so a restarted role keeps its totals).
    pub fn with_stats(mut self, stats: Arc<LinkStats>) -> Self {
        self.stats = stats;
        self
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }
    pub fn mode(&self) -> WireMode {
        self.mode
    }
    pub fn stats(&self) -> &Arc<LinkStats> {
        &self.stats
    }
    pub fn events(&self) -> &EventSink {
        &self.events
    }

    /// Encodes and sends one frame to `to`.
    pub async fn send(&self, frame: &Frame<'_>, to: SocketAddr) -> io::Result<()> {
        let datagram = self
            .mode
            .to_bytes(frame)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        self.socket.send_to(&datagram, to).await?;
        self.stats.sent.add(frame.kind());
        self.stats
            .sent_bytes
            .fetch_add(datagram.len() as u64, Ordering::Relaxed);
        if self.events.wants_frame_events() {
            self.events.emit(EventKind::FrameSent {
                at: self.endpoint,
                peer: to,
                frame: FrameSummary::of(frame, datagram.len()),
            });
        }
        if let Some((tap, _)) = &self.tap {
            tap.record(TapRecord {
                time: SystemTime::now(),
                src: self.local,
                dst: to,
                datagram,
                note: None,
            })
            .await;
        }
        Ok(())
    }

    /// Receives one datagram into `buf` (at least [`RECV_BUFFER`] long) and decodes it.
    ///
    /// With `only_from`, datagrams from any other address are counted as strangers and
    /// dropped. Malformed datagrams are counted and reported, never returned.
    pub async fn recv<'b>(
        &self,
        buf: &'b mut [u8],
        only_from: Option<SocketAddr>,
    ) -> io::Result<Received<'b>> {
        let (len, peer) = self.socket.recv_from(buf).await?;
        let datagram = &buf[..len];
        if let Some((tap, TapScope::SentAndReceived)) = &self.tap {
            tap.record(TapRecord {
                time: SystemTime::now(),
                src: peer,
                dst: self.local,
                datagram: datagram.to_vec(),
                note: None,
            })
            .await;
        }
        if only_from.is_some_and(|expected| expected != peer) {
            self.ignore(peer, Ignored::Stranger);
            return Ok(Received::Dropped);
        }
        match self.mode.decode(datagram) {
            Ok(frame) => {
                self.stats.received.add(frame.kind());
                self.stats
                    .received_bytes
                    .fetch_add(len as u64, Ordering::Relaxed);
                if self.events.wants_frame_events() {
                    self.events.emit(EventKind::FrameReceived {
                        at: self.endpoint,
                        peer,
                        frame: FrameSummary::of(&frame, len),
                    });
                }
                Ok(Received::Frame { frame, peer })
            }
            Err(error) => {
                self.stats.malformed.fetch_add(1, Ordering::Relaxed);
                self.events.emit(EventKind::FrameMalformed {
                    at: self.endpoint,
                    peer,
                    len,
                    error: error.to_string(),
                });
                Ok(Received::Dropped)
            }
        }
    }

    /// Counts and reports a datagram that the role chose not to act on.
    pub fn ignore(&self, peer: SocketAddr, why: Ignored) {
        self.stats.ignored.fetch_add(1, Ordering::Relaxed);
        self.events.emit(EventKind::FrameIgnored {
            at: self.endpoint,
            peer,
            why,
        });
    }
}
