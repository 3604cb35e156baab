//! The tunnel's wire codecs: datagrams on the UDP link become [`Frame`]s and back.
//!
//! One codec per format, chosen by [`WireMode`]:
//! - [`classic`]: the course's first assignment, byte for byte: `TYPE ID PAYLOAD`, TYPE one
//!   ASCII byte (`C`, `D`, `X`), ID one ASCII digit. No sequence numbers, no acks.
//! - [`stop_and_wait`]: the course's second assignment, byte for byte: a 3-byte header
//!   `TYPE ID SEQ` with SEQ the ASCII digit `0` or `1`, and `A<id><seq>` acks.
//! - [`extended`]: tunlab's own binary format for Go-Back-N and Selective Repeat: 16-bit ids,
//!   32-bit sequence numbers, cumulative and selective acks, a receive window and a CRC-32C.
//!
//! Nothing outside this module knows how an id or a sequence number is spelled on the wire,
//! which is why ids are a [`ConnId`] and sequence numbers a [`Seq`]. Decoding never allocates:
//! a [`Frame::Data`] payload borrows the receive buffer.

pub mod classic;
pub mod extended;
pub mod stop_and_wait;

use std::fmt;
use std::ops::Range;

use crate::destination::{DestinationRef, Refusal};

/// Largest datagram either proxy sends, in every mode. Course peers read with a 1500-byte
/// buffer, so anything longer would be cut silently on their side.
pub const MAX_DATAGRAM: usize = 1500;

/// Largest UDP payload over IPv4 (65,535 − 8 bytes of UDP header − 20 of IP header): the most
/// a peer can send us in stop-and-wait mode, where course peers send 4096-byte `D` frames.
pub const MAX_UDP_PAYLOAD: usize = 65_507;

/// How many selective-ack blocks one extended-mode ack carries at most.
pub const MAX_SACK_BLOCKS: usize = 8;

/// Identifies one tunnel connection on one proxy1↔proxy2 link.
///
/// Stored as a `u16`: classic and stop-and-wait spell it as one ASCII digit (0-9), the
/// extended format as two bytes (0-65,535).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct ConnId(u16);

