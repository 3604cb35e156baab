//! The scenario's `link` settings and the report's `link` section: the one place that talks
//! to the link emulator.
//!
//! In a scenario, `[lab.link]` sets the emulator up at start and a `link = { … }` step changes
//! it live. Both take the emulator's settings keys (`loss`, `burst`, `delay`, `jitter`, `dup`,
//! `reorder`, `reorder_wait`, `corrupt`, `rate`, `queue`, `blackhole`): at the top level they
//! apply to both directions, inside `to_proxy2` / `to_proxy1` to one (and win over the
//! two-way ones). Only the keys given change; `clear = true` first resets everything, and
//! `rate = "off"` / `burst = "off"` remove a rate limit or burst model. `seed` belongs in
//! `[lab.link]` only.
//!
//! ```toml
//! [lab.link]
//! seed = 7
//! loss = 10
//! to_proxy1 = { delay = "20ms" }
//!
//! [[step]]
//! link = { loss = 100 }     # the link goes dark both ways; the delay stays
//! ```

use crate::impair::{DirectionReport, DirectionSettings, LinkReport, LinkSettings};
use crate::lab::{Lab, LabConfig, LabError, LabSnapshot};
use crate::topology::LinkDirection;

/// The settings keys of one direction, as scenario files spell them.
const SETTING_KEYS: [&str; 11] = [
    "loss",
    "burst",
    "delay",
    "jitter",
    "dup",
    "reorder",
    "reorder_wait",
    "corrupt",
    "rate",
    "queue",
    "blackhole",
];

/// Settings that `"off"` removes.
const OPTIONAL_KEYS: [&str; 2] = ["rate", "burst"];

/// Link emulator settings as the scenario wrote them.
#[derive(Clone, Debug, PartialEq)]
pub struct LinkSpec {
    pub settings: toml::Table,
}

impl LinkSpec {
    pub fn new(settings: toml::Table) -> Self {
        LinkSpec { settings }
    }

    /// Whether these settings can be applied: the message says why not. `at_start` is true
    /// for `[lab.link]` (where `seed` may be given), false for a step.
    pub fn check(&self, at_start: bool) -> Result<(), String> {
        for key in self.settings.keys() {
            let known = SETTING_KEYS.contains(&key.as_str())
                || matches!(key.as_str(), "to_proxy2" | "to_proxy1" | "clear")
                || (key == "seed" && at_start);
            if !known {
                return Err(if key == "seed" {
                    "the seed is set once, in [lab.link]; a step cannot change it".into()
                } else {
                    format!(
                        "unknown link setting `{key}`: expected one of {}, to_proxy2, to_proxy1, clear{}",
                        SETTING_KEYS.join(", "),
                        if at_start { ", seed" } else { "" }
                    )
                });
            }
        }
        if let Some(seed) = self.settings.get("seed")
            && self.seed().is_none()
        {
            return Err(format!(
                "seed must be a whole number from 0 to 18446744073709551615 (in quotes above \
                 9223372036854775807), not {seed}"
            ));
        }
        if let Some(clear) = self.settings.get("clear")
            && !clear.is_bool()
        {
            return Err(format!("clear must be true or false, not {clear}"));
        }
        for direction in ["to_proxy2", "to_proxy1"] {
            if let Some(table) = self.settings.get(direction)
                && !table.is_table()
            {
                return Err(format!(
                    "{direction} must be a table of settings, like {{ loss = 10 }}"
                ));
            }
        }
        // Applying to the defaults checks every value (and every key inside the directions).
        self.merged(&LinkSettings::default()).map(|_| ())
    }

    /// The seed the scenario asks for, if any: a TOML integer, or any u64 as a string (TOML
    /// integers stop at 2^63 - 1, and `--seed` takes any u64).
    pub fn seed(&self) -> Option<u64> {
        match self.settings.get("seed")? {
            toml::Value::Integer(n) => u64::try_from(*n).ok(),
            toml::Value::String(text) => text.trim().parse().ok(),
            _ => None,
        }
    }

