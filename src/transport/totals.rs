//! Exact transport counters of one link endpoint, summed over its connections, and a bounded
//! ledger of each connection's own counts: what the scenario runner's `retransmits`
//! expectation, the report and the monitor read. Like [`crate::link::LinkStats`] (which
//! holds them) they are atomics counted on the hot path, never the lossy event stream.
//!
//! The tunnel's pump counts every frame a transport hands out as it sends it
//! ([`ConnTally::record`]), so the totals are exact at any moment, and at the end of a
//! scenario they equal the sum of the transports' own [`super::TransportStats`]. It also
//! records every round-trip sample the transport's timer took ([`ConnTally::record_rtt`])
//! in the endpoint's [`RttHistogram`].

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use super::{OutFrame, RetransmitCause};
use crate::wire::{ConnId, Seq};

/// Connections an endpoint keeps a ledger entry for; later ones still count in the totals
/// (and in [`TransportTotalsSnapshot::untracked_connections`]).
pub const LEDGER_CAPACITY: usize = 4096;

/// Counters of frames a transport handed out to be sent.
#[derive(Debug, Default)]
struct Counters {
    data_frames_sent: AtomicU64,
    acks_sent: AtomicU64,
    closes_sent: AtomicU64,
    retransmits_timeout: AtomicU64,
    retransmits_fast: AtomicU64,
    retransmits_probe: AtomicU64,
}

impl Counters {
    fn record(&self, out: &OutFrame) {
        let counter = match out {
            OutFrame::Data { .. } => &self.data_frames_sent,
            OutFrame::Ack { .. } => &self.acks_sent,
            OutFrame::Close { .. } => &self.closes_sent,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        match out.retransmit() {
            Some(RetransmitCause::Timeout) => {
                self.retransmits_timeout.fetch_add(1, Ordering::Relaxed);
            }
            Some(RetransmitCause::FastRetransmit) => {
                self.retransmits_fast.fetch_add(1, Ordering::Relaxed);
            }
            Some(RetransmitCause::Probe) => {
                self.retransmits_probe.fetch_add(1, Ordering::Relaxed);
            }
            None => {}
        }
    }

    fn snapshot(&self) -> Retransmits {
        Retransmits {
            data_frames_sent: self.data_frames_sent.load(Ordering::Relaxed),
            acks_sent: self.acks_sent.load(Ordering::Relaxed),
            closes_sent: self.closes_sent.load(Ordering::Relaxed),
            retransmits_timeout: self.retransmits_timeout.load(Ordering::Relaxed),
            retransmits_fast: self.retransmits_fast.load(Ordering::Relaxed),
            retransmits_probe: self.retransmits_probe.load(Ordering::Relaxed),
        }
    }
}

/// A point-in-time copy of one endpoint's (or one connection's) transport counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Retransmits {
    /// Data frames sent, retransmissions included.
    pub data_frames_sent: u64,
    pub acks_sent: u64,
    /// Close frames sent, retransmissions included.
    pub closes_sent: u64,
    /// Data or close frames sent again because their timer expired.
    pub retransmits_timeout: u64,
    /// Data or close frames sent again on duplicate- or selective-ack evidence (or RACK's).
    pub retransmits_fast: u64,
    /// Tail-loss probes: a frame sent again when nothing was acked for two round trips.
    pub retransmits_probe: u64,
}

impl Retransmits {
    /// Retransmissions of any cause.
    pub fn total(&self) -> u64 {
        self.retransmits_timeout + self.retransmits_fast + self.retransmits_probe
    }

    /// Retransmissions of one cause, or of all (`None`).
    pub fn by_cause(&self, cause: Option<RetransmitCause>) -> u64 {
        match cause {
            None => self.total(),
            Some(RetransmitCause::Timeout) => self.retransmits_timeout,
            Some(RetransmitCause::FastRetransmit) => self.retransmits_fast,
            Some(RetransmitCause::Probe) => self.retransmits_probe,
        }
    }

    /// The sum of two counts.
    #[must_use]
    pub fn plus(self, other: Retransmits) -> Retransmits {
        Retransmits {
            data_frames_sent: self.data_frames_sent + other.data_frames_sent,
            acks_sent: self.acks_sent + other.acks_sent,
            closes_sent: self.closes_sent + other.closes_sent,
            retransmits_timeout: self.retransmits_timeout + other.retransmits_timeout,
            retransmits_fast: self.retransmits_fast + other.retransmits_fast,
            retransmits_probe: self.retransmits_probe + other.retransmits_probe,
        }
    }
}

