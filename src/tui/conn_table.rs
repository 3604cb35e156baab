//! The connections the screen knows, by id: storage proportional to the connections in use,
//! not to the ids the wire has.
//!
//! Classic and stop-and-wait have ten ids, and the lab shows every one of them (a free id is
//! part of the lesson: the eleventh client waits for one). The extended modes have 65,536:
//! a view per id up front cost ~35 MB and a list nobody can scroll. There a view is made when
//! an id is first seen, and views of connections that are free again at both proxies are
//! forgotten, oldest first, once more than [`ConnTable::KEEP_FREED`] of them are kept.

use std::collections::{BTreeMap, VecDeque};

use super::state::ConnView;
use crate::event::ConnState;
use crate::wire::{ConnId, WireMode};

/// How many connections are in each state, for the list's summary line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StateCounts {
    pub connecting: usize,
    pub open: usize,
    pub closing: usize,
    /// Views of free ids still shown (every id in classic; recently closed ones otherwise).
    pub free: usize,
}

/// Every connection view the screen keeps, ordered by id.
#[derive(Clone, Debug)]
pub struct ConnTable {
    views: BTreeMap<ConnId, ConnView>,
    /// The wire mode's ids: `0..ids`.
    ids: usize,
    /// Every id has a view for good (the ten-id modes).
    keep_all: bool,
    /// Ids whose connection became free at both proxies, oldest first; a view is forgotten
    /// once it reaches the front of a queue longer than [`ConnTable::KEEP_FREED`] and is still
    /// free. An id may appear more than once (freed, reused, freed again).
    freed: VecDeque<ConnId>,
}

impl ConnTable {
    /// Free connections whose view (trace, ladder, counts) stays on screen in the extended
    /// modes after they end, so a person can still look at what just happened.
    pub const KEEP_FREED: usize = 256;

    /// Ids up to this many all get a view for good.
    const KEEP_ALL_UP_TO: usize = 64;

    /// The table for `mode`: every id at once in the ten-id modes, none yet otherwise.
    pub fn new(mode: WireMode) -> Self {
        let ids = mode.max_connections();
        let keep_all = ids <= Self::KEEP_ALL_UP_TO;
        let views = if keep_all {
            (0..ids)
                .map(|i| {
                    let id = ConnId::new(i as u16);
                    (id, ConnView::new(id))
                })
                .collect()
        } else {
            BTreeMap::new()
        };
        ConnTable {
            views,
            ids,
            keep_all,
            freed: VecDeque::new(),
        }
    }

    /// How many ids the wire mode has (not how many views are kept).
    pub fn ids(&self) -> usize {
        self.ids
    }

    /// Whether every id is listed, free or not (the ten-id modes).
    pub fn lists_every_id(&self) -> bool {
        self.keep_all
    }

    /// Views kept now.
    pub fn len(&self) -> usize {
        self.views.len()
    }

    pub fn is_empty(&self) -> bool {
        self.views.is_empty()
    }

    pub fn get(&self, id: ConnId) -> Option<&ConnView> {
        self.views.get(&id)
    }

    /// The view of `id`, made when the id is first seen; `None` for an id the wire mode does
    /// not have.
    pub fn view_mut(&mut self, id: ConnId) -> Option<&mut ConnView> {
        if id.index() >= self.ids {
            return None;
        }
        let made = !self.views.contains_key(&id);
        if made && !self.keep_all {
            // Seen first through a frame or a late event rather than its `C`: free until a
            // state says otherwise, so it must be forgettable like any freed view.
            self.freed.push_back(id);
        }
        Some(self.views.entry(id).or_insert_with(|| ConnView::new(id)))
    }

    /// Views in id order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &ConnView> {
        self.views.values()
    }

    pub fn iter_mut(&mut self) -> impl DoubleEndedIterator<Item = &mut ConnView> {
        self.views.values_mut()
    }

    /// Where `id` is in id order among the views kept (the list's row).
    pub fn position(&self, id: ConnId) -> Option<usize> {
        self.views
            .contains_key(&id)
            .then(|| self.views.range(..id).count())
    }

    /// The first view at or after `id`, else the last one before it: where a jump to an id
    /// with no view lands.
    pub fn nearest(&self, id: ConnId) -> Option<ConnId> {
        self.views
            .range(id..)
            .next()
            .or_else(|| self.views.range(..id).next_back())
            .map(|(&id, _)| id)
    }

    /// Connections by state, over the views kept.
    pub fn counts(&self) -> StateCounts {
        let mut counts = StateCounts::default();
        for view in self.views.values() {
            match view.state {
                ConnState::Connecting => counts.connecting += 1,
                ConnState::Open => counts.open += 1,
                ConnState::Closing => counts.closing += 1,
                ConnState::Free | ConnState::Refused | ConnState::Unanswered => counts.free += 1,
            }
        }
        counts
    }

    /// Called after `id`'s state changed: once it is free at both proxies its view joins the
    /// freed queue.
    pub fn settle(&mut self, id: ConnId) {
        if self.keep_all {
            return;
        }
        if self.views.get(&id).is_some_and(is_free) && !self.freed.contains(&id) {
            self.freed.push_back(id);
        }
    }

    /// Forgets the oldest freed views past [`ConnTable::KEEP_FREED`] that are still free
    /// (never `keep`, the selected one). Cheap when there is nothing to forget: the reducer
    /// calls it after every event.
    pub fn trim(&mut self, keep: Option<ConnId>) {
        let mut kept_selected = None;
        while self.freed.len() > Self::KEEP_FREED {
            let Some(oldest) = self.freed.pop_front() else {
                break;
            };
            if Some(oldest) == keep {
                kept_selected = Some(oldest);
                continue;
            }
            if self.views.get(&oldest).is_some_and(is_free) && !self.freed.contains(&oldest) {
                self.views.remove(&oldest);
            }
        }
        if let Some(id) = kept_selected {
            self.freed.push_back(id);
        }
    }
}

