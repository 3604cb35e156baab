//! Congestion control for the windowed transports (Go-Back-N, Selective Repeat), sans-IO: a
//! congestion window in frames that the sender keeps its frames in the network under, grown
//! by acks and cut by losses, NewReno-like (RFC 5681 slow start and congestion avoidance,
//! RFC 6582/6675 fast recovery once per window of losses).
//!
//! - **Slow start**: from [`INITIAL_WINDOW`] frames (RFC 6928's ten), one more frame per frame
//!   acked (doubling every round trip) until `ssthresh`, or until a round's smallest round
//!   trip is longer than the last round's by an eighth of it, 4 to 16 ms (`HyStart++`'s delay
//!   increase, RFC 9406, without its conservative phase): a queue is building, and doubling
//!   on would overflow it a round trip before any loss says so. Slow start ends there with
//!   no cut (`ssthresh` = the window). On loopback the round trip never grows by 4 ms.
//! - **Congestion avoidance**: one more frame per window of frames acked (additive increase).
//! - **Fast recovery**: a loss found by acks (duplicate acks, SACK evidence, RACK) halves the
//!   window (multiplicative decrease) once, and no further loss cuts it again until everything
//!   sent before the first loss is acknowledged (the recovery point): one loss event, one cut,
//!   however many frames of that window were lost.
//! - **Timeout**: the window falls to one frame and slow start begins again (ssthresh halved).
//!
//! [`CongestionControl::Tolerant`] (the default) is the same controller except that a loss cuts
//! the window only when it comes with a queue. `newreno` reads every loss as a router's queue
//! overflowing; on a link that loses frames at random (the emulator's `--loss`, radio) it
//! halves for each loss event and at 5% loss keeps a window of a few frames. A queue that
//! overflows has first made the round trip longer; a random loss comes with a round trip as
//! short as ever. So, as TCP Veno does (Fu and Liew, "TCP Veno: TCP Enhancement for
//! Transmission over Wireless Access Networks", IEEE JSAC 2003), the sender estimates the
//! queue from the round trip when a loss is found: the smallest round trip of the last round
//! (TCP Vegas's filter against one late ack) minus the smallest ever seen (the path's own).
//! Veno then cuts by a fifth instead of a half; at 5% loss a loss event comes nearly every
//! round trip, so any cut per event shrinks the window to a few frames, and here a loss
//! without a queue cuts nothing. What counts as a queue is the target of `CoDel` (RFC 8289): a
//! queue that adds less than [`QUEUE_TARGET`] (5 ms) is a "good queue" and not congestion;
//! from there the loss halves the window as `newreno` does. A timeout without a queue halves
//! the window (`newreno`: one frame). Limits: a bottleneck whose full queue adds less than
//! 5 ms (a short queue on a fast link) looks random here, and the sender resends what it
//! overflows, as `--cc none` does (`--cc newreno` backs off there); the smallest round trip
//! is kept for the connection's life (a path that gets longer reads as a queue).
//!
//! The window never grows past the transport's own window (`--window`): beyond it the sender
//! could not use it anyway, and an application-limited sender would otherwise grow it without
//! bound. [`CongestionControl::None`] pins the window there: the fixed window of the course.

use std::time::Duration;

use crate::wire::Seq;

/// The congestion window a sender starts with, in frames (RFC 6928's initial window).
pub const INITIAL_WINDOW: u32 = 10;

/// The least a loss may cut the window to, in frames (RFC 5681's 2·SMSS).
pub const MIN_SSTHRESH: u32 = 2;

/// [`CongestionControl::Tolerant`]: the queueing delay (the last round's smallest round trip
/// over the smallest ever) from which a loss counts as congestion: the target of `CoDel` (RFC 8289),
/// the standing queue it accepts as a "good queue".
pub const QUEUE_TARGET: Duration = Duration::from_millis(5);

/// `HyStart++` (RFC 9406): the round-trip samples a round needs before its smallest can end
/// slow start, and the bounds of the increase that does (an eighth of the last round's).
const HYSTART_MIN_SAMPLES: u32 = 8;
const HYSTART_MIN_ETA: Duration = Duration::from_millis(4);
const HYSTART_MAX_ETA: Duration = Duration::from_millis(16);

