//! `tunlab decrypt`: a copy of a capture with a sealed link's frames opened.
//!
//! Every packet is copied as it is (time, comments, interface), except UDP datagrams that are
//! sealed frames the key opens: those become the extended frame inside, in a rebuilt
//! Ethernet + IP + UDP packet with the right lengths and checksums (the same builder the
//! capture writer uses), so Wireshark and the dissector read them as if the link had been
//! plaintext. Handshake messages and anything the key does not open stay sealed.

use std::borrow::Cow;
use std::fmt;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use anyhow::{Context, bail};
use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use pcap_file::pcap::{PcapPacket, PcapReader, PcapWriter};
use pcap_file::pcapng::{Block, PcapNgReader, PcapNgWriter};

use super::seal::{self, SealKey};
use crate::capture::ethernet_udp;

/// What a decryption did, for its one-line report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DecryptSummary {
    /// Packets copied in all.
    pub packets: u64,
    /// Sealed frames opened.
    pub opened: u64,
    /// Sealed frames the key did not open (another key, or damaged): left as they were.
    pub not_opened: u64,
    /// Sealed handshake messages (hello, hello-ack, reject): left as they were.
    pub handshake: u64,
}

impl fmt::Display for DecryptSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} packets: {} sealed frames opened, {} handshake messages left as they are",
            self.packets, self.opened, self.handshake
        )?;
        if self.not_opened > 0 {
            write!(
                f,
                ", {} sealed frames did not open with this key (left sealed)",
                self.not_opened
            )?;
        }
        Ok(())
    }
}

/// Reads `input` (pcap or pcapng, told apart by its first bytes) and writes the decrypted
/// copy to `output` in the same format. Refuses to overwrite `output`.
pub fn decrypt_file(input: &Path, output: &Path, key: &SealKey) -> anyhow::Result<DecryptSummary> {
    let mut reader = BufReader::new(
        File::open(input).with_context(|| format!("cannot open {}", input.display()))?,
    );
    let mut magic = [0u8; 4];
    reader
        .read_exact(&mut magic)
        .with_context(|| format!("{} is too short to be a capture", input.display()))?;
    let reader = std::io::Cursor::new(magic).chain(reader);
    let out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(output)
        .with_context(|| format!("cannot create {} (it must not exist yet)", output.display()))?;
    let mut out = BufWriter::new(out);
    let summary = match magic {
        [0x0a, 0x0d, 0x0d, 0x0a] => decrypt_pcapng(reader, &mut out, key)?,
        [0xd4, 0xc3, 0xb2, 0xa1]
        | [0xa1, 0xb2, 0xc3, 0xd4]
        | [0x4d, 0x3c, 0xb2, 0xa1]
        | [0xa1, 0xb2, 0x3c, 0x4d] => decrypt_pcap(reader, &mut out, key)?,
        _ => bail!("{} is neither a pcap nor a pcapng capture", input.display()),
    };
    out.flush()
        .with_context(|| format!("cannot write {}", output.display()))?;
    Ok(summary)
}

fn decrypt_pcap(
    reader: impl Read,
    out: &mut impl Write,
    key: &SealKey,
) -> anyhow::Result<DecryptSummary> {
    let mut reader = PcapReader::new(reader).context("not a readable pcap capture")?;
    let mut writer = PcapWriter::with_header(out, reader.header()).context("cannot write")?;
    let mut summary = DecryptSummary::default();
    while let Some(packet) = reader.next_packet() {
        let packet = packet.context("a damaged packet record")?;
        summary.packets += 1;
        match open_packet(&packet.data, key, &mut summary) {
            Some(data) => writer.write_packet(&PcapPacket {
                timestamp: packet.timestamp,
                orig_len: u32::try_from(data.len()).unwrap_or(u32::MAX),
                data: Cow::Owned(data),
            }),
            None => writer.write_packet(&packet),
        }
        .context("cannot write")?;
    }
    Ok(summary)
}

fn decrypt_pcapng(
    reader: impl Read,
    out: &mut impl Write,
    key: &SealKey,
) -> anyhow::Result<DecryptSummary> {
    let mut reader = PcapNgReader::new(reader).context("not a readable pcapng capture")?;
    let mut writer =
        PcapNgWriter::with_section_header(out, reader.section().clone()).context("cannot write")?;
    let mut summary = DecryptSummary::default();
    while let Some(block) = reader.next_block() {
        let block = block.context("a damaged pcapng block")?;
        let block = match block {
            Block::EnhancedPacket(mut packet) => {
                summary.packets += 1;
                if let Some(data) = open_packet(&packet.data, key, &mut summary) {
                    packet.original_len = u32::try_from(data.len()).unwrap_or(u32::MAX);
                    packet.data = Cow::Owned(data);
                }
                Block::EnhancedPacket(packet)
            }
            // The section header was written with the writer.
            Block::SectionHeader(_) => continue,
            other => other,
        };
        writer.write_block(&block).context("cannot write")?;
    }
    Ok(summary)
}

/// The packet rebuilt around the frame inside, if `data` is an Ethernet frame carrying a
/// sealed frame that `key` opens.
fn open_packet(data: &[u8], key: &SealKey, summary: &mut DecryptSummary) -> Option<Vec<u8>> {
    let packet = SlicedPacket::from_ethernet(data).ok()?;
    let (src, dst): (IpAddr, IpAddr) = match packet.net.as_ref()? {
        NetSlice::Ipv4(ip) => (
            ip.header().source_addr().into(),
            ip.header().destination_addr().into(),
        ),
        NetSlice::Ipv6(ip) => (
            ip.header().source_addr().into(),
            ip.header().destination_addr().into(),
        ),
        _ => return None,
    };
    let TransportSlice::Udp(udp) = packet.transport.as_ref()? else {
        return None;
    };
    let header = seal::Header::parse(udp.payload())?;
    if !matches!(header.kind, seal::kind::TO_PROXY2 | seal::kind::TO_PROXY1) {
        summary.handshake += 1;
        return None;
    }
    let Some(plain) = seal::open_offline(key, udp.payload()) else {
        summary.not_opened += 1;
        return None;
    };
    let rebuilt = ethernet_udp(
        SocketAddr::new(unmap(src), udp.source_port()),
        SocketAddr::new(unmap(dst), udp.destination_port()),
        &plain,
    )
    .ok()?;
    summary.opened += 1;
    Some(rebuilt)
}

/// An IPv4-mapped IPv6 address as IPv4, as the capture writer would have written it.
fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}
