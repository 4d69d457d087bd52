//! The persistent hash index: an open-addressed table of `(key, loc)` slots
//! in a mapped file (`index-<id>`), probed linearly from the key's hash.
//!
//! Only compaction (one thread at a time) changes it, with the publication
//! protocol of `silo_format::index_entry`: a new slot's key is stored before
//! its location, a location is one aligned 8-byte atomic store, and a slot's
//! key never changes once set (deleted slots keep their key until a rehash).
//! Readers load the location (Acquire) before the key, so they never see a
//! torn entry. The table is grown by rehashing into a new file.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use silo_format::{
    FileHeader, FileKind, HEADER_LEN, INDEX_ENTRY_LEN, LOC_EMPTY, Loc, hash_key, slot_offset,
};
use silo_io::durable::{create_fresh, create_with_header, read_header};
use silo_io::file::SiloFile;
use silo_io::map::AtomicMap;

use crate::error::{Error, Result};
use crate::log::slot::to_usize;
use crate::scratch::Pool;
use crate::window_sort::{into_windows_in, window_shift};

/// Smallest table, in slots.
pub(crate) const MIN_CAPACITY: u64 = 1024;
/// Used slots (live and deleted) may fill at most this percentage of the
/// table before it is rehashed.
const MAX_LOAD_PERCENT: u64 = 85;
/// Percentage of the table a rehash fills, leaving room to grow before the next.
const BUILD_LOAD_PERCENT: u64 = 70;

/// The path of index file `id` in `dir`.
pub(crate) fn index_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("index-{id}"))
}

/// The capacity that holds `keys` at about 70% load (a whole number of
/// 64-byte buckets). Any capacity works: home slots use multiply-shift.
pub(crate) fn capacity_for(keys: u64) -> u64 {
    let slots = keys.saturating_mul(100) / BUILD_LOAD_PERCENT + 1;
    slots
        .max(MIN_CAPACITY)
        .next_multiple_of(silo_format::SLOTS_PER_BUCKET as u64)
}

/// An index is built in slot order to within windows of at least this
/// many slots (`1 << shift`: 64 KiB of table) ...
const BUILD_WINDOW_SHIFT: u32 = 12;
/// ... and at most this many windows.
const MAX_BUILD_WINDOWS: u64 = 1 << 20;

/// Index entries' buffers, kept from build to build: the entries to
/// insert, and the same in window order.
pub(crate) static ENTRIES: Pool<(u64, u64)> = Pool::new(2);
/// New indexes' bodies, kept from build to build (an engine builds one a
/// compaction thread).
static BODIES: Pool<u8> = Pool::new(2);

/// How many keys ahead a batch of lookups prefetches home slots: far
/// enough to cover a cache miss, near enough that the lines are still there.
pub(crate) const PREFETCH_AHEAD: usize = 12;

/// The home slot of `key`.
fn home(key: u64, seed: u64, capacity: u64) -> u64 {
    silo_format::index_entry::home_bucket(hash_key(key, seed), capacity)
}

/// The slot after `slot`, wrapping.
fn next(slot: u64, capacity: u64) -> u64 {
    if slot + 1 == capacity { 0 } else { slot + 1 }
}

/// An open index file.
pub(crate) struct Index {
    /// The file id (`index-<id>`).
    pub(crate) id: u64,
    path: PathBuf,
    file: SiloFile,
    map: AtomicMap,
    capacity: u64,
    seed: u64,
    /// Slots holding a live key.
    live: AtomicU64,
    /// Slots holding a key, live or deleted.
    used: AtomicU64,
}

/// A new index's body, and the window-ordered entries it was built from
/// (both kept buffers, handed back once the body is written).
type BuiltBody = (Vec<(u64, u64)>, Vec<u8>);

impl Index {
    /// Writes a new index file holding `entries` (key, record offset), syncs it (its name
    /// included) and maps it.
    pub(crate) fn create(
        dir: &Path,
        id: u64,
        capacity: u64,
        seed: u64,
        entries: Vec<(u64, u64)>,
    ) -> Result<Index> {
        Index::create_with(dir, id, capacity, seed, entries, true)
    }

