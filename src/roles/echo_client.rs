//! The echo client: sends messages, checks that every byte comes back unchanged, and closes
//! with a FIN (shutdown) or a RST (`SO_LINGER` 0), the two endings the capture lab contrasts.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::event::{ClientAction, ClientEnd, ClientId, CloseKind, EventKind, EventSink};
use crate::tasks::Tasks;

/// The course's "simple message" (the capture lab's option 2).
pub const SIMPLE_MESSAGE: &[u8] = b"hola mundo";

/// What a lab client can be told to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientCommand {
    Send(Vec<u8>),
    Close(CloseKind),
}

/// A lab client's running totals, readable at any time.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ClientStatus {
    /// The client's own TCP address (how proxy1's events name it).
    pub local: Option<SocketAddr>,
    pub sent_bytes: u64,
    /// Bytes that came back.
    pub echoed_bytes: u64,
    /// Bytes that came back equal to what was sent, in order.
    pub matched_bytes: u64,
    /// False once any echoed byte differed from what was sent or more came back than went.
    pub intact: bool,
    /// Set when the connection is over.
    pub ended: Option<ClientEnd>,
}

/// Runs one client on a connected stream until it is told to close, the tunnel closes it,
/// or `stop` is cancelled. Its reader runs as a task of `tasks`.
pub async fn run(
    client: ClientId,
    stream: TcpStream,
    mut commands: mpsc::UnboundedReceiver<ClientCommand>,
    status: Arc<Mutex<ClientStatus>>,
    events: EventSink,
    stop: CancellationToken,
    tasks: Tasks,
) {
    let _ = stream.set_nodelay(true);
    let report = |action| events.emit(EventKind::Client { client, action });
    if let Ok(local) = stream.local_addr() {
        status.lock().unwrap().local = Some(local);
        report(ClientAction::Connected { local });
    }
    status.lock().unwrap().intact = true;
    let (mut reader, mut writer) = stream.into_split();
    // Bytes sent and not yet echoed, in order.
    let expected = Arc::new(Mutex::new(VecDeque::<u8>::new()));

    let reader_status = status.clone();
    let reader_expected = expected.clone();
    let reader_events = events.clone();
    let reader_task = tasks.spawn("echo client reader", async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match reader.read(&mut buf).await {
                Ok(0) => return ClientEnd::ByTunnel,
                Ok(n) => n,
                Err(_) => return ClientEnd::Error,
            };
            let intact = {
                let mut expected = reader_expected.lock().unwrap();
                let mut status = reader_status.lock().unwrap();
                let matched = buf[..n]
                    .iter()
                    .zip(expected.iter())
                    .take_while(|(got, want)| got == want)
                    .count();
                status.echoed_bytes += n as u64;
                status.matched_bytes += matched as u64;
                if matched < n {
                    status.intact = false;
                }
                // Whatever came back stands for that many sent bytes, lost or not.
                let consumed = n.min(expected.len());
                expected.drain(..consumed);
                status.intact
            };
            if reader_events.wants_frame_events() {
                reader_events.emit(EventKind::Client {
                    client,
                    action: ClientAction::Echoed { len: n, intact },
                });
            }
        }
    });
    tokio::pin!(reader_task);

    let end = loop {
        tokio::select! {
            () = stop.cancelled() => break ClientEnd::ByClient(CloseKind::Fin),
            ended = &mut reader_task => {
                break ended.unwrap_or(ClientEnd::Error);
            }
            command = commands.recv() => match command {
                Some(ClientCommand::Send(bytes)) => {
                    expected.lock().unwrap().extend(&bytes);
                    if writer.write_all(&bytes).await.is_err() {
                        break ClientEnd::Error;
                    }
                    status.lock().unwrap().sent_bytes += bytes.len() as u64;
                    if events.wants_frame_events() {
                        report(ClientAction::Sent(bytes.len()));
                    }
                }
                Some(ClientCommand::Close(how)) => {
                    close(writer, how).await;
                    let end = ClientEnd::ByClient(how);
                    status.lock().unwrap().ended = Some(end);
                    report(ClientAction::Closed { how: end });
                    reader_task.abort();
                    return;
                }
                None => break ClientEnd::ByClient(CloseKind::Fin),
            },
        }
    };
    reader_task.abort();
    status.lock().unwrap().ended = Some(end);
    report(ClientAction::Closed { how: end });
}

/// Closes the way the capture lab's options 4 and 5 do: a FIN, or a RST.
pub async fn close(mut writer: OwnedWriteHalf, how: CloseKind) {
    match how {
        CloseKind::Fin => {
            let _ = writer.shutdown().await;
        }
        CloseKind::Rst => {
            // SO_LINGER 0 makes close() discard unsent data and send a RST.
            let _ = socket2::SockRef::from(writer.as_ref()).set_linger(Some(Duration::ZERO));
            // Dropping a write half shuts it down (a FIN) before the RST; `forget` skips that,
            // and the socket closes, with only a RST, when the read half is dropped.
            writer.forget();
            return;
        }
    }
    drop(writer);
}

/// The standalone client, like the course's `client_echo2.py`: each line read on stdin is
/// sent, and its echo printed. It ends at end of input (closing with a FIN).
pub async fn run_interactive(server: SocketAddr, echo_timeout: Duration) -> anyhow::Result<()> {
    let stream = TcpStream::connect(server)
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect to {server}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (mut reader, mut writer) = stream.into_split();
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut stdout = tokio::io::stdout();
    let mut buf = vec![0u8; 64 * 1024];
    while let Some(line) = lines.next_line().await? {
        let message = format!("{line}\n").into_bytes();
        writer.write_all(&message).await?;
        let mut echoed = Vec::with_capacity(message.len());
        while echoed.len() < message.len() {
            match tokio::time::timeout(echo_timeout, reader.read(&mut buf)).await {
                Ok(Ok(0)) => {
                    stdout.write_all(&echoed).await?;
                    anyhow::bail!("the connection was closed by the other side");
                }
                Ok(Ok(n)) => echoed.extend_from_slice(&buf[..n]),
                Ok(Err(e)) => anyhow::bail!("connection error: {e}"),
                Err(_) => {
                    eprintln!(
                        "warning: only {} of {} bytes echoed within {echo_timeout:?} (UDP may lose data)",
                        echoed.len(),
                        message.len()
                    );
                    break;
                }
            }
        }
        stdout.write_all(&echoed).await?;
        stdout.flush().await?;
    }
    close(writer, CloseKind::Fin).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The capture lab contrasts FIN and RST: a RST close must not send a FIN first (which a
    /// dropped write half would do), so the peer's next read is a reset, not end of stream.
    #[tokio::test]
    async fn rst_close_sends_only_a_reset() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        let (reader, writer) = client.into_split();
        close(writer, CloseKind::Rst).await;
        drop(reader);
        let mut buf = [0u8; 16];
        let read = server.read(&mut buf).await;
        assert!(
            matches!(&read, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
            "peer saw {read:?} instead of a reset"
        );
    }

    #[tokio::test]
    async fn fin_close_ends_the_stream() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        let (_reader, writer) = client.into_split();
        close(writer, CloseKind::Fin).await;
        let mut buf = [0u8; 16];
        assert_eq!(server.read(&mut buf).await.unwrap(), 0);
    }
}
