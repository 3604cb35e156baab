//! A scenario's SOCKS5 client: connects to proxy1's SOCKS5 port, logs in if it has
//! credentials, asks for its destination, and says what the reply was; on success it may send
//! one message and read its echo. Written out by hand (the client side of RFC 1928/1929 is a
//! few writes and reads), so a scenario sees exactly the bytes a real client would.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::destination::{Destination, Refusal};

/// What a SOCKS5 client step asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Socks5Request {
    /// Where to go: the lab's echo server, or a destination as written.
    pub target: Socks5Target,
    /// `NAME:PASS` to log in with (RFC 1929); none offers "no authentication".
    pub login: Option<(String, String)>,
    /// Sent once connected; its echo is read back and compared.
    pub message: Option<String>,
}

/// A SOCKS5 client step's destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Socks5Target {
    /// The lab's echo server, by address (its port is only known once the lab is up).
    Server,
    /// A destination as the scenario names it (`localhost:7777`, `10.0.0.1:80`).
    Named(Destination),
}

/// How a SOCKS5 request ended, as a scenario expects it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Socks5Reply {
    /// `0x00`: connected.
    Succeeded,
    /// A refusal code (`0x01`–`0x06`).
    Refused(Refusal),
    /// Another reply code (`0x07` command, `0x08` address type…).
    Other(u8),
    /// The login was refused (RFC 1929 status not zero).
    LoginRefused,
    /// No acceptable method (`0xFF`): users are configured and the client offered none.
    NoAcceptableMethod,
    /// The connection closed (or failed) before a reply.
    NoReply,
}

impl Socks5Reply {
    /// The name a scenario uses: `succeeded`, `not-allowed`, `login-refused`…
    pub fn name(self) -> String {
        match self {
            Socks5Reply::Succeeded => "succeeded".into(),
            Socks5Reply::Refused(refusal) => refusal.tag().into(),
            Socks5Reply::Other(code) => format!("code {code:#04x}"),
            Socks5Reply::LoginRefused => "login-refused".into(),
            Socks5Reply::NoAcceptableMethod => "no-acceptable-method".into(),
            Socks5Reply::NoReply => "no-reply".into(),
        }
    }

    /// Reads a scenario's name for a reply (or the reply code as a number).
    pub fn parse(text: &str) -> Option<Socks5Reply> {
        let reply = match text {
            "succeeded" => Socks5Reply::Succeeded,
            "login-refused" => Socks5Reply::LoginRefused,
            "no-acceptable-method" => Socks5Reply::NoAcceptableMethod,
            "no-reply" => Socks5Reply::NoReply,
            _ => {
                return Refusal::ALL
                    .into_iter()
                    .find(|r| r.tag() == text)
                    .map(Socks5Reply::Refused);
            }
        };
        Some(reply)
    }

    /// The reply for a reply code.
    pub fn of_code(code: u8) -> Socks5Reply {
        match code {
            0 => Socks5Reply::Succeeded,
            1..=6 => Socks5Reply::Refused(Refusal::from_code(code)),
            other => Socks5Reply::Other(other),
        }
    }
}

/// In a report, a reply reads as its name (`"not-allowed"`).
impl serde::Serialize for Socks5Reply {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.name())
    }
}

/// What became of one SOCKS5 client.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Socks5Outcome {
    pub reply: Socks5Reply,
    /// The message's echo came back unchanged (`None`: no message was sent).
    pub echo_intact: Option<bool>,
    /// What went wrong on the socket, if anything.
    pub error: Option<String>,
}

/// How long one SOCKS5 client may take, from connect to echo.
pub const SOCKS5_CLIENT_TIME: Duration = Duration::from_secs(20);

/// Runs one SOCKS5 client against `proxy1`; `server` stands for [`Socks5Target::Server`].
pub async fn run(request: &Socks5Request, proxy1: SocketAddr, server: SocketAddr) -> Socks5Outcome {
    let destination = match &request.target {
        Socks5Target::Server => Destination::from(server),
        Socks5Target::Named(destination) => destination.clone(),
    };
    match tokio::time::timeout(SOCKS5_CLIENT_TIME, exchange(request, proxy1, &destination)).await {
        Ok(outcome) => outcome,
        Err(_) => Socks5Outcome {
            reply: Socks5Reply::NoReply,
            echo_intact: None,
            error: Some(format!("no answer within {SOCKS5_CLIENT_TIME:?}")),
        },
    }
}

async fn exchange(
    request: &Socks5Request,
    proxy1: SocketAddr,
    destination: &Destination,
) -> Socks5Outcome {
    let failed = |reply, error: std::io::Error| Socks5Outcome {
        reply,
        echo_intact: None,
        error: Some(error.to_string()),
    };
    let mut stream = match TcpStream::connect(proxy1).await {
        Ok(stream) => stream,
        Err(e) => return failed(Socks5Reply::NoReply, e),
    };
    // Greeting: one method, the one this client can do.
    let method = if request.login.is_some() { 2 } else { 0 };
    let mut chosen = [0u8; 2];
    let greeted = async {
        stream.write_all(&[5, 1, method]).await?;
        stream.read_exact(&mut chosen).await
    };
    if let Err(e) = greeted.await {
        return failed(Socks5Reply::NoReply, e);
    }
    if chosen[1] == 0xFF {
        return Socks5Outcome {
            reply: Socks5Reply::NoAcceptableMethod,
            echo_intact: None,
            error: None,
        };
    }
    if let Some((name, pass)) = &request.login {
        let mut login = vec![1, name.len() as u8];
        login.extend_from_slice(name.as_bytes());
        login.push(pass.len() as u8);
        login.extend_from_slice(pass.as_bytes());
        let mut status = [0u8; 2];
        let logged_in = async {
            stream.write_all(&login).await?;
            stream.read_exact(&mut status).await
        };
        match logged_in.await {
            Ok(_) if status[1] != 0 => {
                return Socks5Outcome {
                    reply: Socks5Reply::LoginRefused,
                    echo_intact: None,
                    error: None,
                };
            }
            Ok(_) => {}
            Err(e) => return failed(Socks5Reply::LoginRefused, e),
        }
    }
    let mut connect = vec![5, 1, 0];
    destination.encode(&mut connect);
    let mut head = [0u8; 4];
    let replied = async {
        stream.write_all(&connect).await?;
        stream.read_exact(&mut head).await
    };
    if let Err(e) = replied.await {
        return failed(Socks5Reply::NoReply, e);
    }
    // The rest of the reply: the bound address (its length by its type) and port.
    let rest = match head[3] {
        1 => 4 + 2,
        4 => 16 + 2,
        _ => 0,
    };
    let mut bound = vec![0u8; rest];
    if let Err(e) = stream.read_exact(&mut bound).await {
        return failed(Socks5Reply::of_code(head[1]), e);
    }
    let reply = Socks5Reply::of_code(head[1]);
    let echo_intact = match (&request.message, reply) {
        (Some(message), Socks5Reply::Succeeded) => {
            let mut echoed = vec![0u8; message.len()];
            let echo = async {
                stream.write_all(message.as_bytes()).await?;
                stream.read_exact(&mut echoed).await
            };
            match echo.await {
                Ok(_) => Some(echoed == message.as_bytes()),
                Err(e) => return failed(reply, e),
            }
        }
        _ => None,
    };
    let _ = stream.shutdown().await;
    Socks5Outcome {
        reply,
        echo_intact,
        error: None,
    }
}
