//! The monitor's connection table: every connection open now at each role, the totals
//! (opened, refused, unanswered, peak) and a bounded log of recent connections.
//!
//! It is an [`EventObserver`]: the event sink hands it every event before the bounded
//! channel can drop one, and the link and the echo server report payload bytes to it
//! directly, so it stays exact whether or not anyone asked for per-frame events. It is only
//! attached when a monitor is on; without it the roles pay nothing.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::SystemTime;

use crate::event::{ConnState, EventKind, EventObserver, Flow, TcpAction};
use crate::topology::{Endpoint, Role};
use crate::wire::ConnId;

/// Entries the access log keeps; older ones are forgotten.
pub const ACCESS_LOG_LEN: usize = 256;

/// Names one connection at one role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ConnKey {
    /// proxy1's tunnel connection `id` (one proxy2, so the id is enough).
    Proxy1(ConnId),
    /// proxy2's tunnel connection `id` of the proxy1 at this UDP address.
    Proxy2(SocketAddr, ConnId),
    /// An echo server connection from this TCP peer.
    Server(SocketAddr),
}

impl ConnKey {
    /// The role that holds the connection.
    pub fn role(self) -> Role {
        match self {
            ConnKey::Proxy1(_) => Role::Proxy1,
            ConnKey::Proxy2(..) => Role::Proxy2,
            ConnKey::Server(_) => Role::EchoServer,
        }
    }

    /// The tunnel id, for the proxies.
    pub fn id(self) -> Option<ConnId> {
        match self {
            ConnKey::Proxy1(id) | ConnKey::Proxy2(_, id) => Some(id),
            ConnKey::Server(_) => None,
        }
    }
}

/// One connection open now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnRow {
    pub key: ConnKey,
    /// `connecting`, `open`, `closing`… (for the echo server, always `open`).
    pub state: ConnState,
    /// Who the connection is for: proxy1's TCP client, the proxy1 a proxy2 connection belongs
    /// to, the echo server's TCP peer.
    pub peer: Option<SocketAddr>,
    /// Where it leads: a SOCKS5 client's destination as it asked (`localhost:8000`);
    /// otherwise proxy1 → its proxy2, proxy2 → the server; none for the echo server.
    pub destination: Option<String>,
    /// The SOCKS5 user (proxy1's connections from its SOCKS5 port, with a login).
    pub user: Option<String>,
    /// Payload bytes this role sent: to the link (proxies), written back (echo server).
    pub bytes_out: u64,
    /// Payload bytes this role received: from the link (proxies), read (echo server).
    pub bytes_in: u64,
    /// When it was opened (wall clock).
    pub since: SystemTime,
}

/// What became of a connection, for the access log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Outcome {
    /// It opened (proxy1 got `OK`, proxy2 reached the server, the server accepted).
    Success,
    /// The far side refused it (`NOK`).
    Refused,
    /// proxy2 never answered `C`.
    Unanswered,
}

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Success => "SUCCESS",
            Outcome::Refused => "REFUSED",
            Outcome::Unanswered => "UNANSWERED",
        }
    }
}

/// One line of the access log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessEntry {
    pub time: SystemTime,
    pub key: ConnKey,
    pub peer: Option<SocketAddr>,
    pub destination: Option<String>,
    pub user: Option<String>,
    pub outcome: Outcome,
}

/// Totals of one role since the monitor started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RoleTotals {
    /// Connections opened (asked for, at the proxies).
    pub opened: u64,
    /// Open at this moment.
    pub current: u64,
    /// The most open at once.
    pub peak: u64,
    /// Refused by the far side (`NOK`).
    pub refused: u64,
    /// Never answered (`C` retried until proxy1 gave up).
    pub unanswered: u64,
}

/// A point-in-time copy of the table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnSnapshot {
    /// Open connections, by role then id or peer.
    pub rows: Vec<ConnRow>,
    /// Totals of each role the table has seen, in the order echo server, proxy2, proxy1.
    pub totals: Vec<(Role, RoleTotals)>,
}

#[derive(Debug, Default)]
struct Tables {
    open: HashMap<ConnKey, ConnRow>,
    totals: HashMap<Role, RoleTotals>,
    log: VecDeque<AccessEntry>,
    /// Where each proxy's connections lead (set by whoever starts the monitor).
    destinations: HashMap<Role, SocketAddr>,
}

impl Tables {
    fn totals(&mut self, role: Role) -> &mut RoleTotals {
        self.totals.entry(role).or_default()
    }

    fn insert(&mut self, key: ConnKey, state: ConnState, peer: Option<SocketAddr>) {
        let row = ConnRow {
            key,
            state,
            peer,
            destination: self.destinations.get(&key.role()).map(ToString::to_string),
            user: None,
            bytes_out: 0,
            bytes_in: 0,
            since: SystemTime::now(),
        };
        // A key still open was missed closing (its role stopped mid-way): replaced, not added.
        let replaced = self.open.insert(key, row).is_some();
        let totals = self.totals(key.role());
        totals.opened += 1;
        if !replaced {
            totals.current += 1;
        }
        totals.peak = totals.peak.max(totals.current);
    }

