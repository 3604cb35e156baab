//! The SOCKS5 server handshake as a state machine without I/O (RFC 1928, and RFC 1929's
//! username/password method): bytes in, and either "need more", bytes to send, the client's
//! request, or a close. The async driver in `mod.rs` only moves bytes.
//!
//! ```text
//!  greeting  VER=5 NMETHODS METHODS…           ──▶ 05 METHOD   (00 none, 02 password, FF no)
//!  login     VER=1 ULEN UNAME PLEN PASSWD      ──▶ 01 STATUS   (00 ok, anything else: closed)
//!  request   VER=5 CMD RSV ATYP DST.ADDR DST.PORT
//!            CONNECT ──▶ the caller opens the destination, then sends `reply(..)`
//!            BIND, UDP ASSOCIATE, other ──▶ 05 07 (command not supported), closed
//!            unknown ATYP ──▶ 05 08 (address type not supported), closed
//! ```
//!
//! Every message is bounded by its own length bytes (at most 513 bytes), so the machine
//! never buffers more than one message; bytes after the request are the client's first
//! data and are left in the input for the caller to forward.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::destination::{DecodeError, Decoded, Destination, Refusal, decode_address};

use super::users::Socks5Users;

/// SOCKS protocol version 5.
pub const VERSION: u8 = 0x05;
/// RFC 1929's sub-negotiation version.
pub const LOGIN_VERSION: u8 = 0x01;

/// Authentication method codes (RFC 1928 section 3).
pub mod method {
    pub const NO_AUTHENTICATION: u8 = 0x00;
    pub const PASSWORD: u8 = 0x02;
    pub const NO_ACCEPTABLE: u8 = 0xff;
}

/// Request command codes (RFC 1928 section 4).
pub mod command {
    pub const CONNECT: u8 = 0x01;
    pub const BIND: u8 = 0x02;
    pub const UDP_ASSOCIATE: u8 = 0x03;
}

/// The reply codes of RFC 1928 section 6.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ReplyCode {
    Succeeded = 0x00,
    GeneralFailure = 0x01,
    NotAllowed = 0x02,
    NetworkUnreachable = 0x03,
    HostUnreachable = 0x04,
    ConnectionRefused = 0x05,
    TtlExpired = 0x06,
    CommandNotSupported = 0x07,
    AddressTypeNotSupported = 0x08,
}

impl From<Refusal> for ReplyCode {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::GeneralFailure => ReplyCode::GeneralFailure,
            Refusal::NotAllowed => ReplyCode::NotAllowed,
            Refusal::NetworkUnreachable => ReplyCode::NetworkUnreachable,
            Refusal::HostUnreachable => ReplyCode::HostUnreachable,
            Refusal::ConnectionRefused => ReplyCode::ConnectionRefused,
            Refusal::TtlExpired => ReplyCode::TtlExpired,
        }
    }
}

/// The reply to a request: `VER REP RSV ATYP BND.ADDR BND.PORT`. `bound` is the address the
/// server connected from; a failure (or a tunnel, whose far end is not known here) sends
/// `0.0.0.0:0`, which clients ignore.
pub fn reply(code: ReplyCode, bound: Option<SocketAddr>) -> Vec<u8> {
    let bound = bound.unwrap_or(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0));
    let mut out = vec![VERSION, code as u8, 0x00];
    Destination::from(bound).encode(&mut out);
    out
}

/// Why a handshake ended without a request to serve. Each says what went wrong for the log.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    #[error("not SOCKS version 5 (first byte {0:#04x})")]
    WrongVersion(u8),
    #[error("offered no method we accept (offered {offered:02x?}, we need {wanted})")]
    NoAcceptableMethod {
        offered: Vec<u8>,
        wanted: &'static str,
    },
    #[error("login message of version {0:#04x}, not 0x01")]
    WrongLoginVersion(u8),
    #[error("wrong user name or password (user '{0}')")]
    LoginFailed(String),
    #[error("request of version {0:#04x}, not 0x05")]
    WrongRequestVersion(u8),
    #[error("command {0:#04x} ({1}) is not supported, only CONNECT")]
    CommandNotSupported(u8, &'static str),
    #[error("address type {0:#04x} is not supported")]
    AddressTypeNotSupported(u8),
    #[error("bad destination name: {0}")]
    BadName(crate::destination::NameError),
}

