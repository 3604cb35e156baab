//! Where a tunnel connection leads, and why opening it failed: the two things the SOCKS5
//! front (proxy1), the dialer (proxy2) and the extended wire format (the destination inside
//! `C`, the reason inside `NOK`) share. A leaf module, so each of those layers can use it.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The host part of a destination: an address, or a name that the outside side resolves.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Host {
    Ip(IpAddr),
    /// A host name as the client gave it, lower-cased, without a trailing dot; never an
    /// address literal (those become [`Host::Ip`]).
    Name(String),
}

/// A destination: host and TCP port.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Destination {
    pub host: Host,
    pub port: u16,
}

/// Longest host name a destination carries (SOCKS5 and DNS both stop at 255 bytes).
pub const MAX_NAME_LEN: usize = 255;

/// Why a host name is not acceptable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("the host name is empty")]
    Empty,
    #[error("the host name is longer than 255 bytes")]
    TooLong,
    #[error("the host name has a byte that is not a letter, digit, '-', '_' or '.'")]
    BadByte,
}

impl Destination {
    /// A destination at an address.
    pub fn ip(ip: IpAddr, port: u16) -> Self {
        Destination {
            host: Host::Ip(ip),
            port,
        }
    }

    /// A destination by name. An address literal (`127.0.0.1`, `::1`, `[::1]`) becomes an
    /// address; a name is lower-cased and loses a trailing dot. Names are ASCII letters,
    /// digits, `-`, `_` and `.` (internationalised names arrive punycoded), 1 to 255 bytes.
    pub fn name(name: &[u8], port: u16) -> Result<Self, NameError> {
        let text = name.strip_suffix(b".").unwrap_or(name);
        if text.is_empty() {
            return Err(NameError::Empty);
        }
        if name.len() > MAX_NAME_LEN {
            return Err(NameError::TooLong);
        }
        let text = std::str::from_utf8(text).map_err(|_| NameError::BadByte)?;
        let literal = text
            .strip_prefix('[')
            .and_then(|t| t.strip_suffix(']'))
            .unwrap_or(text);
        if let Ok(ip) = literal.parse::<IpAddr>() {
            return Ok(Destination::ip(ip, port));
        }
        if !text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        {
            return Err(NameError::BadByte);
        }
        Ok(Destination {
            host: Host::Name(text.to_ascii_lowercase()),
            port,
        })
    }

    /// The name, when the destination was given by name.
    pub fn host_name(&self) -> Option<&str> {
        match &self.host {
            Host::Name(name) => Some(name),
            Host::Ip(_) => None,
        }
    }

    /// Appends the destination in SOCKS5's address encoding (RFC 1928 section 5):
    /// `0x01` + 4 bytes IPv4, `0x04` + 16 bytes IPv6, or `0x03` + length + name; then the
    /// port, big-endian. The extended `C` frame carries exactly these bytes.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match &self.host {
            Host::Ip(IpAddr::V4(ip)) => {
                out.push(address_type::IPV4);
                out.extend_from_slice(&ip.octets());
            }
            Host::Ip(IpAddr::V6(ip)) => {
                out.push(address_type::IPV6);
                out.extend_from_slice(&ip.octets());
            }
            Host::Name(name) => {
                out.push(address_type::NAME);
                // A name is at most 255 bytes by construction.
                out.push(name.len() as u8);
                out.extend_from_slice(name.as_bytes());
            }
        }
        out.extend_from_slice(&self.port.to_be_bytes());
    }

    /// Reads a destination in the encoding of [`Destination::encode`] from the start of
    /// `bytes`; returns it and how many bytes it took.
    pub fn decode(bytes: &[u8]) -> Result<(Destination, usize), DecodeError> {
        match decode_address(bytes)? {
            Decoded::Complete(destination, used) => Ok((destination, used)),
            Decoded::Incomplete => Err(DecodeError::Truncated),
        }
    }
}

/// A destination as the extended `C` frame carries it: SOCKS5's `ATYP ADDR PORT` bytes,
/// borrowed from the datagram and checked to be one whole, valid destination. Borrowed so a
/// decoded frame stays `Copy`; [`DestinationRef::to_destination`] builds the owned value.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct DestinationRef<'a>(&'a [u8]);

impl<'a> DestinationRef<'a> {
    /// Reads one destination from the start of `bytes`; returns it and how many bytes it
    /// took. A host name is checked the way [`Destination::name`] checks it.
    pub fn parse(bytes: &'a [u8]) -> Result<(DestinationRef<'a>, usize), DecodeError> {
        let (_, used) = Destination::decode(bytes)?;
        Ok((DestinationRef(&bytes[..used]), used))
    }

    /// `bytes` as a destination, if they are exactly one valid encoding.
    pub fn exactly(bytes: &'a [u8]) -> Result<DestinationRef<'a>, DecodeError> {
        match DestinationRef::parse(bytes)? {
            (destination, used) if used == bytes.len() => Ok(destination),
            _ => Err(DecodeError::TrailingBytes),
        }
    }

    /// The encoded bytes (as [`Destination::encode`] writes them).
    pub fn as_bytes(&self) -> &'a [u8] {
        self.0
    }