impl ConnId {
    pub const fn new(n: u16) -> Self {
        ConnId(n)
    }
    /// The id as an index into per-connection tables.
    pub const fn index(self) -> usize {
        self.0 as usize
    }
    /// The id as a number.
    pub const fn get(self) -> u16 {
        self.0
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A sequence number: 32 bits that wrap around, compared the way TCP compares them
/// (RFC 1982 serial arithmetic): `a` is before `b` when `b - a`, wrapped, is below 2³¹.
///
/// Windows must stay below 2³¹ frames for the comparisons to hold; the transports keep them
/// far smaller. Stop-and-wait uses only 0 and 1; classic frames carry 0.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct Seq(pub u32);

impl Seq {
    /// Sequence number zero.
    pub const ZERO: Seq = Seq(0);

    /// The sequence number `n` steps later, wrapping around.
    #[must_use]
    pub const fn add(self, n: u32) -> Seq {
        Seq(self.0.wrapping_add(n))
    }

    /// How many steps from `earlier` to `self`, wrapping around (0 when equal).
    pub const fn since(self, earlier: Seq) -> u32 {
        self.0.wrapping_sub(earlier.0)
    }

    /// How far `self` lies from `base`, negative when it comes before it (serial order):
    /// the relative number a trace shows. proxy1's keepalive probe re-uses the seq before its
    /// oldest unacked one, which on a connection that sent nothing yet is its ISN's
    /// predecessor: -1 here, where [`Seq::since`] would say 4294967295.
    pub const fn offset_from(self, base: Seq) -> i64 {
        self.0.wrapping_sub(base.0) as i32 as i64
    }

    /// The number a trace shows for `self`: counted from `base` ([`Seq::offset_from`]) when
    /// the connection's ISN is known, else as on the wire.
    pub fn shown_from(self, base: Option<Seq>) -> i64 {
        base.map_or(i64::from(self.0), |base| self.offset_from(base))
    }

    /// Whether `self` comes strictly before `other` in serial order.
    pub const fn before(self, other: Seq) -> bool {
        let d = other.0.wrapping_sub(self.0);
        d != 0 && d < (1 << 31)
    }

    /// Whether `self` is in the half-open range `[start, start + len)`, wrapping around.
    pub const fn within(self, start: Seq, len: u32) -> bool {
        self.since(start) < len
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// One selective-ack block: the receiver holds every frame in `[start, end)` (end exclusive).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SackBlock {
    pub start: Seq,
    pub end: Seq,
}

/// The selective-ack blocks of one ack, at most [`MAX_SACK_BLOCKS`], stored inline so a
/// decoded [`Frame`] stays `Copy` and decoding never allocates.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct SackBlocks {
    len: u8,
    blocks: [SackBlock; MAX_SACK_BLOCKS],
}

impl SackBlocks {
    /// No blocks.
    pub const EMPTY: SackBlocks = SackBlocks {
        len: 0,
        blocks: [SackBlock {
            start: Seq(0),
            end: Seq(0),
        }; MAX_SACK_BLOCKS],
    };

    /// Adds a block; returns false (and adds nothing) when all [`MAX_SACK_BLOCKS`] are taken.
    pub fn push(&mut self, block: SackBlock) -> bool {
        let Some(slot) = self.blocks.get_mut(usize::from(self.len)) else {
            return false;
        };
        *slot = block;
        self.len += 1;
        true
    }

    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn as_slice(&self) -> &[SackBlock] {
        &self.blocks[..self.len()]
    }

    pub fn iter(&self) -> impl Iterator<Item = SackBlock> + '_ {
        self.as_slice().iter().copied()
    }
}

impl fmt::Debug for SackBlocks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.iter().map(|b| b.start.0..b.end.0))
            .finish()
    }
}

impl FromIterator<SackBlock> for SackBlocks {
    /// Keeps the first [`MAX_SACK_BLOCKS`] blocks.
    fn from_iter<I: IntoIterator<Item = SackBlock>>(iter: I) -> Self {
        let mut blocks = SackBlocks::EMPTY;
        for block in iter {
            if !blocks.push(block) {
                break;
            }
        }
        blocks
    }
}

/// How frames are laid out on the wire, and which transport carries the data.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum WireMode {
    /// The course's format: `C<id>`, `C<id>OK`, `C<id>NOK`, `D<id><bytes>`, `X<id>`; ids 0-9;
    /// no acks, losses are lost.
    #[default]
    Classic,
    /// The course's alternating-bit format: `C<id>0`, `C<id>0OK`/`NOK`, `D<id><seq><bytes>`,
    /// `A<id><seq>`, `X<id><seq>`; ids 0-9, seq `0`/`1`; one frame in flight per connection.
    StopAndWait,
    /// tunlab's extended binary format, Go-Back-N: a window of frames, cumulative acks; the
    /// receiver discards what arrives out of order.
    GoBackN,
    /// tunlab's extended binary format, Selective Repeat: a window of frames, cumulative plus
    /// selective acks; the receiver holds what arrives out of order.
    SelectiveRepeat,
}

/// The type of a frame, without its contents: what counters and traces talk about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum FrameKind {
    /// `C<id>`: proxy1 asks proxy2 to open connection `id`.
    Connect,
    /// `C<id>OK`: proxy2 reached the server.
    ConnectOk,
    /// `C<id>NOK`: proxy2 could not reach the server.
    ConnectNok,
    /// `D<id><bytes>`: stream data of connection `id`.
    Data,
    /// `A<id><seq>`: acknowledges data (reliable modes only).
    Ack,
    /// `X<id>`: connection `id` is closed.
    Close,
}

