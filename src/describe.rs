//! One-line, human-readable descriptions of events, shared by the standalone roles' log
//! output, the TUI's log pane and the headless runner.

use crate::event::{
    ClientAction, ConnState, EventKind, FrameNumbers, FrameSummary, Ignored, TcpAction,
};
use crate::transport::TransportEvent;
use crate::wire::Seq;

/// Escapes bytes for display: printable text as is (ASCII and any printable UTF-8, so
/// `adiós` reads as `adiós`), `\n`, `\r`, `\t`, `\\` and `\"` as escapes, and every other
/// byte (control characters, bytes that are not UTF-8) as `\xNN`.
///
/// The TUI labels every frame it traces with this, so it avoids the formatting machinery
/// (a `format!` per byte made binary payloads the TUI's largest cost).
pub fn escape_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + bytes.len() / 2);
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                ' '..='~' => out.push(c),
                c if c.is_ascii() || !is_printable(c) => {
                    let mut buf = [0u8; 4];
                    for &b in c.encode_utf8(&mut buf).as_bytes() {
                        push_hex(&mut out, b);
                    }
                }
                c => out.push(c),
            }
        }
        for &b in chunk.invalid() {
            push_hex(&mut out, b);
        }
    }
    out
}

/// Whether a non-ASCII character is safe to put on a terminal as text: not a control
/// character (C1), not a format or separator character that moves or hides text.
fn is_printable(c: char) -> bool {
    !c.is_control()
        && !matches!(c,
            '\u{00ad}'                       // soft hyphen: invisible
            | '\u{200b}'..='\u{200f}'         // zero-width spaces, direction marks
            | '\u{2028}'..='\u{202e}'         // line/paragraph separators, embeddings
            | '\u{2060}'..='\u{206f}'         // word joiner, invisible operators, isolates
            | '\u{feff}'                       // byte order mark
            | '\u{fff9}'..='\u{fffb}') // interlinear annotations
}

fn push_hex(out: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('\\');
    out.push('x');
    out.push(char::from(HEX[usize::from(b >> 4)]));
    out.push(char::from(HEX[usize::from(b & 0xf)]));
}

/// A `D` frame's payload preview, escaped, with `…` when the payload is longer.
pub fn preview_text(frame: &FrameSummary) -> String {
    let more = if frame.payload_len > frame.preview.len() {
        "…"
    } else {
        ""
    };
    format!("{}{more}", escape_bytes(&frame.preview))
}

/// How a frame reads in traces (the dissector's Info column uses the same shape), in each
/// wire mode:
/// - classic: `C3`, `C3OK`, `C3NOK`, `D3 len=5 "hola\n"`, `D3 len=0 (probe)`, `X3`;
/// - stop-and-wait, with the alternating bit right after the id as on the wire: `C30`,
///   `C30OK`, `D31 len=5 "hola\n"`, `A31`, `X30`;
/// - extended: `C3 isn=7`, `C3OK isn=9`, `D3 seq=17 len=1488 "…"`,
///   `D3 seq=16 len=0 (keepalive probe)`, `A3 ack=18 win=64 sack=20-22,25`, `X3 seq=40`. SACK ranges are inclusive (frames 20,
///   21 and 22 are held), unlike the wire's exclusive block ends.
///
/// Sequence numbers are as on the wire; [`frame_label_relative`] shows them from the ISNs.
pub fn frame_label(frame: &FrameSummary) -> String {
    frame_label_relative(frame, None)
}

