//! The resolver dialer on real loopback sockets: names resolved here, every address tried,
//! `--allow`/`--deny` checked after resolution, and failures classified as SOCKS5 reasons.

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use tunlab::destination::{Destination, Refusal};
use tunlab::roles::dialers::{DialerConfig, ResolverDialer, Rule, Rules};

fn dialer(rules: &[Rule]) -> ResolverDialer {
    ResolverDialer::new(DialerConfig {
        rules: Rules::new(rules.to_vec()),
        connect_timeout: Duration::from_secs(5),
        ..DialerConfig::default()
    })
}

fn deny(text: &str) -> Rule {
    Rule::deny(text.parse().unwrap())
}

fn allow(text: &str) -> Rule {
    Rule::allow(text.parse().unwrap())
}

/// A listener that accepts nothing by itself, so a test can see whether anyone connected.
fn listener(addr: &str) -> TcpListener {
    let listener = TcpListener::bind(addr).unwrap();
    listener.set_nonblocking(true).unwrap();
    listener
}

/// Whether a connection is waiting in `listener`'s queue (the kernel completes the
/// handshake before anyone accepts, so a dial that connected leaves one there).
fn someone_connected(listener: &TcpListener) -> bool {
    listener.accept().is_ok()
}

/// A port nothing listens on (bound, then released).
fn closed_port(ip: &str) -> SocketAddr {
    let taken = TcpListener::bind((ip, 0)).unwrap();
    taken.local_addr().unwrap()
}

#[tokio::test]
async fn an_address_connects_and_a_closed_port_is_refused() {
    let open = listener("127.0.0.1:0");
    let addr = open.local_addr().unwrap();
    let dialed = dialer(&[]).dial(&Destination::from(addr)).await.unwrap();
    assert_eq!(dialed.peer, addr);
    assert!(someone_connected(&open));

    let closed = closed_port("127.0.0.1");
    let error = dialer(&[])
        .dial(&Destination::from(closed))
        .await
        .unwrap_err();
    assert_eq!(error.refusal, Refusal::ConnectionRefused, "{error}");
    assert!(error.detail.contains(&closed.to_string()), "{error}");
}

#[tokio::test]
async fn localhost_is_resolved_here_and_connected() {
    let open = listener("127.0.0.1:0");
    let port = open.local_addr().unwrap().port();
    let destination = Destination::name(b"localhost", port).unwrap();
    let dialer = dialer(&[]);
    let addrs = dialer.resolve(&destination).await.unwrap();
    assert!(
        addrs.contains(&SocketAddr::from(([127, 0, 0, 1], port))),
        "{addrs:?}"
    );
    // Every address of the name is tried until one connects: on a machine where localhost
    // is also ::1 and nothing listens there, the 127.0.0.1 listener is still reached.
    let dialed = dialer.dial(&destination).await.unwrap();
    assert_eq!(dialed.peer, SocketAddr::from(([127, 0, 0, 1], port)));
    assert!(someone_connected(&open));
}

#[tokio::test]
async fn every_address_is_tried_before_giving_up() {
    let open = listener("[::1]:0");
    let refused_v4 = closed_port("127.0.0.1");
    let refused_v6 = closed_port("::1");
    let dialer = dialer(&[]);
    let dialed = dialer
        .connect_any(&[refused_v4, refused_v6, open.local_addr().unwrap()])
        .await
        .unwrap();
    assert_eq!(dialed.peer, open.local_addr().unwrap());

    let error = dialer
        .connect_any(&[refused_v4, refused_v6])
        .await
        .unwrap_err();
    assert_eq!(error.refusal, Refusal::ConnectionRefused);
    assert!(
        error.detail.contains(&refused_v4.to_string())
            && error.detail.contains(&refused_v6.to_string()),
        "both attempts are named: {error}"
    );
}