    fn remove(&mut self, key: ConnKey) {
        if self.open.remove(&key).is_some() {
            let totals = self.totals(key.role());
            totals.current = totals.current.saturating_sub(1);
        }
    }

    fn log(&mut self, key: ConnKey, outcome: Outcome) {
        let Some(row) = self.open.get(&key) else {
            return;
        };
        let entry = AccessEntry {
            time: row.since,
            key,
            peer: row.peer,
            destination: row.destination.clone(),
            user: row.user.clone(),
            outcome,
        };
        if self.log.len() == ACCESS_LOG_LEN {
            self.log.pop_front();
        }
        self.log.push_back(entry);
    }

    fn on_conn(&mut self, key: ConnKey, state: ConnState, peer: Option<SocketAddr>) {
        match state {
            ConnState::Connecting => self.insert(key, state, peer),
            ConnState::Free => self.remove(key),
            ConnState::Open => {
                if let Some(row) = self.open.get_mut(&key) {
                    row.state = state;
                    self.log(key, Outcome::Success);
                }
            }
            ConnState::Refused | ConnState::Unanswered => {
                let Some(row) = self.open.get_mut(&key) else {
                    return;
                };
                row.state = state;
                let totals = self.totals(key.role());
                let outcome = if state == ConnState::Refused {
                    totals.refused += 1;
                    Outcome::Refused
                } else {
                    totals.unanswered += 1;
                    Outcome::Unanswered
                };
                self.log(key, outcome);
            }
            ConnState::Closing => {
                if let Some(row) = self.open.get_mut(&key) {
                    row.state = state;
                }
            }
        }
    }
}

/// The table; share it as `Arc<ConnTable>` and attach it to the lab's or role's event sink
/// with [`crate::event::EventSink::with_observer`].
#[derive(Debug, Default)]
pub struct ConnTable {
    tables: Mutex<Tables>,
}

impl ConnTable {
    pub fn new() -> Self {
        ConnTable::default()
    }

    /// Says where `role`'s connections lead (proxy1: its proxy2; proxy2: the server), for
    /// the connections opened from now on.
    pub fn set_destination(&self, role: Role, addr: SocketAddr) {
        self.tables.lock().unwrap().destinations.insert(role, addr);
    }

    /// The open connections and the totals, now.
    pub fn snapshot(&self) -> ConnSnapshot {
        let tables = self.tables.lock().unwrap();
        let mut rows: Vec<ConnRow> = tables.open.values().cloned().collect();
        rows.sort_by_key(|row| (role_order(row.key.role()), row.key));
        let mut totals: Vec<(Role, RoleTotals)> =
            tables.totals.iter().map(|(r, t)| (*r, *t)).collect();
        totals.sort_by_key(|(role, _)| role_order(*role));
        ConnSnapshot { rows, totals }
    }

    /// The totals of one role (zero if it never had a connection).
    pub fn totals(&self, role: Role) -> RoleTotals {
        self.tables
            .lock()
            .unwrap()
            .totals
            .get(&role)
            .copied()
            .unwrap_or_default()
    }

    /// Recent connections, oldest first; only `user`'s when given.
    pub fn access_log(&self, user: Option<&str>) -> Vec<AccessEntry> {
        let tables = self.tables.lock().unwrap();
        tables
            .log
            .iter()
            .filter(|entry| user.is_none_or(|user| entry.user.as_deref() == Some(user)))
            .cloned()
            .collect()
    }

    /// SOCKS5 users seen so far (who logged in at proxy1's SOCKS5 port and got an answer
    /// from proxy2), sorted.
    pub fn users(&self) -> Vec<String> {
        let tables = self.tables.lock().unwrap();
        let mut users: Vec<String> = tables
            .log
            .iter()
            .filter_map(|entry| entry.user.clone())
            .collect();
        users.sort();
        users.dedup();
        users
    }
}

/// Roles in topology order: server, proxy2, proxy1.
fn role_order(role: Role) -> u8 {
    match role {
        Role::EchoServer => 0,
        Role::Proxy2 => 1,
        Role::Proxy1 => 2,
        Role::Client => 3,
    }
}

