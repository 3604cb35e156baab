//! The link emulator: what netem or Clumsy would do to the UDP link, built into it, so a
//! class can watch frames vanish, arrive late, twice, out of order or damaged.
//!
//! Per direction ([`LinkDirection::ToProxy2`], [`LinkDirection::ToProxy1`]) it can lose frames
//! (at random, or in Gilbert-Elliott bursts), delay them with jitter, duplicate, reorder and
//! corrupt them, limit the rate through a bounded queue, or drop everything (blackhole).
//!
//! The pieces:
//! - [`settings`]: what to do ([`LinkSettings`], serde for scenario files, text forms for flags);
//! - [`decide`]: a seeded [`Decider`] per direction: same seed + same frames = same decisions;
//! - [`pipeline`]: the delay line that turns decisions into send times, never sleeping in the
//!   path of other frames (the link socket sends what is due; a timer task wakes it);
//! - [`counters`]: exact per-direction counters ([`DirectionReport`]).
//!
//! Its command-line flags are `crate::cli::LinkArgs`.
//!
//! [`crate::link::LinkSocket`] applies it: each endpoint to what it sends, and a standalone
//! proxy also to what it receives (the other end may be a course script).

pub mod counters;
pub mod decide;
pub mod hold;
pub mod pipeline;
pub mod settings;
pub mod verdict;

use std::net::SocketAddr;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::time::Instant;

pub use counters::{DirectionCounters, DirectionReport, DropCounts, TypeCounts};
pub use decide::{Corruption, Decider, Decision, DropCause};
pub use pipeline::Accepted;
pub use settings::{BitRate, BurstLoss, DirectionSettings, LinkSettings, Percent};
pub use verdict::LinkVerdict;

use crate::topology::LinkDirection;
use pipeline::Pipeline;

/// A seed for when none was given (reports show it, so the run can be replayed). It stays
/// below 2^63, so that it pastes back into a scenario file as a plain TOML integer.
pub fn random_seed() -> u64 {
    rand::random::<u64>() >> 1
}

/// The emulator of both directions of one link: settings, dice and counters. Shared by the
/// endpoints (and kept across role restarts), changed live by the TUI and scenario steps.
#[derive(Debug)]
pub struct LinkEmulator {
    seed: u64,
    to_proxy2: DirectionEmulator,
    to_proxy1: DirectionEmulator,
    /// Step mode: frames held by hand, before any other impairment.
    hold: hold::StepHold,
}

impl LinkEmulator {
    pub fn new(settings: LinkSettings, seed: u64) -> Arc<LinkEmulator> {
        Arc::new(LinkEmulator {
            seed,
            to_proxy2: DirectionEmulator::new(LinkDirection::ToProxy2, settings.to_proxy2, seed),
            to_proxy1: DirectionEmulator::new(LinkDirection::ToProxy1, settings.to_proxy1, seed),
            hold: hold::StepHold::default(),
        })
    }

    /// Step mode: what the link holds, and how to let it go.
    pub fn hold(&self) -> &hold::StepHold {
        &self.hold
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    pub fn direction(&self, direction: LinkDirection) -> &DirectionEmulator {
        match direction {
            LinkDirection::ToProxy2 => &self.to_proxy2,
            LinkDirection::ToProxy1 => &self.to_proxy1,
        }
    }

    /// The settings in force now.
    pub fn settings(&self) -> LinkSettings {
        LinkSettings {
            to_proxy2: self.to_proxy2.settings(),
            to_proxy1: self.to_proxy1.settings(),
        }
    }

    /// New settings for both directions, from the next frame on. Frames already waiting
    /// keep the times they were given.
    pub fn set(&self, settings: LinkSettings) {
        self.to_proxy2.set(settings.to_proxy2);
        self.to_proxy1.set(settings.to_proxy1);
    }

    /// New settings for one direction, from its next frame on.
    pub fn set_direction(&self, direction: LinkDirection, settings: DirectionSettings) {
        self.direction(direction).set(settings);
    }

    /// Settings and counters of both directions.
    pub fn report(&self) -> LinkReport {
        LinkReport {
            seed: self.seed,
            settings: self.settings(),
            to_proxy2: self.to_proxy2.counters.snapshot(),
            to_proxy1: self.to_proxy1.counters.snapshot(),
        }
    }
}

/// The emulator's state for the JSON report and the TUI header.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct LinkReport {
    /// Replays the same decisions with `--seed`.
    pub seed: u64,
    pub settings: LinkSettings,
    pub to_proxy2: DirectionReport,
    pub to_proxy1: DirectionReport,
}

