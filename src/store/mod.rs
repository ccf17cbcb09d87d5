//! The service config store: the plain settings ([`ServiceConfig`], `mailgrant.toml`), the
//! secrets kept apart ([`Secrets`], `mailgrant.secrets.toml`, 0600), atomic saves with
//! numbered backups, and the lock that keeps two processes from losing a refresh token.
//!
//! Invariants:
//! - Every write replaces a file atomically (temp file, fsync, rename, fsync folder): a reader
//!   or a killed writer leaves the old or the new complete file, never a torn one.
//! - Every writer holds the exclusive lock next to the config ([`StoreLock`]); readers need
//!   none, because files are only ever replaced whole.
//! - A config or secrets file that does not parse is never overwritten unless the caller says
//!   so ([`SaveOptions::overwrite_unparsable`]); it is then kept as a backup.
//! - A stored refresh token is never dropped or replaced by an older one, except by
//!   [`sign_out`] (BR-17).
//!
//! The service loads its setup with [`load`] and refreshes with [`update_secrets_locked`].

mod atomic;
pub mod backup;
pub mod config;
pub mod error;
pub mod lock;
mod parse;
pub mod paths;
pub mod secrets;

use std::io;
use std::path::{Path, PathBuf};

pub use backup::{Backup, KEEP as BACKUPS_KEPT};
pub use config::{
    Identities, MailServer, OAuthSettings, SecretsLocation, SecretsStore, ServiceConfig,
};
pub use error::{FileRole, ParseProblem, ParseProblemKind, StoreError};
pub use lock::StoreLock;
pub use parse::SCHEMA_VERSION;
pub use paths::ConfigPaths;
pub use secrets::Secrets;

use atomic::{Access, create_private_dir, remove_stale_temps, write_atomic};
use secrets::read_secrets;

/// A loaded setup: the plain settings and the secrets they point to.
#[derive(Clone, Debug)]
pub struct StoredSetup {
    /// The plain settings.
    pub config: ServiceConfig,
    /// The secrets, read from the file the config names.
    pub secrets: Secrets,
}

/// Choices for [`save_with`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SaveOptions {
    /// Replace an existing config or secrets file that does not parse (or is from a newer
    /// mailgrant). Set only after the operator agreed; the old file is kept as a backup.
    pub overwrite_unparsable: bool,
}

/// What [`save_with`] wrote.
#[derive(Clone, Debug)]
pub struct Saved {
    /// The config as written (with `[secrets] path` filled in).
    pub config: ServiceConfig,
    /// The secrets as written: a newer refresh token found on disk was kept (see
    /// `kept_newer_refresh_token`).
    pub secrets: Secrets,
    /// The secrets file written.
    pub secrets_path: PathBuf,
    /// Number of the backup holding the previous files, if there were any.
    pub backup: Option<u32>,
    /// True when the refresh token on disk was newer than the one passed in and was kept.
    pub kept_newer_refresh_token: bool,
}

/// Error from [`update_secrets_locked`]: the store failed, or the caller's closure did.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError<E> {
    /// Locking, reading or writing failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The closure returned this error (after any change it made was saved).
    #[error("{0}")]
    Update(E),
}

/// Loads the config and its secrets. Errors name the file, and for parse problems the line,
/// column and key. The secrets file is refused when other users can read it.
pub fn load(paths: &ConfigPaths) -> Result<StoredSetup, StoreError> {
    let config = load_config(paths)?;
    let secrets_path = paths.resolve_secrets(config.secrets.path.as_deref());
    let secrets = read_secrets(&secrets_path, true)?;

    tracing::debug!(config = %paths.config.display(), "setup loaded");
    Ok(StoredSetup { config, secrets })
}

/// Loads only the plain config (for reopening a setup whose secrets are gone).
pub fn load_config(paths: &ConfigPaths) -> Result<ServiceConfig, StoreError> {
    let text = read_config_text(&paths.config)?;
    parse::parse_versioned(&text, &paths.config, FileRole::Config)
}

/// Loads only the secrets the config points to (or the default secrets path without config).
pub fn load_secrets(paths: &ConfigPaths) -> Result<Secrets, StoreError> {
    read_secrets(&secrets_path(paths)?, true)
}

