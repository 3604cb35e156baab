//! Classroom mode: what a newcomer relies on in front of a class. The first clients of a
//! fresh lab get ids in their own order; the link can be held and stepped frame by frame.
//! Every test runs a real lab on 127.0.0.1 with ephemeral ports.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;

use tokio::sync::mpsc;
use tunlab::event::{ClientAction, ConnState, Endpoint, Event, EventKind, EventSink};
use tunlab::lab::{Lab, LabConfig};

/// Reads events until `done` says the folded state is complete (bounded by `within`).
async fn fold_until<S>(
    rx: &mut mpsc::Receiver<Event>,
    state: &mut S,
    mut fold: impl FnMut(&mut S, &EventKind),
    done: impl Fn(&S) -> bool,
) {
    common::within("the events to arrive", async {
        while !done(state) {
            let event = rx.recv().await.expect("the lab is running");
            fold(state, &event.kind);
        }
    })
    .await;
}

/// Which id proxy1 gave each lab client, by client number.
#[derive(Default)]
struct Placement {
    local: HashMap<SocketAddr, u32>,
    ids: HashMap<u32, u16>,
    pending: Vec<(SocketAddr, u16)>,
}

impl Placement {
    fn fold(&mut self, kind: &EventKind) {
        match kind {
            EventKind::Client {
                client,
                action: ClientAction::Connected { local },
            } => {
                self.local.insert(*local, *client);
            }
            EventKind::Conn {
                at: Endpoint::Proxy1,
                id,
                state: ConnState::Connecting,
                client: Some(addr),
            } => self.pending.push((*addr, id.index() as u16)),
            _ => {}
        }
        // The client's own "connected" event and proxy1's may come in either order.
        let local = &self.local;
        let ids = &mut self.ids;
        self.pending.retain(|(addr, id)| match local.get(addr) {
            Some(client) => {
                ids.insert(*client, *id);
                false
            }
            None => true,
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_first_clients_of_a_fresh_lab_get_ids_in_their_order() {
    // proxy1 serves each client in its own task: connected back to back, they used to race
    // for the lowest id. Several labs, so a race would show.
    for _ in 0..8 {
        let (events, mut rx) = EventSink::channel(4096);
        let mut lab = Lab::start(LabConfig::ephemeral(), events).await.unwrap();
        let clients = lab.add_clients(6).await.unwrap();
        assert_eq!(clients, [1, 2, 3, 4, 5, 6]);
        let mut placement = Placement::default();
        fold_until(&mut rx, &mut placement, Placement::fold, |p| {
            p.ids.len() == 6
        })
        .await;
        for client in 1..=6u32 {
            assert_eq!(
                placement.ids[&client],
                client as u16 - 1,
                "client {client} got the wrong id: {:?}",
                placement.ids
            );
        }
        lab.shutdown().await;
    }
}
