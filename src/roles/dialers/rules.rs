//! `--allow` / `--deny`: which destinations the outside end may open. Pure matching, no I/O.
//!
//! A rule is a host part and a port part, either of which may be left out:
//!
//! | rule | matches |
//! |---|---|
//! | `127.0.0.1`, `::1` | that address, any port |
//! | `10.0.0.0/8`, `fd00::/8` | any address in that network, any port |
//! | `example.org` | a client that asked for that name (case-insensitive), any port |
//! | `*.example.org` | any name under example.org (not example.org itself) |
//! | `127.0.0.1:7777`, `[::1]:22`, `10.0.0.0/8:22-25`, `example.org:443` | host and port(s) |
//! | `port=7000-7999`, `port=22`, `*:22` | any host, those ports |
//! | `*` | everything |
//!
//! Rules are checked in the order given, `--allow` and `--deny` mixed, and the first one
//! that matches decides. With no match the destination is allowed, so `--deny` alone is a
//! blocklist; end with `--deny '*'` for an allowlist. Address rules are checked against
//! every address a name resolves to (IPv4-mapped IPv6 addresses count as IPv4), and a
//! destination is refused if any of its addresses is: a name cannot slip past a rule by
//! resolving to a denied address.
//!
//! An IPv6 address with a port always goes in brackets: `::1:22` is the address `::1:22`
//! (any port), since a bare IPv6 address may end in what looks like a port.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// What a rule does to the destinations it matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Allow,
    Deny,
}

impl Action {
    /// The flag that gives it.
    pub fn flag(self) -> &'static str {
        match self {
            Action::Allow => "--allow",
            Action::Deny => "--deny",
        }
    }
}

/// An IP network: an address and a prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Whether `ip` is inside (IPv4-mapped IPv6 addresses compare as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }

    fn parse(text: &str) -> Option<Result<IpNet, String>> {
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr = addr.parse::<IpAddr>().ok()?.to_canonical();
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(p) if p <= max => p,
                _ => {
                    return Some(Err(format!(
                        "'/{p}' is not a prefix length from 0 to {max}"
                    )));
                }
            },
        };
        Some(Ok(IpNet { addr, prefix }))
    }
}

/// The host part of a rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostPattern {
    /// `*`, or no host given.
    Any,
    /// An address or a network.
    Net(IpNet),
    /// A name the client asked for.
    Name(String),
    /// `*.example.org`: any name ending in `.example.org`.
    Under(String),
}

/// Ports `first..=last`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    pub fn contains(self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }

    fn parse(text: &str) -> Result<PortRange, String> {
        let port = |p: &str| {
            p.parse::<u16>()
                .map_err(|_| format!("'{p}' is not a port (0 to 65535)"))
        };
        let (first, last) = match text.split_once('-') {
            Some((a, b)) => (port(a)?, port(b)?),
            None => (port(text)?, port(text)?),
        };
        if first > last {
            return Err(format!("the port range {text} runs backwards"));
        }
        Ok(PortRange { first, last })
    }
}

/// What a rule matches, as written after `--allow` or `--deny`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RulePattern {
    pub host: HostPattern,
    /// None: any port.
    pub ports: Option<PortRange>,
    text: String,
}

impl fmt::Display for RulePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for RulePattern {
    type Err = String;