/// Saves config and secrets with default options: refuses to replace an existing file that
/// does not parse ([`StoreError::ExistingUnparsable`]).
pub fn save(
    paths: &ConfigPaths,
    config: &ServiceConfig,
    secrets: &Secrets,
) -> Result<(), StoreError> {
    save_with(paths, config, secrets, SaveOptions::default()).map(|_| ())
}

/// Saves config and secrets under the lock: checks the existing files parse (unless told to
/// overwrite), keeps them as a numbered backup, writes the secrets (0600) and then the config,
/// each atomically. A newer refresh token already on disk is kept (another process rotated
/// it since `secrets` was read).
pub fn save_with(
    paths: &ConfigPaths,
    config: &ServiceConfig,
    secrets: &Secrets,
    options: SaveOptions,
) -> Result<Saved, StoreError> {
    let write_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| StoreError::Write { path, source }
    };
    create_private_dir(&paths.dir()).map_err(write_error(&paths.dir()))?;
    let _lock = StoreLock::acquire(paths)?;

    // The existing config must parse, or the operator must have said to replace it.
    let old_config = read_optional(&paths.config, FileRole::Config)?;
    if let Some(bytes) = &old_config
        && let Err(error) = utf8(bytes, &paths.config, FileRole::Config).and_then(|text| {
            parse::parse_versioned::<ServiceConfig>(text, &paths.config, FileRole::Config)
        })
    {
        refuse_unless(options, error)?;
    }

    let mut config = config.clone();
    let secrets_file = secrets_file_name(paths, &config);
    config.secrets.path = Some(secrets_file);
    let secrets_path = paths.resolve_secrets(config.secrets.path.as_deref());

    // Same for the secrets; a parsable one is merged so a live refresh token is never lost.
    let mut secrets = secrets.clone();
    let mut kept_newer_refresh_token = false;
    let old_secrets = read_optional(&secrets_path, FileRole::Secrets)?;
    if let Some(bytes) = &old_secrets {
        let on_disk = utf8(bytes, &secrets_path, FileRole::Secrets).and_then(|text| {
            parse::parse_versioned::<Secrets>(text, &secrets_path, FileRole::Secrets)
        });
        match on_disk {
            Ok(on_disk) => kept_newer_refresh_token = secrets.keep_live_token(&on_disk),
            Err(error) => refuse_unless(options, error)?,
        }
    }
    if kept_newer_refresh_token {
        tracing::warn!(
            secrets = %secrets_path.display(),
            "kept the newer refresh token already on disk"
        );
    }

    for path in [&secrets_path, &paths.config] {
        let removed = remove_stale_temps(path).map_err(write_error(path))?;
        if removed > 0 {
            tracing::warn!(file = %path.display(), removed, "removed temp files of a killed save");
        }
    }

    let backup = backup::take(paths, old_config.as_deref(), old_secrets.as_deref())
        .map_err(write_error(&paths.backups))?;

    let config_text = toml::to_string(&config).map_err(|e| StoreError::Write {
        path: paths.config.clone(),
        source: io::Error::new(io::ErrorKind::InvalidData, e),
    })?;
    write_atomic(&secrets_path, secrets.to_toml().as_bytes(), Access::OwnerOnly)
        .map_err(write_error(&secrets_path))?;
    write_atomic(&paths.config, config_text.as_bytes(), Access::KeepExisting)
        .map_err(write_error(&paths.config))?;

    tracing::info!(config = %paths.config.display(), backup, "setup saved");
    Ok(Saved { config, secrets, secrets_path, backup, kept_newer_refresh_token })
}