impl FrameKind {
    /// Every kind, in counter order.
    pub const ALL: [FrameKind; 6] = [
        FrameKind::Connect,
        FrameKind::ConnectOk,
        FrameKind::ConnectNok,
        FrameKind::Data,
        FrameKind::Ack,
        FrameKind::Close,
    ];

    /// How the frame's type reads in traces: `C`, `OK`, `NOK`, `D`, `A`, `X`.
    pub fn label(self) -> &'static str {
        match self {
            FrameKind::Connect => "C",
            FrameKind::ConnectOk => "OK",
            FrameKind::ConnectNok => "NOK",
            FrameKind::Data => "D",
            FrameKind::Ack => "A",
            FrameKind::Close => "X",
        }
    }
}

/// One decoded datagram. Data borrows the receive buffer: decoding never allocates.
///
/// Sequence fields mean what the mode says: classic frames carry [`Seq::ZERO`] (nothing on
/// the wire, ignored when encoding); stop-and-wait uses 0 and 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    Connect {
        id: ConnId,
        /// Extended: the first sequence number proxy1 will send on this connection, picked
        /// at random for each new connection so that frames of an earlier connection that
        /// had the same id fall outside the new one's window. A re-sent `C` carries the same
        /// one; a different one for an open id means a new connection. Zero in the text
        /// formats (not on their wire).
        isn: Seq,
        /// Extended: where the connection leads, when proxy1's client named it (SOCKS5);
        /// `None` opens proxy2's fixed server. The text formats have no room for it: always
        /// `None` when decoded, and not encoded.
        destination: Option<DestinationRef<'a>>,
    },
    ConnectOk {
        id: ConnId,
        /// Extended: the first sequence number proxy2 will send. Zero in the text formats.
        isn: Seq,
    },
    ConnectNok {
        id: ConnId,
        /// Extended: why the connection could not be opened (its byte is the SOCKS5 reply
        /// code proxy1 gives its client); `None` when proxy2 did not say. The text formats
        /// have no room for it: always `None` when decoded, and not encoded.
        reason: Option<Refusal>,
    },
    Data {
        id: ConnId,
        /// This frame's sequence number.
        seq: Seq,
        payload: &'a [u8],
    },
    /// Acknowledges data. Not in classic mode.
    Ack {
        id: ConnId,
        /// Stop-and-wait: the seq of the `D` being acked (`A<id><seq>` acks `D<id><seq>`).
        /// Extended: cumulative, the next seq the receiver expects (all before it arrived).
        ack: Seq,
        /// Extended: how many frames, counted from `ack`, the receiver can take (flow
        /// control). Stop-and-wait: not on the wire, decoded as 1.
        window: u32,
        /// Extended: blocks above `ack` that the receiver holds. Stop-and-wait: empty.
        sack: SackBlocks,
    },
    Close {
        id: ConnId,
        /// Stop-and-wait: the sender's next alternating bit. Extended: the close's own place
        /// in the sequence, one after the last data frame (like TCP's FIN).
        seq: Seq,
    },
}

impl<'a> Frame<'a> {
    pub fn id(&self) -> ConnId {
        match *self {
            Frame::Connect { id, .. }
            | Frame::ConnectOk { id, .. }
            | Frame::ConnectNok { id, .. }
            | Frame::Data { id, .. }
            | Frame::Ack { id, .. }
            | Frame::Close { id, .. } => id,
        }
    }

    pub fn kind(&self) -> FrameKind {
        match self {
            Frame::Connect { .. } => FrameKind::Connect,
            Frame::ConnectOk { .. } => FrameKind::ConnectOk,
            Frame::ConnectNok { .. } => FrameKind::ConnectNok,
            Frame::Data { .. } => FrameKind::Data,
            Frame::Ack { .. } => FrameKind::Ack,
            Frame::Close { .. } => FrameKind::Close,
        }
    }

