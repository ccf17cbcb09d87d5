//! What can go wrong reading or writing the service config and its secrets.
//!
//! Every variant names the file it is about. Parse problems carry line, column and the dotted
//! key when it can be told. No variant ever carries a secret value: problems in the secrets
//! file keep the position and key but drop the parser's message, which may quote the value.
//! Operator text for these errors is made in `diagnose::config`.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::acl::AclProblem;
use super::config::SecretsStore;
use super::keyring_entry::{KeyringEntry, KeyringFailure};
use super::sealed::FrameError;
use crate::profile::FieldProblem;

/// Which of the two files a problem is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileRole {
    /// The plain service config (`mailgrant.toml`).
    Config,
    /// The secrets file next to it (`mailgrant.secrets.toml`).
    Secrets,
}

impl fmt::Display for FileRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileRole::Config => f.write_str("config"),
            FileRole::Secrets => f.write_str("secrets file"),
        }
    }
}

/// The kind of parse problem, which decides the fix the operator is told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseProblemKind {
    /// Not valid TOML at all (a missing quote, a stray character).
    Syntax,
    /// A required key is absent.
    MissingKey,
    /// A key this version does not know (often a typo).
    UnknownKey,
    /// A key has a value of the wrong type or outside its range.
    InvalidValue,
}

/// Where and what a parse problem is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseProblem {
    /// The file that did not parse.
    pub file: PathBuf,
    /// Which file this is.
    pub role: FileRole,
    /// 1-based line, when the parser gave a position.
    pub line: Option<usize>,
    /// 1-based column (in characters), when the parser gave a position.
    pub column: Option<usize>,
    /// The dotted key concerned (`smtp.port`), when it can be told.
    pub key: Option<String>,
    /// What kind of problem it is.
    pub kind: ParseProblemKind,
    /// The parser's own words. Always `None` for the secrets file, whose values must not be
    /// quoted back.
    pub message: Option<String>,
}

impl ParseProblem {
    /// `path:line:column`, or just the path when no position is known.
    pub fn location(&self) -> String {
        match (self.line, self.column) {
            (Some(line), Some(column)) => format!("{}:{line}:{column}", self.file.display()),
            (Some(line), None) => format!("{}:{line}", self.file.display()),
            _ => self.file.display().to_string(),
        }
    }
}

impl fmt::Display for ParseProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            ParseProblemKind::Syntax => "invalid TOML",
            ParseProblemKind::MissingKey => "missing key",
            ParseProblemKind::UnknownKey => "unknown key",
            ParseProblemKind::InvalidValue => "invalid value",
        };
        write!(f, "{}: {what}", self.location())?;
        if let Some(key) = &self.key {
            write!(f, " `{key}`")?;
        }
        if let Some(message) = &self.message {
            write!(f, ": {message}")?;
        }
        Ok(())
    }
}

