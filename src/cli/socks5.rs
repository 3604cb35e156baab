//! The SOCKS5 front's command-line flags, shared by every command that has the front. The
//! front's settings they make (`config`, `check`) are in `app::args`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::roles::fronts::socks5::Socks5User;

/// `--socks5-user`, `--socks5-users`, `--socks5-handshake-timeout`.
#[derive(Clone, Debug, Args)]
#[command(next_help_heading = "SOCKS5")]
pub struct Socks5FrontArgs {
    /// A user who may connect, as NAME:PASS (RFC 1929 username/password); repeatable. With
    /// any user given, clients must log in: "no authentication" is refused.
    #[arg(long = "socks5-user", value_name = "NAME:PASS")]
    pub users: Vec<Socks5User>,
    /// Read users from FILE: one NAME:PASS per line; blank lines and lines starting with #
    /// are skipped. Adds to --socks5-user.
    #[arg(long = "socks5-users", value_name = "FILE")]
    pub users_file: Option<PathBuf>,
    /// A client must have sent its whole request (greeting, login, CONNECT) within this
    /// time of connecting, or it is closed.
    #[arg(long = "socks5-handshake-timeout", default_value = "10s", value_parser = humantime::parse_duration, value_name = "TIME")]
    pub handshake_timeout: Duration,
}

/// `--socks5 PORT` with its front's flags and `--access-log`: proxy1's SOCKS5 port, on the
/// `proxy1` command and on the lab.
#[derive(Clone, Debug, Args)]
#[command(next_help_heading = "SOCKS5")]
pub struct Socks5PortArgs {
    /// Also accept SOCKS5 clients (curl --socks5-hostname, a browser) on this TCP port, beside
    /// the plain one (0: any free port). Each names its destination, which travels to proxy2
    /// inside C; proxy2 resolves it, applies --allow/--deny and connects. Needs an extended
    /// wire mode (--wire go-back-n or selective-repeat).
    #[arg(long = "socks5", value_name = "PORT")]
    pub port: Option<u16>,
    #[command(flatten)]
    pub front: Socks5FrontArgs,
    /// Append one JSON line per SOCKS5 connection to FILE: time, client, user, destination,
    /// bytes each way, duration, result (ok, refused, rejected) and reason.
    #[arg(long, value_name = "FILE")]
    pub access_log: Option<PathBuf>,
}
