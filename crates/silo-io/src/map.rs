//! Memory maps: [`ReadMap`] (read-only), [`GrowableMap`] (read-only views of
//! a file that only grows) and [`AtomicMap`] (read-write, only through aligned
//! 8-byte atomics), plus page-size helpers.
//!
//! Invariants the `unsafe` blocks here rely on, which the rest of silo keeps:
//! - a mapped file is never shrunk below a live mapping's length (readers
//!   would fault with `SIGBUS`), so files only grow while mapped;
//! - bytes a reader can see through a [`ReadMap`] are not rewritten while
//!   that view is alive (data files are append-only; in-place rewrites go to
//!   space no reader can reach yet);
//! - bytes mapped by an [`AtomicMap`] are read and written only through its
//!   atomics, never through `pwrite` or another mapping.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use memmap2::{Advice, Mmap, MmapOptions, MmapRaw, UncheckedAdvice};

use crate::advice::MapAdvice;
use crate::error::IoError;
use crate::fault::{self, FaultOp};
use crate::file::SiloFile;
use crate::sys;
use std::path::{Path, PathBuf};

/// The system page size in bytes (`sysconf(_SC_PAGESIZE)`, read once).
///
/// ```
/// assert!(silo_io::page_size().is_power_of_two());
/// ```
pub fn page_size() -> usize {
    sys::page_size()
}

/// Widens `[offset, offset + len)` to whole pages: returns the page-aligned
/// start and the length up to the next page boundary after the end.
///
/// ```
/// let p = silo_io::page_size();
/// assert_eq!(silo_io::page_align(p + 1, 2), (p, p));
/// assert_eq!(silo_io::page_align(p - 1, 2), (0, 2 * p));
/// assert_eq!(silo_io::page_align(0, 0), (0, 0));
/// ```
pub fn page_align(offset: usize, len: usize) -> (usize, usize) {
    let page = page_size();
    let start = offset - offset % page;
    let end = offset.saturating_add(len);
    let end = end
        .checked_next_multiple_of(page)
        .unwrap_or(usize::MAX - (usize::MAX % page));
    (start, end - start)
}

/// The page-aligned part of `[offset, offset + len)` inside a map of
/// `map_len` bytes, or `None` when nothing of it is inside.
fn clip_to_map(map_len: usize, offset: usize, len: usize) -> Option<(usize, usize)> {
    if offset >= map_len || len == 0 {
        return None;
    }
    let (start, aligned) = page_align(offset, len);
    let end = start.saturating_add(aligned).min(map_len);
    Some((start, end - start))
}

/// Checks that `[offset, offset + len)` lies inside a map of `size` bytes.
fn check_range(offset: usize, len: usize, size: usize) -> Result<(), IoError> {
    match offset.checked_add(len) {
        Some(end) if end <= size => Ok(()),
        _ => Err(IoError::OutOfBounds {
            offset: offset as u64,
            len: len as u64,
            size: size as u64,
        }),
    }
}

/// The file length as a `usize` mapping length.
fn map_len(file: &SiloFile) -> Result<usize, IoError> {
    let len = file.len()?;
    usize::try_from(len).map_err(|_| IoError::OutOfBounds {
        offset: 0,
        len,
        size: usize::MAX as u64,
    })
}

/// Largest range one `MADV_WILLNEED` call is given. Linux reads ahead at
/// most the device's read-ahead window per call (8 MiB on the development
/// machine: a single call over 256 MiB prefetched only 8 MiB), so longer
/// ranges are advised chunk by chunk.
const WILL_NEED_CHUNK: usize = 2 << 20;

/// Calls `advise(start, len)` over `[start, start + len)` in page-aligned
/// chunks of at most [`WILL_NEED_CHUNK`] bytes.
fn in_chunks(
    start: usize,
    len: usize,
    mut advise: impl FnMut(usize, usize) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let end = start + len;
    let mut at = start;
    while at < end {
        let n = (end - at).min(WILL_NEED_CHUNK);
        advise(at, n)?;
        at += n;
    }
    Ok(())
}

/// Maps at least this long have their pages dropped a piece at a time
/// before they are unmapped (see [`drop_pages_before_unmap`]).
const GENTLE_UNMAP_FROM: usize = 32 << 20;
/// Bytes of a map whose pages one `MADV_DONTNEED` call drops there.
const UNMAP_PIECE: usize = 8 << 20;

