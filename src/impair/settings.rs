//! What the link emulator is asked to do: one [`DirectionSettings`] per direction, validated
//! value types ([`Percent`], [`BitRate`], [`BurstLoss`]) and their text forms, shared by the
//! command line (`--loss 10`, `--rate 2mbit`) and scenario files (`loss = 10`,
//! `delay = "20ms"`, `rate = "2mbit"`).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::topology::LinkDirection;

/// Longest delay (and jitter) the emulator accepts. A bound keeps the delay line bounded in
/// time, and nothing in a classroom needs more.
pub const MAX_DELAY: Duration = Duration::from_mins(1);

/// The slowest rate limit accepted: below this one full frame would take over ten seconds.
pub const MIN_RATE: u64 = 1_000;

/// Frames the rate limiter queues by default before it drops (like `tc`'s `limit`).
pub const DEFAULT_QUEUE: usize = 100;

/// The largest rate-limiter queue accepted.
pub const MAX_QUEUE: usize = 100_000;

/// How long a frame picked for reordering waits for a later frame to overtake it by default.
pub const DEFAULT_REORDER_WAIT: Duration = Duration::from_millis(100);

/// A percentage from 0 to 100 (fractions allowed: `0.5`).
#[derive(Clone, Copy, Debug, Default, PartialEq, PartialOrd)]
pub struct Percent(f64);

impl Percent {
    pub const ZERO: Percent = Percent(0.0);
    pub const HUNDRED: Percent = Percent(100.0);

    /// A percentage, or a message saying why `value` is not one.
    pub fn new(value: f64) -> Result<Percent, String> {
        if value.is_finite() && (0.0..=100.0).contains(&value) {
            Ok(Percent(value))
        } else {
            Err(format!("{value} is not a percentage from 0 to 100"))
        }
    }
    pub fn get(self) -> f64 {
        self.0
    }
    pub fn is_zero(self) -> bool {
        self.0 == 0.0
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%", self.0)
    }
}

impl FromStr for Percent {
    type Err = String;
    /// `10`, `10%` and `0.5` are all accepted.
    fn from_str(text: &str) -> Result<Percent, String> {
        let number = text.trim().trim_end_matches('%').trim();
        let value: f64 = number
            .parse()
            .map_err(|_| format!("'{text}' is not a number (a percentage from 0 to 100)"))?;
        Percent::new(value)
    }
}

impl Serialize for Percent {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(self.0)
    }
}

impl<'de> Deserialize<'de> for Percent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Percent, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Number(f64),
            Text(String),
        }
        match Form::deserialize(deserializer)? {
            Form::Number(n) => Percent::new(n),
            Form::Text(text) => text.parse(),
        }
        .map_err(serde::de::Error::custom)
    }
}

/// A rate limit in bits per second. Text forms follow `tc`: a bare number or `bit` is bits
/// per second, `kbit`/`mbit`/`gbit` are thousands, millions and billions of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct BitRate(u64);

impl BitRate {
    pub fn new(bits_per_second: u64) -> Result<BitRate, String> {
        if bits_per_second < MIN_RATE {
            Err(format!(
                "a rate of {bits_per_second} bit/s is too slow (the minimum is {MIN_RATE} bit/s, 1kbit)"
            ))
        } else {
            Ok(BitRate(bits_per_second))
        }
    }
    pub fn bits_per_second(self) -> u64 {
        self.0
    }
    /// How long `bytes` take to go out at this rate.
    pub fn transmit_time(self, bytes: usize) -> Duration {
        let nanos = (bytes as u128 * 8 * 1_000_000_000).div_ceil(u128::from(self.0));
        Duration::from_nanos(nanos.min(u128::from(u64::MAX)) as u64)
    }
}

const RATE_UNITS: [(&str, u64); 4] = [
    ("gbit", 1_000_000_000),
    ("mbit", 1_000_000),
    ("kbit", 1_000),
    ("bit", 1),
];

