//! Checks a scenario as a whole before anything runs: one action per step, modifiers that
//! go with their action, clients that exist when named, sensible bounds. Every mistake is
//! reported with its file, line and key.

use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use super::raw::{Dur, RawExpect, RawLab, RawScenario, RawSocks5, RawStep};
use super::{
    Action, Bounds, Check, ClientSel, Condition, Counted, DEFAULT_DEADLINE, DirectionSel,
    Expectation, FramePick, HeldAction, HowClosed, LabSetup, MAX_CLIENTS, MAX_DEADLINE,
    MAX_MESSAGE, Message, Scenario, ScenarioKey, Step,
};
use crate::lab::LabConfig;
use crate::script::link::LinkSpec;
use crate::script::source::{ScenarioError, Source};

/// The largest `[lab.tunnel] window`, as the CLI's `--window` allows.
const MAX_WINDOW: u32 = 65_536;

pub(super) struct Checker<'a> {
    pub(super) source: &'a Source,
    /// A key from the command line replaces `key_file`, which is then not read.
    pub(super) key_given: bool,
}

/// The keys of a step that name its action.
const STEP_ACTIONS: &[&str] = &[
    "start_clients",
    "send",
    "send_size",
    "close",
    "stop",
    "start",
    "wait",
    "wait_for",
    "link",
    "hold",
    "release",
    "drop",
    "duplicate",
    "socks5",
];

/// Which actions each step modifier goes with.
const STEP_MODIFIERS: &[(&str, &[&str])] = &[
    ("client", &["send", "send_size", "close", "wait_for"]),
    ("count", &["send", "send_size"]),
    ("interval", &["send", "send_size"]),
    ("timeout", &["wait_for", "release", "drop", "duplicate"]),
    ("direction", &["release", "drop", "duplicate"]),
    ("id", &["release", "drop", "duplicate"]),
    ("occurrence", &["release", "drop", "duplicate"]),
    ("user", &["socks5"]),
    ("message", &["socks5"]),
];

/// The keys of an expectation that name its check.
const EXPECT_CHECKS: &[&str] = &[
    "echo_intact",
    "refused",
    "unanswered",
    "waited",
    "gave_up_waiting",
    "opened",
    "id_freed",
    "closed",
    "frames",
    "captured",
    "dropped",
    "retransmits",
    "no_malformed",
    "socks5_reply",
];

/// Which checks each expectation modifier goes with.
const EXPECT_MODIFIERS: &[(&str, &[&str])] = &[
    ("how", &["closed"]),
    ("id", &["opened"]),
    ("client", &["retransmits"]),
    ("direction", &["frames", "dropped", "retransmits"]),
    ("counted", &["frames"]),
    ("exactly", &["frames", "captured", "dropped", "retransmits"]),
    ("min", &["frames", "captured", "dropped", "retransmits"]),
    ("max", &["frames", "captured", "dropped", "retransmits"]),
    ("socks5_client", &["socks5_reply"]),
];

