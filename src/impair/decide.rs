//! The emulator's dice: one seeded [`Decider`] per direction says, frame by frame, what
//! happens to it. Nothing here touches a socket or a clock, so a test can run the same
//! decider beside the real link and predict exactly what the receiving socket sees.
//!
//! Every frame consumes the same number of random draws, in the same order, whatever is
//! switched on. So with one seed, the loss decisions do not change when duplication is
//! switched on, and a replay with the same seed and the same frames decides the same.
//!
//! A frame offered while its direction is entirely clear ([`DirectionSettings::is_clear`])
//! consumes no draws at all: nothing can happen to it, and the link socket sends it without
//! asking the decider. So the stream only advances while the link is impaired, and a clear
//! period, however many frames cross it, never shifts the decisions that follow it.

use std::ops::Range;
use std::time::Duration;

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{Rng, SeedableRng};

use super::settings::{DirectionSettings, Percent};
use crate::topology::LinkDirection;

/// Why the emulator dropped a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DropCause {
    /// Random loss (`loss`).
    Loss,
    /// Lost inside a Gilbert-Elliott burst (`burst`).
    Burst,
    /// The blackhole switch is on.
    Blackhole,
    /// The rate limiter's queue (or the delay line's safety limit) was full.
    QueueFull,
    /// Still waiting in the emulator when its endpoint stopped.
    Stopped,
    /// The operating system refused to send it (counted so the totals still add up).
    SendFailed,
    /// Step mode: held, and dropped by hand (a key, or a scenario's `drop` step).
    ByHand,
}

impl DropCause {
    pub fn label(self) -> &'static str {
        match self {
            DropCause::Loss => "loss",
            DropCause::Burst => "burst loss",
            DropCause::Blackhole => "blackhole",
            DropCause::QueueFull => "queue full",
            DropCause::Stopped => "endpoint stopped",
            DropCause::SendFailed => "send failed",
            DropCause::ByHand => "by hand",
        }
    }
}

/// One flipped bit: `datagram[offset] ^= 1 << bit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Corruption {
    /// Byte offset in the datagram (always past the header).
    pub offset: usize,
    /// Bit number, 0 (least significant) to 7.
    pub bit: u8,
}

impl Corruption {
    pub fn apply(self, datagram: &mut [u8]) {
        datagram[self.offset] ^= 1 << self.bit;
    }
}

/// What the dice said for one frame, before any queueing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Decision {
    /// Dropped, and why; when set, nothing else applies.
    pub drop: Option<DropCause>,
    /// Send a second copy right behind it.
    pub duplicate: bool,
    /// Hold it back until the next frame has gone ahead.
    pub reorder: bool,
    /// Flip this bit before sending.
    pub corrupt: Option<Corruption>,
    /// Time on the link (delay with this frame's jitter), before any rate-limit queueing.
    pub delay: Duration,
}

/// Draws per frame; see the module comment.
const DRAWS: usize = 8;

/// The seeded decision maker of one direction.
#[derive(Clone, Debug)]
pub struct Decider {
    rng: ChaCha8Rng,
    /// Gilbert-Elliott state: true while in a burst.
    in_burst: bool,
}