/// Changes the secrets under the lock, for refresh-token rotation across processes: takes the
/// lock, re-reads the secrets (another process may have refreshed meanwhile), calls `f`, writes
/// the result atomically if it changed, releases the lock, and only then returns `f`'s value.
///
/// `f` should check whether work is still needed (for example
/// [`Secrets::valid_access_token`]) before refreshing. Changes are saved even when `f`
/// returns an error (for example marking `needs_sign_in`). A refresh token `f` removes is put
/// back unless `f` called [`Secrets::sign_out`]. No backup is taken.
pub fn update_secrets_locked<T, E>(
    paths: &ConfigPaths,
    f: impl FnOnce(&mut Secrets) -> Result<T, E>,
) -> Result<T, UpdateError<E>> {
    let _lock = StoreLock::acquire(paths)?;
    let path = secrets_path(paths)?;
    let before = read_secrets(&path, true)?;

    let mut secrets = before.clone();
    let result = f(&mut secrets);
    remove_stale_temps(&path).map_err(|source| StoreError::Write { path: path.clone(), source })?;
    if secrets.keep_live_token(&before) {
        tracing::warn!(secrets = %path.display(), "an update tried to drop the refresh token");
    }

    let text = secrets.to_toml();
    if text != before.to_toml() {
        write_atomic(&path, text.as_bytes(), Access::OwnerOnly)
            .map_err(|source| StoreError::Write { path: path.clone(), source })?;
        tracing::debug!(secrets = %path.display(), "secrets updated");
    }
    result.map_err(UpdateError::Update)
}

/// Removes the stored tokens (keeping the client secret), under the lock. Revoking the grant
/// on the provider's side is a separate step the operator is told about.
pub fn sign_out(paths: &ConfigPaths) -> Result<(), StoreError> {
    let result = update_secrets_locked(paths, |secrets| {
        secrets.sign_out();
        Ok::<(), std::convert::Infallible>(())
    });
    match result {
        Ok(()) => Ok(()),
        Err(UpdateError::Store(error)) => Err(error),
        Err(UpdateError::Update(never)) => match never {},
    }
}

/// The secrets file of a setup: as the config names it, or the default without a config.
fn secrets_path(paths: &ConfigPaths) -> Result<PathBuf, StoreError> {
    match load_config(paths) {
        Ok(config) => Ok(paths.resolve_secrets(config.secrets.path.as_deref())),
        Err(StoreError::Missing { role: FileRole::Config, .. }) => Ok(paths.secrets.clone()),
        Err(error) => Err(error),
    }
}

/// The `[secrets] path` to write: the config's own, or the default file name next to it.
fn secrets_file_name(paths: &ConfigPaths, config: &ServiceConfig) -> PathBuf {
    match &config.secrets.path {
        Some(path) => path.clone(),
        None => paths
            .secrets
            .file_name()
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("mailgrant.secrets.toml")),
    }
}

fn refuse_unless(options: SaveOptions, error: StoreError) -> Result<(), StoreError> {
    let unparsable = match &error {
        StoreError::Parse(_) | StoreError::NewerSchema { .. } => true,
        StoreError::Unreadable { source, .. } => source.kind() == io::ErrorKind::InvalidData,
        _ => false,
    };
    match (unparsable, options.overwrite_unparsable) {
        (true, false) => Err(StoreError::ExistingUnparsable(Box::new(error))),
        (true, true) => {
            tracing::warn!("replacing a file that did not parse, as the operator chose");
            Ok(())
        }
        (false, _) => Err(error),
    }
}

fn read_config_text(path: &Path) -> Result<String, StoreError> {
    match std::fs::read(path) {
        Ok(bytes) => String::from_utf8(bytes).map_err(|e| StoreError::Unreadable {
            role: FileRole::Config,
            path: path.to_path_buf(),
            source: io::Error::new(io::ErrorKind::InvalidData, e.utf8_error()),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            Err(StoreError::Missing { role: FileRole::Config, path: path.to_path_buf() })
        }
        Err(source) => {
            Err(StoreError::Unreadable { role: FileRole::Config, path: path.to_path_buf(), source })
        }
    }
}

/// A file's bytes, `None` when it does not exist. Secrets are read without the permission
/// check: the file is about to be replaced by a 0600 one.
fn read_optional(path: &Path, role: FileRole) -> Result<Option<Vec<u8>>, StoreError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StoreError::Unreadable { role, path: path.to_path_buf(), source }),
    }
}

fn utf8<'a>(bytes: &'a [u8], path: &Path, role: FileRole) -> Result<&'a str, StoreError> {
    std::str::from_utf8(bytes).map_err(|e| StoreError::Unreadable {
        role,
        path: path.to_path_buf(),
        source: io::Error::new(io::ErrorKind::InvalidData, e),
    })
}
