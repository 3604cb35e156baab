//! Where in a scenario file something is: byte offsets turned into `file:line:column`, the
//! table a line belongs to, and the line of a key. Every "invalid scenario" message is built
//! here, so they all read the same way.

use std::fmt;
use std::ops::Range;

/// A scenario's text and the name it is reported under.
#[derive(Clone, Debug)]
pub struct Source {
    /// The path as the user gave it (or a label for the built-in demo).
    pub file: String,
    pub text: String,
}

/// A 1-based line and column (in characters, like editors count).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

impl Source {
    pub fn new(file: impl Into<String>, text: impl Into<String>) -> Self {
        Source {
            file: file.into(),
            text: text.into(),
        }
    }

    /// The line and column of a byte offset (clamped to the text).
    pub fn position(&self, offset: usize) -> Position {
        let offset = floor_char_boundary(&self.text, offset.min(self.text.len()));
        let before = &self.text[..offset];
        let line_start = before.rfind('\n').map_or(0, |nl| nl + 1);
        Position {
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    }

    /// The text of a 1-based line, without its line break.
    pub fn line_text(&self, line: usize) -> &str {
        self.text
            .split('\n')
            .nth(line.saturating_sub(1))
            .unwrap_or("")
            .trim_end_matches('\r')
    }

    /// The table a byte offset sits in, as a reader would name it: `[lab]`, `[[step]] #2`,
    /// or `None` at the top level.
    pub fn table_at(&self, offset: usize) -> Option<String> {
        let offset = offset.min(self.text.len());
        let mut current = None;
        let mut counts: Vec<(String, usize)> = Vec::new();
        let mut start = 0;
        for line in self.text.split_inclusive('\n') {
            if start > offset {
                break;
            }
            if let Some(header) = table_header(line) {
                current = Some(if header.starts_with("[[") {
                    let count = match counts.iter_mut().find(|(h, _)| *h == header) {
                        Some((_, n)) => {
                            *n += 1;
                            *n
                        }
                        None => {
                            counts.push((header.clone(), 1));
                            1
                        }
                    };
                    format!("{header} #{count}")
                } else {
                    header
                });
            }
            start += line.len();
        }
        current
    }

    /// The byte offset of `key = …` inside the table whose header starts at `table_start`,
    /// so a message about a key can point at its own line.
    pub fn key_offset(&self, table_start: usize, key: &str) -> Option<usize> {
        let mut offset = table_start.min(self.text.len());
        // Start at the beginning of the header's line.
        offset = self.text[..offset].rfind('\n').map_or(0, |nl| nl + 1);
        for (index, line) in self.text[offset..].split_inclusive('\n').enumerate() {
            if index > 0 && table_header(line).is_some() {
                return None;
            }
            let trimmed = line.trim_start();
            if let Some(rest) = trimmed.strip_prefix(key)
                && rest.trim_start().starts_with('=')
            {
                return Some(offset + (line.len() - trimmed.len()));
            }
            offset += line.len();
        }
        None
    }

    /// An error at `span`, optionally about `key`.
    pub fn error(
        &self,
        span: Range<usize>,
        key: Option<&str>,
        message: impl Into<String>,
    ) -> ScenarioError {
        let start = self.position(span.start);
        let line = self.line_text(start.line).to_string();
        let width = if span.end > span.start {
            let end = self.position(span.end);
            if end.line == start.line {
                end.column - start.column
            } else {
                line.chars().count().saturating_sub(start.column - 1)
            }
        } else {
            1
        };
        ScenarioError::from(ErrorDetails {
            file: self.file.clone(),
            position: Some(start),
            table: self.table_at(span.start),
            key: key.map(str::to_string),
            message: message.into(),
            snippet: Some(Snippet {
                line,
                column: start.column,
                width: width.max(1),
            }),
        })
    }

    /// An error about `key` of the table starting at `table_start`, pointing at the key's own
    /// line when it can be found.
    pub fn key_error(
        &self,
        table_start: usize,
        key: &str,
        message: impl Into<String>,
    ) -> ScenarioError {
        let at = self.key_offset(table_start, key).unwrap_or(table_start);
        let end = if self.text[at..].starts_with(key) {
            at + key.len()
        } else {
            at
        };
        self.error(at..end, Some(&self.key_path(table_start, key)), message)
    }

    /// The dotted path of `key` in the table at `offset`, the way toml names keys:
    /// `step.client`, `lab.tunnel.id_wait`.
    pub fn key_path(&self, offset: usize, key: &str) -> String {
        match self.table_at(offset) {
            Some(table) => {
                let name = table
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .trim_matches(|c| c == '[' || c == ']');
                format!("{name}.{key}")
            }
            None => key.to_string(),
        }
    }

    /// Converts a toml deserialization error, keeping its position and the key it names.
    pub fn toml_error(&self, error: &toml::de::Error) -> ScenarioError {
        let mut key = toml_error_key(error);
        // For an unknown key, toml names the table it sits in; name the key itself.
        if error.message().starts_with("unknown field")
            && let Some(span) = error.span()
            && let Some(unknown) = self.text.get(span)
        {
            key = Some(match key {
                Some(table) => format!("{table}.{unknown}"),
                None => unknown.to_string(),
            });
        }
        // TOML integers stop at 2^63 - 1; a larger seed (tunlab's --seed takes any u64) fits
        // as a quoted string.
        let mut message = error.message().to_string();
        if message.contains("too large") && key.as_deref().is_some_and(|k| k.ends_with("seed")) {
            message.push_str(
                "; TOML integers stop at 9223372036854775807: write a larger seed in quotes, \
                 like seed = \"18446744073709551615\"",
            );
        }
        match error.span() {
            Some(span) => self.error(span, key.as_deref(), message),
            None => ScenarioError::from(ErrorDetails {
                file: self.file.clone(),
                position: None,
                table: None,
                key,
                message,
                snippet: None,
            }),
        }
    }
}

/// The dotted key path a toml error is about (`lab.tunnel.id_wait`), if it names one.
///
/// toml keeps the path private but prints it as "in `a.b`" when the error has no input
/// attached; a test pins this so a toml upgrade that changes it is noticed.
pub(crate) fn toml_error_key(error: &toml::de::Error) -> Option<String> {
    let mut bare = error.clone();
    bare.set_input(None);
    bare.to_string().lines().find_map(|line| {
        line.strip_prefix("in `")?
            .strip_suffix('`')
            .map(str::to_string)
    })
}

fn table_header(line: &str) -> Option<String> {
    let trimmed = line.trim();
    if !trimmed.starts_with('[') {
        return None;
    }
    let end = if trimmed.starts_with("[[") {
        trimmed.find("]]")? + 2
    } else {
        trimmed.find(']')? + 1
    };
    Some(trimmed[..end].split_whitespace().collect::<String>())
}

fn floor_char_boundary(text: &str, mut offset: usize) -> usize {
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

/// The offending line with a caret under the offending part.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Snippet {
    line: String,
    column: usize,
    width: usize,
}

/// Why a scenario cannot run: where (file, line, column, table, key) and what. The details
/// are boxed so that `Result<_, ScenarioError>` stays small.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScenarioError(Box<ErrorDetails>);

impl std::ops::Deref for ScenarioError {
    type Target = ErrorDetails;
    fn deref(&self) -> &ErrorDetails {
        &self.0
    }
}

impl From<ErrorDetails> for ScenarioError {
    fn from(details: ErrorDetails) -> Self {
        ScenarioError(Box::new(details))
    }
}

/// What a [`ScenarioError`] says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorDetails {
    pub file: String,
    pub position: Option<Position>,
    /// The table the error sits in, like `[[step]] #3`.
    pub table: Option<String>,
    /// The key the error is about, like `client` or `lab.tunnel.id_wait`.
    pub key: Option<String>,
    pub message: String,
    snippet: Option<Snippet>,
}