/// The upper bounds of the RTT histogram's buckets, in seconds: from 100 µs (loopback) to
/// 10 s (the adaptive timer's ceiling, and far past any emulated delay), about three per
/// decade. A sample above the last bound counts only in `+Inf` (the count).
pub const RTT_BUCKETS: [f64; 16] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Round-trip samples of one endpoint's transports, bucketed: exact atomics, like the frame
/// counters, so `/metrics` and the lab snapshot read the same numbers.
#[derive(Debug, Default)]
pub struct RttHistogram {
    /// Samples at or below each bound of [`RTT_BUCKETS`] and above the previous one, then
    /// those above the last bound. The count is their sum, so a snapshot is always
    /// consistent however samples are added meanwhile.
    buckets: [AtomicU64; RTT_BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

impl RttHistogram {
    /// Adds one sample.
    pub fn observe(&self, rtt: Duration) {
        let seconds = rtt.as_secs_f64();
        let bucket = RTT_BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(RTT_BUCKETS.len());
        let nanos = u64::try_from(rtt.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> RttSnapshot {
        RttSnapshot {
            per_bucket: std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed)),
            sum: Duration::from_nanos(self.sum_nanos.load(Ordering::Relaxed)),
        }
    }
}

/// A point-in-time copy of an [`RttHistogram`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RttSnapshot {
    /// Samples per bucket of [`RTT_BUCKETS`] (not cumulative), then those above the last
    /// bound.
    pub per_bucket: [u64; RTT_BUCKETS.len() + 1],
    /// The samples' sum.
    pub sum: Duration,
}

/// In the JSON report: `{"samples", "mean_seconds", "buckets": [{"le_seconds", "samples"}]}`,
/// the buckets cumulative like Prometheus's and without `+Inf` (JSON has no infinity; it
/// would equal `samples`).
impl Serialize for RttSnapshot {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        #[derive(Serialize)]
        struct Bucket {
            le_seconds: f64,
            samples: u64,
        }
        let count = self.count();
        let mean = (count > 0).then(|| self.sum.as_secs_f64() / count as f64);
        let buckets: Vec<Bucket> = self
            .cumulative()
            .into_iter()
            .filter(|(bound, _)| bound.is_finite())
            .map(|(le_seconds, samples)| Bucket {
                le_seconds,
                samples,
            })
            .collect();
        let mut out = serializer.serialize_struct("RttSnapshot", 3)?;
        out.serialize_field("samples", &count)?;
        out.serialize_field("mean_seconds", &mean)?;
        out.serialize_field("buckets", &buckets)?;
        out.end()
    }
}

impl RttSnapshot {
    /// Samples recorded.
    pub fn count(&self) -> u64 {
        self.per_bucket.iter().sum()
    }

    /// `(upper bound in seconds, samples at or below it)` per bucket, cumulative as
    /// Prometheus shows them, ending with `(+Inf, count)`.
    pub fn cumulative(&self) -> Vec<(f64, u64)> {
        let mut running = 0;
        RTT_BUCKETS
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(self.per_bucket)
            .map(|(bound, n)| {
                running += n;
                (bound, running)
            })
            .collect()
    }
}

/// Which connection a ledger entry is about, as this endpoint knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct TallyKey {
    pub id: ConnId,
    /// This endpoint's first sequence number (zero in stop-and-wait, which has none).
    pub local_isn: Seq,
    /// The peer's first sequence number.
    pub peer_isn: Seq,
    /// The TCP client this connection serves (proxy1 only).
    pub client: Option<SocketAddr>,
}

impl TallyKey {
    /// Whether `other`, seen from the other end of the link, is the same connection: same id
    /// and the two first sequence numbers swapped. In stop-and-wait every use of an id
    /// matches; [`pair_connections`] takes them in order then.
    pub fn mirrors(&self, other: &TallyKey) -> bool {
        self.id == other.id && self.local_isn == other.peer_isn && self.peer_isn == other.local_isn
    }
}

/// One connection's counters, shared by its pump (which counts) and the ledger.
#[derive(Debug)]
pub struct ConnTally {
    key: TallyKey,
    counters: Counters,
    /// Bytes the connection's transport and pump hold now (as last set).
    buffered: AtomicU64,
    endpoint: Arc<TransportTotals>,
}

impl ConnTally {
    /// Counts a frame the transport handed out, here and in the endpoint's totals.
    pub fn record(&self, out: &OutFrame) {
        self.counters.record(out);
        self.endpoint.counters.record(out);
    }

    /// Records a round-trip sample the connection's transport took, in the endpoint's
    /// histogram.
    pub fn record_rtt(&self, rtt: Duration) {
        self.endpoint.rtt.observe(rtt);
    }

