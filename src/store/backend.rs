//! Where one setup's secrets are kept, as its config's `[secrets]` section says: a file (plain
//! TOML, or sealed with DPAPI for `dpapi_file`) or an OS keyring entry.
//!
//! Every store holds the same secrets TOML; only where it lives and how it is wrapped differ.
//! Reading sniffs the form (a sealed file starts with its header line), so a backup taken
//! under one file store still opens after switching to the other; writing always uses the
//! configured form. Locking is the caller's: every writer holds the lock file next to the
//! config, whatever the store.

use std::io;
use std::path::{Path, PathBuf};

use super::config::{SecretsStore, ServiceConfig};
use super::error::{FileRole, StoreError};
use super::keyring_entry::{KeyringEntry, KeyringFailure};
use super::parse::parse_versioned;
use super::paths::ConfigPaths;
use super::sealed::{self, Cipher, FrameError};
use super::secrets::{Secrets, read_secrets_bytes};

/// The store holding a setup's secrets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretsBackend {
    /// A file next to the config (`store = "file"`, or `"dpapi_file"` when `sealed`).
    File {
        /// The secrets file.
        path: PathBuf,
        /// True when its content is DPAPI-encrypted.
        sealed: bool,
        /// Windows: the account given modify access to the file.
        service_account: Option<String>,
    },
    /// An OS keyring entry (`store = "keyring"`).
    Keyring(KeyringEntry),
}

impl SecretsBackend {
    /// The store `config` names. Refuses a store this platform cannot provide.
    pub fn for_config(
        paths: &ConfigPaths,
        config: &ServiceConfig,
    ) -> Result<SecretsBackend, StoreError> {
        let store = config.secrets.store;
        if store.unsupported_here().is_some() {
            return Err(StoreError::SecretsStoreUnsupported {
                config: paths.config.clone(),
                line: None,
                store,
            });
        }
        Ok(match store {
            SecretsStore::File | SecretsStore::DpapiFile => SecretsBackend::File {
                path: paths.resolve_secrets(config.secrets.path.as_deref()),
                sealed: store == SecretsStore::DpapiFile,
                service_account: config.secrets.service_account.clone(),
            },
            SecretsStore::Keyring => SecretsBackend::Keyring(KeyringEntry::for_config(paths)),
        })
    }

    /// The default store of a setup without a config: the plain file next to where the config
    /// would be.
    pub fn default_file(paths: &ConfigPaths) -> SecretsBackend {
        SecretsBackend::File { path: paths.secrets.clone(), sealed: false, service_account: None }
    }

    /// Where the secrets are, for people: a path, or the keyring entry.
    pub fn describe(&self) -> String {
        match self {
            SecretsBackend::File { path, sealed: false, .. } => path.display().to_string(),
            SecretsBackend::File { path, sealed: true, .. } => {
                format!("{} (DPAPI-encrypted)", path.display())
            }
            SecretsBackend::Keyring(entry) => format!("keyring entry {entry}"),
        }
    }

    /// The secrets file, for the file stores.
    pub fn file_path(&self) -> Option<&Path> {
        match self {
            SecretsBackend::File { path, .. } => Some(path),
            SecretsBackend::Keyring(_) => None,
        }
    }

    /// The secrets as stored (file bytes, sealed or plain; the keyring entry's TOML), `None`
    /// when there are none. `check_permissions` refuses a file other users can get at.
    pub(crate) fn read_stored(
        &self,
        check_permissions: bool,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        match self {
            SecretsBackend::File { path, service_account, .. } => {
                match read_secrets_bytes(path, check_permissions, service_account.as_deref()) {
                    Ok(bytes) => Ok(Some(bytes)),
                    Err(StoreError::Missing { role: FileRole::Secrets, .. }) => Ok(None),
                    Err(error) => Err(error),
                }
            }
            SecretsBackend::Keyring(entry) => entry
                .read()
                .map_err(|failure| StoreError::Keyring { entry: entry.clone(), failure }),
        }
    }

    /// Reads and parses the secrets; a missing file or entry is an error
    /// ([`StoreError::is_missing_secrets`]).
    pub(crate) fn read(&self) -> Result<Secrets, StoreError> {
        match (self.read_stored(true)?, self) {
            (Some(bytes), _) => self.decode(&bytes),
            (None, SecretsBackend::File { path, .. }) => {
                Err(StoreError::Missing { role: FileRole::Secrets, path: path.clone() })
            }
            (None, SecretsBackend::Keyring(entry)) => {
                Err(StoreError::KeyringEntryMissing { entry: entry.clone() })
            }
        }
    }