impl Decider {
    /// The decider of `direction` for `seed`. Each direction draws from its own `ChaCha`
    /// stream, so traffic one way never shifts the decisions the other way.
    pub fn new(seed: u64, direction: LinkDirection) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(match direction {
            LinkDirection::ToProxy2 => 0,
            LinkDirection::ToProxy1 => 1,
        });
        Decider {
            rng,
            in_burst: false,
        }
    }

    /// Forgets the Gilbert-Elliott state: the next burst model starts outside a burst.
    pub(crate) fn leave_burst(&mut self) {
        self.in_burst = false;
    }

    /// Decides one frame. `corruptible` is the byte range of the datagram that corruption
    /// may touch (a `D` frame's payload; empty for every other frame).
    pub fn decide(&mut self, settings: &DirectionSettings, corruptible: Range<usize>) -> Decision {
        if settings.is_clear() {
            // No draws while clear (see the module comment); no burst model, so no burst.
            self.in_burst = false;
            return Decision::default();
        }
        let mut draw = [0u64; DRAWS];
        for slot in &mut draw {
            *slot = self.rng.next_u64();
        }
        let [
            switch,
            burst_loss,
            loss,
            dup,
            reorder,
            corrupt,
            corrupt_at,
            jitter,
        ] = draw;

        // Gilbert-Elliott: maybe change state, then lose at the state's rate.
        let lost_in_burst = match settings.burst {
            Some(burst) => {
                let change = if self.in_burst {
                    burst.leave
                } else {
                    burst.enter
                };
                if chance(switch, change) {
                    self.in_burst = !self.in_burst;
                }
                self.in_burst && chance(burst_loss, burst.loss)
            }
            None => {
                self.in_burst = false;
                false
            }
        };
        let drop = if settings.blackhole {
            Some(DropCause::Blackhole)
        } else if lost_in_burst {
            Some(DropCause::Burst)
        } else if chance(loss, settings.loss) {
            Some(DropCause::Loss)
        } else {
            None
        };
        if drop.is_some() {
            return Decision {
                drop,
                ..Decision::default()
            };
        }
        let corrupt = (chance(corrupt, settings.corrupt) && !corruptible.is_empty()).then(|| {
            let span = corruptible.len() as u64;
            // The high half picks the byte without modulo bias; the low bits pick the bit.
            let offset = ((corrupt_at >> 32) * span) >> 32;
            Corruption {
                offset: corruptible.start + offset as usize,
                bit: (corrupt_at & 7) as u8,
            }
        });
        Decision {
            drop: None,
            duplicate: chance(dup, settings.dup),
            reorder: chance(reorder, settings.reorder),
            corrupt,
            delay: jittered(settings.delay, settings.jitter, jitter),
        }
    }
}

/// A uniform number in [0, 1) from 53 random bits (independent of `rand`'s own conversions,
/// so a seed replays the same even if those change).
fn unit(draw: u64) -> f64 {
    (draw >> 11) as f64 / (1u64 << 53) as f64
}

fn chance(draw: u64, percent: Percent) -> bool {
    unit(draw) * 100.0 < percent.get()
}

