//! `tunlab --no-tui`: the real binary serves headless until a signal, clients from outside get
//! their echo through the tunnel, and the capture holds every frame the lab counted, even when
//! the signal comes in the middle of a flood.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

/// A headless lab process, its stderr lines collected as they come.
struct HeadlessLab {
    child: Child,
    proxy1: SocketAddr,
    stderr: mpsc::Receiver<String>,
}

impl HeadlessLab {
    /// Starts `tunlab --no-tui` on ephemeral ports and waits for the line naming proxy1.
    /// Runs in `cwd`, where the default `captures/` directory would go.
    fn start(extra: &[&str], cwd: &Path) -> HeadlessLab {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tunlab"))
            .current_dir(cwd)
            .args(["--no-tui", "--server-port", "0", "--proxy1-port", "0"])
            .args(["--proxy2-port", "0"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tunlab starts");
        let (tx, stderr) = mpsc::channel();
        let lines = BufReader::new(child.stderr.take().unwrap()).lines();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let proxy1 = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = stderr
                .recv_timeout(left)
                .expect("tunlab says where proxy1 listens within 30 s");
            if let Some(rest) = line.split("clients connect to proxy1 at ").nth(1) {
                let addr = rest.split_whitespace().next().unwrap();
                break addr.parse().unwrap();
            }
        };
        HeadlessLab {
            child,
            proxy1,
            stderr,
        }
    }

    /// Sends `signal`, waits (bounded) for the exit, and returns its code and stdout.
    fn stop_with(mut self, signal: libc::c_int) -> (Option<i32>, String, Vec<String>) {
        // SAFETY: kill(2) on our own child's pid.
        #[allow(unsafe_code)]
        let sent = unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        assert_eq!(sent, 0);
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("tunlab --no-tui did not stop within 30 s of the signal");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stdout = String::new();
        self.child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut stdout)
            .unwrap();
        let stderr = self.stderr.try_iter().collect();
        (status.code(), stdout, stderr)
    }
}

/// `<what> N` → N, from a line of the closing totals.
fn number_before(text: &str, what: &str) -> u64 {
    let at = text
        .find(what)
        .unwrap_or_else(|| panic!("no '{what}' in {text:?}"));
    text[..at]
        .split_whitespace()
        .last()
        .unwrap()
        .parse()
        .unwrap()
}

fn pcap_packets(path: &Path) -> u64 {
    let file = std::fs::File::open(path).unwrap();
    let mut reader = pcap_file::pcap::PcapReader::new(file).unwrap();
    let mut packets = 0;
    while let Some(packet) = reader.next_packet() {
        packet.expect("every packet reads cleanly to the end of the file");
        packets += 1;
    }
    packets
}

/// Sends `bytes` through the tunnel and reads the echo back.
fn echo(proxy1: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(proxy1).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let writer = {
        let mut stream = stream.try_clone().unwrap();
        let bytes = bytes.to_vec();
        std::thread::spawn(move || stream.write_all(&bytes).unwrap())
    };
    let mut back = vec![0; bytes.len()];
    stream.read_exact(&mut back).unwrap();
    writer.join().unwrap();
    back
}

#[test]
fn no_tui_serves_clients_until_sigint_and_the_capture_holds_every_frame() {
    let dir = tempfile::tempdir().unwrap();
    let lab = HeadlessLab::start(&[], dir.path());

    // A client from outside the lab: text, then binary larger than one frame.
    assert_eq!(echo(lab.proxy1, b"hola\n"), b"hola\n");
    let binary: Vec<u8> = (0..20_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    assert_eq!(echo(lab.proxy1, &binary), binary);

    // A flood from three clients, still running when the signal arrives.
    let stop = Arc::new(AtomicBool::new(false));
    let echoed = Arc::new(AtomicU64::new(0));
    let flooders: Vec<_> = (0..3)
        .map(|_| {
            let (stop, echoed, proxy1) = (stop.clone(), echoed.clone(), lab.proxy1);
            std::thread::spawn(move || {
                let mut stream = TcpStream::connect(proxy1).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(2)))
                    .unwrap();
                let chunk = [0x5a; 4096];
                let mut back = [0; 4096];
                // Bounded: at most 2,000 round trips of 4 KiB each.
                for _ in 0..2_000 {
                    if stop.load(Ordering::Relaxed) || stream.write_all(&chunk).is_err() {
                        return;
                    }
                    match stream.read(&mut back) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => echoed.fetch_add(n as u64, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    let flowing = Instant::now() + Duration::from_secs(20);
    while echoed.load(Ordering::Relaxed) < 256 * 1024 && Instant::now() < flowing {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        echoed.load(Ordering::Relaxed) >= 256 * 1024,
        "the flood is flowing"
    );

    let (code, stdout, stderr) = lab.stop_with(libc::SIGINT);
    stop.store(true, Ordering::Relaxed);
    for flooder in flooders {
        flooder.join().unwrap();
    }
    assert_eq!(code, Some(0), "stdout: {stdout}\nstderr: {stderr:?}");
    assert!(
        stderr
            .iter()
            .any(|l| l.contains("connection 0") && l.contains("open")),
        "connections are logged on stderr: {stderr:?}"
    );
    // Every task of the lab ended within the grace period (none is named as left running).
    assert!(
        !stderr.iter().any(|l| l.contains("without waiting for")),
        "{stderr:?}"
    );

    // Every frame the lab's exact counters saw is in the file, which reads to its end.
    let counted = number_before(&stdout, "frames on the link");
    let written = number_before(&stdout, "frames written to");
    let path = stdout
        .lines()
        .find_map(|l| l.split("frames written to ").nth(1))
        .unwrap();
    assert!(counted > 100, "traffic crossed the link: {stdout}");
    assert_eq!(written, counted, "{stdout}");
    assert_eq!(pcap_packets(&dir.path().join(path.trim())), counted);
}

#[test]
fn no_tui_without_capture_stops_on_sigterm_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let lab = HeadlessLab::start(&["--no-capture"], dir.path());
    assert_eq!(echo(lab.proxy1, b"adios\n"), b"adios\n");
    let (code, stdout, _) = lab.stop_with(libc::SIGTERM);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(
        stdout.contains("0 clients;"),
        "no lab clients headless: {stdout}"
    );
    assert!(!stdout.contains("capture:"), "{stdout}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn no_tui_refuses_a_script() {
    let run = Command::new(env!("CARGO_BIN_EXE_tunlab"))
        .args(["--no-tui", "--script", "x.toml"])
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("cannot be used with"), "{stderr}");
}