    /// The data a `D` frame carries; empty for every other type.
    pub fn payload(&self) -> &'a [u8] {
        match self {
            Frame::Data { payload, .. } => payload,
            _ => &[],
        }
    }

    /// The destination an extended `C` carries, if any.
    pub fn destination(&self) -> Option<DestinationRef<'a>> {
        match *self {
            Frame::Connect { destination, .. } => destination,
            _ => None,
        }
    }

    /// The reason an extended `NOK` carries, if any.
    pub fn reason(&self) -> Option<Refusal> {
        match *self {
            Frame::ConnectNok { reason, .. } => reason,
            _ => None,
        }
    }

    /// The sequence number of a `D` or `X` frame.
    pub fn seq(&self) -> Option<Seq> {
        match *self {
            Frame::Data { seq, .. } | Frame::Close { seq, .. } => Some(seq),
            _ => None,
        }
    }

    /// The ack number of an `A` frame.
    pub fn ack(&self) -> Option<Seq> {
        match *self {
            Frame::Ack { ack, .. } => Some(ack),
            _ => None,
        }
    }
}

/// Why a datagram is not a frame. Each one is counted and dropped, never a crash.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("datagram of {0} bytes is shorter than the 2-byte header")]
    Short(usize),
    #[error("{kind:?} frame of {len} bytes is shorter than its {need}-byte minimum")]
    Truncated {
        kind: FrameKind,
        len: usize,
        need: usize,
    },
    #[error("{kind:?} frame has {extra} bytes after its last field")]
    TrailingBytes { kind: FrameKind, extra: usize },
    #[error("datagram of {len} bytes is longer than {max}")]
    TooLong { len: usize, max: usize },
    #[error("unknown frame type byte 0x{0:02x}")]
    UnknownType(u8),
    #[error("bad connection id byte 0x{0:02x} (ids are ASCII '0'..'9' in this mode)")]
    BadId(u8),
    #[error("bad sequence byte 0x{0:02x} (stop-and-wait seqs are ASCII '0' or '1')")]
    BadSeq(u8),
    #[error("first byte 0x{0:02x} is not the extended format's 0xe1")]
    NotExtended(u8),
    #[error("a sealed (encrypted) frame: this end runs without --key-file")]
    Sealed,
    #[error("checksum mismatch: the datagram was corrupted on the way")]
    Checksum,
    #[error("ack claims {0} selective-ack blocks (at most {MAX_SACK_BLOCKS})")]
    TooManySackBlocks(u8),
    #[error("C frame's destination is not valid: {0}")]
    BadDestination(crate::destination::DecodeError),
}

/// Why a frame cannot be put on the wire.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("connection id {0} does not fit this wire mode")]
    IdOutOfRange(ConnId),
    #[error("payload of {len} bytes exceeds the {max}-byte limit")]
    PayloadTooLong { len: usize, max: usize },
    #[error("{kind:?} frames do not exist in {mode:?} mode")]
    NotInMode { kind: FrameKind, mode: WireMode },
    #[error("sequence number {0} does not fit this wire mode")]
    SeqOutOfRange(Seq),
}

impl WireMode {
    /// Every mode, in the order `--help` lists them.
    pub const ALL: [WireMode; 4] = [
        WireMode::Classic,
        WireMode::StopAndWait,
        WireMode::GoBackN,
        WireMode::SelectiveRepeat,
    ];

