//! The SOCKS5 front: a TCP client speaks SOCKS5 (RFC 1928, with RFC 1929's username and
//! password) to say where it wants to go. [`accept`] runs the handshake up to the request,
//! the caller opens the destination (directly, or through the tunnel), and [`answer`] tells
//! the client how that went. The protocol itself is the I/O-free [`handshake`] machine.

pub mod handshake;
pub mod users;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::destination::{Destination, Refusal};

pub use handshake::{HandshakeError, ReplyCode};
pub use users::{Socks5User, Socks5Users};

/// How long a client may take from connecting to a complete request, by default.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The front's settings.
#[derive(Clone, Debug)]
pub struct FrontConfig {
    /// Who may log in; none means "no authentication".
    pub users: Arc<Socks5Users>,
    /// Greeting, login and request must be complete within this time of the accept, or the
    /// connection is closed: a silent or slow client cannot hold a task forever.
    pub handshake_timeout: Duration,
}

impl Default for FrontConfig {
    fn default() -> Self {
        FrontConfig {
            users: Arc::new(Socks5Users::default()),
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }
}

/// A client's CONNECT request, after a successful handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accepted {
    /// Where it wants to go.
    pub destination: Destination,
    /// Who logged in (None without authentication).
    pub user: Option<String>,
    /// Bytes the client sent after its request, before our reply: its first data for the
    /// destination (clients rarely do this, but the bytes are not lost if one does).
    pub early_data: Vec<u8>,
}

/// Why the handshake ended without a request; the client has been answered where the RFC
/// has an answer, and the caller closes the connection.
#[derive(Debug, thiserror::Error)]
pub enum Rejected {
    #[error("{error}")]
    Protocol {
        error: HandshakeError,
        /// The user name the client gave, if it got that far (for the access log).
        user: Option<String>,
    },
    #[error("no complete request within {0:?}")]
    Timeout(Duration),
    #[error("the client left during the handshake")]
    ClientLeft,
    #[error("socket error during the handshake: {0}")]
    Io(io::Error),
}

impl Rejected {
    /// The user name the client gave, if any.
    pub fn user(&self) -> Option<&str> {
        match self {
            Rejected::Protocol { user, .. } => user.as_deref(),
            _ => None,
        }
    }

    /// A short tag for the access log (`auth-failed`, `bad-request`…).
    pub fn tag(&self) -> &'static str {
        match self {
            Rejected::Protocol { error, .. } => match error {
                HandshakeError::LoginFailed(_) => "auth-failed",
                HandshakeError::NoAcceptableMethod { .. } => "no-acceptable-method",
                HandshakeError::CommandNotSupported(..) => "command-not-supported",
                HandshakeError::AddressTypeNotSupported(_) => "address-type-not-supported",
                _ => "bad-request",
            },
            Rejected::Timeout(_) => "handshake-timeout",
            Rejected::ClientLeft | Rejected::Io(_) => "client-left",
        }
    }
}

/// Runs the SOCKS5 handshake on `stream` until the client's CONNECT request, within the
/// handshake deadline. On `Err` the client has got the RFC's answer (if there is one) and
/// only needs closing. On `Ok` the caller opens the destination and calls [`answer`].
pub async fn accept<S>(stream: &mut S, config: &FrontConfig) -> Result<Accepted, Rejected>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match tokio::time::timeout(config.handshake_timeout, handshake_steps(stream, config)).await {
        Ok(result) => result,
        Err(_) => Err(Rejected::Timeout(config.handshake_timeout)),
    }
}

async fn handshake_steps<S>(stream: &mut S, config: &FrontConfig) -> Result<Accepted, Rejected>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut machine = handshake::Handshake::new(&config.users);
    let mut input = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        match machine.advance(&mut input) {
            handshake::Step::NeedMore => match stream.read(&mut chunk).await {
                Ok(0) => return Err(Rejected::ClientLeft),
                Ok(n) => input.extend_from_slice(&chunk[..n]),
                Err(e) => return Err(Rejected::Io(e)),
            },
            handshake::Step::Send(bytes) => {
                stream.write_all(&bytes).await.map_err(Rejected::Io)?;
            }
            handshake::Step::Connect { destination, user } => {
                return Ok(Accepted {
                    destination,
                    user,
                    early_data: input,
                });
            }
            handshake::Step::Close { reply, error, user } => {
                if let Some(reply) = reply {
                    // Best effort: the client may already be gone.
                    let _ = stream.write_all(&reply).await;
                    let _ = stream.flush().await;
                }
                return Err(Rejected::Protocol { error, user });
            }
        }
    }
}

/// Tells the client how its request went: `Ok(bound)` is success (`bound`: the address the
/// connection to the destination leaves from, if known here), `Err(reason)` the matching
/// reply code. After a refusal the caller closes the connection.
pub async fn answer<S>(
    stream: &mut S,
    outcome: Result<Option<SocketAddr>, Refusal>,
) -> io::Result<()>
where
    S: AsyncWrite + Unpin,
{
    let bytes = match outcome {
        Ok(bound) => handshake::reply(ReplyCode::Succeeded, bound),
        Err(refusal) => handshake::reply(refusal.into(), None),
    };
    stream.write_all(&bytes).await?;
    stream.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::duplex;

    #[tokio::test(start_paused = true)]
    async fn a_silent_client_meets_the_deadline() {
        let (mut server, _client) = duplex(64);
        let config = FrontConfig {
            handshake_timeout: Duration::from_secs(3),
            ..FrontConfig::default()
        };
        let result = accept(&mut server, &config).await;
        assert!(matches!(result, Err(Rejected::Timeout(_))), "{result:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_stops_midway_meets_the_deadline_too() {
        let (mut server, mut client) = duplex(64);
        client.write_all(&[5, 1, 0, 5, 1]).await.unwrap();
        let result = accept(&mut server, &FrontConfig::default()).await;
        assert!(matches!(result, Err(Rejected::Timeout(_))), "{result:?}");
        let mut got = [0u8; 2];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(got, [5, 0], "the greeting was answered before the stall");
    }

    #[tokio::test]
    async fn a_client_that_leaves_is_told_apart() {
        let (mut server, client) = duplex(64);
        drop(client);
        let result = accept(&mut server, &FrontConfig::default()).await;
        assert!(matches!(result, Err(Rejected::ClientLeft)), "{result:?}");
    }
}
