//! The cross-process lock every writer of a setup takes (fs4: `flock` on Unix, `LockFileEx` on
//! Windows).
//!
//! The lock file sits next to the config and is never deleted: deleting a lock file lets two
//! processes lock two different files of the same name. The lock is advisory; every mailgrant
//! writer (GUI, headless commands, the library the service uses) takes it. It is released when
//! the guard drops, and by the OS when the process dies.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use fs4::fs_std::FileExt;

use super::atomic::{create_private_dir, parent_dir};
use super::error::StoreError;
use super::paths::ConfigPaths;

/// An exclusive hold on a setup's lock file; released on drop.
#[derive(Debug)]
pub struct StoreLock {
    file: File,
    path: PathBuf,
}

impl StoreLock {
    /// Takes the exclusive lock, waiting for any other holder. Call from a worker thread.
    pub fn acquire(paths: &ConfigPaths) -> Result<StoreLock, StoreError> {
        let path = paths.lock.clone();
        let lock_error = |source| StoreError::Lock { path: path.clone(), source };

        create_private_dir(&parent_dir(&path)).map_err(lock_error)?;
        let file = open_lock_file(&path).map_err(lock_error)?;
        file.lock_exclusive().map_err(lock_error)?;

        tracing::debug!(lock = %path.display(), "lock taken");
        Ok(StoreLock { file, path })
    }

    /// Takes the lock only if nobody holds it; `Ok(None)` when another holder has it.
    pub fn try_acquire(paths: &ConfigPaths) -> Result<Option<StoreLock>, StoreError> {
        let path = paths.lock.clone();
        let lock_error = |source| StoreError::Lock { path: path.clone(), source };

        create_private_dir(&parent_dir(&path)).map_err(lock_error)?;
        let file = open_lock_file(&path).map_err(lock_error)?;
        if file.try_lock_exclusive().map_err(lock_error)? {
            Ok(Some(StoreLock { file, path }))
        } else {
            Ok(None)
        }
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for StoreLock {
    fn drop(&mut self) {
        if let Err(error) = FileExt::unlock(&self.file) {
            let lock = self.path.display();
            tracing::warn!(%lock, %error, "unlock failed; closing the file releases it");
        }
    }
}

fn open_lock_file(path: &Path) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_waits_until_the_first_drops() -> Result<(), StoreError> {
        let dir = tempfile::tempdir()
            .map_err(|e| StoreError::Lock { path: PathBuf::new(), source: e })?;
        let paths = ConfigPaths::for_config(&dir.path().join("m.toml"));

        let first = StoreLock::acquire(&paths)?;
        assert!(StoreLock::try_acquire(&paths)?.is_none(), "lock must be exclusive");
        drop(first);
        assert!(StoreLock::try_acquire(&paths)?.is_some(), "released on drop");
        assert!(paths.lock.exists(), "the lock file stays");
        Ok(())
    }
}
