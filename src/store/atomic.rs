//! Atomic file replacement: a reader, or a process killed half-way, sees the old complete file
//! or the new complete file, never a mix.
//!
//! Steps: create a temp file in the same folder (so the rename stays on one file system) with
//! its final permissions from the first byte, write, fsync, rename over the target, fsync the
//! folder so the rename itself survives a power cut. A failed write removes the temp file.

#[cfg(unix)]
use std::fs::File;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// How a written file may be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access<'a> {
    /// Private, from the moment the file exists: 0600 on Unix; on Windows the protected DACL
    /// `windows_sddl` (from `acl::secrets_file_sddl`; `None`: SYSTEM, Administrators and the
    /// current user), set while the file is open without sharing, before the first byte.
    OwnerOnly { windows_sddl: Option<&'a str> },
    /// Keep the permissions of the file being replaced; new files get 0644 less the umask.
    KeepExisting,
}

#[cfg(test)]
impl Access<'_> {
    /// Private with the default Windows DACL (no service account).
    pub(crate) const PRIVATE: Access<'static> = Access::OwnerOnly { windows_sddl: None };
}

/// Replaces `path` with `bytes` atomically.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], access: Access<'_>) -> io::Result<()> {
    let dir = parent_dir(path);
    let existing = fs::metadata(path).ok();
    let temp = temp_path(path);

    let result = write_temp(&temp, bytes, access, existing.as_ref())
        .and_then(|()| fs::rename(&temp, path))
        .and_then(|()| sync_dir(&dir));
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

/// Replaces several files in one folder so they change together as far as a file system allows:
/// every file is written and fsynced under its temp name first, then all are renamed in a row
/// and the folder is synced once. A kill can fall between two renames (microseconds apart),
/// never inside a file; on an error before the renames nothing is replaced.
pub(crate) fn write_atomic_group(files: &[(&Path, &[u8], Access<'_>)]) -> io::Result<()> {
    let mut temps: Vec<PathBuf> = Vec::with_capacity(files.len());
    let mut result = Ok(());
    for (path, bytes, access) in files {
        let existing = fs::metadata(path).ok();
        let temp = temp_path(path);
        result = write_temp(&temp, bytes, *access, existing.as_ref());
        temps.push(temp);
        if result.is_err() {
            break;
        }
    }

    if result.is_ok() {
        for ((path, _, _), temp) in files.iter().zip(&temps) {
            fs::rename(temp, path)?;
        }
        let mut dirs: Vec<PathBuf> = files.iter().map(|(path, _, _)| parent_dir(path)).collect();
        dirs.dedup();
        return dirs.iter().try_for_each(|dir| sync_dir(dir));
    }
    for temp in &temps {
        let _ = fs::remove_file(temp);
    }
    result
}

fn write_temp(
    temp: &Path,
    bytes: &[u8],
    access: Access<'_>,
    existing: Option<&fs::Metadata>,
) -> io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(match access {
            Access::OwnerOnly { .. } => 0o600,
            Access::KeepExisting => 0o644,
        });
    }
    #[cfg(windows)]
    if let Access::OwnerOnly { .. } = access {
        use std::os::windows::fs::OpenOptionsExt;
        // No sharing: nobody can open the file before its DACL is set below.
        const GENERIC_WRITE: u32 = 0x4000_0000;
        use super::acl::mask::{READ_CONTROL, WRITE_DAC};
        options.share_mode(0).access_mode(GENERIC_WRITE | WRITE_DAC | READ_CONTROL);
    }
    let mut file = options.open(temp)?;

    #[cfg(windows)]
    if let Access::OwnerOnly { windows_sddl } = access {
        let sddl = match windows_sddl {
            Some(sddl) => sddl.to_owned(),
            None => super::acl::secrets_file_sddl(&super::windows::current_user_sid()?, None),
        };
        super::windows::set_file_dacl(&file, &sddl)?;
    }
    if let (Access::KeepExisting, Some(existing)) = (access, existing) {
        file.set_permissions(existing.permissions())?;
    }

    file.write_all(bytes)?;
    file.sync_all()
}

/// A temp name in the same folder, hidden, unique per process and call.
pub(crate) fn temp_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let nonce: u64 = rand::random();
    parent_dir(path).join(format!(".{name}.{}.{nonce:016x}.tmp", std::process::id()))
}

