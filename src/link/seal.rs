//! The sealed link: authenticated encryption (ChaCha20-Poly1305, `ring`) of every extended-mode
//! datagram with a shared key, without I/O.
//!
//! The link socket hands [`Seal::seal`] each datagram the codec produced and puts what comes
//! back on the wire; it hands [`Seal::open`] each datagram that arrives and decodes only what
//! opens. Nothing here reads a clock (the caller passes `now`) or touches a socket.
//!
//! # Wire format (first byte `0xE2`, the extended format's reserved sealed variant)
//!
//! | offset | size | field (big-endian, all in the clear, all authenticated) |
//! |---|---|---|
//! | 0 | 1 | magic `0xE2` |
//! | 1 | 1 | kind: `0x01` hello (p1→p2), `0x02` hello-ack (p2→p1), `0x03` frame p1→p2, `0x04` frame p2→p1, `0x05` reject (p2→p1, not authenticated) |
//! | 2 | 8 | proxy1's session id |
//! | 10 | 8 | proxy2's session id (0 in a hello: proxy1 does not know it yet) |
//! | 18 | 8 | counter: the nonce, never repeated under one key |
//! | 26 | n | ciphertext: the whole extended datagram (`0xE1 …` with its CRC); empty in hello and hello-ack |
//! | 26+n | 16 | Poly1305 tag over header and ciphertext (absent in a reject) |
//!
//! # Sessions and keys
//!
//! Each [`Seal`] picks a random 64-bit session id when it is made (once per process start
//! of a proxy). Keys are derived with HKDF-SHA256 from the shared key, per direction and per
//! pair of sessions: `info = "tunlab seal v1 " + direction + p1_session + p2_session`. A key
//! is therefore never used by two processes, and a counter that starts at 0 in each process
//! never repeats a nonce under the same key.
//!
//! proxy1 cannot seal a frame before it knows proxy2's session, so it starts with a hello
//! (sealed under the key for `(p1_session, 0)`) and holds its frames (at most
//! [`MAX_QUEUED`]) until proxy2's authenticated hello-ack names proxy2's session; then it
//! sends them. Its later frames carry both sessions, and proxy2 accepts a frame only if it
//! names proxy2's *current* session: a capture of an earlier session replayed to a restarted
//! proxy2 does not open. Within a session a sliding window of [`REPLAY_WINDOW`] counters
//! rejects duplicates and anything older.
//!
//! A restarted proxy2 answers a frame that authenticates but names an old proxy2 session
//! with a fresh hello-ack, so a live proxy1 moves to the new session at once. A restarted
//! proxy1 has a new session id and says hello again.
//!
//! # A wrong key
//!
//! A proxy2 with another key cannot authenticate proxy1's hello, and it cannot answer in a
//! way proxy1 authenticates. It counts the datagram and sends back a *reject* (a bare header,
//! rate-limited, smaller than what caused it): a hint, not a proof, since anyone could forge
//! one. proxy1 counts rejects ([`Seal::rejects_received`]); when its `C` goes unanswered after
//! every retry and no hello-ack ever arrived, it says "proxy2 rejects our frames: wrong key?".

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::ops::Range;
use std::path::Path;
use std::time::{Duration, Instant};

use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};

use crate::wire::extended::MAGIC_SEALED;

/// Bytes in a key: 256 bits.
pub const KEY_LEN: usize = 32;
/// The clear header in front of the ciphertext.
pub const HEADER_LEN: usize = 26;
/// The Poly1305 tag after it.
pub const TAG_LEN: usize = 16;
/// What sealing adds to a datagram.
pub const OVERHEAD: usize = HEADER_LEN + TAG_LEN;
/// Counters a receiver remembers behind the newest one; older ones are rejected.
pub const REPLAY_WINDOW: u64 = (WINDOW_WORDS as u64 - 1) * 64;
/// Frames proxy1 holds while it waits for proxy2's hello-ack; older ones are dropped (the
/// transports retransmit them).
pub const MAX_QUEUED: usize = 256;
/// proxy1 sends a hello at most this often while it waits.
pub const HELLO_INTERVAL: Duration = Duration::from_millis(100);
/// proxy2 sends at most one reject per this interval.
pub const REJECT_INTERVAL: Duration = Duration::from_millis(100);
/// Most proxy1 sessions proxy2 remembers (least recently heard from goes first).
pub const MAX_SESSIONS: usize = 1024;

const WINDOW_WORDS: usize = 16;

/// The kinds of sealed datagram (byte 1).
pub mod kind {
    /// proxy1 → proxy2: "my session is …" (no body).
    pub const HELLO: u8 = 0x01;
    /// proxy2 → proxy1: "your session …, mine is …" (no body).
    pub const HELLO_ACK: u8 = 0x02;
    /// A sealed extended datagram from proxy1 to proxy2.
    pub const TO_PROXY2: u8 = 0x03;
    /// A sealed extended datagram from proxy2 to proxy1.
    pub const TO_PROXY1: u8 = 0x04;
    /// proxy2 → proxy1: "your datagram did not authenticate" (a bare header, no tag).
    pub const REJECT: u8 = 0x05;
}

/// The shared key: 256 bits, read from a key file.
#[derive(Clone)]
pub struct SealKey([u8; KEY_LEN]);

impl fmt::Debug for SealKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SealKey(…)")
    }
}

