//! The admin protocol's server: logins, bounded sessions, and the commands of
//! [`protocol`] answered from [`answers`].
//!
//! Bounds: a line is at most [`AdminLimits::max_line`] bytes (a longer one is answered with
//! `ERR` and the session is closed: there is no telling where the next command would start),
//! at most [`AdminLimits::max_sessions`] sessions at once (one more is told so and closed),
//! and a session silent for [`AdminLimits::idle`] is closed.

pub mod answers;
pub mod protocol;

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::MonitorSources;
use crate::event::Level;
use crate::secret::same_bytes;
use crate::tasks::Tasks;
use protocol::{AdminContext, Session};

/// How an admin session is bounded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdminLimits {
    /// The longest line accepted, in bytes, without its line end.
    pub max_line: usize,
    /// Sessions served at once.
    pub max_sessions: usize,
    /// A session that sends nothing for this long is closed.
    pub idle: Duration,
}

impl Default for AdminLimits {
    fn default() -> Self {
        AdminLimits {
            max_line: 512,
            max_sessions: 8,
            idle: Duration::from_mins(5),
        }
    }
}

/// One `NAME:PASS` allowed to log in. Its `Debug` hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    name: String,
    password: String,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credential({}:***)", self.name)
    }
}

impl FromStr for Credential {
    type Err = String;
    /// `NAME:PASS`: the name 1 to 255 of `a-z A-Z 0-9 _` (like the protocol's names), the
    /// password 1 to 255 printable characters without spaces (it may contain `:`).
    fn from_str(text: &str) -> Result<Credential, String> {
        let Some((name, password)) = text.split_once(':') else {
            return Err("give a user as NAME:PASS".to_string());
        };
        if name.is_empty()
            || name.len() > protocol::MAX_TOKEN
            || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(format!(
                "'{name}' is not a user name: 1 to 255 of a-z A-Z 0-9 _"
            ));
        }
        if password.is_empty()
            || password.len() > 255
            || !password.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(format!(
                "the password of '{name}' must be 1 to 255 printable characters without spaces"
            ));
        }
        Ok(Credential {
            name: name.to_string(),
            password: password.to_string(),
        })
    }
}

impl Credential {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The user a `NAME:PASS` line logs in as, if any. Every credential is compared, each in
    /// time that does not depend on where the bytes differ, so timing tells nothing about a
    /// name or a password (only about the longest one's length).
    pub fn check(line: &str, users: &[Credential]) -> Option<String> {
        let (name, password) = line.split_once(':')?;
        let mut found = None;
        for user in users {
            let matches = same_bytes(name.as_bytes(), user.name.as_bytes())
                & same_bytes(password.as_bytes(), user.password.as_bytes());
            if matches {
                found = Some(user.name.clone());
            }
        }
        found
    }
}

/// Serves the admin protocol until `stop`, one task per session in `tasks`.
pub async fn serve(
    listener: TcpListener,
    sources: MonitorSources,
    users: Vec<Credential>,
    limits: AdminLimits,
    stop: CancellationToken,
    tasks: Tasks,
) {
    let sessions = Arc::new(Semaphore::new(limits.max_sessions));
    let users: Arc<[Credential]> = users.into();
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (mut stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(turn) = sessions.clone().try_acquire_owned() else {
            // Told why, without waiting on the client: a short write to a fresh socket.
            tasks.spawn("admin refusal", async move {
                let line = format!(
                    "ERR too many admin sessions (at most {}): try again later\n",
                    limits.max_sessions
                );
                let _ =
                    tokio::time::timeout(Duration::from_secs(1), stream.write_all(line.as_bytes()))
                        .await;
            });
            continue;
        };
        let sources = sources.clone();
        let users = users.clone();
        let stop = stop.clone();
        tasks.spawn("admin session", async move {
            tokio::select! {
                () = stop.cancelled() => {}
                () = session(stream, peer, &sources, &users, limits) => {}
            }
            drop(turn);
        });
    }
}

/// What reading one line gave.
enum Read {
    Line(String),
    TooLong,
    NotText,
    Closed,
}