impl LinkReport {
    pub fn direction(&self, direction: LinkDirection) -> &DirectionReport {
        match direction {
            LinkDirection::ToProxy2 => &self.to_proxy2,
            LinkDirection::ToProxy1 => &self.to_proxy1,
        }
    }

    /// One line per direction, for summaries on a terminal:
    /// `link p1→p2 [loss 10%]: sent 20, delivered 18, dropped 2 (loss 2), …`.
    pub fn lines(&self) -> Vec<String> {
        [LinkDirection::ToProxy2, LinkDirection::ToProxy1]
            .into_iter()
            .map(|direction| {
                let counts = self.direction(direction);
                let causes = counts.dropped_by.causes();
                format!(
                    "link {} [{}]: sent {}, delivered {}, dropped {}{causes}, duplicated {}, reordered {}, corrupted {}, delayed {}",
                    direction.arrow(),
                    self.settings.direction(direction).summary(),
                    counts.sent,
                    counts.delivered,
                    counts.dropped,
                    counts.duplicated,
                    counts.reordered,
                    counts.corrupted,
                    counts.delayed,
                )
            })
            .collect()
    }
}

/// One direction: its settings, its dice and its counters.
#[derive(Debug)]
pub struct DirectionEmulator {
    direction: LinkDirection,
    state: Mutex<DirectionState>,
    /// Whether the settings in force are clear: read on every frame without the lock, so a
    /// clear link costs the sender next to nothing (see [`DirectionEmulator::is_clear`]).
    clear: AtomicBool,
    counters: DirectionCounters,
}

#[derive(Debug)]
struct DirectionState {
    settings: DirectionSettings,
    decider: Decider,
}

impl DirectionEmulator {
    fn new(direction: LinkDirection, settings: DirectionSettings, seed: u64) -> Self {
        DirectionEmulator {
            direction,
            clear: AtomicBool::new(settings.is_clear()),
            state: Mutex::new(DirectionState {
                settings,
                decider: Decider::new(seed, direction),
            }),
            counters: DirectionCounters::default(),
        }
    }

    pub fn direction(&self) -> LinkDirection {
        self.direction
    }
    pub fn settings(&self) -> DirectionSettings {
        self.state.lock().unwrap().settings.clone()
    }
    pub fn set(&self, settings: DirectionSettings) {
        let mut state = self.state.lock().unwrap();
        let clear = settings.is_clear();
        if clear {
            // A clear period ends any burst, whether or not frames crossed it (they may all
            // have taken the fast path, which never asks the decider).
            state.decider.leave_burst();
        }
        state.settings = settings;
        self.clear.store(clear, Ordering::Release);
    }

    /// Whether this direction's settings leave frames alone, without taking the lock. A
    /// link socket whose delay line is empty then sends the frame straight away and only
    /// counts it ([`DirectionEmulator::passed_clear`]): no draws, no delay line, no timer.
    /// The decider would make no draws for it either, so a seed means the same either way.
    pub fn is_clear(&self) -> bool {
        self.clear.load(Ordering::Acquire)
    }

    /// Counts a frame that went through a clear direction without being offered to the
    /// delay line. The caller counts it as delivered (or as a failed send) once it is sent.
    pub(crate) fn passed_clear(&self) {
        self.counters.offered.add();
    }
    pub fn counters(&self) -> &DirectionCounters {
        &self.counters
    }

    /// Decides one frame and hands it to `pipeline`. On a drop the datagram comes back with
    /// the cause, for the capture's note.
    pub(crate) fn offer(
        &self,
        pipeline: &mut Pipeline,
        now: Instant,
        datagram: Vec<u8>,
        corruptible: Range<usize>,
        addr: SocketAddr,
    ) -> Result<Accepted, (DropCause, Vec<u8>)> {
        let mut state = self.state.lock().unwrap();
        let DirectionState { settings, decider } = &mut *state;
        self.counters.offered.add();
        let decision = decider.decide(settings, corruptible);
        let result = match decision.drop {
            Some(cause) => Err((cause, datagram)),
            None => pipeline.offer(now, &decision, settings, datagram, addr, &self.counters),
        };
        if let Err((cause, _)) = &result {
            self.counters.drop(*cause);
        }
        result
    }
}