/// Why a key file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot read key file {path}: {source}")]
    Read { path: String, source: io::Error },
    #[error(
        "key file {path} holds {found} hex digits; a key is one line of {} (make one with `tunlab keygen FILE`)",
        KEY_LEN * 2
    )]
    BadLength { path: String, found: usize },
    #[error(
        "key file {path} is not hex: a key is one line of {} hex digits (make one with `tunlab keygen FILE`)",
        KEY_LEN * 2
    )]
    NotHex { path: String },
    #[error("{path} already exists: keygen never overwrites a key (remove it first)")]
    Exists { path: String },
    #[error("cannot write key file {path}: {source}")]
    Write { path: String, source: io::Error },
}

impl SealKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> io::Result<SealKey> {
        let mut key = [0u8; KEY_LEN];
        getrandom::fill(&mut key).map_err(|e| io::Error::other(e.to_string()))?;
        Ok(SealKey(key))
    }

    /// A key from its bytes.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> SealKey {
        SealKey(bytes)
    }

    /// The key file's text: 64 lowercase hex digits and a newline.
    pub fn to_hex(&self) -> String {
        let mut text: String = self.0.iter().map(|b| format!("{b:02x}")).collect();
        text.push('\n');
        text
    }

    /// Parses a key file's text: 64 hex digits, surrounding whitespace ignored.
    pub fn from_hex(text: &str, path: &str) -> Result<SealKey, KeyFileError> {
        let digits = text.trim();
        if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(KeyFileError::NotHex { path: path.into() });
        }
        if digits.len() != KEY_LEN * 2 {
            return Err(KeyFileError::BadLength {
                path: path.into(),
                found: digits.len(),
            });
        }
        let mut key = [0u8; KEY_LEN];
        for (i, byte) in key.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&digits[2 * i..2 * i + 2], 16)
                .map_err(|_| KeyFileError::NotHex { path: path.into() })?;
        }
        Ok(SealKey(key))
    }

    /// Reads a key file. The second value is a warning when the file is readable by its
    /// group or by everyone (the key still works: the person may have a reason).
    pub fn load(path: &Path) -> Result<(SealKey, Option<String>), KeyFileError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| KeyFileError::Read {
            path: shown.clone(),
            source,
        })?;
        let key = SealKey::from_hex(&text, &shown)?;
        let mut warning = None;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            if let Ok(meta) = std::fs::metadata(path) {
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    warning = Some(format!(
                        "key file {shown} is readable by others (mode {mode:03o}); `chmod 600 {shown}` keeps it yours"
                    ));
                }
            }
        }
        Ok((key, warning))
    }

    /// Writes a fresh key to `path` (mode 0600), refusing to overwrite anything.
    pub fn generate_file(path: &Path) -> Result<(), KeyFileError> {
        let shown = path.display().to_string();
        let key = SealKey::generate().map_err(|source| KeyFileError::Write {
            path: shown.clone(),
            source,
        })?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(|source| {
            if source.kind() == io::ErrorKind::AlreadyExists {
                KeyFileError::Exists {
                    path: shown.clone(),
                }
            } else {
                KeyFileError::Write {
                    path: shown.clone(),
                    source,
                }
            }
        })?;
        file.write_all(key.to_hex().as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|source| KeyFileError::Write {
                path: shown,
                source,
            })
    }

    /// The cipher for one direction between two sessions (HKDF-SHA256).
    pub fn cipher(&self, direction: Direction, proxy1: u64, proxy2: u64) -> LessSafeKey {
        let hkdf = hkdf::Hkdf::<sha2::Sha256>::new(Some(b"tunlab seal v1"), &self.0);
        let mut info = Vec::with_capacity(40);
        info.extend_from_slice(b"tunlab seal v1 ");
        info.extend_from_slice(direction.label().as_bytes());
        info.extend_from_slice(&proxy1.to_be_bytes());
        info.extend_from_slice(&proxy2.to_be_bytes());
        let mut key = [0u8; KEY_LEN];
        hkdf.expand(&info, &mut key)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        LessSafeKey::new(
            UnboundKey::new(&CHACHA20_POLY1305, &key).expect("a 32-byte ChaCha20-Poly1305 key"),
        )
    }
}

/// Which way a sealed datagram goes: each direction has its own key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    ToProxy2,
    ToProxy1,
}

impl Direction {
    fn label(self) -> &'static str {
        match self {
            Direction::ToProxy2 => "p1->p2",
            Direction::ToProxy1 => "p2->p1",
        }
    }
}

/// The clear header of a sealed datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// One of [`kind`].
    pub kind: u8,
    pub proxy1_session: u64,
    pub proxy2_session: u64,
    pub counter: u64,
}

impl Header {
    /// Reads the header of a sealed datagram; `None` if it is not one (wrong magic, unknown
    /// kind, too short).
    pub fn parse(datagram: &[u8]) -> Option<Header> {
        if datagram.len() < HEADER_LEN || datagram[0] != MAGIC_SEALED {
            return None;
        }
        let kind = datagram[1];
        if !(kind::HELLO..=kind::REJECT).contains(&kind) {
            return None;
        }
        let u64_at = |at: usize| u64::from_be_bytes(datagram[at..at + 8].try_into().unwrap());
        let header = Header {
            kind,
            proxy1_session: u64_at(2),
            proxy2_session: u64_at(10),
            counter: u64_at(18),
        };
        let min = if kind == kind::REJECT {
            HEADER_LEN
        } else {
            HEADER_LEN + TAG_LEN
        };
        (datagram.len() >= min).then_some(header)
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.push(MAGIC_SEALED);
        out.push(self.kind);
        out.extend_from_slice(&self.proxy1_session.to_be_bytes());
        out.extend_from_slice(&self.proxy2_session.to_be_bytes());
        out.extend_from_slice(&self.counter.to_be_bytes());
    }

