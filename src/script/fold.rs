//! Folds the lab's event stream into one record per tunnel connection: which client owned
//! it, what happened to it at each proxy, and the frames and bytes it carried each way.
//!
//! The event stream can drop events when its consumer falls behind; the runner reads it
//! continuously through a large channel and reports any drop. Totals that must be exact
//! (frame counters, client byte counts) come from the lab's snapshot instead.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;

use serde::Serialize;

use crate::event::{ConnState, EventKind, FrameNumbers};
use crate::topology::{Endpoint, LinkDirection, Role};
use crate::wire::{ConnId, FrameKind, Seq};

/// Frames and payload bytes one connection carried in one direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Traffic {
    /// Frames of every type sent with this connection's id.
    pub frames: u64,
    /// Bytes of `D` payload (the client's data, without frame headers).
    pub bytes: u64,
}

/// One use of a tunnel id, from proxy1's `C` to the id being free again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnRecord {
    pub id: ConnId,
    /// The TCP client's address as proxy1 saw it (the lab client's local address).
    pub client: SocketAddr,
    /// proxy2 answered `OK`.
    pub opened: bool,
    /// proxy2 answered `NOK`.
    pub refused: bool,
    /// proxy1 gave up: no answer to any `C`.
    pub unanswered: bool,
    /// proxy1 received an `X` from proxy2 while the connection was open.
    pub closed_by_proxy2: bool,
    pub freed_at_proxy1: bool,
    /// proxy2 took the connection (a `C` arrived there).
    pub seen_at_proxy2: bool,
    pub freed_at_proxy2: bool,
    /// proxy1 → proxy2, as sent by proxy1.
    pub to_proxy2: Traffic,
    /// proxy2 → proxy1, as sent by proxy2.
    pub to_proxy1: Traffic,
    /// Extended modes: proxy1's initial sequence number (its `C`) and proxy2's (its `OK`),
    /// so that messages can count sequence numbers from them as the traces do.
    pub isns: (Option<Seq>, Option<Seq>),
}

impl ConnRecord {
    fn new(id: ConnId, client: SocketAddr) -> Self {
        ConnRecord {
            id,
            client,
            opened: false,
            refused: false,
            unanswered: false,
            closed_by_proxy2: false,
            freed_at_proxy1: false,
            seen_at_proxy2: false,
            freed_at_proxy2: false,
            to_proxy2: Traffic::default(),
            to_proxy1: Traffic::default(),
            isns: (None, None),
        }
    }

    /// The id is free again at both ends (proxy2 only matters if it ever took it).
    pub fn freed(&self) -> bool {
        self.freed_at_proxy1 && (!self.seen_at_proxy2 || self.freed_at_proxy2)
    }
}

/// Everything folded so far.
#[derive(Debug, Default)]
pub struct Fold {
    /// Events taken in.
    pub events: u64,
    /// Every connection, in the order proxy1 opened them.
    pub conns: Vec<ConnRecord>,
    /// proxy1's latest connection for each id: what proxy1's frames with that id belong to.
    current: HashMap<ConnId, usize>,
    /// The connection proxy2 last took for each id. proxy2 lags behind proxy1: when an id is
    /// reused, proxy2's `Free` for the old connection can arrive after proxy1's `C` for the
    /// new one, so proxy2's events follow proxy2's own view.
    current_at_proxy2: HashMap<ConnId, usize>,
    /// Clients that had to wait for a free id.
    waited: HashSet<SocketAddr>,
    /// Clients that waited in vain and were closed.
    gave_up: HashSet<SocketAddr>,
}

