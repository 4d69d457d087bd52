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
    /// cold rewrite) are not read back: nothing will read them. Returns how
    /// many ranges are read back.
    pub(crate) fn start(self, current: &Arc<DataFile>) -> usize {
        let AfterSyncs {
            mut read_back,
            release,
        } = self;
        read_back.retain(|(data, _, _)| Arc::ptr_eq(data, current));
        let reading = read_back.len();
        if reading > 0 {
            let _ = std::thread::Builder::new()
                .name("silo-readahead".to_owned())
                .spawn(move || {
                    for (data, offset, len) in read_back {
                        let _ = data.advise(offset, len, silo_io::FileAdvice::WillNeed);
                    }
                });
        }
        if !release.is_empty() {
            // On failure `spawn` drops the closure, and with it the files, here.
            let _ = std::thread::Builder::new()
                .name("silo-free".to_owned())
                .spawn(move || {
                    let _ = silo_io::advice::idle_io_for_this_thread();
                    drop(release);
                });
        }
        reading
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::AfterSyncs;
    use crate::data::DataFile;

    /// Tells a channel when it is dropped.
    struct Dropped(std::sync::mpsc::Sender<u32>, u32);

    impl Drop for Dropped {
        fn drop(&mut self) {
            let _ = self.0.send(self.1);
        }
    }

    #[test]
    fn released_values_go_only_once_started() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = Arc::new(DataFile::create(dir.path(), 1, 0).expect("data file"));
        let (tx, rx) = std::sync::mpsc::channel();
        let mut after = AfterSyncs::default();
        assert!(after.is_empty());
        after.release(Dropped(tx.clone(), 1));
        after.release(Dropped(tx, 2));
        assert!(!after.is_empty());
        assert!(rx.try_recv().is_err(), "nothing dropped before the start");
        assert_eq!(after.start(&data), 0);
        let mut got: Vec<u32> = (0..2)
            .map(|_| rx.recv_timeout(Duration::from_secs(30)).expect("dropped"))
            .collect();
        got.sort_unstable();
        assert_eq!(got, [1, 2]);
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
        assert_eq!(after.start(&current), 2);
        let mut after = AfterSyncs::default();
        after.read_back(old, 0, 4096);
        assert_eq!(after.start(&current), 0);
    }
}
