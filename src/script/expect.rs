//! Checks each expectation against what the run observed, with a detail line that says
//! what was seen either way.

use serde::Serialize;

use super::fold::ConnRecord;
use super::runner::{Outcome, end_label};
use super::scenario::{Check, ClientSel, Counted, Expectation, FrameSel, HowClosed};
use crate::event::{ClientEnd, ClientId, CloseKind};
use crate::link::KindCounts;
use crate::roles::echo_client::ClientStatus;
use crate::topology::LinkDirection;
use crate::transport::totals::{ConnCounts, Retransmits, pair_connections};

/// One lab client at the end of the run, with the tunnel connection it had (if any).
#[derive(Clone, Debug)]
pub struct ClientFacts<'a> {
    pub client: ClientId,
    pub status: &'a ClientStatus,
    pub conn: Option<&'a ConnRecord>,
    pub waited: bool,
    pub gave_up: bool,
    /// Bytes the steps asked it to send.
    pub requested: u64,
}

impl ClientFacts<'_> {
    /// Every byte asked for was sent and came back unchanged.
    pub fn echo_intact(&self) -> bool {
        self.status.intact
            && self.status.sent_bytes == self.requested
            && self.status.echoed_bytes == self.status.sent_bytes
    }

    /// How the connection ended, as the report's `close` says it.
    pub fn close(&self) -> &'static str {
        let conn = self.conn;
        match self.status.ended {
            None => "open",
            Some(ClientEnd::ByClient(CloseKind::Fin)) => "fin",
            Some(ClientEnd::ByClient(CloseKind::Rst)) => "rst",
            Some(ClientEnd::ByTunnel) if conn.is_some_and(|c| c.refused) => "refused",
            Some(ClientEnd::ByTunnel) if conn.is_some_and(|c| c.unanswered) => "unanswered",
            Some(ClientEnd::ByTunnel) if self.gave_up => "no-free-id",
            Some(ClientEnd::ByTunnel) => "tunnel",
            Some(ClientEnd::Error) => "error",
        }
    }
}

/// Pairs each lab client with its connection. A client has at most one; if the OS reused a
/// closed client's port for a later one, connections are handed out in order.
pub fn client_facts(outcome: &Outcome) -> (Vec<ClientFacts<'_>>, Vec<&ConnRecord>) {
    let mut claimed = vec![false; outcome.fold.conns.len()];
    let facts = outcome
        .snapshot
        .clients
        .iter()
        .map(|(client, status)| {
            let conn = status.local.and_then(|local| {
                let index = outcome
                    .fold
                    .conns
                    .iter()
                    .enumerate()
                    .position(|(i, c)| !claimed[i] && c.client == local)?;
                claimed[index] = true;
                Some(&outcome.fold.conns[index])
            });
            ClientFacts {
                client: *client,
                status,
                conn,
                waited: status.local.is_some_and(|l| outcome.fold.waited(l)),
                gave_up: status.local.is_some_and(|l| outcome.fold.gave_up(l)),
                requested: outcome.requested.get(client).copied().unwrap_or(0),
            }
        })
        .collect();
    let strangers = outcome
        .fold
        .conns
        .iter()
        .zip(claimed)
        .filter_map(|(conn, claimed)| (!claimed).then_some(conn))
        .collect();
    (facts, strangers)
}

/// One expectation's verdict.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub name: String,
    /// Where it is written (none for the built-in "steps finished" check).
    pub line: Option<usize>,
    pub passed: bool,
    pub detail: String,
}

/// The verdict on the steps themselves: all done, before the deadline.
pub fn steps_verdict(outcome: &Outcome, total: usize, deadline: std::time::Duration) -> Verdict {
    Verdict {
        name: format!(
            "every step finished within the deadline ({})",
            humantime::format_duration(deadline)
        ),
        line: None,
        passed: outcome.failure.is_none(),
        detail: match &outcome.failure {
            None => format!("{total} of {total} steps done"),
            Some(why) => format!("{} of {total} steps done; {why}", outcome.steps_completed),
        },
    }
}

pub fn evaluate(expectation: &Expectation, outcome: &Outcome, facts: &[ClientFacts]) -> Verdict {
    let (passed, detail) = check(&expectation.check, outcome, facts);
    Verdict {
        name: expectation
            .name
            .clone()
            .unwrap_or_else(|| expectation.check.describe()),
        line: Some(expectation.line),
        passed,
        detail,
    }
}

