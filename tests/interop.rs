//! Byte compatibility with an independent Python implementation of the classic protocol
//! (`tests/python/classic_proxies.py)`: our proxy2 serves their proxy1, our proxy1 talks to
//! their proxy2. Every piece runs as its own process, the way students swap them in.
//! Without python3 (found by build.rs) the tests that need it are marked ignored, "needs
//! python3"; `TUNLAB_REQUIRE_PYTHON3=1` (as in CI) makes a missing python3 a build error.

mod common;

use std::process::Stdio;

use common::*;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// A child process that is killed when the test ends, pass or fail.
struct Running {
    child: Child,
    port: u16,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Starts one of our roles on port 0 and reads the port it got from its "… up on ADDR" line.
async fn tunlab(args: &[&str]) -> Running {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tunlab"))
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start tunlab");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let port = within("tunlab to report its address", async {
        loop {
            let line = lines
                .next_line()
                .await
                .unwrap()
                .expect("tunlab exited early");
            if let Some((_, addr)) = line.split_once(" up on ") {
                return addr.rsplit(':').next().unwrap().parse::<u16>().unwrap();
            }
        }
    })
    .await;
    // Keep draining its log so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Running { child, port }
}

/// python3, which the build script found (`has_python3`), or the test would be ignored.
fn python() -> Option<&'static str> {
    let found = std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(found, "python3 does not run (it was there at build time)");
    Some("python3")
}

async fn python_proxy(python: &str, args: &[&str]) -> Running {
    python_script(python, "classic_proxies.py", args).await
}

/// Starts one of the independent Python proxies in tests/python.
async fn python_script(python: &str, script: &str, args: &[&str]) -> Running {
    let script = format!("{}/tests/python/{script}", env!("CARGO_MANIFEST_DIR"));
    let mut child = Command::new(python)
        .arg(&script)
        .args(args)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the python proxy");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = within("the python proxy to listen", lines.next_line())
        .await
        .unwrap()
        .expect("python proxy exited");
    let port = line
        .strip_prefix("listening ")
        .expect("listening line")
        .parse()
        .unwrap();
    Running { child, port }
}

/// Three clients at once, each echoing 200 KiB of binary data through `proxy1_port`.
async fn echo_three_clients(proxy1_port: u16) {
    let clients: Vec<_> = (0..3u64)
        .map(|seed| {
            tokio::spawn(async move {
                let data = random_bytes(100 + seed, 200 * 1024);
                let mut stream = TcpStream::connect(("127.0.0.1", proxy1_port))
                    .await
                    .unwrap();
                let echoed = echo_through(&mut stream, &data, 16 * 1024).await;
                assert!(echoed == data, "echo through the mixed tunnel differs");
            })
        })
        .collect();
    for client in clients {
        within("an echo through the mixed tunnel", client)
            .await
            .unwrap();
    }
}

#[tokio::test]
#[cfg_attr(not(has_python3), ignore = "needs python3")]
async fn python_proxy1_through_our_proxy2() {
    let Some(python) = python() else { return };
    let server = tunlab(&["echo-server", "0"]).await;
    let proxy2 = tunlab(&["proxy2", "0", "127.0.0.1", &server.port.to_string()]).await;
    let proxy1 = python_proxy(
        python,
        &["proxy1", "0", "127.0.0.1", &proxy2.port.to_string()],
    )
    .await;
    echo_three_clients(proxy1.port).await;
}

#[tokio::test]
#[cfg_attr(not(has_python3), ignore = "needs python3")]
async fn our_proxy1_through_python_proxy2() {
    let Some(python) = python() else { return };
    let server = tunlab(&["echo-server", "0"]).await;
    let proxy2 = python_proxy(
        python,
        &["proxy2", "0", "127.0.0.1", &server.port.to_string()],
    )
    .await;
    let proxy1 = tunlab(&["proxy1", "0", "localhost", &proxy2.port.to_string()]).await;
    echo_three_clients(proxy1.port).await;
}