    /// The direction whose key seals this kind (`None` for a reject, which is not sealed).
    pub fn direction(&self) -> Option<Direction> {
        match self.kind {
            kind::HELLO | kind::TO_PROXY2 => Some(Direction::ToProxy2),
            kind::HELLO_ACK | kind::TO_PROXY1 => Some(Direction::ToProxy1),
            _ => None,
        }
    }

    /// The session pair whose key seals this datagram (a hello's has proxy2's as 0).
    fn sessions(&self) -> (u64, u64) {
        (self.proxy1_session, self.proxy2_session)
    }
}

fn nonce(counter: u64) -> Nonce {
    let mut nonce = [0u8; 12];
    nonce[4..].copy_from_slice(&counter.to_be_bytes());
    // Unique per key: the counter never repeats under one session pair's key.
    Nonce::assume_unique_for_key(nonce)
}

/// Seals `plain` under `cipher` behind `header`: header, ciphertext, tag.
fn seal_with(cipher: &LessSafeKey, header: Header, plain: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(OVERHEAD + plain.len());
    header.write(&mut out);
    out.extend_from_slice(plain);
    let (aad, body) = out.split_at_mut(HEADER_LEN);
    let tag = cipher
        .seal_in_place_separate_tag(nonce(header.counter), Aad::from(&*aad), body)
        .expect("a datagram is far below ChaCha20-Poly1305's length limit");
    out.extend_from_slice(tag.as_ref());
    out
}

/// Opens a sealed datagram in place: on success the plaintext is `datagram[range]`.
/// On failure the buffer's ciphertext part may have been overwritten.
fn open_with(cipher: &LessSafeKey, header: &Header, datagram: &mut [u8]) -> Option<Range<usize>> {
    let end = datagram.len().checked_sub(TAG_LEN)?;
    if end < HEADER_LEN {
        return None;
    }
    let (aad, sealed) = datagram.split_at_mut(HEADER_LEN);
    cipher
        .open_in_place(nonce(header.counter), Aad::from(&*aad), sealed)
        .ok()?;
    Some(HEADER_LEN..end)
}

/// Opens one sealed frame (kind `TO_PROXY2` or `TO_PROXY1`) with the key alone, no session
/// state and no replay check: what `tunlab decrypt` does to a capture. `None` if it is not a
/// sealed frame or does not authenticate.
pub fn open_offline(key: &SealKey, datagram: &[u8]) -> Option<Vec<u8>> {
    let header = Header::parse(datagram)?;
    if !matches!(header.kind, kind::TO_PROXY2 | kind::TO_PROXY1) {
        return None;
    }
    let (p1, p2) = header.sessions();
    let cipher = key.cipher(header.direction()?, p1, p2);
    let mut copy = datagram.to_vec();
    let range = open_with(&cipher, &header, &mut copy)?;
    Some(copy[range].to_vec())
}

/// Remembers which counters arrived: the newest and the [`REPLAY_WINDOW`] before it, in a
/// ring of 64-bit words (RFC 6479's layout, so moving forward only clears words).
#[derive(Clone, Debug, Default)]
pub struct ReplayWindow {
    newest: Option<u64>,
    bits: [u64; WINDOW_WORDS],
}

impl ReplayWindow {
    /// Whether `counter` may be accepted: new, and not older than the window.
    pub fn check(&self, counter: u64) -> bool {
        let Some(newest) = self.newest else {
            return true;
        };
        if counter > newest {
            return true;
        }
        if newest - counter >= REPLAY_WINDOW {
            return false;
        }
        let (word, bit) = Self::slot(counter);
        self.bits[word] & bit == 0
    }

    /// Marks `counter` seen; call only after [`ReplayWindow::check`] said yes and the
    /// datagram authenticated (a forged counter must not move the window).
    pub fn mark(&mut self, counter: u64) {
        match self.newest {
            None => {
                self.bits = [0; WINDOW_WORDS];
                self.newest = Some(counter);
            }
            Some(newest) if counter > newest => {
                let from = newest / 64 + 1;
                let to = counter / 64;
                let words = (to + 1).saturating_sub(from).min(WINDOW_WORDS as u64);
                for i in 0..words {
                    self.bits[((to - i) % WINDOW_WORDS as u64) as usize] = 0;
                }
                self.newest = Some(counter);
            }
            Some(_) => {}
        }
        let (word, bit) = Self::slot(counter);
        self.bits[word] |= bit;
    }

    fn slot(counter: u64) -> (usize, u64) {
        (
            ((counter / 64) % WINDOW_WORDS as u64) as usize,
            1 << (counter % 64),
        )
    }
}

/// Which end of the link a [`Seal`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Proxy1,
    Proxy2,
}

/// What [`Seal::seal`] made of a datagram.
#[derive(Debug, PartialEq, Eq)]
pub enum Sealed {
    /// Put this on the wire.
    Now(Vec<u8>),
    /// Held until the session is set up (proxy1); send the hello, if any, meanwhile.
    Held { hello: Option<Vec<u8>> },
    /// proxy2 has no session with this address (no proxy1 said hello from it): dropped.
    NoSession,
}

