//! Dialers: how the outside end (proxy2, or the direct SOCKS5 server) opens a destination.
//! The resolver dialer resolves names here, checks `--allow`/`--deny` on every address,
//! tries each address in turn, and says why it failed as a [`Refusal`] (one byte, the
//! extended `NOK`'s reason and the SOCKS5 reply code at the client).

pub mod rules;

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;

use crate::destination::{Destination, Host, Refusal};

pub use rules::{Rule, RulePattern, Rules, Verdict};

/// How long one connect attempt may take, by default (proxy2's `--server-connect-timeout`).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long resolving a name may take, by default.
pub const DEFAULT_RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// The resolver dialer's settings.
#[derive(Clone, Debug)]
pub struct DialerConfig {
    /// `--allow`/`--deny`, in order.
    pub rules: Rules,
    /// Each address gets this long to connect; a name with n addresses can take n times it.
    pub connect_timeout: Duration,
    /// How long the name lookup may take.
    pub resolve_timeout: Duration,
}

impl Default for DialerConfig {
    fn default() -> Self {
        DialerConfig {
            rules: Rules::default(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            resolve_timeout: DEFAULT_RESOLVE_TIMEOUT,
        }
    }
}

/// An open connection to a destination.
#[derive(Debug)]
pub struct Dialed {
    pub stream: TcpStream,
    /// The address it reached (for a name, the one that answered).
    pub peer: SocketAddr,
}

/// Why a destination was not opened: the reason for the client, and a sentence for the log.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{refusal}: {detail}")]
pub struct DialError {
    pub refusal: Refusal,
    /// What happened, naming the addresses tried or the rule that matched.
    pub detail: String,
}

impl DialError {
    fn new(refusal: Refusal, detail: impl Into<String>) -> Self {
        DialError {
            refusal,
            detail: detail.into(),
        }
    }
}

/// Resolves names on this side, applies the rules, and connects.
#[derive(Clone, Debug, Default)]
pub struct ResolverDialer {
    config: DialerConfig,
}

impl ResolverDialer {
    pub fn new(config: DialerConfig) -> Self {
        ResolverDialer { config }
    }

    pub fn config(&self) -> &DialerConfig {
        &self.config
    }

    /// Opens `destination`: resolve (a name), check every address against the rules, then
    /// try the addresses in the resolver's order until one connects.
    pub async fn dial(&self, destination: &Destination) -> Result<Dialed, DialError> {
        let addrs = self.allowed_addrs(destination).await?;
        self.connect_any(&addrs).await
    }

    /// The addresses `destination` stands for, once the rules have allowed every one.
    pub async fn allowed_addrs(
        &self,
        destination: &Destination,
    ) -> Result<Vec<SocketAddr>, DialError> {
        let rules = &self.config.rules;
        let port = destination.port;
        let name = destination.host_name();
        if let Some(name) = name
            && let Some(Verdict::Denied(rule)) = rules.check_name(name, port)
        {
            return Err(DialError::new(
                Refusal::NotAllowed,
                format!("{destination} is denied by {rule}"),
            ));
        }
        let addrs = self.resolve(destination).await?;
        for addr in &addrs {
            if let Verdict::Denied(rule) = rules.check(name, addr.ip(), port) {
                let detail = match name {
                    Some(_) => format!("{destination} resolves to {addr}, denied by {rule}"),
                    None => format!("{destination} is denied by {rule}"),
                };
                return Err(DialError::new(Refusal::NotAllowed, detail));
            }
        }
        Ok(addrs)
    }

    /// The addresses of `destination`: itself, or what its name resolves to here (each
    /// once, in the resolver's order).
    pub async fn resolve(&self, destination: &Destination) -> Result<Vec<SocketAddr>, DialError> {
        let name = match &destination.host {
            Host::Ip(ip) => return Ok(vec![SocketAddr::new(*ip, destination.port)]),
            Host::Name(name) => name,
        };
        let lookup = tokio::net::lookup_host((name.as_str(), destination.port));
        let found = match tokio::time::timeout(self.config.resolve_timeout, lookup).await {
            Err(_) => {
                return Err(DialError::new(
                    Refusal::HostUnreachable,
                    format!(
                        "resolving {name} took longer than {:?}",
                        self.config.resolve_timeout
                    ),
                ));
            }
            Ok(Err(e)) => {
                return Err(DialError::new(
                    Refusal::HostUnreachable,
                    format!("{name} does not resolve: {e}"),
                ));
            }
            Ok(Ok(found)) => found,
        };
        let mut addrs: Vec<SocketAddr> = Vec::new();
        for addr in found {
            if !addrs.contains(&addr) {
                addrs.push(addr);
            }
        }
        if addrs.is_empty() {
            return Err(DialError::new(
                Refusal::HostUnreachable,
                format!("{name} has no addresses"),
            ));
        }
        Ok(addrs)
    }

