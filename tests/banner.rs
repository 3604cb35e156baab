//! A server that speaks first (an SSH, SMTP or FTP banner): proxy2 answers `OK` and sends the
//! banner's `D` right behind it, before proxy1's connection task has switched the id open.
//! proxy1 must keep such frames and hand them on once open. It used to drop them: in classic
//! mode the banner was lost for good; in the reliable modes it waited for a resend (a second,
//! the initial retransmission timer, for about one connection in fifteen).
//!
//! A raw UDP socket plays proxy2 and never resends, so a dropped frame shows as a banner that
//! never comes.

mod common;

use common::*;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tunlab::event::EventSink;
use tunlab::link::LinkSocket;
use tunlab::net::{bind_tcp, bind_udp};
use tunlab::roles::proxy1::{self, Proxy1Config};
use tunlab::topology::Endpoint;
use tunlab::wire::{Frame, Seq, WireMode};

const BANNER: &[u8] = b"220 tunlab banner ready\r\n";

/// Connections per mode: the race is won by the banner most of the time, not every time.
const TRIES: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_banner_right_behind_ok_reaches_the_client_in_every_mode() {
    for mode in [
        WireMode::Classic,
        WireMode::StopAndWait,
        WireMode::GoBackN,
        WireMode::SelectiveRepeat,
    ] {
        for attempt in 0..TRIES {
            let stop = CancellationToken::new();
            let fake_proxy2 = RawPeer::new(localhost()).await;
            let listener = bind_tcp(localhost()).unwrap();
            let tcp = listener.local_addr().unwrap();
            let link = LinkSocket::new(
                bind_udp(localhost()).unwrap(),
                Endpoint::Proxy1,
                mode,
                EventSink::disabled(),
            )
            .unwrap();
            tokio::spawn(proxy1::run(
                listener,
                link,
                Proxy1Config::new(fake_proxy2.socket.local_addr().unwrap()),
                stop.clone(),
            ));

            let mut client = TcpStream::connect(tcp).await.unwrap();
            let (connect, proxy1_udp) = fake_proxy2.recv().await;
            let Ok(Frame::Connect { id, .. }) = mode.decode(&connect) else {
                panic!("{mode:?}: expected C, got {connect:?}");
            };
            // The extended modes number from the ISN in OK; the course's formats from 0.
            let isn = if mode.is_extended() {
                Seq(77)
            } else {
                Seq::ZERO
            };
            let ok = mode.to_bytes(&Frame::ConnectOk { id, isn }).unwrap();
            let banner = Frame::Data {
                id,
                seq: isn,
                payload: BANNER,
            };
            let banner = mode.to_bytes(&banner).unwrap();
            // Back to back, as proxy2 sends them when the server's banner is already there.
            fake_proxy2.socket.send_to(&ok, proxy1_udp).await.unwrap();
            fake_proxy2
                .socket
                .send_to(&banner, proxy1_udp)
                .await
                .unwrap();

            let mut got = vec![0u8; BANNER.len()];
            within(
                &format!("{mode:?}, connection {attempt}: the banner at the client"),
                client.read_exact(&mut got),
            )
            .await
            .unwrap();
            assert_eq!(got, BANNER, "{mode:?}, connection {attempt}");
            stop.cancel();
        }
    }
}