/// Why an arriving datagram did not open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejected {
    /// Not a sealed datagram (a plaintext frame on a sealed link, or garbage).
    NotSealed,
    /// It failed authentication: another key, or changed on the way.
    Unauthentic,
    /// It authenticated but was seen before, is older than the replay window, or belongs to
    /// an earlier session.
    Replayed,
    /// proxy2 says it could not authenticate us (a reject notice).
    PeerRejects,
}

/// What [`Seal::open`] made of an arriving datagram.
#[derive(Debug, Default)]
pub struct Opened {
    /// The plaintext (an extended datagram) is `buf[range]`.
    pub frame: Option<Range<usize>>,
    /// Why it was dropped, if it was not a frame or a handshake message.
    pub rejected: Option<Rejected>,
    /// Send this back to the datagram's sender (a hello-ack or a reject).
    pub reply: Option<Vec<u8>>,
    /// Frames held until now: send them, in order, to their addresses.
    pub release: Vec<(Vec<u8>, SocketAddr)>,
}

impl Opened {
    fn rejected(why: Rejected) -> Self {
        Opened {
            rejected: Some(why),
            ..Opened::default()
        }
    }
}

/// proxy1's view of its one proxy2.
struct Initiator {
    hello: LessSafeKey,
    /// proxy2's session and the two keys, once a hello-ack arrived.
    peer: Option<PeerSession>,
    held: VecDeque<(Vec<u8>, SocketAddr)>,
    last_hello: Option<Instant>,
    counter: u64,
}

struct PeerSession {
    /// The other end's session id.
    session: u64,
    seal: LessSafeKey,
    open: LessSafeKey,
    window: ReplayWindow,
    /// proxy2 only: the next counter for what it sends in this session.
    counter: u64,
    /// proxy2 only: for forgetting the least recently heard.
    last_heard: u64,
}

/// proxy2's view of its proxy1 sessions.
#[derive(Default)]
struct Responder {
    /// By proxy1 session id, whatever address it comes from: a datagram replayed from
    /// another address meets the same replay window (and a proxy1 whose address changes
    /// keeps its session).
    sessions: HashMap<u64, PeerSession>,
    /// The session a proxy1 address last sent a frame in: what proxy2 seals to.
    current: HashMap<SocketAddr, u64>,
    last_reject: Option<Instant>,
    tick: u64,
}

/// One end's sealing state. See the module documentation.
pub struct Seal {
    key: SealKey,
    side: Side,
    session: u64,
    initiator: Option<Initiator>,
    responder: Responder,
    rejects_received: u64,
    handshakes: u64,
}

impl fmt::Debug for Seal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Seal")
            .field("side", &self.side)
            .field("session", &format_args!("{:016x}", self.session))
            .finish_non_exhaustive()
    }
}

fn random_session() -> u64 {
    loop {
        let mut bytes = [0u8; 8];
        getrandom::fill(&mut bytes).expect("the operating system's random source works");
        let session = u64::from_be_bytes(bytes);
        // 0 means "not known yet" in a hello.
        if session != 0 {
            return session;
        }
    }
}

impl Seal {
    /// A fresh session for this end (a random session id: call once per process start).
    pub fn new(key: SealKey, side: Side) -> Seal {
        Seal::with_session(key, side, random_session())
    }

    /// A session with a chosen id (tests).
    pub fn with_session(key: SealKey, side: Side, session: u64) -> Seal {
        let initiator = (side == Side::Proxy1).then(|| Initiator {
            hello: key.cipher(Direction::ToProxy2, session, 0),
            peer: None,
            held: VecDeque::new(),
            last_hello: None,
            counter: 0,
        });
        Seal {
            key,
            side,
            session,
            initiator,
            responder: Responder::default(),
            rejects_received: 0,
            handshakes: 0,
        }
    }

    /// This end's session id.
    pub fn session(&self) -> u64 {
        self.session
    }

    /// proxy1: whether proxy2 has answered (a hello-ack authenticated). proxy2: always.
    pub fn is_established(&self) -> bool {
        self.initiator.as_ref().is_none_or(|i| i.peer.is_some())
    }

    /// Reject notices proxy1 received from its proxy2.
    pub fn rejects_received(&self) -> u64 {
        self.rejects_received
    }

    /// Hello-acks accepted (proxy1) or sent (proxy2).
    pub fn handshakes(&self) -> u64 {
        self.handshakes
    }

    /// Seals one datagram for `to`.
    pub fn seal(&mut self, plain: &[u8], to: SocketAddr, now: Instant) -> Sealed {
        let session = self.session;
        if let Some(initiator) = &mut self.initiator {
            if let Some(peer) = &initiator.peer {
                let header = Header {
                    kind: kind::TO_PROXY2,
                    proxy1_session: session,
                    proxy2_session: peer.session,
                    counter: initiator.counter,
                };
                initiator.counter += 1;
                return Sealed::Now(seal_with(&peer.seal, header, plain));
            }
            if initiator.held.len() == MAX_QUEUED {
                initiator.held.pop_front();
            }
            initiator.held.push_back((plain.to_vec(), to));
            let due = initiator
                .last_hello
                .is_none_or(|last| now.duration_since(last) >= HELLO_INTERVAL);
            let hello = due.then(|| {
                initiator.last_hello = Some(now);
                let header = Header {
                    kind: kind::HELLO,
                    proxy1_session: session,
                    proxy2_session: 0,
                    counter: initiator.counter,
                };
                initiator.counter += 1;
                seal_with(&initiator.hello, header, &[])
            });
            return Sealed::Held { hello };
        }
        let responder = &mut self.responder;
        let Some(peer) = responder
            .current
            .get(&to)
            .and_then(|p1| responder.sessions.get_mut(p1))
        else {
            return Sealed::NoSession;
        };
        let header = Header {
            kind: kind::TO_PROXY1,
            proxy1_session: peer.session,
            proxy2_session: session,
            counter: peer.counter,
        };
        peer.counter += 1;
        Sealed::Now(seal_with(&peer.seal, header, plain))
    }