    /// Tries `addrs` in order, each within the connect timeout, and returns the first that
    /// connects. When all fail, the reason is the most telling of their failures (see
    /// [`failure_rank`]), and the detail lists each.
    pub async fn connect_any(&self, addrs: &[SocketAddr]) -> Result<Dialed, DialError> {
        let mut failures: Vec<(SocketAddr, Refusal, String)> = Vec::new();
        for &addr in addrs {
            let attempt =
                tokio::time::timeout(self.config.connect_timeout, TcpStream::connect(addr));
            match attempt.await {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    return Ok(Dialed { stream, peer: addr });
                }
                Ok(Err(e)) => failures.push((addr, classify(&e), e.to_string())),
                Err(_) => failures.push((
                    addr,
                    Refusal::TtlExpired,
                    format!("no answer within {:?}", self.config.connect_timeout),
                )),
            }
        }
        let refusal = failures
            .iter()
            .map(|(_, refusal, _)| *refusal)
            .max_by_key(|r| failure_rank(*r))
            .unwrap_or(Refusal::HostUnreachable);
        let detail = if failures.is_empty() {
            "no address to try".to_string()
        } else {
            failures
                .iter()
                .map(|(addr, _, why)| format!("{addr}: {why}"))
                .collect::<Vec<_>>()
                .join("; ")
        };
        Err(DialError::new(refusal, detail))
    }
}

/// The reason an I/O error from `connect` gives the client.
pub fn classify(error: &io::Error) -> Refusal {
    match error.kind() {
        io::ErrorKind::ConnectionRefused => return Refusal::ConnectionRefused,
        io::ErrorKind::TimedOut => return Refusal::TtlExpired,
        io::ErrorKind::HostUnreachable => return Refusal::HostUnreachable,
        io::ErrorKind::NetworkUnreachable => return Refusal::NetworkUnreachable,
        _ => {}
    }
    match error.raw_os_error() {
        // No address of that family here (an IPv6 destination on an IPv4-only host), or
        // none it can connect from: no way to that network.
        Some(libc::EAFNOSUPPORT | libc::EADDRNOTAVAIL | libc::ENETDOWN) => {
            Refusal::NetworkUnreachable
        }
        Some(libc::EHOSTDOWN) => Refusal::HostUnreachable,
        _ => Refusal::GeneralFailure,
    }
}

/// When every address of a name fails, which failure the client hears about: the one that
/// got closest to the destination. A refusal means a host answered; a timeout, that the way
/// was there but nothing answered; unreachable host, then network, say the way was not.
pub fn failure_rank(refusal: Refusal) -> u8 {
    match refusal {
        Refusal::ConnectionRefused => 5,
        Refusal::TtlExpired => 4,
        Refusal::HostUnreachable => 3,
        Refusal::NetworkUnreachable => 2,
        Refusal::GeneralFailure => 1,
        Refusal::NotAllowed => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_map_to_the_rfcs_reasons() {
        let os = io::Error::from_raw_os_error;
        assert_eq!(
            classify(&os(libc::ECONNREFUSED)),
            Refusal::ConnectionRefused
        );
        assert_eq!(classify(&os(libc::ETIMEDOUT)), Refusal::TtlExpired);
        assert_eq!(classify(&os(libc::EHOSTUNREACH)), Refusal::HostUnreachable);
        assert_eq!(
            classify(&os(libc::ENETUNREACH)),
            Refusal::NetworkUnreachable
        );
        assert_eq!(
            classify(&os(libc::EAFNOSUPPORT)),
            Refusal::NetworkUnreachable
        );
        assert_eq!(
            classify(&os(libc::EADDRNOTAVAIL)),
            Refusal::NetworkUnreachable
        );
        assert_eq!(classify(&os(libc::EMFILE)), Refusal::GeneralFailure);
    }

    #[test]
    fn the_closest_failure_wins() {
        let mut all = Refusal::ALL.to_vec();
        all.sort_by_key(|r| std::cmp::Reverse(failure_rank(*r)));
        assert_eq!(all[0], Refusal::ConnectionRefused);
        assert_eq!(all[1], Refusal::TtlExpired);
    }
}