/// `delay` moved uniformly within ± `jitter`, never below zero.
fn jittered(delay: Duration, jitter: Duration, draw: u64) -> Duration {
    if jitter.is_zero() {
        return delay;
    }
    let offset = (unit(draw) * 2.0 - 1.0) * jitter.as_secs_f64();
    Duration::from_secs_f64((delay.as_secs_f64() + offset).max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::impair::settings::BurstLoss;

    fn pct(value: f64) -> Percent {
        Percent::new(value).unwrap()
    }

    fn run(seed: u64, settings: &DirectionSettings, frames: usize) -> Vec<Decision> {
        let mut decider = Decider::new(seed, LinkDirection::ToProxy2);
        (0..frames)
            .map(|_| decider.decide(settings, 2..10))
            .collect()
    }

    #[test]
    fn the_same_seed_decides_the_same() {
        let settings = DirectionSettings {
            loss: pct(20.0),
            dup: pct(10.0),
            reorder: pct(10.0),
            corrupt: pct(10.0),
            jitter: Duration::from_millis(5),
            delay: Duration::from_millis(10),
            ..DirectionSettings::default()
        };
        assert_eq!(run(7, &settings, 500), run(7, &settings, 500));
        assert_ne!(run(7, &settings, 500), run(8, &settings, 500));
    }

    #[test]
    fn directions_draw_from_different_streams() {
        let settings = DirectionSettings {
            loss: pct(50.0),
            ..DirectionSettings::default()
        };
        let mut up = Decider::new(1, LinkDirection::ToProxy2);
        let mut down = Decider::new(1, LinkDirection::ToProxy1);
        let up: Vec<_> = (0..64).map(|_| up.decide(&settings, 0..0).drop).collect();
        let down: Vec<_> = (0..64).map(|_| down.decide(&settings, 0..0).drop).collect();
        assert_ne!(up, down);
    }

    #[test]
    fn switching_duplication_on_leaves_loss_decisions_alone() {
        let lossy = DirectionSettings {
            loss: pct(30.0),
            ..DirectionSettings::default()
        };
        let lossy_and_dup = DirectionSettings {
            dup: pct(50.0),
            ..lossy.clone()
        };
        let drops = |settings| {
            run(3, settings, 1000)
                .iter()
                .map(|d| d.drop)
                .collect::<Vec<_>>()
        };
        assert_eq!(drops(&lossy), drops(&lossy_and_dup));
    }

    #[test]
    fn a_clear_period_draws_nothing_and_shifts_nothing() {
        let lossy = DirectionSettings {
            loss: pct(30.0),
            dup: pct(10.0),
            ..DirectionSettings::default()
        };
        let clear = DirectionSettings::default();
        let straight = run(5, &lossy, 200);
        // The same impaired frames with clear periods of different lengths in between.
        let mut decider = Decider::new(5, LinkDirection::ToProxy2);
        let mut interleaved = Vec::new();
        for n in 0..200 {
            for _ in 0..n % 7 {
                assert_eq!(decider.decide(&clear, 2..10), Decision::default());
            }
            interleaved.push(decider.decide(&lossy, 2..10));
        }
        assert_eq!(straight, interleaved);
        assert!(straight.iter().any(|d| d.drop.is_some()));
    }

    #[test]
    fn zero_and_hundred_percent_are_exact() {
        let never = run(5, &DirectionSettings::default(), 2000);
        assert!(never.iter().all(|d| *d == Decision::default()));
        let always = DirectionSettings {
            dup: Percent::HUNDRED,
            reorder: Percent::HUNDRED,
            corrupt: Percent::HUNDRED,
            ..DirectionSettings::default()
        };
        for decision in run(5, &always, 2000) {
            assert!(decision.duplicate && decision.reorder);
            let corruption = decision.corrupt.unwrap();
            assert!((2..10).contains(&corruption.offset) && corruption.bit < 8);
        }
        let blackhole = DirectionSettings {
            blackhole: true,
            ..DirectionSettings::default()
        };
        assert!(
            run(5, &blackhole, 100)
                .iter()
                .all(|d| d.drop == Some(DropCause::Blackhole))
        );
    }

    #[test]
    fn corruption_never_touches_frames_without_payload() {
        let settings = DirectionSettings {
            corrupt: Percent::HUNDRED,
            ..DirectionSettings::default()
        };
        let mut decider = Decider::new(9, LinkDirection::ToProxy1);
        for _ in 0..100 {
            assert_eq!(decider.decide(&settings, 2..2).corrupt, None);
        }
    }

    #[test]
    fn jitter_stays_within_bounds_and_varies() {
        let settings = DirectionSettings {
            delay: Duration::from_millis(20),
            jitter: Duration::from_millis(5),
            ..DirectionSettings::default()
        };
        let delays: Vec<Duration> = run(11, &settings, 1000).iter().map(|d| d.delay).collect();
        assert!(
            delays
                .iter()
                .all(|d| (Duration::from_millis(15)..=Duration::from_millis(25)).contains(d))
        );
        let below = delays
            .iter()
            .filter(|d| **d < Duration::from_millis(20))
            .count();
        assert!(
            (400..600).contains(&below),
            "{below} of 1000 below the mean"
        );
    }

    #[test]
    fn bursts_cluster_losses() {
        // Enter a burst 2% of the time, stay for 10 frames on average, lose everything in it.
        let settings = DirectionSettings {
            burst: Some(BurstLoss {
                enter: pct(2.0),
                leave: pct(10.0),
                loss: Percent::HUNDRED,
            }),
            ..DirectionSettings::default()
        };
        let lost: Vec<bool> = run(13, &settings, 20_000)
            .iter()
            .map(|d| d.drop == Some(DropCause::Burst))
            .collect();
        let total = lost.iter().filter(|l| **l).count();
        let runs = lost.windows(2).filter(|w| !w[0] && w[1]).count().max(1);
        let mean_burst = total as f64 / runs as f64;
        // Stationary loss is p/(p+r) = 2/12 ≈ 16.7%; bursts average 1/r = 10 frames.
        assert!((2_600..4_100).contains(&total), "{total} lost");
        assert!((7.0..13.0).contains(&mean_burst), "mean burst {mean_burst}");
    }
}
