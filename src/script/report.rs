//! The run's report: a JSON document (`--report FILE`) and the human summary on stdout,
//! both made from the same [`Report`].
//!
//! The JSON shape is pinned by a test (`tests/script.rs`): add keys freely, but renaming
//! or removing one breaks graders and CI scripts that read it.

use std::fmt::Write as _;

use serde::Serialize;

use super::expect::{self, ClientFacts, Verdict};
use super::link::{emulated, emulator_lines, end_to_end};
use super::runner::Outcome;
use super::scenario::Scenario;
use crate::event::ClientId;
use crate::impair::{LinkReport, LinkSettings};
use crate::lab::LabAddrs;
use crate::link::{KindCounts, LinkStatsSnapshot};
use crate::transport::totals::{
    ConnCounts, Retransmits, TransportTotalsSnapshot, pair_connections,
};
use crate::wire::ConnId;

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The scenario's name.
    pub scenario: String,
    /// The file it came from.
    pub file: String,
    /// Every expectation held (including "every step finished within the deadline").
    pub passed: bool,
    /// From the lab's start to the final snapshot.
    pub duration_ms: u64,
    pub deadline_ms: u64,
    /// Where each role listened.
    pub lab: LabAddrs,
    pub expectations: Vec<Verdict>,
    /// One entry per lab client (with the tunnel connection it had, if any), then any
    /// connection that belonged to no lab client.
    pub connections: Vec<ConnectionReport>,
    /// What happened to the frames of each direction of the link (its `settings` are the
    /// ones in force at the end).
    pub link: LinkReport,
    /// The link emulator's settings when the lab started: a scenario's `link` steps may have
    /// changed them since.
    pub link_at_start: LinkSettings,
    /// Frames by type, each direction, counted where they left and where they arrived.
    pub frames: FramesReport,
    /// What the reliable modes' transports sent at each proxy (all zero in classic mode):
    /// exact counters, like `frames`.
    pub transport: TransportReport,
    /// Capture files written.
    pub captures: Vec<String>,
    /// Frames the capture received (null when capture is off).
    pub captured_frames: Option<u64>,
    /// TCP segments of the lab's legs written to the capture (null without `capture_tcp`).
    pub captured_tcp_segments: Option<u64>,
    pub events: EventsReport,
    /// Each `socks5` step's client, in step order: its reply, whether its message's echo
    /// came back intact (null if it sent none), and a socket error if one ended it.
    pub socks5_clients: Vec<crate::script::socks5_client::Socks5Outcome>,
}

/// One client's tunnel connection.
#[derive(Clone, Debug, Serialize)]
pub struct ConnectionReport {
    /// The tunnel id (null if the client never got one).
    pub id: Option<ConnId>,
    /// The lab client (null for a client that is not the lab's).
    pub client: Option<ClientId>,
    /// Frames proxy1 sent with this connection's id.
    pub frames_to_proxy2: u64,
    /// `D` payload bytes proxy1 sent for it.
    pub bytes_to_proxy2: u64,
    pub frames_to_proxy1: u64,
    pub bytes_to_proxy1: u64,
    /// Bytes the client wrote, and got back.
    pub sent_bytes: u64,
    pub echoed_bytes: u64,
    /// Everything the client was asked to send went through and came back unchanged.
    pub intact: bool,
    /// The client waited for a free id first.
    pub waited: bool,
    /// Data or close frames proxy1's transport sent again for this connection (reliable
    /// modes; exact).
    pub retransmits_to_proxy2: u64,
    /// The same at proxy2.
    pub retransmits_to_proxy1: u64,
    /// open, fin, rst, refused, unanswered, no-free-id, tunnel or error.
    pub close: &'static str,
}

/// Each proxy's transport totals.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct TransportReport {
    /// Sent by proxy1 (toward proxy2).
    pub proxy1: TransportTotalsSnapshot,
    /// Sent by proxy2 (toward proxy1).
    pub proxy2: TransportTotalsSnapshot,
}

#[derive(Clone, Copy, Debug, Serialize)]
pub struct FramesReport {
    pub to_proxy2: DirectionFrames,
    pub to_proxy1: DirectionFrames,
}

#[derive(Clone, Copy, Debug, Serialize)]
pub struct DirectionFrames {
    pub sent: KindCounts,
    pub received: KindCounts,
    /// Frames the receiving proxy dropped on purpose (id not open, unexpected, overflow).
    pub ignored: u64,
    /// Sealed link: datagrams the receiving proxy dropped because they failed
    /// authentication (another key, or changed on the way).
    pub unauthentic: u64,
    /// Sealed link: datagrams the receiving proxy dropped as replays.
    pub replayed: u64,
}

