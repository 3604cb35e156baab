//! Who may use the SOCKS5 front: `--socks5-user NAME:PASS` and `--socks5-users FILE`.

use std::path::Path;
use std::str::FromStr;

use crate::secret::same_bytes;

/// One user of the SOCKS5 front. Its `Debug` hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Socks5User {
    name: String,
    password: String,
}

impl std::fmt::Debug for Socks5User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Socks5User({}:***)", self.name)
    }
}

impl Socks5User {
    /// The user's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl FromStr for Socks5User {
    type Err = String;
    /// `NAME:PASS`: both 1 to 255 bytes (RFC 1929's limits) of printable characters without
    /// spaces; the name has no `:`, the password may.
    fn from_str(text: &str) -> Result<Socks5User, String> {
        let Some((name, password)) = text.split_once(':') else {
            return Err(format!("'{text}' is not NAME:PASS"));
        };
        let printable = |s: &str| s.chars().all(|c| !c.is_whitespace() && !c.is_control());
        if name.is_empty() || name.len() > 255 || !printable(name) {
            return Err(format!(
                "'{name}' is not a user name: 1 to 255 bytes, printable, no spaces"
            ));
        }
        if password.is_empty() || password.len() > 255 || !printable(password) {
            return Err(format!(
                "the password of '{name}' must be 1 to 255 bytes, printable, no spaces"
            ));
        }
        Ok(Socks5User {
            name: name.to_string(),
            password: password.to_string(),
        })
    }
}

/// The users the front accepts. Empty means "no authentication"; with any user, clients
/// must log in (RFC 1929) and "no authentication" is refused.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Socks5Users {
    users: Vec<Socks5User>,
}

impl Socks5Users {
    /// These users (a later duplicate name replaces an earlier one's password).
    pub fn new(users: impl IntoIterator<Item = Socks5User>) -> Self {
        let mut list: Vec<Socks5User> = Vec::new();
        for user in users {
            match list.iter_mut().find(|u| u.name == user.name) {
                Some(old) => *old = user,
                None => list.push(user),
            }
        }
        Socks5Users { users: list }
    }

    /// Whether clients must log in.
    pub fn required(&self) -> bool {
        !self.users.is_empty()
    }

    /// How many users there are.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether there are none (no authentication).
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// The name `name`/`password` logs in as, if they match a user. Every user is compared,
    /// each in time that depends only on the lengths, so timing tells nothing about which
    /// byte differed or which user matched.
    pub fn check(&self, name: &[u8], password: &[u8]) -> Option<&str> {
        let mut found = None;
        for user in &self.users {
            let matches = same_bytes(name, user.name.as_bytes())
                & same_bytes(password, user.password.as_bytes());
            if matches {
                found = Some(user.name.as_str());
            }
        }
        found
    }

    /// Reads a users file: one `NAME:PASS` per line; blank lines and lines starting with
    /// `#` are skipped. Errors name the file and line.
    pub fn read_file(path: &Path) -> Result<Vec<Socks5User>, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the users file {}: {e}", path.display()))?;
        Self::parse_file(&text).map_err(|(line, e)| format!("{}:{line}: {e}", path.display()))
    }

    /// Parses a users file's text; an error carries its 1-based line number.
    pub fn parse_file(text: &str) -> Result<Vec<Socks5User>, (usize, String)> {
        let mut users = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            users.push(line.parse().map_err(|e| (index + 1, e))?);
        }
        Ok(users)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_is_name_colon_password() {
        let user: Socks5User = "ana:s3:cret".parse().unwrap();
        assert_eq!(user.name(), "ana");
        assert_eq!(format!("{user:?}"), "Socks5User(ana:***)");
        assert!(
            "ana"
                .parse::<Socks5User>()
                .unwrap_err()
                .contains("NAME:PASS")
        );
        assert!(
            ":x".parse::<Socks5User>()
                .unwrap_err()
                .contains("user name")
        );
        assert!(
            "ana:"
                .parse::<Socks5User>()
                .unwrap_err()
                .contains("password")
        );
        assert!(
            "ana:a b"
                .parse::<Socks5User>()
                .unwrap_err()
                .contains("password")
        );
        let long = format!("ana:{}", "x".repeat(256));
        assert!(long.parse::<Socks5User>().is_err());
    }

    #[test]
    fn check_finds_the_matching_user_only() {
        let users = Socks5Users::new(["ana:one".parse().unwrap(), "bo:two".parse().unwrap()]);
        assert!(users.required());
        assert_eq!(users.check(b"ana", b"one"), Some("ana"));
        assert_eq!(users.check(b"bo", b"two"), Some("bo"));
        assert_eq!(users.check(b"ana", b"two"), None);
        assert_eq!(users.check(b"ana", b"on"), None);
        assert_eq!(users.check(b"ana", b"one!"), None);
        assert_eq!(users.check(b"", b""), None);
        assert!(!Socks5Users::default().required());
    }

    #[test]
    fn a_later_duplicate_replaces_the_password() {
        let users = Socks5Users::new(["ana:old".parse().unwrap(), "ana:new".parse().unwrap()]);
        assert_eq!(users.len(), 1);
        assert_eq!(users.check(b"ana", b"new"), Some("ana"));
        assert_eq!(users.check(b"ana", b"old"), None);
    }

    #[test]
    fn the_file_skips_comments_and_names_the_bad_line() {
        let users = Socks5Users::parse_file("# users\n\nana:one\n  bo:two  \n#x:y\n").unwrap();
        assert_eq!(users.len(), 2);
        let (line, message) = Socks5Users::parse_file("ana:one\n\nbroken\n").unwrap_err();
        assert_eq!(line, 3);
        assert!(message.contains("NAME:PASS"), "{message}");
    }

    #[test]
    fn read_file_names_path_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.txt");
        std::fs::write(&path, "ana:one\nno-colon\n").unwrap();
        let error = Socks5Users::read_file(&path).unwrap_err();
        assert!(
            error.ends_with("users.txt:2: 'no-colon' is not NAME:PASS"),
            "{error}"
        );
        let error = Socks5Users::read_file(&dir.path().join("missing")).unwrap_err();
        assert!(error.starts_with("cannot read the users file"), "{error}");
    }
}