/// Drops the page-table entries of a map of `len` bytes a piece at a
/// time (`drop_pages(offset, len)` on each piece), so that unmapping it
/// afterwards has almost nothing left to clear.
///
/// `munmap` holds the process's memory-map lock exclusively while it
/// clears the map's entries: unmapping a 600 MB data file's map, its pages
/// all in the page cache, took 70 ms, and every page fault of every other
/// thread that needed the lock waited for it (a writer's append through
/// the log's map, 64 ms). `MADV_DONTNEED` clears them under the shared
/// lock, one short piece at a time. On a shared file mapping it only
/// drops the mapping's entries: the bytes stay in the page cache and the
/// file (dirty pages are written back as usual). The first failure stops
/// it: the unmap then clears the rest, as it would have anyway.
fn drop_pages_before_unmap(
    len: usize,
    mut drop_pages: impl FnMut(usize, usize) -> std::io::Result<()>,
) {
    if len < GENTLE_UNMAP_FROM {
        return;
    }
    let mut at = 0;
    while at < len {
        let n = (len - at).min(UNMAP_PIECE);
        if drop_pages(at, n).is_err() {
            return;
        }
        at += n;
    }
}

/// Which memmap2 call an advice needs.
enum Madvise {
    Safe(Advice),
    DontNeed,
}

fn madvise_kind(advice: MapAdvice) -> Madvise {
    match advice {
        MapAdvice::Normal => Madvise::Safe(Advice::Normal),
        MapAdvice::WillNeed => Madvise::Safe(Advice::WillNeed),
        MapAdvice::Sequential => Madvise::Safe(Advice::Sequential),
        MapAdvice::Random => Madvise::Safe(Advice::Random),
        MapAdvice::DontNeed => Madvise::DontNeed,
    }
}

/// A read-only, shared map of a whole file (`MAP_SHARED`, `PROT_READ`).
/// An empty file gives an empty map without calling `mmap`.
///
/// ```
/// use silo_io::{ReadMap, SiloFile};
/// let dir = tempfile::tempdir().unwrap();
/// let file = SiloFile::create_new(&dir.path().join("f"))?;
/// assert_eq!(ReadMap::new(&file)?.len(), 0);
/// file.write_all_at(b"mapped", 0)?;
/// let map = ReadMap::new(&file)?;
/// assert_eq!(map.as_slice(), b"mapped");
/// # Ok::<(), silo_io::IoError>(())
/// ```
#[derive(Debug)]
pub struct ReadMap {
    map: Option<Mmap>,
    path: PathBuf,
}

impl ReadMap {
    /// Maps the file's current length.
    ///
    /// ```
    /// use silo_io::{ReadMap, SiloFile};
    /// let dir = tempfile::tempdir().unwrap();
    /// let file = SiloFile::create_new(&dir.path().join("f"))?;
    /// file.write_all_at(&[1, 2, 3], 0)?;
    /// assert_eq!(ReadMap::new(&file)?.len(), 3);
    /// # Ok::<(), silo_io::IoError>(())
    /// ```
    pub fn new(file: &SiloFile) -> Result<ReadMap, IoError> {
        ReadMap::prefix(file, map_len(file)?)
    }

    /// Maps only the first `len` bytes of the file (fewer if the file is
    /// shorter), so bytes past them, which another map may be appending
    /// to, are never part of this one.
    ///
    /// ```
    /// use silo_io::{ReadMap, SiloFile};
    /// let dir = tempfile::tempdir().unwrap();
    /// let file = SiloFile::create_new(&dir.path().join("f"))?;
    /// file.write_all_at(b"written|appending", 0)?;
    /// assert_eq!(ReadMap::prefix(&file, 7)?.as_slice(), b"written");
    /// assert_eq!(ReadMap::prefix(&file, 100)?.len(), 17);
    /// # Ok::<(), silo_io::IoError>(())
    /// ```
    pub fn prefix(file: &SiloFile, len: usize) -> Result<ReadMap, IoError> {
        let len = len.min(map_len(file)?);
        let path = file.path().to_path_buf();
        if len == 0 {
            return Ok(ReadMap { map: None, path });
        }
        // SAFETY: the map is read-only and shared. Rust assumes the bytes do
        // not change while `as_slice` borrows are alive; silo guarantees it by
        // the module invariants: the file is never shrunk while mapped, and
        // bytes visible to readers are not rewritten while a view is alive.
        let map = unsafe { MmapOptions::new().len(len).map(file.as_std()) }
            .map_err(|e| IoError::io("mmap", &path, e))?;
        Ok(ReadMap {
            map: Some(map),
            path,
        })
    }

