//! The service config store: the plain settings ([`ServiceConfig`], `mailgrant.toml`), the
//! secrets kept apart ([`Secrets`]; in `mailgrant.secrets.toml`, owner-only, optionally
//! DPAPI-encrypted on Windows, or in the OS keyring: [`SecretsBackend`]), atomic saves with
//! numbered backups, and the lock that keeps two processes from losing a refresh token.
//!
//! Invariants:
//! - Every write replaces a file atomically (temp file, fsync, rename, fsync folder): a reader
//!   or a killed writer leaves the old or the new complete file, never a torn one.
//! - Every writer holds the exclusive lock next to the config ([`StoreLock`]), whatever store
//!   holds the secrets; readers need none, because files and keyring entries are only ever
//!   replaced whole.
//! - A config or secrets file that does not parse is never overwritten unless the caller says
//!   so ([`SaveOptions::overwrite_unparsable`]); it is then kept as a backup.
//! - A stored refresh token is never dropped or replaced by an older one, except by
//!   [`sign_out`] (BR-17).
//!
//! The service loads its setup with [`load`] and refreshes with [`update_secrets_locked`].

pub mod acl;
mod atomic;
pub mod backend;
pub mod backup;
pub mod config;
pub mod error;
pub mod keyring_entry;
pub mod last_check;
pub mod lock;
mod parse;
pub mod paths;
pub mod sealed;
pub mod secrets;
#[cfg(windows)]
mod windows;

use std::io;
use std::path::{Path, PathBuf};
use std::time::Instant;

pub use backend::SecretsBackend;
pub use backup::{Backup, KEEP as BACKUPS_KEPT};
pub use config::{
    Identities, MailServer, OAuthSettings, SecretsLocation, SecretsStore, ServiceConfig,
};
pub use error::{
    FileRole, LockFolderProblem, LockHolder, ParseProblem, ParseProblemKind, StoreError,
};
pub use keyring_entry::{KEYRING_SERVICE, KeyringEntry, KeyringFailure};
pub use lock::StoreLock;
pub use parse::SCHEMA_VERSION;
pub use paths::ConfigPaths;
pub use secrets::Secrets;

use atomic::{Access, create_private_dir, remove_stale_temps, write_atomic, write_atomic_group};
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
    /// Where the secrets were written.
    pub secrets_store: SecretsBackend,
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
    /// The closure returned this error, and saving the change it made failed too: the
    /// closure's error is the cause the operator needs first.
    #[error("{error} (recording it failed too: {store})")]
    NotSaved {
        /// The closure's error.
        error: E,
        /// Why its change could not be saved.
        store: StoreError,
    },
}

/// Loads the config and its secrets. Errors name the file, and for parse problems the line,
/// column and key. A secrets file is refused when other users can read it.
pub fn load(paths: &ConfigPaths) -> Result<StoredSetup, StoreError> {
    let config = load_config(paths)?;
    let secrets = SecretsBackend::for_config(paths, &config)?.read()?;

    tracing::debug!(config = %paths.config.display(), "setup loaded");
    Ok(StoredSetup { config, secrets })
}

/// Loads only the plain config (for reopening a setup whose secrets are gone). A secrets store
/// this platform lacks is refused here, with the line of `[secrets] store`.
pub fn load_config(paths: &ConfigPaths) -> Result<ServiceConfig, StoreError> {
    let text = read_config_text(&paths.config)?;
    let config: ServiceConfig = parse::parse_versioned(&text, &paths.config, FileRole::Config)?;
    let store = config.secrets.store;
    if store.unsupported_here().is_some() {
        let line = parse::line_of_table_key(&text, "secrets", "store");
        return Err(StoreError::SecretsStoreUnsupported {
            config: paths.config.clone(),
            line,
            store,
        });
    }
    Ok(config)
}

/// Loads only the secrets the config points to (or the default secrets file without config).
pub fn load_secrets(paths: &ConfigPaths) -> Result<Secrets, StoreError> {
    secrets_backend(paths)?.read()
}

