//! One-line, human-readable descriptions of events, shared by the standalone roles' log
//! output, the TUI's log pane and the headless runner.

use crate::event::{ClientAction, ConnState, EventKind, FrameSummary, Ignored, TcpAction};

/// Escapes bytes for display: printable ASCII as is, `\n`, `\r`, `\t`, everything else `\xNN`.
///
/// The TUI labels every frame it traces with this, so it avoids the formatting machinery
/// (a `format!` per byte made binary payloads the TUI's largest cost).
pub fn escape_bytes(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 2);
    for &b in bytes {
        match b {
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'"' => out.extend_from_slice(b"\\\""),
            0x20..=0x7e => out.push(b),
            _ => out.extend_from_slice(&[
                b'\\',
                b'x',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]),
        }
    }
    String::from_utf8(out).expect("only printable ASCII is written")
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
        EventKind::FrameSent { .. }
        | EventKind::FrameReceived { .. }
        | EventKind::LinkDecision { .. }
        | EventKind::FramesFolded { .. } => return None,
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
}
