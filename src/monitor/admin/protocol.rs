//! The admin protocol's session as a state machine without I/O: a line in, the answer's
//! lines out (and whether to close). The server in [`super`] does the reading and writing.
//!
//! The protocol is the SOCKS5 project's (seed 004): a text protocol over TCP, one command per
//! line, commands and parameter names made of `a-z A-Z 0-9 _`, 1 to 255 characters.
//!
//! ```text
//! S: OK tunlab admin (proxy1): log in with NAME:PASS
//! C: alice:secret
//! S: OK Welcome alice                      (a wrong login: ERR …, and the server closes)
//! C: STATS
//! S: OK-uptime_seconds 12                  (OK- : more lines follow)
//! S: OK-proxy1_connections_total 3
//! S: OK STATS                              (OK  : the answer's last line)
//! C: CONFIG loss 50
//! S: OK loss set to 50% (p1→p2 and p2→p1)
//! C: QUIT
//! S: OK Goodbye
//! ```
//!
//! Every line of an answer starts with `OK` or `ERR`. Like SMTP's multi-line replies, a `-`
//! right after it means more lines follow and a space marks the last line, so a client knows
//! where each answer ends without a length or a blank line.

use super::Credential;

/// What a session needs from the monitored lab or role.
pub trait AdminContext {
    /// `lab`, `proxy1`, …, for the banner.
    fn name(&self) -> &str;
    /// `key value` lines: uptime, connections, bytes, frames, errors.
    fn stats(&self) -> Vec<String>;
    /// One line per open connection.
    fn connections(&self) -> Vec<String>;
    /// SOCKS5 users seen (logged in at proxy1's SOCKS5 port).
    fn users(&self) -> Vec<String>;
    /// Recent connections, oldest first; only `user`'s when given.
    fn access_log(&self, user: Option<&str>) -> Vec<String>;
    /// The settings `CONFIG` can change, with their values now.
    fn settings(&self) -> Vec<String>;
    /// Changes one setting for `user`; the message says what it is now, or why not.
    fn config(&self, param: &str, value: &str, user: &str) -> Result<String, String>;
}

/// One answer: its lines (without line ends), and whether the server closes afterwards.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub lines: Vec<String>,
    pub close: bool,
}

impl Answer {
    /// An `OK` answer: `body` lines as `OK-…`, then `OK last`.
    pub fn ok(body: Vec<String>, last: impl Into<String>) -> Answer {
        Answer {
            lines: framed("OK", body, last.into()),
            close: false,
        }
    }

    /// A one-line `ERR` answer.
    pub fn err(message: impl Into<String>) -> Answer {
        Answer {
            lines: vec![format!("ERR {}", message.into())],
            close: false,
        }
    }

    fn closing(mut self) -> Answer {
        self.close = true;
        self
    }
}

fn framed(status: &str, body: Vec<String>, last: String) -> Vec<String> {
    let mut lines: Vec<String> = body
        .into_iter()
        .map(|line| format!("{status}-{line}"))
        .collect();
    lines.push(format!("{status} {last}"));
    lines
}

/// Whether a line is an answer's last (`OK …`, `ERR …`, or a bare `OK`/`ERR`).
pub fn is_last_line(line: &str) -> bool {
    ["OK", "ERR"].iter().any(|status| {
        line.strip_prefix(status)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(' '))
    })
}

/// The first line a client sees.
pub fn banner(name: &str) -> String {
    format!("OK tunlab admin ({name}): log in with NAME:PASS")
}

/// The longest command or parameter name (the seed's bound).
pub const MAX_TOKEN: usize = 255;

/// What the commands are, for `HELP` and for unknown commands.
pub const COMMANDS: &str =
    "STATS, CONNECTIONS, USERS, ACCESS_LOG [USER], CONFIG [PARAM VALUE], HELP, QUIT";

