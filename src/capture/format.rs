//! Capture file formats: classic pcap and pcapng, both written with pcap-file.
//!
//! The encoder writes into memory, never into the file: the writer thread hands whole
//! batches of finished records to the file in one write, so the file on disk always ends on a
//! record boundary and a reader (or a crash) never sees half a packet.
//!
//! Classic pcap records of the link are not encoded here at all: the tap builds each one in
//! its ring ([`super::ring`]), and the writer hands runs of them to the file as they lie
//! (a test in `ring` checks the bytes are exactly pcap-file's). pcapng wraps each prebuilt
//! frame in an enhanced packet block here; TCP segments are encoded here in both formats.

use std::borrow::Cow;
use std::io::{self, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pcap_file::pcap::{PcapHeader, PcapWriter};
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::pcapng::blocks::enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption};
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::blocks::section_header::{SectionHeaderBlock, SectionHeaderOption};
use pcap_file::{DataLink, Endianness};

use super::Segment;
use super::ring::TapBatch;

/// Largest packet a capture file declares it may hold. Link datagrams are far smaller.
const SNAPLEN: u32 = 65535;

/// pcap-file 2.0 writes pcapng packet timestamps in nanoseconds, so the interface must say
/// so (`if_tsresol` = 10^-9); without it Wireshark would read every time 1000 times too late.
const PCAPNG_TSRESOL_NANOS: u8 = 9;

/// The name of the link's interface in pcapng (Wireshark's "Interface" column): the UDP
/// frames of the tunnel, interface 0.
pub const PCAPNG_INTERFACE_NAME: &str = "tunlab-link";

/// Interface 1 in pcapng: frames the link emulator dropped before they were sent. They are
/// written whole (addresses, ports, type, id, length) so a reader sees what was lost, but on
/// an interface of their own, so nobody mistakes them for traffic (the dissector marks them,
/// and leaves them out of a followed stream).
pub const PCAPNG_NOT_SENT_INTERFACE: &str = "tunlab-not-sent";

/// Interface 2 in pcapng, present with TCP capture: the loopback interface the TCP legs'
/// segments were read from.
pub const PCAPNG_LOOPBACK_INTERFACE: &str = "lo";

const NOT_SENT_INTERFACE_ID: u32 = 1;
const LOOPBACK_INTERFACE_ID: u32 = 2;

/// Which file format a capture is written in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CaptureFormat {
    /// Classic pcap, microsecond timestamps; opens in every tool.
    #[default]
    Pcap,
    /// Adds a description of the capture and per-frame comments (what the link did).
    Pcapng,
}

impl CaptureFormat {
    /// Every format, the default first.
    pub const ALL: [CaptureFormat; 2] = [CaptureFormat::Pcap, CaptureFormat::Pcapng];

    /// The file name extension, without the dot (also its name on the command line).
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
    /// The link's records come ready from the tap's ring; pcap-file wrote the file header.
    Pcap,
    PcapNg(PcapNgWriter<SharedBuffer>),
}

/// Size of a classic pcap record header: seconds, microseconds, captured and original length.
pub(crate) const PCAP_RECORD_HEADER: usize = 16;

/// Encodes tap records into capture-file bytes, in memory.
pub(crate) struct Encoder {
    writer: Writer,
    buffer: SharedBuffer,
}

/// Where a link record's bytes in the file come from.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum LinkBytes {
    /// Not in this file: a frame that never crossed the wire, in a classic pcap.
    Skipped,
    /// The record as the tap's ring holds it ([`TapBatch::record_range`]).
    InRing,
    /// Encoded into the encoder's pending bytes (pcapng).
    Encoded,
}

