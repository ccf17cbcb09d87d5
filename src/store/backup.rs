//! Numbered backups of the config and its secrets, taken by every `save` before it replaces
//! them.
//!
//! Backup `n` is the pair `backups/<stem>.toml.<n>` and `backups/<stem>.secrets.toml.<n>`;
//! numbers only grow, so a backup is written once and never renamed (a crash cannot mix two
//! pairs). The newest [`KEEP`] numbers are kept. All backups are owner-only (0600, folder 0700;
//! on Windows the secrets file's DACL) because the secrets half holds tokens. Refreshes
//! (`update_secrets_locked`) take no backup: a rotated-out refresh token is of no use and is
//! not worth keeping on disk.
//!
//! The secrets half is the file as stored: plain TOML, or still DPAPI-sealed for `dpapi_file`
//! (so it opens on this machine only). A `keyring` setup's backups hold the config only: its
//! secrets are never copied out of the keyring into a file.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::atomic::{
    Access, create_private_dir, remove_stale_temps_in, temp_path, write_atomic_group,
};
use super::paths::ConfigPaths;

/// How many backups are kept.
pub const KEEP: u32 = 5;

/// One stored backup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backup {
    /// Its number; higher is newer.
    pub number: u32,
    /// The saved config, when there was one.
    pub config: Option<PathBuf>,
    /// The saved secrets, when there were some.
    pub secrets: Option<PathBuf>,
    /// When it was taken (file modification time).
    pub taken_at: Option<SystemTime>,
}

fn config_name(paths: &ConfigPaths) -> String {
    paths.config.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

fn secrets_name(paths: &ConfigPaths) -> String {
    format!("{}.secrets.toml", paths.stem())
}

/// Writes the current files as the next numbered backup and prunes old ones. Returns the
/// number, or `None` when there was nothing to back up.
pub(crate) fn take(
    paths: &ConfigPaths,
    config: Option<&[u8]>,
    secrets: Option<&[u8]>,
    access: Access<'_>,
) -> io::Result<Option<u32>> {
    if config.is_none() && secrets.is_none() {
        return Ok(None);
    }
    create_private_dir(&paths.backups)?;
    let removed = remove_stale_temps_in(&paths.backups)?;
    if removed > 0 {
        tracing::warn!(removed, "removed temp files of a killed backup");
    }
    let number = list(paths)?.last().map_or(1, |b| b.number + 1);

    // Both halves are written before either is renamed into place, so a killed save leaves a
    // half backup only if it dies between the two renames.
    let secrets_path = paths.backups.join(format!("{}.{number}", secrets_name(paths)));
    let config_path = paths.backups.join(format!("{}.{number}", config_name(paths)));
    let mut files: Vec<(&Path, &[u8], Access<'_>)> = Vec::new();
    if let Some(bytes) = secrets {
        files.push((&secrets_path, bytes, access));
    }
    if let Some(bytes) = config {
        files.push((&config_path, bytes, access));
    }
    write_atomic_group(&files)?;

    // An old pair is first renamed to temp names (microseconds apart), then deleted: a kill
    // leaves temp files the next backup removes, not a half backup in the list.
    for old in list(paths)?.into_iter().filter(|b| b.number + KEEP <= number) {
        let doomed: Vec<PathBuf> = old.secrets.iter().chain(old.config.iter()).cloned().collect();
        let mut renamed = Vec::with_capacity(doomed.len());
        for path in &doomed {
            let temp = temp_path(path);
            fs::rename(path, &temp)?;
            renamed.push(temp);
        }
        for temp in renamed {
            fs::remove_file(temp)?;
        }
    }
    tracing::debug!(backups = %paths.backups.display(), number, "backup taken");
    Ok(Some(number))
}

/// The backups of this config, oldest first.
pub fn list(paths: &ConfigPaths) -> io::Result<Vec<Backup>> {
    let entries = match fs::read_dir(&paths.backups) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let config_prefix = format!("{}.", config_name(paths));
    let secrets_prefix = format!("{}.", secrets_name(paths));

    let mut backups: Vec<Backup> = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let (is_config, number) = if let Some(n) = name.strip_prefix(&secrets_prefix) {
            (false, n.parse::<u32>().ok())
        } else if let Some(n) = name.strip_prefix(&config_prefix) {
            (true, n.parse::<u32>().ok())
        } else {
            (false, None)
        };
        let Some(number) = number else { continue };

        let index = match backups.iter().position(|b| b.number == number) {
            Some(index) => index,
            None => {
                backups.push(Backup { number, config: None, secrets: None, taken_at: None });
                backups.len() - 1
            }
        };
        let backup = &mut backups[index];
        let modified = entry.metadata().and_then(|m| m.modified()).ok();
        backup.taken_at = backup.taken_at.max(modified);
        if is_config {
            backup.config = Some(entry.path());
        } else {
            backup.secrets = Some(entry.path());
        }
    }
    backups.sort_by_key(|b| b.number);
    Ok(backups)
}
