//! The OS keyring as a secrets store (`store = "keyring"`): one entry per setup, service
//! `mailgrant`, account = the config's absolute path, holding the whole secrets TOML.
//!
//! Backends: the kernel keyring (keyutils) on Linux, which works without a desktop session but
//! keeps keys in memory only (a reboot, or a few days without use after the last login, loses
//! them); the Credential Manager on Windows (per user, at most 2560 bytes an entry). Other
//! platforms have no backend and get [`KeyringFailure::Unsupported`], never a silent in-memory
//! stand-in. Errors carry the backend's words, never the entry's content.

use std::fmt;
use std::path::{Path, PathBuf};

use super::paths::ConfigPaths;

/// The keyring service name of every mailgrant entry.
pub const KEYRING_SERVICE: &str = "mailgrant";

/// The keyring entry of one setup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyringEntry {
    /// Always [`KEYRING_SERVICE`].
    pub service: String,
    /// The config's absolute path (symbolic links resolved on Unix).
    pub account: String,
}

impl fmt::Display for KeyringEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "service \"{}\", account \"{}\"", self.service, self.account)
    }
}

/// Why the keyring could not be used. Carries the backend's message, never a secret.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyringFailure {
    /// No keyring backend on this platform.
    #[error("this platform has no keyring mailgrant can use (Linux and Windows only)")]
    Unsupported,
    /// The keyring exists but cannot be reached (locked, no session).
    #[error("the keyring cannot be reached: {0}")]
    NoAccess(String),
    /// The backend refused the operation.
    #[error("the keyring refused: {0}")]
    Platform(String),
    /// The secrets are longer than the backend takes.
    #[error("the secrets are too long for this keyring ({limit} bytes at most)")]
    TooLong {
        /// The backend's limit in bytes.
        limit: u32,
    },
    /// The entry's name or content was refused.
    #[error("the keyring does not accept the {what}: {reason}")]
    Invalid {
        /// Which part (`description`, `password`).
        what: String,
        /// Why.
        reason: String,
    },
}

impl KeyringEntry {
    /// The entry for the setup at `paths`.
    pub fn for_config(paths: &ConfigPaths) -> KeyringEntry {
        KeyringEntry {
            service: KEYRING_SERVICE.to_owned(),
            account: absolute_config_path(&paths.config).display().to_string(),
        }
    }

    /// The stored bytes, `None` when there is no entry.
    pub(crate) fn read(&self) -> Result<Option<Vec<u8>>, KeyringFailure> {
        backend::read(self)
    }

    /// True when the entry exists (its content is not returned).
    pub fn exists(&self) -> Result<bool, KeyringFailure> {
        backend::read(self).map(|bytes| bytes.is_some())
    }

    /// Creates or replaces the entry.
    pub(crate) fn write(&self, bytes: &[u8]) -> Result<(), KeyringFailure> {
        backend::write(self, bytes)
    }

    /// Removes the entry; false when there was none.
    pub fn delete(&self) -> Result<bool, KeyringFailure> {
        backend::delete(self)
    }
}

/// The config's path made absolute; on Unix its folder's symbolic links are resolved so two
/// ways of naming the same config find the same entry.
fn absolute_config_path(config: &Path) -> PathBuf {
    let absolute = std::path::absolute(config).unwrap_or_else(|_| config.to_path_buf());
    #[cfg(unix)]
    if let (Some(dir), Some(name)) = (absolute.parent(), absolute.file_name())
        && let Ok(dir) = std::fs::canonicalize(dir)
    {
        return dir.join(name);
    }
    absolute
}

#[cfg(any(target_os = "linux", windows))]
mod backend {
    use super::{KeyringEntry, KeyringFailure};

    fn entry(of: &KeyringEntry) -> Result<keyring::Entry, KeyringFailure> {
        keyring::Entry::new(&of.service, &of.account).map_err(failure)
    }

    pub(super) fn read(of: &KeyringEntry) -> Result<Option<Vec<u8>>, KeyringFailure> {
        match entry(of)?.get_secret() {
            Ok(bytes) => Ok(Some(bytes)),
            Err(keyring::Error::NoEntry) => Ok(None),
            Err(error) => Err(failure(error)),
        }
    }

    pub(super) fn write(of: &KeyringEntry, bytes: &[u8]) -> Result<(), KeyringFailure> {
        entry(of)?.set_secret(bytes).map_err(failure)
    }

    pub(super) fn delete(of: &KeyringEntry) -> Result<bool, KeyringFailure> {
        match entry(of)?.delete_credential() {
            Ok(()) => Ok(true),
            Err(keyring::Error::NoEntry) => Ok(false),
            Err(error) => Err(failure(error)),
        }
    }

    /// Maps keyring's error without ever keeping `BadEncoding`'s bytes (they are the secret).
    fn failure(error: keyring::Error) -> KeyringFailure {
        match error {
            keyring::Error::NoStorageAccess(e) => KeyringFailure::NoAccess(e.to_string()),
            keyring::Error::PlatformFailure(e) => KeyringFailure::Platform(e.to_string()),
            keyring::Error::TooLong(_, limit) => KeyringFailure::TooLong { limit },
            keyring::Error::Invalid(what, reason) => KeyringFailure::Invalid { what, reason },
            keyring::Error::NoEntry => KeyringFailure::Platform("no such entry".to_owned()),
            keyring::Error::BadEncoding(_) => {
                KeyringFailure::Platform("the entry is not in the expected encoding".to_owned())
            }
            keyring::Error::Ambiguous(found) => {
                KeyringFailure::Platform(format!("{} entries match", found.len()))
            }
            _ => KeyringFailure::Platform("an unknown keyring error".to_owned()),
        }
    }
}

#[cfg(not(any(target_os = "linux", windows)))]
mod backend {
    use super::{KeyringEntry, KeyringFailure};

    pub(super) fn read(_: &KeyringEntry) -> Result<Option<Vec<u8>>, KeyringFailure> {
        Err(KeyringFailure::Unsupported)
    }

    pub(super) fn write(_: &KeyringEntry, _: &[u8]) -> Result<(), KeyringFailure> {
        Err(KeyringFailure::Unsupported)
    }

    pub(super) fn delete(_: &KeyringEntry) -> Result<bool, KeyringFailure> {
        Err(KeyringFailure::Unsupported)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_account_is_the_absolute_config_path() {
        let dir = tempfile::tempdir().expect("temp dir");
        let paths = ConfigPaths::for_config(&dir.path().join("alarm.toml"));
        let entry = KeyringEntry::for_config(&paths);
        assert_eq!(entry.service, "mailgrant");
        let expected = std::fs::canonicalize(dir.path()).expect("canonical").join("alarm.toml");
        assert_eq!(entry.account, expected.display().to_string());
        assert!(entry.to_string().starts_with("service \"mailgrant\", account \"/"), "{entry}");
    }
}