impl Encoder {
    /// Starts a capture: the file header (pcap) or section and interface blocks (pcapng,
    /// naming the lab with `description`) are ready in [`Encoder::take`] at once.
    pub fn new(format: CaptureFormat, description: &str, tcp: bool) -> io::Result<Encoder> {
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
                // Writes the file header; the records that follow are ours (encode_pcap).
                PcapWriter::with_header(buffer.clone(), header).map_err(to_io)?;
                Writer::Pcap
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
                let mut interfaces = vec![
                    (PCAPNG_INTERFACE_NAME, description.to_string()),
                    (
                        PCAPNG_NOT_SENT_INTERFACE,
                        "frames the link emulator dropped before sending: they never crossed \
                         the wire"
                            .to_string(),
                    ),
                ];
                if tcp {
                    interfaces.push((
                        PCAPNG_LOOPBACK_INTERFACE,
                        "the lab's TCP legs (client-proxy1, proxy2-server) as the kernel \
                         carried them on loopback"
                            .to_string(),
                    ));
                }
                for (name, text) in interfaces {
                    let interface = InterfaceDescriptionBlock {
                        linktype: DataLink::ETHERNET,
                        snaplen: SNAPLEN,
                        options: vec![
                            InterfaceDescriptionOption::IfName(Cow::Borrowed(name)),
                            InterfaceDescriptionOption::IfDescription(Cow::Owned(text)),
                            InterfaceDescriptionOption::IfTsResol(PCAPNG_TSRESOL_NANOS),
                        ],
                    };
                    writer.write_pcapng_block(interface).map_err(to_io)?;
                }
                Writer::PcapNg(writer)
            }
        };
        Ok(Encoder { writer, buffer })
    }

    /// Appends a TCP segment read off loopback, as it was read.
    pub fn encode_segment(&mut self, segment: &Segment) -> io::Result<()> {
        let timestamp = since_epoch(segment.time);
        match &mut self.writer {
            Writer::Pcap => {
                let header =
                    pcap_record_header(segment.time, segment.frame.len()).map_err(invalid)?;
                let mut buffer = self.buffer.0.lock().unwrap();
                buffer.extend_from_slice(&header);
                buffer.extend_from_slice(&segment.frame);
            }
            Writer::PcapNg(writer) => {
                let packet = EnhancedPacketBlock {
                    interface_id: LOOPBACK_INTERFACE_ID,
                    timestamp,
                    original_len: segment.frame.len() as u32,
                    data: Cow::Borrowed(&segment.frame),
                    options: Vec::new(),
                };
                writer.write_pcapng_block(packet).map_err(to_io)?;
            }
        }
        Ok(())
    }

    /// Puts record `index` of `batch` into the file's next bytes. A frame that never
    /// crossed the wire (the link emulator dropped it before sending) is left out of a
    /// classic pcap, and kept whole in pcapng on the not-sent interface with a comment
    /// saying why. A classic pcap record is already built in the ring, so only checked here.
    pub fn encode_link(&mut self, batch: &TapBatch, index: usize) -> io::Result<LinkBytes> {
        let record = &batch.records[index];
        if record.headers == 0 {
            return Err(invalid(&format!(
                "a {}-byte datagram does not fit in one UDP packet",
                record.frame_len
            )));
        }
        match &mut self.writer {
            Writer::Pcap if !record.on_wire => Ok(LinkBytes::Skipped),
            Writer::Pcap if batch.has_pcap_header(index) => Ok(LinkBytes::InRing),
            // The tap could not write the header: the format cannot hold the frame. Only
            // then is the header built again, for the reason.
            Writer::Pcap => Err(invalid(
                pcap_record_header(record.time, record.frame_len as usize)
                    .err()
                    .unwrap_or("the record has no pcap header"),
            )),
            Writer::PcapNg(writer) => {
                let data = batch.frame(index);
                let options = match batch.note(index) {
                    Some(note) => vec![EnhancedPacketOption::Comment(Cow::Borrowed(note))],
                    None => Vec::new(),
                };
                // Not on the wire: the frame goes whole (addresses, type, id, length: what was
                // lost) on the interface that says it never crossed, with the comment.
                let interface_id = if record.on_wire {
                    0
                } else {
                    NOT_SENT_INTERFACE_ID
                };
                let packet = EnhancedPacketBlock {
                    interface_id,
                    timestamp: since_epoch(record.time),
                    original_len: data.len() as u32,
                    data: Cow::Borrowed(data),
                    options,
                };
                writer.write_pcapng_block(packet).map_err(to_io)?;
                Ok(LinkBytes::Encoded)
            }
        }
    }

    /// Appends bytes that are already encoded (records copied out of the tap's ring).
    pub fn append_encoded(&mut self, bytes: &[u8]) {
        self.buffer.0.lock().unwrap().extend_from_slice(bytes);
    }

    /// Bytes encoded and not yet taken.
    pub fn pending(&self) -> usize {
        self.buffer.0.lock().unwrap().len()
    }

    /// Takes the bytes encoded since the last call: whole records only.
    pub fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut *self.buffer.0.lock().unwrap())
    }

    /// Hands the bytes encoded since the last call (whole records only) to `write`, then
    /// empties the buffer but keeps its memory for the next batch. The bytes are gone even
    /// if `write` fails: the writer stops then.
    pub fn drain_into<T>(&mut self, write: impl FnOnce(&[u8]) -> io::Result<T>) -> io::Result<T> {
        let mut buffer = self.buffer.0.lock().unwrap();
        let written = write(&buffer);
        buffer.clear();
        written
    }
}