/// What the caller does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Read more bytes, append them to the input, and call [`Handshake::advance`] again.
    NeedMore,
    /// Write these bytes to the client, then call [`Handshake::advance`] again.
    Send(Vec<u8>),
    /// A CONNECT request: open `destination`, then send [`reply`] with the outcome. Bytes
    /// left in the input are the client's first data for the destination.
    Connect {
        destination: Destination,
        /// Who logged in (None without authentication).
        user: Option<String>,
    },
    /// Write `reply` (if any), then close the connection.
    Close {
        reply: Option<Vec<u8>>,
        error: HandshakeError,
        /// The user name the client gave, even if it did not log in (for the access log).
        user: Option<String>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    Greeting,
    Login,
    Request {
        user: Option<String>,
    },
    /// A request was answered, or the connection is to be closed: nothing more to parse.
    Done,
}

/// One client's handshake.
#[derive(Debug)]
pub struct Handshake<'a> {
    users: &'a Socks5Users,
    state: State,
}

impl<'a> Handshake<'a> {
    /// A handshake that accepts `users` (none: no authentication).
    pub fn new(users: &'a Socks5Users) -> Self {
        Handshake {
            users,
            state: State::Greeting,
        }
    }

    /// Parses what `input` holds, removes the bytes it used, and says what to do next.
    /// After `Connect` or `Close` the handshake is over: later calls consume nothing and
    /// answer `NeedMore`.
    pub fn advance(&mut self, input: &mut Vec<u8>) -> Step {
        match std::mem::replace(&mut self.state, State::Done) {
            State::Greeting => self.greeting(input),
            State::Login => self.login(input),
            State::Request { user } => self.request(input, user),
            State::Done => Step::NeedMore,
        }
    }

    fn greeting(&mut self, input: &mut Vec<u8>) -> Step {
        let Some(&version) = input.first() else {
            return self.wait(State::Greeting);
        };
        if version != VERSION {
            // Not a SOCKS5 client (SOCKS4, HTTP…): no reply it could read, just close.
            return close(None, HandshakeError::WrongVersion(version), None);
        }
        let Some(&count) = input.get(1) else {
            return self.wait(State::Greeting);
        };
        let end = 2 + usize::from(count);
        if input.len() < end {
            return self.wait(State::Greeting);
        }
        let offered: Vec<u8> = input.drain(..end).skip(2).collect();
        let (wanted, name) = if self.users.required() {
            (method::PASSWORD, "username/password (0x02)")
        } else {
            (method::NO_AUTHENTICATION, "no authentication (0x00)")
        };
        if !offered.contains(&wanted) {
            return close(
                Some(vec![VERSION, method::NO_ACCEPTABLE]),
                HandshakeError::NoAcceptableMethod {
                    offered,
                    wanted: name,
                },
                None,
            );
        }
        self.state = if wanted == method::PASSWORD {
            State::Login
        } else {
            State::Request { user: None }
        };
        Step::Send(vec![VERSION, wanted])
    }

