//! Two transports talking over a simulated link: a virtual clock and, in each direction,
//! the link emulator's own seeded [`Decider`] (loss, duplication, reordering, corruption,
//! delay). Every frame goes through the real wire codec, so corruption meets the real
//! checksum. Used by the property tests below: whatever the link does, the bytes each side
//! reads are exactly the bytes the other wrote, and no buffer outgrows its window.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{Rng, SeedableRng};

use super::congestion::CongestionControl;
use super::{RetransmitCause, RtoConfig, Transport, TransportConfig};
use crate::impair::decide::Decider;
use crate::impair::settings::{DirectionSettings, Percent};
use crate::topology::LinkDirection;
use crate::wire::{ConnId, WireMode};

const ID: ConnId = ConnId::new(5);

/// One direction of the simulated link.
struct Channel {
    decider: Decider,
    settings: DirectionSettings,
    /// (arrival, tie-breaker, datagram), earliest first.
    queue: BinaryHeap<Reverse<(Instant, u64, Vec<u8>)>>,
    order: u64,
    /// A frame held back until the next one overtakes it (or its wait ends).
    held: Option<(Instant, Vec<u8>)>,
    /// The rate limiter (`settings.rate`): when the link has sent what it was given, and
    /// when each frame in its queue will be sent (at most `settings.queue`; more are dropped,
    /// a bottleneck router's tail drop).
    link_free_at: Option<Instant>,
    rate_queue: std::collections::VecDeque<Instant>,
    /// Frames the rate limiter's full queue dropped.
    queue_drops: u64,
}

impl Channel {
    fn new(seed: u64, direction: LinkDirection, settings: DirectionSettings) -> Self {
        Channel {
            decider: Decider::new(seed, direction),
            settings,
            queue: BinaryHeap::new(),
            order: 0,
            held: None,
            link_free_at: None,
            rate_queue: std::collections::VecDeque::new(),
            queue_drops: 0,
        }
    }

    fn push(&mut self, at: Instant, datagram: Vec<u8>) {
        self.order += 1;
        self.queue.push(Reverse((at, self.order, datagram)));
    }

    fn send(&mut self, now: Instant, mode: WireMode, mut datagram: Vec<u8>) {
        let corruptible = mode.payload_range(&datagram).unwrap_or(0..0);
        let decision = self.decider.decide(&self.settings, corruptible);
        if decision.drop.is_some() {
            return;
        }
        if let Some(corruption) = decision.corrupt {
            corruption.apply(&mut datagram);
        }
        let mut at = now + decision.delay;
        if let Some(rate) = self.settings.rate {
            // As the emulator's pipeline does it: wait for the link, or drop at a full queue.
            while self.rate_queue.front().is_some_and(|done| *done <= now) {
                self.rate_queue.pop_front();
            }
            if self.rate_queue.len() >= self.settings.queue.max(1) {
                self.queue_drops += 1;
                return;
            }
            let start = self.link_free_at.map_or(now, |free| free.max(now));
            let done = start + rate.transmit_time(datagram.len());
            self.link_free_at = Some(done);
            self.rate_queue.push_back(done);
            at = done + decision.delay;
        }
        if decision.duplicate {
            self.push(at, datagram.clone());
        }
        if decision.reorder && self.held.is_none() {
            self.held = Some((at + self.settings.reorder_wait, datagram));
            return;
        }
        self.push(at, datagram);
        if let Some((_, held)) = self.held.take() {
            self.push(at, held);
        }
    }

    fn next_arrival(&self) -> Option<Instant> {
        let queued = self.queue.peek().map(|Reverse((at, _, _))| *at);
        let held = self.held.as_ref().map(|(at, _)| *at);
        [queued, held].into_iter().flatten().min()
    }

    fn arrivals(&mut self, now: Instant) -> Vec<Vec<u8>> {
        if let Some((at, _)) = &self.held
            && *at <= now
        {
            let (at, held) = self.held.take().unwrap();
            self.push(at, held);
        }
        let mut due = Vec::new();
        while let Some(Reverse((at, _, _))) = self.queue.peek()
            && *at <= now
        {
            due.push(self.queue.pop().unwrap().0.2);
        }
        due
    }
}

