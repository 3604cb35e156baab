//! `--access-log FILE`: one JSON line per connection (when, who, where to, bytes each way,
//! how long, how it ended), appended to FILE. Lines go through a channel to a thread of
//! their own, so a slow disk never holds up a connection; each line is one `write` to a file
//! opened for appending, so the file is complete up to the last line at any moment.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

/// One connection, as the access log writes it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AccessRecord {
    /// When the client connected (RFC 3339, UTC, milliseconds).
    pub time: String,
    /// The client's address.
    pub client: SocketAddr,
    /// Who logged in, or the name a failed login gave; null without authentication.
    pub user: Option<String>,
    /// The destination as the client asked for it (`example.org:80`, `[::1]:22`); null if
    /// the handshake ended before the request.
    pub destination: Option<String>,
    /// The address actually reached (a name's resolved address).
    pub address: Option<SocketAddr>,
    /// Bytes from the client to the destination.
    pub bytes_up: u64,
    /// Bytes from the destination to the client.
    pub bytes_down: u64,
    /// From the accept to the close.
    pub duration_ms: u64,
    /// `ok` (connected and relayed), `refused` (the destination was not opened; see
    /// `reason`) or `rejected` (the handshake failed; see `reason`).
    pub result: AccessResult,
    /// For `refused`, the SOCKS5 reason (`not-allowed`, `connection-refused`…); for
    /// `rejected`, what failed (`auth-failed`, `handshake-timeout`, `bad-request`…).
    pub reason: Option<String>,
    /// A sentence for people: the rule that matched, the addresses tried, the socket error.
    pub detail: Option<String>,
}

/// How a connection ended, for [`AccessRecord::result`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessResult {
    Ok,
    Refused,
    Rejected,
}

impl AccessRecord {
    /// A record for a client from `client`, accepted at `started`, that nothing happened to
    /// yet; fill in the rest as the connection goes.
    pub fn new(client: SocketAddr, started: SystemTime) -> Self {
        AccessRecord {
            time: humantime::format_rfc3339_millis(started).to_string(),
            client,
            user: None,
            destination: None,
            address: None,
            bytes_up: 0,
            bytes_down: 0,
            duration_ms: 0,
            result: AccessResult::Rejected,
            reason: None,
            detail: None,
        }
    }

    /// Sets the duration from how long the connection lasted.
    pub fn lasted(&mut self, duration: Duration) {
        self.duration_ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
    }

    /// One line for a person: `ana 127.0.0.1:5555 → example.org:80 (93.184.215.14:80): ok, 75 B up, 1.2 kB down, 120 ms`.
    pub fn describe(&self) -> String {
        let user = self.user.as_deref().unwrap_or("-");
        let destination = self.destination.as_deref().unwrap_or("?");
        let address = match self.address {
            Some(addr) if Some(addr.to_string().as_str()) != self.destination.as_deref() => {
                format!(" ({addr})")
            }
            _ => String::new(),
        };
        let outcome = match (self.result, &self.reason) {
            (AccessResult::Ok, _) => "ok".to_string(),
            (AccessResult::Refused, Some(reason)) => format!("refused ({reason})"),
            (AccessResult::Rejected, Some(reason)) => format!("rejected ({reason})"),
            (result, None) => format!("{result:?}").to_lowercase(),
        };
        let detail = self
            .detail
            .as_deref()
            .map(|d| format!(": {d}"))
            .unwrap_or_default();
        format!(
            "{user} {} → {destination}{address}: {outcome}, {} B up, {} B down, {} ms{detail}",
            self.client, self.bytes_up, self.bytes_down, self.duration_ms
        )
    }
}

/// The access log file and its writer thread. Hand [`AccessLog::writer`]s to the tasks,
/// and call [`AccessLog::finish`] once they are done.
#[derive(Debug)]
pub struct AccessLog {
    path: PathBuf,
    writer: AccessLogWriter,
    thread: JoinHandle<()>,
}

/// A handle that records connections; cheap to clone, never blocks.
#[derive(Clone, Debug)]
pub struct AccessLogWriter {
    tx: mpsc::Sender<String>,
    counts: Arc<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    written: AtomicU64,
    failed: AtomicU64,
}