    /// The mapped bytes.
    ///
    /// ```
    /// use silo_io::{ReadMap, SiloFile};
    /// let dir = tempfile::tempdir().unwrap();
    /// let file = SiloFile::create_new(&dir.path().join("f"))?;
    /// file.write_all_at(b"abc", 0)?;
    /// assert_eq!(&ReadMap::new(&file)?.as_slice()[1..], b"bc");
    /// # Ok::<(), silo_io::IoError>(())
    /// ```
    pub fn as_slice(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }

    /// The mapped length in bytes.
    ///
    /// ```
    /// use silo_io::{ReadMap, SiloFile};
    /// let dir = tempfile::tempdir().unwrap();
    /// let file = SiloFile::create_new(&dir.path().join("f"))?;
    /// file.set_len(10)?;
    /// assert_eq!(ReadMap::new(&file)?.len(), 10);
    /// # Ok::<(), silo_io::IoError>(())
    /// ```
    pub fn len(&self) -> usize {
        self.map.as_ref().map_or(0, |m| m.len())
    }

    /// True when nothing is mapped (the file was empty).
    ///
    /// ```
    /// use silo_io::{ReadMap, SiloFile};
    /// let dir = tempfile::tempdir().unwrap();
    /// let file = SiloFile::create_new(&dir.path().join("f"))?;
    /// assert!(ReadMap::new(&file)?.is_empty());
    /// # Ok::<(), silo_io::IoError>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The path of the mapped file.
    ///
    /// ```
    /// use silo_io::{ReadMap, SiloFile};
    /// let dir = tempfile::tempdir().unwrap();
    /// let file = SiloFile::create_new(&dir.path().join("f"))?;
    /// assert_eq!(ReadMap::new(&file)?.path(), file.path());
    /// # Ok::<(), silo_io::IoError>(())
    /// ```
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Advises the kernel about `[offset, offset + len)` (`madvise`), widened
    /// to whole pages and clipped to the map; a range outside the map is
    /// ignored. `DontNeed` only drops cached pages: the bytes stay readable.
    ///
    /// ```
    /// use silo_io::{MapAdvice, ReadMap, SiloFile};
    /// let dir = tempfile::tempdir().unwrap();
    /// let file = SiloFile::create_new(&dir.path().join("f"))?;
    /// file.write_all_at(&[5u8; 20_000], 0)?;
    /// let map = ReadMap::new(&file)?;
    /// map.advise(100, 10_000, MapAdvice::WillNeed)?;
    /// map.advise(0, map.len(), MapAdvice::DontNeed)?;
    /// assert_eq!(map.as_slice()[19_999], 5);
    /// # Ok::<(), silo_io::IoError>(())
    /// ```
    pub fn advise(&self, offset: usize, len: usize, advice: MapAdvice) -> Result<(), IoError> {
        let Some(map) = &self.map else { return Ok(()) };
        let Some((start, len)) = clip_to_map(map.len(), offset, len) else {
            return Ok(());
        };
        let result = match madvise_kind(advice) {
            Madvise::Safe(Advice::WillNeed) => in_chunks(start, len, |at, n| {
                map.advise_range(Advice::WillNeed, at, n)
            }),
            Madvise::Safe(a) => map.advise_range(a, start, len),
            // SAFETY: the map is a shared, file-backed mapping, so
            // MADV_DONTNEED only drops its cached pages; the next access
            // reads the same bytes back from the file. `start..start + len`
            // was clipped to the mapping and `start` is page aligned.
            Madvise::DontNeed => unsafe {
                map.unchecked_advise_range(UncheckedAdvice::DontNeed, start, len)
            },
        };
        result.map_err(|e| IoError::io("madvise", &self.path, e))
    }
}

impl Drop for ReadMap {
    fn drop(&mut self) {
        if let Some(map) = &self.map {
            // SAFETY: the map is a shared, file-backed, read-only mapping:
            // MADV_DONTNEED only drops its page-table entries (the bytes
            // stay in the file and the page cache). Each piece starts 8 MiB
            // apart from the mapping's page-aligned start and ends inside
            // the mapping (the kernel rounds the last one's length up to
            // whole pages, all of them the mapping's), and nothing can read
            // through the map any more: it is being dropped, and
            // `as_slice` borrows end before that.
            drop_pages_before_unmap(map.len(), |at, n| unsafe {
                map.unchecked_advise_range(UncheckedAdvice::DontNeed, at, n)
            });
        }
    }
}

