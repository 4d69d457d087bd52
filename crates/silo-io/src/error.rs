//! [`IoError`]: the one error type of `silo-io`.

use std::path::{Path, PathBuf};

use silo_format::error::FormatError;

/// Everything that can go wrong in `silo-io`.
///
/// Each variant names the operation and the file, and its message says what
/// to do about it.
///
/// ```
/// use silo_io::{IoError, SiloFile};
/// let dir = tempfile::tempdir().unwrap();
/// let err = SiloFile::open(&dir.path().join("missing")).unwrap_err();
/// assert!(matches!(err, IoError::Io { op: "open", .. }));
/// assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IoError {
    /// A system call failed.
    #[error("{op} failed on {}: {source}; {}", path.display(), hint(source))]
    Io {
        /// The operation that failed (`"open"`, `"write"`, `"fsync"`, ...).
        op: &'static str,
        /// The file or directory it failed on.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The directory's lock file is held by another open store.
    #[error(
        "{} is held by another open store (in this or another process); close that store first",
        path.display()
    )]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// A lock byte of the directory's lock file stayed held by another
    /// process for longer than [`crate::lock::LOCK_WAIT`].
    #[error(
        "{}: waited {:.1} s for {holder} in another process to end; is that process stopped? retry once it goes on",
        path.display(),
        waited.as_secs_f64()
    )]
    LockWait {
        /// The lock file.
        path: PathBuf,
        /// What held the lock.
        holder: &'static str,
        /// How long this process waited.
        waited: std::time::Duration,
    },
    /// The bytes of a file did not decode.
    #[error("file contents are invalid: {0}")]
    Format(#[from] FormatError),
    /// A file's header (its first bytes, from offset 0) did not decode.
    #[error("{}: its header (from byte 0) does not decode: {source}", path.display())]
    BadHeader {
        /// The file.
        path: PathBuf,
        /// What the decoder found.
        source: FormatError,
    },
    /// A byte range reaches past the end of a file or mapping.
    #[error(
        "range of {len} bytes at offset {offset} is past the end ({size} bytes); grow the file and remap first"
    )]
    OutOfBounds {
        /// Start of the requested range.
        offset: u64,
        /// Length of the requested range.
        len: u64,
        /// Size of the file or mapping.
        size: u64,
    },
    /// An offset is not a multiple of the alignment an atomic access needs.
    #[error("offset {offset} is not a multiple of {align}; atomic slots must be aligned")]
    Misaligned {
        /// The offset asked for.
        offset: u64,
        /// The alignment it needs.
        align: u64,
    },
    /// A fault injected by a test through the `fault-injection` seam.
    #[error(
        "injected fault on {op} of {}; a test asked for this failure through the fault-injection seam",
        path.display()
    )]
    InjectedFault {
        /// The operation that was failed.
        op: &'static str,
        /// The path it was failed on.
        path: PathBuf,
    },
}

impl IoError {
    /// Wraps an operating-system error with the operation and path.
    ///
    /// ```
    /// use silo_io::IoError;
    /// let e = IoError::io("fsync", "/x".as_ref(), std::io::Error::from_raw_os_error(libc::EIO));
    /// assert!(e.to_string().starts_with("fsync failed on /x"));
    /// ```
    pub fn io(op: &'static str, path: &Path, source: std::io::Error) -> IoError {
        IoError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }

    /// The operating system's error number, if this is an [`IoError::Io`]
    /// carrying one (for example `libc::ENOSPC` for a full disk).
    ///
    /// ```
    /// use silo_io::IoError;
    /// let e = IoError::io("write", "/x".as_ref(), std::io::Error::from_raw_os_error(libc::ENOSPC));
    /// assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
    /// ```
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            IoError::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    /// True for [`IoError::InjectedFault`].
    ///
    /// ```
    /// use silo_io::IoError;
    /// let e = IoError::InjectedFault { op: "write", path: "/x".into() };
    /// assert!(e.is_injected());
    /// ```
    pub fn is_injected(&self) -> bool {
        matches!(self, IoError::InjectedFault { .. })
    }

    /// The `std::io::ErrorKind` of an [`IoError::Io`], if it is one.
    ///
    /// ```
    /// use silo_io::SiloFile;
    /// let dir = tempfile::tempdir().unwrap();
    /// let err = SiloFile::open(&dir.path().join("missing")).unwrap_err();
    /// assert_eq!(err.io_kind(), Some(std::io::ErrorKind::NotFound));
    /// ```
    pub fn io_kind(&self) -> Option<std::io::ErrorKind> {
        match self {
            IoError::Io { source, .. } => Some(source.kind()),
            _ => None,
        }
    }
}

/// What to do about a failed system call, by its error number.
fn hint(source: &std::io::Error) -> &'static str {
    match source.raw_os_error() {
        Some(libc::ENOSPC | libc::EDQUOT) => {
            "the disk is full: free space, then reopen the store (nothing acknowledged is lost)"
        }
        Some(libc::EMFILE | libc::ENFILE) => {
            "out of file descriptors: raise the open-file limit (ulimit -n) or open fewer shards"
        }
        Some(libc::ENOMEM) => {
            "out of memory or address space: raise ulimit -v or vm.max_map_count, or map less"
        }
        Some(libc::EACCES | libc::EPERM | libc::EROFS) => {
            "the path is not writable by this process"
        }
        Some(libc::ENOENT | libc::ENOTDIR) => "the path does not exist",
        _ => "check that the path exists, is writable and the disk has free space",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_operation_path_and_remedy() {
        let e = IoError::io(
            "fsync",
            Path::new("/d/f"),
            std::io::Error::from_raw_os_error(libc::EIO),
        );
        let s = e.to_string();
        assert!(s.contains("fsync failed on /d/f"), "{s}");
        assert!(s.contains("free space"), "{s}");
        let l = IoError::Locked {
            path: "/d/LOCK".into(),
        }
        .to_string();
        assert!(l.contains("close that store"), "{l}");
        let o = IoError::OutOfBounds {
            offset: 8,
            len: 8,
            size: 12,
        }
        .to_string();
        assert!(o.contains("offset 8") && o.contains("12 bytes"), "{o}");
    }

    #[test]
    fn error_is_send_sync() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<IoError>();
    }
}