/// The store holding a setup's secrets: as its config names it, or the default secrets file
/// when there is no config yet.
pub fn secrets_backend(paths: &ConfigPaths) -> Result<SecretsBackend, StoreError> {
    match load_config(paths) {
        Ok(config) => SecretsBackend::for_config(paths, &config),
        Err(StoreError::Missing { role: FileRole::Config, .. }) => {
            Ok(SecretsBackend::default_file(paths))
        }
        Err(error) => Err(error),
    }
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
/// overwrite), keeps them as a numbered backup, writes the secrets (owner-only file, sealed
/// file or keyring entry) and then the config, each atomically. A newer refresh token already
/// stored is kept (another process rotated it since `secrets` was read).
///
/// A `config` whose `[secrets]` is the default (as [`ServiceConfig::from_profile`] makes it)
/// keeps the `[secrets]` of the config it replaces, so a save from the wizard does not turn a
/// `dpapi_file` or `keyring` setup back into a plain file. To change the store, pass a config
/// that says so (`store`, or for `file` an explicit `path`).
///
/// When the store changes, the live secrets are read from the old one, and after the save a
/// plain secrets file or keyring entry the new config no longer names is removed (a file's
/// content stays in the backup). A keyring's secrets are not copied into backups.
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
    let mut old_parsed = None;
    if let Some(bytes) = &old_config {
        let parsed = utf8(bytes, &paths.config, FileRole::Config).and_then(|text| {
            parse::parse_versioned::<ServiceConfig>(text, &paths.config, FileRole::Config)
        });
        match parsed {
            Ok(parsed) => old_parsed = Some(parsed),
            Err(error) => refuse_unless(options, error)?,
        }
    }

    let mut config = config.clone();
    if let Some(old) = &old_parsed
        && config.secrets == SecretsLocation::default()
        && old.secrets != SecretsLocation::default()
    {
        // A config made from the wizard's form carries the default `[secrets]`; the wizard has
        // no store choice, so the one already configured (store, path, service account) stays.
        config.secrets = old.secrets.clone();
        tracing::debug!(store = %config.secrets.store, "kept the configured secrets store");
    }
    config.secrets.path = config.secrets.store.is_file().then(|| secrets_file_name(paths, &config));
    let backend = SecretsBackend::for_config(paths, &config)?;
    let dacl = backend.file_dacl()?;
    let private = Access::OwnerOnly { windows_sddl: dacl.as_deref() };

    // The secrets now stored: where the old config kept them (when the store changes), else in
    // the new store. A parsable set is merged so a live refresh token is never lost; the rest
    // must parse too.
    let old_backend = old_parsed
        .as_ref()
        .and_then(|old| SecretsBackend::for_config(paths, old).ok())
        .filter(|old| *old != backend);
    let mut old_secrets = None;
    let mut stored_in = &backend;
    for candidate in old_backend.iter().chain([&backend]) {
        old_secrets = candidate.read_stored(false)?;
        stored_in = candidate;
        if old_secrets.is_some() {
            break;
        }
    }
    let mut secrets = secrets.clone();
    let mut kept_newer_refresh_token = false;
    if let Some(bytes) = &old_secrets {
        match stored_in.decode(bytes) {
            Ok(on_disk) => kept_newer_refresh_token = secrets.keep_live_token(&on_disk),
            Err(error) => refuse_unless(options, error)?,
        }
    }
    if kept_newer_refresh_token {
        let secrets = backend.describe();
        tracing::warn!(%secrets, "kept the newer refresh token already stored");
    }

    for path in backend.file_path().into_iter().chain([paths.config.as_path()]) {
        let removed = remove_stale_temps(path).map_err(write_error(path))?;
        if removed > 0 {
            tracing::warn!(file = %path.display(), removed, "removed temp files of a killed save");
        }
    }

    // A keyring's secrets stay in the keyring: backups of such a setup hold the config only.
    let backup_secrets = stored_in.file_path().and(old_secrets.as_deref());
    let backup = backup::take(paths, old_config.as_deref(), backup_secrets, private)
        .map_err(write_error(&paths.backups))?;

    let config_text = toml::to_string(&config).map_err(|e| StoreError::Write {
        path: paths.config.clone(),
        source: io::Error::new(io::ErrorKind::InvalidData, e),
    })?;
    match &backend {
        // Both files are written before either is renamed: a kill leaves the old pair, the new
        // pair, or (between the two renames) new secrets with the old config, never a torn
        // file.
        SecretsBackend::File { path, .. } => {
            let stored = backend.encode(&secrets)?;
            write_atomic_group(&[
                (path, &stored, private),
                (&paths.config, config_text.as_bytes(), Access::KeepExisting),
            ])
            .map_err(write_error(&paths.config))?;
        }
        SecretsBackend::Keyring(entry) => {
            SecretsBackend::write_keyring(entry, &secrets)?;
            write_atomic(&paths.config, config_text.as_bytes(), Access::KeepExisting)
                .map_err(write_error(&paths.config))?;
        }
    }
    if let Some(old) = &old_backend {
        remove_previous_store(old, &backend);
    }

    tracing::info!(
        config = %paths.config.display(),
        store = %config.secrets.store,
        backup,
        "setup saved"
    );
    Ok(Saved { config, secrets, secrets_store: backend, backup, kept_newer_refresh_token })
}