/// A read-only view of a file that only grows. Readers take a
/// [`view`](Self::view) and keep it for as long as they read; after the
/// file grows, [`remap`](Self::remap) publishes a longer map while older
/// views stay valid (each is its own mapping, unmapped when its last `Arc`
/// drops). `Send + Sync`.
///
/// ```
/// use silo_io::{GrowableMap, SiloFile};
/// let dir = tempfile::tempdir().unwrap();
/// let file = SiloFile::create_new(&dir.path().join("f"))?;
/// file.write_all_at(b"one", 0)?;
/// let maps = GrowableMap::new(&file)?;
/// let old = maps.view();
/// file.write_all_at(b"two", 3)?;
/// maps.remap(&file)?;
/// assert_eq!(old.as_slice(), b"one");
/// assert_eq!(maps.view().as_slice(), b"onetwo");
/// # Ok::<(), silo_io::IoError>(())
/// ```
#[derive(Debug)]
pub struct GrowableMap {
    current: RwLock<Arc<ReadMap>>,
}

impl GrowableMap {
    /// Maps the file's current length.
    ///
    /// ```
    /// use silo_io::{GrowableMap, SiloFile};
    /// let dir = tempfile::tempdir().unwrap();
    /// let file = SiloFile::create_new(&dir.path().join("f"))?;
    /// assert_eq!(GrowableMap::new(&file)?.view().len(), 0);
    /// # Ok::<(), silo_io::IoError>(())
    /// ```
    pub fn new(file: &SiloFile) -> Result<GrowableMap, IoError> {
        Ok(GrowableMap {
            current: RwLock::new(Arc::new(ReadMap::new(file)?)),
        })
    }

    /// The latest published map: cheap (one `Arc` clone under a read lock).
    ///
    /// ```
    /// use silo_io::{GrowableMap, SiloFile};
    /// let dir = tempfile::tempdir().unwrap();
    /// let file = SiloFile::create_new(&dir.path().join("f"))?;
    /// file.write_all_at(b"x", 0)?;
    /// let maps = GrowableMap::new(&file)?;
    /// assert_eq!(maps.view().as_slice(), b"x");
    /// # Ok::<(), silo_io::IoError>(())
    /// ```
    pub fn view(&self) -> Arc<ReadMap> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Maps the file's new length and publishes it; returns the new view.
    /// Views taken before stay valid. If the length did not change, the
    /// current view is returned without mapping again.
    ///
    /// ```
    /// use silo_io::{GrowableMap, SiloFile};
    /// let dir = tempfile::tempdir().unwrap();
    /// let file = SiloFile::create_new(&dir.path().join("f"))?;
    /// let maps = GrowableMap::new(&file)?;
    /// file.allocate(0, 8192)?;
    /// assert_eq!(maps.remap(&file)?.len(), 8192);
    /// # Ok::<(), silo_io::IoError>(())
    /// ```
    pub fn remap(&self, file: &SiloFile) -> Result<Arc<ReadMap>, IoError> {
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        if current.len() == map_len(file)? {
            return Ok(Arc::clone(&current));
        }
        let fresh = Arc::new(ReadMap::new(file)?);
        *current = Arc::clone(&fresh);
        Ok(fresh)
    }
}

/// A read-write shared map used only through aligned 8-byte atomics, so
/// concurrent readers and a writer never race. It is the single mapping
/// through which both reads and writes of those bytes go. `Send + Sync`.
///
/// Atomics hold host-order integers; silo's on-disk integers are
/// little-endian, so use [`load_le`](Self::load_le) /
/// [`store_le`](Self::store_le) (no-ops on little-endian hosts) for bytes
/// other programs read.
///
/// ```
/// use std::sync::atomic::Ordering;
/// use silo_io::{AtomicMap, SiloFile};
/// let dir = tempfile::tempdir().unwrap();
/// let file = SiloFile::create_new(&dir.path().join("index"))?;
/// file.allocate(0, 4096)?;
/// let map = AtomicMap::new(&file)?;
/// map.atomic_u64(16)?.store(42, Ordering::Release);
/// map.flush()?;
/// assert_eq!(map.atomic_u64(16)?.load(Ordering::Acquire), 42);
/// assert!(map.atomic_u64(17).is_err());
/// # Ok::<(), silo_io::IoError>(())
/// ```
#[derive(Debug)]
pub struct AtomicMap {
    map: Option<MmapRaw>,
    path: PathBuf,
}

impl Drop for AtomicMap {
    fn drop(&mut self) {
        if let Some(map) = &self.map {
            // SAFETY: the map is a shared, file-backed mapping: MADV_DONTNEED
            // drops its page-table entries only, and a page written through
            // it stays dirty in the page cache (the kernel moves the entry's
            // dirty bit to the page) and reaches the file as usual. Each
            // piece starts 8 MiB apart from the mapping's page-aligned
            // start and ends inside the mapping (the kernel rounds the last
            // one's length up to whole pages, all of them the mapping's),
            // and no reference into it is alive: `atomic_u64` borrows the
            // map, which is being dropped.
            drop_pages_before_unmap(map.len(), |at, n| unsafe {
                map.unchecked_advise_range(UncheckedAdvice::DontNeed, at, n)
            });
        }
    }
}

