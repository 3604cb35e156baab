//! The tunnel's wire codec: datagrams on the UDP link become [`Frame`]s and back.
//!
//! Classic mode is the course's format, byte for byte: `TYPE ID PAYLOAD`, with TYPE one
//! ASCII byte (`C`, `D`, `X`) and ID one ASCII digit. Later modes (sequence numbers, acks,
//! more than ten connections) extend [`WireMode`]; nothing outside this module knows how an
//! id is spelled on the wire, which is why ids are a [`ConnId`] and never a raw digit.

use std::fmt;

/// Largest datagram either proxy sends or accepts. Course peers read with a 1500-byte
/// buffer, so anything longer would be cut silently on their side.
pub const MAX_DATAGRAM: usize = 1500;

/// Identifies one tunnel connection on one proxy1↔proxy2 link.
///
/// Stored wider than the classic wire needs so that later modes can carry more than ten.
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
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// How frames are laid out on the wire.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum WireMode {
    /// The course's format: `C<id>`, `C<id>OK`, `C<id>NOK`, `D<id><bytes>`, `X<id>`; ids 0-9.
    #[default]
    Classic,
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
    /// `X<id>`: connection `id` is closed.
    Close,
}

impl FrameKind {
    /// How the frame's type reads in traces: `C`, `OK`, `NOK`, `D`, `X`.
    pub fn label(self) -> &'static str {
        match self {
            FrameKind::Connect => "C",
            FrameKind::ConnectOk => "OK",
            FrameKind::ConnectNok => "NOK",
            FrameKind::Data => "D",
            FrameKind::Close => "X",
        }
    }
}

/// One decoded datagram. Data borrows the receive buffer: decoding never allocates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    Connect { id: ConnId },
    ConnectOk { id: ConnId },
    ConnectNok { id: ConnId },
    Data { id: ConnId, payload: &'a [u8] },
    Close { id: ConnId },
}

impl<'a> Frame<'a> {
    pub fn id(&self) -> ConnId {
        match *self {
            Frame::Connect { id }
            | Frame::ConnectOk { id }
            | Frame::ConnectNok { id }
            | Frame::Data { id, .. }
            | Frame::Close { id } => id,
        }
    }

    pub fn kind(&self) -> FrameKind {
        match self {
            Frame::Connect { .. } => FrameKind::Connect,
            Frame::ConnectOk { .. } => FrameKind::ConnectOk,
            Frame::ConnectNok { .. } => FrameKind::ConnectNok,
            Frame::Data { .. } => FrameKind::Data,
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
}

/// Why a datagram is not a frame. Each one is counted and dropped, never a crash.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("datagram of {0} bytes is shorter than the 2-byte header")]
    Short(usize),
    #[error("datagram of {0} bytes is longer than {MAX_DATAGRAM}")]
    TooLong(usize),
    #[error("unknown frame type byte 0x{0:02x}")]
    UnknownType(u8),
    #[error("bad connection id byte 0x{0:02x} (classic ids are ASCII '0'..'9')")]
    BadId(u8),
}

/// Why a frame cannot be put on the wire.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("connection id {0} does not fit this wire mode")]
    IdOutOfRange(ConnId),
    #[error("payload of {len} bytes exceeds the {max}-byte limit")]
    PayloadTooLong { len: usize, max: usize },
}

impl WireMode {
    /// How many connections one link can have open at once.
    pub fn max_connections(self) -> usize {
        match self {
            WireMode::Classic => 10,
        }
    }

    /// Bytes of header in front of a `D` frame's payload.
    pub fn data_header_len(self) -> usize {
        match self {
            WireMode::Classic => 2,
        }
    }

    /// The most stream bytes one `D` frame carries (1498 in classic mode), so that no datagram
    /// exceeds [`MAX_DATAGRAM`].
    pub fn max_payload(self) -> usize {
        MAX_DATAGRAM - self.data_header_len()
    }