/// One connection's state: before and after login.
#[derive(Debug, Default)]
pub struct Session {
    user: Option<String>,
}

impl Session {
    pub fn new() -> Self {
        Session::default()
    }

    /// Who logged in, once someone has.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// Answers one line (without its line end).
    pub fn on_line(
        &mut self,
        line: &str,
        users: &[Credential],
        context: &dyn AdminContext,
    ) -> Answer {
        let Some(user) = &self.user else {
            return match Credential::check(line, users) {
                Some(name) => {
                    let welcome = Answer::ok(vec![], format!("Welcome {name}"));
                    self.user = Some(name);
                    welcome
                }
                None => Answer::err("invalid login: closing").closing(),
            };
        };
        let user = user.clone();
        let words: Vec<&str> = line.split_ascii_whitespace().collect();
        let Some((command, args)) = words.split_first() else {
            return Answer::err(format!("empty line: send a command ({COMMANDS})"));
        };
        if let Some(bad) = words
            .iter()
            .take(if command.eq_ignore_ascii_case("CONFIG") {
                2
            } else {
                words.len()
            })
            .find(|word| !is_token(word))
        {
            return Answer::err(format!(
                "'{}' is not a name: commands and parameters are 1 to {MAX_TOKEN} of a-z A-Z 0-9 _",
                shorten(bad)
            ));
        }
        let command = command.to_ascii_uppercase();
        let usage = |form: &str| Answer::err(format!("usage: {form}"));
        match (command.as_str(), args) {
            ("STATS", []) => Answer::ok(context.stats(), "STATS"),
            ("STATS", _) => usage("STATS"),
            ("CONNECTIONS", []) => {
                let rows = context.connections();
                let n = rows.len();
                Answer::ok(rows, format!("{n} connections"))
            }
            ("CONNECTIONS", _) => usage("CONNECTIONS"),
            ("USERS", []) => {
                let users = context.users();
                let n = users.len();
                let last = if n == 0 {
                    "0 users (SOCKS5 users appear here once they log in at proxy1's --socks5 port)"
                        .to_string()
                } else {
                    format!("{n} users")
                };
                Answer::ok(users, last)
            }
            ("USERS", _) => usage("USERS"),
            ("ACCESS_LOG", []) => {
                let entries = context.access_log(None);
                let n = entries.len();
                Answer::ok(entries, format!("{n} entries, all users"))
            }
            ("ACCESS_LOG", [who]) => {
                let entries = context.access_log(Some(who));
                let n = entries.len();
                Answer::ok(entries, format!("{n} entries for {who}"))
            }
            ("ACCESS_LOG", _) => usage("ACCESS_LOG [USER]"),
            ("CONFIG", []) => Answer::ok(context.settings(), "CONFIG"),
            ("CONFIG", [param, value]) => match context.config(param, value, &user) {
                Ok(message) => Answer::ok(vec![], message),
                Err(message) => Answer::err(message),
            },
            ("CONFIG", _) => usage("CONFIG PARAM VALUE (CONFIG alone lists them)"),
            ("HELP", _) => Answer::ok(
                vec![
                    "STATS                uptime, connections, bytes, frames, errors".into(),
                    "CONNECTIONS          the connections open now".into(),
                    "USERS                SOCKS5 users seen".into(),
                    "ACCESS_LOG [USER]    recent connections (of one user)".into(),
                    "CONFIG               the settings CONFIG can change, and their values".into(),
                    "CONFIG PARAM VALUE   change one (e.g. CONFIG loss 50, CONFIG idle_timeout 30s)"
                        .into(),
                    "QUIT                 end the session".into(),
                ],
                "HELP",
            ),
            ("QUIT", _) => Answer::ok(vec![], "Goodbye").closing(),
            _ => Answer::err(format!(
                "unknown command '{}' (commands: {COMMANDS})",
                shorten(&command)
            )),
        }
    }
}

