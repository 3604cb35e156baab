//! The scenario's `link` settings and the report's `link` section: the one place that talks
//! to the link emulator.
//!
//! The emulator (loss, delay, duplication, … per direction, seeded) is its own issue. Until
//! it lands, a scenario's `[lab.link]` table and `link = { … }` steps are kept as opaque TOML
//! and must be empty; connecting the emulator means filling in [`LinkSpec::check`],
//! [`LinkSpec::configure`], [`LinkSpec::apply`] and [`LinkReport::from_snapshot`], nothing else.

use serde::Serialize;

use crate::lab::{Lab, LabConfig, LabError, LabSnapshot};
use crate::link::LinkStatsSnapshot;

/// Link emulator settings as the scenario wrote them.
#[derive(Clone, Debug, PartialEq)]
pub struct LinkSpec {
    pub settings: toml::Table,
}

impl LinkSpec {
    pub fn new(settings: toml::Table) -> Self {
        LinkSpec { settings }
    }

    /// Whether these settings can be applied: the message says why not.
    pub fn check(&self) -> Result<(), String> {
        if self.settings.is_empty() {
            return Ok(());
        }
        let keys: Vec<&str> = self.settings.keys().map(String::as_str).collect();
        Err(format!(
            "this build of tunlab has no link emulator yet, so link settings ({}) cannot be applied; leave the table empty or remove it",
            keys.join(", ")
        ))
    }

    /// Puts start-up settings into the lab's configuration.
    pub fn configure(&self, _config: &mut LabConfig) {
        // Nothing to set until the emulator exists: `check` only lets empty settings through.
    }

    /// Changes the link settings of a running lab.
    pub fn apply(&self, _lab: &mut Lab) -> Result<(), LabError> {
        // Nothing to change until the emulator exists: `check` only lets empty settings through.
        Ok(())
    }

    /// How a step log shows these settings.
    pub fn describe(&self) -> String {
        if self.settings.is_empty() {
            "link settings unchanged (empty)".into()
        } else {
            format!("link settings {}", self.settings)
        }
    }
}

/// What happened to the frames of one direction of the link.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DirectionReport {
    /// Frames the sending proxy put on the link.
    pub sent: u64,
    /// Datagrams that reached the receiving proxy (well-formed or not).
    pub delivered: u64,
    /// Sent but never delivered (lost, or nobody was listening).
    pub dropped: u64,
    /// Extra copies the emulator made.
    pub duplicated: u64,
    /// Frames the emulator delivered out of order.
    pub reordered: u64,
    /// Frames the emulator changed bytes of.
    pub corrupted: u64,
    /// Datagrams the receiving proxy could not decode.
    pub malformed: u64,
}

impl DirectionReport {
    /// From the sender's and the receiver's exact counters. Without an emulator nothing is
    /// duplicated, reordered or corrupted on loopback.
    fn between(sender: &LinkStatsSnapshot, receiver: &LinkStatsSnapshot) -> Self {
        let sent = sender.sent.total();
        let delivered = receiver.received.total() + receiver.malformed;
        DirectionReport {
            sent,
            delivered,
            dropped: sent.saturating_sub(delivered),
            duplicated: 0,
            reordered: 0,
            corrupted: 0,
            malformed: receiver.malformed,
        }
    }
}

/// The report's `link` section: both directions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LinkReport {
    /// proxy1 → proxy2.
    pub to_proxy2: DirectionReport,
    /// proxy2 → proxy1.
    pub to_proxy1: DirectionReport,
}

impl LinkReport {
    pub fn from_snapshot(snapshot: &LabSnapshot) -> Self {
        LinkReport {
            to_proxy2: DirectionReport::between(&snapshot.proxy1, &snapshot.proxy2),
            to_proxy1: DirectionReport::between(&snapshot.proxy2, &snapshot.proxy1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::KindCounts;

    #[test]
    fn empty_settings_pass_and_real_ones_are_refused_clearly() {
        assert!(LinkSpec::new(toml::Table::new()).check().is_ok());
        let mut settings = toml::Table::new();
        settings.insert("loss".into(), toml::Value::Integer(10));
        let message = LinkSpec::new(settings).check().unwrap_err();
        assert!(message.contains("no link emulator"), "{message}");
        assert!(message.contains("loss"), "{message}");
    }

    #[test]
    fn dropped_is_what_was_sent_and_not_delivered() {
        let sender = LinkStatsSnapshot {
            sent: KindCounts {
                connect: 2,
                data: 8,
                ..KindCounts::default()
            },
            ..LinkStatsSnapshot::default()
        };
        let receiver = LinkStatsSnapshot {
            received: KindCounts {
                connect: 2,
                data: 5,
                ..KindCounts::default()
            },
            malformed: 1,
            ..LinkStatsSnapshot::default()
        };
        let report = DirectionReport::between(&sender, &receiver);
        assert_eq!(
            (
                report.sent,
                report.delivered,
                report.dropped,
                report.malformed
            ),
            (10, 8, 2, 1)
        );
    }
}
