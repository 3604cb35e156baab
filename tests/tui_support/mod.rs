//! Scripted lab events for the TUI tests: the same events the roles emit, with fixed times
//! and addresses, so every screen drawn from them is the same on every run.

#![allow(dead_code)] // each test file uses its own part of the script

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use tunlab::event::{
    ClientAction, ClientEnd, ClientId, CloseKind, ConnState, Event, EventKind, FrameSummary,
    Preview, TcpAction, TcpFlags, TcpSegmentSummary,
};
use tunlab::lab::{LabAddrs, LabSnapshot};
use tunlab::link::{KindCounts, LinkStatsSnapshot};
use tunlab::roles::echo_client::ClientStatus;
use tunlab::topology::{Endpoint, Role};
use tunlab::tui::state::{TuiState, update};
use tunlab::wire::{ConnId, FrameKind, WireMode};

/// The lab's start, as the scripted events see it.
pub const START: SystemTime = UNIX_EPOCH;

pub fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

pub const SERVER: u16 = 1818;
pub const PROXY1_TCP: u16 = 3327;
pub const PROXY2_UDP: u16 = 3328;
pub const PROXY1_UDP: u16 = 40000;

/// Client `n`'s TCP address.
pub fn client_addr(client: ClientId) -> SocketAddr {
    addr(50000 + client as u16)
}

pub fn addrs() -> LabAddrs {
    LabAddrs {
        server: addr(SERVER),
        proxy2_udp: addr(PROXY2_UDP),
        proxy1_tcp: addr(PROXY1_TCP),
        proxy1_udp: addr(PROXY1_UDP),
        proxy1_socks5: None,
    }
}

/// A state as the TUI starts it, with log lines stamped at `now_ms`.
pub fn new_state(now_ms: u64) -> TuiState {
    let mut state = TuiState::new(START, WireMode::Classic, Some(addrs()));
    state.fixed_now = Some(START + Duration::from_millis(now_ms));
    state
}

/// A state in an extended wire mode (65,536 ids), as the TUI starts it.
pub fn new_extended_state(now_ms: u64) -> TuiState {
    let mut state = TuiState::new(START, WireMode::SelectiveRepeat, Some(addrs()));
    state.fixed_now = Some(START + Duration::from_millis(now_ms));
    state
}

/// Thousands of connections from outside the lab in an extended mode: ids 0..3000 open
/// (client ports 20000 up), then 12 connecting, 4 closing and 40 closed again.
pub fn thousands() -> Script {
    let mut script = Script::default();
    script.roles_up(0);
    for id in 0..3_000u16 {
        script
            .conn_state(10, id, ConnState::Connecting, 20_000 + id)
            .conn_state(11, id, ConnState::Open, 20_000 + id);
    }
    for id in 3_000..3_012u16 {
        script.conn_state(20, id, ConnState::Connecting, 20_000 + id);
    }
    for id in 100..104u16 {
        script.conn_state(30, id, ConnState::Closing, 20_000 + id);
    }
    for id in 200..240u16 {
        script.conn_state(40, id, ConnState::Free, 20_000 + id);
    }
    script
}

/// Builds a list of events in the order the roles would emit them.
#[derive(Default)]
pub struct Script {
    pub events: Vec<Event>,
}

fn frame(kind: FrameKind, id: u16, payload: &[u8]) -> FrameSummary {
    FrameSummary {
        kind,
        id: ConnId::new(id),
        wire_len: 2 + payload.len() + if kind == FrameKind::ConnectOk { 2 } else { 0 },
        payload_len: payload.len(),
        preview: Preview::of(payload),
        numbers: tunlab::event::FrameNumbers::None,
        destination: None,
    }
}

impl Script {
    pub fn at(&mut self, ms: u64, kind: EventKind) -> &mut Self {
        self.events.push(Event {
            time: START + Duration::from_millis(ms),
            kind,
        });
        self
    }

    /// Every role reports it is up.
    pub fn roles_up(&mut self, ms: u64) -> &mut Self {
        self.at(
            ms,
            EventKind::RoleUp {
                role: Role::EchoServer,
                addr: addr(SERVER),
            },
        )
        .at(
            ms,
            EventKind::RoleUp {
                role: Role::Proxy2,
                addr: addr(PROXY2_UDP),
            },
        )
        .at(
            ms,
            EventKind::RoleUp {
                role: Role::Proxy1,
                addr: addr(PROXY1_TCP),
            },
        )
    }