/// After a save moved the secrets to another store, removes the old plain file or keyring
/// entry so no second copy of the refresh token lingers. Failing to is logged, not fatal.
fn remove_previous_store(old: &SecretsBackend, new: &SecretsBackend) {
    let result = match old {
        SecretsBackend::File { path, .. } if new.file_path() != Some(path.as_path()) => {
            match std::fs::remove_file(path) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                other => other.map_err(|e| e.to_string()),
            }
        }
        SecretsBackend::File { .. } => Ok(()),
        SecretsBackend::Keyring(entry) => entry.delete().map(|_| ()).map_err(|e| e.to_string()),
    };
    let previous = old.describe();
    match result {
        Ok(()) => tracing::info!(%previous, "removed the previous secrets store"),
        Err(error) => tracing::warn!(%previous, %error, "could not remove the previous store"),
    }
}

/// Changes the secrets under the lock, for refresh-token rotation across processes: takes the
/// lock, re-reads the secrets (another process may have refreshed meanwhile), calls `f`, writes
/// the result atomically if it changed, releases the lock, and only then returns `f`'s value.
///
/// `f` should check whether work is still needed (for example
/// [`Secrets::valid_access_token`]) before refreshing. Changes are saved even when `f`
/// returns an error (for example marking `needs_sign_in`); when that save fails too, both are
/// returned ([`UpdateError::NotSaved`]). A refresh token `f` removes is put back unless `f`
/// called [`Secrets::sign_out`]. No backup is taken. Waits for the lock as long as it takes:
/// see [`update_secrets_locked_until`].
pub fn update_secrets_locked<T, E>(
    paths: &ConfigPaths,
    f: impl FnOnce(&mut Secrets) -> Result<T, E>,
) -> Result<T, UpdateError<E>> {
    let lock = StoreLock::acquire(paths)?;
    update_under(lock, paths, f)
}

/// [`update_secrets_locked`], waiting for the lock until `deadline` at the latest
/// ([`StoreError::LockBusy`] then, with nothing read or changed).
pub fn update_secrets_locked_until<T, E>(
    paths: &ConfigPaths,
    deadline: Instant,
    f: impl FnOnce(&mut Secrets) -> Result<T, E>,
) -> Result<T, UpdateError<E>> {
    let lock = StoreLock::acquire_until(paths, deadline)?;
    update_under(lock, paths, f)
}

