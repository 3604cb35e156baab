//! Pacing: the windowed sender spreads a congestion window's frames over a round trip instead
//! of sending them in one burst (a token bucket, after quinn-proto's `connection/pacing.rs`).
//!
//! Why: a window that opens all at once leaves in one burst. After the echo stalls behind a
//! hole (Selective Repeat delivers in order) the whole window's worth of replies comes at
//! once, and on a rate-limited link (`--rate 10mbit --queue 100`) that burst overflows the
//! queue: one loss turns into twenty, and the congestion window is halved for a queue that
//! was empty a moment before. Paced at 1.25 windows per smoothed round trip, the sender is a
//! little faster than the path delivers (the window over the round trip is what it
//! delivers), so pacing costs no throughput, and a burst after a stall drains as fast as it
//! comes.
//!
//! Frames, not bytes: the congestion window counts frames. The bucket holds what two
//! milliseconds at that rate send, at least [`MIN_BURST`] and at most [`MAX_BURST`] frames,
//! and a sender that emptied it waits until it is full again: one timer per burst, not one
//! per frame. A wait shorter than the runtime's timer can time ([`MIN_WAIT`]) is no wait:
//! on loopback, where a window's round trip is a fraction of a millisecond, nothing is paced.

use std::time::{Duration, Instant};

/// The bucket holds what this long sends at the pacing rate (before the bounds below).
const BURST_INTERVAL: Duration = Duration::from_millis(2);

/// The smallest bucket, in frames: fewer would mean a timer every few frames on a slow link.
const MIN_BURST: u32 = 10;

/// The largest bucket, in frames (the extended modes' largest window is a few thousand).
const MAX_BURST: u32 = 256;

/// The shortest wait worth a timer: tokio's timers tick every millisecond, so a shorter
/// wait would last a whole tick, and sending now is nearer the pacing rate than that.
const MIN_WAIT: Duration = Duration::from_millis(1);

/// The pacing rate over the window's own: the path delivers a window per round trip, so
/// pacing at exactly that would never let the sender catch up after a pause.
const RATE_FACTOR: f64 = 1.25;

/// A token bucket of frames, refilled at [`RATE_FACTOR`] windows per smoothed round trip.
#[derive(Clone, Debug)]
pub struct Pacer {
    /// Frames the bucket holds when full.
    capacity: u32,
    /// The window `capacity` was computed for.
    window: u32,
    /// Frames that may go now (fractions accumulate between refills).
    tokens: f64,
    /// When the bucket was last refilled.
    refilled: Instant,
}

impl Pacer {
    /// A full bucket for `window` frames per `srtt`.
    pub fn new(srtt: Duration, window: u32, now: Instant) -> Self {
        let capacity = capacity(srtt, window);
        Pacer {
            capacity,
            window,
            tokens: f64::from(capacity),
            refilled: now,
        }
    }

    /// When the next frame may go: `None` for now, or the time the bucket is full again.
    pub fn delay(&mut self, now: Instant, srtt: Duration, window: u32) -> Option<Instant> {
        let window = window.max(1);
        if window != self.window {
            self.capacity = capacity(srtt, window);
            self.tokens = self.tokens.min(f64::from(self.capacity));
            self.window = window;
        }
        if self.tokens >= 1.0 {
            return None;
        }
        let rate = rate(srtt, window);
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + rate * elapsed).min(f64::from(self.capacity));
        self.refilled = now;
        if self.tokens >= 1.0 {
            return None;
        }
        // Wait for a whole burst, not one frame: one wake-up per bucket.
        let wait = Duration::from_secs_f64((f64::from(self.capacity) - self.tokens) / rate);
        (wait >= MIN_WAIT).then(|| now + wait)
    }

    /// A frame went.
    pub fn on_send(&mut self) {
        self.tokens = (self.tokens - 1.0).max(0.0);
    }
}

/// Frames per second: [`RATE_FACTOR`] windows per round trip.
fn rate(srtt: Duration, window: u32) -> f64 {
    // A round trip under a microsecond is no round trip a timer can pace.
    RATE_FACTOR * f64::from(window) / srtt.as_secs_f64().max(1e-6)
}

