//! Exact counters of one link endpoint: frames by type, bytes, drops. They never drop a
//! count, unlike the event stream.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::transport::totals::{TransportTotals, TransportTotalsSnapshot};
use crate::wire::FrameKind;

/// Frame counts by type, one counter per [`FrameKind`].
#[derive(Debug, Default)]
pub struct KindCounters([AtomicU64; FrameKind::ALL.len()]);

impl KindCounters {
    fn slot(kind: FrameKind) -> usize {
        match kind {
            FrameKind::Connect => 0,
            FrameKind::ConnectOk => 1,
            FrameKind::ConnectNok => 2,
            FrameKind::Data => 3,
            FrameKind::Ack => 4,
            FrameKind::Close => 5,
        }
    }
    /// Counts one frame of `kind`.
    pub fn add(&self, kind: FrameKind) {
        self.0[Self::slot(kind)].fetch_add(1, Ordering::Relaxed);
    }
    pub fn get(&self, kind: FrameKind) -> u64 {
        self.0[Self::slot(kind)].load(Ordering::Relaxed)
    }
    pub fn total(&self) -> u64 {
        self.0.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
    /// A point-in-time copy.
    pub fn snapshot(&self) -> KindCounts {
        KindCounts {
            connect: self.get(FrameKind::Connect),
            ok: self.get(FrameKind::ConnectOk),
            nok: self.get(FrameKind::ConnectNok),
            data: self.get(FrameKind::Data),
            ack: self.get(FrameKind::Ack),
            close: self.get(FrameKind::Close),
        }
    }
}

/// Exact counters of one link endpoint. These never drop, unlike the event stream.
///
/// They are the role's view: `sent` is what the role sent, `received` what it received.
/// With the link emulator on, what crossed the wire in between is in the emulator's counters
/// ([`crate::impair::DirectionReport`]): a lost frame is sent here and never received there.
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
    /// Connections turned away by a limit of the role (proxy2's `--max-connections`,
    /// `--max-peers`, allow-list): a `C` answered with `NOK`, or a connection that never
    /// carried a byte closed to make room for a new one.
    pub refused: AtomicU64,
    /// The reliable modes' transports at this endpoint: frames sent and retransmitted,
    /// in all and per connection (shared by every connection's pump).
    pub transport: Arc<TransportTotals>,
    /// Sealed link: datagrams that failed authentication (another key, or changed on the
    /// way), dropped and never delivered. Plaintext frames on a sealed link count here too.
    pub unauthentic: AtomicU64,
    /// Sealed link: datagrams that authenticated but were seen before, are older than the
    /// replay window, or belong to an earlier session; dropped.
    pub replayed: AtomicU64,
    /// Sealed link, proxy1: reject notices from proxy2 (it could not authenticate us).
    pub peer_rejects: AtomicU64,
}

/// A point-in-time copy of [`KindCounters`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct KindCounts {
    pub connect: u64,
    pub ok: u64,
    pub nok: u64,
    pub data: u64,
    /// Acks (`A`), in the reliable modes.
    pub ack: u64,
    pub close: u64,
}

impl KindCounts {
    pub fn get(&self, kind: FrameKind) -> u64 {
        match kind {
            FrameKind::Connect => self.connect,
            FrameKind::ConnectOk => self.ok,
            FrameKind::ConnectNok => self.nok,
            FrameKind::Data => self.data,
            FrameKind::Ack => self.ack,
            FrameKind::Close => self.close,
        }
    }
    pub fn total(&self) -> u64 {
        self.connect + self.ok + self.nok + self.data + self.ack + self.close
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
    pub refused: u64,
    pub transport: TransportTotalsSnapshot,
    pub unauthentic: u64,
    pub replayed: u64,
    pub peer_rejects: u64,
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
            refused: self.refused.load(Ordering::Relaxed),
            transport: self.transport.snapshot(),
            unauthentic: self.unauthentic.load(Ordering::Relaxed),
            replayed: self.replayed.load(Ordering::Relaxed),
            peer_rejects: self.peer_rejects.load(Ordering::Relaxed),
        }
    }
}
