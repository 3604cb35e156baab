//! The admin protocol's answers, read from [`MonitorSources`]; and `CONFIG`, which changes
//! the idle timeout and the link emulator with the same validation as the command line.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use super::protocol::AdminContext;
use crate::event::Level;
use crate::impair::settings::{parse_delay, parse_queue};
use crate::impair::{BitRate, BurstLoss, DirectionSettings, Percent};
use crate::monitor::MonitorSources;
use crate::monitor::conns::ConnKey;
use crate::topology::{LinkDirection, Role};

/// The shortest and longest idle timeouts `CONFIG idle_timeout` accepts.
pub const IDLE_TIMEOUT_RANGE: (Duration, Duration) =
    (Duration::from_millis(100), Duration::from_hours(24));

/// Emulator settings `CONFIG` knows, each also as `NAME_to_proxy2` / `NAME_to_proxy1`.
pub const EMULATOR_PARAMS: [&str; 11] = [
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

fn addr(addr: Option<SocketAddr>) -> String {
    addr.map_or_else(|| "-".to_string(), |a| a.to_string())
}

fn time(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}

fn role_label(role: Role) -> &'static str {
    role.label()
}

impl MonitorSources {
    /// Sets one emulator setting in the given directions; the value is parsed once, before
    /// anything changes, so a bad value changes nothing.
    fn config_emulator(
        &self,
        base: &str,
        directions: &[LinkDirection],
        value: &str,
    ) -> Result<String, String> {
        let Some(emulator) = &self.emulator else {
            return Err(format!(
                "{} has no link emulator (the lab and the proxies have one)",
                self.name
            ));
        };
        let change = parse_setting(base, value)?;
        for direction in directions {
            let emulated = emulator.direction(*direction);
            let mut settings = emulated.settings();
            change(&mut settings);
            emulated.set(settings);
        }
        let which = directions
            .iter()
            .map(|d| d.arrow())
            .collect::<Vec<_>>()
            .join(" and ");
        let now = emulator.settings();
        Ok(format!(
            "{base} set to {value} ({which}); link now p1→p2 {} | p2→p1 {}",
            now.to_proxy2.summary(),
            now.to_proxy1.summary()
        ))
    }
}

type Change = Box<dyn Fn(&mut DirectionSettings)>;

/// Parses one emulator setting's value into the change it makes.
fn parse_setting(base: &str, value: &str) -> Result<Change, String> {
    let off = matches!(
        value.to_ascii_lowercase().as_str(),
        "off" | "none" | "no" | "false" | "0"
    );
    Ok(match base {
        "loss" | "dup" | "reorder" | "corrupt" => {
            let pct: Percent = value.parse()?;
            match base {
                "loss" => Box::new(move |s| s.loss = pct),
                "dup" => Box::new(move |s| s.dup = pct),
                "reorder" => Box::new(move |s| s.reorder = pct),
                _ => Box::new(move |s| s.corrupt = pct),
            }
        }
        "delay" | "jitter" | "reorder_wait" => {
            let time = parse_delay(value)?;
            match base {
                "delay" => Box::new(move |s| s.delay = time),
                "jitter" => Box::new(move |s| s.jitter = time),
                _ => Box::new(move |s| s.reorder_wait = time),
            }
        }
        "rate" if off => Box::new(|s| s.rate = None),
        "rate" => {
            let rate: BitRate = value.parse()?;
            Box::new(move |s| s.rate = Some(rate))
        }
        "queue" => {
            let frames = parse_queue(value)?;
            Box::new(move |s| s.queue = frames)
        }
        "burst" if off => Box::new(|s| s.burst = None),
        "burst" => {
            let burst: BurstLoss = value.parse()?;
            Box::new(move |s| s.burst = Some(burst))
        }
        "blackhole" => {
            let on = match value.to_ascii_lowercase().as_str() {
                "on" | "yes" | "true" | "1" => true,
                _ if off => false,
                _ => return Err(format!("blackhole is on or off, not '{value}'")),
            };
            Box::new(move |s| s.blackhole = on)
        }
        _ => unreachable!("only names in EMULATOR_PARAMS get here"),
    })
}

/// Reads `15` as seconds (the seed's `CONFIG timeout 15`) and anything else as humantime.
fn parse_idle_timeout(value: &str) -> Result<Duration, String> {
    let timeout = match value.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => humantime::parse_duration(value)
            .map_err(|_| format!("'{value}' is not a duration (15, 30s, 5m)"))?,
    };
    let (min, max) = IDLE_TIMEOUT_RANGE;
    if !(min..=max).contains(&timeout) {
        return Err(format!(
            "an idle timeout is from {} to {}",
            humantime::format_duration(min),
            humantime::format_duration(max)
        ));
    }
    Ok(timeout)
}

impl AdminContext for MonitorSources {
    fn name(&self) -> &str {
        self.name
    }

