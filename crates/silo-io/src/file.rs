//! [`SiloFile`]: the one way silo opens, reads and writes files.
//!
//! Every mutating call asks the fault seam ([`crate::fault`]) first, so tests
//! can fail, tear, shorten or interrupt it. Write loops retry `EINTR` and
//! short writes until every byte is written.

use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::advice::FileAdvice;
use crate::error::IoError;
use crate::fault::{self, FaultOp, WriteGate};
use crate::sys;

/// Counts for a batch of writes: how many were asked for and how many system
/// calls it took.
///
/// ```
/// use silo_io::SiloFile;
/// let dir = tempfile::tempdir().unwrap();
/// let file = SiloFile::create_new(&dir.path().join("f")).unwrap();
/// let stats = file.write_vectored_all_at(&[b"ab", b"cd", b"ef"], 0).unwrap();
/// assert_eq!((stats.requested, stats.syscalls, stats.bytes), (3, 1, 6));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Writes the caller asked for (buffers or pushes).
    pub requested: u64,
    /// Write system calls issued (including retries after short writes).
    pub syscalls: u64,
    /// Bytes written.
    pub bytes: u64,
}

impl WriteStats {
    /// Adds `other`'s counts to these.
    ///
    /// ```
    /// use silo_io::WriteStats;
    /// let mut a = WriteStats { requested: 1, syscalls: 1, bytes: 4 };
    /// a.add(WriteStats { requested: 2, syscalls: 1, bytes: 8 });
    /// assert_eq!(a, WriteStats { requested: 3, syscalls: 2, bytes: 12 });
    /// ```
    pub fn add(&mut self, other: WriteStats) {
        self.requested += other.requested;
        self.syscalls += other.syscalls;
        self.bytes += other.bytes;
    }
}

/// The most buffers one `pwritev` call takes on this system (`IOV_MAX`).
///
/// ```
/// assert!(silo_io::iov_max() >= 16);
/// ```
pub fn iov_max() -> usize {
    sys::iov_max()
}

/// A file opened by silo, with its path (for error messages and the fault seam).
///
/// ```
/// use silo_io::SiloFile;
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("f");
/// let file = SiloFile::create_new(&path)?;
/// file.write_all_at(b"hello", 0)?;
/// file.sync_data()?;
/// let again = SiloFile::open_read(&path)?;
/// let mut buf = [0u8; 5];
/// again.read_exact_at(&mut buf, 0)?;
/// assert_eq!(&buf, b"hello");
/// # Ok::<(), silo_io::IoError>(())
/// ```
#[derive(Debug)]
pub struct SiloFile {
    file: File,
    path: PathBuf,
}

impl SiloFile {
    fn open_with(
        path: &Path,
        options: &OpenOptions,
        op: &'static str,
    ) -> Result<SiloFile, IoError> {
        let file = options.open(path).map_err(|e| IoError::io(op, path, e))?;
        Ok(SiloFile {
            file,
            path: path.to_path_buf(),
        })
    }

    /// Wraps a file opened elsewhere (with flags `SiloFile` has no opener
    /// for, such as `O_DIRECT`).
    pub(crate) fn from_std(file: File, path: &Path) -> SiloFile {
        SiloFile {
            file,
            path: path.to_path_buf(),
        }
    }

    /// Opens an existing file for reading and writing.
    ///
    /// ```
    /// use silo_io::SiloFile;
    /// let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("f");
    /// SiloFile::create_new(&path)?;
    /// let file = SiloFile::open(&path)?;
    /// file.write_all_at(b"x", 0)?;
    /// # Ok::<(), silo_io::IoError>(())
    /// ```
    pub fn open(path: &Path) -> Result<SiloFile, IoError> {
        SiloFile::open_with(path, OpenOptions::new().read(true).write(true), "open")
    }

    /// Opens an existing file read-only.
    ///
    /// ```
    /// use silo_io::SiloFile;
    /// let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("f");
    /// SiloFile::create_new(&path)?;
    /// assert_eq!(SiloFile::open_read(&path)?.len()?, 0);
    /// # Ok::<(), silo_io::IoError>(())
    /// ```
    pub fn open_read(path: &Path) -> Result<SiloFile, IoError> {
        SiloFile::open_with(path, OpenOptions::new().read(true), "open")
    }