    /// Decodes one datagram. Any byte string yields a frame or an error.
    pub fn decode(self, datagram: &[u8]) -> Result<Frame<'_>, DecodeError> {
        match self {
            WireMode::Classic => decode_classic(datagram),
        }
    }

    /// Appends the frame's wire bytes to `out`.
    pub fn encode(self, frame: &Frame<'_>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        match self {
            WireMode::Classic => encode_classic(frame, out),
        }
    }

    /// Writes the frame's wire bytes at the start of `out` and returns their length: no
    /// allocation, for the link socket's send path.
    pub fn encode_into(
        self,
        frame: &Frame<'_>,
        out: &mut [u8; MAX_DATAGRAM],
    ) -> Result<usize, EncodeError> {
        let (header, header_len) = match self {
            WireMode::Classic => classic_header(frame)?,
        };
        let payload = frame.payload();
        let len = header_len + payload.len();
        out[..header_len].copy_from_slice(&header[..header_len]);
        out[header_len..len].copy_from_slice(payload);
        Ok(len)
    }

    /// Encodes into a fresh buffer.
    pub fn to_bytes(self, frame: &Frame<'_>) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::with_capacity(self.data_header_len() + frame.payload().len() + 3);
        self.encode(frame, &mut out)?;
        Ok(out)
    }
}

fn decode_classic(datagram: &[u8]) -> Result<Frame<'_>, DecodeError> {
    if datagram.len() > MAX_DATAGRAM {
        return Err(DecodeError::TooLong(datagram.len()));
    }
    let [kind, digit, rest @ ..] = datagram else {
        return Err(DecodeError::Short(datagram.len()));
    };
    if !matches!(kind, b'C' | b'D' | b'X') {
        return Err(DecodeError::UnknownType(*kind));
    }
    if !digit.is_ascii_digit() {
        return Err(DecodeError::BadId(*digit));
    }
    let id = ConnId::new(u16::from(digit - b'0'));
    Ok(match kind {
        // The seed's proxy2 ignores anything after `C<id>`; only the exact replies mean OK/NOK.
        b'C' => match rest {
            b"OK" => Frame::ConnectOk { id },
            b"NOK" => Frame::ConnectNok { id },
            _ => Frame::Connect { id },
        },
        b'D' => Frame::Data { id, payload: rest },
        _ => Frame::Close { id },
    })
}

fn encode_classic(frame: &Frame<'_>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let (header, header_len) = classic_header(frame)?;
    out.extend_from_slice(&header[..header_len]);
    out.extend_from_slice(frame.payload());
    Ok(())
}