#[tokio::test]
async fn a_denied_address_is_not_connected_to() {
    let open = listener("127.0.0.1:0");
    let addr = open.local_addr().unwrap();
    let rule = format!("127.0.0.1:{}", addr.port());
    let error = dialer(&[deny(&rule)])
        .dial(&Destination::from(addr))
        .await
        .unwrap_err();
    assert_eq!(error.refusal, Refusal::NotAllowed);
    assert_eq!(error.detail, format!("{addr} is denied by --deny {rule}"));
    assert!(
        !someone_connected(&open),
        "a denied destination is never dialed"
    );

    // The same address on another port is allowed: the seed's blocklist is by port.
    let other = listener("127.0.0.1:0");
    dialer(&[deny(&rule)])
        .dial(&Destination::from(other.local_addr().unwrap()))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_name_that_resolves_to_a_denied_address_is_denied() {
    let open = listener("127.0.0.1:0");
    let port = open.local_addr().unwrap().port();
    let error = dialer(&[deny("127.0.0.0/8")])
        .dial(&Destination::name(b"localhost", port).unwrap())
        .await
        .unwrap_err();
    assert_eq!(error.refusal, Refusal::NotAllowed);
    assert!(
        error.detail.starts_with(&format!(
            "localhost:{port} resolves to 127.0.0.1:{port}, denied by --deny 127.0.0.0/8"
        )),
        "{error}"
    );
    assert!(!someone_connected(&open));
}

#[tokio::test]
async fn the_first_matching_rule_wins_on_real_dials() {
    let open = listener("127.0.0.1:0");
    let addr = open.local_addr().unwrap();
    // An allowlist: loopback only on this port, everything else refused.
    let rules = [allow(&format!("127.0.0.1:{}", addr.port())), deny("*")];
    dialer(&rules).dial(&Destination::from(addr)).await.unwrap();
    let other = listener("127.0.0.1:0");
    let error = dialer(&rules)
        .dial(&Destination::from(other.local_addr().unwrap()))
        .await
        .unwrap_err();
    assert_eq!(error.refusal, Refusal::NotAllowed);
    assert!(error.detail.ends_with("denied by --deny *"), "{error}");
    assert!(!someone_connected(&other));
}

#[tokio::test]
async fn a_name_rule_refuses_before_resolving() {
    let error = dialer(&[deny("*.invalid")])
        .dial(&Destination::name(b"no-such-host.invalid", 80).unwrap())
        .await
        .unwrap_err();
    assert_eq!(error.refusal, Refusal::NotAllowed);
    assert_eq!(
        error.detail,
        "no-such-host.invalid:80 is denied by --deny *.invalid"
    );
}

#[tokio::test]
async fn a_name_that_does_not_resolve_is_host_unreachable() {
    let error = dialer(&[])
        .dial(&Destination::name(b"no-such-host.invalid", 80).unwrap())
        .await
        .unwrap_err();
    assert_eq!(error.refusal, Refusal::HostUnreachable, "{error}");
    assert!(error.detail.contains("no-such-host.invalid"), "{error}");
}

#[tokio::test]
async fn a_connect_that_gets_no_answer_is_ttl_expired() {
    use socket2::{Domain, Socket, Type};
    // A listener whose accept queue is full drops new SYNs: a connect to it hangs, like one
    // to a host that does not answer (without sending anything off this machine).
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket
        .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    socket.listen(0).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    let mut fillers = Vec::new();
    let mut full = false;
    for _ in 0..16 {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
            Ok(stream) => fillers.push(stream),
            Err(_) => {
                full = true;
                break;
            }
        }
    }
    assert!(full, "the accept queue never filled up");
    let dialer = ResolverDialer::new(DialerConfig {
        connect_timeout: Duration::from_millis(300),
        ..DialerConfig::default()
    });
    let error = dialer.dial(&Destination::from(addr)).await.unwrap_err();
    assert_eq!(error.refusal, Refusal::TtlExpired, "{error}");
    assert!(error.detail.contains("no answer within 300ms"), "{error}");
}