    /// `current` with these settings applied.
    pub fn merged(&self, current: &LinkSettings) -> Result<LinkSettings, String> {
        let clear = self
            .settings
            .get("clear")
            .and_then(toml::Value::as_bool)
            .unwrap_or(false);
        let mut merged = LinkSettings::default();
        for direction in [LinkDirection::ToProxy2, LinkDirection::ToProxy1] {
            let name = match direction {
                LinkDirection::ToProxy2 => "to_proxy2",
                LinkDirection::ToProxy1 => "to_proxy1",
            };
            let start = if clear {
                DirectionSettings::default()
            } else {
                current.direction(direction).clone()
            };
            let mut table = toml::Table::try_from(&start)
                .map_err(|e| format!("cannot read the current settings: {e}"))?;
            let two_way = self
                .settings
                .iter()
                .filter(|(key, _)| SETTING_KEYS.contains(&key.as_str()));
            let one_way = self
                .settings
                .get(name)
                .and_then(toml::Value::as_table)
                .into_iter()
                .flatten();
            for (key, value) in two_way.chain(one_way) {
                if OPTIONAL_KEYS.contains(&key.as_str()) && value.as_str() == Some("off") {
                    table.remove(key);
                } else {
                    table.insert(key.clone(), value.clone());
                }
            }
            *merged.direction_mut(direction) = table
                .try_into()
                .map_err(|e: toml::de::Error| format!("{name}: {}", e.message()))?;
        }
        Ok(merged)
    }

    /// Puts start-up settings into the lab's configuration.
    pub fn configure(&self, config: &mut LabConfig) {
        // `check` has accepted these settings, so they apply.
        if let Ok(settings) = self.merged(&config.link) {
            config.link = settings;
        }
        if let Some(seed) = self.seed() {
            config.link_seed = Some(seed);
        }
    }

    /// Changes the link settings of a running lab, from the next frame on.
    pub fn apply(&self, lab: &mut Lab) -> Result<(), LabError> {
        let settings = self.merged(&lab.link_settings()).map_err(LabError::Io)?;
        lab.set_link(settings);
        Ok(())
    }

    /// How a step log shows these settings.
    pub fn describe(&self) -> String {
        if self.settings.is_empty() {
            "link settings unchanged (empty)".into()
        } else {
            let parts: Vec<String> = self
                .settings
                .iter()
                .map(|(key, value)| format!("{key} = {value}"))
                .collect();
            format!("link {}", parts.join(", "))
        }
    }
}

/// The report's `link` section: the emulator's own report, with `delivered`, `dropped` and
/// `malformed` counted end to end. `delivered` is what reached the receiving proxy (well-formed
/// or not, copies included) and `dropped` everything that never did: the emulator's drops
/// (`dropped_by`) and any lost beyond it, for example while the receiving proxy was down.
pub fn end_to_end(snapshot: &LabSnapshot) -> LinkReport {
    let mut link = snapshot.link.clone();
    for (report, receiver) in [
        (&mut link.to_proxy2, &snapshot.proxy2),
        (&mut link.to_proxy1, &snapshot.proxy1),
    ] {
        report.delivered = receiver.received.total() + receiver.malformed;
        report.dropped =
            (report.sent + report.duplicated).saturating_sub(report.delivered + report.queued);
        report.malformed = receiver.malformed;
    }
    link
}

/// What the emulator did, one line per direction, for the human summary:
/// `p1→p2 dropped 18 (loss 18), duplicated 0, reordered 0, corrupted 0, delayed 0`.
pub fn emulator_lines(link: &LinkReport) -> Vec<String> {
    [("p1→p2", &link.to_proxy2), ("p2→p1", &link.to_proxy1)]
        .into_iter()
        .map(|(label, d)| {
            let by = d.dropped_by;
            format!(
                "{label} dropped {}{}, duplicated {}, reordered {}, corrupted {}, delayed {}",
                by.total(),
                by.causes(),
                d.duplicated,
                d.reordered,
                d.corrupted,
                d.delayed
            )
        })
        .collect()
}