/// Removes temp files a killed writer left for `path`. Call only under the store lock: every
/// writer holds it, so any temp file then present belongs to a writer that died.
pub(crate) fn remove_stale_temps(path: &Path) -> io::Result<usize> {
    let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return Ok(0);
    };
    let prefix = format!(".{name}.");
    let mut removed = 0;
    let entries = match fs::read_dir(parent_dir(path)) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let entry_name = entry.file_name().to_string_lossy().into_owned();
        if entry_name.starts_with(&prefix) && entry_name.ends_with(".tmp") {
            fs::remove_file(entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Removes every temp file a killed writer left in `dir` (hidden, ending in `.tmp`), for
/// folders such as `backups/` whose file names change. Call only under the store lock.
pub(crate) fn remove_stale_temps_in(dir: &Path) -> io::Result<usize> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && name.ends_with(".tmp") && entry.file_type()?.is_file() {
            fs::remove_file(entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// The folder of `path` (`.` for a bare file name).
pub(crate) fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Makes a rename in `dir` durable. Windows cannot open folders this way and does not need to.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Creates `dir` and its parents; on Unix the folders mailgrant creates are owner-only (0700).
pub(crate) fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_content_and_leaves_no_temp_file() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("a.toml");
        write_atomic(&path, b"one", Access::KeepExisting)?;
        write_atomic(&path, b"two", Access::KeepExisting)?;
        assert_eq!(fs::read(&path)?, b"two");
        let names: Vec<_> = fs::read_dir(dir.path())?.map(|e| e.map(|e| e.file_name())).collect();
        assert_eq!(names.len(), 1, "{names:?}");
        Ok(())
    }

    #[cfg(unix)]
    #[test]
    fn owner_only_files_are_0600_and_plain_files_keep_their_mode() -> io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir()?;
        let secret = dir.path().join("s.toml");
        write_atomic(&secret, b"x", Access::PRIVATE)?;
        assert_eq!(fs::metadata(&secret)?.permissions().mode() & 0o777, 0o600);

        let plain = dir.path().join("p.toml");
        write_atomic(&plain, b"x", Access::KeepExisting)?;
        fs::set_permissions(&plain, fs::Permissions::from_mode(0o640))?;
        write_atomic(&plain, b"y", Access::KeepExisting)?;
        assert_eq!(fs::metadata(&plain)?.permissions().mode() & 0o777, 0o640);
        Ok(())
    }

    #[test]
    fn stale_temps_of_one_file_are_removed_and_others_kept() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("a.toml");
        fs::write(dir.path().join(".a.toml.123.00ff.tmp"), b"half")?;
        fs::write(dir.path().join(".b.toml.123.00ff.tmp"), b"other")?;
        assert_eq!(remove_stale_temps(&path)?, 1);
        assert!(dir.path().join(".b.toml.123.00ff.tmp").exists());
        Ok(())
    }

    #[test]
    fn a_group_replaces_every_file_and_leaves_no_temp_file() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let (a, b) = (dir.path().join("a.toml"), dir.path().join("b.toml"));
        write_atomic(&a, b"old", Access::KeepExisting)?;
        write_atomic_group(&[(&a, b"new a", Access::PRIVATE), (&b, b"new b", Access::PRIVATE)])?;
        assert_eq!((fs::read(&a)?, fs::read(&b)?), (b"new a".to_vec(), b"new b".to_vec()));
        assert_eq!(fs::read_dir(dir.path())?.count(), 2);

        let missing = dir.path().join("no-folder").join("c.toml");
        let failed =
            write_atomic_group(&[(&a, b"x", Access::PRIVATE), (&missing, b"y", Access::PRIVATE)]);
        assert!(failed.is_err());
        assert_eq!(fs::read(&a)?, b"new a", "a failed group replaced a file");
        assert_eq!(fs::read_dir(dir.path())?.count(), 2, "temp files left");
        Ok(())
    }

    #[test]
    fn stale_temps_in_a_folder_are_removed_and_backups_kept() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        fs::write(dir.path().join(".mailgrant.toml.7.123.00ff.tmp"), b"half")?;
        fs::write(dir.path().join("mailgrant.toml.7"), b"whole")?;
        assert_eq!(remove_stale_temps_in(dir.path())?, 1);
        assert_eq!(remove_stale_temps_in(&dir.path().join("none"))?, 0);
        assert!(dir.path().join("mailgrant.toml.7").exists());
        Ok(())
    }

    #[test]
    fn a_failed_write_leaves_the_target_alone() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("missing-folder").join("a.toml");
        let error = write_atomic(&path, b"x", Access::PRIVATE).expect_err("no folder");
        assert_eq!(error.kind(), io::ErrorKind::NotFound);
        assert!(!path.exists());
        Ok(())
    }
}
