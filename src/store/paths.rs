//! Where the config, its secrets, the lock and the backups live.
//!
//! All four sit together: `<dir>/<stem>.toml`, `<dir>/<stem>.secrets.toml`, `<dir>/<stem>.lock`
//! and `<dir>/backups/`. The secrets path here is the default for new configs; an existing
//! config may name another one in `[secrets] path`, which then wins.

use std::path::{Path, PathBuf};

/// File name of the config in the default location.
pub const DEFAULT_CONFIG_FILE_NAME: &str = "mailgrant.toml";

/// The files that make up one stored setup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigPaths {
    /// The plain service config.
    pub config: PathBuf,
    /// The default secrets file for this config (`<stem>.secrets.toml` next to it).
    pub secrets: PathBuf,
    /// The lock file taken by every writer (`<stem>.lock` next to the config; never deleted).
    pub lock: PathBuf,
    /// Folder of numbered backups (`backups/` next to the config).
    pub backups: PathBuf,
}

impl ConfigPaths {
    /// Paths for a config at `path` (for `--config PATH`).
    pub fn for_config(path: &Path) -> ConfigPaths {
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "mailgrant".to_owned());
        ConfigPaths {
            config: path.to_path_buf(),
            secrets: dir.join(format!("{stem}.secrets.toml")),
            lock: dir.join(format!("{stem}.lock")),
            backups: dir.join("backups"),
        }
    }

    /// `mailgrant.toml` in the platform's config folder for "mailgrant" (Linux
    /// `~/.config/mailgrant/`, Windows `%APPDATA%\mailgrant\config\`, macOS
    /// `~/Library/Application Support/mailgrant/`); `None` when there is no home folder.
    pub fn default_location() -> Option<ConfigPaths> {
        let dirs = directories::ProjectDirs::from("", "", "mailgrant")?;
        Some(ConfigPaths::for_config(&dirs.config_dir().join(DEFAULT_CONFIG_FILE_NAME)))
    }

    /// The folder holding the config (`.` for a bare file name).
    pub fn dir(&self) -> PathBuf {
        match self.config.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }

    /// The config's file name stem (`mailgrant` for `mailgrant.toml`).
    pub(crate) fn stem(&self) -> String {
        self.config
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "mailgrant".to_owned())
    }

    /// Resolves a `[secrets] path` from the config: relative paths are relative to the config's
    /// folder.
    pub fn resolve_secrets(&self, configured: Option<&Path>) -> PathBuf {
        match configured {
            Some(path) if path.is_absolute() => path.to_path_buf(),
            Some(path) => self.dir().join(path),
            None => self.secrets.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn siblings_share_the_config_stem() {
        let paths = ConfigPaths::for_config(Path::new("/etc/mailgrant/alarm.toml"));
        assert_eq!(paths.secrets, Path::new("/etc/mailgrant/alarm.secrets.toml"));
        assert_eq!(paths.lock, Path::new("/etc/mailgrant/alarm.lock"));
        assert_eq!(paths.backups, Path::new("/etc/mailgrant/backups"));
        assert_eq!(paths.dir(), Path::new("/etc/mailgrant"));
    }

    #[test]
    fn a_bare_file_name_lives_in_the_working_folder() {
        let paths = ConfigPaths::for_config(Path::new("alarm.toml"));
        assert_eq!(paths.dir(), Path::new("."));
        assert_eq!(paths.secrets, Path::new("alarm.secrets.toml"));
        assert_eq!(paths.resolve_secrets(Some(Path::new("s/x.toml"))), Path::new("./s/x.toml"));
        assert_eq!(paths.resolve_secrets(Some(Path::new("/abs.toml"))), Path::new("/abs.toml"));
    }

    #[test]
    fn default_location_ends_in_mailgrant_toml() {
        // HOME is set for every test run here; without it there is no default location.
        let paths = ConfigPaths::default_location().expect("a home folder");
        assert!(paths.config.ends_with("mailgrant/mailgrant.toml"), "{:?}", paths.config);
    }
}