impl DirectionFrames {
    fn between(sender: &LinkStatsSnapshot, receiver: &LinkStatsSnapshot) -> Self {
        DirectionFrames {
            sent: sender.sent,
            received: receiver.received,
            ignored: receiver.ignored,
            unauthentic: receiver.unauthentic,
            replayed: receiver.replayed,
        }
    }
}

#[derive(Clone, Copy, Debug, Serialize)]
pub struct EventsReport {
    /// Events the runner read from the lab's stream.
    pub received: u64,
    /// Events the stream dropped because the runner fell behind: when not 0, the
    /// per-connection numbers may be short (the link and frame counters are exact anyway).
    pub dropped: u64,
}

impl Report {
    pub fn build(scenario: &Scenario, outcome: &Outcome) -> Report {
        let (facts, strangers) = expect::client_facts(outcome);
        let mut expectations = vec![expect::steps_verdict(
            outcome,
            scenario.steps.len(),
            scenario.deadline,
        )];
        expectations.extend(
            scenario
                .expectations
                .iter()
                .map(|e| expect::evaluate(e, outcome, &facts)),
        );
        let pairs = pair_connections(
            &outcome.snapshot.transport_conns.proxy1,
            &outcome.snapshot.transport_conns.proxy2,
        );
        let mut connections: Vec<ConnectionReport> =
            facts.iter().map(|f| client_row(f, &pairs)).collect();
        connections.extend(strangers.into_iter().map(|conn| ConnectionReport {
            id: Some(conn.id),
            client: None,
            frames_to_proxy2: conn.to_proxy2.frames,
            bytes_to_proxy2: conn.to_proxy2.bytes,
            frames_to_proxy1: conn.to_proxy1.frames,
            bytes_to_proxy1: conn.to_proxy1.bytes,
            sent_bytes: 0,
            echoed_bytes: 0,
            intact: false,
            waited: false,
            retransmits_to_proxy2: 0,
            retransmits_to_proxy1: 0,
            close: if conn.freed_at_proxy1 {
                "tunnel"
            } else {
                "open"
            },
        }));
        let snapshot = &outcome.snapshot;
        Report {
            scenario: scenario.name.clone(),
            file: scenario.file.clone(),
            passed: expectations.iter().all(|e| e.passed),
            duration_ms: outcome.duration.as_millis() as u64,
            deadline_ms: scenario.deadline.as_millis() as u64,
            lab: outcome.addrs,
            expectations,
            connections,
            link: end_to_end(snapshot),
            link_at_start: outcome.link_at_start.clone(),
            frames: FramesReport {
                to_proxy2: DirectionFrames::between(&snapshot.proxy1, &snapshot.proxy2),
                to_proxy1: DirectionFrames::between(&snapshot.proxy2, &snapshot.proxy1),
            },
            transport: TransportReport {
                proxy1: snapshot.proxy1.transport,
                proxy2: snapshot.proxy2.transport,
            },
            captures: outcome
                .capture
                .iter()
                .filter_map(|c| c.path.as_ref())
                .map(|p| p.display().to_string())
                .collect(),
            captured_frames: outcome.capture.as_ref().map(|c| c.frames),
            captured_tcp_segments: scenario
                .lab
                .capture_tcp
                .then(|| outcome.capture.as_ref().map(|c| c.tcp_segments))
                .flatten(),
            events: EventsReport {
                received: outcome.fold.events,
                dropped: snapshot.events_dropped,
            },
            socks5_clients: outcome.socks5.clone(),
        }
    }

    /// The human summary: connections, link, expectations, verdict.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "\nconnections");
        let _ = writeln!(
            out,
            "  {:>6}  {:>3}  {:>18}  {:>18}  {:<20}  close",
            "client", "id", "p1→p2 frames/bytes", "p2→p1 frames/bytes", "echo"
        );
        for c in &self.connections {
            let echo = if c.client.is_none() {
                "-".to_string()
            } else if c.intact {
                format!("intact {}/{}", c.echoed_bytes, c.sent_bytes)
            } else if c.echoed_bytes == c.sent_bytes && c.sent_bytes == 0 {
                "nothing sent".to_string()
            } else {
                format!("NOT intact {}/{}", c.echoed_bytes, c.sent_bytes)
            };
            let close = if c.waited {
                format!("{} (waited for an id)", c.close)
            } else {
                c.close.to_string()
            };
            let _ = writeln!(
                out,
                "  {:>6}  {:>3}  {:>18}  {:>18}  {:<20}  {}",
                c.client.map_or("-".into(), |c| c.to_string()),
                c.id.map_or("-".into(), |id| id.to_string()),
                format!("{} / {}", c.frames_to_proxy2, c.bytes_to_proxy2),
                format!("{} / {}", c.frames_to_proxy1, c.bytes_to_proxy1),
                echo,
                close
            );
        }
        if self.connections.is_empty() {
            let _ = writeln!(out, "  (no client was started)");
        }