    /// Creates a new file for reading and writing; fails if it exists.
    ///
    /// ```
    /// use silo_io::SiloFile;
    /// let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("f");
    /// SiloFile::create_new(&path)?;
    /// let err = SiloFile::create_new(&path).unwrap_err();
    /// assert_eq!(err.io_kind(), Some(std::io::ErrorKind::AlreadyExists));
    /// # Ok::<(), silo_io::IoError>(())
    /// ```
    pub fn create_new(path: &Path) -> Result<SiloFile, IoError> {
        fault::check(FaultOp::Create, path)?;
        SiloFile::open_with(
            path,
            OpenOptions::new().read(true).write(true).create_new(true),
            "create",
        )
    }

    /// Creates a file for reading and writing, truncating it if it exists.
    ///
    /// ```
    /// use silo_io::SiloFile;
    /// let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("f");
    /// SiloFile::create_new(&path)?.write_all_at(b"old", 0)?;
    /// assert_eq!(SiloFile::create(&path)?.len()?, 0);
    /// # Ok::<(), silo_io::IoError>(())
    /// ```
    pub fn create(path: &Path) -> Result<SiloFile, IoError> {
        fault::check(FaultOp::Create, path)?;
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true).truncate(true);
        SiloFile::open_with(path, &options, "create")
    }

    /// The path the file was opened with.
    ///
    /// ```
    /// use silo_io::SiloFile;
    /// let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("f");
    /// assert_eq!(SiloFile::create_new(&path)?.path(), path);
    /// # Ok::<(), silo_io::IoError>(())
    /// ```
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's current length in bytes.
    ///
    /// ```
    /// use silo_io::SiloFile;
    /// let dir = tempfile::tempdir().unwrap();
    /// let file = SiloFile::create_new(&dir.path().join("f"))?;
    /// file.write_all_at(b"abc", 10)?;
    /// assert_eq!(file.len()?, 13);
    /// # Ok::<(), silo_io::IoError>(())
    /// ```
    #[expect(
        clippy::len_without_is_empty,
        reason = "a file's length is fallible; callers compare len()? with 0"
    )]
    pub fn len(&self) -> Result<u64, IoError> {
        Ok(self.file.metadata().map_err(|e| self.err("stat", e))?.len())
    }

    /// The underlying `std::fs::File`, for read-only uses such as mapping.
    /// Writing through it would bypass the fault seam: don't.
    ///
    /// ```
    /// use silo_io::SiloFile;
    /// let dir = tempfile::tempdir().unwrap();
    /// let file = SiloFile::create_new(&dir.path().join("f"))?;
    /// assert!(file.as_std().metadata().unwrap().is_file());
    /// # Ok::<(), silo_io::IoError>(())
    /// ```
    pub fn as_std(&self) -> &File {
        &self.file
    }

    fn err(&self, op: &'static str, e: io::Error) -> IoError {
        IoError::io(op, &self.path, e)
    }

    /// Fills `buf` from `offset`; reading past the end is an `Io` error of
    /// kind `UnexpectedEof`.
    ///
    /// ```
    /// use silo_io::SiloFile;
    /// let dir = tempfile::tempdir().unwrap();
    /// let file = SiloFile::create_new(&dir.path().join("f"))?;
    /// file.write_all_at(b"abcdef", 0)?;
    /// let mut buf = [0u8; 3];
    /// file.read_exact_at(&mut buf, 2)?;
    /// assert_eq!(&buf, b"cde");
    /// let err = file.read_exact_at(&mut buf, 5).unwrap_err();
    /// assert_eq!(err.io_kind(), Some(std::io::ErrorKind::UnexpectedEof));
    /// # Ok::<(), silo_io::IoError>(())
    /// ```
    pub fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> Result<(), IoError> {
        self.file
            .read_exact_at(buf, offset)
            .map_err(|e| self.err("read", e))
    }

    /// Writes all of `buf` at `offset` (`pwrite`), retrying `EINTR` and short writes.
    ///
    /// ```
    /// use silo_io::SiloFile;
    /// let dir = tempfile::tempdir().unwrap();
    /// let file = SiloFile::create_new(&dir.path().join("f"))?;
    /// file.write_all_at(b"abc", 4096)?;
    /// assert_eq!(file.len()?, 4099);
    /// # Ok::<(), silo_io::IoError>(())
    /// ```
    pub fn write_all_at(&self, buf: &[u8], offset: u64) -> Result<(), IoError> {
        self.write_vectored_all_at(&[buf], offset).map(|_| ())
    }

    /// Writes all of `bufs`, back to back from `offset`, with as few `pwritev`
    /// calls as `IOV_MAX` allows, retrying `EINTR` and short writes.
    ///
    /// ```
    /// use silo_io::SiloFile;
    /// let dir = tempfile::tempdir().unwrap();
    /// let file = SiloFile::create_new(&dir.path().join("f"))?;
    /// let stats = file.write_vectored_all_at(&[b"ab", b"", b"cd"], 1)?;
    /// assert_eq!(stats.bytes, 4);
    /// let mut buf = [0u8; 5];
    /// file.read_exact_at(&mut buf, 0)?;
    /// assert_eq!(&buf, b"\0abcd");
    /// # Ok::<(), silo_io::IoError>(())
    /// ```
    pub fn write_vectored_all_at(
        &self,
        bufs: &[&[u8]],
        offset: u64,
    ) -> Result<WriteStats, IoError> {
        let mut stats = WriteStats {
            requested: bufs.len() as u64,
            syscalls: 0,
            bytes: 0,
        };
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        let end = offset
            .checked_add(total as u64)
            .ok_or(IoError::OutOfBounds {
                offset,
                len: total as u64,
                size: u64::MAX,
            })?;
        let iov_max = sys::iov_max();
        let mut cursor = Cursor::new(bufs);
        let mut window: Vec<IoSlice<'_>> = Vec::with_capacity(iov_max.min(bufs.len()));
        let mut retry = false;
        while !cursor.done() {
            let (limit, torn) = match fault::write_limit(&self.path, retry) {
                WriteGate::Full => (usize::MAX, false),
                WriteGate::Short(max) => (max, false),
                WriteGate::Torn(keep) => (keep, true),
                WriteGate::Fail => return Err(fault::write_fault(&self.path)),
                WriteGate::Interrupt => {
                    retry = true;
                    continue;
                }
            };
            retry = false;
            if torn {
                self.write_raw(&cursor, limit, end - cursor.remaining)?;
                return Err(fault::write_fault(&self.path));
            }
            cursor.fill(&mut window, iov_max, limit);
            let at = end - cursor.remaining;
            let result = sys::pwritev(&self.file, &window, at);
            stats.syscalls += 1;
            match result {
                Ok(0) => return Err(self.err("write", io::ErrorKind::WriteZero.into())),
                Ok(n) => {
                    cursor.advance(n);
                    stats.bytes += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.err("write", e)),
            }
        }
        Ok(stats)
    }

    /// Writes the first `keep` remaining bytes of `cursor` without the seam
    /// (the torn part of an injected torn write).
    fn write_raw(&self, cursor: &Cursor<'_>, keep: usize, mut at: u64) -> Result<(), IoError> {
        let mut left = keep.min(usize::try_from(cursor.remaining).unwrap_or(usize::MAX));
        let mut c = cursor.clone();
        let mut window = Vec::new();
        while left > 0 {
            c.fill(&mut window, sys::iov_max(), left);
            match sys::pwritev(&self.file, &window, at) {
                Ok(0) => return Err(self.err("write", io::ErrorKind::WriteZero.into())),
                Ok(n) => {
                    c.advance(n);
                    left -= n;
                    at += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.err("write", e)),
            }
        }
        Ok(())
    }

    fn sync_loop(&self, op: &'static str, data_only: bool) -> Result<(), IoError> {
        fault::check(FaultOp::Sync, &self.path)?;
        let token = fault::sync_start(&self.path, None);
        loop {
            let r = if data_only {
                self.file.sync_data()
            } else {
                self.file.sync_all()
            };
            match r {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.err(op, e)),
                Ok(()) => {
                    fault::synced(token);
                    return Ok(());
                }
            }
        }
    }

    /// Makes the file's data durable (`fdatasync`).
    ///
    /// ```
    /// use silo_io::SiloFile;
    /// let dir = tempfile::tempdir().unwrap();
    /// let file = SiloFile::create_new(&dir.path().join("f"))?;
    /// file.write_all_at(b"abc", 0)?;
    /// file.sync_data()?;
    /// # Ok::<(), silo_io::IoError>(())
    /// ```
    pub fn sync_data(&self) -> Result<(), IoError> {
        self.sync_loop("fdatasync", true)
    }

    /// Starts writing the `len` bytes from `offset` that wait in the page
    /// cache to the device, without waiting for them
    /// (`sync_file_range(SYNC_FILE_RANGE_WRITE)` on Linux; nothing
    /// elsewhere). A later [`sync_data`](Self::sync_data) of the file then
    /// has less left to write. It makes nothing durable: no metadata is
    /// written and the device's cache is not flushed, so only a sync may
    /// be counted on.
    ///
    /// ```
    /// use silo_io::SiloFile;
    /// let dir = tempfile::tempdir().unwrap();
    /// let file = SiloFile::create_new(&dir.path().join("f"))?;
    /// file.write_all_at(&[7u8; 1 << 16], 0)?;
    /// file.start_writeback(0, 1 << 16)?;
    /// file.sync_data()?;
    /// # Ok::<(), silo_io::IoError>(())
    /// ```
    pub fn start_writeback(&self, offset: u64, len: u64) -> Result<(), IoError> {
        sys::start_writeback(&self.file, offset, len).map_err(|e| self.err("sync_file_range", e))
    }

    /// Makes the file's data and metadata durable (`fsync`).
    ///
    /// ```
    /// use silo_io::SiloFile;
    /// let dir = tempfile::tempdir().unwrap();
    /// let file = SiloFile::create_new(&dir.path().join("f"))?;
    /// file.set_len(100)?;
    /// file.sync_all()?;
    /// # Ok::<(), silo_io::IoError>(())
    /// ```
    pub fn sync_all(&self) -> Result<(), IoError> {
        self.sync_loop("fsync", false)
    }

    /// Sets the file's length, extending with zeros (sparse) or truncating.
    /// Never shrink a file that is mapped: readers would fault (`SIGBUS`).
    ///
    /// ```
    /// use silo_io::SiloFile;
    /// let dir = tempfile::tempdir().unwrap();
    /// let file = SiloFile::create_new(&dir.path().join("f"))?;
    /// file.set_len(4096)?;
    /// assert_eq!(file.len()?, 4096);
    /// # Ok::<(), silo_io::IoError>(())
    /// ```
    pub fn set_len(&self, len: u64) -> Result<(), IoError> {
        fault::check(FaultOp::SetLen, &self.path)?;
        self.file.set_len(len).map_err(|e| self.err("set_len", e))
    }

    /// Frees the blocks of a file that has no name left (unlinked, or
    /// renamed over) by cutting it short `step` bytes at a time, from its
    /// end down to nothing; returns whether it did (`false`, and nothing
    /// changed, while the file still has a name).
    ///
    /// Closing the last descriptor of a long unlinked file frees all its
    /// blocks in one go, and a file system mounted with `discard` then asks
    /// the device to discard them all in one request (a 512 MiB file: 200
    /// ms here) that every later request waits behind, a sync under the
    /// log mutex included. Cut a step at a time, one discard of at most
    /// `step` bytes is in the device's queue at once (8 MiB: 3.4 ms here),
    /// and requests issued meanwhile pass between them.
    ///
    /// The caller must know that nothing else reads the file: no other
    /// descriptor or map of it in this process, and no other process with
    /// it open (see [`crate::DirLock::readers_present`]); a map of it reads
    /// past the new end as `SIGBUS`.
    ///
    /// ```
    /// use silo_io::SiloFile;
    /// let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("f");
    /// let file = SiloFile::create_new(&path)?;
    /// file.allocate(0, 3 << 20)?;
    /// assert!(!file.free_in_steps(1 << 20)?, "it has a name");
    /// assert_eq!(file.len()?, 3 << 20);
    /// std::fs::remove_file(&path).unwrap();
    /// assert!(file.free_in_steps(1 << 20)?);
    /// assert_eq!(file.len()?, 0);
    /// # Ok::<(), silo_io::IoError>(())
    /// ```
    pub fn free_in_steps(&self, step: u64) -> Result<bool, IoError> {
        use std::os::unix::fs::MetadataExt;
        let meta = self.file.metadata().map_err(|e| self.err("stat", e))?;
        if meta.nlink() != 0 {
            return Ok(false);
        }
        let step = step.max(1);
        let mut len = meta.len();
        while len > 0 {
            len = len.saturating_sub(step);
            self.set_len(len)?;
        }
        Ok(true)
    }

    /// Reserves disk blocks for `[offset, offset + len)` and extends the file
    /// to cover it (`fallocate` mode 0). Where the file system lacks
    /// `fallocate`, zeros are written past the current end instead, so the
    /// space is still reserved. A full disk is an `Io` error with `ENOSPC`
    /// here, never a `SIGBUS` later when a map of the range is written.
    ///
    /// ```
    /// use silo_io::SiloFile;
    /// let dir = tempfile::tempdir().unwrap();
    /// let file = SiloFile::create_new(&dir.path().join("f"))?;
    /// file.allocate(0, 1 << 20)?;
    /// assert_eq!(file.len()?, 1 << 20);
    /// assert!(file.block_bytes()? >= 1 << 20);
    /// # Ok::<(), silo_io::IoError>(())
    /// ```
    pub fn allocate(&self, offset: u64, len: u64) -> Result<(), IoError> {
        fault::check(FaultOp::Allocate, &self.path)?;
        if len == 0 {
            return Ok(());
        }
        let end = offset.checked_add(len).ok_or(IoError::OutOfBounds {
            offset,
            len,
            size: u64::MAX,
        })?;
        if sys::fallocate(&self.file, offset, len).map_err(|e| self.err("fallocate", e))? {
            return Ok(());
        }
        // Fallback: write zeros from the current end (bytes before it are kept).
        let current = self.len()?;
        let mut at = current.max(offset);
        let zeros = vec![0u8; 1 << 20];
        while at < end {
            let n = usize::try_from(end - at)
                .unwrap_or(usize::MAX)
                .min(zeros.len());
            self.write_all_at(&zeros[..n], at)?;
            at += n as u64;
        }
        Ok(())
    }

    /// Advises the kernel how `[offset, offset + len)` will be read
    /// (`posix_fadvise`; `len` 0 means to the end of the file). A no-op on
    /// Unix systems other than Linux.
    ///
    /// ```
    /// use silo_io::{FileAdvice, SiloFile};
    /// let dir = tempfile::tempdir().unwrap();
    /// let file = SiloFile::create_new(&dir.path().join("f"))?;
    /// file.write_all_at(&[7u8; 8192], 0)?;
    /// file.sync_data()?;
    /// file.advise(0, 0, FileAdvice::DontNeed)?;
    /// # Ok::<(), silo_io::IoError>(())
    /// ```
    /// `WillNeed` is issued in 2 MiB chunks: Linux reads ahead at most the
    /// device's read-ahead window per call, so one call over a large range
    /// would prefetch only its start.
    pub fn advise(&self, offset: u64, len: u64, advice: FileAdvice) -> Result<(), IoError> {
        const CHUNK: u64 = 2 << 20;
        let fadvise = |at, n| {
            sys::fadvise(&self.file, at, n, advice.to_libc()).map_err(|e| self.err("fadvise", e))
        };
        if advice != FileAdvice::WillNeed {
            return fadvise(offset, len);
        }
        let end = if len == 0 {
            self.len()?
        } else {
            offset.saturating_add(len)
        };
        let mut at = offset;
        while at < end {
            let n = (end - at).min(CHUNK);
            fadvise(at, n)?;
            at += n;
        }
        Ok(())
    }

    /// Bytes actually allocated on disk for the file (`st_blocks * 512`);
    /// smaller than [`len`](Self::len) for sparse files.
    ///
    /// ```
    /// use silo_io::SiloFile;
    /// let dir = tempfile::tempdir().unwrap();
    /// let file = SiloFile::create_new(&dir.path().join("f"))?;
    /// file.set_len(1 << 30)?; // sparse
    /// assert!(file.block_bytes()? < 1 << 30);
    /// # Ok::<(), silo_io::IoError>(())
    /// ```
    pub fn block_bytes(&self) -> Result<u64, IoError> {
        sys::allocated_bytes(&self.file).map_err(|e| self.err("stat", e))
    }
}