/// One side: its transport, what its application writes and what it has read.
struct Side {
    transport: Transport,
    data: Vec<u8>,
    written: usize,
    received: Vec<u8>,
}

/// How one simulated run is set up.
#[derive(Clone, Debug)]
struct Run {
    mode: WireMode,
    seed: u64,
    link: DirectionSettings,
    window: u32,
    max_payload: usize,
    send_buffer: usize,
    /// Bytes each side writes.
    sizes: [usize; 2],
    /// Percent chance that an application skips reading at a step (flow control).
    skip_read: u32,
    /// Side 0's initial sequence number; side 1's is `isn_gap` later.
    initial_seq: u32,
    isn_gap: u32,
    /// Side 1 closes only once side 0's close has arrived, like an echo server behind
    /// proxy2 (otherwise each side closes when it has written everything).
    echo_close: bool,
    /// Congestion control of both sides.
    congestion: CongestionControl,
    /// The retransmission timer; `None`: adaptive with a 50 ms floor (quick simulated runs).
    rto: Option<RtoConfig>,
}

impl Run {
    /// A bulk transfer from side 0 to side 1 over `link`, the transports' defaults otherwise
    /// (window 64, full frames, RFC 6298 timer with its 200 ms floor): what the tunnel runs.
    fn bulk(mode: WireMode, seed: u64, link: DirectionSettings, bytes: usize) -> Self {
        let defaults = TransportConfig::for_mode(mode);
        Run {
            mode,
            seed,
            link,
            window: defaults.window,
            max_payload: defaults.max_payload,
            send_buffer: defaults.send_buffer,
            sizes: [bytes, 0],
            skip_read: 0,
            initial_seq: 0,
            isn_gap: 0,
            congestion: defaults.congestion,
            rto: Some(defaults.rto),
            echo_close: false,
        }
    }
}

/// What a run ended with.
#[derive(Debug)]
struct Outcome {
    received: [Vec<u8>; 2],
    sent: [Vec<u8>; 2],
    done: bool,
    gave_up: bool,
    malformed: u64,
    /// Data frames sent again (a close sent again is not counted).
    retransmits: u64,
    /// Of those, sent again because their timer expired.
    timeout_retransmits: u64,
    /// Data frames sent, first sends and retransmissions, by both sides.
    data_frames: u64,
    /// When the last side finished (or the run stopped), from the start.
    elapsed: Duration,
    /// Frames the rate limiters dropped, both ways.
    queue_drops: u64,
    /// Side 0's congestion window at every step, once slow start has ended (the first cut).
    cwnd_after_first_cut: Vec<u32>,
    /// Side 0's congestion window cuts.
    congestion_cuts: u64,
}