/// [`frame_label`], with an extended frame's sequence numbers counted from the connection's
/// initial sequence numbers (as Wireshark shows TCP's relative sequence numbers):
/// `bases` is (the sender's ISN, the receiver's ISN). A `D` or `X` counts from the sender's,
/// an ack from the receiver's (it acknowledges the receiver's data).
pub fn frame_label_relative(frame: &FrameSummary, bases: Option<(Seq, Seq)>) -> String {
    use crate::wire::FrameKind;
    use std::fmt::Write;
    let id = frame.id;
    let own = |seq: Seq| seq.shown_from(bases.map(|(own, _)| own));
    let peer = |seq: Seq| seq.shown_from(bases.map(|(_, peer)| peer));
    let mut out = match (frame.kind, frame.numbers) {
        (FrameKind::Connect, FrameNumbers::Bit(bit)) => format!("C{id}{bit}"),
        (FrameKind::ConnectOk, FrameNumbers::Bit(bit)) => format!("C{id}{bit}OK"),
        (FrameKind::ConnectNok, FrameNumbers::Bit(bit)) => format!("C{id}{bit}NOK"),
        (FrameKind::Connect, FrameNumbers::Isn(isn)) => match &frame.destination {
            Some(destination) => format!("C{id} isn={isn} → {destination}"),
            None => format!("C{id} isn={isn}"),
        },
        (FrameKind::ConnectOk, FrameNumbers::Isn(isn)) => format!("C{id}OK isn={isn}"),
        (FrameKind::ConnectNok, FrameNumbers::Reason(reason)) => {
            format!("C{id}NOK reason={:#04x} ({reason})", reason.code())
        }
        (FrameKind::Connect, _) => format!("C{id}"),
        (FrameKind::ConnectOk, _) => format!("C{id}OK"),
        (FrameKind::ConnectNok, _) => format!("C{id}NOK"),
        // proxy1's "do you still have this id?" (see roles::proxy1).
        (FrameKind::Data, FrameNumbers::None) if frame.payload_len == 0 => {
            return format!("D{id} len=0 (probe)");
        }
        (FrameKind::Data, FrameNumbers::Bit(bit)) => format!("D{id}{bit}"),
        // proxy1's keepalive in the extended modes: one below the oldest unacked seq.
        (FrameKind::Data, FrameNumbers::Seq(seq)) if frame.payload_len == 0 => {
            return format!("D{id} seq={} len=0 (keepalive probe)", own(seq));
        }
        (FrameKind::Data, FrameNumbers::Seq(seq)) => format!("D{id} seq={}", own(seq)),
        (FrameKind::Data, _) => format!("D{id}"),
        (FrameKind::Ack, FrameNumbers::Bit(bit)) => return format!("A{id}{bit}"),
        (FrameKind::Ack, FrameNumbers::Ack { ack, window, sack }) => {
            let mut out = format!("A{id} ack={} win={window}", peer(ack));
            for (i, block) in sack.iter().enumerate() {
                out.push_str(if i == 0 { " sack=" } else { "," });
                let (start, last) = (peer(block.start), peer(block.end).wrapping_sub(1));
                if start == last {
                    let _ = write!(out, "{start}");
                } else {
                    let _ = write!(out, "{start}-{last}");
                }
            }
            return out;
        }
        (FrameKind::Ack, _) => return format!("A{id}"),
        (FrameKind::Close, FrameNumbers::Bit(bit)) => return format!("X{id}{bit}"),
        (FrameKind::Close, FrameNumbers::Seq(seq)) => return format!("X{id} seq={}", own(seq)),
        (FrameKind::Close, _) => return format!("X{id}"),
    };
    if frame.kind == FrameKind::Data {
        let _ = write!(
            out,
            " len={} \"{}\"",
            frame.payload_len,
            preview_text(frame)
        );
    }
    out
}

