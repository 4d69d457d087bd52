//! Work a compaction leaves until it has nothing left to sync: reading
//! back the records it wrote past the page cache, and letting go of the
//! files it replaced (closing an unlinked file frees its blocks and cached
//! pages, and the file system may ask the device to discard the blocks).
//! Both put work on the device that a sync issued meanwhile waits behind:
//! here a small file's sync took 40 ms behind the read-back of a 35 MB
//! rewrite, against 1-5 ms without it. So they start once the compaction's
//! last sync is done, and in the sharded engine once every shard's
//! compaction is published.

use std::sync::Arc;

use crate::data::DataFile;

/// What [`AfterSyncs::start`] will start.
#[derive(Default)]
pub(crate) struct AfterSyncs {
    /// `(data file, offset, len)` ranges to read back into the page cache.
    read_back: Vec<(Arc<DataFile>, u64, u64)>,
    /// Whatever holds the replaced files (maps, descriptors), to drop.
    release: Vec<Box<dyn Send>>,
}

impl AfterSyncs {
    /// Reads `len` bytes of `data` from `offset` back into the page cache
    /// once started.
    pub(crate) fn read_back(&mut self, data: Arc<DataFile>, offset: u64, len: u64) {
        self.read_back.push((data, offset, len));
    }

    /// Drops `value` once started.
    pub(crate) fn release<T: Send + 'static>(&mut self, value: T) {
        self.release.push(Box::new(value));
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
    pub(crate) fn start(self, current: &Arc<DataFile>) -> Started {
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
                        drop(release);
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

    use super::AfterSyncs;
    use crate::data::DataFile;

    /// Tells a channel, from the thread that drops it, when it is dropped.
    struct Dropped(std::sync::mpsc::Sender<(u32, std::thread::ThreadId)>, u32);

    impl Drop for Dropped {
        fn drop(&mut self) {
            let _ = self.0.send((self.1, std::thread::current().id()));
        }
    }

    #[test]
    fn released_values_go_only_once_started_and_on_another_thread() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = Arc::new(DataFile::create(dir.path(), 1, 0).expect("data file"));
        let (tx, rx) = std::sync::mpsc::channel();
        let mut after = AfterSyncs::default();
        assert!(after.is_empty());
        after.release(Dropped(tx.clone(), 1));
        after.release(Dropped(tx, 2));
        assert!(!after.is_empty());
        assert!(rx.try_recv().is_err(), "nothing dropped before the start");
        let started = after.start(&data);
        assert!(started.reading.is_none());
        started.releasing.expect("a thread").join().expect("joined");
        let mut got: Vec<(u32, std::thread::ThreadId)> = rx.try_iter().collect();
        got.sort_unstable_by_key(|(n, _)| *n);
        assert_eq!(got.iter().map(|(n, _)| *n).collect::<Vec<_>>(), [1, 2]);
        let here = std::thread::current().id();
        assert!(
            got.iter().all(|(_, t)| *t != here),
            "not on the caller's thread"
        );
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
        let started = after.start(&current);
        assert_eq!(started.ranges, 2);
        assert!(started.releasing.is_none());
        started.reading.expect("a thread").join().expect("joined");
        let mut after = AfterSyncs::default();
        after.read_back(old, 0, 4096);
        let started = after.start(&current);
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
        let started = after.start(&data);
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
