//! [`DirLock`]: at most one writer per directory and any number of
//! readers beside it, across processes.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::IoError;
use crate::sys::{self, RangeLock};

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

/// The writer's byte of `LOCK`: held exclusively for the writer's lifetime.
const WRITER_BYTE: u64 = 0;
/// The readers' byte: held shared by every read-only open for its
/// lifetime. The writer takes it exclusively, without waiting, for work
/// that rewrites bytes a reader may have mapped (records and index slots in
/// place, a log slot emptied in place); a reader waits for that to end.
const READERS_BYTE: u64 = 1;
/// The opening readers' byte: held shared while a read-only open reads the
/// store's files, log slots to their end included. The writer takes it
/// exclusively, waiting, to cut a file short (a reader reading past the new
/// end of a mapped file would fault).
const OPENING_BYTE: u64 = 2;

/// How long a reader waits for a writer's in-place work to end, and a
/// writer for readers' opens to end, before giving up with
/// [`IoError::LockWait`].
pub const LOCK_WAIT: Duration = Duration::from_secs(60);

/// How `<dir>/LOCK` is held; see [`DirLock`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Writer,
    Reader,
    WriterExcluded,
}

/// A lock on `<dir>/LOCK`, held until dropped: at most one writer per
/// directory, any number of readers beside it, across processes.
///
/// The lock is a set of POSIX record locks (`fcntl(F_SETLK)`) on single
/// bytes of the file (documented in `docs/FORMAT.md`):
///
/// - byte 0, the writer's: [`DirLock::acquire`] holds it exclusively, so a
///   second writer gets [`IoError::Locked`];
/// - byte 1, the readers': [`DirLock::acquire_shared`] holds it shared for a
///   reader's lifetime; the writer asks for it exclusively before it
///   rewrites anything in place ([`DirLock::try_rewrite_in_place`]), and
///   when readers hold it, does that work another way (new files, published
///   by atomic replace, which leave readers' maps of the old ones intact);
/// - byte 2, the opening readers': held shared while a reader reads the
///   store's files from the start; the writer holds it exclusively while it
///   cuts a file short ([`DirLock::exclude_opening_readers`]).
///
/// [`DirLock::acquire_without_writer`] holds byte 0 shared: for tools that
/// read every file raw and need no writer at all.
///
/// Within the process, a registry of locked directories refuses a second
/// lock of any kind. The locks belong to the process, not to a descriptor: a
/// child started by `fork`/`exec` (a `std::process::Command`) never holds
/// them, even in the moment before its program starts, so a store closed
/// while another thread spawns a process can be reopened at once. (An
/// `flock` would live on in the child's copy of the descriptor for that
/// moment.)
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
    mode: Mode,
}

/// A byte of `LOCK` this process holds exclusively until the guard drops;
/// see [`DirLock::try_rewrite_in_place`] and
/// [`DirLock::exclude_opening_readers`].
#[derive(Debug)]
#[must_use = "the byte is released when the guard drops"]
pub struct LockGuard<'a> {
    lock: &'a DirLock,
    byte: u64,
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        // Releasing a lock this process holds cannot fail for any reason
        // but a closed descriptor, which the borrow of `lock` rules out.
        let _ = self.lock.set(self.byte, RangeLock::Unlock);
    }
}

impl DirLock {
    /// The lock file's name inside the directory.
    pub const FILE_NAME: &'static str = "LOCK";

    /// Creates or opens `<dir>/LOCK` and takes the writer's byte without
    /// waiting; [`IoError::Locked`] if another writer holds it (in this
    /// process or another), or a tool holds it through
    /// [`DirLock::acquire_without_writer`]. Readers do not stop a writer.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let lock = silo_io::DirLock::acquire(dir.path())?;
    /// assert!(lock.path().ends_with("LOCK"));
    /// # Ok::<(), silo_io::IoError>(())
    /// ```
    pub fn acquire(dir: &Path) -> Result<DirLock, IoError> {
        let lock = DirLock::open(dir, Mode::Writer)?;
        lock.try_set(WRITER_BYTE, RangeLock::Exclusive)?;
        Ok(lock)
    }