    /// [`Index::create`] for a rewrite whose files nothing names until it
    /// is published: the file is synced but its name is not (the rewrite
    /// syncs the directory once, for its data file and index, before a
    /// manifest names them).
    pub(crate) fn create_fresh(
        dir: &Path,
        id: u64,
        capacity: u64,
        seed: u64,
        entries: Vec<(u64, u64)>,
    ) -> Result<Index> {
        Index::create_with(dir, id, capacity, seed, entries, false)
    }

    fn create_with(
        dir: &Path,
        id: u64,
        capacity: u64,
        seed: u64,
        entries: Vec<(u64, u64)>,
        durable_name: bool,
    ) -> Result<Index> {
        debug_assert!(capacity > 0);
        let len = silo_format::index_entry::index_file_len(capacity).ok_or_else(|| {
            Error::InvalidOptions {
                name: "index capacity",
                reason: format!("{capacity} slots overflow a file length"),
            }
        })?;
        let live = entries.len() as u64;
        if live > capacity * MAX_LOAD_PERCENT / 100 {
            return Err(Error::InvalidOptions {
                name: "index capacity",
                reason: format!("{capacity} slots cannot hold {live} keys"),
            });
        }
        let header = FileHeader {
            generation: id,
            param_a: capacity,
            param_b: seed,
            ..FileHeader::new(FileKind::Index)
        };
        let path = index_path(dir, id);
        let create = || {
            if durable_name {
                create_with_header(&path, &header)
            } else {
                create_fresh(&path, &header)
            }
        };
        // The file is created (its header synced, its name too for a
        // durable name) on a thread of its own while this one builds the
        // body: that first sync waits for the device to drain whatever was
        // written before it (a fold's data file, past the page cache: 68 ms
        // of a one-thread fold here), and the build needs no file.
        let (built, file) = std::thread::scope(|s| {
            let creating = std::thread::Builder::new()
                .name("silo-index-file".to_owned())
                .spawn_scoped(s, create);
            let built = Self::build_body(len, capacity, seed, entries, dir, id);
            let file = match creating {
                Ok(creating) => creating
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                Err(_) => create(),
            };
            (built, file)
        });
        let file = file?;
        let (ordered, body) = match built {
            Ok(built) => built,
            Err(e) => {
                // Nothing names the file yet: it goes with the build.
                drop(file);
                let _ = std::fs::remove_file(&path);
                return Err(e);
            }
        };
        file.write_all_at(&body, HEADER_LEN as u64)?;
        ENTRIES.give(ordered);
        BODIES.give(body);
        file.sync_all()?;
        Ok(Index {
            id,
            map: AtomicMap::new(&file)?,
            file,
            path,
            capacity,
            seed,
            live: AtomicU64::new(live),
            used: AtomicU64::new(live),
        })
    }

    /// The body of a new index of `capacity` slots holding `entries`, and
    /// the window-ordered copy of them it was built from (both kept
    /// buffers, for the caller to hand back).
    /// `len` is the file's length for `capacity` slots.
    fn build_body(
        len: u64,
        capacity: u64,
        seed: u64,
        entries: Vec<(u64, u64)>,
        dir: &Path,
        id: u64,
    ) -> Result<BuiltBody> {
        // Entries go in in slot order, to within a window of slots that fits
        // the CPU's cache: scattered over a large table, each would be a
        // cache miss (home slots follow the hash, so entries that come from
        // another table's slot order are in order already).
        let shift = window_shift(capacity, BUILD_WINDOW_SHIFT, MAX_BUILD_WINDOWS);
        let windows = usize::try_from((capacity >> shift) + 1).unwrap_or(1);
        let mut ordered = ENTRIES.take(entries.len()).unwrap_or_default();
        into_windows_in(
            &entries,
            windows,
            |(key, _)| usize::try_from(home(*key, seed, capacity) >> shift).unwrap_or(usize::MAX),
            &mut ordered,
        );
        ENTRIES.give(entries);
        // Each slot is read before it is written: the body is zeroed by
        // writing (see `silo_io::buffer` for why not by the kernel's zero
        // page), into a buffer kept from build to build.
        let body_len = to_usize(len)? - HEADER_LEN;
        let mut body = BODIES.take(body_len).unwrap_or_default();
        body.resize(body_len, 0);
        // The entries come window by window, and a window's lines are
        // asked for while the one before it fills, a line an entry (a
        // window holds more entries than lines at the loads used): inserted
        // into lines not in the CPU's cache, each first touch waited on
        // memory (a third of a 1M-key index's build).
        let window_bytes = INDEX_ENTRY_LEN << shift;
        let mut ahead = 0;
        for &(key, loc) in &ordered {
            let mut slot = home(key, seed, capacity);
            let next_window = to_usize((slot >> shift) + 1)?.saturating_mul(window_bytes);
            ahead = ahead.max(next_window);
            if ahead < next_window.saturating_add(window_bytes)
                && let Some(line) = body.get(ahead..)
            {
                silo_io::hint::prefetch_slice(line, 1);
                ahead += 64;
            }
            loop {
                let at = to_usize(slot_offset(slot))? - HEADER_LEN;
                let entry = &mut body[at..at + INDEX_ENTRY_LEN];
                if entry.iter().all(|b| *b == 0) {
                    entry.copy_from_slice(&silo_format::encode_entry(
                        key,
                        Loc::record(loc).map_err(|e| Error::format(index_path(dir, id), e))?,
                    ));
                    break;
                }
                slot = next(slot, capacity);
            }
        }
        Ok((ordered, body))
    }