/// Whether `word` is a command or parameter name: 1 to 255 of `a-z A-Z 0-9 _`.
fn is_token(word: &str) -> bool {
    (1..=MAX_TOKEN).contains(&word.len())
        && word.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// At most 40 characters of something a client sent, for an error message.
fn shorten(text: &str) -> String {
    if text.chars().count() <= 40 {
        text.to_string()
    } else {
        let mut short: String = text.chars().take(39).collect();
        short.push('…');
        short
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake;

    impl AdminContext for Fake {
        fn name(&self) -> &'static str {
            "fake"
        }
        fn stats(&self) -> Vec<String> {
            vec!["uptime_seconds 1".into()]
        }
        fn connections(&self) -> Vec<String> {
            vec!["a".into(), "b".into()]
        }
        fn users(&self) -> Vec<String> {
            vec![]
        }
        fn access_log(&self, user: Option<&str>) -> Vec<String> {
            match user {
                None => vec!["one".into()],
                Some(_) => vec![],
            }
        }
        fn settings(&self) -> Vec<String> {
            vec!["loss 0%".into()]
        }
        fn config(&self, param: &str, value: &str, _user: &str) -> Result<String, String> {
            if param == "loss" {
                Ok(format!("loss set to {value}"))
            } else {
                Err(format!("unknown parameter '{param}'"))
            }
        }
    }

    fn logged_in() -> (Session, Vec<Credential>) {
        let users = vec!["alice:secret".parse().unwrap()];
        let mut session = Session::new();
        let answer = session.on_line("alice:secret", &users, &Fake);
        assert_eq!(answer.lines, ["OK Welcome alice"]);
        (session, users)
    }

    #[test]
    fn a_wrong_login_closes() {
        let users: Vec<Credential> = vec!["alice:secret".parse().unwrap()];
        for line in ["alice:wrong", "bob:secret", "alice", "", "alice:secret2"] {
            let answer = Session::new().on_line(line, &users, &Fake);
            assert!(answer.close, "{line}");
            assert!(answer.lines[0].starts_with("ERR "), "{line}");
        }
    }

    #[test]
    fn multi_line_answers_end_with_a_space_after_the_status() {
        let (mut session, users) = logged_in();
        let answer = session.on_line("connections", &users, &Fake);
        assert_eq!(answer.lines, ["OK-a", "OK-b", "OK 2 connections"]);
        assert!(!is_last_line(&answer.lines[0]));
        assert!(is_last_line(&answer.lines[2]));
        assert!(is_last_line("ERR x") && is_last_line("OK") && !is_last_line("OKAY"));
    }

    #[test]
    fn commands_check_their_arguments() {
        let (mut session, users) = logged_in();
        let mut ask = |line: &str| session.on_line(line, &users, &Fake).lines;
        assert_eq!(ask("STATS"), ["OK-uptime_seconds 1", "OK STATS"]);
        assert!(ask("STATS now")[0].starts_with("ERR usage: STATS"));
        assert_eq!(ask("ACCESS_LOG"), ["OK-one", "OK 1 entries, all users"]);
        assert_eq!(ask("ACCESS_LOG bob"), ["OK 0 entries for bob"]);
        assert!(ask("USERS")[0].starts_with("OK 0 users"));
        assert_eq!(ask("CONFIG loss 50%"), ["OK loss set to 50%"]);
        assert_eq!(ask("CONFIG color red"), ["ERR unknown parameter 'color'"]);
        assert!(ask("CONFIG loss")[0].starts_with("ERR usage: CONFIG"));
        assert!(ask("FLY")[0].starts_with("ERR unknown command 'FLY'"));
        assert!(ask("ST-ATS")[0].contains("is not a name"));
        assert!(ask("")[0].starts_with("ERR empty line"));
        let quit = session.on_line("QUIT", &users, &Fake);
        assert_eq!(quit.lines, ["OK Goodbye"]);
        assert!(quit.close);
    }
}