    /// Opens one datagram from `from`, in place in `buf`.
    pub fn open(&mut self, buf: &mut [u8], from: SocketAddr, now: Instant) -> Opened {
        let Some(header) = Header::parse(buf) else {
            return Opened::rejected(Rejected::NotSealed);
        };
        match self.side {
            Side::Proxy1 => self.open_at_proxy1(header, buf),
            Side::Proxy2 => self.open_at_proxy2(header, buf, from, now),
        }
    }

    fn open_at_proxy1(&mut self, header: Header, buf: &mut [u8]) -> Opened {
        let session = self.session;
        let initiator = self.initiator.as_mut().expect("proxy1 has an initiator");
        if header.proxy1_session != session {
            // Meant for an earlier proxy1 (this one restarted), or forged.
            return Opened::rejected(match header.kind {
                kind::REJECT => Rejected::PeerRejects,
                _ => Rejected::Replayed,
            });
        }
        match header.kind {
            kind::REJECT => {
                self.rejects_received += 1;
                Opened::rejected(Rejected::PeerRejects)
            }
            kind::HELLO_ACK => {
                if initiator
                    .peer
                    .as_ref()
                    .is_some_and(|p| p.session == header.proxy2_session)
                {
                    // A repeated answer to one of our hellos: nothing new.
                    return match open_with(&initiator.peer.as_ref().unwrap().open, &header, buf) {
                        Some(_) => Opened::default(),
                        None => Opened::rejected(Rejected::Unauthentic),
                    };
                }
                let open = self
                    .key
                    .cipher(Direction::ToProxy1, session, header.proxy2_session);
                if open_with(&open, &header, buf).is_none() {
                    return Opened::rejected(Rejected::Unauthentic);
                }
                let mut window = ReplayWindow::default();
                window.mark(header.counter);
                initiator.peer = Some(PeerSession {
                    session: header.proxy2_session,
                    seal: self
                        .key
                        .cipher(Direction::ToProxy2, session, header.proxy2_session),
                    open,
                    window,
                    counter: 0,
                    last_heard: 0,
                });
                self.handshakes += 1;
                let peer = initiator.peer.as_ref().unwrap();
                let mut release = Vec::with_capacity(initiator.held.len());
                for (plain, to) in initiator.held.drain(..) {
                    let header = Header {
                        kind: kind::TO_PROXY2,
                        proxy1_session: session,
                        proxy2_session: peer.session,
                        counter: initiator.counter,
                    };
                    initiator.counter += 1;
                    release.push((seal_with(&peer.seal, header, &plain), to));
                }
                Opened {
                    release,
                    ..Opened::default()
                }
            }
            kind::TO_PROXY1 => {
                let Some(peer) = initiator.peer.as_mut() else {
                    return Opened::rejected(Rejected::Replayed);
                };
                if header.proxy2_session != peer.session {
                    return Opened::rejected(Rejected::Replayed);
                }
                if !peer.window.check(header.counter) {
                    return Opened::rejected(Rejected::Replayed);
                }
                match open_with(&peer.open, &header, buf) {
                    Some(range) => {
                        peer.window.mark(header.counter);
                        Opened {
                            frame: Some(range),
                            ..Opened::default()
                        }
                    }
                    None => Opened::rejected(Rejected::Unauthentic),
                }
            }
            // proxy1 never receives hellos or its own direction's frames.
            _ => Opened::rejected(Rejected::Unauthentic),
        }
    }

    fn open_at_proxy2(
        &mut self,
        header: Header,
        buf: &mut [u8],
        from: SocketAddr,
        now: Instant,
    ) -> Opened {
        match header.kind {
            kind::HELLO => {
                let cipher = self
                    .key
                    .cipher(Direction::ToProxy2, header.proxy1_session, 0);
                if header.proxy2_session != 0 || open_with(&cipher, &header, buf).is_none() {
                    return self.reject(header, now);
                }
                Opened {
                    reply: Some(self.hello_ack(from, header.proxy1_session)),
                    ..Opened::default()
                }
            }
            kind::TO_PROXY2 => {
                let key = header.proxy1_session;
                if header.proxy2_session != self.session {
                    // From an earlier proxy2 session, or for one: authentic ones get a
                    // hello-ack, so a live proxy1 learns that proxy2 restarted.
                    let cipher = self.key.cipher(
                        Direction::ToProxy2,
                        header.proxy1_session,
                        header.proxy2_session,
                    );
                    if open_with(&cipher, &header, buf).is_none() {
                        return self.reject(header, now);
                    }
                    return Opened {
                        rejected: Some(Rejected::Replayed),
                        reply: Some(self.hello_ack(from, header.proxy1_session)),
                        ..Opened::default()
                    };
                }
                if let Some(peer) = self.responder.sessions.get(&key)
                    && !peer.window.check(header.counter)
                {
                    return Opened::rejected(Rejected::Replayed);
                }
                self.ensure_session(header.proxy1_session);
                self.responder.tick += 1;
                let tick = self.responder.tick;
                let peer = self.responder.sessions.get_mut(&key).unwrap();
                match open_with(&peer.open, &header, buf) {
                    Some(range) => {
                        peer.window.mark(header.counter);
                        peer.last_heard = tick;
                        self.responder.current.insert(from, header.proxy1_session);
                        Opened {
                            frame: Some(range),
                            ..Opened::default()
                        }
                    }
                    None => self.reject(header, now),
                }
            }
            _ => Opened::rejected(Rejected::Unauthentic),
        }
    }