    fn sent(
        &mut self,
        ms: u64,
        at: Endpoint,
        kind: FrameKind,
        id: u16,
        payload: &[u8],
    ) -> &mut Self {
        let peer = match at {
            Endpoint::Proxy1 => addr(PROXY2_UDP),
            Endpoint::Proxy2 => addr(PROXY1_UDP),
        };
        self.at(
            ms,
            EventKind::FrameSent {
                at,
                peer,
                frame: frame(kind, id, payload),
            },
        )
    }

    fn received(
        &mut self,
        ms: u64,
        at: Endpoint,
        kind: FrameKind,
        id: u16,
        payload: &[u8],
    ) -> &mut Self {
        let peer = match at {
            Endpoint::Proxy1 => addr(PROXY2_UDP),
            Endpoint::Proxy2 => addr(PROXY1_UDP),
        };
        self.at(
            ms,
            EventKind::FrameReceived {
                at,
                peer,
                frame: frame(kind, id, payload),
            },
        )
    }

    fn conn(
        &mut self,
        ms: u64,
        at: Endpoint,
        id: u16,
        state: ConnState,
        client: SocketAddr,
    ) -> &mut Self {
        self.at(
            ms,
            EventKind::Conn {
                at,
                id: ConnId::new(id),
                state,
                client: Some(client),
            },
        )
    }

    fn tcp(
        &mut self,
        ms: u64,
        role: Role,
        id: Option<u16>,
        action: TcpAction,
        client: ClientId,
    ) -> &mut Self {
        let peer = match role {
            Role::Proxy1 => client_addr(client),
            _ => addr(SERVER),
        };
        self.at(
            ms,
            EventKind::Tcp {
                role,
                id: id.map(ConnId::new),
                peer,
                action,
            },
        )
    }

    fn client(&mut self, ms: u64, client: ClientId, action: ClientAction) -> &mut Self {
        self.at(ms, EventKind::Client { client, action })
    }

    /// A lab client connects to proxy1 (it may then get an id, or wait).
    pub fn client_connects(&mut self, ms: u64, client: ClientId) -> &mut Self {
        self.client(
            ms,
            client,
            ClientAction::Connected {
                local: client_addr(client),
            },
        )
        .tcp(ms, Role::Proxy1, None, TcpAction::Accepted, client)
    }

    /// proxy1 gives `client` the id and proxy2 opens it: C, connect, OK.
    pub fn opens(&mut self, ms: u64, client: ClientId, id: u16) -> &mut Self {
        self.opens_with(ms, client, id, TcpAction::Connected)
    }

    /// Like [`Script::opens`], with proxy2 saying which address it connected from (as it
    /// does; the ladder then finds the server leg's captured segments).
    pub fn opens_from(
        &mut self,
        ms: u64,
        client: ClientId,
        id: u16,
        proxy2_end: SocketAddr,
    ) -> &mut Self {
        self.opens_with(ms, client, id, TcpAction::ConnectedFrom(proxy2_end))
    }

    fn opens_with(
        &mut self,
        ms: u64,
        client: ClientId,
        id: u16,
        connected: TcpAction,
    ) -> &mut Self {
        let c = client_addr(client);
        let p1 = addr(PROXY1_UDP);
        self.conn(ms, Endpoint::Proxy1, id, ConnState::Connecting, c)
            .sent(ms, Endpoint::Proxy1, FrameKind::Connect, id, b"")
            .received(ms + 1, Endpoint::Proxy2, FrameKind::Connect, id, b"")
            .conn(ms + 1, Endpoint::Proxy2, id, ConnState::Connecting, p1)
            .tcp(ms + 2, Role::Proxy2, Some(id), connected, client)
            .sent(ms + 2, Endpoint::Proxy2, FrameKind::ConnectOk, id, b"")
            .conn(ms + 2, Endpoint::Proxy2, id, ConnState::Open, p1)
            .received(ms + 3, Endpoint::Proxy1, FrameKind::ConnectOk, id, b"")
            .conn(ms + 3, Endpoint::Proxy1, id, ConnState::Open, c)
    }

    /// proxy2 cannot reach the server: C, connect fails, NOK, the id is freed.
    pub fn refused(&mut self, ms: u64, client: ClientId, id: u16) -> &mut Self {
        let c = client_addr(client);
        let p1 = addr(PROXY1_UDP);
        self.conn(ms, Endpoint::Proxy1, id, ConnState::Connecting, c)
            .sent(ms, Endpoint::Proxy1, FrameKind::Connect, id, b"")
            .conn(ms + 1, Endpoint::Proxy2, id, ConnState::Connecting, p1)
            .tcp(
                ms + 2,
                Role::Proxy2,
                Some(id),
                TcpAction::ConnectFailed("Connection refused (os error 111)".into()),
                client,
            )
            .sent(ms + 2, Endpoint::Proxy2, FrameKind::ConnectNok, id, b"")
            .conn(ms + 2, Endpoint::Proxy2, id, ConnState::Refused, p1)
            .conn(ms + 2, Endpoint::Proxy2, id, ConnState::Free, p1)
            .conn(ms + 3, Endpoint::Proxy1, id, ConnState::Refused, c)
            .conn(ms + 3, Endpoint::Proxy1, id, ConnState::Free, c)
            .client(
                ms + 3,
                client,
                ClientAction::Closed {
                    how: ClientEnd::ByTunnel,
                },
            )
    }