    /// Opens index file `id`. `counts` are (live, used) from a clean
    /// manifest; without them the table is scanned to count.
    pub(crate) fn open(dir: &Path, id: u64, counts: Option<(u64, u64)>) -> Result<Index> {
        let path = index_path(dir, id);
        let file = SiloFile::open(&path)?;
        let header = read_header(&file, FileKind::Index)?;
        let capacity = header.param_a;
        let expected_len = silo_format::index_entry::index_file_len(capacity);
        if header.generation != id || capacity == 0 || expected_len != Some(file.len()?) {
            return Err(Error::corrupt(
                &path,
                0,
                format!(
                    "index header says id {} and {capacity} slots, but the file is index-{id} of {} bytes",
                    header.generation,
                    file.len()?
                ),
            ));
        }
        let index = Index {
            id,
            map: AtomicMap::new(&file)?,
            file,
            path,
            capacity,
            seed: header.param_b,
            live: AtomicU64::new(0),
            used: AtomicU64::new(0),
        };
        let (live, used) = match counts {
            Some(c) => c,
            None => index.count()?,
        };
        index.live.store(live, Ordering::Relaxed);
        index.used.store(used, Ordering::Relaxed);
        Ok(index)
    }

    fn count(&self) -> Result<(u64, u64)> {
        let (mut live, mut used) = (0, 0);
        for slot in 0..self.capacity {
            match self.slot(slot)? {
                None => {}
                Some((_, Loc::Record(_))) => {
                    used += 1;
                    live += 1;
                }
                Some(_) => used += 1,
            }
        }
        Ok((live, used))
    }

    fn word(&self, slot: u64, field: usize) -> Result<&AtomicU64> {
        let offset = to_usize(slot_offset(slot))? + field;
        Ok(self.map.atomic_u64(offset)?)
    }

    /// The key and location in `slot`, `None` if it is empty. The location
    /// is loaded (Acquire) before the key, and the key check is verified.
    fn slot(&self, slot: u64) -> Result<Option<(u64, Loc)>> {
        let raw = self
            .word(slot, silo_format::ENTRY_LOC_OFFSET)?
            .load(Ordering::Acquire);
        if raw == LOC_EMPTY {
            return Ok(None);
        }
        let key = self
            .word(slot, silo_format::ENTRY_KEY_OFFSET)?
            .load(Ordering::Relaxed);
        let loc = Loc::decode(raw, key).map_err(|e| Error::format(&self.path, e))?;
        Ok(Some((key, loc)))
    }

    /// The path of the file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The hash seed.
    pub(crate) fn seed(&self) -> u64 {
        self.seed
    }

    /// (live, used) slot counts.
    pub(crate) fn counts(&self) -> (u64, u64) {
        (
            self.live.load(Ordering::Relaxed),
            self.used.load(Ordering::Relaxed),
        )
    }