fn simulate(run: &Run) -> Outcome {
    let t0 = Instant::now();
    let mut rng = ChaCha8Rng::seed_from_u64(run.seed ^ 0x5eed);
    let config = TransportConfig {
        window: run.window,
        send_buffer: run.send_buffer,
        max_payload: run.max_payload,
        rto: run.rto.unwrap_or(RtoConfig::Adaptive {
            initial: Duration::from_millis(500),
            min: Duration::from_millis(50),
            max: Duration::from_secs(2),
        }),
        // Half the frames and half the acks lost means long unlucky streaks; the bound must
        // stay far above them so that a give-up here is a bug, not bad luck.
        max_timeouts: 200,
        dup_ack_threshold: 3,
        close_sends: 3,
        initial_seq: crate::wire::Seq(run.initial_seq),
        peer_initial_seq: crate::wire::Seq(run.initial_seq.wrapping_add(run.isn_gap)),
        congestion: run.congestion,
    };
    let swapped = TransportConfig {
        initial_seq: config.peer_initial_seq,
        peer_initial_seq: config.initial_seq,
        ..config
    };
    let mut sides: Vec<Side> = (0..2)
        .map(|i| Side {
            transport: Transport::new(run.mode, if i == 0 { config } else { swapped }),
            data: (0..run.sizes[i])
                .map(|_| (rng.next_u32() & 0xff) as u8)
                .collect(),
            written: 0,
            received: Vec::new(),
        })
        .collect();
    let mut links = [
        Channel::new(run.seed, LinkDirection::ToProxy2, run.link.clone()),
        Channel::new(run.seed, LinkDirection::ToProxy1, run.link.clone()),
    ];
    let mut now = t0;
    // A side whose transport is done is gone, as a proxy drops the connection: what still
    // comes for it gets what its proxy answers (stop-and-wait: an ack and an `X` for an `X`).
    // TUNLAB_SIM_TRACE=1 prints every datagram sent and received (with TUNLAB_SIM_SEED=N on
    // the stop-and-wait close test, one seed's story).
    let trace = std::env::var_os("TUNLAB_SIM_TRACE").is_some();
    let mut gone = [false; 2];
    let mut stray: [super::stop_and_wait::StrayCloses<()>; 2] = Default::default();
    let mut malformed = 0;
    let mut retransmits = 0;
    let mut timeout_retransmits = 0;
    let mut data_frames = 0;
    let mut cwnd_after_first_cut = Vec::new();
    let mut done = false;
    for _step in 0..400_000 {
        for (i, side) in sides.iter_mut().enumerate() {
            if gone[i] {
                continue;
            }
            let t = &mut side.transport;
            let may_close = !(run.echo_close && i == 1) || t.peer_finished();
            if side.written < side.data.len() {
                side.written += t.write(&side.data[side.written..]);
            }
            if side.written == side.data.len() && may_close {
                t.finish();
            }
            if rng.next_u32() % 100 >= run.skip_read {
                let mut buf = [0u8; 700];
                loop {
                    let n = t.read(&mut buf);
                    if n == 0 {
                        break;
                    }
                    side.received.extend_from_slice(&buf[..n]);
                }
            }
            while let Some(out) = t.poll_transmit(now) {
                if let super::OutFrame::Data { retransmit, .. } = &out {
                    data_frames += 1;
                    retransmits += u64::from(retransmit.is_some());
                    timeout_retransmits += u64::from(*retransmit == Some(RetransmitCause::Timeout));
                }
                let datagram = run.mode.to_bytes(&out.frame(ID)).unwrap();
                if trace {
                    let ms = now.duration_since(t0).as_millis();
                    eprintln!(
                        "{ms:>6} side {i} sends {:?}",
                        String::from_utf8_lossy(&datagram[..datagram.len().min(4)])
                    );
                }
                assert!(datagram.len() <= crate::wire::MAX_DATAGRAM);
                links[i].send(now, run.mode, datagram);
            }
            while t.poll_event().is_some() {}
            // Nothing grows past its window.
            let stats = t.stats();
            let limit = run.window.max(1);
            assert!(stats.in_flight <= limit, "{stats:?}");
            if let Some(cwnd) = stats.cwnd {
                assert!((1..=limit).contains(&cwnd), "{stats:?}");
                // While the sender still has data the transport has not taken: at the tail
                // of the transfer a loss among the last few frames halves what little is in
                // flight (RFC 5681's FlightSize), which says nothing of the link.
                if i == 0 && stats.congestion_cuts > 0 && side.written < side.data.len() {
                    cwnd_after_first_cut.push(cwnd);
                }
            }
            assert!(stats.held + stats.readable <= limit, "{stats:?}");
            assert!(stats.peer_window <= limit, "{stats:?}");
            // The flow-control bound in bytes: a full send buffer and a full window.
            let bound = run.send_buffer + limit as usize * run.max_payload;
            assert!(
                t.buffered_bytes() <= bound,
                "{} > {bound}",
                t.buffered_bytes()
            );
        }
        if sides.iter().all(|s| s.transport.is_done()) {
            done = true;
            break;
        }
        // Stop-and-wait: a finished side is gone (its proxy answers for it). The extended
        // modes' finished side keeps answering here: their close has no such stand-in yet.
        if run.mode == WireMode::StopAndWait {
            for (i, side) in sides.iter().enumerate() {
                gone[i] |= side.transport.is_done();
            }
        }
        // Nothing left to happen while a side is not done: a wedged connection (what a lost
        // last stop-and-wait `X` used to cause), reported as not done.
        let settled = sides
            .iter()
            .zip(gone)
            .all(|(s, gone)| gone || s.transport.poll_timeout().is_none())
            && links.iter().all(|l| l.next_arrival().is_none())
            && sides.iter().all(|s| s.transport.stats().readable == 0);
        if settled {
            break;
        }
        let next = sides
            .iter()
            .zip(gone)
            .filter(|(_, gone)| !gone)
            .filter_map(|(s, _)| s.transport.poll_timeout())
            .chain(links.iter().filter_map(Channel::next_arrival))
            .min();
        // With nothing scheduled, an application that skipped reading reads at the next step.
        now = next.unwrap_or(now + Duration::from_millis(1)).max(now);
        for (i, side) in sides.iter_mut().enumerate() {
            // Side i receives what travels towards it: link (1 - i).
            for datagram in links[1 - i].arrivals(now) {
                if trace {
                    let ms = now.duration_since(t0).as_millis();
                    eprintln!(
                        "{ms:>6} side {i} gets  {:?}{}",
                        String::from_utf8_lossy(&datagram[..datagram.len().min(4)]),
                        if gone[i] { " (gone)" } else { "" }
                    );
                }
                match run.mode.decode(&datagram) {
                    Ok(frame) if !gone[i] => side.transport.handle_frame(now, &frame),
                    Ok(crate::wire::Frame::Close { id, seq })
                        if run.mode == WireMode::StopAndWait =>
                    {
                        for frame in stray[i].answer((), id, seq, now).into_iter().flatten() {
                            links[i].send(now, run.mode, run.mode.to_bytes(&frame).unwrap());
                        }
                    }
                    Ok(_) => {}
                    Err(_) => malformed += 1,
                }
            }
            if gone[i] {
                continue;
            }
            if side.transport.poll_timeout().is_some_and(|t| t <= now) {
                side.transport.handle_timeout(now);
            }
        }
    }
    let [a, b] = [&sides[0], &sides[1]];
    Outcome {
        received: [a.received.clone(), b.received.clone()],
        sent: [a.data.clone(), b.data.clone()],
        done,
        gave_up: sides.iter().any(|s| s.transport.gave_up().is_some()),
        malformed,
        retransmits,
        timeout_retransmits,
        data_frames,
        elapsed: now - t0,
        queue_drops: links.iter().map(|l| l.queue_drops).sum(),
        cwnd_after_first_cut,
        congestion_cuts: a.transport.stats().congestion_cuts,
    }
}

