//! One-line, human-readable descriptions of events, shared by the standalone roles' log
//! output, the TUI's log pane and the headless runner.

use crate::event::{ClientAction, ConnState, EventKind, FrameSummary, Ignored, TcpAction};

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

/// `D3 len=5 "hola\n"`, `C3`, `OK3`…: how a frame reads in traces (the dissector's Info
/// column uses the same shape).
pub fn frame_label(frame: &FrameSummary) -> String {
    use crate::wire::FrameKind;
    match frame.kind {
        // proxy1's "do you still have this id?" (see roles::proxy1).
        FrameKind::Data if frame.payload_len == 0 => format!("D{} len=0 (probe)", frame.id),
        FrameKind::Data => format!(
            "D{} len={} \"{}\"",
            frame.id,
            frame.payload_len,
            preview_text(frame)
        ),
        FrameKind::Connect => format!("C{}", frame.id),
        FrameKind::ConnectOk => format!("C{}OK", frame.id),
        FrameKind::ConnectNok => format!("C{}NOK", frame.id),
        FrameKind::Ack => format!("A{}", frame.id),
        FrameKind::Close => format!("X{}", frame.id),
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
        EventKind::FrameSent { .. }
        | EventKind::FrameReceived { .. }
        | EventKind::LinkDecision { .. }
        | EventKind::FramesFolded { .. }
        | EventKind::TcpSegment { .. } => return None,
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
