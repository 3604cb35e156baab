//! Turns one tapped datagram into the Ethernet II + IP + UDP bytes a capture file holds.
//!
//! The tap sees datagrams at the socket, above the IP layer, so the headers are rebuilt here:
//! Wireshark then shows the real addresses and ports and finds nothing to complain about.
//!
//! [`ethernet_udp`] builds one frame with etherparse from scratch, both checksums computed
//! (for offline tools). The capture tap instead uses a [`FrameBuilder`]: a link has only a
//! handful of (source, destination) flows, so the builder asks etherparse for each flow's
//! headers once, and per packet only patches the lengths and the checksums. Over IPv4 it
//! leaves the UDP checksum out (0, which RFC 768 defines as "no checksum"): computing it
//! means reading every byte of every datagram once more on the tunnel's path, and it says
//! nothing the captured bytes do not (DESIGN.md, "The capture's UDP checksum"). Over IPv6,
//! where the checksum is mandatory (RFC 8200), it is computed. A test checks the output
//! against [`ethernet_udp`] byte for byte, the IPv4 UDP checksum aside.

use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use etherparse::PacketBuilder;

/// Linux loopback's link-layer addresses: captures on `lo` show all-zero MACs, so ours do too.
const LOOPBACK_MAC: [u8; 6] = [0; 6];

/// The TTL / hop limit Linux gives outgoing datagrams.
const HOP_LIMIT: u8 = 64;

const ETHERNET_LEN: usize = 14;
const IPV4_LEN: usize = 20;
const IPV6_LEN: usize = 40;
const UDP_LEN: usize = 8;
/// IP protocol number of UDP, as the checksum's pseudo-header carries it.
const IP_PROTO_UDP: u8 = 17;

/// Builds the Ethernet frame that carries `payload` from `src` to `dst` over UDP.
///
/// IPv4 when both ends are IPv4; otherwise IPv6 (an IPv4 end becomes an IPv4-mapped address,
/// which is what a dual-stack socket sees).
pub fn ethernet_udp(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> io::Result<Vec<u8>> {
    let link = PacketBuilder::ethernet2(LOOPBACK_MAC, LOOPBACK_MAC);
    let builder = match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => link.ipv4(s.octets(), d.octets(), HOP_LIMIT),
        (s, d) => link.ipv6(as_v6(s).octets(), as_v6(d).octets(), HOP_LIMIT),
    }
    .udp(src.port(), dst.port());
    let mut out = Vec::with_capacity(builder.size(payload.len()));
    builder
        .write(&mut out, payload)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    Ok(out)
}

fn as_v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

/// The headers of one flow, built once by etherparse around an empty payload.
#[derive(Debug)]
struct FlowHeaders {
    src: SocketAddr,
    dst: SocketAddr,
    /// Ethernet + IP + UDP header bytes; the lengths and checksums in it are patched per packet.
    bytes: Vec<u8>,
    ipv4: bool,
    /// IPv4: the RFC 1071 sum of the IP header with its total length and checksum zero
    /// (what does not change from packet to packet).
    ipv4_sum: u64,
}

impl FlowHeaders {
    fn new(src: SocketAddr, dst: SocketAddr) -> io::Result<FlowHeaders> {
        let bytes = ethernet_udp(src, dst, &[])?;
        let ipv4 = matches!((src.ip(), dst.ip()), (IpAddr::V4(_), IpAddr::V4(_)));
        let expected = ETHERNET_LEN + if ipv4 { IPV4_LEN } else { IPV6_LEN } + UDP_LEN;
        if bytes.len() != expected {
            // etherparse added IP options or extension headers we would not patch right.
            return Err(io::Error::other(format!(
                "unexpected capture header length {} (expected {expected})",
                bytes.len()
            )));
        }
        let mut ipv4_sum = 0;
        if ipv4 {
            let mut ip = bytes[ETHERNET_LEN..ETHERNET_LEN + IPV4_LEN].to_vec();
            ip[2..4].fill(0);
            ip[10..12].fill(0);
            ipv4_sum = sum_words(&ip);
        }
        Ok(FlowHeaders {
            src,
            dst,
            bytes,
            ipv4,
            ipv4_sum,
        })
    }
}