fn percent(n: f64) -> Percent {
    Percent::new(n).unwrap()
}

fn link(loss: f64, dup: f64, reorder: f64, corrupt: f64, delay_ms: u64) -> DirectionSettings {
    DirectionSettings {
        loss: percent(loss),
        dup: percent(dup),
        reorder: percent(reorder),
        corrupt: percent(corrupt),
        delay: Duration::from_millis(delay_ms),
        ..DirectionSettings::default()
    }
}

fn assert_exact(run: &Run, outcome: &Outcome) {
    assert!(!outcome.gave_up, "gave up: {run:?}");
    // Every mode's close is acknowledged (stop-and-wait's `X` too), so both ends finish.
    assert!(outcome.done, "did not finish: {run:?}");
    for i in 0..2 {
        assert!(
            outcome.received[1 - i] == outcome.sent[i],
            "side {i}'s bytes arrived altered ({} sent, {} received): {run:?}",
            outcome.sent[i].len(),
            outcome.received[1 - i].len()
        );
    }
}

#[test]
fn a_clear_link_needs_no_retransmission() {
    for mode in [
        WireMode::StopAndWait,
        WireMode::GoBackN,
        WireMode::SelectiveRepeat,
    ] {
        let run = Run {
            mode,
            seed: 1,
            link: link(0.0, 0.0, 0.0, 0.0, 10),
            window: 16,
            max_payload: 100,
            send_buffer: 4000,
            sizes: [20_000, 5_000],
            skip_read: 0,
            initial_seq: 0,
            isn_gap: 0,
            echo_close: false,
            congestion: CongestionControl::NewReno,
            rto: None,
        };
        let outcome = simulate(&run);
        assert_exact(&run, &outcome);
        assert_eq!(outcome.retransmits, 0, "{mode}");
    }
}