    /// Whether `new_keys` more keys fit under the load limit.
    pub(crate) fn has_room_for(&self, new_keys: u64) -> bool {
        self.used.load(Ordering::Relaxed) + new_keys <= self.capacity * MAX_LOAD_PERCENT / 100
    }

    /// Finds the slot of `key`: `Ok((slot, loc))`, or `Err(Some(slot))` at the
    /// first empty slot (`Err(None)` if the table is full).
    fn find(&self, key: u64) -> Result<std::result::Result<(u64, Loc), Option<u64>>> {
        let mut slot = home(key, self.seed, self.capacity);
        for _ in 0..self.capacity {
            match self.slot(slot)? {
                None => return Ok(Err(Some(slot))),
                Some((k, loc)) if k == key => return Ok(Ok((slot, loc))),
                Some(_) => {}
            }
            slot = next(slot, self.capacity);
        }
        Ok(Err(None))
    }

    /// The record offset of `key`, if it is live.
    pub(crate) fn get(&self, key: u64) -> Result<Option<u64>> {
        match self.find(key)? {
            Ok((_, Loc::Record(offset))) => Ok(Some(offset)),
            _ => Ok(None),
        }
    }

    /// The record offset of `key` and the slot of its entry, if it is live.
    pub(crate) fn get_with_slot(&self, key: u64) -> Result<Option<(u64, u64)>> {
        match self.find(key)? {
            Ok((slot, Loc::Record(offset))) => Ok(Some((offset, slot))),
            _ => Ok(None),
        }
    }