/// Errors from loading, saving and locking the service config.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The config file does not exist.
    #[error("{role} {} does not exist", path.display())]
    Missing { role: FileRole, path: PathBuf },

    /// The file exists but cannot be read (permissions, not a file, not UTF-8).
    #[error("cannot read {role} {}: {source}", path.display())]
    Unreadable {
        role: FileRole,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The file is not valid TOML, or a key is missing, unknown or has a wrong value.
    #[error("{0}")]
    Parse(Box<ParseProblem>),

    /// The file was written by a newer mailgrant (`schema_version` above what this one knows).
    #[error(
        "{role} {} has schema_version {found}; this mailgrant understands up to {supported}",
        path.display()
    )]
    NewerSchema { role: FileRole, path: PathBuf, found: i64, supported: u32 },

    /// The secrets file can be read by other users (Unix mode looser than 0600).
    #[error(
        "secrets file {} has mode {mode:04o}, readable by other users; it must be 0600",
        path.display()
    )]
    SecretsPermissionsTooOpen { path: PathBuf, mode: u32 },

    /// The secrets path is not a plain mailgrant secrets file: a symbolic link (a save would
    /// replace the link, leaving its target with a dead token), a folder, a device, a file far
    /// too large, or a file of another kind. `what` says which, without quoting its content.
    #[error("secrets path {} is {what}", path.display())]
    SecretsNotAFile { path: PathBuf, what: String },

    /// The folder holding the secrets file is writable by every user, who could swap the file.
    #[error("folder {} holding the secrets file is writable by every user", path.display())]
    SecretsFolderWorldWritable { path: PathBuf, mode: u32 },

    /// `save` refused to replace an existing file that does not parse; the operator must
    /// choose to overwrite it (see `SaveOptions::overwrite_unparsable`).
    #[error("not saved: the existing {0} does not parse and was left untouched")]
    ExistingUnparsable(Box<StoreError>),

    /// Writing a file failed (disk full, read-only folder, no permission).
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The lock next to the config could not be taken.
    #[error("cannot lock {}: {source}", path.display())]
    Lock {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The lock file cannot be created: this user may not write to the config's folder (or
    /// the file system is read-only). Reading a valid cached token needs no lock; refreshing
    /// and saving do.
    #[error(
        "cannot create the lock file {}: user {} may not write to {}: {}",
        .0.path.display(), .0.user, .0.folder.display(), .0.source
    )]
    LockFolderNotWritable(Box<LockFolderProblem>),

    /// `restore` was asked for a backup number that is not kept.
    #[error("there is no backup number {number} (kept: {kept:?})")]
    BackupNotFound { number: u32, kept: Vec<u32> },

    /// Another process held the lock for the whole of a bounded wait.
    #[error(
        "the lock {} stayed held by {} for {} s",
        path.display(), holder_text(holder.as_ref()), waited.as_secs()
    )]
    LockBusy {
        /// The lock file.
        path: PathBuf,
        /// How long this process waited.
        waited: Duration,
        /// The process holding it, when the OS tells (Linux).
        holder: Option<LockHolder>,
    },

    /// The settings parse but do not validate (for example a port of 0).
    /// Each problem comes with the config key it belongs to (`smtp.port`).
    #[error("the config has invalid settings: {}", join_problems(problems))]
    InvalidSettings {
        problems: Vec<(String, FieldProblem)>,
        /// The config file and the line of each problem's key, once known
        /// ([`StoreError::in_config_file`]).
        file: Option<SettingsFile>,
    },

    /// Windows: the secrets file's DACL lets a broad group read, write or re-permission it.
    #[error("secrets file {} is open to other users: {}", path.display(), acl_text(problem))]
    SecretsAclTooOpen {
        path: PathBuf,
        problem: AclProblem,
        /// `[secrets] service_account`, for the fix.
        service_account: Option<String>,
    },

    /// Windows: `[secrets] service_account` names an account this machine does not know.
    #[error("service account `{account}` ([secrets] service_account) is unknown here: {source}")]
    ServiceAccountUnknown {
        account: String,
        #[source]
        source: io::Error,
    },

    /// `[secrets] store` names a store that does not work on this platform.
    #[error("{}: `secrets.store = \"{store}\"`: {}", at_line(config, *line),
        store.unsupported_here().unwrap_or("not available here"))]
    SecretsStoreUnsupported { config: PathBuf, line: Option<usize>, store: SecretsStore },

    /// An encrypted (`dpapi_file`) secrets file cannot be opened, or encrypting failed.
    #[error("secrets file {} cannot be used: {problem}", path.display())]
    SecretsSealed { path: PathBuf, problem: FrameError },

    /// The OS keyring failed.
    #[error("keyring entry {entry}: {failure}")]
    Keyring { entry: KeyringEntry, failure: KeyringFailure },

    /// The OS keyring holds no entry for this setup.
    #[error("the keyring holds no entry {entry}")]
    KeyringEntryMissing { entry: KeyringEntry },

    /// There is no refresh token to work with (never signed in, or signed out).
    #[error("secrets file {} holds no refresh token", path.display())]
    NotSignedIn { path: PathBuf },
}

/// The process holding a setup's lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockHolder {
    /// Its process id.
    pub pid: u32,
    /// Its command name (`/proc/<pid>/comm`), when readable.
    pub command: Option<String>,
}

