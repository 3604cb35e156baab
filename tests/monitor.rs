//! The monitor on real loopback sockets: a lab with `/metrics` and the admin protocol on
//! ephemeral ports, traffic through proxy1, then what a scraper and an admin client see.
//!
//! `/metrics` is parsed with an independent Prometheus text parser (the `prometheus-parse`
//! crate) and compared with the lab's exact snapshot; every admin command is asked over TCP.

mod common;

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use common::{echo_through, random_bytes, within};
use tunlab::event::EventSink;
use tunlab::impair::{Decider, DirectionSettings, DropCause, Percent};
use tunlab::lab::{Lab, LabConfig, LabSnapshot};
use tunlab::monitor::{AdminLimits, ConnTable, Credential, Monitor, MonitorPlan, MonitorSources};
use tunlab::topology::{LinkDirection, Role};
use tunlab::wire::FrameKind;

const SEED: u64 = 4242;

/// A lab on ephemeral ports with its monitor, as the TUI starts them.
struct Monitored {
    lab: Lab,
    monitor: Monitor,
    conns: Arc<ConnTable>,
}

async fn start(limits: AdminLimits) -> Monitored {
    let config = LabConfig {
        link_seed: Some(SEED),
        ..LabConfig::ephemeral()
    };
    start_with(config, limits).await
}

async fn start_with(config: LabConfig, limits: AdminLimits) -> Monitored {
    let (events, mut rx) = EventSink::channel(64 * 1024);
    // Someone reads the stream, as the TUI would; the monitor must not depend on it.
    tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let conns = Arc::new(ConnTable::new());
    let events = events.with_observer(conns.clone());
    let lab = Lab::start(config, events).await.unwrap();
    let plan = MonitorPlan {
        metrics: Some("127.0.0.1:0".parse().unwrap()),
        admin: Some("127.0.0.1:0".parse().unwrap()),
        users: vec![
            "ana:s3cret".parse().unwrap(),
            "bob:hunter2".parse().unwrap(),
        ],
        limits,
    };
    let sources = MonitorSources::for_lab(&lab, conns.clone(), None);
    let monitor = Monitor::start(&plan, sources).await.unwrap();
    Monitored {
        lab,
        monitor,
        conns,
    }
}

/// Echoes `bytes` through proxy1 on a new TCP connection, and leaves it open.
async fn echo_client(lab: &Lab, seed: u64, len: usize) -> TcpStream {
    let mut stream = TcpStream::connect(lab.addrs().proxy1_tcp).await.unwrap();
    let data = random_bytes(seed, len);
    let echoed = within("the echo", echo_through(&mut stream, &data, 16 * 1024)).await;
    assert_eq!(echoed, data);
    stream
}

/// Waits until no connection is open at either proxy or the server, and the counters have
/// stopped moving; returns the snapshot of that quiet moment.
async fn quiet(monitored: &Monitored) -> LabSnapshot {
    within("a quiet lab", async {
        loop {
            let before = monitored.lab.snapshot();
            tokio::time::sleep(Duration::from_millis(50)).await;
            let after = monitored.lab.snapshot();
            let open: u64 = [Role::Proxy1, Role::Proxy2, Role::EchoServer]
                .iter()
                .map(|r| monitored.conns.totals(*r).current)
                .sum();
            if open == 0
                && before.proxy1 == after.proxy1
                && before.proxy2 == after.proxy2
                && before.link == after.link
            {
                return after;
            }
        }
    })
    .await
}

