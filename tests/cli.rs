//! The command line as a person meets it: help texts (pinned by snapshots so a change to them
//! is a reviewed change) and clear errors for bad input.

use clap::CommandFactory;
use std::process::{Command, Output};
use tunlab::cli::Cli;

fn help_of(path: &[&str]) -> String {
    let mut command = Cli::command().term_width(100);
    command.build();
    let mut target = &mut command;
    for name in path {
        target = target.find_subcommand_mut(name).expect("subcommand exists");
    }
    target.render_long_help().to_string()
}

#[test]
fn help_texts_are_pinned() {
    insta::assert_snapshot!("help", help_of(&[]));
    for sub in [
        "echo-server",
        "proxy2",
        "proxy1",
        "echo-client",
        "monitor",
        "socks5",
        "relay",
    ] {
        insta::assert_snapshot!(format!("help-{sub}"), help_of(&[sub]));
    }
}

fn tunlab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tunlab"))
        .args(args)
        .output()
        .expect("run tunlab")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn the_binary_prints_help_and_version() {
    let help = tunlab(&["--help"]);
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    for role in [
        "echo-server",
        "proxy2",
        "proxy1",
        "echo-client",
        "monitor",
        "socks5",
    ] {
        assert!(text.contains(role), "--help lists {role}");
    }
    let version = tunlab(&["--version"]);
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("tunlab "));
}