    /// The session state for a proxy1 session, made if new (forgetting the least recently
    /// heard one when [`MAX_SESSIONS`] are known).
    fn ensure_session(&mut self, proxy1: u64) -> &mut PeerSession {
        let responder = &mut self.responder;
        if !responder.sessions.contains_key(&proxy1)
            && responder.sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = responder
                .sessions
                .iter()
                .min_by_key(|(_, s)| s.last_heard)
                .map(|(k, _)| *k)
        {
            responder.sessions.remove(&oldest);
            responder.current.retain(|_, session| *session != oldest);
        }
        let key = &self.key;
        let session = self.session;
        let tick = responder.tick;
        responder
            .sessions
            .entry(proxy1)
            .or_insert_with(|| PeerSession {
                session: proxy1,
                seal: key.cipher(Direction::ToProxy1, proxy1, session),
                open: key.cipher(Direction::ToProxy2, proxy1, session),
                window: ReplayWindow::default(),
                counter: 0,
                last_heard: tick,
            })
    }

    /// A hello-ack for `proxy1`'s session, sealed under the pair's proxy2→proxy1 key. An
    /// address with no current session starts sending to this one.
    fn hello_ack(&mut self, from: SocketAddr, proxy1: u64) -> Vec<u8> {
        let session = self.session;
        self.responder.current.entry(from).or_insert(proxy1);
        let peer = self.ensure_session(proxy1);
        let header = Header {
            kind: kind::HELLO_ACK,
            proxy1_session: proxy1,
            proxy2_session: session,
            counter: peer.counter,
        };
        peer.counter += 1;
        let ack = seal_with(&peer.seal, header, &[]);
        self.handshakes += 1;
        ack
    }