/// One HTTP/1.1 GET; the status line, the headers and the body.
async fn http_get(addr: std::net::SocketAddr, path: &str) -> (String, String, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: */*\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    within("the HTTP response", stream.read_to_string(&mut response))
        .await
        .unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("a header block");
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    (status.to_string(), headers.to_string(), body.to_string())
}

/// The value of one sample of a parsed scrape: counters and gauges alike.
fn value(scrape: &prometheus_parse::Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    let sample = scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == metric
                && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
                && s.labels.len() == labels.len()
        })
        .unwrap_or_else(|| panic!("no sample {metric}{labels:?}"));
    match sample.value {
        prometheus_parse::Value::Counter(v) => {
            assert!(
                metric.ends_with("_total"),
                "{metric} is a counter without _total"
            );
            v
        }
        prometheus_parse::Value::Gauge(v) => v,
        ref other => panic!("{metric} is {other:?}, not a counter or a gauge"),
    }
}

fn frame_type(kind: FrameKind) -> &'static str {
    match kind {
        FrameKind::Connect => "connect",
        FrameKind::ConnectOk => "ok",
        FrameKind::ConnectNok => "nok",
        FrameKind::Data => "data",
        FrameKind::Ack => "ack",
        FrameKind::Close => "close",
    }
}

#[tokio::test]
async fn metrics_after_traffic_parse_and_equal_the_lab_snapshot() {
    let monitored = start(AdminLimits::default()).await;
    let lab = &monitored.lab;
    for seed in 0..3 {
        let mut stream = echo_client(lab, seed, 20_000 + seed as usize).await;
        stream.shutdown().await.unwrap();
        let mut rest = Vec::new();
        within("the tunnel to close", stream.read_to_end(&mut rest))
            .await
            .unwrap();
    }
    let snapshot = quiet(&monitored).await;

    let addr = monitored.monitor.metrics_addr().unwrap();
    let (status, headers, body) = http_get(addr, "/metrics").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        headers.contains("Content-Type: text/plain; version=0.0.4"),
        "{headers}"
    );
    let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).unwrap();
    // The parser skips what it cannot read: every sample line must have become a sample (a
    // histogram's `_bucket` lines become one sample per series, holding every bucket).
    let sample_lines = body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .count();
    let read_lines: usize = scrape
        .samples
        .iter()
        .map(|s| match &s.value {
            prometheus_parse::Value::Histogram(buckets) => buckets.len(),
            _ => 1,
        })
        .sum();
    assert_eq!(read_lines, sample_lines, "{body}");
    // And the lab did not move while it was scraped.
    let after = lab.snapshot();
    assert_eq!(
        (after.proxy1, after.proxy2),
        (snapshot.proxy1, snapshot.proxy2)
    );

    for (endpoint, stats) in [("proxy1", snapshot.proxy1), ("proxy2", snapshot.proxy2)] {
        for kind in FrameKind::ALL {
            for (direction, counts) in [("sent", stats.sent), ("received", stats.received)] {
                let labels = [
                    ("endpoint", endpoint),
                    ("direction", direction),
                    ("type", frame_type(kind)),
                ];
                assert_eq!(
                    value(&scrape, "tunlab_frames_total", &labels),
                    counts.get(kind) as f64,
                    "{labels:?}"
                );
            }
        }
        for (direction, bytes) in [
            ("sent", stats.sent_bytes),
            ("received", stats.received_bytes),
        ] {
            let labels = [("endpoint", endpoint), ("direction", direction)];
            assert_eq!(
                value(&scrape, "tunlab_link_bytes_total", &labels),
                bytes as f64
            );
        }
        let labels = [("endpoint", endpoint)];
        assert_eq!(
            value(&scrape, "tunlab_malformed_datagrams_total", &labels),
            stats.malformed as f64
        );
        assert_eq!(
            value(&scrape, "tunlab_ignored_datagrams_total", &labels),
            stats.ignored as f64
        );
    }
    assert!(
        snapshot.proxy1.sent.get(FrameKind::Data) > 0,
        "traffic flowed"
    );
    assert_eq!(snapshot.proxy1.sent.get(FrameKind::Connect), 3);
    for (role, opened) in [("proxy1", 3.0), ("proxy2", 3.0), ("server", 3.0)] {
        let labels = [("role", role)];
        assert_eq!(value(&scrape, "tunlab_connections_total", &labels), opened);
        assert_eq!(value(&scrape, "tunlab_connections_open", &labels), 0.0);
        assert!(value(&scrape, "tunlab_connections_peak", &labels) >= 1.0);
    }
    for (label, direction) in [
        ("to_proxy2", LinkDirection::ToProxy2),
        ("to_proxy1", LinkDirection::ToProxy1),
    ] {
        let report = snapshot.link.direction(direction);
        let labels = [("direction", label)];
        assert_eq!(
            value(&scrape, "tunlab_emulator_offered_frames_total", &labels),
            report.sent as f64
        );
        assert_eq!(
            value(
                &scrape,
                "tunlab_emulator_delivered_datagrams_total",
                &labels
            ),
            report.delivered as f64
        );
        assert_eq!(
            value(
                &scrape,
                "tunlab_emulator_dropped_frames_total",
                &[("direction", label), ("cause", "loss")]
            ),
            0.0
        );
    }
    // Every family is documented and prefixed.
    for sample in &scrape.samples {
        assert!(sample.metric.starts_with("tunlab_"), "{}", sample.metric);
    }

    let (status, _, _) = http_get(addr, "/nothing").await;
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    monitored.monitor.stop().await;
    monitored.lab.shutdown().await;
}

/// An admin client speaking the protocol by hand.
struct Admin {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

impl Admin {
    /// Connects and reads the banner.
    async fn connect(monitored: &Monitored) -> (Admin, String) {
        let stream = TcpStream::connect(monitored.monitor.admin_addr().unwrap())
            .await
            .unwrap();
        let (read, writer) = stream.into_split();
        let mut admin = Admin {
            reader: BufReader::new(read),
            writer,
        };
        let banner = admin.line().await.expect("a banner");
        (admin, banner)
    }

    async fn logged_in(monitored: &Monitored) -> Admin {
        let (mut admin, banner) = Admin::connect(monitored).await;
        assert!(banner.starts_with("OK tunlab admin (lab)"), "{banner}");
        assert_eq!(admin.ask("ana:s3cret").await, ["OK Welcome ana"]);
        admin
    }

    /// One line, or None when the server has closed.
    async fn line(&mut self) -> Option<String> {
        let mut line = String::new();
        let n = within(
            "a line from the admin server",
            self.reader.read_line(&mut line),
        )
        .await
        .unwrap_or(0);
        (n > 0).then(|| line.trim_end_matches('\n').to_string())
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).await.unwrap();
    }

    /// Sends a line and reads the answer up to its last line (`OK …` or `ERR …`).
    async fn ask(&mut self, line: &str) -> Vec<String> {
        self.send(format!("{line}\r\n").as_bytes()).await;
        self.answer().await
    }

    async fn answer(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let line = self.line().await.expect("the answer's last line");
            let last = line.starts_with("OK ") || line.starts_with("ERR ");
            assert!(
                last || line.starts_with("OK-") || line.starts_with("ERR-"),
                "every line starts with OK or ERR: {line}"
            );
            lines.push(line);
            if last {
                return lines;
            }
        }
    }

    /// Whether the server closed the connection.
    async fn closed(&mut self) -> bool {
        self.line().await.is_none()
    }
}

fn stat(lines: &[String], key: &str) -> String {
    let prefix = format!("OK-{key} ");
    lines
        .iter()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {key} in {lines:?}"))
        .to_string()
}

#[tokio::test]
async fn every_admin_command_answers_from_the_lab() {
    let monitored = start(AdminLimits::default()).await;
    let lab = &monitored.lab;
    // One connection closed, one still open.
    let mut done = echo_client(lab, 1, 3000).await;
    done.shutdown().await.unwrap();
    let mut rest = Vec::new();
    within("the close", done.read_to_end(&mut rest))
        .await
        .unwrap();
    let open = echo_client(lab, 2, 5000).await;
    let client = open.local_addr().unwrap();
    // The first connection's close may still be on its way through proxy2 and the server.
    within("one connection open at each role", async {
        while [Role::Proxy1, Role::Proxy2, Role::EchoServer]
            .iter()
            .any(|r| monitored.conns.totals(*r).current != 1)
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let mut admin = Admin::logged_in(&monitored).await;

    let stats = admin.ask("STATS").await;
    assert_eq!(stats.last().unwrap(), "OK STATS");
    assert_eq!(stat(&stats, "monitored"), "lab");
    assert_eq!(stat(&stats, "proxy1_connections_total"), "2");
    assert_eq!(stat(&stats, "proxy1_connections_current"), "1");
    assert_eq!(stat(&stats, "server_connections_total"), "2");
    let snapshot = lab.snapshot();
    assert_eq!(
        stat(&stats, "proxy1_frames_sent"),
        snapshot.proxy1.sent.total().to_string()
    );
    assert_eq!(
        stat(&stats, "proxy2_bytes_received"),
        snapshot.proxy2.received_bytes.to_string()
    );
    assert_eq!(stat(&stats, "link_seed"), SEED.to_string());

    // The open connection at each role, with its peer, destination and bytes.
    let conns = admin.ask("CONNECTIONS").await;
    assert_eq!(conns.last().unwrap(), "OK 3 connections", "{conns:?}");
    let proxy1 = conns
        .iter()
        .find(|l| l.starts_with("OK-proxy1 "))
        .expect("proxy1's row");
    assert!(proxy1.contains("state=open"), "{proxy1}");
    assert!(proxy1.contains(&format!("peer={client}")), "{proxy1}");
    assert!(
        proxy1.contains(&format!("destination={}", lab.addrs().proxy2_udp)),
        "{proxy1}"
    );
    assert!(proxy1.contains("sent=5000 received=5000"), "{proxy1}");
    let proxy2 = conns.iter().find(|l| l.starts_with("OK-proxy2 ")).unwrap();
    assert!(
        proxy2.contains(&format!("destination={}", lab.addrs().server)),
        "{proxy2}"
    );
    let server = conns.iter().find(|l| l.starts_with("OK-server ")).unwrap();
    assert!(server.contains("sent=5000 received=5000"), "{server}");

    let users = admin.ask("USERS").await;
    assert_eq!(users.len(), 1);
    assert!(users[0].starts_with("OK 0 users"), "{users:?}");

    let log = admin.ask("ACCESS_LOG").await;
    assert_eq!(log.last().unwrap(), "OK 6 entries, all users", "{log:?}");
    assert!(
        log.iter()
            .filter(|l| l.starts_with("OK-"))
            .all(|l| l.ends_with(" user=anonymous SUCCESS")),
        "{log:?}"
    );
    assert_eq!(admin.ask("ACCESS_LOG ana").await, ["OK 0 entries for ana"]);

    let settings = admin.ask("CONFIG").await;
    assert!(
        settings.iter().any(|l| l == "OK-idle_timeout 5m"),
        "{settings:?}"
    );
    assert_eq!(
        admin.ask("CONFIG idle_timeout 30s").await,
        ["OK idle_timeout set to 30s"]
    );
    assert_eq!(
        lab.config().proxy1.idle_timeout.get(),
        Duration::from_secs(30)
    );
    assert_eq!(
        lab.config().proxy2.idle_timeout.get(),
        Duration::from_secs(30)
    );
    let answer = admin.ask("CONFIG delay_to_proxy1 20ms").await;
    assert!(
        answer[0].starts_with("OK delay set to 20ms (p2→p1)"),
        "{answer:?}"
    );
    assert_eq!(
        lab.link_settings().to_proxy1.delay,
        Duration::from_millis(20)
    );
    assert!(lab.link_settings().to_proxy2.delay.is_zero());
    let answer = admin.ask("CONFIG loss 150").await;
    assert!(
        answer[0].starts_with("ERR 150 is not a percentage"),
        "{answer:?}"
    );
    let answer = admin.ask("CONFIG colour red").await;
    assert!(
        answer[0].starts_with("ERR unknown parameter 'colour'"),
        "{answer:?}"
    );
    let answer = admin.ask("CONFIG loss").await;
    assert!(answer[0].starts_with("ERR usage: CONFIG"), "{answer:?}");

    let answer = admin.ask("FLY away").await;
    assert!(
        answer[0].starts_with("ERR unknown command 'FLY'"),
        "{answer:?}"
    );
    let help = admin.ask("help").await;
    assert_eq!(help.last().unwrap(), "OK HELP");

    assert_eq!(admin.ask("QUIT").await, ["OK Goodbye"]);
    assert!(admin.closed().await);
    drop(open);
    monitored.monitor.stop().await;
    monitored.lab.shutdown().await;
}

#[tokio::test]
async fn a_wrong_login_is_refused_and_closed() {
    let monitored = start(AdminLimits::default()).await;
    for login in ["ana:wrong", "eve:s3cret", "ana", "bob:s3cret"] {
        let (mut admin, _) = Admin::connect(&monitored).await;
        let answer = admin.ask(login).await;
        assert_eq!(answer, ["ERR invalid login: closing"], "{login}");
        assert!(admin.closed().await, "{login}");
    }
    // A command before logging in is a wrong login too.
    let (mut admin, _) = Admin::connect(&monitored).await;
    assert_eq!(admin.ask("STATS").await, ["ERR invalid login: closing"]);
    assert!(admin.closed().await);
    // The second user logs in.
    let (mut admin, _) = Admin::connect(&monitored).await;
    assert_eq!(admin.ask("bob:hunter2").await, ["OK Welcome bob"]);
    monitored.monitor.stop().await;
    monitored.lab.shutdown().await;
}

#[tokio::test]
async fn an_overlong_line_is_refused_and_closed() {
    let limits = AdminLimits {
        max_line: 64,
        ..AdminLimits::default()
    };
    let monitored = start(limits).await;
    // Before logging in.
    let (mut admin, _) = Admin::connect(&monitored).await;
    admin.send(&[b'A'; 100]).await;
    admin.send(b"\n").await;
    assert_eq!(
        admin.answer().await,
        ["ERR line too long (at most 64 bytes): closing"]
    );
    assert!(admin.closed().await);
    // After, and with no line end at all.
    let mut admin = Admin::logged_in(&monitored).await;
    let exactly = format!("ACCESS_LOG {}", "u".repeat(64 - "ACCESS_LOG ".len()));
    assert_eq!(exactly.len(), 64);
    assert_eq!(
        admin.ask(&exactly).await.last().unwrap(),
        &format!("OK 0 entries for {}", "u".repeat(53))
    );
    admin.send(&[b'S'; 1000]).await;
    assert_eq!(
        admin.answer().await,
        ["ERR line too long (at most 64 bytes): closing"]
    );
    assert!(admin.closed().await);
    monitored.monitor.stop().await;
    monitored.lab.shutdown().await;
}

#[tokio::test]
async fn sessions_are_bounded_in_number_and_idle_time() {
    let limits = AdminLimits {
        max_sessions: 2,
        idle: Duration::from_millis(300),
        ..AdminLimits::default()
    };
    let monitored = start(limits).await;
    let mut first = Admin::logged_in(&monitored).await;
    let (_second, banner) = Admin::connect(&monitored).await;
    assert!(banner.starts_with("OK "), "{banner}");
    let (mut third, refusal) = Admin::connect(&monitored).await;
    assert_eq!(
        refusal,
        "ERR too many admin sessions (at most 2): try again later"
    );
    assert!(third.closed().await);
    // A silent session is closed, with the reason.
    assert_eq!(
        first.line().await.as_deref(),
        Some("ERR idle for 300ms: closing")
    );
    assert!(first.closed().await);
    monitored.monitor.stop().await;
    monitored.lab.shutdown().await;
}

#[tokio::test]
async fn a_credential_is_needed_to_start_the_admin_protocol() {
    let monitored = start(AdminLimits::default()).await;
    let plan = MonitorPlan {
        admin: Some("127.0.0.1:0".parse().unwrap()),
        ..MonitorPlan::default()
    };
    let sources = MonitorSources::for_lab(&monitored.lab, monitored.conns.clone(), None);
    let err = Monitor::start(&plan, sources)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("needs at least one --admin-user"), "{err}");
    assert!("ana".parse::<Credential>().is_err());
    monitored.monitor.stop().await;
    monitored.lab.shutdown().await;
}

#[tokio::test]
async fn config_loss_50_changes_what_the_emulator_drops() {
    let monitored = start(AdminLimits::default()).await;
    let lab = &monitored.lab;
    // A connection open while the link is clear: nothing is dropped.
    let mut stream = echo_client(lab, 3, 2000).await;
    let clear = lab.snapshot().link;
    assert_eq!(clear.to_proxy2.dropped, 0);
    assert_eq!(clear.to_proxy1.dropped, 0);

    let mut admin = Admin::logged_in(&monitored).await;
    let answer = admin.ask("CONFIG loss 50").await;
    assert!(answer[0].starts_with("OK loss set to 50"), "{answer:?}");
    assert_eq!(lab.link_settings().to_proxy2.loss.get(), 50.0);

    // At least 40 full data frames now cross a lossy link (their echo may never come back).
    stream.write_all(&random_bytes(5, 40 * 1498)).await.unwrap();
    let lossy = within("the link to settle", async {
        loop {
            let before = lab.snapshot().link;
            tokio::time::sleep(Duration::from_millis(100)).await;
            let after = lab.snapshot().link;
            if before == after && after.to_proxy2.queued == 0 {
                return after;
            }
        }
    })
    .await;

    // Exactly the drops a decider with the lab's seed makes over the frames offered since
    // the change (a clear link draws nothing, so the decider starts fresh at the change).
    let settings = DirectionSettings {
        loss: Percent::new(50.0).unwrap(),
        ..DirectionSettings::default()
    };
    let offered = lossy.to_proxy2.sent - clear.to_proxy2.sent;
    assert!(offered >= 40, "only {offered} frames were offered");
    let mut decider = Decider::new(SEED, LinkDirection::ToProxy2);
    let expected = (0..offered)
        .filter(|_| decider.decide(&settings, 0..0).drop == Some(DropCause::Loss))
        .count() as u64;
    assert!(expected > 0);
    assert_eq!(lossy.to_proxy2.dropped_by.loss, expected);
    assert_eq!(lossy.to_proxy2.dropped, expected);
    assert_eq!(
        lossy.to_proxy2.delivered,
        clear.to_proxy2.delivered + offered - expected
    );

    // /metrics says the same.
    let (_, _, body) = http_get(monitored.monitor.metrics_addr().unwrap(), "/metrics").await;
    let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).unwrap();
    assert_eq!(
        value(
            &scrape,
            "tunlab_emulator_dropped_frames_total",
            &[("direction", "to_proxy2"), ("cause", "loss")]
        ),
        expected as f64
    );
    assert_eq!(
        value(
            &scrape,
            "tunlab_emulator_loss_ratio",
            &[("direction", "to_proxy2")]
        ),
        0.5
    );
    drop(stream);
    monitored.monitor.stop().await;
    monitored.lab.shutdown().await;
}

/// In a reliable mode over a lossy link, `/metrics` counts the retransmissions exactly as the
/// lab's transport totals do, by endpoint and cause.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retransmissions_in_a_reliable_mode_equal_the_transport_totals() {
    use tunlab::impair::settings::LinkSettings;
    use tunlab::transport::{RtoConfig, TransportConfig};
    use tunlab::wire::WireMode;
    let (events, mut rx) = EventSink::channel(64 * 1024);
    tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let conns = Arc::new(ConnTable::new());
    let events = events.with_observer(conns.clone());
    let mode = WireMode::SelectiveRepeat;
    let mut config = LabConfig {
        mode,
        link: LinkSettings::symmetric(DirectionSettings {
            loss: Percent::new(10.0).unwrap(),
            ..DirectionSettings::default()
        }),
        link_seed: Some(SEED),
        ..LabConfig::ephemeral()
    };
    let transport = TransportConfig {
        rto: RtoConfig::Fixed(Duration::from_millis(20)),
        ..TransportConfig::for_mode(mode)
    };
    config.proxy1.transport = Some(transport);
    config.proxy2.transport = Some(transport);
    config.proxy1.connect_attempts = 12;
    let lab = Lab::start(config, events).await.unwrap();
    let plan = MonitorPlan {
        metrics: Some("127.0.0.1:0".parse().unwrap()),
        admin: None,
        users: vec![],
        limits: AdminLimits::default(),
    };
    let sources = MonitorSources::for_lab(&lab, conns.clone(), None);
    let monitor = Monitor::start(&plan, sources).await.unwrap();
    let mut stream = TcpStream::connect(lab.addrs().proxy1_tcp).await.unwrap();
    let data = random_bytes(5, 256 * 1024);
    let echoed = within("the echo", echo_through(&mut stream, &data, usize::MAX)).await;
    assert_eq!(echoed, data);
    drop(stream);
    // Until the counters stop moving (acks and the close exchange finish).
    let snapshot = within("a quiet lab", async {
        loop {
            let before = lab.snapshot();
            tokio::time::sleep(Duration::from_millis(200)).await;
            let after = lab.snapshot();
            if before.proxy1 == after.proxy1 && before.proxy2 == after.proxy2 {
                return after;
            }
        }
    })
    .await;
    let (_, _, body) = http_get(monitor.metrics_addr().unwrap(), "/metrics").await;
    let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).unwrap();
    let mut total = 0.0;
    for (endpoint, stats) in [("proxy1", snapshot.proxy1), ("proxy2", snapshot.proxy2)] {
        for (cause, n) in [
            ("timeout", stats.transport.counts.retransmits_timeout),
            ("fast", stats.transport.counts.retransmits_fast),
        ] {
            let scraped = value(
                &scrape,
                "tunlab_retransmissions_total",
                &[("endpoint", endpoint), ("cause", cause)],
            );
            assert_eq!(scraped, n as f64, "{endpoint} {cause}");
            total += scraped;
        }
    }
    assert!(total > 0.0, "10% loss made the transports resend");
    lab.shutdown().await;
}

/// SOCKS5 clients at proxy1's SOCKS5 port: CONNECTIONS shows each one's destination as it
/// asked (a name) and its user at proxy1, the destination at proxy2 too; USERS lists who
/// logged in; `ACCESS_LOG` filters by user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socks5_connections_show_their_destination_and_user() {
    let mut config = LabConfig {
        mode: tunlab::wire::WireMode::SelectiveRepeat,
        socks5_port: Some(0),
        ..LabConfig::ephemeral()
    };
    config.proxy1.socks5.front.users = Arc::new(tunlab::roles::fronts::socks5::Socks5Users::new([
        "ana:pw".parse().unwrap(),
        "bo:pw".parse().unwrap(),
    ]));
    let monitored = start_with(config, AdminLimits::default()).await;
    let lab = &monitored.lab;
    let socks5 = lab.addrs().proxy1_socks5.unwrap();
    let server_port = lab.addrs().server.port();
    // ana asks for the echo server by name (localhost), and stays connected.
    let mut stream = TcpStream::connect(socks5).await.unwrap();
    let mut hello = vec![
        5, 1, 2, 1, 3, b'a', b'n', b'a', 2, b'p', b'w', 5, 1, 0, 3, 9,
    ];
    hello.extend_from_slice(b"localhost");
    hello.extend_from_slice(&server_port.to_be_bytes());
    stream.write_all(&hello).await.unwrap();
    let mut answer = [0u8; 2 + 2 + 10];
    within("the SOCKS5 replies", stream.read_exact(&mut answer))
        .await
        .unwrap();
    assert_eq!(&answer[..6], [5, 2, 1, 0, 5, 0], "logged in and connected");
    stream.write_all(b"hola").await.unwrap();
    let mut echo = [0u8; 4];
    within("the echo", stream.read_exact(&mut echo))
        .await
        .unwrap();
    let mut admin = Admin::logged_in(&monitored).await;
    let conns = admin.ask("CONNECTIONS").await;
    let destination = format!("destination=localhost:{server_port}");
    let proxy1 = conns
        .iter()
        .find(|l| l.starts_with("OK-proxy1 "))
        .expect("proxy1's row");
    assert!(proxy1.contains(&destination), "{proxy1}");
    assert!(proxy1.contains("user=ana"), "{proxy1}");
    let proxy2 = conns.iter().find(|l| l.starts_with("OK-proxy2 ")).unwrap();
    assert!(proxy2.contains(&destination), "{proxy2}");
    assert!(
        proxy2.contains("user=-"),
        "proxy2 does not know the user: {proxy2}"
    );
    assert_eq!(admin.ask("USERS").await, ["OK-ana", "OK 1 users"]);
    let log = admin.ask("ACCESS_LOG ana").await;
    assert!(
        log.iter().any(|l| l.contains("proxy1")
            && l.contains(&destination)
            && l.ends_with("user=ana SUCCESS")),
        "{log:?}"
    );
    drop(stream);
    monitored.monitor.stop().await;
    monitored.lab.shutdown().await;
}

/// A lab in a reliable `mode` over `loss`% each way, with `/metrics` on, and every
/// transport's final counters (`TransportStats` with `ended`) gathered from the event stream
/// by endpoint label.
async fn reliable_lab_with_metrics(
    mode: tunlab::wire::WireMode,
    loss: f64,
) -> (
    Lab,
    Monitor,
    Arc<ConnTable>,
    Arc<std::sync::Mutex<Vec<(String, u64)>>>,
) {
    use tunlab::event::EventKind;
    use tunlab::impair::settings::LinkSettings;
    use tunlab::transport::{RtoConfig, TransportConfig};
    let (events, mut rx) = EventSink::channel(64 * 1024);
    let ended = Arc::new(std::sync::Mutex::new(Vec::new()));
    let gathered = ended.clone();
    tokio::spawn(async move {
        while let Some(event) = rx.recv().await {
            if let EventKind::TransportStats {
                at,
                stats,
                ended: true,
                ..
            } = event.kind
            {
                gathered
                    .lock()
                    .unwrap()
                    .push((at.label().to_string(), stats.rtt_samples));
            }
        }
    });
    let conns = Arc::new(ConnTable::new());
    let events = events.with_observer(conns.clone());
    let mut config = LabConfig {
        mode,
        link: LinkSettings::symmetric(DirectionSettings {
            loss: Percent::new(loss).unwrap(),
            ..DirectionSettings::default()
        }),
        link_seed: Some(SEED),
        ..LabConfig::ephemeral()
    };
    let transport = TransportConfig {
        rto: RtoConfig::Fixed(Duration::from_millis(20)),
        max_timeouts: 50,
        ..TransportConfig::for_mode(mode)
    };
    config.proxy1.transport = Some(transport);
    config.proxy2.transport = Some(transport);
    config.proxy1.connect_attempts = 12;
    let lab = Lab::start(config, events).await.unwrap();
    let plan = MonitorPlan {
        metrics: Some("127.0.0.1:0".parse().unwrap()),
        admin: None,
        users: vec![],
        limits: AdminLimits::default(),
    };
    let sources = MonitorSources::for_lab(&lab, conns.clone(), None);
    let monitor = Monitor::start(&plan, sources).await.unwrap();
    (lab, monitor, conns, ended)
}

/// After echoes in `mode` over a lossy link, closed and quiet, `/metrics` has one RTT
/// histogram per endpoint whose count is the lab's own count of samples and the sum of every
/// transport's own count, with cumulative buckets and a plausible sum.
async fn rtt_histogram_counts_every_sample(mode: tunlab::wire::WireMode, loss: f64, len: usize) {
    let (lab, monitor, conns, ended) = reliable_lab_with_metrics(mode, loss).await;
    let clients = 3;
    for seed in 0..clients {
        let mut stream = TcpStream::connect(lab.addrs().proxy1_tcp).await.unwrap();
        let data = random_bytes(seed, len);
        let echoed = within("the echo", echo_through(&mut stream, &data, usize::MAX)).await;
        assert_eq!(echoed, data, "{mode:?}");
    }
    // Every connection closed at both proxies, and the counters still.
    let snapshot = within("a quiet lab", async {
        loop {
            let before = lab.snapshot();
            tokio::time::sleep(Duration::from_millis(200)).await;
            let after = lab.snapshot();
            let open = conns.totals(Role::Proxy1).current + conns.totals(Role::Proxy2).current;
            if open == 0 && before.proxy1 == after.proxy1 && before.proxy2 == after.proxy2 {
                return after;
            }
        }
    })
    .await;
    assert_eq!(
        snapshot.events_dropped, 0,
        "every TransportStats event seen"
    );
    let (_, _, body) = http_get(monitor.metrics_addr().unwrap(), "/metrics").await;
    assert!(
        body.contains("# TYPE tunlab_rtt_seconds histogram"),
        "{body}"
    );
    let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).unwrap();
    let untyped = |metric: &str, endpoint: &str| -> f64 {
        let sample = scrape
            .samples
            .iter()
            .find(|s| s.metric == metric && s.labels.get("endpoint") == Some(endpoint))
            .unwrap_or_else(|| panic!("no {metric} for {endpoint}"));
        match sample.value {
            prometheus_parse::Value::Untyped(v) => v,
            ref other => panic!("{metric} is {other:?}"),
        }
    };
    for (endpoint, stats) in [("proxy1", snapshot.proxy1), ("proxy2", snapshot.proxy2)] {
        let buckets = scrape
            .samples
            .iter()
            .find_map(|s| match &s.value {
                prometheus_parse::Value::Histogram(buckets)
                    if s.metric == "tunlab_rtt_seconds"
                        && s.labels.get("endpoint") == Some(endpoint) =>
                {
                    Some(buckets.clone())
                }
                _ => None,
            })
            .unwrap_or_else(|| panic!("no tunlab_rtt_seconds histogram for {endpoint}"));
        let count = untyped("tunlab_rtt_seconds_count", endpoint);
        let sum = untyped("tunlab_rtt_seconds_sum", endpoint);
        let lab_count = stats.transport.rtt.count();
        // Each transport's own count of the samples its timer took, summed over connections.
        let transports: u64 = ended
            .lock()
            .unwrap()
            .iter()
            .filter(|(at, _)| at == endpoint)
            .map(|(_, n)| n)
            .sum();
        assert!(count > 0.0, "{mode:?} {endpoint}: no RTT sample");
        assert_eq!(
            count, lab_count as f64,
            "{mode:?} {endpoint}: the lab's count"
        );
        assert_eq!(
            count, transports as f64,
            "{mode:?} {endpoint}: the transports' count"
        );
        // Cumulative: bounds ascend, counts never fall, +Inf holds them all.
        assert!(
            buckets
                .windows(2)
                .all(|w| w[0].less_than < w[1].less_than && w[0].count <= w[1].count),
            "{mode:?} {endpoint}: {buckets:?}"
        );
        let last = buckets.last().unwrap();
        assert!(last.less_than.is_infinite(), "{buckets:?}");
        assert_eq!(last.count, count, "{mode:?} {endpoint}: +Inf is the count");
        assert_eq!(buckets.first().unwrap().less_than, 0.0001);
        let largest_bound = buckets[buckets.len() - 2].less_than;
        assert_eq!(largest_bound, 10.0);
        assert!(
            sum > 0.0 && sum < count * largest_bound,
            "{mode:?} {endpoint}: sum {sum} s over {count} samples"
        );
        assert_eq!(sum, stats.transport.rtt.sum.as_secs_f64(), "{endpoint}");
    }
    monitor.stop().await;
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtt_histogram_in_selective_repeat_counts_every_sample() {
    rtt_histogram_counts_every_sample(tunlab::wire::WireMode::SelectiveRepeat, 10.0, 128 * 1024)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtt_histogram_in_stop_and_wait_counts_every_sample() {
    rtt_histogram_counts_every_sample(tunlab::wire::WireMode::StopAndWait, 5.0, 16 * 1024).await;
}

/// Classic mode has no acks: the histogram is there, empty, and its HELP says why.
#[tokio::test]
async fn rtt_histogram_is_empty_in_classic_mode() {
    let monitored = start(AdminLimits::default()).await;
    let stream = echo_client(&monitored.lab, 1, 4000).await;
    let (_, _, body) = http_get(monitored.monitor.metrics_addr().unwrap(), "/metrics").await;
    assert!(
        body.contains("Classic mode has no acks, so no samples."),
        "{body}"
    );
    for endpoint in ["proxy1", "proxy2"] {
        let line = format!("tunlab_rtt_seconds_count{{endpoint=\"{endpoint}\"}} 0");
        assert!(body.lines().any(|l| l == line), "{line} in {body}");
    }
    drop(stream);
    monitored.monitor.stop().await;
    monitored.lab.shutdown().await;
}

/// One scrape of `/metrics`, parsed.
async fn scrape(addr: std::net::SocketAddr) -> prometheus_parse::Scrape {
    let (status, _, body) = http_get(addr, "/metrics").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capture_ring_waits_and_refused_frames_are_on_metrics() {
    use tunlab::capture::{CaptureFormat, CapturePlan, CaptureTarget, CaptureWriter};

    let dir = tempfile::tempdir().unwrap();
    let (events, mut rx) = EventSink::channel(64 * 1024);
    tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let mut capture_plan = CapturePlan::new(
        CaptureTarget::Dir(dir.path().to_path_buf()),
        CaptureFormat::Pcap,
        "metrics test",
        Role::Proxy1,
    );
    // Halves of one record each: the second frame of a burst finds the filling half full
    // and waits for the writer (which lets frames gather for 10 ms before it takes a half).
    capture_plan.queue = 2;
    let capture = CaptureWriter::start(capture_plan, events.clone()).unwrap();
    let status = capture.status();
    let conns = Arc::new(ConnTable::new());
    let config = LabConfig {
        link_seed: Some(SEED),
        capture: Some(capture.tap()),
        ..LabConfig::ephemeral()
    };
    let lab = Lab::start(config, events.with_observer(conns.clone()))
        .await
        .unwrap();
    let plan = MonitorPlan {
        metrics: Some("127.0.0.1:0".parse().unwrap()),
        admin: None,
        users: vec![],
        limits: AdminLimits::default(),
    };
    let sources = MonitorSources::for_lab(&lab, conns.clone(), Some(status.clone()));
    let monitor = Monitor::start(&plan, sources).await.unwrap();
    let monitored = Monitored {
        lab,
        monitor,
        conns,
    };
    let addr = monitored.monitor.metrics_addr().unwrap();

    let stream = echo_client(&monitored.lab, 1, 256 * 1024).await;
    drop(stream);
    quiet(&monitored).await;
    let scraped = scrape(addr).await;
    let waits = status.tap_waits();
    assert!(waits > 0, "a burst through one-record halves waited");
    assert_eq!(
        value(&scraped, "tunlab_capture_tap_waits_total", &[]),
        waits as f64
    );
    assert_eq!(
        value(&scraped, "tunlab_capture_refused_frames_total", &[]),
        0.0
    );

    // The writer stops while the lab still runs: what the link sends now is refused.
    let summary = capture.finish().await;
    assert!(summary.frames > 0);
    let stream = echo_client(&monitored.lab, 2, 4 * 1024).await;
    drop(stream);
    quiet(&monitored).await;
    let refused = status.refused();
    assert!(refused > 0, "frames after the writer stopped were refused");
    let scraped = scrape(addr).await;
    assert_eq!(
        value(&scraped, "tunlab_capture_refused_frames_total", &[]),
        refused as f64
    );
    assert_eq!(
        value(&scraped, "tunlab_capture_frames_written_total", &[]),
        summary.frames as f64,
        "nothing more was written after the finish"
    );
    monitored.lab.shutdown().await;
}
