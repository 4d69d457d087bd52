//! Thin, checked wrappers over the `libc` calls std does not offer.
//!
//! Each function takes safe Rust arguments (a borrowed file, slices) and
//! returns `std::io::Result`; the one `unsafe` block per function states why
//! the raw call cannot break memory safety. Callers add paths and the seam.

use std::fs::File;
use std::io::{self, IoSlice};
use std::os::fd::AsRawFd;
use std::sync::OnceLock;

/// Converts a file offset to `off_t`, rejecting offsets the kernel cannot take.
fn off(offset: u64) -> io::Result<libc::off_t> {
    libc::off_t::try_from(offset)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file offset exceeds off_t"))
}

/// Converts a `-1`-on-error return value into a result.
fn cvt(ret: libc::c_int) -> io::Result<()> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// One `pwritev` call; returns the bytes written (may be short).
pub(crate) fn pwritev(file: &File, bufs: &[IoSlice<'_>], offset: u64) -> io::Result<usize> {
    let count = libc::c_int::try_from(bufs.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "too many buffers"))?;
    let offset = off(offset)?;
    // SAFETY: `IoSlice` is documented to be ABI-compatible with `struct iovec`
    // on Unix; `bufs` is a live slice of `count` of them, each pointing at a
    // borrowed, initialised byte slice that outlives the call. The kernel only
    // reads from those buffers, and `file` keeps the descriptor open.
    let ret = unsafe {
        libc::pwritev(
            file.as_raw_fd(),
            bufs.as_ptr().cast::<libc::iovec>(),
            count,
            offset,
        )
    };
    usize::try_from(ret).map_err(|_| io::Error::last_os_error())
}

/// `fallocate(mode 0)` on Linux. `Ok(false)` when the file system does not
/// support it (the caller falls back); other errors (`ENOSPC`) are returned.
#[cfg(target_os = "linux")]
pub(crate) fn fallocate(file: &File, offset: u64, len: u64) -> io::Result<bool> {
    let (offset, len) = (off(offset)?, off(len)?);
    loop {
        // SAFETY: `fallocate` only reads its integer arguments and operates on
        // the open descriptor borrowed from `file`; no memory is passed.
        let ret = unsafe { libc::fallocate(file.as_raw_fd(), 0, offset, len) };
        match cvt(ret) {
            Ok(()) => return Ok(true),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::ENOSYS)) => {
                return Ok(false);
            }
            Err(e) => return Err(e),
        }
    }
}

/// Preallocation is not offered by this platform: the caller falls back.
#[cfg(not(target_os = "linux"))]
pub(crate) fn fallocate(_file: &File, _offset: u64, _len: u64) -> io::Result<bool> {
    Ok(false)
}

/// `posix_fadvise` on Linux; a no-op elsewhere.
#[cfg(target_os = "linux")]
pub(crate) fn fadvise(file: &File, offset: u64, len: u64, advice: libc::c_int) -> io::Result<()> {
    let (offset, len) = (off(offset)?, off(len)?);
    // SAFETY: `posix_fadvise` only reads its integer arguments and the open
    // descriptor borrowed from `file`; it is purely advisory.
    let ret = unsafe { libc::posix_fadvise(file.as_raw_fd(), offset, len, advice) };
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(ret))
    }
}

/// `posix_fadvise` on Linux; a no-op elsewhere.
#[cfg(not(target_os = "linux"))]
pub(crate) fn fadvise(
    _file: &File,
    _offset: u64,
    _len: u64,
    _advice: libc::c_int,
) -> io::Result<()> {
    Ok(())
}

/// `ioprio_set` of the calling thread to the idle class on Linux; a no-op
/// elsewhere.
#[cfg(target_os = "linux")]
pub(crate) fn set_thread_io_idle() -> io::Result<()> {
    // From linux/ioprio.h: IOPRIO_WHO_PROCESS names a thread by its id (0:
    // the calling one); the class sits above bit 13 and IDLE is 3.
    const IOPRIO_WHO_PROCESS: libc::c_long = 1;
    const IOPRIO_CLASS_IDLE: libc::c_long = 3;
    const IOPRIO_CLASS_SHIFT: u32 = 13;
    // SAFETY: `ioprio_set` takes three integers and touches no memory of
    // the caller; it changes only the I/O priority of the calling thread.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_ioprio_set,
            IOPRIO_WHO_PROCESS,
            0 as libc::c_long,
            IOPRIO_CLASS_IDLE << IOPRIO_CLASS_SHIFT,
        )
    };
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `ioprio_set` on Linux; a no-op elsewhere.
#[cfg(not(target_os = "linux"))]
pub(crate) fn set_thread_io_idle() -> io::Result<()> {
    Ok(())
}

