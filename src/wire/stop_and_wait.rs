//! Stop-and-wait mode: the course's second assignment, byte for byte.
//!
//! A 3-byte header `TYPE ID SEQ`: ID one ASCII digit, SEQ the ASCII digit `0` or `1`.
//!
//! | datagram | meaning |
//! |---|---|
//! | `C<id>0` | open connection `id` |
//! | `C<id>0OK` / `C<id>0NOK` | connected / failed |
//! | `D<id><seq><bytes>` | data |
//! | `A<id><seq>` | ack of `D<id><seq>` |
//! | `X<id><seq>` | close |
//!
//! Liberal in what it accepts, since course peers vary: any length UDP carries (they send
//! 4096-byte `D` frames), any third byte in a `C`, a bare `C<id>` or `X<id>` (seq 0), and
//! trailing bytes after `A` and `X`. Strict in what it sends: the table above, at most 1500
//! bytes. There is no checksum on this wire: a corrupted payload decodes fine.

use super::{ConnId, DecodeError, EncodeError, Frame, FrameKind, MAX_DATAGRAM, SackBlocks, Seq};
use crate::wire::WireMode;

/// `D<id><seq>`: three bytes in front of the payload.
pub const DATA_HEADER_LEN: usize = 3;

/// Decodes one stop-and-wait datagram.
pub fn decode(datagram: &[u8]) -> Result<Frame<'_>, DecodeError> {
    let [kind, digit, rest @ ..] = datagram else {
        return Err(DecodeError::Short(datagram.len()));
    };
    if !matches!(kind, b'C' | b'D' | b'A' | b'X') {
        return Err(DecodeError::UnknownType(*kind));
    }
    if !digit.is_ascii_digit() {
        return Err(DecodeError::BadId(*digit));
    }
    let id = ConnId::new(u16::from(digit - b'0'));
    if *kind == b'C' {
        // Course peers read the status after the third byte, whatever that byte is.
        return Ok(match rest.get(1..) {
            Some(b"OK") => Frame::ConnectOk { id, isn: Seq::ZERO },
            Some(b"NOK") => Frame::ConnectNok { id, reason: None },
            _ => Frame::Connect {
                id,
                isn: Seq::ZERO,
                destination: None,
            },
        });
    }
    let seq = match rest.first() {
        Some(b'0') => Seq(0),
        Some(b'1') => Seq(1),
        Some(&other) => return Err(DecodeError::BadSeq(other)),
        None if *kind == b'X' => Seq(0),
        None => {
            return Err(DecodeError::Truncated {
                kind: if *kind == b'D' {
                    FrameKind::Data
                } else {
                    FrameKind::Ack
                },
                len: datagram.len(),
                need: DATA_HEADER_LEN,
            });
        }
    };
    Ok(match kind {
        b'D' => Frame::Data {
            id,
            seq,
            payload: &rest[1..],
        },
        b'A' => Frame::Ack {
            id,
            ack: seq,
            window: 1,
            sack: SackBlocks::EMPTY,
        },
        _ => Frame::Close { id, seq },
    })
}

