//! What serde reads from a scenario file: every key optional, unknown keys rejected with
//! their position, and values in the forms a person writes them (`"250ms"`, `"all"`, `[1, 3]`).
//! [`super::check`] then turns this into a [`super::Scenario`].

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Unexpected, Visitor};
use toml::Spanned;

use super::{
    CaptureFormat, ClientSel, Condition, Counted, DirectionSel, FrameSel, HowClosed, LabRole,
    RetransmitSel,
};
use crate::event::{ClientId, CloseKind};
use crate::lab::{DEFAULT_PROXY1_PORT, DEFAULT_PROXY2_PORT, DEFAULT_SERVER_PORT};
use crate::wire::{FrameKind, WireMode};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawScenario {
    pub(super) name: Option<String>,
    pub(super) description: Option<String>,
    pub(super) deadline: Option<Spanned<Dur>>,
    #[serde(default)]
    pub(super) lab: RawLab,
    #[serde(default)]
    pub(super) step: Vec<Spanned<RawStep>>,
    #[serde(default)]
    pub(super) expect: Vec<Spanned<RawExpect>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLab {
    #[serde(default)]
    pub(super) ports: Ports,
    #[serde(default)]
    pub(super) wire: WireMode,
    /// Go-Back-N and Selective Repeat: congestion control (the CLI's `--cc`).
    pub(super) cc: Option<Spanned<crate::transport::CongestionControl>>,
    pub(super) clients: Option<Spanned<u32>>,
    #[serde(default)]
    pub(super) capture: CaptureSetting,
    pub(super) capture_dir: Option<PathBuf>,
    #[serde(default)]
    pub(super) capture_tcp: bool,
    #[serde(default)]
    pub(super) tunnel: RawTunnel,
    pub(super) link: Option<Spanned<toml::Table>>,
    /// Seal the link with this key (the CLI's `--key-file`), relative to the scenario file.
    pub(super) key_file: Option<Spanned<PathBuf>>,
    pub(super) socks5: Option<Spanned<RawSocks5>>,
}

/// `[lab.socks5]`: proxy1's SOCKS5 port (on an ephemeral port), its users, proxy2's rules.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSocks5 {
    /// `NAME:PASS` each; none means "no authentication".
    #[serde(default)]
    pub(super) users: Vec<Spanned<String>>,
    /// `"deny RULE"` or `"allow RULE"`, in order (the CLI's `--deny`/`--allow`).
    #[serde(default)]
    pub(super) rules: Vec<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTunnel {
    pub(super) connect_attempts: Option<Spanned<u32>>,
    pub(super) connect_retry: Option<Dur>,
    pub(super) id_wait: Option<Dur>,
    pub(super) idle_timeout: Option<Dur>,
    pub(super) server_connect_timeout: Option<Dur>,
    pub(super) unused_timeout: Option<Dur>,
    pub(super) half_close_linger: Option<Dur>,
    pub(super) close_attempts: Option<Spanned<u32>>,
    pub(super) close_retry: Option<Dur>,
    pub(super) probe_after: Option<Dur>,
    pub(super) max_connections: Option<usize>,
    pub(super) max_peers: Option<usize>,
    /// Reliable modes: the transports' window, in frames (the CLI's `--window`).
    pub(super) window: Option<Spanned<u32>>,
    /// Reliable modes: a fixed retransmission timer (the CLI's `--rto`).
    pub(super) rto: Option<Spanned<Dur>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStep {
    pub(super) at: Option<Dur>,
    // Actions: exactly one per step.
    pub(super) start_clients: Option<u32>,
    pub(super) send: Option<String>,
    pub(super) send_size: Option<usize>,
    pub(super) close: Option<CloseKind>,
    pub(super) stop: Option<LabRole>,
    pub(super) start: Option<LabRole>,
    pub(super) wait: Option<Dur>,
    pub(super) wait_for: Option<Condition>,
    pub(super) link: Option<Spanned<toml::Table>>,
    pub(super) hold: Option<bool>,
    pub(super) release: Option<HeldSel>,
    pub(super) drop: Option<HeldSel>,
    pub(super) duplicate: Option<HeldSel>,
    pub(super) socks5: Option<Spanned<String>>,
    // Modifiers.
    pub(super) user: Option<Spanned<String>>,
    pub(super) message: Option<String>,
    pub(super) client: Option<Spanned<ClientSel>>,
    pub(super) direction: Option<DirectionSel>,
    pub(super) id: Option<u16>,
    pub(super) occurrence: Option<u32>,
    pub(super) count: Option<u32>,
    pub(super) interval: Option<Dur>,
    pub(super) timeout: Option<Dur>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawExpect {
    pub(super) name: Option<String>,
    // Checks: exactly one per expectation.
    pub(super) echo_intact: Option<Spanned<ClientSel>>,
    pub(super) refused: Option<Spanned<ClientSel>>,
    pub(super) unanswered: Option<Spanned<ClientSel>>,
    pub(super) waited: Option<Spanned<ClientSel>>,
    pub(super) gave_up_waiting: Option<Spanned<ClientSel>>,
    pub(super) opened: Option<Spanned<ClientSel>>,
    pub(super) id_freed: Option<Spanned<ClientSel>>,
    pub(super) closed: Option<Spanned<ClientSel>>,
    pub(super) frames: Option<FrameSel>,
    pub(super) captured: Option<FrameSel>,
    pub(super) dropped: Option<FrameSel>,
    pub(super) retransmits: Option<RetransmitSel>,
    pub(super) no_malformed: Option<bool>,
    pub(super) socks5_reply: Option<Spanned<toml::Value>>,
    // Modifiers.
    pub(super) socks5_client: Option<Spanned<usize>>,
    pub(super) client: Option<Spanned<ClientSel>>,
    pub(super) how: Option<HowClosed>,
    pub(super) id: Option<u16>,
    pub(super) direction: Option<DirectionSel>,
    pub(super) counted: Option<Counted>,
    pub(super) exactly: Option<u64>,
    pub(super) min: Option<u64>,
    pub(super) max: Option<u64>,
}

/// `ports = "auto" | "course" | { server = N, proxy1 = N, proxy2 = N }`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Ports {
    pub(super) server: u16,
    pub(super) proxy1: u16,
    pub(super) proxy2: u16,
}

impl Default for Ports {
    /// Scripts default to free ports, so CI jobs never collide.
    fn default() -> Self {
        Ports {
            server: 0,
            proxy1: 0,
            proxy2: 0,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PortTable {
    #[serde(default)]
    pub(super) server: u16,
    #[serde(default)]
    proxy1: u16,
    #[serde(default)]
    proxy2: u16,
}

impl<'de> Deserialize<'de> for Ports {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PortsVisitor;
        impl<'de> Visitor<'de> for PortsVisitor {
            type Value = Ports;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "\"auto\", \"course\", or a table like { server = 1818, proxy1 = 3327, proxy2 = 3328 }",
                )
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<Ports, E> {
                match value {
                    "auto" => Ok(Ports::default()),
                    "course" => Ok(Ports {
                        server: DEFAULT_SERVER_PORT,
                        proxy1: DEFAULT_PROXY1_PORT,
                        proxy2: DEFAULT_PROXY2_PORT,
                    }),
                    _ => Err(E::invalid_value(Unexpected::Str(value), &self)),
                }
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Ports, A::Error> {
                let table = PortTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(Ports {
                    server: table.server,
                    proxy1: table.proxy1,
                    proxy2: table.proxy2,
                })
            }
        }
        deserializer.deserialize_any(PortsVisitor)
    }
}

/// `capture = "off" | "pcap" | "pcapng"` (or a boolean: true is pcap).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct CaptureSetting(pub(super) Option<CaptureFormat>);

impl<'de> Deserialize<'de> for CaptureSetting {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CaptureVisitor;
        impl Visitor<'_> for CaptureVisitor {
            type Value = CaptureSetting;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("\"off\", \"pcap\" or \"pcapng\"")
            }
            fn visit_bool<E: de::Error>(self, on: bool) -> Result<CaptureSetting, E> {
                Ok(CaptureSetting(on.then_some(CaptureFormat::Pcap)))
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<CaptureSetting, E> {
                match value {
                    "off" => Ok(CaptureSetting(None)),
                    "pcap" => Ok(CaptureSetting(Some(CaptureFormat::Pcap))),
                    "pcapng" => Ok(CaptureSetting(Some(CaptureFormat::Pcapng))),
                    _ => Err(E::invalid_value(Unexpected::Str(value), &self)),
                }
            }
        }
        deserializer.deserialize_any(CaptureVisitor)
    }
}

/// A duration written the human way: `"250ms"`, `"2s"`, `"1m 30s"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Dur(pub(super) Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurVisitor;
        impl Visitor<'_> for DurVisitor {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration in quotes, like \"250ms\", \"2s\" or \"1m\"")
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<Dur, E> {
                // humantime's own message points at a character index; ours shows the form.
                humantime::parse_duration(value).map(Dur).map_err(|_| {
                    E::custom(format!(
                        "invalid duration {value:?}: write it like \"250ms\", \"2s\" or \"1m 30s\""
                    ))
                })
            }
        }
        deserializer.deserialize_any(DurVisitor)
    }
}