impl AtomicMap {
    /// Maps the file's current length read-write; the file must be open for
    /// writing ([`SiloFile::open`] or a create call).
    ///
    /// ```
    /// use silo_io::{AtomicMap, SiloFile};
    /// let dir = tempfile::tempdir().unwrap();
    /// let file = SiloFile::create_new(&dir.path().join("f"))?;
    /// file.set_len(64)?;
    /// assert_eq!(AtomicMap::new(&file)?.len(), 64);
    /// # Ok::<(), silo_io::IoError>(())
    /// ```
    pub fn new(file: &SiloFile) -> Result<AtomicMap, IoError> {
        let len = map_len(file)?;
        let path = file.path().to_path_buf();
        if len == 0 {
            return Ok(AtomicMap { map: None, path });
        }
        let map = MmapOptions::new()
            .len(len)
            .map_raw(file.as_std())
            .map_err(|e| IoError::io("mmap", &path, e))?;
        Ok(AtomicMap {
            map: Some(map),
            path,
        })
    }

    /// The mapped length in bytes.
    ///
    /// ```
    /// use silo_io::{AtomicMap, SiloFile};
    /// let dir = tempfile::tempdir().unwrap();
    /// let file = SiloFile::create_new(&dir.path().join("f"))?;
    /// assert_eq!(AtomicMap::new(&file)?.len(), 0);
    /// # Ok::<(), silo_io::IoError>(())
    /// ```
    pub fn len(&self) -> usize {
        self.map.as_ref().map_or(0, MmapRaw::len)
    }

    /// True when nothing is mapped (the file was empty).
    ///
    /// ```
    /// use silo_io::{AtomicMap, SiloFile};
    /// let dir = tempfile::tempdir().unwrap();
    /// let file = SiloFile::create_new(&dir.path().join("f"))?;
    /// assert!(AtomicMap::new(&file)?.is_empty());
    /// # Ok::<(), silo_io::IoError>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The atomic at byte `offset`: [`IoError::Misaligned`] unless `offset`
    /// is a multiple of 8, [`IoError::OutOfBounds`] if the 8 bytes are not
    /// all inside the map.
    ///
    /// ```
    /// use std::sync::atomic::Ordering;
    /// use silo_io::{AtomicMap, IoError, SiloFile};
    /// let dir = tempfile::tempdir().unwrap();
    /// let file = SiloFile::create_new(&dir.path().join("f"))?;
    /// file.set_len(16)?;
    /// let map = AtomicMap::new(&file)?;
    /// map.atomic_u64(8)?.fetch_add(3, Ordering::AcqRel);
    /// assert!(matches!(map.atomic_u64(4), Err(IoError::Misaligned { offset: 4, align: 8 })));
    /// assert!(matches!(map.atomic_u64(16), Err(IoError::OutOfBounds { .. })));
    /// # Ok::<(), silo_io::IoError>(())
    /// ```
    pub fn atomic_u64(&self, offset: usize) -> Result<&AtomicU64, IoError> {
        const ALIGN: usize = std::mem::align_of::<AtomicU64>();
        if !offset.is_multiple_of(8) {
            return Err(IoError::Misaligned {
                offset: offset as u64,
                align: 8,
            });
        }
        check_range(offset, 8, self.len())?;
        let Some(map) = &self.map else {
            return Err(IoError::OutOfBounds {
                offset: offset as u64,
                len: 8,
                size: 0,
            });
        };
        let ptr = map.as_mut_ptr().wrapping_add(offset);
        if !ptr.addr().is_multiple_of(ALIGN) {
            return Err(IoError::Misaligned {
                offset: ptr.addr() as u64,
                align: ALIGN as u64,
            });
        }
        // SAFETY: `ptr` is inside the mapping (offset + 8 <= len checked
        // above) and aligned for `AtomicU64` (checked just above; mmap
        // returns page-aligned addresses). The mapping is read-write and
        // lives as long as `&self`, which bounds the returned reference. The
        // file is never shrunk while mapped, and by this type's contract these
        // bytes are accessed only through 8-byte atomics at the same offsets,
        // so there are no non-atomic or mixed-size races.
        Ok(unsafe { AtomicU64::from_ptr(ptr.cast::<u64>()) })
    }