/// Which congestion control a windowed transport runs (`--cc`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum CongestionControl {
    /// Like newreno, but cuts only for a loss that comes with a queue (the round trip 5 ms over
    /// its lowest): random loss cuts nothing (the default).
    #[default]
    Tolerant,
    /// Slow start, additive increase, halving on every loss, fast recovery.
    #[serde(rename = "newreno")]
    NewReno,
    /// A fixed window: as many frames in flight as `--window` allows, whatever the losses.
    None,
}

impl CongestionControl {
    /// Every algorithm, the default first.
    pub const ALL: [CongestionControl; 3] = [
        CongestionControl::Tolerant,
        CongestionControl::NewReno,
        CongestionControl::None,
    ];

    /// The name on the command line and in scenarios.
    pub fn name(self) -> &'static str {
        match self {
            CongestionControl::Tolerant => "tolerant",
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
    /// `--cc tolerant`: the retransmission timer expired with no queue in the round trip:
    /// the window halved, not back to one frame.
    RandomTimeout,
    /// The retransmission timer expired: back to one frame (slow start).
    Timeout,
}

impl CongestionCut {
    pub fn label(self) -> &'static str {
        match self {
            CongestionCut::Loss => "loss",
            CongestionCut::RandomTimeout => "timeout without a queue",
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
    /// The smallest round trip seen: the path's own, without a queue.
    base_rtt: Option<Duration>,
    /// The smallest round trip of the current round, and of the one before.
    round_min_rtt: Option<Duration>,
    last_round_min_rtt: Option<Duration>,
    /// Round-trip samples in the current round.
    round_samples: u32,
    /// The current round ends when the cumulative ack passes this sequence number (the last
    /// one sent when it began).
    round_end: Option<Seq>,
    /// Loss events (and timeouts) that came without a queue and so did not cut (tolerant).
    random_losses: u64,
}

impl Congestion {
    pub fn new(algorithm: CongestionControl, max: u32) -> Self {
        let max = max.max(1);
        Congestion {
            algorithm,
            cwnd: match algorithm {
                CongestionControl::Tolerant | CongestionControl::NewReno => INITIAL_WINDOW.min(max),
                CongestionControl::None => max,
            },
            ssthresh: u32::MAX,
            acked_since_growth: 0,
            recovery_point: None,
            max,
            base_rtt: None,
            round_min_rtt: None,
            last_round_min_rtt: None,
            round_samples: 0,
            round_end: None,
            random_losses: 0,
        }
    }

    /// Which algorithm this is.
    pub fn algorithm(&self) -> CongestionControl {
        self.algorithm
    }

    /// A round-trip sample (from a frame sent once). Returns how much the round trip grew
    /// when this sample ended slow start (see the module's "Slow start").
    pub fn on_rtt_sample(&mut self, rtt: Duration) -> Option<Duration> {
        self.base_rtt = Some(self.base_rtt.map_or(rtt, |base| base.min(rtt)));
        self.round_min_rtt = Some(self.round_min_rtt.map_or(rtt, |min| min.min(rtt)));
        self.round_samples += 1;
        // `HyStart++`'s delay increase: in slow start, a round whose smallest round trip is
        // longer than the last round's by an eighth (4 to 16 ms) shows a queue building, and
        // slow start ends there, before it overflows the queue.
        if self.phase() == CongestionPhase::SlowStart
            && self.round_samples >= HYSTART_MIN_SAMPLES
            && let (Some(now), Some(last)) = (self.round_min_rtt, self.last_round_min_rtt)
            && now >= last + (last / 8).clamp(HYSTART_MIN_ETA, HYSTART_MAX_ETA)
        {
            self.ssthresh = self.cwnd.max(MIN_SSTHRESH);
            return Some(now - last);
        }
        None
    }