impl<'de> Deserialize<'de> for ClientSel {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SelVisitor;
        fn number<E: de::Error>(value: i64) -> Result<ClientId, E> {
            match ClientId::try_from(value) {
                Ok(n) if n >= 1 => Ok(n),
                _ => Err(E::invalid_value(
                    Unexpected::Signed(value),
                    &"a client number (clients are numbered from 1)",
                )),
            }
        }
        impl<'de> Visitor<'de> for SelVisitor {
            type Value = ClientSel;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a client number (1, 2, …), a list of them like [1, 3], or \"all\"")
            }
            fn visit_i64<E: de::Error>(self, value: i64) -> Result<ClientSel, E> {
                Ok(ClientSel::Some(vec![number(value)?]))
            }
            fn visit_u64<E: de::Error>(self, value: u64) -> Result<ClientSel, E> {
                self.visit_i64(i64::try_from(value).unwrap_or(i64::MAX))
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<ClientSel, E> {
                match value {
                    "all" => Ok(ClientSel::All),
                    _ => Err(E::invalid_value(Unexpected::Str(value), &self)),
                }
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ClientSel, A::Error> {
                let mut clients = Vec::new();
                while let Some(value) = seq.next_element::<i64>()? {
                    let n = number(value)?;
                    if !clients.contains(&n) {
                        clients.push(n);
                    }
                }
                if clients.is_empty() {
                    return Err(de::Error::custom(
                        "an empty list selects no client; name at least one, or \"all\"",
                    ));
                }
                Ok(ClientSel::Some(clients))
            }
        }
        deserializer.deserialize_any(SelVisitor)
    }
}