#[test]
fn a_bad_argument_is_a_usage_error() {
    let out = tunlab(&["proxy2", "not-a-port", "localhost", "1818"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("invalid value 'not-a-port'"),
        "{}",
        stderr(&out)
    );
    let out = tunlab(&["proxy1", "3327"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("PROXY2_HOST"), "{}", stderr(&out));
    // A congestion control that does not exist says which ones do.
    let out = tunlab(&["--cc", "cubic", "--no-tui"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("invalid value 'cubic'")
            && err.contains("tolerant")
            && err.contains("newreno")
            && err.contains("none"),
        "{err}"
    );
}

#[test]
fn a_bad_host_is_named() {
    let out = tunlab(&["proxy2", "0", "no-such-host.invalid", "1818"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("cannot resolve host 'no-such-host.invalid'"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_port_in_use_is_named() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = tunlab(&["echo-server", &port]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("cannot bind TCP 127.0.0.1:{port}")),
        "{err}"
    );
    assert!(
        err.contains("another program already uses this port"),
        "{err}"
    );

    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = tunlab(&["proxy2", &port, "127.0.0.1", "1818"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!("cannot bind UDP 127.0.0.1:{port}")),
        "{}",
        stderr(&out)
    );
}

#[test]
fn socks5_input_errors_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.txt");
    std::fs::write(&users, "# the class\nana:s3cret\nbo pw\n").unwrap();
    let out = tunlab(&["socks5", "0", "--socks5-users", users.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("users.txt:3: 'bo pw' is not NAME:PASS"),
        "{}",
        stderr(&out)
    );
    let out = tunlab(&["socks5", "0", "--socks5-user", "ana"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("'ana' is not NAME:PASS"),
        "{}",
        stderr(&out)
    );
    let out = tunlab(&["socks5", "0", "--deny", "::1:99999"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("use brackets: [::1]:22"),
        "{}",
        stderr(&out)
    );
    let out = tunlab(&["socks5", "0", "--allow", "10.0.0.0/40"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("'/40' is not a prefix length from 0 to 32"),
        "{}",
        stderr(&out)
    );
}

/// `--capture FILE` writes the format its extension names, unless `--capture-format` says
/// otherwise; with `--capture-tcp` and no hint, pcapng. The lab's default follows
/// `--capture-tcp` the same way.
#[test]
fn the_capture_format_follows_the_file_name() {
    use clap::Parser;
    use tunlab::capture::CaptureFormat::{Pcap, Pcapng};
    use tunlab::cli::Command as Sub;
    let format = |args: &[&str]| {
        let cli = Cli::try_parse_from(
            ["tunlab", "proxy1", "3327", "localhost", "3328"]
                .iter()
                .chain(args),
        )
        .unwrap();
        match cli.command {
            Some(Sub::Proxy1(proxy1)) => proxy1.capture.format(),
            _ => unreachable!(),
        }
    };
    assert_eq!(format(&["--capture", "p1.pcapng"]), Pcapng);
    assert_eq!(format(&["--capture", "P1.PCAPNG"]), Pcapng);
    assert_eq!(format(&["--capture", "p1.pcap"]), Pcap);
    assert_eq!(format(&["--capture", "p1.cap"]), Pcap);
    assert_eq!(format(&["--capture", "/dev/stdout"]), Pcap);
    assert_eq!(
        format(&["--capture", "p1.pcapng", "--capture-format", "pcap"]),
        Pcap
    );
    assert_eq!(format(&["--capture", "p1.cap", "--capture-tcp"]), Pcapng);
    assert_eq!(
        format(&["--capture", "p1.pcap", "--capture-tcp"]),
        Pcap,
        "the name still wins"
    );
    let lab = |args: &[&str]| {
        Cli::try_parse_from(["tunlab"].iter().chain(args))
            .unwrap()
            .lab
            .capture
            .format()
    };
    assert_eq!(lab(&[]), Pcap);
    assert_eq!(lab(&["--capture-tcp"]), Pcapng);
    assert_eq!(lab(&["--capture-tcp", "--capture-format", "pcap"]), Pcap);
    // --capture-tcp needs a file to write into.
    assert!(
        Cli::try_parse_from(["tunlab", "proxy2", "3328", "h", "1818", "--capture-tcp"]).is_err()
    );
    assert!(Cli::try_parse_from(["tunlab", "--no-capture", "--capture-tcp"]).is_err());
}

#[test]
fn socks5_on_proxy1_and_the_lab_needs_an_extended_mode() {
    for args in [
        &["proxy1", "0", "localhost", "3328", "--socks5", "0"][..],
        &[
            "proxy1",
            "0",
            "localhost",
            "3328",
            "--socks5",
            "0",
            "--wire",
            "stop-and-wait",
        ],
        &["--socks5", "0", "--no-tui"],
    ] {
        let out = tunlab(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            stderr(&out).contains(
                "SOCKS5 needs an extended wire mode (--wire go-back-n or --wire selective-repeat)"
            ),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    // Users or an access log without the port would do nothing: said, not ignored.
    let out = tunlab(&["proxy1", "0", "localhost", "3328", "--socks5-user", "a:b"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--socks5-user is for the SOCKS5 port: add --socks5 PORT"),
        "{}",
        stderr(&out)
    );
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.txt");
    std::fs::write(&users, "bo pw\n").unwrap();
    let out = tunlab(&[
        "proxy1",
        "0",
        "localhost",
        "3328",
        "--wire",
        "go-back-n",
        "--socks5",
        "0",
        "--socks5-users",
        users.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("users.txt:1: 'bo pw' is not NAME:PASS"),
        "{}",
        stderr(&out)
    );
}

/// The runtime's worker threads of a running `tunlab` process (tokio names them).
fn worker_threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("the process is running")
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim_end() == "tokio-rt-worker")
        .count()
}

#[test]
fn a_role_runs_on_one_thread_unless_told_otherwise() {
    use std::io::{Read, Write};
    for (threads, workers) in [(None, 0), (Some("3"), 3)] {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
            .to_string();
        let mut args = vec!["echo-server", &port];
        args.extend(threads.iter().flat_map(|n| ["--threads", n]));
        let mut server = Command::new(env!("CARGO_BIN_EXE_tunlab"))
            .args(&args)
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("run tunlab");
        // It serves (whatever its threads), then its threads are counted.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut client = loop {
            match std::net::TcpStream::connect(format!("127.0.0.1:{port}")) {
                Ok(client) => break client,
                Err(_) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => panic!("the echo server never listened: {e}"),
            }
        };
        client.write_all(b"ping").unwrap();
        let mut echo = [0u8; 4];
        client.read_exact(&mut echo).unwrap();
        assert_eq!(&echo, b"ping");
        let counted = worker_threads(server.id());
        let _ = server.kill();
        let _ = server.wait();
        assert_eq!(counted, workers, "--threads {threads:?}");
    }
}