impl AccessLog {
    /// Opens `path` for appending (created if missing) and starts the writer thread.
    pub fn open(path: &Path) -> io::Result<AccessLog> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let (tx, rx) = mpsc::channel::<String>();
        let counts = Arc::new(Counts::default());
        let thread_counts = counts.clone();
        let shown = path.display().to_string();
        let thread = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || write_lines(file, rx, &thread_counts, &shown))?;
        Ok(AccessLog {
            path: path.to_path_buf(),
            writer: AccessLogWriter { tx, counts },
            thread,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A handle for a task that records connections.
    pub fn writer(&self) -> AccessLogWriter {
        self.writer.clone()
    }

    /// Waits until every line recorded so far is written, and returns how many were. Writers
    /// still held elsewhere (a role's configuration) need not be dropped: a line recorded
    /// after this is counted as failed, never written.
    pub fn finish(self) -> u64 {
        let counts = self.writer.counts.clone();
        // An empty line is the end: every line sent before it is written first.
        let _ = self.writer.tx.send(String::new());
        drop(self.writer);
        let _ = self.thread.join();
        counts.written.load(Ordering::Relaxed)
    }
}

impl AccessLogWriter {
    /// Queues `record` for the file.
    pub fn record(&self, record: &AccessRecord) {
        match serde_json::to_string(record) {
            Ok(mut line) => {
                line.push('\n');
                if self.tx.send(line).is_err() {
                    self.counts.failed.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(_) => {
                self.counts.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Lines written so far.
    pub fn written(&self) -> u64 {
        self.counts.written.load(Ordering::Relaxed)
    }

    /// Lines that could not be written.
    pub fn failed(&self) -> u64 {
        self.counts.failed.load(Ordering::Relaxed)
    }
}

fn write_lines(mut file: File, rx: mpsc::Receiver<String>, counts: &Counts, path: &str) {
    let mut warned = false;
    for line in rx {
        if line.is_empty() {
            // AccessLog::finish: nothing more is written.
            return;
        }
        // One write per line on an O_APPEND file: nothing sits in a buffer, and lines of
        // two processes appending to one file never interleave.
        match file.write_all(line.as_bytes()) {
            Ok(()) => {
                counts.written.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                counts.failed.fetch_add(1, Ordering::Relaxed);
                if !warned {
                    eprintln!(
                        "error: cannot write the access log {path}: {e} (further errors are counted, not shown)"
                    );
                    warned = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_appended_as_json_one_per_connection() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        std::fs::write(&path, "{\"earlier\":true}\n").unwrap();
        let log = AccessLog::open(&path).unwrap();
        let writer = log.writer();
        let mut record =
            AccessRecord::new("127.0.0.1:5000".parse().unwrap(), SystemTime::UNIX_EPOCH);
        record.user = Some("ana".into());
        record.destination = Some("localhost:80".into());
        record.address = Some("127.0.0.1:80".parse().unwrap());
        record.bytes_up = 75;
        record.bytes_down = 1200;
        record.lasted(Duration::from_millis(120));
        record.result = AccessResult::Ok;
        writer.record(&record);
        record.result = AccessResult::Refused;
        record.reason = Some("not-allowed".into());
        writer.record(&record);
        drop(writer);
        assert_eq!(log.finish(), 2);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "appended after what was there");
        assert_eq!(
            lines[1],
            r#"{"time":"1970-01-01T00:00:00.000Z","client":"127.0.0.1:5000","user":"ana","destination":"localhost:80","address":"127.0.0.1:80","bytes_up":75,"bytes_down":1200,"duration_ms":120,"result":"ok","reason":null,"detail":null}"#
        );
        let back: AccessRecord = serde_json::from_str(lines[2]).unwrap();
        assert_eq!(back, record);
    }

    #[test]
    fn describe_reads_as_a_sentence() {
        let mut record =
            AccessRecord::new("127.0.0.1:5000".parse().unwrap(), SystemTime::UNIX_EPOCH);
        record.destination = Some("localhost:7777".into());
        record.result = AccessResult::Refused;
        record.reason = Some("not-allowed".into());
        record.detail = Some("denied by --deny port=7777".into());
        assert_eq!(
            record.describe(),
            "- 127.0.0.1:5000 → localhost:7777: refused (not-allowed), 0 B up, 0 B down, 0 ms: denied by --deny port=7777"
        );
    }

    #[test]
    fn an_unwritable_path_is_an_error_at_open() {
        let dir = tempfile::tempdir().unwrap();
        assert!(AccessLog::open(&dir.path().join("no/such/dir/log")).is_err());
    }
}