    /// Sets the payload bytes this connection holds now (its transport's buffers and what
    /// its pump has taken out of them and not yet written); the pump sets 0 when it ends.
    pub fn set_buffered(&self, bytes: usize) {
        let bytes = bytes as u64;
        let before = self.buffered.swap(bytes, Ordering::Relaxed);
        if bytes >= before {
            self.endpoint
                .buffered
                .fetch_add(bytes - before, Ordering::Relaxed);
        } else {
            self.endpoint
                .buffered
                .fetch_sub(before - bytes, Ordering::Relaxed);
        }
        self.endpoint
            .buffered_peak
            .fetch_max(bytes, Ordering::Relaxed);
    }
}

/// One connection's counts at one endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ConnCounts {
    pub key: TallyKey,
    pub counts: Retransmits,
}

/// The transport counters of one link endpoint, across every connection (and across the
/// role's restarts, as its [`crate::link::LinkStats`] are).
#[derive(Debug, Default)]
pub struct TransportTotals {
    counters: Counters,
    rtt: RttHistogram,
    ledger: Mutex<Vec<Arc<ConnTally>>>,
    untracked: AtomicU64,
    /// Payload bytes all connections hold now (a gauge: [`ConnTally::set_buffered`]).
    buffered: AtomicU64,
    /// The most one connection has held at once since the endpoint started.
    buffered_peak: AtomicU64,
}

/// A point-in-time copy of [`TransportTotals`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TransportTotalsSnapshot {
    #[serde(flatten)]
    pub counts: Retransmits,
    /// Connections past the ledger's capacity: counted in the totals, not one by one.
    pub untracked_connections: u64,
    /// Round-trip samples (reliable modes), bucketed as on `/metrics`.
    pub rtt: RttSnapshot,
}

impl TransportTotals {
    /// A tally for a new connection of this endpoint (its pump counts into it).
    pub fn open(self: &Arc<Self>, key: TallyKey) -> Arc<ConnTally> {
        let tally = Arc::new(ConnTally {
            key,
            counters: Counters::default(),
            buffered: AtomicU64::new(0),
            endpoint: self.clone(),
        });
        let mut ledger = self.ledger.lock().unwrap();
        if ledger.len() < LEDGER_CAPACITY {
            ledger.push(tally.clone());
        } else {
            self.untracked.fetch_add(1, Ordering::Relaxed);
        }
        tally
    }

    /// Payload bytes every connection of this endpoint holds right now, in its transport and
    /// its pump: what flow control bounds (see [`super::Transport::buffered_bytes`]).
    pub fn buffered_bytes(&self) -> u64 {
        self.buffered.load(Ordering::Relaxed)
    }

    /// The most payload bytes any one connection of this endpoint has held at once.
    pub fn buffered_peak_per_connection(&self) -> u64 {
        self.buffered_peak.load(Ordering::Relaxed)
    }

    pub fn snapshot(&self) -> TransportTotalsSnapshot {
        TransportTotalsSnapshot {
            counts: self.counters.snapshot(),
            untracked_connections: self.untracked.load(Ordering::Relaxed),
            rtt: self.rtt.snapshot(),
        }
    }

    /// Every connection in the ledger, oldest first.
    pub fn connections(&self) -> Vec<ConnCounts> {
        self.ledger
            .lock()
            .unwrap()
            .iter()
            .map(|tally| ConnCounts {
                key: tally.key,
                counts: tally.counters.snapshot(),
            })
            .collect()
    }
}