#[test]
fn selective_repeat_resends_less_than_go_back_n_under_the_same_loss() {
    let resent = |mode| {
        let run = Run {
            mode,
            seed: 7,
            link: link(10.0, 0.0, 0.0, 0.0, 20),
            window: 32,
            max_payload: 200,
            send_buffer: 32 * 200,
            sizes: [100_000, 0],
            skip_read: 0,
            initial_seq: 0,
            isn_gap: 0,
            echo_close: false,
            congestion: CongestionControl::NewReno,
            rto: None,
        };
        let outcome = simulate(&run);
        assert_exact(&run, &outcome);
        outcome.retransmits
    };
    let (gbn, sr) = (resent(WireMode::GoBackN), resent(WireMode::SelectiveRepeat));
    assert!(sr > 0 && sr < gbn, "selective repeat {sr}, go-back-n {gbn}");
}

#[test]
fn corruption_is_caught_and_repaired_in_the_extended_modes() {
    for mode in [WireMode::GoBackN, WireMode::SelectiveRepeat] {
        let run = Run {
            mode,
            seed: 3,
            link: link(0.0, 0.0, 0.0, 20.0, 5),
            window: 8,
            max_payload: 300,
            send_buffer: 3000,
            sizes: [30_000, 30_000],
            skip_read: 0,
            initial_seq: u32::MAX - 20,
            isn_gap: 7,
            echo_close: false,
            congestion: CongestionControl::NewReno,
            rto: None,
        };
        let outcome = simulate(&run);
        assert_exact(&run, &outcome);
        assert!(outcome.malformed > 0, "{mode}: nothing was corrupted");
    }
}

fn reliable_mode() -> impl Strategy<Value = WireMode> {
    prop_oneof![
        Just(WireMode::StopAndWait),
        Just(WireMode::GoBackN),
        Just(WireMode::SelectiveRepeat),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 160, ..ProptestConfig::default() })]

    #[test]
    fn the_delivered_stream_is_the_sent_stream_whatever_the_link_does(
        mode in reliable_mode(),
        seed in any::<u64>(),
        loss in 0.0..50.0f64,
        dup in 0.0..10.0f64,
        reorder in 0.0..10.0f64,
        corrupt in 0.0..5.0f64,
        delay_ms in 1u64..50,
        window in 1u32..24,
        max_payload in 1usize..200,
        send_frames in 1usize..8,
        sizes in (0usize..6000, 0usize..3000),
        skip_read in prop_oneof![Just(0u32), 0u32..90],
        initial_seq in prop_oneof![Just(0u32), Just(u32::MAX - 5), any::<u32>()],
        isn_gap in any::<u32>(),
        echo_close in any::<bool>(),
        congestion in prop_oneof![
            Just(CongestionControl::Tolerant),
            Just(CongestionControl::NewReno),
            Just(CongestionControl::None),
        ],
    ) {
        // Stop-and-wait's wire has no checksum: a corrupted payload is delivered as it came
        // (DESIGN.md). And one alternating bit only survives a FIFO channel: a D0 overtaken by
        // the next D1 arrives when 0 is expected again and is taken as new data (the
        // alternating-bit protocol's known limit). So the extended modes alone get both.
        let (corrupt, reorder) = if mode.is_extended() { (corrupt, reorder) } else { (0.0, 0.0) };
        let run = Run {
            mode,
            seed,
            link: link(loss, dup, reorder, corrupt, delay_ms),
            window,
            max_payload,
            send_buffer: send_frames * max_payload,
            sizes: [sizes.0, sizes.1],
            skip_read,
            // Stop-and-wait's sequence numbers are bits.
            initial_seq: if mode.is_extended() { initial_seq } else { 0 },
            isn_gap: if mode.is_extended() { isn_gap } else { 0 },
            echo_close,
            congestion,
            rto: None,
        };
        let outcome = simulate(&run);
        assert_exact(&run, &outcome);
    }
}

