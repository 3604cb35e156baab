//! The capture tap: every UDP frame of the link, exactly as it crossed the wire.
//!
//! Unlike the event stream, the tap must never lose a frame, so [`CaptureTap::record`] waits
//! for room in a bounded buffer (bounded, so a slow disk cannot grow memory without limit).

use std::net::SocketAddr;
use std::time::SystemTime;

use tokio::sync::mpsc;

/// One datagram on the link.
#[derive(Clone, Debug)]
pub struct TapRecord {
    /// When the datagram was sent or received (for a dropped frame: when it was dropped).
    pub time: SystemTime,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    /// The exact bytes on the wire (for a dropped frame: the bytes that would have gone).
    pub datagram: Vec<u8>,
    /// What the lab did to this frame, if anything notable (pcapng comments).
    pub note: Option<String>,
    /// False for a frame the link emulator dropped before it was sent: it never crossed the
    /// wire, so a classic pcap skips it, and pcapng keeps it only to carry its `note`.
    pub on_wire: bool,
}

/// The sending side of the capture writer's channel.
#[derive(Clone, Debug)]
pub struct CaptureTap {
    tx: mpsc::Sender<TapRecord>,
}

impl CaptureTap {
    pub fn channel(capacity: usize) -> (CaptureTap, mpsc::Receiver<TapRecord>) {
        let (tx, rx) = mpsc::channel(capacity);
        (CaptureTap { tx }, rx)
    }

    /// Hands one datagram to the writer; waits only while the bounded buffer is full.
    pub async fn record(&self, record: TapRecord) {
        // A closed channel means the writer gave up; it has already said so loudly.
        let _ = self.tx.send(record).await;
    }
}
