//! Access-pattern hints: [`MapAdvice`] for `madvise`, [`FileAdvice`] for
//! `posix_fadvise`, [`idle_io_for_this_thread`] for `ioprio_set`, and
//! [`lower_cpu_priority_of_this_thread`] for `setpriority`.
//!
//! Hints are best-effort: the kernel may ignore them, and on Unix systems
//! other than Linux `FileAdvice` calls are no-ops.

/// A hint about how a mapped range will be used (`madvise`).
///
/// ```
/// use silo_io::{MapAdvice, ReadMap, SiloFile};
/// let dir = tempfile::tempdir().unwrap();
/// let file = SiloFile::create_new(&dir.path().join("f")).unwrap();
/// file.write_all_at(&[1u8; 10_000], 0).unwrap();
/// let map = ReadMap::new(&file).unwrap();
/// map.advise(0, map.len(), MapAdvice::WillNeed).unwrap();
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MapAdvice {
    /// No special treatment (`MADV_NORMAL`).
    Normal,
    /// Read the range ahead, it will be touched soon (`MADV_WILLNEED`).
    WillNeed,
    /// The range will not be touched soon: drop its pages (`MADV_DONTNEED`).
    /// On silo's shared file-backed maps this only drops cached pages; the
    /// bytes are read back from the file on the next access.
    DontNeed,
    /// The range will be read in order: read ahead aggressively (`MADV_SEQUENTIAL`).
    Sequential,
    /// The range will be read in random order: no read-ahead (`MADV_RANDOM`).
    Random,
}

/// A hint about how a range of a file will be read (`posix_fadvise`).
///
/// ```
/// use silo_io::{FileAdvice, SiloFile};
/// let dir = tempfile::tempdir().unwrap();
/// let file = SiloFile::create_new(&dir.path().join("f")).unwrap();
/// file.write_all_at(b"bytes", 0).unwrap();
/// file.advise(0, 0, FileAdvice::WillNeed).unwrap(); // len 0: to the end of the file
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileAdvice {
    /// No special treatment (`POSIX_FADV_NORMAL`).
    Normal,
    /// Start reading the range into the page cache (`POSIX_FADV_WILLNEED`).
    WillNeed,
    /// Drop the range's clean pages from the page cache (`POSIX_FADV_DONTNEED`).
    /// Dirty pages stay: sync first to drop everything.
    DontNeed,
    /// The range will be read in order (`POSIX_FADV_SEQUENTIAL`).
    Sequential,
    /// The range will be read in random order (`POSIX_FADV_RANDOM`).
    Random,
}

impl FileAdvice {
    /// The `posix_fadvise` constant.
    #[cfg(target_os = "linux")]
    pub(crate) fn to_libc(self) -> libc::c_int {
        match self {
            FileAdvice::Normal => libc::POSIX_FADV_NORMAL,
            FileAdvice::WillNeed => libc::POSIX_FADV_WILLNEED,
            FileAdvice::DontNeed => libc::POSIX_FADV_DONTNEED,
            FileAdvice::Sequential => libc::POSIX_FADV_SEQUENTIAL,
            FileAdvice::Random => libc::POSIX_FADV_RANDOM,
        }
    }

    /// Advice is a no-op on this platform.
    #[cfg(not(target_os = "linux"))]
    pub(crate) fn to_libc(self) -> libc::c_int {
        0
    }
}

/// Puts the calling thread's disk I/O in the idle class (`ioprio_set`,
/// `IOPRIO_CLASS_IDLE`): where the device's I/O scheduler honours classes
/// (mq-deadline, bfq), its requests wait while others' are queued, so
/// background work that nothing waits for (freeing a deleted file's
/// blocks) does not hold up a foreground write or sync. The requests still
/// run when the device is otherwise idle. Not for reads that others may
/// wait for: a thread that needs a page under an idle read waits as long
/// as that read does. A hint: with no scheduler (`none`) it changes
/// nothing, and on Unix systems other than Linux it is a no-op.
///
/// ```
/// std::thread::spawn(|| silo_io::advice::idle_io_for_this_thread().unwrap())
///     .join()
///     .unwrap();
/// ```
///
/// The error is the system's own (no file is involved).
pub fn idle_io_for_this_thread() -> std::io::Result<()> {
    crate::sys::set_thread_io_idle()
}

/// Lowers the calling thread's CPU priority by `by` nice levels (to at
/// most 19, the lowest), for background work that competes with
/// foreground threads for the cores: where every core is busy, the kernel
/// gives the thread a smaller share (at 5 levels, about a third of a
/// foreground thread's), and where a core is idle it runs as fast as ever.
/// Threads the caller starts afterwards inherit the level. Raising it back
/// needs privileges, so a thread lowered stays lowered: use it on threads
/// of their own. On Unix systems other than Linux (where a nice value may
/// be the whole process's) it is a no-op.
///
/// ```
/// std::thread::spawn(|| {
///     let before = silo_io::advice::cpu_priority_of_this_thread().unwrap();
///     silo_io::advice::lower_cpu_priority_of_this_thread(2).unwrap();
///     let after = silo_io::advice::cpu_priority_of_this_thread().unwrap();
///     assert!(after == (before + 2).min(19) || cfg!(not(target_os = "linux")));
/// })
/// .join()
/// .unwrap();
/// ```
///
/// The error is the system's own (no file is involved).
pub fn lower_cpu_priority_of_this_thread(by: u8) -> std::io::Result<()> {
    let now = crate::sys::thread_nice()?;
    let target = now.saturating_add(i32::from(by)).min(19);
    if target == now {
        return Ok(());
    }
    crate::sys::set_thread_nice(target)
}

/// The calling thread's nice value (-20 to 19, higher is a lower CPU
/// priority; see [`lower_cpu_priority_of_this_thread`]); 0 on Unix
/// systems other than Linux.
///
/// The error is the system's own.
pub fn cpu_priority_of_this_thread() -> std::io::Result<i32> {
    crate::sys::thread_nice()
}