/// How many flows a [`FrameBuilder`] remembers. A lab has two (one per direction), a
/// standalone proxy usually one or two; past this the list starts over (rebuilding is cheap).
const MAX_FLOWS: usize = 32;

/// Builds capture frames like [`ethernet_udp`], but from per-flow cached headers and into a
/// caller's buffer, so the hot path neither allocates nor goes through etherparse.
#[derive(Debug, Default)]
pub(crate) struct FrameBuilder {
    /// Few entries, so a linear search beats hashing the two socket addresses.
    flows: Vec<FlowHeaders>,
}

impl FrameBuilder {
    /// Appends the Ethernet frame carrying `payload` from `src` to `dst` to `out`, and
    /// returns its length.
    #[cfg(test)]
    pub fn append(
        &mut self,
        src: SocketAddr,
        dst: SocketAddr,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> io::Result<usize> {
        let len = self.append_headers(src, dst, payload, out)?;
        out.extend_from_slice(payload);
        Ok(len)
    }

    /// Appends only the Ethernet, IP and UDP headers of the frame carrying `payload`, and
    /// returns the whole frame's length: the caller writes the payload after them, from
    /// where it already is. The payload is read only over IPv6, for its UDP checksum.
    pub fn append_headers(
        &mut self,
        src: SocketAddr,
        dst: SocketAddr,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> io::Result<usize> {
        let udp_len = u16::try_from(UDP_LEN + payload.len()).map_err(|_| too_long(payload))?;
        let flow = self.flow(src, dst)?;
        let start = out.len();
        out.extend_from_slice(&flow.bytes);
        let headers = &mut out[start..];

        if flow.ipv4 {
            let ip = &mut headers[ETHERNET_LEN..ETHERNET_LEN + IPV4_LEN];
            let total =
                u16::try_from(IPV4_LEN + usize::from(udp_len)).map_err(|_| too_long(payload))?;
            ip[2..4].copy_from_slice(&total.to_be_bytes());
            // RFC 791 header checksum: the one's complement of the one's complement sum of
            // the header's 16-bit words, computed with the checksum field itself zero: the
            // flow's sum plus the total length.
            let sum = !fold(flow.ipv4_sum + u64::from(u16::from_ne_bytes(total.to_be_bytes())));
            // The sum is over native-endian words, so its bytes go back in native order.
            ip[10..12].copy_from_slice(&sum.to_ne_bytes());
            let udp = &mut headers[ETHERNET_LEN + IPV4_LEN..];
            udp[4..6].copy_from_slice(&udp_len.to_be_bytes());
            // RFC 768: a zero checksum field means the sender computed none.
            udp[6..8].fill(0);
            return Ok(headers.len() + payload.len());
        }
        let ip = &mut headers[ETHERNET_LEN..ETHERNET_LEN + IPV6_LEN];
        // The IPv6 payload length is the UDP segment's length (no extension headers).
        ip[4..6].copy_from_slice(&udp_len.to_be_bytes());
        let (ip, udp) = headers.split_at_mut(ETHERNET_LEN + IPV6_LEN);
        udp[4..6].copy_from_slice(&udp_len.to_be_bytes());
        udp[6..8].fill(0);
        // RFC 8200: the UDP checksum covers a pseudo-header (both addresses, the protocol
        // number and the UDP length), then the whole segment with a zero checksum field.
        // The sum is RFC 1071's one's complement sum; a result of 0 is sent as 0xffff,
        // because 0 in the field means "no checksum". Every part starts at an even offset,
        // so the parts are summed separately (the payload where it lies, not copied).
        let pseudo = u64::from(u16::from_ne_bytes([0, IP_PROTO_UDP]))
            + u64::from(u16::from_ne_bytes(udp_len.to_be_bytes()));
        let sum = sum_words(&ip[ETHERNET_LEN + 8..ETHERNET_LEN + IPV6_LEN])
            + pseudo
            + sum_words(udp)
            + sum_words(payload);
        let checksum = match !fold(sum) {
            0 => 0xffff,
            checksum => checksum,
        };
        udp[6..8].copy_from_slice(&checksum.to_ne_bytes());
        Ok(headers.len() + payload.len())
    }

    fn flow(&mut self, src: SocketAddr, dst: SocketAddr) -> io::Result<&FlowHeaders> {
        let found = self
            .flows
            .iter()
            .position(|flow| flow.src == src && flow.dst == dst);
        let index = match found {
            Some(index) => index,
            None => {
                if self.flows.len() >= MAX_FLOWS {
                    self.flows.clear();
                }
                self.flows.push(FlowHeaders::new(src, dst)?);
                self.flows.len() - 1
            }
        };
        Ok(&self.flows[index])
    }
}

/// RFC 1071's sum of `bytes` read as native-endian 16-bit words (an odd last byte padded
/// with zero), not yet folded to 16 bits. Summed as 32-bit words into 64 bits, which the
/// compiler vectorizes: the same sum, since 2^16 = 1 in one's complement arithmetic.
fn sum_words(bytes: &[u8]) -> u64 {
    let mut words = bytes.chunks_exact(4);
    let sum: u64 = words
        .by_ref()
        .map(|word| u64::from(u32::from_ne_bytes([word[0], word[1], word[2], word[3]])))
        .sum();
    let rest = words.remainder();
    let mut tail = [0u8; 4];
    tail[..rest.len()].copy_from_slice(rest);
    sum + u64::from(u32::from_ne_bytes(tail))
}

/// Folds a [`sum_words`] sum to 16 bits, adding the carries back in (end-around carry).
fn fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

fn too_long(payload: &[u8]) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "a {}-byte datagram does not fit in one UDP packet",
            payload.len()
        ),
    )
}