/// Writes a stop-and-wait frame (id and payload size already checked by the caller).
pub(super) fn encode_into(
    frame: &Frame<'_>,
    out: &mut [u8; MAX_DATAGRAM],
) -> Result<usize, EncodeError> {
    let digit = b'0' + u8::try_from(frame.id().get()).unwrap_or(0);
    let bit = |seq: Seq| match seq.0 {
        0 => Ok(b'0'),
        1 => Ok(b'1'),
        _ => Err(EncodeError::SeqOutOfRange(seq)),
    };
    let header: &[u8] = match *frame {
        Frame::Connect { .. } => &[b'C', digit, b'0'],
        Frame::ConnectOk { .. } => &[b'C', digit, b'0', b'O', b'K'],
        Frame::ConnectNok { .. } => &[b'C', digit, b'0', b'N', b'O', b'K'],
        Frame::Data { seq, .. } => &[b'D', digit, bit(seq)?],
        Frame::Ack { ack, .. } => &[b'A', digit, bit(ack)?],
        Frame::Close { seq, .. } => &[b'X', digit, bit(seq)?],
    };
    debug_assert!(WireMode::StopAndWait.max_payload() + DATA_HEADER_LEN <= MAX_DATAGRAM);
    Ok(super::put(out, header, frame.payload()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::MAX_UDP_PAYLOAD;
    use proptest::prelude::*;

    const SAW: WireMode = WireMode::StopAndWait;

    fn id(n: u16) -> ConnId {
        ConnId::new(n)
    }

    fn ack(n: u16, seq: u32) -> Frame<'static> {
        Frame::Ack {
            id: id(n),
            ack: Seq(seq),
            window: 1,
            sack: SackBlocks::EMPTY,
        }
    }

    #[test]
    fn encodes_the_course_table_byte_for_byte() {
        let cases: [(Frame, &[u8]); 7] = [
            (
                Frame::Connect {
                    id: id(3),
                    isn: Seq::ZERO,
                    destination: None,
                },
                b"C30",
            ),
            (
                Frame::ConnectOk {
                    id: id(3),
                    isn: Seq::ZERO,
                },
                b"C30OK",
            ),
            (
                Frame::ConnectNok {
                    id: id(3),
                    reason: None,
                },
                b"C30NOK",
            ),
            (
                Frame::Data {
                    id: id(3),
                    seq: Seq(1),
                    payload: b"hola",
                },
                b"D31hola",
            ),
            (ack(3, 1), b"A31"),
            (ack(0, 0), b"A00"),
            (
                Frame::Close {
                    id: id(9),
                    seq: Seq(1),
                },
                b"X91",
            ),
        ];
        for (frame, wire) in cases {
            assert_eq!(SAW.to_bytes(&frame).unwrap(), wire);
            assert_eq!(SAW.decode(wire).unwrap(), frame);
        }
    }

    #[test]
    fn accepts_what_course_peers_send() {
        // A 4096-byte D, as course peers read 4096 bytes from TCP.
        let mut big = b"D21".to_vec();
        big.extend(std::iter::repeat_n(b'z', 4096));
        let frame = SAW.decode(&big).unwrap();
        assert_eq!(frame.payload().len(), 4096);
        assert_eq!(frame.seq(), Some(Seq(1)));
        // The status is read after the third byte, whatever it is.
        assert_eq!(
            SAW.decode(b"C41OK").unwrap(),
            Frame::ConnectOk {
                id: id(4),
                isn: Seq::ZERO
            }
        );
        assert_eq!(
            SAW.decode(b"C4").unwrap(),
            Frame::Connect {
                id: id(4),
                isn: Seq::ZERO,
                destination: None
            }
        );
        assert_eq!(
            SAW.decode(b"C40hi").unwrap(),
            Frame::Connect {
                id: id(4),
                isn: Seq::ZERO,
                destination: None
            }
        );
        assert_eq!(
            SAW.decode(b"X4").unwrap(),
            Frame::Close {
                id: id(4),
                seq: Seq(0)
            }
        );
        assert_eq!(SAW.decode(b"A41\n").unwrap(), ack(4, 1));
        assert_eq!(
            SAW.decode(&vec![b'D'; MAX_UDP_PAYLOAD]),
            Err(DecodeError::BadId(b'D'))
        );
    }

    #[test]
    fn rejects_malformed_datagrams() {
        assert_eq!(SAW.decode(b""), Err(DecodeError::Short(0)));
        assert_eq!(SAW.decode(b"Q10"), Err(DecodeError::UnknownType(b'Q')));
        assert_eq!(SAW.decode(b"Dx0"), Err(DecodeError::BadId(b'x')));
        assert_eq!(SAW.decode(b"D12abc"), Err(DecodeError::BadSeq(b'2')));
        assert!(matches!(
            SAW.decode(b"D1"),
            Err(DecodeError::Truncated {
                kind: FrameKind::Data,
                ..
            })
        ));
        assert!(matches!(
            SAW.decode(b"A1"),
            Err(DecodeError::Truncated {
                kind: FrameKind::Ack,
                ..
            })
        ));
    }

    #[test]
    fn refuses_to_send_what_the_wire_cannot_spell() {
        assert_eq!(
            SAW.to_bytes(&ack(1, 2)),
            Err(EncodeError::SeqOutOfRange(Seq(2)))
        );
        assert_eq!(
            SAW.to_bytes(&Frame::Connect {
                id: id(10),
                isn: Seq::ZERO,
                destination: None
            }),
            Err(EncodeError::IdOutOfRange(id(10)))
        );
    }

    proptest! {
        #[test]
        fn any_bytes_decode_to_a_frame_or_an_error(
            head in prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..3),
                (prop::sample::select(b"CDAXQ".to_vec()), b'0'..=b'9', prop::sample::select(b"01C".to_vec()))
                    .prop_map(|(t, d, s)| vec![t, d, s]),
            ],
            tail in proptest::collection::vec(any::<u8>(), 0..5000),
        ) {
            let bytes = [head, tail].concat();
            let well_formed = bytes.len() >= 2
                && matches!(bytes[0], b'C' | b'D' | b'A' | b'X')
                && bytes[1].is_ascii_digit()
                && match (bytes[0], bytes.get(2)) {
                    (b'C', _) | (b'X', None) => true,
                    (_, Some(s)) => matches!(s, b'0' | b'1'),
                    (_, None) => false,
                };
            let decoded = SAW.decode(&bytes);
            prop_assert_eq!(decoded.is_ok(), well_formed);
            if let Ok(frame) = decoded {
                prop_assert_eq!(frame.id().index(), usize::from(bytes[1] - b'0'));
                if let Frame::Data { payload, seq, .. } = frame {
                    prop_assert_eq!(payload, &bytes[3..]);
                    prop_assert_eq!(seq.0, u32::from(bytes[2] - b'0'));
                }
            }
        }

        #[test]
        fn frames_round_trip(
            n in 0u16..10,
            bit in 0u32..2,
            kind in 0usize..6,
            payload in proptest::collection::vec(any::<u8>(), 0..=1497),
        ) {
            let frame = match kind {
                0 => Frame::Connect { id: id(n), isn: Seq::ZERO, destination: None },
                1 => Frame::ConnectOk { id: id(n), isn: Seq::ZERO },
                2 => Frame::ConnectNok { id: id(n), reason: None },
                3 => Frame::Data { id: id(n), seq: Seq(bit), payload: &payload },
                4 => ack(n, bit),
                _ => Frame::Close { id: id(n), seq: Seq(bit) },
            };
            let wire = SAW.to_bytes(&frame).unwrap();
            prop_assert!(wire.len() <= MAX_DATAGRAM);
            prop_assert_eq!(SAW.decode(&wire).unwrap(), frame);
        }
    }
}