/// How a transport event reads in traces and logs: `retransmitted seq=17 (timeout)`,
/// `duplicate seq=17 discarded`, `seq=20 held out of order`… Sequence numbers as on the wire
/// (stop-and-wait: the bit); `base` counts them from an ISN as [`frame_label_relative`] does.
pub fn transport_event_label(event: &TransportEvent, base: Option<Seq>) -> String {
    let rel = |seq: Seq| seq.shown_from(base);
    match *event {
        TransportEvent::Retransmitted { seq, cause } => {
            format!("retransmitted seq={} ({})", rel(seq), cause.label())
        }
        TransportEvent::DuplicateDiscarded { seq } => {
            format!("duplicate seq={} discarded (acked again)", rel(seq))
        }
        TransportEvent::KeepaliveAnswered { seq } => {
            format!("keepalive probe seq={} answered (acked)", rel(seq))
        }
        TransportEvent::HeldOutOfOrder { seq } => {
            format!("seq={} held out of order (a gap before it)", rel(seq))
        }
        TransportEvent::Discarded { seq } => {
            format!("seq={} discarded (out of order or no room)", rel(seq))
        }
        TransportEvent::Overflow { len } => format!("{len} bytes dropped: the receiver is full"),
        TransportEvent::Delivered { seq, len } => format!("seq={} delivered ({len} B)", rel(seq)),
        TransportEvent::GaveUp { timeouts, oldest } => format!(
            "gave up: {timeouts} timeouts in a row, oldest unacked seq={}",
            rel(oldest)
        ),
        TransportEvent::CongestionCut {
            cause,
            cwnd,
            ssthresh,
        } => format!(
            "congestion window cut to {cwnd} (on {}, ssthresh {ssthresh})",
            cause.label()
        ),
        TransportEvent::SlowStartEnded { cwnd, rise_micros } => format!(
            "slow start ended at {cwnd} frames (round trip +{:.1} ms)",
            rise_micros as f64 / 1000.0
        ),
    }
}

