//! The reliable pump tells the event stream what its transport does: retransmissions (each
//! right before its frame), duplicates discarded, frames held out of order, and the
//! connection's counters; on real loopback sockets through the link emulator.

mod common;

use std::time::Duration;

use common::*;
use tokio::net::TcpStream;
use tunlab::event::{EventKind, EventSink, FrameNumbers};
use tunlab::impair::settings::{DirectionSettings, LinkSettings, Percent};
use tunlab::lab::{Lab, LabConfig};
use tunlab::topology::Endpoint;
use tunlab::transport::{RtoConfig, TransportConfig, TransportEvent, TransportStats};
use tunlab::wire::{FrameKind, WireMode};

/// Echoes 256 KiB (stop-and-wait: 64 KiB) through a lab in `mode` at 10% loss, 5%
/// duplication and (but in stop-and-wait) 5% reordering each way, and
/// returns every event it reported.
async fn events_of_a_lossy_echo(mode: WireMode) -> Vec<EventKind> {
    let (events, mut rx) = EventSink::channel(1 << 20);
    // Stop-and-wait's one bit is only correct over a link that keeps order (DESIGN.md), and
    // it sends one frame per round trip: less data, no reordering.
    let stop_and_wait = mode == WireMode::StopAndWait;
    let link = DirectionSettings {
        loss: Percent::new(10.0).unwrap(),
        dup: Percent::new(5.0).unwrap(),
        reorder: Percent::new(if stop_and_wait { 0.0 } else { 5.0 }).unwrap(),
        ..DirectionSettings::default()
    };
    let size = if stop_and_wait { 64 * 1024 } else { 256 * 1024 };
    let mut config = LabConfig {
        mode,
        link: LinkSettings::symmetric(link),
        link_seed: Some(11),
        ..LabConfig::ephemeral()
    };
    let transport = TransportConfig {
        rto: RtoConfig::Fixed(Duration::from_millis(20)),
        max_timeouts: 50,
        ..TransportConfig::for_mode(mode)
    };
    config.proxy1.transport = Some(transport);
    config.proxy2.transport = Some(transport);
    let lab = Lab::start(config, events).await.expect("lab starts");
    let data = random_bytes(3, size);
    let mut stream = TcpStream::connect(lab.addrs().proxy1_tcp).await.unwrap();
    let echoed = echo_through(&mut stream, &data, usize::MAX).await;
    assert!(echoed == data, "{mode:?}: the echo is byte-exact");
    drop(stream);
    // The pumps publish their last counters when the connection ends.
    let mut seen = Vec::new();
    within("the final stats", async {
        let mut ended = 0;
        while ended < 2 {
            let event = rx.recv().await.expect("events flow");
            if let EventKind::TransportStats { ended: true, .. } = &event.kind {
                ended += 1;
            }
            seen.push(event.kind);
        }
    })
    .await;
    lab.shutdown().await;
    while let Ok(event) = rx.try_recv() {
        seen.push(event.kind);
    }
    seen
}

/// Every `Retransmitted` is followed, before any other frame of that endpoint, by the
/// `FrameSent` of that very sequence number.
fn assert_retransmissions_precede_their_frames(events: &[EventKind]) -> usize {
    let mut checked = 0;
    for (i, event) in events.iter().enumerate() {
        let EventKind::Transport {
            at,
            id,
            event: TransportEvent::Retransmitted { seq, .. },
        } = event
        else {
            continue;
        };
        let next_frame = events[i + 1..].iter().find_map(|e| match e {
            EventKind::FrameSent { at: a, frame, .. } if a == at && frame.id == *id => Some(frame),
            _ => None,
        });
        let frame = next_frame.expect("a retransmission is followed by its frame");
        // A batch of retransmissions (Go-Back-N) precedes its frames: the seq is among the
        // frames that follow before the next step's events.
        let later_frames: Vec<_> = events[i + 1..]
            .iter()
            .filter_map(|e| match e {
                EventKind::FrameSent { at: a, frame, .. } if a == at && frame.id == *id => {
                    frame.seq()
                }
                _ => None,
            })
            .take(64)
            .collect();
        assert!(
            later_frames.contains(seq),
            "retransmission of {seq} at {at:?} is sent (next frame {frame:?})"
        );
        checked += 1;
    }
    checked
}