    fn login(&mut self, input: &mut Vec<u8>) -> Step {
        let Some(&version) = input.first() else {
            return self.wait(State::Login);
        };
        if version != LOGIN_VERSION {
            return close(
                Some(vec![LOGIN_VERSION, 0x01]),
                HandshakeError::WrongLoginVersion(version),
                None,
            );
        }
        let Some(&name_len) = input.get(1) else {
            return self.wait(State::Login);
        };
        let name_end = 2 + usize::from(name_len);
        let Some(&password_len) = input.get(name_end) else {
            return self.wait(State::Login);
        };
        let end = name_end + 1 + usize::from(password_len);
        if input.len() < end {
            return self.wait(State::Login);
        }
        let message: Vec<u8> = input.drain(..end).collect();
        let name = &message[2..name_end];
        let password = &message[name_end + 1..];
        match self.users.check(name, password) {
            Some(user) => {
                self.state = State::Request {
                    user: Some(user.to_string()),
                };
                Step::Send(vec![LOGIN_VERSION, 0x00])
            }
            None => {
                let given = String::from_utf8_lossy(name).into_owned();
                close(
                    Some(vec![LOGIN_VERSION, 0x01]),
                    HandshakeError::LoginFailed(given.clone()),
                    Some(given),
                )
            }
        }
    }

    fn request(&mut self, input: &mut Vec<u8>, user: Option<String>) -> Step {
        if input.len() < 4 {
            if let Some(&version) = input.first()
                && version != VERSION
            {
                return close(None, HandshakeError::WrongRequestVersion(version), user);
            }
            return self.wait(State::Request { user });
        }
        let (version, cmd) = (input[0], input[1]);
        if version != VERSION {
            return close(None, HandshakeError::WrongRequestVersion(version), user);
        }
        // RSV (input[2]) must be 0; we are liberal and ignore it.
        let decoded = match decode_address(&input[3..]) {
            Ok(decoded) => decoded,
            Err(DecodeError::UnknownAddressType(kind)) => {
                return close(
                    Some(reply(ReplyCode::AddressTypeNotSupported, None)),
                    HandshakeError::AddressTypeNotSupported(kind),
                    user,
                );
            }
            Err(DecodeError::BadName(e)) => {
                return close(
                    Some(reply(ReplyCode::GeneralFailure, None)),
                    HandshakeError::BadName(e),
                    user,
                );
            }
            Err(DecodeError::Truncated | DecodeError::TrailingBytes) => {
                unreachable!("decode_address says neither Truncated nor TrailingBytes")
            }
        };
        let Decoded::Complete(destination, used) = decoded else {
            return self.wait(State::Request { user });
        };
        input.drain(..3 + used);
        if cmd != command::CONNECT {
            let name = match cmd {
                command::BIND => "BIND",
                command::UDP_ASSOCIATE => "UDP ASSOCIATE",
                _ => "unknown",
            };
            return close(
                Some(reply(ReplyCode::CommandNotSupported, None)),
                HandshakeError::CommandNotSupported(cmd, name),
                user,
            );
        }
        Step::Connect { destination, user }
    }

    fn wait(&mut self, state: State) -> Step {
        self.state = state;
        Step::NeedMore
    }
}

