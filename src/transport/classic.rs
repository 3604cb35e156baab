//! Classic: no reliability. Data goes out once as it is written; whatever arrives is
//! delivered; a lost frame is lost, as the course's first assignment says. The only bound is
//! on the receiving side: when the application does not read, arriving data is dropped and
//! counted ([`TransportEvent::Overflow`]), as today's proxies do.
//!
//! The close is sent once, after the data. There are no acks and no timers.

use std::time::Instant;

use super::{
    Events, GiveUp, Inbox, OutFrame, Outbox, TransportConfig, TransportEvent, TransportStats,
    count_sent,
};
use crate::wire::{Frame, Seq};

/// The classic transport.
#[derive(Debug)]
pub struct Classic {
    config: TransportConfig,
    outbox: Outbox,
    close_sent: bool,
    inbox: Inbox,
    peer_finished: bool,
    events: Events,
    stats: TransportStats,
}

impl Classic {
    pub fn new(config: TransportConfig) -> Self {
        Classic {
            config,
            outbox: Outbox::default(),
            close_sent: false,
            inbox: Inbox::new(config.window),
            peer_finished: false,
            events: Events::default(),
            stats: TransportStats::default(),
        }
    }

    pub(super) fn buffered_bytes(&self) -> usize {
        self.outbox.len() + self.inbox.bytes()
    }

    pub(super) fn send_room(&self) -> usize {
        self.config.send_buffer.saturating_sub(self.outbox.len())
    }

    pub(super) fn write(&mut self, data: &[u8]) -> usize {
        let room = self.send_room();
        self.outbox.write(data, room)
    }

    pub(super) fn finish(&mut self) {
        self.outbox.finished = true;
    }

    pub(super) fn handle_frame(&mut self, _now: Instant, frame: &Frame<'_>) {
        match *frame {
            Frame::Data { payload, .. } if !self.peer_finished => {
                if self.inbox.room() == 0 {
                    self.stats.discarded += 1;
                    self.events
                        .push(TransportEvent::Overflow { len: payload.len() });
                    return;
                }
                self.stats.bytes_delivered += payload.len() as u64;
                self.events.push(TransportEvent::Delivered {
                    seq: Seq::ZERO,
                    len: payload.len(),
                });
                self.inbox.push(bytes::Bytes::copy_from_slice(payload));
            }
            Frame::Close { .. } => self.peer_finished = true,
            _ => {}
        }
    }

    pub(super) fn poll_transmit(&mut self, _now: Instant) -> Option<OutFrame> {
        let out = if let Some(payload) = self.outbox.take(self.config.max_payload) {
            OutFrame::Data {
                seq: Seq::ZERO,
                payload,
                retransmit: None,
            }
        } else if self.outbox.finished && !self.close_sent {
            self.close_sent = true;
            OutFrame::Close {
                seq: Seq::ZERO,
                retransmit: None,
            }
        } else {
            return None;
        };
        count_sent(&mut self.stats, &mut self.events, &out);
        Some(out)
    }

    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    pub(super) fn handle_timeout(&mut self, _now: Instant) {}

    pub(super) fn read(&mut self, buf: &mut [u8]) -> usize {
        self.inbox.read(buf)
    }

    pub(super) fn poll_delivered(&mut self) -> Option<bytes::Bytes> {
        self.inbox.pop()
    }

    pub(super) fn inbox_mut(&mut self) -> &mut Inbox {
        &mut self.inbox
    }

    pub(super) fn consume_delivered(&mut self, n: usize) {
        self.inbox.consume(n);
    }

    pub(super) fn events_mut(&mut self) -> &mut Events {
        &mut self.events
    }

    pub(super) fn peer_finished(&self) -> bool {
        self.peer_finished
    }

    pub(super) fn is_done(&self) -> bool {
        self.close_sent && self.peer_finished && self.inbox.is_empty()
    }

    pub(super) fn gave_up(&self) -> Option<GiveUp> {
        None
    }

    pub(super) fn stats(&self) -> TransportStats {
        TransportStats {
            readable: self.inbox.frames(),
            events_dropped: self.events.dropped,
            ..self.stats
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::Transport;
    use crate::wire::{ConnId, WireMode};

    #[test]
    fn passes_data_through_once_and_closes_once() {
        let now = Instant::now();
        let mut config = TransportConfig::for_mode(WireMode::Classic);
        config.max_payload = 4;
        let mut t = Transport::new(WireMode::Classic, config);
        assert_eq!(t.write(b"hola mundo"), 10);
        t.finish();
        assert_eq!(t.write(b"late"), 0);
        let mut sent = Vec::new();
        while let Some(out) = t.poll_transmit(now) {
            sent.push(out);
        }
        let id = ConnId::new(3);
        let wire: Vec<Vec<u8>> = sent
            .iter()
            .map(|out| WireMode::Classic.to_bytes(&out.frame(id)).unwrap())
            .collect();
        assert_eq!(wire, [&b"D3hola"[..], b"D3 mun", b"D3do", b"X3"]);
        assert_eq!(t.poll_timeout(), None);
        assert_eq!(t.stats().data_frames_sent, 3);
        assert_eq!(
            t.stats().retransmits_timeout + t.stats().retransmits_fast,
            0
        );
    }

    #[test]
    fn drops_what_the_application_does_not_read_and_counts_it() {
        let now = Instant::now();
        let mut config = TransportConfig::for_mode(WireMode::Classic);
        config.window = 2;
        let mut t = Transport::new(WireMode::Classic, config);
        let id = ConnId::new(0);
        for payload in [&b"one"[..], b"two", b"three"] {
            t.handle_frame(
                now,
                &Frame::Data {
                    id,
                    seq: Seq::ZERO,
                    payload,
                },
            );
        }
        assert_eq!(t.stats().discarded, 1);
        let mut buf = [0u8; 16];
        let n = t.read(&mut buf);
        assert_eq!(&buf[..n], b"onetwo");
        let events: Vec<_> = std::iter::from_fn(|| t.poll_event()).collect();
        assert_eq!(events.last(), Some(&TransportEvent::Overflow { len: 5 }));
        t.handle_frame(now, &Frame::Close { id, seq: Seq::ZERO });
        assert!(t.peer_finished());
    }
}