/// The bytes before the payload (all of the frame but a `D` frame's payload), once the frame
/// is known to fit: at most 5 (`C1NOK`).
fn classic_header(frame: &Frame<'_>) -> Result<([u8; 5], usize), EncodeError> {
    let id = frame.id();
    if id.index() >= WireMode::Classic.max_connections() {
        return Err(EncodeError::IdOutOfRange(id));
    }
    let max = WireMode::Classic.max_payload();
    if frame.payload().len() > max {
        return Err(EncodeError::PayloadTooLong {
            len: frame.payload().len(),
            max,
        });
    }
    let digit = b'0' + id.0 as u8;
    Ok(match frame {
        Frame::Connect { .. } => ([b'C', digit, 0, 0, 0], 2),
        Frame::ConnectOk { .. } => ([b'C', digit, b'O', b'K', 0], 4),
        Frame::ConnectNok { .. } => ([b'C', digit, b'N', b'O', b'K'], 5),
        Frame::Data { .. } => ([b'D', digit, 0, 0, 0], 2),
        Frame::Close { .. } => ([b'X', digit, 0, 0, 0], 2),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const CLASSIC: WireMode = WireMode::Classic;

    fn id(n: u16) -> ConnId {
        ConnId::new(n)
    }

    #[test]
    fn encodes_the_seed_examples_byte_for_byte() {
        let cases: [(Frame, &[u8]); 5] = [
            (Frame::Connect { id: id(1) }, b"C1"),
            (Frame::ConnectOk { id: id(1) }, b"C1OK"),
            (Frame::ConnectNok { id: id(0) }, b"C0NOK"),
            (
                Frame::Data {
                    id: id(1),
                    payload: b"hola",
                },
                b"D1hola",
            ),
            (Frame::Close { id: id(9) }, b"X9"),
        ];
        for (frame, wire) in cases {
            assert_eq!(CLASSIC.to_bytes(&frame).unwrap(), wire);
            assert_eq!(CLASSIC.decode(wire).unwrap(), frame);
        }
    }

    #[test]
    fn connect_ignores_trailing_bytes_but_replies_are_exact() {
        assert_eq!(
            CLASSIC.decode(b"C4junk").unwrap(),
            Frame::Connect { id: id(4) }
        );
        assert_eq!(
            CLASSIC.decode(b"C4OKx").unwrap(),
            Frame::Connect { id: id(4) }
        );
        assert_eq!(
            CLASSIC.decode(b"X4trail").unwrap(),
            Frame::Close { id: id(4) }
        );
    }

    #[test]
    fn data_is_binary_safe() {
        let payload: Vec<u8> = (0..=255).collect();
        let wire = CLASSIC
            .to_bytes(&Frame::Data {
                id: id(7),
                payload: &payload,
            })
            .unwrap();
        assert_eq!(&wire[..2], b"D7");
        assert_eq!(CLASSIC.decode(&wire).unwrap().payload(), &payload[..]);
    }

    #[test]
    fn rejects_malformed_datagrams() {
        assert_eq!(CLASSIC.decode(b""), Err(DecodeError::Short(0)));
        assert_eq!(CLASSIC.decode(b"D"), Err(DecodeError::Short(1)));
        assert_eq!(CLASSIC.decode(b"Q1"), Err(DecodeError::UnknownType(b'Q')));
        assert_eq!(CLASSIC.decode(b"DA"), Err(DecodeError::BadId(b'A')));
        assert_eq!(
            CLASSIC.decode(&[b'D'; 1501]),
            Err(DecodeError::TooLong(1501))
        );
        assert!(CLASSIC.decode(&[b'D'; 1500]).is_err()); // 'D' is not a digit
    }

    #[test]
    fn enforces_size_and_id_limits() {
        let max = vec![0u8; 1498];
        let wire = CLASSIC
            .to_bytes(&Frame::Data {
                id: id(0),
                payload: &max,
            })
            .unwrap();
        assert_eq!(wire.len(), MAX_DATAGRAM);
        let over = vec![0u8; 1499];
        assert!(matches!(
            CLASSIC.to_bytes(&Frame::Data {
                id: id(0),
                payload: &over
            }),
            Err(EncodeError::PayloadTooLong {
                len: 1499,
                max: 1498
            })
        ));
        assert_eq!(
            CLASSIC.to_bytes(&Frame::Close { id: id(10) }),
            Err(EncodeError::IdOutOfRange(id(10)))
        );
    }

    proptest! {
        #[test]
        fn any_bytes_decode_to_a_frame_or_an_error(
            // Half the inputs start with a real type byte and digit, so both outcomes are common.
            head in prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..2),
                (prop::sample::select(b"CDXQ".to_vec()), b'0'..=b'9').prop_map(|(t, d)| vec![t, d]),
            ],
            tail in proptest::collection::vec(any::<u8>(), 0..1600),
        ) {
            let bytes = [head, tail].concat();
            let well_formed = (2..=MAX_DATAGRAM).contains(&bytes.len())
                && matches!(bytes[0], b'C' | b'D' | b'X')
                && bytes[1].is_ascii_digit();
            let decoded = CLASSIC.decode(&bytes);
            prop_assert_eq!(decoded.is_ok(), well_formed);
            if let Ok(frame) = decoded {
                prop_assert_eq!(frame.id().index(), usize::from(bytes[1] - b'0'));
                if let Frame::Data { payload, .. } = frame {
                    prop_assert_eq!(payload, &bytes[2..]);
                }
            }
        }

        #[test]
        fn data_frames_round_trip(n in 0u16..10, payload in proptest::collection::vec(any::<u8>(), 0..=1498)) {
            let frame = Frame::Data { id: id(n), payload: &payload };
            let wire = CLASSIC.to_bytes(&frame).unwrap();
            prop_assert!(wire.len() <= MAX_DATAGRAM);
            prop_assert_eq!(CLASSIC.decode(&wire).unwrap(), frame);
            let mut stack = [0u8; MAX_DATAGRAM];
            let len = CLASSIC.encode_into(&frame, &mut stack).unwrap();
            prop_assert_eq!(&stack[..len], &wire[..]);
        }
    }

    #[test]
    fn encoding_in_place_matches_the_fresh_buffer_for_every_type() {
        let mut stack = [0u8; MAX_DATAGRAM];
        for frame in [
            Frame::Connect { id: id(1) },
            Frame::ConnectOk { id: id(2) },
            Frame::ConnectNok { id: id(3) },
            Frame::Data {
                id: id(4),
                payload: b"hola",
            },
            Frame::Close { id: id(9) },
        ] {
            let len = CLASSIC.encode_into(&frame, &mut stack).unwrap();
            assert_eq!(&stack[..len], &CLASSIC.to_bytes(&frame).unwrap()[..]);
        }
        assert_eq!(
            CLASSIC.encode_into(&Frame::Close { id: id(10) }, &mut stack),
            Err(EncodeError::IdOutOfRange(id(10)))
        );
    }
}