    /// Parses what [`SecretsBackend::read_stored`] returned.
    pub(crate) fn decode(&self, stored: &[u8]) -> Result<Secrets, StoreError> {
        match self {
            SecretsBackend::File { path, .. } => decode_file(stored, path, cipher()),
            SecretsBackend::Keyring(entry) => {
                let name = PathBuf::from(self.describe());
                let text = std::str::from_utf8(stored).map_err(|e| StoreError::Unreadable {
                    role: FileRole::Secrets,
                    path: name.clone(),
                    source: io::Error::new(io::ErrorKind::InvalidData, e),
                })?;
                let secrets = parse_versioned(text, &name, FileRole::Secrets)?;
                tracing::debug!(keyring = %entry, "secrets read from the keyring");
                Ok(secrets)
            }
        }
    }

    /// The secrets in this store's stored form (plain TOML, or sealed for `dpapi_file`).
    pub(crate) fn encode(&self, secrets: &Secrets) -> Result<Vec<u8>, StoreError> {
        match self {
            SecretsBackend::File { path, sealed: true, .. } => {
                encode_sealed(secrets, path, cipher())
            }
            _ => Ok(secrets.to_toml().into_bytes()),
        }
    }

    /// Writes to the keyring entry. When the backend refuses the secrets as too long (Windows
    /// Credential Manager: 2560 bytes), writes them again without the cached access token,
    /// which is only an optimisation: the next `token` then refreshes.
    pub(crate) fn write_keyring(
        entry: &KeyringEntry,
        secrets: &Secrets,
    ) -> Result<bool, StoreError> {
        let keyring_error = |failure| StoreError::Keyring { entry: entry.clone(), failure };
        match entry.write(secrets.to_toml().as_bytes()) {
            Ok(()) => Ok(true),
            Err(KeyringFailure::TooLong { limit }) if secrets.access_token.is_some() => {
                let mut lean = secrets.clone();
                lean.access_token = None;
                lean.access_expires_at = None;
                entry.write(lean.to_toml().as_bytes()).map_err(keyring_error)?;
                tracing::warn!(
                    keyring = %entry,
                    limit,
                    "the cached access token did not fit in the keyring entry and was left out"
                );
                Ok(false)
            }
            Err(failure) => Err(keyring_error(failure)),
        }
    }

    /// The Windows DACL (SDDL) for this store's files, with the service account resolved;
    /// `None` means the default (and is all other platforms get).
    pub(crate) fn file_dacl(&self) -> Result<Option<String>, StoreError> {
        let SecretsBackend::File { service_account: Some(account), .. } = self else {
            return Ok(None);
        };
        windows_dacl(account)
    }
}

#[cfg(windows)]
fn windows_dacl(account: &str) -> Result<Option<String>, StoreError> {
    use super::{acl, windows};

    let unknown =
        |source| StoreError::ServiceAccountUnknown { account: account.to_owned(), source };
    let service = windows::account_sid(account).map_err(unknown)?;
    let user = windows::current_user_sid()
        .map_err(|source| StoreError::Write { path: PathBuf::from(account), source })?;
    Ok(Some(acl::secrets_file_sddl(&user, Some(&service))))
}

#[cfg(not(windows))]
fn windows_dacl(account: &str) -> Result<Option<String>, StoreError> {
    tracing::debug!(account, "[secrets] service_account is used on Windows only");
    Ok(None)
}

/// The cipher of `dpapi_file` on this platform.
pub(crate) fn cipher() -> Option<&'static dyn Cipher> {
    #[cfg(windows)]
    {
        Some(&super::windows::DpapiMachine)
    }
    #[cfg(not(windows))]
    {
        None
    }
}