/// The calling thread's id, as `setpriority` names a thread.
#[cfg(target_os = "linux")]
fn own_thread_id() -> io::Result<libc::id_t> {
    // SAFETY: `gettid` takes no arguments and cannot fail.
    let tid = unsafe { libc::gettid() };
    libc::id_t::try_from(tid)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "negative thread id"))
}

/// The calling thread's nice value on Linux, where a nice value belongs
/// to one thread (`getpriority(PRIO_PROCESS, tid)`); 0 elsewhere.
#[cfg(target_os = "linux")]
pub(crate) fn thread_nice() -> io::Result<i32> {
    let who = own_thread_id()?;
    // SAFETY: `getpriority` takes two integers and touches no memory of
    // the caller. It fails only for a bad `which` (PRIO_PROCESS is good)
    // or a thread that does not exist (this one does), so its -1 is
    // always the nice value -1, never an error.
    Ok(unsafe { libc::getpriority(libc::PRIO_PROCESS, who) })
}

/// 0 off Linux (see the Linux version).
#[cfg(not(target_os = "linux"))]
pub(crate) fn thread_nice() -> io::Result<i32> {
    Ok(0)
}

/// Sets the calling thread's nice value on Linux (threads it starts
/// afterwards inherit it); a no-op elsewhere, where a nice value may be
/// the whole process's.
#[cfg(target_os = "linux")]
pub(crate) fn set_thread_nice(nice: i32) -> io::Result<()> {
    let who = own_thread_id()?;
    // SAFETY: `setpriority` takes three integers, touches no memory of the
    // caller, and changes only the nice value of the thread `who`, which
    // is the caller's own.
    cvt(unsafe { libc::setpriority(libc::PRIO_PROCESS, who, nice) })
}

/// A no-op off Linux (see the Linux version).
#[cfg(not(target_os = "linux"))]
pub(crate) fn set_thread_nice(_nice: i32) -> io::Result<()> {
    Ok(())
}

/// `sync_file_range(SYNC_FILE_RANGE_WRITE)` on Linux: starts writeback of
/// the range's dirty pages without waiting for it; a no-op elsewhere.
#[cfg(target_os = "linux")]
pub(crate) fn start_writeback(file: &File, offset: u64, len: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let to_off = |n: u64| {
        libc::off64_t::try_from(n).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
    };
    let (offset, len) = (to_off(offset)?, to_off(len)?);
    // SAFETY: `sync_file_range` takes a descriptor (open for the life of
    // `file`) and three integers, and touches no memory of the caller.
    let ret = unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE)
    };
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// No early writeback off Linux.
#[cfg(not(target_os = "linux"))]
pub(crate) fn start_writeback(_file: &File, _offset: u64, _len: u64) -> io::Result<()> {
    Ok(())
}

/// What [`lock_range`] does to its byte range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RangeLock {
    /// A shared (read) lock: needs `file` open for reading.
    Shared,
    /// An exclusive (write) lock: needs `file` open for writing.
    Exclusive,
    /// Releases this process's lock on the range.
    Unlock,
}

/// `fcntl(F_SETLK)` on the `len` bytes from `start` (`len` 0: to the end of
/// the file, however long it grows), retrying `EINTR`. A conflicting lock
/// held by another process is reported as [`io::ErrorKind::WouldBlock`]
/// (the kernel says `EACCES` or `EAGAIN`).
///
/// These POSIX record locks belong to the process: a child made by `fork`
/// does not inherit them, two locks of this process never conflict (a new
/// one replaces the old over their common bytes), and closing *any*
/// descriptor of the file in this process releases them all (the caller
/// must keep every other open away).
pub(crate) fn lock_range(file: &File, start: u64, len: u64, how: RangeLock) -> io::Result<()> {
    let range = flock_of(start, len, how)?;
    loop {
        // SAFETY: `F_SETLK` reads one `struct flock`, which `range` is and
        // which outlives the call; the descriptor is borrowed from `file`.
        let ret = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLK, &range) };
        match cvt(ret) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::EACCES | libc::EAGAIN)) => {
                return Err(io::Error::new(io::ErrorKind::WouldBlock, e));
            }
            other => return other,
        }
    }
}

/// `fcntl(F_GETLK)` on the `len` bytes from `start`: whether another
/// process holds any lock there (one an exclusive lock would conflict
/// with). A query only: it takes, changes and releases nothing, and this
/// process's own locks never conflict with it.
pub(crate) fn range_locked_elsewhere(file: &File, start: u64, len: u64) -> io::Result<bool> {
    let mut range = flock_of(start, len, RangeLock::Exclusive)?;
    loop {
        // SAFETY: `F_GETLK` reads and overwrites one `struct flock`, which
        // `range` is (mutably borrowed, outliving the call); the descriptor
        // is borrowed from `file`.
        let ret = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETLK, &mut range) };
        match cvt(ret) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
            Ok(()) => return Ok(i32::from(range.l_type) != libc::F_UNLCK),
        }
    }
}