fn check(check: &Check, outcome: &Outcome, facts: &[ClientFacts]) -> (bool, String) {
    let no_conn = |f: &ClientFacts| {
        if f.waited {
            format!("client {} never got a tunnel id", f.client)
        } else {
            format!("client {} has no tunnel connection", f.client)
        }
    };
    match check {
        Check::EchoIntact(selection) => echo_intact(selection, facts),
        Check::Refused(selection) => per_client(selection, facts, |f| match f.conn {
            Some(c) if c.refused => Ok(()),
            Some(c) => Err(format!("client {} (id {}) was not refused", f.client, c.id)),
            None => Err(no_conn(f)),
        }),
        Check::Unanswered(selection) => per_client(selection, facts, |f| match f.conn {
            Some(c) if c.unanswered => Ok(()),
            Some(c) => Err(format!(
                "proxy2 answered client {}'s C{} ({})",
                f.client,
                c.id,
                if c.refused { "NOK" } else { "OK" }
            )),
            None => Err(no_conn(f)),
        }),
        Check::Waited(selection) => per_client(selection, facts, |f| {
            if f.waited {
                Ok(())
            } else {
                Err(format!("client {} never waited for an id", f.client))
            }
        }),
        Check::GaveUpWaiting(selection) => per_client(selection, facts, |f| {
            if f.gave_up {
                Ok(())
            } else if f.waited {
                Err(format!("client {} waited, and got an id", f.client))
            } else {
                Err(format!("client {} never waited for an id", f.client))
            }
        }),
        Check::Opened(selection, id) => per_client(selection, facts, |f| match f.conn {
            Some(c) if c.opened && id.is_none_or(|id| c.id.index() == usize::from(id)) => Ok(()),
            Some(c) if c.opened => Err(format!(
                "client {} opened with id {}, not {}",
                f.client,
                c.id,
                id.unwrap_or_default()
            )),
            Some(c) => Err(format!("client {}'s C{} never got OK", f.client, c.id)),
            None => Err(no_conn(f)),
        }),
        Check::IdFreed(selection) => per_client(selection, facts, |f| match f.conn {
            Some(c) if c.freed() => Ok(()),
            Some(c) => Err(format!(
                "client {}'s id {} is still taken at {}",
                f.client,
                c.id,
                if c.freed_at_proxy1 {
                    "proxy2"
                } else {
                    "proxy1"
                }
            )),
            None => Err(no_conn(f)),
        }),
        Check::Closed(selection, how) => per_client(selection, facts, |f| {
            let wanted = match (how, f.status.ended) {
                (_, None) => false,
                (HowClosed::Any, Some(_)) => true,
                (HowClosed::Fin, Some(end)) => end == ClientEnd::ByClient(CloseKind::Fin),
                (HowClosed::Rst, Some(end)) => end == ClientEnd::ByClient(CloseKind::Rst),
                (HowClosed::Tunnel, Some(end)) => end == ClientEnd::ByTunnel,
            };
            match f.status.ended {
                _ if wanted => Ok(()),
                Some(end) => Err(format!("client {} was {}", f.client, end_label(end))),
                None => Err(format!("client {} is still connected", f.client)),
            }
        }),
        Check::Frames {
            kind,
            direction,
            counted,
            bounds,
        } => {
            let snapshot = &outcome.snapshot;
            let count: u64 = direction
                .directions()
                .iter()
                .map(|direction| {
                    let counts = match (direction, counted) {
                        (LinkDirection::ToProxy2, Counted::Sent) => &snapshot.proxy1.sent,
                        (LinkDirection::ToProxy2, Counted::Received) => &snapshot.proxy2.received,
                        (LinkDirection::ToProxy1, Counted::Sent) => &snapshot.proxy2.sent,
                        (LinkDirection::ToProxy1, Counted::Received) => &snapshot.proxy1.received,
                    };
                    count_of(counts, *kind)
                })
                .sum();
            (bounds.holds(count), format!("{count} counted"))
        }
        Check::Captured { kind, bounds } => match &outcome.capture {
            Some(capture) => {
                let count = match kind.0 {
                    Some(_) => count_of(&capture.by_kind, *kind),
                    None => capture.frames,
                };
                let place = match &capture.path {
                    Some(path) => format!("in {}", path.display()),
                    None => "at the capture tap (no capture file is written by this build)".into(),
                };
                (bounds.holds(count), format!("{count} {place}"))
            }
            None => (false, "nothing was captured".into()),
        },
        Check::Dropped {
            kind,
            direction,
            bounds,
        } => {
            // The emulator's own counts: what it dropped, whatever the receiver then saw.
            let link = &outcome.snapshot.link;
            let count: u64 = direction
                .directions()
                .iter()
                .map(|&direction| {
                    let report = link.direction(direction);
                    match kind.0 {
                        Some(kind) => report.dropped_types.get(kind),
                        None => report.dropped_by.total(),
                    }
                })
                .sum();
            (bounds.holds(count), format!("{count} dropped"))
        }
        Check::Retransmits {
            cause,
            clients,
            direction,
            bounds,
        } => {
            let count = |p1: Retransmits, p2: Retransmits| -> u64 {
                direction
                    .directions()
                    .iter()
                    .map(|direction| match direction {
                        LinkDirection::ToProxy2 => p1.by_cause(cause.0),
                        LinkDirection::ToProxy1 => p2.by_cause(cause.0),
                    })
                    .sum()
            };
            match clients {
                None => {
                    let snapshot = &outcome.snapshot;
                    let n = count(
                        snapshot.proxy1.transport.counts,
                        snapshot.proxy2.transport.counts,
                    );
                    (bounds.holds(n), format!("{n} retransmitted"))
                }
                Some(selection) => {
                    let pairs = pair_connections(
                        &outcome.snapshot.transport_conns.proxy1,
                        &outcome.snapshot.transport_conns.proxy2,
                    );
                    let mut seen = Vec::new();
                    let verdict = per_client(selection, facts, |f| {
                        let Some((p1, p2)) = client_transport(&pairs, f) else {
                            return Err(format!(
                                "client {} had no reliable tunnel connection",
                                f.client
                            ));
                        };
                        let n = count(p1, p2);
                        seen.push(format!("client {}: {n}", f.client));
                        if bounds.holds(n) {
                            Ok(())
                        } else {
                            Err(format!(
                                "client {}'s connection: {n} retransmitted",
                                f.client
                            ))
                        }
                    });
                    match verdict {
                        (true, _) => (true, seen.join(", ")),
                        failed => failed,
                    }
                }
            }
        }
        Check::NoMalformed => {
            let p1 = outcome.snapshot.proxy1.malformed;
            let p2 = outcome.snapshot.proxy2.malformed;
            (
                p1 + p2 == 0,
                format!("{p1} malformed at proxy1, {p2} at proxy2"),
            )
        }
        Check::Socks5Reply { client, reply } => match outcome.socks5.get(client - 1) {
            None => (
                false,
                format!("SOCKS5 client {client} never ran (its step was not reached)"),
            ),
            Some(got) => {
                let echo = match got.echo_intact {
                    Some(true) => ", its echo intact",
                    Some(false) => ", its echo changed",
                    None => "",
                };
                let error = got
                    .error
                    .as_deref()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default();
                (
                    got.reply == *reply && got.echo_intact != Some(false),
                    format!("it got \"{}\"{echo}{error}", got.reply.name()),
                )
            }
        },
    }
}

