//! Past the TUI's rate, per-frame events are counted instead of sent: a real lab on loopback
//! pushes a few MiB through one connection, and the TUI's per-connection counts still equal
//! the lab's exact counters, while its trace holds a sample marked as such.

mod common;

use std::time::{Duration, SystemTime};

use tunlab::event::EventSink;
use tunlab::lab::{Lab, LabConfig};
use tunlab::tui::state::{TraceLine, TuiState, apply_snapshot, events_for_tui, update};
use tunlab::wire::WireMode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampled_events_keep_the_per_connection_counts_exact() {
    let (events, mut rx) = EventSink::channel(64 * 1024);
    // The TUI's stream, at a rate low enough that even a slow run samples: 50 events a
    // second, where the transfer below makes thousands.
    let events = events_for_tui(events).sampled_past(50);
    let start = SystemTime::now();
    let lab = Lab::start(LabConfig::ephemeral(), events.clone())
        .await
        .unwrap();
    let mut state = TuiState::new(start, WireMode::Classic, Some(lab.addrs()));

    // 4 MiB echoed through one connection: about 2,800 D frames each way.
    const TOTAL: usize = 4 << 20;
    let mut stream = tokio::net::TcpStream::connect(lab.addrs().proxy1_tcp)
        .await
        .unwrap();
    let body: Vec<u8> = (0..TOTAL).map(|i| (i % 251) as u8).collect();
    // At most 64 KiB in flight, as a well-behaved classic client keeps: classic mode has no
    // flow control, and a full burst overflowed proxy2's queue toward the server on a loaded
    // machine (frames dropped by design, the echo stalled).
    let back = tokio::time::timeout(
        Duration::from_mins(1),
        common::echo_through(&mut stream, &body, 64 * 1024),
    )
    .await
    .unwrap_or_else(|_| panic!("4 MiB not echoed within 60 s; lab: {:?}", lab.snapshot()));
    assert!(back == body, "the echo is byte-exact");
    drop(stream);

    // Wait until the id is free again (its X both ways), folding as the TUI does.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        events.flush_folded();
        while let Ok(event) = rx.try_recv() {
            update(&mut state, event);
        }
        apply_snapshot(&mut state, &lab.snapshot());
        let free = state.conns[0].state == tunlab::event::ConnState::Free
            && state.conns[0].proxy2_state == tunlab::event::ConnState::Free;
        if free
            && state.counters.frames()
                == state.conns[0].to_proxy2.frames + state.conns[0].to_proxy1.frames
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "counts never matched: conn {:?} {:?}, lab {:?}",
            state.conns[0].to_proxy2,
            state.conns[0].to_proxy1,
            state.counters
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let snapshot = lab.snapshot();
    let conn = &state.conns[0];
    // Every frame of the lab belongs to id 0, the only one used: C, D…, X one way, OK, D…,
    // X the other.
    assert_eq!(conn.to_proxy2.frames, snapshot.proxy1.sent.total());
    assert_eq!(conn.to_proxy1.frames, snapshot.proxy2.sent.total());
    assert_eq!(conn.to_proxy2.bytes, TOTAL as u64);
    assert_eq!(conn.to_proxy1.bytes, TOTAL as u64);
    assert_eq!(snapshot.events_dropped, 0, "nothing dropped, nothing lost");
    // The trace is a sample, and says so.
    assert!(state.counters.events_sampled > 0, "{:?}", state.counters);
    assert!(
        conn.trace
            .iter()
            .any(|l| matches!(l, TraceLine::Sampled { .. })),
        "the trace marks what it did not trace"
    );
    let traced = conn
        .trace
        .iter()
        .filter(|l| matches!(l, TraceLine::Frame { .. }))
        .count() as u64;
    assert!(traced < conn.to_proxy2.frames + conn.to_proxy1.frames);
    lab.shutdown().await;
}