impl fmt::Display for BitRate {
    /// The largest unit that shows the rate exactly: `2mbit`, `1500kbit`, `1234bit`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (unit, scale) = RATE_UNITS
            .iter()
            .copied()
            .find(|(_, scale)| self.0.is_multiple_of(*scale))
            .unwrap_or(("bit", 1));
        write!(f, "{}{unit}", self.0 / scale)
    }
}

impl FromStr for BitRate {
    type Err = String;
    fn from_str(text: &str) -> Result<BitRate, String> {
        let lower = text.trim().to_ascii_lowercase();
        let split = lower
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(lower.len());
        let (number, unit) = lower.split_at(split);
        let unit = unit.trim();
        let scale = if unit.is_empty() {
            1
        } else {
            RATE_UNITS
                .iter()
                .find(|(name, _)| *name == unit)
                .map(|(_, scale)| *scale)
                .ok_or_else(|| {
                    format!(
                        "unknown rate unit '{unit}' in '{text}' (use bit, kbit, mbit or gbit: bits per second, e.g. 2mbit)"
                    )
                })?
        };
        let value: f64 = number
            .parse()
            .map_err(|_| format!("'{text}' is not a rate (e.g. 2mbit, 512kbit, 64000)"))?;
        let bits = value * scale as f64;
        if !bits.is_finite() || bits > u64::MAX as f64 {
            return Err(format!("'{text}' is not a usable rate"));
        }
        BitRate::new(bits.round() as u64)
    }
}

impl Serialize for BitRate {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for BitRate {
    /// `"2mbit"`, or a number of bits per second.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<BitRate, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Number(u64),
            Text(String),
        }
        match Form::deserialize(deserializer)? {
            Form::Number(n) => BitRate::new(n),
            Form::Text(text) => text.parse(),
        }
        .map_err(serde::de::Error::custom)
    }
}

/// Gilbert-Elliott burst loss: the link is either good or in a burst. Before each frame it may
/// switch state (`enter` % of the time when good, `leave` % when in a burst); frames in a burst
/// are lost at `loss` %. The mean burst lasts `100 / leave` frames.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BurstLoss {
    /// Chance per frame of a burst starting, while the link is good (`p` in the literature).
    pub enter: Percent,
    /// Chance per frame of a burst ending (`r`).
    pub leave: Percent,
    /// Share of frames lost during a burst (`1 - h`); 100 unless told otherwise.
    #[serde(default = "hundred")]
    pub loss: Percent,
}

fn hundred() -> Percent {
    Percent::HUNDRED
}

impl fmt::Display for BurstLoss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{},{},{}",
            self.enter.get(),
            self.leave.get(),
            self.loss.get()
        )
    }
}

impl FromStr for BurstLoss {
    type Err = String;
    /// `ENTER,LEAVE` or `ENTER,LEAVE,LOSS`, each a percentage: `1,25` or `1,25,80`.
    fn from_str(text: &str) -> Result<BurstLoss, String> {
        let parts: Vec<&str> = text.split(',').map(str::trim).collect();
        let usage = || {
            format!(
                "'{text}' is not a burst-loss model: give ENTER,LEAVE[,LOSS] as percentages, e.g. 1,25"
            )
        };
        let (enter, leave, loss) = match parts.as_slice() {
            [enter, leave] => (enter, leave, "100"),
            [enter, leave, loss] => (enter, leave, *loss),
            _ => return Err(usage()),
        };
        let burst = BurstLoss {
            enter: enter.parse().map_err(|e| format!("{}: {e}", usage()))?,
            leave: leave.parse().map_err(|e| format!("{}: {e}", usage()))?,
            loss: loss.parse().map_err(|e| format!("{}: {e}", usage()))?,
        };
        if burst.leave.is_zero() && !burst.enter.is_zero() {
            return Err(format!(
                "'{text}': LEAVE is 0, so the first burst would never end (use --blackhole for that)"
            ));
        }
        Ok(burst)
    }
}

