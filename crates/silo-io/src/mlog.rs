//! [`AppendMap`]: a preallocated file mapped read-write for append-only
//! writers (the ops log).

use std::path::PathBuf;

use memmap2::{MmapMut, MmapOptions};

use crate::error::IoError;
use crate::fault::{self, FaultOp};
use crate::file::SiloFile;
use crate::map::page_align;

/// A preallocated file mapped read-write (`MAP_SHARED`) over `[0, len)`.
///
/// Writes take `&mut self`, so Rust's borrow rules keep readers out while a
/// write copies bytes in; the owner shares it behind a `Mutex`. Allocate
/// the file first ([`SiloFile::allocate`]) so a full disk is an error there,
/// never a `SIGBUS` when a page of the map is first written.
///
/// ```
/// use silo_io::{AppendMap, SiloFile};
/// let dir = tempfile::tempdir().unwrap();
/// let file = SiloFile::create_new(&dir.path().join("log-0"))?;
/// file.allocate(0, 1 << 16)?;
/// let mut log = AppendMap::new(&file, 1 << 16)?;
/// log.write_at(0, b"frame")?;
/// log.flush_range(0, 5)?;
/// assert_eq!(&log.as_slice()[..5], b"frame");
/// # Ok::<(), silo_io::IoError>(())
/// ```
#[derive(Debug)]
pub struct AppendMap {
    map: Option<MmapMut>,
    path: PathBuf,
    /// The mapped file's device and inode, so that [`AppendMap::grow`]
    /// extends the map only over the file it was made from.
    file_id: Option<(u64, u64)>,
}

/// `file`'s device and inode (`None` where unknown: never matched).
fn file_id(file: &SiloFile) -> Option<(u64, u64)> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        file.as_std().metadata().ok().map(|m| (m.dev(), m.ino()))
    }
    #[cfg(not(unix))]
    {
        let _ = file;
        None
    }
}

impl AppendMap {
    /// Maps `[0, len)` of `file` read-write. [`IoError::OutOfBounds`] if the
    /// file is shorter than `len`.
    ///
    /// ```
    /// use silo_io::{AppendMap, IoError, SiloFile};
    /// let dir = tempfile::tempdir().unwrap();
    /// let file = SiloFile::create_new(&dir.path().join("log"))?;
    /// assert!(matches!(AppendMap::new(&file, 4096), Err(IoError::OutOfBounds { .. })));
    /// file.allocate(0, 4096)?;
    /// assert_eq!(AppendMap::new(&file, 4096)?.len(), 4096);
    /// # Ok::<(), silo_io::IoError>(())
    /// ```
    pub fn new(file: &SiloFile, len: usize) -> Result<AppendMap, IoError> {
        let size = file.len()?;
        let path = file.path().to_path_buf();
        if (len as u64) > size {
            return Err(IoError::OutOfBounds {
                offset: 0,
                len: len as u64,
                size,
            });
        }
        if len == 0 {
            return Ok(AppendMap {
                map: None,
                path,
                file_id: None,
            });
        }
        // SAFETY: the mapping is shared and read-write over bytes the file
        // already has (checked above). Rust requires that nothing else
        // changes these bytes while they are borrowed: silo writes the ops
        // log only through this map (the owner serialises writers with a
        // mutex and `write_at` takes `&mut self`), other maps of the file
        // (`ReadMap::prefix` at recovery) cover only bytes already written,
        // which are never written again, and when the owner shrinks the file
        // (emptying or trimming a slot) it no longer touches the cut bytes
        // through this map: it maps the file anew or stops using it.
        let map = unsafe { MmapOptions::new().len(len).map_mut(file.as_std()) }
            .map_err(|e| IoError::io("mmap", &path, e))?;
        // A page fault past the append point reads the preallocation's
        // zeros into the page cache, in the writer's fault. With Linux's
        // default read-around (the device's read-ahead window, 8 MiB on
        // this machine's disk) one put in every ~70k zeroed 8 MiB and took
        // 25-60 ms. With MADV_RANDOM alone a fault reads only its page: no
        // long put, but every page is a folio of its own, and single puts
        // ran 5-12% slower. With MADV_HUGEPAGE as well (where the kernel
        // has transparent huge pages; it is checked first) a fault reads
        // one aligned 2 MiB folio: puts as fast as with the read-around,
        // the longest 10-19 ms. `mremap` keeps both for a grown map.
        #[cfg(target_os = "linux")]
        {
            // Advice only: without transparent huge pages it fails, and
            // each fault reads one page.
            let _ = map.advise(memmap2::Advice::HugePage);
        }
        map.advise(memmap2::Advice::Random)
            .map_err(|e| IoError::io("madvise", &path, e))?;
        Ok(AppendMap {
            map: Some(map),
            path,
            file_id: file_id(file),
        })
    }

