//! The TUI's real loop ([`ScreenLoop`]) on a real lab (loopback, ephemeral ports), drawn on a
//! `TestBackend`: an idle lab draws nothing, and a key or traffic draws again. The draws are
//! counted, not timed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{Event as Input, KeyCode, KeyEvent};
use tokio::sync::{mpsc, oneshot};
use tunlab::event::EventSink;
use tunlab::lab::{Lab, LabConfig};
use tunlab::tui::app::{EVENT_CAPACITY, FRAMES_PER_SECOND};
use tunlab::tui::screen_loop::ScreenLoop;
use tunlab::tui::state::{TuiState, events_for_tui};
use tunlab::wire::WireMode;

/// Waits (at most 20 s) until the draw count has not moved for `quiet`, and returns it.
async fn settled(draws: &AtomicU64, quiet: Duration) -> u64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut last = draws.load(Ordering::Relaxed);
    let mut since = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = draws.load(Ordering::Relaxed);
        if now != last {
            (last, since) = (now, tokio::time::Instant::now());
        } else if since.elapsed() >= quiet {
            return now;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the screen kept redrawing for 20 s ({now} draws)"
        );
    }
}

/// Waits (at most 20 s) until the draw count passes `than`.
async fn drawn_after(draws: &AtomicU64, than: u64) -> u64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let now = draws.load(Ordering::Relaxed);
        if now > than {
            return now;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing was drawn within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_lab_draws_nothing_and_a_change_draws_again() {
    let (events, rx) = EventSink::channel(EVENT_CAPACITY);
    let events = events_for_tui(events);
    let start = SystemTime::now();
    // No clients yet: an open id is probed every second (an empty `D`, a frame on the wire
    // the screen shows), so only a lab with every id free is idle on the wire too.
    let lab = Lab::start(LabConfig::ephemeral(), events).await.unwrap();
    let state = TuiState::new(start, WireMode::Classic, Some(lab.addrs()));
    let terminal = Terminal::new(TestBackend::new(120, 40)).unwrap();
    let (keys, inputs) = mpsc::unbounded_channel();
    let mut screen = ScreenLoop::new(terminal, lab, state, rx, inputs, None);
    let draws = screen.draw_counter();
    let (quit, quit_rx) = oneshot::channel::<()>();
    let running = tokio::spawn(async move {
        screen
            .run(async {
                let _ = quit_rx.await;
            })
            .await
            .unwrap();
        screen
    });

    // The roles come up; then nothing happens.
    let before = settled(&draws, Duration::from_millis(500)).await;
    assert!(before >= 1, "the first screen is drawn");

    // A second and a half of an idle lab: 45 ticks of the clock, and not one draw.
    let ticks = FRAMES_PER_SECOND * 3 / 2;
    tokio::time::sleep(Duration::from_millis(1000 * ticks / FRAMES_PER_SECOND)).await;
    assert_eq!(
        draws.load(Ordering::Relaxed),
        before,
        "an idle lab redrew its screen"
    );

    // A key that changes the screen (the ladder instead of the trace) draws it again...
    keys.send(Input::Key(KeyEvent::from(KeyCode::Char('l'))))
        .unwrap();
    let after_key = drawn_after(&draws, before).await;
    // ...and so does traffic: `a` adds a client, which opens id 0 (C, OK)...
    keys.send(Input::Key(KeyEvent::from(KeyCode::Char('a'))))
        .unwrap();
    let after_client = drawn_after(&draws, after_key).await;
    // ...and `s` sends from it. A press before the id is open only notes a warning (drawn
    // too), so a few presses, 300 ms apart, make sure one sends.
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        keys.send(Input::Key(KeyEvent::from(KeyCode::Char('s'))))
            .unwrap();
    }
    drawn_after(&draws, after_client).await;

    quit.send(()).unwrap();
    let screen = running.await.unwrap();
    // The send was real: its echo comes back through the tunnel.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !screen
        .lab
        .snapshot()
        .clients
        .iter()
        .any(|(_, c)| c.echoed_bytes > 0)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no echo within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    screen.lab.shutdown().await;
}