fn close(reply: Option<Vec<u8>>, error: HandshakeError, user: Option<String>) -> Step {
    Step::Close { reply, error, user }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn users() -> Socks5Users {
        Socks5Users::new(["ana:s3cret".parse().unwrap()])
    }

    /// Feeds `input` in one go and collects every step up to the first `NeedMore`,
    /// `Connect` or `Close`.
    fn run(users: &Socks5Users, input: &[u8]) -> (Vec<Step>, Vec<u8>) {
        let mut handshake = Handshake::new(users);
        let mut buffer = input.to_vec();
        let mut steps = Vec::new();
        loop {
            let step = handshake.advance(&mut buffer);
            let last = !matches!(step, Step::Send(_));
            steps.push(step);
            if last {
                return (steps, buffer);
            }
        }
    }

    #[test]
    fn connect_without_authentication() {
        let none = Socks5Users::default();
        let (steps, rest) = run(
            &none,
            &[5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1, 0x1f, 0x90, b'G'],
        );
        assert_eq!(
            steps,
            [
                Step::Send(vec![5, 0]),
                Step::Connect {
                    destination: Destination::ip("127.0.0.1".parse().unwrap(), 8080),
                    user: None
                }
            ]
        );
        assert_eq!(rest, b"G", "early data stays for the destination");
    }

    #[test]
    fn connect_with_a_password_to_a_name_and_to_ipv6() {
        let mut login = vec![5, 2, 0, 2, 1, 3];
        login.extend_from_slice(b"ana");
        login.push(6);
        login.extend_from_slice(b"s3cret");
        let mut by_name = login.clone();
        by_name.extend_from_slice(&[5, 1, 0, 3, 9]);
        by_name.extend_from_slice(b"localhost");
        by_name.extend_from_slice(&[0, 80]);
        let (steps, _) = run(&users(), &by_name);
        assert_eq!(
            steps,
            [
                Step::Send(vec![5, 2]),
                Step::Send(vec![1, 0]),
                Step::Connect {
                    destination: Destination::name(b"localhost", 80).unwrap(),
                    user: Some("ana".into())
                }
            ]
        );
        let mut by_v6 = login;
        by_v6.extend_from_slice(&[5, 1, 0, 4]);
        by_v6.extend_from_slice(&"::1".parse::<std::net::Ipv6Addr>().unwrap().octets());
        by_v6.extend_from_slice(&[0, 22]);
        let (steps, _) = run(&users(), &by_v6);
        assert_eq!(
            steps[2],
            Step::Connect {
                destination: Destination::ip("::1".parse().unwrap(), 22),
                user: Some("ana".into())
            }
        );
    }

    #[test]
    fn with_users_no_authentication_is_refused() {
        let (steps, _) = run(&users(), &[5, 1, 0]);
        assert!(matches!(
            &steps[..],
            [Step::Close { reply: Some(r), error: HandshakeError::NoAcceptableMethod { .. }, .. }] if r == &[5, 0xff]
        ));
    }

    #[test]
    fn without_users_a_password_only_client_is_refused() {
        let (steps, _) = run(&Socks5Users::default(), &[5, 1, 2]);
        assert!(matches!(&steps[..], [Step::Close { reply: Some(r), .. }] if r == &[5, 0xff]));
    }

    #[test]
    fn a_wrong_password_is_answered_and_closed() {
        let mut input = vec![5, 1, 2, 1, 3];
        input.extend_from_slice(b"ana");
        input.push(5);
        input.extend_from_slice(b"wrong");
        let (steps, _) = run(&users(), &input);
        assert_eq!(
            steps[1],
            Step::Close {
                reply: Some(vec![1, 1]),
                error: HandshakeError::LoginFailed("ana".into()),
                user: Some("ana".into())
            }
        );
    }

    #[test]
    fn bind_and_udp_associate_are_not_supported() {
        for (cmd, name) in [(2, "BIND"), (3, "UDP ASSOCIATE"), (9, "unknown")] {
            let (steps, _) = run(
                &Socks5Users::default(),
                &[5, 1, 0, 5, cmd, 0, 1, 1, 2, 3, 4, 0, 80],
            );
            assert_eq!(
                steps[1],
                Step::Close {
                    reply: Some(reply(ReplyCode::CommandNotSupported, None)),
                    error: HandshakeError::CommandNotSupported(cmd, name),
                    user: None
                }
            );
        }
    }

    #[test]
    fn an_unknown_address_type_gets_0x08() {
        let (steps, _) = run(&Socks5Users::default(), &[5, 1, 0, 5, 1, 0, 9, 1, 2]);
        assert_eq!(
            steps[1],
            Step::Close {
                reply: Some(vec![5, 8, 0, 1, 0, 0, 0, 0, 0, 0]),
                error: HandshakeError::AddressTypeNotSupported(9),
                user: None
            }
        );
    }

    #[test]
    fn wrong_versions_close_without_a_reply_they_could_misread() {
        let (steps, _) = run(&Socks5Users::default(), &[4, 1, 0, 80, 127, 0, 0, 1, 0]);
        assert!(matches!(
            &steps[..],
            [Step::Close {
                reply: None,
                error: HandshakeError::WrongVersion(4),
                ..
            }]
        ));
        let (steps, _) = run(&Socks5Users::default(), &[5, 1, 0, 4]);
        assert!(matches!(
            &steps[1],
            Step::Close {
                reply: None,
                error: HandshakeError::WrongRequestVersion(4),
                ..
            }
        ));
        let (steps, _) = run(&users(), &[5, 1, 2, 5]);
        assert!(
            matches!(&steps[1], Step::Close { reply: Some(r), error: HandshakeError::WrongLoginVersion(5), .. } if r == &[1, 1])
        );
    }

    #[test]
    fn a_truncated_message_needs_more() {
        for cut in 0..13 {
            let full = [5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1, 0, 80];
            let (steps, _) = run(&Socks5Users::default(), &full[..cut]);
            assert_eq!(steps.last(), Some(&Step::NeedMore), "cut at {cut}");
        }
    }

    #[test]
    fn the_reply_carries_the_bound_address() {
        assert_eq!(
            reply(ReplyCode::Succeeded, Some("10.0.0.1:4660".parse().unwrap())),
            [5, 0, 0, 1, 10, 0, 0, 1, 0x12, 0x34]
        );
        assert_eq!(
            reply(ReplyCode::Succeeded, Some("[::1]:1".parse().unwrap())).len(),
            22
        );
        for refusal in Refusal::ALL {
            assert_eq!(ReplyCode::from(refusal) as u8, refusal.code());
        }
    }

    /// Feeds `bytes` in the given chunk sizes, as a driver would, until the machine says
    /// `Connect` or `Close` or the bytes run out. Returns the outcome and what it sent.
    fn drive(users: &Socks5Users, bytes: &[u8], chunks: &[usize]) -> (Step, Vec<u8>, usize) {
        let mut handshake = Handshake::new(users);
        let mut buffer = Vec::new();
        let mut sent = Vec::new();
        let mut offset = 0;
        let mut chunk = chunks.iter().cycle();
        loop {
            match handshake.advance(&mut buffer) {
                Step::Send(bytes) => sent.extend(bytes),
                Step::NeedMore => {
                    assert!(buffer.len() <= 513, "never holds more than one message");
                    if offset == bytes.len() {
                        return (Step::NeedMore, sent, buffer.len());
                    }
                    let n = (*chunk.next().unwrap()).clamp(1, bytes.len() - offset);
                    buffer.extend_from_slice(&bytes[offset..offset + n]);
                    offset += n;
                }
                done => return (done, sent, buffer.len() + bytes.len() - offset),
            }
        }
    }

    fn socksish() -> impl Strategy<Value = Vec<u8>> {
        // Mostly plausible prefixes, so the fuzzing reaches the later states too.
        let byte = prop_oneof![3 => 0u8..10, 1 => any::<u8>()];
        proptest::collection::vec(byte, 0..600)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn any_bytes_end_in_a_request_a_close_or_need_more(
            bytes in prop_oneof![socksish(), proptest::collection::vec(any::<u8>(), 0..600)],
            chunks in proptest::collection::vec(1usize..40, 1..8),
            with_users in any::<bool>(),
        ) {
            let users = if with_users { users() } else { Socks5Users::default() };
            let (whole, whole_sent, whole_left) = drive(&users, &bytes, &[bytes.len().max(1)]);
            let (split, split_sent, split_left) = drive(&users, &bytes, &chunks);
            // However the bytes arrive, the outcome is the same.
            prop_assert_eq!(&whole, &split);
            prop_assert_eq!(&whole_sent, &split_sent);
            prop_assert_eq!(whole_left, split_left);
            if let Step::Close { reply: Some(reply), .. } = &whole {
                prop_assert!(reply.len() == 2 || reply[0] == VERSION);
            }
        }
    }
}
