//! The SOCKS5 front's command-line flags, shared by every command that has the front.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use super::{FrontConfig, Socks5User, Socks5Users};

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

impl Socks5FrontArgs {
    /// The front's settings; reads the users file. Its errors name the file and line.
    pub fn config(&self) -> Result<FrontConfig, String> {
        let mut users = self.users.clone();
        if let Some(path) = &self.users_file {
            users.extend(Socks5Users::read_file(path)?);
        }
        Ok(FrontConfig {
            users: Arc::new(Socks5Users::new(users)),
            handshake_timeout: self.handshake_timeout,
        })
    }
}
