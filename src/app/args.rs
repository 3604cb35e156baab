//! What the command line's values mean: the configurations, plans and seals they ask for.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use crate::capture::{CaptureFormat, CapturePlan, CaptureTarget, TcpCapture};
use crate::cli::{
    LabArgs, LabCaptureArgs, LinkArgs, MonitorArgs, Proxy1Tuning, Proxy2Tuning, ProxyCaptureArgs,
    RuleArgs, Socks5FrontArgs, Socks5PortArgs, WireArgs,
};
use crate::event::Level;
use crate::impair::{DirectionSettings, LinkSettings};
use crate::link::seal::{Seal, Side};
use crate::monitor::MonitorPlan;
use crate::roles::dialers::{DialerConfig, ResolverDialer};
use crate::roles::fronts::socks5::{FrontConfig, Socks5Users};
use crate::roles::proxy1::Proxy1Config;
use crate::roles::proxy2::Proxy2Config;
use crate::topology::{LinkDirection, Role};
use crate::wire::WireMode;

impl LabArgs {
    /// How many echo clients the lab starts: `--clients`, else 3 on the screen (something to
    /// watch) and none headless (every id stays free for clients from outside).
    pub fn clients_to_start(&self, with_screen: bool) -> u32 {
        self.clients.unwrap_or(if with_screen { 3 } else { 0 })
    }
}

impl LabCaptureArgs {
    /// The format asked for, or the default: pcapng when TCP segments join the file (its
    /// interfaces then say which packets are the link's and which the TCP legs').
    pub fn format(&self) -> CaptureFormat {
        self.capture_format.unwrap_or(if self.capture_tcp {
            CaptureFormat::Pcapng
        } else {
            CaptureFormat::Pcap
        })
    }

    /// The capture to start, if any.
    pub fn plan(&self) -> Option<CapturePlan> {
        (!self.no_capture).then(|| {
            let description = if self.capture_tcp {
                "tunlab lab: every UDP frame between proxy1 and proxy2, and the TCP legs"
            } else {
                "tunlab lab: every UDP frame between proxy1 and proxy2"
            };
            CapturePlan::new(
                CaptureTarget::Dir(self.capture_dir.clone()),
                self.format(),
                description,
                // The writer's messages appear under proxy1, the link's client end.
                Role::Proxy1,
            )
            .with_tcp(self.capture_tcp)
        })
    }
}

impl MonitorArgs {
    /// What to serve.
    pub fn plan(&self) -> MonitorPlan {
        MonitorPlan {
            metrics: self.metrics,
            admin: self.admin,
            users: self.admin_user.clone(),
            limits: Default::default(),
        }
    }
}

impl ProxyCaptureArgs {
    /// The format asked for; otherwise the one the file name's extension says; otherwise
    /// pcapng with TCP capture and pcap without.
    pub fn format(&self) -> CaptureFormat {
        let by_extension = self.capture.as_ref().and_then(|file| {
            match file.extension()?.to_str()?.to_ascii_lowercase().as_str() {
                "pcapng" => Some(CaptureFormat::Pcapng),
                "pcap" => Some(CaptureFormat::Pcap),
                _ => None,
            }
        });
        self.capture_format
            .or(by_extension)
            .unwrap_or(if self.capture_tcp {
                CaptureFormat::Pcapng
            } else {
                CaptureFormat::Pcap
            })
    }

    /// The capture to start, if any; `role` names the proxy in the file and the log.
    pub fn plan(&self, role: Role) -> Option<CapturePlan> {
        self.capture.as_ref().map(|file| {
            CapturePlan::new(
                CaptureTarget::File(file.clone()),
                self.format(),
                format!(
                    "tunlab {} (standalone): every UDP frame it sent and received",
                    role.label()
                ),
                role,
            )
            .with_tcp(self.capture_tcp)
        })
    }
}

/// Opens the packet socket for `--capture-tcp` when asked, before anything starts: without
/// the permission the run stops here with a message that says how to get it (exit code 2).
pub fn open_tcp_capture(wanted: bool) -> Result<Option<TcpCapture>, ExitCode> {
    if !wanted {
        return Ok(None);
    }
    TcpCapture::open().map(Some).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(crate::script::EXIT_INVALID)
    })
}

impl WireArgs {
    /// Checks that a key goes with a mode that can be sealed, and warns about a key file
    /// others can read. The error is the message to print.
    pub fn check_seal(&self) -> Result<(), String> {
        let Some(file) = &self.key_file else {
            return Ok(());
        };
        if !self.wire.is_extended() {
            return Err(format!(
                "--key-file seals the extended modes only (--wire go-back-n or selective-repeat); \
                 --wire {} is the course's plaintext format, which course peers must read",
                self.wire
            ));
        }
        if let Some(warning) = &file.warning {
            eprintln!("{}: {warning}", Level::Warn.label());
        }
        Ok(())
    }

    /// The seal for one end of the link, when a key was given.
    pub fn seal(&self, side: Side) -> Option<Seal> {
        self.key_file
            .as_ref()
            .map(|file| Seal::new(file.key.clone(), side))
    }
}

impl WireArgs {
    /// The reliable modes' transport settings these flags ask for.
    pub fn transport(&self) -> crate::transport::TransportConfig {
        let defaults = crate::transport::TransportConfig::for_mode(self.wire);
        let window = self.window.unwrap_or(defaults.window);
        crate::transport::TransportConfig {
            window,
            send_buffer: window as usize * defaults.max_payload,
            rto: self
                .rto
                .map_or(defaults.rto, crate::transport::RtoConfig::Fixed),
            congestion: self.cc,
            ..defaults
        }
    }
}