/// The work of [`update_secrets_locked`] once `_lock` is held; it is released on return.
fn update_under<T, E>(
    _lock: StoreLock,
    paths: &ConfigPaths,
    f: impl FnOnce(&mut Secrets) -> Result<T, E>,
) -> Result<T, UpdateError<E>> {
    let backend = secrets_backend(paths)?;
    let before = backend.read()?;

    let mut secrets = before.clone();
    let result = f(&mut secrets);
    if secrets.keep_live_token(&before) {
        tracing::warn!(secrets = %backend.describe(), "an update tried to drop the refresh token");
    }

    let saved = save_update(&backend, &before, &secrets);
    match (result, saved) {
        (Ok(value), Ok(())) => Ok(value),
        (Err(error), Ok(())) => Err(UpdateError::Update(error)),
        (Ok(_), Err(store)) => Err(UpdateError::Store(store)),
        (Err(error), Err(store)) => Err(UpdateError::NotSaved { error, store }),
    }
}

/// Writes `secrets` to `backend` when they differ from `before` (under the caller's lock).
fn save_update(
    backend: &SecretsBackend,
    before: &Secrets,
    secrets: &Secrets,
) -> Result<(), StoreError> {
    if let Some(path) = backend.file_path() {
        remove_stale_temps(path)
            .map_err(|source| StoreError::Write { path: path.to_path_buf(), source })?;
    }
    if secrets.to_toml() == before.to_toml() {
        return Ok(());
    }

    match backend {
        SecretsBackend::File { path, .. } => {
            let stored = backend.encode(secrets)?;
            let dacl = backend.file_dacl()?;
            let private = Access::OwnerOnly { windows_sddl: dacl.as_deref() };
            write_atomic(path, &stored, private)
                .map_err(|source| StoreError::Write { path: path.clone(), source })?;
        }
        SecretsBackend::Keyring(entry) => {
            SecretsBackend::write_keyring(entry, secrets)?;
        }
    }
    tracing::debug!(secrets = %backend.describe(), "secrets updated");
    Ok(())
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
        Err(UpdateError::Update(never) | UpdateError::NotSaved { error: never, .. }) => {
            match never {}
        }
    }
}

/// A numbered backup with what it holds, for listing and choosing one to restore.
#[derive(Clone, Debug)]
pub struct BackupInfo {
    /// The backup's files and date.
    pub backup: Backup,
    /// The mailbox its config is for (`None` when it has no config half or it does not parse).
    pub mailbox: Option<String>,
    /// The account signed in when it was taken, from its secrets half.
    pub signed_in_account: Option<String>,
    /// True when its secrets half holds a refresh token.
    pub has_refresh_token: bool,
}

/// The backups of a setup, oldest first, with the mailbox and account each holds.
pub fn list_backups(paths: &ConfigPaths) -> Result<Vec<BackupInfo>, StoreError> {
    let backups = backup::list(paths).map_err(|source| StoreError::Unreadable {
        role: FileRole::Config,
        path: paths.backups.clone(),
        source,
    })?;
    Ok(backups
        .into_iter()
        .map(|backup| {
            let config = backup.config.as_deref().and_then(|p| read_backup_config(p).ok());
            let secrets = backup.secrets.as_deref().and_then(|p| read_secrets(p, true).ok());
            BackupInfo {
                mailbox: config.map(|c| c.mailbox),
                signed_in_account: secrets.as_ref().and_then(|s| s.signed_in_account.clone()),
                has_refresh_token: secrets.as_ref().is_some_and(Secrets::has_refresh_token),
                backup,
            }
        })
        .collect())
}

/// Puts backup `number` back in place, as a save (so the current files become the newest
/// backup and the restore can itself be undone). Current files that do not parse are replaced:
/// restoring is how a broken config is repaired. A half the backup lacks is taken from the
/// current setup. The refresh-token rule of every save holds: when the refresh token on disk is
/// newer than the backup's (it was rotated since), the newer one is kept
/// ([`Saved::kept_newer_refresh_token`]), because a rotated-out token is dead.
pub fn restore_backup(paths: &ConfigPaths, number: u32) -> Result<Saved, StoreError> {
    let backups = backup::list(paths).map_err(|source| StoreError::Unreadable {
        role: FileRole::Config,
        path: paths.backups.clone(),
        source,
    })?;
    let kept: Vec<u32> = backups.iter().map(|b| b.number).collect();
    let Some(chosen) = backups.into_iter().find(|b| b.number == number) else {
        return Err(StoreError::BackupNotFound { number, kept });
    };

    let config = match &chosen.config {
        Some(path) => read_backup_config(path)?,
        None => load_config(paths)?,
    };
    let secrets = match &chosen.secrets {
        Some(path) => read_secrets(path, true)?,
        None => match load_secrets(paths) {
            Ok(secrets) => secrets,
            Err(error) if error.is_missing_secrets() => Secrets::default(),
            Err(error) => return Err(error),
        },
    };

    let saved = save_with(paths, &config, &secrets, SaveOptions { overwrite_unparsable: true })?;
    tracing::info!(number, backup = saved.backup, "backup restored");
    Ok(saved)
}

