//! The extended format: tunlab's own binary framing for Go-Back-N and Selective Repeat.
//!
//! Every datagram is a 4-byte header, a body that depends on the type, and a CRC-32C of
//! everything before it. Multi-byte numbers are big-endian.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 1 | magic `0xE1` (version 1; `0xE2` is reserved for a sealed, AEAD variant) |
//! | 1 | 1 | type: `0x01` C, `0x02` OK, `0x03` NOK, `0x04` D, `0x05` A, `0x06` X |
//! | 2 | 2 | connection id (0-65,535) |
//! | 4 | … | body (below) |
//! | n−4 | 4 | CRC-32C (Castagnoli) over bytes `0..n−4` |
//!
//! Bodies:
//! - C: the initial sequence number (u32) of proxy1's data, random per connection. Reserved
//!   after it: a destination (type-length-value) for SOCKS5; decoders ignore it.
//! - OK: the initial sequence number (u32) of proxy2's data. Reserved after it; ignored.
//! - NOK: empty. Reserved: one refusal-reason byte; decoders ignore it. proxy2 also
//!   answers a D or A for a connection it does not have (it restarted) with NOK.
//! - D: seq (u32), then the payload.
//! - A: cumulative ack (u32, the next seq expected), window (u32, frames the receiver can
//!   take counting from the ack), block count (u8, at most [`MAX_SACK_BLOCKS`]), then per
//!   block start (u32) and end (u32, exclusive): frames the receiver holds above the ack.
//!   Nothing may follow.
//! - X: seq (u32): the close takes the place after the last data frame, like TCP's FIN.
//!   Nothing may follow.
//!
//! Reserved types: `0x07` abort (a reset), `0x08` ping and `0x09` pong (keepalives); they
//! decode as an unknown type today. The first byte is at or above 0x80, so a datagram of this
//! format is never mistaken for a classic or stop-and-wait one (whose first byte is an ASCII
//! letter), and vice versa. A flipped bit anywhere fails the checksum: the frame is counted
//! as malformed and dropped, so the sender retransmits it; it is never delivered.

use super::{
    ConnId, DecodeError, EncodeError, Frame, FrameKind, MAX_DATAGRAM, MAX_SACK_BLOCKS, SackBlock,
    Seq,
};

/// The first byte of every extended datagram (format version 1).
pub const MAGIC: u8 = 0xE1;
/// Reserved first byte for the sealed (AEAD) variant.
pub const MAGIC_SEALED: u8 = 0xE2;
/// Magic, type, id.
pub const HEADER_LEN: usize = 4;
/// The CRC-32C at the end.
pub const TRAILER_LEN: usize = 4;
/// Header plus seq in front of a `D` payload.
pub const DATA_HEADER_LEN: usize = HEADER_LEN + 4;
/// The shortest datagram: header and checksum, no body.
pub const MIN_LEN: usize = HEADER_LEN + TRAILER_LEN;

