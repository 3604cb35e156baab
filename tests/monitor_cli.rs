//! The real `tunlab` binary: echo-server, proxy2 and proxy1 as separate processes with
//! `--metrics` and `--admin`, scraped over HTTP, and `tunlab monitor` driven through a pipe
//! against a real admin server, the way a script would use it.

// Unsafe is allowed here, and only here: signals to child processes (libc::kill): the pids are
// our own children.
#![allow(unsafe_code)]

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

const PATIENCE: Duration = Duration::from_secs(30);

/// A `tunlab` child whose stderr lines are collected as they come.
struct Process {
    child: Child,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Process {
    fn start(args: &[&str]) -> Process {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tunlab"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("tunlab starts");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let collected = stderr.clone();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                collected.lock().unwrap().push(line);
            }
        });
        Process { child, stderr }
    }

    /// The address in the first stderr line that starts with `prefix`, up to the next space
    /// or `/` (waits for it, bounded).
    async fn addr_after(&self, prefix: &str) -> SocketAddr {
        tokio::time::timeout(PATIENCE, async {
            loop {
                let found = self.stderr.lock().unwrap().iter().find_map(|line| {
                    let at = line.find(prefix)? + prefix.len();
                    let rest = &line[at..];
                    let end = rest.find([' ', '/', ';']).unwrap_or(rest.len());
                    rest[..end].parse::<SocketAddr>().ok()
                });
                if let Some(addr) = found {
                    return addr;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .unwrap_or_else(|_| {
            panic!(
                "no '{prefix}ADDR' line; stderr: {:?}",
                self.stderr.lock().unwrap()
            )
        })
    }

    /// SIGTERM, and a clean exit.
    async fn stop(mut self) {
        let pid = self.child.id().expect("still running") as libc::pid_t;
        // SAFETY: a plain kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        let status = tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .expect("tunlab exits after SIGTERM")
            .unwrap();
        assert!(
            status.success(),
            "{status:?}; stderr: {:?}",
            self.stderr.lock().unwrap()
        );
    }
}

async fn scrape(addr: SocketAddr) -> prometheus_parse::Scrape {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: tunlab\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    tokio::time::timeout(PATIENCE, stream.read_to_string(&mut response))
        .await
        .expect("a response")
        .unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    let (_, body) = response.split_once("\r\n\r\n").unwrap();
    prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).unwrap()
}

fn value(scrape: &prometheus_parse::Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    let sample = scrape
        .samples
        .iter()
        .find(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .unwrap_or_else(|| panic!("no {metric}{labels:?}"));
    match sample.value {
        prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v) => v,
        ref other => panic!("{metric}: {other:?}"),
    }
}

/// Runs `tunlab monitor HOST PORT` with `input` on its stdin; its exit success and stdout.
async fn monitor(addr: SocketAddr, input: &str) -> (bool, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tunlab"))
        .args(["monitor", &addr.ip().to_string(), &addr.port().to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).await.unwrap();
    drop(stdin);
    let output = tokio::time::timeout(PATIENCE, child.wait_with_output())
        .await
        .expect("tunlab monitor ends")
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.is_empty() || !output.status.success(), "{stderr}");
    (output.status.success(), stdout)
}

#[tokio::test]
async fn standalone_roles_serve_metrics_and_admin_and_tunlab_monitor_talks_to_them() {
    let admin_flags = ["--metrics", "0", "--admin", "0", "--admin-user", "ana:pw"];
    let server = Process::start(&[&["echo-server", "0"][..], &admin_flags].concat());
    let server_addr = server.addr_after("server up on ").await;
    let server_port = server_addr.port().to_string();
    let proxy2 = Process::start(
        &[
            &["proxy2", "0", "127.0.0.1", &server_port][..],
            &admin_flags,
        ]
        .concat(),
    );
    let proxy2_addr = proxy2.addr_after("proxy2 up on ").await;
    let proxy2_port = proxy2_addr.port().to_string();
    let proxy1 = Process::start(&["proxy1", "0", "127.0.0.1", &proxy2_port, "--metrics", "0"]);
    let proxy1_addr = proxy1.addr_after("proxy1 up on ").await;

    // One echo through the tunnel, then the client closes.
    let mut client = TcpStream::connect(proxy1_addr).await.unwrap();
    client.write_all(b"hola\n").await.unwrap();
    let mut echo = [0u8; 5];
    tokio::time::timeout(PATIENCE, client.read_exact(&mut echo))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&echo, b"hola\n");

    let proxy1_metrics = scrape(proxy1.addr_after("metrics on http://").await).await;
    let sent_c = [
        ("endpoint", "proxy1"),
        ("direction", "sent"),
        ("type", "connect"),
    ];
    assert_eq!(value(&proxy1_metrics, "tunlab_frames_total", &sent_c), 1.0);
    assert_eq!(
        value(
            &proxy1_metrics,
            "tunlab_connections_total",
            &[("role", "proxy1")]
        ),
        1.0
    );
    let proxy2_metrics = scrape(proxy2.addr_after("metrics on http://").await).await;
    let received_d = [
        ("endpoint", "proxy2"),
        ("direction", "received"),
        ("type", "data"),
    ];
    assert_eq!(
        value(&proxy2_metrics, "tunlab_frames_total", &received_d),
        1.0
    );
    let server_metrics = scrape(server.addr_after("metrics on http://").await).await;
    assert_eq!(
        value(
            &server_metrics,
            "tunlab_connections_open",
            &[("role", "server")]
        ),
        1.0
    );

    // The admin protocol of proxy2, through the interactive client fed by a pipe.
    let admin = proxy2.addr_after("admin protocol on ").await;
    let (ok, out) = monitor(
        admin,
        "ana:pw\nSTATS\nCONNECTIONS\nCONFIG loss_to_proxy1 100\nCONFIG nonsense 1\nQUIT\n",
    )
    .await;
    assert!(ok, "{out}");
    for expected in [
        "tunlab admin (proxy2): log in with NAME:PASS",
        "Welcome ana",
        "proxy2_connections_total 1",
        "proxy2_connections_current 1",
        "1 connections",
        "loss set to 100 (p2→p1)",
        "error: unknown parameter 'nonsense'",
        "Goodbye",
    ] {
        assert!(out.contains(expected), "no '{expected}' in:\n{out}");
    }
    let proxy2_metrics = scrape(proxy2.addr_after("metrics on http://").await).await;
    assert_eq!(
        value(
            &proxy2_metrics,
            "tunlab_emulator_loss_ratio",
            &[("direction", "to_proxy1")]
        ),
        1.0
    );
    // Everything proxy2 sends is lost now: the next echo never comes back.
    client.write_all(b"lost\n").await.unwrap();
    let lost = tokio::time::timeout(PATIENCE, async {
        loop {
            let scrape = scrape(proxy2.addr_after("metrics on http://").await).await;
            let dropped = value(
                &scrape,
                "tunlab_emulator_dropped_frames_total",
                &[("direction", "to_proxy1"), ("cause", "loss")],
            );
            if dropped > 0.0 {
                return dropped;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("proxy2's emulator drops what it sends");
    assert_eq!(lost, 1.0);

    // A wrong login: the client says so and fails.
    let (ok, out) = monitor(admin, "ana:nope\nSTATS\n").await;
    assert!(!ok);
    assert!(out.contains("error: invalid login"), "{out}");

    drop(client);
    proxy1.stop().await;
    proxy2.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn the_admin_protocol_will_not_start_without_a_user() {
    let output = Command::new(env!("CARGO_BIN_EXE_tunlab"))
        .args(["echo-server", "0", "--admin", "0"])
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--admin-user <NAME:PASS>"), "{stderr}");

    let output = Command::new(env!("CARGO_BIN_EXE_tunlab"))
        .args([
            "echo-server",
            "0",
            "--admin",
            "0",
            "--admin-user",
            "no password",
        ])
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("give a user as NAME:PASS"), "{stderr}");
}

#[tokio::test]
async fn a_headless_scenario_serves_metrics_while_it_runs() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("monitored.toml");
    std::fs::write(
        &scenario,
        r#"
name = "monitored"
deadline = "60s"

[lab]
ports = "auto"
clients = 2

[[step]]
send = "hola mundo"

[[step]]
wait_for = "echoes"

# Time for a scrape; the test ends the run with SIGTERM.
[[step]]
wait = "50s"
"#,
    )
    .unwrap();
    let report = dir.path().join("report.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_tunlab"))
        .arg("--script")
        .arg(&scenario)
        .arg("--report")
        .arg(&report)
        .args(["--metrics", "0"])
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let metrics: SocketAddr = tokio::time::timeout(PATIENCE, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.strip_prefix("metrics on http://") {
                return rest.trim_end_matches("/metrics").parse().unwrap();
            }
        }
        panic!("the run ended without a metrics line");
    })
    .await
    .expect("a metrics line");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    // Both echoes came back: proxy1 received two D frames.
    let echoed = [
        ("endpoint", "proxy1"),
        ("direction", "received"),
        ("type", "data"),
    ];
    let scraped = tokio::time::timeout(PATIENCE, async {
        loop {
            let scraped = scrape(metrics).await;
            if value(&scraped, "tunlab_frames_total", &echoed) == 2.0 {
                return scraped;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the echoes in /metrics");

    let pid = child.id().unwrap() as libc::pid_t;
    // SAFETY: a plain kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    tokio::time::timeout(PATIENCE, child.wait())
        .await
        .expect("the run ends after SIGTERM")
        .unwrap();
    // The report's exact counters, taken after the signal, equal what was scraped.
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    for direction in ["to_proxy2", "to_proxy1"] {
        let labels = [("direction", direction)];
        assert_eq!(
            value(&scraped, "tunlab_emulator_offered_frames_total", &labels),
            report["link"][direction]["sent"].as_f64().unwrap(),
            "{direction}"
        );
        assert_eq!(
            value(
                &scraped,
                "tunlab_emulator_delivered_datagrams_total",
                &labels
            ),
            report["link"][direction]["delivered"].as_f64().unwrap(),
            "{direction}"
        );
    }
    assert_eq!(
        value(&scraped, "tunlab_connections_open", &[("role", "proxy1")]),
        2.0
    );
}