    /// Counts a datagram that did not authenticate, with a reject notice if one is due.
    fn reject(&mut self, header: Header, now: Instant) -> Opened {
        let due = self
            .responder
            .last_reject
            .is_none_or(|last| now.duration_since(last) >= REJECT_INTERVAL);
        let reply = due.then(|| {
            self.responder.last_reject = Some(now);
            let mut out = Vec::with_capacity(HEADER_LEN);
            Header {
                kind: kind::REJECT,
                proxy1_session: header.proxy1_session,
                proxy2_session: self.session,
                counter: 0,
            }
            .write(&mut out);
            out
        });
        Opened {
            rejected: Some(Rejected::Unauthentic),
            reply,
            ..Opened::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn key(byte: u8) -> SealKey {
        SealKey::from_bytes([byte; KEY_LEN])
    }

    /// proxy1 and proxy2 after the handshake, proxy1 at port 1000, proxy2 at 2000.
    fn pair(now: Instant) -> (Seal, Seal) {
        let mut p1 = Seal::with_session(key(7), Side::Proxy1, 0x1111);
        let mut p2 = Seal::with_session(key(7), Side::Proxy2, 0x2222);
        let Sealed::Held { hello: Some(hello) } = p1.seal(b"\xe1first", addr(2000), now) else {
            panic!("proxy1 holds its first frame and says hello");
        };
        let mut hello = hello;
        let opened = p2.open(&mut hello, addr(1000), now);
        assert_eq!(opened.rejected, None);
        let mut ack = opened.reply.expect("proxy2 answers a hello");
        let opened = p1.open(&mut ack, addr(2000), now);
        assert!(p1.is_established());
        let [(mut first, to)] = <[_; 1]>::try_from(opened.release).unwrap();
        assert_eq!(to, addr(2000));
        let opened = p2.open(&mut first, addr(1000), now);
        assert_eq!(&first[opened.frame.unwrap()], b"\xe1first");
        (p1, p2)
    }

    fn sealed(s: Sealed) -> Vec<u8> {
        match s {
            Sealed::Now(bytes) => bytes,
            other => panic!("expected a sealed datagram, got {other:?}"),
        }
    }

    #[test]
    fn frames_round_trip_both_ways_and_hide_their_bytes() {
        let now = Instant::now();
        let (mut p1, mut p2) = pair(now);
        let mut up = sealed(p1.seal(b"\xe1secret payload", addr(2000), now));
        assert_eq!(up.len(), b"\xe1secret payload".len() + OVERHEAD);
        assert!(!up.windows(6).any(|w| w == b"secret"));
        let range = p2.open(&mut up, addr(1000), now).frame.unwrap();
        assert_eq!(&up[range], b"\xe1secret payload");
        let mut down = sealed(p2.seal(b"\xe1answer", addr(1000), now));
        let header = Header::parse(&down).unwrap();
        assert_eq!(header.kind, kind::TO_PROXY1);
        assert_eq!(
            (header.proxy1_session, header.proxy2_session),
            (0x1111, 0x2222)
        );
        let range = p1.open(&mut down, addr(2000), now).frame.unwrap();
        assert_eq!(&down[range], b"\xe1answer");
    }

    #[test]
    fn a_flipped_bit_anywhere_fails_authentication() {
        let now = Instant::now();
        let (mut p1, mut p2) = pair(now);
        let original = sealed(p1.seal(b"\xe1data", addr(2000), now));
        for at in 0..original.len() {
            let mut changed = original.clone();
            changed[at] ^= 0x01;
            let opened = p2.open(
                &mut changed,
                addr(1000),
                now + Duration::from_secs(at as u64),
            );
            assert!(opened.frame.is_none(), "byte {at}");
            assert!(opened.rejected.is_some(), "byte {at}");
        }
        // The untouched one still opens: failures did not move the replay window.
        let mut untouched = original.clone();
        assert!(p2.open(&mut untouched, addr(1000), now).frame.is_some());
    }

    #[test]
    fn replays_are_rejected_and_reordering_within_the_window_is_not() {
        let now = Instant::now();
        let (mut p1, mut p2) = pair(now);
        let frames: Vec<Vec<u8>> = (0..50)
            .map(|i| sealed(p1.seal(&[0xe1, i], addr(2000), now)))
            .collect();
        // Out of order: odd ones first, then even.
        for frame in frames
            .iter()
            .skip(1)
            .step_by(2)
            .chain(frames.iter().step_by(2))
        {
            let mut copy = frame.clone();
            assert!(p2.open(&mut copy, addr(1000), now).frame.is_some());
        }
        for frame in &frames {
            // From proxy1's address or any other.
            for from in [addr(1000), addr(3000)] {
                let mut copy = frame.clone();
                let opened = p2.open(&mut copy, from, now);
                assert_eq!(opened.rejected, Some(Rejected::Replayed));
                assert!(opened.frame.is_none());
            }
        }
    }

    #[test]
    fn replay_window_bounds() {
        let mut window = ReplayWindow::default();
        assert!(window.check(5));
        window.mark(5);
        assert!(!window.check(5));
        assert!(window.check(4));
        window.mark(5 + 5000);
        assert!(!window.check(5), "far behind the newest");
        assert!(window.check(5000), "within the window, never seen");
        assert!(window.check(5005 - REPLAY_WINDOW + 1));
        assert!(!window.check(5005 - REPLAY_WINDOW));
        for c in 5006..7000 {
            assert!(window.check(c));
            window.mark(c);
            assert!(!window.check(c));
            assert!(!window.check(c - 1));
        }
    }

    #[test]
    fn a_wrong_key_gets_a_reject_and_nothing_opens() {
        let now = Instant::now();
        let mut p1 = Seal::with_session(key(1), Side::Proxy1, 0x1111);
        let mut p2 = Seal::with_session(key(2), Side::Proxy2, 0x2222);
        let Sealed::Held {
            hello: Some(mut hello),
        } = p1.seal(b"\xe1C", addr(2000), now)
        else {
            panic!()
        };
        let opened = p2.open(&mut hello, addr(1000), now);
        assert_eq!(opened.rejected, Some(Rejected::Unauthentic));
        let mut reject = opened.reply.expect("a reject notice");
        assert_eq!(reject.len(), HEADER_LEN);
        let opened = p1.open(&mut reject, addr(2000), now);
        assert_eq!(opened.rejected, Some(Rejected::PeerRejects));
        assert_eq!(p1.rejects_received(), 1);
        assert!(!p1.is_established());
        // Rejects are rate-limited.
        let Sealed::Held {
            hello: Some(mut again),
        } = p1.seal(b"\xe1C", addr(2000), now + HELLO_INTERVAL)
        else {
            panic!()
        };
        assert!(p2.open(&mut again, addr(1000), now).reply.is_none());
        // And proxy2 cannot send to an address that never said hello.
        assert_eq!(p2.seal(b"\xe1x", addr(1000), now), Sealed::NoSession);
    }

    #[test]
    fn hellos_are_rate_limited_and_held_frames_bounded() {
        let now = Instant::now();
        let mut p1 = Seal::with_session(key(1), Side::Proxy1, 0x1111);
        assert!(matches!(
            p1.seal(b"a", addr(2000), now),
            Sealed::Held { hello: Some(_) }
        ));
        assert_eq!(
            p1.seal(b"b", addr(2000), now + Duration::from_millis(10)),
            Sealed::Held { hello: None }
        );
        for _ in 0..MAX_QUEUED * 2 {
            p1.seal(b"c", addr(2000), now);
        }
        assert_eq!(p1.initiator.as_ref().unwrap().held.len(), MAX_QUEUED);
    }

    #[test]
    fn a_restarted_proxy2_rejects_the_old_session_and_proxy1_moves_on() {
        let now = Instant::now();
        let (mut p1, p2) = pair(now);
        let old = sealed(p1.seal(b"\xe1old", addr(2000), now));
        // proxy2 restarts: a new session id.
        drop(p2);
        let mut p2 = Seal::with_session(key(7), Side::Proxy2, 0x3333);
        let mut replay = old.clone();
        let opened = p2.open(&mut replay, addr(1000), now);
        assert!(opened.frame.is_none());
        assert_eq!(opened.rejected, Some(Rejected::Replayed));
        let mut ack = opened.reply.expect("a fresh hello-ack for the live proxy1");
        assert!(p1.open(&mut ack, addr(2000), now).rejected.is_none());
        let mut next = sealed(p1.seal(b"\xe1new", addr(2000), now));
        assert_eq!(Header::parse(&next).unwrap().proxy2_session, 0x3333);
        let range = p2.open(&mut next, addr(1000), now).frame.unwrap();
        assert_eq!(&next[range], b"\xe1new");
        // The old capture still does not open.
        let mut replay = old;
        assert!(p2.open(&mut replay, addr(1000), now).frame.is_none());
    }

    #[test]
    fn a_restarted_proxy1_gets_a_fresh_session() {
        let now = Instant::now();
        let (_p1, mut p2) = pair(now);
        let mut p1 = Seal::with_session(key(7), Side::Proxy1, 0x4444);
        let Sealed::Held {
            hello: Some(mut hello),
        } = p1.seal(b"\xe1hi", addr(2000), now)
        else {
            panic!()
        };
        let mut ack = p2.open(&mut hello, addr(1000), now).reply.unwrap();
        let [(mut first, _)] =
            <[_; 1]>::try_from(p1.open(&mut ack, addr(2000), now).release).unwrap();
        assert!(p2.open(&mut first, addr(1000), now).frame.is_some());
        // proxy2 now seals to the new session.
        let mut down = sealed(p2.seal(b"\xe1to new", addr(1000), now));
        assert_eq!(Header::parse(&down).unwrap().proxy1_session, 0x4444);
        assert!(p1.open(&mut down, addr(2000), now).frame.is_some());
    }

    #[test]
    fn offline_open_reads_frames_with_the_key_alone() {
        let now = Instant::now();
        let (mut p1, mut p2) = pair(now);
        let up = sealed(p1.seal(b"\xe1up", addr(2000), now));
        let down = sealed(p2.seal(b"\xe1down", addr(1000), now));
        assert_eq!(open_offline(&key(7), &up).unwrap(), b"\xe1up");
        assert_eq!(open_offline(&key(7), &down).unwrap(), b"\xe1down");
        assert_eq!(open_offline(&key(8), &up), None);
        assert_eq!(open_offline(&key(7), b"\xe1plain"), None);
    }

    #[test]
    fn keys_differ_per_direction_and_session() {
        let k = key(9);
        let header = Header {
            kind: kind::TO_PROXY2,
            proxy1_session: 1,
            proxy2_session: 2,
            counter: 0,
        };
        let a = seal_with(&k.cipher(Direction::ToProxy2, 1, 2), header, b"same");
        let b = seal_with(&k.cipher(Direction::ToProxy1, 1, 2), header, b"same");
        let c = seal_with(&k.cipher(Direction::ToProxy2, 1, 3), header, b"same");
        assert_ne!(a[HEADER_LEN..], b[HEADER_LEN..]);
        assert_ne!(a[HEADER_LEN..], c[HEADER_LEN..]);
    }

    #[test]
    fn key_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("link.key");
        SealKey::generate_file(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.len(), 65);
        assert!(text.ends_with('\n'));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let (loaded, warning) = SealKey::load(&path).unwrap();
        assert_eq!(loaded.0, SealKey::from_hex(&text, "x").unwrap().0);
        assert_eq!(warning, None);
        assert!(matches!(
            SealKey::generate_file(&path),
            Err(KeyFileError::Exists { .. })
        ));
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            text,
            "not overwritten"
        );
        // Two keys are different.
        let other = dir.path().join("other.key");
        SealKey::generate_file(&other).unwrap();
        assert_ne!(std::fs::read_to_string(&other).unwrap(), text);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let (_, warning) = SealKey::load(&path).unwrap();
            assert!(warning.unwrap().contains("readable by others"));
        }
        assert!(matches!(
            SealKey::from_hex("abcd", "f"),
            Err(KeyFileError::BadLength { found: 4, .. })
        ));
        assert!(matches!(
            SealKey::from_hex(&"zz".repeat(32), "f"),
            Err(KeyFileError::NotHex { .. })
        ));
        assert!(matches!(
            SealKey::load(&dir.path().join("missing")),
            Err(KeyFileError::Read { .. })
        ));
    }
}