/// Everything the emulator does to the frames of one direction. The default does nothing.
///
/// In scenario files every field is optional:
/// `{ loss = 10, delay = "20ms", jitter = "5ms", dup = 1, reorder = 2, corrupt = 0.5,
///    rate = "2mbit", queue = 100, blackhole = false, burst = { enter = 1, leave = 25 } }`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DirectionSettings {
    /// Share of frames dropped at random, each frame on its own.
    pub loss: Percent,
    /// Burst loss on top of `loss`, if any.
    pub burst: Option<BurstLoss>,
    /// Time every frame spends on the link.
    #[serde(with = "duration_text")]
    pub delay: Duration,
    /// Each frame's delay varies uniformly within ± this (never below zero). Jitter never lets
    /// a frame overtake an earlier one: reordering is only what `reorder` asks for.
    #[serde(with = "duration_text")]
    pub jitter: Duration,
    /// Share of frames sent twice (the copy right behind the original).
    pub dup: Percent,
    /// Share of frames held back until the next frame has gone ahead of them.
    pub reorder: Percent,
    /// How long a held-back frame waits for a later frame to overtake it; then it goes
    /// anyway (late, but not reordered).
    #[serde(with = "duration_text")]
    pub reorder_wait: Duration,
    /// Share of `D` frames with one payload bit flipped. Headers and frames without payload
    /// are never touched, so a corrupted frame still reaches its connection.
    pub corrupt: Percent,
    /// Bandwidth of the link; unlimited when absent.
    pub rate: Option<BitRate>,
    /// Frames the rate limiter holds (including the one going out); more are dropped.
    #[serde(deserialize_with = "queue_frames")]
    pub queue: usize,
    /// Drop everything.
    pub blackhole: bool,
}

impl Default for DirectionSettings {
    fn default() -> Self {
        DirectionSettings {
            loss: Percent::ZERO,
            burst: None,
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            dup: Percent::ZERO,
            reorder: Percent::ZERO,
            reorder_wait: DEFAULT_REORDER_WAIT,
            corrupt: Percent::ZERO,
            rate: None,
            queue: DEFAULT_QUEUE,
            blackhole: false,
        }
    }
}

impl DirectionSettings {
    /// Whether these settings leave frames alone. `reorder_wait` and `queue` only shape what
    /// `reorder` and `rate` do, so they do not count.
    pub fn is_clear(&self) -> bool {
        // Named field by field (no `..`), so a new setting cannot be forgotten here.
        let DirectionSettings {
            loss,
            burst,
            delay,
            jitter,
            dup,
            reorder,
            reorder_wait: _,
            corrupt,
            rate,
            queue: _,
            blackhole,
        } = self;
        loss.is_zero()
            && burst.is_none()
            && delay.is_zero()
            && jitter.is_zero()
            && dup.is_zero()
            && reorder.is_zero()
            && corrupt.is_zero()
            && rate.is_none()
            && !blackhole
    }

    /// A short human summary: `loss 10%, delay 20ms±5ms, rate 2mbit` or `clear`.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        if self.blackhole {
            parts.push("blackhole".to_string());
        }
        if !self.loss.is_zero() {
            parts.push(format!("loss {}", self.loss));
        }
        if let Some(burst) = &self.burst {
            parts.push(format!(
                "burst {}/{}/{}",
                burst.enter, burst.leave, burst.loss
            ));
        }
        if !self.delay.is_zero() || !self.jitter.is_zero() {
            let mut delay = format!("delay {}", humantime::format_duration(self.delay));
            if !self.jitter.is_zero() {
                delay.push_str(&format!("±{}", humantime::format_duration(self.jitter)));
            }
            parts.push(delay);
        }
        if !self.dup.is_zero() {
            parts.push(format!("dup {}", self.dup));
        }
        if !self.reorder.is_zero() {
            parts.push(format!("reorder {}", self.reorder));
        }
        if !self.corrupt.is_zero() {
            parts.push(format!("corrupt {}", self.corrupt));
        }
        if let Some(rate) = self.rate {
            parts.push(format!("rate {rate} (queue {})", self.queue));
        }
        if parts.is_empty() {
            "clear".to_string()
        } else {
            parts.join(", ")
        }
    }
}

/// The emulator's settings for both directions of the link.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LinkSettings {
    /// Frames proxy1 sends to proxy2.
    pub to_proxy2: DirectionSettings,
    /// Frames proxy2 sends to proxy1.
    pub to_proxy1: DirectionSettings,
}