/// A classic pcap record header for a frame of `len` bytes at `time`, exactly as
/// pcap-file's `PcapWriter::write_packet` writes it (microseconds; this machine's byte order,
/// as the file header declares; captured and original length the same: the whole frame is
/// kept), or why the format cannot hold the frame.
pub(crate) fn pcap_record_header(
    time: SystemTime,
    len: usize,
) -> Result<[u8; PCAP_RECORD_HEADER], &'static str> {
    let timestamp = since_epoch(time);
    let seconds =
        u32::try_from(timestamp.as_secs()).map_err(|_| "PcapPacket: timestamp_secs > u32::MAX")?;
    let len = u32::try_from(len)
        .ok()
        .filter(|len| *len <= SNAPLEN)
        .ok_or("PcapPacket: incl_len > snap_len")?;
    let mut header = [0; PCAP_RECORD_HEADER];
    for (field, value) in
        header
            .chunks_exact_mut(4)
            .zip([seconds, timestamp.subsec_micros(), len, len])
    {
        field.copy_from_slice(&value.to_ne_bytes());
    }
    Ok(header)
}

/// A clock before 1970 (a badly set machine) is written as the epoch rather than failing.
fn since_epoch(time: SystemTime) -> Duration {
    time.duration_since(UNIX_EPOCH).unwrap_or_default()
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

fn to_io(e: pcap_file::PcapError) -> io::Error {
    match e {
        pcap_file::PcapError::IoError(e) => e,
        other => io::Error::new(io::ErrorKind::InvalidData, other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pcap_file::pcap::{PcapPacket, PcapWriter};

    /// The record header is pcap-file's, byte for byte; a frame the format cannot hold is
    /// refused with the reason.
    #[test]
    fn a_record_header_is_pcap_files_or_says_why_not() {
        let time = UNIX_EPOCH + Duration::from_micros(1_763_900_000_123_456);
        let frame = [0x5a; 60];
        let mut writer = PcapWriter::with_header(
            Vec::new(),
            PcapHeader {
                endianness: Endianness::native(),
                ..PcapHeader::default()
            },
        )
        .unwrap();
        writer
            .write_packet(&PcapPacket::new(since_epoch(time), 60, &frame))
            .unwrap();
        let file = writer.into_writer();
        let header = pcap_record_header(time, frame.len()).unwrap();
        assert_eq!(&file[24..24 + PCAP_RECORD_HEADER], &header[..]);

        let too_late = UNIX_EPOCH + Duration::from_secs(u64::from(u32::MAX) + 1);
        assert_eq!(
            pcap_record_header(too_late, 60),
            Err("PcapPacket: timestamp_secs > u32::MAX")
        );
        assert_eq!(
            pcap_record_header(time, SNAPLEN as usize + 1),
            Err("PcapPacket: incl_len > snap_len")
        );
        assert!(pcap_record_header(time, SNAPLEN as usize).is_ok());
    }
}
