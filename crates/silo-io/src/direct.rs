//! Long sequential writes that bypass the page cache (`O_DIRECT`).
//!
//! A buffered write copies every byte into the page cache, allocating and
//! zeroing each page first; on this project's machine that caps a buffered
//! write + `fdatasync` near 370 MB/s, while the same bytes written with
//! `O_DIRECT` reach 1.4 GB/s. A compaction that writes a whole new file
//! front to back (the cold rewrite) writes it through a [`DirectWriter`].
//!
//! `O_DIRECT` wants the buffer address, the file offset and the length
//! aligned to the device's logical block; [`DIRECT_ALIGN`] (4 KiB) covers
//! every common device. The writer's buffer is an anonymous map (page
//! aligned), its writes start at a 4 KiB boundary (the bytes already in
//! the file before the first one are read back and written again), and the
//! last write is padded with zeros to a whole block. File systems that
//! refuse `O_DIRECT` (tmpfs) get `None` from [`DirectWriter::open`]: the
//! caller writes through the page cache instead.
//!
//! Nothing here syncs: the caller `fdatasync`s the file as after any
//! write (the extents `O_DIRECT` filled need it to be durable). Writes go
//! through [`SiloFile::write_all_at`], so the fault seam sees them.
//!
//! A finished writer's buffers are kept for the next one (at most
//! [`KEPT_BUFFERS`], a process's): each new buffer's pages were faulted
//! in and zeroed one by one, 16 MiB for a compaction's two 8 MiB buffers,
//! which on this project's machine took as long as writing them out.
//! Nothing relies on a buffer's old bytes: every push zeroes its place
//! before it is filled, and the last block's padding is zeroed.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::mpsc::{Receiver, SyncSender, channel, sync_channel};
use std::thread::JoinHandle;

use crate::buffer::ZeroedBuffer;

use crate::error::IoError;
use crate::file::{SiloFile, WriteStats};

/// The alignment of a direct write's buffer, offset and length.
pub const DIRECT_ALIGN: usize = 4096;

/// How many finished writers' buffers a process keeps (two writers' two).
pub const KEPT_BUFFERS: usize = 4;

/// Finished writers' buffers, for the next writers.
static KEPT: Mutex<Vec<ZeroedBuffer>> = Mutex::new(Vec::new());

/// A buffer of `len` bytes: a kept one of that length if there is one
/// (its bytes are a finished writer's), else a new, zeroed one.
fn buffer_of(len: usize) -> Result<ZeroedBuffer, IoError> {
    let mut kept = KEPT.lock().unwrap_or_else(|p| p.into_inner());
    match kept.iter().position(|b| b.len() == len) {
        Some(i) => Ok(kept.swap_remove(i)),
        None => {
            drop(kept);
            ZeroedBuffer::new(len)
        }
    }
}

/// Keeps `buffer` for a later [`buffer_of`]; past [`KEPT_BUFFERS`] the
/// one kept longest is let go (writers of another buffer size, a cold
/// rewrite's 4 MiB after a hot fold's 8 MiB, must not find the pool full of
/// buffers they never take).
fn keep(buffer: ZeroedBuffer) {
    let oldest = {
        let mut kept = KEPT.lock().unwrap_or_else(|p| p.into_inner());
        kept.push(buffer);
        (kept.len() > KEPT_BUFFERS).then(|| kept.remove(0))
    };
    drop(oldest);
}

/// Writes bytes to a file in order, from a given offset on, bypassing the
/// page cache.
///
/// It has two buffers: while a thread of its own writes one, the caller
/// fills the other, so encoding and the device's transfer overlap. (Where
/// no thread can be started, it writes on the caller's thread.) An error
/// of the writing thread is returned by the next push that needs a buffer,
/// or by [`DirectWriter::finish`]. Dropping the writer waits for the
/// writes already handed over, so no write lands after it is gone.
pub struct DirectWriter {
    path: PathBuf,
    out: Output,
    buf: ZeroedBuffer,
    /// Bytes of `buf` in use.
    filled: usize,
    /// File offset of `buf[0]` (a multiple of [`DIRECT_ALIGN`]).
    at: u64,
    /// Pushes, write calls, and bytes pushed (padding and read-back bytes
    /// excluded).
    stats: WriteStats,
    /// Read-back bytes at the front of the first write.
    head: usize,
}

