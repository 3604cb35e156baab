//! Capture glue: what the link socket hands to the capture tap, and when.

use std::net::SocketAddr;
use std::time::SystemTime;

use super::socket::Inner;
use crate::capture::TapFrame;
use crate::event::{EventKind, FrameSummary};
use crate::impair::{DirectionEmulator, DropCause, LinkVerdict};
use crate::wire::Frame;

/// Which datagrams the capture tap records at this endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TapScope {
    /// Only what this endpoint sends. In the lab both proxies tap their sends, so every frame
    /// on the link is recorded exactly once, at the moment it left.
    Sent,
    /// Everything this endpoint sends and receives: a standalone proxy sees the whole link.
    SentAndReceived,
}

impl Inner {
    /// Captures a datagram this endpoint sent (`on_wire`), or one the emulator dropped
    /// before it could be sent (not `on_wire`: pcapng shows it as a comment, pcap skips it).
    pub(super) async fn tap_sent(
        &self,
        time: SystemTime,
        datagram: &[u8],
        to: SocketAddr,
        note: Option<String>,
        on_wire: bool,
    ) {
        if let Some((tap, _)) = &self.tap {
            let frame = TapFrame {
                time,
                src: self.local,
                dst: to,
                datagram,
                note,
                on_wire,
            };
            // Almost always the ring has room: no future to build and poll.
            if let Some(frame) = tap.try_frame(frame) {
                tap.frame(frame).await;
            }
        }
    }

    /// Reports a frame the emulator dropped before it was sent: an event, and a capture
    /// record marked as not on the wire (pcapng shows it as a comment; pcap skips it).
    /// `frame` is what the role sent, `datagram` its encoding: not decoded again.
    pub(super) async fn dropped_before_sending(
        &self,
        emulated: &DirectionEmulator,
        frame: &Frame<'_>,
        datagram: Vec<u8>,
        to: SocketAddr,
        cause: DropCause,
    ) {
        let direction = emulated.direction();
        let verdict = LinkVerdict::dropped(cause);
        emulated.counters().drop_kind(frame.kind());
        if self.events.is_enabled() {
            self.events.emit(EventKind::LinkDecision {
                at: self.endpoint,
                direction,
                peer: to,
                frame: FrameSummary::in_mode(self.mode, frame, datagram.len()),
                what: verdict.clone(),
            });
        }
        // A sealed link's capture holds no plaintext, so a frame that never crossed the
        // wire is not recorded there.
        if self.seal.is_none() {
            self.tap_sent(
                SystemTime::now(),
                &datagram,
                to,
                verdict.capture_note(false),
                false,
            )
            .await;
        }
    }

    /// Captures a datagram as it arrived, if this endpoint taps what it receives.
    pub(super) async fn tap_arrival(
        &self,
        time: SystemTime,
        datagram: &[u8],
        peer: SocketAddr,
        note: Option<String>,
    ) {
        if let Some((tap, TapScope::SentAndReceived)) = &self.tap {
            let frame = TapFrame {
                time,
                src: peer,
                dst: self.local,
                datagram,
                note,
                on_wire: true,
            };
            if let Some(frame) = tap.try_frame(frame) {
                tap.frame(frame).await;
            }
        }
    }
}