    /// The owned destination.
    pub fn to_destination(&self) -> Destination {
        Destination::decode(self.0)
            .expect("checked when the reference was made")
            .0
    }
}

impl fmt::Debug for DestinationRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DestinationRef({})", self.to_destination())
    }
}

impl fmt::Display for DestinationRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.to_destination(), f)
    }
}

/// Why [`Destination::decode`] failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("the destination is cut short")]
    Truncated,
    #[error("unknown address type {0:#04x}")]
    UnknownAddressType(u8),
    #[error("bad host name: {0}")]
    BadName(NameError),
    #[error("bytes follow the destination")]
    TrailingBytes,
}

/// SOCKS5's address type bytes (RFC 1928 section 5).
pub mod address_type {
    pub const IPV4: u8 = 0x01;
    pub const NAME: u8 = 0x03;
    pub const IPV6: u8 = 0x04;
}

/// What [`decode_address`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decoded {
    Complete(Destination, usize),
    /// A prefix of a valid encoding: more bytes are needed.
    Incomplete,
}

/// Decodes `ATYP ADDR PORT` from the start of `bytes`, telling a short buffer apart from a
/// bad one (the SOCKS5 parser waits for more bytes; the wire calls it truncated).
pub(crate) fn decode_address(bytes: &[u8]) -> Result<Decoded, DecodeError> {
    let Some((&kind, rest)) = bytes.split_first() else {
        return Ok(Decoded::Incomplete);
    };
    let (host_len, host_at) = match kind {
        address_type::IPV4 => (4, 1),
        address_type::IPV6 => (16, 1),
        address_type::NAME => match rest.first() {
            Some(&len) => (usize::from(len), 2),
            None => return Ok(Decoded::Incomplete),
        },
        other => return Err(DecodeError::UnknownAddressType(other)),
    };
    let total = host_at + host_len + 2;
    if bytes.len() < total {
        return Ok(Decoded::Incomplete);
    }
    let host = &bytes[host_at..host_at + host_len];
    let port = u16::from_be_bytes([bytes[total - 2], bytes[total - 1]]);
    let destination = match kind {
        address_type::IPV4 => {
            let octets: [u8; 4] = host.try_into().expect("4 bytes");
            Destination::ip(IpAddr::V4(Ipv4Addr::from(octets)), port)
        }
        address_type::IPV6 => {
            let octets: [u8; 16] = host.try_into().expect("16 bytes");
            Destination::ip(IpAddr::V6(Ipv6Addr::from(octets)), port)
        }
        _ => Destination::name(host, port).map_err(DecodeError::BadName)?,
    };
    Ok(Decoded::Complete(destination, total))
}

impl From<SocketAddr> for Destination {
    fn from(addr: SocketAddr) -> Self {
        Destination::ip(addr.ip(), addr.port())
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            Host::Ip(ip) => write!(f, "{ip}"),
            Host::Name(name) => f.write_str(name),
        }
    }
}

/// `example.org:80`, `127.0.0.1:80`, `[::1]:80`.
impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// Why a destination could not be opened: one byte on the wire (the extended `NOK` carries
/// it), and a SOCKS5 reply code at proxy1. The byte values *are* RFC 1928's reply codes, so
/// a capture reads the same in both places.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
#[repr(u8)]
pub enum Refusal {
    /// 0x01: anything else (a local error, an unexpected failure).
    GeneralFailure = 0x01,
    /// 0x02: an `--allow`/`--deny` rule refused the destination.
    NotAllowed = 0x02,
    /// 0x03: no route to the destination's network, or its address family is unusable.
    NetworkUnreachable = 0x03,
    /// 0x04: the host is unreachable, or its name does not resolve.
    HostUnreachable = 0x04,
    /// 0x05: the host answered with a RST: nothing listens on that port.
    ConnectionRefused = 0x05,
    /// 0x06: the connect timed out. SOCKS5 has no "timed out"; TTL expired (the attempt's
    /// time ran out on the way) is the nearest, and tells a silent host from a refusing one.
    TtlExpired = 0x06,
}

impl Refusal {
    /// Every reason, in code order.
    pub const ALL: [Refusal; 6] = [
        Refusal::GeneralFailure,
        Refusal::NotAllowed,
        Refusal::NetworkUnreachable,
        Refusal::HostUnreachable,
        Refusal::ConnectionRefused,
        Refusal::TtlExpired,
    ];

    /// The byte on the wire (and the SOCKS5 reply code).
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The reason a byte names. An unknown byte (a newer peer) is a general failure, so a
    /// `NOK` is never misread as success.
    pub fn from_code(code: u8) -> Refusal {
        Refusal::ALL
            .into_iter()
            .find(|r| r.code() == code)
            .unwrap_or(Refusal::GeneralFailure)
    }