/// Where full buffers go.
enum Output {
    /// Written on the caller's thread.
    Inline(SiloFile),
    /// Written by a thread of its own, one buffer at a time, in order.
    Behind(Behind),
}

/// The writing thread and its two channels.
struct Behind {
    /// Buffers to write; closed (`None`) to stop the thread.
    jobs: Option<SyncSender<Job>>,
    /// Buffers written (free to fill again), or the write's error.
    done: Receiver<Result<ZeroedBuffer, IoError>>,
    thread: Option<JoinHandle<()>>,
}

/// `buf[..len]` to be written at file offset `at`.
struct Job {
    buf: ZeroedBuffer,
    len: usize,
    at: u64,
}

impl Behind {
    /// Starts the thread that writes to `file`, with `spare` as the first
    /// free buffer. `None` if no thread can be started.
    fn start(file: SiloFile, spare: ZeroedBuffer) -> Option<Behind> {
        let (jobs, todo) = sync_channel::<Job>(1);
        let (done_tx, done) = channel();
        done_tx.send(Ok(spare)).ok()?;
        let thread = std::thread::Builder::new()
            .name("silo-direct".to_owned())
            .spawn(move || {
                for job in todo {
                    let result = file
                        .write_all_at(&job.buf[..job.len], job.at)
                        .map(|()| job.buf);
                    let failed = result.is_err();
                    // The writer may be gone (dropped after an error of its
                    // own); nothing is left to report to.
                    if done_tx.send(result).is_err() || failed {
                        break;
                    }
                }
            })
            .ok()?;
        Some(Behind {
            jobs: Some(jobs),
            done,
            thread: Some(thread),
        })
    }

    /// A written buffer to fill again, or the error of an earlier write.
    fn free_buffer(&self, path: &Path) -> Result<ZeroedBuffer, IoError> {
        self.done.recv().unwrap_or_else(|_| Err(stopped(path)))
    }

    /// Hands `job` to the thread. If the thread has stopped, the reason is
    /// waiting in `done`.
    fn send(&self, job: Job, path: &Path) -> Result<(), IoError> {
        match &self.jobs {
            Some(jobs) if jobs.send(job).is_ok() => Ok(()),
            _ => Err(self.stop_error(path)),
        }
    }

    /// Stops the thread once it has written every buffer handed over, and
    /// waits for it: the first error any of those writes met, if any.
    fn stop(&mut self, path: &Path) -> Result<(), IoError> {
        drop(self.jobs.take());
        let panicked = self.thread.take().is_some_and(|t| t.join().is_err());
        for result in self.done.try_iter() {
            keep(result?);
        }
        if panicked {
            return Err(stopped(path));
        }
        Ok(())
    }

    /// Why the thread stopped taking buffers.
    fn stop_error(&self, path: &Path) -> IoError {
        self.done
            .try_iter()
            .find_map(Result::err)
            .unwrap_or_else(|| stopped(path))
    }
}

impl Drop for Behind {
    fn drop(&mut self) {
        // Errors here belong to a writer that was never finished: its
        // caller is already handling a failure of its own.
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The error for a writing thread that ended without saying why.
fn stopped(path: &Path) -> IoError {
    IoError::io(
        "write (direct)",
        path,
        std::io::Error::other("the writing thread stopped"),
    )
}

impl std::fmt::Debug for DirectWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectWriter")
            .field("path", &self.path)
            .field("at", &self.at)
            .field("filled", &self.filled)
            .field("behind", &matches!(self.out, Output::Behind(_)))
            .finish_non_exhaustive()
    }
}