/// Type codes (byte 1).
pub mod code {
    pub const CONNECT: u8 = 0x01;
    pub const CONNECT_OK: u8 = 0x02;
    pub const CONNECT_NOK: u8 = 0x03;
    pub const DATA: u8 = 0x04;
    pub const ACK: u8 = 0x05;
    pub const CLOSE: u8 = 0x06;
    /// Reserved: abort a connection (a reset), for a later issue.
    pub const ABORT: u8 = 0x07;
    /// Reserved: keepalive request.
    pub const PING: u8 = 0x08;
    /// Reserved: keepalive answer.
    pub const PONG: u8 = 0x09;
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Decodes one extended datagram: checks size, magic and checksum, then the body.
pub fn decode(datagram: &[u8]) -> Result<Frame<'_>, DecodeError> {
    if datagram.len() > MAX_DATAGRAM {
        return Err(DecodeError::TooLong {
            len: datagram.len(),
            max: MAX_DATAGRAM,
        });
    }
    match datagram.first() {
        None => return Err(DecodeError::Short(0)),
        Some(&MAGIC) => {}
        Some(&MAGIC_SEALED) => return Err(DecodeError::Sealed),
        Some(&other) => return Err(DecodeError::NotExtended(other)),
    }
    if datagram.len() < MIN_LEN {
        return Err(DecodeError::Short(datagram.len()));
    }
    let (covered, crc) = datagram.split_at(datagram.len() - TRAILER_LEN);
    if crc32c::crc32c(covered) != u32_at(crc, 0) {
        return Err(DecodeError::Checksum);
    }
    let id = ConnId::new(u16::from_be_bytes([covered[2], covered[3]]));
    let body = &covered[HEADER_LEN..];
    let need = |kind: FrameKind, body_len: usize| {
        if body.len() < body_len {
            Err(DecodeError::Truncated {
                kind,
                len: datagram.len(),
                need: MIN_LEN + body_len,
            })
        } else {
            Ok(())
        }
    };
    // A and X have fixed bodies: anything after them is an error, not an extension (a
    // later version of the format gets a new magic byte).
    let exact = |kind: FrameKind, body_len: usize| {
        need(kind, body_len)?;
        match body.len() - body_len {
            0 => Ok(()),
            extra => Err(DecodeError::TrailingBytes { kind, extra }),
        }
    };
    Ok(match covered[1] {
        // After the ISN, C and OK bodies are reserved for later fields (a destination for
        // SOCKS5): ignored here, so an older build still understands a newer peer's C.
        code::CONNECT => {
            need(FrameKind::Connect, 4)?;
            Frame::Connect {
                id,
                isn: Seq(u32_at(body, 0)),
            }
        }
        code::CONNECT_OK => {
            need(FrameKind::ConnectOk, 4)?;
            Frame::ConnectOk {
                id,
                isn: Seq(u32_at(body, 0)),
            }
        }
        code::CONNECT_NOK => Frame::ConnectNok { id },
        code::DATA => {
            need(FrameKind::Data, 4)?;
            Frame::Data {
                id,
                seq: Seq(u32_at(body, 0)),
                payload: &body[4..],
            }
        }
        code::ACK => {
            need(FrameKind::Ack, 9)?;
            let count = body[8];
            if usize::from(count) > MAX_SACK_BLOCKS {
                return Err(DecodeError::TooManySackBlocks(count));
            }
            exact(FrameKind::Ack, 9 + 8 * usize::from(count))?;
            let sack = (0..usize::from(count))
                .map(|i| SackBlock {
                    start: Seq(u32_at(body, 9 + 8 * i)),
                    end: Seq(u32_at(body, 13 + 8 * i)),
                })
                .collect();
            Frame::Ack {
                id,
                ack: Seq(u32_at(body, 0)),
                window: u32_at(body, 4),
                sack,
            }
        }
        code::CLOSE => {
            exact(FrameKind::Close, 4)?;
            Frame::Close {
                id,
                seq: Seq(u32_at(body, 0)),
            }
        }
        other => return Err(DecodeError::UnknownType(other)),
    })
}

