//! proxy1's connection ids: which id a new client gets, and which waiting client gets an id
//! that frees up. No I/O here: the proxy asks, this answers.
//!
//! Ids are handed out least recently used first, not lowest first. An id that was just freed
//! is the one most likely to still have frames of its old connection on the link (a lost or
//! late `X`, data proxy2 sent before it heard the `X`); classic frames carry nothing but the
//! id, so the only defence on the wire is to leave a freed id unused for as long as another
//! one is free. Ids never used yet count as least recently used, in ascending order, so a
//! fresh lab still gives its clients 0, 1, 2, …
//!
//! Nothing is allocated per id up front: extended modes have 65,536 of them.

use std::collections::VecDeque;

use crate::wire::ConnId;

/// The free ids of one link, least recently used first.
#[derive(Debug)]
pub struct IdPool {
    /// How many ids the wire mode has.
    capacity: u32,
    /// Ids below this have been handed out at least once; the ones at or above it are fresh.
    next_fresh: u32,
    /// Ids handed out before and given back since, oldest release first.
    released: VecDeque<ConnId>,
}

impl IdPool {
    /// A pool of ids `0..capacity`, all free.
    pub fn new(capacity: usize) -> Self {
        IdPool {
            capacity: u32::try_from(capacity).unwrap_or(u32::MAX),
            next_fresh: 0,
            released: VecDeque::new(),
        }
    }

    /// Takes the least recently used free id.
    pub fn take(&mut self) -> Option<ConnId> {
        if self.next_fresh < self.capacity {
            let id = ConnId::new(self.next_fresh as u16);
            self.next_fresh += 1;
            return Some(id);
        }
        self.released.pop_front()
    }

    /// Gives an id back; it becomes the most recently used.
    pub fn give_back(&mut self, id: ConnId) {
        debug_assert!(!self.released.contains(&id), "{id} given back twice");
        self.released.push_back(id);
    }

    /// Puts back an id that was taken but never used (its client left before it was
    /// handed over): it keeps its place as least recently used.
    pub fn untake(&mut self, id: ConnId) {
        if u32::from(id.index() as u16) + 1 == self.next_fresh {
            self.next_fresh -= 1;
        } else {
            self.released.push_front(id);
        }
    }

    /// How many ids are free now.
    pub fn free(&self) -> usize {
        (self.capacity - self.next_fresh) as usize + self.released.len()
    }
}

/// A client waiting for an id, as the queue sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Waiter {
    /// Arrival order, unique per client.
    pub ticket: u64,
    /// The client has already sent bytes: it is in a hurry, unlike a connection that was
    /// opened and left idle (which is how ten idle sockets used to starve everyone else).
    pub ready: bool,
}

/// Clients waiting for an id. An id that frees up goes to the first client that has already
/// sent something, or else to the one that has waited longest.
#[derive(Debug, Default)]
pub struct WaitQueue {
    waiting: VecDeque<Waiter>,
}

impl WaitQueue {
    pub fn push(&mut self, ticket: u64) {
        self.waiting.push_back(Waiter {
            ticket,
            ready: false,
        });
    }

    /// Marks a waiting client as having sent data.
    pub fn mark_ready(&mut self, ticket: u64) {
        if let Some(waiter) = self.waiting.iter_mut().find(|w| w.ticket == ticket) {
            waiter.ready = true;
        }
    }

    /// Takes a client out of the queue (it left, or gave up); true if it was there.
    pub fn remove(&mut self, ticket: u64) -> bool {
        let before = self.waiting.len();
        self.waiting.retain(|w| w.ticket != ticket);
        self.waiting.len() != before
    }

    /// The client that gets the next free id, taken out of the queue.
    pub fn pop_next(&mut self) -> Option<Waiter> {
        let index = self.waiting.iter().position(|w| w.ready).unwrap_or(0);
        self.waiting.remove(index)
    }

    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(pool: &mut IdPool, n: usize) -> Vec<u16> {
        (0..n)
            .map(|_| pool.take().map(|id| id.index() as u16).unwrap())
            .collect()
    }

    #[test]
    fn a_fresh_pool_counts_up_from_zero() {
        let mut pool = IdPool::new(10);
        assert_eq!(ids(&mut pool, 10), (0..10).collect::<Vec<_>>());
        assert_eq!(pool.take(), None);
        assert_eq!(pool.free(), 0);
    }

    #[test]
    fn a_freed_id_is_not_reused_while_another_is_free() {
        let mut pool = IdPool::new(10);
        let first = pool.take().unwrap();
        pool.give_back(first);
        // Nine never-used ids go first, then the freed one.
        let next: Vec<u16> = ids(&mut pool, 10);
        assert_eq!(next, vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 0]);
    }

    #[test]
    fn released_ids_come_back_oldest_release_first() {
        let mut pool = IdPool::new(3);
        let taken = ids(&mut pool, 3);
        assert_eq!(taken, vec![0, 1, 2]);
        pool.give_back(ConnId::new(2));
        pool.give_back(ConnId::new(0));
        pool.give_back(ConnId::new(1));
        assert_eq!(ids(&mut pool, 3), vec![2, 0, 1]);
    }

    #[test]
    fn an_untaken_id_keeps_its_place() {
        let mut pool = IdPool::new(3);
        let zero = pool.take().unwrap();
        pool.untake(zero);
        assert_eq!(pool.take(), Some(ConnId::new(0)));
        let _ = ids(&mut pool, 2);
        pool.give_back(ConnId::new(1));
        pool.give_back(ConnId::new(2));
        let one = pool.take().unwrap();
        pool.untake(one);
        assert_eq!(ids(&mut pool, 2), vec![1, 2]);
    }

    #[test]
    fn no_id_is_allocated_up_front() {
        let pool = IdPool::new(65_536);
        assert_eq!(pool.free(), 65_536);
        assert!(pool.released.capacity() < 64);
    }

    #[test]
    fn a_client_that_has_sent_data_goes_first() {
        let mut queue = WaitQueue::default();
        for ticket in 1..=4 {
            queue.push(ticket);
        }
        queue.mark_ready(3);
        assert_eq!(queue.pop_next().map(|w| w.ticket), Some(3));
        assert_eq!(queue.pop_next().map(|w| w.ticket), Some(1));
        assert!(queue.remove(2));
        assert!(!queue.remove(2));
        assert_eq!(queue.pop_next().map(|w| w.ticket), Some(4));
        assert_eq!(queue.pop_next(), None);
    }
}