#[cfg(test)]
mod speed {
    use super::*;

    /// Full frames under many counters all round-trip; with
    /// `cargo test --release --lib seal::speed -- --nocapture` it also prints what one seal
    /// and one open of a full frame cost on this machine (printed, never asserted).
    #[test]
    fn full_frames_round_trip_under_many_counters() {
        let key = SealKey::from_bytes([3; KEY_LEN]);
        let cipher = key.cipher(Direction::ToProxy2, 1, 2);
        let plain: Vec<u8> = (0..1500 - OVERHEAD).map(|i| i as u8).collect();
        let rounds = 20_000u64;
        let start = Instant::now();
        for counter in 0..rounds {
            let header = Header {
                kind: kind::TO_PROXY2,
                proxy1_session: 1,
                proxy2_session: 2,
                counter,
            };
            let mut sealed = seal_with(&cipher, header, &plain);
            assert_eq!(sealed.len(), 1500);
            let range = open_with(&cipher, &header, &mut sealed).expect("it opens");
            assert_eq!(sealed[range], plain[..]);
        }
        let elapsed = start.elapsed();
        println!(
            "seal + open of {} bytes: {:.0} ns ({:.0} MB/s each way)",
            plain.len(),
            elapsed.as_nanos() as f64 / rounds as f64,
            (plain.len() as u64 * rounds) as f64 * 2.0 / elapsed.as_secs_f64() / 1e6
        );
    }
}