/// Pairs each of proxy1's connections with proxy2's entry for the same connection (if any):
/// by id and first sequence numbers, and among equal keys (stop-and-wait) in order.
pub fn pair_connections<'a>(
    proxy1: &'a [ConnCounts],
    proxy2: &'a [ConnCounts],
) -> Vec<(&'a ConnCounts, Option<&'a ConnCounts>)> {
    let mut taken = vec![false; proxy2.len()];
    proxy1
        .iter()
        .map(|ours| {
            let theirs = proxy2
                .iter()
                .enumerate()
                .position(|(i, theirs)| !taken[i] && ours.key.mirrors(&theirs.key));
            (
                ours,
                theirs.map(|i| {
                    taken[i] = true;
                    &proxy2[i]
                }),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn data(retransmit: Option<RetransmitCause>) -> OutFrame {
        OutFrame::Data {
            seq: Seq(7),
            payload: Bytes::from_static(b"x"),
            retransmit,
        }
    }

    fn key(id: u16, local: u32, peer: u32, client: Option<SocketAddr>) -> TallyKey {
        TallyKey {
            id: ConnId::new(id),
            local_isn: Seq(local),
            peer_isn: Seq(peer),
            client,
        }
    }

    #[test]
    fn each_frame_counts_in_its_connection_and_in_the_endpoint_totals() {
        let totals = Arc::new(TransportTotals::default());
        let a = totals.open(key(0, 1, 2, None));
        let b = totals.open(key(1, 3, 4, None));
        a.record(&data(None));
        a.record(&data(Some(RetransmitCause::Timeout)));
        b.record(&data(Some(RetransmitCause::FastRetransmit)));
        b.record(&OutFrame::Ack {
            ack: Seq(1),
            window: 4,
            sack: Default::default(),
        });
        b.record(&OutFrame::Close {
            seq: Seq(9),
            retransmit: Some(RetransmitCause::Timeout),
        });
        let all = totals.snapshot().counts;
        assert_eq!(all.data_frames_sent, 3);
        assert_eq!(all.acks_sent, 1);
        assert_eq!(all.closes_sent, 1);
        assert_eq!(all.retransmits_timeout, 2);
        assert_eq!(all.retransmits_fast, 1);
        assert_eq!(all.by_cause(None), 3);
        let conns = totals.connections();
        assert_eq!(conns.len(), 2);
        assert_eq!(conns[0].counts.total(), 1);
        assert_eq!(conns[1].counts.total(), 2);
        assert_eq!(conns[0].counts.plus(conns[1].counts), all);
    }

    #[test]
    fn rtt_samples_land_in_their_buckets_cumulatively() {
        let totals = Arc::new(TransportTotals::default());
        let tally = totals.open(key(0, 1, 2, None));
        let us = Duration::from_micros;
        // At a bound counts in that bucket; just above it, in the next.
        for rtt in [
            us(50),
            us(100),
            us(101),
            us(30_000),
            Duration::from_secs(11),
        ] {
            tally.record_rtt(rtt);
        }
        let rtt = totals.snapshot().rtt;
        assert_eq!(rtt.count(), 5);
        assert_eq!(
            rtt.sum,
            us(50 + 100 + 101 + 30_000) + Duration::from_secs(11)
        );
        let buckets = rtt.cumulative();
        assert_eq!(buckets.len(), RTT_BUCKETS.len() + 1);
        assert_eq!(buckets[0], (0.000_1, 2));
        assert_eq!(buckets[1], (0.000_25, 3));
        assert_eq!(buckets[7], (0.025, 3));
        assert_eq!(buckets[8], (0.05, 4));
        // 11 s is above every bound: only in +Inf.
        assert_eq!(buckets[RTT_BUCKETS.len() - 1], (10.0, 4));
        assert_eq!(buckets.last(), Some(&(f64::INFINITY, 5)));
    }

    #[test]
    fn the_ledger_is_bounded_and_the_totals_are_not() {
        let totals = Arc::new(TransportTotals::default());
        for n in 0..LEDGER_CAPACITY + 3 {
            totals
                .open(key(n as u16, 0, 0, None))
                .record(&data(Some(RetransmitCause::Timeout)));
        }
        assert_eq!(totals.connections().len(), LEDGER_CAPACITY);
        let snapshot = totals.snapshot();
        assert_eq!(snapshot.untracked_connections, 3);
        assert_eq!(
            snapshot.counts.retransmits_timeout,
            LEDGER_CAPACITY as u64 + 3
        );
    }

    #[test]
    fn connections_pair_by_swapped_isns_and_in_order_when_keys_repeat() {
        let client = |port| Some(SocketAddr::from(([127, 0, 0, 1], port)));
        let counts = |key| ConnCounts {
            key,
            counts: Retransmits::default(),
        };
        let proxy1 = [
            counts(key(0, 10, 20, client(1))),
            counts(key(0, 0, 0, client(2))),
            counts(key(0, 0, 0, client(3))),
            counts(key(1, 5, 6, client(4))),
        ];
        let proxy2 = [
            counts(key(0, 0, 0, None)),
            counts(key(0, 20, 10, None)),
            counts(key(0, 0, 0, None)),
        ];
        let pairs = pair_connections(&proxy1, &proxy2);
        let matched: Vec<Option<usize>> = pairs
            .iter()
            .map(|(_, theirs)| {
                theirs.map(|t| proxy2.iter().position(|p| std::ptr::eq(p, t)).unwrap())
            })
            .collect();
        assert_eq!(matched, [Some(1), Some(0), Some(2), None]);
    }
}