#[test]
fn half_the_frames_lost_each_way_still_delivers_every_byte() {
    for (mode, congestion) in [
        (WireMode::StopAndWait, CongestionControl::NewReno),
        (WireMode::GoBackN, CongestionControl::Tolerant),
        (WireMode::GoBackN, CongestionControl::NewReno),
        (WireMode::GoBackN, CongestionControl::None),
        (WireMode::SelectiveRepeat, CongestionControl::Tolerant),
        (WireMode::SelectiveRepeat, CongestionControl::NewReno),
        (WireMode::SelectiveRepeat, CongestionControl::None),
    ] {
        let extended = mode.is_extended();
        let run = Run {
            mode,
            seed: 50,
            link: link(
                50.0,
                5.0,
                if extended { 5.0 } else { 0.0 },
                if extended { 2.0 } else { 0.0 },
                15,
            ),
            window: 16,
            max_payload: 500,
            send_buffer: 8000,
            sizes: [20_000, 20_000],
            skip_read: 30,
            initial_seq: if extended { u32::MAX - 3 } else { 0 },
            isn_gap: if extended { 1 << 31 } else { 0 },
            echo_close: false,
            congestion,
            rto: None,
        };
        let outcome = simulate(&run);
        assert_exact(&run, &outcome);
        assert!(outcome.retransmits > 0, "{mode}");
    }
}

/// Issue 11: at 20% loss each way, stop-and-wait's close used to wedge about one connection
/// in sixty: the last `X` was sent `close_sends` times and never acked, so when every copy
/// was lost the other end waited for it until the idle timeout, its id taken. Each run here
/// is an echo (side 1 closes after side 0's close arrives, as the server behind proxy2
/// does) or two independent closes, over the seeded emulator; every one must finish, with
/// every byte delivered, and without giving up.
#[test]
fn stop_and_wait_closes_always_finish_at_twenty_percent_loss() {
    let mut wedged = Vec::new();
    let seeds = std::env::var("TUNLAB_SIM_SEED")
        .map_or(0..600u64, |s| s.parse::<u64>().map(|n| n..n + 1).unwrap());
    for seed in seeds {
        let run = Run {
            mode: WireMode::StopAndWait,
            seed,
            link: link(20.0, 0.0, 0.0, 0.0, 5),
            window: 4,
            max_payload: 100,
            send_buffer: 400,
            sizes: [300, 200],
            skip_read: 0,
            initial_seq: 0,
            isn_gap: 0,
            echo_close: seed % 2 == 0,
            congestion: CongestionControl::NewReno,
            rto: None,
        };
        let outcome = simulate(&run);
        if !outcome.done || outcome.gave_up {
            wedged.push(seed);
        }
        for i in 0..2 {
            assert!(outcome.received[1 - i] == outcome.sent[i], "{run:?}");
        }
    }
    assert!(wedged.is_empty(), "seeds that did not finish: {wedged:?}");
}

/// A loopback-like link: 50 µs each way, `loss` percent lost each way.
fn loopback(loss: f64) -> DirectionSettings {
    DirectionSettings {
        loss: percent(loss),
        delay: Duration::from_micros(50),
        ..DirectionSettings::default()
    }
}