impl DirectWriter {
    /// Opens `path` (which exists) to write from offset `start` on, with
    /// two buffers of about `buffer` bytes each (rounded up to whole
    /// blocks, at least two). `Ok(None)`: the file system does not do
    /// `O_DIRECT`.
    ///
    /// ```
    /// use silo_io::SiloFile;
    /// use silo_io::direct::DirectWriter;
    /// let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("f");
    /// SiloFile::create_new(&path)?.write_all_at(b"head", 0)?;
    /// if let Some(mut w) = DirectWriter::open(&path, 4, 1 << 16)? {
    ///     w.push_with(5, |buf| buf.copy_from_slice(b"-body"))?;
    ///     assert_eq!(w.finish()?.bytes, 5);
    ///     let mut back = [0u8; 9];
    ///     SiloFile::open(&path)?.read_exact_at(&mut back, 0)?;
    ///     assert_eq!(&back, b"head-body");
    /// }
    /// # Ok::<(), silo_io::IoError>(())
    /// ```
    pub fn open(path: &Path, start: u64, buffer: usize) -> Result<Option<DirectWriter>, IoError> {
        DirectWriter::open_with(path, start, buffer, true)
    }

    /// [`DirectWriter::open`], with the writing thread (`behind`) or without.
    fn open_with(
        path: &Path,
        start: u64,
        buffer: usize,
        behind: bool,
    ) -> Result<Option<DirectWriter>, IoError> {
        let direct = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(path);
        let file = match direct {
            Ok(file) => SiloFile::from_std(file, path),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return Ok(None),
            Err(e) => return Err(IoError::io("open for direct writes", path, e)),
        };
        let len = buffer.max(2 * DIRECT_ALIGN).next_multiple_of(DIRECT_ALIGN);
        let map = || buffer_of(len);
        let mut buf = map()?;
        let align = DIRECT_ALIGN as u64;
        let at = start - start % align;
        let head = usize::try_from(start - at).unwrap_or(0);
        if head > 0 {
            // Read through the page cache (a buffered descriptor): the
            // bytes may have just been written that way.
            SiloFile::open_read(path)?.read_exact_at(&mut buf[..head], at)?;
        }
        let out = match (behind, behind.then(map)) {
            (true, Some(Ok(spare))) => match Behind::start(file, spare) {
                Some(b) => Output::Behind(b),
                // No thread to be had (the file went with the attempt):
                // the caller's thread writes.
                None => return DirectWriter::open_with(path, start, buffer, false),
            },
            // No second buffer: the caller's thread writes.
            _ => Output::Inline(file),
        };
        Ok(Some(DirectWriter {
            path: path.to_path_buf(),
            out,
            buf,
            filled: head,
            at,
            stats: WriteStats::default(),
            head,
        }))
    }

    /// Appends `len` bytes that `fill` writes into place (it gets a zeroed
    /// slice of exactly `len`); returns what `fill` returns. `len` may
    /// exceed the buffer.
    pub fn push_with<R>(
        &mut self,
        len: usize,
        fill: impl FnOnce(&mut [u8]) -> R,
    ) -> Result<R, IoError> {
        if self.filled + len > self.buf.len() {
            self.write_full_blocks()?;
        }
        if self.filled + len > self.buf.len() {
            // Longer than the buffer: filled into a scratch copy.
            let mut scratch = vec![0u8; len];
            let r = fill(&mut scratch);
            self.copy_in(&scratch)?;
            self.stats.requested += 1;
            return Ok(r);
        }
        let slot = &mut self.buf[self.filled..self.filled + len];
        slot.fill(0);
        let r = fill(slot);
        self.filled += len;
        self.stats.requested += 1;
        self.stats.bytes += len as u64;
        Ok(r)
    }

