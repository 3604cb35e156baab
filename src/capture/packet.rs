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

    #[test]
    fn ipv4_headers_carry_the_addresses_and_valid_checksums() {
        let src: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let dst: SocketAddr = "127.0.0.1:3328".parse().unwrap();
        let bytes = ethernet_udp(src, dst, b"D3hola\n").unwrap();
        let packet = SlicedPacket::from_ethernet(&bytes).unwrap();
        let Some(NetSlice::Ipv4(ip)) = &packet.net else {
            panic!("not IPv4: {:?}", packet.net)
        };
        let header = ip.header().to_header();
        assert_eq!(header.source, [127, 0, 0, 1]);
        assert_eq!(header.header_checksum, header.calc_header_checksum());
        let Some(TransportSlice::Udp(udp)) = &packet.transport else {
            panic!("not UDP")
        };
        assert_eq!((udp.source_port(), udp.destination_port()), (40000, 3328));
        assert_eq!(udp.payload(), b"D3hola\n");
        let expected = udp
            .to_header()
            .calc_checksum_ipv4(&header, udp.payload())
            .unwrap();
        assert_eq!(udp.checksum(), expected);
        assert_ne!(
            udp.checksum(),
            0,
            "a zero UDP checksum means 'not computed'"
        );
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
        let Some(TransportSlice::Udp(udp)) = &packet.transport else {
            panic!("not UDP")
        };
        let expected = udp
            .to_header()
            .calc_checksum_ipv6(&ip.header().to_header(), udp.payload())
            .unwrap();
        assert_eq!(udp.checksum(), expected);
    }
}
