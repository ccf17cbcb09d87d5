//! TOML parsing with errors an operator can act on: file, line, column and dotted key.
//!
//! Both files carry `schema_version`. It is checked on a loose first pass, so a file from a
//! newer mailgrant is reported as such and not as a list of unknown keys. Parser messages from
//! the secrets file are dropped because they may quote a secret value.

use std::path::Path;

use serde::de::DeserializeOwned;

use super::error::{FileRole, ParseProblem, ParseProblemKind, StoreError};

/// The only schema this version reads and writes.
pub const SCHEMA_VERSION: u32 = 1;

/// Parses a versioned file: syntax first, then `schema_version`, then the typed structure.
pub(crate) fn parse_versioned<T: DeserializeOwned>(
    text: &str,
    path: &Path,
    role: FileRole,
) -> Result<T, StoreError> {
    let table: toml::Table = toml::from_str(text)
        .map_err(|e| problem(&e, text, path, role, Some(ParseProblemKind::Syntax)))?;

    let version_problem = |kind: ParseProblemKind, message: &str| {
        let line = line_of_key(text, "schema_version");
        StoreError::Parse(Box::new(ParseProblem {
            file: path.to_path_buf(),
            role,
            line,
            column: line.map(|_| 1),
            key: Some("schema_version".to_owned()),
            kind,
            message: Some(message.to_owned()),
        }))
    };
    match table.get("schema_version") {
        None => {
            return Err(version_problem(
                ParseProblemKind::MissingKey,
                "missing field `schema_version`",
            ));
        }
        Some(toml::Value::Integer(found)) if *found == i64::from(SCHEMA_VERSION) => {}
        Some(toml::Value::Integer(found)) if *found > i64::from(SCHEMA_VERSION) => {
            return Err(StoreError::NewerSchema {
                role,
                path: path.to_path_buf(),
                found: *found,
                supported: SCHEMA_VERSION,
            });
        }
        Some(_) => {
            return Err(version_problem(
                ParseProblemKind::InvalidValue,
                "schema_version must be the whole number 1",
            ));
        }
    }

    toml::from_str(text).map_err(|e| problem(&e, text, path, role, None))
}

/// Turns a toml error into a [`StoreError::Parse`] with position and key.
fn problem(
    error: &toml::de::Error,
    text: &str,
    path: &Path,
    role: FileRole,
    kind: Option<ParseProblemKind>,
) -> StoreError {
    let message = error.message().trim().to_owned();
    let named = backticked(&message);
    let kind = kind.unwrap_or(if message.starts_with("missing field") {
        ParseProblemKind::MissingKey
    } else if message.starts_with("unknown field") {
        ParseProblemKind::UnknownKey
    } else {
        ParseProblemKind::InvalidValue
    });

    let offset = error.span().map(|span| span.start);
    // An unknown table is reported on its `[name]` header: the key is the table itself, and
    // the place is where the header starts.
    let on_header = offset.is_some_and(|o| {
        let line_start =
            text[..floor_char_boundary(text, o.min(text.len()))].rfind('\n').map_or(0, |i| i + 1);
        text[line_start..].trim_start().starts_with('[')
    });
    let (line, column) = match offset {
        Some(offset) => {
            let (line, column) = line_column(text, offset);
            let column = if on_header { 1 } else { column };
            (Some(line), Some(column))
        }
        None => (None, None),
    };
    let key = match (kind, offset) {
        (ParseProblemKind::UnknownKey, _) if on_header => named,
        (ParseProblemKind::MissingKey | ParseProblemKind::UnknownKey, offset) => {
            let table = offset.and_then(|o| table_at(text, o));
            named.map(|name| join_key(table.as_deref(), &name))
        }
        (_, Some(offset)) => key_at(text, offset),
        (_, None) => None,
    };

    let message = match role {
        FileRole::Config => Some(message),
        FileRole::Secrets => None,
    };
    StoreError::Parse(Box::new(ParseProblem {
        file: path.to_path_buf(),
        role,
        line,
        column,
        key,
        kind,
        message,
    }))
}

/// 1-based line and column (in characters) of a byte offset.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = floor_char_boundary(text, offset.min(text.len()));
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

fn floor_char_boundary(text: &str, mut offset: usize) -> usize {
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

/// The first name in backticks in a serde message (`missing field `port``).
fn backticked(message: &str) -> Option<String> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(message[start..start + len].to_owned())
}

fn join_key(table: Option<&str>, name: &str) -> String {
    match table {
        Some(table) if !table.is_empty() => format!("{table}.{name}"),
        _ => name.to_owned(),
    }
}

/// The dotted key written on the line holding `offset`, prefixed by its table.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let (line_no, _) = line_column(text, offset);
    let line = text.lines().nth(line_no - 1)?;
    if let Some(header) = header_name(line) {
        return Some(header);
    }
    let (name, _) = line.split_once('=')?;
    let name = name.trim().trim_matches('"').trim_matches('\'');
    if name.is_empty() || name.contains(char::is_whitespace) {
        return None;
    }
    Some(join_key(table_at(text, offset).as_deref(), name))
}

/// The `[table]` whose body holds `offset` (None at top level).
fn table_at(text: &str, offset: usize) -> Option<String> {
    let (line_no, _) = line_column(text, offset);
    text.lines().take(line_no).filter_map(header_name).last()
}

/// `smtp` for a `[smtp]` or `[[smtp]]` line.
fn header_name(line: &str) -> Option<String> {
    let line = line.trim_start();
    if !line.starts_with('[') {
        return None;
    }
    let inner = line.trim_start_matches('[');
    let end = inner.find(']')?;
    Some(inner[..end].trim().to_owned())
}

/// Line number of a top-level `key = ...` line, for problems found after parsing.
fn line_of_key(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|line| line.split_once('=').is_some_and(|(name, _)| name.trim() == key))
        .map(|i| i + 1)
}

/// Line number of `key = ...` inside the `[table]` section, for problems found after parsing.
pub(crate) fn line_of_table_key(text: &str, table: &str, key: &str) -> Option<usize> {
    let mut current: Option<String> = None;
    for (index, line) in text.lines().enumerate() {
        if let Some(header) = header_name(line) {
            current = Some(header);
        } else if current.as_deref() == Some(table)
            && line.split_once('=').is_some_and(|(name, _)| name.trim() == key)
        {
            return Some(index + 1);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_count_characters_from_one() {
        let text = "a = 1\nbé = 2\n";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 6), (2, 1));
        assert_eq!(line_column(text, text.find('=').unwrap_or(0)), (1, 3));
        let second_equals = text.rfind('=').unwrap_or(0);
        assert_eq!(line_column(text, second_equals), (2, 4));
    }

    #[test]
    fn key_at_prefixes_the_table() {
        let text = "schema_version = 1\n[smtp]\nhost = \"x\"\nport = \"587\"\n";
        let offset = text.find("\"587\"").unwrap_or(0);
        assert_eq!(key_at(text, offset).as_deref(), Some("smtp.port"));
        assert_eq!(key_at(text, 2).as_deref(), Some("schema_version"));
        assert_eq!(header_name("  [[ imap ]] # x").as_deref(), Some("imap"));
    }

    #[test]
    fn backticked_finds_the_field_name() {
        assert_eq!(backticked("missing field `port`").as_deref(), Some("port"));
        assert_eq!(backticked("no name here"), None);
    }
}
