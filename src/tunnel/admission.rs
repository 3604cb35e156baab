//! proxy2's limits on what proxy1s may open: who may connect at all, how many proxy1
//! addresses at once, how many connections in total. No I/O here: proxy2 asks, this answers.
//!
//! A flood of `C` frames from thousands of source ports used to open a server connection
//! each until the process ran out of descriptors, and legitimate proxy1s were turned away for
//! the whole idle timeout. Now the table is bounded, and when it is full the oldest entry that
//! has never carried a byte makes room: a flood only ever displaces itself, while a proxy1
//! whose connections carry data keeps them.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use crate::wire::ConnId;

/// A tunnel connection at proxy2: the proxy1 it belongs to and its id on that link.
pub type ConnKey = (SocketAddr, ConnId);

/// Which proxy1 addresses may open connections: an IP address (any port) or IP:PORT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerFilter {
    Ip(IpAddr),
    Socket(SocketAddr),
}

impl PeerFilter {
    pub fn matches(self, peer: SocketAddr) -> bool {
        match self {
            PeerFilter::Ip(ip) => peer.ip() == ip,
            PeerFilter::Socket(addr) => peer == addr,
        }
    }
}

impl FromStr for PeerFilter {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Ok(PeerFilter::Ip(ip));
        }
        text.parse::<SocketAddr>()
            .map(PeerFilter::Socket)
            .map_err(|_| {
                format!(
                    "'{text}' is not an IP address or IP:PORT (like 127.0.0.1 or 127.0.0.1:40000)"
                )
            })
    }
}

impl fmt::Display for PeerFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerFilter::Ip(ip) => write!(f, "{ip}"),
            PeerFilter::Socket(addr) => write!(f, "{addr}"),
        }
    }
}

/// proxy2's limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once, over all proxy1s.
    pub max_connections: usize,
    /// Distinct proxy1 addresses with connections open at once.
    pub max_peers: usize,
    /// When set, only these proxy1 addresses may open connections.
    pub allowed: Option<Vec<PeerFilter>>,
}

/// proxy2's default `--max-connections`: room for the ten thousand connections the extended
/// modes carry through one proxy1, well short of what a flood could take (each connection is
/// one descriptor and a few kilobytes).
pub const DEFAULT_MAX_CONNECTIONS: usize = 16_384;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_peers: 64,
            allowed: None,
        }
    }
}

/// Why a `C` was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The proxy1 is not on the allow-list.
    NotAllowed,
    /// As many proxy1s as allowed have connections open, and every one of them uses its.
    TooManyPeers,
    /// The table is full, and every connection in it has carried data.
    TooManyConnections,
}

impl Refusal {
    pub fn describe(self) -> &'static str {
        match self {
            Refusal::NotAllowed => "not on the proxy1 allow-list",
            Refusal::TooManyPeers => "too many proxy1 addresses (--max-peers)",
            Refusal::TooManyConnections => "too many connections (--max-connections)",
        }
    }
}

/// What to do with a `C` for a connection that proxy2 does not have.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Open it, after closing these connections (never used, oldest first) to make room.
    Admit { evict: Vec<ConnKey> },
    /// Answer `NOK`.
    Refuse(Refusal),
}

#[derive(Debug)]
struct Peer {
    /// Connections open from this peer.
    open: usize,
    /// Of those, how many have carried data.
    used: usize,
    /// When this peer's first open connection was admitted (admission order).
    since: u64,
}

/// The bookkeeping behind the limits. proxy2 reports every connection it admits, every one
/// that carries its first byte, and every one it forgets.
#[derive(Debug)]
pub struct Admission {
    limits: Limits,
    peers: HashMap<SocketAddr, Peer>,
    open: usize,
    /// Admitted connections in admission order, with the order number; entries that have
    /// since carried data or closed are skipped when met (and compacted away in bulk).
    unused: VecDeque<(u64, ConnKey)>,
    /// The admission order number of each open connection that has never carried data.
    unused_now: HashMap<ConnKey, u64>,
    admitted: u64,
}

impl Admission {
    pub fn new(limits: Limits) -> Self {
        Admission {
            limits,
            peers: HashMap::new(),
            open: 0,
            unused: VecDeque::new(),
            unused_now: HashMap::new(),
            admitted: 0,
        }
    }

    /// Decides about a `C` for `key`, which is not open.
    pub fn decide(&mut self, key: ConnKey) -> Decision {
        let (peer, _) = key;
        if let Some(allowed) = &self.limits.allowed
            && !allowed.iter().any(|filter| filter.matches(peer))
        {
            return Decision::Refuse(Refusal::NotAllowed);
        }
        let mut evict = Vec::new();
        if !self.peers.contains_key(&peer) && self.peers.len() >= self.limits.max_peers {
            // Make room by the oldest proxy1 none of whose connections has carried a byte.
            let idle_peer = self
                .peers
                .iter()
                .filter(|(_, p)| p.used == 0)
                .min_by_key(|(_, p)| p.since)
                .map(|(addr, _)| *addr);
            let Some(idle_peer) = idle_peer else {
                return Decision::Refuse(Refusal::TooManyPeers);
            };
            evict.extend(self.unused_now.keys().filter(|(p, _)| *p == idle_peer));
            evict.sort_by_key(|key| self.unused_now[key]);
        }
        if self.open - evict.len() >= self.limits.max_connections {
            match self.oldest_unused(&evict) {
                Some(oldest) => evict.push(oldest),
                None => return Decision::Refuse(Refusal::TooManyConnections),
            }
        }
        Decision::Admit { evict }
    }