    /// Points `key` at the record at `offset`. Single writer only.
    pub(crate) fn set(&self, key: u64, offset: u64) -> Result<()> {
        let loc = Loc::record(offset).map_err(|e| Error::format(&self.path, e))?;
        match self.find(key)? {
            Ok((slot, old)) => {
                self.word(slot, silo_format::ENTRY_LOC_OFFSET)?
                    .store(loc.encode(key), Ordering::Release);
                if old == Loc::Deleted {
                    self.live.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(Some(slot)) => {
                self.word(slot, silo_format::ENTRY_KEY_OFFSET)?
                    .store(key, Ordering::Relaxed);
                self.word(slot, silo_format::ENTRY_LOC_OFFSET)?
                    .store(loc.encode(key), Ordering::Release);
                self.live.fetch_add(1, Ordering::Relaxed);
                self.used.fetch_add(1, Ordering::Relaxed);
            }
            Err(None) => {
                return Err(Error::corrupt(
                    &self.path,
                    0,
                    "index is full: no empty slot left",
                ));
            }
        }
        Ok(())
    }

    /// Hints the CPU to load `key`'s home slot, so that a lookup of it a
    /// little later does not wait for memory.
    #[inline]
    pub(crate) fn prefetch(&self, key: u64) {
        let slot = home(key, self.seed, self.capacity);
        if let Ok(offset) = usize::try_from(slot_offset(slot)) {
            self.map.prefetch(offset);
        }
    }

    /// [`Index::set`] for each `(key, offset)` in turn, with the home slots
    /// of the keys a few places ahead prefetched: the slots are scattered
    /// over the file, and this overlaps their cache misses.
    pub(crate) fn set_many(&self, entries: &[(u64, u64)]) -> Result<()> {
        for (i, (key, offset)) in entries.iter().enumerate() {
            if let Some((ahead, _)) = entries.get(i + PREFETCH_AHEAD) {
                self.prefetch(*ahead);
            }
            self.set(*key, *offset)?;
        }
        Ok(())
    }

    /// Marks `key` deleted, if present. Single writer only.
    pub(crate) fn remove(&self, key: u64) -> Result<()> {
        if let Ok((slot, old)) = self.find(key)? {
            let word = self.word(slot, silo_format::ENTRY_LOC_OFFSET)?;
            word.store(Loc::Deleted.encode(key), Ordering::Release);
            if matches!(old, Loc::Record(_)) {
                self.live.fetch_sub(1, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    /// The live (key, record offset) in `slot`, if it holds one.
    pub(crate) fn entry(&self, slot: u64) -> Result<Option<(u64, u64)>> {
        match self.slot(slot)? {
            Some((key, Loc::Record(offset))) => Ok(Some((key, offset))),
            _ => Ok(None),
        }
    }

    /// Every live (key, record offset), in slot order.
    pub(crate) fn live_entries(&self) -> impl Iterator<Item = Result<(u64, u64)>> + '_ {
        self.live_entries_but(&[])
    }

    /// [`Index::live_entries`] but those whose slot is set in `skip`, a
    /// bitmap of slots (bit `s % 64` of word `s / 64`; shorter is unset).
    pub(crate) fn live_entries_but<'a>(
        &'a self,
        skip: &'a [u64],
    ) -> impl Iterator<Item = Result<(u64, u64)>> + 'a {
        (0..self.capacity)
            .filter(move |slot| {
                let word = usize::try_from(slot / 64).ok().and_then(|w| skip.get(w));
                word.is_none_or(|w| w & (1 << (slot % 64)) == 0)
            })
            .filter_map(move |slot| self.entry(slot).transpose())
    }

    /// Slots in the table.
    pub(crate) fn capacity(&self) -> u64 {
        self.capacity
    }

    /// The file, its map dropped (for freeing a replaced file: see
    /// `compaction::after_syncs`).
    pub(crate) fn into_file(self) -> SiloFile {
        let Index { file, map, .. } = self;
        drop(map);
        file
    }

    /// The index file.
    pub(crate) fn file(&self) -> &SiloFile {
        &self.file
    }

    /// Bytes the file takes on disk.
    pub(crate) fn disk_bytes(&self) -> Result<u64> {
        Ok(self.file.block_bytes()?)
    }

    /// Makes every change durable (msync).
    pub(crate) fn flush(&self) -> Result<()> {
        Ok(self.map.flush()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_works_including_zero_and_max() {
        let dir = tempfile::tempdir().expect("tempdir");
        let index = Index::create(dir.path(), 1, MIN_CAPACITY, 42, Vec::new()).expect("create");
        for (i, key) in [0, u64::MAX, 1, 7].into_iter().enumerate() {
            assert_eq!(index.get(key).expect("get"), None);
            index.set(key, 64 + 8 * i as u64).expect("set");
        }
        assert_eq!(index.get(0).expect("get"), Some(64));
        assert_eq!(index.get(u64::MAX).expect("get"), Some(72));
        index.remove(0).expect("remove");
        assert_eq!(index.get(0).expect("get"), None);
        assert_eq!(index.counts(), (3, 4));
        index.set(0, 128).expect("set again");
        assert_eq!(index.counts(), (4, 4));
        index.flush().expect("flush");
        drop(index);
        let reopened = Index::open(dir.path(), 1, None).expect("open");
        assert_eq!(reopened.get(0).expect("get"), Some(128));
        assert_eq!(reopened.counts(), (4, 4));
        let mut all: Vec<_> = reopened
            .live_entries()
            .collect::<Result<_>>()
            .expect("entries");
        all.sort_unstable();
        assert_eq!(all, vec![(0, 128), (1, 80), (7, 88), (u64::MAX, 72)]);
    }

    #[test]
    fn colliding_keys_probe_past_each_other() {
        let dir = tempfile::tempdir().expect("tempdir");
        let index = Index::create(dir.path(), 3, MIN_CAPACITY, 0, Vec::new()).expect("create");
        // 850 keys in 1024 slots forces long probe runs, wrapping included.
        for key in 0..850u64 {
            index.set(key * 1024, 64 + key * 8).expect("set");
        }
        for key in 0..850u64 {
            assert_eq!(index.get(key * 1024).expect("get"), Some(64 + key * 8));
        }
        assert_eq!(index.get(7).expect("a miss probes to an empty slot"), None);
        assert!(index.has_room_for(20) && !index.has_room_for(30));
    }

    #[test]
    fn a_header_that_disagrees_with_the_file_is_corruption() {
        let dir = tempfile::tempdir().expect("tempdir");
        drop(Index::create(dir.path(), 5, MIN_CAPACITY, 0, vec![(1, 64)]).expect("create"));
        std::fs::rename(index_path(dir.path(), 5), index_path(dir.path(), 6)).expect("rename");
        assert!(matches!(
            Index::open(dir.path(), 6, None),
            Err(Error::Corrupt { .. })
        ));
    }

    #[test]
    fn capacities_are_sized_for_seventy_percent_load() {
        assert_eq!(capacity_for(0), MIN_CAPACITY);
        // Never above 70% full, and at most one bucket more than that needs.
        for keys in 0..20_000u64 {
            let c = capacity_for(keys);
            assert!(c * BUILD_LOAD_PERCENT >= keys * 100, "{keys} keys in {c}");
            let least = (keys * 100).div_ceil(BUILD_LOAD_PERCENT).max(MIN_CAPACITY);
            assert!(
                c <= least + silo_format::SLOTS_PER_BUCKET as u64,
                "{keys}: {c}"
            );
        }
        let c = capacity_for(1_000_000);
        assert!((1_428_000..1_429_000).contains(&c), "{c}");
        assert_eq!(c % 4, 0);
        let dir = tempfile::tempdir().expect("tempdir");
        let entries: Vec<(u64, u64)> = (0..2000u64).map(|k| (k, 64 + 8 * k)).collect();
        let index = Index::create(dir.path(), 9, capacity_for(2000), 1, entries).expect("create");
        assert_eq!(index.capacity(), capacity_for(2000));
        for k in 0..2000u64 {
            assert_eq!(index.get(k).expect("get"), Some(64 + 8 * k));
        }
    }

    #[test]
    fn an_unclean_open_counts_deleted_slots_as_used() {
        let dir = tempfile::tempdir().expect("tempdir");
        let index = Index::create(dir.path(), 2, MIN_CAPACITY, 7, Vec::new()).expect("create");
        for key in 0..10u64 {
            index.set(key, 64 + 8 * key).expect("set");
        }
        for key in 0..4u64 {
            index.remove(key).expect("remove");
        }
        assert_eq!(index.counts(), (6, 10));
        index.flush().expect("flush");
        drop(index);
        let reopened = Index::open(dir.path(), 2, None).expect("open, counting");
        assert_eq!(reopened.counts(), (6, 10), "deleted slots still take room");
        let trusted = Index::open(dir.path(), 2, Some((1, 2))).expect("open, trusting");
        assert_eq!(
            trusted.counts(),
            (1, 2),
            "a clean manifest's counts are taken as given"
        );
    }

    #[test]
    fn an_index_cut_short_or_claiming_no_slots_is_corruption() {
        let dir = tempfile::tempdir().expect("tempdir");
        drop(Index::create(dir.path(), 4, MIN_CAPACITY, 0, vec![(1, 64)]).expect("create"));
        let path = index_path(dir.path(), 4);
        let whole = std::fs::read(&path).expect("read");
        std::fs::write(&path, &whole[..whole.len() - INDEX_ENTRY_LEN]).expect("cut");
        assert!(matches!(
            Index::open(dir.path(), 4, None),
            Err(Error::Corrupt { .. })
        ));
        let mut bytes = whole.clone();
        bytes.extend_from_slice(&[0; INDEX_ENTRY_LEN]);
        std::fs::write(&path, &bytes).expect("grow");
        assert!(matches!(
            Index::open(dir.path(), 4, None),
            Err(Error::Corrupt { .. })
        ));
        let header = FileHeader {
            param_a: 0,
            ..FileHeader::decode(&whole, FileKind::Index).expect("header")
        };
        let mut bytes = whole;
        bytes[..HEADER_LEN].copy_from_slice(&header.encode());
        std::fs::write(&path, &bytes).expect("no slots");
        assert!(matches!(
            Index::open(dir.path(), 4, None),
            Err(Error::Corrupt { .. })
        ));
    }

    #[test]
    fn creating_an_index_too_small_for_its_keys_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        // 85% of 1024 slots is 870 keys: that many fit, one more does not.
        let fits: Vec<(u64, u64)> = (0..870u64).map(|k| (k, 64 + 8 * k)).collect();
        let index = Index::create(dir.path(), 1, MIN_CAPACITY, 3, fits).expect("870 fit");
        assert_eq!(index.counts(), (870, 870));
        let over: Vec<(u64, u64)> = (0..871u64).map(|k| (k, 64 + 8 * k)).collect();
        assert!(matches!(
            Index::create(dir.path(), 2, MIN_CAPACITY, 3, over),
            Err(Error::InvalidOptions { .. })
        ));
    }
}