impl fmt::Display for LockHolder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.command {
            Some(command) => write!(f, "pid {} ({command})", self.pid),
            None => write!(f, "pid {}", self.pid),
        }
    }
}

fn holder_text(holder: Option<&LockHolder>) -> String {
    holder.map_or_else(|| "another process".to_owned(), ToString::to_string)
}

fn acl_text(problem: &AclProblem) -> String {
    match problem {
        AclProblem::NoDacl => "it has no DACL, so everyone has full control".to_owned(),
        AclProblem::OpenTo { group, access, inherited } => format!(
            "{group} may {access} it{}",
            if *inherited { " (inherited from the folder)" } else { "" }
        ),
    }
}

fn at_line(path: &std::path::Path, line: Option<usize>) -> String {
    match line {
        Some(line) => format!("{}:{line}", path.display()),
        None => path.display().to_string(),
    }
}

fn join_problems(problems: &[(String, FieldProblem)]) -> String {
    let parts: Vec<String> =
        problems.iter().map(|(key, p)| format!("`{key}`: {}", p.message)).collect();
    parts.join("; ")
}

/// Where invalid settings stand: the config file, and per problem the line of its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsFile {
    pub path: PathBuf,
    /// One entry per problem, in the same order; `None` when the key is not in the file.
    pub lines: Vec<Option<usize>>,
}

impl StoreError {
    /// Names the config file (and each key's line) in invalid-settings errors; other errors
    /// pass through. Reads the small config file again to find the lines.
    pub fn in_config_file(self, path: &Path) -> StoreError {
        let StoreError::InvalidSettings { problems, file: None } = self else { return self };
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines = problems.iter().map(|(key, _)| line_of_key(&text, key)).collect();
        StoreError::InvalidSettings {
            problems,
            file: Some(SettingsFile { path: path.to_path_buf(), lines }),
        }
    }

    /// True when the secrets are simply not there yet (no file, no keyring entry).
    pub fn is_missing_secrets(&self) -> bool {
        matches!(
            self,
            StoreError::Missing { role: FileRole::Secrets, .. }
                | StoreError::KeyringEntryMissing { .. }
        )
    }

    /// The parse problem, if this is one (also when wrapped in a refused save).
    pub fn parse_problem(&self) -> Option<&ParseProblem> {
        match self {
            StoreError::Parse(problem) => Some(problem),
            StoreError::ExistingUnparsable(inner) => inner.parse_problem(),
            _ => None,
        }
    }
}

/// Why the lock file could not be created (boxed: it is the largest store error).
#[derive(Debug)]
pub struct LockFolderProblem {
    /// The lock file.
    pub path: PathBuf,
    /// The folder it belongs in.
    pub folder: PathBuf,
    /// The user this process runs as.
    pub user: String,
    /// The folder's owner, when it can be told (Unix).
    pub owner: Option<String>,
    /// The folder's permission bits (Unix).
    pub mode: Option<u32>,
    /// What the system said.
    pub source: io::Error,
}

/// The 1-based line of a dotted config key (`smtp.port`: `port =` under `[smtp]`), found by a
/// plain scan: the file already parsed, so its tables and keys are well formed.
fn line_of_key(text: &str, dotted: &str) -> Option<usize> {
    let (table, key) = dotted.rsplit_once('.').unwrap_or(("", dotted));
    let mut current = "";
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = header.trim();
            continue;
        }
        let name = line.split('=').next().unwrap_or_default().trim().trim_matches('"');
        if current == table && line.contains('=') && name == key {
            return Some(number + 1);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_found_in_their_table() {
        let text = "schema_version = 1\ntimeout_secs = 0\n\n[smtp]\nhost = \"h\"\nport = 0\n\n\
                    [imap]\nport = 0\n";
        assert_eq!(line_of_key(text, "timeout_secs"), Some(2));
        assert_eq!(line_of_key(text, "smtp.port"), Some(6));
        assert_eq!(line_of_key(text, "imap.port"), Some(9));
        assert_eq!(line_of_key(text, "oauth.tenant"), None);
    }
}