impl EventObserver for ConnTable {
    fn observe(&self, event: &EventKind) {
        match event {
            EventKind::Conn {
                at,
                id,
                state,
                client,
            } => {
                let key = match at {
                    Endpoint::Proxy1 => ConnKey::Proxy1(*id),
                    Endpoint::Proxy2 => match client {
                        Some(proxy1) => ConnKey::Proxy2(*proxy1, *id),
                        None => return,
                    },
                };
                self.tables.lock().unwrap().on_conn(key, *state, *client);
            }
            // A SOCKS5 client's destination and user: the row opened by its Connecting.
            EventKind::Route {
                at,
                id,
                destination,
                user,
                client,
            } => {
                let key = match at {
                    Endpoint::Proxy1 => ConnKey::Proxy1(*id),
                    Endpoint::Proxy2 => match client {
                        Some(proxy1) => ConnKey::Proxy2(*proxy1, *id),
                        None => return,
                    },
                };
                if let Some(row) = self.tables.lock().unwrap().open.get_mut(&key) {
                    row.destination = Some(destination.to_string());
                    row.user.clone_from(user);
                }
            }
            EventKind::Tcp {
                role: Role::EchoServer,
                peer,
                action,
                ..
            } => {
                let key = ConnKey::Server(*peer);
                let mut tables = self.tables.lock().unwrap();
                match action {
                    TcpAction::Accepted => {
                        tables.insert(key, ConnState::Open, Some(*peer));
                        tables.log(key, Outcome::Success);
                    }
                    TcpAction::PeerClosed(_) | TcpAction::Closed(_) => tables.remove(key),
                    _ => {}
                }
            }
            // A stopped role's connections are gone, whether or not each said so.
            EventKind::RoleDown { role } => {
                let mut tables = self.tables.lock().unwrap();
                let gone: Vec<ConnKey> = tables
                    .open
                    .keys()
                    .filter(|key| key.role() == *role)
                    .copied()
                    .collect();
                for key in gone {
                    tables.remove(key);
                }
            }
            _ => {}
        }
    }

    fn link_payload(&self, at: Endpoint, peer: SocketAddr, id: ConnId, flow: Flow, bytes: usize) {
        let key = match at {
            Endpoint::Proxy1 => ConnKey::Proxy1(id),
            Endpoint::Proxy2 => ConnKey::Proxy2(peer, id),
        };
        self.add_bytes(key, flow, bytes);
    }

    fn tcp_bytes(&self, role: Role, peer: SocketAddr, flow: Flow, bytes: usize) {
        if role == Role::EchoServer {
            self.add_bytes(ConnKey::Server(peer), flow, bytes);
        }
    }
}

impl ConnTable {
    fn add_bytes(&self, key: ConnKey, flow: Flow, bytes: usize) {
        if let Some(row) = self.tables.lock().unwrap().open.get_mut(&key) {
            match flow {
                Flow::In => row.bytes_in += bytes as u64,
                Flow::Out => row.bytes_out += bytes as u64,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn conn(at: Endpoint, id: u16, state: ConnState, client: SocketAddr) -> EventKind {
        EventKind::Conn {
            at,
            id: ConnId::new(id),
            state,
            client: Some(client),
        }
    }

    #[test]
    fn a_connection_is_counted_from_connecting_to_free_with_its_bytes() {
        let table = ConnTable::new();
        table.set_destination(Role::Proxy1, addr(3328));
        let client = addr(5000);
        table.observe(&conn(Endpoint::Proxy1, 3, ConnState::Connecting, client));
        table.observe(&conn(Endpoint::Proxy1, 3, ConnState::Open, client));
        table.link_payload(Endpoint::Proxy1, addr(3328), ConnId::new(3), Flow::Out, 10);
        table.link_payload(Endpoint::Proxy1, addr(3328), ConnId::new(3), Flow::In, 7);
        let snapshot = table.snapshot();
        assert_eq!(snapshot.rows.len(), 1);
        let row = &snapshot.rows[0];
        assert_eq!(row.state, ConnState::Open);
        assert_eq!((row.bytes_out, row.bytes_in), (10, 7));
        assert_eq!(row.peer, Some(client));
        assert_eq!(row.destination, Some(addr(3328).to_string()));
        table.observe(&conn(Endpoint::Proxy1, 3, ConnState::Free, client));
        assert!(table.snapshot().rows.is_empty());
        let totals = table.totals(Role::Proxy1);
        assert_eq!((totals.opened, totals.current, totals.peak), (1, 0, 1));
        let log = table.access_log(None);
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].outcome, Outcome::Success);
        assert!(table.access_log(Some("alice")).is_empty());
    }

    #[test]
    fn refusals_peaks_and_stopped_roles_are_counted() {
        let table = ConnTable::new();
        let p1 = addr(4000);
        for id in 0..3 {
            table.observe(&conn(Endpoint::Proxy2, id, ConnState::Connecting, p1));
        }
        table.observe(&conn(Endpoint::Proxy2, 0, ConnState::Refused, p1));
        table.observe(&conn(Endpoint::Proxy2, 0, ConnState::Free, p1));
        let totals = table.totals(Role::Proxy2);
        assert_eq!((totals.opened, totals.current, totals.peak), (3, 2, 3));
        assert_eq!(totals.refused, 1);
        table.observe(&EventKind::RoleDown { role: Role::Proxy2 });
        assert_eq!(table.totals(Role::Proxy2).current, 0);
        assert!(table.snapshot().rows.is_empty());
    }

    #[test]
    fn the_access_log_is_bounded() {
        let table = ConnTable::new();
        for port in 0..(ACCESS_LOG_LEN as u16 + 10) {
            let peer = addr(10_000 + port);
            table.observe(&EventKind::Tcp {
                role: Role::EchoServer,
                id: None,
                peer,
                action: TcpAction::Accepted,
            });
        }
        let log = table.access_log(None);
        assert_eq!(log.len(), ACCESS_LOG_LEN);
        assert_eq!(log[0].peer, Some(addr(10_010)));
    }
}