/// Describes an event; `frames` decides whether per-frame and per-read events are included
/// (they are many).
pub fn describe(kind: &EventKind, frames: bool) -> Option<String> {
    Some(match kind {
        EventKind::RoleUp { role, addr } => format!("{} up on {addr}", role.label()),
        EventKind::RoleDown { role } => format!("{} down", role.label()),
        EventKind::FrameSent { at, peer, frame } if frames => {
            format!("{} → {peer}: {}", at.label(), frame_label(frame))
        }
        EventKind::FrameReceived { at, peer, frame } if frames => {
            format!("{} ← {peer}: {}", at.label(), frame_label(frame))
        }
        EventKind::LinkDecision {
            at,
            direction,
            frame,
            what,
            ..
        } if frames => {
            format!(
                "{} link emulator {}: {} {}",
                at.label(),
                direction.arrow(),
                frame_label(frame),
                what.describe()
            )
        }
        EventKind::FramesFolded {
            at,
            id,
            frames: count,
            payload_bytes,
            other,
        } if frames => format!(
            "{} [{id}]: {count} frames ({payload_bytes} payload bytes) and {other} other events \
             counted, not logged one by one (sampled)",
            at.label()
        ),
        EventKind::TcpSegment { segment } if frames => {
            format!(
                "tcp {} → {} [{}] seq={} ack={} len={}",
                segment.src,
                segment.dst,
                segment.label(),
                segment.seq,
                segment.ack,
                segment.payload_len
            )
        }
        EventKind::Transport { at, id, event } if frames => {
            format!(
                "{} [{id}]: {}",
                at.label(),
                transport_event_label(event, None)
            )
        }
        // A give-up is said by the proxy's own log line, with what it did about it.
        EventKind::Transport { .. } | EventKind::TransportStats { .. } => return None,
        EventKind::FrameSent { .. }
        | EventKind::FrameReceived { .. }
        | EventKind::LinkDecision { .. }
        | EventKind::FramesFolded { .. }
        | EventKind::TcpSegment { .. } => return None,
        // The proxies say these in their own log lines, with the connection's context.
        EventKind::Route { .. } | EventKind::Refused { .. } => return None,
        EventKind::FrameMalformed {
            at,
            peer,
            len,
            error,
        } => {
            format!(
                "{}: dropped malformed datagram ({len} bytes) from {peer}: {error}",
                at.label()
            )
        }
        EventKind::FrameIgnored { at, peer, why } => {
            let why = match why {
                Ignored::Stranger => "not from our proxy2".to_string(),
                Ignored::NotOpen(kind, id) => {
                    format!("{} for id {id}, which is not open", kind.label())
                }
                Ignored::Unexpected(kind, id) => format!("unexpected {} for id {id}", kind.label()),
                Ignored::Overflow(id) => format!("connection {id} cannot keep up; data dropped"),
            };
            format!("{}: ignored datagram from {peer}: {why}", at.label())
        }
        EventKind::Conn {
            at,
            id,
            state,
            client,
        } => {
            let state = match state {
                ConnState::Connecting => "connecting",
                ConnState::Open => "open",
                ConnState::Closing => "closing",
                ConnState::Refused => "refused (NOK)",
                ConnState::Unanswered => "no answer from proxy2",
                ConnState::Free => "free",
            };
            match client {
                Some(client) => format!("{}: connection {id} ({client}) {state}", at.label()),
                None => format!("{}: connection {id} {state}", at.label()),
            }
        }
        EventKind::WaitingForId { client } => {
            format!("proxy1: client {client} waits for a free id")
        }
        EventKind::WaitGaveUp { client } => {
            format!("proxy1: client {client} got no id in time, closed")
        }
        EventKind::Tcp {
            role,
            id,
            peer,
            action,
        } => {
            let id = id.map(|id| format!(" [{id}]")).unwrap_or_default();
            let what = match action {
                TcpAction::Accepted => "accepted".to_string(),
                TcpAction::Connected => "connected".to_string(),
                TcpAction::ConnectedFrom(local) => format!("connected from {local}"),
                TcpAction::ConnectFailed(e) => format!("connect failed: {e}"),
                TcpAction::Read(n) if frames => format!("read {n} bytes"),
                TcpAction::Wrote(n) if frames => format!("wrote {n} bytes"),
                TcpAction::Read(_) | TcpAction::Wrote(_) => return None,
                TcpAction::PeerClosed(how) => format!("peer closed ({})", how.label()),
                TcpAction::Closed(how) => format!("closed ({})", how.label()),
            };
            format!("{}{id}: tcp {peer} {what}", role.label())
        }
        EventKind::Client { client, action } => match action {
            ClientAction::Connected { local } => format!("client {client}: connected from {local}"),
            ClientAction::ConnectFailed(e) => format!("client {client}: cannot connect: {e}"),
            ClientAction::Sent(n) if frames => format!("client {client}: sent {n} bytes"),
            ClientAction::Echoed { len, intact } if frames => {
                format!(
                    "client {client}: echo {len} bytes{}",
                    if *intact { "" } else { " (damaged)" }
                )
            }
            ClientAction::Sent(_) | ClientAction::Echoed { .. } => return None,
            ClientAction::Closed { how } => format!("client {client}: {}", how.describe()),
        },
        EventKind::Log {
            level,
            role,
            message,
        } => {
            format!("{} {}: {message}", level.label(), role.label())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::escape_bytes;

    #[test]
    fn escapes_every_byte_value_as_documented() {
        for b in 0..=255u8 {
            let want = match b {
                b'\n' => "\\n".to_string(),
                b'\r' => "\\r".to_string(),
                b'\t' => "\\t".to_string(),
                b'\\' => "\\\\".to_string(),
                b'"' => "\\\"".to_string(),
                0x20..=0x7e => (b as char).to_string(),
                _ => format!("\\x{b:02x}"),
            };
            assert_eq!(escape_bytes(&[b]), want, "byte {b:#04x}");
        }
        assert_eq!(escape_bytes(b"hola\n\x00\xff"), "hola\\n\\x00\\xff");
    }

    #[test]
    fn printable_utf8_is_text_and_everything_else_is_escaped() {
        assert_eq!(escape_bytes("adiós".as_bytes()), "adiós");
        assert_eq!(escape_bytes("ñandú 日本 €".as_bytes()), "ñandú 日本 €");
        // A cut sequence, a lone continuation byte, a C1 control and a zero-width space.
        assert_eq!(escape_bytes(b"adi\xc3"), "adi\\xc3");
        assert_eq!(escape_bytes(b"\x80ok"), "\\x80ok");
        assert_eq!(escape_bytes("\u{85}".as_bytes()), "\\xc2\\x85");
        assert_eq!(escape_bytes("a\u{200b}b".as_bytes()), "a\\xe2\\x80\\x8bb");
        assert_eq!(escape_bytes("\u{7f}".as_bytes()), "\\x7f");
    }
}

#[cfg(test)]
mod label_tests {
    use super::{frame_label, frame_label_relative, transport_event_label};
    use crate::event::FrameSummary;
    use crate::transport::{RetransmitCause, TransportEvent};
    use crate::wire::{ConnId, Frame, SackBlock, SackBlocks, Seq, WireMode};

    /// Encodes `frame` in `mode`, decodes it back (as the link does) and labels it.
    fn label(mode: WireMode, frame: Frame<'_>) -> String {
        let mut buf = [0u8; 1500];
        let len = mode.encode_into(&frame, &mut buf).unwrap();
        let decoded = mode.decode(&buf[..len]).unwrap();
        frame_label(&FrameSummary::in_mode(mode, &decoded, len))
    }

    #[test]
    fn classic_labels_are_unchanged() {
        let id = ConnId::new(3);
        let m = WireMode::Classic;
        assert_eq!(
            label(
                m,
                Frame::Connect {
                    id,
                    isn: Seq::ZERO,
                    destination: None
                }
            ),
            "C3"
        );
        assert_eq!(label(m, Frame::ConnectOk { id, isn: Seq::ZERO }), "C3OK");
        assert_eq!(label(m, Frame::ConnectNok { id, reason: None }), "C3NOK");
        let data = Frame::Data {
            id,
            seq: Seq::ZERO,
            payload: b"hola\n",
        };
        assert_eq!(label(m, data), "D3 len=5 \"hola\\n\"");
        let probe = Frame::Data {
            id,
            seq: Seq::ZERO,
            payload: b"",
        };
        assert_eq!(label(m, probe), "D3 len=0 (probe)");
        assert_eq!(label(m, Frame::Close { id, seq: Seq::ZERO }), "X3");
    }

    #[test]
    fn stop_and_wait_labels_spell_the_bit_as_the_wire_does() {
        let id = ConnId::new(1);
        let m = WireMode::StopAndWait;
        assert_eq!(
            label(
                m,
                Frame::Connect {
                    id,
                    isn: Seq::ZERO,
                    destination: None
                }
            ),
            "C10"
        );
        assert_eq!(label(m, Frame::ConnectOk { id, isn: Seq::ZERO }), "C10OK");
        assert_eq!(label(m, Frame::ConnectNok { id, reason: None }), "C10NOK");
        let data = Frame::Data {
            id,
            seq: Seq(1),
            payload: b"hola",
        };
        assert_eq!(label(m, data), "D11 len=4 \"hola\"");
        let ack = Frame::Ack {
            id,
            ack: Seq(1),
            window: 1,
            sack: SackBlocks::EMPTY,
        };
        assert_eq!(label(m, ack), "A11");
        assert_eq!(label(m, Frame::Close { id, seq: Seq(0) }), "X10");
    }

    #[test]
    fn an_extended_empty_d_reads_as_the_keepalive_probe_it_is() {
        let id = ConnId::new(3);
        for m in [WireMode::SelectiveRepeat, WireMode::GoBackN] {
            let probe = Frame::Data {
                id,
                seq: Seq(16),
                payload: b"",
            };
            assert_eq!(label(m, probe), "D3 seq=16 len=0 (keepalive probe)");
        }
        let answered = TransportEvent::KeepaliveAnswered { seq: Seq(16) };
        assert_eq!(
            transport_event_label(&answered, None),
            "keepalive probe seq=16 answered (acked)"
        );
    }

    /// A probe on a connection that has sent nothing yet re-uses the seq before its ISN:
    /// counted from the ISN it is -1, not 4294967295.
    #[test]
    fn a_probe_before_the_first_data_frame_reads_seq_minus_one() {
        use crate::event::FrameSummary;
        let isn = Seq(u32::MAX - 2);
        let probe = Frame::Data {
            id: ConnId::new(0),
            seq: Seq(isn.0 - 1),
            payload: b"",
        };
        let summary = FrameSummary::in_mode(WireMode::SelectiveRepeat, &probe, 20);
        assert_eq!(
            frame_label_relative(&summary, Some((isn, Seq(9)))),
            "D0 seq=-1 len=0 (keepalive probe)"
        );
        let answered = TransportEvent::KeepaliveAnswered {
            seq: probe.seq().unwrap(),
        };
        assert_eq!(
            transport_event_label(&answered, Some(isn)),
            "keepalive probe seq=-1 answered (acked)"
        );
        let first = Frame::Data {
            id: ConnId::new(0),
            seq: isn.add(3),
            payload: b"x",
        };
        let summary = FrameSummary::in_mode(WireMode::SelectiveRepeat, &first, 21);
        assert!(
            frame_label_relative(&summary, Some((isn, Seq(9)))).starts_with("D0 seq=3 "),
            "after the wrap, still counted up from the ISN"
        );
    }

    #[test]
    fn extended_labels_show_seq_ack_window_and_sack() {
        let id = ConnId::new(3);
        let m = WireMode::SelectiveRepeat;
        assert_eq!(
            label(
                m,
                Frame::Connect {
                    id,
                    isn: Seq(7),
                    destination: None
                }
            ),
            "C3 isn=7"
        );
        assert_eq!(label(m, Frame::ConnectOk { id, isn: Seq(9) }), "C3OK isn=9");
        assert_eq!(label(m, Frame::ConnectNok { id, reason: None }), "C3NOK");
        let refused = Frame::ConnectNok {
            id,
            reason: Some(crate::destination::Refusal::NotAllowed),
        };
        assert_eq!(
            label(m, refused),
            "C3NOK reason=0x02 (not allowed by ruleset)"
        );
        let data = Frame::Data {
            id,
            seq: Seq(17),
            payload: b"hola",
        };
        assert_eq!(label(m, data), "D3 seq=17 len=4 \"hola\"");
        let sack: SackBlocks = [
            SackBlock {
                start: Seq(20),
                end: Seq(23),
            },
            SackBlock {
                start: Seq(25),
                end: Seq(26),
            },
        ]
        .into_iter()
        .collect();
        let ack = Frame::Ack {
            id,
            ack: Seq(18),
            window: 64,
            sack,
        };
        assert_eq!(label(m, ack), "A3 ack=18 win=64 sack=20-22,25");
        assert_eq!(label(m, Frame::Close { id, seq: Seq(40) }), "X3 seq=40");
    }

    #[test]
    fn relative_labels_count_from_the_isns_across_the_wrap() {
        let m = WireMode::GoBackN;
        let id = ConnId::new(2);
        let own = Seq(u32::MAX - 1);
        let peer = Seq(1000);
        let data = Frame::Data {
            id,
            seq: own.add(5),
            payload: b"x",
        };
        let summary = FrameSummary::in_mode(m, &data, 20);
        assert_eq!(
            frame_label_relative(&summary, Some((own, peer))),
            "D2 seq=5 len=1 \"x\""
        );
        let ack = Frame::Ack {
            id,
            ack: peer.add(3),
            window: 10,
            sack: SackBlocks::EMPTY,
        };
        let summary = FrameSummary::in_mode(m, &ack, 20);
        assert_eq!(
            frame_label_relative(&summary, Some((own, peer))),
            "A2 ack=3 win=10"
        );
        let event = TransportEvent::Retransmitted {
            seq: own.add(5),
            cause: RetransmitCause::FastRetransmit,
        };
        assert_eq!(
            transport_event_label(&event, Some(own)),
            "retransmitted seq=5 (fast retransmit)"
        );
    }
}