/// The `struct flock` for `how` on the `len` bytes from `start`
/// (`InvalidInput` if either does not fit an `off_t`).
fn flock_of(start: u64, len: u64, how: RangeLock) -> io::Result<libc::flock> {
    // SAFETY: `flock` is a plain C struct of integers, for which all zero
    // bytes is a valid value.
    let mut range: libc::flock = unsafe { std::mem::zeroed() };
    let kind = match how {
        RangeLock::Shared => libc::F_RDLCK,
        RangeLock::Exclusive => libc::F_WRLCK,
        RangeLock::Unlock => libc::F_UNLCK,
    };
    // The constants are small (0, 1, 2 and 0); the conversions cannot fail.
    range.l_type = libc::c_short::try_from(kind).unwrap_or(1);
    range.l_whence = libc::c_short::try_from(libc::SEEK_SET).unwrap_or(0);
    range.l_start = libc::off_t::try_from(start)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "lock offset out of range"))?;
    range.l_len = libc::off_t::try_from(len)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "lock length out of range"))?;
    Ok(range)
}

/// Bytes allocated on disk for `file` (`st_blocks * 512`).
pub(crate) fn allocated_bytes(file: &File) -> io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    Ok(file.metadata()?.blocks().saturating_mul(512))
}

/// `getrusage(who)`: `(major faults, minor faults)`.
pub(crate) fn rusage_faults(who: libc::c_int) -> io::Result<(u64, u64)> {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: `usage` points at writable memory the size of a `rusage`, which
    // `getrusage` fills completely on success.
    let ret = unsafe { libc::getrusage(who, usage.as_mut_ptr()) };
    cvt(ret)?;
    // SAFETY: `getrusage` returned 0, so it initialised the whole struct.
    let usage = unsafe { usage.assume_init() };
    let major = u64::try_from(usage.ru_majflt).unwrap_or(0);
    let minor = u64::try_from(usage.ru_minflt).unwrap_or(0);
    Ok((major, minor))
}

/// `sysconf(name)`, or `None` when the value is unknown.
fn sysconf(name: libc::c_int) -> Option<usize> {
    // SAFETY: `sysconf` only reads its integer argument.
    let v = unsafe { libc::sysconf(name) };
    usize::try_from(v).ok().filter(|&v| v > 0)
}

/// The page size, read once.
pub(crate) fn page_size() -> usize {
    static PAGE: OnceLock<usize> = OnceLock::new();
    *PAGE.get_or_init(|| sysconf(libc::_SC_PAGESIZE).unwrap_or(4096))
}