    /// Hints the CPU to load the cache line at byte `offset` (see
    /// [`crate::hint`]); nothing happens past the end.
    ///
    /// ```
    /// use silo_io::{AtomicMap, SiloFile};
    /// let dir = tempfile::tempdir().unwrap();
    /// let file = SiloFile::create_new(&dir.path().join("f"))?;
    /// file.set_len(4096)?;
    /// let map = AtomicMap::new(&file)?;
    /// map.prefetch(1024);
    /// map.prefetch(1 << 30);
    /// # Ok::<(), silo_io::IoError>(())
    /// ```
    #[inline]
    pub fn prefetch(&self, offset: usize) {
        if let Some(map) = &self.map
            && offset < map.len()
        {
            crate::hint::prefetch(map.as_ptr().wrapping_add(offset));
        }
    }

    /// Loads the little-endian `u64` stored at `offset`.
    ///
    /// ```
    /// use std::sync::atomic::Ordering;
    /// use silo_io::{AtomicMap, SiloFile};
    /// let dir = tempfile::tempdir().unwrap();
    /// let file = SiloFile::create_new(&dir.path().join("f"))?;
    /// file.write_all_at(&7u64.to_le_bytes(), 0)?;
    /// let map = AtomicMap::new(&file)?;
    /// assert_eq!(map.load_le(0, Ordering::Acquire)?, 7);
    /// # Ok::<(), silo_io::IoError>(())
    /// ```
    pub fn load_le(&self, offset: usize, order: Ordering) -> Result<u64, IoError> {
        Ok(u64::from_le(self.atomic_u64(offset)?.load(order)))
    }

    /// Stores `value` at `offset` as a little-endian `u64`.
    ///
    /// ```
    /// use std::sync::atomic::Ordering;
    /// use silo_io::{AtomicMap, SiloFile};
    /// let dir = tempfile::tempdir().unwrap();
    /// let file = SiloFile::create_new(&dir.path().join("f"))?;
    /// file.set_len(8)?;
    /// AtomicMap::new(&file)?.store_le(0, 9, Ordering::Release)?;
    /// assert_eq!(std::fs::read(file.path()).unwrap(), 9u64.to_le_bytes());
    /// # Ok::<(), silo_io::IoError>(())
    /// ```
    pub fn store_le(&self, offset: usize, value: u64, order: Ordering) -> Result<(), IoError> {
        self.atomic_u64(offset)?.store(value.to_le(), order);
        Ok(())
    }

    /// Writes every dirty page of the map to disk and waits (`msync(MS_SYNC)`).
    /// Counted as a `Sync` by the fault seam.
    ///
    /// ```
    /// use silo_io::{AtomicMap, SiloFile};
    /// let dir = tempfile::tempdir().unwrap();
    /// let file = SiloFile::create_new(&dir.path().join("f"))?;
    /// file.set_len(8)?;
    /// AtomicMap::new(&file)?.flush()?;
    /// # Ok::<(), silo_io::IoError>(())
    /// ```
    pub fn flush(&self) -> Result<(), IoError> {
        fault::check(FaultOp::Sync, &self.path)?;
        let Some(map) = &self.map else { return Ok(()) };
        let token = fault::sync_start(&self.path, None);
        map.flush()
            .map_err(|e| IoError::io("msync", &self.path, e))?;
        fault::synced(token);
        Ok(())
    }

    /// Writes the dirty pages of `[offset, offset + len)` (widened to pages)
    /// to disk and waits; [`IoError::OutOfBounds`] if the range is not inside
    /// the map. Counted as a `Sync` by the fault seam.
    ///
    /// ```
    /// use std::sync::atomic::Ordering;
    /// use silo_io::{AtomicMap, SiloFile};
    /// let dir = tempfile::tempdir().unwrap();
    /// let file = SiloFile::create_new(&dir.path().join("f"))?;
    /// file.set_len(8192)?;
    /// let map = AtomicMap::new(&file)?;
    /// map.store_le(4096, 1, Ordering::Release)?;
    /// map.flush_range(4096, 8)?;
    /// assert!(map.flush_range(8190, 8).is_err());
    /// # Ok::<(), silo_io::IoError>(())
    /// ```
    pub fn flush_range(&self, offset: usize, len: usize) -> Result<(), IoError> {
        check_range(offset, len, self.len())?;
        fault::check(FaultOp::Sync, &self.path)?;
        let Some(map) = &self.map else { return Ok(()) };
        let Some((start, len)) = clip_to_map(map.len(), offset, len) else {
            return Ok(());
        };
        let token = fault::sync_start(&self.path, Some((start as u64, len as u64)));
        map.flush_range(start, len)
            .map_err(|e| IoError::io("msync", &self.path, e))?;
        fault::synced(token);
        Ok(())
    }