    /// Maps `[0, len)` of `file` once it has grown to at least `len` bytes
    /// ([`IoError::OutOfBounds`] if not). On Linux, if `file` is the file
    /// this map was made over, the map is extended in place or moved
    /// (`mremap`), keeping its pages: unmapping a large map page by page
    /// took 10-20 ms. Otherwise `file` is mapped anew. A shorter or equal
    /// `len` changes nothing.
    ///
    /// ```
    /// use silo_io::{AppendMap, IoError, SiloFile};
    /// let dir = tempfile::tempdir().unwrap();
    /// let file = SiloFile::create_new(&dir.path().join("log"))?;
    /// file.allocate(0, 4096)?;
    /// let mut log = AppendMap::new(&file, 4096)?;
    /// log.write_at(0, b"frame")?;
    /// assert!(matches!(log.grow(&file, 8192), Err(IoError::OutOfBounds { .. })));
    /// file.allocate(0, 8192)?;
    /// log.grow(&file, 8192)?;
    /// log.write_at(8000, b"later")?;
    /// assert_eq!(&log.as_slice()[..5], b"frame");
    /// assert_eq!(log.len(), 8192);
    /// # Ok::<(), silo_io::IoError>(())
    /// ```
    pub fn grow(&mut self, file: &SiloFile, len: usize) -> Result<(), IoError> {
        if len <= self.len() {
            return Ok(());
        }
        let size = file.len()?;
        if (len as u64) > size {
            return Err(IoError::OutOfBounds {
                offset: 0,
                len: len as u64,
                size,
            });
        }
        #[cfg(target_os = "linux")]
        if let Some(map) = &mut self.map
            && self.file_id.is_some()
            && self.file_id == file_id(file)
        {
            // SAFETY: the map is of `file` (same device and inode), which
            // has at least `len` bytes (checked above), so every byte of
            // the longer map is backed by the file; silo never shrinks a
            // log file below what its map covers while the map is in use
            // (see `new`). The map may move: no pointer into it outlives a
            // borrow of `self`, and this takes `&mut self`.
            unsafe { map.remap(len, memmap2::RemapOptions::new().may_move(true)) }
                .map_err(|e| IoError::io("mremap", &self.path, e))?;
            return Ok(());
        }
        *self = AppendMap::new(file, len)?;
        Ok(())
    }