    /// `client` sends `payload` on `id` and it comes back, byte for byte.
    pub fn echo(&mut self, ms: u64, client: ClientId, id: u16, payload: &[u8]) -> &mut Self {
        let n = payload.len();
        self.client(ms, client, ClientAction::Sent(n))
            .tcp(ms, Role::Proxy1, Some(id), TcpAction::Read(n), client)
            .sent(ms, Endpoint::Proxy1, FrameKind::Data, id, payload)
            .received(ms + 1, Endpoint::Proxy2, FrameKind::Data, id, payload)
            .tcp(ms + 1, Role::Proxy2, Some(id), TcpAction::Wrote(n), client)
            .tcp(ms + 2, Role::Proxy2, Some(id), TcpAction::Read(n), client)
            .sent(ms + 2, Endpoint::Proxy2, FrameKind::Data, id, payload)
            .received(ms + 3, Endpoint::Proxy1, FrameKind::Data, id, payload)
            .tcp(ms + 3, Role::Proxy1, Some(id), TcpAction::Wrote(n), client)
            .client(
                ms + 3,
                client,
                ClientAction::Echoed {
                    len: n,
                    intact: true,
                },
            )
    }

    /// The client closes with FIN or RST; X goes to proxy2, which closes the server side.
    pub fn client_closes(
        &mut self,
        ms: u64,
        client: ClientId,
        id: u16,
        how: CloseKind,
    ) -> &mut Self {
        let c = client_addr(client);
        let p1 = addr(PROXY1_UDP);
        self.client(
            ms,
            client,
            ClientAction::Closed {
                how: ClientEnd::ByClient(how),
            },
        )
        .tcp(
            ms,
            Role::Proxy1,
            Some(id),
            TcpAction::PeerClosed(how),
            client,
        )
        .conn(ms, Endpoint::Proxy1, id, ConnState::Closing, c)
        .sent(ms, Endpoint::Proxy1, FrameKind::Close, id, b"")
        .conn(ms + 1, Endpoint::Proxy1, id, ConnState::Free, c)
        .received(ms + 1, Endpoint::Proxy2, FrameKind::Close, id, b"")
        .conn(ms + 1, Endpoint::Proxy2, id, ConnState::Free, p1)
        .tcp(
            ms + 2,
            Role::Proxy2,
            Some(id),
            TcpAction::Closed(CloseKind::Fin),
            client,
        )
    }

    /// A connection of a client from outside the lab (port `port`) reaches `state` at both
    /// proxies, with no frames: how thousands of them are scripted cheaply.
    pub fn conn_state(&mut self, ms: u64, id: u16, state: ConnState, port: u16) -> &mut Self {
        let p1 = addr(PROXY1_UDP);
        self.conn(ms, Endpoint::Proxy1, id, state, addr(port)).conn(
            ms,
            Endpoint::Proxy2,
            id,
            state,
            p1,
        )
    }

    /// All ids are taken: proxy1 makes the client wait.
    pub fn waits(&mut self, ms: u64, client: ClientId) -> &mut Self {
        self.at(
            ms,
            EventKind::WaitingForId {
                client: client_addr(client),
            },
        )
    }

    /// Folds every event into `state`.
    pub fn apply(&self, state: &mut TuiState) {
        for event in &self.events {
            update(state, event.clone());
        }
    }
}

/// The classroom picture: 3 clients, client 1 echoes "hola mundo" on id 0 and aborts with RST,
/// client 2 holds id 1 open, client 3 is refused on id 2 (the server was down).
pub fn classroom() -> Script {
    let mut s = Script::default();
    s.roles_up(0)
        .client_connects(5, 1)
        .opens(6, 1, 0)
        .client_connects(10, 2)
        .opens(11, 2, 1)
        .echo(1500, 1, 0, b"hola mundo")
        .echo(1800, 2, 1, b"line one\nline two\x00\xff")
        .client_connects(2000, 3)
        .refused(2001, 3, 2)
        .client_closes(3000, 1, 0, CloseKind::Rst);
    s
}

/// proxy2's end of its connection to the server, in [`with_tcp_capture`].
pub const PROXY2_TCP: u16 = 61000;