    /// Appends `bytes`.
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), IoError> {
        self.push_with(bytes.len(), |buf| buf.copy_from_slice(bytes))
    }

    fn copy_in(&mut self, mut bytes: &[u8]) -> Result<(), IoError> {
        while !bytes.is_empty() {
            if self.filled == self.buf.len() {
                self.write_full_blocks()?;
            }
            let n = bytes.len().min(self.buf.len() - self.filled);
            self.buf[self.filled..self.filled + n].copy_from_slice(&bytes[..n]);
            self.filled += n;
            self.stats.bytes += n as u64;
            bytes = &bytes[n..];
        }
        Ok(())
    }

    /// Writes the whole blocks buffered and keeps the partial last one.
    fn write_full_blocks(&mut self) -> Result<(), IoError> {
        let whole = self.filled - self.filled % DIRECT_ALIGN;
        if whole == 0 {
            return Ok(());
        }
        self.emit(whole)?;
        self.filled -= whole;
        self.at += whole as u64;
        self.head = 0;
        Ok(())
    }

    /// Writes `buf[..len]` at `at` (`len` whole blocks) and leaves
    /// `buf[len..filled]` at the front of the buffer to fill next: on this
    /// thread, or by handing the buffer to the writing thread and taking
    /// the other one once it is written.
    fn emit(&mut self, len: usize) -> Result<(), IoError> {
        match &self.out {
            Output::Inline(file) => {
                file.write_all_at(&self.buf[..len], self.at)?;
                self.buf.copy_within(len..self.filled, 0);
            }
            Output::Behind(behind) => {
                let mut next = behind.free_buffer(&self.path)?;
                let rest = self.filled - len;
                next[..rest].copy_from_slice(&self.buf[len..self.filled]);
                let full = std::mem::replace(&mut self.buf, next);
                let job = Job {
                    buf: full,
                    len,
                    at: self.at,
                };
                behind.send(job, &self.path)?;
            }
        }
        self.stats.syscalls += 1;
        Ok(())
    }

    /// Writes what is buffered, the last block padded with zeros, and
    /// waits for every write to be made. The zeros land past the pushed
    /// bytes: the file may grow by up to a block less one byte. Returns the
    /// pushes, the write calls (one per full buffer and the last) and the
    /// bytes pushed.
    pub fn finish(mut self) -> Result<WriteStats, IoError> {
        // Only read-back bytes left (or nothing): they are in the file.
        let last = if self.filled > self.head {
            let end = self.filled.next_multiple_of(DIRECT_ALIGN);
            self.buf[self.filled..end].fill(0);
            self.filled = end;
            self.emit(end).map(drop)
        } else {
            Ok(())
        };
        // Every buffer handed over is written (or failed) before this
        // returns; the first error of any write is the answer.
        let behind = match &mut self.out {
            Output::Behind(behind) => behind.stop(&self.path),
            Output::Inline(_) => Ok(()),
        };
        last.and(behind)?;
        keep(std::mem::replace(&mut self.buf, ZeroedBuffer::new(0)?));
        Ok(self.stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pushes of every size around the block and buffer sizes, from starts
    /// on and off a block boundary, read back through the page cache.
    /// Both ways of writing: on a thread of its own and on the caller's.
    #[test]
    fn bytes_land_where_a_buffered_write_would_put_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (start, behind) in [0u64, 1, 64, 4095, 4096, 10_000]
            .into_iter()
            .flat_map(|s| [(s, true), (s, false)])
        {
            let path = dir.path().join(format!("f{start}-{behind}"));
            let front: Vec<u8> = (0..start).map(|i| (i % 251).to_le_bytes()[0] + 1).collect();
            let file = SiloFile::create_new(&path).expect("create");
            file.write_all_at(&front, 0).expect("front");
            let Some(mut w) =
                DirectWriter::open_with(&path, start, 3 * DIRECT_ALIGN, behind).expect("open")
            else {
                return; // a file system without O_DIRECT: nothing to test
            };
            assert_eq!(matches!(w.out, Output::Behind(_)), behind);
            let mut want = front.clone();
            let mut n = 0u64;
            for len in [1usize, 7, 4095, 4096, 4097, 12_288, 20_000, 3, 0, 9000] {
                let bytes: Vec<u8> = (0..len).map(|i| (i * 7 + len).to_le_bytes()[0]).collect();
                if len % 2 == 0 {
                    w.push(&bytes).expect("push");
                } else {
                    let got = w
                        .push_with(len, |buf| {
                            assert!(buf.iter().all(|b| *b == 0));
                            buf.copy_from_slice(&bytes);
                            len
                        })
                        .expect("push_with");
                    assert_eq!(got, len);
                }
                want.extend_from_slice(&bytes);
                n += len as u64;
            }
            let stats = w.finish().expect("finish");
            assert_eq!((stats.bytes, stats.requested), (n, 10));
            let len = file.len().expect("len");
            assert_eq!(
                len,
                (want.len() as u64).next_multiple_of(DIRECT_ALIGN as u64)
            );
            let mut back = vec![0u8; usize::try_from(len).expect("fits")];
            file.read_exact_at(&mut back, 0).expect("read");
            assert_eq!(
                &back[..want.len()],
                &want[..],
                "start {start}, behind {behind}"
            );
            assert!(back[want.len()..].iter().all(|b| *b == 0));
        }
    }

    /// Whether `dir`'s file system takes `O_DIRECT` (asked without the
    /// writer, so a writer that wrongly said no is caught).
    fn takes_direct(dir: &Path) -> bool {
        let path = dir.join("probe");
        std::fs::write(&path, b"").expect("probe");
        let ok = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(&path)
            .is_ok();
        std::fs::remove_file(&path).expect("remove probe");
        ok
    }

    #[test]
    fn a_file_system_that_takes_o_direct_gets_a_writer_and_tmpfs_gets_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        SiloFile::create_new(&path).expect("create");
        let w = DirectWriter::open(&path, 0, 1).expect("open");
        assert_eq!(w.is_some(), takes_direct(dir.path()));
        if let Some(w) = w {
            assert!(format!("{w:?}").contains("DirectWriter"));
        }
        // tmpfs refuses O_DIRECT with EINVAL: the caller is told to write
        // through the page cache, not failed.
        let shm = Path::new("/dev/shm");
        if shm.is_dir() && !takes_direct(shm) {
            let dir = tempfile::tempdir_in(shm).expect("tempdir in /dev/shm");
            let path = dir.path().join("f");
            SiloFile::create_new(&path).expect("create");
            assert!(DirectWriter::open(&path, 0, 1).expect("open").is_none());
        }
        // A missing file is an error, not "no O_DIRECT".
        assert!(DirectWriter::open(&dir.path().join("missing"), 0, 1).is_err());
    }

    /// A temporary directory whose file system takes `O_DIRECT`, with a new
    /// empty file `f` in it (its path and the file); `None` (nothing to
    /// test) on one that does not.
    fn direct_file() -> Option<(tempfile::TempDir, std::path::PathBuf, SiloFile)> {
        let dir = tempfile::tempdir().expect("tempdir");
        if !takes_direct(dir.path()) {
            return None;
        }
        let path = dir.path().join("f");
        let file = SiloFile::create_new(&path).expect("create");
        Some((dir, path, file))
    }

    /// A writer that takes a finished writer's buffers, full of its bytes,
    /// writes only its own: its pushes and zeros to the end of the last
    /// block, never the old bytes.
    #[test]
    fn kept_buffers_carry_nothing_into_the_next_writer() {
        let Some((_dir, path, _file)) = direct_file() else {
            return;
        };
        let len = 3 * DIRECT_ALIGN;
        for round in 0..3u8 {
            let mut w = DirectWriter::open(&path, 0, len)
                .expect("open")
                .expect("direct");
            // Two buffers' worth of 0xAB, then round-dependent short pushes.
            for _ in 0..(2 * len / 512) {
                w.push(&[0xAB; 512]).expect("push");
            }
            w.finish().expect("finish");
            let mut w = DirectWriter::open(&path, 0, len)
                .expect("open")
                .expect("direct");
            let mine: Vec<u8> = (0..5000u32).map(|i| (i % 200) as u8 + round).collect();
            for chunk in mine.chunks(777) {
                w.push_with(chunk.len(), |buf| {
                    assert!(buf.iter().all(|b| *b == 0), "a push's place is zeroed");
                    buf.copy_from_slice(chunk);
                })
                .expect("push");
            }
            w.finish().expect("finish");
            let mut back = vec![0u8; 2 * DIRECT_ALIGN];
            SiloFile::open(&path)
                .expect("open")
                .read_exact_at(&mut back, 0)
                .expect("read");
            assert_eq!(&back[..mine.len()], &mine[..], "round {round}");
            assert!(
                back[mine.len()..].iter().all(|b| *b == 0),
                "round {round}: the last block is padded with zeros"
            );
        }
    }

    /// The buffer is at least two blocks; whole blocks are written only
    /// when the buffer cannot take the next push, and `finish` writes the
    /// rest in one call (none when nothing was pushed).
    #[test]
    fn writes_are_few_and_whole_blocks() {
        let Some((_dir, path, file)) = direct_file() else {
            return;
        };
        file.write_all_at(&[9u8; 100], 0).expect("head");
        // Nothing pushed: the read-back head is not written again.
        let w = DirectWriter::open(&path, 100, 1)
            .expect("open")
            .expect("direct");
        assert_eq!(w.finish().expect("finish"), WriteStats::default());
        // A buffer of 1 byte asked is two blocks: 8092 one-byte pushes after
        // the 100-byte head fill it without a write; the next push writes
        // both blocks; finish writes the last, partial one.
        let mut w = DirectWriter::open(&path, 100, 1)
            .expect("open")
            .expect("direct");
        for _ in 0..2 * DIRECT_ALIGN - 100 {
            w.push(&[1]).expect("push");
        }
        assert_eq!(w.stats.syscalls, 0);
        w.push(&[2]).expect("push");
        assert_eq!(w.stats.syscalls, 1);
        let stats = w.finish().expect("finish");
        assert_eq!(
            stats,
            WriteStats {
                requested: 2 * DIRECT_ALIGN as u64 - 99,
                syscalls: 2,
                bytes: 2 * DIRECT_ALIGN as u64 - 99,
            }
        );
        let mut back = vec![0u8; 3 * DIRECT_ALIGN];
        SiloFile::open(&path)
            .expect("open")
            .read_exact_at(&mut back, 0)
            .expect("read");
        assert!(back[..100].iter().all(|b| *b == 9));
        assert!(back[100..2 * DIRECT_ALIGN].iter().all(|b| *b == 1));
        assert_eq!(back[2 * DIRECT_ALIGN], 2);
        assert!(back[2 * DIRECT_ALIGN + 1..].iter().all(|b| *b == 0));
    }

    /// A write that fails on the writing thread is returned by a later
    /// push or by `finish`, and no write is attempted after it.
    #[cfg(feature = "fault-injection")]
    #[test]
    fn a_failed_write_behind_is_returned_and_stops_the_writes() {
        use crate::fault::{FaultAction, FaultOp, FaultPlan, install};
        let Some((dir, path, _file)) = direct_file() else {
            return;
        };
        let block = [5u8; DIRECT_ALIGN];
        // Five writes in all: one handed over at each second push from the
        // third, the last at `finish`. A failure is found when its buffer
        // is needed again: the fourth write's and the fifth's by `finish`.
        for failing in 1..=5u64 {
            let guard = install(
                dir.path(),
                FaultPlan::new().on(FaultOp::Write, failing, FaultAction::Fail),
            );
            let mut w = DirectWriter::open(&path, 0, 2 * DIRECT_ALIGN)
                .expect("open")
                .expect("direct");
            assert!(matches!(w.out, Output::Behind(_)));
            // Ten buffers' worth: five writes of two blocks.
            let mut failed = None;
            for i in 0..10 {
                if let Err(e) = w.push(&block) {
                    failed = Some((i, e));
                    break;
                }
            }
            let at_finish = failed.is_none();
            let err = match failed {
                Some((_, e)) => {
                    drop(w);
                    e
                }
                None => w.finish().expect_err("a write failed"),
            };
            assert_eq!(at_finish, failing >= 4, "write {failing}");
            assert!(err.is_injected(), "{err}");
            // The failed write was the last one tried.
            assert_eq!(guard.count(FaultOp::Write), failing);
            drop(guard);
            std::fs::remove_file(&path).expect("remove");
            SiloFile::create_new(&path).expect("create");
        }
    }

    /// A writer dropped without `finish` waits for the writes handed over:
    /// none lands after the drop.
    #[test]
    fn a_dropped_writer_has_made_its_writes() {
        let Some((_dir, path, file)) = direct_file() else {
            return;
        };
        let mut w = DirectWriter::open(&path, 0, 2 * DIRECT_ALIGN)
            .expect("open")
            .expect("direct");
        for _ in 0..5 {
            w.push(&[3u8; DIRECT_ALIGN]).expect("push");
        }
        // Four blocks handed over (two writes), the fifth still buffered.
        drop(w);
        assert_eq!(file.len().expect("len"), 4 * DIRECT_ALIGN as u64);
    }
}
