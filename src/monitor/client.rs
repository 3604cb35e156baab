//! `tunlab monitor HOST PORT`: an interactive client for the admin protocol, like the seed's
//! `monitor_client`. It asks for `NAME:PASS`, then reads commands with line editing and a
//! history (↑↓, kept for the session), sends each, and prints its answer without the
//! `OK`/`ERR` framing. With stdin not a terminal it reads plain lines, so it can be scripted.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

use rustyline::DefaultEditor;
use rustyline::error::ReadlineError;

use super::admin::protocol::is_last_line;

/// How long to wait for the server to connect and to answer.
const TIMEOUT: Duration = Duration::from_secs(10);

/// One answer as the client shows it.
#[derive(Debug, PartialEq, Eq)]
struct Shown {
    ok: bool,
    text: Vec<String>,
}

/// Reads one answer (up to its last line). `None` when the server closed first.
fn read_answer(reader: &mut impl BufRead) -> std::io::Result<Option<Shown>> {
    let mut text = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        let line = line.trim_end_matches(['\r', '\n']).to_string();
        let ok = line.starts_with("OK");
        let body = line
            .strip_prefix("OK")
            .or_else(|| line.strip_prefix("ERR"))
            .map(|rest| rest.strip_prefix(['-', ' ']).unwrap_or(rest))
            .unwrap_or(&line);
        if is_last_line(&line) {
            if !body.is_empty() {
                text.push(if ok {
                    body.to_string()
                } else {
                    format!("error: {body}")
                });
            }
            return Ok(Some(Shown { ok, text }));
        }
        text.push(body.to_string());
    }
}

fn print(shown: &Shown) {
    let mut out = std::io::stdout().lock();
    for line in &shown.text {
        let _ = writeln!(out, "{line}");
    }
}

/// Runs the client until QUIT, end of input, or the server closing.
pub fn run(host: &str, port: u16) -> anyhow::Result<ExitCode> {
    let addrs: Vec<_> = (host, port)
        .to_socket_addrs()
        .map_err(|e| anyhow::anyhow!("cannot resolve host '{host}': {e}"))?
        .collect();
    let stream = addrs
        .iter()
        .find_map(|addr| TcpStream::connect_timeout(addr, TIMEOUT).ok())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "cannot connect to the admin protocol at {host}:{port} (is the role running with --admin?)"
            )
        })?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let Some(banner) = read_answer(&mut reader)? else {
        anyhow::bail!("the server at {host}:{port} closed without a banner");
    };
    print(&banner);
    if !banner.ok {
        return Ok(ExitCode::FAILURE);
    }
    let mut editor = DefaultEditor::new()?;
    let login = match editor.readline("NAME:PASS> ") {
        Ok(line) => line,
        Err(ReadlineError::Eof | ReadlineError::Interrupted) => return Ok(ExitCode::FAILURE),
        Err(e) => return Err(e.into()),
    };
    writeln!(writer, "{}", login.trim())?;
    match read_answer(&mut reader)? {
        Some(answer) if answer.ok => print(&answer),
        Some(answer) => {
            print(&answer);
            return Ok(ExitCode::FAILURE);
        }
        None => anyhow::bail!("the server closed the connection"),
    }
    println!("Type commands and press Enter (HELP lists them, QUIT leaves).");
    loop {
        let line = match editor.readline("monitor> ") {
            Ok(line) => line,
            // End of input or Ctrl-C: leave politely.
            Err(ReadlineError::Eof | ReadlineError::Interrupted) => "QUIT".to_string(),
            Err(e) => return Err(e.into()),
        };
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let _ = editor.add_history_entry(line);
        writeln!(writer, "{line}")?;
        let Some(answer) = read_answer(&mut reader)? else {
            println!("the server closed the connection");
            return Ok(ExitCode::FAILURE);
        };
        print(&answer);
        if line.eq_ignore_ascii_case("QUIT") {
            println!("Disconnected from the admin server");
            return Ok(ExitCode::SUCCESS);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_to_their_last_line_without_framing() {
        let mut input = "OK-a 1\nOK-b 2\nOK STATS\nERR bad\n".as_bytes();
        let shown = read_answer(&mut input).unwrap().unwrap();
        assert_eq!(
            shown,
            Shown {
                ok: true,
                text: vec!["a 1".into(), "b 2".into(), "STATS".into()]
            }
        );
        let shown = read_answer(&mut input).unwrap().unwrap();
        assert_eq!(
            shown,
            Shown {
                ok: false,
                text: vec!["error: bad".into()]
            }
        );
        assert_eq!(read_answer(&mut input).unwrap(), None);
    }
}
