//! Work a compaction leaves until it has nothing left to sync: reading
//! back the records it wrote past the page cache, and letting go of the
//! files it replaced (freeing a long file's blocks, which a file system
//! mounted with `discard` passes on to the device as discards). Both put
//! work on the device that a sync issued meanwhile waits behind: here a
//! small file's sync took 40 ms behind the read-back of a 35 MB rewrite,
//! against 1-5 ms without it, and a freeze's sync, under the log mutex,
//! 60-90 ms behind the discard of a replaced log slot. So they start once
//! the compaction's last sync is done (in the sharded engine once every
//! shard's compaction is published), and both go a piece at a time, so
//! that a later sync waits behind one piece at most.

use std::sync::Arc;

use silo_io::{ReadMap, SiloFile};

use crate::data::DataFile;
use crate::index::Index;
use crate::store::Tables;

/// A file a compaction replaced (renamed a new one over it, or removed
/// it), with the references the compaction held to it.
pub(crate) enum Replaced {
    /// A retired log slot's file and the compaction's map of it.
    Slot(Arc<SiloFile>, ReadMap),
    /// Tables a compaction replaced: a cold rewrite's (data file and
    /// index), or those of a fold that replaced the index (their data
    /// file, still in use, is held by the new tables too, so only the
    /// index is this one's to free).
    Tables(Arc<Tables>),
}

impl Replaced {
    /// Drops the maps and references this holds, and returns the files of
    /// which it held the last reference in this process (a reader that
    /// still holds one closes it when done).
    fn into_last_files(self) -> Vec<SiloFile> {
        match self {
            Replaced::Slot(file, map) => {
                drop(map);
                Arc::into_inner(file).into_iter().collect()
            }
            Replaced::Tables(tables) => match Arc::into_inner(tables) {
                Some(Tables { data, index }) => {
                    let data = Arc::into_inner(data).map(DataFile::into_file);
                    let index = Arc::into_inner(index).map(Index::into_file);
                    data.into_iter().chain(index).collect()
                }
                None => Vec::new(),
            },
        }
    }
}

/// Bytes of a replaced file freed at a time (see
/// [`SiloFile::free_in_steps`]): one discard of this size took 3.4 ms
/// here, against 200 ms for a whole 512 MiB file.
const FREE_STEP: u64 = 8 << 20;

/// What [`AfterSyncs::start`] will start.
#[derive(Default)]
pub(crate) struct AfterSyncs {
    /// `(data file, offset, len)` ranges to read back into the page cache.
    read_back: Vec<(Arc<DataFile>, u64, u64)>,
    /// The replaced files, to free and close.
    release: Vec<Replaced>,
}

impl AfterSyncs {
    /// Reads `len` bytes of `data` from `offset` back into the page cache
    /// once started.
    pub(crate) fn read_back(&mut self, data: Arc<DataFile>, offset: u64, len: u64) {
        self.read_back.push((data, offset, len));
    }

    /// Frees and closes `replaced` once started.
    pub(crate) fn release(&mut self, replaced: Replaced) {
        self.release.push(replaced);
    }

    /// Whether nothing is waiting.
    pub(crate) fn is_empty(&self) -> bool {
        self.read_back.is_empty() && self.release.is_empty()
    }

