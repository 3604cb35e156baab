//! Step mode: the link holds every frame instead of sending it, and a person (or a scenario)
//! lets them go one at a time, drops one, or duplicates one. This is how "the ack is lost"
//! is staged on purpose, like killing a packet in flight in the Kurose-Ross applets.
//!
//! Held frames wait here, in the order they were sent, both directions in one list. They are
//! counted as offered and queued by their direction's counters (so the totals still add up:
//! `sent + duplicated = delivered + dropped + queued`); a released frame crosses at once,
//! with none of the other impairments applied; a dropped one is counted as dropped by hand.
//! The link socket of the sending endpoint does the actual sending: it waits on
//! [`StepHold::released`] for its direction.
//!
//! Only bytes are held, never decoded here: it works the same in every wire mode.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Instant;

use tokio::sync::Notify;

use crate::topology::LinkDirection;

/// Most frames held at once; more are sent on as if the link were not held, so memory stays
/// bounded when a flood meets a held link.
pub const MAX_HELD: usize = 1000;

/// One frame the link holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldFrame {
    /// Names the frame while it is held (a key or a step picks it by this).
    pub id: u64,
    pub direction: LinkDirection,
    pub datagram: Vec<u8>,
    /// Where it goes.
    pub addr: SocketAddr,
    /// It is a copy made by [`StepHold::duplicate`].
    pub copy: bool,
    /// When it was held.
    pub since: Instant,
}

/// A frame let go, for its endpoint to send.
#[derive(Debug)]
pub struct Released {
    pub datagram: Vec<u8>,
    pub addr: SocketAddr,
    pub copy: bool,
    pub since: Instant,
}

#[derive(Debug, Default)]
struct State {
    holding: bool,
    next_id: u64,
    held: VecDeque<HeldFrame>,
    /// Released frames not yet sent, per direction (`to_proxy2`, `to_proxy1`).
    released: [VecDeque<Released>; 2],
}

/// The hold of one link (both directions), shared by the endpoints and the lab.
#[derive(Debug, Default)]
pub struct StepHold {
    state: Mutex<State>,
    /// One per direction: its endpoint has released frames to send.
    wake: [Notify; 2],
}

fn slot(direction: LinkDirection) -> usize {
    match direction {
        LinkDirection::ToProxy2 => 0,
        LinkDirection::ToProxy1 => 1,
    }
}

impl StepHold {
    /// Whether frames are being held now.
    pub fn is_holding(&self) -> bool {
        self.state.lock().unwrap().holding
    }

    /// Starts holding (`true`), or stops and releases everything held, in order (`false`).
    /// Returns how many frames were released.
    pub fn set_holding(&self, holding: bool) -> usize {
        let mut state = self.state.lock().unwrap();
        state.holding = holding;
        if holding {
            return 0;
        }
        let mut released = 0;
        while let Some(frame) = state.held.pop_front() {
            Self::push_released(&mut state, frame);
            released += 1;
        }
        drop(state);
        self.wake_all();
        released
    }

    /// Holds a frame if the link is held; gives it back otherwise (or when the hold is full).
    pub fn try_hold(
        &self,
        direction: LinkDirection,
        datagram: &[u8],
        addr: SocketAddr,
    ) -> Option<u64> {
        let mut state = self.state.lock().unwrap();
        if !state.holding || state.held.len() >= MAX_HELD {
            return None;
        }
        let id = state.next_id;
        state.next_id += 1;
        state.held.push_back(HeldFrame {
            id,
            direction,
            datagram: datagram.to_vec(),
            addr,
            copy: false,
            since: Instant::now(),
        });
        Some(id)
    }

    /// The frames held now, oldest first.
    pub fn held(&self) -> Vec<HeldFrame> {
        self.state.lock().unwrap().held.iter().cloned().collect()
    }

    /// Lets one frame go: `None` picks the oldest. Returns it, or `None` if there is no such
    /// frame.
    pub fn release(&self, id: Option<u64>) -> Option<HeldFrame> {
        let mut state = self.state.lock().unwrap();
        let index = match id {
            None => 0,
            Some(id) => state.held.iter().position(|f| f.id == id)?,
        };
        let frame = state.held.remove(index)?;
        let direction = frame.direction;
        Self::push_released(&mut state, frame.clone());
        drop(state);
        self.wake[slot(direction)].notify_one();
        Some(frame)
    }