    /// Advises the kernel about `[offset, offset + len)` (`madvise`), widened
    /// to whole pages and clipped to the map. `DontNeed` only drops cached
    /// pages: stored values are read back from the file.
    ///
    /// ```
    /// use silo_io::{AtomicMap, MapAdvice, SiloFile};
    /// let dir = tempfile::tempdir().unwrap();
    /// let file = SiloFile::create_new(&dir.path().join("f"))?;
    /// file.set_len(8192)?;
    /// AtomicMap::new(&file)?.advise(0, 8192, MapAdvice::Random)?;
    /// # Ok::<(), silo_io::IoError>(())
    /// ```
    pub fn advise(&self, offset: usize, len: usize, advice: MapAdvice) -> Result<(), IoError> {
        let Some(map) = &self.map else { return Ok(()) };
        let Some((start, len)) = clip_to_map(map.len(), offset, len) else {
            return Ok(());
        };
        let result = match madvise_kind(advice) {
            Madvise::Safe(Advice::WillNeed) => in_chunks(start, len, |at, n| {
                map.advise_range(Advice::WillNeed, at, n)
            }),
            Madvise::Safe(a) => map.advise_range(a, start, len),
            Madvise::DontNeed => {
                // Dirty shared pages are written back by the kernel, not lost.
                // SAFETY: the map is a shared, file-backed mapping, so
                // MADV_DONTNEED drops only the process's page mappings; dirty
                // pages stay in the page cache and the next access reads the
                // same bytes. `start..start + len` is page aligned and clipped.
                unsafe { map.unchecked_advise_range(UncheckedAdvice::DontNeed, start, len) }
            }
        };
        result.map_err(|e| IoError::io("madvise", &self.path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with(dir: &Path, bytes: &[u8]) -> SiloFile {
        let f = SiloFile::create_new(&dir.join("f")).unwrap();
        f.write_all_at(bytes, 0).unwrap();
        f
    }

    #[test]
    fn a_long_map_drops_its_pages_piece_by_piece_and_a_short_one_not_at_all() {
        let mut pieces = Vec::new();
        drop_pages_before_unmap(GENTLE_UNMAP_FROM - 4096, |at, n| {
            pieces.push((at, n));
            Ok(())
        });
        assert!(pieces.is_empty(), "short: the unmap clears it");
        let len = GENTLE_UNMAP_FROM + UNMAP_PIECE / 2;
        drop_pages_before_unmap(len, |at, n| {
            pieces.push((at, n));
            Ok(())
        });
        // Every byte once, in pieces of at most UNMAP_PIECE, in order.
        let mut next = 0;
        for (at, n) in &pieces {
            assert_eq!(*at, next);
            assert!(*n > 0 && *n <= UNMAP_PIECE);
            next += n;
        }
        assert_eq!(next, len);
        // The first failure ends it.
        let mut calls = 0;
        drop_pages_before_unmap(len, |_, _| {
            calls += 1;
            Err(std::io::Error::other("refused"))
        });
        assert_eq!(calls, 1);
    }

    /// Maps long enough to drop their pages before the unmap lose nothing:
    /// what was read stays in the file, and what was written through an
    /// atomic map (dirty pages) reaches the file.
    #[test]
    fn dropping_a_long_map_keeps_every_byte() {
        let dir = tempfile::tempdir().unwrap();
        let len = GENTLE_UNMAP_FROM + 3 * 4096;
        let bytes: Vec<u8> = (0..251u8).cycle().take(len).collect();
        let f = file_with(dir.path(), &bytes);
        let map = ReadMap::new(&f).unwrap();
        let sum: u64 = map
            .as_slice()
            .iter()
            .step_by(4096)
            .map(|b| u64::from(*b))
            .sum();
        assert!(sum > 0);
        drop(map);
        assert_eq!(ReadMap::new(&f).unwrap().as_slice(), &bytes[..]);
        let atomic = AtomicMap::new(&f).unwrap();
        for page in (0..len - 8).step_by(4096) {
            atomic
                .atomic_u64(page)
                .unwrap()
                .store(page as u64 + 1, Ordering::Release);
        }
        drop(atomic);
        let mut back = [0u8; 8];
        for page in (0..len - 8).step_by(4096) {
            f.read_exact_at(&mut back, page as u64).unwrap();
            assert_eq!(u64::from_le_bytes(back), page as u64 + 1, "page at {page}");
        }
    }

    #[test]
    fn page_align_widens_and_clips() {
        let p = page_size();
        assert_eq!(page_align(0, 1), (0, p));
        assert_eq!(page_align(p, p), (p, p));
        assert_eq!(page_align(3 * p + 5, p), (3 * p, 2 * p));
        let (s, l) = page_align(usize::MAX - 3, 10);
        assert_eq!(s % p, 0);
        assert!(s.checked_add(l).is_some());
        assert_eq!(clip_to_map(p + 10, p + 3, 100), Some((p, 10)));
        assert_eq!(clip_to_map(p, p, 1), None);
        assert_eq!(clip_to_map(p, 0, 0), None);
    }

    #[test]
    fn will_need_is_split_into_chunks() {
        let mut calls = Vec::new();
        in_chunks(4096, WILL_NEED_CHUNK * 2 + 4096, |at, n| {
            calls.push((at, n));
            Ok(())
        })
        .unwrap();
        assert_eq!(
            calls,
            [
                (4096, WILL_NEED_CHUNK),
                (4096 + WILL_NEED_CHUNK, WILL_NEED_CHUNK),
                (4096 + 2 * WILL_NEED_CHUNK, 4096)
            ]
        );
    }

    #[test]
    fn read_map_advice_keeps_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..3 * page_size() + 17)
            .map(|i| u8::try_from(i % 7).unwrap())
            .collect();
        let f = file_with(dir.path(), &data);
        let m = ReadMap::new(&f).unwrap();
        for a in [
            MapAdvice::Normal,
            MapAdvice::WillNeed,
            MapAdvice::DontNeed,
            MapAdvice::Sequential,
            MapAdvice::Random,
        ] {
            m.advise(5, data.len(), a).unwrap();
        }
        m.advise(data.len() + 10, 5, MapAdvice::WillNeed).unwrap();
        assert_eq!(m.as_slice(), &data[..]);
    }

    #[test]
    fn atomic_values_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let f = SiloFile::create_new(&dir.path().join("idx")).unwrap();
        f.set_len(4096).unwrap();
        {
            let m = AtomicMap::new(&f).unwrap();
            for i in 0..512u64 {
                m.store_le(
                    usize::try_from(i * 8).unwrap(),
                    i * 3 + 1,
                    Ordering::Relaxed,
                )
                .unwrap();
            }
            m.flush().unwrap();
        }
        let f = SiloFile::open(&dir.path().join("idx")).unwrap();
        let m = AtomicMap::new(&f).unwrap();
        assert_eq!(m.load_le(4088, Ordering::Relaxed).unwrap(), 511 * 3 + 1);
        assert!(matches!(
            m.atomic_u64(4096),
            Err(IoError::OutOfBounds {
                offset: 4096,
                len: 8,
                size: 4096
            })
        ));
        assert!(matches!(
            m.atomic_u64(usize::MAX - 7),
            Err(IoError::OutOfBounds { .. })
        ));
        assert!(matches!(
            m.atomic_u64(12),
            Err(IoError::Misaligned {
                offset: 12,
                align: 8
            })
        ));
        m.advise(0, 4096, MapAdvice::DontNeed).unwrap();
        assert_eq!(m.load_le(8, Ordering::Relaxed).unwrap(), 4);
    }

    #[test]
    fn empty_atomic_map_is_out_of_bounds() {
        let dir = tempfile::tempdir().unwrap();
        let f = file_with(dir.path(), b"");
        let m = AtomicMap::new(&f).unwrap();
        assert!(matches!(
            m.atomic_u64(0),
            Err(IoError::OutOfBounds { size: 0, .. })
        ));
        m.flush().unwrap();
        m.flush_range(0, 0).unwrap();
    }

    #[test]
    fn atomic_map_needs_a_writable_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = file_with(dir.path(), &[0u8; 16]);
        let r = SiloFile::open_read(f.path()).unwrap();
        let e = AtomicMap::new(&r).unwrap_err();
        assert!(matches!(e, IoError::Io { op: "mmap", .. }), "{e}");
    }

    #[test]
    fn maps_are_send_sync() {
        fn check<T: Send + Sync>() {}
        check::<ReadMap>();
        check::<GrowableMap>();
        check::<AtomicMap>();
    }

    #[test]
    fn remap_without_growth_reuses_the_view() {
        let dir = tempfile::tempdir().unwrap();
        let f = file_with(dir.path(), b"abc");
        let g = GrowableMap::new(&f).unwrap();
        let a = g.view();
        let b = g.remap(&f).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
    }
}