    /// The mode's name on the command line and in scenarios: `classic`, `stop-and-wait`…
    pub fn name(self) -> &'static str {
        match self {
            WireMode::Classic => "classic",
            WireMode::StopAndWait => "stop-and-wait",
            WireMode::GoBackN => "go-back-n",
            WireMode::SelectiveRepeat => "selective-repeat",
        }
    }

    /// How many connections one link can have open at once: 10 where an id is one ASCII
    /// digit, 65,536 in the extended format.
    pub fn max_connections(self) -> usize {
        match self {
            WireMode::Classic | WireMode::StopAndWait => 10,
            WireMode::GoBackN | WireMode::SelectiveRepeat => usize::from(u16::MAX) + 1,
        }
    }

    /// Whether data is acknowledged and retransmitted (every mode but classic).
    pub fn is_reliable(self) -> bool {
        !matches!(self, WireMode::Classic)
    }

    /// Whether frames use tunlab's extended binary format.
    pub fn is_extended(self) -> bool {
        matches!(self, WireMode::GoBackN | WireMode::SelectiveRepeat)
    }

    /// Bytes of header in front of a `D` frame's payload.
    pub fn data_header_len(self) -> usize {
        match self {
            WireMode::Classic => classic::DATA_HEADER_LEN,
            WireMode::StopAndWait => stop_and_wait::DATA_HEADER_LEN,
            WireMode::GoBackN | WireMode::SelectiveRepeat => extended::DATA_HEADER_LEN,
        }
    }

    /// Bytes after a `D` frame's payload (the extended format's checksum).
    pub fn data_trailer_len(self) -> usize {
        if self.is_extended() {
            extended::TRAILER_LEN
        } else {
            0
        }
    }

    /// The most stream bytes one `D` frame carries (1498 classic, 1497 stop-and-wait, 1488
    /// extended), so that no datagram we send exceeds [`MAX_DATAGRAM`].
    pub fn max_payload(self) -> usize {
        MAX_DATAGRAM - self.data_header_len() - self.data_trailer_len()
    }

    /// The longest datagram this mode accepts from a peer: [`MAX_DATAGRAM`], except in
    /// stop-and-wait, where course peers send up to 4096 bytes of data in one `D` and we
    /// accept anything UDP carries.
    pub fn max_accepted(self) -> usize {
        match self {
            WireMode::StopAndWait => MAX_UDP_PAYLOAD,
            _ => MAX_DATAGRAM,
        }
    }

    /// Where a `D` datagram's payload sits (what link corruption may flip so that the frame
    /// still reaches its connection); `None` for a datagram that is not a `D` frame.
    pub fn payload_range(self, datagram: &[u8]) -> Option<Range<usize>> {
        match self.decode(datagram) {
            Ok(Frame::Data { .. }) => {
                Some(self.data_header_len()..datagram.len() - self.data_trailer_len())
            }
            _ => None,
        }
    }

    /// Decodes one datagram. Any byte string yields a frame or an error.
    pub fn decode(self, datagram: &[u8]) -> Result<Frame<'_>, DecodeError> {
        match self {
            WireMode::Classic => classic::decode(datagram),
            WireMode::StopAndWait => stop_and_wait::decode(datagram),
            WireMode::GoBackN | WireMode::SelectiveRepeat => extended::decode(datagram),
        }
    }

    /// Appends the frame's wire bytes to `out`.
    pub fn encode(self, frame: &Frame<'_>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let mut stack = [0u8; MAX_DATAGRAM];
        let len = self.encode_into(frame, &mut stack)?;
        out.extend_from_slice(&stack[..len]);
        Ok(())
    }

    /// Writes the frame's wire bytes at the start of `out` and returns their length: no
    /// allocation, for the link socket's send path.
    pub fn encode_into(
        self,
        frame: &Frame<'_>,
        out: &mut [u8; MAX_DATAGRAM],
    ) -> Result<usize, EncodeError> {
        let max = self.max_payload();
        if frame.payload().len() > max {
            return Err(EncodeError::PayloadTooLong {
                len: frame.payload().len(),
                max,
            });
        }
        if frame.id().index() >= self.max_connections() {
            return Err(EncodeError::IdOutOfRange(frame.id()));
        }
        match self {
            WireMode::Classic => classic::encode_into(frame, out),
            WireMode::StopAndWait => stop_and_wait::encode_into(frame, out),
            WireMode::GoBackN | WireMode::SelectiveRepeat => extended::encode_into(frame, out),
        }
    }

    /// Encodes into a fresh buffer.
    pub fn to_bytes(self, frame: &Frame<'_>) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::with_capacity(self.data_header_len() + frame.payload().len() + 8);
        self.encode(frame, &mut out)?;
        Ok(out)
    }
}