impl LinkSettings {
    /// The same settings both ways.
    pub fn symmetric(settings: DirectionSettings) -> Self {
        LinkSettings {
            to_proxy2: settings.clone(),
            to_proxy1: settings,
        }
    }
    pub fn direction(&self, direction: LinkDirection) -> &DirectionSettings {
        match direction {
            LinkDirection::ToProxy2 => &self.to_proxy2,
            LinkDirection::ToProxy1 => &self.to_proxy1,
        }
    }
    pub fn direction_mut(&mut self, direction: LinkDirection) -> &mut DirectionSettings {
        match direction {
            LinkDirection::ToProxy2 => &mut self.to_proxy2,
            LinkDirection::ToProxy1 => &mut self.to_proxy1,
        }
    }
    pub fn is_clear(&self) -> bool {
        self.to_proxy2.is_clear() && self.to_proxy1.is_clear()
    }
}

/// Parses a delay or jitter: humantime text (`20ms`, `1.5s`, `0`), at most [`MAX_DELAY`].
pub fn parse_delay(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let duration = if text == "0" {
        Duration::ZERO
    } else {
        humantime::parse_duration(text)
            .map_err(|e| format!("'{text}' is not a duration like 20ms or 1.5s: {e}"))?
    };
    if duration > MAX_DELAY {
        return Err(format!(
            "{} is longer than the {}s the emulator allows",
            humantime::format_duration(duration),
            MAX_DELAY.as_secs()
        ));
    }
    Ok(duration)
}

/// Parses a rate-limiter queue length in frames.
pub fn parse_queue(text: &str) -> Result<usize, String> {
    let frames: usize = text
        .trim()
        .parse()
        .map_err(|_| format!("'{text}' is not a number of frames"))?;
    if (1..=MAX_QUEUE).contains(&frames) {
        Ok(frames)
    } else {
        Err(format!(
            "a queue of {frames} frames is out of range (1 to {MAX_QUEUE})"
        ))
    }
}

fn queue_frames<'de, D: Deserializer<'de>>(deserializer: D) -> Result<usize, D::Error> {
    let frames = usize::deserialize(deserializer)?;
    parse_queue(&frames.to_string()).map_err(serde::de::Error::custom)
}

