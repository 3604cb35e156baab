//! Monitoring a running lab or standalone role from outside: a Prometheus `/metrics`
//! endpoint ([`metrics`]) and the SOCKS5 project's line-based admin protocol ([`admin`]),
//! with its interactive client ([`client`], `tunlab monitor HOST PORT`).
//!
//! Both read the exact counters, never the lossy event stream: the link endpoints'
//! [`LinkStats`], the link emulator's counters, the capture writer's status, and the
//! [`ConnTable`] (an [`crate::event::EventObserver`] that sees every event before the
//! channel could drop it). [`MonitorSources`] gathers them; [`Monitor::start`] serves them.

pub mod admin;
pub mod client;
pub mod conns;
pub mod metrics;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::SystemTime;

use tokio_util::sync::CancellationToken;

use crate::capture::CaptureStatus;
use crate::event::EventSink;
use crate::impair::LinkEmulator;
use crate::link::LinkStats;
use crate::net::bind_tcp;
use crate::roles::IdleTimeout;
use crate::tasks::{Leftover, SHUTDOWN_GRACE, Tasks};
use crate::topology::{Endpoint, Role};

pub use admin::{AdminLimits, Credential};
pub use conns::ConnTable;

/// Everything a monitor reads (and, for `CONFIG`, changes) in one lab or role.
#[derive(Clone, Debug)]
pub struct MonitorSources {
    /// What is monitored: `lab`, `proxy1`, `proxy2` or `echo-server`.
    pub name: &'static str,
    /// When it started (wall clock), for the uptime.
    pub started: SystemTime,
    /// The link endpoints here and their exact counters (both in the lab, one in a proxy).
    pub links: Vec<(Endpoint, Arc<LinkStats>)>,
    /// The link emulator, on a role that has one.
    pub emulator: Option<Arc<LinkEmulator>>,
    /// Open connections, totals and the access log.
    pub conns: Arc<ConnTable>,
    /// The capture being written, if any.
    pub capture: Option<Arc<CaptureStatus>>,
    /// The event stream: its drop count, and where admin logins and changes are logged.
    pub events: EventSink,
    /// Log lines of the monitor appear under this role.
    pub log_role: Role,
    /// The idle timeouts `CONFIG idle_timeout` changes (none on the echo server).
    pub idle_timeouts: Vec<IdleTimeout>,
    /// `tunlab relay`'s counters, on a relay.
    pub relay: Option<Arc<crate::roles::relay::RelayStats>>,
}

impl MonitorSources {
    /// Sources with no link, emulator, capture or idle timeout yet (an echo server's).
    pub fn new(
        name: &'static str,
        log_role: Role,
        events: EventSink,
        conns: Arc<ConnTable>,
    ) -> Self {
        MonitorSources {
            name,
            started: SystemTime::now(),
            links: Vec::new(),
            emulator: None,
            conns,
            capture: None,
            events,
            log_role,
            idle_timeouts: Vec::new(),
            relay: None,
        }
    }

    /// A lab's: both link endpoints, the emulator, the capture, and both proxies' idle
    /// timeouts. `conns` must be the observer of the lab's event sink.
    pub fn for_lab(
        lab: &crate::lab::Lab,
        conns: Arc<ConnTable>,
        capture: Option<Arc<CaptureStatus>>,
    ) -> Self {
        let addrs = lab.addrs();
        conns.set_destination(Role::Proxy1, addrs.proxy2_udp);
        conns.set_destination(Role::Proxy2, addrs.server);
        // Its log lines appear under proxy1, the link's client end, like the capture writer's.
        MonitorSources::new("lab", Role::Proxy1, lab.events().clone(), conns)
            .with_link(Endpoint::Proxy1, lab.link_stats(Endpoint::Proxy1).clone())
            .with_link(Endpoint::Proxy2, lab.link_stats(Endpoint::Proxy2).clone())
            .with_emulator(lab.link_emulator().clone())
            .with_capture(capture)
            .with_idle_timeout(lab.config().proxy1.idle_timeout.clone())
            .with_idle_timeout(lab.config().proxy2.idle_timeout.clone())
    }

    /// The roles this monitor covers, in topology order (server, proxy2, proxy1).
    pub fn roles(&self) -> Vec<Role> {
        let mut roles = Vec::new();
        if matches!(self.name, "lab" | "echo-server") {
            roles.push(Role::EchoServer);
        }
        for role in [Role::Proxy2, Role::Proxy1] {
            if self.links.iter().any(|(e, _)| e.role() == role) {
                roles.push(role);
            }
        }
        roles
    }

    /// Adds a link endpoint's counters.
    pub fn with_link(mut self, endpoint: Endpoint, stats: Arc<LinkStats>) -> Self {
        self.links.push((endpoint, stats));
        self
    }

    /// Adds the link emulator.
    pub fn with_emulator(mut self, emulator: Arc<LinkEmulator>) -> Self {
        self.emulator = Some(emulator);
        self
    }

    /// Adds the capture's status.
    pub fn with_capture(mut self, capture: Option<Arc<CaptureStatus>>) -> Self {
        self.capture = capture;
        self
    }