fn capacity(srtt: Duration, window: u32) -> u32 {
    let frames = rate(srtt, window) * BURST_INTERVAL.as_secs_f64();
    (frames as u32).clamp(MIN_BURST, MAX_BURST)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Sends as many frames as the pacer lets go at `now`; returns them and the delay.
    fn burst(
        pacer: &mut Pacer,
        now: Instant,
        srtt: Duration,
        window: u32,
    ) -> (u32, Option<Instant>) {
        let mut sent = 0;
        loop {
            match pacer.delay(now, srtt, window) {
                None => {
                    pacer.on_send();
                    sent += 1;
                    assert!(sent < 10_000, "the pacer never stops");
                }
                wait => return (sent, wait),
            }
        }
    }

    #[test]
    fn a_slow_path_gets_bursts_of_ten_at_a_quarter_above_its_rate() {
        // 128 frames per 250 ms: 512 frames/s delivered, paced at 640/s.
        let start = Instant::now();
        let mut pacer = Pacer::new(ms(250), 128, start);
        let (sent, wait) = burst(&mut pacer, start, ms(250), 128);
        assert_eq!(sent, MIN_BURST);
        let wait = wait.expect("the bucket is empty").duration_since(start);
        // Ten frames at 640/s: 15.6 ms.
        assert!((wait.as_secs_f64() - 10.0 / 640.0).abs() < 1e-4, "{wait:?}");
        // Over one second the pacer lets about 640 frames go, never a burst above ten.
        let mut now = start + wait;
        let mut total = sent;
        while now < start + Duration::from_secs(1) {
            let (sent, wait) = burst(&mut pacer, now, ms(250), 128);
            assert!(sent <= MIN_BURST, "{sent}");
            total += sent;
            now = wait.unwrap();
        }
        assert!((630..=660).contains(&total), "{total} frames in a second");
    }

    #[test]
    fn on_loopback_nothing_waits() {
        // 256 frames per 100 µs: 3.2 million frames/s; the largest bucket refills in 80 µs,
        // less than a timer tick.
        let start = Instant::now();
        let srtt = Duration::from_micros(100);
        let mut pacer = Pacer::new(srtt, 256, start);
        assert_eq!(pacer.capacity, MAX_BURST);
        for _ in 0..10_000 {
            assert_eq!(pacer.delay(start, srtt, 256), None);
            pacer.on_send();
        }
    }

    #[test]
    fn the_largest_bucket_waits_once_its_refill_takes_more_than_a_timer_tick() {
        // 256 frames per 1.5 ms: 213,333 frames/s, the largest bucket refills in 1.2 ms.
        let start = Instant::now();
        let srtt = Duration::from_micros(1500);
        let mut pacer = Pacer::new(srtt, 256, start);
        let (sent, wait) = burst(&mut pacer, start, srtt, 256);
        assert_eq!(sent, MAX_BURST);
        let wait = wait.expect("more than a tick's wait").duration_since(start);
        assert!((wait.as_secs_f64() - 0.0012).abs() < 1e-6, "{wait:?}");
    }

    #[test]
    fn a_pause_refills_the_bucket_but_never_past_its_capacity() {
        let start = Instant::now();
        let mut pacer = Pacer::new(ms(100), 50, start);
        let (sent, _) = burst(&mut pacer, start, ms(100), 50);
        assert_eq!(sent, MIN_BURST);
        let (sent, _) = burst(&mut pacer, start + Duration::from_secs(10), ms(100), 50);
        assert_eq!(sent, MIN_BURST);
    }

    #[test]
    fn a_smaller_window_shrinks_the_bucket_and_slows_the_refill() {
        let start = Instant::now();
        // 2,560 frames per 10 ms: the bucket holds 256 (2 ms at 320,000/s, capped).
        let mut pacer = Pacer::new(ms(10), 2560, start);
        assert_eq!(pacer.capacity, MAX_BURST);
        // The window halves twice: 640 per 10 ms is 80,000/s, 160 frames in 2 ms.
        let (sent, wait) = burst(&mut pacer, start, ms(10), 640);
        assert_eq!(sent, 160);
        let wait = wait.unwrap().duration_since(start);
        assert!((wait.as_secs_f64() - 0.002).abs() < 1e-5, "{wait:?}");
    }
}