    /// Takes a held frame out, never to be sent. The caller counts it as dropped by hand.
    pub fn discard(&self, id: u64) -> Option<HeldFrame> {
        let mut state = self.state.lock().unwrap();
        let index = state.held.iter().position(|f| f.id == id)?;
        state.held.remove(index)
    }

    /// Puts a copy of a held frame right behind it. Returns the copy.
    pub fn duplicate(&self, id: u64) -> Option<HeldFrame> {
        let mut state = self.state.lock().unwrap();
        let index = state.held.iter().position(|f| f.id == id)?;
        let copy = HeldFrame {
            id: state.next_id,
            copy: true,
            ..state.held[index].clone()
        };
        state.next_id += 1;
        state.held.insert(index + 1, copy.clone());
        Some(copy)
    }

    /// The next released frame of `direction`, if any.
    pub fn take_released(&self, direction: LinkDirection) -> Option<Released> {
        self.state.lock().unwrap().released[slot(direction)].pop_front()
    }

    /// Resolves when frames of `direction` have been released (or may have been).
    pub async fn released(&self, direction: LinkDirection) {
        self.wake[slot(direction)].notified().await;
    }

    /// Empties what `direction` still holds or has released but not sent, because its
    /// endpoint stopped. Returns the datagrams, for the caller to count.
    pub fn discard_direction(&self, direction: LinkDirection) -> Vec<Vec<u8>> {
        let mut state = self.state.lock().unwrap();
        let mut gone: Vec<Vec<u8>> = Vec::new();
        state.held.retain(|f| {
            if f.direction == direction {
                gone.push(f.datagram.clone());
                false
            } else {
                true
            }
        });
        gone.extend(
            state.released[slot(direction)]
                .drain(..)
                .map(|r| r.datagram),
        );
        gone
    }

    fn push_released(state: &mut State, frame: HeldFrame) {
        state.released[slot(frame.direction)].push_back(Released {
            datagram: frame.datagram,
            addr: frame.addr,
            copy: frame.copy,
            since: frame.since,
        });
    }

    fn wake_all(&self) {
        for wake in &self.wake {
            wake.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> SocketAddr {
        "127.0.0.1:9".parse().unwrap()
    }

    #[test]
    fn frames_are_held_in_order_and_let_go_one_at_a_time() {
        let hold = StepHold::default();
        assert_eq!(hold.try_hold(LinkDirection::ToProxy2, b"C0", addr()), None);
        hold.set_holding(true);
        let c = hold
            .try_hold(LinkDirection::ToProxy2, b"C0", addr())
            .unwrap();
        let ok = hold
            .try_hold(LinkDirection::ToProxy1, b"C0OK", addr())
            .unwrap();
        let d = hold
            .try_hold(LinkDirection::ToProxy2, b"D0hi", addr())
            .unwrap();
        let ids: Vec<u64> = hold.held().iter().map(|f| f.id).collect();
        assert_eq!(ids, [c, ok, d]);
        assert_eq!(hold.release(None).unwrap().id, c);
        assert_eq!(
            hold.take_released(LinkDirection::ToProxy2)
                .unwrap()
                .datagram,
            b"C0"
        );
        assert!(hold.take_released(LinkDirection::ToProxy2).is_none());
        let copy = hold.duplicate(d).unwrap();
        assert!(copy.copy);
        assert_eq!(hold.discard(ok).unwrap().datagram, b"C0OK");
        let left: Vec<(u64, bool)> = hold.held().iter().map(|f| (f.id, f.copy)).collect();
        assert_eq!(left, [(d, false), (copy.id, true)]);
        assert_eq!(hold.set_holding(false), 2);
        assert!(hold.held().is_empty());
        let sent: Vec<bool> = std::iter::from_fn(|| hold.take_released(LinkDirection::ToProxy2))
            .map(|r| r.copy)
            .collect();
        assert_eq!(sent, [false, true]);
    }

    #[test]
    fn a_stopped_endpoint_takes_its_direction_away() {
        let hold = StepHold::default();
        hold.set_holding(true);
        hold.try_hold(LinkDirection::ToProxy2, b"C0", addr());
        hold.try_hold(LinkDirection::ToProxy1, b"C0OK", addr());
        assert_eq!(
            hold.discard_direction(LinkDirection::ToProxy1),
            vec![b"C0OK".to_vec()]
        );
        assert_eq!(hold.held().len(), 1);
    }
}