fn read_backup_config(path: &Path) -> Result<ServiceConfig, StoreError> {
    let text = read_config_text(path)?;
    parse::parse_versioned(&text, path, FileRole::Config)
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
        // A sealed file that does not open here (damaged, or from another machine).
        StoreError::SecretsSealed { .. } => true,
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

/// A config is a few KB; anything past this is another file, read no further.
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

fn read_config_text(path: &Path) -> Result<String, StoreError> {
    use std::io::Read as _;

    let read = std::fs::File::open(path).and_then(|file| {
        let mut bytes = Vec::new();
        file.take(MAX_CONFIG_BYTES + 1).read_to_end(&mut bytes)?;
        if bytes.len() as u64 > MAX_CONFIG_BYTES {
            return Err(io::Error::new(
                io::ErrorKind::FileTooLarge,
                "larger than 1 MiB, far more than any mailgrant config",
            ));
        }
        Ok(bytes)
    });
    match read {
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

#[cfg(test)]
mod tests {
    use oauth2::{AccessToken, RefreshToken};
    use time::macros::datetime;

    use super::*;
    use crate::oauth::TokenSet;
    use crate::profile::ProfileForm;

    fn config(recipient: &str) -> ServiceConfig {
        let form = ProfileForm {
            tenant: "00000000-0000-0000-0000-000000000000".into(),
            client_id: "00000000-0000-0000-0000-000000000000".into(),
            mailbox: "alarms@example.com".into(),
            ..ProfileForm::default()
        };
        let (profile, _) = form.validate().expect("valid");
        let mut config = ServiceConfig::from_profile(&profile, &Identities::default());
        config.test_recipient = recipient.to_owned();
        config
    }

    fn signed_in(refresh: &str, hour: i64) -> Secrets {
        let at = datetime!(2025-03-01 08:00 UTC) + time::Duration::hours(hour);
        Secrets::from_sign_in(
            &TokenSet {
                access_token: AccessToken::new(format!("AT-{refresh}")),
                access_expires_at: Some(at + time::Duration::hours(1)),
                refresh_token: Some(RefreshToken::new(refresh.into())),
                granted_scopes: None,
                identity: None,
                obtained_at: at,
            },
            None,
        )
    }

    #[test]
    fn restore_puts_a_backup_back_keeps_the_current_one_and_never_an_older_token() {
        let dir = tempfile::tempdir().expect("temp dir");
        let paths = ConfigPaths::for_config(&dir.path().join("mailgrant.toml"));
        save(&paths, &config("first@example.com"), &signed_in("RT-1", 0)).expect("save 1");
        save(&paths, &config("second@example.com"), &signed_in("RT-2", 1)).expect("save 2");

        let listed = list_backups(&paths).expect("listed");
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].mailbox.as_deref(), Some("alarms@example.com"));
        assert!(listed[0].has_refresh_token);

        let saved = restore_backup(&paths, listed[0].backup.number).expect("restored");
        let setup = load(&paths).expect("loads");
        assert_eq!(setup.config.test_recipient, "first@example.com");
        // The backup's RT-1 was rotated out by RT-2: the live one stays.
        assert!(saved.kept_newer_refresh_token);
        let refresh = setup.secrets.refresh_token.as_ref().map(|t| t.secret().as_str());
        assert_eq!(refresh, Some("RT-2"));
        // The replaced files are the newest backup now, so the restore can be undone.
        let newest = list_backups(&paths).expect("listed").pop().expect("a backup");
        assert_eq!(Some(newest.backup.number), saved.backup);

        let missing = restore_backup(&paths, 99).expect_err("no such backup");
        assert!(matches!(missing, StoreError::BackupNotFound { number: 99, .. }), "{missing:?}");
    }

    #[cfg(not(windows))]
    #[test]
    fn dpapi_file_off_windows_is_a_config_error_with_its_line_never_a_panic() {
        let dir = tempfile::tempdir().expect("temp dir");
        let paths = ConfigPaths::for_config(&dir.path().join("mailgrant.toml"));
        save(&paths, &config("first@example.com"), &signed_in("RT-1", 0)).expect("saved");
        let text = std::fs::read_to_string(&paths.config).expect("config");
        let text = text.replace("store = \"file\"", "store = \"dpapi_file\"");
        std::fs::write(&paths.config, &text).expect("edited");
        let line = text.lines().position(|l| l.starts_with("store =")).map(|i| i + 1);

        for error in [
            load(&paths).expect_err("load"),
            load_secrets(&paths).expect_err("secrets"),
            sign_out(&paths).expect_err("sign out"),
        ] {
            let StoreError::SecretsStoreUnsupported { line: found, store, .. } = &error else {
                panic!("{error:?}");
            };
            assert_eq!((*found, *store), (line, SecretsStore::DpapiFile));
            let expected = format!(
                "{}:{}: `secrets.store = \"dpapi_file\"`: dpapi_file works on Windows only; use \
                 file or keyring",
                paths.config.display(),
                line.unwrap_or_default()
            );
            assert_eq!(error.to_string(), expected);
        }

        // Saving such a config is refused the same way, and writes nothing.
        let mut dpapi = config("second@example.com");
        dpapi.secrets.store = SecretsStore::DpapiFile;
        let before = std::fs::read(&paths.secrets).expect("secrets");
        let error = save(&paths, &dpapi, &signed_in("RT-2", 1)).expect_err("save");
        assert!(matches!(error, StoreError::SecretsStoreUnsupported { .. }), "{error:?}");
        assert_eq!(std::fs::read(&paths.secrets).expect("secrets"), before);
    }

    #[test]
    fn debug_of_every_secrets_bearing_type_prints_no_secret_value() {
        let dir = tempfile::tempdir().expect("temp dir");
        let paths = ConfigPaths::for_config(&dir.path().join("mailgrant.toml"));
        let mut secrets = signed_in("RT-debug-value-7f3a", 0);
        secrets.client_secret = Some(oauth2::ClientSecret::new("CS-debug-value-9c1e".into()));
        let saved = save_with(&paths, &config("a@example.com"), &secrets, SaveOptions::default())
            .expect("saved");
        let setup = load(&paths).expect("loads");
        let backend = secrets_backend(&paths).expect("backend");
        let update: UpdateError<String> = UpdateError::Update("refresh failed".into());
        let errors = [
            StoreError::SecretsSealed {
                path: paths.secrets.clone(),
                problem: sealed::FrameError::DamagedBody { line: 2 },
            },
            StoreError::Keyring {
                entry: KeyringEntry::for_config(&paths),
                failure: KeyringFailure::Platform("denied".into()),
            },
            StoreError::SecretsAclTooOpen {
                path: paths.secrets.clone(),
                problem: acl::AclProblem::NoDacl,
                service_account: None,
            },
        ];

        let shown = format!(
            "{saved:?} {saved:#?} {setup:?} {setup:#?} {backend:?} {update:?} {errors:?} {}",
            errors.iter().map(ToString::to_string).collect::<Vec<_>>().join(" ")
        );
        for value in ["RT-debug-value-7f3a", "AT-RT-debug-value-7f3a", "CS-debug-value-9c1e"] {
            assert!(!shown.contains(value), "{value} leaked into Debug: {shown}");
        }
        assert!(shown.contains("RefreshToken([redacted])"), "{shown}");
        assert!(shown.contains("ClientSecret([redacted])"), "{shown}");
    }
}