    /// Starts everything waiting, each kind on a short-lived thread of its
    /// own, so that the caller does not wait for it: the read-back advice
    /// allocates the pages and queues the reads before it returns (50 ms
    /// for 256 MB here), and closing a long unlinked file frees its blocks.
    /// The read-back is advice only: a failure, or no thread, changes no
    /// result (without a thread, the files are released here).
    /// Ranges of a data file other than `current` (replaced since by a
    /// cold rewrite) are not read back: nothing will read them.
    ///
    /// A replaced file of which this held the last reference is freed in
    /// steps before it is closed ([`SiloFile::free_in_steps`], which does
    /// nothing while the file still has a name), unless `readers_elsewhere`
    /// (a read-only open in another process may have it open: it is only
    /// closed, and its blocks are freed whenever the last one closes it).
    pub(crate) fn start(self, current: &Arc<DataFile>, readers_elsewhere: bool) -> Started {
        let AfterSyncs {
            mut read_back,
            release,
        } = self;
        read_back.retain(|(data, _, _)| Arc::ptr_eq(data, current));
        let ranges = read_back.len();
        let reading = (ranges > 0)
            .then(|| {
                std::thread::Builder::new()
                    .name("silo-readahead".to_owned())
                    .spawn(move || {
                        let _ = silo_io::advice::idle_io_for_this_thread();
                        for (data, offset, len) in read_back {
                            read_back_paced(&data, offset, len);
                        }
                    })
                    .ok()
            })
            .flatten();
        let releasing = (!release.is_empty())
            .then(|| {
                // On failure `spawn` drops the closure, and with it the
                // files, here.
                std::thread::Builder::new()
                    .name("silo-free".to_owned())
                    .spawn(move || {
                        let _ = silo_io::advice::idle_io_for_this_thread();
                        for replaced in release {
                            let files = replaced.into_last_files();
                            if !readers_elsewhere {
                                for file in &files {
                                    // A failure leaves the rest to the
                                    // close, as before.
                                    let _ = file.free_in_steps(FREE_STEP);
                                }
                            }
                        }
                    })
                    .ok()
            })
            .flatten();
        Started {
            ranges,
            reading,
            releasing,
        }
    }
}

/// Bytes read back at a time: the advice for one piece, then a wait for
/// its last byte, before the next piece is asked for.
const READ_BACK_PIECE: u64 = 1 << 20;

/// Reads `data`'s bytes `offset .. offset + len` into the page cache a
/// piece at a time, each piece read before the next is asked for. Advice
/// for a whole rewrite at once (hundreds of MB) queued its reads in
/// front of every other request of the device: a writer's log growth,
/// which had to read a block bitmap, waited 400 ms behind them, and a
/// freeze's sync, under the log mutex, 130 ms. One piece in the queue at
/// a time lets those in between. Advice only: the first failure (a read
/// past the file's end, say) ends it.
fn read_back_paced(data: &DataFile, offset: u64, len: u64) {
    let end = offset.saturating_add(len);
    let mut at = offset;
    while at < end {
        let piece_end = end.min(at.saturating_add(READ_BACK_PIECE));
        if data
            .advise(at, piece_end - at, silo_io::FileAdvice::WillNeed)
            .is_err()
        {
            return;
        }
        // Its last byte is read once the piece's reads are done (they
        // were queued together, in order).
        let mut last = [0u8; 1];
        if data.file().read_exact_at(&mut last, piece_end - 1).is_err() {
            return;
        }
        at = piece_end;
    }
}

/// What [`AfterSyncs::start`] started. Nobody needs to wait for it (the
/// threads end on their own); tests do.
#[cfg_attr(
    not(test),
    expect(dead_code, reason = "only tests look at what was started")
)]
pub(crate) struct Started {
    /// Ranges read back.
    pub(crate) ranges: usize,
    /// The thread asking for them.
    pub(crate) reading: Option<std::thread::JoinHandle<()>>,
    /// The thread letting go of the files.
    pub(crate) releasing: Option<std::thread::JoinHandle<()>>,
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use silo_io::{FileAdvice, ReadMap, SiloFile};

    use super::{AfterSyncs, Replaced};
    use crate::data::DataFile;
    use crate::store::Tables;

    /// A new file of `len` bytes in `dir`, written (so its blocks are
    /// allocated), and a second descriptor of it through which a test sees
    /// its length after the compaction's references are gone.
    fn long_file(dir: &std::path::Path, name: &str, len: usize) -> (Arc<SiloFile>, SiloFile) {
        let path = dir.join(name);
        let file = SiloFile::create_new(&path).expect("file");
        file.write_all_at(&vec![0x3C; len], 0).expect("write");
        let observer = SiloFile::open_read(&path).expect("observer");
        (Arc::new(file), observer)
    }

    fn len_of(observer: &SiloFile) -> u64 {
        observer.len().expect("stat")
    }

    /// Frees what `after` holds with `readers_elsewhere`, waiting for it.
    fn free(after: AfterSyncs, current: &Arc<DataFile>, readers_elsewhere: bool) {
        let started = after.start(current, readers_elsewhere);
        assert!(started.reading.is_none());
        started.releasing.expect("a thread").join().expect("joined");
    }

