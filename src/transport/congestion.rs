//! Congestion control for the windowed transports (Go-Back-N, Selective Repeat), sans-IO: a
//! congestion window in frames that the sender keeps its frames in the network under, grown
//! by acks and cut by losses, NewReno-like (RFC 5681 slow start and congestion avoidance,
//! RFC 6582/6675 fast recovery once per window of losses).
//!
//! - **Slow start**: from [`INITIAL_WINDOW`] frames (RFC 6928's ten), one more frame per frame
//!   acked (doubling every round trip) until `ssthresh`.
//! - **Congestion avoidance**: one more frame per window of frames acked (additive increase).
//! - **Fast recovery**: a loss found by acks (duplicate acks, SACK evidence, RACK) halves the
//!   window (multiplicative decrease) once, and no further loss cuts it again until everything
//!   sent before the first loss is acknowledged (the recovery point): one loss event, one cut,
//!   however many frames of that window were lost.
//! - **Timeout**: the window falls to one frame and slow start begins again (ssthresh halved).
//!
//! The window never grows past the transport's own window (`--window`): beyond it the sender
//! could not use it anyway, and an application-limited sender would otherwise grow it without
//! bound. [`CongestionControl::None`] pins the window there: the fixed window of the course.

use crate::wire::Seq;

/// The congestion window a sender starts with, in frames (RFC 6928's initial window).
pub const INITIAL_WINDOW: u32 = 10;

/// The least a loss may cut the window to, in frames (RFC 5681's 2·SMSS).
pub const MIN_SSTHRESH: u32 = 2;

/// Which congestion control a windowed transport runs (`--cc`).
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum CongestionControl {
    /// Slow start, additive increase, halving on loss, fast recovery (the default).
    #[default]
    #[value(name = "newreno")]
    #[serde(rename = "newreno")]
    NewReno,
    /// A fixed window: as many frames in flight as `--window` allows, whatever the losses.
    None,
}

impl CongestionControl {
    /// The name on the command line and in scenarios.
    pub fn name(self) -> &'static str {
        match self {
            CongestionControl::NewReno => "newreno",
            CongestionControl::None => "none",
        }
    }
}

impl std::fmt::Display for CongestionControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Where the congestion controller stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CongestionPhase {
    /// Below ssthresh: the window doubles every round trip.
    SlowStart,
    /// At or above ssthresh: one frame more per round trip.
    Avoidance,
    /// Repairing a loss: the window was halved and stays put until the recovery point is
    /// acknowledged.
    Recovery,
    /// `--cc none`: the window is fixed.
    Fixed,
}

impl CongestionPhase {
    /// A short label for the TUI and the trace.
    pub fn label(self) -> &'static str {
        match self {
            CongestionPhase::SlowStart => "slow start",
            CongestionPhase::Avoidance => "avoidance",
            CongestionPhase::Recovery => "recovery",
            CongestionPhase::Fixed => "fixed",
        }
    }
}

/// Why the congestion window was cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CongestionCut {
    /// A loss found by acks: the window halved (fast recovery).
    Loss,
    /// The retransmission timer expired: back to one frame (slow start).
    Timeout,
}

impl CongestionCut {
    pub fn label(self) -> &'static str {
        match self {
            CongestionCut::Loss => "loss",
            CongestionCut::Timeout => "timeout",
        }
    }
}

/// The congestion window of one sender.
#[derive(Clone, Debug)]
pub struct Congestion {
    algorithm: CongestionControl,
    /// Frames the sender may keep in the network.
    cwnd: u32,
    /// The slow-start threshold; `u32::MAX` until the first loss.
    ssthresh: u32,
    /// Frames acked in congestion avoidance since the window last grew.
    acked_since_growth: u32,
    /// In fast recovery until the cumulative ack passes this sequence number (the last one
    /// sent when the loss was found).
    recovery_point: Option<Seq>,
    /// The ceiling: the transport's own window.
    max: u32,
}

impl Congestion {
    pub fn new(algorithm: CongestionControl, max: u32) -> Self {
        let max = max.max(1);
        Congestion {
            algorithm,
            cwnd: match algorithm {
                CongestionControl::NewReno => INITIAL_WINDOW.min(max),
                CongestionControl::None => max,
            },
            ssthresh: u32::MAX,
            acked_since_growth: 0,
            recovery_point: None,
            max,
        }
    }

    /// Frames the sender may keep in the network now.
    pub fn window(&self) -> u32 {
        self.cwnd
    }

    /// The slow-start threshold, once a loss has set it.
    pub fn ssthresh(&self) -> Option<u32> {
        (self.ssthresh != u32::MAX).then_some(self.ssthresh)
    }

    pub fn phase(&self) -> CongestionPhase {
        match self.algorithm {
            CongestionControl::None => CongestionPhase::Fixed,
            CongestionControl::NewReno if self.recovery_point.is_some() => {
                CongestionPhase::Recovery
            }
            CongestionControl::NewReno if self.cwnd < self.ssthresh => CongestionPhase::SlowStart,
            CongestionControl::NewReno => CongestionPhase::Avoidance,
        }
    }

    pub fn in_recovery(&self) -> bool {
        self.recovery_point.is_some()
    }