    fn from_str(text: &str) -> Result<RulePattern, String> {
        let pattern = |host, ports| RulePattern {
            host,
            ports,
            text: text.to_string(),
        };
        if text.is_empty() {
            return Err("an empty rule; give an address, network, name or port=N".into());
        }
        if let Some(ports) = text.strip_prefix("port=") {
            return Ok(pattern(HostPattern::Any, Some(PortRange::parse(ports)?)));
        }
        if let Some(rest) = text.strip_prefix('[') {
            let Some((inside, after)) = rest.split_once(']') else {
                return Err(format!("'{text}' opens a bracket it does not close"));
            };
            let host = match IpNet::parse(inside) {
                Some(Ok(net)) if net.addr.is_ipv6() => HostPattern::Net(net),
                Some(Err(e)) => return Err(e),
                _ => {
                    return Err(format!(
                        "'{inside}' in brackets is not an IPv6 address or network"
                    ));
                }
            };
            let ports = match after {
                "" => None,
                _ => match after.strip_prefix(':') {
                    Some(ports) => Some(PortRange::parse(ports)?),
                    None => return Err(format!("'{after}' after ']' should be :PORT")),
                },
            };
            return Ok(pattern(host, ports));
        }
        // A whole address or network (an IPv6 one has colons of its own).
        if let Some(Ok(net)) = IpNet::parse(text) {
            return Ok(pattern(HostPattern::Net(net), None));
        }
        let (host, ports) = match text.rsplit_once(':') {
            Some((host, _)) if host.contains(':') => {
                return Err(format!(
                    "'{text}' is not an IPv6 address or network; to give one a port, use brackets: [::1]:22"
                ));
            }
            Some((host, ports)) => (host, Some(PortRange::parse(ports)?)),
            None => (text, None),
        };
        Ok(pattern(host_pattern(host)?, ports))
    }
}

fn host_pattern(host: &str) -> Result<HostPattern, String> {
    if host == "*" {
        return Ok(HostPattern::Any);
    }
    if let Some(net) = IpNet::parse(host) {
        return net.map(HostPattern::Net);
    }
    let (under, name) = match host.strip_prefix("*.") {
        Some(name) => (true, name),
        None => (false, host),
    };
    let valid = !name.is_empty()
        && name.len() <= 255
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if !valid {
        return Err(format!(
            "'{host}' is not an address, a network (10.0.0.0/8), a host name, *.NAME or *"
        ));
    }
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    Ok(if under {
        HostPattern::Under(name)
    } else {
        HostPattern::Name(name)
    })
}

/// One rule: allow or deny what a pattern matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub action: Action,
    pub pattern: RulePattern,
}

impl fmt::Display for Rule {
    /// As the command line gives it: `--deny 127.0.0.1:7777`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.action.flag(), self.pattern)
    }
}

impl Rule {
    pub fn allow(pattern: RulePattern) -> Self {
        Rule {
            action: Action::Allow,
            pattern,
        }
    }

    pub fn deny(pattern: RulePattern) -> Self {
        Rule {
            action: Action::Deny,
            pattern,
        }
    }

    fn ports_match(&self, port: u16) -> bool {
        self.pattern.ports.is_none_or(|ports| ports.contains(port))
    }

    /// Whether the rule matches a destination the client named `name` (if by name) at
    /// address `ip` (if known yet).
    fn matches(&self, name: Option<&str>, ip: Option<IpAddr>, port: u16) -> bool {
        self.ports_match(port)
            && match &self.pattern.host {
                HostPattern::Any => true,
                HostPattern::Net(net) => ip.is_some_and(|ip| net.contains(ip)),
                HostPattern::Name(rule) => name == Some(rule.as_str()),
                HostPattern::Under(rule) => name.is_some_and(|name| {
                    name.strip_suffix(rule.as_str())
                        .is_some_and(|head| head.ends_with('.'))
                }),
            }
    }
}

/// What the rules say about a destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict<'a> {
    /// Allowed by this rule, or by default (None: no rule matched).
    Allowed(Option<&'a Rule>),
    /// Denied by this rule.
    Denied(&'a Rule),
}

/// The rules in the order given; the first match decides, and no match allows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rules {
    rules: Vec<Rule>,
}

impl Rules {
    pub fn new(rules: Vec<Rule>) -> Self {
        Rules { rules }
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Rule> {
        self.rules.iter()
    }

    /// The verdict on address `ip`, port `port`, reached by name `name` if the client gave
    /// one (then name rules apply too).
    pub fn check(&self, name: Option<&str>, ip: IpAddr, port: u16) -> Verdict<'_> {
        self.decide(self.rules.iter().find(|r| r.matches(name, Some(ip), port)))
    }