/// Whether the emulator did anything in this run.
pub fn emulated(link: &LinkReport) -> bool {
    let touched = |d: &DirectionReport| {
        d.dropped_by.total() + d.duplicated + d.reordered + d.corrupted + d.delayed > 0
    };
    !link.settings.is_clear() || touched(&link.to_proxy2) || touched(&link.to_proxy1)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::impair::Percent;

    fn spec(text: &str) -> LinkSpec {
        LinkSpec::new(toml::from_str(text).unwrap())
    }

    #[test]
    fn two_way_keys_apply_both_ways_and_one_way_keys_win() {
        let spec = spec("loss = 10\ndelay = \"20ms\"\nto_proxy1 = { loss = 5 }\nseed = 7");
        spec.check(true).unwrap();
        let settings = spec.merged(&LinkSettings::default()).unwrap();
        assert_eq!(settings.to_proxy2.loss, Percent::new(10.0).unwrap());
        assert_eq!(settings.to_proxy1.loss, Percent::new(5.0).unwrap());
        assert_eq!(settings.to_proxy1.delay, Duration::from_millis(20));
        assert_eq!(spec.seed(), Some(7));
    }

    #[test]
    fn every_seed_fits_a_scenario() {
        let max = spec("seed = \"18446744073709551615\"");
        max.check(true).unwrap();
        assert_eq!(max.seed(), Some(u64::MAX));
        assert_eq!(
            spec("seed = 9223372036854775807").seed(),
            Some(i64::MAX as u64)
        );
        for bad in [
            "seed = \"-1\"",
            "seed = \"18446744073709551616\"",
            "seed = 1.5",
        ] {
            let err = spec(bad).check(true).unwrap_err();
            assert!(err.contains("in quotes"), "{bad}: {err}");
        }
        // Seeds tunlab picks itself fit a TOML integer, so they paste back unquoted.
        for _ in 0..1000 {
            assert!(i64::try_from(crate::impair::random_seed()).is_ok());
        }
    }

    #[test]
    fn a_step_changes_only_what_it_names() {
        let start = spec("loss = 10\ndelay = \"20ms\"\nrate = \"1mbit\"")
            .merged(&LinkSettings::default())
            .unwrap();
        let dark = spec("loss = 100").merged(&start).unwrap();
        assert_eq!(dark.to_proxy2.loss, Percent::HUNDRED);
        assert_eq!(dark.to_proxy2.delay, Duration::from_millis(20));
        let unlimited = spec("rate = \"off\"").merged(&dark).unwrap();
        assert_eq!(unlimited.to_proxy1.rate, None);
        assert_eq!(unlimited.to_proxy1.loss, Percent::HUNDRED);
        let clear = spec("clear = true").merged(&unlimited).unwrap();
        assert!(clear.is_clear());
    }

    #[test]
    fn bad_settings_are_refused_with_the_reason() {
        let cases = [
            ("loss = 150", true, "not a percentage"),
            ("los = 1", true, "unknown link setting `los`"),
            (
                "to_proxy2 = { dealy = \"1ms\" }",
                true,
                "unknown field `dealy`",
            ),
            ("seed = 3", false, "set once, in [lab.link]"),
            ("seed = -3", true, "whole number"),
            ("rate = \"2mbps\"", true, "unknown rate unit"),
            ("to_proxy1 = 3", true, "must be a table"),
        ];
        for (text, at_start, reason) in cases {
            let err = spec(text).check(at_start).unwrap_err();
            assert!(err.contains(reason), "{text}: {err}");
        }
        assert!(spec("").check(false).is_ok());
    }
}