impl Checker<'_> {
    pub(super) fn scenario(&self, raw: RawScenario) -> Result<Scenario, ScenarioError> {
        let deadline = match &raw.deadline {
            Some(deadline) => {
                let value = deadline.get_ref().0;
                if value.is_zero() || value > MAX_DEADLINE {
                    return Err(self.source.error(
                        deadline.span(),
                        Some("deadline"),
                        format!(
                            "the deadline must be more than 0 and at most {}",
                            humantime::format_duration(MAX_DEADLINE)
                        ),
                    ));
                }
                value
            }
            None => DEFAULT_DEADLINE,
        };
        let lab = self.lab(raw.lab)?;
        let mut clients = lab.clients;
        let mut holding = false;
        let mut steps = Vec::with_capacity(raw.step.len());
        for step in raw.step {
            let span = step.span();
            let step = self.step(step, &mut clients, &mut holding)?;
            if matches!(step.action, Action::Socks5(_)) && !lab.socks5 {
                return Err(self.source.key_error(
                    span.start,
                    "socks5",
                    "this step starts a SOCKS5 client, but the lab has no SOCKS5 port: add [lab.socks5]",
                ));
            }
            steps.push(step);
        }
        let socks5_clients = steps
            .iter()
            .filter(|s| matches!(s.action, Action::Socks5(_)))
            .count();
        let mut expectations = Vec::with_capacity(raw.expect.len());
        for expect in raw.expect {
            expectations.push(self.expectation(expect, clients, socks5_clients, &lab)?);
        }
        let name = raw.name.unwrap_or_else(|| {
            std::path::Path::new(&self.source.file)
                .file_stem()
                .map_or_else(|| self.source.file.clone(), |s| s.to_string_lossy().into())
        });
        Ok(Scenario {
            name,
            file: self.source.file.clone(),
            description: raw.description,
            deadline,
            lab,
            steps,
            expectations,
        })
    }

    fn lab(&self, raw: RawLab) -> Result<LabSetup, ScenarioError> {
        let placeholder = LabConfig::default();
        let mut proxy1 = placeholder.proxy1;
        let mut proxy2 = placeholder.proxy2;
        let tunnel = raw.tunnel;
        if let Some(attempts) = tunnel.connect_attempts {
            if *attempts.get_ref() == 0 {
                return Err(self.source.error(
                    attempts.span(),
                    Some("lab.tunnel.connect_attempts"),
                    "proxy1 must send C at least once",
                ));
            }
            proxy1.connect_attempts = attempts.into_inner();
        }
        if let Some(Dur(retry)) = tunnel.connect_retry {
            proxy1.connect_retry = retry;
        }
        if let Some(Dur(wait)) = tunnel.id_wait {
            proxy1.id_wait = wait;
        }
        if let Some(Dur(idle)) = tunnel.idle_timeout {
            proxy1.idle_timeout = idle.into();
            proxy2.idle_timeout = idle.into();
        }
        if let Some(Dur(timeout)) = tunnel.server_connect_timeout {
            proxy2.connect_timeout = timeout;
        }
        if let Some(Dur(unused)) = tunnel.unused_timeout {
            proxy1.unused_timeout = unused;
            proxy2.unused_timeout = unused;
        }
        if let Some(Dur(linger)) = tunnel.half_close_linger {
            proxy1.half_close_linger = linger;
        }
        if let Some(attempts) = tunnel.close_attempts {
            if *attempts.get_ref() == 0 {
                return Err(self.source.error(
                    attempts.span(),
                    Some("lab.tunnel.close_attempts"),
                    "proxy1 must send X at least once",
                ));
            }
            proxy1.close_attempts = attempts.into_inner();
        }
        if let Some(Dur(retry)) = tunnel.close_retry {
            proxy1.close_retry = retry;
        }
        if let Some(Dur(probe)) = tunnel.probe_after {
            proxy1.probe_after = probe;
        }
        if let Some(max) = tunnel.max_connections {
            proxy2.limits.max_connections = max;
        }
        if let Some(max) = tunnel.max_peers {
            proxy2.limits.max_peers = max;
        }
        if tunnel.window.is_some() || tunnel.rto.is_some() {
            let key = if tunnel.window.is_some() {
                "window"
            } else {
                "rto"
            };
            if !raw.wire.is_reliable() {
                let span = match (&tunnel.window, &tunnel.rto) {
                    (Some(window), _) => window.span(),
                    (None, Some(rto)) => rto.span(),
                    (None, None) => unreachable!("one of them is set"),
                };
                return Err(self.source.error(
                    span,
                    Some(&format!("lab.tunnel.{key}")),
                    format!(
                        "`{key}` is for the reliable modes: set [lab] wire to \"stop-and-wait\", \"go-back-n\" or \"selective-repeat\""
                    ),
                ));
            }
            let defaults = crate::transport::TransportConfig::for_mode(raw.wire);
            let mut transport = defaults;
            if let Some(window) = tunnel.window {
                let n = *window.get_ref();
                if !(1..=MAX_WINDOW).contains(&n) {
                    return Err(self.source.error(
                        window.span(),
                        Some("lab.tunnel.window"),
                        format!("a window is 1 to {MAX_WINDOW} frames"),
                    ));
                }
                transport.window = n;
                transport.send_buffer = n as usize * defaults.max_payload;
            }
            if let Some(rto) = tunnel.rto {
                let Dur(rto) = rto.into_inner();
                transport.rto = crate::transport::RtoConfig::Fixed(rto);
            }
            proxy1.transport = Some(transport);
            proxy2.transport = Some(transport);
        }
        if let Some(cc) = raw.cc {
            if !raw.wire.is_extended() {
                return Err(self.source.error(
                    cc.span(),
                    Some("lab.cc"),
                    "`cc` is for the windowed modes: set [lab] wire to \"go-back-n\" or \"selective-repeat\"",
                ));
            }
            let mut transport = proxy1
                .transport
                .unwrap_or_else(|| crate::transport::TransportConfig::for_mode(raw.wire));
            transport.congestion = cc.into_inner();
            proxy1.transport = Some(transport);
            proxy2.transport = Some(transport);
        }
        let clients = match raw.clients {
            Some(clients) if *clients.get_ref() > MAX_CLIENTS => {
                return Err(self.source.error(
                    clients.span(),
                    Some("lab.clients"),
                    format!("at most {MAX_CLIENTS} clients"),
                ));
            }
            Some(clients) => clients.into_inner(),
            None => 0,
        };
        let link = raw
            .link
            .map(|table| self.link(table, "lab.link"))
            .transpose()?;
        let key = raw
            .key_file
            .filter(|_| !self.key_given)
            .map(|file| self.key_file(file, raw.wire))
            .transpose()?;
        let socks5 = match raw.socks5 {
            Some(socks5) => {
                self.socks5_lab(socks5, raw.wire, &mut proxy1, &mut proxy2)?;
                true
            }
            None => false,
        };
        Ok(LabSetup {
            server_port: raw.ports.server,
            proxy1_port: raw.ports.proxy1,
            proxy2_port: raw.ports.proxy2,
            wire: raw.wire,
            clients,
            // The TCP legs go into the link's capture: a pcapng one unless a format is given.
            capture: raw
                .capture
                .0
                .or(raw.capture_tcp.then_some(super::CaptureFormat::Pcapng)),
            capture_dir: raw.capture_dir.unwrap_or_else(|| PathBuf::from("captures")),
            capture_tcp: raw.capture_tcp,
            proxy1,
            proxy2,
            link,
            key,
            socks5,
        })
    }

    /// Reads `[lab] key_file`: relative to the scenario file's directory (a scenario and its
    /// key travel together, wherever it is run from), for an extended mode only.
    fn key_file(
        &self,
        file: Spanned<PathBuf>,
        wire: crate::wire::WireMode,
    ) -> Result<ScenarioKey, ScenarioError> {
        let span = file.span();
        if let Some(why) = ScenarioKey::refuses(wire, "key_file") {
            return Err(self.source.error(span, Some("lab.key_file"), why));
        }
        let given = file.into_inner();
        let path = match std::path::Path::new(&self.source.file).parent() {
            Some(dir) if given.is_relative() => dir.join(&given),
            _ => given,
        };
        ScenarioKey::load(path)
            .map_err(|e| self.source.error(span, Some("lab.key_file"), e.to_string()))
    }

    /// `[lab.socks5]`: an extended mode, users that read as `NAME:PASS`, rules that read as
    /// `allow RULE` or `deny RULE`.
    fn socks5_lab(
        &self,
        raw: Spanned<RawSocks5>,
        wire: crate::wire::WireMode,
        proxy1: &mut crate::roles::proxy1::Proxy1Config,
        proxy2: &mut crate::roles::proxy2::Proxy2Config,
    ) -> Result<(), ScenarioError> {
        use crate::roles::dialers::{DialerConfig, ResolverDialer, Rule, RulePattern, Rules};
        use crate::roles::fronts::socks5::{Socks5User, Socks5Users};
        let span = raw.span();
        if !wire.is_extended() {
            return Err(self.source.error(
                span,
                Some("lab.socks5"),
                format!(
                    "{}; set [lab] wire to \"go-back-n\" or \"selective-repeat\"",
                    crate::roles::proxy1::SOCKS5_NEEDS_EXTENDED
                ),
            ));
        }
        let raw = raw.into_inner();
        let mut users = Vec::new();
        for user in raw.users {
            let parsed = user.get_ref().parse::<Socks5User>().map_err(|e| {
                self.source
                    .error(user.span(), Some("lab.socks5.users"), e.clone())
            })?;
            users.push(parsed);
        }
        let mut rules = Vec::new();
        for rule in raw.rules {
            let text = rule.get_ref().trim();
            let error = |message: String| {
                self.source
                    .error(rule.span(), Some("lab.socks5.rules"), message)
            };
            let (verb, pattern) = text.split_once(' ').unwrap_or((text, ""));
            let pattern = pattern
                .trim()
                .parse::<RulePattern>()
                .map_err(|e| error(e.clone()))?;
            rules.push(match verb {
                "allow" => Rule::allow(pattern),
                "deny" => Rule::deny(pattern),
                _ => {
                    return Err(error(format!(
                        "{text:?}: a rule is \"deny RULE\" or \"allow RULE\", like \"deny port=7000-7999\""
                    )));
                }
            });
        }
        proxy1.socks5.front.users = std::sync::Arc::new(Socks5Users::new(users));
        proxy2.dialer = ResolverDialer::new(DialerConfig {
            rules: Rules::new(rules),
            connect_timeout: proxy2.connect_timeout,
            ..DialerConfig::default()
        });
        Ok(())
    }

    fn link(&self, table: Spanned<toml::Table>, key: &str) -> Result<LinkSpec, ScenarioError> {
        let span = table.span();
        let spec = LinkSpec::new(table.into_inner());
        spec.check(key == "lab.link")
            .map_err(|message| self.source.error(span, Some(key), message))?;
        Ok(spec)
    }

    /// The one action key of a table, or an error naming what is wrong.
    fn single<'k>(
        &self,
        span: &Range<usize>,
        what: &str,
        all: &[&'k str],
        present: &[&'k str],
    ) -> Result<&'k str, ScenarioError> {
        let found: Vec<&str> = all
            .iter()
            .copied()
            .filter(|k| present.contains(k))
            .collect();
        match found.as_slice() {
            [one] => Ok(one),
            [] => Err(self.source.error(
                span.clone(),
                None,
                format!("this {what} does nothing: give it one of {}", all.join(", ")),
            )),
            [first, second, ..] => Err(self.source.key_error(
                span.start,
                second,
                format!(
                    "a {what} does one thing, but this one has both `{first}` and `{second}`: split it in two"
                ),
            )),
        }
    }

    /// Rejects modifier keys that do not go with the table's action.
    fn modifiers(
        &self,
        span: &Range<usize>,
        action: &str,
        rules: &[(&str, &[&str])],
        present: &[&str],
    ) -> Result<(), ScenarioError> {
        for (key, allowed) in rules {
            if present.contains(key) && !allowed.contains(&action) {
                return Err(self.source.key_error(
                    span.start,
                    key,
                    format!(
                        "`{key}` does not go with `{action}` (it goes with {})",
                        allowed
                            .iter()
                            .map(|a| format!("`{a}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Checks that every client named exists by this point.
    fn clients_exist(
        &self,
        selection: &Spanned<ClientSel>,
        key: &str,
        started: u32,
        when: &str,
    ) -> Result<(), ScenarioError> {
        let path = self.source.key_path(selection.span().start, key);
        let error = |message: String| self.source.error(selection.span(), Some(&path), message);
        match selection.get_ref() {
            ClientSel::All if started == 0 => Err(error(format!(
                "\"all\" selects no client: none is started {when} (use [lab] clients or a start_clients step)"
            ))),
            ClientSel::All => Ok(()),
            ClientSel::Some(list) => match list.iter().find(|&&n| n > started) {
                Some(n) => Err(error(format!(
                    "there is no client {n} {when}: only {started} {} started",
                    if started == 1 { "is" } else { "are" }
                ))),
                None => Ok(()),
            },
        }
    }

    fn step(
        &self,
        raw: Spanned<RawStep>,
        started: &mut u32,
        holding: &mut bool,
    ) -> Result<Step, ScenarioError> {
        let span = raw.span();
        let line = self.source.position(span.start).line;
        let raw = raw.into_inner();
        let present: Vec<&str> = [
            ("start_clients", raw.start_clients.is_some()),
            ("send", raw.send.is_some()),
            ("send_size", raw.send_size.is_some()),
            ("close", raw.close.is_some()),
            ("stop", raw.stop.is_some()),
            ("start", raw.start.is_some()),
            ("wait", raw.wait.is_some()),
            ("wait_for", raw.wait_for.is_some()),
            ("link", raw.link.is_some()),
            ("hold", raw.hold.is_some()),
            ("release", raw.release.is_some()),
            ("drop", raw.drop.is_some()),
            ("duplicate", raw.duplicate.is_some()),
            ("socks5", raw.socks5.is_some()),
            ("user", raw.user.is_some()),
            ("message", raw.message.is_some()),
            ("client", raw.client.is_some()),
            ("count", raw.count.is_some()),
            ("interval", raw.interval.is_some()),
            ("timeout", raw.timeout.is_some()),
            ("direction", raw.direction.is_some()),
            ("id", raw.id.is_some()),
            ("occurrence", raw.occurrence.is_some()),
        ]
        .into_iter()
        .filter_map(|(key, set)| set.then_some(key))
        .collect();
        let action_key = self.single(&span, "step", STEP_ACTIONS, &present)?;
        self.modifiers(&span, action_key, STEP_MODIFIERS, &present)?;
        let when = format!("by this step (line {line})");
        let clients = match &raw.client {
            Some(selection) => {
                self.clients_exist(selection, "client", *started, &when)?;
                selection.get_ref().clone()
            }
            None => ClientSel::All,
        };
        let needs_clients = matches!(action_key, "send" | "send_size" | "close")
            || raw.wait_for.is_some_and(Condition::takes_clients);
        if needs_clients && raw.client.is_none() && *started == 0 {
            return Err(self.source.error(
                span.clone(),
                None,
                format!(
                    "`{action_key}` applies to every client, but no client is started {when} (use [lab] clients or a start_clients step)"
                ),
            ));
        }
        let action = match action_key {
            "start_clients" => {
                let n = raw.start_clients.unwrap_or(0);
                if n == 0 || n > MAX_CLIENTS || *started + n > MAX_CLIENTS {
                    return Err(self.source.key_error(
                        span.start,
                        "start_clients",
                        format!("start 1 or more clients, and at most {MAX_CLIENTS} in all"),
                    ));
                }
                *started += n;
                Action::StartClients(n)
            }
            "send" | "send_size" => {
                let message = match (raw.send, raw.send_size) {
                    (Some(text), _) => Message::Text(text),
                    (None, Some(size)) => Message::Size(size),
                    (None, None) => unreachable!("the action key is present"),
                };
                let len = message.bytes().len();
                if len == 0 || len > MAX_MESSAGE {
                    return Err(self.source.key_error(
                        span.start,
                        action_key,
                        format!("a message is 1 to {MAX_MESSAGE} bytes long"),
                    ));
                }
                let count = raw.count.unwrap_or(1);
                if count == 0 {
                    return Err(self.source.key_error(
                        span.start,
                        "count",
                        "send at least 1 message",
                    ));
                }
                Action::Send {
                    clients,
                    message,
                    count,
                    interval: raw.interval.map_or(Duration::ZERO, |d| d.0),
                }
            }
            "close" => Action::Close {
                clients,
                how: raw.close.expect("the action key is present"),
            },
            "stop" => Action::Stop(raw.stop.expect("the action key is present")),
            "start" => Action::Start(raw.start.expect("the action key is present")),
            "wait" => Action::Wait(raw.wait.expect("the action key is present").0),
            "wait_for" => {
                let condition = raw.wait_for.expect("the action key is present");
                if !condition.takes_clients() && raw.client.is_some() {
                    return Err(self.source.key_error(
                        span.start,
                        "client",
                        "\"ids-free\" is about every id; it takes no `client`",
                    ));
                }
                Action::WaitFor {
                    condition,
                    clients,
                    timeout: raw.timeout.map(|d| d.0),
                }
            }
            "link" => {
                Action::SetLink(self.link(raw.link.expect("the action key is present"), "link")?)
            }
            "hold" => {
                let on = raw.hold.expect("the action key is present");
                *holding = on;
                Action::Hold(on)
            }
            "release" | "drop" | "duplicate" => {
                if !*holding {
                    return Err(self.source.key_error(
                        span.start,
                        action_key,
                        format!(
                            "the link is not held here, so there is nothing to {action_key}: add a step `hold = true` before this one"
                        ),
                    ));
                }
                let (what, selection) = match action_key {
                    "release" => (HeldAction::Release, raw.release),
                    "drop" => (HeldAction::Drop, raw.drop),
                    _ => (HeldAction::Duplicate, raw.duplicate),
                };
                let occurrence = raw.occurrence.unwrap_or(1);
                if occurrence == 0 {
                    return Err(self.source.key_error(
                        span.start,
                        "occurrence",
                        "occurrences count from 1 (the oldest matching frame held)",
                    ));
                }
                Action::Held {
                    what,
                    pick: FramePick {
                        kind: selection.expect("the action key is present").0,
                        direction: raw.direction.unwrap_or(DirectionSel::Both),
                        id: raw.id,
                        occurrence,
                    },
                    timeout: raw.timeout.map(|d| d.0),
                }
            }
            "socks5" => Action::Socks5(self.socks5_step(
                raw.socks5.expect("the action key is present"),
                raw.user,
                raw.message,
            )?),
            other => unreachable!("unknown step action {other}"),
        };
        Ok(Step {
            line,
            at: raw.at.map(|d| d.0),
            action,
        })
    }

    /// A `socks5` step: `"server"` (the lab's echo server) or `HOST:PORT`, an optional
    /// `user = "NAME:PASS"` and `message`.
    fn socks5_step(
        &self,
        target: Spanned<String>,
        user: Option<Spanned<String>>,
        message: Option<String>,
    ) -> Result<crate::script::socks5_client::Socks5Request, ScenarioError> {
        use crate::script::socks5_client::{Socks5Request, Socks5Target};
        let text = target.get_ref().as_str();
        let target = if text == "server" {
            Socks5Target::Server
        } else {
            let bad = || {
                self.source.error(
                    target.span(),
                    Some("socks5"),
                    format!(
                        "{text:?} is not a destination: write \"server\" (the lab's echo server) or HOST:PORT, like \"localhost:7777\" or \"[::1]:22\""
                    ),
                )
            };
            let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
            let port: u16 = port.parse().map_err(|_| bad())?;
            Socks5Target::Named(
                crate::destination::Destination::name(host.as_bytes(), port).map_err(|_| bad())?,
            )
        };
        let login = match user {
            Some(user) => {
                let text = user.get_ref();
                match text.split_once(':') {
                    Some((name, pass))
                        if (1..=255).contains(&name.len()) && (1..=255).contains(&pass.len()) =>
                    {
                        Some((name.to_string(), pass.to_string()))
                    }
                    _ => {
                        return Err(self.source.error(
                            user.span(),
                            Some("user"),
                            "a login is NAME:PASS (each 1 to 255 bytes)",
                        ));
                    }
                }
            }
            None => None,
        };
        Ok(Socks5Request {
            target,
            login,
            message,
        })
    }

    fn expectation(
        &self,
        raw: Spanned<RawExpect>,
        clients: u32,
        socks5_clients: usize,
        lab: &LabSetup,
    ) -> Result<Expectation, ScenarioError> {
        let span = raw.span();
        let line = self.source.position(span.start).line;
        let raw = raw.into_inner();
        let present: Vec<&str> = [
            ("echo_intact", raw.echo_intact.is_some()),
            ("refused", raw.refused.is_some()),
            ("unanswered", raw.unanswered.is_some()),
            ("waited", raw.waited.is_some()),
            ("gave_up_waiting", raw.gave_up_waiting.is_some()),
            ("opened", raw.opened.is_some()),
            ("id_freed", raw.id_freed.is_some()),
            ("closed", raw.closed.is_some()),
            ("frames", raw.frames.is_some()),
            ("captured", raw.captured.is_some()),
            ("dropped", raw.dropped.is_some()),
            ("retransmits", raw.retransmits.is_some()),
            ("no_malformed", raw.no_malformed.is_some()),
            ("socks5_reply", raw.socks5_reply.is_some()),
            ("socks5_client", raw.socks5_client.is_some()),
            ("client", raw.client.is_some()),
            ("how", raw.how.is_some()),
            ("id", raw.id.is_some()),
            ("direction", raw.direction.is_some()),
            ("counted", raw.counted.is_some()),
            ("exactly", raw.exactly.is_some()),
            ("min", raw.min.is_some()),
            ("max", raw.max.is_some()),
        ]
        .into_iter()
        .filter_map(|(key, set)| set.then_some(key))
        .collect();
        let check_key = self.single(&span, "[[expect]]", EXPECT_CHECKS, &present)?;
        self.modifiers(&span, check_key, EXPECT_MODIFIERS, &present)?;
        let by_the_end = "by the end of the steps";
        let selection = |value: Option<Spanned<ClientSel>>| -> Result<ClientSel, ScenarioError> {
            let value = value.expect("the check key is present");
            self.clients_exist(&value, check_key, clients, by_the_end)?;
            Ok(value.into_inner())
        };
        let bounds = || -> Result<Bounds, ScenarioError> {
            let bounds = match (raw.exactly, raw.min, raw.max) {
                (Some(exactly), None, None) => Bounds {
                    min: Some(exactly),
                    max: Some(exactly),
                },
                (Some(_), _, _) => {
                    return Err(self.source.key_error(
                        span.start,
                        "exactly",
                        "`exactly` says it all: drop `min` and `max`",
                    ));
                }
                (None, None, None) => {
                    return Err(self.source.error(
                        span.clone(),
                        Some(&format!("expect.{check_key}")),
                        format!("give `{check_key}` a bound: `exactly`, `min` or `max`"),
                    ));
                }
                (None, min, max) => Bounds { min, max },
            };
            if let (Some(min), Some(max)) = (bounds.min, bounds.max)
                && min > max
            {
                return Err(self.source.key_error(
                    span.start,
                    "min",
                    format!("`min` ({min}) is more than `max` ({max})"),
                ));
            }
            Ok(bounds)
        };
        let check = match check_key {
            "echo_intact" => Check::EchoIntact(selection(raw.echo_intact)?),
            "refused" => Check::Refused(selection(raw.refused)?),
            "unanswered" => Check::Unanswered(selection(raw.unanswered)?),
            "waited" => Check::Waited(selection(raw.waited)?),
            "gave_up_waiting" => Check::GaveUpWaiting(selection(raw.gave_up_waiting)?),
            "opened" => Check::Opened(selection(raw.opened)?, raw.id),
            "id_freed" => Check::IdFreed(selection(raw.id_freed)?),
            "closed" => Check::Closed(selection(raw.closed)?, raw.how.unwrap_or(HowClosed::Any)),
            "frames" => Check::Frames {
                kind: raw.frames.expect("the check key is present"),
                direction: raw.direction.unwrap_or(DirectionSel::Both),
                counted: raw.counted.unwrap_or(Counted::Sent),
                bounds: bounds()?,
            },
            "captured" => {
                if lab.capture.is_none() {
                    return Err(self.source.key_error(
                        span.start,
                        "captured",
                        "this scenario captures nothing: set [lab] capture = \"pcap\" (or \"pcapng\")",
                    ));
                }
                Check::Captured {
                    kind: raw.captured.expect("the check key is present"),
                    bounds: bounds()?,
                }
            }
            "dropped" => Check::Dropped {
                kind: raw.dropped.expect("the check key is present"),
                direction: raw.direction.unwrap_or(DirectionSel::Both),
                bounds: bounds()?,
            },
            "retransmits" => {
                if !lab.wire.is_reliable() {
                    return Err(self.source.key_error(
                        span.start,
                        "retransmits",
                        format!(
                            "{} mode never retransmits: set [lab] wire to \"stop-and-wait\", \"go-back-n\" or \"selective-repeat\"",
                            lab.wire
                        ),
                    ));
                }
                let clients = match raw.client {
                    Some(value) => {
                        self.clients_exist(&value, "retransmits", clients, by_the_end)?;
                        Some(value.into_inner())
                    }
                    None => None,
                };
                Check::Retransmits {
                    cause: raw.retransmits.expect("the check key is present"),
                    clients,
                    direction: raw.direction.unwrap_or(DirectionSel::Both),
                    bounds: bounds()?,
                }
            }
            "no_malformed" => {
                if raw.no_malformed != Some(true) {
                    return Err(self.source.key_error(
                        span.start,
                        "no_malformed",
                        "`no_malformed = false` checks nothing: remove it, or bound malformed frames another way",
                    ));
                }
                Check::NoMalformed
            }
            "socks5_reply" => {
                use crate::script::socks5_client::Socks5Reply;
                let value = raw.socks5_reply.expect("the check key is present");
                let reply = match value.get_ref() {
                    toml::Value::String(text) => Socks5Reply::parse(text),
                    toml::Value::Integer(code) => {
                        u8::try_from(*code).ok().map(Socks5Reply::of_code)
                    }
                    _ => None,
                };
                let Some(reply) = reply else {
                    return Err(self.source.error(
                        value.span(),
                        Some("socks5_reply"),
                        "a SOCKS5 reply: \"succeeded\", \"general-failure\", \"not-allowed\", \"network-unreachable\", \"host-unreachable\", \"connection-refused\", \"ttl-expired\", \"login-refused\", \"no-acceptable-method\", \"no-reply\", or a reply code (0 to 255)",
                    ));
                };
                let Some(client) = raw.socks5_client else {
                    return Err(self.source.error(
                        span.clone(),
                        Some("expect.socks5_reply"),
                        "say which SOCKS5 client: `socks5_client = N` (numbered by their steps, from 1)",
                    ));
                };
                let n = *client.get_ref();
                if n == 0 || n > socks5_clients {
                    return Err(self.source.error(
                        client.span(),
                        Some("socks5_client"),
                        format!(
                            "there is no SOCKS5 client {n}: the steps start {socks5_clients} (numbered from 1)"
                        ),
                    ));
                }
                Check::Socks5Reply { client: n, reply }
            }
            other => unreachable!("unknown check {other}"),
        };
        Ok(Expectation {
            line,
            name: raw.name,
            check,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::DEFAULT_PROXY1_PORT;
    use crate::script::scenario::{CaptureFormat, FrameSel, parse};
    use crate::wire::{FrameKind, WireMode};

    fn parse_text(text: &str) -> Result<Scenario, ScenarioError> {
        parse(&Source::new("t.toml", text))
    }

    fn error_of(text: &str) -> ScenarioError {
        parse_text(text).expect_err("the scenario should be rejected")
    }

    #[test]
    fn a_complete_scenario_reads_as_written() {
        let scenario = parse_text(
            r#"
name = "demo"
deadline = "5s"
[lab]
ports = { proxy2 = 4000 }
clients = 2
capture = "pcapng"
[lab.tunnel]
connect_attempts = 2
connect_retry = "50ms"
id_wait = "1s"
[[step]]
send = "hola"
client = 2
count = 3
interval = "10ms"
[[step]]
start_clients = 1
[[step]]
at = "1s"
close = "rst"
client = [1, 3]
[[step]]
wait_for = "ids-free"
timeout = "2s"
[[expect]]
name = "echo"
echo_intact = "all"
[[expect]]
frames = "X"
direction = "to-proxy2"
min = 1
max = 3
[[expect]]
captured = "any"
exactly = 9
[[expect]]
dropped = "D"
direction = "to-proxy1"
max = 2
"#,
        )
        .unwrap();
        assert_eq!(scenario.name, "demo");
        assert_eq!(scenario.deadline, Duration::from_secs(5));
        assert_eq!(
            (
                scenario.lab.server_port,
                scenario.lab.proxy1_port,
                scenario.lab.proxy2_port
            ),
            (0, 0, 4000)
        );
        assert_eq!(scenario.lab.proxy1.connect_attempts, 2);
        assert_eq!(scenario.lab.proxy1.connect_retry, Duration::from_millis(50));
        assert_eq!(scenario.lab.capture, Some(CaptureFormat::Pcapng));
        assert_eq!(scenario.steps.len(), 4);
        assert!(matches!(
            &scenario.steps[0].action,
            Action::Send { clients: ClientSel::Some(c), count: 3, message: Message::Text(t), .. }
                if c == &[2] && t == "hola"
        ));
        assert_eq!(scenario.steps[2].at, Some(Duration::from_secs(1)));
        assert_eq!(scenario.steps[2].line, 19);
        assert!(matches!(
            scenario.expectations[1].check,
            Check::Frames {
                kind: FrameSel(Some(FrameKind::Close)),
                direction: DirectionSel::ToProxy2,
                counted: Counted::Sent,
                bounds: Bounds {
                    min: Some(1),
                    max: Some(3)
                }
            }
        ));
    }

    #[test]
    fn a_dropped_expectation_reads_as_written() {
        let scenario = parse_text(
            "[[expect]]\ndropped = \"D\"\ndirection = \"to-proxy1\"\nmax = 2\n[[expect]]\ndropped = \"any\"\nexactly = 0\n",
        )
        .unwrap();
        assert!(matches!(
            scenario.expectations[0].check,
            Check::Dropped {
                kind: FrameSel(Some(FrameKind::Data)),
                direction: DirectionSel::ToProxy1,
                bounds: Bounds {
                    min: None,
                    max: Some(2)
                }
            }
        ));
        let error = error_of("[[expect]]\ndropped = \"X\"\n");
        assert!(error.message.contains("give `dropped` a bound"), "{error}");
        let error = error_of("[[expect]]\ndropped = \"X\"\ncounted = \"sent\"\nmin = 1\n");
        assert!(
            error
                .message
                .contains("`counted` does not go with `dropped`"),
            "{error}"
        );
    }

    #[test]
    fn defaults_suit_ci() {
        let scenario = parse_text("").unwrap();
        assert_eq!(scenario.name, "t");
        assert_eq!(scenario.deadline, DEFAULT_DEADLINE);
        let config = scenario.lab.lab_config();
        assert_eq!(
            (config.server_port, config.proxy1_port, config.proxy2_port),
            (0, 0, 0)
        );
        assert_eq!(scenario.lab.capture, None);
        let course = parse_text("[lab]\nports = \"course\"\n").unwrap();
        assert_eq!(course.lab.proxy1_port, DEFAULT_PROXY1_PORT);
    }

    #[test]
    fn unknown_keys_name_their_line_and_table() {
        let error = error_of("[lab]\nclients = 1\n[[step]]\nsend = \"x\"\nclinet = 1\n");
        assert_eq!(error.position.unwrap().line, 5);
        assert_eq!(error.table.as_deref(), Some("[[step]] #1"));
        assert_eq!(error.key.as_deref(), Some("step.clinet"));
        assert!(error.message.contains("unknown field `clinet`"), "{error}");
    }

    #[test]
    fn bad_values_name_their_key() {
        let error = error_of("[lab.tunnel]\nid_wait = \"soon\"\n");
        assert_eq!(error.key.as_deref(), Some("lab.tunnel.id_wait"));
        assert!(error.message.contains("invalid duration"), "{error}");
        let error = error_of("[lab]\nclients = 1\n[[step]]\nclose = \"slam\"\n");
        assert_eq!(error.key.as_deref(), Some("step.close"));
        let error = error_of("[lab]\nclients = 1\n[[step]]\nsend = \"x\"\nclient = 0\n");
        assert!(error.message.contains("numbered from 1"), "{error}");
        let error = error_of("[lab]\nports = \"random\"\n");
        assert_eq!(error.key.as_deref(), Some("lab.ports"));
        let error = error_of("[lab]\nports = { server = 1818, proxy3 = 1 }\n");
        assert!(error.message.contains("proxy3"), "{error}");
    }

    #[test]
    fn a_step_does_exactly_one_thing() {
        let error = error_of("[lab]\nclients = 1\n[[step]]\ncount = 2\n");
        assert!(error.message.contains("does nothing"), "{error}");
        assert_eq!(error.position.unwrap().line, 3);
        let error = error_of("[lab]\nclients = 1\n[[step]]\nsend = \"a\"\nclose = \"fin\"\n");
        assert!(error.message.contains("both `send` and `close`"), "{error}");
        assert_eq!(error.position.unwrap().line, 5);
        let error = error_of("[lab]\nclients = 1\n[[step]]\nclose = \"fin\"\ncount = 2\n");
        assert_eq!(error.key.as_deref(), Some("step.count"));
        assert_eq!(error.position.unwrap().line, 5);
    }

    #[test]
    fn clients_must_exist_when_named() {
        let error = error_of("[lab]\nclients = 2\n[[step]]\nsend = \"a\"\nclient = 3\n");
        assert!(error.message.contains("no client 3"), "{error}");
        assert_eq!(error.position.unwrap().line, 5);
        parse_text(
            "[lab]\nclients = 2\n[[step]]\nstart_clients = 1\n[[step]]\nsend = \"a\"\nclient = 3\n",
        )
        .unwrap();
        let error = error_of("[[step]]\nsend = \"a\"\n");
        assert!(error.message.contains("no client is started"), "{error}");
        let error = error_of("[lab]\nclients = 2\n[[expect]]\nrefused = [1, 4]\n");
        assert!(error.message.contains("no client 4"), "{error}");
    }

    #[test]
    fn expectations_are_checked_too() {
        let error = error_of("[[expect]]\nframes = \"D\"\n");
        assert!(error.message.contains("bound"), "{error}");
        let error = error_of("[[expect]]\nframes = \"D\"\nmin = 3\nmax = 2\n");
        assert!(error.message.contains("more than"), "{error}");
        let error = error_of("[[expect]]\nframes = \"Q\"\nmin = 1\n");
        assert!(error.message.contains("frame type"), "{error}");
        let error = error_of("[[expect]]\ncaptured = \"any\"\nmin = 1\n");
        assert!(error.message.contains("captures nothing"), "{error}");
        let error = error_of("[[expect]]\nno_malformed = false\n");
        assert!(error.message.contains("checks nothing"), "{error}");
        let error = error_of("[lab]\nclients = 1\n[[expect]]\nwaited = 1\nhow = \"fin\"\n");
        assert!(
            error.message.contains("`how` does not go with `waited`"),
            "{error}"
        );
    }

    #[test]
    fn deadlines_are_bounded() {
        let error = error_of("deadline = \"0s\"\n");
        assert_eq!(error.key.as_deref(), Some("deadline"));
        let error = error_of("deadline = \"2h\"\n");
        assert!(error.message.contains("at most"), "{error}");
    }

    #[test]
    fn transport_keys_and_the_retransmits_expectation_read_as_written() {
        let scenario = parse_text(
            "[lab]\nwire = \"go-back-n\"\nclients = 2\n[lab.tunnel]\nwindow = 8\nrto = \"30ms\"\n\
             [[expect]]\nretransmits = \"fast\"\nclient = [1, 2]\ndirection = \"to-proxy1\"\nmax = 3\n\
             [[expect]]\nretransmits = \"any\"\nmin = 1\n",
        )
        .unwrap();
        let transport = scenario
            .lab
            .proxy1
            .transport
            .expect("set by window and rto");
        assert_eq!(transport.window, 8);
        assert_eq!(transport.send_buffer, 8 * WireMode::GoBackN.max_payload());
        assert_eq!(
            transport.rto,
            crate::transport::RtoConfig::Fixed(Duration::from_millis(30))
        );
        assert_eq!(scenario.lab.proxy2.transport, Some(transport));
        assert!(matches!(
            &scenario.expectations[0].check,
            Check::Retransmits {
                cause: super::super::RetransmitSel(Some(
                    crate::transport::RetransmitCause::FastRetransmit
                )),
                clients: Some(ClientSel::Some(_)),
                direction: DirectionSel::ToProxy1,
                bounds: Bounds {
                    min: None,
                    max: Some(3)
                },
            }
        ));
        assert!(matches!(
            &scenario.expectations[1].check,
            Check::Retransmits {
                clients: None,
                direction: DirectionSel::Both,
                ..
            }
        ));
    }

    #[test]
    fn congestion_control_is_a_lab_key_of_the_windowed_modes() {
        let scenario = parse_text("[lab]\nwire = \"selective-repeat\"\ncc = \"none\"\n").unwrap();
        let transport = scenario.lab.proxy1.transport.expect("set by cc");
        assert_eq!(
            transport.congestion,
            crate::transport::CongestionControl::None
        );
        assert_eq!(
            transport.window,
            crate::transport::TransportConfig::default_window(
                crate::wire::WireMode::SelectiveRepeat
            ),
            "the rest stays the default"
        );
        assert_eq!(scenario.lab.proxy2.transport, Some(transport));
        let scenario =
            parse_text("[lab]\nwire = \"go-back-n\"\ncc = \"newreno\"\n[lab.tunnel]\nwindow = 8\n")
                .unwrap();
        let transport = scenario.lab.proxy1.transport.unwrap();
        assert_eq!(
            (transport.window, transport.congestion),
            (8, crate::transport::CongestionControl::NewReno)
        );
        let scenario =
            parse_text("[lab]\nwire = \"selective-repeat\"\ncc = \"tolerant\"\n").unwrap();
        assert_eq!(
            scenario.lab.proxy1.transport.unwrap().congestion,
            crate::transport::CongestionControl::Tolerant
        );
        let error = error_of("[lab]\nwire = \"stop-and-wait\"\ncc = \"none\"\n");
        assert_eq!(error.key.as_deref(), Some("lab.cc"));
        assert!(error.message.contains("windowed modes"), "{error}");
        assert!(parse_text("[lab]\nwire = \"go-back-n\"\ncc = \"cubic\"\n").is_err());
    }

    #[test]
    fn transport_keys_and_retransmits_need_a_reliable_mode() {
        let error = error_of("[lab.tunnel]\nwindow = 8\n");
        assert_eq!(error.key.as_deref(), Some("lab.tunnel.window"));
        assert!(error.message.contains("reliable modes"), "{error}");
        let error = error_of("[lab.tunnel]\nrto = \"1s\"\n");
        assert_eq!(error.key.as_deref(), Some("lab.tunnel.rto"));
        let error = error_of("[lab]\nwire = \"selective-repeat\"\n[lab.tunnel]\nwindow = 0\n");
        assert!(error.message.contains("1 to 65536"), "{error}");
        let error = error_of("[[expect]]\nretransmits = \"any\"\nmin = 1\n");
        assert!(error.message.contains("never retransmits"), "{error}");
        let error = error_of(
            "[lab]\nwire = \"stop-and-wait\"\n[[expect]]\nretransmits = \"slow\"\nmin = 1\n",
        );
        assert!(error.message.contains("\"timeout\""), "{error}");
        let error =
            error_of("[lab]\nwire = \"stop-and-wait\"\n[[expect]]\nretransmits = \"any\"\n");
        assert!(
            error.message.contains("give `retransmits` a bound"),
            "{error}"
        );
        let error = error_of("[[expect]]\nframes = \"D\"\nclient = 1\nmin = 1\n");
        assert!(
            error.message.contains("`client` does not go with `frames`"),
            "{error}"
        );
    }

    #[test]
    fn generated_messages_are_printable_and_sized() {
        let bytes = Message::Size(200).bytes();
        assert_eq!(bytes.len(), 200);
        assert!(bytes.iter().all(u8::is_ascii_graphic));
        // Position-dependent: the next message of the stream differs, and the stream has no
        // period a lost or repeated frame could hide in.
        let next = Message::Size(200).bytes_at(200);
        assert_ne!(bytes, next);
        let stream = Message::Size(8192).bytes();
        for shift in 1..=1500 {
            assert_ne!(stream[..64], stream[shift..shift + 64], "shift {shift}");
        }
        assert_eq!(Message::Size(100).bytes_at(50)[..], stream[50..150]);
    }
}