    /// How much longer than the path's own the round trip is now: the smallest sample of
    /// this round (or, before this round has one, of the last), over the smallest ever.
    /// `None` before any sample.
    pub fn queue_delay(&self) -> Option<Duration> {
        let recent = self.round_min_rtt.or(self.last_round_min_rtt)?;
        Some(recent.saturating_sub(self.base_rtt?))
    }

    /// Whether a loss found now counts as congestion: always for `newreno`; for `tolerant` when
    /// the queue delays the round trip by [`QUEUE_TARGET`] or more (or nothing is known yet).
    fn loss_means_congestion(&self) -> bool {
        match self.algorithm {
            CongestionControl::NewReno => true,
            CongestionControl::Tolerant => self.queue_delay().is_none_or(|q| q >= QUEUE_TARGET),
            CongestionControl::None => false,
        }
    }

    /// Loss events and timeouts that came without a queue and cut nothing (`tolerant`; a
    /// timeout among them halved the window).
    pub fn random_losses(&self) -> u64 {
        self.random_losses
    }

    /// Whether the sender paces its window over the round trip ([`super::pacing`]): with
    /// congestion control on; `none` sends its fixed window in bursts.
    pub fn paces(&self) -> bool {
        self.algorithm != CongestionControl::None
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
            _ if self.recovery_point.is_some() => CongestionPhase::Recovery,
            _ if self.cwnd < self.ssthresh => CongestionPhase::SlowStart,
            _ => CongestionPhase::Avoidance,
        }
    }

    pub fn in_recovery(&self) -> bool {
        self.recovery_point.is_some()
    }

