//! The capture tells events in the order they happened: a frame is stamped when it is handed
//! to the socket, and the writer puts records from both proxies in time order, so a reply
//! never comes before its request, in its timestamp or in its place in the file.
//!
//! Bounded: 10 clients × 1,000 strict ping-pong round trips on loopback, under a time limit.

mod capture_support;

use std::collections::HashMap;
use std::time::Duration;

use capture_support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tunlab::capture::CaptureFormat;
use tunlab::event::EventSink;
use tunlab::lab::{Lab, LabConfig};
use tunlab::wire::{Frame, WireMode};

const CLIENTS: usize = 10;
const ROUNDS: usize = 1_000;
/// The whole exchange must end within this (it takes a few seconds on a loaded machine).
const LIMIT: Duration = Duration::from_mins(4);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_ten_thousand_round_trips_no_reply_is_stamped_before_its_request() {
    let dir = tempfile::tempdir().unwrap();
    let events = EventSink::disabled();
    let capture = lab_writer(dir.path(), CaptureFormat::Pcapng, &events);
    let config = LabConfig {
        capture: Some(capture.tap()),
        ..LabConfig::ephemeral()
    };
    let lab = Lab::start(config, events).await.unwrap();
    let proxy1 = lab.addrs().proxy1_tcp;
    let mut clients = Vec::new();
    for client in 0..CLIENTS {
        clients.push(tokio::spawn(async move {
            let mut stream = tokio::net::TcpStream::connect(proxy1).await.unwrap();
            stream.set_nodelay(true).unwrap();
            for round in 0..ROUNDS {
                // One message, then its whole echo, before the next: one D each way.
                let message = format!("{client}:{round:04}.");
                stream.write_all(message.as_bytes()).await.unwrap();
                let mut echo = vec![0; message.len()];
                stream.read_exact(&mut echo).await.unwrap();
                assert_eq!(echo, message.as_bytes());
            }
            stream.shutdown().await.unwrap();
            let mut rest = Vec::new();
            stream.read_to_end(&mut rest).await.unwrap();
        }));
    }
    let all = futures_join(clients);
    tokio::time::timeout(LIMIT, all)
        .await
        .expect("the round trips finish in time");
    lab.shutdown().await;
    let summary = capture.finish().await;
    assert_eq!(summary.error, None);
    let file = read_pcapng(&summary.path);

    // The file is in time order.
    assert!(
        file.times.windows(2).all(|w| w[0] <= w[1]),
        "packets out of time order"
    );
    // Each request D (p1→p2) is answered by the echo D carrying the same bytes (p2→p1), never
    // stamped before it; the same for C and its OK.
    let proxy2 = lab_proxy2(&file);
    let mut asked: HashMap<Vec<u8>, Duration> = HashMap::new();
    let mut connect: HashMap<usize, Duration> = HashMap::new();
    let mut round_trips = 0;
    for packet in &file.packets {
        let to_proxy2 = packet.dst == proxy2;
        match WireMode::Classic.decode(&packet.datagram).unwrap() {
            Frame::Connect { id, .. } if to_proxy2 => {
                connect.insert(id.index(), packet.time);
            }
            Frame::ConnectOk { id, .. } => {
                let asked_at = connect
                    .get(&id.index())
                    .expect("an OK after its C in the file");
                assert!(*asked_at <= packet.time, "C{id}OK stamped before its C");
            }
            Frame::Data { payload, .. } if to_proxy2 => {
                asked.insert(payload.to_vec(), packet.time);
            }
            Frame::Data { payload, .. } => {
                let asked_at = asked
                    .remove(payload)
                    .unwrap_or_else(|| panic!("echo {payload:?} before its request"));
                assert!(
                    asked_at <= packet.time,
                    "echo {:?} stamped {:?} before its request",
                    String::from_utf8_lossy(payload),
                    asked_at.checked_sub(packet.time).unwrap()
                );
                round_trips += 1;
            }
            _ => {}
        }
    }
    assert_eq!(
        round_trips,
        CLIENTS * ROUNDS,
        "one D each way per round trip"
    );
    assert!(asked.is_empty(), "every request answered");
}

/// proxy2's address: where the C frames go.
fn lab_proxy2(file: &PcapNgFile) -> std::net::SocketAddr {
    file.packets
        .iter()
        .find(|p| p.datagram.len() == 2 && p.datagram[0] == b'C')
        .expect("a C frame")
        .dst
}

async fn futures_join(tasks: Vec<tokio::task::JoinHandle<()>>) {
    for task in tasks {
        task.await.expect("the client finished cleanly");
    }
}