impl ScenarioError {
    /// An error about the file as a whole (it cannot be read, for example).
    pub fn whole_file(file: impl Into<String>, message: impl Into<String>) -> Self {
        ScenarioError::from(ErrorDetails {
            file: file.into(),
            position: None,
            table: None,
            key: None,
            message: message.into(),
            snippet: None,
        })
    }
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(position) = self.position {
            write!(f, ":{}:{}", position.line, position.column)?;
        }
        write!(f, ": ")?;
        let mut context = Vec::new();
        if let Some(table) = &self.table {
            context.push(format!("in {table}"));
        }
        if let Some(key) = &self.key {
            context.push(format!("key `{key}`"));
        }
        if !context.is_empty() {
            write!(f, "{}: ", context.join(", "))?;
        }
        write!(f, "{}", self.message)?;
        if let (Some(snippet), Some(position)) = (&self.snippet, self.position) {
            let gutter = position.line.to_string().len();
            write!(
                f,
                "\n{:gutter$} |\n{} | {}\n{:gutter$} | {}{}",
                "",
                position.line,
                snippet.line,
                "",
                " ".repeat(snippet.column - 1),
                "^".repeat(snippet.width),
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for ScenarioError {}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str =
        "name = \"x\"\n[lab]\nclients = 3\n\n[[step]]\nsend = \"a\"\n[[step]]\n  wait = \"1s\"\n";

    #[test]
    fn positions_are_one_based_lines_and_character_columns() {
        let source = Source::new("f.toml", TEXT);
        assert_eq!(source.position(0), Position { line: 1, column: 1 });
        let wait = TEXT.find("wait").unwrap();
        assert_eq!(source.position(wait), Position { line: 8, column: 3 });
        let accented = Source::new("f.toml", "a = \"é\" x");
        assert_eq!(accented.position(9).column, 9);
    }

    #[test]
    fn tables_are_named_with_their_index() {
        let source = Source::new("f.toml", TEXT);
        assert_eq!(source.table_at(0), None);
        assert_eq!(
            source.table_at(TEXT.find("clients").unwrap()).as_deref(),
            Some("[lab]")
        );
        assert_eq!(
            source.table_at(TEXT.find("wait").unwrap()).as_deref(),
            Some("[[step]] #2")
        );
    }

    #[test]
    fn keys_are_found_inside_their_table_only() {
        let source = Source::new("f.toml", TEXT);
        let second_step = TEXT.rfind("[[step]]").unwrap();
        assert_eq!(
            source.key_offset(second_step, "wait"),
            Some(TEXT.find("wait").unwrap())
        );
        let first_step = TEXT.find("[[step]]").unwrap();
        assert_eq!(source.key_offset(first_step, "wait"), None);
    }

    #[test]
    fn key_paths_are_dotted_like_toml_names_them() {
        let source = Source::new("f.toml", TEXT);
        let second_step = TEXT.rfind("[[step]]").unwrap();
        assert_eq!(source.key_path(second_step, "wait"), "step.wait");
        assert_eq!(source.key_path(0, "name"), "name");
        assert_eq!(
            source.key_path(TEXT.find("clients").unwrap(), "clients"),
            "lab.clients"
        );
    }

    #[test]
    fn toml_errors_keep_their_key_path() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Lab {
            clients: u32,
        }
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Top {
            lab: Lab,
        }
        let text = "[lab]\nclients = \"three\"\n";
        let error = toml::from_str::<Top>(text).unwrap_err();
        let error = Source::new("f.toml", text).toml_error(&error);
        assert_eq!(error.key.as_deref(), Some("lab.clients"));
        assert_eq!(
            error.position,
            Some(Position {
                line: 2,
                column: 11
            })
        );
        let shown = error.to_string();
        assert!(
            shown.starts_with("f.toml:2:11: in [lab], key `lab.clients`: invalid type"),
            "{shown}"
        );
        assert!(shown.contains("2 | clients = \"three\""), "{shown}");
    }
}