    /// Opens `<dir>/LOCK`, which must exist, as a reader: any number of
    /// processes may read beside one writer. Waits (up to [`LOCK_WAIT`])
    /// while a writer rewrites bytes in place, then holds the readers' byte
    /// for its lifetime and the opening readers' byte until
    /// [`DirLock::opened`]. [`IoError::Locked`] if this process holds the
    /// directory in any mode; a read-only open changes nothing, not even
    /// the lock file.
    ///
    /// ```
    /// use silo_io::{DirLock, IoError};
    /// let dir = tempfile::tempdir().unwrap();
    /// drop(DirLock::acquire(dir.path())?); // creates LOCK
    /// let shared = DirLock::acquire_shared(dir.path())?;
    /// shared.opened()?;
    /// assert!(matches!(DirLock::acquire_shared(dir.path()), Err(IoError::Locked { .. })));
    /// drop(shared);
    /// # Ok::<(), silo_io::IoError>(())
    /// ```
    pub fn acquire_shared(dir: &Path) -> Result<DirLock, IoError> {
        DirLock::acquire_shared_within(dir, LOCK_WAIT)
    }

    /// [`DirLock::acquire_shared`], waiting at most `wait`.
    fn acquire_shared_within(dir: &Path, wait: Duration) -> Result<DirLock, IoError> {
        let lock = DirLock::open(dir, Mode::Reader)?;
        lock.wait_set(
            READERS_BYTE,
            RangeLock::Shared,
            "a writer's in-place rewrite",
            wait,
        )?;
        lock.wait_set(
            OPENING_BYTE,
            RangeLock::Shared,
            "a writer cutting a file short",
            wait,
        )?;
        Ok(lock)
    }

    /// Opens `<dir>/LOCK`, which must exist, and holds the writer's byte
    /// shared, without waiting: [`IoError::Locked`] while a writer has the
    /// directory open. For tools that read every file raw (salvage) and
    /// must not see one change; readers may come and go beside them.
    ///
    /// ```
    /// use silo_io::{DirLock, IoError};
    /// let dir = tempfile::tempdir().unwrap();
    /// drop(DirLock::acquire(dir.path())?); // creates LOCK
    /// let tool = DirLock::acquire_without_writer(dir.path())?;
    /// drop(tool);
    /// # Ok::<(), silo_io::IoError>(())
    /// ```
    pub fn acquire_without_writer(dir: &Path) -> Result<DirLock, IoError> {
        let lock = DirLock::open(dir, Mode::WriterExcluded)?;
        lock.try_set(WRITER_BYTE, RangeLock::Shared)?;
        Ok(lock)
    }

    /// A reader's open has read what it needed from the start of the
    /// store's files: the writer may cut files short again. Nothing for
    /// other modes.
    pub fn opened(&self) -> Result<(), IoError> {
        if self.mode == Mode::Reader {
            self.set(OPENING_BYTE, RangeLock::Unlock)
                .map_err(|e| IoError::io("unlock", &self.path, e))?;
        }
        Ok(())
    }

