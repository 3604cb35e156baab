//! Capture file formats: classic pcap and pcapng, both written with pcap-file.
//!
//! The encoder writes into memory, never into the file: the writer thread hands whole
//! batches of finished records to the file in one write, so the file on disk always ends on a
//! record boundary and a reader (or a crash) never sees half a packet.

use std::borrow::Cow;
use std::io::{self, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::pcapng::blocks::enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption};
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::blocks::section_header::{SectionHeaderBlock, SectionHeaderOption};
use pcap_file::{DataLink, Endianness};

use super::TapRecord;
use super::packet::ethernet_udp;

/// Largest packet a capture file declares it may hold. Link datagrams are far smaller.
const SNAPLEN: u32 = 65535;

/// pcap-file 2.0 writes pcapng packet timestamps in nanoseconds, so the interface must say
/// so (if_tsresol = 10^-9); without it Wireshark would read every time 1000 times too late.
const PCAPNG_TSRESOL_NANOS: u8 = 9;

/// The name the capture's one interface has in pcapng (Wireshark's "Interface" column).
pub const PCAPNG_INTERFACE_NAME: &str = "tunlab-link";

/// Which file format a capture is written in.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum CaptureFormat {
    /// Classic pcap, microsecond timestamps; opens in every tool.
    #[default]
    Pcap,
    /// Adds a description of the capture and per-frame comments (what the link did).
    Pcapng,
}

impl CaptureFormat {
    /// The file name extension, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            CaptureFormat::Pcap => "pcap",
            CaptureFormat::Pcapng => "pcapng",
        }
    }
}

/// An in-memory byte buffer the pcap-file writers write into, shared with the encoder so it
/// can take the finished bytes out (pcap-file's `PcapWriter` does not lend its writer back).
#[derive(Clone, Default)]
struct SharedBuffer(Arc<Mutex<Vec<u8>>>);

impl Write for SharedBuffer {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

enum Writer {
    Pcap(PcapWriter<SharedBuffer>),
    PcapNg(PcapNgWriter<SharedBuffer>),
}

/// Encodes tap records into capture-file bytes, in memory.
pub(crate) struct Encoder {
    writer: Writer,
    buffer: SharedBuffer,
}

impl Encoder {
    /// Starts a capture: the file header (pcap) or section and interface blocks (pcapng,
    /// naming the lab with `description`) are ready in [`Encoder::take`] at once.
    pub fn new(format: CaptureFormat, description: &str) -> io::Result<Encoder> {
        let buffer = SharedBuffer::default();
        let writer = match format {
            CaptureFormat::Pcap => {
                let header = PcapHeader {
                    snaplen: SNAPLEN,
                    datalink: DataLink::ETHERNET,
                    // The default header is big-endian; tools expect this machine's order.
                    endianness: Endianness::native(),
                    ..PcapHeader::default()
                };
                Writer::Pcap(PcapWriter::with_header(buffer.clone(), header).map_err(to_io)?)
            }
            CaptureFormat::Pcapng => {
                let section = SectionHeaderBlock {
                    options: vec![
                        SectionHeaderOption::UserApplication(Cow::Owned(format!(
                            "tunlab {}",
                            env!("CARGO_PKG_VERSION")
                        ))),
                        SectionHeaderOption::Comment(Cow::Owned(description.to_string())),
                    ],
                    ..SectionHeaderBlock::default()
                };
                let mut writer =
                    PcapNgWriter::with_section_header(buffer.clone(), section).map_err(to_io)?;
                let interface = InterfaceDescriptionBlock {
                    linktype: DataLink::ETHERNET,
                    snaplen: SNAPLEN,
                    options: vec![
                        InterfaceDescriptionOption::IfName(Cow::Borrowed(PCAPNG_INTERFACE_NAME)),
                        InterfaceDescriptionOption::IfDescription(Cow::Owned(
                            description.to_string(),
                        )),
                        InterfaceDescriptionOption::IfTsResol(PCAPNG_TSRESOL_NANOS),
                    ],
                };
                writer.write_pcapng_block(interface).map_err(to_io)?;
                Writer::PcapNg(writer)
            }
        };
        Ok(Encoder { writer, buffer })
    }

    /// Appends one record. Returns whether it became a packet of the file: a frame that never
    /// crossed the wire (the link emulator dropped it before sending) is left out of a classic
    /// pcap, and kept in pcapng only as a comment on an empty packet.
    pub fn encode(&mut self, record: &TapRecord) -> io::Result<bool> {
        let data = ethernet_udp(record.src, record.dst, &record.datagram)?;
        let timestamp = since_epoch(record.time);
        match &mut self.writer {
            Writer::Pcap(_) if !record.on_wire => return Ok(false),
            Writer::Pcap(writer) => {
                let packet = PcapPacket::new(timestamp, data.len() as u32, &data);
                writer.write_packet(&packet).map_err(to_io)?;
            }
            Writer::PcapNg(writer) => {
                let options = match &record.note {
                    Some(note) => vec![EnhancedPacketOption::Comment(Cow::Borrowed(note))],
                    None => Vec::new(),
                };
                // Not on the wire: no bytes were captured, because none crossed; the comment
                // says what happened and the original length what would have gone.
                let captured: &[u8] = if record.on_wire { &data } else { &[] };
                let packet = EnhancedPacketBlock {
                    interface_id: 0,
                    timestamp,
                    original_len: data.len() as u32,
                    data: Cow::Borrowed(captured),
                    options,
                };
                writer.write_pcapng_block(packet).map_err(to_io)?;
            }
        }
        Ok(true)
    }

    /// Bytes encoded and not yet taken.
    pub fn pending(&self) -> usize {
        self.buffer.0.lock().unwrap().len()
    }

    /// Takes the bytes encoded since the last call: whole records only.
    pub fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut *self.buffer.0.lock().unwrap())
    }
}

/// A clock before 1970 (a badly set machine) is written as the epoch rather than failing.
fn since_epoch(time: SystemTime) -> Duration {
    time.duration_since(UNIX_EPOCH).unwrap_or_default()
}

fn to_io(e: pcap_file::PcapError) -> io::Error {
    match e {
        pcap_file::PcapError::IoError(e) => e,
        other => io::Error::new(io::ErrorKind::InvalidData, other.to_string()),
    }
}
