//! Child processes for the tests that run the real binary (and the course's Python
//! proxies): started, their output collected, stopped by a signal.

// Unsafe is allowed here, and only here: signals to child processes (libc::kill) and their exit
// status: the pids are our own children.
#![allow(unsafe_code)]

use std::process::Stdio;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::{PATIENCE, within};

/// A `tunlab` or Python child process whose stderr (or stdout) lines are collected.
pub struct Process {
    pub child: Child,
    pub lines: Arc<Mutex<Vec<String>>>,
    reader: tokio::task::JoinHandle<()>,
    pub port: u16,
}

impl Process {
    /// Starts `tunlab ARGS` and waits for its "… up on ADDR" line.
    pub async fn tunlab(args: &[&str]) -> Process {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tunlab"));
        command
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        Process::start(
            command,
            |child| child.stderr.take().map(box_reader),
            |line| {
                line.split_once(" up on ")
                    .map(|(_, addr)| addr.rsplit(':').next().unwrap().parse().unwrap())
            },
        )
        .await
    }

    /// Starts `tests/python/classic_proxies.py` with ARGS and waits for its "listening PORT".
    pub async fn python(args: &[&str]) -> Process {
        let found = std::process::Command::new("python3")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(found, "python3 does not run (it was there at build time)");
        let script = format!(
            "{}/tests/python/classic_proxies.py",
            env!("CARGO_MANIFEST_DIR")
        );
        let mut command = Command::new("python3");
        command.arg(script).args(args).stdout(Stdio::piped());
        Process::start(
            command,
            |child| child.stdout.take().map(box_reader),
            |line| line.strip_prefix("listening ").map(|p| p.parse().unwrap()),
        )
        .await
    }

    async fn start(
        mut command: Command,
        output: impl FnOnce(&mut Child) -> Option<BoxedReader>,
        port_in: impl Fn(&str) -> Option<u16> + Send + 'static,
    ) -> Process {
        let mut child = command
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start the process");
        let mut reader = BufReader::new(output(&mut child).unwrap()).lines();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let collected = lines.clone();
        let (port_tx, mut port_rx) = tokio::sync::mpsc::unbounded_channel();
        let reader = tokio::spawn(async move {
            while let Ok(Some(line)) = reader.next_line().await {
                if let Some(port) = port_in(&line) {
                    let _ = port_tx.send(port);
                }
                collected.lock().unwrap().push(line);
            }
        });
        let port = tokio::time::timeout(PATIENCE, port_rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no address line; output: {:?}", lines.lock().unwrap()))
            .unwrap_or_else(|| panic!("exited early; output: {:?}", lines.lock().unwrap()));
        Process {
            child,
            lines,
            reader,
            port,
        }
    }

    /// SIGTERM, then every line it wrote (it must exit cleanly).
    pub async fn stop(mut self) -> Vec<String> {
        let pid = self.child.id().expect("still running") as libc::pid_t;
        // SAFETY: a plain kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0, "kill");
        let status = within("the process to exit", self.child.wait())
            .await
            .unwrap();
        within("its output to end", &mut self.reader).await.unwrap();
        let lines = self.lines.lock().unwrap().clone();
        assert!(status.success(), "exit {status}; output: {lines:?}");
        lines
    }
    /// SIGKILL: the process dies at once, saying and sending nothing more.
    pub async fn kill(mut self) {
        self.child.start_kill().expect("kill");
        within("the process to die", self.child.wait())
            .await
            .unwrap();
    }

    /// Whether a line it wrote so far contains `text`.
    pub fn said(&self, text: &str) -> bool {
        self.lines.lock().unwrap().iter().any(|l| l.contains(text))
    }
}

pub type BoxedReader = std::pin::Pin<Box<dyn tokio::io::AsyncRead + Send>>;

fn box_reader(reader: impl tokio::io::AsyncRead + Send + 'static) -> BoxedReader {
    Box::pin(reader)
}