    /// For the writer, before it rewrites bytes a reader may have mapped:
    /// the readers' byte, exclusively, if no reader holds it (no read-only
    /// open of the directory exists in any process, and none starts until
    /// the guard drops); `None` if readers are there, and the work must
    /// leave every byte they can see as it is. Always `None` for a reader.
    pub fn try_rewrite_in_place(&self) -> Result<Option<LockGuard<'_>>, IoError> {
        if self.assumes_readers() {
            return Ok(None);
        }
        match self.set(READERS_BYTE, RangeLock::Exclusive) {
            Ok(()) => Ok(Some(LockGuard {
                lock: self,
                byte: READERS_BYTE,
            })),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(IoError::io("lock", &self.path, e)),
        }
    }

    /// For the writer: whether a read-only open of the directory exists in
    /// another process (it holds the readers' byte for its life). A query
    /// only: it takes and releases nothing, so it never disturbs a
    /// [`DirLock::try_rewrite_in_place`] guard this process holds. Once a
    /// file has been unlinked, `false` here means no other process has it
    /// open: none held it before (each read-only open takes the byte before
    /// it opens a file, and keeps it while it has one), and none can open
    /// it by name since. Always `true` for a reader.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let lock = silo_io::DirLock::acquire(dir.path())?;
    /// assert!(!lock.readers_present()?);
    /// # Ok::<(), silo_io::IoError>(())
    /// ```
    pub fn readers_present(&self) -> Result<bool, IoError> {
        if self.assumes_readers() {
            return Ok(true);
        }
        match &self.file {
            Some(file) => sys::range_locked_elsewhere(file, READERS_BYTE, 1)
                .map_err(|e| IoError::io("query lock", &self.path, e)),
            None => Ok(true),
        }
    }

    /// Whether readers must be assumed without asking: a reader cannot
    /// tell, and the fault seam may pretend they are there.
    fn assumes_readers(&self) -> bool {
        self.mode != Mode::Writer
            || self
                .path
                .parent()
                .is_some_and(crate::fault::readers_pretended)
    }

    /// For the writer, before it cuts a file short: waits (up to
    /// [`LOCK_WAIT`]) for read-only opens that are reading files from the
    /// start to finish, and keeps new ones from starting until the guard
    /// drops. Open readers have read what they need by then and never read
    /// past it.
    pub fn exclude_opening_readers(&self) -> Result<LockGuard<'_>, IoError> {
        self.wait_set(
            OPENING_BYTE,
            RangeLock::Exclusive,
            "read-only opens of the store",
            LOCK_WAIT,
        )?;
        Ok(LockGuard {
            lock: self,
            byte: OPENING_BYTE,
        })
    }

    /// Opens the lock file for `mode`, after the in-process registry check.
    fn open(dir: &Path, mode: Mode) -> Result<DirLock, IoError> {
        let path = dir.join(DirLock::FILE_NAME);
        let meta =
            std::fs::metadata(dir).map_err(|e| IoError::io("stat store directory", dir, e))?;
        let key = (meta.dev(), meta.ino());
        let mut held = held();
        if held.contains(&key) {
            return Err(IoError::Locked { path });
        }
        let writer = mode == Mode::Writer;
        let file = OpenOptions::new()
            .read(true)
            .write(writer)
            .create(writer)
            .truncate(false)
            .open(&path)
            .map_err(|e| IoError::io("open lock file", &path, e))?;
        held.insert(key);
        Ok(DirLock {
            file: Some(file),
            key,
            path,
            mode,
        })
    }

    fn set(&self, byte: u64, how: RangeLock) -> io::Result<()> {
        match &self.file {
            Some(file) => sys::lock_range(file, byte, 1, how),
            None => Err(io::Error::from_raw_os_error(libc::EBADF)),
        }
    }

    /// Sets a lock without waiting: [`IoError::Locked`] on a conflict.
    fn try_set(&self, byte: u64, how: RangeLock) -> Result<(), IoError> {
        self.set(byte, how).map_err(|e| {
            if e.kind() == io::ErrorKind::WouldBlock {
                IoError::Locked {
                    path: self.path.clone(),
                }
            } else {
                IoError::io("lock", &self.path, e)
            }
        })
    }

    /// Sets a lock, retrying a conflict for up to `wait` (the holders keep
    /// it for one piece of work: a compaction's in-place phase, a file cut,
    /// a read-only open).
    fn wait_set(
        &self,
        byte: u64,
        how: RangeLock,
        holder: &'static str,
        wait: Duration,
    ) -> Result<(), IoError> {
        let start = Instant::now();
        let mut pause = Duration::from_micros(200);
        loop {
            match self.set(byte, how) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let waited = start.elapsed();
                    if waited >= wait {
                        return Err(IoError::LockWait {
                            path: self.path.clone(),
                            holder,
                            waited,
                        });
                    }
                    // A conflicting lock of another process: there is no
                    // way to be woken when it goes but `F_SETLKW`, which
                    // cannot time out. Back off up to 20 ms.
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(20));
                }
                Err(e) => return Err(IoError::io("lock", &self.path, e)),
            }
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

    /// Whether this is a reader's lock ([`DirLock::acquire_shared`]).
    pub fn is_reader(&self) -> bool {
        self.mode == Mode::Reader
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
        assert!(!a.is_reader());
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
        assert!(shared.is_reader());
        // A reader never rewrites anything.
        assert!(shared.try_rewrite_in_place().unwrap().is_none());
        shared.opened().unwrap();
        for other in [
            DirLock::acquire(dir.path()),
            DirLock::acquire_shared(dir.path()),
            DirLock::acquire_without_writer(dir.path()),
        ] {
            assert!(matches!(other, Err(IoError::Locked { .. })), "{other:?}");
        }
        drop(shared);
        let writer = DirLock::acquire(dir.path()).unwrap();
        assert!(!writer.is_reader());
        // No reader anywhere: the writer may rewrite in place, and cut.
        let in_place = writer.try_rewrite_in_place().unwrap();
        assert!(in_place.is_some());
        drop(in_place);
        drop(writer.exclude_opening_readers().unwrap());
    }

    const CHILD: &str = "SILO_LOCK_TEST_CHILD";

    /// Not a test by itself: the body of the child process the tests below
    /// start (it does nothing unless they set its environment). It takes
    /// the lock its environment names, says `HELD` (or the error), then
    /// obeys lines on stdin until it closes.
    #[test]
    fn lock_child_process() {
        use std::io::BufRead as _;
        let Ok(spec) = std::env::var(CHILD) else {
            return;
        };
        let (mode, dir) = spec.split_once(':').unwrap();
        let dir = Path::new(dir);
        let lock = match mode {
            "reader" => DirLock::acquire_shared(dir),
            "reader-now" => DirLock::acquire_shared_within(dir, Duration::ZERO),
            "writer" => DirLock::acquire(dir),
            "tool" => DirLock::acquire_without_writer(dir),
            _ => panic!("unknown mode {mode}"),
        };
        let lock = match lock {
            Ok(lock) => lock,
            Err(e) => {
                println!("ERROR {e}");
                return;
            }
        };
        let mut in_place = None;
        println!("HELD");
        for line in io::stdin().lock().lines() {
            match line.unwrap().as_str() {
                "opened" => lock.opened().unwrap(),
                "in-place" => in_place = lock.try_rewrite_in_place().unwrap(),
                "release" => in_place = None,
                other => panic!("unknown command {other}"),
            }
            println!("OK {}", in_place.is_some());
        }
    }

    /// A child process holding `mode` on `dir`, talked to over its stdio.
    struct Child {
        process: std::process::Child,
        lines: io::Lines<io::BufReader<std::process::ChildStdout>>,
    }

    impl Child {
        fn start(mode: &str, dir: &Path) -> (Child, String) {
            let mut process = std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "lock::tests::lock_child_process",
                    "--nocapture",
                    "--test-threads=1",
                    "-q",
                ])
                .env(CHILD, format!("{mode}:{}", dir.display()))
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            let stdout = process.stdout.take().unwrap();
            let mut child = Child {
                process,
                lines: io::BufRead::lines(io::BufReader::new(stdout)),
            };
            let first = child.next_line();
            (child, first)
        }

        /// The child's next line of its own (the harness's lines skipped).
        fn next_line(&mut self) -> String {
            loop {
                let line = self.lines.next().expect("child output").unwrap();
                if line.starts_with("HELD") || line.starts_with("OK") || line.starts_with("ERROR") {
                    return line;
                }
            }
        }

        fn tell(&mut self, command: &str) -> String {
            use std::io::Write as _;
            let stdin = self.process.stdin.as_mut().unwrap();
            writeln!(stdin, "{command}").unwrap();
            stdin.flush().unwrap();
            self.next_line()
        }

        fn stop(mut self) {
            drop(self.process.stdin.take());
            assert!(self.process.wait().unwrap().success());
        }
    }

    #[test]
    fn readers_in_other_processes_open_beside_the_writer_and_keep_it_from_rewriting_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let writer = DirLock::acquire(dir.path()).unwrap();
        assert!(!writer.readers_present().unwrap());
        let (mut reader, said) = Child::start("reader", dir.path());
        assert_eq!(said, "HELD");
        // A reader is there: nothing is rewritten in place.
        assert!(writer.readers_present().unwrap());
        assert!(writer.try_rewrite_in_place().unwrap().is_none());
        // Its open is over: files may be cut again.
        assert_eq!(reader.tell("opened"), "OK false");
        drop(writer.exclude_opening_readers().unwrap());
        // A second writer and a raw-reading tool are refused.
        let (second, said) = Child::start("writer", dir.path());
        assert!(
            said.starts_with("ERROR") && said.contains("held by another"),
            "{said}"
        );
        second.stop();
        let (tool, said) = Child::start("tool", dir.path());
        assert!(said.starts_with("ERROR"), "{said}");
        tool.stop();
        reader.stop();
        // The reader is gone.
        assert!(!writer.readers_present().unwrap());
        let in_place = writer.try_rewrite_in_place().unwrap();
        assert!(in_place.is_some());
        // The query leaves this process's guard as it was: a reader in
        // another process still cannot open.
        assert!(!writer.readers_present().unwrap());
        let (reader, said) = Child::start("reader-now", dir.path());
        assert!(said.starts_with("ERROR"), "{said}");
        reader.stop();
        drop(in_place);
        // A reader never knows who else reads: always "present".
        drop(writer);
        let reader = DirLock::acquire_shared(dir.path()).unwrap();
        assert!(reader.readers_present().unwrap());
    }

    #[test]
    fn a_reader_waits_for_a_writers_in_place_rewrite_to_end() {
        let dir = tempfile::tempdir().unwrap();
        let (mut writer, said) = Child::start("writer", dir.path());
        assert_eq!(said, "HELD");
        assert_eq!(writer.tell("in-place"), "OK true");
        match DirLock::acquire_shared_within(dir.path(), Duration::ZERO) {
            Err(IoError::LockWait { holder, .. }) => assert!(holder.contains("in-place")),
            other => panic!("expected LockWait, got {other:?}"),
        }
        assert_eq!(writer.tell("release"), "OK false");
        let reader = DirLock::acquire_shared_within(dir.path(), Duration::ZERO).unwrap();
        // And the writer cannot rewrite in place while it reads.
        assert_eq!(writer.tell("in-place"), "OK false");
        drop(reader);
        assert_eq!(writer.tell("in-place"), "OK true");
        writer.stop();
        // With the writer gone, a tool may take the directory.
        drop(DirLock::acquire_without_writer(dir.path()).unwrap());
    }

    /// A lock call that fails for another reason than a conflict (here a
    /// descriptor open only for reading, which cannot take a write lock:
    /// `EBADF`) is that error, never "readers are there" nor a wait.
    #[test]
    fn a_failed_lock_call_is_an_error_not_a_conflict() {
        let dir = tempfile::tempdir().unwrap();
        drop(DirLock::acquire(dir.path()).unwrap());
        let path = dir.path().join(DirLock::FILE_NAME);
        let lock = DirLock {
            file: Some(File::open(&path).unwrap()),
            // Registered in no registry: its drop removes nothing held.
            key: (u64::MAX, u64::MAX),
            path,
            mode: Mode::Writer,
        };
        let e = lock.try_rewrite_in_place().unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EBADF), "{e}");
        let e = lock
            .wait_set(
                OPENING_BYTE,
                RangeLock::Exclusive,
                "test",
                Duration::from_secs(5),
            )
            .unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EBADF), "{e}");
    }

    #[test]
    fn missing_directory_is_an_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let e = DirLock::acquire(&dir.path().join("nope")).unwrap_err();
        assert_eq!(e.io_kind(), Some(io::ErrorKind::NotFound));
    }
}