/// Durations as humantime text (`"20ms"`) in scenario files and reports.
mod duration_text {
    use super::{Deserialize, Deserializer, Duration, Serializer, parse_delay};

    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&humantime::format_duration(*value))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        parse_delay(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_accept_plain_percent_sign_and_fractions() {
        assert_eq!("10".parse::<Percent>().unwrap().get(), 10.0);
        assert_eq!("10%".parse::<Percent>().unwrap().get(), 10.0);
        assert_eq!("0.5".parse::<Percent>().unwrap().get(), 0.5);
        assert_eq!("100".parse::<Percent>().unwrap(), Percent::HUNDRED);
    }

    #[test]
    fn percentages_out_of_range_say_why() {
        let err = "150".parse::<Percent>().unwrap_err();
        assert!(
            err.contains("150 is not a percentage from 0 to 100"),
            "{err}"
        );
        assert!("-1".parse::<Percent>().is_err());
        assert!("NaN".parse::<Percent>().is_err());
        let err = "ten".parse::<Percent>().unwrap_err();
        assert!(err.contains("not a number"), "{err}");
    }

    #[test]
    fn rates_use_tc_units_and_print_back() {
        let cases = [
            ("2mbit", 2_000_000),
            ("2MBIT", 2_000_000),
            ("512kbit", 512_000),
            ("1.5mbit", 1_500_000),
            ("64000", 64_000),
            ("64000bit", 64_000),
            ("1gbit", 1_000_000_000),
        ];
        for (text, bits) in cases {
            let rate: BitRate = text.parse().unwrap();
            assert_eq!(rate.bits_per_second(), bits, "{text}");
            assert_eq!(rate.to_string().parse::<BitRate>().unwrap(), rate);
        }
        assert_eq!(BitRate::new(1_500_000).unwrap().to_string(), "1500kbit");
    }

    #[test]
    fn bad_rates_say_why() {
        let err = "2mbps".parse::<BitRate>().unwrap_err();
        assert!(err.contains("unknown rate unit 'mbps'"), "{err}");
        let err = "10bit".parse::<BitRate>().unwrap_err();
        assert!(err.contains("too slow"), "{err}");
        assert!("fast".parse::<BitRate>().is_err());
    }

    #[test]
    fn transmit_time_is_bits_over_rate() {
        let rate = BitRate::new(8_000).unwrap(); // 1000 bytes per second
        assert_eq!(rate.transmit_time(100), Duration::from_millis(100));
        assert_eq!(rate.transmit_time(1500), Duration::from_millis(1500));
    }

    #[test]
    fn burst_model_parses_with_default_loss() {
        let burst: BurstLoss = "1,25".parse().unwrap();
        assert_eq!(burst.enter.get(), 1.0);
        assert_eq!(burst.leave.get(), 25.0);
        assert_eq!(burst.loss, Percent::HUNDRED);
        let burst: BurstLoss = "2, 50, 80".parse().unwrap();
        assert_eq!(burst.loss.get(), 80.0);
        assert!("1".parse::<BurstLoss>().is_err());
        assert!(
            "1,0"
                .parse::<BurstLoss>()
                .unwrap_err()
                .contains("never end")
        );
        assert!("1,200".parse::<BurstLoss>().is_err());
    }

    #[test]
    fn delays_are_humantime_and_bounded() {
        assert_eq!(parse_delay("20ms").unwrap(), Duration::from_millis(20));
        assert_eq!(parse_delay("0").unwrap(), Duration::ZERO);
        assert!(parse_delay("2m").unwrap_err().contains("longer than"));
        assert!(parse_delay("soon").is_err());
    }

    #[test]
    fn settings_round_trip_through_toml_with_readable_values() {
        let text = r#"
            [to_proxy2]
            loss = 10
            delay = "20ms"
            jitter = "5ms"
            dup = 1
            reorder = 2
            corrupt = 0.5
            rate = "2mbit"
            queue = 50
            burst = { enter = 1, leave = 25 }

            [to_proxy1]
            blackhole = true
        "#;
        let settings: LinkSettings = toml::from_str(text).unwrap();
        let up = &settings.to_proxy2;
        assert_eq!(up.loss.get(), 10.0);
        assert_eq!(up.delay, Duration::from_millis(20));
        assert_eq!(up.jitter, Duration::from_millis(5));
        assert_eq!(up.rate.unwrap().bits_per_second(), 2_000_000);
        assert_eq!(up.queue, 50);
        assert_eq!(up.burst.unwrap().loss, Percent::HUNDRED);
        assert_eq!(up.reorder_wait, DEFAULT_REORDER_WAIT);
        assert!(settings.to_proxy1.blackhole);
        assert!(!settings.to_proxy1.is_clear());
        assert!(LinkSettings::default().is_clear());

        let json = serde_json::to_value(&settings).unwrap();
        assert_eq!(json["to_proxy2"]["delay"], "20ms");
        assert_eq!(json["to_proxy2"]["rate"], "2mbit");
        let back: LinkSettings = serde_json::from_value(json).unwrap();
        assert_eq!(back, settings);
    }

    #[test]
    fn bad_scenario_values_are_rejected_with_the_reason() {
        let err = toml::from_str::<DirectionSettings>("loss = 150").unwrap_err();
        assert!(err.to_string().contains("not a percentage"), "{err}");
        let err = toml::from_str::<DirectionSettings>("delay = \"forever\"").unwrap_err();
        assert!(err.to_string().contains("not a duration"), "{err}");
        let err = toml::from_str::<DirectionSettings>("los = 1").unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }

    #[test]
    fn summary_names_what_is_on() {
        assert_eq!(DirectionSettings::default().summary(), "clear");
        let settings = DirectionSettings {
            loss: Percent::new(10.0).unwrap(),
            delay: Duration::from_millis(20),
            jitter: Duration::from_millis(5),
            ..DirectionSettings::default()
        };
        assert_eq!(settings.summary(), "loss 10%, delay 20ms±5ms");
    }
}