impl Fold {
    pub fn apply(&mut self, event: &EventKind) {
        self.events += 1;
        match event {
            EventKind::WaitingForId { client } => {
                self.waited.insert(*client);
            }
            EventKind::WaitGaveUp { client } => {
                self.gave_up.insert(*client);
            }
            EventKind::Conn {
                at: Endpoint::Proxy1,
                id,
                state,
                client: Some(client),
            } => {
                if *state == ConnState::Connecting {
                    self.current.insert(*id, self.conns.len());
                    self.conns.push(ConnRecord::new(*id, *client));
                    return;
                }
                let Some(record) = self.current_mut(*id) else {
                    return;
                };
                match state {
                    ConnState::Open => record.opened = true,
                    ConnState::Refused => record.refused = true,
                    ConnState::Unanswered => record.unanswered = true,
                    ConnState::Free => record.freed_at_proxy1 = true,
                    ConnState::Connecting | ConnState::Closing => {}
                }
            }
            EventKind::Conn {
                at: Endpoint::Proxy2,
                id,
                state,
                ..
            } => {
                if *state == ConnState::Connecting
                    && let Some(&index) = self.current.get(id)
                {
                    // proxy2 takes the connection proxy1 sent this C for: its latest.
                    self.current_at_proxy2.insert(*id, index);
                }
                if let Some(record) = self.at_proxy2_mut(*id) {
                    match state {
                        ConnState::Connecting => record.seen_at_proxy2 = true,
                        ConnState::Free => record.freed_at_proxy2 = true,
                        _ => {}
                    }
                }
            }
            EventKind::RoleDown {
                role: Role::Proxy2, ..
            } => {
                // A stopped proxy2 forgets its whole table.
                self.current_at_proxy2.clear();
                for record in &mut self.conns {
                    if record.seen_at_proxy2 {
                        record.freed_at_proxy2 = true;
                    }
                }
            }
            EventKind::FrameSent { at, frame, .. } => {
                let record = match at {
                    Endpoint::Proxy1 => self.current_mut(frame.id),
                    Endpoint::Proxy2 => self.at_proxy2_mut(frame.id),
                };
                if let Some(record) = record {
                    let traffic = match at {
                        Endpoint::Proxy1 => &mut record.to_proxy2,
                        Endpoint::Proxy2 => &mut record.to_proxy1,
                    };
                    traffic.frames += 1;
                    if frame.kind == FrameKind::Data {
                        traffic.bytes += frame.payload_len as u64;
                    }
                    if let FrameNumbers::Isn(isn) = frame.numbers {
                        match (at, frame.kind) {
                            (Endpoint::Proxy1, FrameKind::Connect) => record.isns.0 = Some(isn),
                            (Endpoint::Proxy2, FrameKind::ConnectOk) => record.isns.1 = Some(isn),
                            _ => {}
                        }
                    }
                }
            }
            EventKind::FrameReceived {
                at: Endpoint::Proxy1,
                frame,
                ..
            } if frame.kind == FrameKind::Close => {
                if let Some(record) = self.current_mut(frame.id)
                    && record.opened
                    && !record.freed_at_proxy1
                {
                    record.closed_by_proxy2 = true;
                }
            }
            _ => {}
        }
    }

    /// (the sender's ISN, the receiver's) for a frame of proxy1's latest connection on `id`
    /// sent in `direction`, once both are known: what
    /// [`crate::describe::frame_label_relative`] counts from.
    pub fn bases(&self, id: ConnId, direction: LinkDirection) -> Option<(Seq, Seq)> {
        let record = self.conns.get(*self.current.get(&id)?)?;
        let (Some(p1), Some(p2)) = record.isns else {
            return None;
        };
        Some(match direction {
            LinkDirection::ToProxy2 => (p1, p2),
            LinkDirection::ToProxy1 => (p2, p1),
        })
    }

    fn current_mut(&mut self, id: ConnId) -> Option<&mut ConnRecord> {
        let index = *self.current.get(&id)?;
        self.conns.get_mut(index)
    }

    /// The connection proxy2's events about `id` are about: the one proxy2 took, or (for a
    /// proxy2 that never took one, such as a restarted proxy2 answering a stale `D` with `X`)
    /// proxy1's current one.
    fn at_proxy2_mut(&mut self, id: ConnId) -> Option<&mut ConnRecord> {
        let index = *self
            .current_at_proxy2
            .get(&id)
            .or_else(|| self.current.get(&id))?;
        self.conns.get_mut(index)
    }

    /// The latest connection of the client at `addr`.
    pub fn latest_for(&self, addr: SocketAddr) -> Option<&ConnRecord> {
        self.conns.iter().rev().find(|c| c.client == addr)
    }

    pub fn waited(&self, addr: SocketAddr) -> bool {
        self.waited.contains(&addr)
    }

    pub fn gave_up(&self, addr: SocketAddr) -> bool {
        self.gave_up.contains(&addr)
    }