#[test]
fn losses_are_repaired_in_round_trips_not_timeouts() {
    // 5% of the frames and of the acks lost, the tunnel's own settings (a 200 ms floor under
    // the timer against a 100 µs round trip): the losses among the last frames of a flight,
    // the lost acks of the tail and the lost retransmissions are found by the tail-loss probe
    // and RACK, and the timer, 2,000 round trips long, is left for the rare rest.
    for mode in [WireMode::SelectiveRepeat, WireMode::GoBackN] {
        let run = Run::bulk(mode, 11, loopback(5.0), 1 << 20);
        let outcome = simulate(&run);
        assert_exact(&run, &outcome);
        assert!(outcome.retransmits > 0, "{mode}: nothing was lost");
        let timeouts = outcome.timeout_retransmits;
        eprintln!(
            "{mode}: {} data frames, {} resent ({} on timeout), {:?}",
            outcome.data_frames, outcome.retransmits, timeouts, outcome.elapsed
        );
        assert!(
            timeouts * 20 <= outcome.retransmits,
            "{mode}: {timeouts} of {} retransmissions waited for the timer",
            outcome.retransmits
        );
    }
}

#[test]
fn a_lost_retransmission_is_found_by_later_acks() {
    // Heavy loss: many fast retransmissions are lost too; RACK finds them by the acks of
    // what was sent after them, so most never wait for a timer.
    let run = Run::bulk(WireMode::SelectiveRepeat, 5, loopback(20.0), 256 << 10);
    let outcome = simulate(&run);
    assert_exact(&run, &outcome);
    eprintln!(
        "{} data frames, {} resent ({} on timeout), {:?}",
        outcome.data_frames, outcome.retransmits, outcome.timeout_retransmits, outcome.elapsed
    );
    assert!(
        outcome.timeout_retransmits * 5 <= outcome.retransmits,
        "{} of {} retransmissions waited for the timer",
        outcome.timeout_retransmits,
        outcome.retransmits
    );
}

/// A bottleneck: `rate` bits per second, a queue of `queue` frames (tail drop), 1 ms each way.
fn bottleneck(rate: u64, queue: usize) -> DirectionSettings {
    DirectionSettings {
        delay: Duration::from_millis(1),
        rate: Some(crate::impair::BitRate::new(rate).unwrap()),
        queue,
        ..DirectionSettings::default()
    }
}

#[test]
fn congestion_control_fills_a_rate_limited_link_without_collapsing() {
    // 10 Mbit/s with a 32-frame queue, half of a 64-frame window: a fixed window overflows
    // the queue on every flight; NewReno finds the queue's size, halves on its overflow and
    // keeps the link busy. (The window is pinned: Selective Repeat's default of 256 overflows
    // the queue further in the first slow start, 3.5% resent here instead of under 3%, with
    // 98% of the rate used.)
    let rate = 10_000_000;
    let bytes = 8 << 20;
    let mut resent_share = Vec::new();
    for congestion in [
        CongestionControl::Tolerant,
        CongestionControl::NewReno,
        CongestionControl::None,
    ] {
        for mode in [WireMode::SelectiveRepeat, WireMode::GoBackN] {
            let mut run = Run::bulk(mode, 21, bottleneck(rate, 32), bytes);
            run.window = 64;
            run.send_buffer = 64 * run.max_payload;
            run.congestion = congestion;
            let outcome = simulate(&run);
            assert_exact(&run, &outcome);
            let share = outcome.retransmits as f64 / outcome.data_frames as f64;
            // Goodput over the simulated time, against the link's rate.
            let utilisation = (bytes * 8) as f64 / outcome.elapsed.as_secs_f64() / rate as f64;
            eprintln!(
                "{mode} {congestion}: {} frames, {} resent ({:.1}%, {} on timeout), {} queue drops, {} cuts, utilisation {:.1}%, cwnd after the first cut {:?}..{:?}",
                outcome.data_frames,
                outcome.retransmits,
                share * 100.0,
                outcome.timeout_retransmits,
                outcome.queue_drops,
                outcome.congestion_cuts,
                utilisation * 100.0,
                outcome.cwnd_after_first_cut.iter().min(),
                outcome.cwnd_after_first_cut.iter().max(),
            );
            if congestion != CongestionControl::None {
                // Go-Back-N resends the window behind each drop, by design: its bounds are
                // looser, and Selective Repeat is what the tunnel runs by default for speed.
                let (max_share, min_utilisation) = match mode {
                    WireMode::SelectiveRepeat => (0.03, 0.9),
                    _ => (0.15, 0.75),
                };
                assert!(share < max_share, "{mode}: {:.1}% resent", share * 100.0);
                assert_eq!(outcome.timeout_retransmits, 0, "{mode}: a timeout");
                assert!(
                    utilisation >= min_utilisation,
                    "{mode}: {:.1}%",
                    utilisation * 100.0
                );
                // The window converges: it never collapses to slow start again (Selective
                // Repeat keeps at least a quarter of the queue once past the first cut).
                let floor = match mode {
                    WireMode::SelectiveRepeat => 8,
                    _ => 2,
                };
                let low = outcome.cwnd_after_first_cut.iter().min().copied();
                assert!(low >= Some(floor), "{mode}: cwnd fell to {low:?}");
            }
            resent_share.push((mode, congestion, share));
        }
    }
    for mode in [WireMode::SelectiveRepeat, WireMode::GoBackN] {
        let of = |cc| {
            resent_share
                .iter()
                .find(|(m, c, _)| *m == mode && *c == cc)
                .map(|(_, _, share)| *share)
                .unwrap()
        };
        for cc in [CongestionControl::Tolerant, CongestionControl::NewReno] {
            assert!(
                of(CongestionControl::None) > 3.0 * of(cc),
                "{mode}: a fixed window should overflow the queue far more than {cc}"
            );
        }
    }
}

