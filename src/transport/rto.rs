//! The retransmission timer: RFC 6298, or pinned to a fixed value as the course does.
//!
//! Adaptive: the first sample R sets SRTT = R and RTTVAR = R/2; later ones
//! RTTVAR = 3/4·RTTVAR + 1/4·|SRTT − R| and SRTT = 7/8·SRTT + 1/8·R; RTO = SRTT +
//! max(G, 4·RTTVAR), clamped to `[min, max]`. Each expiry doubles the RTO (exponential
//! backoff) until a new sample arrives. Karn's rule (no sample from a frame that was ever
//! retransmitted, since its ack is ambiguous) is the callers' duty: they only call
//! [`RtoEstimator::on_sample`] with unambiguous samples.
//!
//! Fixed: the RTO never moves (the course's 10 s timer); SRTT and RTTVAR are still
//! measured, for the statistics.
//!
//! Every sample is also kept, in order, until the caller drains it with
//! [`RtoEstimator::take_sample`]: the tunnel's pump records each one in the endpoint's exact
//! RTT histogram (`tunlab_rtt_seconds` in `/metrics`), so the estimator does no I/O itself.

use std::collections::VecDeque;
use std::time::Duration;

/// Clock granularity G of RFC 6298: a floor under the variance term.
const GRANULARITY: Duration = Duration::from_millis(1);

/// How the retransmission timeout is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum RtoConfig {
    /// RFC 6298, with `initial` before the first sample and the result kept in `[min, max]`.
    Adaptive {
        initial: Duration,
        min: Duration,
        max: Duration,
    },
    /// Always this timeout, no backoff (`--rto` in the course).
    Fixed(Duration),
}

impl Default for RtoConfig {
    /// RFC 6298's 1 s initial value. The floor is 200 ms (Linux's, not the RFC's 1 s: a lab
    /// link on loopback has sub-millisecond round trips) and the ceiling 10 s (the RFC allows
    /// 60 s; a lab wants a dead link noticed within a minute).
    fn default() -> Self {
        RtoConfig::Adaptive {
            initial: Duration::from_secs(1),
            min: Duration::from_millis(200),
            max: Duration::from_secs(10),
        }
    }
}

/// Samples kept for the caller at most. A sample needs a frame acked that the caller had
/// taken with `poll_transmit`, so between two drains there are at most a window's worth: the
/// bound is never reached by a caller that drains after each step, and is a bound all the same.
const PENDING_SAMPLES: usize = 4096;

/// Smoothed round-trip time, its variance, and the timeout they give.
#[derive(Clone, Debug)]
pub struct RtoEstimator {
    config: RtoConfig,
    srtt: Option<Duration>,
    rttvar: Duration,
    /// Expiries since the last sample: the RTO is doubled this many times.
    backoff: u32,
    /// Samples not yet taken by the caller, oldest first.
    pending: VecDeque<Duration>,
    /// Samples measured so far (taken or not, kept or not).
    samples: u64,
    /// Samples lost because the caller did not drain them (zero for the tunnel's pump).
    samples_dropped: u64,
}

impl RtoEstimator {
    pub fn new(config: RtoConfig) -> Self {
        RtoEstimator {
            config,
            srtt: None,
            rttvar: Duration::ZERO,
            backoff: 0,
            pending: VecDeque::new(),
            samples: 0,
            samples_dropped: 0,
        }
    }

    /// Feeds one round-trip measurement (from a frame sent only once) and ends any backoff.
    pub fn on_sample(&mut self, rtt: Duration) {
        match self.srtt {
            None => {
                self.srtt = Some(rtt);
                self.rttvar = rtt / 2;
            }
            Some(srtt) => {
                let delta = srtt.abs_diff(rtt);
                self.rttvar = self.rttvar * 3 / 4 + delta / 4;
                self.srtt = Some(srtt * 7 / 8 + rtt / 8);
            }
        }
        self.backoff = 0;
        self.samples += 1;
        if self.pending.len() < PENDING_SAMPLES {
            self.pending.push_back(rtt);
        } else {
            self.samples_dropped += 1;
        }
    }

    /// The oldest round-trip sample not yet taken (each sample is handed out once).
    pub fn take_sample(&mut self) -> Option<Duration> {
        self.pending.pop_front()
    }

    /// Samples measured so far.
    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// Samples dropped because nobody took them in time.
    pub fn samples_dropped(&self) -> u64 {
        self.samples_dropped
    }

