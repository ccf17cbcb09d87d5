//! The cross-process lock every writer of a setup takes (fs4: `flock` on Unix, `LockFileEx` on
//! Windows).
//!
//! The lock file sits next to the config and is never deleted: deleting a lock file lets two
//! processes lock two different files of the same name. The lock is advisory; every mailgrant
//! writer (GUI, headless commands, the library the service uses) takes it. It is released when
//! the guard drops, and by the OS when the process dies.
//!
//! A wait for the lock can be bounded ([`StoreLock::acquire_until`]): a stuck or stopped holder
//! must not stall an alarm forever. The OS offers no timed `flock`, so a bounded wait polls
//! with a non-blocking attempt, 5 ms apart at first and 100 ms at most. A lock that cannot
//! even be created because this user may not write to the folder is reported as such
//! ([`StoreError::LockFolderNotWritable`]), naming the user and the folder.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fs4::fs_std::FileExt;

use super::atomic::{create_private_dir, parent_dir};
use super::error::{LockFolderProblem, LockHolder, StoreError};
use super::paths::ConfigPaths;

/// The first pause between two tries of a bounded wait; it doubles up to [`LONGEST_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(5);
/// The longest pause between two tries of a bounded wait.
const LONGEST_PAUSE: Duration = Duration::from_millis(100);

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
        let file = open(&path)?;
        file.lock_exclusive().map_err(|source| StoreError::Lock { path: path.clone(), source })?;

        tracing::debug!(lock = %path.display(), "lock taken");
        Ok(StoreLock { file, path })
    }

    /// Takes the exclusive lock, waiting for another holder until `deadline` at the latest;
    /// then [`StoreError::LockBusy`], naming the holder when the OS tells (Linux).
    pub fn acquire_until(paths: &ConfigPaths, deadline: Instant) -> Result<StoreLock, StoreError> {
        let path = paths.lock.clone();
        let file = open(&path)?;
        let started = Instant::now();
        let mut pause = FIRST_PAUSE;

        loop {
            if try_lock(&file, &path)? {
                let waited_ms = started.elapsed().as_millis();
                tracing::debug!(lock = %path.display(), waited_ms, "lock taken");
                return Ok(StoreLock { file, path });
            }
            let now = Instant::now();
            if now >= deadline {
                let holder = lock_holder(&file);
                let waited = started.elapsed();
                return Err(StoreError::LockBusy { path, waited, holder });
            }
            std::thread::sleep(pause.min(deadline - now));
            pause = (pause * 2).min(LONGEST_PAUSE);
        }
    }

    /// Takes the lock only if nobody holds it; `Ok(None)` when another holder has it.
    pub fn try_acquire(paths: &ConfigPaths) -> Result<Option<StoreLock>, StoreError> {
        let path = paths.lock.clone();
        let file = open(&path)?;
        if try_lock(&file, &path)? { Ok(Some(StoreLock { file, path })) } else { Ok(None) }
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

fn try_lock(file: &File, path: &Path) -> Result<bool, StoreError> {
    file.try_lock_exclusive().map_err(|source| StoreError::Lock { path: path.to_owned(), source })
}

/// Opens (creating when needed) the lock file and its folder.
fn open(path: &Path) -> Result<File, StoreError> {
    let folder = parent_dir(path);
    create_private_dir(&folder)
        .and_then(|()| open_lock_file(path))
        .map_err(|source| open_error(path, &folder, source))
}

fn open_lock_file(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

/// A refused lock file: the folder is not writable for this user (or is on a read-only file
/// system), or something else.
fn open_error(path: &Path, folder: &Path, source: io::Error) -> StoreError {
    let not_writable = matches!(
        source.kind(),
        io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem
    );
    if !not_writable {
        return StoreError::Lock { path: path.to_owned(), source };
    }
    let (owner, mode) = folder_owner_and_mode(folder);
    StoreError::LockFolderNotWritable(Box::new(LockFolderProblem {
        path: path.to_owned(),
        folder: folder.to_owned(),
        user: current_user(),
        owner,
        mode,
        source,
    }))
}

#[cfg(unix)]
fn folder_owner_and_mode(folder: &Path) -> (Option<String>, Option<u32>) {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata(folder) {
        Ok(meta) => (Some(user_name(meta.uid())), Some(meta.mode() & 0o7777)),
        Err(_) => (None, None),
    }
}

#[cfg(not(unix))]
fn folder_owner_and_mode(_folder: &Path) -> (Option<String>, Option<u32>) {
    (None, None)
}

/// The process holding the lock on `file`, from `/proc/locks` (Linux only; `None` elsewhere,
/// or when the holder is in another PID namespace).
#[cfg(target_os = "linux")]
fn lock_holder(file: &File) -> Option<LockHolder> {
    use std::os::unix::fs::MetadataExt;
    let inode = file.metadata().ok()?.ino();
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    let pid = holder_in_proc_locks(&locks, inode)?;
    let command = std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|c| c.trim().to_owned())
        .filter(|c| !c.is_empty());
    Some(LockHolder { pid, command })
}

#[cfg(not(target_os = "linux"))]
fn lock_holder(_file: &File) -> Option<LockHolder> {
    None
}

/// The pid of the granted lock on `inode` in the text of `/proc/locks` (lines such as
/// `1: FLOCK  ADVISORY  WRITE 2793 fe:00:10117265 0 EOF`; waiters are marked `->`).
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn holder_in_proc_locks(locks: &str, inode: u64) -> Option<u32> {
    locks.lines().filter(|line| !line.contains("->")).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let device = fields.get(5)?;
        let line_inode = device.rsplit(':').next()?.parse::<u64>().ok()?;
        (line_inode == inode).then(|| fields.get(4)?.parse::<u32>().ok()).flatten()
    })
}