/// Free at both proxies: nothing more will happen to this connection.
fn is_free(view: &ConnView) -> bool {
    matches!(
        view.state,
        ConnState::Free | ConnState::Refused | ConnState::Unanswered
    ) && view.proxy2_state == ConnState::Free
}

impl std::ops::Index<usize> for ConnTable {
    type Output = ConnView;

    /// The view of id `index`; panics if the table has none (tests use it on ids they
    /// opened).
    fn index(&self, index: usize) -> &ConnView {
        let id = ConnId::new(u16::try_from(index).expect("an id fits 16 bits"));
        self.views
            .get(&id)
            .unwrap_or_else(|| panic!("no view of connection {id}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(table: &mut ConnTable, n: u16) {
        open_keeping(table, n, None);
    }

    fn open_keeping(table: &mut ConnTable, n: u16, keep: Option<ConnId>) {
        let view = table.view_mut(ConnId::new(n)).unwrap();
        view.state = ConnState::Open;
        view.proxy2_state = ConnState::Open;
        table.settle(ConnId::new(n));
        table.trim(keep);
    }

    fn free(table: &mut ConnTable, n: u16, keep: Option<ConnId>) {
        let view = table.view_mut(ConnId::new(n)).unwrap();
        view.state = ConnState::Free;
        view.proxy2_state = ConnState::Free;
        table.settle(ConnId::new(n));
        table.trim(keep);
    }

    #[test]
    fn the_ten_id_modes_list_every_id_and_never_forget_one() {
        let mut table = ConnTable::new(WireMode::Classic);
        assert_eq!(table.len(), 10);
        assert!(table.lists_every_id());
        for round in 0..100 {
            open(&mut table, round % 10);
            free(&mut table, round % 10, None);
        }
        assert_eq!(table.len(), 10);
        assert!(table.view_mut(ConnId::new(10)).is_none());
    }

    #[test]
    fn the_extended_modes_keep_views_of_live_connections_only() {
        let mut table = ConnTable::new(WireMode::SelectiveRepeat);
        assert!(table.is_empty(), "nothing made up front for 65,536 ids");
        for n in 0..10_000 {
            open(&mut table, n);
        }
        assert_eq!(table.len(), 10_000);
        assert_eq!(table.counts().open, 10_000);
        for n in 0..10_000 {
            free(&mut table, n, None);
        }
        assert_eq!(table.len(), ConnTable::KEEP_FREED);
        // The most recently freed are the ones kept.
        assert_eq!(
            table.iter().next().map(|v| v.id),
            Some(ConnId::new(10_000 - ConnTable::KEEP_FREED as u16))
        );
        assert!(table.freed.len() <= ConnTable::KEEP_FREED);
    }

    #[test]
    fn a_reused_id_is_not_forgotten_while_open_and_the_selected_view_stays() {
        let mut table = ConnTable::new(WireMode::GoBackN);
        open(&mut table, 7);
        free(&mut table, 7, None);
        open(&mut table, 7);
        let selected = ConnId::new(8);
        open(&mut table, 8);
        free(&mut table, 8, Some(selected));
        for n in 100..100 + 2 * ConnTable::KEEP_FREED as u16 {
            open_keeping(&mut table, n, Some(selected));
            free(&mut table, n, Some(selected));
        }
        assert_eq!(
            table.get(ConnId::new(7)).map(|v| v.state),
            Some(ConnState::Open)
        );
        assert!(table.get(selected).is_some(), "the selected view is kept");
        assert_eq!(table.position(ConnId::new(7)), Some(0));
        assert_eq!(
            table.nearest(ConnId::new(9)),
            table.iter().nth(2).map(|v| v.id)
        );
    }

    #[test]
    fn a_view_made_by_a_stray_frame_is_forgettable() {
        let mut table = ConnTable::new(WireMode::SelectiveRepeat);
        for n in 0..1_000 {
            table.view_mut(ConnId::new(n));
            table.trim(None);
        }
        assert!(table.len() <= ConnTable::KEEP_FREED + 1);
    }
}