    /// The oldest connection that has never carried data and is not in `except`.
    fn oldest_unused(&mut self, except: &[ConnKey]) -> Option<ConnKey> {
        // Entries at the front that are no longer unused are gone for good: drop them.
        while let Some(&(order, key)) = self.unused.front() {
            if self.unused_now.get(&key) == Some(&order) {
                break;
            }
            self.unused.pop_front();
        }
        self.unused
            .iter()
            .find(|(order, key)| self.unused_now.get(key) == Some(order) && !except.contains(key))
            .map(|(_, key)| *key)
    }

    /// proxy2 opened `key`.
    pub fn admitted(&mut self, key: ConnKey) {
        self.admitted += 1;
        let order = self.admitted;
        self.open += 1;
        let peer = self.peers.entry(key.0).or_insert(Peer {
            open: 0,
            used: 0,
            since: order,
        });
        peer.open += 1;
        self.unused_now.insert(key, order);
        self.unused.push_back((order, key));
        // Skipped entries pile up under churn; keep the queue within a small multiple.
        if self.unused.len() > 2 * self.limits.max_connections.max(self.unused_now.len()) + 64 {
            let live = &self.unused_now;
            self.unused
                .retain(|(order, key)| live.get(key) == Some(order));
        }
    }

    /// `key` carried its first byte.
    pub fn used(&mut self, key: ConnKey) {
        if self.unused_now.remove(&key).is_some()
            && let Some(peer) = self.peers.get_mut(&key.0)
        {
            peer.used += 1;
        }
    }

    /// proxy2 forgot `key`.
    pub fn released(&mut self, key: ConnKey) {
        let was_unused = self.unused_now.remove(&key).is_some();
        let Some(peer) = self.peers.get_mut(&key.0) else {
            return;
        };
        self.open -= 1;
        peer.open -= 1;
        if !was_unused {
            peer.used -= 1;
        }
        if peer.open == 0 {
            self.peers.remove(&key.0);
        }
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open
    }

    /// proxy1 addresses with connections open now.
    pub fn peers(&self) -> usize {
        self.peers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(port: u16, id: u16) -> ConnKey {
        (SocketAddr::from(([127, 0, 0, 1], port)), ConnId::new(id))
    }

    fn admit(adm: &mut Admission, k: ConnKey) -> Vec<ConnKey> {
        match adm.decide(k) {
            Decision::Admit { evict } => {
                for gone in &evict {
                    adm.released(*gone);
                }
                adm.admitted(k);
                evict
            }
            Decision::Refuse(why) => panic!("{k:?} refused: {why:?}"),
        }
    }

    #[test]
    fn the_allow_list_refuses_everyone_else() {
        let mut adm = Admission::new(Limits {
            allowed: Some(vec!["127.0.0.1:9".parse().unwrap()]),
            ..Limits::default()
        });
        assert_eq!(adm.decide(key(8, 0)), Decision::Refuse(Refusal::NotAllowed));
        assert_eq!(adm.decide(key(9, 0)), Decision::Admit { evict: vec![] });
        assert_eq!(
            "127.0.0.1"
                .parse::<PeerFilter>()
                .map(|f| f.matches(key(8, 0).0)),
            Ok(true)
        );
        assert!("nonsense".parse::<PeerFilter>().is_err());
    }

    #[test]
    fn a_full_table_makes_room_by_the_oldest_unused_connection() {
        let mut adm = Admission::new(Limits {
            max_connections: 3,
            ..Limits::default()
        });
        admit(&mut adm, key(1, 0));
        admit(&mut adm, key(1, 1));
        admit(&mut adm, key(1, 2));
        adm.used(key(1, 0));
        // (1,0) carries data, so (1,1) is the oldest unused one.
        assert_eq!(admit(&mut adm, key(2, 0)), vec![key(1, 1)]);
        adm.used(key(1, 2));
        adm.used(key(2, 0));
        assert_eq!(
            adm.decide(key(3, 0)),
            Decision::Refuse(Refusal::TooManyConnections)
        );
        adm.released(key(1, 2));
        assert_eq!(admit(&mut adm, key(3, 0)), vec![]);
        assert_eq!(adm.open(), 3);
    }

    #[test]
    fn a_flood_of_peers_only_displaces_itself() {
        let mut adm = Admission::new(Limits {
            max_peers: 4,
            max_connections: 100,
            allowed: None,
        });
        // A legitimate proxy1 whose connection carries data.
        admit(&mut adm, key(50_000, 0));
        adm.used(key(50_000, 0));
        // 1,000 flooding source ports, ten ids each.
        for port in 1..=1000 {
            for id in 0..10 {
                admit(&mut adm, key(port, id));
            }
        }
        assert_eq!(adm.peers(), 4);
        assert!(adm.open() <= 100);
        // The legitimate peer kept its connection and can open more.
        assert_eq!(admit(&mut adm, key(50_000, 1)), vec![]);
        assert!(adm.peers.contains_key(&key(50_000, 0).0));
        // The bookkeeping stays bounded under the churn.
        assert!(adm.unused.len() <= 2 * 100 + 64 + 1);
    }

    #[test]
    fn peers_that_all_use_their_connections_are_not_displaced() {
        let mut adm = Admission::new(Limits {
            max_peers: 2,
            ..Limits::default()
        });
        for port in [1, 2] {
            admit(&mut adm, key(port, 0));
            adm.used(key(port, 0));
        }
        assert_eq!(
            adm.decide(key(3, 0)),
            Decision::Refuse(Refusal::TooManyPeers)
        );
        adm.released(key(1, 0));
        assert_eq!(admit(&mut adm, key(3, 0)), vec![]);
    }
}