/// A TCP segment read off loopback; `flags` lists S(YN) A(CK) F(IN) R(ST) P(SH).
pub fn segment(src: SocketAddr, dst: SocketAddr, flags: &str, payload_len: usize) -> EventKind {
    EventKind::TcpSegment {
        segment: TcpSegmentSummary {
            src,
            dst,
            flags: TcpFlags {
                syn: flags.contains('S'),
                ack: flags.contains('A'),
                fin: flags.contains('F'),
                rst: flags.contains('R'),
                psh: flags.contains('P'),
            },
            seq: 1,
            ack: 1,
            payload_len,
        },
    }
}

/// One connection with TCP capture on: client 1's and proxy2's handshakes (captured before
/// the id is known), a data segment and its ACK, a segment of an unrelated port, the client's
/// FIN, and proxy2's connection to the server reset.
pub fn with_tcp_capture() -> Script {
    let (client, proxy1, server) = (client_addr(1), addr(PROXY1_TCP), addr(SERVER));
    let proxy2_end = addr(PROXY2_TCP);
    let mut s = Script::default();
    s.roles_up(0)
        .at(1, segment(client, proxy1, "S", 0))
        .at(1, segment(proxy1, client, "SA", 0))
        .at(1, segment(client, proxy1, "A", 0))
        .client_connects(1, 1)
        .at(2, segment(proxy2_end, server, "S", 0))
        .at(2, segment(server, proxy2_end, "SA", 0))
        .at(2, segment(proxy2_end, server, "A", 0))
        .opens_from(2, 1, 0, proxy2_end)
        .at(5, segment(client, proxy1, "PA", 10))
        .at(5, segment(proxy1, client, "A", 0))
        .at(6, segment(addr(7000), addr(7001), "S", 0))
        .at(7, segment(client, proxy1, "FA", 0))
        .at(8, segment(proxy2_end, server, "RA", 0));
    s
}

/// Ten busy ids and two clients waiting for one.
pub fn full_house() -> Script {
    let mut s = Script::default();
    s.roles_up(0);
    for client in 1..=10u32 {
        let ms = 10 * u64::from(client);
        s.client_connects(ms, client)
            .opens(ms + 1, client, client as u16 - 1);
    }
    s.client_connects(200, 11).waits(200, 11);
    s.client_connects(210, 12).waits(210, 12);
    s
}

/// Draws with `draw` on a `width`x`height` test terminal and returns the screen as text.
pub fn screen(width: u16, height: u16, draw: impl FnOnce(&mut ratatui::Frame<'_>)) -> String {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(draw).unwrap();
    terminal.backend().to_string()
}

/// The lab's exact counters at the end of [`classroom`], plus one malformed datagram and one
/// ignored one, so the status line has something to warn about.
pub fn classroom_snapshot() -> LabSnapshot {
    let counts = |connect, ok, nok, data, close| KindCounts {
        connect,
        ok,
        nok,
        data,
        ack: 0,
        close,
    };
    let client = |n: ClientId, sent, echoed, ended| {
        (
            n,
            ClientStatus {
                local: Some(client_addr(n)),
                sent_bytes: sent,
                echoed_bytes: echoed,
                matched_bytes: echoed,
                intact: true,
                ended,
            },
        )
    };
    LabSnapshot {
        proxy1: LinkStatsSnapshot {
            sent: counts(3, 0, 0, 2, 1),
            received: counts(0, 2, 1, 2, 0),
            sent_bytes: 6 + 12 + 21,
            received_bytes: 4 + 4 + 5 + 12 + 21,
            malformed: 1,
            ignored: 0,
            refused: 0,
            ..LinkStatsSnapshot::default()
        },
        proxy2: LinkStatsSnapshot {
            sent: counts(0, 2, 1, 2, 0),
            received: counts(3, 0, 0, 2, 1),
            sent_bytes: 4 + 4 + 5 + 12 + 21,
            received_bytes: 6 + 12 + 21,
            malformed: 0,
            ignored: 1,
            refused: 0,
            ..LinkStatsSnapshot::default()
        },
        events_dropped: 0,
        // A teacher has turned loss up to 10% both ways.
        link: tunlab::impair::LinkEmulator::new(
            tunlab::impair::LinkSettings::symmetric(tunlab::impair::DirectionSettings {
                loss: tunlab::impair::Percent::new(10.0).unwrap(),
                ..Default::default()
            }),
            7,
        )
        .report(),
        clients: vec![
            client(1, 10, 10, Some(ClientEnd::ByClient(CloseKind::Rst))),
            client(2, 19, 19, None),
            client(3, 0, 0, Some(ClientEnd::ByTunnel)),
        ],
        transport_conns: Default::default(),
    }
}
