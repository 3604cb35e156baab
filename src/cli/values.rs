//! The engine's enums as clap values (`--wire`, `--cc`, `--capture-format`), implemented
//! here by hand so that the engine does not depend on clap. Each value's name is the
//! engine's own (`name()`, the same as in scenario files); the help is what `--help` lists
//! under the flag.

use clap::ValueEnum;
use clap::builder::PossibleValue;

use crate::capture::CaptureFormat;
use crate::transport::CongestionControl;
use crate::wire::WireMode;

impl ValueEnum for WireMode {
    fn value_variants<'a>() -> &'a [Self] {
        &WireMode::ALL
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        let help = match self {
            WireMode::Classic => {
                "The course's format: `C<id>`, `C<id>OK`, `C<id>NOK`, `D<id><bytes>`, `X<id>`; \
                 ids 0-9; no acks, losses are lost"
            }
            WireMode::StopAndWait => {
                "The course's alternating-bit format: `C<id>0`, `C<id>0OK`/`NOK`, \
                 `D<id><seq><bytes>`, `A<id><seq>`, `X<id><seq>`; ids 0-9, seq `0`/`1`; one \
                 frame in flight per connection"
            }
            WireMode::GoBackN => {
                "tunlab's extended binary format, Go-Back-N: a window of frames, cumulative \
                 acks; the receiver discards what arrives out of order"
            }
            WireMode::SelectiveRepeat => {
                "tunlab's extended binary format, Selective Repeat: a window of frames, \
                 cumulative plus selective acks; the receiver holds what arrives out of order"
            }
        };
        Some(PossibleValue::new(self.name()).help(help))
    }
}

impl ValueEnum for CongestionControl {
    fn value_variants<'a>() -> &'a [Self] {
        &CongestionControl::ALL
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        let help = match self {
            CongestionControl::Tolerant => {
                "Like newreno, but cuts only for a loss that comes with a queue (the round trip \
                 5 ms over its lowest): random loss cuts nothing (the default)"
            }
            CongestionControl::NewReno => {
                "Slow start, additive increase, halving on every loss, fast recovery"
            }
            CongestionControl::None => {
                "A fixed window: as many frames in flight as `--window` allows, whatever the \
                 losses"
            }
        };
        Some(PossibleValue::new(self.name()).help(help))
    }
}

impl ValueEnum for CaptureFormat {
    fn value_variants<'a>() -> &'a [Self] {
        &CaptureFormat::ALL
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        let help = match self {
            CaptureFormat::Pcap => "Classic pcap, microsecond timestamps; opens in every tool",
            CaptureFormat::Pcapng => {
                "Adds a description of the capture and per-frame comments (what the link did)"
            }
        };
        // The format's name on the command line is its file name extension.
        Some(PossibleValue::new(self.extension()).help(help))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every value parses back from the name the engine gives it (and scenario files use),
    /// and says what it is.
    fn round_trips<T>(name: impl Fn(T) -> &'static str)
    where
        T: ValueEnum + Copy + PartialEq + std::fmt::Debug,
    {
        for value in T::value_variants() {
            let possible = value.to_possible_value().unwrap();
            assert_eq!(possible.get_name(), name(*value));
            assert!(possible.get_help().is_some(), "{value:?} has no help");
            assert_eq!(T::from_str(name(*value), false), Ok(*value));
        }
    }

    #[test]
    fn the_values_are_named_as_in_the_engine() {
        round_trips(WireMode::name);
        round_trips(CongestionControl::name);
        round_trips(CaptureFormat::extension);
        assert!(WireMode::from_str("bogus", false).is_err());
    }
}