/// The transport counts of a client's connection, at proxy1 and at proxy2 (zero there when
/// proxy2 has no entry for it), from the pairs of [`pair_connections`].
pub fn client_transport(
    pairs: &[(&ConnCounts, Option<&ConnCounts>)],
    facts: &ClientFacts,
) -> Option<(Retransmits, Retransmits)> {
    let local = facts.status.local?;
    pairs
        .iter()
        .rev()
        .find(|(ours, _)| ours.key.client == Some(local))
        .map(|(ours, theirs)| (ours.counts, theirs.map(|t| t.counts).unwrap_or_default()))
}

fn count_of(counts: &KindCounts, kind: FrameSel) -> u64 {
    match kind.0 {
        Some(kind) => counts.get(kind),
        None => counts.total(),
    }
}

fn selected<'f, 'a>(
    selection: &ClientSel,
    facts: &'f [ClientFacts<'a>],
) -> Vec<&'f ClientFacts<'a>> {
    match selection {
        ClientSel::All => facts.iter().collect(),
        ClientSel::Some(list) => facts.iter().filter(|f| list.contains(&f.client)).collect(),
    }
}

/// Passes when `test` passes for every selected client; the detail lists the failures.
fn per_client(
    selection: &ClientSel,
    facts: &[ClientFacts],
    mut test: impl FnMut(&ClientFacts) -> Result<(), String>,
) -> (bool, String) {
    let chosen = selected(selection, facts);
    if chosen.is_empty() {
        return (false, format!("no such client ({selection})"));
    }
    let failures: Vec<String> = chosen.iter().filter_map(|f| test(f).err()).collect();
    if failures.is_empty() {
        let n = chosen.len();
        (
            true,
            format!("holds for {n} client{}", if n == 1 { "" } else { "s" }),
        )
    } else {
        (false, failures.join("; "))
    }
}

fn echo_intact(selection: &ClientSel, facts: &[ClientFacts]) -> (bool, String) {
    let chosen: Vec<&ClientFacts> = match selection {
        // "all" means every client that was asked to send something.
        ClientSel::All => facts.iter().filter(|f| f.requested > 0).collect(),
        ClientSel::Some(_) => selected(selection, facts),
    };
    if chosen.is_empty() {
        return (false, "no client was asked to send anything".into());
    }
    let mut failures = Vec::new();
    for f in &chosen {
        let s = f.status;
        if f.requested == 0 {
            failures.push(format!("client {} was never asked to send", f.client));
        } else if s.sent_bytes < f.requested {
            failures.push(format!(
                "client {} sent only {} of {} bytes",
                f.client, s.sent_bytes, f.requested
            ));
        } else if !s.intact {
            failures.push(format!(
                "client {}'s echo differs from what it sent after {} bytes",
                f.client, s.matched_bytes
            ));
        } else if s.echoed_bytes != s.sent_bytes {
            failures.push(format!(
                "client {} got {} of {} bytes back",
                f.client, s.echoed_bytes, s.sent_bytes
            ));
        }
    }
    if failures.is_empty() {
        let bytes: u64 = chosen.iter().map(|f| f.status.sent_bytes).sum();
        (
            true,
            format!(
                "{n} of {n} clients got every byte back unchanged ({bytes} bytes in all)",
                n = chosen.len()
            ),
        )
    } else {
        (false, failures.join("; "))
    }
}