impl fmt::Display for WireMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Writes a `D` frame's header and payload: the header bytes, then the payload right after.
fn put(out: &mut [u8; MAX_DATAGRAM], header: &[u8], payload: &[u8]) -> usize {
    let len = header.len() + payload.len();
    out[..header.len()].copy_from_slice(header);
    out[header.len()..len].copy_from_slice(payload);
    len
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_compare_across_wraparound() {
        let last = Seq(u32::MAX);
        assert!(last.before(Seq(0)));
        assert!(!Seq(0).before(last));
        assert_eq!(last.add(3), Seq(2));
        assert_eq!(Seq(2).since(last), 3);
        assert_eq!(Seq(2).offset_from(last), 3, "across the wrap");
        assert_eq!(last.offset_from(Seq(2)), -3);
        assert_eq!(Seq(6).offset_from(Seq(7)), -1, "the seq before an ISN");
        assert_eq!(Seq(7).offset_from(Seq(7)), 0);
        assert_eq!(Seq(6).shown_from(Some(Seq(7))), -1);
        assert_eq!(Seq(6).shown_from(None), 6, "no ISN known: as on the wire");
        assert!(Seq(1).within(last, 3));
        assert!(!Seq(2).within(last, 3));
        assert!(!Seq(5).before(Seq(5)));
    }

    #[test]
    fn every_datagram_we_send_fits_1500_bytes() {
        for mode in WireMode::ALL {
            let payload = vec![7u8; mode.max_payload()];
            let frame = Frame::Data {
                id: ConnId::new(9),
                seq: Seq(1),
                payload: &payload,
            };
            assert_eq!(mode.to_bytes(&frame).unwrap().len(), MAX_DATAGRAM, "{mode}");
            let over = vec![7u8; mode.max_payload() + 1];
            assert!(matches!(
                mode.to_bytes(&Frame::Data {
                    id: ConnId::new(9),
                    seq: Seq(1),
                    payload: &over
                }),
                Err(EncodeError::PayloadTooLong { .. })
            ));
        }
    }

    #[test]
    fn per_mode_facts() {
        assert_eq!(WireMode::Classic.max_connections(), 10);
        assert_eq!(WireMode::StopAndWait.max_connections(), 10);
        assert_eq!(WireMode::GoBackN.max_connections(), 65_536);
        assert_eq!(WireMode::SelectiveRepeat.max_connections(), 65_536);
        assert!(!WireMode::Classic.is_reliable());
        assert!(WireMode::StopAndWait.is_reliable() && WireMode::GoBackN.is_reliable());
        assert_eq!(WireMode::Classic.max_payload(), 1498);
        assert_eq!(WireMode::StopAndWait.max_payload(), 1497);
        assert_eq!(WireMode::SelectiveRepeat.max_payload(), 1488);
        for mode in WireMode::ALL {
            assert_eq!(
                serde_json::to_string(&mode).unwrap(),
                format!("\"{}\"", mode.name())
            );
        }
    }

    #[test]
    fn payload_range_skips_header_and_checksum() {
        for mode in WireMode::ALL {
            let frame = Frame::Data {
                id: ConnId::new(1),
                seq: Seq(1),
                payload: b"hola",
            };
            let wire = mode.to_bytes(&frame).unwrap();
            let range = mode.payload_range(&wire).unwrap();
            assert_eq!(&wire[range], b"hola", "{mode}");
            let close = mode
                .to_bytes(&Frame::Close {
                    id: ConnId::new(1),
                    seq: Seq(1),
                })
                .unwrap();
            assert_eq!(mode.payload_range(&close), None);
        }
    }
}
