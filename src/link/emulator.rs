//! Emulator scheduling: the delay lines of what an endpoint sends (with the timer task that
//! releases them) and of what a standalone endpoint receives.

use std::net::SocketAddr;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::SystemTime;

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::socket::Inner;
use crate::impair::pipeline::{Pending, Pipeline};
use crate::impair::{DirectionEmulator, LinkEmulator, LinkVerdict};
use crate::topology::LinkDirection;
use crate::wire::WireMode;

/// Which traffic the link emulator acts on at this endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmulatorScope {
    /// Only what this endpoint sends (its own direction). In the lab both proxies do this,
    /// so each direction is emulated exactly once.
    Sent,
    /// What it sends and what it receives (the other direction, as it arrives): a standalone
    /// proxy whose peer may be a course script with no emulator, like the course's
    /// `send_loss/recv_loss` helpers.
    SentAndReceived,
}

/// The emulator of what one endpoint sends: its delay line, and the order of sending.
#[derive(Debug)]
pub(super) struct Egress {
    pub(super) emulator: Arc<LinkEmulator>,
    pub(super) direction: LinkDirection,
    pub(super) pipeline: Mutex<Pipeline>,
    /// Held by whoever sends due datagrams (a `send` call or the timer task), so they leave
    /// in the delay line's order even when several connections send at once.
    pub(super) turn: tokio::sync::Mutex<()>,
    /// Tells the timer task that the delay line changed.
    pub(super) wake: Notify,
    pub(super) timer_started: AtomicBool,
    /// Cancelled when the socket is dropped.
    pub(super) stop: CancellationToken,
}

impl Egress {
    pub(super) fn emulated(&self) -> &DirectionEmulator {
        self.emulator.direction(self.direction)
    }

    /// Sends everything that is due now.
    pub(super) async fn flush(&self, inner: &Inner) {
        let _turn = self.turn.lock().await;
        loop {
            let due = self
                .pipeline
                .lock()
                .unwrap()
                .pop_due(Instant::now(), self.emulated().counters());
            let Some(Pending {
                datagram,
                addr,
                verdict,
            }) = due
            else {
                break;
            };
            // A failure is counted and reported inside; the next datagram still goes.
            let handed = SystemTime::now();
            let note = verdict.capture_note(false);
            let _ = inner
                .transmit(
                    &datagram,
                    addr,
                    Some((self.emulated(), &verdict)),
                    handed,
                    note,
                )
                .await;
        }
    }

    /// Sends `datagram` straight away if this direction is clear and nothing waits in its
    /// delay line; false (nothing done) otherwise, and the frame goes through the emulator.
    ///
    /// The turn is taken first, so no flush is between taking a datagram out of the delay
    /// line and sending it (the delay line would look empty, and this frame would overtake
    /// it). If a flush holds the turn, the frame takes the emulator's path, which for clear
    /// settings makes no draws either: it queues behind what is held and goes at once.
    pub(super) async fn send_if_clear(
        &self,
        inner: &Inner,
        datagram: &[u8],
        to: SocketAddr,
    ) -> bool {
        let emulated = self.emulated();
        if !emulated.is_clear() {
            return false;
        }
        let Ok(_turn) = self.turn.try_lock() else {
            return false;
        };
        if !self.pipeline.lock().unwrap().is_empty() {
            return false;
        }
        emulated.passed_clear();
        // Counted as delivered, or as a failed send (reported on the event stream), inside.
        let handed = SystemTime::now();
        let _ = inner
            .transmit(
                datagram,
                to,
                Some((emulated, &LinkVerdict::default())),
                handed,
                None,
            )
            .await;
        true
    }

    /// Makes sure the timer task will wake when something in the delay line is due.
    pub(super) fn arm(self: &Arc<Self>, inner: &Arc<Inner>) {
        if self.pipeline.lock().unwrap().next_wake().is_none() {
            return;
        }
        self.start_timer(inner);
        self.wake.notify_one();
    }

    /// Starts the timer task if it is not running: it sends what the delay line makes due
    /// and what step mode releases.
    pub(super) fn start_timer(self: &Arc<Self>, inner: &Arc<Inner>) {
        if !self.timer_started.swap(true, Ordering::AcqRel) {
            inner.tasks.spawn(
                "link timer",
                egress_timer(self.clone(), Arc::downgrade(inner)),
            );
        }
    }

    /// Sends what step mode has released for this direction, in order: at once, with none
    /// of the other impairments (the person chose to let it go).
    pub(super) async fn send_released(&self, inner: &Inner) {
        let _turn = self.turn.lock().await;
        while let Some(released) = self.emulator.hold().take_released(self.direction) {
            let emulated = self.emulated();
            emulated.counters().queued.sub();
            let verdict = LinkVerdict {
                held_for: released.since.elapsed(),
                copy: released.copy,
                ..LinkVerdict::default()
            };
            let handed = SystemTime::now();
            let note = verdict
                .capture_note(false)
                .map(|n| format!("{n} (step mode)"));
            let _ = inner
                .transmit(
                    &released.datagram,
                    released.addr,
                    Some((emulated, &verdict)),
                    handed,
                    note,
                )
                .await;
        }
    }
}

/// Sends delayed datagrams when they are due. It holds the socket only while sending, so a
/// stopped role's port is free again at once.
pub(super) async fn egress_timer(egress: Arc<Egress>, inner: Weak<Inner>) {
    loop {
        let next = egress.pipeline.lock().unwrap().next_wake();
        tokio::select! {
            () = egress.stop.cancelled() => return,
            () = egress.wake.notified() => {}
            () = egress.emulator.hold().released(egress.direction) => {
                let Some(inner) = inner.upgrade() else { return };
                egress.send_released(&inner).await;
            }
            () = sleep_until_or_forever(next) => {
                let Some(inner) = inner.upgrade() else { return };
                egress.flush(&inner).await;
            }
        }
    }
}

/// The emulator of what a standalone endpoint receives.
#[derive(Debug)]
pub(super) struct Ingress {
    pub(super) emulator: Arc<LinkEmulator>,
    pub(super) direction: LinkDirection,
    pub(super) pipeline: Mutex<Pipeline>,
}

impl Ingress {
    pub(super) fn emulated(&self) -> &DirectionEmulator {
        self.emulator.direction(self.direction)
    }
}

pub(super) async fn sleep_until_or_forever(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The bytes of a datagram that corruption may flip: a `D` frame's payload, never its
/// header (so a corrupted frame still reaches its connection), and nothing of other frames.
pub(super) fn corruptible_range(mode: WireMode, datagram: &[u8]) -> Range<usize> {
    mode.payload_range(datagram).unwrap_or(0..0)
}