    /// The timer expired: back off (adaptive only).
    pub fn on_timeout(&mut self) {
        if matches!(self.config, RtoConfig::Adaptive { .. }) {
            // 2^16 times any RTO is past any sane ceiling; stop counting there.
            self.backoff = (self.backoff + 1).min(16);
        }
    }

    /// The current retransmission timeout.
    pub fn rto(&self) -> Duration {
        match self.config {
            RtoConfig::Fixed(rto) => rto,
            RtoConfig::Adaptive { initial, min, max } => {
                let base = match self.srtt {
                    Some(srtt) => srtt + (self.rttvar * 4).max(GRANULARITY),
                    None => initial,
                };
                // RFC 6298: the floor first, then each expiry doubles the timer. Doubling
                // the estimate under the floor instead kept a fast link's timer at the
                // floor for seven expiries: twelve in a row, the give-up, came in seconds.
                base.clamp(min, max)
                    .saturating_mul(1 << self.backoff)
                    .min(max)
            }
        }
    }

    /// The smoothed round-trip time, once there is a sample.
    pub fn srtt(&self) -> Option<Duration> {
        self.srtt
    }

    /// The round-trip time variation, once there is a sample.
    pub fn rttvar(&self) -> Option<Duration> {
        self.srtt.map(|_| self.rttvar)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn adaptive() -> RtoEstimator {
        RtoEstimator::new(RtoConfig::Adaptive {
            initial: ms(1000),
            min: ms(200),
            max: ms(10_000),
        })
    }

    #[test]
    fn follows_rfc_6298() {
        let mut rto = adaptive();
        assert_eq!(rto.rto(), ms(1000));
        assert_eq!(rto.srtt(), None);
        rto.on_sample(ms(100));
        // SRTT 100, RTTVAR 50, RTO 100 + 4·50 = 300.
        assert_eq!((rto.srtt(), rto.rttvar()), (Some(ms(100)), Some(ms(50))));
        assert_eq!(rto.rto(), ms(300));
        rto.on_sample(ms(200));
        // RTTVAR = 37.5 + 25 = 62.5; SRTT = 87.5 + 25 = 112.5; RTO = 112.5 + 250 = 362.5.
        assert_eq!(rto.rttvar(), Some(Duration::from_micros(62_500)));
        assert_eq!(rto.srtt(), Some(Duration::from_micros(112_500)));
        assert_eq!(rto.rto(), Duration::from_micros(362_500));
    }

    #[test]
    fn backs_off_until_a_sample_and_stays_within_bounds() {
        let mut rto = adaptive();
        rto.on_sample(ms(100));
        rto.on_timeout();
        assert_eq!(rto.rto(), ms(600));
        rto.on_timeout();
        assert_eq!(rto.rto(), ms(1200));
        for _ in 0..40 {
            rto.on_timeout();
        }
        assert_eq!(rto.rto(), ms(10_000));
        // A sample ends the backoff.
        rto.on_sample(ms(100));
        assert!(rto.rto() < ms(600));
        // SRTT 1 ms, RTTVAR 0.5 ms: RTO 3 ms, far below the floor.
        let mut fast = adaptive();
        fast.on_sample(ms(1));
        assert_eq!(fast.rto(), ms(200));
        // Backed off from the floor, not from the 3 ms under it.
        fast.on_timeout();
        assert_eq!(fast.rto(), ms(400));
        fast.on_timeout();
        assert_eq!(fast.rto(), ms(800));
    }

    #[test]
    fn every_sample_is_handed_out_once_in_order() {
        let mut rto = adaptive();
        assert_eq!(rto.take_sample(), None);
        rto.on_sample(ms(3));
        rto.on_timeout(); // not a sample
        rto.on_sample(ms(7));
        assert_eq!(rto.samples(), 2);
        assert_eq!(rto.take_sample(), Some(ms(3)));
        assert_eq!(rto.take_sample(), Some(ms(7)));
        assert_eq!(rto.take_sample(), None);
        for _ in 0..PENDING_SAMPLES + 2 {
            rto.on_sample(ms(1));
        }
        assert_eq!(rto.samples_dropped(), 2);
        assert_eq!(rto.samples(), PENDING_SAMPLES as u64 + 4);
    }

    #[test]
    fn a_fixed_timer_never_moves() {
        let mut rto = RtoEstimator::new(RtoConfig::Fixed(ms(10_000)));
        rto.on_timeout();
        rto.on_timeout();
        assert_eq!(rto.rto(), ms(10_000));
        rto.on_sample(ms(5));
        assert_eq!(rto.rto(), ms(10_000));
        assert_eq!(rto.srtt(), Some(ms(5)));
    }
}
