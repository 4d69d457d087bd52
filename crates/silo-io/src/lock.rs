//! [`DirLock`]: at most one open store per directory, across processes.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::error::IoError;
use crate::sys;

/// The directories (device, inode) this process holds locked. POSIX record
/// locks do not exclude the process that holds them, so a second open in
/// this process is refused here, before anything opens the lock file: one
/// more descriptor of it, once closed, would release the lock.
static HELD: Mutex<BTreeSet<(u64, u64)>> = Mutex::new(BTreeSet::new());

fn held() -> std::sync::MutexGuard<'static, BTreeSet<(u64, u64)>> {
    // The set is only changed by whole insert/remove calls, so a panic in
    // another holder cannot leave it half-updated.
    HELD.lock().unwrap_or_else(|p| p.into_inner())
}

/// An exclusive lock on `<dir>/LOCK`, held until dropped.
///
/// Across processes it is a POSIX record lock (`fcntl(F_SETLK)`) over the
/// whole file; within the process, a registry of locked directories. Both
/// belong to the process, not to a descriptor: a child started by
/// `fork`/`exec` (a `std::process::Command`) never holds it, even in the
/// moment before its program starts, so a store closed while another thread
/// spawns a process can be reopened at once. (An `flock` would live on in
/// the child's copy of the descriptor for that moment.)
///
/// The price of POSIX locks: closing any descriptor of `LOCK` in this
/// process releases the lock. Silo never opens it except here; a program
/// that copies a live store's directory should skip `LOCK`.
///
/// ```
/// use silo_io::{DirLock, IoError};
/// let dir = tempfile::tempdir().unwrap();
/// let lock = DirLock::acquire(dir.path())?;
/// assert!(matches!(DirLock::acquire(dir.path()), Err(IoError::Locked { .. })));
/// drop(lock);
/// let _again = DirLock::acquire(dir.path())?;
/// # Ok::<(), silo_io::IoError>(())
/// ```
#[derive(Debug)]
pub struct DirLock {
    // Closed in `drop`, with the registry held, before the entry goes.
    file: Option<File>,
    key: (u64, u64),
    path: PathBuf,
}

impl DirLock {
    /// The lock file's name inside the directory.
    pub const FILE_NAME: &'static str = "LOCK";

    /// Creates or opens `<dir>/LOCK` and locks it exclusively without
    /// waiting; [`IoError::Locked`] if another open store holds it, in this
    /// process or another.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let lock = silo_io::DirLock::acquire(dir.path())?;
    /// assert!(lock.path().ends_with("LOCK"));
    /// # Ok::<(), silo_io::IoError>(())
    /// ```
    pub fn acquire(dir: &Path) -> Result<DirLock, IoError> {
        DirLock::lock(dir, false)
    }

    /// Locks `<dir>/LOCK`, which must exist, shared without waiting: any
    /// number of processes may hold it shared at once, none while one holds
    /// it exclusively ([`IoError::Locked`] then, or if this process holds
    /// the directory in any mode). For read-only opens, which change
    /// nothing, not even the lock file.
    ///
    /// ```
    /// use silo_io::{DirLock, IoError};
    /// let dir = tempfile::tempdir().unwrap();
    /// drop(DirLock::acquire(dir.path())?); // creates LOCK
    /// let shared = DirLock::acquire_shared(dir.path())?;
    /// assert!(matches!(DirLock::acquire(dir.path()), Err(IoError::Locked { .. })));
    /// drop(shared);
    /// # Ok::<(), silo_io::IoError>(())
    /// ```
    pub fn acquire_shared(dir: &Path) -> Result<DirLock, IoError> {
        DirLock::lock(dir, true)
    }

    fn lock(dir: &Path, shared: bool) -> Result<DirLock, IoError> {
        let path = dir.join(DirLock::FILE_NAME);
        let meta =
            std::fs::metadata(dir).map_err(|e| IoError::io("stat store directory", dir, e))?;
        let key = (meta.dev(), meta.ino());
        let mut held = held();
        if held.contains(&key) {
            return Err(IoError::Locked { path });
        }
        let file = OpenOptions::new()
            .read(true)
            .write(!shared)
            .create(!shared)
            .truncate(false)
            .open(&path)
            .map_err(|e| IoError::io("open lock file", &path, e))?;
        match sys::lock_whole_file_nonblocking(&file, shared) {
            Ok(()) => {
                held.insert(key);
                Ok(DirLock {
                    file: Some(file),
                    key,
                    path,
                })
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(IoError::Locked { path }),
            Err(e) => Err(IoError::io("lock", &path, e)),
        }
    }

    /// The lock file's path.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let lock = silo_io::DirLock::acquire(dir.path())?;
    /// assert_eq!(lock.path(), dir.path().join("LOCK"));
    /// # Ok::<(), silo_io::IoError>(())
    /// ```
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        let mut held = held();
        // Close first: were the entry gone while the descriptor was open, a
        // new acquire here could lock the file and then lose its lock to
        // this close.
        drop(self.file.take());
        held.remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_acquire_in_process_is_locked_until_drop() {
        let dir = tempfile::tempdir().unwrap();
        let a = DirLock::acquire(dir.path()).unwrap();
        match DirLock::acquire(dir.path()) {
            Err(IoError::Locked { path }) => assert_eq!(path, dir.path().join("LOCK")),
            other => panic!("expected Locked, got {other:?}"),
        }
        drop(a);
        DirLock::acquire(dir.path()).unwrap();
    }

    #[test]
    fn a_shared_lock_needs_the_lock_file_and_excludes_this_process() {
        let dir = tempfile::tempdir().unwrap();
        let e = DirLock::acquire_shared(dir.path()).unwrap_err();
        assert_eq!(e.io_kind(), Some(io::ErrorKind::NotFound));
        drop(DirLock::acquire(dir.path()).unwrap());
        let shared = DirLock::acquire_shared(dir.path()).unwrap();
        assert!(matches!(
            DirLock::acquire(dir.path()),
            Err(IoError::Locked { .. })
        ));
        assert!(matches!(
            DirLock::acquire_shared(dir.path()),
            Err(IoError::Locked { .. })
        ));
        drop(shared);
        DirLock::acquire(dir.path()).unwrap();
    }

    #[test]
    fn missing_directory_is_an_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let e = DirLock::acquire(&dir.path().join("nope")).unwrap_err();
        assert_eq!(e.io_kind(), Some(io::ErrorKind::NotFound));
    }
}