    fn stats(&self) -> Vec<String> {
        let mut lines = vec![
            format!("monitored {}", self.name),
            format!(
                "uptime_seconds {}",
                self.started.elapsed().unwrap_or_default().as_secs()
            ),
        ];
        let conns = &self.conns;
        for role in self.roles() {
            let t = conns.totals(role);
            let r = role_label(role);
            lines.push(format!("{r}_connections_total {}", t.opened));
            lines.push(format!("{r}_connections_current {}", t.current));
            lines.push(format!("{r}_connections_peak {}", t.peak));
            if role != Role::EchoServer {
                lines.push(format!("{r}_connections_refused {}", t.refused));
                lines.push(format!("{r}_connections_unanswered {}", t.unanswered));
            }
        }
        for (endpoint, stats) in &self.links {
            let s = stats.snapshot();
            let e = endpoint.label();
            lines.push(format!("{e}_frames_sent {}", s.sent.total()));
            lines.push(format!("{e}_frames_received {}", s.received.total()));
            lines.push(format!("{e}_bytes_sent {}", s.sent_bytes));
            lines.push(format!("{e}_bytes_received {}", s.received_bytes));
            lines.push(format!("{e}_malformed {}", s.malformed));
            lines.push(format!("{e}_ignored {}", s.ignored));
            lines.push(format!("{e}_unauthentic {}", s.unauthentic));
            lines.push(format!("{e}_replayed {}", s.replayed));
        }
        if let Some(emulator) = &self.emulator {
            let report = emulator.report();
            lines.push(format!("link_seed {}", report.seed));
            for direction in [LinkDirection::ToProxy2, LinkDirection::ToProxy1] {
                let d = report.direction(direction);
                let name = match direction {
                    LinkDirection::ToProxy2 => "link_to_proxy2",
                    LinkDirection::ToProxy1 => "link_to_proxy1",
                };
                lines.push(format!(
                    "{name} sent {} delivered {} dropped {} duplicated {} reordered {} corrupted {} delayed {} queued {}",
                    d.sent,
                    d.delivered,
                    d.dropped,
                    d.duplicated,
                    d.reordered,
                    d.corrupted,
                    d.delayed,
                    d.queued
                ));
            }
        }
        if let Some(capture) = &self.capture {
            lines.push(format!(
                "capture_frames_written {}",
                capture.frames_written()
            ));
        }
        lines.push(format!("events_dropped {}", self.events.dropped()));
        lines
    }

    fn connections(&self) -> Vec<String> {
        self.conns
            .snapshot()
            .rows
            .into_iter()
            .map(|row| {
                let id = match row.key {
                    ConnKey::Server(_) => String::new(),
                    key => format!(
                        " id={}",
                        key.id().map(|i| i.to_string()).unwrap_or_default()
                    ),
                };
                format!(
                    "{}{id} state={} peer={} destination={} user={} sent={} received={} since={}",
                    role_label(row.key.role()),
                    format!("{:?}", row.state).to_lowercase(),
                    addr(row.peer),
                    row.destination.as_deref().unwrap_or("-"),
                    row.user.as_deref().unwrap_or("-"),
                    row.bytes_out,
                    row.bytes_in,
                    time(row.since)
                )
            })
            .collect()
    }

    fn users(&self) -> Vec<String> {
        self.conns.users()
    }

    fn access_log(&self, user: Option<&str>) -> Vec<String> {
        self.conns
            .access_log(user)
            .into_iter()
            .map(|entry| {
                let id = entry
                    .key
                    .id()
                    .map(|id| format!(" id={id}"))
                    .unwrap_or_default();
                format!(
                    "{} {}{id} peer={} destination={} user={} {}",
                    time(entry.time),
                    role_label(entry.key.role()),
                    addr(entry.peer),
                    entry.destination.as_deref().unwrap_or("-"),
                    entry.user.as_deref().unwrap_or("anonymous"),
                    entry.outcome.label()
                )
            })
            .collect()
    }

    fn settings(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if let Some(timeout) = self.idle_timeouts.first() {
            lines.push(format!(
                "idle_timeout {}",
                humantime::format_duration(timeout.get())
            ));
        }
        if let Some(emulator) = &self.emulator {
            for direction in [LinkDirection::ToProxy2, LinkDirection::ToProxy1] {
                let s = emulator.direction(direction).settings();
                let suffix = match direction {
                    LinkDirection::ToProxy2 => "to_proxy2",
                    LinkDirection::ToProxy1 => "to_proxy1",
                };
                let burst = s.burst.map_or_else(|| "off".to_string(), |b| b.to_string());
                let rate = s.rate.map_or_else(|| "off".to_string(), |r| r.to_string());
                lines.push(format!(
                    "{suffix}: loss {} burst {burst} delay {} jitter {} dup {} reorder {} reorder_wait {} corrupt {} rate {rate} queue {} blackhole {}",
                    s.loss.get(),
                    humantime::format_duration(s.delay),
                    humantime::format_duration(s.jitter),
                    s.dup.get(),
                    s.reorder.get(),
                    humantime::format_duration(s.reorder_wait),
                    s.corrupt.get(),
                    s.queue,
                    if s.blackhole { "on" } else { "off" },
                ));
            }
            lines.push(format!(
                "emulator parameters: {} (both ways; NAME_to_proxy2 or NAME_to_proxy1 for one); link clear",
                EMULATOR_PARAMS.join(", ")
            ));
        }
        lines
    }