/// The most buffers one `pwritev` takes, read once (1024 when unknown).
pub(crate) fn iov_max() -> usize {
    static IOV: OnceLock<usize> = OnceLock::new();
    *IOV.get_or_init(|| sysconf(libc::_SC_IOV_MAX).unwrap_or(1024))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    #[test]
    fn pwritev_writes_all_buffers_in_order() {
        let f = tempfile::tempfile().unwrap();
        let n = pwritev(
            &f,
            &[IoSlice::new(b"ab"), IoSlice::new(b""), IoSlice::new(b"cde")],
            3,
        )
        .unwrap();
        assert_eq!(n, 5);
        let mut buf = [0u8; 8];
        f.read_exact_at(&mut buf, 0).unwrap();
        assert_eq!(&buf, b"\0\0\0abcde");
    }

    #[test]
    fn offsets_past_off_t_are_rejected() {
        let f = tempfile::tempfile().unwrap();
        let e = pwritev(&f, &[IoSlice::new(b"a")], u64::MAX).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn fallocate_and_blocks() {
        let f = tempfile::tempfile().unwrap();
        let supported = fallocate(&f, 0, 1 << 20).unwrap();
        if supported {
            assert_eq!(f.metadata().unwrap().len(), 1 << 20);
            assert!(allocated_bytes(&f).unwrap() >= 1 << 20);
        }
        fadvise(&f, 0, 0, libc::POSIX_FADV_DONTNEED).unwrap();
    }

    #[test]
    fn sysconf_values_are_sane() {
        assert!(page_size().is_power_of_two());
        assert!(iov_max() >= 16);
        let (_major, minor) = rusage_faults(libc::RUSAGE_SELF).unwrap();
        assert!(minor > 0);
    }

    #[test]
    fn a_range_lock_is_taken_and_released_with_the_descriptor() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("LOCK");
        let a = File::create(&p).unwrap();
        lock_range(&a, 0, 1, RangeLock::Exclusive).unwrap();
        // Within one process a POSIX lock is re-granted (the registry in
        // lock.rs refuses the second open); closing the descriptor ends it.
        lock_range(&a, 0, 0, RangeLock::Exclusive).unwrap();
        lock_range(&a, 1, 1, RangeLock::Unlock).unwrap();
        drop(a);
        let b = File::options().write(true).open(&p).unwrap();
        lock_range(&b, 0, 0, RangeLock::Exclusive).unwrap();
        let e = lock_range(&b, u64::MAX, 1, RangeLock::Exclusive).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn a_lock_query_sees_no_lock_of_this_process_and_reports_a_bad_range() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("LOCK");
        let a = File::create(&p).unwrap();
        lock_range(&a, 1, 1, RangeLock::Exclusive).unwrap();
        // This process's own lock never conflicts (other processes'
        // locks: `lock.rs`'s tests, through `DirLock::readers_present`).
        assert!(!range_locked_elsewhere(&a, 1, 1).unwrap());
        assert!(!range_locked_elsewhere(&a, 0, 0).unwrap());
        // A range the kernel refuses is an error, returned, not retried.
        let far = u64::try_from(libc::off_t::MAX).unwrap();
        let e = range_locked_elsewhere(&a, far, 2).unwrap_err();
        assert!(
            matches!(e.raw_os_error(), Some(libc::EINVAL | libc::EOVERFLOW)),
            "{e}"
        );
        let e = range_locked_elsewhere(&a, u64::MAX, 1).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn sysconf_knows_the_page_size_and_not_a_bad_name() {
        assert!(sysconf(libc::_SC_PAGESIZE).is_some_and(|p| p.is_power_of_two()));
        assert_eq!(sysconf(-1), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn fadvise_reports_advice_the_kernel_refuses() {
        let f = tempfile::tempfile().unwrap();
        fadvise(&f, 0, 0, libc::POSIX_FADV_WILLNEED).unwrap();
        let e = fadvise(&f, 0, 0, 999).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
    }

    #[test]
    fn a_read_only_descriptor_cannot_take_a_write_lock() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("LOCK");
        File::create(&p).unwrap();
        let r = File::open(&p).unwrap();
        let e = lock_range(&r, 0, 0, RangeLock::Exclusive).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EBADF));
        // A shared lock needs only reading.
        lock_range(&r, 0, 0, RangeLock::Shared).unwrap();
        let w = File::options().write(true).open(&p).unwrap();
        let e = lock_range(&w, 0, 0, RangeLock::Shared).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EBADF));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_thread_lowered_in_cpu_priority_reads_it_back_and_passes_it_on_and_others_keep_theirs() {
        let before = crate::advice::cpu_priority_of_this_thread().unwrap();
        let (lowered, inherited, capped) = std::thread::spawn(move || {
            crate::advice::lower_cpu_priority_of_this_thread(3).unwrap();
            let lowered = crate::advice::cpu_priority_of_this_thread().unwrap();
            let inherited = std::thread::spawn(crate::advice::cpu_priority_of_this_thread)
                .join()
                .unwrap()
                .unwrap();
            crate::advice::lower_cpu_priority_of_this_thread(u8::MAX).unwrap();
            (
                lowered,
                inherited,
                crate::advice::cpu_priority_of_this_thread().unwrap(),
            )
        })
        .join()
        .unwrap();
        assert_eq!(lowered, (before + 3).min(19));
        assert_eq!(inherited, lowered, "a thread started after inherits it");
        assert_eq!(capped, 19, "the lowest priority, not an error");
        assert_eq!(
            crate::advice::cpu_priority_of_this_thread().unwrap(),
            before,
            "only that thread changed"
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_thread_set_to_idle_io_reads_back_the_idle_class_and_others_keep_theirs() {
        /// The calling thread's I/O priority (`ioprio_get`).
        fn own_priority() -> libc::c_long {
            // SAFETY: `ioprio_get` takes two integers (who: the calling
            // thread) and touches no memory of the caller.
            unsafe { libc::syscall(libc::SYS_ioprio_get, 1 as libc::c_long, 0 as libc::c_long) }
        }
        let before = own_priority();
        let (set, after) =
            std::thread::spawn(|| (crate::advice::idle_io_for_this_thread(), own_priority()))
                .join()
                .unwrap();
        set.unwrap();
        // Class IDLE (3) above bit 13, level 0.
        assert_eq!(after, 3 << 13);
        assert_ne!(before, 3 << 13);
        assert_eq!(own_priority(), before, "only that thread changed");
    }
}