    /// The verdict on a name before it is resolved, when it does not depend on the
    /// address: the first rule that could match is a name, port or `*` rule. `None` when an
    /// address rule comes first, so the name must be resolved and each address checked.
    pub fn check_name(&self, name: &str, port: u16) -> Option<Verdict<'_>> {
        for rule in &self.rules {
            if !rule.ports_match(port) {
                continue;
            }
            if let HostPattern::Net(_) = rule.pattern.host {
                return None;
            }
            if rule.matches(Some(name), None, port) {
                return Some(self.decide(Some(rule)));
            }
        }
        Some(Verdict::Allowed(None))
    }

    fn decide<'a>(&self, rule: Option<&'a Rule>) -> Verdict<'a> {
        match rule {
            Some(rule) if rule.action == Action::Deny => Verdict::Denied(rule),
            other => Verdict::Allowed(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(list: &[(Action, &str)]) -> Rules {
        Rules::new(
            list.iter()
                .map(|(action, text)| Rule {
                    action: *action,
                    pattern: text.parse().unwrap(),
                })
                .collect(),
        )
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn denied(verdict: Verdict<'_>) -> Option<String> {
        match verdict {
            Verdict::Denied(rule) => Some(rule.to_string()),
            Verdict::Allowed(_) => None,
        }
    }

    #[test]
    fn patterns_parse() {
        let p = |t: &str| t.parse::<RulePattern>().unwrap();
        assert_eq!(p("127.0.0.1").ports, None);
        assert_eq!(
            p("127.0.0.1:7777").ports,
            Some(PortRange {
                first: 7777,
                last: 7777
            })
        );
        assert_eq!(
            p("port=7000-7999").ports,
            Some(PortRange {
                first: 7000,
                last: 7999
            })
        );
        assert_eq!(p("port=7000-7999").host, HostPattern::Any);
        assert_eq!(p("*:22").host, HostPattern::Any);
        assert_eq!(p("*").ports, None);
        assert!(matches!(p("::1").host, HostPattern::Net(_)));
        assert!(matches!(p("fd00::/8").host, HostPattern::Net(_)));
        assert_eq!(
            p("[::1]:22").ports,
            Some(PortRange {
                first: 22,
                last: 22
            })
        );
        assert_eq!(p("[fd00::/8]").ports, None);
        // Without brackets, a trailing :22 is part of the IPv6 address.
        assert_eq!(p("::1:22").ports, None);
        assert_eq!(
            p("::1:22").host,
            HostPattern::Net(IpNet::parse("::1:22/128").unwrap().unwrap())
        );
        assert!(matches!(p("10.0.0.0/8:22-25").host, HostPattern::Net(_)));
        assert_eq!(
            p("Example.ORG.").host,
            HostPattern::Name("example.org".into())
        );
        assert_eq!(
            p("*.example.org:443").host,
            HostPattern::Under("example.org".into())
        );
        assert_eq!(p("localhost:80").to_string(), "localhost:80");
    }

    #[test]
    fn bad_patterns_say_why() {
        let e = |t: &str| t.parse::<RulePattern>().unwrap_err();
        assert!(e("").contains("empty"));
        assert!(e("port=9-1").contains("backwards"));
        assert!(e("port=70000").contains("not a port"));
        assert!(e("10.0.0.0/33").contains("prefix length from 0 to 32"));
        assert!(e("::1:x:22").contains("brackets"));
        assert!(e("[::1").contains("does not close"));
        assert!(e("[10.0.0.1]:22").contains("IPv6"));
        assert!(e("[::1]22").contains(":PORT"));
        assert!(e("a b").contains("not an address"));
        assert!(e("host:").contains("not a port"));
    }

    #[test]
    fn networks_contain_their_addresses() {
        let net = |t: &str| IpNet::parse(t).unwrap().unwrap();
        assert!(net("10.0.0.0/8").contains(ip("10.255.1.2")));
        assert!(!net("10.0.0.0/8").contains(ip("11.0.0.0")));
        assert!(net("0.0.0.0/0").contains(ip("1.2.3.4")));
        assert!(!net("0.0.0.0/0").contains(ip("::1")));
        assert!(
            net("127.0.0.1").contains(ip("::ffff:127.0.0.1")),
            "IPv4-mapped counts as IPv4"
        );
        assert!(net("fd00::/8").contains(ip("fd12::1")));
        assert!(!net("fd00::/8").contains(ip("fe80::1")));
        assert!(net("::/0").contains(ip("::1")));
        assert!(net("::1").contains(ip("::1")));
        assert!(!net("::1/128").contains(ip("::2")));
    }

    #[test]
    fn the_seeds_blocklist_by_port() {
        let r = rules(&[(Action::Deny, "127.0.0.1:7777")]);
        assert_eq!(
            denied(r.check(None, ip("127.0.0.1"), 7777)).as_deref(),
            Some("--deny 127.0.0.1:7777")
        );
        assert_eq!(denied(r.check(None, ip("127.0.0.1"), 7778)), None);
        assert_eq!(denied(r.check(None, ip("127.0.0.2"), 7777)), None);
        let r = rules(&[(Action::Deny, "port=7000-7999")]);
        assert!(denied(r.check(None, ip("1.2.3.4"), 7000)).is_some());
        assert!(denied(r.check(None, ip("::1"), 7999)).is_some());
        assert!(denied(r.check(None, ip("::1"), 8000)).is_none());
    }

    #[test]
    fn the_first_matching_rule_wins_and_no_match_allows() {
        let r = rules(&[(Action::Allow, "10.1.0.0/16"), (Action::Deny, "10.0.0.0/8")]);
        assert_eq!(
            r.check(None, ip("10.1.2.3"), 80),
            Verdict::Allowed(Some(&r.rules[0]))
        );
        assert_eq!(
            r.check(None, ip("10.2.2.3"), 80),
            Verdict::Denied(&r.rules[1])
        );
        assert_eq!(r.check(None, ip("192.0.2.1"), 80), Verdict::Allowed(None));
        // The other order: the broader deny comes first and wins.
        let r = rules(&[(Action::Deny, "10.0.0.0/8"), (Action::Allow, "10.1.0.0/16")]);
        assert!(denied(r.check(None, ip("10.1.2.3"), 80)).is_some());
        // An allowlist ends with a deny of everything.
        let r = rules(&[(Action::Allow, "127.0.0.0/8"), (Action::Deny, "*")]);
        assert!(denied(r.check(None, ip("127.0.0.1"), 80)).is_none());
        assert!(denied(r.check(None, ip("::1"), 80)).is_some());
    }

    #[test]
    fn name_rules_match_the_name_the_client_asked_for() {
        let r = rules(&[
            (Action::Deny, "*.example.org"),
            (Action::Deny, "blocked.test:443"),
        ]);
        let any = ip("192.0.2.1");
        assert!(denied(r.check(Some("www.example.org"), any, 80)).is_some());
        assert!(denied(r.check(Some("a.b.example.org"), any, 80)).is_some());
        assert!(
            denied(r.check(Some("example.org"), any, 80)).is_none(),
            "*.x is not x itself"
        );
        assert!(denied(r.check(Some("badexample.org"), any, 80)).is_none());
        assert!(denied(r.check(Some("blocked.test"), any, 443)).is_some());
        assert!(denied(r.check(Some("blocked.test"), any, 80)).is_none());
        assert!(
            denied(r.check(None, any, 443)).is_none(),
            "by address, name rules do not apply"
        );
    }

    #[test]
    fn a_name_is_decided_before_resolution_only_when_no_address_rule_comes_first() {
        let r = rules(&[(Action::Deny, "localhost"), (Action::Deny, "10.0.0.0/8")]);
        assert!(matches!(
            r.check_name("localhost", 80),
            Some(Verdict::Denied(_))
        ));
        assert_eq!(
            r.check_name("example.org", 80),
            None,
            "10.0.0.0/8 needs the address"
        );
        let r = rules(&[(Action::Deny, "10.0.0.0/8:22"), (Action::Deny, "port=7777")]);
        assert!(
            matches!(r.check_name("x.test", 7777), Some(Verdict::Denied(_))),
            "the address rule's port does not match, so it is skipped"
        );
        assert_eq!(r.check_name("x.test", 22), None);
        assert_eq!(r.check_name("x.test", 80), Some(Verdict::Allowed(None)));
        assert_eq!(
            Rules::default().check_name("x.test", 80),
            Some(Verdict::Allowed(None))
        );
    }
}
