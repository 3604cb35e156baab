//! SOCKS5 connections on screen, drawn from scripted events: the connection list shows each
//! one's destination and user, and the detail pane its route and, for a refused one, the
//! NOK's reason with proxy2's words (the rule that matched). Snapshots at 120x40 and 80x24.

mod tui_support;

use std::time::Duration;

use insta::assert_snapshot;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use tui_support::{START, Script, addrs, client_addr, screen};
use tunlab::destination::{Destination, Refusal};
use tunlab::event::EventKind;
use tunlab::topology::Endpoint;
use tunlab::tui::app::handle_key;
use tunlab::tui::render;
use tunlab::tui::state::TuiState;
use tunlab::wire::{ConnId, WireMode};

fn route(at: Endpoint, id: u16, destination: &str, user: Option<&str>) -> EventKind {
    let (host, port) = destination.rsplit_once(':').unwrap();
    EventKind::Route {
        at,
        id: ConnId::new(id),
        destination: Destination::name(host.as_bytes(), port.parse().unwrap()).unwrap(),
        user: user.map(str::to_string),
        client: None,
    }
}

/// Client 1 (user ana) reaches localhost:8000 on id 0 and echoes; client 2 (user bo) asks
/// for localhost:7777, which proxy2's rules deny.
fn socks5_script() -> Script {
    let mut s = Script::default();
    s.roles_up(0)
        .client_connects(5, 1)
        .opens(6, 1, 0)
        .at(6, route(Endpoint::Proxy1, 0, "localhost:8000", Some("ana")))
        .at(7, route(Endpoint::Proxy2, 0, "localhost:8000", None))
        .echo(20, 1, 0, b"GET / HTTP/1.1\r\n")
        .client_connects(30, 2)
        .refused(31, 2, 1)
        .at(31, route(Endpoint::Proxy1, 1, "localhost:7777", Some("bo")))
        .at(
            33,
            EventKind::Refused {
                at: Endpoint::Proxy2,
                id: ConnId::new(1),
                reason: Refusal::NotAllowed,
                detail:
                    "localhost:7777 resolves to 127.0.0.1:7777, denied by --deny port=7000-7999"
                        .into(),
            },
        )
        .at(
            34,
            EventKind::Refused {
                at: Endpoint::Proxy1,
                id: ConnId::new(1),
                reason: Refusal::NotAllowed,
                detail: "proxy2 answered NOK: not allowed by ruleset".into(),
            },
        );
    s
}

fn socks5_state() -> TuiState {
    let mut state = TuiState::new(START, WireMode::Classic, Some(addrs()));
    state.fixed_now = Some(START + Duration::from_millis(100));
    socks5_script().apply(&mut state);
    state
}

#[test]
fn the_fold_keeps_destination_user_and_proxy2s_words_for_the_refusal() {
    let state = socks5_state();
    let open = state.conns[0].route.as_deref().unwrap();
    assert_eq!(open.destination, "localhost:8000");
    assert_eq!(
        open.user.as_deref(),
        Some("ana"),
        "proxy2's route keeps proxy1's user"
    );
    assert_eq!(open.refusal, None);
    let refused = state.conns[1].route.as_deref().unwrap();
    let (reason, detail) = refused.refusal.as_ref().unwrap();
    assert_eq!(*reason, Refusal::NotAllowed);
    assert!(
        detail.contains("denied by --deny port=7000-7999"),
        "{detail}"
    );
    // The id's next life starts clean.
    let mut state = state;
    let mut next = Script::default();
    next.client_connects(50, 3).opens(51, 3, 1);
    next.apply(&mut state);
    assert_eq!(state.conns[1].route, None);
    assert_eq!(state.conns[1].client, Some(client_addr(3)));
}

#[test]
fn socks5_connections_at_120x40() {
    let mut state = socks5_state();
    let screen_0 = screen(120, 40, |f| render::draw(f, &state));
    assert!(screen_0.contains("2↓ → localhost…"), "{screen_0}");
    assert!(
        screen_0.contains("→ localhost:8000 · user ana · SOCKS5"),
        "{screen_0}"
    );
    assert_snapshot!("socks5_open_120x40", screen_0);
    handle_key(&mut state, KeyEvent::new(KeyCode::Down, KeyModifiers::NONE));
    let screen_1 = screen(120, 40, |f| render::draw(f, &state));
    assert!(
        screen_1.contains("refused (0x02 not allowed by ruleset):")
            && screen_1.contains("denied by --deny")
            && screen_1.contains("port=7000-7999"),
        "{screen_1}"
    );
    assert_snapshot!("socks5_refused_120x40", screen_1);
}

#[test]
fn socks5_connections_at_80x24() {
    let mut state = socks5_state();
    handle_key(&mut state, KeyEvent::new(KeyCode::Down, KeyModifiers::NONE));
    let screen = screen(80, 24, |f| render::draw(f, &state));
    assert!(screen.contains("refused (0x02"), "{screen}");
    assert_snapshot!("socks5_refused_80x24", screen);
}