/// What the capture writes for `payload` (tests' reference): etherparse's frame, with the
/// UDP checksum left out (zero) over IPv4.
#[cfg(test)]
pub(crate) fn capture_frame(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let mut frame = ethernet_udp(src, dst, payload).unwrap();
    if frame[12..14] == [0x08, 0x00] {
        frame[ETHERNET_LEN + IPV4_LEN + 6..ETHERNET_LEN + IPV4_LEN + 8].fill(0);
    }
    frame
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};

    /// RFC 1071 by hand, so the checks do not rest on the library that built the packet:
    /// data holding a correct checksum sums to 0xffff.
    fn ones_complement_sum(bytes: &[u8]) -> u16 {
        let mut sum: u32 = bytes
            .chunks(2)
            .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
            .sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        sum as u16
    }

    /// The UDP pseudo-header sum (RFC 768) over the whole UDP segment.
    fn udp_sum(src: &[u8], dst: &[u8], segment: &[u8]) -> u16 {
        let mut bytes = [src, dst, &[0, 17]].concat();
        bytes.extend_from_slice(&(segment.len() as u16).to_be_bytes());
        bytes.extend_from_slice(segment);
        ones_complement_sum(&bytes)
    }

    #[test]
    fn ipv4_headers_carry_the_addresses_and_valid_checksums() {
        let src: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let dst: SocketAddr = "127.0.0.1:3328".parse().unwrap();
        // Odd and even lengths, and every byte value.
        for payload in [b"D3hola\n".to_vec(), b"C1".to_vec(), (0..=255).collect()] {
            let bytes = ethernet_udp(src, dst, &payload).unwrap();
            assert_eq!(&bytes[12..14], &[0x08, 0x00], "EtherType IPv4");
            let ip = &bytes[14..34];
            assert_eq!(ones_complement_sum(ip), 0xffff, "IPv4 header checksum");
            assert_eq!(
                (&ip[12..16], &ip[16..20]),
                (&[127, 0, 0, 1][..], &[127, 0, 0, 1][..])
            );
            let segment = &bytes[34..];
            assert_eq!(
                udp_sum(&ip[12..16], &ip[16..20], segment),
                0xffff,
                "UDP checksum"
            );
            assert_ne!(
                &segment[6..8],
                &[0, 0],
                "a zero UDP checksum means 'not computed'"
            );

            let packet = SlicedPacket::from_ethernet(&bytes).unwrap();
            let Some(TransportSlice::Udp(udp)) = &packet.transport else {
                panic!("not UDP")
            };
            assert_eq!((udp.source_port(), udp.destination_port()), (40000, 3328));
            assert_eq!(udp.payload(), payload.as_slice());
        }
    }

    #[test]
    fn ipv6_loopback_is_written_as_ipv6() {
        let src: SocketAddr = "[::1]:40000".parse().unwrap();
        let dst: SocketAddr = "[::1]:3328".parse().unwrap();
        let bytes = ethernet_udp(src, dst, b"C0").unwrap();
        let packet = SlicedPacket::from_ethernet(&bytes).unwrap();
        let Some(NetSlice::Ipv6(ip)) = &packet.net else {
            panic!("not IPv6")
        };
        assert_eq!(ip.header().source_addr(), Ipv6Addr::LOCALHOST);
        let (addrs, segment) = (&bytes[14 + 8..14 + 40], &bytes[14 + 40..]);
        assert_eq!(
            udp_sum(&addrs[..16], &addrs[16..], segment),
            0xffff,
            "UDP checksum"
        );
    }

    #[test]
    fn a_v4_end_talking_to_a_v6_end_is_written_as_v4_mapped_ipv6() {
        let src: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let dst: SocketAddr = "[::1]:3328".parse().unwrap();
        let bytes = ethernet_udp(src, dst, b"X1").unwrap();
        let packet = SlicedPacket::from_ethernet(&bytes).unwrap();
        let Some(NetSlice::Ipv6(ip)) = &packet.net else {
            panic!("not IPv6")
        };
        assert_eq!(
            ip.header().source_addr(),
            "::ffff:127.0.0.1".parse::<Ipv6Addr>().unwrap()
        );
    }

    #[test]
    fn the_cached_builder_writes_exactly_what_etherparse_builds() {
        let flows: [(&str, &str); 4] = [
            ("127.0.0.1:40000", "127.0.0.1:3328"),
            ("127.0.0.1:3328", "127.0.0.1:40000"),
            ("[::1]:40000", "[::1]:3328"),
            ("127.0.0.1:40000", "[::1]:3328"),
        ];
        let mut builder = FrameBuilder::default();
        let mut out = vec![0xAA]; // appends after what is already there
        // Interleaved flows, every length up to a full datagram, varied contents.
        for len in 0..=1500usize {
            for (i, (src, dst)) in flows.iter().enumerate() {
                let (src, dst) = (src.parse().unwrap(), dst.parse().unwrap());
                let payload: Vec<u8> = (0..len).map(|b| (b * 7 + i * 31 + len) as u8).collect();
                out.truncate(1);
                let n = builder.append(src, dst, &payload, &mut out).unwrap();
                let expected = capture_frame(src, dst, &payload);
                assert_eq!(n, expected.len());
                assert_eq!(&out[1..], &expected[..], "len {len}, {src} -> {dst}");
            }
        }
        // Every two-byte payload over IPv6: one of them makes the sum come out as 0, which
        // UDP must send as 0xffff.
        let (src, dst) = ("[::1]:1".parse().unwrap(), "[::1]:1".parse().unwrap());
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                out.clear();
                builder.append(src, dst, &[a, b], &mut out).unwrap();
                assert_eq!(out, ethernet_udp(src, dst, &[a, b]).unwrap());
            }
        }
    }

    #[test]
    fn over_ipv4_the_udp_checksum_is_left_out_and_the_payload_not_read() {
        let src: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let dst: SocketAddr = "127.0.0.1:3328".parse().unwrap();
        let mut builder = FrameBuilder::default();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let len_a = builder.append_headers(src, dst, &[1; 100], &mut a).unwrap();
        let len_b = builder.append_headers(src, dst, &[2; 100], &mut b).unwrap();
        assert_eq!((len_a, len_b), (14 + 20 + 8 + 100, 14 + 20 + 8 + 100));
        assert_eq!(a, b, "the headers do not depend on the payload's bytes");
        assert_eq!(&a[14 + 20 + 6..], &[0, 0], "no UDP checksum (RFC 768)");
    }

    #[test]
    fn the_cached_builder_refuses_a_datagram_too_long_for_udp() {
        let src: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let err = FrameBuilder::default()
            .append(src, src, &vec![0; 70_000], &mut Vec::new())
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