    /// `newly_acked` frames were acknowledged (cumulatively or selectively) and the oldest
    /// unacknowledged frame is now `snd_una`. Ends a recovery whose point is acknowledged,
    /// and otherwise grows the window.
    pub fn on_ack(&mut self, newly_acked: u32, snd_una: Seq) {
        if self.algorithm == CongestionControl::None || newly_acked == 0 {
            return;
        }
        if let Some(point) = self.recovery_point {
            if point.before(snd_una) {
                // Everything sent before the loss is acknowledged: recovery is over, and the
                // window goes on from the halved value.
                self.recovery_point = None;
                self.acked_since_growth = 0;
            }
            return;
        }
        if self.cwnd < self.ssthresh {
            // Slow start, up to ssthresh; what is left of this ack counts in avoidance.
            let room = self.ssthresh - self.cwnd;
            let grow = newly_acked.min(room);
            self.cwnd = self.cwnd.saturating_add(grow).min(self.max);
            let rest = newly_acked - grow;
            if rest > 0 {
                self.avoid(rest);
            }
        } else {
            self.avoid(newly_acked);
        }
    }

    /// Congestion avoidance: one frame more per window of frames acked.
    fn avoid(&mut self, acked: u32) {
        if self.cwnd >= self.max {
            self.acked_since_growth = 0;
            return;
        }
        self.acked_since_growth = self.acked_since_growth.saturating_add(acked);
        while self.acked_since_growth >= self.cwnd && self.cwnd < self.max {
            self.acked_since_growth -= self.cwnd;
            self.cwnd += 1;
        }
    }

    /// Acks showed a loss; `flight` frames were outstanding and `highest_sent` was the last
    /// sequence number sent. Halves the window unless this is the same loss event. Returns
    /// whether the window was cut.
    pub fn on_loss(&mut self, flight: u32, highest_sent: Seq) -> bool {
        if self.algorithm == CongestionControl::None || self.recovery_point.is_some() {
            return false;
        }
        self.ssthresh = (self.cwnd.min(flight.max(1)) / 2).max(MIN_SSTHRESH);
        self.cwnd = self.ssthresh.min(self.max);
        self.acked_since_growth = 0;
        self.recovery_point = Some(highest_sent);
        true
    }

    /// The retransmission timer expired with `flight` frames outstanding: the window falls to
    /// one frame and slow start begins again. Returns whether the window was cut.
    pub fn on_timeout(&mut self, flight: u32) -> bool {
        if self.algorithm == CongestionControl::None {
            return false;
        }
        // A timeout during recovery keeps the ssthresh recovery already set (it was measured
        // before the losses piled up); otherwise halve what was in flight.
        if self.recovery_point.is_none() {
            self.ssthresh = (self.cwnd.min(flight.max(1)) / 2).max(MIN_SSTHRESH);
        }
        self.cwnd = 1;
        self.acked_since_growth = 0;
        self.recovery_point = None;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reno(max: u32) -> Congestion {
        Congestion::new(CongestionControl::NewReno, max)
    }

    #[test]
    fn slow_start_doubles_each_round_trip_up_to_the_transport_window() {
        let mut cc = reno(64);
        assert_eq!(cc.window(), INITIAL_WINDOW);
        assert_eq!(cc.phase(), CongestionPhase::SlowStart);
        cc.on_ack(10, Seq(10));
        assert_eq!(cc.window(), 20);
        cc.on_ack(20, Seq(30));
        assert_eq!(cc.window(), 40);
        cc.on_ack(40, Seq(70));
        assert_eq!(cc.window(), 64, "never past the transport's own window");
    }

    #[test]
    fn a_loss_halves_the_window_once_per_recovery() {
        let mut cc = reno(64);
        cc.on_ack(30, Seq(30));
        assert_eq!(cc.window(), 40);
        assert!(cc.on_loss(40, Seq(69)));
        assert_eq!((cc.window(), cc.ssthresh()), (20, Some(20)));
        assert_eq!(cc.phase(), CongestionPhase::Recovery);
        // More losses of the same window do not cut again, acks below the point do not grow.
        assert!(!cc.on_loss(40, Seq(75)));
        cc.on_ack(5, Seq(50));
        assert_eq!(cc.window(), 20);
        // The recovery point acknowledged: avoidance, one frame per window acked.
        cc.on_ack(5, Seq(70));
        assert_eq!(cc.phase(), CongestionPhase::Avoidance);
        assert_eq!(cc.window(), 20);
        cc.on_ack(19, Seq(89));
        assert_eq!(cc.window(), 20);
        cc.on_ack(1, Seq(90));
        assert_eq!(cc.window(), 21);
        // A new loss after the recovery ended cuts again.
        assert!(cc.on_loss(21, Seq(120)));
        assert_eq!(cc.window(), 10);
    }

    #[test]
    fn a_timeout_restarts_slow_start_from_one_frame() {
        let mut cc = reno(64);
        cc.on_ack(30, Seq(30));
        assert!(cc.on_timeout(40));
        assert_eq!((cc.window(), cc.ssthresh()), (1, Some(20)));
        cc.on_ack(1, Seq(31));
        assert_eq!(cc.window(), 2);
        cc.on_ack(30, Seq(61));
        assert_eq!(cc.window(), 20, "slow start stops at ssthresh");
        assert_eq!(cc.phase(), CongestionPhase::Avoidance);
    }

    #[test]
    fn the_window_never_falls_below_two_on_loss() {
        let mut cc = reno(64);
        cc.on_timeout(1);
        assert_eq!(cc.window(), 1);
        assert!(cc.on_loss(1, Seq(3)));
        assert_eq!(cc.window(), MIN_SSTHRESH);
    }

    #[test]
    fn none_is_a_fixed_window() {
        let mut cc = Congestion::new(CongestionControl::None, 64);
        assert_eq!(cc.window(), 64);
        assert!(!cc.on_loss(64, Seq(63)));
        assert!(!cc.on_timeout(64));
        cc.on_ack(10, Seq(10));
        assert_eq!(cc.window(), 64);
        assert_eq!(cc.phase(), CongestionPhase::Fixed);
    }

    #[test]
    fn a_small_transport_window_caps_the_initial_window() {
        assert_eq!(reno(4).window(), 4);
    }
}