    /// RFC 1928's wording, for logs.
    pub fn describe(self) -> &'static str {
        match self {
            Refusal::GeneralFailure => "general failure",
            Refusal::NotAllowed => "not allowed by ruleset",
            Refusal::NetworkUnreachable => "network unreachable",
            Refusal::HostUnreachable => "host unreachable",
            Refusal::ConnectionRefused => "connection refused",
            Refusal::TtlExpired => "TTL expired (timed out)",
        }
    }

    /// A short tag for the access log (`not-allowed`, `connection-refused`…).
    pub fn tag(self) -> &'static str {
        match self {
            Refusal::GeneralFailure => "general-failure",
            Refusal::NotAllowed => "not-allowed",
            Refusal::NetworkUnreachable => "network-unreachable",
            Refusal::HostUnreachable => "host-unreachable",
            Refusal::ConnectionRefused => "connection-refused",
            Refusal::TtlExpired => "ttl-expired",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_are_normalised_and_literals_become_addresses() {
        let d = Destination::name(b"Example.ORG.", 80).unwrap();
        assert_eq!(d.host, Host::Name("example.org".into()));
        assert_eq!(d.to_string(), "example.org:80");
        let d = Destination::name(b"127.0.0.1", 8080).unwrap();
        assert_eq!(d, Destination::ip("127.0.0.1".parse().unwrap(), 8080));
        let d = Destination::name(b"[::1]", 22).unwrap();
        assert_eq!(d.to_string(), "[::1]:22");
        assert_eq!(Destination::name(b"", 1), Err(NameError::Empty));
        assert_eq!(Destination::name(b".", 1), Err(NameError::Empty));
        assert_eq!(Destination::name(b"a b", 1), Err(NameError::BadByte));
        assert_eq!(
            Destination::name(b"caf\xc3\xa9", 1),
            Err(NameError::BadByte)
        );
        assert_eq!(Destination::name(&[b'a'; 256], 1), Err(NameError::TooLong));
    }

    #[test]
    fn encoding_is_socks5s_address_format() {
        let mut out = Vec::new();
        Destination::ip("10.1.2.3".parse().unwrap(), 0x1f90).encode(&mut out);
        assert_eq!(out, [0x01, 10, 1, 2, 3, 0x1f, 0x90]);
        out.clear();
        Destination::name(b"a.io", 443).unwrap().encode(&mut out);
        assert_eq!(out, [0x03, 4, b'a', b'.', b'i', b'o', 0x01, 0xbb]);
        out.clear();
        Destination::ip("::1".parse().unwrap(), 1).encode(&mut out);
        assert_eq!(out.len(), 1 + 16 + 2);
        assert_eq!(out[0], 0x04);
        assert_eq!(out[16], 1);
    }

    #[test]
    fn decoding_tells_short_from_bad() {
        assert_eq!(Destination::decode(&[]), Err(DecodeError::Truncated));
        assert_eq!(
            Destination::decode(&[0x01, 1, 2]),
            Err(DecodeError::Truncated)
        );
        assert_eq!(
            Destination::decode(&[0x08, 1, 2, 3, 4, 0, 80]),
            Err(DecodeError::UnknownAddressType(0x08))
        );
        assert_eq!(
            Destination::decode(&[0x03, 0, 0, 80]),
            Err(DecodeError::BadName(NameError::Empty))
        );
        let (d, used) = Destination::decode(&[0x01, 127, 0, 0, 1, 0, 80, 0xff]).unwrap();
        assert_eq!((d.to_string().as_str(), used), ("127.0.0.1:80", 7));
    }

    #[test]
    fn refusal_codes_are_socks5_reply_codes() {
        let codes: Vec<u8> = Refusal::ALL.iter().map(|r| r.code()).collect();
        assert_eq!(codes, [1, 2, 3, 4, 5, 6]);
        for r in Refusal::ALL {
            assert_eq!(Refusal::from_code(r.code()), r);
        }
        assert_eq!(Refusal::from_code(0), Refusal::GeneralFailure);
        assert_eq!(Refusal::from_code(0x99), Refusal::GeneralFailure);
    }

    fn any_destination() -> impl Strategy<Value = Destination> {
        prop_oneof![
            (any::<[u8; 4]>(), any::<u16>())
                .prop_map(|(ip, port)| Destination::ip(IpAddr::from(ip), port)),
            (any::<[u8; 16]>(), any::<u16>())
                .prop_map(|(ip, port)| Destination::ip(IpAddr::from(ip), port)),
            ("[a-z0-9-]{1,60}(\\.[a-z0-9-]{1,60}){0,3}", any::<u16>())
                .prop_map(|(name, port)| Destination::name(name.as_bytes(), port).unwrap()),
        ]
    }

    proptest! {
        #[test]
        fn encode_then_decode_is_the_identity(d in any_destination(), tail in proptest::collection::vec(any::<u8>(), 0..8)) {
            let mut bytes = Vec::new();
            d.encode(&mut bytes);
            let len = bytes.len();
            bytes.extend_from_slice(&tail);
            prop_assert_eq!(Destination::decode(&bytes), Ok((d, len)));
        }

        #[test]
        fn any_bytes_decode_or_fail_cleanly(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok((_, used)) = Destination::decode(&bytes) {
                prop_assert!(used <= bytes.len());
            }
        }
    }
}
