//! Turns one tapped datagram into the Ethernet II + IP + UDP bytes a capture file holds.
//!
//! The tap sees datagrams at the socket, above the IP layer, so the headers are rebuilt here
//! with etherparse (which also computes the IPv4 header and UDP checksums): Wireshark then
//! shows the real addresses and ports and finds nothing to complain about.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use etherparse::PacketBuilder;

/// Linux loopback's link-layer addresses: captures on `lo` show all-zero MACs, so ours do too.
const LOOPBACK_MAC: [u8; 6] = [0; 6];

/// The TTL / hop limit Linux gives outgoing datagrams.
const HOP_LIMIT: u8 = 64;

/// Builds the Ethernet frame that carries `payload` from `src` to `dst` over UDP.
///
/// IPv4 when both ends are IPv4; otherwise IPv6 (an IPv4 end becomes an IPv4-mapped address,
/// which is what a dual-stack socket sees).
pub fn ethernet_udp(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> std::io::Result<Vec<u8>> {
    let link = PacketBuilder::ethernet2(LOOPBACK_MAC, LOOPBACK_MAC);
    let builder = match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => link.ipv4(s.octets(), d.octets(), HOP_LIMIT),
        (s, d) => link.ipv6(as_v6(s).octets(), as_v6(d).octets(), HOP_LIMIT),
    }
    .udp(src.port(), dst.port());
    let mut out = Vec::with_capacity(builder.size(payload.len()));
    builder
        .write(&mut out, payload)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
    Ok(out)
}

fn as_v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
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
}