    fn config(&self, param: &str, value: &str, user: &str) -> Result<String, String> {
        let param = param.to_ascii_lowercase();
        let message = match param.as_str() {
            "idle_timeout" | "timeout" => {
                if self.idle_timeouts.is_empty() {
                    return Err(format!("{} has no idle timeout", self.name));
                }
                let timeout = parse_idle_timeout(value)?;
                for idle in &self.idle_timeouts {
                    idle.set(timeout);
                }
                format!("{param} set to {}", humantime::format_duration(timeout))
            }
            "link" if value.eq_ignore_ascii_case("clear") => {
                let Some(emulator) = &self.emulator else {
                    return Err(format!("{} has no link emulator", self.name));
                };
                emulator.set(Default::default());
                "link cleared both ways".to_string()
            }
            "link" => return Err("CONFIG link takes one value: clear".to_string()),
            _ => {
                let (base, directions) = if let Some(base) = param.strip_suffix("_to_proxy2") {
                    (base, vec![LinkDirection::ToProxy2])
                } else if let Some(base) = param.strip_suffix("_to_proxy1") {
                    (base, vec![LinkDirection::ToProxy1])
                } else {
                    (
                        param.as_str(),
                        vec![LinkDirection::ToProxy2, LinkDirection::ToProxy1],
                    )
                };
                if !EMULATOR_PARAMS.contains(&base) {
                    return Err(format!(
                        "unknown parameter '{param}' (idle_timeout, {}, link; send CONFIG alone to see them)",
                        EMULATOR_PARAMS.join(", ")
                    ));
                }
                self.config_emulator(base, &directions, value)?
            }
        };
        self.events.log(
            Level::Info,
            self.log_role,
            format!("admin {user}: {message}"),
        );
        Ok(message)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::event::EventSink;
    use crate::impair::{LinkEmulator, LinkSettings};
    use crate::link::LinkStats;
    use crate::monitor::ConnTable;
    use crate::roles::IdleTimeout;
    use crate::topology::Endpoint;

    fn sources() -> MonitorSources {
        MonitorSources::new(
            "proxy1",
            Role::Proxy1,
            EventSink::disabled(),
            Arc::new(ConnTable::new()),
        )
        .with_link(Endpoint::Proxy1, Arc::new(LinkStats::default()))
        .with_emulator(LinkEmulator::new(LinkSettings::default(), 7))
        .with_idle_timeout(IdleTimeout::new(Duration::from_mins(5)))
    }

    #[test]
    fn config_changes_the_emulator_and_validates() {
        let sources = sources();
        let emulator = sources.emulator.clone().unwrap();
        sources.config("loss", "50", "alice").unwrap();
        assert_eq!(emulator.settings().to_proxy2.loss.get(), 50.0);
        assert_eq!(emulator.settings().to_proxy1.loss.get(), 50.0);
        sources.config("delay_to_proxy1", "20ms", "alice").unwrap();
        assert_eq!(
            emulator.settings().to_proxy1.delay,
            Duration::from_millis(20)
        );
        assert!(emulator.settings().to_proxy2.delay.is_zero());
        sources.config("rate", "2mbit", "alice").unwrap();
        sources.config("rate", "off", "alice").unwrap();
        assert!(emulator.settings().to_proxy2.rate.is_none());
        sources.config("BLACKHOLE", "on", "alice").unwrap();
        assert!(emulator.settings().to_proxy2.blackhole);
        sources.config("link", "clear", "alice").unwrap();
        assert!(emulator.settings().is_clear());

        let err = sources.config("loss", "150", "alice").unwrap_err();
        assert!(err.contains("not a percentage"), "{err}");
        assert!(
            emulator.settings().is_clear(),
            "a bad value changes nothing"
        );
        assert!(sources.config("delay", "forever", "a").is_err());
        assert!(sources.config("blackhole", "maybe", "a").is_err());
        let err = sources.config("color", "red", "a").unwrap_err();
        assert!(err.contains("unknown parameter 'color'"), "{err}");
    }

    #[test]
    fn config_changes_the_idle_timeout_in_seconds_or_humantime() {
        let sources = sources();
        let idle = sources.idle_timeouts[0].clone();
        assert_eq!(
            sources.config("timeout", "15", "a").unwrap(),
            "timeout set to 15s"
        );
        assert_eq!(idle.get(), Duration::from_secs(15));
        sources.config("idle_timeout", "2m", "a").unwrap();
        assert_eq!(idle.get(), Duration::from_mins(2));
        assert!(sources.config("idle_timeout", "0", "a").is_err());
        assert!(sources.config("idle_timeout", "soon", "a").is_err());
    }

    #[test]
    fn a_role_without_an_emulator_says_so() {
        let sources = MonitorSources::new(
            "echo-server",
            Role::EchoServer,
            EventSink::disabled(),
            Arc::new(ConnTable::new()),
        );
        let err = sources.config("loss", "10", "a").unwrap_err();
        assert!(err.contains("has no link emulator"), "{err}");
        assert!(sources.config("idle_timeout", "10", "a").is_err());
    }
}
