//! Classroom mode: what a newcomer relies on in front of a class. The first clients of a
//! fresh lab get ids in their own order; the link can be held and stepped frame by frame.
//! Every test runs a real lab on 127.0.0.1 with ephemeral ports.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;

use tokio::sync::mpsc;
use tunlab::event::{ClientAction, ConnState, Event, EventKind, EventSink};
use tunlab::lab::{Lab, LabConfig};
use tunlab::topology::Endpoint;

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

/// Polls the lab until `ready` holds (bounded by `within`).
async fn until(lab: &Lab, what: &str, ready: impl Fn(&Lab) -> bool) {
    common::within(what, async {
        while !ready(lab) {
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
    })
    .await;
}

fn held_kinds(lab: &Lab) -> Vec<(tunlab::topology::LinkDirection, tunlab::wire::FrameKind)> {
    lab.held_frames()
        .iter()
        .map(|h| (h.direction, h.frame.kind))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn step_mode_holds_every_frame_and_lets_one_go_drops_one_or_copies_one() {
    use tunlab::topology::LinkDirection::{ToProxy1, ToProxy2};
    use tunlab::wire::FrameKind::{Connect, ConnectOk, Data};
    let (events, _rx) = EventSink::channel(65536);
    let mut lab = Lab::start(LabConfig::ephemeral(), events).await.unwrap();
    lab.set_hold(true);
    let client = lab.add_client().await.unwrap();
    // C is held; released, proxy2 answers OK, held too.
    until(&lab, "C to be held", |lab| {
        held_kinds(lab) == [(ToProxy2, Connect)]
    })
    .await;
    let c = lab.release_held(None).unwrap();
    assert_eq!(c.frame.kind, Connect);
    until(&lab, "OK to be held", |lab| {
        held_kinds(lab) == [(ToProxy1, ConnectOk)]
    })
    .await;
    lab.release_held(None).unwrap();

    // A D dropped by hand never crosses: no echo.
    lab.client_send(client, b"hola".to_vec()).unwrap();
    until(&lab, "D to be held", |lab| {
        held_kinds(lab) == [(ToProxy2, Data)]
    })
    .await;
    let d = lab.held_frames()[0].clone();
    assert_eq!(&d.frame.preview[..], b"hola");
    assert_eq!(lab.drop_held(d.id).unwrap().id, d.id);
    assert!(lab.held_frames().is_empty());

    // A D released crosses, and so does its echo once released.
    lab.client_send(client, b"adios".to_vec()).unwrap();
    until(&lab, "D to be held", |lab| {
        held_kinds(lab) == [(ToProxy2, Data)]
    })
    .await;
    lab.release_held(None).unwrap();
    until(&lab, "the echo to be held", |lab| {
        held_kinds(lab) == [(ToProxy1, Data)]
    })
    .await;
    lab.release_held(None).unwrap();
    until(&lab, "the echo to arrive", |lab| {
        lab.client_status(client).unwrap().echoed_bytes == 5
    })
    .await;
    let status = lab.client_status(client).unwrap();
    // "hola" was lost for good: what came back is "adios", compared with "holaadios".
    assert_eq!((status.sent_bytes, status.echoed_bytes), (9, 5));

    // A copy crosses too: the server gets the bytes twice and echoes them twice.
    lab.client_send(client, b"x".to_vec()).unwrap();
    until(&lab, "D to be held", |lab| {
        held_kinds(lab) == [(ToProxy2, Data)]
    })
    .await;
    let original = lab.held_frames()[0].id;
    let copy = lab.duplicate_held(original).unwrap();
    assert!(copy.copy);
    assert_eq!(held_kinds(&lab), [(ToProxy2, Data), (ToProxy2, Data)]);
    // Letting go of the hold releases everything, in order, and lets the echoes through.
    lab.set_hold(false);
    until(&lab, "both copies echoed", |lab| {
        lab.client_status(client).unwrap().echoed_bytes == 7
    })
    .await;

    let report = lab.snapshot().link;
    let p1p2 = &report.to_proxy2;
    assert_eq!(p1p2.dropped_by.by_hand, 1);
    assert_eq!(p1p2.dropped_types.get(Data), 1);
    assert_eq!(p1p2.duplicated, 1);
    for d in [&report.to_proxy2, &report.to_proxy1] {
        assert_eq!(
            d.sent + d.duplicated,
            d.delivered + d.dropped + d.queued,
            "{d:?}"
        );
        assert_eq!(d.queued, 0);
    }
    lab.shutdown().await;
}

/// "The data frame is lost": staged by hand in a reliable mode. The dropped `D` is sent again
/// when its timer runs out, and the echo arrives intact after all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_reliable_mode_a_d_dropped_by_hand_is_retransmitted() {
    use std::time::Duration;
    use tunlab::topology::LinkDirection::ToProxy2;
    use tunlab::transport::{RtoConfig, TransportConfig};
    use tunlab::wire::{FrameKind, WireMode};
    let mode = WireMode::SelectiveRepeat;
    let mut config = LabConfig {
        mode,
        ..LabConfig::ephemeral()
    };
    let transport = TransportConfig {
        rto: RtoConfig::Fixed(Duration::from_millis(100)),
        ..TransportConfig::for_mode(mode)
    };
    config.proxy1.transport = Some(transport);
    config.proxy2.transport = Some(transport);
    // Nothing but the steps below on the held link: no re-sent C, no probe.
    config.proxy1.connect_retry = Duration::from_mins(10);
    let (events, _rx) = EventSink::channel(65536);
    let mut lab = Lab::start(config, events).await.unwrap();
    let client = lab.add_client().await.unwrap();
    until(&lab, "the connection to open", |lab| {
        lab.snapshot().proxy1.received.ok == 1
    })
    .await;
    lab.set_hold(true);
    lab.client_send(client, b"hola".to_vec()).unwrap();
    until(&lab, "the D to be held", |lab| {
        lab.held_frames()
            .iter()
            .any(|h| h.direction == ToProxy2 && h.frame.kind == FrameKind::Data)
    })
    .await;
    let d = lab.held_frames()[0].clone();
    assert_eq!(&d.frame.preview[..], b"hola");
    lab.drop_held(d.id).unwrap();
    // Its timer runs out and the same bytes are offered again: held once more.
    until(&lab, "the retransmission to be held", |lab| {
        lab.held_frames().iter().any(|h| {
            h.direction == ToProxy2
                && h.frame.kind == FrameKind::Data
                && &h.frame.preview[..] == b"hola"
        })
    })
    .await;
    lab.set_hold(false);
    until(&lab, "the echo, intact", |lab| {
        let status = lab.client_status(client).unwrap();
        status.echoed_bytes == 4 && status.intact
    })
    .await;
    assert_eq!(lab.snapshot().link.to_proxy2.dropped_by.by_hand, 1);
    lab.shutdown().await;
}
