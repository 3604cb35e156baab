//! What the emulator did to one datagram, as the event stream and the capture's comments
//! report it.

use std::fmt::Write as _;
use std::time::Duration;

use super::decide::{Corruption, DropCause};

/// The emulator's effect on one datagram. The default (nothing happened) is not reported.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct LinkVerdict {
    /// Dropped, and why: it never crossed the wire.
    pub dropped: Option<DropCause>,
    /// How long the emulator kept it before it went (delay, jitter, rate queue, reorder wait).
    pub held_for: Duration,
    /// One payload bit was flipped.
    pub corrupted: Option<Corruption>,
    /// A copy of this datagram follows it.
    pub duplicated: bool,
    /// This datagram is the copy.
    pub copy: bool,
    /// A frame offered later went ahead of this one.
    pub reordered: bool,
}

impl LinkVerdict {
    pub fn dropped(cause: DropCause) -> Self {
        LinkVerdict {
            dropped: Some(cause),
            ..LinkVerdict::default()
        }
    }

    /// Whether the emulator left this datagram alone.
    pub fn is_plain(&self) -> bool {
        *self == LinkVerdict::default()
    }

    /// `dropped (loss)`, `delayed 21ms, corrupted (byte 7 bit 3)`…; empty when plain.
    pub fn describe(&self) -> String {
        if let Some(cause) = self.dropped {
            return format!("dropped ({})", cause.label());
        }
        let mut parts: Vec<String> = Vec::new();
        if self.copy {
            parts.push("duplicate copy".into());
        }
        if !self.held_for.is_zero() {
            parts.push(format!("delayed {}", short_duration(self.held_for)));
        }
        if self.reordered {
            parts.push("reordered (a later frame went first)".into());
        }
        if let Some(Corruption { offset, bit }) = self.corrupted {
            parts.push(format!("corrupted (byte {offset} bit {bit} flipped)"));
        }
        if self.duplicated {
            parts.push("duplicated (a copy follows)".into());
        }
        parts.join(", ")
    }

    /// The capture comment for this datagram, if the emulator did anything to it. `arrival`
    /// says the emulator acted as the datagram arrived (a standalone proxy's incoming side).
    pub fn capture_note(&self, arrival: bool) -> Option<String> {
        if self.is_plain() {
            return None;
        }
        let mut note = String::from("link emulator");
        if arrival {
            note.push_str(" (on arrival)");
        }
        let _ = write!(note, ": {}", self.describe());
        if self.dropped.is_some() && !arrival {
            note.push_str("; not sent");
        }
        Some(note)
    }
}

/// `21ms`, `1.5s`, `250µs`: precise enough for a trace, short enough for a column.
pub fn short_duration(duration: Duration) -> String {
    let micros = duration.as_micros();
    if micros < 1_000 {
        format!("{micros}µs")
    } else if micros < 10_000_000 {
        let ms = micros as f64 / 1_000.0;
        if ms.fract() == 0.0 || ms >= 100.0 {
            format!("{}ms", ms.round())
        } else {
            format!("{ms:.1}ms")
        }
    } else {
        format!("{:.1}s", duration.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_say_what_happened() {
        assert_eq!(LinkVerdict::default().capture_note(false), None);
        assert_eq!(
            LinkVerdict::dropped(DropCause::Loss)
                .capture_note(false)
                .unwrap(),
            "link emulator: dropped (loss); not sent"
        );
        let verdict = LinkVerdict {
            held_for: Duration::from_millis(21),
            corrupted: Some(Corruption { offset: 7, bit: 3 }),
            duplicated: true,
            ..LinkVerdict::default()
        };
        assert_eq!(
            verdict.capture_note(true).unwrap(),
            "link emulator (on arrival): delayed 21ms, corrupted (byte 7 bit 3 flipped), duplicated (a copy follows)"
        );
    }

    #[test]
    fn short_durations_read_well() {
        assert_eq!(short_duration(Duration::from_micros(250)), "250µs");
        assert_eq!(short_duration(Duration::from_micros(20_400)), "20.4ms");
        assert_eq!(short_duration(Duration::from_millis(20)), "20ms");
        assert_eq!(short_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(short_duration(Duration::from_secs(12)), "12.0s");
    }
}