fn final_stats(events: &[EventKind], endpoint: Endpoint) -> TransportStats {
    events
        .iter()
        .rev()
        .find_map(|e| match e {
            EventKind::TransportStats {
                at,
                stats,
                ended: true,
                ..
            } if *at == endpoint => Some(**stats),
            _ => None,
        })
        .expect("the pump publishes its final stats")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selective_repeat_reports_retransmissions_held_frames_and_stats() {
    let events = events_of_a_lossy_echo(WireMode::SelectiveRepeat).await;
    let retransmits = assert_retransmissions_precede_their_frames(&events);
    assert!(retransmits > 0, "10% loss causes retransmissions");
    let count = |f: fn(&TransportEvent) -> bool| {
        events
            .iter()
            .filter(|e| matches!(e, EventKind::Transport { event, .. } if f(event)))
            .count()
    };
    assert!(count(|e| matches!(e, TransportEvent::HeldOutOfOrder { .. })) > 0);
    assert!(count(|e| matches!(e, TransportEvent::DuplicateDiscarded { .. })) > 0);
    assert_eq!(
        count(|e| matches!(e, TransportEvent::Delivered { .. })),
        0,
        "Delivered is left to the stats"
    );
    let p1 = final_stats(&events, Endpoint::Proxy1);
    let p2 = final_stats(&events, Endpoint::Proxy2);
    // The echo: each side delivers what the other sent, 256 KiB.
    assert_eq!(p1.bytes_delivered, 256 * 1024);
    assert_eq!(p2.bytes_delivered, 256 * 1024);
    assert!(p1.bytes_sent >= 256 * 1024 && p2.bytes_sent >= 256 * 1024);
    let stats_retransmits: u64 = [p1, p2]
        .iter()
        .map(|s| s.retransmits_timeout + s.retransmits_fast)
        .sum();
    assert_eq!(
        stats_retransmits, retransmits as u64,
        "the stats count every retransmission the events show"
    );
    assert!(p1.srtt.is_some() && p2.srtt.is_some());
    // Data frames carry their sequence numbers in the summary.
    assert!(events.iter().any(|e| matches!(e,
        EventKind::FrameSent { frame, .. }
            if frame.kind == FrameKind::Ack && matches!(frame.numbers, FrameNumbers::Ack { .. }))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_back_n_and_stop_and_wait_report_their_retransmissions() {
    for mode in [WireMode::GoBackN, WireMode::StopAndWait] {
        let events = events_of_a_lossy_echo(mode).await;
        assert!(
            assert_retransmissions_precede_their_frames(&events) > 0,
            "{mode:?}"
        );
        assert!(
            events.iter().any(|e| matches!(
                e,
                EventKind::Transport {
                    event: TransportEvent::DuplicateDiscarded { .. }
                        | TransportEvent::Discarded { .. },
                    ..
                }
            )),
            "{mode:?}: duplicates or out-of-order frames are discarded"
        );
    }
}

/// Without frame events (a standalone role's log without `-v`) the pump emits no trace
/// events, but still the counters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_frame_events_only_the_stats_are_published() {
    let (events, mut rx) = EventSink::channel(1 << 16);
    let events = events.without_frame_events();
    let mut config = LabConfig {
        mode: WireMode::SelectiveRepeat,
        ..LabConfig::ephemeral()
    };
    let transport = TransportConfig::for_mode(WireMode::SelectiveRepeat);
    config.proxy1.transport = Some(transport);
    config.proxy2.transport = Some(transport);
    let lab = Lab::start(config, events).await.expect("lab starts");
    let mut stream = TcpStream::connect(lab.addrs().proxy1_tcp).await.unwrap();
    let data = random_bytes(5, 10_000);
    let echoed = echo_through(&mut stream, &data, usize::MAX).await;
    assert!(echoed == data);
    drop(stream);
    let mut ended = 0;
    within("the final stats", async {
        while ended < 2 {
            match rx.recv().await.expect("events flow").kind {
                EventKind::Transport { .. } => panic!("no trace events without frame events"),
                EventKind::TransportStats { ended: true, .. } => ended += 1,
                _ => {}
            }
        }
    })
    .await;
    lab.shutdown().await;
}

/// proxy1's keepalive probe (an empty `D` one below the oldest unacked seq) reads as what it
/// is: proxy2 reports it answered, not as a duplicate discarded, and does not count it as
/// one, since nothing was sent twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_probes_are_answered_and_not_counted_as_duplicates() {
    for mode in [WireMode::SelectiveRepeat, WireMode::GoBackN] {
        let (events, mut rx) = EventSink::channel(1 << 16);
        let mut config = LabConfig {
            mode,
            ..LabConfig::ephemeral()
        };
        config.proxy1.probe_after = Duration::from_millis(30);
        let lab = Lab::start(config, events).await.expect("lab starts");
        let mut stream = TcpStream::connect(lab.addrs().proxy1_tcp).await.unwrap();
        let echoed = echo_through(&mut stream, b"hello", usize::MAX).await;
        assert_eq!(echoed, b"hello");
        // Idle: proxy1 probes, proxy2 answers.
        let (mut answered, mut probes_sent) = (0, 0);
        within("three answered probes", async {
            while answered < 3 {
                match rx.recv().await.expect("events flow").kind {
                    EventKind::Transport {
                        at: Endpoint::Proxy2,
                        event: TransportEvent::KeepaliveAnswered { .. },
                        ..
                    } => answered += 1,
                    EventKind::Transport {
                        at: Endpoint::Proxy2,
                        event: TransportEvent::DuplicateDiscarded { .. },
                        ..
                    } => panic!("{mode:?}: a probe read as a duplicate"),
                    EventKind::FrameSent {
                        at: Endpoint::Proxy1,
                        frame,
                        ..
                    } if frame.kind == FrameKind::Data && frame.payload_len == 0 => {
                        probes_sent += 1;
                    }
                    _ => {}
                }
            }
        })
        .await;
        assert!(probes_sent >= answered, "{probes_sent} probes sent");
        drop(stream);
        let stats = within("proxy2's final stats", async {
            loop {
                if let EventKind::TransportStats {
                    at: Endpoint::Proxy2,
                    ended: true,
                    stats,
                    ..
                } = rx.recv().await.expect("events flow").kind
                {
                    return stats;
                }
            }
        })
        .await;
        assert_eq!(stats.duplicates_discarded, 0, "{mode:?}: {stats:?}");
        lab.shutdown().await;
    }
}