    /// Connections whose id is not free again yet.
    pub fn busy(&self) -> impl Iterator<Item = &ConnRecord> {
        self.conns.iter().filter(|c| !c.freed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::FrameSummary;
    use crate::wire::{Frame, Seq};

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

    fn sent(at: Endpoint, frame: Frame<'_>) -> EventKind {
        EventKind::FrameSent {
            at,
            peer: addr(1),
            frame: FrameSummary::of(&frame, 2 + frame.payload().len()),
        }
    }

    #[test]
    fn a_connection_life_is_folded_and_a_reused_id_starts_a_new_record() {
        let id = ConnId::new(0);
        let proxy1 = addr(9000);
        let mut fold = Fold::default();
        for event in [
            conn(Endpoint::Proxy1, 0, ConnState::Connecting, addr(5001)),
            sent(
                Endpoint::Proxy1,
                Frame::Connect {
                    id,
                    isn: Seq::ZERO,
                    destination: None,
                },
            ),
            conn(Endpoint::Proxy2, 0, ConnState::Connecting, proxy1),
            sent(Endpoint::Proxy2, Frame::ConnectOk { id, isn: Seq::ZERO }),
            conn(Endpoint::Proxy1, 0, ConnState::Open, addr(5001)),
            sent(
                Endpoint::Proxy1,
                Frame::Data {
                    id,
                    seq: Seq::ZERO,
                    payload: b"hola",
                },
            ),
            sent(
                Endpoint::Proxy2,
                Frame::Data {
                    id,
                    seq: Seq::ZERO,
                    payload: b"hola",
                },
            ),
            sent(Endpoint::Proxy1, Frame::Close { id, seq: Seq::ZERO }),
            conn(Endpoint::Proxy1, 0, ConnState::Free, addr(5001)),
        ] {
            fold.apply(&event);
        }
        assert!(fold.busy().next().is_some(), "proxy2 has not freed it yet");
        fold.apply(&conn(Endpoint::Proxy2, 0, ConnState::Free, proxy1));
        assert!(fold.busy().next().is_none());

        fold.apply(&conn(
            Endpoint::Proxy1,
            0,
            ConnState::Connecting,
            addr(5002),
        ));
        fold.apply(&sent(
            Endpoint::Proxy1,
            Frame::Connect {
                id,
                isn: Seq::ZERO,
                destination: None,
            },
        ));
        assert_eq!(fold.conns.len(), 2);
        let first = &fold.conns[0];
        assert!(first.opened && first.freed());
        assert_eq!(
            first.to_proxy2,
            Traffic {
                frames: 3,
                bytes: 4
            }
        );
        assert_eq!(
            first.to_proxy1,
            Traffic {
                frames: 2,
                bytes: 4
            }
        );
        let second = fold.latest_for(addr(5002)).unwrap();
        assert_eq!(
            second.to_proxy2,
            Traffic {
                frames: 1,
                bytes: 0
            }
        );
        assert!(!second.opened);
    }

    #[test]
    fn proxy2_events_follow_proxy2_when_an_id_is_reused_before_proxy2_freed_it() {
        let id = ConnId::new(3);
        let proxy1 = addr(9000);
        let mut fold = Fold::default();
        for event in [
            conn(Endpoint::Proxy1, 3, ConnState::Connecting, addr(5004)),
            conn(Endpoint::Proxy2, 3, ConnState::Connecting, proxy1),
            conn(Endpoint::Proxy1, 3, ConnState::Open, addr(5004)),
            sent(Endpoint::Proxy1, Frame::Close { id, seq: Seq::ZERO }),
            conn(Endpoint::Proxy1, 3, ConnState::Free, addr(5004)),
            // A waiting client takes id 3 at once, before proxy2 has handled the X.
            conn(Endpoint::Proxy1, 3, ConnState::Connecting, addr(5011)),
            sent(
                Endpoint::Proxy1,
                Frame::Connect {
                    id,
                    isn: Seq::ZERO,
                    destination: None,
                },
            ),
            conn(Endpoint::Proxy2, 3, ConnState::Free, proxy1),
            conn(Endpoint::Proxy2, 3, ConnState::Connecting, proxy1),
            sent(Endpoint::Proxy2, Frame::ConnectOk { id, isn: Seq::ZERO }),
        ] {
            fold.apply(&event);
        }
        let old = &fold.conns[0];
        assert!(old.freed(), "the old connection is free at both ends");
        let new = &fold.conns[1];
        assert!(new.seen_at_proxy2 && !new.freed_at_proxy2);
        assert_eq!(new.to_proxy1.frames, 1);
        assert_eq!(fold.busy().count(), 1);
    }

    #[test]
    fn a_stopped_proxy2_frees_what_it_held() {
        let mut fold = Fold::default();
        fold.apply(&conn(
            Endpoint::Proxy1,
            3,
            ConnState::Connecting,
            addr(5001),
        ));
        fold.apply(&conn(
            Endpoint::Proxy2,
            3,
            ConnState::Connecting,
            addr(9000),
        ));
        fold.apply(&conn(Endpoint::Proxy1, 3, ConnState::Free, addr(5001)));
        assert!(fold.busy().next().is_some());
        fold.apply(&EventKind::RoleDown { role: Role::Proxy2 });
        assert!(fold.busy().next().is_none());
    }
}