    #[test]
    fn a_replaced_slot_is_freed_only_once_started_and_to_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let current = Arc::new(DataFile::create(dir.path(), 9, 0).expect("data file"));
        let len = 3 * usize::try_from(super::FREE_STEP).expect("fits") + 4096;
        let (file, observer) = long_file(dir.path(), "log-0", len);
        let map = ReadMap::new(&file).expect("map");
        std::fs::remove_file(dir.path().join("log-0")).expect("unlink");
        let mut after = AfterSyncs::default();
        assert!(after.is_empty());
        after.release(Replaced::Slot(file, map));
        assert!(!after.is_empty());
        assert_eq!(
            len_of(&observer),
            len as u64,
            "nothing freed before the start"
        );
        free(after, &current, false);
        assert_eq!(len_of(&observer), 0, "every block freed");
    }

    #[test]
    fn a_replaced_file_is_only_closed_if_named_held_or_open_elsewhere() {
        let dir = tempfile::tempdir().expect("tempdir");
        let current = Arc::new(DataFile::create(dir.path(), 9, 0).expect("data file"));
        let len = 2 * usize::try_from(super::FREE_STEP).expect("fits");
        // Still named (a retire that failed before its rename).
        let (named, named_seen) = long_file(dir.path(), "log-0", len);
        // Unlinked, but a reader of this process still holds it.
        let (held, held_seen) = long_file(dir.path(), "log-1", len);
        let kept = Arc::clone(&held);
        std::fs::remove_file(dir.path().join("log-1")).expect("unlink");
        let mut after = AfterSyncs::default();
        for file in [named, held] {
            let map = ReadMap::new(&file).expect("map");
            after.release(Replaced::Slot(file, map));
        }
        free(after, &current, false);
        assert_eq!(len_of(&named_seen), len as u64, "a named file is never cut");
        assert_eq!(len_of(&held_seen), len as u64, "a held file is never cut");
        assert_eq!(kept.len().expect("len"), len as u64);
        // Unlinked and unheld, but a read-only open elsewhere may have it.
        let (elsewhere, elsewhere_seen) = long_file(dir.path(), "log-2", len);
        std::fs::remove_file(dir.path().join("log-2")).expect("unlink");
        let mut after = AfterSyncs::default();
        let map = ReadMap::new(&elsewhere).expect("map");
        after.release(Replaced::Slot(elsewhere, map));
        free(after, &current, true);
        assert_eq!(
            len_of(&elsewhere_seen),
            len as u64,
            "readers elsewhere: only closed"
        );
    }

    /// Unlinked tables of `id` with written files, and a descriptor of
    /// each file (data, index) through which a test sees their lengths.
    fn unlinked_tables(dir: &std::path::Path, id: u64) -> (Arc<Tables>, [SiloFile; 2]) {
        let len = 2 * usize::try_from(super::FREE_STEP).expect("fits");
        let data = DataFile::create(dir, id, len as u64).expect("data file");
        data.file().write_all_at(&vec![7; len], 0).expect("write");
        let index = crate::index::Index::create(dir, id, 1 << 16, 5, Vec::new()).expect("index");
        let seen = [data.path(), index.path()].map(|p| SiloFile::open_read(p).expect("observer"));
        std::fs::remove_file(data.path()).expect("unlink");
        std::fs::remove_file(index.path()).expect("unlink");
        let tables = Tables {
            data: Arc::new(data),
            index: Arc::new(index),
        };
        (Arc::new(tables), seen)
    }

    fn lens(seen: &[SiloFile; 2]) -> [u64; 2] {
        seen.each_ref().map(len_of)
    }

    #[test]
    fn replaced_tables_are_freed_when_their_last_reference_goes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let current = Arc::new(DataFile::create(dir.path(), 9, 0).expect("data file"));
        let (tables, seen) = unlinked_tables(dir.path(), 1);
        let before = lens(&seen);
        assert!(
            before.iter().all(|len| *len > super::FREE_STEP / 8),
            "{before:?}"
        );
        // A reader holds the tables: nothing is freed.
        let reader = Arc::clone(&tables);
        let mut after = AfterSyncs::default();
        after.release(Replaced::Tables(tables));
        free(after, &current, false);
        assert_eq!(lens(&seen), before);
        // A reader holds only the data file: the index is freed.
        let data = Arc::clone(&reader.data);
        let mut after = AfterSyncs::default();
        after.release(Replaced::Tables(reader));
        free(after, &current, false);
        assert_eq!(lens(&seen), [before[0], 0]);
        drop(data);
        // Nobody else holds them: both are freed.
        let (tables, seen) = unlinked_tables(dir.path(), 2);
        let mut after = AfterSyncs::default();
        after.release(Replaced::Tables(tables));
        free(after, &current, false);
        assert_eq!(lens(&seen), [0, 0]);
    }

    #[test]
    fn only_the_current_data_files_ranges_are_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let old = Arc::new(DataFile::create(dir.path(), 1, 0).expect("data file"));
        let current = Arc::new(DataFile::create(dir.path(), 2, 0).expect("data file"));
        let mut after = AfterSyncs::default();
        after.read_back(Arc::clone(&old), 0, 4096);
        assert!(!after.is_empty());
        after.read_back(Arc::clone(&current), 0, 4096);
        after.read_back(Arc::clone(&current), 4096, 4096);
        let started = after.start(&current, false);
        assert_eq!(started.ranges, 2);
        assert!(started.releasing.is_none());
        started.reading.expect("a thread").join().expect("joined");
        let mut after = AfterSyncs::default();
        after.read_back(old, 0, 4096);
        let started = after.start(&current, false);
        assert_eq!(started.ranges, 0);
        assert!(started.reading.is_none(), "nothing to read back");
    }

    /// Major page faults of this thread while it touches every page of
    /// `path`'s first `len` bytes through a new map.
    fn faults_reading(path: &std::path::Path, len: usize) -> u64 {
        let file = SiloFile::open_read(path).expect("open");
        let map = ReadMap::new(&file).expect("map");
        let before = silo_io::thread_faults().expect("faults");
        let mut sum = 0u64;
        for page in (0..len).step_by(4096) {
            sum += u64::from(map.as_slice()[page]);
        }
        std::hint::black_box(sum);
        silo_io::thread_faults()
            .expect("faults")
            .since(before)
            .major
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_range_read_back_is_in_the_page_cache_once_its_thread_is_done() {
        let dir = tempfile::tempdir().expect("tempdir");
        let len = 4usize << 20;
        let data = Arc::new(DataFile::create(dir.path(), 1, len as u64).expect("data file"));
        data.file()
            .write_all_at(&vec![0x5A; len], 0)
            .expect("write");
        data.file().sync_data().expect("sync");
        // Out of the page cache (synced, clean, mapped by no one): touching
        // it reads from the disk.
        data.advise(0, 0, FileAdvice::DontNeed).expect("drop");
        assert!(
            faults_reading(data.path(), len) > 0,
            "the pages were dropped"
        );
        data.advise(0, 0, FileAdvice::DontNeed).expect("drop");
        let mut after = AfterSyncs::default();
        after.read_back(Arc::clone(&data), 0, len as u64);
        let started = after.start(&data, false);
        assert_eq!(started.ranges, 1);
        started.reading.expect("a thread").join().expect("joined");
        // The advice queued the reads; touching the pages may wait for
        // them but never reads from the disk itself.
        assert_eq!(faults_reading(data.path(), len), 0);
    }

    /// The paced read-back covers a range that ends inside a piece, and
    /// one that runs past the file's end stops there without harm.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_paced_read_back_covers_its_range_and_stops_at_the_files_end() {
        let dir = tempfile::tempdir().expect("tempdir");
        let len = (5 * super::READ_BACK_PIECE / 2) as usize;
        let data = DataFile::create(dir.path(), 1, len as u64).expect("data file");
        data.file()
            .write_all_at(&vec![0x6B; len], 0)
            .expect("write");
        data.file().sync_data().expect("sync");
        for range in [len as u64, 3 * len as u64] {
            data.advise(0, 0, FileAdvice::DontNeed).expect("drop");
            super::read_back_paced(&data, 0, range);
            assert_eq!(faults_reading(data.path(), len), 0, "range {range}");
        }
    }
}