    /// Adds a relay's counters.
    pub fn with_relay(mut self, stats: Arc<crate::roles::relay::RelayStats>) -> Self {
        self.relay = Some(stats);
        self
    }

    /// Adds an idle timeout that `CONFIG idle_timeout` changes.
    pub fn with_idle_timeout(mut self, timeout: IdleTimeout) -> Self {
        self.idle_timeouts.push(timeout);
        self
    }
}

/// What to serve, from the command line.
#[derive(Clone, Debug, Default)]
pub struct MonitorPlan {
    /// Where `/metrics` listens.
    pub metrics: Option<SocketAddr>,
    /// Where the admin protocol listens.
    pub admin: Option<SocketAddr>,
    /// Who may log in to the admin protocol (at least one when `admin` is set).
    pub users: Vec<Credential>,
    /// Bounds on admin sessions.
    pub limits: AdminLimits,
}

impl MonitorPlan {
    /// Whether anything is to be served.
    pub fn is_on(&self) -> bool {
        self.metrics.is_some() || self.admin.is_some()
    }
}

/// The running monitor: its addresses, and how to stop it.
#[derive(Debug)]
pub struct Monitor {
    metrics: Option<SocketAddr>,
    admin: Option<SocketAddr>,
    stop: CancellationToken,
    /// The servers and their sessions, waited for by [`Monitor::stop`].
    tasks: Tasks,
}

impl Monitor {
    /// Binds what `plan` asks for (a clear error if a port is taken, or if the admin protocol
    /// has no user) and serves it until [`Monitor::stop`].
    pub async fn start(plan: &MonitorPlan, sources: MonitorSources) -> anyhow::Result<Monitor> {
        let stop = CancellationToken::new();
        let mut monitor = Monitor {
            metrics: None,
            admin: None,
            stop: stop.clone(),
            tasks: Tasks::new(),
        };
        if let Some(addr) = plan.admin
            && plan.users.is_empty()
        {
            anyhow::bail!(
                "the admin protocol on {addr} needs at least one --admin-user NAME:PASS; it will not run without a login"
            );
        }
        if let Some(addr) = plan.metrics {
            let listener = bind_tcp(addr)?;
            monitor.metrics = Some(listener.local_addr()?);
            monitor.tasks.spawn(
                "metrics server",
                metrics::serve(
                    listener,
                    sources.clone(),
                    stop.child_token(),
                    monitor.tasks.clone(),
                ),
            );
        }
        if let Some(addr) = plan.admin {
            let listener = bind_tcp(addr)?;
            monitor.admin = Some(listener.local_addr()?);
            monitor.tasks.spawn(
                "admin server",
                admin::serve(
                    listener,
                    sources,
                    plan.users.clone(),
                    plan.limits,
                    stop.child_token(),
                    monitor.tasks.clone(),
                ),
            );
        }
        Ok(monitor)
    }

    /// Where `/metrics` is served, once bound.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics
    }

    /// Where the admin protocol is served, once bound.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin
    }

    /// One line for a role's log: `metrics on http://…/metrics; admin on …`.
    pub fn describe(&self) -> Option<String> {
        let mut parts = Vec::new();
        if let Some(addr) = self.metrics {
            parts.push(format!("metrics on http://{addr}/metrics"));
        }
        if let Some(addr) = self.admin {
            parts.push(format!(
                "admin protocol on {addr} (tunlab monitor {} {})",
                addr.ip(),
                addr.port()
            ));
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }

    /// Stops serving: listeners close, sessions end. Returns the tasks that did not end
    /// within [`SHUTDOWN_GRACE`] (empty when all did).
    pub async fn stop(self) -> Leftover {
        self.stop.cancel();
        self.tasks.wait(SHUTDOWN_GRACE).await
    }
}

/// Parses where to listen: `PORT` alone means loopback (`127.0.0.1:PORT`), so nothing is
/// exposed to other machines unless an address says so (`0.0.0.0:9100`, `[::]:9100`).
pub fn parse_listen_addr(text: &str) -> Result<SocketAddr, String> {
    let text = text.trim();
    if let Ok(port) = text.parse::<u16>() {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    text.parse::<SocketAddr>().map_err(|_| {
        format!(
            "'{text}' is not a port or an IP:PORT (e.g. 9100, 127.0.0.1:9100, 0.0.0.0:9100, [::1]:9100)"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_port_listens_on_loopback() {
        assert_eq!(
            parse_listen_addr("9100").unwrap(),
            "127.0.0.1:9100".parse().unwrap()
        );
        assert_eq!(
            parse_listen_addr("0.0.0.0:9100").unwrap(),
            "0.0.0.0:9100".parse().unwrap()
        );
        assert_eq!(
            parse_listen_addr("[::1]:0").unwrap(),
            "[::1]:0".parse().unwrap()
        );
        let err = parse_listen_addr("localhost").unwrap_err();
        assert!(err.contains("not a port or an IP:PORT"), "{err}");
    }
}
