//! The echo server: writes back every byte it reads, one task per connection, like the
//! course's `server_echo2.py`.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::peer_close_kind;
use crate::event::{CloseKind, EventKind, EventSink, Flow, Level, TcpAction};
use crate::tasks::{SHUTDOWN_GRACE, Tasks};
use crate::topology::Role;

/// Serves until `shutdown` is cancelled; then closes the listener and every connection.
pub async fn run(listener: TcpListener, events: EventSink, shutdown: CancellationToken) {
    run_in(Tasks::new(), listener, events, shutdown).await;
}

/// [`run`] with one task per connection spawned in `tasks`, a group of its own (a child of
/// the lab's, so the lab waits for them too), waited for (the connections closed) when it
/// stops.
pub async fn run_in(
    tasks: Tasks,
    listener: TcpListener,
    events: EventSink,
    shutdown: CancellationToken,
) {
    if let Ok(addr) = listener.local_addr() {
        events.emit(EventKind::RoleUp {
            role: Role::EchoServer,
            addr,
        });
    }
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                events.emit(EventKind::Tcp {
                    role: Role::EchoServer,
                    id: None,
                    peer,
                    action: TcpAction::Accepted,
                });
                tasks.spawn(
                    "echo server connection",
                    echo(stream, peer, events.clone(), shutdown.child_token()),
                );
            }
            // Running out of file descriptors and the like: say so and keep serving.
            Err(e) => {
                events.log(
                    Level::Warn,
                    Role::EchoServer,
                    format!("accept failed: {}", crate::fd_limit::describe_io_error(&e)),
                );
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
    drop(listener);
    let left = tasks.wait(SHUTDOWN_GRACE).await;
    if !left.is_empty() {
        events.log(
            Level::Warn,
            Role::EchoServer,
            format!("stopped without waiting for: {left}"),
        );
    }
    events.emit(EventKind::RoleDown {
        role: Role::EchoServer,
    });
}

async fn echo(mut stream: TcpStream, peer: SocketAddr, events: EventSink, stop: CancellationToken) {
    let _ = stream.set_nodelay(true);
    let mut buf = vec![0u8; 16 * 1024];
    let tcp = |action| EventKind::Tcp {
        role: Role::EchoServer,
        id: None,
        peer,
        action,
    };
    // One cancellation future for the whole loop: making a new one per read registers and
    // unregisters a waiter (two lock round trips) for every datagram or TCP read.
    let cancelled = stop.cancelled();
    tokio::pin!(cancelled);
    loop {
        let read = tokio::select! {
            () = &mut cancelled => return,
            read = stream.read(&mut buf) => read,
        };
        if let Some(how) = peer_close_kind(&read) {
            events.emit(tcp(TcpAction::PeerClosed(how)));
            break;
        }
        let n = read.unwrap_or(0);
        if let Some(observer) = events.observer() {
            observer.tcp_bytes(Role::EchoServer, peer, Flow::In, n);
        }
        let per_read = events.wants_echo_server_io();
        if per_read {
            events.emit(tcp(TcpAction::Read(n)));
        }
        if stream.write_all(&buf[..n]).await.is_err() {
            events.emit(tcp(TcpAction::PeerClosed(CloseKind::Rst)));
            return;
        }
        if let Some(observer) = events.observer() {
            observer.tcp_bytes(Role::EchoServer, peer, Flow::Out, n);
        }
        if per_read {
            events.emit(tcp(TcpAction::Wrote(n)));
        }
    }
    let _ = stream.shutdown().await;
    events.emit(tcp(TcpAction::Closed(CloseKind::Fin)));
}