impl<'de> Deserialize<'de> for FrameSel {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let kind = match text.as_str() {
            "C" => Some(FrameKind::Connect),
            "OK" => Some(FrameKind::ConnectOk),
            "NOK" => Some(FrameKind::ConnectNok),
            "D" => Some(FrameKind::Data),
            "A" => Some(FrameKind::Ack),
            "X" => Some(FrameKind::Close),
            "any" => None,
            _ => {
                return Err(de::Error::invalid_value(
                    Unexpected::Str(&text),
                    &"a frame type: \"C\", \"OK\", \"NOK\", \"D\", \"A\", \"X\" or \"any\"",
                ));
            }
        };
        Ok(FrameSel(kind))
    }
}

/// Which held frame a `release`, `drop` or `duplicate` step acts on: a frame type, `"any"`,
/// or (for `release`) `"next"`, the oldest held frame whatever its type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct HeldSel(pub(super) Option<FrameKind>);

impl<'de> Deserialize<'de> for HeldSel {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        if text == "next" {
            return Ok(HeldSel(None));
        }
        let kind = FrameSel::deserialize(de::value::StrDeserializer::<D::Error>::new(&text))
            .map_err(|_| {
                de::Error::invalid_value(
                    Unexpected::Str(&text),
                    &"a frame type: \"C\", \"OK\", \"NOK\", \"D\", \"X\", \"any\" or \"next\"",
                )
            })?;
        Ok(HeldSel(kind.0))
    }
}

impl<'de> Deserialize<'de> for RetransmitSel {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let cause = match text.as_str() {
            "any" => None,
            "timeout" => Some(crate::transport::RetransmitCause::Timeout),
            "fast" => Some(crate::transport::RetransmitCause::FastRetransmit),
            "probe" => Some(crate::transport::RetransmitCause::Probe),
            _ => {
                return Err(de::Error::invalid_value(
                    Unexpected::Str(&text),
                    &"a retransmission cause: \"any\", \"timeout\", \"fast\" or \"probe\"",
                ));
            }
        };
        Ok(RetransmitSel(cause))
    }
}