impl Proxy1Tuning {
    pub fn config(&self, wire: &WireArgs, proxy2: SocketAddr) -> Proxy1Config {
        Proxy1Config {
            connect_attempts: self.connect_attempts,
            connect_retry: self.connect_retry,
            id_wait: self.id_wait,
            idle_timeout: wire.idle_timeout.into(),
            unused_timeout: wire.unused_timeout,
            half_close_linger: self.half_close_linger,
            close_attempts: self.close_attempts,
            close_retry: self.close_retry,
            probe_after: self.probe_after,
            transport: Some(wire.transport()),
            ..Proxy1Config::new(proxy2)
        }
    }
}

impl Proxy2Tuning {
    pub fn config(&self, wire: &WireArgs, server: SocketAddr) -> Proxy2Config {
        Proxy2Config {
            connect_timeout: self.server_connect_timeout,
            idle_timeout: wire.idle_timeout.into(),
            unused_timeout: wire.unused_timeout,
            limits: crate::tunnel::admission::Limits {
                max_connections: usize::try_from(self.max_connections).unwrap_or(usize::MAX),
                max_peers: usize::try_from(self.max_peers).unwrap_or(usize::MAX),
                allowed: (!self.allow_proxy1.is_empty()).then(|| self.allow_proxy1.clone()),
            },
            transport: Some(wire.transport()),
            ..Proxy2Config::new(server)
        }
    }
}

impl LinkArgs {
    /// The settings these flags ask for.
    pub fn settings(&self) -> LinkSettings {
        LinkSettings {
            to_proxy2: self.direction(LinkDirection::ToProxy2),
            to_proxy1: self.direction(LinkDirection::ToProxy1),
        }
    }

    /// The settings of one direction: its own flags, else the two-way ones, else nothing.
    pub fn direction(&self, direction: LinkDirection) -> DirectionSettings {
        fn pick<T: Clone>(one_way: &Option<T>, both: &Option<T>) -> Option<T> {
            one_way.clone().or_else(|| both.clone())
        }
        let up = direction == LinkDirection::ToProxy2;
        macro_rules! flag {
            ($both:ident, $to_proxy2:ident, $to_proxy1:ident) => {
                pick(
                    if up {
                        &self.$to_proxy2
                    } else {
                        &self.$to_proxy1
                    },
                    &self.$both,
                )
            };
        }
        let defaults = DirectionSettings::default();
        DirectionSettings {
            loss: flag!(loss, loss_to_proxy2, loss_to_proxy1).unwrap_or(defaults.loss),
            burst: flag!(burst, burst_to_proxy2, burst_to_proxy1),
            delay: flag!(delay, delay_to_proxy2, delay_to_proxy1).unwrap_or(defaults.delay),
            jitter: flag!(jitter, jitter_to_proxy2, jitter_to_proxy1).unwrap_or(defaults.jitter),
            dup: flag!(dup, dup_to_proxy2, dup_to_proxy1).unwrap_or(defaults.dup),
            reorder: flag!(reorder, reorder_to_proxy2, reorder_to_proxy1)
                .unwrap_or(defaults.reorder),
            corrupt: flag!(corrupt, corrupt_to_proxy2, corrupt_to_proxy1)
                .unwrap_or(defaults.corrupt),
            rate: flag!(rate, rate_to_proxy2, rate_to_proxy1),
            queue: flag!(queue, queue_to_proxy2, queue_to_proxy1).unwrap_or(defaults.queue),
            blackhole: self.blackhole
                || if up {
                    self.blackhole_to_proxy2
                } else {
                    self.blackhole_to_proxy1
                },
            ..defaults
        }
    }
}

impl RuleArgs {
    /// proxy2's dialer: these rules in front of the resolver, each address given proxy2's
    /// connect timeout (`--server-connect-timeout`).
    pub fn dialer(&self, proxy2: &Proxy2Config) -> ResolverDialer {
        ResolverDialer::new(DialerConfig {
            rules: self.rules.clone(),
            connect_timeout: proxy2.connect_timeout,
            ..DialerConfig::default()
        })
    }
}

impl Socks5FrontArgs {
    /// The front's settings; reads the users file. Its errors name the file and line.
    pub fn config(&self) -> Result<FrontConfig, String> {
        let mut users = self.users.clone();
        if let Some(path) = &self.users_file {
            users.extend(Socks5Users::read_file(path)?);
        }
        Ok(FrontConfig {
            users: Arc::new(Socks5Users::new(users)),
            handshake_timeout: self.handshake_timeout,
        })
    }
}

impl Socks5PortArgs {
    /// Checks the combination before anything starts: the port needs an extended mode, and
    /// users or an access log need the port. Also reads the users file (its errors name the
    /// file and line).
    pub fn check(&self, mode: WireMode) -> Result<FrontConfig, String> {
        if self.port.is_none() {
            let stray = if !self.front.users.is_empty() {
                Some("--socks5-user")
            } else if self.front.users_file.is_some() {
                Some("--socks5-users")
            } else if self.access_log.is_some() {
                Some("--access-log")
            } else {
                None
            };
            if let Some(flag) = stray {
                return Err(format!("{flag} is for the SOCKS5 port: add --socks5 PORT"));
            }
        } else if !mode.is_extended() {
            return Err(format!(
                "--socks5 with --wire {mode}: {}",
                crate::roles::proxy1::SOCKS5_NEEDS_EXTENDED
            ));
        }
        self.config()
    }

    /// The front's settings ([`Socks5FrontArgs::config`]).
    pub fn config(&self) -> Result<FrontConfig, String> {
        self.front.config()
    }
}