/// A position inside a list of buffers: which buffer, and how far into it.
#[derive(Clone, Debug)]
struct Cursor<'a> {
    bufs: &'a [&'a [u8]],
    index: usize,
    within: usize,
    remaining: u64,
}

impl<'a> Cursor<'a> {
    fn new(bufs: &'a [&'a [u8]]) -> Cursor<'a> {
        let remaining = bufs.iter().map(|b| b.len() as u64).sum();
        let mut c = Cursor {
            bufs,
            index: 0,
            within: 0,
            remaining,
        };
        c.skip_empty();
        c
    }

    fn done(&self) -> bool {
        self.remaining == 0
    }

    fn skip_empty(&mut self) {
        while self.index < self.bufs.len() && self.within == self.bufs[self.index].len() {
            self.index += 1;
            self.within = 0;
        }
    }

    /// Fills `window` with at most `max_bufs` slices holding at most `limit`
    /// bytes, starting at the cursor.
    fn fill(&self, window: &mut Vec<IoSlice<'a>>, max_bufs: usize, limit: usize) {
        window.clear();
        let mut left = limit;
        let mut within = self.within;
        for buf in &self.bufs[self.index..] {
            if window.len() == max_bufs || left == 0 {
                break;
            }
            let part = &buf[within..];
            within = 0;
            if part.is_empty() {
                continue;
            }
            let part = &part[..part.len().min(left)];
            left -= part.len();
            window.push(IoSlice::new(part));
        }
    }

    /// Moves past `n` written bytes.
    fn advance(&mut self, mut n: usize) {
        self.remaining -= n as u64;
        while n > 0 {
            let left = self.bufs[self.index].len() - self.within;
            if n < left {
                self.within += n;
                return;
            }
            n -= left;
            self.index += 1;
            self.within = 0;
        }
        self.skip_empty();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contents(f: &SiloFile) -> Vec<u8> {
        std::fs::read(f.path()).unwrap()
    }

    #[test]
    fn cursor_walks_buffers_and_partial_advances() {
        let bufs: [&[u8]; 4] = [b"", b"abc", b"", b"defg"];
        let mut c = Cursor::new(&bufs);
        let mut w = Vec::new();
        c.fill(&mut w, 10, 5);
        let got: Vec<u8> = w.iter().flat_map(|s| s.iter().copied()).collect();
        assert_eq!(got, b"abcde");
        c.advance(2);
        c.fill(&mut w, 1, 100);
        assert_eq!(&*w[0], b"c");
        c.advance(1);
        c.fill(&mut w, 10, 100);
        assert_eq!(&*w[0], b"defg");
        c.advance(4);
        assert!(c.done());
    }

    #[test]
    fn vectored_write_past_iov_max_uses_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let f = SiloFile::create_new(&dir.path().join("f")).unwrap();
        let n = iov_max() * 2 + 3;
        let data: Vec<[u8; 2]> = (0..n)
            .map(|i| [u8::try_from(i % 251).unwrap(), 1])
            .collect();
        let bufs: Vec<&[u8]> = data.iter().map(|b| &b[..]).collect();
        let stats = f.write_vectored_all_at(&bufs, 0).unwrap();
        assert_eq!(stats.syscalls, 3);
        assert_eq!(stats.requested, n as u64);
        assert_eq!(contents(&f), data.concat());
    }

    #[test]
    fn writeback_starts_on_written_ranges_and_refuses_impossible_ones() {
        let dir = tempfile::tempdir().unwrap();
        let f = SiloFile::create_new(&dir.path().join("f")).unwrap();
        f.write_all_at(&[5u8; 3 << 20], 0).unwrap();
        f.start_writeback(0, 1 << 20).unwrap();
        // Past the end, or of nothing: nothing to start, no error.
        f.start_writeback(8 << 20, 4096).unwrap();
        f.start_writeback(0, 0).unwrap();
        f.sync_data().unwrap();
        assert_eq!(contents(&f), vec![5u8; 3 << 20]);
        if cfg!(target_os = "linux") {
            // An offset no file can have is the caller's error, named.
            let e = f.start_writeback(u64::MAX, 1).unwrap_err();
            assert!(e.to_string().contains("sync_file_range"), "{e}");
        }
    }

    #[test]
    fn empty_writes_do_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let f = SiloFile::create_new(&dir.path().join("f")).unwrap();
        let stats = f.write_vectored_all_at(&[b"", b""], 100).unwrap();
        assert_eq!(stats.syscalls, 0);
        assert_eq!(f.len().unwrap(), 0);
        f.write_all_at(b"", 5).unwrap();
        assert_eq!(f.len().unwrap(), 0);
    }

    #[test]
    fn read_only_files_refuse_writes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        SiloFile::create_new(&p).unwrap();
        let r = SiloFile::open_read(&p).unwrap();
        let e = r.write_all_at(b"x", 0).unwrap_err();
        assert!(matches!(e, IoError::Io { op: "write", .. }), "{e}");
    }

    #[test]
    fn allocate_extends_and_keeps_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let f = SiloFile::create_new(&dir.path().join("f")).unwrap();
        f.write_all_at(b"keep", 0).unwrap();
        f.allocate(0, 65536).unwrap();
        assert_eq!(f.len().unwrap(), 65536);
        assert_eq!(&contents(&f)[..4], b"keep");
        f.allocate(10, 0).unwrap();
    }

    #[cfg(feature = "fault-injection")]
    #[test]
    fn short_and_interrupted_writes_are_retried() {
        use crate::fault::{FaultAction, FaultPlan, install};
        let dir = tempfile::tempdir().unwrap();
        let f = SiloFile::create_new(&dir.path().join("f")).unwrap();
        let g = install(
            dir.path(),
            FaultPlan::new()
                .every(FaultOp::Write, FaultAction::Short { max: 3 })
                .on(FaultOp::Write, 2, FaultAction::Interrupt),
        );
        let stats = f
            .write_vectored_all_at(&[b"hello", b" ", b"world"], 0)
            .unwrap();
        assert_eq!(contents(&f), b"hello world");
        assert_eq!(stats.syscalls, 4);
        assert_eq!(g.count(FaultOp::Write), 5);
    }

    #[cfg(feature = "fault-injection")]
    #[test]
    fn torn_write_keeps_a_prefix_and_fails() {
        use crate::fault::{FaultAction, FaultPlan, install};
        let dir = tempfile::tempdir().unwrap();
        let f = SiloFile::create_new(&dir.path().join("f")).unwrap();
        let _g = install(
            dir.path(),
            FaultPlan::new().on(FaultOp::Write, 1, FaultAction::Torn { keep: 4 }),
        );
        let e = f.write_vectored_all_at(&[b"ab", b"cdef"], 0).unwrap_err();
        assert!(e.is_injected());
        assert_eq!(contents(&f), b"abcd");
    }

    #[cfg(feature = "fault-injection")]
    #[test]
    fn set_len_and_allocate_failures_surface() {
        use crate::fault::{FaultAction, FaultPlan, install};
        let dir = tempfile::tempdir().unwrap();
        let f = SiloFile::create_new(&dir.path().join("f")).unwrap();
        let _g = install(
            dir.path(),
            FaultPlan::new()
                .on(FaultOp::SetLen, 1, FaultAction::Fail)
                .on(FaultOp::Allocate, 1, FaultAction::Fail),
        );
        assert!(f.set_len(10).unwrap_err().is_injected());
        assert!(f.allocate(0, 10).unwrap_err().is_injected());
        assert_eq!(f.len().unwrap(), 0);
    }
}