/// Parses a secrets file's bytes: sealed ones are opened with `cipher` first.
pub(crate) fn decode_file(
    bytes: &[u8],
    path: &Path,
    cipher: Option<&dyn Cipher>,
) -> Result<Secrets, StoreError> {
    let sealed_error = |problem| StoreError::SecretsSealed { path: path.to_path_buf(), problem };
    let opened;
    let plain = if sealed::is_sealed(bytes) {
        let cipher = cipher.ok_or(sealed_error(FrameError::WindowsOnly))?;
        opened = sealed::open(cipher, bytes).map_err(sealed_error)?;
        opened.as_slice()
    } else {
        bytes
    };
    let text = std::str::from_utf8(plain).map_err(|e| StoreError::Unreadable {
        role: FileRole::Secrets,
        path: path.to_path_buf(),
        source: io::Error::new(io::ErrorKind::InvalidData, e),
    })?;
    parse_versioned(text, path, FileRole::Secrets)
}

fn encode_sealed(
    secrets: &Secrets,
    path: &Path,
    cipher: Option<&dyn Cipher>,
) -> Result<Vec<u8>, StoreError> {
    let sealed_error = |problem| StoreError::SecretsSealed { path: path.to_path_buf(), problem };
    let cipher = cipher.ok_or(sealed_error(FrameError::WindowsOnly))?;
    sealed::seal(cipher, secrets.to_toml().as_bytes())
        .map_err(|error| sealed_error(FrameError::Cipher(error)))
}

#[cfg(test)]
mod tests {
    use oauth2::{ClientSecret, RefreshToken};

    use super::*;
    use crate::store::sealed::tests::FakeCipher;

    fn secrets() -> Secrets {
        let mut secrets = Secrets::default();
        secrets.refresh_token = Some(RefreshToken::new("RT-backend-value-1".into()));
        secrets.client_secret = Some(ClientSecret::new("CS-backend-value-2".into()));
        secrets
    }

    #[test]
    fn a_sealed_file_decodes_with_the_cipher_and_plain_toml_still_reads() {
        let path = Path::new("/cfg/alarm.secrets.toml");
        let sealed = encode_sealed(&secrets(), path, Some(&FakeCipher)).expect("sealed");
        assert!(!String::from_utf8_lossy(&sealed).contains("RT-backend-value-1"));

        let back = decode_file(&sealed, path, Some(&FakeCipher)).expect("opens");
        assert_eq!(back.to_toml(), secrets().to_toml());
        let plain = decode_file(secrets().to_toml().as_bytes(), path, Some(&FakeCipher));
        assert_eq!(plain.expect("plain").to_toml(), secrets().to_toml());
    }

    #[test]
    fn a_sealed_file_without_dpapi_says_windows_only() {
        let path = Path::new("/cfg/alarm.secrets.toml");
        let sealed = encode_sealed(&secrets(), path, Some(&FakeCipher)).expect("sealed");
        let error = decode_file(&sealed, path, None).expect_err("no cipher");
        assert!(
            matches!(&error, StoreError::SecretsSealed { problem: FrameError::WindowsOnly, .. }),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            "secrets file /cfg/alarm.secrets.toml cannot be used: it is encrypted with Windows \
             DPAPI, which only Windows can decrypt"
        );
    }

    #[test]
    fn a_tampered_sealed_file_is_a_store_error_naming_the_file() {
        let path = Path::new("/cfg/alarm.secrets.toml");
        let sealed = encode_sealed(&secrets(), path, Some(&FakeCipher)).expect("sealed");
        let text = String::from_utf8(sealed).expect("text").replacen(" 1 ", " 9 ", 1);
        let error = decode_file(text.as_bytes(), path, Some(&FakeCipher)).expect_err("tampered");
        let shown = format!("{error} {error:?}");
        assert!(shown.contains("format version 9"), "{shown}");
        assert!(!shown.contains("RT-backend-value-1") && !shown.contains("CS-backend"), "{shown}");
    }

    #[test]
    fn dpapi_file_is_refused_off_windows_with_the_config_named() {
        let paths = ConfigPaths::for_config(Path::new("/cfg/alarm.toml"));
        let profile = crate::store::config::tests::microsoft_profile();
        let mut config = ServiceConfig::from_profile(&profile, &Default::default());
        config.secrets.store = SecretsStore::DpapiFile;
        let result = SecretsBackend::for_config(&paths, &config);
        if cfg!(windows) {
            assert!(result.is_ok());
            return;
        }
        let error = result.expect_err("not on this platform");
        assert_eq!(
            error.to_string(),
            "/cfg/alarm.toml: `secrets.store = \"dpapi_file\"`: dpapi_file works on Windows \
             only; use file or keyring"
        );
    }
}