#[tokio::test]
async fn the_echo_client_subcommand_prints_each_lines_echo() {
    let server = tunlab(&["echo-server", "0"]).await;
    let proxy2 = tunlab(&["proxy2", "0", "127.0.0.1", &server.port.to_string()]).await;
    let proxy1 = tunlab(&["proxy1", "0", "127.0.0.1", &proxy2.port.to_string()]).await;
    let mut client = Command::new(env!("CARGO_BIN_EXE_tunlab"))
        .args(["echo-client", "127.0.0.1", &proxy1.port.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = client.stdin.take().unwrap();
    stdin
        .write_all("hola mundo\nsegunda línea\n".as_bytes())
        .await
        .unwrap();
    drop(stdin); // end of input: the client closes with a FIN and exits
    let mut out = String::new();
    within(
        "the client's output",
        client.stdout.take().unwrap().read_to_string(&mut out),
    )
    .await
    .unwrap();
    let status = within("the client to exit", client.wait()).await.unwrap();
    assert!(status.success());
    assert_eq!(out, "hola mundo\nsegunda línea\n");
}

/// Three clients at once, each echoing `len` bytes of text (the course's stop-and-wait peers
/// decode every datagram as text) through `proxy1_port`.
async fn echo_three_text_clients(proxy1_port: u16, len: usize) {
    let clients: Vec<_> = (0..3u8)
        .map(|n| {
            tokio::spawn(async move {
                let data: Vec<u8> = (0..len)
                    .map(|i| b'a' + ((i + usize::from(n)) % 26) as u8)
                    .collect();
                let mut stream = TcpStream::connect(("127.0.0.1", proxy1_port))
                    .await
                    .unwrap();
                let echoed = echo_through(&mut stream, &data, 4096).await;
                assert!(
                    echoed == data,
                    "echo through the mixed stop-and-wait tunnel differs"
                );
            })
        })
        .collect();
    for client in clients {
        within("an echo through the mixed stop-and-wait tunnel", client)
            .await
            .unwrap();
    }
}

/// Our stop-and-wait proxy2 serves the independent Python stop-and-wait proxy1, which loses
/// `loss` percent of the D and A frames it sends. (Our emulator stays off here: it would also
/// drop the course peer's `C` or our `OK`, which a course proxy1 sends once and never again.)
async fn python_saw_proxy1_through_our_proxy2(loss: &str) {
    let Some(python) = python() else { return };
    let server = tunlab(&["echo-server", "0"]).await;
    let proxy2 = tunlab(&[
        "proxy2",
        "0",
        "127.0.0.1",
        &server.port.to_string(),
        "--wire",
        "stop-and-wait",
        "--rto",
        "50ms",
    ])
    .await;
    let proxy1 = python_script(
        python,
        "stop_and_wait_proxies.py",
        &[
            "proxy1",
            "0",
            "127.0.0.1",
            &proxy2.port.to_string(),
            loss,
            "0.05",
        ],
    )
    .await;
    echo_three_text_clients(proxy1.port, 20 * 1024).await;
}

/// Our stop-and-wait proxy1 through the independent Python stop-and-wait proxy2, with `loss`
/// percent lost each way: the Python side loses D and A frames it sends, our emulator any
/// frame proxy1 sends (it re-sends C, so a lost C only costs time).
async fn our_saw_proxy1_through_python_proxy2(loss: &str) {
    let Some(python) = python() else { return };
    let server = tunlab(&["echo-server", "0"]).await;
    let proxy2 = python_script(
        python,
        "stop_and_wait_proxies.py",
        &[
            "proxy2",
            "0",
            "127.0.0.1",
            &server.port.to_string(),
            loss,
            "0.05",
        ],
    )
    .await;
    let proxy1 = tunlab(&[
        "proxy1",
        "0",
        "127.0.0.1",
        &proxy2.port.to_string(),
        "--wire",
        "stop-and-wait",
        "--rto",
        "50ms",
        "--loss-to-proxy2",
        loss,
    ])
    .await;
    echo_three_text_clients(proxy1.port, 20 * 1024).await;
}

#[tokio::test]
async fn stop_and_wait_python_proxy1_through_our_proxy2_clean_link() {
    python_saw_proxy1_through_our_proxy2("0").await;
}

#[tokio::test]
async fn stop_and_wait_python_proxy1_through_our_proxy2_at_twenty_percent_loss() {
    python_saw_proxy1_through_our_proxy2("20").await;
}

#[tokio::test]
async fn stop_and_wait_our_proxy1_through_python_proxy2_clean_link() {
    our_saw_proxy1_through_python_proxy2("0").await;
}

#[tokio::test]
async fn stop_and_wait_our_proxy1_through_python_proxy2_at_twenty_percent_loss() {
    our_saw_proxy1_through_python_proxy2("20").await;
}