/// Writes an extended frame (payload size already checked by the caller), checksum included.
pub(super) fn encode_into(
    frame: &Frame<'_>,
    out: &mut [u8; MAX_DATAGRAM],
) -> Result<usize, EncodeError> {
    let code = match frame {
        Frame::Connect { .. } => code::CONNECT,
        Frame::ConnectOk { .. } => code::CONNECT_OK,
        Frame::ConnectNok { .. } => code::CONNECT_NOK,
        Frame::Data { .. } => code::DATA,
        Frame::Ack { .. } => code::ACK,
        Frame::Close { .. } => code::CLOSE,
    };
    let id = frame.id().get().to_be_bytes();
    out[..HEADER_LEN].copy_from_slice(&[MAGIC, code, id[0], id[1]]);
    let mut len = HEADER_LEN;
    let mut put = |bytes: &[u8]| {
        out[len..len + bytes.len()].copy_from_slice(bytes);
        len += bytes.len();
    };
    match frame {
        Frame::Connect { isn, .. } | Frame::ConnectOk { isn, .. } => put(&isn.0.to_be_bytes()),
        Frame::ConnectNok { .. } => {}
        Frame::Data { seq, payload, .. } => {
            put(&seq.0.to_be_bytes());
            put(payload);
        }
        Frame::Ack {
            ack, window, sack, ..
        } => {
            put(&ack.0.to_be_bytes());
            put(&window.to_be_bytes());
            // SackBlocks holds at most MAX_SACK_BLOCKS (8), so the count fits a byte.
            put(&[sack.len() as u8]);
            for block in sack.iter() {
                put(&block.start.0.to_be_bytes());
                put(&block.end.0.to_be_bytes());
            }
        }
        Frame::Close { seq, .. } => put(&seq.0.to_be_bytes()),
    }
    let crc = crc32c::crc32c(&out[..len]);
    out[len..len + TRAILER_LEN].copy_from_slice(&crc.to_be_bytes());
    Ok(len + TRAILER_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::WireMode;
    use proptest::prelude::*;

    const EXT: WireMode = WireMode::SelectiveRepeat;

    /// Kind, id, seq or ack, window, sack blocks, payload.
    type Parts = (u8, u16, u32, u32, Vec<(u32, u32)>, Vec<u8>);

    fn frame_strategy(payload: Vec<u8>) -> impl Strategy<Value = Parts> {
        (
            0u8..6,
            any::<u16>(),
            any::<u32>(),
            any::<u32>(),
            proptest::collection::vec((any::<u32>(), any::<u32>()), 0..=MAX_SACK_BLOCKS),
            Just(payload),
        )
    }

    fn build<'a>(
        kind: u8,
        id: u16,
        a: u32,
        b: u32,
        blocks: &[(u32, u32)],
        payload: &'a [u8],
    ) -> Frame<'a> {
        let id = ConnId::new(id);
        match kind {
            0 => Frame::Connect { id, isn: Seq(a) },
            1 => Frame::ConnectOk { id, isn: Seq(b) },
            2 => Frame::ConnectNok { id },
            3 => Frame::Data {
                id,
                seq: Seq(a),
                payload,
            },
            4 => Frame::Ack {
                id,
                ack: Seq(a),
                window: b,
                sack: blocks
                    .iter()
                    .map(|&(start, end)| SackBlock {
                        start: Seq(start),
                        end: Seq(end),
                    })
                    .collect(),
            },
            _ => Frame::Close { id, seq: Seq(a) },
        }
    }

    #[test]
    fn lays_out_an_ack_byte_for_byte() {
        let frame = build(4, 0x0102, 7, 64, &[(9, 12)], &[]);
        let wire = EXT.to_bytes(&frame).unwrap();
        let mut expected = vec![0xE1, 0x05, 0x01, 0x02];
        expected.extend_from_slice(&7u32.to_be_bytes());
        expected.extend_from_slice(&64u32.to_be_bytes());
        expected.push(1);
        expected.extend_from_slice(&9u32.to_be_bytes());
        expected.extend_from_slice(&12u32.to_be_bytes());
        let crc = crc32c::crc32c(&expected);
        expected.extend_from_slice(&crc.to_be_bytes());
        assert_eq!(wire, expected);
        assert_eq!(EXT.decode(&wire).unwrap(), frame);
    }

    #[test]
    fn lays_out_data_byte_for_byte() {
        let wire = EXT
            .to_bytes(&Frame::Data {
                id: ConnId::new(65_535),
                seq: Seq(0xDEAD_BEEF),
                payload: b"hola",
            })
            .unwrap();
        assert_eq!(
            &wire[..8],
            &[0xE1, 0x04, 0xFF, 0xFF, 0xDE, 0xAD, 0xBE, 0xEF]
        );
        assert_eq!(&wire[8..12], b"hola");
        assert_eq!(wire.len(), 16);
        // The CRC-32C check value of "123456789" is 0xE3069283: the same algorithm.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn is_never_mistaken_for_the_text_formats() {
        let wire = EXT
            .to_bytes(&Frame::Connect {
                id: ConnId::new(1),
                isn: Seq::ZERO,
            })
            .unwrap();
        assert!(WireMode::Classic.decode(&wire).is_err());
        assert!(WireMode::StopAndWait.decode(&wire).is_err());
        assert_eq!(EXT.decode(b"D1hola"), Err(DecodeError::NotExtended(b'D')));
        assert_eq!(EXT.decode(&[MAGIC_SEALED; 20]), Err(DecodeError::Sealed));
    }

    #[test]
    fn connect_carries_the_initial_sequence_number_and_ignores_what_follows() {
        let wire = EXT
            .to_bytes(&Frame::Connect {
                id: ConnId::new(9),
                isn: Seq(0x0102_0304),
            })
            .unwrap();
        assert_eq!(
            &wire[..8],
            &[0xE1, 0x01, 0x00, 0x09, 0x01, 0x02, 0x03, 0x04]
        );
        assert_eq!(wire.len(), 12);
        // A later peer's C with a destination after the ISN.
        let mut longer = wire[..8].to_vec();
        longer.extend_from_slice(b"\x01\x0bexample.org");
        longer.extend_from_slice(&crc32c::crc32c(&longer).to_be_bytes());
        assert_eq!(
            EXT.decode(&longer).unwrap(),
            Frame::Connect {
                id: ConnId::new(9),
                isn: Seq(0x0102_0304)
            }
        );
        let mut short = vec![MAGIC, code::CONNECT_OK, 0, 9, 1];
        short.extend_from_slice(&crc32c::crc32c(&short).to_be_bytes());
        assert!(matches!(
            EXT.decode(&short),
            Err(DecodeError::Truncated {
                kind: FrameKind::ConnectOk,
                ..
            })
        ));
    }

    #[test]
    fn fixed_bodies_take_no_trailing_bytes() {
        let mut close = vec![MAGIC, code::CLOSE, 0, 1, 0, 0, 0, 5, 0xAA];
        close.extend_from_slice(&crc32c::crc32c(&close).to_be_bytes());
        assert_eq!(
            EXT.decode(&close),
            Err(DecodeError::TrailingBytes {
                kind: FrameKind::Close,
                extra: 1
            })
        );
    }

    #[test]
    fn rejects_reserved_types_and_oversized_sack_lists() {
        let mut reserved = vec![MAGIC, code::PING, 0, 1];
        reserved.extend_from_slice(&crc32c::crc32c(&reserved).to_be_bytes());
        assert_eq!(
            EXT.decode(&reserved),
            Err(DecodeError::UnknownType(code::PING))
        );
        let mut too_many = vec![MAGIC, code::ACK, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 9];
        too_many.extend(std::iter::repeat_n(0, 72));
        too_many.extend_from_slice(&crc32c::crc32c(&too_many).to_be_bytes());
        assert_eq!(
            EXT.decode(&too_many),
            Err(DecodeError::TooManySackBlocks(9))
        );
        assert!(EXT.decode(&[MAGIC; 1501]).is_err());
    }

    proptest! {
        #[test]
        fn any_bytes_decode_to_a_frame_or_an_error(
            bytes in proptest::collection::vec(any::<u8>(), 0..1600),
            fix_crc in any::<bool>(),
        ) {
            // Half the inputs get a valid magic and checksum, so the body parser is reached.
            let mut bytes = bytes;
            if fix_crc && bytes.len() >= MIN_LEN {
                bytes[0] = MAGIC;
                let n = bytes.len() - TRAILER_LEN;
                let crc = crc32c::crc32c(&bytes[..n]);
                bytes[n..].copy_from_slice(&crc.to_be_bytes());
            }
            if let Ok(frame) = EXT.decode(&bytes) {
                // Whatever decodes re-encodes to the same bytes, unless it carried reserved
                // trailing bytes (C/OK/NOK bodies), which are ignored.
                let again = EXT.to_bytes(&frame).unwrap();
                if !matches!(frame, Frame::Connect { .. } | Frame::ConnectOk { .. } | Frame::ConnectNok { .. }) {
                    prop_assert_eq!(again, bytes);
                }
            }
        }

        #[test]
        fn frames_round_trip_and_any_flipped_bit_is_caught(
            (kind, id, a, b, blocks, payload) in proptest::collection::vec(any::<u8>(), 0..=1488)
                .prop_flat_map(frame_strategy),
            flip in any::<proptest::sample::Index>(),
            bit in 0u8..8,
        ) {
            let frame = build(kind, id, a, b, &blocks, &payload);
            let wire = EXT.to_bytes(&frame).unwrap();
            prop_assert!(wire.len() <= MAX_DATAGRAM);
            prop_assert_eq!(EXT.decode(&wire).unwrap(), frame);
            let mut stack = [0u8; MAX_DATAGRAM];
            let len = EXT.encode_into(&frame, &mut stack).unwrap();
            prop_assert_eq!(&stack[..len], &wire[..]);
            let mut corrupted = wire.clone();
            corrupted[flip.index(wire.len())] ^= 1 << bit;
            prop_assert!(EXT.decode(&corrupted).is_err());
        }
    }
}
