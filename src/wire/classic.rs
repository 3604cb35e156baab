//! Classic mode: the course's first assignment, byte for byte.
//!
//! A datagram is `TYPE ID PAYLOAD`: TYPE one ASCII byte (`C`, `D`, `X`), ID one ASCII digit.
//! `C<id>OK` / `C<id>NOK` answer a `C`. No sequence numbers and no acks: decoded `D` and `X`
//! frames carry [`Seq::ZERO`], and an [`Frame::Ack`] cannot be encoded.

use super::{DecodeError, EncodeError, Frame, MAX_DATAGRAM, Seq, WireMode};
use crate::wire::ConnId;

/// `D<id>`: two bytes in front of the payload.
pub const DATA_HEADER_LEN: usize = 2;

/// Decodes one classic datagram.
pub fn decode(datagram: &[u8]) -> Result<Frame<'_>, DecodeError> {
    if datagram.len() > MAX_DATAGRAM {
        return Err(DecodeError::TooLong {
            len: datagram.len(),
            max: MAX_DATAGRAM,
        });
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
            b"OK" => Frame::ConnectOk { id, isn: Seq::ZERO },
            b"NOK" => Frame::ConnectNok { id, reason: None },
            _ => Frame::Connect {
                id,
                isn: Seq::ZERO,
                destination: None,
            },
        },
        b'D' => Frame::Data {
            id,
            seq: Seq::ZERO,
            payload: rest,
        },
        _ => Frame::Close { id, seq: Seq::ZERO },
    })
}

/// Writes a classic frame (id and payload size already checked by the caller) into `out`.
/// Sequence numbers are not on the classic wire and are ignored.
pub(super) fn encode_into(
    frame: &Frame<'_>,
    out: &mut [u8; MAX_DATAGRAM],
) -> Result<usize, EncodeError> {
    let digit = b'0' + u8::try_from(frame.id().get()).unwrap_or(0);
    let header: &[u8] = match frame {
        Frame::Connect { .. } => &[b'C', digit],
        Frame::ConnectOk { .. } => &[b'C', digit, b'O', b'K'],
        Frame::ConnectNok { .. } => &[b'C', digit, b'N', b'O', b'K'],
        Frame::Data { .. } => &[b'D', digit],
        Frame::Close { .. } => &[b'X', digit],
        Frame::Ack { .. } => {
            return Err(EncodeError::NotInMode {
                kind: frame.kind(),
                mode: WireMode::Classic,
            });
        }
    };
    Ok(super::put(out, header, frame.payload()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::EncodeError;
    use proptest::prelude::*;

    const CLASSIC: WireMode = WireMode::Classic;

    fn id(n: u16) -> ConnId {
        ConnId::new(n)
    }

    #[test]
    fn encodes_the_seed_examples_byte_for_byte() {
        let cases: [(Frame, &[u8]); 5] = [
            (
                Frame::Connect {
                    id: id(1),
                    isn: Seq::ZERO,
                    destination: None,
                },
                b"C1",
            ),
            (
                Frame::ConnectOk {
                    id: id(1),
                    isn: Seq::ZERO,
                },
                b"C1OK",
            ),
            (
                Frame::ConnectNok {
                    id: id(0),
                    reason: None,
                },
                b"C0NOK",
            ),
            (
                Frame::Data {
                    id: id(1),
                    seq: Seq::ZERO,
                    payload: b"hola",
                },
                b"D1hola",
            ),
            (
                Frame::Close {
                    id: id(9),
                    seq: Seq::ZERO,
                },
                b"X9",
            ),
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
            Frame::Connect {
                id: id(4),
                isn: Seq::ZERO,
                destination: None
            }
        );
        assert_eq!(
            CLASSIC.decode(b"C4OKx").unwrap(),
            Frame::Connect {
                id: id(4),
                isn: Seq::ZERO,
                destination: None
            }
        );
        assert_eq!(
            CLASSIC.decode(b"X4trail").unwrap(),
            Frame::Close {
                id: id(4),
                seq: Seq::ZERO
            }
        );
    }

    #[test]
    fn acks_do_not_exist_on_the_classic_wire() {
        let ack = Frame::Ack {
            id: id(1),
            ack: Seq(1),
            window: 1,
            sack: crate::wire::SackBlocks::EMPTY,
        };
        assert!(matches!(
            CLASSIC.to_bytes(&ack),
            Err(EncodeError::NotInMode { .. })
        ));
        assert_eq!(CLASSIC.decode(b"A10"), Err(DecodeError::UnknownType(b'A')));
    }

    #[test]
    fn data_is_binary_safe() {
        let payload: Vec<u8> = (0..=255).collect();
        let wire = CLASSIC
            .to_bytes(&Frame::Data {
                id: id(7),
                seq: Seq::ZERO,
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
            Err(DecodeError::TooLong {
                len: 1501,
                max: 1500
            })
        );
        assert!(CLASSIC.decode(&[b'D'; 1500]).is_err()); // 'D' is not a digit
    }

    #[test]
    fn enforces_size_and_id_limits() {
        let max = vec![0u8; 1498];
        let wire = CLASSIC
            .to_bytes(&Frame::Data {
                id: id(0),
                seq: Seq::ZERO,
                payload: &max,
            })
            .unwrap();
        assert_eq!(wire.len(), MAX_DATAGRAM);
        let over = vec![0u8; 1499];
        assert!(matches!(
            CLASSIC.to_bytes(&Frame::Data {
                id: id(0),
                seq: Seq::ZERO,
                payload: &over
            }),
            Err(EncodeError::PayloadTooLong {
                len: 1499,
                max: 1498
            })
        ));
        assert_eq!(
            CLASSIC.to_bytes(&Frame::Close {
                id: id(10),
                seq: Seq::ZERO
            }),
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
            let frame = Frame::Data { id: id(n), seq: Seq::ZERO, payload: &payload };
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
            Frame::Connect {
                id: id(1),
                isn: Seq::ZERO,
                destination: None,
            },
            Frame::ConnectOk {
                id: id(2),
                isn: Seq::ZERO,
            },
            Frame::ConnectNok {
                id: id(3),
                reason: None,
            },
            Frame::Data {
                id: id(4),
                seq: Seq::ZERO,
                payload: b"hola",
            },
            Frame::Close {
                id: id(9),
                seq: Seq::ZERO,
            },
        ] {
            let len = CLASSIC.encode_into(&frame, &mut stack).unwrap();
            assert_eq!(&stack[..len], &CLASSIC.to_bytes(&frame).unwrap()[..]);
        }
        assert_eq!(
            CLASSIC.encode_into(
                &Frame::Close {
                    id: id(10),
                    seq: Seq::ZERO
                },
                &mut stack
            ),
            Err(EncodeError::IdOutOfRange(id(10)))
        );
    }
}
