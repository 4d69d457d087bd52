//! [`DirLock`]: at most one open store per directory, across processes.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use crate::error::IoError;
use crate::sys;

/// An exclusive `flock` on `<dir>/LOCK`, held until dropped.
///
/// `flock` locks belong to an open file description, so a second
/// [`acquire`](Self::acquire) of the same directory fails with
/// [`IoError::Locked`] whether it comes from this process or another.
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
    // Closing the descriptor on drop releases the lock.
    _file: File,
    path: PathBuf,
}

impl DirLock {
    /// The lock file's name inside the directory.
    pub const FILE_NAME: &'static str = "LOCK";

    /// Creates or opens `<dir>/LOCK` and locks it exclusively without
    /// waiting; [`IoError::Locked`] if another open store holds it.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let lock = silo_io::DirLock::acquire(dir.path())?;
    /// assert!(lock.path().ends_with("LOCK"));
    /// # Ok::<(), silo_io::IoError>(())
    /// ```
    pub fn acquire(dir: &Path) -> Result<DirLock, IoError> {
        let path = dir.join(DirLock::FILE_NAME);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| IoError::io("open lock file", &path, e))?;
        match sys::flock_exclusive_nonblocking(&file) {
            Ok(()) => Ok(DirLock { _file: file, path }),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(IoError::Locked { path }),
            Err(e) => Err(IoError::io("flock", &path, e)),
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
    fn missing_directory_is_an_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let e = DirLock::acquire(&dir.path().join("nope")).unwrap_err();
        assert_eq!(e.io_kind(), Some(io::ErrorKind::NotFound));
    }
}