    /// Drops the map's page table entries for the whole pages inside
    /// `[offset, offset + len)` (`madvise(MADV_DONTNEED)`), and returns the
    /// end of the last page dropped (`offset` if none). The bytes stay in
    /// the page cache, dirty or not, and read back through the map as
    /// before; what changes is that syncing the file no longer has to
    /// write-protect those pages in this map, one TLB flush each. For
    /// written pages that will not be written again. Elsewhere than Linux
    /// it does nothing.
    ///
    /// ```
    /// use silo_io::{AppendMap, SiloFile};
    /// let dir = tempfile::tempdir().unwrap();
    /// let file = SiloFile::create_new(&dir.path().join("log"))?;
    /// let page = silo_io::page_size();
    /// file.allocate(0, 4 * page as u64)?;
    /// let mut log = AppendMap::new(&file, 4 * page)?;
    /// log.write_at(0, &vec![7u8; 3 * page])?;
    /// let upto = log.release_pages(1, 3 * page - 1)?;
    /// // Pages 1 and 2: the first is only partly inside the range.
    /// assert!(upto == 3 * page || upto == 1);
    /// assert!(log.as_slice()[..3 * page].iter().all(|b| *b == 7));
    /// # Ok::<(), silo_io::IoError>(())
    /// ```
    pub fn release_pages(&self, offset: usize, len: usize) -> Result<usize, IoError> {
        self.check(offset, len)?;
        let page = crate::map::page_size();
        let start = offset.next_multiple_of(page);
        let end = (offset + len) / page * page;
        #[cfg(target_os = "linux")]
        if let Some(map) = &self.map
            && end > start
        {
            // SAFETY: the map is shared (`MAP_SHARED`) and backed by a
            // file, so `MADV_DONTNEED` only unmaps these pages: the page
            // cache keeps their bytes (a dirty page stays dirty), and the
            // next access maps them again from it. No byte that a
            // reference into the map can see changes, and the range is
            // inside the map (checked above).
            unsafe {
                map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, end - start)
            }
            .map_err(|e| IoError::io("madvise", &self.path, e))?;
            return Ok(end);
        }
        Ok(offset)
    }

    /// The mapped length in bytes.
    ///
    /// ```
    /// use silo_io::{AppendMap, SiloFile};
    /// let dir = tempfile::tempdir().unwrap();
    /// let file = SiloFile::create_new(&dir.path().join("log"))?;
    /// assert_eq!(AppendMap::new(&file, 0)?.len(), 0);
    /// # Ok::<(), silo_io::IoError>(())
    /// ```
    pub fn len(&self) -> usize {
        self.map.as_ref().map_or(0, |m| m.len())
    }

    /// True when nothing is mapped.
    ///
    /// ```
    /// use silo_io::{AppendMap, SiloFile};
    /// let dir = tempfile::tempdir().unwrap();
    /// let file = SiloFile::create_new(&dir.path().join("log"))?;
    /// assert!(AppendMap::new(&file, 0)?.is_empty());
    /// # Ok::<(), silo_io::IoError>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn check(&self, offset: usize, len: usize) -> Result<(), IoError> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len() => Ok(()),
            _ => Err(IoError::OutOfBounds {
                offset: offset as u64,
                len: len as u64,
                size: self.len() as u64,
            }),
        }
    }

    /// Copies `bytes` into the map at `offset`; [`IoError::OutOfBounds`] if
    /// they do not fit. Not durable until [`flush_range`](Self::flush_range).
    ///
    /// ```
    /// use silo_io::{AppendMap, IoError, SiloFile};
    /// let dir = tempfile::tempdir().unwrap();
    /// let file = SiloFile::create_new(&dir.path().join("log"))?;
    /// file.allocate(0, 16)?;
    /// let mut log = AppendMap::new(&file, 16)?;
    /// log.write_at(10, b"abcdef")?;
    /// assert!(matches!(log.write_at(11, b"abcdef"), Err(IoError::OutOfBounds { .. })));
    /// # Ok::<(), silo_io::IoError>(())
    /// ```
    pub fn write_at(&mut self, offset: usize, bytes: &[u8]) -> Result<(), IoError> {
        self.check(offset, bytes.len())?;
        if let Some(map) = &mut self.map {
            map[offset..offset + bytes.len()].copy_from_slice(bytes);
        }
        Ok(())
    }

    /// The mapped bytes.
    ///
    /// ```
    /// use silo_io::{AppendMap, SiloFile};
    /// let dir = tempfile::tempdir().unwrap();
    /// let file = SiloFile::create_new(&dir.path().join("log"))?;
    /// file.allocate(0, 8)?;
    /// assert_eq!(AppendMap::new(&file, 8)?.as_slice(), &[0u8; 8]);
    /// # Ok::<(), silo_io::IoError>(())
    /// ```
    pub fn as_slice(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }

    /// Makes `[offset, offset + len)` durable: `msync(MS_SYNC)` on the
    /// page-aligned range around it. Counted as a `Sync` by the fault seam.
    ///
    /// ```
    /// use silo_io::{AppendMap, SiloFile};
    /// let dir = tempfile::tempdir().unwrap();
    /// let file = SiloFile::create_new(&dir.path().join("log"))?;
    /// file.allocate(0, 8192)?;
    /// let mut log = AppendMap::new(&file, 8192)?;
    /// log.write_at(4000, &[1u8; 200])?; // straddles a page boundary
    /// log.flush_range(4000, 200)?;
    /// # Ok::<(), silo_io::IoError>(())
    /// ```
    pub fn flush_range(&self, offset: usize, len: usize) -> Result<(), IoError> {
        self.check(offset, len)?;
        fault::check(FaultOp::Sync, &self.path)?;
        let Some(map) = &self.map else { return Ok(()) };
        if len == 0 {
            return Ok(());
        }
        let (start, aligned) = page_align(offset, len);
        let len = aligned.min(map.len() - start);
        let token = fault::sync_start(&self.path, Some((start as u64, len as u64)));
        map.flush_range(start, len)
            .map_err(|e| IoError::io("msync", &self.path, e))?;
        fault::synced(token);
        Ok(())
    }

    /// Starts writing every dirty page back without waiting
    /// (`msync(MS_ASYNC)`). Not a durability point, so not counted by the seam.
    ///
    /// ```
    /// use silo_io::{AppendMap, SiloFile};
    /// let dir = tempfile::tempdir().unwrap();
    /// let file = SiloFile::create_new(&dir.path().join("log"))?;
    /// file.allocate(0, 4096)?;
    /// let mut log = AppendMap::new(&file, 4096)?;
    /// log.write_at(0, b"x")?;
    /// log.flush_async()?;
    /// # Ok::<(), silo_io::IoError>(())
    /// ```
    pub fn flush_async(&self) -> Result<(), IoError> {
        let Some(map) = &self.map else { return Ok(()) };
        map.flush_async()
            .map_err(|e| IoError::io("msync", &self.path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_reach_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log");
        let f = SiloFile::create_new(&p).unwrap();
        f.allocate(0, 10_000).unwrap();
        let mut m = AppendMap::new(&f, 9_000).unwrap();
        m.write_at(8_990, b"0123456789").unwrap();
        m.flush_range(8_990, 10).unwrap();
        m.flush_range(9_000, 0).unwrap();
        assert!(m.flush_range(8_999, 2).is_err());
        let on_disk = std::fs::read(&p).unwrap();
        assert_eq!(&on_disk[8_990..9_000], b"0123456789");
        assert_eq!(on_disk.len(), 10_000);
    }

    #[test]
    fn a_grown_map_keeps_its_bytes_and_writes_reach_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log");
        let f = SiloFile::create_new(&p).unwrap();
        f.allocate(0, 4096).unwrap();
        let mut m = AppendMap::new(&f, 4096).unwrap();
        m.write_at(0, b"first").unwrap();
        // Many steps, so that the map must move at some point.
        let mut len = 4096;
        for step in 1..=64u8 {
            len += 1 << 16;
            f.allocate(0, len as u64).unwrap();
            m.grow(&f, len).unwrap();
            assert_eq!(m.len(), len);
            m.write_at(len - 1, &[step]).unwrap();
        }
        m.grow(&f, 10).unwrap();
        assert_eq!(m.len(), len, "a shorter length changes nothing");
        m.flush_range(0, len).unwrap();
        let on_disk = std::fs::read(&p).unwrap();
        assert_eq!(&on_disk[..5], b"first");
        assert_eq!(&m.as_slice()[..5], b"first");
        for step in 1..=64u8 {
            assert_eq!(on_disk[4096 + usize::from(step) * (1 << 16) - 1], step);
        }
        assert!(matches!(
            m.grow(&f, len + 1),
            Err(IoError::OutOfBounds { .. })
        ));
    }

    #[test]
    fn growing_over_another_file_maps_that_file() {
        let dir = tempfile::tempdir().unwrap();
        let a = SiloFile::create_new(&dir.path().join("a")).unwrap();
        let b = SiloFile::create_new(&dir.path().join("b")).unwrap();
        a.allocate(0, 4096).unwrap();
        b.allocate(0, 8192).unwrap();
        b.write_all_at(b"bee", 0).unwrap();
        let mut m = AppendMap::new(&a, 4096).unwrap();
        m.write_at(0, b"aye").unwrap();
        m.grow(&b, 8192).unwrap();
        assert_eq!(&m.as_slice()[..3], b"bee");
        let mut empty = AppendMap::new(&a, 0).unwrap();
        empty.grow(&a, 4096).unwrap();
        assert_eq!(&empty.as_slice()[..3], b"aye");
    }

    #[test]
    fn released_dirty_pages_keep_their_bytes_and_reach_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log");
        let f = SiloFile::create_new(&p).unwrap();
        let page = crate::map::page_size();
        f.allocate(0, 8 * page as u64).unwrap();
        let mut m = AppendMap::new(&f, 8 * page).unwrap();
        let bytes: Vec<u8> = (0..6 * page).map(|i| (i % 251).to_le_bytes()[0]).collect();
        m.write_at(0, &bytes).unwrap();
        let upto = m.release_pages(0, 6 * page).unwrap();
        assert!(upto == 6 * page || !cfg!(target_os = "linux"), "{upto}");
        assert!(m.release_pages(7 * page, 2 * page).is_err(), "past the map");
        assert_eq!(m.release_pages(10, 20).unwrap(), 10, "no whole page");
        // Read back through the map (faulted in again from the page
        // cache), written again, then synced: the file has every byte.
        assert_eq!(&m.as_slice()[..6 * page], &bytes[..]);
        m.write_at(6 * page, b"after").unwrap();
        f.sync_data().unwrap();
        let on_disk = std::fs::read(&p).unwrap();
        assert_eq!(&on_disk[..6 * page], &bytes[..]);
        assert_eq!(&on_disk[6 * page..6 * page + 5], b"after");
    }

    /// The `VmFlags` line of `/proc/self/smaps` for the mapping that
    /// starts at `start`.
    #[cfg(target_os = "linux")]
    fn vm_flags(start: *const u8) -> String {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let head = format!("{:x}-", start as usize);
        let mut lines = smaps.lines().skip_while(|l| !l.starts_with(&head));
        assert!(lines.next().is_some(), "no mapping at {head}");
        lines
            .find(|l| l.starts_with("VmFlags:"))
            .unwrap()
            .to_owned()
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_map_reads_no_zeros_ahead_but_its_own_huge_page_before_and_after_it_grows() {
        let dir = tempfile::tempdir().unwrap();
        let f = SiloFile::create_new(&dir.path().join("log")).unwrap();
        f.allocate(0, 1 << 20).unwrap();
        let mut m = AppendMap::new(&f, 1 << 16).unwrap();
        // `rr`: MADV_RANDOM, no read-around on a fault; `hg`:
        // MADV_HUGEPAGE, where the kernel has transparent huge pages.
        let huge = std::path::Path::new("/sys/kernel/mm/transparent_hugepage").exists();
        for step in ["new", "grown"] {
            if step == "grown" {
                m.grow(&f, 1 << 20).unwrap();
            }
            let flags = vm_flags(m.as_slice().as_ptr());
            let has = |flag: &str| flags.split_whitespace().any(|f| f == flag);
            assert!(has("rr"), "{step}: {flags}");
            assert!(has("hg") || !huge, "{step}: {flags}");
        }
    }

    #[test]
    fn append_map_is_send_sync() {
        fn check<T: Send + Sync>() {}
        check::<AppendMap>();
    }
}