/// The user this process runs as: a name when one can be told, else `uid N`. Read without
/// unsafe code: the owner of `/proc/self` on Linux, the login environment elsewhere.
fn current_user() -> String {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::MetadataExt;
        if let Ok(meta) = std::fs::metadata("/proc/self") {
            return user_name(meta.uid());
        }
    }
    ["USER", "LOGNAME", "USERNAME"]
        .iter()
        .find_map(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| "(unknown user)".to_owned())
}

/// The name of user `uid` from `/etc/passwd`, or `uid N` when it has none there.
#[cfg(unix)]
fn user_name(uid: u32) -> String {
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|passwd| name_in_passwd(&passwd, uid))
        .unwrap_or_else(|| format!("uid {uid}"))
}

/// The name given to `uid` in the text of a passwd file.
#[cfg_attr(not(unix), allow(dead_code))]
fn name_in_passwd(passwd: &str, uid: u32) -> Option<String> {
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let id = fields.nth(1)?.parse::<u32>().ok()?;
        (id == uid && !name.is_empty()).then(|| name.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_paths() -> (tempfile::TempDir, ConfigPaths) {
        let dir = tempfile::tempdir().expect("temp dir");
        let paths = ConfigPaths::for_config(&dir.path().join("m.toml"));
        (dir, paths)
    }

    #[test]
    fn a_second_holder_waits_until_the_first_drops() -> Result<(), StoreError> {
        let (_dir, paths) = temp_paths();
        let first = StoreLock::acquire(&paths)?;
        assert!(StoreLock::try_acquire(&paths)?.is_none(), "lock must be exclusive");
        drop(first);
        assert!(StoreLock::try_acquire(&paths)?.is_some(), "released on drop");
        assert!(paths.lock.exists(), "the lock file stays");
        Ok(())
    }

    #[test]
    fn a_bounded_wait_ends_at_its_deadline_and_names_the_holder() -> Result<(), StoreError> {
        let (_dir, paths) = temp_paths();
        let held = StoreLock::acquire(&paths)?;
        let started = Instant::now();
        let error = StoreLock::acquire_until(&paths, started + Duration::from_millis(300))
            .expect_err("held by another open file");
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(300) && took < Duration::from_secs(2), "{took:?}");

        let StoreError::LockBusy { path, waited, holder } = &error else { panic!("{error:?}") };
        assert_eq!(path, &paths.lock);
        assert!(*waited >= Duration::from_millis(300), "{waited:?}");
        if cfg!(target_os = "linux") {
            let holder = holder.as_ref().expect("/proc/locks names the holder");
            assert_eq!(holder.pid, std::process::id());
        }

        drop(held);
        let deadline = Instant::now() + Duration::from_secs(1);
        assert!(StoreLock::acquire_until(&paths, deadline).is_ok(), "free again");
        Ok(())
    }

    #[test]
    fn proc_locks_lines_give_the_holder_not_a_waiter() {
        let locks = "1: FLOCK  ADVISORY  WRITE 2793 fe:00:10117265 0 EOF\n\
                     1: -> FLOCK  ADVISORY  WRITE 4242 fe:00:10117265 0 EOF\n\
                     2: POSIX  ADVISORY  WRITE 30638 08:01:77 0 EOF\n";
        assert_eq!(holder_in_proc_locks(locks, 10_117_265), Some(2793));
        assert_eq!(holder_in_proc_locks(locks, 77), Some(30638));
        assert_eq!(holder_in_proc_locks(locks, 5), None);
        assert_eq!(holder_in_proc_locks("garbage\n\n", 5), None);
    }

    #[test]
    fn passwd_lines_name_their_uid_and_the_current_user_is_named() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n\
                      # comment\n\
                      nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
        assert_eq!(name_in_passwd(passwd, 0).as_deref(), Some("root"));
        assert_eq!(name_in_passwd(passwd, 65534).as_deref(), Some("nobody"));
        assert_eq!(name_in_passwd(passwd, 1000), None);
        let user = current_user();
        assert!(!user.is_empty() && user != "(unknown user)", "{user}");
    }
}