/// Goodput over the simulated time, in bytes per simulated second.
fn goodput(bytes: usize, outcome: &Outcome) -> f64 {
    bytes as f64 / outcome.elapsed.as_secs_f64()
}

#[test]
fn tolerant_keeps_a_fixed_windows_goodput_under_random_loss() {
    // The loopback-like link (100 µs round trip, no rate limit, no queue) losing 5% of the
    // frames and acks each way: nothing congests it, so every loss is random. NewReno halves
    // for nearly every round trip's loss; tolerant sees no queue in the round trip and keeps
    // its window, so it moves what a fixed window moves (at least 90% of it: it starts from
    // ten frames in slow start, `none` from the full window), and far more than NewReno. The
    // window is pinned to 64 frames: with Selective Repeat's default of 256, slow start is a
    // larger share of this short transfer (87% of `none` here).
    let bytes = 1 << 20;
    for mode in [WireMode::SelectiveRepeat, WireMode::GoBackN] {
        let mut rate = Vec::new();
        for congestion in [
            CongestionControl::Tolerant,
            CongestionControl::NewReno,
            CongestionControl::None,
        ] {
            let mut run = Run::bulk(mode, 11, loopback(5.0), bytes);
            run.window = 64;
            run.send_buffer = 64 * run.max_payload;
            run.congestion = congestion;
            let outcome = simulate(&run);
            assert_exact(&run, &outcome);
            eprintln!(
                "{mode} {congestion}: {:.1} MB/s simulated, {} of {} frames resent ({} on timeout), {} cuts",
                goodput(bytes, &outcome) / 1e6,
                outcome.retransmits,
                outcome.data_frames,
                outcome.timeout_retransmits,
                outcome.congestion_cuts,
            );
            if congestion == CongestionControl::Tolerant {
                assert_eq!(outcome.congestion_cuts, 0, "{mode}: no queue, no cut");
            }
            rate.push(goodput(bytes, &outcome));
        }
        let [tolerant, newreno, none] = rate[..] else {
            unreachable!()
        };
        assert!(
            tolerant >= 0.9 * none,
            "{mode}: tolerant {tolerant:.0} B/s against none's {none:.0}"
        );
        assert!(
            tolerant >= 2.0 * newreno,
            "{mode}: tolerant {tolerant:.0} B/s against newreno's {newreno:.0}"
        );
    }
}