    /// `newly_acked` frames were acknowledged (cumulatively or selectively), the oldest
    /// unacknowledged frame is now `snd_una` and the next new one `snd_nxt`. Ends a
    /// recovery whose point is acknowledged, and otherwise grows the window.
    pub fn on_ack(&mut self, newly_acked: u32, snd_una: Seq, snd_nxt: Seq) {
        if self.algorithm == CongestionControl::None || newly_acked == 0 {
            return;
        }
        // A round ends when what was sent as it began is acknowledged.
        if self.round_end.is_none_or(|end| end.before(snd_una)) {
            if self.round_min_rtt.is_some() {
                self.last_round_min_rtt = self.round_min_rtt.take();
            }
            self.round_samples = 0;
            self.round_end = Some(snd_nxt.add(u32::MAX));
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
    /// sequence number sent. Halves the window unless this is the same loss event (or, with
    /// `tolerant`, the round trip shows no queue). Returns whether the window was cut.
    pub fn on_loss(&mut self, flight: u32, highest_sent: Seq) -> bool {
        if self.algorithm == CongestionControl::None || self.recovery_point.is_some() {
            return false;
        }
        if !self.loss_means_congestion() {
            self.random_losses += 1;
            return false;
        }
        self.ssthresh = (self.cwnd.min(flight.max(1)) / 2).max(MIN_SSTHRESH);
        self.cwnd = self.ssthresh.min(self.max);
        self.acked_since_growth = 0;
        self.recovery_point = Some(highest_sent);
        true
    }

    /// The retransmission timer expired with `flight` frames outstanding: the window falls to
    /// one frame and slow start begins again (`tolerant` without a queue: it halves).
    /// Returns how it was cut, if it was.
    pub fn on_timeout(&mut self, flight: u32) -> Option<CongestionCut> {
        if self.algorithm == CongestionControl::None {
            return None;
        }
        if !self.loss_means_congestion() {
            // Random loss took a whole tail (or its probes): the path is as short as ever,
            // so its capacity is not in doubt; halving still slows a sender whose path went
            // dark, and recovery ends (the timeout resends everything outstanding).
            self.random_losses += 1;
            self.ssthresh = (self.cwnd / 2).max(MIN_SSTHRESH);
            self.cwnd = self.ssthresh.min(self.max);
            self.acked_since_growth = 0;
            self.recovery_point = None;
            return Some(CongestionCut::RandomTimeout);
        }
        // A timeout during recovery keeps the ssthresh recovery already set (it was measured
        // before the losses piled up); otherwise halve what was in flight.
        if self.recovery_point.is_none() {
            self.ssthresh = (self.cwnd.min(flight.max(1)) / 2).max(MIN_SSTHRESH);
        }
        self.cwnd = 1;
        self.acked_since_growth = 0;
        self.recovery_point = None;
        Some(CongestionCut::Timeout)
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
        cc.on_ack(10, Seq(10), Seq(74));
        assert_eq!(cc.window(), 20);
        cc.on_ack(20, Seq(30), Seq(94));
        assert_eq!(cc.window(), 40);
        cc.on_ack(40, Seq(70), Seq(134));
        assert_eq!(cc.window(), 64, "never past the transport's own window");
    }

    #[test]
    fn slow_start_ends_when_a_round_shows_a_queue_building() {
        let mut cc = reno(256);
        let samples = |cc: &mut Congestion, ms: u64, n: u32| {
            for _ in 0..n {
                cc.on_rtt_sample(Duration::from_millis(ms));
            }
        };
        samples(&mut cc, 1, 8);
        cc.on_ack(10, Seq(10), Seq(20));
        // 2 ms more than the last round: under `HyStart++`'s 4 ms, slow start goes on.
        samples(&mut cc, 3, 8);
        cc.on_ack(10, Seq(20), Seq(40));
        assert_eq!(cc.window(), 30);
        assert_eq!(cc.phase(), CongestionPhase::SlowStart);
        // 5 ms more: not on the round's seventh sample, on its eighth.
        samples(&mut cc, 8, 7);
        assert_eq!(cc.phase(), CongestionPhase::SlowStart);
        assert_eq!(
            cc.on_rtt_sample(Duration::from_millis(8)),
            Some(Duration::from_millis(5)),
            "the rise that ended it"
        );
        assert_eq!(
            (cc.phase(), cc.ssthresh()),
            (CongestionPhase::Avoidance, Some(30))
        );
        // No cut: the window stays and grows by one frame per window acked.
        cc.on_ack(30, Seq(50), Seq(80));
        assert_eq!(cc.window(), 31);
    }

    #[test]
    fn a_loss_halves_the_window_once_per_recovery() {
        let mut cc = reno(64);
        cc.on_ack(30, Seq(30), Seq(94));
        assert_eq!(cc.window(), 40);
        assert!(cc.on_loss(40, Seq(69)));
        assert_eq!((cc.window(), cc.ssthresh()), (20, Some(20)));
        assert_eq!(cc.phase(), CongestionPhase::Recovery);
        // More losses of the same window do not cut again, acks below the point do not grow.
        assert!(!cc.on_loss(40, Seq(75)));
        cc.on_ack(5, Seq(50), Seq(114));
        assert_eq!(cc.window(), 20);
        // The recovery point acknowledged: avoidance, one frame per window acked.
        cc.on_ack(5, Seq(70), Seq(134));
        assert_eq!(cc.phase(), CongestionPhase::Avoidance);
        assert_eq!(cc.window(), 20);
        cc.on_ack(19, Seq(89), Seq(153));
        assert_eq!(cc.window(), 20);
        cc.on_ack(1, Seq(90), Seq(154));
        assert_eq!(cc.window(), 21);
        // A new loss after the recovery ended cuts again.
        assert!(cc.on_loss(21, Seq(120)));
        assert_eq!(cc.window(), 10);
    }

    #[test]
    fn a_timeout_restarts_slow_start_from_one_frame() {
        let mut cc = reno(64);
        cc.on_ack(30, Seq(30), Seq(94));
        assert_eq!(cc.on_timeout(40), Some(CongestionCut::Timeout));
        assert_eq!((cc.window(), cc.ssthresh()), (1, Some(20)));
        cc.on_ack(1, Seq(31), Seq(95));
        assert_eq!(cc.window(), 2);
        cc.on_ack(30, Seq(61), Seq(125));
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
        assert_eq!(cc.on_timeout(64), None);
        cc.on_ack(10, Seq(10), Seq(74));
        assert_eq!(cc.window(), 64);
        assert_eq!(cc.phase(), CongestionPhase::Fixed);
    }

    #[test]
    fn a_small_transport_window_caps_the_initial_window() {
        assert_eq!(reno(4).window(), 4);
        assert_eq!(Congestion::new(CongestionControl::Tolerant, 4).window(), 4);
    }

    fn tolerant(max: u32) -> Congestion {
        Congestion::new(CongestionControl::Tolerant, max)
    }

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn tolerant_does_not_cut_for_a_loss_without_a_queue() {
        let mut cc = tolerant(64);
        cc.on_rtt_sample(MS);
        cc.on_ack(30, Seq(30), Seq(40));
        assert_eq!(cc.window(), 40);
        // The round trip is as short as ever (plus less than CoDel's 5 ms): random loss.
        cc.on_rtt_sample(MS * 5);
        cc.on_rtt_sample(MS * 3);
        assert_eq!(cc.queue_delay(), Some(MS * 2));
        assert!(!cc.on_loss(40, Seq(69)));
        assert_eq!((cc.window(), cc.ssthresh()), (40, None));
        assert_eq!(
            cc.phase(),
            CongestionPhase::SlowStart,
            "no recovery, still growing"
        );
        assert_eq!(cc.random_losses(), 1);
        cc.on_ack(10, Seq(50), Seq(79));
        assert_eq!(cc.window(), 50);
    }

    #[test]
    fn tolerant_halves_for_a_loss_that_comes_with_a_queue() {
        let mut cc = tolerant(64);
        cc.on_rtt_sample(MS);
        cc.on_ack(30, Seq(30), Seq(40));
        // A new round: every sample in it at least 5 ms over the path's own.
        cc.on_ack(10, Seq(41), Seq(81));
        cc.on_rtt_sample(MS * 9);
        cc.on_rtt_sample(MS * 6);
        assert_eq!(cc.queue_delay(), Some(MS * 5));
        assert!(cc.on_loss(50, Seq(80)));
        assert_eq!((cc.window(), cc.ssthresh()), (25, Some(25)));
        assert_eq!(cc.phase(), CongestionPhase::Recovery);
        assert_eq!(cc.random_losses(), 0);
    }

    #[test]
    fn tolerant_reads_the_queue_from_the_smallest_round_trip_of_the_round() {
        let mut cc = tolerant(64);
        cc.on_rtt_sample(MS);
        cc.on_ack(1, Seq(1), Seq(10));
        // One late ack among short ones is not a queue.
        cc.on_rtt_sample(MS * 50);
        cc.on_rtt_sample(MS * 2);
        assert_eq!(cc.queue_delay(), Some(MS));
        // The round ends (everything sent when it began is acked): a fresh round has no
        // sample yet, so the last one's minimum stands until it has.
        cc.on_ack(9, Seq(10), Seq(20));
        assert_eq!(cc.queue_delay(), Some(MS));
        cc.on_rtt_sample(MS * 20);
        assert_eq!(cc.queue_delay(), Some(MS * 19));
        assert!(cc.on_loss(20, Seq(19)), "a whole round 19 ms late: a queue");
    }

    #[test]
    fn tolerant_cuts_before_it_knows_the_round_trip() {
        let mut cc = tolerant(64);
        assert_eq!(cc.queue_delay(), None);
        assert!(cc.on_loss(10, Seq(9)));
        assert_eq!(cc.window(), 5);
    }

    #[test]
    fn tolerant_halves_on_a_timeout_without_a_queue_and_restarts_with_one() {
        let mut cc = tolerant(64);
        cc.on_rtt_sample(MS);
        cc.on_ack(30, Seq(30), Seq(40));
        assert_eq!(cc.on_timeout(40), Some(CongestionCut::RandomTimeout));
        assert_eq!((cc.window(), cc.ssthresh()), (20, Some(20)));
        assert_eq!(cc.random_losses(), 1);
        cc.on_rtt_sample(MS * 30);
        assert_eq!(cc.on_timeout(20), Some(CongestionCut::Timeout));
        assert_eq!((cc.window(), cc.ssthresh()), (1, Some(10)));
    }

    #[test]
    fn the_algorithms_are_named_alike_in_scenarios_and_on_the_command_line() {
        for cc in CongestionControl::ALL {
            let quoted = format!("\"{}\"", cc.name());
            assert_eq!(serde_json::to_string(&cc).unwrap(), quoted);
            assert_eq!(
                serde_json::from_str::<CongestionControl>(&quoted).unwrap(),
                cc
            );
        }
        assert_eq!(CongestionControl::default(), CongestionControl::Tolerant);
    }

    /// One thing that can happen to a sender's congestion controller.
    #[derive(Clone, Debug)]
    enum Step {
        Rtt(u64),
        Ack(u32),
        Loss,
        Timeout,
    }

    fn step() -> impl proptest::strategy::Strategy<Value = Step> {
        use proptest::prelude::*;
        prop_oneof![
            (1u64..20_000).prop_map(Step::Rtt),
            (0u32..80).prop_map(Step::Ack),
            Just(Step::Loss),
            Just(Step::Timeout),
        ]
    }

    /// Runs `steps` against a controller with window ceiling `max`, checking the bounds
    /// after each; returns it.
    fn replay(algorithm: CongestionControl, max: u32, steps: &[Step]) -> Congestion {
        let mut cc = Congestion::new(algorithm, max);
        let (mut una, mut nxt) = (Seq(0), Seq(0));
        for step in steps {
            match *step {
                Step::Rtt(us) => {
                    cc.on_rtt_sample(Duration::from_micros(us));
                }
                Step::Ack(n) => {
                    nxt = nxt.add(n + cc.window());
                    una = una.add(n);
                    cc.on_ack(n, una, nxt);
                }
                Step::Loss => {
                    cc.on_loss(cc.window(), nxt.add(u32::MAX));
                }
                Step::Timeout => {
                    cc.on_timeout(cc.window());
                }
            }
            assert!((1..=max).contains(&cc.window()), "{algorithm}: {cc:?}");
            if let Some(ssthresh) = cc.ssthresh() {
                assert!(ssthresh >= MIN_SSTHRESH, "{cc:?}");
            }
        }
        cc
    }

    proptest::proptest! {
        #[test]
        fn the_window_stays_between_one_frame_and_the_transport_window(
            max in 1u32..300,
            steps in proptest::collection::vec(step(), 0..200),
        ) {
            for algorithm in [
                CongestionControl::Tolerant,
                CongestionControl::NewReno,
                CongestionControl::None,
            ] {
                let cc = replay(algorithm, max, &steps);
                if algorithm == CongestionControl::None {
                    proptest::prop_assert_eq!(cc.window(), max);
                }
            }
        }

        #[test]
        fn tolerant_without_a_queue_never_goes_below_half_and_a_loss_never_cuts(
            max in 2u32..300,
            rtt_us in 1u64..4_000,
            steps in proptest::collection::vec(step(), 0..200),
        ) {
            // Every round trip the same (less than the 5 ms target over itself): no queue,
            // ever. Losses cut nothing; timeouts halve.
            let steps: Vec<Step> = std::iter::once(Step::Rtt(rtt_us))
                .chain(steps.into_iter().map(|s| match s {
                    Step::Rtt(_) => Step::Rtt(rtt_us),
                    other => other,
                }))
                .collect();
            let mut cc = Congestion::new(CongestionControl::Tolerant, max);
            let (mut una, mut nxt) = (Seq(0), Seq(0));
            for step in &steps {
                let before = cc.window();
                match *step {
                    Step::Rtt(us) => {
                    cc.on_rtt_sample(Duration::from_micros(us));
                }
                    Step::Ack(n) => {
                        nxt = nxt.add(n + cc.window());
                        una = una.add(n);
                        cc.on_ack(n, una, nxt);
                    }
                    Step::Loss => {
                        proptest::prop_assert!(!cc.on_loss(cc.window(), nxt.add(u32::MAX)));
                    }
                    Step::Timeout => {
                        let cut = cc.on_timeout(cc.window());
                        proptest::prop_assert_eq!(cut, Some(CongestionCut::RandomTimeout));
                    }
                }
                proptest::prop_assert!(cc.window() >= (before / 2).max(MIN_SSTHRESH).min(max));
            }
        }
    }
}