/// Reads one line of at most `max` bytes (plus its `\n` or `\r\n`).
async fn read_line<R: AsyncBufReadExt + Unpin>(reader: &mut R, max: usize) -> Read {
    let mut bytes = Vec::new();
    let mut limited = (&mut *reader).take(max as u64 + 2);
    match limited.read_until(b'\n', &mut bytes).await {
        Ok(0) | Err(_) => return Read::Closed,
        Ok(_) => {}
    }
    if bytes.last() != Some(&b'\n') {
        // Cut by the limit, or the peer closed mid-line.
        return if bytes.len() > max {
            Read::TooLong
        } else {
            Read::Closed
        };
    }
    bytes.pop();
    if bytes.last() == Some(&b'\r') {
        bytes.pop();
    }
    if bytes.len() > max {
        return Read::TooLong;
    }
    match String::from_utf8(bytes) {
        Ok(line) => Read::Line(line),
        Err(_) => Read::NotText,
    }
}

async fn session(
    stream: TcpStream,
    peer: SocketAddr,
    sources: &MonitorSources,
    users: &[Credential],
    limits: AdminLimits,
) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut session = Session::new();
    let send = |lines: Vec<String>| {
        let mut text = lines.join("\n");
        text.push('\n');
        text
    };
    let banner = send(vec![protocol::banner(sources.name())]);
    if write.write_all(banner.as_bytes()).await.is_err() {
        return;
    }
    loop {
        let read = tokio::time::timeout(limits.idle, read_line(&mut reader, limits.max_line)).await;
        let answer = match read {
            Err(_) => protocol::Answer {
                lines: vec![format!(
                    "ERR idle for {}: closing",
                    humantime::format_duration(limits.idle)
                )],
                close: true,
            },
            Ok(Read::Closed) => break,
            Ok(Read::TooLong) => protocol::Answer {
                lines: vec![format!(
                    "ERR line too long (at most {} bytes): closing",
                    limits.max_line
                )],
                close: true,
            },
            Ok(Read::NotText) => protocol::Answer::err("not UTF-8 text"),
            Ok(Read::Line(line)) => {
                let before = session.user().is_some();
                let answer = session.on_line(&line, users, sources);
                match (before, session.user()) {
                    (false, Some(user)) => sources.events.log(
                        Level::Info,
                        sources.log_role,
                        format!("admin: {user} logged in from {peer}"),
                    ),
                    (false, None) => sources.events.log(
                        Level::Warn,
                        sources.log_role,
                        format!("admin: failed login from {peer}"),
                    ),
                    _ => {}
                }
                answer
            }
        };
        let text = send(answer.lines);
        if write.write_all(text.as_bytes()).await.is_err() || answer.close {
            break;
        }
    }
    let _ = write.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_parse_and_hide_the_password() {
        let user: Credential = "alice:s3:cret".parse().unwrap();
        assert_eq!(user.name(), "alice");
        assert_eq!(format!("{user:?}"), "Credential(alice:***)");
        assert!("alice".parse::<Credential>().is_err());
        assert!(":pw".parse::<Credential>().is_err());
        assert!("al ice:pw".parse::<Credential>().is_err());
        assert!("alice:".parse::<Credential>().is_err());
        assert!("alice:pass word".parse::<Credential>().is_err());
    }

    #[test]
    fn a_login_must_match_name_and_password() {
        let users: Vec<Credential> = vec![
            "alice:secret".parse().unwrap(),
            "bob:other".parse().unwrap(),
        ];
        assert_eq!(
            Credential::check("bob:other", &users).as_deref(),
            Some("bob")
        );
        assert_eq!(Credential::check("bob:secret", &users), None);
        assert_eq!(Credential::check("alice:secre", &users), None);
        assert_eq!(Credential::check("alice:secret!", &users), None);
        assert_eq!(Credential::check("alicesecret", &users), None);
        assert!(same_bytes(b"", b""));
        assert!(!same_bytes(b"a", b""));
    }
}