        let _ = writeln!(out, "\nlink");
        let _ = writeln!(
            out,
            "  {:<6}  {:>6}  {:>9}  {:>7}  {:>9}   frames sent C/OK/NOK/D/A/X",
            "", "sent", "delivered", "dropped", "malformed"
        );
        for (label, link, frames) in [
            ("p1→p2", &self.link.to_proxy2, &self.frames.to_proxy2),
            ("p2→p1", &self.link.to_proxy1, &self.frames.to_proxy1),
        ] {
            let s = &frames.sent;
            let _ = writeln!(
                out,
                "  {:<6}  {:>6}  {:>9}  {:>7}  {:>9}   {}/{}/{}/{}/{}/{}",
                label,
                link.sent,
                link.delivered,
                link.dropped,
                link.malformed,
                s.connect,
                s.ok,
                s.nok,
                s.data,
                s.ack,
                s.close
            );
        }
        let (t1, t2) = (self.transport.proxy1.counts, self.transport.proxy2.counts);
        if t1.data_frames_sent + t2.data_frames_sent > 0 {
            let line = |t: Retransmits| {
                format!(
                    "{} data frames, {} retransmitted ({} timeout, {} fast, {} probe)",
                    t.data_frames_sent,
                    t.total(),
                    t.retransmits_timeout,
                    t.retransmits_fast,
                    t.retransmits_probe
                )
            };
            let _ = writeln!(out, "  transport p1→p2: {}", line(t1));
            let _ = writeln!(out, "  transport p2→p1: {}", line(t2));
        }
        if let Some(frames) = self.captured_frames {
            let place = if self.captures.is_empty() {
                "at the capture tap; this build writes no capture file".to_string()
            } else {
                format!("written to {}", self.captures.join(", "))
            };
            let segments = match self.captured_tcp_segments {
                Some(n) => format!(" and {n} TCP segments of the legs"),
                None => String::new(),
            };
            let _ = writeln!(out, "  capture: {frames} frames{segments} {place}");
        }
        if emulated(&self.link) || !self.link_at_start.is_clear() {
            let _ = writeln!(out, "  link emulator, seed {}:", self.link.seed);
            let settings = |s: &LinkSettings| {
                format!(
                    "p1→p2 {} · p2→p1 {}",
                    s.to_proxy2.summary(),
                    s.to_proxy1.summary()
                )
            };
            let _ = writeln!(out, "    at start: {}", settings(&self.link_at_start));
            if self.link.settings != self.link_at_start {
                let _ = writeln!(out, "    at end:   {}", settings(&self.link.settings));
            }
            for line in emulator_lines(&self.link) {
                let _ = writeln!(out, "    {line}");
            }
        }
        if self.events.dropped > 0 {
            let _ = writeln!(
                out,
                "  warning: {} events were dropped, so the connection table may be short (counters above are exact)",
                self.events.dropped
            );
        }

        let _ = writeln!(out, "\nexpectations");
        for e in &self.expectations {
            let line = e.line.map_or("        ".into(), |l| format!("line {l:<3}"));
            let _ = writeln!(
                out,
                "  {}  {line}  {} — {}",
                if e.passed { "pass" } else { "FAIL" },
                e.name,
                e.detail
            );
        }
        let held = self.expectations.iter().filter(|e| e.passed).count();
        let _ = writeln!(
            out,
            "\n{}: {held} of {} expectations hold ({} \"{}\", {:.2} s)",
            if self.passed { "PASSED" } else { "FAILED" },
            self.expectations.len(),
            self.file,
            self.scenario,
            self.duration_ms as f64 / 1000.0
        );
        out
    }
}

fn client_row(f: &ClientFacts, pairs: &[(&ConnCounts, Option<&ConnCounts>)]) -> ConnectionReport {
    let (p1, p2) = expect::client_transport(pairs, f).unwrap_or_default();
    let traffic = |pick: fn(&super::fold::ConnRecord) -> super::fold::Traffic| {
        f.conn.map(pick).unwrap_or_default()
    };
    let to_proxy2 = traffic(|c| c.to_proxy2);
    let to_proxy1 = traffic(|c| c.to_proxy1);
    ConnectionReport {
        id: f.conn.map(|c| c.id),
        client: Some(f.client),
        frames_to_proxy2: to_proxy2.frames,
        bytes_to_proxy2: to_proxy2.bytes,
        frames_to_proxy1: to_proxy1.frames,
        bytes_to_proxy1: to_proxy1.bytes,
        sent_bytes: f.status.sent_bytes,
        echoed_bytes: f.status.echoed_bytes,
        intact: f.requested > 0 && f.echo_intact(),
        waited: f.waited,
        retransmits_to_proxy2: p1.total(),
        retransmits_to_proxy1: p2.total(),
        close: f.close(),
    }
}
